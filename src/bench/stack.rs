//! The benchmark's stack: a fresh database, an in-memory Temporal dev server,
//! the API on a free port and the worker on its own thread — the same parts
//! `busflow-comms dev` runs, with sandbox providers only.

use crate::dev::processes::{ManagedProcess, TemporalDevServer, free_port, wait_for_port};
use crate::shutdown::Shutdown;
use crate::{database, server, worker};
use anyhow::Context;
use busflow_activities::crypto::KeyRing;
use busflow_activities::floor::FloorActivities;
use busflow_activities::model::TenantId;
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
pub const SECRET: &str = "bench-secret";

pub struct Stack {
    pub pool: PgPool,
    pub client: Client,
    pub api_base: String,
    pub tenant_id: TenantId,
    pub temporal: ManagedProcess,
    pub shutdown: Shutdown,
}

/// Starts everything; the returned stack stops it all when dropped.
pub async fn start(database_url: &str, temporal_cli: PathBuf) -> anyhow::Result<Stack> {
    let (admin_url, name) = database::split_database(database_url)?;
    let admin = database::connect(&admin_url, 1).await?;
    sqlx::query(&format!("drop database if exists \"{name}\" with (force)"))
        .execute(&admin)
        .await
        .with_context(|| format!("dropping the benchmark database {name}"))?;
    database::ensure_database(database_url).await?;
    let pool = database::connect(database_url, 20).await?;
    database::migrate(&pool).await?;

    let port = free_port()?;
    let attributes: Vec<(String, String)> = search_attributes::registrations()
        .iter()
        .map(|(n, k)| ((*n).to_owned(), (*k).to_owned()))
        .collect();
    let args = TemporalDevServer {
        ip: "127.0.0.1",
        port,
        ui_port: None,
        namespace: "default",
        db_filename: None,
        sqlite_pragmas: &[],
        search_attributes: &attributes,
        log_level: "error",
    }
    .args();
    let log = std::env::temp_dir().join(format!("busflow-bench-temporal-{port}.log"));
    let mut temporal = ManagedProcess::spawn("Temporal dev server", &temporal_cli, &args, &log)?;
    let address = format!("127.0.0.1:{port}");
    wait_for_port(&mut temporal, &address, Duration::from_secs(60)).await?;
    let settings = TemporalSettings {
        address: Some(address),
        namespace: Some("default".to_owned()),
    };
    let client = connect_patiently(&settings).await?;

    let tenant_id = TenantId(uuid::Uuid::new_v4());
    crate::dev::seed::upsert_tenant(
        &pool,
        tenant_id,
        "Autobuses Bench",
        "MX",
        "es-MX",
        "America/Mexico_City",
    )
    .await?;
    // Sandbox SMS: no provider call, done once SENT; a limit no run reaches,
    // so the rate limiter's Postgres call is measured but never waits.
    sqlx::query(
        "insert into channel_accounts (tenant_id, channel, provider, status, mode, external_account_id, max_send_rate)
         values ($1, 'SMS', 'AWS_SNS', 'ACTIVE', 'SANDBOX', '+15550009999', 1000000)",
    )
    .bind(tenant_id)
    .execute(&pool)
    .await
    .context("seeding the sandbox SMS account")?;

    let shutdown = Shutdown::new();
    let keys = KeyRing::parse("bench:AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=", None)?;
    let listener = server::bind("127.0.0.1:0".parse()?).await?;
    let api_base = format!("http://{}", listener.local_addr()?);
    spawn_workers(
        settings.clone(),
        database_url.to_owned(),
        keys.clone(),
        api_base.clone(),
        shutdown.clone(),
    );
    let state = Arc::new(AppState::new(
        pool.clone(),
        keys,
        TemporalGateway::new(settings, TASK_QUEUE),
        ApiConfig {
            sns_topics: busflow_api::webhooks::sns_topics::SnsTopics::AnyForDev,
            webhook_secret: SECRET.to_owned(),
            step_deadline: Duration::from_secs(900),
            firehose_access_key: None,
            stuck_threshold: Duration::from_secs(300),
            fanout_concurrency: 100,
        },
        busflow_api::sns_verifier()?,
    )?);
    tokio::spawn(server::serve(listener, state, shutdown.wait()));
    Ok(Stack {
        pool,
        client,
        api_base,
        tenant_id,
        temporal,
        shutdown,
    })
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
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
    on_own_thread(move || async move {
        let pool = database::connect(&database_url, 20).await?;
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
    on_own_thread(move || async move {
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

fn on_own_thread<F, Fut>(work: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        if let Err(e) = runtime.block_on(work()) {
            eprintln!("bench worker stopped: {e:#}");
        }
    });
}
