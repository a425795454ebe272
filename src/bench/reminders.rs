//! Reminder memory, on the worker alone: a `busflow-comms worker` child
//! process (this executable) polls a task queue of its own; a second API of
//! ours starts the reminders there, one `trip_upserted` event per trip
//! departing in 30 days. The child's resident memory is read before the
//! first event and after every reminder is parked on its timer and the
//! child has gone quiet; the growth is the cost of waiting.
//!
//! Nothing else runs in the child: the API and the load generator stay in
//! this process.

use super::events;
use super::single::count;
use super::stack::{KEYS, Stack};
use super::tenants;
use crate::dev::processes::ManagedProcess;
use anyhow::Context;
use busflow_workflows::names::{trip_reminder_workflow_id, workflow_types};
use chrono::Utc;
use futures::StreamExt;
use std::time::{Duration, Instant};
use temporalio_client::{UntypedWorkflow, WorkflowFetchHistoryOptions};
use uuid::Uuid;

/// The task queue only the child worker polls.
pub const REMINDER_QUEUE: &str = "bench-reminders";
/// The child's activity slots (its pool: two connections each, plus two).
const CHILD_ACTIVITY_SLOTS: usize = 4;
const REMINDER_API_CONNECTIONS: u32 = 5;

/// What parking the reminders cost the worker.
#[derive(Debug, Clone)]
pub struct ReminderMemory {
    pub reminders: usize,
    /// Reminders running on the child's queue when memory was read.
    pub parked: usize,
    pub before_mib: f64,
    pub after_mib: f64,
    pub peak_mib: f64,
    /// Trip events per second while they were posted.
    pub posted_per_second: f64,
    pub child_cpu_secs: f64,
}

impl ReminderMemory {
    pub fn growth_mib(&self) -> f64 {
        self.after_mib - self.before_mib
    }
}

pub async fn measure(
    stack: &Stack,
    http: &reqwest::Client,
    reminders: usize,
    concurrency: usize,
) -> anyhow::Result<ReminderMemory> {
    let tenant = tenants::sms(&stack.pool, "Autobuses Recordatorio").await?;
    let mut child = spawn_worker(stack)?;
    let pid = wait_for_worker(&mut child).await?;
    // Let the fresh process finish its start-up allocations.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = memory(pid).context("reading the reminder worker's memory")?;
    let cpu_before = super::cpu::process_seconds(pid);
    let api = stack
        .spawn_api(REMINDER_QUEUE, REMINDER_API_CONNECTIONS)
        .await?;

    let begun = Instant::now();
    let trips: Vec<Uuid> = (0..reminders).map(|_| Uuid::new_v4()).collect();
    let departure = Utc::now() + chrono::Duration::days(30);
    let posted: Vec<anyhow::Result<()>> = futures::stream::iter(trips.iter().map(|trip| {
        let event = events::trip_upserted(tenant, *trip, departure);
        let api = api.as_str();
        async move { events::post(http, api, &event).await }
    }))
    .buffer_unordered(concurrency)
    .collect()
    .await;
    posted.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let posted_per_second = reminders as f64 / begun.elapsed().as_secs_f64();

    let running = format!(
        "WorkflowType = '{}' AND ExecutionStatus = 'Running' AND TaskQueue = '{REMINDER_QUEUE}'",
        workflow_types::TRIP_REMINDER
    );
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut parked = count(stack, &running).await?;
    while parked < reminders && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        parked = count(stack, &running).await?;
    }
    if let Some(last) = trips.last() {
        wait_for_timer(stack, &trip_reminder_workflow_id(tenant, *last)).await?;
    }
    wait_until_quiet(pid).await;
    // Allocators return memory lazily: read after a pause, not in the middle.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = memory(pid).context("reading the reminder worker's memory")?;
    let child_cpu_secs = super::cpu::process_seconds(pid) - cpu_before;
    child.stop(Duration::from_secs(10));
    Ok(ReminderMemory {
        reminders,
        parked,
        before_mib: before.0,
        after_mib: after.0,
        peak_mib: after.1,
        posted_per_second,
        child_cpu_secs,
    })
}

fn spawn_worker(stack: &Stack) -> anyhow::Result<ManagedProcess> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let address = stack
        .settings
        .address
        .clone()
        .context("the benchmark's Temporal address")?;
    let args: Vec<String> = [
        "worker",
        "--database-url",
        &stack.database_url,
        "--temporal-address",
        &address,
        "--temporal-namespace",
        "default",
        "--task-queue",
        REMINDER_QUEUE,
        "--activity-slots",
        &CHILD_ACTIVITY_SLOTS.to_string(),
        "--db-max-connections",
        "2",
        "--watchdog-interval-secs",
        "3600",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let env = [
        ("BUSFLOW_SECRET_KEYS".to_owned(), KEYS.to_owned()),
        (
            "RUST_LOG".to_owned(),
            "info,sqlx=warn,temporalio_sdk_core=warn".to_owned(),
        ),
    ];
    let log = std::env::temp_dir().join(format!(
        "busflow-bench-reminder-worker-{}.log",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&log);
    ManagedProcess::spawn_with_env("reminder worker", &exe, &args, &env, &log)
}

/// Waits until the child says it polls; returns its pid.
async fn wait_for_worker(child: &mut ManagedProcess) -> anyhow::Result<u32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.log_tail(50).contains("worker polling task queue") {
            return child
                .service_pid()
                .context("the reminder worker has no pid");
        }
        anyhow::ensure!(
            !child.has_exited(),
            "the reminder worker stopped. Its log:\n{}",
            child.log_tail(20)
        );
        anyhow::ensure!(
            Instant::now() < deadline,
            "the reminder worker did not start polling in a minute. Its log:\n{}",
            child.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The last reminder has run its first workflow task: its timer is started.
async fn wait_for_timer(stack: &Stack, workflow_id: &str) -> anyhow::Result<()> {
    let handle = stack
        .client
        .get_workflow_handle::<UntypedWorkflow>(workflow_id);
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        let events = handle
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .into_events()
            .await
            .with_context(|| format!("history of {workflow_id}"))?;
        if events
            .iter()
            .any(|e| e.event_type().as_str_name() == "EVENT_TYPE_TIMER_STARTED")
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    anyhow::bail!("{workflow_id} never started its timer")
}

/// Waits (up to two minutes) until the child uses under 5 % of a core.
async fn wait_until_quiet(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = super::cpu::process_seconds(pid);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = super::cpu::process_seconds(pid);
        if now - last < 0.1 {
            return;
        }
        last = now;
    }
}

/// (VmRSS, VmHWM) in MiB from /proc.
fn memory(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}
