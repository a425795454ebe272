//! The parts the suite runs as OS processes: the Temporal dev server, with
//! its state on disk so it can be killed and started again, and the worker,
//! `busflow-comms worker`, as a user runs it.

use crate::support::services::{log_dir, tools_bin};
use busflow_comms::dev::processes::{ManagedProcess, TemporalDevServer, free_port, wait_for_port};
use std::path::PathBuf;
use std::time::Duration;

/// The Temporal dev server, on a fixed port and a database file.
pub struct DevServer {
    pub address: String,
    port: u16,
    db: PathBuf,
    process: Option<ManagedProcess>,
}

impl DevServer {
    pub async fn start() -> Self {
        let port = free_port().expect("port");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("faults-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("state dir");
        let mut server = Self {
            address: format!("127.0.0.1:{port}"),
            port,
            db: dir.join("temporal.db"),
            process: None,
        };
        server.run().await;
        server
    }

    async fn run(&mut self) {
        let attributes: Vec<(String, String)> =
            busflow_workflows::names::search_attributes::registrations()
                .iter()
                .map(|(name, kind)| ((*name).to_owned(), (*kind).to_owned()))
                .collect();
        let pragmas = [
            ("journal_mode".to_owned(), "wal".to_owned()),
            ("synchronous".to_owned(), "normal".to_owned()),
        ];
        let db = self.db.to_string_lossy().into_owned();
        let args = TemporalDevServer {
            ip: "127.0.0.1",
            port: self.port,
            ui_port: None,
            ui_codec_endpoint: None,
            namespace: "default",
            db_filename: Some(std::path::Path::new(&db)),
            sqlite_pragmas: &pragmas,
            search_attributes: &attributes,
            log_level: "error",
        }
        .args();
        let mut process = ManagedProcess::spawn_with_env(
            "Temporal dev server",
            &tools_bin("temporal"),
            &args,
            &[],
            &log_dir().join(format!("faults-temporal-{}.log", self.port)),
        )
        .expect("start the dev server");
        wait_for_port(&mut process, &self.address, Duration::from_secs(60))
            .await
            .expect("dev server up");
        self.process = Some(process);
        self.wait_until_serving(Duration::from_secs(60)).await;
    }

    /// The port opens before the frontend serves ("Frontend is not healthy
    /// yet"): waits until a client connects.
    async fn wait_until_serving(&self, within: Duration) {
        let settings = busflow_api::temporal::TemporalSettings {
            address: Some(self.address.clone()),
            namespace: Some("default".to_owned()),
            payload_keys: None,
            traces: Default::default(),
        };
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match busflow_api::temporal::connect(&settings, "busflow-comms-faults").await {
                Ok(_) => return,
                Err(e) if tokio::time::Instant::now() > deadline => {
                    panic!("the dev server did not serve within {within:?}: {e:#}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// SIGKILL, then the same server again on its port and its file.
    pub async fn restart_after(&mut self, down: Duration) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
        tokio::time::sleep(down).await;
        self.run().await;
    }
}

/// `busflow-comms worker`, restarted at will.
pub struct WorkerProcess {
    env: Vec<(String, String)>,
    log: PathBuf,
    process: Option<ManagedProcess>,
    started: std::time::Instant,
    pub kills: usize,
}

impl WorkerProcess {
    pub fn start(env: Vec<(String, String)>, crash_at: Option<(&str, u64)>) -> Self {
        let log = log_dir().join(format!(
            "faults-worker-{}.log",
            uuid::Uuid::new_v4().simple()
        ));
        let mut worker = Self {
            env,
            log,
            process: None,
            started: std::time::Instant::now(),
            kills: 0,
        };
        worker.run(crash_at);
        worker
    }

    fn run(&mut self, crash_at: Option<(&str, u64)>) {
        let mut env = self.env.clone();
        if let Some((point, after)) = crash_at {
            env.push(("BUSFLOW_FAULT_ABORT_AT".into(), point.into()));
            env.push(("BUSFLOW_FAULT_ABORT_AFTER".into(), after.to_string()));
        }
        let process = ManagedProcess::spawn_with_env(
            "busflow-comms worker",
            std::path::Path::new(env!("CARGO_BIN_EXE_busflow-comms")),
            &["worker".to_owned()],
            &env,
            &self.log,
        )
        .expect("start the worker");
        self.process = Some(process);
        self.started = std::time::Instant::now();
    }

    /// SIGKILL now, and a new worker at once.
    pub fn kill_and_restart(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
        self.kills += 1;
        self.run(None);
    }

    /// Waits for the worker to abort at its crash point (up to `within`),
    /// then starts a new one (armed again when `crash_at` says so).
    pub async fn restart_once_crashed(
        &mut self,
        within: Duration,
        crash_at: Option<(&str, u64)>,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            // Its supervisor forks it a moment after it starts.
            let crashed = self.started.elapsed() > Duration::from_secs(1)
                && self.process.as_ref().is_none_or(|p| !p.service_running());
            if crashed {
                self.kills += 1;
                if let Some(mut dead) = self.process.take() {
                    dead.kill();
                }
                self.run(crash_at);
                return true;
            }
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_tail(&self) -> String {
        self.process
            .as_ref()
            .map(|p| p.log_tail(30))
            .unwrap_or_default()
    }
}
