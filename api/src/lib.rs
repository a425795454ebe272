//! The busflow-comms HTTP API (axum): Hasura event triggers today; cron
//! triggers, actions and provider webhooks as they land. The full route list
//! is in `router`, so the API surface is visible in one place.

pub mod auth;
pub mod codec;
pub mod dead_letters;
pub mod edge;
pub mod error;
pub mod hasura;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod retry;
pub mod temporal;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod traced;
pub mod webchat;
pub mod webhooks;

use axum::Router;
use busflow_activities::crypto::KeyRing;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use temporal::TemporalGateway;
use utoipa_axum::router::OpenApiRouter;
use webhooks::sns::SnsVerifier;

/// Settings the handlers need.
#[derive(Clone)]
pub struct ApiConfig {
    /// Value of the `x-busflow-secret` header Hasura must send.
    pub webhook_secret: String,
    /// How long one channel's dispatch may retry before it counts as failed.
    pub step_deadline: Duration,
    /// Access key Firehose presents on `/webhooks/sms-status`; `None` disables it.
    pub firehose_access_key: Option<String>,
    /// A message QUEUED longer than this counts as stuck (`/metrics`).
    pub stuck_threshold: Duration,
    /// Chunks of 500 recipients a trip-wide fan-out sends at once.
    pub fanout_concurrency: usize,
    /// The SNS topics each SNS endpoint accepts.
    pub sns_topics: webhooks::sns_topics::SnsTopics,
    /// Webchat tokens and session limits.
    pub webchat: webchat::WebchatSettings,
    /// The platform's SMS senders for tenants without a number of their own.
    pub platform_sms: PlatformSms,
    /// How long and how often a sending domain's verification asks SES.
    pub email_verification: busflow_activities::email_domains::VerifyPatience,
    /// The bearer token `/metrics` requires; `None`: open.
    pub metrics_token: Option<String>,
    /// The codec server: who may read payloads, for which namespace and UI.
    pub codec: codec::CodecSettings,
    /// Time, body and concurrency limits of the HTTP edge.
    pub edge: edge::EdgeLimits,
}

/// The platform's SMS senders, and how many SMS a day a tenant may send
/// through them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSms {
    pub pool: busflow_activities::sms_pool::SmsPool,
    pub daily_limit: u32,
}

impl Default for PlatformSms {
    fn default() -> Self {
        Self {
            pool: Default::default(),
            daily_limit: 1000,
        }
    }
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("webhook_secret", &"<redacted>")
            .field("step_deadline", &self.step_deadline)
            .field(
                "firehose_access_key",
                &self.firehose_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<redacted>"),
            )
            .field("codec", &self.codec)
            .field("edge", &self.edge)
            .finish()
    }
}

/// Shared state of every handler.
pub struct AppState {
    pub pool: PgPool,
    /// Opens channel account secrets (Meta app secret, verify token).
    pub keys: KeyRing,
    /// Verifies SNS deliveries (SES events, inbound SMS and email).
    pub sns: SnsVerifier,
    /// Outbound HTTP (SNS subscription confirmation).
    pub http: reqwest::Client,
    pub temporal: TemporalGateway,
    pub config: ApiConfig,
    /// The tenants' Meta webhook keys, read lately.
    pub meta_signing: webhooks::meta_signing::SigningKeys,
    /// The webchat long polls waiting on this replica.
    pub webchat: Arc<webchat::hub::Hub>,
    /// Requests continue their caller's trace when tracing is on.
    pub traces: busflow_activities::traces::Traces,
}

impl AppState {
    /// The state with this process's outbound HTTP client.
    pub fn new(
        pool: PgPool,
        keys: KeyRing,
        temporal: TemporalGateway,
        config: ApiConfig,
        sns: SnsVerifier,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            pool,
            keys,
            sns,
            http: busflow_activities::http::client(Duration::from_secs(10))?,
            temporal,
            config,
            meta_signing: Default::default(),
            webchat: Default::default(),
            traces: Default::default(),
        })
    }
}

/// The production SNS verifier: certificates fetched over HTTPS from AWS
/// hosts only. Which topics each endpoint accepts is `ApiConfig::sns_topics`.
pub fn sns_verifier() -> anyhow::Result<SnsVerifier> {
    let fetcher = webhooks::sns::HttpsCertFetcher::new()?;
    Ok(SnsVerifier::new(Arc::new(fetcher)))
}

/// Every route of the service, each with the largest body it reads, behind
/// the edge's time and concurrency limits ([`edge`]). Routes are
/// registered only through `routes!`, with their `#[utoipa::path]`: the
/// same registration makes the OpenAPI document (`GET /openapi.json`).
pub fn router(state: Arc<AppState>) -> Router {
    let (router, _) = router_and_document(state);
    router
}

/// The router and its OpenAPI document.
pub fn router_and_document(state: Arc<AppState>) -> (Router, utoipa::openapi::OpenApi) {
    use edge::{BodyLimit, limited};
    use utoipa::OpenApi as _;
    use utoipa_axum::{router::OpenApiRouter, routes};
    let limits = state.config.edge.clone();
    let (service, mut document) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(limited(routes!(health::healthz), BodyLimit::Small))
        .routes(limited(routes!(health::readyz), BodyLimit::Small))
        .routes(limited(routes!(metrics::metrics), BodyLimit::Small))
        .routes(limited(routes!(openapi::document), BodyLimit::Small))
        .routes(limited(routes!(hasura::events::receive), BodyLimit::Batch))
        .routes(limited(
            routes!(hasura::actions::receive),
            BodyLimit::Command,
        ))
        .routes(limited(routes!(hasura::cron::receive), BodyLimit::Small))
        .routes(limited(
            routes!(webhooks::meta::verify, webhooks::meta::receive),
            BodyLimit::Batch,
        ))
        .routes(limited(
            routes!(webhooks::ses::receive),
            BodyLimit::Notification,
        ))
        .routes(limited(
            routes!(webhooks::sns_inbound::receive),
            BodyLimit::Notification,
        ))
        .routes(limited(
            routes!(webhooks::sms_status::receive),
            BodyLimit::Firehose,
        ))
        .merge(webchat_routes())
        .merge(codec_routes(&state.config.codec))
        .split_for_parts();
    let service = edge::bounded(
        service,
        limits.request_timeout,
        limits.max_concurrent_requests,
    );
    // The long poll waits up to its own limit: a time limit above it, and a
    // concurrency limit of its own.
    let (polls, polls_document) = webchat_poll_route().split_for_parts();
    document.merge(polls_document);
    let polls = edge::bounded(
        polls,
        webchat::LONGEST_POLL + Duration::from_secs(10),
        limits.max_waiting_polls,
    );
    let router = service
        .merge(polls)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            traced::requests,
        ))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(edge::errors_as_json))
        .layer(axum::Extension(Arc::new(document.clone())))
        .with_state(state);
    (router, document)
}

/// The codec server's routes, with CORS for the Web UI's origins.
fn codec_routes(settings: &codec::CodecSettings) -> OpenApiRouter<Arc<AppState>> {
    use edge::{BodyLimit, limited};
    use utoipa_axum::routes;
    OpenApiRouter::new()
        .routes(limited(routes!(codec::decode), BodyLimit::Batch))
        .routes(limited(routes!(codec::encode), BodyLimit::Batch))
        .layer(codec::cors(settings))
}

/// The widget's routes: called from any site that embeds it, so open to
/// every origin (a bearer token, never a cookie, admits the visitor).
fn webchat_routes() -> OpenApiRouter<Arc<AppState>> {
    use edge::{BodyLimit, limited};
    use utoipa_axum::routes;
    OpenApiRouter::new()
        .routes(limited(routes!(webchat::start_session), BodyLimit::Small))
        .routes(limited(routes!(webchat::renew_session), BodyLimit::Small))
        .routes(limited(
            routes!(webchat::receive_message),
            BodyLimit::Command,
        ))
        .routes(limited(routes!(webchat::mark_read), BodyLimit::Small))
        .routes(limited(
            routes!(webchat::assets::widget_js),
            BodyLimit::Small,
        ))
        .routes(limited(
            routes!(webchat::assets::demo_page),
            BodyLimit::Small,
        ))
        .layer(webchat_cors())
}

/// The visitor's long poll for new messages.
fn webchat_poll_route() -> OpenApiRouter<Arc<AppState>> {
    use edge::{BodyLimit, limited};
    use utoipa_axum::routes;
    OpenApiRouter::new()
        .routes(limited(routes!(webchat::fetch_messages), BodyLimit::Small))
        .layer(webchat_cors())
}

fn webchat_cors() -> tower_http::cors::CorsLayer {
    use tower_http::cors::{Any, CorsLayer};
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
        .allow_headers([
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_TYPE,
        ])
        .max_age(Duration::from_secs(3600))
}
