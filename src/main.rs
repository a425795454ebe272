//! The `busflow-comms` binary: `dev` runs the whole local stack; `serve`,
//! `worker` and `migrate` run the parts alone against any Postgres and any
//! Temporal cluster (address, namespace and TLS from the environment).

use anyhow::Context;
use busflow_activities::notification::NotificationActivities;
use busflow_api::AppState;
use busflow_api::temporal::TemporalGateway;
use busflow_comms::config::{
    ApiArgs, DatabaseArgs, KeyArgs, ProviderArgs, TemporalArgs, TracesArgs, WatchdogArgs,
    WorkerMetricsArgs,
};
use busflow_comms::shutdown::Shutdown;
use busflow_comms::{database, dev, server, worker};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "busflow-comms",
    version,
    about = "Busflow communications service"
)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "BUSFLOW_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the local stack: Temporal dev server, AWS emulator, migrations, demo tenant, worker and API.
    Dev {
        /// The stack file.
        #[arg(long, default_value = "temporal-dev.yml")]
        config: PathBuf,
        #[command(flatten)]
        traces: TracesArgs,
    },
    /// Measure throughput, latency, memory and history size on a fresh
    /// local stack (drops and recreates its own database).
    Bench(busflow_comms::bench::BenchArgs),
    /// Run the HTTP API.
    Serve {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        temporal: TemporalArgs,
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        keys: KeyArgs,
        #[command(flatten)]
        traces: TracesArgs,
    },
    /// Run the Temporal worker.
    Worker {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        temporal: TemporalArgs,
        #[command(flatten)]
        providers: ProviderArgs,
        #[command(flatten)]
        keys: KeyArgs,
        #[command(flatten)]
        watchdog: WatchdogArgs,
        #[command(flatten)]
        metrics: WorkerMetricsArgs,
        #[command(flatten)]
        traces: TracesArgs,
        /// Activities run at once (as many local activities again); the
        /// pool grows to match (two connections per slot, plus two).
        #[arg(long, env = "BUSFLOW_ACTIVITY_SLOTS", default_value_t = 20)]
        activity_slots: usize,
        /// Workflows kept in memory between their tasks (the sticky cache);
        /// the others are replayed from history when they wake.
        #[arg(long, env = "BUSFLOW_MAX_CACHED_WORKFLOWS", default_value_t = worker::MAX_CACHED_WORKFLOWS)]
        max_cached_workflows: usize,
    },
    /// Start a fresh delivery of a FAILED message (a new, linked workflow).
    RetryMessage {
        #[arg(long)]
        tenant_id: uuid::Uuid,
        #[arg(long)]
        message_id: uuid::Uuid,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        temporal: TemporalArgs,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Inbound messages nobody could be found for (`inbound_dead_letters`).
    DeadLetters {
        #[command(subcommand)]
        command: DeadLettersCommand,
    },
    /// Manage the key ring that seals channel account secrets.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Create the database if missing and apply migrations.
    Migrate {
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Subcommand)]
enum DeadLettersCommand {
    /// Try them again (every open one, or `--id`): a message whose cause
    /// is fixed lands in the inbox and leaves the count.
    Replay {
        #[arg(long)]
        id: Option<i64>,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        temporal: TemporalArgs,
        #[command(flatten)]
        keys: KeyArgs,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Re-seal every channel account secret under the active key.
    Rotate {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        keys: KeyArgs,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The benchmark prints its own report; per-message logs would bury it.
    let default_filter = match cli.command {
        Command::Bench(_) => "warn",
        _ => "info,sqlx=warn,temporalio_sdk_core=warn",
    };
    init_logging(cli.log_json, default_filter);
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Dev { config, traces } => {
            let (traces, _flushed_at_exit) = traces.start()?;
            dev::run(&config, traces).await
        }
        Command::Bench(args) => busflow_comms::bench::run(&args).await,
        Command::Migrate { database } => {
            database::ensure_database(&database.database_url).await?;
            let pool = database::connect(&database.database_url, 2).await?;
            database::migrate(&pool).await?;
            println!(
                "migrations applied to {}",
                database::redact(&database.database_url)
            );
            Ok(())
        }
        Command::Serve {
            database,
            temporal,
            api,
            keys,
            traces,
        } => {
            let (traces, _flushed_at_exit) = traces.start()?;
            let mut config = api.config()?;
            config.codec.namespace = temporal.namespace.clone();
            let mut settings = temporal.settings(&keys)?;
            settings.traces = traces.clone();
            let keys = keys.key_ring()?;
            let pool =
                database::connect(&database.database_url, database.db_max_connections).await?;
            let shutdown = Shutdown::new();
            shutdown.trigger_on_signals();
            let mut state = AppState::new(
                pool,
                keys,
                TemporalGateway::new(settings, temporal.task_queue.clone()),
                config,
                busflow_api::sns_verifier()?,
            )?;
            state.traces = traces;
            let state = Arc::new(state);
            let listener = server::bind(api.listen).await?;
            server::serve(listener, state, shutdown.wait()).await
        }
        Command::Worker {
            database,
            temporal,
            providers,
            keys,
            watchdog,
            metrics,
            traces,
            activity_slots,
            max_cached_workflows,
        } => {
            let (traces, _flushed_at_exit) = traces.start()?;
            let mut settings = temporal.settings(&keys)?;
            settings.traces = traces.clone();
            let keys = keys.key_ring()?;
            let connections =
                worker::pool_size_for(activity_slots).max(database.db_max_connections);
            let pool = database::connect(&database.database_url, connections).await?;
            let client = busflow_api::temporal::connect(&settings, "busflow-comms-worker")
                .await
                .context("the worker needs Temporal")?;
            let shutdown = Shutdown::new();
            shutdown.trigger_on_signals();
            let mut providers = worker::providers(
                &providers.aws(),
                providers.meta(),
                providers.public_url.clone(),
            )
            .await?;
            providers.traces = traces;
            let activities = NotificationActivities::new(pool.clone(), providers, keys);
            if let Some(address) = metrics.metrics_listen {
                let listener = server::bind(address).await?;
                tokio::spawn(server::serve_worker_metrics(listener, shutdown.wait()));
            }
            let watchdog = watchdog.settings();
            worker::run_cached(
                client,
                &temporal.task_queue,
                pool,
                activities,
                &watchdog,
                max_cached_workflows,
                shutdown.wait(),
            )
            .await
        }
        Command::RetryMessage {
            tenant_id,
            message_id,
            database,
            temporal,
            keys,
        } => {
            let pool = database::connect(&database.database_url, 2).await?;
            let gateway =
                TemporalGateway::new(temporal.settings(&keys)?, temporal.task_queue.clone());
            let started = busflow_api::retry::retry_message(
                &pool,
                &gateway,
                busflow_activities::model::TenantId(tenant_id),
                busflow_activities::model::MessageId(message_id),
                std::time::Duration::from_secs(900),
            )
            .await?;
            println!("{:?}: {}", started.result, started.workflow_id);
            Ok(())
        }
        Command::DeadLetters {
            command:
                DeadLettersCommand::Replay {
                    id,
                    database,
                    temporal,
                    keys,
                },
        } => {
            let pool = database::connect(&database.database_url, 2).await?;
            let gateway =
                TemporalGateway::new(temporal.settings(&keys)?, temporal.task_queue.clone());
            let report = busflow_api::dead_letters::replay(&pool, &gateway, id).await?;
            for replayed in &report {
                println!("dead letter {}: {}", replayed.id, replayed.result);
            }
            println!(
                "{} of {} dead letter(s) replayed",
                report.iter().filter(|r| r.used).count(),
                report.len()
            );
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Rotate { database, keys },
        } => {
            let keys = keys.key_ring()?;
            let pool = database::connect(&database.database_url, 2).await?;
            let moved = busflow_activities::secrets::rotate(&pool, &keys).await?;
            println!(
                "re-sealed {moved} channel account secret(s) under key '{}'",
                keys.active_kid()
            );
            Ok(())
        }
    }
}

fn init_logging(json: bool, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
