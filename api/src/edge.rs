//! The HTTP edge: what every request meets before its handler, so that no
//! caller can tie the service up.
//!
//! - **Body limits per route** ([`BodyLimit`]): a body larger than its
//!   route's limit is refused with 413 `PAYLOAD_TOO_LARGE`, read no further.
//! - **A time limit per request** (tower-http's `TimeoutLayer`): a handler
//!   that has not answered within [`EdgeLimits::request_timeout`] is
//!   dropped and answered 503 with `Retry-After`. Every handler is
//!   idempotent (a workflow id or a unique key makes a retry harmless, and
//!   a dropped transaction rolls back), so dropping one is safe. The
//!   webchat long poll has a limit of its own, above its longest wait.
//! - **Concurrency limits** (tower's `load_shed` over a global
//!   concurrency limit):
//!   beyond [`EdgeLimits::max_concurrent_requests`] requests in flight, a
//!   new one is answered 503 `OVERLOADED` at once, with `Retry-After`,
//!   instead of queueing behind the others. Visitors' long polls, which
//!   mostly wait, count against [`EdgeLimits::max_waiting_polls`] instead.
//! - **One error shape**: an error answered before any handler ran (an
//!   unknown route, a wrong method, a body too large, a timeout, an
//!   overload) gets the same JSON body as every handler's error,
//!   `{"message", "extensions": {"code"}}`.

use crate::error::{ApiError, RETRY_AFTER_SECS};
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa_axum::router::{UtoipaMethodRouter, UtoipaMethodRouterExt as _};

/// How much work the edge lets in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeLimits {
    /// A request not answered within this is dropped (503 `REQUEST_TIMEOUT`).
    /// Hasura gives up on an action after 30 s, so an answer later than
    /// that reaches nobody.
    pub request_timeout: Duration,
    /// Requests in flight at once, beyond which new ones are answered 503
    /// `OVERLOADED`.
    pub max_concurrent_requests: usize,
    /// Webchat long polls waiting at once, beyond which new ones are
    /// answered 503 `OVERLOADED` (the widget polls again).
    pub max_waiting_polls: usize,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(29),
            max_concurrent_requests: 512,
            max_waiting_polls: 4096,
        }
    }
}

/// The largest body each route reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLimit {
    /// GETs and small JSON commands (cron triggers, webchat sessions).
    Small,
    /// Hasura actions and a visitor's message: a reply, an id or two.
    Command,
    /// Provider webhooks carrying one notification (SNS allows 256 KiB
    /// messages; the envelope escapes them).
    Notification,
    /// Hasura events (whole rows, old and new), Meta's batched webhooks,
    /// the codec's batches of payloads.
    Batch,
    /// Firehose deliveries: buffered up to 5 MiB, then base64-encoded.
    Firehose,
}

impl BodyLimit {
    /// The limit in bytes.
    pub const fn bytes(self) -> usize {
        match self {
            BodyLimit::Small => 16 * 1024,
            BodyLimit::Command => 256 * 1024,
            BodyLimit::Notification => 1024 * 1024,
            BodyLimit::Batch => 4 * 1024 * 1024,
            BodyLimit::Firehose => 8 * 1024 * 1024,
        }
    }
}

/// `route` reading bodies of at most `limit`.
pub fn limited<S>(route: UtoipaMethodRouter<S>, limit: BodyLimit) -> UtoipaMethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    route.layer(DefaultBodyLimit::max(limit.bytes()))
}

/// Applies the time limit and the concurrency limit of `limits` to
/// `router` (every route added before).
pub fn bounded<S>(router: axum::Router<S>, timeout: Duration, concurrency: usize) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                    overloaded()
                }))
                .load_shed()
                // One semaphore for every route: axum layers each route apart.
                .layer(GlobalConcurrencyLimitLayer::new(concurrency)),
        )
}

fn overloaded() -> Response {
    ApiError::unavailable(
        "OVERLOADED",
        "the service is handling as many requests as it takes; try again shortly",
    )
    .into_response()
}

/// Gives an error answered before any handler ran (its body empty or plain
/// text) the JSON shape of every other error, naming the problem.
pub async fn errors_as_json(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("NOT_FOUND", format!("no route {path}")),
        StatusCode::METHOD_NOT_ALLOWED => (
            "METHOD_NOT_ALLOWED",
            format!("{path} does not take this method"),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "PAYLOAD_TOO_LARGE",
            format!("the body is larger than {path} accepts"),
        ),
        StatusCode::SERVICE_UNAVAILABLE => (
            "REQUEST_TIMEOUT",
            format!("{path} did not answer in time; try again (it is safe to repeat)"),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "UNSUPPORTED_MEDIA_TYPE",
            "the body must be JSON (content-type: application/json)".to_owned(),
        ),
        other => (
            "BAD_REQUEST",
            other
                .canonical_reason()
                .unwrap_or("the request was refused")
                .to_owned(),
        ),
    };
    let error = ApiError::client(status, code, message);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        error.retry_after(RETRY_AFTER_SECS).into_response()
    } else {
        error.into_response()
    }
}
