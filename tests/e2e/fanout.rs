//! Fan-out in chunks: a trip-wide event reaches each passenger once, counted
//! at the providers (the Graph fake's requests, moto's SMS); whoever WhatsApp
//! does not deliver to falls back to SMS on their own; and the account's
//! send rate holds across chunks.

use crate::support::meta::{WHATSAPP_LANGUAGE, WHATSAPP_TEMPLATE, messages_path, meta_secrets};
use crate::support::{TestApp, TestOptions};
use busflow_activities::model::ContactId;
use busflow_workflows::names::fanout_workflow_id;
use busflow_workflows::{BatchNotificationWorkflow, BatchProgress};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use temporalio_client::WorkflowGetResultOptions;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// The Graph API accepting every message under an id of its recipient.
fn accepts_each_as_its_own_wamid(request: &Request) -> ResponseTemplate {
    let to = serde_json::from_slice::<Value>(&request.body)
        .ok()
        .and_then(|b| b["to"].as_str().map(str::to_owned))
        .unwrap_or_default();
    ResponseTemplate::new(200).set_body_json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": to}],
        "messages": [{"id": wamid_of(&to)}]
    }))
}

fn wamid_of(to: &str) -> String {
    format!("wamid.fanout-{}", to.trim_start_matches('+'))
}

/// `n` passengers with phones of their own (moto is shared by every test),
/// booked on `trip`; returns (contact, phone) each.
async fn booked_passengers(app: &TestApp, trip: Uuid, n: usize) -> Vec<(ContactId, String)> {
    let mut passengers = Vec::new();
    for i in 0..n {
        let phone = format!(
            "+52{}",
            app.unique_phone()
                .chars()
                .filter(char::is_ascii_digit)
                .collect::<String>()
        );
        let contact: Uuid = sqlx::query_scalar(
            "insert into contacts (tenant_id, display_name, identifiers, passenger_profile_id, locale)
             values ($1, $2, jsonb_build_object('phone', $3::text), gen_random_uuid(), 'es-MX')
             returning id",
        )
        .bind(app.tenant_id)
        .bind(format!("Pasajera {i}"))
        .bind(&phone)
        .fetch_one(&app.pool)
        .await
        .expect("passenger");
        passengers.push((ContactId(contact), phone));
    }
    book_all(app, trip, passengers.iter().map(|(c, _)| *c).collect()).await;
    passengers
}

async fn book_all(app: &TestApp, trip: Uuid, contacts: Vec<ContactId>) {
    sqlx::query(
        "insert into trip_bookings (tenant_id, booking_id, trip_id, contact_id, status, source_version)
         select $1, gen_random_uuid(), $2, c, 'CONFIRMED', now() from unnest($3::uuid[]) as c",
    )
    .bind(app.tenant_id)
    .bind(trip)
    .bind(contacts.iter().map(|c| c.0).collect::<Vec<_>>())
    .execute(&app.pool)
    .await
    .expect("bookings");
}

/// Posts `trip_delayed` for `trip` and waits for its fan-out's counts.
async fn delay(app: &TestApp, trip: Uuid, event_id: &str) -> BatchProgress {
    let event = crate::support::app::trip_event(
        "trip_delayed",
        event_id,
        app.tenant_id,
        trip,
        Utc::now() + chrono::Duration::days(3),
        "DELAYED",
        Utc::now(),
    );
    assert_eq!(app.post_event(&event).await.status(), 200);
    tokio::time::timeout(
        Duration::from_secs(120),
        app.temporal()
            .await
            .get_workflow_handle::<BatchNotificationWorkflow>(&fanout_workflow_id(
                app.tenant_id,
                event_id,
            ))
            .get_result(WorkflowGetResultOptions::default()),
    )
    .await
    .expect("the fan-out finished")
    .expect("the fan-out succeeded")
}

#[tokio::test]
async fn passengers_whatsapp_does_not_deliver_to_get_one_sms_each_and_the_rest_none() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(accepts_each_as_its_own_wamid)
        .mount(&graph)
        .await;
    let app = TestApp::spawn_with(TestOptions {
        meta_graph_url: Some(graph.uri()),
        ..TestOptions::default()
    })
    .await;
    let secrets = meta_secrets();
    app.add_whatsapp_account(&secrets).await;
    app.add_sms_account().await;
    sqlx::query(
        "insert into notification_templates
            (tenant_id, trigger_event, channel, locale, body,
             whatsapp_template_name, whatsapp_language, whatsapp_parameters)
         values ($1, 'trip_delayed', 'WHATSAPP', 'es',
                 'Hola {{ contact.first_name }}, tu viaje sale más tarde', $2, $3, $4)",
    )
    .bind(app.tenant_id)
    .bind(WHATSAPP_TEMPLATE)
    .bind(WHATSAPP_LANGUAGE)
    .bind(json!({"body": ["contact.first_name"]}))
    .execute(&app.pool)
    .await
    .expect("WhatsApp template");
    sqlx::query("update tenant_settings set trigger_overrides = $2 where tenant_id = $1")
        .bind(app.tenant_id)
        .bind(json!({"trip_delayed": {"chain": ["WHATSAPP", "SMS"], "timeouts": {"WHATSAPP": 4}}}))
        .execute(&app.pool)
        .await
        .expect("override");
    let trip = Uuid::new_v4();
    let passengers = booked_passengers(&app, trip, 4).await;
    let [delivered, read, failed, silent] = [0, 1, 2, 3].map(|i| passengers[i].1.clone());

    // Meta reports on the first three as each of their sends is recorded;
    // the fourth stays silent.
    let reports = async {
        for (phone, status) in [
            (&delivered, "delivered"),
            (&read, "read"),
            (&failed, "failed"),
        ] {
            let wamid = wamid_of(phone);
            app.eventually(
                &format!("{wamid} recorded"),
                Duration::from_secs(30),
                || async {
                    (app.count(&format!(
                        "select count(*) from messages where external_message_id = '{wamid}'"
                    ))
                    .await
                        == 1)
                        .then_some(())
                },
            )
            .await;
            let at = Utc::now().timestamp();
            let mut statuses = vec![(wamid.as_str(), "sent", at)];
            statuses.push((wamid.as_str(), status, at));
            let answer = app
                .meta_reports(
                    app.tenant_id,
                    secrets.app_secret.as_deref().expect("secret"),
                    &statuses,
                )
                .await;
            assert!(answer["applied"].as_u64() >= Some(1), "{answer}");
        }
    };
    let (progress, ()) = tokio::join!(delay(&app, trip, "delay-fallback"), reports);

    assert_eq!(
        (progress.delivered, progress.failed, progress.unconfirmed),
        (4, 0, 0),
        "{progress:?}"
    );
    let mut whatsapp: HashMap<String, usize> = HashMap::new();
    for request in graph.received_requests().await.unwrap_or_default() {
        let body: Value = serde_json::from_slice(&request.body).expect("json");
        *whatsapp
            .entry(body["to"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    for (_, phone) in &passengers {
        assert_eq!(
            whatsapp
                .get(phone.trim_start_matches('+'))
                .or(whatsapp.get(phone)),
            Some(&1),
            "one WhatsApp message to {phone}: {whatsapp:?}"
        );
    }
    let sms = app.sent_sms("").await;
    let sms_to = |phone: &str| sms.iter().filter(|m| m.phone_number == phone).count();
    assert_eq!(sms_to(&delivered), 0, "delivered on WhatsApp: no SMS");
    assert_eq!(sms_to(&read), 0, "read on WhatsApp: no SMS");
    assert_eq!(sms_to(&failed), 1, "WhatsApp failed: one SMS");
    assert_eq!(sms_to(&silent), 1, "no receipt within the window: one SMS");
}

#[tokio::test]
async fn a_fan_out_over_several_chunks_never_exceeds_the_accounts_send_rate() {
    let app = TestApp::spawn().await;
    // 100 messages a second, a burst of 10, shared by every chunk.
    app.add_sandbox_sms_account(Some(100.0), Some(10)).await;
    let trip = Uuid::new_v4();
    let contacts: Vec<ContactId> = app
        .insert_passengers(1_200)
        .await
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    book_all(&app, trip, contacts).await;

    let progress = delay(&app, trip, "delay-paced").await;
    assert_eq!(progress.chunks, 3, "{progress:?}");
    assert_eq!(progress.delivered, 1_200, "{progress:?}");
    let claims: Vec<DateTime<Utc>> = sqlx::query_scalar(
        "select send_claimed_at from messages
          where tenant_id = $1 and trigger_event = 'trip_delayed' order by send_claimed_at",
    )
    .bind(app.tenant_id)
    .fetch_all(&app.pool)
    .await
    .expect("claims");
    assert_eq!(claims.len(), 1_200);
    // The booked slots never exceed the rate plus the burst; a send leaves
    // at or after its slot, so a loaded machine that stalls a worker for a
    // moment bunches a few. Over any three seconds: at most 3 × 100 + 10,
    // and half a second's worth for the stalls. Without the shared limit
    // the three chunks send all 1,200 within about three seconds.
    let window = chrono::Duration::seconds(3);
    let busiest = claims
        .iter()
        .enumerate()
        .map(|(i, start)| {
            claims[i..]
                .iter()
                .take_while(|at| **at - *start < window)
                .count()
        })
        .max()
        .unwrap_or_default();
    assert!(
        busiest <= 3 * 100 + 10 + 50,
        "{busiest} sends in three seconds"
    );
    let span = *claims.last().expect("last") - claims[0];
    assert!(
        span >= chrono::Duration::milliseconds(10_500),
        "1,200 sends at 100/s take over 10.5 s, took {span}"
    );
}
