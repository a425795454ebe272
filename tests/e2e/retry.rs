//! Ops retry a failed message: a fresh, linked delivery, once.

use crate::support::TestApp;
use serde_json::{Value, json};
use uuid::Uuid;

#[tokio::test]
async fn retrying_a_failed_email_starts_one_linked_delivery_that_sends_it() {
    let app = TestApp::spawn().await;
    app.add_email_account(false).await;
    let profile = Uuid::new_v4();
    let contact = app
        .upsert_passenger(profile, "Ana López", &app.recipient("ana"), "es-MX")
        .await;
    let original = app.confirm_booking(profile, contact, "BF-RETRY").await;
    app.workflow_result(&original)
        .await
        .expect_err("unverified sender: fails");
    let failed: Uuid = sqlx::query_scalar("select id from messages where workflow_id = $1")
        .bind(&original)
        .fetch_one(&app.pool)
        .await
        .expect("failed message");

    // Ops fix the sender domain, then retry from the inbox.
    app.add_email_account(true).await;
    let response = app
        .post_action("retryMessage", json!({"message_id": failed}), "dispatcher")
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    let retry_id = format!("{original}/retry/{failed}");
    assert_eq!(body["workflow_id"], retry_id.as_str());
    assert_eq!(body["result"], "started");
    let again: Value = app
        .post_action("retryMessage", json!({"message_id": failed}), "admin")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(again["result"], "already_started");

    app.workflow_result(&retry_id).await.expect("sent on retry");
    assert_eq!(app.sent_emails().await.len(), 1);
    let (status, replaces): (String, Option<Uuid>) =
        sqlx::query_as("select status, replaces_message_id from messages where workflow_id = $1")
            .bind(&retry_id)
            .fetch_one(&app.pool)
            .await
            .expect("retry message");
    assert_eq!(status, "SENT");
    assert_eq!(
        replaces,
        Some(failed),
        "the new message replaces the failed one"
    );

    // A message that did not fail is not retried.
    let sent: Uuid = sqlx::query_scalar("select id from messages where workflow_id = $1")
        .bind(&retry_id)
        .fetch_one(&app.pool)
        .await
        .expect("sent message");
    let response = app
        .post_action("retryMessage", json!({"message_id": sent}), "admin")
        .await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["extensions"]["code"], "MESSAGE_NOT_FAILED");
}

#[tokio::test]
async fn retry_stays_inside_the_sessions_tenant_and_role() {
    let app = TestApp::spawn_with(crate::support::TestOptions {
        start_worker: false,
        ..Default::default()
    })
    .await;
    let someone_elses = Uuid::new_v4();
    let response = app
        .post_action(
            "retryMessage",
            json!({"message_id": someone_elses}),
            "admin",
        )
        .await;
    assert_eq!(response.status(), 404);

    let response = app
        .post_action(
            "retryMessage",
            json!({"message_id": someone_elses}),
            "passenger",
        )
        .await;
    assert_eq!(response.status(), 403);

    let response = app
        .post_action_as(
            "retryMessage",
            json!({"message_id": someone_elses}),
            json!({"x-hasura-role": "admin"}),
        )
        .await;
    assert_eq!(response.status(), 403, "no tenant in the session");

    let response = app
        .post_action("retryMessage", json!({"id": "x"}), "admin")
        .await;
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["extensions"]["code"], "INVALID_INPUT");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("message_id")),
        "{body}"
    );

    let response = app.post_action("launchRocket", json!({}), "admin").await;
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["extensions"]["code"], "UNKNOWN_ACTION");
}

/// A WhatsApp number that refuses every message as undeliverable (131026).
async fn add_refusing_whatsapp(app: &TestApp) {
    sqlx::query(
        "insert into channel_accounts (tenant_id, channel, provider, status, mode, provider_config, external_account_id)
         values ($1, 'WHATSAPP', 'META_CLOUD', 'ACTIVE', 'SANDBOX',
                 '{\"phone_number_id\": \"1\", \"sandbox\": {\"outcome\": \"undeliverable\"}}', '1')",
    )
    .bind(app.tenant_id)
    .execute(&app.pool)
    .await
    .expect("sandbox WhatsApp");
}

async fn failed_whatsapp_message(app: &TestApp, workflow_id: &str) -> Uuid {
    app.eventually("the WhatsApp attempt failed", std::time::Duration::from_secs(30), || async {
        sqlx::query_scalar(
            "select id from messages where workflow_id = $1 and channel = 'WHATSAPP' and status = 'FAILED'",
        )
        .bind(workflow_id)
        .fetch_optional(&app.pool)
        .await
        .ok()
        .flatten()
    })
    .await
}

#[tokio::test]
async fn a_failed_message_whose_notification_got_through_by_email_is_not_sent_again() {
    let app = TestApp::spawn().await;
    add_refusing_whatsapp(&app).await;
    app.add_email_account(true).await;
    let profile = Uuid::new_v4();
    let contact = app
        .upsert_passenger(profile, "Ana López", &app.recipient("ana"), "es-MX")
        .await;
    let workflow_id = app.confirm_booking(profile, contact, "BF-TWICE").await;
    app.workflow_result(&workflow_id)
        .await
        .expect("delivered by email");
    let failed = failed_whatsapp_message(&app, &workflow_id).await;

    let response = app
        .post_action("retryMessage", json!({"message_id": failed}), "dispatcher")
        .await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["extensions"]["code"], "ALREADY_DELIVERED", "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("EMAIL")),
        "{body}"
    );
    assert_eq!(
        app.sent_emails().await.len(),
        1,
        "one email, never a second"
    );
}

#[tokio::test]
async fn a_failed_message_of_a_notification_still_trying_is_not_retried_beside_it() {
    let dead = format!(
        "http://127.0.0.1:{}",
        busflow_comms::dev::processes::free_port().expect("port")
    );
    // SES does not answer: the email keeps retrying, the notification runs.
    let app = TestApp::spawn_with(crate::support::TestOptions {
        aws_endpoint: Some(dead),
        ..Default::default()
    })
    .await;
    add_refusing_whatsapp(&app).await;
    app.add_email_account(false).await;
    let profile = Uuid::new_v4();
    let contact = app
        .upsert_passenger(profile, "Ana López", &app.recipient("ana"), "es-MX")
        .await;
    let workflow_id = app.confirm_booking(profile, contact, "BF-BUSY").await;
    let failed = failed_whatsapp_message(&app, &workflow_id).await;

    let response = app
        .post_action("retryMessage", json!({"message_id": failed}), "admin")
        .await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["extensions"]["code"], "STILL_RUNNING", "{body}");
    let retry = format!("{workflow_id}/retry/{failed}");
    assert_eq!(
        app.gateway()
            .workflow_state(&retry)
            .await
            .expect("Temporal"),
        busflow_activities::workflow_state::WorkflowState::Missing,
        "no second delivery started"
    );
}
