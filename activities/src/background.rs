//! A tokio runtime on a thread of its own, for exporters that must outlive
//! the runtime of whoever started them (a test's runtime ends with the
//! test; a worker's with the worker) and that are driven from threads
//! tokio does not own (OpenTelemetry's batch span processor).

use std::future::Future;
use std::sync::mpsc;
use tokio::runtime::Handle;

/// Starts a current-thread runtime on a thread named `name`, runs `start`
/// on it, and returns its result and the runtime's handle. The runtime
/// lives as long as the process.
pub fn runtime<T, F>(
    name: &str,
    start: impl FnOnce() -> F + Send + 'static,
) -> anyhow::Result<(T, Handle)>
where
    T: Send + 'static,
    F: Future<Output = anyhow::Result<T>>,
{
    let (started_tx, started_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = started_tx.send(Err(anyhow::Error::from(e)));
                    return;
                }
            };
            let handle = runtime.handle().clone();
            runtime.block_on(async move {
                let started = start().await.map(|value| (value, handle));
                let serving = started.is_ok();
                let _ = started_tx.send(started);
                if serving {
                    // What `start` spawned runs on this runtime from now on.
                    std::future::pending::<()>().await;
                }
            });
        })?;
    started_rx
        .recv()
        .map_err(|_| anyhow::anyhow!("the {name} thread stopped before it started"))?
}
