//! Services shared by every test of this binary: one Temporal dev server and
//! one moto server, started once from the project's installed tools (or an
//! external Temporal when TEMPORAL_ADDRESS is set), and a migrated template
//! database that each test clones. They run under a supervisor that stops them
//! when this process exits.

use busflow_comms::database;
use busflow_comms::dev::processes::{ManagedProcess, TemporalDevServer, free_port, wait_for_port};
use sqlx::{Connection, PgConnection};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

pub const POSTGRES_SERVER: &str = "postgres://postgres@127.0.0.1:5432";
pub const AWS_REGION: &str = "us-east-1";
pub const AWS_KEYS: (&str, &str) = ("testing", "testing");

pub struct SharedServices {
    pub temporal_address: String,
    pub aws_endpoint: String,
    pub template_database: String,
    _processes: Mutex<Vec<ManagedProcess>>,
}

static SERVICES: OnceLock<SharedServices> = OnceLock::new();

/// The shared services, started on first use. Started on a thread of their
/// own so that no test's runtime owns them.
pub fn shared() -> &'static SharedServices {
    shared_with_temporal(None)
}

/// The shared services, with the Temporal frontend at `temporal_address`
/// (a server the caller runs) when this is the first use.
pub fn shared_with_temporal(temporal_address: Option<String>) -> &'static SharedServices {
    SERVICES.get_or_init(|| {
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime for the shared services");
            runtime.block_on(start(temporal_address))
        })
        .join()
        .expect("starting shared test services panicked")
        .unwrap_or_else(|e| panic!("cannot start the shared test services: {e:#}"))
    })
}

pub fn tools_bin(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(".tools/venv/bin")
        .join(name)
}

pub fn log_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-logs")
}

async fn start(temporal_address: Option<String>) -> anyhow::Result<SharedServices> {
    let mut processes = Vec::new();
    let temporal_address = match temporal_address.or_else(|| {
        std::env::var("TEMPORAL_ADDRESS")
            .ok()
            .filter(|a| !a.is_empty())
    }) {
        Some(external) => external,
        None => {
            let port = free_port()?;
            let attributes: Vec<(String, String)> =
                busflow_workflows::names::search_attributes::registrations()
                    .iter()
                    .map(|(name, kind)| ((*name).to_owned(), (*kind).to_owned()))
                    .collect();
            let args = TemporalDevServer {
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
            let mut temporal = ManagedProcess::spawn(
                "Temporal dev server",
                &tools_bin("temporal"),
                &args,
                &log_dir().join(format!("temporal-{port}.log")),
            )?;
            let address = format!("127.0.0.1:{port}");
            wait_for_port(&mut temporal, &address, Duration::from_secs(60)).await?;
            processes.push(temporal);
            address
        }
    };
    let (moto, aws_endpoint) = start_moto(free_port()?).await?;
    processes.push(moto);
    let template_database = prepare_template_database().await?;
    Ok(SharedServices {
        temporal_address,
        aws_endpoint,
        template_database,
        _processes: Mutex::new(processes),
    })
}

/// A moto server on `port`; the caller owns (and stops) it.
pub async fn start_moto(port: u16) -> anyhow::Result<(ManagedProcess, String)> {
    let args = [
        "-H".to_owned(),
        "127.0.0.1".to_owned(),
        "-p".to_owned(),
        port.to_string(),
    ];
    let mut moto = ManagedProcess::spawn(
        "moto",
        &tools_bin("moto_server"),
        &args,
        &log_dir().join(format!("moto-{port}.log")),
    )?;
    let address = format!("127.0.0.1:{port}");
    wait_for_port(&mut moto, &address, Duration::from_secs(30)).await?;
    Ok((moto, format!("http://{address}")))
}

/// Creates and migrates the template every test database is cloned from, and
/// drops test databases that earlier runs left behind.
async fn prepare_template_database() -> anyhow::Result<String> {
    let name = format!("bftpl_{}", std::process::id());
    let mut admin = PgConnection::connect(&format!("{POSTGRES_SERVER}/postgres")).await?;
    let leftovers: Vec<String> = sqlx::query_scalar(
        "select datname from pg_database where datname like 'bft\\_%' or datname like 'bftpl\\_%'",
    )
    .fetch_all(&mut admin)
    .await?;
    for db in leftovers {
        // Fails while another test run uses it: that run is alive, leave it.
        let _ = sqlx::query(&format!("drop database if exists \"{db}\""))
            .execute(&mut admin)
            .await;
    }
    sqlx::query(&format!("create database \"{name}\""))
        .execute(&mut admin)
        .await?;
    let url = format!("{POSTGRES_SERVER}/{name}");
    let pool = database::connect(&url, 1).await?;
    database::migrate(&pool).await?;
    pool.close().await;
    Ok(name)
}

/// A fresh, migrated database for one test.
pub async fn fresh_database() -> anyhow::Result<String> {
    let template = &shared().template_database;
    let name = format!("bft_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&format!("{POSTGRES_SERVER}/postgres")).await?;
    sqlx::query(&format!(
        "create database \"{name}\" template \"{template}\""
    ))
    .execute(&mut admin)
    .await?;
    Ok(format!("{POSTGRES_SERVER}/{name}"))
}

/// Starts forwarding TCP connections on 127.0.0.1:`port` to `target`
/// (`host:port`): a dependency that "comes back" on an address the app
/// already uses, already in the state the test prepared.
pub async fn forward_port(port: u16, target: String) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the forwarded port");
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    })
}
