//! The stuck-message watchdog: a stuck message raises the metric and one
//! alert; an orphaned one is reconciled, never left QUEUED forever; a
//! claimed send whose outcome never became known is alerted, never failed.

use crate::support::{TestApp, TestOptions};
use busflow_activities::watchdog::{SweepInput, SweepReport};
use busflow_workflows::names::WATCHDOG_SCHEDULE_ID;
use busflow_workflows::watchdog::StuckMessageWatchdog;
use busflow_workflows::{SnoozeRequest, SnoozeWorkflow};
use serde_json::Value;
use std::time::Duration;
use temporalio_client::{WorkflowGetResultOptions, WorkflowStartOptions};
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A message QUEUED ten minutes ago, owned by `workflow_id`.
async fn old_queued_message(app: &TestApp, workflow_id: &str) -> Uuid {
    let contact: Uuid = sqlx::query_scalar(
        "insert into contacts (tenant_id, display_name) values ($1, 'Ana') returning id",
    )
    .bind(app.tenant_id)
    .fetch_one(&app.pool)
    .await
    .expect("contact");
    sqlx::query_scalar(
        "insert into messages (tenant_id, contact_id, direction, channel, status, workflow_id, body, created_at)
         values ($1, $2, 'OUTBOUND', 'EMAIL', 'QUEUED', $3, 'hola', now() - interval '10 minutes') returning id",
    )
    .bind(app.tenant_id)
    .bind(contact)
    .bind(workflow_id)
    .fetch_one(&app.pool)
    .await
    .expect("queued message")
}

/// A message claimed for sending ten minutes ago by `workflow_id`, its
/// outcome never recorded.
async fn old_claimed_message(app: &TestApp, workflow_id: &str) -> Uuid {
    let id = old_queued_message(app, workflow_id).await;
    sqlx::query(
        "update messages set status = 'SENDING', send_attempt_id = gen_random_uuid(),
                send_claimed_at = now() - interval '10 minutes', send_unknown_reason = 'Meta Timeout'
          where id = $1",
    )
    .bind(id)
    .execute(&app.pool)
    .await
    .expect("claimed message");
    id
}

#[tokio::test]
async fn a_stuck_message_raises_the_metric_and_an_alert_an_orphan_is_reconciled_and_an_unknown_send_is_never_failed()
 {
    let alerts = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/alerts"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&alerts)
        .await;
    let app = TestApp::spawn_with(TestOptions {
        alert_url: Some(format!("{}/alerts", alerts.uri())),
        ..TestOptions::default()
    })
    .await;
    let client = app.temporal().await;

    // One message whose workflow is still running (a long timer stands in for
    // a dispatch retrying an outage), one whose workflow never existed.
    let running_id = format!("watchdog-test/running/{}", Uuid::new_v4());
    client
        .start_workflow(
            SnoozeWorkflow::run,
            SnoozeRequest {
                tenant_id: app.tenant_id,
                conversation_id: Uuid::new_v4(),
                until_ms: chrono::Utc::now().timestamp_millis() + 600_000,
            },
            WorkflowStartOptions::new(app.task_queue.clone(), running_id.clone()).build(),
        )
        .await
        .expect("a running workflow");
    let stuck = old_queued_message(&app, &running_id).await;
    let orphan = old_queued_message(
        &app,
        &format!("notify/{}/gone/{}", app.tenant_id, Uuid::new_v4()),
    )
    .await;
    let unknown = old_claimed_message(
        &app,
        &format!("notify/{}/ended/{}", app.tenant_id, Uuid::new_v4()),
    )
    .await;

    let metrics = app.metrics().await;
    assert!(
        metrics.lines().any(|l| l == "busflow_stuck_messages 2"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l == "busflow_unconfirmed_messages 1"),
        "{metrics}"
    );

    let sweep = client
        .start_workflow(
            StuckMessageWatchdog::run,
            SweepInput {
                threshold_secs: 300,
            },
            WorkflowStartOptions::new(
                app.task_queue.clone(),
                format!("watchdog-test/{}", Uuid::new_v4()),
            )
            .build(),
        )
        .await
        .expect("sweep started");
    let report: SweepReport = tokio::time::timeout(
        Duration::from_secs(60),
        sweep.get_result(WorkflowGetResultOptions::default()),
    )
    .await
    .expect("sweep ends")
    .expect("sweep succeeds");

    assert_eq!(report.reconciled, 1);
    assert_eq!(
        report
            .stuck
            .iter()
            .map(|m| m.message_id.0)
            .collect::<Vec<_>>(),
        vec![stuck]
    );
    assert!(report.alerted);
    let (status, reason): (String, Option<String>) =
        sqlx::query_as("select status, failed_reason from messages where id = $1")
            .bind(orphan)
            .fetch_one(&app.pool)
            .await
            .expect("orphan");
    assert_eq!(status, "FAILED");
    assert!(
        reason.is_some_and(|r| r.contains("does not exist")),
        "the reason names what happened"
    );
    assert_eq!(
        report
            .unconfirmed
            .iter()
            .map(|m| m.message_id.0)
            .collect::<Vec<_>>(),
        vec![unknown]
    );
    let status: String = sqlx::query_scalar("select status from messages where id = $1")
        .bind(unknown)
        .fetch_one(&app.pool)
        .await
        .expect("claimed");
    assert_eq!(status, "SENDING", "it may have reached the person");
    let requests = alerts.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 1, "one alert per sweep");
    let alert: Value = serde_json::from_slice(&requests[0].body).expect("json");
    assert_eq!(alert["messages"][0]["message_id"], stuck.to_string());
    assert_eq!(
        alert["messages"][0]["tenant_id"],
        app.tenant_id.0.to_string()
    );
    assert_eq!(alert["unconfirmed"][0]["message_id"], unknown.to_string());

    // The worker created the schedule that runs this sweep every minute.
    let schedule = client.get_schedule_handle(WATCHDOG_SCHEDULE_ID);
    assert!(
        schedule.describe(Default::default()).await.is_ok(),
        "schedule {WATCHDOG_SCHEDULE_ID} exists"
    );
}
