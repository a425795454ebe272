//! The benchmark's stack: a fresh database, an in-memory Temporal dev server
//! (eager activities on, metrics on a known port), the SQL counter in front
//! of Postgres, the API on a free port and the worker on its own thread —
//! the same parts `busflow-comms dev` runs, with sandbox providers only.
//!
//! Our worker and API reach Postgres through the counter; the benchmark's
//! own reads (and the fan-out floor) go straight to it, uncounted.

use super::events::SECRET;
use super::pg_counter::{self, PgCounter};
use crate::dev::processes::{ManagedProcess, TemporalDevServer, free_port, wait_for_port};
use crate::shutdown::Shutdown;
use crate::{database, server, worker};
use anyhow::Context;
use busflow_activities::crypto::KeyRing;
use busflow_activities::floor::FloorActivities;
use busflow_activities::notification::NotificationActivities;
use busflow_activities::providers::aws::AwsSettings;
use busflow_activities::providers::whatsapp::meta::MetaSettings;
use busflow_api::temporal::{TemporalGateway, TemporalSettings};
use busflow_api::{ApiConfig, AppState};
use busflow_workflows::floor::FloorWorkflow;
use busflow_workflows::names::search_attributes;
use sqlx::PgPool;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use temporalio_client::Client;
use temporalio_sdk::runtime::RuntimeOptions;
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

pub const TASK_QUEUE: &str = "bench";
pub const FLOOR_TASK_QUEUE: &str = "bench-floor";
/// The key ring that seals the bench tenants' secrets (a throwaway key).
pub const KEYS: &str = "bench:AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=";

/// Connections of each pool (the cluster is shared: at most 100 in all).
const BENCH_CONNECTIONS: u32 = 10;
const API_CONNECTIONS: u32 = 10;
const WORKER_CONNECTIONS: u32 = 20;
/// `BUSFLOW_FANOUT_CONCURRENCY`'s default.
const FANOUT_CONCURRENCY: usize = 20;

pub struct Stack {
    /// Straight to Postgres: the benchmark's own reads, uncounted.
    pub pool: PgPool,
    pub database_url: String,
    /// Through the SQL counter: what our worker and API use.
    pub counted_url: String,
    pub counter: PgCounter,
    pub client: Client,
    pub settings: TemporalSettings,
    pub api_base: String,
    pub keys: KeyRing,
    pub temporal: ManagedProcess,
    /// The dev server's Prometheus endpoint.
    pub temporal_metrics: String,
    pub shutdown: Shutdown,
}

/// Starts everything; the returned stack stops it all when dropped.
pub async fn start(database_url: &str, temporal_cli: PathBuf) -> anyhow::Result<Stack> {
    let (admin_url, name) = database::split_database(database_url)?;
    let admin = database::connect(&format!("{admin_url}/postgres"), 1).await?;
    busflow_activities::store::databases::drop_if_exists(&admin, &name)
        .await
        .with_context(|| format!("dropping the benchmark database {name}"))?;
    admin.close().await;
    database::ensure_database(database_url).await?;
    let pool = database::connect(database_url, BENCH_CONNECTIONS).await?;
    database::migrate(&pool).await?;
    let counter = PgCounter::start(pg_counter::upstream_of(database_url)?)?;
    let counted_url = counter.url(database_url)?;

    let (temporal, address, temporal_metrics) = start_temporal(temporal_cli).await?;
    let keys = KeyRing::parse(KEYS, None)?;
    let settings = TemporalSettings {
        address: Some(address),
        namespace: Some("default".to_owned()),
        payload_keys: Some(keys.clone()),
        traces: Default::default(),
    };
    let client = connect_patiently(&settings).await?;

    let shutdown = Shutdown::new();
    let listener = server::bind("127.0.0.1:0".parse()?).await?;
    let api_base = format!("http://{}", listener.local_addr()?);
    spawn_workers(
        settings.clone(),
        counted_url.clone(),
        keys.clone(),
        api_base.clone(),
        shutdown.clone(),
    );
    let api_pool = database::connect(&counted_url, API_CONNECTIONS).await?;
    serve_api(
        listener,
        api_pool,
        keys.clone(),
        settings.clone(),
        TASK_QUEUE,
        &shutdown,
    )?;
    Ok(Stack {
        pool,
        database_url: database_url.to_owned(),
        counted_url,
        counter,
        client,
        settings,
        api_base,
        keys,
        temporal,
        temporal_metrics,
        shutdown,
    })
}

impl Stack {
    /// A second API, starting its workflows on `task_queue` (its pool
    /// counted too); returns its base URL.
    pub async fn spawn_api(&self, task_queue: &str, connections: u32) -> anyhow::Result<String> {
        let listener = server::bind("127.0.0.1:0".parse()?).await?;
        let base = format!("http://{}", listener.local_addr()?);
        let pool = database::connect(&self.counted_url, connections).await?;
        serve_api(
            listener,
            pool,
            self.keys.clone(),
            self.settings.clone(),
            task_queue,
            &self.shutdown,
        )?;
        Ok(base)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// The dev server in memory, headless, quiet; returns it, its frontend
/// address and its metrics URL.
async fn start_temporal(temporal_cli: PathBuf) -> anyhow::Result<(ManagedProcess, String, String)> {
    let port = free_port()?;
    let metrics_port = free_port()?;
    let attributes: Vec<(String, String)> = search_attributes::registrations()
        .iter()
        .map(|(n, k)| ((*n).to_owned(), (*k).to_owned()))
        .collect();
    let mut args = TemporalDevServer {
        ip: "127.0.0.1",
        port,
        ui_port: None,
        ui_codec_endpoint: None,
        namespace: "default",
        db_filename: None,
        sqlite_pragmas: &[],
        search_attributes: &attributes,
        log_level: "error",
    }
    .args();
    args.extend(["--metrics-port".to_owned(), metrics_port.to_string()]);
    let log = std::env::temp_dir().join(format!("busflow-bench-temporal-{port}.log"));
    let mut temporal = ManagedProcess::spawn("Temporal dev server", &temporal_cli, &args, &log)?;
    let address = format!("127.0.0.1:{port}");
    wait_for_port(&mut temporal, &address, Duration::from_secs(60)).await?;
    Ok((
        temporal,
        address,
        format!("http://127.0.0.1:{metrics_port}/metrics"),
    ))
}

fn serve_api(
    listener: tokio::net::TcpListener,
    pool: PgPool,
    keys: KeyRing,
    settings: TemporalSettings,
    task_queue: &str,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let state = Arc::new(AppState::new(
        pool,
        keys,
        TemporalGateway::new(settings, task_queue),
        ApiConfig {
            sns_topics: busflow_api::webhooks::sns_topics::SnsTopics::AnyForDev,
            webhook_secret: SECRET.to_owned(),
            step_deadline: Duration::from_secs(900),
            firehose_access_key: None,
            stuck_threshold: Duration::from_secs(300),
            // As `busflow-comms dev` and the service's default.
            fanout_concurrency: FANOUT_CONCURRENCY,
            // Every visitor of the benchmark comes from 127.0.0.1.
            webchat: busflow_api::webchat::WebchatSettings {
                sessions_per_tenant: (1e6, 1_000_000),
                sessions_per_address: (1e6, 1_000_000),
                ..Default::default()
            },
            platform_sms: Default::default(),
            email_verification: Default::default(),
            metrics_token: None,
            codec: Default::default(),
            edge: Default::default(),
        },
        busflow_api::sns_verifier()?,
    )?);
    tokio::spawn(server::serve(listener, state, shutdown.wait()));
    Ok(())
}

async fn connect_patiently(settings: &TemporalSettings) -> anyhow::Result<Client> {
    let mut last = None;
    for _ in 0..60 {
        match busflow_api::temporal::connect(settings, "busflow-comms-bench").await {
            Ok(client) => return Ok(client),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no Temporal")))
}

/// The service's worker and the floor's worker, each on a thread and runtime
/// of its own (worker futures are not `Send`).
fn spawn_workers(
    temporal: TemporalSettings,
    database_url: String,
    keys: KeyRing,
    api_base: String,
    shutdown: Shutdown,
) {
    let floor_settings = temporal.clone();
    let floor_shutdown = shutdown.clone();
    on_own_thread("bench-worker", move || async move {
        let pool = database::connect(&database_url, WORKER_CONNECTIONS).await?;
        let client =
            busflow_api::temporal::connect(&temporal, "busflow-comms-bench-worker").await?;
        let aws = AwsSettings {
            region: "us-east-1".to_owned(),
            endpoint_url: Some("http://127.0.0.1:9".to_owned()),
            static_credentials: Some(("bench".to_owned(), "bench".to_owned())),
        };
        let providers = worker::providers(&aws, MetaSettings::default(), Some(api_base)).await?;
        let activities = NotificationActivities::new(pool.clone(), providers, keys);
        let watchdog = worker::WatchdogSettings {
            interval: Duration::from_secs(3600),
            threshold: Duration::from_secs(300),
            alert_url: None,
        };
        worker::run(
            client,
            TASK_QUEUE,
            pool,
            activities,
            &watchdog,
            shutdown.wait(),
        )
        .await
    });
    on_own_thread("bench-floor", move || async move {
        let client =
            busflow_api::temporal::connect(&floor_settings, "busflow-comms-bench-floor").await?;
        let runtime = Runtime::from_current_tokio(RuntimeOptions::default())?;
        let options = WorkerOptions::new(FLOOR_TASK_QUEUE)
            .register_workflow::<FloorWorkflow>()?
            .register_activities(FloorActivities)
            .workflow_task_poller_behavior(worker::pollers())
            .activity_task_poller_behavior(worker::pollers())
            .build();
        let mut floor = Worker::new(&runtime, client, options)?;
        let stop = floor.shutdown_handle();
        let run = floor.run();
        tokio::pin!(run);
        tokio::select! {
            result = &mut run => return result.map_err(anyhow::Error::from),
            () = floor_shutdown.wait() => stop(),
        }
        run.await.map_err(anyhow::Error::from)
    });
}

fn on_own_thread<F, Fut>(name: &'static str, work: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => return eprintln!("{name}: no tokio runtime: {e}"),
        };
        if let Err(e) = runtime.block_on(work()) {
            eprintln!("{name} stopped: {e:#}");
        }
    });
}
