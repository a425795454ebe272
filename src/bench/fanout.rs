//! Fan-out throughput against its own floor. Ours: one `trip_delayed`
//! Hasura event through the API for a trip with N confirmed passengers of a
//! WhatsApp-only tenant; msg/s from the first message to the last reaching
//! DELIVERED (the sandbox plays receipts), measured on the `messages` table
//! alone, whatever the fan-out does inside. The floor: the least work per
//! message on the same machine without Temporal — one insert of a message
//! row and one update of it to SENT, driven straight from the benchmark.
//!
//! A fan-out that outlasts its time limit is reported as far as it got; its
//! batch workflow is then terminated and the children in flight drained, so
//! that the next measurement starts on an idle machine.

use super::cpu::{CpuMeter, CpuSeconds};
use super::events;
use super::pg_counter::RoundTrips;
use super::single::count;
use super::stack::Stack;
use super::tenants;
use anyhow::Context;
use busflow_activities::model::TenantId;
use busflow_activities::store::messages;
use busflow_workflows::names::{fanout_workflow_id, search_attributes, workflow_types};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::time::{Duration, Instant};
use temporalio_client::{UntypedWorkflow, WorkflowTerminateOptions};
use uuid::Uuid;

/// Messages the floor has in flight at once (one connection each).
pub const FLOOR_IN_FLIGHT: u32 = 16;

/// What one fan-out reached.
#[derive(Debug, Clone)]
pub struct FanoutRun {
    pub recipients: usize,
    /// Messages done (DELIVERED; SENT for the floor).
    pub done: usize,
    pub failed: usize,
    /// From the first done to the last done.
    pub per_second: f64,
    /// From the event's acceptance to the first message done.
    pub first_after_secs: f64,
    pub timed_out: bool,
    pub cpu: CpuSeconds,
    pub round_trips: RoundTrips,
}

/// Posts the event and waits (up to `limit`) for every passenger's message.
pub async fn ours(
    stack: &Stack,
    http: &reqwest::Client,
    tenant: TenantId,
    label: &str,
    recipients: usize,
    limit: Duration,
) -> anyhow::Result<FanoutRun> {
    let trip = Uuid::new_v4();
    let passengers = tenants::passengers(&stack.pool, tenant, recipients).await?;
    let contacts: Vec<_> = passengers.iter().map(|(c, _)| *c).collect();
    tenants::book(&stack.pool, tenant, trip, &contacts).await?;
    let event_id = Uuid::new_v4().to_string();
    let meter = CpuMeter::start(stack.temporal.service_pid());
    let round_trips_before = stack.counter.read();
    let begun = Instant::now();
    // Days away: the trip's reminder (24 h before) stays asleep.
    let event = events::trip_delayed(
        &event_id,
        tenant,
        trip,
        Utc::now() + chrono::Duration::days(3),
    );
    events::post(http, &stack.api_base, &event).await?;
    let posted_at = Utc::now();
    let mut reported = Instant::now();
    let (done, failed, timed_out) = loop {
        let (done, failed) = messages::bench_fanout_outcomes(&stack.pool, tenant)
            .await
            .context("counting the fan-out's messages")?;
        let (done, failed) = (done as usize, failed as usize);
        if done + failed >= recipients {
            break (done, failed, false);
        }
        if begun.elapsed() > limit {
            break (done, failed, true);
        }
        if reported.elapsed() > Duration::from_secs(30) {
            eprintln!(
                "  fan-out {label}: {done} of {recipients} delivered after {:.0} s",
                begun.elapsed().as_secs_f64()
            );
            reported = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    if timed_out {
        stop(stack, tenant, &event_id).await?;
    }
    let cpu = meter.finish();
    let round_trips = stack.counter.read() - round_trips_before;
    let times = messages::bench_fanout_receipts(&stack.pool, tenant)
        .await
        .context("reading the fan-out's delivery times")?;
    Ok(FanoutRun {
        recipients,
        done,
        failed,
        per_second: rate(&times),
        first_after_secs: times.iter().min().map_or(0.0, |first| {
            (*first - posted_at).num_milliseconds() as f64 / 1000.0
        }),
        timed_out,
        cpu,
        round_trips,
    })
}

/// Done per second between the first and the last (n − 1 intervals).
fn rate(times: &[DateTime<Utc>]) -> f64 {
    let (Some(first), Some(last)) = (times.iter().min(), times.iter().max()) else {
        return 0.0;
    };
    let secs = (*last - *first).num_milliseconds() as f64 / 1000.0;
    if times.len() < 2 || secs <= 0.0 {
        return 0.0;
    }
    (times.len() - 1) as f64 / secs
}

/// Terminates the batch workflow and waits (bounded) for the children it
/// left running (they are abandoned, not cancelled, by design).
async fn stop(stack: &Stack, tenant: TenantId, event_id: &str) -> anyhow::Result<()> {
    let batch = fanout_workflow_id(tenant, event_id);
    let terminated = stack
        .client
        .get_workflow_handle::<UntypedWorkflow>(batch.as_str())
        .terminate(
            WorkflowTerminateOptions::builder()
                .reason("busflow-comms bench: time limit".to_owned())
                .build(),
        )
        .await;
    if let Err(e) = terminated {
        eprintln!("  could not terminate {batch}: {e}");
    }
    let running = format!(
        "WorkflowType = '{}' AND ExecutionStatus = 'Running' AND {} = '{tenant}'",
        workflow_types::NOTIFICATION,
        search_attributes::TENANT_ID.name()
    );
    let deadline = Instant::now() + Duration::from_secs(180);
    while count(stack, &running).await? > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

/// The floor: for each of `recipients`, insert a message row, then mark it
/// SENT, [`FLOOR_IN_FLIGHT`] at a time, on a pool of its own that goes
/// through the SQL counter as ours does (same hop, and counted).
pub async fn floor(stack: &Stack, recipients: usize) -> anyhow::Result<FanoutRun> {
    let pool = crate::database::connect(&stack.counted_url, FLOOR_IN_FLIGHT).await?;
    let tenant = TenantId(Uuid::new_v4());
    let body = "Tu viaje CDMX - Puebla de las 08:00 sale con 45 minutos de retraso. Disculpa las molestias.";
    let meter = CpuMeter::start(stack.temporal.service_pid());
    let round_trips_before = stack.counter.read();
    let begun = Instant::now();
    let sent: Vec<anyhow::Result<()>> = futures::stream::iter((0..recipients).map(|i| {
        let pool = &pool;
        async move {
            let id = messages::insert_bench_floor(pool, tenant, &format!("fanout-floor/{i}"), body)
                .await
                .context("inserting a floor message")?;
            messages::mark_bench_floor_sent(pool, tenant, id, &format!("wamid.floor-{id}"))
                .await
                .context("marking a floor message SENT")?;
            Ok(())
        }
    }))
    .buffer_unordered(FLOOR_IN_FLIGHT as usize)
    .collect()
    .await;
    let secs = begun.elapsed().as_secs_f64();
    let cpu = meter.finish();
    let round_trips = stack.counter.read() - round_trips_before;
    pool.close().await;
    let done = sent.iter().filter(|r| r.is_ok()).count();
    if let Some(Err(e)) = sent.into_iter().find(Result::is_err) {
        return Err(e.context("the fan-out floor"));
    }
    Ok(FanoutRun {
        recipients,
        done,
        failed: 0,
        per_second: done as f64 / secs,
        first_after_secs: 0.0,
        timed_out: false,
        cpu,
        round_trips,
    })
}
