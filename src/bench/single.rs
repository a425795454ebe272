//! Single notifications and their floor. Ours: N `booking_confirmed` Hasura
//! events through the real API into N `NotificationWorkflow`s of one
//! tenant, done when each message is SENT (no-receipt path, sandbox SMS)
//! or DELIVERED (receipt path, sandbox WhatsApp playing Meta's signed
//! receipts back to our webhook). The floor: N one-no-op-activity
//! workflows on the same server, started at the same concurrency.
//!
//! Throughput is counted from the moment the load generator begins to the
//! last one done. Latency runs from the API's 200 (ours) or the server's
//! start time (floor) to SENT / DELIVERED / close. CPU and SQL round trips
//! are read over the whole run, up to when it has settled: every workflow
//! closed and, on the receipt path, every READ receipt applied.

use super::cpu::{CpuMeter, CpuSeconds};
use super::events;
use super::pg_counter::RoundTrips;
use super::stack::{self, Stack};
use super::stats::Latency;
use super::tenants;
use anyhow::Context;
use busflow_activities::model::{ContactId, TenantId};
use busflow_activities::store::messages::{self, MessageTimes};
use busflow_workflows::names::{notification_workflow_id, search_attributes, workflow_types};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};
use temporalio_client::{WorkflowCountOptions, WorkflowListOptions, WorkflowStartOptions};
use uuid::Uuid;

/// `#[run(name)]` of `FloorWorkflow`.
pub const FLOOR_WORKFLOW_TYPE: &str = "FloorWorkflow";
/// How long one run may take before the benchmark gives up on it.
const RUN_TIMEOUT: Duration = Duration::from_secs(1800);

/// Which delivery path a tenant's notifications take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Sandbox SMS: no receipts, done once SENT.
    NoReceipt,
    /// Sandbox WhatsApp: receipts, done once DELIVERED.
    Receipt,
}

impl Path {
    pub fn label(self) -> &'static str {
        match self {
            Path::NoReceipt => "no-receipt (sandbox SMS, done at SENT)",
            Path::Receipt => "receipt (sandbox WhatsApp, done at DELIVERED)",
        }
    }

    fn done_statuses(self) -> &'static [&'static str] {
        match self {
            Path::NoReceipt => &["SENT", "DELIVERED", "READ"],
            Path::Receipt => &["DELIVERED", "READ"],
        }
    }
}

/// How the load is offered.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub count: usize,
    pub concurrency: usize,
    /// Per second; `None` = as fast as `concurrency` allows.
    pub rate: Option<f64>,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Measured {
    pub done: usize,
    pub wall_secs: f64,
    pub per_second: f64,
    /// To done (ours: API accepted → SENT or DELIVERED; floor: start → close).
    pub latency: Latency,
    /// Receipt path only: API accepted → SENT.
    pub sent_latency: Option<Latency>,
    pub cpu: CpuSeconds,
    /// Counted on our pools (the floor's workflows never touch Postgres).
    pub round_trips: RoundTrips,
    pub sample_workflow: String,
}

/// Ours: `load.count` notifications for fresh passengers of `tenant`.
pub async fn ours(
    stack: &Stack,
    http: &reqwest::Client,
    tenant: TenantId,
    path: Path,
    load: Load,
) -> anyhow::Result<Measured> {
    let passengers = tenants::passengers(&stack.pool, tenant, load.count).await?;
    let meter = CpuMeter::start(stack.temporal.service_pid());
    let round_trips_before = stack.counter.read();
    let begun = Instant::now();
    let started_at = Utc::now();
    let accepted: Vec<anyhow::Result<(String, DateTime<Utc>)>> =
        futures::stream::iter(passengers.iter().enumerate().map(
            |(i, (contact, profile))| async move {
                pace(begun, i, load.rate).await;
                post_booking(http, &stack.api_base, tenant, *contact, *profile).await
            },
        ))
        .buffer_unordered(load.concurrency)
        .collect()
        .await;
    let accepted: HashMap<String, DateTime<Utc>> =
        accepted.into_iter().collect::<anyhow::Result<_>>()?;
    let workflows: Vec<String> = accepted.keys().cloned().collect();
    wait_until_done(stack, tenant, path, &workflows, begun).await?;
    let times = message_times(stack, tenant, &workflows).await?;
    settle(stack, tenant, path, &workflows).await?;
    let cpu = meter.finish();
    let round_trips = stack.counter.read() - round_trips_before;

    let done_at = |t: &MessageTimes| match path {
        Path::NoReceipt => t.sent_at,
        Path::Receipt => t.delivered_at,
    };
    let last = times.iter().filter_map(done_at).max().unwrap_or(started_at);
    let wall_secs = seconds_between(started_at, last);
    let since_accepted = |at: fn(&MessageTimes) -> Option<DateTime<Utc>>| {
        Latency::of(
            times
                .iter()
                .filter_map(|t| Some((at(t)? - *accepted.get(&t.workflow_id)?).num_milliseconds()))
                .collect(),
        )
    };
    let done = times.iter().filter(|t| done_at(t).is_some()).count();
    Ok(Measured {
        done,
        wall_secs,
        per_second: done as f64 / wall_secs,
        latency: match path {
            Path::NoReceipt => since_accepted(|t| t.sent_at),
            Path::Receipt => since_accepted(|t| t.delivered_at),
        },
        sent_latency: (path == Path::Receipt).then(|| since_accepted(|t| t.sent_at)),
        cpu,
        round_trips,
        sample_workflow: workflows.first().cloned().unwrap_or_default(),
    })
}

/// The floor: `load.count` `FloorWorkflow`s with ids `floor-{label}-{i}`.
pub async fn floor(stack: &Stack, load: Load, label: &str) -> anyhow::Result<Measured> {
    let meter = CpuMeter::start(stack.temporal.service_pid());
    let round_trips_before = stack.counter.read();
    let begun = Instant::now();
    let started_at = Utc::now();
    let started: Vec<anyhow::Result<()>> =
        futures::stream::iter((0..load.count).map(|i| async move {
            pace(begun, i, load.rate).await;
            stack
                .client
                .start_workflow(
                    busflow_workflows::floor::FloorWorkflow::run,
                    i as u64,
                    WorkflowStartOptions::new(
                        stack::FLOOR_TASK_QUEUE,
                        format!("floor-{label}-{i}"),
                    )
                    .build(),
                )
                .await
                .context("starting a floor workflow")?;
            Ok(())
        }))
        .buffer_unordered(load.concurrency)
        .collect()
        .await;
    started.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    // Earlier runs all closed before this one began.
    let done = format!(
        "WorkflowType = '{FLOOR_WORKFLOW_TYPE}' AND ExecutionStatus = 'Completed' AND StartTime >= '{}'",
        started_at.to_rfc3339_opts(SecondsFormat::Millis, true)
    );
    while count(stack, &done).await? < load.count {
        anyhow::ensure!(
            begun.elapsed() < RUN_TIMEOUT,
            "the floor did not finish in {RUN_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cpu = meter.finish();
    let round_trips = stack.counter.read() - round_trips_before;
    let mut spans: Vec<(SystemTime, SystemTime)> = Vec::new();
    let mut executions = stack
        .client
        .list_workflows(&done, WorkflowListOptions::default());
    while let Some(execution) = executions.next().await {
        let execution = execution.context("listing the floor's workflows")?;
        if let (Some(start), Some(close)) = (execution.start_time(), execution.close_time()) {
            spans.push((start, close));
        }
    }
    let last = spans
        .iter()
        .map(|(_, close)| *close)
        .max()
        .context("the floor's workflows are not listed")?;
    let wall_secs = seconds_between(started_at, DateTime::<Utc>::from(last));
    let ms = spans
        .iter()
        .filter_map(|(start, close)| close.duration_since(*start).ok())
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .collect::<Vec<_>>();
    Ok(Measured {
        done: spans.len(),
        wall_secs,
        per_second: spans.len() as f64 / wall_secs,
        latency: Latency::of(ms),
        sent_latency: None,
        cpu,
        round_trips,
        sample_workflow: format!("floor-{label}-0"),
    })
}

/// With a rate, the `i`th item waits for its slot.
pub async fn pace(start: Instant, i: usize, rate: Option<f64>) {
    if let Some(rate) = rate.filter(|r| *r > 0.0) {
        tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / rate)).into()).await;
    }
}

fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    ((to - from).num_milliseconds() as f64 / 1000.0).max(0.001)
}

pub async fn count(stack: &Stack, query: &str) -> anyhow::Result<usize> {
    Ok(stack
        .client
        .count_workflows(query, WorkflowCountOptions::default())
        .await
        .with_context(|| format!("counting workflows where {query}"))?
        .count())
}

/// Posts one `booking_confirmed`; returns the notification's workflow id
/// and when the API accepted the event.
async fn post_booking(
    http: &reqwest::Client,
    api_base: &str,
    tenant: TenantId,
    contact: ContactId,
    profile: Uuid,
) -> anyhow::Result<(String, DateTime<Utc>)> {
    let event_id = Uuid::new_v4().to_string();
    events::post(
        http,
        api_base,
        &events::booking_confirmed(&event_id, tenant, profile),
    )
    .await?;
    Ok((
        notification_workflow_id(tenant, &event_id, contact),
        Utc::now(),
    ))
}

async fn wait_until_done(
    stack: &Stack,
    tenant: TenantId,
    path: Path,
    workflows: &[String],
    begun: Instant,
) -> anyhow::Result<()> {
    let done_statuses: Vec<String> = path
        .done_statuses()
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    loop {
        let (done, failed, reason) =
            messages::bench_outcomes(&stack.pool, tenant, workflows, &done_statuses)
                .await
                .context("counting done messages")?;
        anyhow::ensure!(
            failed == 0,
            "{failed} message(s) FAILED on the {} path: {}",
            path.label(),
            reason.unwrap_or_default()
        );
        if done as usize >= workflows.len() {
            return Ok(());
        }
        anyhow::ensure!(
            begun.elapsed() < RUN_TIMEOUT,
            "only {done} of {} messages done after {RUN_TIMEOUT:?}",
            workflows.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// When each message became SENT and DELIVERED ([`MessageTimes`]).
async fn message_times(
    stack: &Stack,
    tenant: TenantId,
    workflows: &[String],
) -> anyhow::Result<Vec<MessageTimes>> {
    messages::bench_times(&stack.pool, tenant, workflows)
        .await
        .context("reading the messages' times")
}

/// Waits (bounded) until the run's work is over: its workflows closed and,
/// with receipts, the last (READ) receipt applied — so that CPU and round
/// trips hold all of it.
async fn settle(
    stack: &Stack,
    tenant: TenantId,
    path: Path,
    workflows: &[String],
) -> anyhow::Result<()> {
    let running = format!(
        "WorkflowType = '{}' AND ExecutionStatus = 'Running' AND {} = '{tenant}'",
        workflow_types::NOTIFICATION,
        search_attributes::TENANT_ID.name()
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let read: i64 = if path == Path::Receipt {
            messages::bench_count_read(&stack.pool, tenant, workflows).await?
        } else {
            workflows.len() as i64
        };
        if read as usize >= workflows.len() && count(stack, &running).await? == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            eprintln!("  (the run had not settled after 120 s; CPU and round trips read anyway)");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
