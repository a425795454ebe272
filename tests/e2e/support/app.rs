//! `TestApp`: the real service — API on a random port, a worker on its own
//! task queue, a fresh database — wired to the shared Temporal and moto, with
//! one helper per thing a test does.

use super::services::{self, AWS_KEYS, AWS_REGION};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use busflow_activities::crypto::KeyRing;
use busflow_activities::model::{ContactId, TenantId};
use busflow_activities::notification::NotificationActivities;
use busflow_activities::providers::aws::AwsSettings;
use busflow_activities::providers::whatsapp::meta::MetaSettings;
use busflow_activities::providers::whatsapp::onboarding::MetaApp;
use busflow_activities::traces::{OtlpSettings, Traces, TracesGuard};
use busflow_api::temporal::{TemporalGateway, TemporalSettings};
use busflow_api::testing::StaticCertFetcher;
use busflow_api::webhooks::sns::SnsVerifier;
use busflow_api::webhooks::sns_topics::SnsTopics;
use busflow_api::{ApiConfig, AppState};
use busflow_comms::dev::seed;
use busflow_comms::shutdown::Shutdown;
use busflow_comms::{database, server, worker};
use busflow_workflows::NotificationWorkflow;
use busflow_workflows::names::notification_workflow_id;
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use temporalio_client::{
    Client, UntypedWorkflow, WorkflowFetchHistoryOptions, WorkflowGetResultOptions,
};
use temporalio_common::protos::temporal::api::common::v1::Payload;
use uuid::Uuid;

pub const SECRET: &str = "test-webhook-secret";
pub const FIREHOSE_KEY: &str = "test-firehose-access-key";

/// The widget secret of the webchat accounts tests make.
pub const WIDGET_SECRET: &str = "widget-secret-for-tests";

/// The keys of the test key ring, in `BUSFLOW_SECRET_KEYS` form.
pub const TEST_KEY_SPEC: &str = "test-1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=,test-2:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";

/// The test key ring (two keys, so rotation can be exercised); `test-2` seals.
pub fn test_keys() -> KeyRing {
    KeyRing::parse(TEST_KEY_SPEC, Some("test-2")).expect("test key ring")
}

/// How a test wants its app wired; defaults point at the shared services.
pub struct TestOptions {
    pub temporal_address: Option<String>,
    pub aws_endpoint: Option<String>,
    pub step_deadline: Duration,
    pub start_worker: bool,
    /// The Graph API fake (a wiremock server's URI).
    pub meta_graph_url: Option<String>,
    /// Where the watchdog posts stuck-message alerts.
    pub alert_url: Option<String>,
    pub fanout_concurrency: usize,
    /// How long the worker waits for the Graph API's answer to a send.
    pub meta_timeout: Duration,
    /// The SNS topics of each feed (default: the test topic for all).
    pub sns_topics: Option<SnsTopics>,
    /// Activity slots of the test's worker (its pool follows).
    pub worker_slots: usize,
    /// The platform's Meta app (Embedded Signup).
    pub meta_app: Option<MetaApp>,
    /// The platform's SMS senders.
    pub platform_sms: busflow_api::PlatformSms,
    /// How a sending domain's verification waits for SES.
    pub email_verification: busflow_activities::email_domains::VerifyPatience,
    /// The bearer token `/metrics` requires.
    pub metrics_token: Option<String>,
    /// The HTTP edge's limits.
    pub edge: busflow_api::edge::EdgeLimits,
    /// An OTLP/HTTP traces endpoint: the API, the workflows and the
    /// providers' calls export their spans there.
    pub otlp_endpoint: Option<String>,
    /// Who the codec server admits (default: the bearer `CODEC_TOKEN`).
    pub codec: busflow_api::codec::CodecSettings,
}

/// The ops credential of the test codec server.
pub const CODEC_TOKEN: &str = "test-ops-codec-token";
/// The Web UI origin the test codec server allows.
pub const UI_ORIGIN: &str = "http://127.0.0.1:8233";

fn test_codec() -> busflow_api::codec::CodecSettings {
    busflow_api::codec::CodecSettings {
        credential: busflow_api::codec::OpsCredential {
            bearer: Some(CODEC_TOKEN.to_owned()),
            ..Default::default()
        },
        namespace: Some("default".to_owned()),
        ui_origins: vec![axum::http::HeaderValue::from_static(UI_ORIGIN)],
    }
}

impl Default for TestOptions {
    fn default() -> Self {
        Self {
            temporal_address: None,
            aws_endpoint: None,
            step_deadline: Duration::from_secs(120),
            start_worker: true,
            meta_graph_url: None,
            alert_url: None,
            fanout_concurrency: 20,
            meta_timeout: busflow_activities::providers::whatsapp::meta::SEND_TIMEOUT,
            sns_topics: None,
            worker_slots: 8,
            meta_app: None,
            platform_sms: Default::default(),
            codec: test_codec(),
            email_verification: Default::default(),
            metrics_token: None,
            edge: Default::default(),
            otlp_endpoint: None,
        }
    }
}

pub struct TestApp {
    pub base_url: String,
    pub pool: PgPool,
    pub tenant_id: TenantId,
    /// Sender domain of this test's tenant (unique per test).
    pub domain: String,
    pub aws_endpoint: String,
    pub temporal_address: String,
    /// This test's task queue (its worker polls nothing else).
    pub task_queue: String,
    http: reqwest::Client,
    /// Exports the spans of a test with `otlp_endpoint` ([`Self::flush_traces`]).
    traces_guard: Option<Arc<TracesGuard>>,
    shutdown: Shutdown,
    /// How this test's worker is wired: a second worker process is another
    /// worker with the same wiring.
    worker: WorkerWiring,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// One email as moto recorded it.
#[derive(Debug, Clone, Deserialize)]
pub struct SentEmail {
    pub id: String,
    pub source: String,
    pub destinations: Value,
    pub subject: String,
    pub body: String,
}

impl SentEmail {
    pub fn to(&self) -> Vec<String> {
        self.destinations["ToAddresses"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(TestOptions::default()).await
    }

    pub async fn spawn_with(options: TestOptions) -> Self {
        let shared = services::shared();
        let database_url = services::fresh_database().await.expect("test database");
        let pool = database::connect(&database_url, 5)
            .await
            .expect("test pool");
        let temporal_address = options
            .temporal_address
            .clone()
            .unwrap_or_else(|| shared.temporal_address.clone());
        let aws_endpoint = options
            .aws_endpoint
            .clone()
            .unwrap_or_else(|| shared.aws_endpoint.clone());
        let task_queue = format!("test-{}", Uuid::new_v4().simple());
        let tenant_id = TenantId(Uuid::new_v4());
        let domain = format!(
            "t{}.busflow.test",
            &Uuid::new_v4().simple().to_string()[..12]
        );
        let shutdown = Shutdown::new();
        let (traces, traces_guard) = match &options.otlp_endpoint {
            Some(endpoint) => {
                let (traces, guard) = Traces::otlp(&OtlpSettings {
                    endpoint: endpoint.clone(),
                    service_name: "busflow-comms-test".to_owned(),
                    batch_delay: Duration::from_millis(200),
                })
                .expect("the OTLP exporter");
                (traces, Some(Arc::new(guard)))
            }
            None => (Traces::off(), None),
        };
        let temporal_settings = TemporalSettings {
            address: Some(temporal_address.clone()),
            namespace: Some("default".to_owned()),
            payload_keys: Some(test_keys()),
            traces: traces.clone(),
        };

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind API");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        let wiring = WorkerWiring {
            temporal: temporal_settings.clone(),
            task_queue: task_queue.clone(),
            database_url: database_url.clone(),
            aws: aws_settings(&aws_endpoint),
            meta: MetaSettings {
                graph_base_url: options
                    .meta_graph_url
                    .clone()
                    .unwrap_or_else(|| "http://127.0.0.1:9".to_owned()),
                api_version: "v21.0".to_owned(),
                send_timeout: options.meta_timeout,
                app: options.meta_app.clone(),
            },
            sandbox_webhook_base: base_url.clone(),
            alert_url: options.alert_url.clone(),
            slots: options.worker_slots,
            shutdown: shutdown.clone(),
        };
        if options.start_worker {
            spawn_worker(wiring.clone());
        }

        let sns = SnsVerifier::new(Arc::new(StaticCertFetcher::test_cert()));
        let mut state = AppState::new(
            pool.clone(),
            test_keys(),
            TemporalGateway::new(temporal_settings, task_queue.clone()),
            ApiConfig {
                sns_topics: options.sns_topics.clone().unwrap_or_else(|| {
                    SnsTopics::same_for_every_feed(vec![
                        busflow_api::testing::TEST_TOPIC_ARN.to_owned(),
                    ])
                }),
                webhook_secret: SECRET.to_owned(),
                step_deadline: options.step_deadline,
                firehose_access_key: Some(FIREHOSE_KEY.to_owned()),
                stuck_threshold: Duration::from_secs(300),
                fanout_concurrency: options.fanout_concurrency,
                webchat: Default::default(),
                platform_sms: options.platform_sms.clone(),
                email_verification: options.email_verification,
                metrics_token: options.metrics_token.clone(),
                codec: options.codec.clone(),
                edge: options.edge.clone(),
            },
            sns,
        )
        .expect("app state");
        state.traces = traces;
        let state = Arc::new(state);
        tokio::spawn(server::serve(listener, state, shutdown.wait()));

        let app = Self {
            base_url,
            pool,
            tenant_id,
            domain,
            aws_endpoint,
            temporal_address,
            task_queue,

            http: busflow_activities::http::client(Duration::from_secs(60)).expect("http client"),
            traces_guard,
            shutdown,
            worker: wiring,
        };
        seed::upsert_tenant(
            &app.pool,
            tenant_id,
            "Autobuses Prueba",
            "MX",
            "es-MX",
            "America/Mexico_City",
        )
        .await
        .expect("seed tenant");
        app
    }

    /// The tenant's ACTIVE SES account sending from `reservas@<domain>`, with
    /// the domain verified on the emulator when `verified`.
    pub async fn add_email_account(&self, verified: bool) {
        if verified {
            let providers = worker::providers(
                &aws_settings(&self.aws_endpoint),
                MetaSettings::default(),
                None,
            )
            .await
            .expect("providers");
            providers
                .ses
                .create_domain_identity(&self.domain)
                .await
                .expect("verify sender domain on moto");
        }
        seed::upsert_email_account(
            &self.pool,
            self.tenant_id,
            &self.sender(),
            "Autobuses Prueba",
        )
        .await
        .expect("seed email account");
    }

    /// This test's database (the worker's connection string).
    #[allow(dead_code)] // the fault suite's
    pub fn database_url(&self) -> &str {
        &self.worker.database_url
    }

    /// The HTTP client the helpers use to call the API and moto.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn sender(&self) -> String {
        format!("reservas@{}", self.domain)
    }

    /// A unique recipient address for this test.
    pub fn recipient(&self, name: &str) -> String {
        format!("{name}@inbox.{}", self.domain)
    }

    pub async fn post_event(&self, payload: &Value) -> reqwest::Response {
        self.post_raw(payload.to_string(), Some(SECRET)).await
    }

    /// Calls a Hasura action as `role` of this test's tenant.
    pub async fn post_action(&self, name: &str, input: Value, role: &str) -> reqwest::Response {
        self.post_action_as(
            name,
            input,
            json!({
                "x-hasura-role": role,
                "x-hasura-user-id": "agent-1",
                "x-hasura-tenant-id": self.tenant_id.0.to_string(),
            }),
        )
        .await
    }

    pub async fn post_action_as(
        &self,
        name: &str,
        input: Value,
        session: Value,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}/hasura/actions", self.base_url))
            .header("x-busflow-secret", SECRET)
            .json(
                &json!({"action": {"name": name}, "input": input, "session_variables": session,
                          "request_query": "mutation { ... }"}),
            )
            .send()
            .await
            .expect("POST /hasura/actions")
    }

    pub async fn post_raw(&self, body: String, secret: Option<&str>) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/hasura/events", self.base_url))
            .header("content-type", "application/json")
            .body(body);
        if let Some(secret) = secret {
            request = request.header("x-busflow-secret", secret);
        }
        request.send().await.expect("POST /hasura/events")
    }

    /// POSTs an SES event as SNS delivers it, signed with the test key
    /// (`tamper` changes the message after signing).
    pub async fn post_ses_event(&self, event: &Value, tamper: bool) -> reqwest::Response {
        use busflow_api::testing::{TEST_KEY_PEM, notification, sign_envelope};
        let mut envelope = notification(&event.to_string());
        envelope.message_id = Uuid::new_v4().to_string();
        sign_envelope(&mut envelope, TEST_KEY_PEM);
        if tamper {
            envelope.message = envelope.message.replace("Delivery", "Bounce");
        }
        self.http
            .post(format!("{}/webhooks/ses", self.base_url))
            .header("content-type", "text/plain; charset=UTF-8")
            .header("x-amz-sns-message-type", "Notification")
            .body(serde_json::to_string(&envelope).expect("envelope json"))
            .send()
            .await
            .expect("POST /webhooks/ses")
    }

    /// POSTs SNS SMS delivery-status records as Firehose delivers them from
    /// CloudWatch Logs (gzip, base64), with the given access key.
    pub async fn post_sms_receipts(
        &self,
        records: &[Value],
        access_key: &str,
    ) -> reqwest::Response {
        use base64::Engine;
        use std::io::Write;
        let batch = json!({
            "messageType": "DATA_MESSAGE",
            "logGroup": "sns/us-east-1/123456789012/DirectPublishToPhoneNumber",
            "logEvents": records.iter().enumerate()
                .map(|(i, r)| json!({"id": i.to_string(), "timestamp": 0, "message": r.to_string()}))
                .collect::<Vec<_>>(),
        });
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(batch.to_string().as_bytes()).expect("gzip");
        let data = base64::engine::general_purpose::STANDARD.encode(gz.finish().expect("gzip"));
        self.http
            .post(format!("{}/webhooks/sms-status", self.base_url))
            .header("x-amz-firehose-access-key", access_key)
            .header("x-amz-firehose-request-id", "req-1")
            .json(&json!({"requestId": "req-1", "timestamp": 0, "records": [{"data": data}]}))
            .send()
            .await
            .expect("POST /webhooks/sms-status")
    }

    /// Hasura reports the booking confirmed; returns the notification's workflow id.
    pub async fn confirm_booking(
        &self,
        profile_id: Uuid,
        contact: ContactId,
        reference: &str,
    ) -> String {
        let event_id = Uuid::new_v4().to_string();
        let response = self
            .post_event(&booking_event(
                &event_id,
                self.tenant_id,
                profile_id,
                reference,
            ))
            .await;
        assert_eq!(response.status(), 200, "booking_confirmed accepted");
        notification_workflow_id(self.tenant_id, &event_id, contact)
    }

    /// Sends `passenger_profile_upserted` and returns the contact id.
    pub async fn upsert_passenger(
        &self,
        profile_id: Uuid,
        name: &str,
        email: &str,
        locale: &str,
    ) -> ContactId {
        let event = profile_event(self.tenant_id, profile_id, name, email, locale);
        let response = self.post_event(&event).await;
        assert_eq!(
            response.status(),
            200,
            "profile upsert: {}",
            response.text().await.unwrap_or_default()
        );
        let body: Value = response.json().await.expect("json");
        ContactId(
            body["contact_id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("contact_id"),
        )
    }

    /// A fresh Temporal client (bound to the calling test's runtime).
    pub async fn temporal(&self) -> Client {
        busflow_api::temporal::connect(
            &TemporalSettings {
                address: Some(self.temporal_address.clone()),
                namespace: Some("default".to_owned()),
                payload_keys: Some(test_keys()),
                traces: Default::default(),
            },
            "busflow-comms-tests",
        )
        .await
        .expect("temporal client")
    }

    /// Waits for the workflow and returns its result (`Err` when it failed).
    pub async fn workflow_result(
        &self,
        workflow_id: &str,
    ) -> Result<busflow_workflows::NotificationOutcome, String> {
        let client = self.temporal().await;
        let handle = client.get_workflow_handle::<NotificationWorkflow>(workflow_id);
        tokio::time::timeout(
            Duration::from_secs(120),
            handle.get_result(WorkflowGetResultOptions::default()),
        )
        .await
        .expect("workflow finished within 120 s")
        .map_err(|e| format!("{e:#}"))
    }

    /// The workflow's history as Temporal keeps and shows it: protobuf
    /// JSON, the payloads as the codec sealed them.
    pub async fn history_json(&self, workflow_id: &str) -> Value {
        let client = self.temporal().await;
        let json = client
            .get_workflow_handle::<UntypedWorkflow>(workflow_id)
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .to_json()
            .await
            .expect("history as JSON");
        serde_json::from_slice(&json).expect("history JSON")
    }

    /// Everything anyone who reaches Temporal (its UI, `temporal workflow
    /// show`) reads in the history without the key: every event, every
    /// base64 string decoded.
    pub async fn raw_history(&self, workflow_id: &str) -> String {
        let client = self.temporal().await;
        let events = client
            .get_workflow_handle::<UntypedWorkflow>(workflow_id)
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .into_events()
            .await
            .expect("history");
        let json = self.history_json(workflow_id).await;
        readable(&format!("{events:?}"), &json)
    }

    /// Everything ops read in the history through the codec server: the
    /// raw history with every payload opened.
    pub async fn readable_history(&self, workflow_id: &str) -> String {
        let mut json = self.history_json(workflow_id).await;
        let codec = busflow_activities::payload_codec::PayloadEncryption::new(test_keys());
        for_each_payload(&mut json, &mut |payload| {
            let opened = codec
                .decrypt(payload.clone())
                .expect("a payload the key ring opens");
            *payload = opened;
        });
        readable("", &json)
    }

    /// Emails moto recorded from this test's sender domain.
    pub async fn sent_emails(&self) -> Vec<SentEmail> {
        let data = self.provider_record().await;
        let messages: Vec<SentEmail> =
            serde_json::from_value(data["ses"]["Message"].clone()).unwrap_or_default();
        messages
            .into_iter()
            .filter(|m| m.source.contains(&self.domain))
            .collect()
    }

    /// Polls `check` until it returns `Some`, or panics after `timeout`.
    pub async fn eventually<T, F, Fut>(&self, what: &str, timeout: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the workflow's message on `channel` has its provider id,
    /// and returns it.
    pub async fn provider_id_once_sent(&self, workflow_id: &str, channel: &str) -> String {
        self.eventually(
            &format!("the {channel} message is sent"),
            Duration::from_secs(20),
            || async {
                sqlx::query_scalar::<_, Option<String>>(
                "select external_message_id from messages where workflow_id = $1 and channel = $2",
            )
            .bind(workflow_id)
            .bind(channel)
            .fetch_optional(&self.pool)
            .await
            .ok()
            .flatten()
            .flatten()
            },
        )
        .await
    }

    /// Email whose account publishes SES events (so it waits up to
    /// `email_timeout_secs` for a receipt), then webchat: the tenant's
    /// booking_confirmed chain.
    pub async fn email_with_receipts_then_webchat(&self, email_timeout_secs: u64) {
        self.add_email_account(true).await;
        sqlx::query(
            "update channel_accounts set provider_config = provider_config || '{\"configuration_set\": \"busflow-events\"}'
              where tenant_id = $1 and channel = 'EMAIL'",
        )
        .bind(self.tenant_id)
        .execute(&self.pool)
        .await
        .expect("configuration set");
        self.add_widget_account().await;
        sqlx::query("update tenant_settings set trigger_overrides = $2 where tenant_id = $1")
            .bind(self.tenant_id)
            .bind(json!({"booking_confirmed": {"chain": ["EMAIL", "WEBCHAT"], "timeouts": {"EMAIL": email_timeout_secs}}}))
            .execute(&self.pool)
            .await
            .expect("override");
    }

    /// Gives the tenant an ACTIVE webchat account with a sealed widget secret.
    pub async fn add_widget_account(&self) {
        let id: Uuid = sqlx::query_scalar(
            "insert into channel_accounts (tenant_id, channel, provider, status, external_account_id)
             values ($1, 'WEBCHAT', 'WEBCHAT', 'ACTIVE', 'widget') returning id",
        )
        .bind(self.tenant_id)
        .fetch_one(&self.pool)
        .await
        .expect("webchat account");
        let secrets = busflow_activities::secrets::ProviderSecrets {
            widget_secret: Some(WIDGET_SECRET.to_owned()),
            ..Default::default()
        };
        busflow_activities::secrets::store(
            &self.pool,
            &test_keys(),
            self.tenant_id,
            busflow_activities::model::ChannelAccountId(id),
            &secrets,
        )
        .await
        .expect("seal the widget secret");
    }

    /// A new webchat visitor's session, as the widget asks for one.
    pub async fn start_webchat_session(&self) -> reqwest::Response {
        self.http()
            .post(format!(
                "{}/webchat/{}/sessions",
                self.base_url, self.tenant_id
            ))
            .json(&json!({}))
            .send()
            .await
            .expect("POST /webchat/sessions")
    }

    /// The visitor's widget (of `email_with_receipts_then_webchat`'s
    /// account) long-polls until it receives a message, and returns the answer.
    pub async fn visitor_fetches(&self, visitor: &str) -> Value {
        let token = busflow_api::webchat::token::issue(
            WIDGET_SECRET,
            self.tenant_id,
            visitor,
            chrono::Utc::now() + chrono::Duration::hours(1),
        );
        self.eventually(
            "the widget fetches a message",
            Duration::from_secs(90),
            || async {
                let answer: Value = self
                    .http()
                    .get(format!(
                        "{}/webchat/{}/messages?wait=25",
                        self.base_url, self.tenant_id
                    ))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                (!answer["messages"].as_array()?.is_empty()).then_some(answer)
            },
        )
        .await
    }

    /// A Temporal gateway like the CLI's (`busflow-comms dead-letters replay`).
    pub fn gateway(&self) -> TemporalGateway {
        TemporalGateway::new(
            TemporalSettings {
                address: Some(self.temporal_address.clone()),
                namespace: Some("default".to_owned()),
                payload_keys: Some(test_keys()),
                traces: Default::default(),
            },
            self.task_queue.clone(),
        )
    }

    /// The API's `GET /metrics` text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base_url))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Exports every span finished so far (with `otlp_endpoint`).
    pub fn flush_traces(&self) {
        if let Some(guard) = &self.traces_guard {
            guard.flush().expect("traces exported");
        }
    }

    /// The value of the series `name` with exactly `labels` (any order) in
    /// the API's `GET /metrics`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        sample(&self.metrics().await, name, labels)
    }

    /// Everything moto recorded as sent (`ses.Message`, `sns.SMS`).
    pub async fn provider_record(&self) -> Value {
        self.http
            .get(format!("{}/moto-api/data.json", self.aws_endpoint))
            .send()
            .await
            .expect("moto data")
            .json()
            .await
            .expect("moto json")
    }

    /// A phone number of its own for this test's person (moto is shared by
    /// every test), in national form.
    pub fn unique_phone(&self) -> String {
        let n = 10_000_000 + Uuid::new_v4().as_u128() % 90_000_000;
        format!("55 {:04} {:04}", n / 10_000, n % 10_000)
    }

    /// Starts one more worker on this test's task queue, as a second worker
    /// process would: its own runtime, pool and Temporal connection.
    pub fn spawn_second_worker(&self) {
        spawn_worker(self.worker.clone());
    }

    /// An ACTIVE sandbox SMS account (no AWS call, no receipts: a message is
    /// done once SENT), limited to `rate` parts/s with `burst` when given.
    pub async fn add_sandbox_sms_account(&self, rate: Option<f64>, burst: Option<i32>) {
        sqlx::query(
            "insert into channel_accounts
                 (tenant_id, channel, provider, status, mode, external_account_id, max_send_rate, send_burst)
             values ($1, 'SMS', 'AWS_SNS', 'ACTIVE', 'SANDBOX', '+15550001111', $2, $3)",
        )
        .bind(self.tenant_id)
        .bind(rate)
        .bind(burst)
        .execute(&self.pool)
        .await
        .expect("sandbox sms account");
    }

    /// `n` passengers with a phone each, written straight to Postgres (the
    /// state `passenger_profile_upserted` events leave); returns their
    /// contact and passenger profile ids.
    pub async fn insert_passengers(&self, n: usize) -> Vec<(ContactId, Uuid)> {
        sqlx::query_as::<_, (Uuid, Uuid)>(
            "insert into contacts (tenant_id, display_name, identifiers, passenger_profile_id, locale)
             select $1, 'Pasajero ' || i,
                    jsonb_build_object('phone', '+5255' || lpad(i::text, 8, '0')),
                    gen_random_uuid(), 'es-MX'
               from generate_series(1, $2) as i
             returning id, passenger_profile_id",
        )
        .bind(self.tenant_id)
        .bind(i32::try_from(n).expect("n fits"))
        .fetch_all(&self.pool)
        .await
        .expect("insert passengers")
        .into_iter()
        .map(|(contact, profile)| (ContactId(contact), profile))
        .collect()
    }

    /// Sends `passenger_profile_upserted` for a passenger with a phone of
    /// their own and returns the contact id.
    pub async fn upsert_passenger_with_phone(&self, profile_id: Uuid, phone: &str) -> ContactId {
        let mut event = profile_event(
            self.tenant_id,
            profile_id,
            "Pasajero",
            &self.recipient(&profile_id.simple().to_string()),
            "es-MX",
        );
        event["event"]["data"]["new"]["phone"] = json!(phone);
        let response = self.post_event(&event).await;
        assert_eq!(response.status(), 200, "profile upsert");
        let body: Value = response.json().await.expect("json");
        ContactId(
            body["contact_id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("contact_id"),
        )
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .expect(sql)
    }
}

pub fn aws_settings(endpoint: &str) -> AwsSettings {
    AwsSettings {
        region: AWS_REGION.to_owned(),
        endpoint_url: Some(endpoint.to_owned()),
        static_credentials: Some((AWS_KEYS.0.to_owned(), AWS_KEYS.1.to_owned())),
    }
}

/// The worker runs on a thread and runtime of its own: its future is not
/// `Send`, and it must outlive nothing but the test that owns `shutdown`.
#[derive(Clone)]
struct WorkerWiring {
    temporal: TemporalSettings,
    task_queue: String,
    database_url: String,
    aws: AwsSettings,
    meta: MetaSettings,
    sandbox_webhook_base: String,
    alert_url: Option<String>,
    slots: usize,
    shutdown: Shutdown,
}

fn spawn_worker(wiring: WorkerWiring) {
    let WorkerWiring {
        temporal,
        task_queue,
        database_url,
        aws,
        meta,
        sandbox_webhook_base,
        alert_url,
        slots,
        shutdown,
    } = wiring;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("worker runtime");
        runtime.block_on(async move {
            let pool = database::connect(&database_url, worker::pool_size_for(slots))
                .await
                .expect("worker pool");
            let client = busflow_api::temporal::connect(&temporal, "busflow-comms-test-worker")
                .await
                .expect("worker temporal client");
            let mut providers = worker::providers(&aws, meta, Some(sandbox_webhook_base))
                .await
                .expect("providers");
            providers.traces = temporal.traces.clone();
            let activities = NotificationActivities::new(pool.clone(), providers, test_keys());
            let watchdog = worker::WatchdogSettings {
                interval: Duration::from_secs(3600),
                threshold: Duration::from_secs(300),
                alert_url,
            };
            if let Err(e) = worker::run(
                client,
                &task_queue,
                pool,
                activities,
                &watchdog,
                shutdown.wait(),
            )
            .await
            {
                eprintln!("test worker stopped with an error: {e:#}");
            }
        });
    });
}

pub fn profile_event(
    tenant: TenantId,
    profile_id: Uuid,
    name: &str,
    email: &str,
    locale: &str,
) -> Value {
    json!({
        "id": Uuid::new_v4().to_string(),
        "created_at": "2026-11-27T10:00:00Z",
        "trigger": {"name": "passenger_profile_upserted"},
        "table": {"schema": "public", "name": "passenger_profiles"},
        "delivery_info": {"current_retry": 0, "max_retries": 5},
        "event": {
            "op": "INSERT",
            "session_variables": {"x-hasura-role": "admin"},
            "data": {"old": null, "new": {
                "id": profile_id, "tenant_id": tenant.0, "full_name": name,
                "email": email, "phone": "55 1234 5678", "locale": locale
            }}
        }
    })
}

pub fn booking_event(event_id: &str, tenant: TenantId, profile_id: Uuid, reference: &str) -> Value {
    json!({
        "id": event_id,
        "created_at": "2026-11-27T10:00:00Z",
        "trigger": {"name": "booking_confirmed"},
        "table": {"schema": "public", "name": "bookings"},
        "delivery_info": {"current_retry": 0, "max_retries": 5},
        "event": {
            "op": "UPDATE",
            "session_variables": {"x-hasura-role": "admin"},
            "data": {
                "old": {"status": "PENDING"},
                "new": {
                    "id": Uuid::new_v4(), "tenant_id": tenant.0, "trip_id": Uuid::new_v4(),
                    "passenger_profile_id": profile_id, "status": "CONFIRMED",
                    "booking_reference": reference, "seat": "14B"
                }
            }
        }
    })
}

/// A Hasura event on `trips` (`trip_upserted`, `trip_delayed`, …) whose
/// change happened at `created_at`.
pub fn trip_event(
    trigger: &str,
    event_id: &str,
    tenant: TenantId,
    trip_id: Uuid,
    departure_at: chrono::DateTime<chrono::Utc>,
    status: &str,
    created_at: chrono::DateTime<chrono::Utc>,
) -> Value {
    json!({
        "id": event_id,
        "created_at": created_at.to_rfc3339(),
        "trigger": {"name": trigger},
        "table": {"schema": "public", "name": "trips"},
        "event": {
            "op": "UPDATE",
            "session_variables": {"x-hasura-role": "admin"},
            "data": {
                "old": {"status": "SCHEDULED"},
                "new": {
                    "id": trip_id, "tenant_id": tenant.0, "status": status,
                    "departure_at": departure_at.to_rfc3339(), "route_name": "CDMX - Puebla"
                }
            }
        }
    })
}

/// `booking_confirmed` (or `booking_cancelled`) of `booking_id` on a trip.
pub fn trip_booking_event(
    event_id: &str,
    tenant: TenantId,
    booking_id: Uuid,
    trip_id: Uuid,
    profile_id: Uuid,
    confirmed: bool,
    created_at: chrono::DateTime<chrono::Utc>,
) -> Value {
    let (trigger, status, was) = if confirmed {
        ("booking_confirmed", "CONFIRMED", "PENDING")
    } else {
        ("booking_cancelled", "CANCELLED", "CONFIRMED")
    };
    json!({
        "id": event_id,
        "created_at": created_at.to_rfc3339(),
        "trigger": {"name": trigger},
        "table": {"schema": "public", "name": "bookings"},
        "event": {
            "op": "UPDATE",
            "session_variables": {"x-hasura-role": "admin"},
            "data": {
                "old": {"status": was},
                "new": {
                    "id": booking_id, "tenant_id": tenant.0, "trip_id": trip_id,
                    "passenger_profile_id": profile_id, "status": status,
                    "booking_reference": "BF-TRIP"
                }
            }
        }
    })
}

/// Everything a person or a tool could read in a history: its Debug and JSON
/// renderings, plus every base64 field (payload data and metadata) decoded.
fn readable(debug: &str, json: &Value) -> String {
    fn decode_all(value: &Value, out: &mut String) {
        match value {
            Value::String(s) => {
                if let Ok(bytes) = B64.decode(s) {
                    out.push('\n');
                    out.push_str(&String::from_utf8_lossy(&bytes));
                }
            }
            Value::Array(items) => items.iter().for_each(|v| decode_all(v, out)),
            Value::Object(fields) => fields.values().for_each(|v| decode_all(v, out)),
            _ => {}
        }
    }
    let mut text = format!("{debug}\n{json}");
    decode_all(json, &mut text);
    text
}

/// Calls `visit` with every payload (`{"metadata": {…}, "data": …}`) of a
/// history's protobuf JSON, and writes back what it leaves.
pub fn for_each_payload(json: &mut Value, visit: &mut dyn FnMut(&mut Payload)) {
    match json {
        Value::Object(fields) if fields.get("metadata").is_some_and(Value::is_object) => {
            let mut payload = Payload {
                metadata: fields["metadata"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            B64.decode(v.as_str().unwrap_or_default())
                                .expect("base64 metadata"),
                        )
                    })
                    .collect(),
                data: B64
                    .decode(
                        fields
                            .get("data")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                    )
                    .expect("base64 data"),
                ..Default::default()
            };
            visit(&mut payload);
            fields.insert(
                "metadata".to_owned(),
                payload
                    .metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(B64.encode(v))))
                    .collect::<serde_json::Map<_, _>>()
                    .into(),
            );
            fields.insert("data".to_owned(), Value::String(B64.encode(&payload.data)));
        }
        Value::Object(fields) => fields.values_mut().for_each(|v| for_each_payload(v, visit)),
        Value::Array(items) => items.iter_mut().for_each(|v| for_each_payload(v, visit)),
        _ => {}
    }
}

/// The `channel_account_id` of a provisioning action's answer.
pub fn account_id(answer: &Value) -> busflow_activities::model::ChannelAccountId {
    busflow_activities::model::ChannelAccountId(
        answer["channel_account_id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("no channel_account_id in {answer}")),
    )
}

/// The value of the series `name{labels}` in a Prometheus text exposition,
/// whatever the order of its labels (label values without `,` or `"`).
pub fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    wanted.sort();
    exposition.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        if series_name != name {
            return None;
        }
        let mut have: Vec<String> = series_labels
            .split(',')
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        have.sort();
        (have == wanted).then(|| value.parse().ok()).flatten()
    })
}
