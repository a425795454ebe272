//! Service settings: command-line flags overlaying environment variables
//! overlaying the defaults of DESIGN.md's external contract. Validated at
//! start-up; a missing or malformed value stops the process with a message
//! that names it.

use busflow_activities::crypto::KeyRing;
use busflow_activities::providers::aws::AwsSettings;
use busflow_activities::providers::whatsapp::meta::MetaSettings;
use busflow_activities::providers::whatsapp::onboarding::MetaApp;
use busflow_activities::sms_pool::SmsPool;
use busflow_activities::traces::{OtlpSettings, Traces, TracesGuard};
use busflow_api::temporal::TemporalSettings;
use busflow_workflows::names::TASK_QUEUE;
use clap::Args;
use std::net::SocketAddr;
use std::time::Duration;

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/busflow_comms";

/// Where Postgres is.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Postgres URL of the communications database.
    /// (Its value, which may carry a password, is never shown by `--help`.)
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = DEFAULT_DATABASE_URL,
        hide_env_values = true
    )]
    pub database_url: String,
    /// Connections in the pool.
    #[arg(long, env = "BUSFLOW_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
}

/// Where Temporal is and which queue this service uses.
#[derive(Debug, Clone, Args)]
pub struct TemporalArgs {
    /// Temporal frontend `host:port`; also read from TEMPORAL_ADDRESS by the Temporal
    /// client configuration (with TEMPORAL_NAMESPACE, TEMPORAL_TLS_*, TEMPORAL_API_KEY).
    #[arg(long = "temporal-address", env = "TEMPORAL_ADDRESS")]
    pub address: Option<String>,
    #[arg(long = "temporal-namespace", env = "TEMPORAL_NAMESPACE")]
    pub namespace: Option<String>,
    #[arg(long, env = "BUSFLOW_TASK_QUEUE", default_value = TASK_QUEUE)]
    pub task_queue: String,
}

impl TemporalArgs {
    /// The client settings, sealing payloads with the key ring of `keys`.
    pub fn settings(&self, keys: &KeyArgs) -> anyhow::Result<TemporalSettings> {
        Ok(TemporalSettings {
            address: self.address.clone(),
            namespace: self.namespace.clone(),
            payload_keys: Some(keys.key_ring()?),
            traces: Default::default(),
        })
    }
}

/// What the worker's activities need.
#[derive(Clone, Args)]
pub struct ProviderArgs {
    /// AWS region of SES and SNS.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub aws_region: String,
    /// Override the AWS endpoint (e.g. the moto emulator); unset for real AWS.
    #[arg(long, env = "BUSFLOW_AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,
    /// Meta Graph API base URL.
    #[arg(
        long,
        env = "BUSFLOW_META_GRAPH_URL",
        default_value = "https://graph.facebook.com"
    )]
    pub meta_graph_url: String,
    /// Meta Graph API version.
    #[arg(long, env = "BUSFLOW_META_API_VERSION", default_value = "v21.0")]
    pub meta_api_version: String,
    /// This service's public API URL: sandbox channel accounts post their
    /// simulated receipts to its webhooks. Unset: no simulated receipts.
    #[arg(long, env = "BUSFLOW_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// How long one WhatsApp send may wait for the Graph API's answer.
    #[arg(long, env = "BUSFLOW_META_SEND_TIMEOUT_MS", default_value_t = 15_000)]
    pub meta_send_timeout_ms: u64,
    /// The platform's Meta app id, through which tenants connect their
    /// WhatsApp numbers (Embedded Signup). Unset: connecting is refused.
    #[arg(long, env = "BUSFLOW_META_APP_ID")]
    pub meta_app_id: Option<String>,
    /// The platform's Meta app secret (with BUSFLOW_META_APP_ID).
    #[arg(long, env = "BUSFLOW_META_APP_SECRET", hide_env_values = true)]
    pub meta_app_secret: Option<String>,
}

impl std::fmt::Debug for ProviderArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderArgs")
            .field("aws_region", &self.aws_region)
            .field("aws_endpoint_url", &self.aws_endpoint_url)
            .field("meta_graph_url", &self.meta_graph_url)
            .field("meta_api_version", &self.meta_api_version)
            .field("public_url", &self.public_url)
            .field("meta_app_id", &self.meta_app_id)
            .field(
                "meta_app_secret",
                &self.meta_app_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl ProviderArgs {
    pub fn meta(&self) -> MetaSettings {
        MetaSettings {
            graph_base_url: self.meta_graph_url.clone(),
            api_version: self.meta_api_version.clone(),
            send_timeout: Duration::from_millis(self.meta_send_timeout_ms),
            app: match (&self.meta_app_id, &self.meta_app_secret) {
                (Some(app_id), Some(app_secret)) => Some(MetaApp {
                    app_id: app_id.clone(),
                    app_secret: app_secret.clone(),
                }),
                _ => None,
            },
        }
    }

    pub fn aws(&self) -> AwsSettings {
        AwsSettings {
            region: self.aws_region.clone(),
            endpoint_url: self.aws_endpoint_url.clone(),
            static_credentials: None,
        }
    }
}

/// The key ring that seals channel account secrets and Temporal payloads.
#[derive(Clone, Args)]
pub struct KeyArgs {
    /// `id:base64-32-byte-key[,id:key…]`; the last (or BUSFLOW_ACTIVE_KEY_ID) seals new secrets.
    #[arg(long, env = "BUSFLOW_SECRET_KEYS", hide_env_values = true)]
    pub secret_keys: Option<String>,
    #[arg(long, env = "BUSFLOW_ACTIVE_KEY_ID")]
    pub active_key_id: Option<String>,
}

impl std::fmt::Debug for KeyArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyArgs")
            .field(
                "secret_keys",
                &self.secret_keys.as_ref().map(|_| "<redacted>"),
            )
            .field("active_key_id", &self.active_key_id)
            .finish()
    }
}

impl KeyArgs {
    pub fn key_ring(&self) -> anyhow::Result<KeyRing> {
        let spec = self.secret_keys.as_deref().unwrap_or_default();
        Ok(KeyRing::parse(spec, self.active_key_id.as_deref())?)
    }
}

/// What the HTTP API needs.
#[derive(Clone, Args)]
pub struct ApiArgs {
    /// Address the API listens on.
    #[arg(long, env = "BUSFLOW_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Shared secret Hasura sends in `x-busflow-secret`.
    #[arg(long, env = "BUSFLOW_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// How long one channel's dispatch may retry before it counts as failed.
    #[arg(long, env = "BUSFLOW_STEP_DEADLINE_SECS", default_value_t = 900)]
    pub step_deadline_secs: u64,
    /// Chunks of 500 recipients a trip-wide fan-out (trip delayed,
    /// cancelled…) sends at once.
    #[arg(long, env = "BUSFLOW_FANOUT_CONCURRENCY", default_value_t = 20)]
    pub fanout_concurrency: usize,
    /// Access key of the Firehose HTTP endpoint destination that delivers SMS receipts.
    #[arg(long, env = "BUSFLOW_FIREHOSE_ACCESS_KEY", hide_env_values = true)]
    pub firehose_access_key: Option<String>,
    /// SNS topics of SES event publishing that `/webhooks/ses` accepts
    /// (comma-separated ARNs, or `none`). Required.
    #[arg(long, env = "BUSFLOW_SNS_SES_EVENT_TOPIC_ARNS", value_delimiter = ',')]
    pub sns_ses_event_topics: Vec<String>,
    /// SNS topics of SES receipt rules (inbound email) that `/webhooks/sns`
    /// accepts (comma-separated ARNs, or `none`). Required.
    #[arg(
        long,
        env = "BUSFLOW_SNS_INBOUND_EMAIL_TOPIC_ARNS",
        value_delimiter = ','
    )]
    pub sns_inbound_email_topics: Vec<String>,
    /// SNS topics of two-way SMS that `/webhooks/sns` accepts
    /// (comma-separated ARNs, or `none`). Required.
    #[arg(
        long,
        env = "BUSFLOW_SNS_INBOUND_SMS_TOPIC_ARNS",
        value_delimiter = ','
    )]
    pub sns_inbound_sms_topics: Vec<String>,
    /// How long a webchat visitor's token is valid (it is renewed after).
    #[arg(long, env = "BUSFLOW_WEBCHAT_TOKEN_TTL_SECS", default_value_t = 24 * 3600)]
    pub webchat_token_ttl_secs: u64,
    /// New webchat sessions one client address may start: a burst of this
    /// many, then one every 30 s.
    #[arg(
        long,
        env = "BUSFLOW_WEBCHAT_SESSIONS_PER_ADDRESS",
        default_value_t = 10
    )]
    pub webchat_sessions_per_address: i32,
    /// The header a trusted proxy in front of the API puts the client's
    /// address in (e.g. `x-forwarded-for`; its last entry counts). Unset:
    /// the connection's peer address.
    #[arg(long, env = "BUSFLOW_CLIENT_ADDRESS_HEADER")]
    pub client_address_header: Option<axum::http::HeaderName>,
    /// The platform's SMS senders for tenants without a number of their own:
    /// `COUNTRY=sender[|sender…],…`, each sender an E.164 number or an
    /// alphanumeric sender id (e.g. `MX=+525500000100,ES=Busflow`).
    #[arg(long, env = "BUSFLOW_SMS_POOL", default_value = "")]
    pub sms_pool: String,
    /// SMS a tenant may send a day from the platform's senders.
    #[arg(long, env = "BUSFLOW_SMS_PLATFORM_DAILY_LIMIT", default_value_t = 1000)]
    pub sms_platform_daily_limit: u32,
    /// Bearer token `/metrics` requires (`Authorization: Bearer …`). Unset:
    /// `/metrics` is open, for a scraper on a private network.
    #[arg(long, env = "BUSFLOW_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// A message QUEUED longer than this is stuck (`busflow_stuck_messages`);
    /// the same setting as the worker's watchdog.
    #[arg(long, env = "BUSFLOW_STUCK_THRESHOLD_SECS", default_value_t = 300)]
    pub stuck_threshold_secs: u64,
    /// A request not answered within this many seconds is dropped and
    /// answered 503 (Hasura gives up on an action after 30 s).
    #[arg(long, env = "BUSFLOW_REQUEST_TIMEOUT_SECS", default_value_t = 29)]
    pub request_timeout_secs: u64,
    /// Requests in flight at once; beyond, new ones are answered 503 at once.
    #[arg(long, env = "BUSFLOW_MAX_CONCURRENT_REQUESTS", default_value_t = 512)]
    pub max_concurrent_requests: usize,
    /// Webchat long polls waiting at once; beyond, new ones are answered 503.
    #[arg(
        long,
        env = "BUSFLOW_WEBCHAT_MAX_WAITING_POLLS",
        default_value_t = 4096
    )]
    pub webchat_max_waiting_polls: usize,
    #[command(flatten)]
    pub codec: CodecArgs,
}

/// The codec server (`/codec/decode`, `/codec/encode`), through which ops
/// read the sealed payloads of Temporal's history.
#[derive(Clone, Args)]
pub struct CodecArgs {
    /// Bearer token ops tools present to the codec server.
    #[arg(long, env = "BUSFLOW_CODEC_TOKEN", hide_env_values = true)]
    pub codec_token: Option<String>,
    /// JWKS of the identity provider whose JWTs (e.g. the Web UI's SSO
    /// access token) the codec server accepts.
    #[arg(long, env = "BUSFLOW_CODEC_JWKS_URL")]
    pub codec_jwks_url: Option<String>,
    /// The `iss` those JWTs must carry.
    #[arg(long, env = "BUSFLOW_CODEC_JWT_ISSUER")]
    pub codec_jwt_issuer: Option<String>,
    /// The `aud` those JWTs must carry.
    #[arg(long, env = "BUSFLOW_CODEC_JWT_AUDIENCE")]
    pub codec_jwt_audience: Option<String>,
    /// Origins of the Temporal Web UI that may call the codec server from a
    /// browser, comma-separated (e.g. `https://temporal.example.com`).
    #[arg(long, env = "BUSFLOW_CODEC_UI_ORIGINS", value_delimiter = ',')]
    pub codec_ui_origins: Vec<axum::http::HeaderValue>,
}

impl std::fmt::Debug for CodecArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodecArgs")
            .field(
                "codec_token",
                &self.codec_token.as_ref().map(|_| "<redacted>"),
            )
            .field("codec_jwks_url", &self.codec_jwks_url)
            .field("codec_jwt_issuer", &self.codec_jwt_issuer)
            .field("codec_jwt_audience", &self.codec_jwt_audience)
            .field("codec_ui_origins", &self.codec_ui_origins)
            .finish()
    }
}

impl CodecArgs {
    /// The codec server's settings, for payloads of `namespace`.
    pub fn settings(&self, namespace: Option<String>) -> busflow_api::codec::CodecSettings {
        use busflow_api::codec::{OpsCredential, credential::JwtIssuer};
        busflow_api::codec::CodecSettings {
            credential: OpsCredential {
                bearer: self.codec_token.clone().filter(|t| !t.is_empty()),
                jwt: self.codec_jwks_url.clone().map(|url| {
                    std::sync::Arc::new(JwtIssuer::new(
                        url,
                        self.codec_jwt_issuer.clone(),
                        self.codec_jwt_audience.clone(),
                    ))
                }),
                open: false,
            },
            namespace,
            ui_origins: self.codec_ui_origins.clone(),
        }
    }
}

impl std::fmt::Debug for ApiArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiArgs")
            .field("listen", &self.listen)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("step_deadline_secs", &self.step_deadline_secs)
            .finish()
    }
}

impl ApiArgs {
    pub fn config(&self) -> anyhow::Result<busflow_api::ApiConfig> {
        let secret = self
            .webhook_secret
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "BUSFLOW_WEBHOOK_SECRET is not set: Hasura must send it in x-busflow-secret"
                )
            })?;
        let sns_topics = busflow_api::webhooks::sns_topics::SnsTopics::only(
            self.sns_ses_event_topics.clone(),
            self.sns_inbound_email_topics.clone(),
            self.sns_inbound_sms_topics.clone(),
        )?;
        Ok(busflow_api::ApiConfig {
            webhook_secret: secret,
            sns_topics,
            step_deadline: Duration::from_secs(self.step_deadline_secs),
            firehose_access_key: self.firehose_access_key.clone(),
            stuck_threshold: Duration::from_secs(self.stuck_threshold_secs),
            fanout_concurrency: self.fanout_concurrency,
            webchat: busflow_api::webchat::WebchatSettings {
                token_ttl: Duration::from_secs(self.webchat_token_ttl_secs),
                sessions_per_address: (1.0 / 30.0, self.webchat_sessions_per_address),
                client_address_header: self.client_address_header.clone(),
                ..Default::default()
            },
            platform_sms: busflow_api::PlatformSms {
                pool: SmsPool::parse(&self.sms_pool)?,
                daily_limit: self.sms_platform_daily_limit,
            },
            email_verification: Default::default(),
            metrics_token: self.metrics_token.clone().filter(|t| !t.is_empty()),
            codec: self.codec.settings(None),
            edge: busflow_api::edge::EdgeLimits {
                request_timeout: Duration::from_secs(self.request_timeout_secs),
                max_concurrent_requests: self.max_concurrent_requests,
                max_waiting_polls: self.webchat_max_waiting_polls,
            },
        })
    }
}

/// The stuck-message watchdog.
#[derive(Debug, Clone, Args)]
pub struct WatchdogArgs {
    /// How often the watchdog schedule sweeps (applies when the schedule is first created).
    #[arg(long, env = "BUSFLOW_WATCHDOG_INTERVAL_SECS", default_value_t = 60)]
    pub watchdog_interval_secs: u64,
    /// A message QUEUED longer than this is stuck.
    #[arg(long, env = "BUSFLOW_STUCK_THRESHOLD_SECS", default_value_t = 300)]
    pub stuck_threshold_secs: u64,
    /// Webhook that receives stuck-message alerts (JSON POST).
    #[arg(long, env = "BUSFLOW_ALERT_WEBHOOK_URL")]
    pub alert_webhook_url: Option<String>,
}

/// A worker's own metrics endpoint.
#[derive(Debug, Clone, Args)]
pub struct WorkerMetricsArgs {
    /// Serve this worker's `GET /metrics` (dispatch counters, latency,
    /// rate-limit waits) on this address; off when unset.
    #[arg(long, env = "BUSFLOW_WORKER_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl WatchdogArgs {
    pub fn settings(&self) -> crate::worker::WatchdogSettings {
        crate::worker::WatchdogSettings {
            interval: Duration::from_secs(self.watchdog_interval_secs),
            threshold: Duration::from_secs(self.stuck_threshold_secs),
            alert_url: self.alert_webhook_url.clone(),
        }
    }
}

/// Traces over OTLP/HTTP (protobuf): off unless an endpoint is set. The
/// OpenTelemetry variables, as every OTLP exporter reads them.
#[derive(Debug, Clone, Default, Args)]
pub struct TracesArgs {
    /// A collector's OTLP/HTTP endpoint (e.g. `http://collector:4318`);
    /// traces go to `<it>/v1/traces`. Unset (and no traces endpoint): no
    /// traces.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// The traces endpoint, used as it is (over `--otlp-endpoint`).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")]
    pub otlp_traces_endpoint: Option<String>,
    /// `service.name` of the spans.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "busflow-comms")]
    pub otel_service_name: String,
}

impl TracesArgs {
    /// The traces, and the guard that flushes them at exit; off without an
    /// endpoint.
    pub fn start(&self) -> anyhow::Result<(Traces, Option<TracesGuard>)> {
        let endpoint = match (&self.otlp_traces_endpoint, &self.otlp_endpoint) {
            (Some(traces), _) if !traces.is_empty() => traces.clone(),
            (_, Some(base)) if !base.is_empty() => {
                format!("{}/v1/traces", base.trim_end_matches('/'))
            }
            _ => return Ok((Traces::off(), None)),
        };
        let (traces, guard) = Traces::otlp(&OtlpSettings {
            endpoint: endpoint.clone(),
            service_name: self.otel_service_name.clone(),
            batch_delay: std::time::Duration::from_secs(5),
        })?;
        tracing::info!("exporting traces to {endpoint}");
        Ok((traces, Some(guard)))
    }
}
