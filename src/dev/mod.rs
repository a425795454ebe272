//! `busflow-comms dev`: the whole local stack in one process tree — the
//! Temporal dev server and the moto emulator as supervised children, the
//! database created and migrated, the demo tenant seeded, and the worker and
//! API running together until Ctrl-C stops everything.

pub mod config;
pub mod graph;
pub mod processes;
pub mod seed;

use crate::shutdown::Shutdown;
use crate::{database, server, worker};
use anyhow::Context;
use busflow_activities::crypto::KeyRing;
use busflow_activities::notification::NotificationActivities;
use busflow_activities::providers::aws::AwsSettings;
use busflow_activities::providers::whatsapp::meta::MetaSettings;
use busflow_activities::providers::whatsapp::onboarding::MetaApp;
use busflow_activities::traces::Traces;
use busflow_api::temporal::{TemporalGateway, TemporalSettings};
use busflow_api::{ApiConfig, AppState};
use config::DevStack;
use processes::{ManagedProcess, TemporalDevServer, wait_for_port};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub async fn run(config_path: &Path, traces: Traces) -> anyhow::Result<()> {
    let stack = DevStack::load(config_path)?;
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();

    // Postgres first: it is the one part we do not start, so fail fast on it.
    database::ensure_database(&stack.service.database_url).await?;
    let pool = database::connect(&stack.service.database_url, worker::pool_size_for(20)).await?;
    database::migrate(&pool).await?;

    let state_dir = stack
        .temporal
        .db_filename
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| ".".into());
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;

    let pragmas: Vec<(String, String)> =
        stack.temporal.sqlite_pragmas.clone().into_iter().collect();
    let attributes: Vec<(String, String)> = stack
        .temporal
        .search_attributes
        .clone()
        .into_iter()
        .collect();
    let codec_endpoint = format!("http://{}/codec", stack.service.listen);
    let temporal_args = TemporalDevServer {
        ip: &stack.temporal.ip,
        port: stack.temporal.port,
        ui_port: Some(stack.temporal.ui_port),
        ui_codec_endpoint: Some(&codec_endpoint),
        namespace: &stack.temporal.namespace,
        db_filename: Some(&stack.temporal.db_filename),
        sqlite_pragmas: &pragmas,
        search_attributes: &attributes,
        log_level: &stack.temporal.log_level,
    }
    .args();
    let mut temporal = ManagedProcess::spawn(
        "Temporal dev server",
        &stack.temporal.cli,
        &temporal_args,
        &state_dir.join("temporal.log"),
    )?;
    let moto_args = vec![
        "-H".to_owned(),
        stack.aws_emulator.ip.clone(),
        "-p".to_owned(),
        stack.aws_emulator.port.to_string(),
    ];
    let mut moto = ManagedProcess::spawn(
        "moto (SES/SNS emulator)",
        &stack.aws_emulator.command,
        &moto_args,
        &state_dir.join("moto.log"),
    )?;
    let aws_address = format!("{}:{}", stack.aws_emulator.ip, stack.aws_emulator.port);
    wait_for_port(
        &mut temporal,
        &stack.temporal_address(),
        Duration::from_secs(60),
    )
    .await?;
    wait_for_port(&mut moto, &aws_address, Duration::from_secs(30)).await?;

    let keys = KeyRing::parse(&stack.service.secret_keys, None)
        .context("service.secret_keys in temporal-dev.yml")?;
    let temporal_settings = TemporalSettings {
        address: Some(stack.temporal_address()),
        namespace: Some(stack.temporal.namespace.clone()),
        payload_keys: Some(keys.clone()),
        traces: traces.clone(),
    };
    let client = connect_with_patience(&temporal_settings, Duration::from_secs(30)).await?;

    let aws = AwsSettings {
        region: stack.aws_emulator.region.clone(),
        endpoint_url: Some(stack.aws_endpoint()),
        static_credentials: Some((
            stack.aws_emulator.access_key_id.clone(),
            stack.aws_emulator.secret_access_key.clone(),
        )),
    };
    let graph_address = format!("{}:{}", stack.meta_graph.ip, stack.meta_graph.port);
    let graph_listener = tokio::net::TcpListener::bind(&graph_address)
        .await
        .with_context(|| format!("binding the Graph API stand-in on {graph_address}"))?;
    let standin_app = graph::StandInApp {
        app_id: stack.meta_graph.app_id.clone(),
        app_secret: stack.meta_graph.app_secret.clone(),
    };
    let approved = busflow_activities::templates::platform::catalog()
        .map_err(|e| anyhow::anyhow!("platform templates: {e}"))?
        .whatsapp_template_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let graph_task = tokio::spawn(async move {
        if let Err(e) = graph::serve(graph_listener, standin_app, approved).await {
            tracing::error!("{e:#}");
        }
    });
    let meta = MetaSettings {
        graph_base_url: format!("http://{graph_address}"),
        app: Some(MetaApp {
            app_id: stack.meta_graph.app_id.clone(),
            app_secret: stack.meta_graph.app_secret.clone(),
        }),
        ..MetaSettings::default()
    };
    let mut providers =
        worker::providers(&aws, meta, Some(format!("http://{}", stack.service.listen))).await?;
    providers.traces = traces.clone();
    let demo_domain = stack
        .demo_tenant
        .email
        .from_address
        .rsplit_once('@')
        .map(|(_, d)| d.to_owned())
        .unwrap_or_default();
    providers
        .ses
        .create_domain_identity(&demo_domain)
        .await
        .context("registering the demo sender domain on the emulator")?;
    seed::seed_demo_tenant(&pool, &keys, &stack.demo_tenant).await?;
    let mut state = AppState::new(
        pool.clone(),
        keys.clone(),
        TemporalGateway::with_client(client.clone(), stack.service.task_queue.clone()),
        ApiConfig {
            sns_topics: busflow_api::webhooks::sns_topics::SnsTopics::AnyForDev,
            webhook_secret: stack.service.webhook_secret.clone(),
            step_deadline: Duration::from_secs(900),
            firehose_access_key: Some(stack.service.webhook_secret.clone()),
            stuck_threshold: Duration::from_secs(300),
            fanout_concurrency: 20,
            webchat: Default::default(),
            platform_sms: busflow_api::PlatformSms {
                pool: busflow_activities::sms_pool::SmsPool::parse(&stack.service.sms_pool)
                    .context("service.sms_pool in temporal-dev.yml")?,
                ..Default::default()
            },
            email_verification: Default::default(),
            metrics_token: None,
            codec: dev_codec(&stack),
            edge: Default::default(),
        },
        busflow_api::sns_verifier()?,
    )?;
    state.traces = traces;
    let state = Arc::new(state);
    let listener = server::bind(stack.service.listen).await?;
    let api = tokio::spawn(server::serve(listener, state, shutdown.wait()));
    print_banner(&stack);

    let activities = NotificationActivities::new(pool.clone(), providers, keys);
    let watchdog = worker::WatchdogSettings {
        interval: Duration::from_secs(60),
        threshold: Duration::from_secs(300),
        alert_url: None,
    };
    let worker_result = worker::run(
        client,
        &stack.service.task_queue,
        pool,
        activities,
        &watchdog,
        shutdown.wait(),
    )
    .await;
    shutdown.trigger();
    graph_task.abort();
    let api_result = api.await.context("API task")?;
    moto.stop(Duration::from_secs(5));
    temporal.stop(Duration::from_secs(10));
    worker_result.and(api_result)
}

/// The dev UI has no login, so it cannot pass an ops credential: on the dev
/// stack (loopback only) the codec server admits its UI without one.
fn dev_codec(stack: &DevStack) -> busflow_api::codec::CodecSettings {
    let port = stack.temporal.ui_port;
    busflow_api::codec::CodecSettings {
        credential: busflow_api::codec::OpsCredential {
            open: true,
            ..Default::default()
        },
        namespace: Some(stack.temporal.namespace.clone()),
        ui_origins: [
            format!("http://{}:{port}", stack.temporal.ip),
            format!("http://localhost:{port}"),
        ]
        .iter()
        .filter_map(|origin| origin.parse().ok())
        .collect(),
    }
}

/// The dev server accepts TCP before its frontend serves; retry the client.
async fn connect_with_patience(
    settings: &TemporalSettings,
    patience: Duration,
) -> anyhow::Result<temporalio_client::Client> {
    let deadline = Instant::now() + patience;
    loop {
        match busflow_api::temporal::connect(settings, "busflow-comms-dev").await {
            Ok(client) => return Ok(client),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

fn print_banner(stack: &DevStack) {
    let api = stack.service.listen;
    println!(
        "\nbusflow-comms dev stack is up\n  API          http://{api}\n  Temporal UI  http://{}:{}\n  Temporal     {} (namespace {})\n  SES/SNS      {} (moto; sent mail at /moto-api/data.json)\n  Graph API    http://{}:{} (stand-in: connectWhatsApp works against it)\n  demo tenant  {} ({})\n  webchat demo http://{api}/webchat/{}/demo\nCtrl-C stops everything.\n",
        stack.temporal.ip,
        stack.temporal.ui_port,
        stack.temporal_address(),
        stack.temporal.namespace,
        stack.aws_endpoint(),
        stack.meta_graph.ip,
        stack.meta_graph.port,
        stack.demo_tenant.display_name,
        stack.demo_tenant.id,
        stack.demo_tenant.id,
    );
}
