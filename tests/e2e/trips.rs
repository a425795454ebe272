//! Trip reminders and trip-wide fan-out: a durable timer to departure minus
//! the tenant's lead time, moved by reschedules, stopped by cancellations,
//! fed by booking events; one event to everyone on a trip.

use crate::support::app::{TestApp, trip_booking_event, trip_event};
use busflow_activities::model::ContactId;
use busflow_workflows::names::{fanout_workflow_id, trip_reminder_workflow_id};
use busflow_workflows::trip_reminder::{ReminderOutcome, ReminderView};
use busflow_workflows::{BatchNotificationWorkflow, BatchProgress, TripReminderWorkflow};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::time::Duration;
use temporalio_client::{WorkflowGetResultOptions, WorkflowQueryOptions};
use uuid::Uuid;

/// A tenant that reminds one hour before departure, with sandbox SMS.
async fn reminding_tenant() -> TestApp {
    let app = TestApp::spawn().await;
    app.add_sandbox_sms_account(None, None).await;
    sqlx::query(
        "update tenant_settings set reminder_lead = interval '1 hour' where tenant_id = $1",
    )
    .bind(app.tenant_id)
    .execute(&app.pool)
    .await
    .expect("lead time");
    app
}

/// Departure such that the reminder fires `secs` from now.
fn fires_in(secs: i64) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::hours(1) + chrono::Duration::seconds(secs)
}

async fn post_ok(app: &TestApp, event: &Value) -> Value {
    let response = app.post_event(event).await;
    let status = response.status();
    let body: Value = response.json().await.expect("json body");
    assert_eq!(status, 200, "{body}");
    body
}

async fn book(app: &TestApp, trip: Uuid, phone: &str) -> (Uuid, Uuid, ContactId) {
    let profile = Uuid::new_v4();
    let contact = app.upsert_passenger_with_phone(profile, phone).await;
    let booking = Uuid::new_v4();
    post_ok(
        app,
        &trip_booking_event(
            &Uuid::new_v4().to_string(),
            app.tenant_id,
            booking,
            trip,
            profile,
            true,
            Utc::now(),
        ),
    )
    .await;
    (booking, profile, contact)
}

async fn reminders_to(app: &TestApp, contact: ContactId) -> Vec<(String, DateTime<Utc>)> {
    sqlx::query_as(
        "select workflow_id, created_at from messages
          where tenant_id = $1 and contact_id = $2 and trigger_event = 'trip_reminder'",
    )
    .bind(app.tenant_id)
    .bind(contact.0)
    .fetch_all(&app.pool)
    .await
    .expect("reminders")
}

async fn reminder_view(app: &TestApp, trip: Uuid) -> ReminderView {
    app.temporal()
        .await
        .get_workflow_handle::<TripReminderWorkflow>(&trip_reminder_workflow_id(
            app.tenant_id,
            trip,
        ))
        .query(
            TripReminderWorkflow::reminder,
            (),
            WorkflowQueryOptions::default(),
        )
        .await
        .expect("reminder query")
}

#[tokio::test]
async fn reminder_fires_at_departure_minus_lead_and_replays_change_nothing() {
    let app = reminding_tenant().await;
    let trip = Uuid::new_v4();
    let departure = fires_in(4);
    let trip_changed = trip_event(
        "trip_upserted",
        "trip-created-1",
        app.tenant_id,
        trip,
        departure,
        "SCHEDULED",
        Utc::now(),
    );
    let body = post_ok(&app, &trip_changed).await;
    assert_eq!(body["outcome"], "trip_updated");
    assert_eq!(
        body["workflow_id"],
        trip_reminder_workflow_id(app.tenant_id, trip)
    );
    let (_, _, ana) = book(&app, trip, "55 1111 0001").await;
    let (luis_booking, luis_profile, luis) = book(&app, trip, "55 1111 0002").await;
    // Luis cancels; then Hasura replays the trip event and his confirmation.
    let cancel = trip_booking_event(
        "luis-cancelled",
        app.tenant_id,
        luis_booking,
        trip,
        luis_profile,
        false,
        Utc::now() + chrono::Duration::seconds(1),
    );
    post_ok(&app, &cancel).await;
    post_ok(&app, &trip_changed).await;
    post_ok(&app, &cancel).await;

    let view = reminder_view(&app, trip).await;
    assert_eq!(view.passengers, 1, "{view:?}");
    assert_eq!(view.reminded, 0, "not before departure - lead: {view:?}");

    let sent = app
        .eventually("Ana's reminder", Duration::from_secs(30), || async {
            let r = reminders_to(&app, ana).await;
            (!r.is_empty()).then_some(r)
        })
        .await;
    let fire_at = departure - chrono::Duration::hours(1);
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].1 >= fire_at - chrono::Duration::milliseconds(50),
        "sent at {} before the reminder time {fire_at}",
        sent[0].1
    );
    assert!(
        sent[0].0.contains(&format!(
            "trip-reminder-{trip}-{}",
            departure.timestamp_millis()
        )),
        "{}",
        sent[0].0
    );
    // Replays after firing send nothing more.
    post_ok(&app, &trip_changed).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(reminders_to(&app, ana).await.len(), 1, "one reminder");
    assert!(
        reminders_to(&app, luis).await.is_empty(),
        "a cancelled booking is not reminded"
    );
}

#[tokio::test]
async fn a_reschedule_moves_the_reminder_and_a_late_old_event_does_not_move_it_back() {
    let app = reminding_tenant().await;
    let trip = Uuid::new_v4();
    let first = fires_in(600);
    let t0 = Utc::now();
    post_ok(
        &app,
        &trip_event(
            "trip_upserted",
            "trip-v1",
            app.tenant_id,
            trip,
            first,
            "SCHEDULED",
            t0,
        ),
    )
    .await;
    let (_, _, ana) = book(&app, trip, "55 2222 0001").await;
    let moved = fires_in(3);
    post_ok(
        &app,
        &trip_event(
            "trip_upserted",
            "trip-v2",
            app.tenant_id,
            trip,
            moved,
            "SCHEDULED",
            t0 + chrono::Duration::seconds(5),
        ),
    )
    .await;
    // The first event again, late: older than what is stored.
    let late = post_ok(
        &app,
        &trip_event(
            "trip_upserted",
            "trip-v1",
            app.tenant_id,
            trip,
            first,
            "SCHEDULED",
            t0,
        ),
    )
    .await;
    assert_eq!(late["outcome"], "ignored", "{late}");
    let view = reminder_view(&app, trip).await;
    assert_eq!(view.departure_at_ms, Some(moved.timestamp_millis()));

    let sent = app
        .eventually(
            "the rescheduled reminder",
            Duration::from_secs(30),
            || async {
                let r = reminders_to(&app, ana).await;
                (!r.is_empty()).then_some(r)
            },
        )
        .await;
    assert!(
        sent[0].0.contains(&moved.timestamp_millis().to_string()),
        "reminded for the new departure: {}",
        sent[0].0
    );
}

#[tokio::test]
async fn a_cancelled_trip_stops_its_reminder() {
    let app = reminding_tenant().await;
    let trip = Uuid::new_v4();
    let departure = fires_in(3);
    post_ok(
        &app,
        &trip_event(
            "trip_upserted",
            "t-1",
            app.tenant_id,
            trip,
            departure,
            "SCHEDULED",
            Utc::now(),
        ),
    )
    .await;
    let (_, _, ana) = book(&app, trip, "55 3333 0001").await;
    post_ok(
        &app,
        &trip_event(
            "trip_upserted",
            "t-2",
            app.tenant_id,
            trip,
            departure,
            "CANCELLED",
            Utc::now() + chrono::Duration::seconds(1),
        ),
    )
    .await;
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        app.temporal()
            .await
            .get_workflow_handle::<TripReminderWorkflow>(&trip_reminder_workflow_id(
                app.tenant_id,
                trip,
            ))
            .get_result(WorkflowGetResultOptions::default()),
    )
    .await
    .expect("reminder ended")
    .expect("reminder result");
    assert_eq!(
        outcome,
        ReminderOutcome::Ended {
            status: "CANCELLED".to_owned()
        }
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        reminders_to(&app, ana).await.is_empty(),
        "no reminder past the time it would have fired"
    );
}

#[tokio::test]
async fn a_booking_inside_the_lead_time_is_reminded_at_once() {
    let app = reminding_tenant().await;
    let trip = Uuid::new_v4();
    // Departs in 10 minutes: the one-hour reminder time has passed.
    post_ok(
        &app,
        &trip_event(
            "trip_upserted",
            "soon",
            app.tenant_id,
            trip,
            Utc::now() + chrono::Duration::minutes(10),
            "SCHEDULED",
            Utc::now(),
        ),
    )
    .await;
    let (_, _, ana) = book(&app, trip, "55 4444 0001").await;
    app.eventually("Ana's reminder", Duration::from_secs(20), || async {
        (!reminders_to(&app, ana).await.is_empty()).then_some(())
    })
    .await;
    // A second passenger after the batch went out is reminded on their own.
    let (_, _, luis) = book(&app, trip, "55 4444 0002").await;
    app.eventually("Luis's reminder", Duration::from_secs(20), || async {
        (!reminders_to(&app, luis).await.is_empty()).then_some(())
    })
    .await;
    assert_eq!(reminders_to(&app, ana).await.len(), 1, "Ana only once");
}

#[tokio::test]
async fn a_delay_reaches_every_passenger_and_the_driver_once() {
    let app = TestApp::spawn().await;
    app.add_sandbox_sms_account(None, None).await;
    let trip = Uuid::new_v4();
    let departure = Utc::now() + chrono::Duration::hours(5);
    post_ok(
        &app,
        &trip_event(
            "trip_upserted",
            "d-0",
            app.tenant_id,
            trip,
            departure,
            "SCHEDULED",
            Utc::now(),
        ),
    )
    .await;
    let mut passengers = Vec::new();
    for i in 0..3 {
        passengers.push(book(&app, trip, &format!("55 5555 000{i}")).await.2);
    }
    let driver_id = Uuid::new_v4();
    let driver: Uuid = sqlx::query_scalar(
        "insert into contacts (tenant_id, kind, display_name, identifiers, driver_id)
         values ($1, 'DRIVER', 'Chofer', '{\"phone\": \"+525599990000\"}', $2) returning id",
    )
    .bind(app.tenant_id)
    .bind(driver_id)
    .fetch_one(&app.pool)
    .await
    .expect("driver contact");
    let mut delayed = trip_event(
        "trip_delayed",
        "delay-1",
        app.tenant_id,
        trip,
        departure + chrono::Duration::minutes(45),
        "DELAYED",
        Utc::now() + chrono::Duration::seconds(1),
    );
    delayed["event"]["data"]["new"]["driver_id"] = serde_json::json!(driver_id);
    let body = post_ok(&app, &delayed).await;
    assert_eq!(body["outcome"], "started");
    let batch_id = fanout_workflow_id(app.tenant_id, "delay-1");
    assert_eq!(body["workflow_id"], batch_id);
    let replay = post_ok(&app, &delayed).await;
    assert_eq!(replay["outcome"], "already_started");

    let progress: BatchProgress = tokio::time::timeout(
        Duration::from_secs(60),
        app.temporal()
            .await
            .get_workflow_handle::<BatchNotificationWorkflow>(&batch_id)
            .get_result(WorkflowGetResultOptions::default()),
    )
    .await
    .expect("batch finished")
    .expect("batch result");
    assert_eq!(progress.dispatched, 4, "{progress:?}");
    assert_eq!(progress.delivered, 4, "{progress:?}");
    let per_recipient: Vec<(Uuid, i64)> = sqlx::query_as(
        "select contact_id, count(*) from messages
          where tenant_id = $1 and trigger_event = 'trip_delayed' group by contact_id",
    )
    .bind(app.tenant_id)
    .fetch_all(&app.pool)
    .await
    .expect("messages");
    assert_eq!(per_recipient.len(), 4);
    assert!(
        per_recipient.iter().all(|(_, n)| *n == 1),
        "{per_recipient:?}"
    );
    assert!(
        per_recipient.iter().any(|(c, _)| *c == driver),
        "the driver too"
    );
    let body: String = sqlx::query_scalar(
        "select body from messages where tenant_id = $1 and trigger_event = 'trip_delayed' limit 1",
    )
    .bind(app.tenant_id)
    .fetch_one(&app.pool)
    .await
    .expect("body");
    let local = (departure + chrono::Duration::minutes(45))
        .with_timezone(&chrono::FixedOffset::west_opt(6 * 3600).expect("offset"))
        .format("%Y-%m-%d %H:%M")
        .to_string();
    assert!(body.contains(&local), "new departure in local time: {body}");
    for passenger in passengers {
        assert!(per_recipient.iter().any(|(c, _)| *c == passenger.0));
    }
}

#[tokio::test]
async fn unusable_trip_events_are_refused_by_name_and_write_nothing() {
    let app = TestApp::spawn().await;
    let trip = Uuid::new_v4();
    let departure = Utc::now() + chrono::Duration::hours(5);
    let error_of = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("JSON error body");
        (
            status,
            body["extensions"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            body["message"].as_str().unwrap_or_default().to_owned(),
        )
    };

    let mut bad_departure = trip_event(
        "trip_upserted",
        "bad-1",
        app.tenant_id,
        trip,
        departure,
        "SCHEDULED",
        Utc::now(),
    );
    bad_departure["event"]["data"]["new"]["departure_at"] = serde_json::json!("tomorrow-ish");
    let (status, code, message) = error_of(app.post_event(&bad_departure).await).await;
    assert_eq!((status, code.as_str()), (400, "INVALID_ROW"), "{message}");
    assert!(message.contains("departure_at"), "{message}");

    let mut bad_time = trip_event(
        "trip_upserted",
        "bad-2",
        app.tenant_id,
        trip,
        departure,
        "SCHEDULED",
        Utc::now(),
    );
    bad_time["created_at"] = serde_json::json!("yesterday");
    let (status, code, message) = error_of(app.post_event(&bad_time).await).await;
    assert_eq!(
        (status, code.as_str()),
        (400, "INVALID_PAYLOAD"),
        "{message}"
    );
    assert!(message.contains("created_at"), "{message}");

    let mut incident = trip_event(
        "incident_created",
        "bad-3",
        app.tenant_id,
        Uuid::new_v4(),
        departure,
        "OPEN",
        Utc::now(),
    );
    incident["table"]["name"] = serde_json::json!("incidents");
    let (status, code, message) = error_of(app.post_event(&incident).await).await;
    assert_eq!((status, code.as_str()), (400, "INVALID_ROW"), "{message}");
    assert!(message.contains("trip_id"), "{message}");

    let written = app
        .count(&format!(
            "select (select count(*) from trips where tenant_id = '{0}')
                  + (select count(*) from trip_bookings where tenant_id = '{0}')",
            app.tenant_id
        ))
        .await;
    assert_eq!(written, 0, "nothing written");
}
