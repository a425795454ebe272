//! Running the HTTP API on a listener until shutdown.

use anyhow::Context;
use busflow_api::AppState;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let address = listener
        .local_addr()
        .context("reading the listen address")?;
    tracing::info!(%address, "API listening on http://{address}");
    axum::serve(
        listener,
        busflow_api::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .context("serving the API")
}

/// Serves a worker's own `GET /metrics` until shutdown.
pub async fn serve_worker_metrics(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let address = listener
        .local_addr()
        .context("reading the listen address")?;
    tracing::info!(%address, "worker metrics on http://{address}/metrics");
    axum::serve(listener, busflow_api::metrics::worker_router())
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving the worker's metrics")
}

/// Binds the API address, naming it when it is taken.
pub async fn bind(address: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} (in use? set BUSFLOW_LISTEN)"))
}
