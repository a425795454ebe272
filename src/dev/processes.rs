//! Child services of the local stack (the Temporal dev server, the moto AWS
//! emulator), started and stopped so that none outlives us.
//!
//! Each child runs under a tiny `sh` supervisor that waits on its stdin: when
//! we stop the service — or when this process dies for any reason and the
//! pipe closes — the supervisor sends SIGTERM to the child and waits for it.
//! Output goes to a log file whose tail is shown when a service fails to start.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

const SUPERVISOR: &str = r#""$@" & child=$!
read _ignored
kill -TERM "$child" 2>/dev/null
wait "$child""#;

/// A running child service.
pub struct ManagedProcess {
    name: String,
    supervisor: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl ManagedProcess {
    /// Starts `program args…`, logging to `log`.
    pub fn spawn(name: &str, program: &Path, args: &[String], log: &Path) -> anyhow::Result<Self> {
        Self::start(name, program, args, &[], log, false)
    }

    /// Starts `program args…` with `env` added to ours, logging to `log`
    /// (appended to, so a restarted service keeps one log).
    pub fn spawn_with_env(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        log: &Path,
    ) -> anyhow::Result<Self> {
        Self::start(name, program, args, env, log, true)
    }

    fn start(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        log: &Path,
        append: bool,
    ) -> anyhow::Result<Self> {
        if !program.exists() {
            anyhow::bail!(
                "{name}: {} is not installed; run scripts/tools.sh (the README's commands do)",
                program.display()
            );
        }
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let out = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone()?;
        let mut supervisor = Command::new("sh")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("sh")
            .arg(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let stdin = supervisor.stdin.take();
        Ok(Self {
            name: name.to_owned(),
            supervisor,
            stdin,
            log: log.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The service's own process id (the supervisor's child), once it runs.
    pub fn service_pid(&self) -> Option<u32> {
        let supervisor = self.supervisor.id();
        std::fs::read_to_string(format!("/proc/{supervisor}/task/{supervisor}/children"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Whether the service (its supervisor) has exited.
    /// Whether the service itself (not its supervisor, which outlives it
    /// until stopped) still runs.
    pub fn service_running(&self) -> bool {
        let Some(pid) = self.service_pid() else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // `pid (comm) state …`; a zombie has died and waits to be reaped.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z")
    }

    pub fn has_exited(&mut self) -> bool {
        matches!(self.supervisor.try_wait(), Ok(Some(_)))
    }

    /// The last lines of the service's log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Kills the service with SIGKILL (no shutdown, nothing flushed) and
    /// waits for its supervisor to notice.
    pub fn kill(&mut self) {
        if let Some(pid) = self.service_pid() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        drop(self.stdin.take());
        let _ = self.supervisor.wait();
    }

    /// Asks the child to stop (SIGTERM) and waits up to `grace` for it.
    pub fn stop(&mut self, grace: Duration) {
        drop(self.stdin.take());
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.has_exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::warn!("{} did not stop within {grace:?}; killing it", self.name);
        let _ = self.supervisor.kill();
        let _ = self.supervisor.wait();
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        if !self.has_exited() {
            self.stop(Duration::from_secs(5));
        }
    }
}

/// The dev server's dynamic config key that lets workers start the
/// activities they schedule eagerly (dev, tests and the benchmark alike).
pub const EAGER_ACTIVITIES: &str = "system.enableActivityEagerExecution";

/// Arguments of `temporal server start-dev`.
pub struct TemporalDevServer<'a> {
    pub ip: &'a str,
    pub port: u16,
    /// `None` runs headless.
    pub ui_port: Option<u16>,
    /// The codec server the UI decodes payloads with.
    pub ui_codec_endpoint: Option<&'a str>,
    pub namespace: &'a str,
    /// `None` keeps state in memory.
    pub db_filename: Option<&'a Path>,
    pub sqlite_pragmas: &'a [(String, String)],
    pub search_attributes: &'a [(String, String)],
    pub log_level: &'a str,
}

impl TemporalDevServer<'_> {
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = ["server", "start-dev", "--ip", self.ip, "--port"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        args.push(self.port.to_string());
        match self.ui_port {
            Some(ui) => args.extend(["--ui-port".to_owned(), ui.to_string()]),
            None => args.push("--headless".to_owned()),
        }
        if let Some(endpoint) = self.ui_codec_endpoint {
            args.extend(["--ui-codec-endpoint".to_owned(), endpoint.to_owned()]);
        }
        args.extend(["--namespace".to_owned(), self.namespace.to_owned()]);
        if let Some(db) = self.db_filename {
            args.extend(["--db-filename".to_owned(), db.display().to_string()]);
        }
        for (key, value) in self.sqlite_pragmas {
            args.extend(["--sqlite-pragma".to_owned(), format!("{key}={value}")]);
        }
        for (name, kind) in self.search_attributes {
            args.extend(["--search-attribute".to_owned(), format!("{name}={kind}")]);
        }
        args.extend(["--log-level".to_owned(), self.log_level.to_owned()]);
        // Off by default in the server: a workflow task that schedules an
        // activity on its own queue gets the activity back in the reply
        // instead of a round trip through matching. The SDK asks for it on
        // every activity (up to 3 per workflow task) unless told otherwise.
        args.extend([
            "--dynamic-config-value".to_owned(),
            format!("{EAGER_ACTIVITIES}=true"),
        ]);
        args
    }
}

/// Waits until something accepts TCP connections on `address`, or the
/// process dies, or `timeout` passes.
pub async fn wait_for_port(
    process: &mut ManagedProcess,
    address: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return Ok(());
        }
        if process.has_exited() || Instant::now() > deadline {
            anyhow::bail!(
                "{} did not come up on {address} (port taken by another process?). Its log:\n{}",
                process.name(),
                process.log_tail(20)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A free TCP port on 127.0.0.1 (for tests and ephemeral services).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}
