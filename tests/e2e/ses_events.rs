//! SES delivery events arrive as signed SNS notifications: they move the
//! email's status and wake the workflow waiting for them.

use crate::support::TestApp;
use serde_json::{Value, json};
use uuid::Uuid;

/// Starts a booking notification and returns (workflow id, SES message id).
async fn email_sent(app: &TestApp) -> (String, String) {
    let profile = Uuid::new_v4();
    let contact = app
        .upsert_passenger(profile, "Ana López", &app.recipient("ana"), "es-MX")
        .await;
    sqlx::query("update contacts set identifiers = identifiers || '{\"webchat\": \"visitor9\"}' where id = $1")
        .bind(contact.0)
        .execute(&app.pool)
        .await
        .expect("visitor");
    let workflow_id = app.confirm_booking(profile, contact, "BF-SES").await;
    let ses_id = app.provider_id_once_sent(&workflow_id, "EMAIL").await;
    (workflow_id, ses_id)
}

/// The configuration set `email_with_receipts_then_webchat` sends through.
const CONFIGURATION_SET: &str = "busflow-events";

/// SES's documented Delivery record for `ses_id`, published through
/// `configuration_set`.
fn delivery_through(ses_id: &str, configuration_set: &str) -> Value {
    let mut event: Value =
        serde_json::from_str(include_str!("../fixtures/ses/delivery_event.json")).expect("fixture");
    event["mail"]["messageId"] = json!(ses_id);
    event["mail"]["timestamp"] = json!("2026-11-27T10:00:00.000Z");
    event["mail"]["tags"]["ses:configuration-set"] = json!([configuration_set]);
    event["delivery"]["timestamp"] = json!("2026-11-27T10:00:02.000Z");
    event
}

fn ses_event(kind: &str, ses_id: &str) -> Value {
    match kind {
        "Delivery" => delivery_through(ses_id, CONFIGURATION_SET),
        _ => json!({"eventType": "Bounce",
                    "mail": {"messageId": ses_id, "tags": {"ses:configuration-set": [CONFIGURATION_SET]}},
                    "bounce": {"bounceType": "Permanent", "bounceSubType": "NoEmail", "timestamp": "2026-11-27T10:00:03.000Z",
                               "bouncedRecipients": [{"emailAddress": "ana@example.com", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]}}),
    }
}

#[tokio::test]
async fn an_ses_delivery_event_marks_the_email_delivered_and_ends_the_wait() {
    let app = TestApp::spawn().await;
    app.email_with_receipts_then_webchat(600).await;
    let (workflow_id, ses_id) = email_sent(&app).await;

    let response = app
        .post_ses_event(&ses_event("Delivery", &ses_id), false)
        .await;
    assert_eq!(response.status(), 200);

    // The receipt timeout is 600 s: finishing now proves the signal woke it.
    let outcome = app.workflow_result(&workflow_id).await.expect("delivered");
    let delivered = outcome.delivered.expect("delivered");
    assert_eq!(
        (delivered.channel.as_str(), delivered.status.as_str()),
        ("EMAIL", "DELIVERED")
    );
    let delivered_at: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("select delivered_at from messages where external_message_id = $1")
            .bind(&ses_id)
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert_eq!(
        delivered_at.map(|t| t.to_rfc3339()),
        Some("2026-11-27T10:00:02+00:00".to_owned())
    );
    assert_eq!(
        app.count("select count(*) from messages where channel = 'WEBCHAT'")
            .await,
        0
    );
}

#[tokio::test]
async fn a_permanent_bounce_fails_the_email_and_falls_back_to_webchat() {
    let app = TestApp::spawn().await;
    app.email_with_receipts_then_webchat(600).await;
    let (workflow_id, ses_id) = email_sent(&app).await;

    assert_eq!(
        app.post_ses_event(&ses_event("Bounce", &ses_id), false)
            .await
            .status(),
        200
    );
    app.visitor_fetches("visitor9").await;

    let outcome = app
        .workflow_result(&workflow_id)
        .await
        .expect("delivered on webchat");
    assert_eq!(
        outcome.delivered.expect("delivered").channel.as_str(),
        "WEBCHAT"
    );
    let (status, reason): (String, Option<String>) =
        sqlx::query_as("select status, failed_reason from messages where external_message_id = $1")
            .bind(&ses_id)
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert_eq!(status, "FAILED");
    assert!(
        reason.is_some_and(|r| r.contains("550 5.1.1")),
        "the bounce diagnostic is kept"
    );
    // A Delivery event arriving after the bounce never resurrects the email.
    assert_eq!(
        app.post_ses_event(&ses_event("Delivery", &ses_id), false)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.count(&format!("select count(*) from messages where external_message_id = '{ses_id}' and status = 'FAILED'")).await,
        1
    );
}

#[tokio::test]
async fn a_forged_sns_message_is_401_and_changes_nothing() {
    let app = TestApp::spawn().await;
    app.email_with_receipts_then_webchat(600).await;
    let (_, ses_id) = email_sent(&app).await;

    let tampered = app
        .post_ses_event(&ses_event("Delivery", &ses_id), true)
        .await;
    assert_eq!(tampered.status(), 401);
    let body: Value = tampered.json().await.expect("json");
    assert_eq!(body["extensions"]["code"], "UNAUTHORIZED");

    let mut unsigned =
        busflow_api::testing::notification(&ses_event("Delivery", &ses_id).to_string());
    unsigned.signature = "bm90IGEgc2lnbmF0dXJl".to_owned();
    let response = reqwest::Client::new()
        .post(format!("{}/webhooks/ses", app.base_url))
        .body(serde_json::to_string(&unsigned).expect("json"))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 401);

    assert_eq!(
        app.count(&format!("select count(*) from messages where external_message_id = '{ses_id}' and status = 'SENT'")).await,
        1
    );
    assert_eq!(
        app.count("select count(*) from delivery_callbacks").await,
        0
    );
}

#[tokio::test]
async fn an_event_for_an_unknown_message_is_acknowledged_and_kept() {
    let app = TestApp::spawn_with(crate::support::TestOptions {
        start_worker: false,
        ..Default::default()
    })
    .await;
    let response = app
        .post_ses_event(&ses_event("Delivery", "0100-unknown-ses-id"), false)
        .await;
    assert_eq!(response.status(), 200, "SNS must not retry it for days");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["applied"], false);
    assert_eq!(
        app.count("select count(*) from delivery_callbacks where external_message_id = '0100-unknown-ses-id' and applied_at is null").await,
        1
    );
}

#[tokio::test]
async fn a_receipt_published_through_another_configuration_set_changes_nothing() {
    let app = TestApp::spawn().await;
    app.email_with_receipts_then_webchat(600).await;
    let (workflow_id, ses_id) = email_sent(&app).await;

    let foreign = app
        .post_ses_event(&delivery_through(&ses_id, "another-tenants-set"), false)
        .await;
    assert_eq!(foreign.status(), 200, "acknowledged, so SNS stops");
    let body: Value = foreign.json().await.expect("json");
    assert_eq!(body["applied"], false, "{body}");
    assert_eq!(
        app.count(&format!("select count(*) from messages where external_message_id = '{ses_id}' and status = 'SENT'")).await,
        1
    );

    let ours = app
        .post_ses_event(&ses_event("Delivery", &ses_id), false)
        .await;
    assert_eq!(ours.status(), 200);
    let outcome = app.workflow_result(&workflow_id).await.expect("delivered");
    assert_eq!(
        outcome.delivered.expect("delivered").status.as_str(),
        "DELIVERED"
    );
}

#[tokio::test]
async fn an_ses_event_from_a_topic_outside_the_list_is_refused_unread() {
    use busflow_api::testing::{TEST_KEY_PEM, notification, sign_envelope};
    let app = TestApp::spawn().await;
    app.email_with_receipts_then_webchat(600).await;
    let (_, ses_id) = email_sent(&app).await;

    // Signed by SNS all the same: any AWS account can subscribe us to its topic.
    let mut envelope = notification(&ses_event("Delivery", &ses_id).to_string());
    envelope.topic_arn = "arn:aws:sns:us-east-1:999999999999:not-ours".to_owned();
    sign_envelope(&mut envelope, TEST_KEY_PEM);
    let response = reqwest::Client::new()
        .post(format!("{}/webhooks/ses", app.base_url))
        .header("x-amz-sns-message-type", "Notification")
        .body(serde_json::to_string(&envelope).expect("json"))
        .send()
        .await
        .expect("post");

    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.expect("json");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("not-ours")),
        "{body}"
    );
    assert_eq!(
        app.count("select count(*) from delivery_callbacks").await,
        0
    );
}
