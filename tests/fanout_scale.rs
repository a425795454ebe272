//! Fan-out at scale, in a test binary of its own (its own Temporal dev
//! server, so its load does not slow the other suites): a delay on a trip
//! with 10,000 passengers reaches each of them exactly once, across several
//! continue-as-new runs. (Its throughput is a benchmark's question,
//! `busflow-comms bench`, not a test's.)

#[allow(dead_code, unused_imports)]
#[path = "e2e/support/mod.rs"]
mod support;

use busflow_workflows::names::fanout_workflow_id;
use busflow_workflows::{BatchNotificationWorkflow, BatchProgress};
use chrono::Utc;
use futures::StreamExt;
use std::time::{Duration, Instant};
use support::app::{TestApp, TestOptions, trip_event};
use temporalio_client::WorkflowGetResultOptions;
use uuid::Uuid;

const PASSENGERS: usize = 10_000;

#[tokio::test]
async fn a_delay_on_a_ten_thousand_passenger_trip_reaches_each_exactly_once_across_runs() {
    let app = TestApp::spawn_with(TestOptions {
        // Pages of 2,500 (five chunks): four runs.
        fanout_concurrency: 5,
        // This binary runs alone: the worker may have Postgres to itself.
        worker_slots: 40,
        ..TestOptions::default()
    })
    .await;
    // Sandbox SMS with a limit far above what one machine sends.
    app.add_sandbox_sms_account(Some(100_000.0), None).await;
    let trip = Uuid::new_v4();
    let contacts = app.insert_passengers(PASSENGERS).await;
    sqlx::query(
        "insert into trip_bookings (tenant_id, booking_id, trip_id, contact_id, status, source_version)
         select $1, gen_random_uuid(), $2, c, 'CONFIRMED', now() from unnest($3::uuid[]) as c",
    )
    .bind(app.tenant_id)
    .bind(trip)
    .bind(contacts.iter().map(|(c, _)| c.0).collect::<Vec<_>>())
    .execute(&app.pool)
    .await
    .expect("bookings");

    let started = Instant::now();
    let event = trip_event(
        "trip_delayed",
        "delay-10k",
        app.tenant_id,
        trip,
        // Days away: the trip's reminder (24 h before) stays asleep.
        Utc::now() + chrono::Duration::days(3),
        "DELAYED",
        Utc::now(),
    );
    let response = app.post_event(&event).await;
    assert_eq!(response.status(), 200);
    let progress: BatchProgress = tokio::time::timeout(
        Duration::from_secs(40 * 60),
        app.temporal()
            .await
            .get_workflow_handle::<BatchNotificationWorkflow>(&fanout_workflow_id(
                app.tenant_id,
                "delay-10k",
            ))
            .get_result(WorkflowGetResultOptions::default()),
    )
    .await
    .expect("the fan-out finished")
    .expect("the fan-out succeeded");
    eprintln!(
        "fan-out of {PASSENGERS}: {:?} ({} runs)",
        started.elapsed(),
        progress.runs
    );
    assert_eq!(progress.dispatched, PASSENGERS as u64, "{progress:?}");
    assert_eq!(progress.delivered, PASSENGERS as u64, "{progress:?}");
    assert!(
        progress.runs > 1,
        "long lists continue as new: {progress:?}"
    );
    let (messages, recipients): (i64, i64) = sqlx::query_as(
        "select count(*), count(distinct contact_id) from messages
          where tenant_id = $1 and trigger_event = 'trip_delayed' and status = 'SENT'",
    )
    .bind(app.tenant_id)
    .fetch_one(&app.pool)
    .await
    .expect("counts");
    assert_eq!(
        (messages, recipients),
        (PASSENGERS as i64, PASSENGERS as i64)
    );
    // What the fan-out cost in Temporal: every run of the batch and every
    // chunk, as the server lists them.
    let client = app.temporal().await;
    let mut executions = client.list_workflows(
        format!(
            "TenantId = '{}' OR WorkflowType = 'BatchNotificationWorkflow'",
            app.tenant_id
        ),
        Default::default(),
    );
    let (mut workflows, mut events, mut largest_batch_run) = (0, 0, 0);
    while let Some(execution) = executions.next().await {
        let execution = execution.expect("listed");
        workflows += 1;
        events += execution.history_length();
        if execution.workflow_type() == "BatchNotificationWorkflow" {
            largest_batch_run = largest_batch_run.max(execution.raw().history_size_bytes);
        }
    }
    eprintln!("fan-out of {PASSENGERS}: largest run of the batch {largest_batch_run} bytes");
    // A page names its chunks by span, not by every passenger's id (2,000
    // of them would be some 150 KB in the page's result and the chunks' inputs).
    assert!(
        largest_batch_run < 64 * 1024,
        "a run of the batch stays small however many passengers a page has: {largest_batch_run} bytes"
    );
    eprintln!("fan-out of {PASSENGERS}: {workflows} workflow runs, {events} history events");
    assert!(
        events < 1_000,
        "a fan-out of {PASSENGERS} costs hundreds of history events, not one workflow per passenger: {events}"
    );
    let stuck: i64 = sqlx::query_scalar(
        "select count(*) from messages where tenant_id = $1 and status = 'QUEUED'",
    )
    .bind(app.tenant_id)
    .fetch_one(&app.pool)
    .await
    .expect("queued");
    assert_eq!(stuck, 0, "no message left QUEUED");
}
