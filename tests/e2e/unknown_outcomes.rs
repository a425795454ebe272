//! A send whose outcome nobody knows (Meta took too long to answer, or
//! answered 2xx with a body that cannot be read) is never sent again on its
//! channel. Meta's receipt, matched through the message id we sent as
//! `biz_opaque_callback_data`, settles it; without one, the notification
//! moves on to the next channel when the receipt window closes. A channel
//! that stays down for the whole step deadline fails its message and falls
//! back. Counted at the Graph fake and at moto.

use crate::support::meta::{
    PASSENGER_WA_ID, PHONE_NUMBER_ID, booking_reference, messages_path, meta_secrets, sign, wamid,
};
use crate::support::{TestApp, TestOptions};
use busflow_activities::secrets::ProviderSecrets;
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A tenant on WhatsApp then email, waiting `whatsapp_window_secs` for a
/// WhatsApp receipt; returns the app, the account's secrets and Ana.
async fn whatsapp_then_email(
    graph: &MockServer,
    options: TestOptions,
    whatsapp_window_secs: u64,
) -> (
    TestApp,
    ProviderSecrets,
    Uuid,
    busflow_activities::model::ContactId,
) {
    let app = TestApp::spawn_with(TestOptions {
        meta_graph_url: Some(graph.uri()),
        ..options
    })
    .await;
    let secrets = meta_secrets();
    app.add_whatsapp_account(&secrets).await;
    app.add_whatsapp_template().await;
    app.add_email_account(true).await;
    app.override_booking_confirmed(
        &["WHATSAPP", "EMAIL"],
        json!({"WHATSAPP": whatsapp_window_secs}),
    )
    .await;
    let profile = Uuid::new_v4();
    let contact = app
        .upsert_passenger(profile, "Ana López", &app.recipient("ana"), "es-MX")
        .await;
    (app, secrets, profile, contact)
}

/// Meta's status webhook for a message we only know by our own id.
fn correlated_status(wamid: &str, status: &str, ours: Uuid) -> String {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
            "statuses": [{
                "id": wamid,
                "status": status,
                "timestamp": chrono::Utc::now().timestamp().to_string(),
                "recipient_id": PASSENGER_WA_ID,
                "biz_opaque_callback_data": ours.to_string(),
                "pricing": {"billable": true, "pricing_model": "PMP", "category": "utility", "type": "regular"}
            }]
        }}]}]
    })
    .to_string()
}

#[tokio::test]
async fn a_whatsapp_send_that_timed_out_is_not_sent_again_and_its_receipt_delivers_it() {
    let graph = MockServer::start().await;
    let wamid = wamid();
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(
            crate::support::meta::graph_accepted(&wamid).set_delay(Duration::from_secs(3)),
        )
        .mount(&graph)
        .await;
    let (app, secrets, profile, contact) = whatsapp_then_email(
        &graph,
        TestOptions {
            meta_timeout: Duration::from_millis(300),
            ..TestOptions::default()
        },
        60,
    )
    .await;

    let workflow_id = app
        .confirm_booking(profile, contact, &booking_reference("BF-SLOW"))
        .await;
    let claimed = app
        .eventually(
            "the WhatsApp send to be claimed with an unknown outcome",
            Duration::from_secs(20),
            || async {
                sqlx::query_scalar::<_, Uuid>(
                    "select id from messages where workflow_id = $1 and channel = 'WHATSAPP'
                   and status = 'SENDING' and send_unknown_reason is not null",
                )
                .bind(&workflow_id)
                .fetch_optional(&app.pool)
                .await
                .ok()
                .flatten()
            },
        )
        .await;
    let body = correlated_status(&wamid, "delivered", claimed);
    let answer = app
        .post_meta_webhook(
            app.tenant_id,
            body.clone(),
            Some(sign(secrets.app_secret.as_deref().expect("secret"), &body)),
        )
        .await;
    assert_eq!(answer.status(), 200);
    let outcome = app.workflow_result(&workflow_id).await.expect("delivered");

    let delivered = outcome.delivered.expect("delivered");
    assert_eq!(delivered.channel.as_str(), "WHATSAPP");
    assert_eq!(
        delivered.external_message_id, wamid,
        "learnt from the receipt"
    );
    let requests = graph.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 1, "one send to Meta, never a second");
    assert!(app.sent_emails().await.is_empty(), "no fallback email");
    let rows = app.messages(&workflow_id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "DELIVERED");
    assert_eq!(rows[0].external_message_id.as_deref(), Some(wamid.as_str()));
}

#[tokio::test]
async fn an_unreadable_whatsapp_acceptance_costs_at_most_one_email_when_no_receipt_comes() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"{"messaging_product":"whatsapp","contacts":[{"in"#,
            "application/json",
        ))
        .mount(&graph)
        .await;
    let (app, _secrets, profile, contact) =
        whatsapp_then_email(&graph, TestOptions::default(), 2).await;

    let workflow_id = app
        .confirm_booking(profile, contact, &booking_reference("BF-CUT"))
        .await;
    let outcome = app.workflow_result(&workflow_id).await.expect("delivered");

    let delivered = outcome.delivered.as_ref().expect("delivered");
    assert_eq!(delivered.channel.as_str(), "EMAIL", "{outcome:?}");
    assert!(
        outcome.attempts[0]
            .starts_with("WHATSAPP: outcome unknown, not sent again on this channel"),
        "{:?}",
        outcome.attempts
    );
    assert_eq!(graph.received_requests().await.expect("recorded").len(), 1);
    assert_eq!(app.sent_emails().await.len(), 1);
    let rows = app.messages(&workflow_id).await;
    assert_eq!(
        (rows[0].channel.as_str(), rows[0].status.as_str()),
        ("WHATSAPP", "SENDING"),
        "never failed: it may have reached Ana"
    );
}

#[tokio::test]
async fn a_whatsapp_outage_longer_than_the_step_deadline_fails_the_message_and_falls_back() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(ResponseTemplate::new(503).set_body_string("upstream unavailable"))
        .mount(&graph)
        .await;
    let (app, _secrets, profile, contact) = whatsapp_then_email(
        &graph,
        TestOptions {
            step_deadline: Duration::from_secs(4),
            ..TestOptions::default()
        },
        60,
    )
    .await;

    let workflow_id = app
        .confirm_booking(profile, contact, &booking_reference("BF-DOWN"))
        .await;
    let outcome = app.workflow_result(&workflow_id).await.expect("delivered");

    assert_eq!(
        outcome.delivered.as_ref().map(|d| d.channel.as_str()),
        Some("EMAIL"),
        "{outcome:?}"
    );
    let rows = app.messages(&workflow_id).await;
    assert_eq!(rows[0].status, "FAILED", "{rows:?}");
    let reason = rows[0].failed_reason.as_deref().unwrap_or_default();
    assert!(reason.contains("503"), "names the last failure: {reason}");
    assert!(
        graph.received_requests().await.expect("recorded").len() >= 2,
        "retried inside the deadline"
    );
    assert_eq!(app.sent_emails().await.len(), 1);
}
