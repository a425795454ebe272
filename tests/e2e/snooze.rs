//! Durable snooze: a timer reopens the conversation; a new time moves it; a
//! resolve, an unsnooze or a message from the contact stops it.

use crate::inbox::{inbox_app_with, passenger_writes, the_conversation};
use crate::support::TestApp;
use busflow_workflows::SnoozeWorkflow;
use busflow_workflows::names::snooze_workflow_id;
use busflow_workflows::snooze::SnoozeOutcome;
use serde_json::{Value, json};
use std::time::Duration;
use temporalio_client::WorkflowGetResultOptions;
use uuid::Uuid;

pub(crate) async fn snooze(app: &TestApp, conversation: Uuid, in_secs: i64) -> reqwest::Response {
    let until = chrono::Utc::now() + chrono::Duration::seconds(in_secs);
    app.post_action(
        "snoozeConversation",
        json!({"conversation_id": conversation, "until": until}),
        "dispatcher",
    )
    .await
}

async fn status_becomes(app: &TestApp, conversation: Uuid, wanted: &'static str) {
    app.eventually(
        &format!("conversation {wanted}"),
        Duration::from_secs(30),
        || async move {
            let status: String =
                sqlx::query_scalar("select status from conversations where id = $1")
                    .bind(conversation)
                    .fetch_one(&app.pool)
                    .await
                    .ok()?;
            (status == wanted).then_some(())
        },
    )
    .await;
}

pub(crate) async fn snooze_result(app: &TestApp, conversation: Uuid) -> SnoozeOutcome {
    let client = app.temporal().await;
    let handle = client
        .get_workflow_handle::<SnoozeWorkflow>(snooze_workflow_id(app.tenant_id, conversation));
    tokio::time::timeout(
        Duration::from_secs(30),
        handle.get_result(WorkflowGetResultOptions::default()),
    )
    .await
    .expect("the snooze workflow ends")
    .expect("the snooze workflow succeeds")
}

#[tokio::test]
async fn a_snoozed_conversation_reopens_when_its_time_comes_and_a_new_time_moves_it() {
    let app = inbox_app_with(true).await;
    passenger_writes(&app, "wamid.S1", "Hola").await;
    let (conversation, _) = the_conversation(&app).await;

    let far = snooze(&app, conversation, 600).await;
    assert_eq!(far.status(), 200);
    let body: Value = far.json().await.expect("json");
    assert_eq!(body["status"], "SNOOZED");
    // Moved from ten minutes to two seconds: reopening now proves the reset.
    assert_eq!(snooze(&app, conversation, 2).await.status(), 200);
    status_becomes(&app, conversation, "OPEN").await;
    assert_eq!(
        snooze_result(&app, conversation).await,
        SnoozeOutcome::Fired { reopened: true }
    );
    let until: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("select snoozed_until from conversations where id = $1")
            .bind(conversation)
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert!(until.is_none());
}

#[tokio::test]
async fn resolving_a_snoozed_conversation_stops_its_timer() {
    let app = inbox_app_with(true).await;
    passenger_writes(&app, "wamid.S2", "Hola").await;
    let (conversation, _) = the_conversation(&app).await;
    assert_eq!(snooze(&app, conversation, 600).await.status(), 200);

    let resolved = app
        .post_action(
            "resolveConversation",
            json!({"conversation_id": conversation}),
            "dispatcher",
        )
        .await;
    assert_eq!(resolved.status(), 200);
    assert_eq!(
        snooze_result(&app, conversation).await,
        SnoozeOutcome::Stopped
    );
    assert_eq!(the_conversation(&app).await.1, "RESOLVED");
}

#[tokio::test]
async fn a_message_from_the_contact_reopens_a_snoozed_conversation_and_stops_the_timer() {
    let app = inbox_app_with(true).await;
    passenger_writes(&app, "wamid.S3", "Hola").await;
    let (conversation, _) = the_conversation(&app).await;
    assert_eq!(snooze(&app, conversation, 600).await.status(), 200);

    passenger_writes(&app, "wamid.S4", "¿Siguen ahí?").await;
    assert_eq!(
        the_conversation(&app).await,
        (conversation, "OPEN".to_owned())
    );
    assert_eq!(
        snooze_result(&app, conversation).await,
        SnoozeOutcome::Stopped
    );
}

#[tokio::test]
async fn the_wakeup_cron_reopens_a_conversation_whose_timer_went_missing() {
    let app = inbox_app_with(true).await;
    passenger_writes(&app, "wamid.S5", "Hola").await;
    let (conversation, _) = the_conversation(&app).await;
    // Snoozed while Temporal was unreachable: the row says so, no timer runs.
    sqlx::query(
        "update conversations set status = 'SNOOZED', snoozed_until = now() - interval '1 minute' where id = $1",
    )
    .bind(conversation)
    .execute(&app.pool)
    .await
    .expect("snoozed without a timer");

    let response = app
        .http()
        .post(format!(
            "{}/hasura/cron/conversation_snooze_wakeup",
            app.base_url
        ))
        .header("x-busflow-secret", crate::support::app::SECRET)
        .json(
            &json!({"id": Uuid::new_v4(), "name": "conversation_snooze_wakeup",
                      "scheduled_time": "2026-11-27T10:00:00Z", "payload": {}, "comment": null}),
        )
        .send()
        .await
        .expect("cron");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["overdue"], 1);
    status_becomes(&app, conversation, "OPEN").await;
}
