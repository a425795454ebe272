//! `busflow-comms bench`: measures the service end to end, on demand (never
//! in the test suite). On a fresh database and a fresh in-memory Temporal dev
//! server it drives N `booking_confirmed` Hasura events through the real API
//! into real `NotificationWorkflow`s with a sandbox SMS account, then runs
//! the floor (N one-no-op-activity workflows on the same server), then parks
//! R trip reminders on their timers, and prints what it saw.

mod stack;

use anyhow::Context;
use busflow_activities::model::TenantId;
use busflow_workflows::floor::FloorWorkflow;
use busflow_workflows::names::notification_workflow_id;
use chrono::{DateTime, Utc};
use clap::Args;
use futures::StreamExt;
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use temporalio_client::{
    WorkflowCountOptions, WorkflowFetchHistoryOptions, WorkflowListOptions, WorkflowStartOptions,
};
use uuid::Uuid;

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Notifications (Hasura events) to drive through the service.
    #[arg(long, default_value_t = 1000)]
    pub notifications: usize,
    /// Events in flight at once (Hasura's event delivery concurrency).
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Offer events at this rate (per second) instead of as fast as the API
    /// takes them: below capacity, latency shows the cost of one notification
    /// rather than the queue.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Trip reminders to park on their timers for the memory reading (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    pub reminders: usize,
    /// A database the benchmark drops and recreates.
    #[arg(
        long,
        env = "BUSFLOW_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/busflow_bench"
    )]
    pub database_url: String,
    /// The `temporal` CLI (installed by scripts/tools.sh).
    #[arg(long, default_value = ".tools/venv/bin/temporal")]
    pub temporal_cli: PathBuf,
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    println!(
        "busflow-comms bench: {} notifications, {} in flight{}, {} reminders; in-memory Temporal dev server, Postgres at {}",
        args.notifications,
        args.concurrency,
        args.rate.map(|r| format!(" at {r}/s")).unwrap_or_default(),
        args.reminders,
        crate::database::redact(&args.database_url)
    );
    let stack = stack::start(&args.database_url, args.temporal_cli.clone()).await?;
    let http = busflow_activities::http::client(Duration::from_secs(60))?;

    let ours = notifications(&stack, &http, args).await?;
    let history = history_events(&stack, &ours.sample_workflow).await?;
    let floor = floor(&stack, args).await?;
    println!();
    println!("notifications (event accepted -> message SENT)");
    println!(
        "  {:.1} notifications/s over {:.1} s",
        ours.per_second, ours.wall_secs
    );
    println!(
        "  latency p50 {} ms, p95 {} ms, p99 {} ms, max {} ms",
        ours.latency.p50, ours.latency.p95, ours.latency.p99, ours.latency.max
    );
    println!("  history events per single-channel notification: {history}");
    println!("floor (one workflow, one no-op activity, same server, same load)");
    println!(
        "  {:.1} workflows/s over {:.1} s; start -> close p50 {} ms, p95 {} ms, p99 {} ms",
        floor.per_second, floor.wall_secs, floor.latency.p50, floor.latency.p95, floor.latency.p99
    );
    println!(
        "  our throughput is {:.0} % of the floor",
        100.0 * ours.per_second / floor.per_second
    );
    print_memory("after the notifications and the floor", &stack);

    if args.reminders > 0 {
        let (secs, running) = park_reminders(&stack, &http, args).await?;
        println!(
            "{running} trip reminders waiting on their timers ({:.1} trip events/s to start them)",
            args.reminders as f64 / secs
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
        print_memory("with the reminders waiting", &stack);
    }
    Ok(())
}

/// Percentiles in milliseconds.
#[derive(Debug, Default)]
struct Latency {
    p50: i64,
    p95: i64,
    p99: i64,
    max: i64,
}

fn latency(mut ms: Vec<i64>) -> Latency {
    ms.sort_unstable();
    let at = |q: f64| {
        let i = ((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len().max(1)) - 1;
        ms.get(i).copied().unwrap_or_default()
    };
    Latency {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        max: ms.last().copied().unwrap_or_default(),
    }
}

struct Run {
    per_second: f64,
    wall_secs: f64,
    latency: Latency,
    sample_workflow: String,
}

async fn notifications(
    stack: &stack::Stack,
    http: &reqwest::Client,
    args: &BenchArgs,
) -> anyhow::Result<Run> {
    let contacts: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "insert into contacts (tenant_id, display_name, identifiers, passenger_profile_id, locale)
         select $1, 'Pasajero ' || i, jsonb_build_object('phone', '+5255' || lpad(i::text, 8, '0')),
                gen_random_uuid(), 'es-MX'
           from generate_series(1, $2) as i
         returning id, passenger_profile_id",
    )
    .bind(stack.tenant_id)
    .bind(i32::try_from(args.notifications)?)
    .fetch_all(&stack.pool)
    .await
    .context("seeding contacts")?;
    let started = Instant::now();
    let started_at = Utc::now();
    let accepted: Vec<anyhow::Result<(String, DateTime<Utc>)>> =
        futures::stream::iter(contacts.iter().enumerate().map(
            |(i, (contact, profile))| async move {
                pace(started, i, args.rate).await;
                post_booking(http, stack, *contact, *profile).await
            },
        ))
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let accepted: HashMap<String, DateTime<Utc>> =
        accepted.into_iter().collect::<anyhow::Result<_>>()?;
    let sample_workflow = accepted.keys().next().cloned().unwrap_or_default();
    loop {
        let sent: i64 = sqlx::query_scalar(
            "select count(*) from messages where tenant_id = $1 and status = 'SENT'",
        )
        .bind(stack.tenant_id)
        .fetch_one(&stack.pool)
        .await?;
        if sent as usize >= args.notifications {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "only {sent} of {} messages SENT after 30 minutes",
            args.notifications
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sent: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "select workflow_id, sent_at from messages where tenant_id = $1 and status = 'SENT'",
    )
    .bind(stack.tenant_id)
    .fetch_all(&stack.pool)
    .await?;
    let last = sent.iter().map(|(_, at)| *at).max().unwrap_or(started_at);
    let wall_secs = (last - started_at).num_milliseconds() as f64 / 1000.0;
    let ms = sent
        .iter()
        .filter_map(|(workflow, at)| {
            accepted
                .get(workflow)
                .map(|a| (*at - *a).num_milliseconds())
        })
        .collect();
    Ok(Run {
        per_second: sent.len() as f64 / wall_secs,
        wall_secs,
        latency: latency(ms),
        sample_workflow,
    })
}

/// With a rate, the `i`th event waits for its slot.
async fn pace(start: Instant, i: usize, rate: Option<f64>) {
    if let Some(rate) = rate.filter(|r| *r > 0.0) {
        tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / rate)).into()).await;
    }
}

/// Posts one `booking_confirmed` as Hasura would; returns the notification's
/// workflow id and when the API accepted the event.
async fn post_booking(
    http: &reqwest::Client,
    stack: &stack::Stack,
    contact: Uuid,
    profile: Uuid,
) -> anyhow::Result<(String, DateTime<Utc>)> {
    let event_id = Uuid::new_v4().to_string();
    let event = json!({
        "id": event_id,
        "created_at": Utc::now().to_rfc3339(),
        "trigger": {"name": "booking_confirmed"},
        "table": {"schema": "public", "name": "bookings"},
        "event": {"op": "INSERT", "data": {"old": null, "new": {
            "id": Uuid::new_v4(), "tenant_id": stack.tenant_id.0,
            "passenger_profile_id": profile, "status": "CONFIRMED",
            "booking_reference": format!("BF-{}", &event_id[..8])
        }}}
    });
    post_event(http, stack, &event).await?;
    Ok((
        notification_workflow_id(
            stack.tenant_id,
            &event_id,
            busflow_activities::model::ContactId(contact),
        ),
        Utc::now(),
    ))
}

async fn post_event(
    http: &reqwest::Client,
    stack: &stack::Stack,
    event: &serde_json::Value,
) -> anyhow::Result<()> {
    let response = http
        .post(format!("{}/hasura/events", stack.api_base))
        .header("x-busflow-secret", stack::SECRET)
        .json(event)
        .send()
        .await?;
    let status = response.status();
    anyhow::ensure!(
        status.is_success(),
        "event refused: {status} {}",
        response.text().await.unwrap_or_default()
    );
    Ok(())
}

async fn history_events(stack: &stack::Stack, workflow_id: &str) -> anyhow::Result<usize> {
    let handle = stack
        .client
        .get_workflow_handle::<busflow_workflows::NotificationWorkflow>(workflow_id);
    let events = handle
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .into_events()
        .await
        .with_context(|| format!("history of {workflow_id}"))?;
    Ok(events.len())
}

/// The same load shape as ours: starts as fast as `concurrency` allows, then
/// latency from each workflow's start to its close as the server saw them.
async fn floor(stack: &stack::Stack, args: &BenchArgs) -> anyhow::Result<Run> {
    let begun = Instant::now();
    let started: Vec<anyhow::Result<()>> =
        futures::stream::iter((0..args.notifications).map(|i| async move {
            pace(begun, i, args.rate).await;
            stack
                .client
                .start_workflow(
                    FloorWorkflow::run,
                    i as u64,
                    WorkflowStartOptions::new(stack::FLOOR_TASK_QUEUE, format!("floor-{i}"))
                        .build(),
                )
                .await?;
            Ok(())
        }))
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    started.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let done = "WorkflowType = 'FloorWorkflow' AND ExecutionStatus = 'Completed'";
    let deadline = Instant::now() + Duration::from_secs(1800);
    while stack
        .client
        .count_workflows(done, WorkflowCountOptions::default())
        .await?
        .count()
        < args.notifications
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the floor did not finish in 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut spans = Vec::new();
    let mut executions = stack
        .client
        .list_workflows(done, WorkflowListOptions::default());
    while let Some(execution) = executions.next().await {
        let execution = execution?;
        if let (Some(start), Some(close)) = (execution.start_time(), execution.close_time()) {
            spans.push((start, close));
        }
    }
    let first = spans.iter().map(|(s, _)| *s).min();
    let last = spans.iter().map(|(_, c)| *c).max();
    let wall_secs = match (first, last) {
        (Some(first), Some(last)) => last.duration_since(first)?.as_secs_f64(),
        _ => anyhow::bail!("the floor's workflows are not listed"),
    };
    let ms = spans
        .iter()
        .filter_map(|(s, c)| c.duration_since(*s).ok())
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .collect::<Vec<_>>();
    Ok(Run {
        per_second: ms.len() as f64 / wall_secs,
        wall_secs,
        latency: latency(ms),
        sample_workflow: String::new(),
    })
}

/// Starts R trip reminders (one `trip_upserted` event each, departing in
/// 30 days) and waits until all run; returns the seconds it took and the
/// count running.
async fn park_reminders(
    stack: &stack::Stack,
    http: &reqwest::Client,
    args: &BenchArgs,
) -> anyhow::Result<(f64, usize)> {
    let started = Instant::now();
    let tenant: TenantId = stack.tenant_id;
    let posted: Vec<anyhow::Result<()>> = futures::stream::iter((0..args.reminders).map(|_| {
        let event = json!({
            "id": Uuid::new_v4().to_string(),
            "created_at": Utc::now().to_rfc3339(),
            "trigger": {"name": "trip_upserted"},
            "table": {"schema": "public", "name": "trips"},
            "event": {"op": "INSERT", "data": {"old": null, "new": {
                "id": Uuid::new_v4(), "tenant_id": tenant.0, "status": "SCHEDULED",
                "departure_at": (Utc::now() + chrono::Duration::days(30)).to_rfc3339()
            }}}
        });
        async move { post_event(http, stack, &event).await }
    }))
    .buffer_unordered(args.concurrency)
    .collect()
    .await;
    posted.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let secs = started.elapsed().as_secs_f64();
    let query = "WorkflowType = 'TripReminderWorkflow' AND ExecutionStatus = 'Running'";
    let mut running = 0;
    for _ in 0..120 {
        running = stack
            .client
            .count_workflows(query, WorkflowCountOptions::default())
            .await?
            .count();
        if running >= args.reminders {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok((secs, running))
}

/// Resident and peak memory of this process (API + worker + load generator)
/// and of the Temporal dev server.
fn print_memory(when: &str, stack: &stack::Stack) {
    let ours = memory(std::process::id());
    let server = stack.temporal.service_pid().and_then(memory);
    println!("memory {when}:");
    if let Some((rss, peak)) = ours {
        println!(
            "  busflow-comms (API + worker + load generator): {rss} MiB resident, {peak} MiB peak"
        );
    }
    if let Some((rss, peak)) = server {
        println!("  Temporal dev server: {rss} MiB resident, {peak} MiB peak");
    }
}

/// (VmRSS, VmHWM) in MiB from /proc.
fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb / 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}
