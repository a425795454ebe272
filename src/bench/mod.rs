//! `busflow-comms bench`: measures the service end to end, on demand (never
//! in the test suite), on a fresh database and a fresh in-memory Temporal
//! dev server with eager activities on. In order:
//!
//! 1. a warm-up of every single-notification run, not counted;
//! 2. repetitions, each running the floor (one no-op activity per
//!    workflow), then ours on the no-receipt path (sandbox SMS), then ours
//!    on the receipt path (sandbox WhatsApp, done at DELIVERED), all with
//!    fresh workflow ids; the ratio ours/floor is the median over them;
//! 3. latency at an offered rate below capacity (half the floor's median
//!    unless `--rate`), for the floor and both paths;
//! 4. fan-out: one `trip_delayed` for a trip of N passengers, one account
//!    at its cap and one uncapped, against a floor without Temporal;
//! 5. reminders parked on their timers, read on a worker process of their own;
//!
//! and ends with one summary table. SQL round trips are counted on the
//! wire by a proxy in front of Postgres (`pg_counter`); CPU-seconds come
//! from /proc (`cpu`).

mod cpu;
mod events;
mod fanout;
mod history;
mod pg_counter;
mod reminders;
mod report;
mod single;
mod stack;
mod stats;
mod tenants;
mod webchat;

use anyhow::Context;
use clap::Args;
use report::{FanoutReport, PathReport, Summary};
use single::{Load, Measured, Path};
use std::path::PathBuf;
use std::time::Duration;

/// The uncapped fan-out account's limit: well above what one machine sends.
const UNCAPPED_RATE: f64 = 1000.0;
const UNCAPPED_BURST: i32 = 1000;
/// Webchat visitors waiting for their reply at once.
const WEBCHAT_IN_FLIGHT: usize = 20;

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Notifications (Hasura events) per run, on each path.
    #[arg(long, default_value_t = 1000)]
    pub notifications: usize,
    /// Events in flight at once (Hasura's event delivery concurrency); the
    /// floor starts its workflows at the same concurrency.
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Repetitions of floor-then-ours; the report takes their median.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    pub repetitions: u16,
    /// Notifications (and floor workflows) of the uncounted warm-up, per path.
    #[arg(long, default_value_t = 100)]
    pub warmup: usize,
    /// Offered rate (per second) of the latency runs; default half the
    /// floor's median throughput.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Passengers on the fan-out trip (0 skips the fan-out).
    #[arg(long, default_value_t = 10_000)]
    pub fanout_recipients: usize,
    /// A fan-out still unfinished after this is reported as far as it got.
    #[arg(long, default_value_t = 900)]
    pub fanout_timeout_secs: u64,
    /// Trip reminders to park on their timers for the memory reading (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    pub reminders: usize,
    /// Agent replies to webchat visitors whose arrival in the widget is
    /// timed (0 skips it).
    #[arg(long, default_value_t = 200)]
    pub webchat_replies: usize,
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
        "busflow-comms bench: {} notifications x {} repetitions per path, {} in flight; fan-out of {}; {} reminders; Postgres at {}",
        args.notifications,
        args.repetitions,
        args.concurrency,
        args.fanout_recipients,
        args.reminders,
        crate::database::redact(&args.database_url)
    );
    if args.repetitions < 3 {
        println!("  (fewer than 3 repetitions: the medians below say little)");
    }
    let stack = stack::start(&args.database_url, args.temporal_cli.clone()).await?;
    let http = busflow_activities::http::client(Duration::from_secs(60))?;
    let sms = tenants::sms(&stack.pool, "Autobuses Bench SMS").await?;
    let whatsapp = tenants::whatsapp(
        &stack.pool,
        &stack.keys,
        "Autobuses Bench WhatsApp",
        Some(tenants::UNREACHED_RATE),
        None,
    )
    .await?;
    let paths = [(Path::NoReceipt, sms), (Path::Receipt, whatsapp)];

    if args.warmup > 0 {
        println!("warm-up: {} of each, not counted", args.warmup);
        let warm = Load {
            count: args.warmup,
            concurrency: args.concurrency,
            rate: None,
        };
        single::floor(&stack, warm, "warmup").await?;
        for (path, tenant) in paths {
            single::ours(&stack, &http, tenant, path, warm).await?;
        }
    }

    let flat = Load {
        count: args.notifications,
        concurrency: args.concurrency,
        rate: None,
    };
    let mut reps: Vec<(Measured, Vec<Measured>)> = Vec::new();
    for rep in 1..=args.repetitions {
        let floor = single::floor(&stack, flat, &format!("rep{rep}")).await?;
        let mut ours = Vec::new();
        for (path, tenant) in paths {
            ours.push(single::ours(&stack, &http, tenant, path, flat).await?);
        }
        println!("rep {rep}: floor {}", describe(&floor));
        for ((path, _), o) in paths.iter().zip(&ours) {
            println!(
                "  {}: {} ({:.2} of the floor)",
                path.label(),
                describe(o),
                o.per_second / floor.per_second
            );
        }
        reps.push((floor, ours));
    }
    let first = reps.first().context("no repetition ran")?;
    let floor_history = history::of(&stack, &first.0.sample_workflow).await?;
    let mut histories = Vec::new();
    for ours in &first.1 {
        histories.push(history::of(&stack, &ours.sample_workflow).await?);
    }
    print_histories(&paths, &histories, &floor_history);

    let floor_rates: Vec<f64> = reps.iter().map(|(f, _)| f.per_second).collect();
    let rate = args
        .rate
        .or_else(|| stats::median(&floor_rates).map(|r| r / 2.0))
        .context("no floor throughput to derive the offered rate from")?;
    println!("latency runs at {rate:.1}/s ({} each)", args.notifications);
    let paced = Load {
        count: args.notifications,
        concurrency: args.concurrency,
        rate: Some(rate),
    };
    let paced_floor = single::floor(&stack, paced, "paced").await?;
    let mut path_reports = Vec::new();
    for (i, (path, tenant)) in paths.into_iter().enumerate() {
        let measured = single::ours(&stack, &http, tenant, path, paced).await?;
        path_reports.push(PathReport {
            path,
            reps: reps
                .iter()
                .map(|(floor, ours)| (ours[i].clone(), floor.clone()))
                .collect(),
            paced: measured,
            history: histories[i].clone(),
        });
    }

    let fanout = if args.fanout_recipients > 0 {
        Some(run_fanout(&stack, &http, args).await?)
    } else {
        None
    };
    let webchat = if args.webchat_replies > 0 {
        let measured =
            webchat::measure(&stack, &http, args.webchat_replies, WEBCHAT_IN_FLIGHT).await?;
        println!(
            "webchat: {} agent replies, {} visitors waiting at once: reply in the widget after {}",
            measured.replies, measured.in_flight, measured.latency
        );
        Some(measured)
    } else {
        None
    };
    let reminders = if args.reminders > 0 {
        println!(
            "reminders: parking {} on a worker process of their own",
            args.reminders
        );
        let memory = reminders::measure(&stack, &http, args.reminders, args.concurrency).await?;
        println!(
            "  {} parked ({:.1} trip events/s); worker RSS {:.1} -> {:.1} MiB (peak {:.1}), {:.1} CPU-s",
            memory.parked,
            memory.posted_per_second,
            memory.before_mib,
            memory.after_mib,
            memory.peak_mib,
            memory.child_cpu_secs
        );
        Some(memory)
    } else {
        None
    };

    // Every floor workflow schedules exactly one activity.
    let floor_workflows = args.warmup + args.notifications * (usize::from(args.repetitions) + 1);
    let eager = match history::server_activity_counts(&http, &stack.temporal_metrics).await {
        Ok(counts) => Some(counts.split(
            &history::prometheus_label(stack::FLOOR_TASK_QUEUE),
            floor_workflows as u64,
        )),
        Err(e) => {
            eprintln!("  (no eager activity count: {e:#})");
            None
        }
    };
    report::print(&Summary {
        notifications: args.notifications,
        concurrency: args.concurrency,
        rate,
        paths: path_reports,
        paced_floor,
        floor_history,
        fanout,
        webchat,
        reminders,
        eager,
    });
    Ok(())
}

async fn run_fanout(
    stack: &stack::Stack,
    http: &reqwest::Client,
    args: &BenchArgs,
) -> anyhow::Result<FanoutReport> {
    let n = args.fanout_recipients;
    let limit = Duration::from_secs(args.fanout_timeout_secs);
    println!("fan-out: {n} recipients (time limit {limit:?} each)");
    let floor = fanout::floor(stack, n).await?;
    println!("  floor: {:.1} msg/s", floor.per_second);
    let capped_tenant = tenants::whatsapp(
        &stack.pool,
        &stack.keys,
        "Autobuses Fan-out Capped",
        None,
        None,
    )
    .await?;
    let capped = fanout::ours(stack, http, capped_tenant, "at the cap", n, limit).await?;
    println!(
        "  one account at its cap: {:.1} msg/s ({} of {n})",
        capped.per_second, capped.done
    );
    let uncapped_tenant = tenants::whatsapp(
        &stack.pool,
        &stack.keys,
        "Autobuses Fan-out Uncapped",
        Some(UNCAPPED_RATE),
        Some(UNCAPPED_BURST),
    )
    .await?;
    let uncapped = fanout::ours(stack, http, uncapped_tenant, "uncapped", n, limit).await?;
    println!(
        "  uncapped: {:.1} msg/s ({} of {n})",
        uncapped.per_second, uncapped.done
    );
    Ok(FanoutReport {
        floor,
        capped,
        uncapped,
        uncapped_rate: UNCAPPED_RATE,
    })
}

/// One run on one line: throughput, CPU-seconds per process, round trips.
fn describe(m: &Measured) -> String {
    format!(
        "{:.1}/s over {:.1} s; CPU-s server {:.1}, Postgres {:.1}, us {:.1}; {:.1} SQL round trips each",
        m.per_second,
        m.wall_secs,
        m.cpu.server,
        m.cpu.postgres,
        m.cpu.ours,
        m.round_trips.total as f64 / m.done.max(1) as f64
    )
}

fn print_histories(
    paths: &[(Path, busflow_activities::model::TenantId)],
    histories: &[history::History],
    floor: &history::History,
) {
    println!("history of one workflow each:");
    println!("  floor ({}): {}", floor.len(), floor.events.join(", "));
    for ((path, _), h) in paths.iter().zip(histories) {
        println!("  {} ({}): {}", path.label(), h.len(), h.events.join(", "));
    }
}
