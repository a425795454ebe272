//! The first real path: a confirmed booking becomes one email, sent once.

use crate::support::app::aws_settings;
use crate::support::services::forward_port;
use crate::support::{TestApp, TestOptions, booking_event};
use busflow_activities::providers::whatsapp::meta::MetaSettings;
use busflow_comms::dev::processes::free_port;
use busflow_comms::worker;
use busflow_workflows::names::notification_workflow_id;
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

#[tokio::test]
async fn a_confirmed_booking_emails_the_passenger_and_records_it_sent() {
    let app = TestApp::spawn().await;
    app.add_email_account(true).await;
    let profile = Uuid::new_v4();
    let email = app.recipient("ana");
    let contact = app
        .upsert_passenger(profile, "Ana López", &email, "es-MX")
        .await;

    let event_id = Uuid::new_v4().to_string();
    let response = app
        .post_event(&booking_event(&event_id, app.tenant_id, profile, "BF-7Q2K"))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["outcome"], "started");
    let workflow_id = notification_workflow_id(app.tenant_id, &event_id, contact);
    assert_eq!(body["workflow_id"], workflow_id.as_str());

    let outcome = app
        .workflow_result(&workflow_id)
        .await
        .expect("notification sent");

    let emails = app.sent_emails().await;
    assert_eq!(emails.len(), 1, "exactly one email: {emails:?}");
    let sent = &emails[0];
    assert_eq!(sent.to(), vec![email.clone()]);
    assert!(
        sent.source.contains(&app.sender()),
        "from the tenant's sender: {}",
        sent.source
    );
    // es-MX has no template of its own: the platform's "es" template is used.
    assert_eq!(sent.subject, "Tu reservación BF-7Q2K está confirmada");
    assert!(sent.body.contains("Hola Ana"), "{}", sent.body);
    assert!(sent.body.contains("Asiento: 14B"), "{}", sent.body);
    let delivered = outcome.delivered.expect("a message got through");
    assert_eq!(sent.id, delivered.external_message_id);
    assert_eq!(
        delivered.status.as_str(),
        "SENT",
        "no SES events configured: done once sent"
    );

    let (status, external_id, subject, sent_at): (
        String,
        Option<String>,
        Option<String>,
        Option<chrono::DateTime<chrono::Utc>>,
    ) = sqlx::query_as(
        "select status, external_message_id, subject, sent_at from messages where workflow_id = $1",
    )
    .bind(&workflow_id)
    .fetch_one(&app.pool)
    .await
    .expect("one message row");
    assert_eq!(status, "SENT");
    assert_eq!(external_id.as_deref(), Some(sent.id.as_str()));
    assert_eq!(
        subject.as_deref(),
        Some("Tu reservación BF-7Q2K está confirmada")
    );
    assert!(sent_at.is_some());
}

#[tokio::test]
async fn a_replayed_hasura_event_sends_nothing_twice() {
    let app = TestApp::spawn().await;
    app.add_email_account(true).await;
    let profile = Uuid::new_v4();
    let contact = app
        .upsert_passenger(profile, "Ana López", &app.recipient("ana"), "es-MX")
        .await;
    let event_id = Uuid::new_v4().to_string();
    let event = booking_event(&event_id, app.tenant_id, profile, "BF-REPLAY");

    let first = app.post_event(&event).await;
    assert_eq!(first.status(), 200);
    // Hasura retries while the workflow runs...
    let while_running: Value = app.post_event(&event).await.json().await.expect("json");
    let workflow_id = notification_workflow_id(app.tenant_id, &event_id, contact);
    app.workflow_result(&workflow_id).await.expect("sent");
    // ...and again after it finished.
    let after_done = app.post_event(&event).await;
    assert_eq!(after_done.status(), 200);
    let after_done: Value = after_done.json().await.expect("json");

    assert_eq!(while_running["outcome"], "already_started");
    assert_eq!(after_done["outcome"], "already_started");
    assert_eq!(after_done["workflow_id"], workflow_id.as_str());
    assert_eq!(app.sent_emails().await.len(), 1);
    assert_eq!(app.count("select count(*) from messages").await, 1);
}

/// The Temporal UI queries the README gives ops ("Try it"), as written there.
fn readme_queries() -> Vec<String> {
    let readme = include_str!("../../README.md");
    let list = readme
        .split_once("found by any of these queries in the search box:")
        .expect("the README lists the queries")
        .1;
    list.lines()
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.trim_start().strip_prefix("- `"))
        .filter_map(|line| line.split_once('`').map(|(query, _)| query.to_owned()))
        .collect()
}

#[tokio::test]
async fn every_query_the_readme_gives_ops_finds_a_notification_that_fell_back() {
    const DEMO_TENANT: &str = "00000000-0000-4000-8000-000000000001";
    const DEMO_BOOKING: &str = "5b0f3c1e-1111-4c2d-8e3f-000000000001";
    const DEMO_TRIP: &str = "9d9d9d9d-2222-4c2d-8e3f-000000000001";
    let queries = readme_queries();
    assert!(queries.len() >= 5, "the README's queries: {queries:?}");

    let app = TestApp::spawn().await;
    app.email_with_receipts_then_webchat(2).await;
    let profile = Uuid::new_v4();
    let contact = app
        .upsert_passenger(profile, "John Smith", &app.recipient("john"), "en-US")
        .await;
    sqlx::query("update contacts set identifiers = identifiers || '{\"webchat\": \"visitor1\"}' where id = $1")
        .bind(contact.0)
        .execute(&app.pool)
        .await
        .expect("visitor");
    let (booking, trip) = (Uuid::new_v4(), Uuid::new_v4());
    let event_id = Uuid::new_v4().to_string();
    let mut event = booking_event(&event_id, app.tenant_id, profile, "BF-FIND");
    event["event"]["data"]["new"]["id"] = json!(booking);
    event["event"]["data"]["new"]["trip_id"] = json!(trip);
    assert_eq!(app.post_event(&event).await.status(), 200);
    let workflow_id = notification_workflow_id(app.tenant_id, &event_id, contact);
    app.visitor_fetches("visitor1").await;
    let outcome = app.workflow_result(&workflow_id).await.expect("delivered");
    assert_eq!(
        outcome.attempts.len(),
        2,
        "fell back: {:?}",
        outcome.attempts
    );
    let messages: Vec<Uuid> =
        sqlx::query_scalar("select id from messages where workflow_id = $1 order by attempt")
            .bind(&workflow_id)
            .fetch_all(&app.pool)
            .await
            .expect("messages");
    assert_eq!(messages.len(), 2, "the email, then the webchat message");

    let client = app.temporal().await;
    for written in &queries {
        let query = written
            .replace(DEMO_TENANT, &app.tenant_id.to_string())
            .replace(DEMO_BOOKING, &booking.to_string())
            .replace(DEMO_TRIP, &trip.to_string())
            .replace("<contacts.id>", &contact.to_string());
        let each_message: Vec<String> = if query.contains("<messages.id>") {
            messages
                .iter()
                .map(|m| query.replace("<messages.id>", &m.to_string()))
                .collect()
        } else {
            vec![query]
        };
        for query in each_message {
            // Other tests share the server: only this test's tenant counts.
            let scoped = format!("TenantId = '{}' AND ({query})", app.tenant_id);
            let found = app
                .eventually(
                    &format!("the README's query {written} ({query})"),
                    Duration::from_secs(20),
                    || {
                        let client = client.clone();
                        let scoped = scoped.clone();
                        let workflow_id = workflow_id.clone();
                        async move {
                            use futures::StreamExt;
                            let ids: Vec<String> = client
                                .list_workflows(scoped, Default::default())
                                .filter_map(|r| async move { r.ok().map(|w| w.id().to_owned()) })
                                .collect()
                                .await;
                            ids.contains(&workflow_id).then_some(ids)
                        }
                    },
                )
                .await;
            if query.contains("MessageIds") || query.contains("ContactId") {
                // The booking's trip reminder shares the tenant, booking and
                // trip; only the notification sent these messages.
                assert_eq!(found, vec![workflow_id.clone()], "{query}");
            }
        }
    }
}

#[tokio::test]
async fn a_tenant_template_overrides_the_platform_default_and_a_missing_variable_is_named() {
    let app = TestApp::spawn().await;
    app.add_email_account(true).await;
    sqlx::query(
        "insert into notification_templates (tenant_id, trigger_event, channel, locale, subject, body)
         values ($1, 'booking_confirmed', 'EMAIL', 'es', 'Andén {{ booking.platform_gate }}', 'x')",
    )
    .bind(app.tenant_id)
    .execute(&app.pool)
    .await
    .expect("tenant template");
    let profile = Uuid::new_v4();
    let contact = app
        .upsert_passenger(profile, "Ana López", &app.recipient("ana"), "es-MX")
        .await;
    let workflow_id = app.confirm_booking(profile, contact, "BF-GATE").await;

    let error = app
        .workflow_result(&workflow_id)
        .await
        .expect_err("the workflow fails");
    assert!(
        error.contains("booking.platform_gate"),
        "names the variable: {error}"
    );
    assert!(app.sent_emails().await.is_empty());
    assert_eq!(app.count("select count(*) from messages").await, 0);
}

#[tokio::test]
async fn an_unverified_sender_fails_the_message_with_the_reason_and_stops_retrying() {
    let app = TestApp::spawn().await;
    app.add_email_account(false).await;
    let profile = Uuid::new_v4();
    let contact = app
        .upsert_passenger(profile, "Ana López", &app.recipient("ana"), "es-MX")
        .await;
    let workflow_id = app.confirm_booking(profile, contact, "BF-REJ").await;

    let error = app
        .workflow_result(&workflow_id)
        .await
        .expect_err("undeliverable");
    assert!(error.contains("MessageRejected"), "{error}");

    let (status, reason, failed_at): (
        String,
        Option<String>,
        Option<chrono::DateTime<chrono::Utc>>,
    ) = sqlx::query_as(
        "select status, failed_reason, failed_at from messages where workflow_id = $1",
    )
    .bind(&workflow_id)
    .fetch_one(&app.pool)
    .await
    .expect("message row");
    assert_eq!(status, "FAILED");
    let reason = reason.expect("a reason");
    assert!(reason.contains("MessageRejected"), "{reason}");
    assert!(failed_at.is_some());
    assert!(app.sent_emails().await.is_empty());

    let client = app.temporal().await;
    let description = client
        .get_workflow_handle::<busflow_workflows::NotificationWorkflow>(&workflow_id)
        .describe(Default::default())
        .await
        .expect("describe");
    assert!(
        description.raw_description.pending_activities.is_empty(),
        "no dispatch left retrying after a permanent rejection"
    );
}

#[tokio::test]
async fn a_ses_outage_is_retried_with_backoff_and_the_email_goes_out_once_it_recovers() {
    let port = free_port().expect("port");
    let endpoint = format!("http://127.0.0.1:{port}");
    let app = TestApp::spawn_with(TestOptions {
        aws_endpoint: Some(endpoint.clone()),
        ..TestOptions::default()
    })
    .await;
    // The sender is verified on the shared emulator, but nothing listens on
    // the app's SES endpoint yet.
    let shared_moto = crate::support::services::shared().aws_endpoint.clone();
    worker::providers(&aws_settings(&shared_moto), MetaSettings::default(), None)
        .await
        .expect("providers")
        .ses
        .create_domain_identity(&app.domain)
        .await
        .expect("verify the sender on the shared emulator");
    busflow_comms::dev::seed::upsert_email_account(
        &app.pool,
        app.tenant_id,
        &app.sender(),
        "Prueba",
    )
    .await
    .expect("account");
    let profile = Uuid::new_v4();
    let contact = app
        .upsert_passenger(profile, "Ana López", &app.recipient("ana"), "es-MX")
        .await;
    let workflow_id = app.confirm_booking(profile, contact, "BF-OUT").await;

    let client = app.temporal().await;
    // Two failed dispatches in the history: a retry after backing off.
    app.eventually("a second dispatch attempt", Duration::from_secs(30), || {
        let handle =
            client.get_workflow_handle::<busflow_workflows::NotificationWorkflow>(&workflow_id);
        async move {
            let events = handle
                .fetch_history(Default::default())
                .into_events()
                .await
                .ok()?;
            let failed_dispatches = events
                .iter()
                .filter(|e| {
                    matches!(
                        &e.attributes,
                        Some(temporalio_common::protos::temporal::api::history::v1::history_event::Attributes::MarkerRecordedEventAttributes(m))
                            if m.failure.is_some()
                    )
                })
                .count();
            (failed_dispatches >= 2).then_some(())
        }
    })
    .await;
    assert_eq!(
        app.count("select count(*) from messages where status = 'QUEUED'")
            .await,
        1,
        "still queued while SES is down"
    );

    // SES comes back, already knowing the sender.
    let _forwarder = forward_port(port, shared_moto.trim_start_matches("http://").to_owned()).await;
    app.workflow_result(&workflow_id)
        .await
        .expect("sent after recovery");
    assert_eq!(app.sent_emails().await.len(), 1);
    assert_eq!(
        app.count("select count(*) from messages where status = 'SENT'")
            .await,
        1
    );
}

#[tokio::test]
async fn a_notification_on_a_channel_without_receipts_costs_at_most_twelve_history_events() {
    let app = TestApp::spawn().await;
    app.add_sandbox_sms_account(None, None).await;
    let profile = Uuid::new_v4();
    let phone = app.unique_phone();
    let contact = app.upsert_passenger_with_phone(profile, &phone).await;
    let workflow_id = app.confirm_booking(profile, contact, "BF-EVENTS").await;
    let outcome = app.workflow_result(&workflow_id).await.expect("sent");
    assert_eq!(
        outcome.delivered.as_ref().map(|d| d.channel.as_str()),
        Some("SMS"),
        "{outcome:?}"
    );
    let events = app
        .temporal()
        .await
        .get_workflow_handle::<busflow_workflows::NotificationWorkflow>(&workflow_id)
        .fetch_history(Default::default())
        .into_events()
        .await
        .expect("history");
    let kinds: Vec<_> = events.iter().map(|e| e.event_type()).collect();
    assert!(kinds.len() <= 12, "{} events: {kinds:?}", kinds.len());
}
