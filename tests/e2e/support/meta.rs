//! WhatsApp through Meta, as the tests see it: a tenant's WhatsApp and SMS
//! accounts and templates, a `wiremock` Graph API that answers like Meta,
//! status webhooks signed like Meta signs them, and the SMS moto recorded.

use super::app::{TestApp, test_keys};
use busflow_activities::crypto::KeyRing;
use busflow_activities::model::{ChannelAccountId, TenantId};
use busflow_activities::secrets::{self, ProviderSecrets};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;
use wiremock::ResponseTemplate;

/// The business phone number every test tenant sends WhatsApp from.
pub const PHONE_NUMBER_ID: &str = "106540352242922";

/// The passenger `TestApp::upsert_passenger` creates (phone "55 1234 5678",
/// region MX), as stored and as Meta's `to` / `wa_id`.
pub const PASSENGER_PHONE: &str = "+525512345678";
pub const PASSENGER_WA_ID: &str = "525512345678";

/// The approved template the tenant's booking confirmation maps to.
pub const WHATSAPP_TEMPLATE: &str = "booking_confirmation";
pub const WHATSAPP_LANGUAGE: &str = "es_MX";

/// The Graph API path a send from `PHONE_NUMBER_ID` posts to.
pub fn messages_path() -> String {
    format!("/v21.0/{PHONE_NUMBER_ID}/messages")
}

/// Meta credentials unique to one test, so that finding one somewhere can
/// only mean this test's account leaked it.
pub fn meta_secrets() -> ProviderSecrets {
    let tag = Uuid::new_v4().simple().to_string();
    ProviderSecrets {
        access_token: Some(format!("EAAGtesttoken{tag}")),
        app_secret: Some(format!("appsecret{tag}")),
        verify_token: Some(format!("verifytoken{tag}")),
        widget_secret: None,
        ..Default::default()
    }
}

/// A booking reference no other test uses (moto is shared by the whole run).
pub fn booking_reference(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &Uuid::new_v4().simple().to_string()[..8].to_uppercase()
    )
}

/// A `wamid` as Meta formats them, unique to the test.
pub fn wamid() -> String {
    format!("wamid.HBgM{}", Uuid::new_v4().simple())
}

/// The Graph API accepting a message as `wamid`.
pub fn graph_accepted(wamid: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": PASSENGER_WA_ID, "wa_id": PASSENGER_WA_ID}],
        "messages": [{"id": wamid}]
    }))
}

/// The Graph API refusing a message with Meta's error envelope (HTTP 400).
pub fn graph_error(code: i64, message: &str, details: &str) -> ResponseTemplate {
    ResponseTemplate::new(400).set_body_json(json!({
        "error": {
            "message": message,
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details},
            "fbtrace_id": "AbCdEfGh123"
        }
    }))
}

/// A Meta webhook body carrying `statuses` as (wamid, status, unix seconds).
pub fn status_webhook(statuses: &[(&str, &str, i64)]) -> String {
    let statuses: Vec<Value> = statuses
        .iter()
        .map(|(wamid, status, at)| {
            json!({
                "id": wamid,
                "status": status,
                "timestamp": at.to_string(),
                "recipient_id": PASSENGER_WA_ID,
                "conversation": {"id": "c0ffee", "origin": {"type": "utility"}},
                "pricing": {"billable": true, "pricing_model": "CBP", "category": "utility"}
            })
        })
        .collect();
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "102290129340398",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
                    "statuses": statuses
                }
            }]
        }]
    })
    .to_string()
}

/// `X-Hub-Signature-256` for `body`: `sha256=<hex HMAC-SHA256(app_secret, body)>`.
pub fn sign(app_secret: &str, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, app_secret.as_bytes());
    let hex: String = ring::hmac::sign(&key, body.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Unix seconds `ago` before now.
pub fn seconds_ago(ago: i64) -> i64 {
    chrono::Utc::now().timestamp() - ago
}

/// One SMS as moto recorded it.
#[derive(Debug, Clone, Deserialize)]
pub struct SentSms {
    pub message_id: String,
    pub phone_number: String,
    pub message: String,
}

/// A message row, as an operator would look it up.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageRow {
    pub id: Uuid,
    pub channel: String,
    pub status: String,
    pub replaces_message_id: Option<Uuid>,
    pub external_message_id: Option<String>,
    pub failed_reason: Option<String>,
    pub delivered_at: Option<chrono::DateTime<chrono::Utc>>,
    pub read_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl TestApp {
    /// The tenant's ACTIVE Meta Cloud WhatsApp account, its secrets sealed
    /// with the test key ring.
    pub async fn add_whatsapp_account(&self, secrets: &ProviderSecrets) -> ChannelAccountId {
        self.add_whatsapp_account_for(self.tenant_id, PHONE_NUMBER_ID, secrets, &test_keys())
            .await
    }

    /// A WhatsApp account of any tenant in this test's database, its secrets
    /// sealed with `keys`.
    pub async fn add_whatsapp_account_for(
        &self,
        tenant_id: TenantId,
        phone_number_id: &str,
        provider_secrets: &ProviderSecrets,
        keys: &KeyRing,
    ) -> ChannelAccountId {
        let id = ChannelAccountId(
            sqlx::query_scalar(
                "insert into channel_accounts
                    (tenant_id, channel, provider, display_name, status, provider_config, external_account_id)
                 values ($1, 'WHATSAPP', 'META_CLOUD', 'WhatsApp', 'ACTIVE', $2, $3)
                 returning id",
            )
            .bind(tenant_id)
            .bind(json!({"phone_number_id": phone_number_id}))
            .bind(phone_number_id)
            .fetch_one(&self.pool)
            .await
            .expect("WhatsApp channel account"),
        );
        secrets::store(&self.pool, keys, tenant_id, id, provider_secrets)
            .await
            .expect("seal the WhatsApp secrets");
        id
    }

    /// The tenant's ACTIVE SNS account (no delivery receipts: done once sent).
    pub async fn add_sms_account(&self) {
        sqlx::query(
            "insert into channel_accounts
                (tenant_id, channel, provider, display_name, status, provider_config, external_account_id)
             values ($1, 'SMS', 'AWS_SNS', 'SMS', 'ACTIVE', '{}', 'sns')",
        )
        .bind(self.tenant_id)
        .execute(&self.pool)
        .await
        .expect("SMS channel account");
    }

    /// The tenant's booking confirmation on WhatsApp: the approved template
    /// `WHATSAPP_TEMPLATE` with the first name and the booking reference.
    pub async fn add_whatsapp_template(&self) {
        sqlx::query(
            "insert into notification_templates
                (tenant_id, trigger_event, channel, locale, body,
                 whatsapp_template_name, whatsapp_language, whatsapp_parameters)
             values ($1, 'booking_confirmed', 'WHATSAPP', 'es',
                     'Hola {{ contact.first_name }}, tu reserva {{ booking.booking_reference }} está confirmada',
                     $2, $3, $4)",
        )
        .bind(self.tenant_id)
        .bind(WHATSAPP_TEMPLATE)
        .bind(WHATSAPP_LANGUAGE)
        .bind(json!({"body": ["contact.first_name", "booking.booking_reference"]}))
        .execute(&self.pool)
        .await
        .expect("WhatsApp template");
    }

    /// The tenant's booking confirmation by SMS.
    pub async fn add_sms_template(&self) {
        sqlx::query(
            "insert into notification_templates (tenant_id, trigger_event, channel, locale, body)
             values ($1, 'booking_confirmed', 'SMS', 'es',
                     'Autobuses Prueba: tu reserva {{ booking.booking_reference }} está confirmada')",
        )
        .bind(self.tenant_id)
        .execute(&self.pool)
        .await
        .expect("SMS template");
    }

    /// The tenant's chain and receipt timeouts (seconds) for booking_confirmed.
    pub async fn override_booking_confirmed(&self, chain: &[&str], timeouts: Value) {
        sqlx::query("update tenant_settings set trigger_overrides = $2 where tenant_id = $1")
            .bind(self.tenant_id)
            .bind(json!({"booking_confirmed": {"chain": chain, "timeouts": timeouts}}))
            .execute(&self.pool)
            .await
            .expect("trigger override");
    }

    /// Posts a Meta webhook to `tenant_id`'s endpoint, with the signature
    /// header as given (`None`: no header).
    pub async fn post_meta_webhook(
        &self,
        tenant_id: TenantId,
        body: String,
        signature: Option<String>,
    ) -> reqwest::Response {
        let mut request = self
            .http()
            .post(format!("{}/webhooks/meta/{tenant_id}", self.base_url))
            .header("content-type", "application/json")
            .body(body);
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        request.send().await.expect("POST /webhooks/meta")
    }

    /// Meta reports `statuses` to `tenant_id`'s webhook, signed with
    /// `app_secret`; returns the API's `{"applied", "pending"}` answer.
    pub async fn meta_reports(
        &self,
        tenant_id: TenantId,
        app_secret: &str,
        statuses: &[(&str, &str, i64)],
    ) -> Value {
        let body = status_webhook(statuses);
        let signature = sign(app_secret, &body);
        let response = self
            .post_meta_webhook(tenant_id, body, Some(signature))
            .await;
        let status = response.status();
        let answer = response.text().await.unwrap_or_default();
        assert_eq!(status, 200, "signed webhook accepted: {answer}");
        serde_json::from_str(&answer).expect("webhook answer is JSON")
    }

    /// Meta's subscription check against `tenant_id`'s webhook.
    pub async fn verify_meta_webhook(
        &self,
        tenant_id: TenantId,
        verify_token: &str,
        challenge: &str,
    ) -> reqwest::Response {
        let mut url = reqwest::Url::parse(&format!("{}/webhooks/meta/{tenant_id}", self.base_url))
            .expect("webhook URL");
        url.query_pairs_mut()
            .append_pair("hub.mode", "subscribe")
            .append_pair("hub.verify_token", verify_token)
            .append_pair("hub.challenge", challenge);
        self.http()
            .get(url)
            .send()
            .await
            .expect("GET /webhooks/meta")
    }

    /// The SMS moto recorded whose text mentions `needle` (moto is shared
    /// by every test of the run).
    pub async fn sent_sms(&self, needle: &str) -> Vec<SentSms> {
        let data = self.provider_record().await;
        let sms: Vec<SentSms> =
            serde_json::from_value(data["sns"]["SMS"].clone()).unwrap_or_default();
        sms.into_iter()
            .filter(|m| m.message.contains(needle))
            .collect()
    }

    /// The messages of one notification, in chain order.
    pub async fn messages(&self, workflow_id: &str) -> Vec<MessageRow> {
        sqlx::query_as(
            "select id, channel, status, replaces_message_id, external_message_id,
                    failed_reason, delivered_at, read_at
               from messages where workflow_id = $1 order by attempt",
        )
        .bind(workflow_id)
        .fetch_all(&self.pool)
        .await
        .expect("messages")
    }

    /// Waits until the notification's `channel` message has left QUEUED and
    /// SENDING (the provider answered, and the answer is recorded), and
    /// returns it.
    pub async fn dispatched(&self, workflow_id: &str, channel: &str) -> MessageRow {
        self.eventually(
            &format!("the {channel} message of {workflow_id} to be dispatched"),
            Duration::from_secs(20),
            || async {
                self.messages(workflow_id).await.into_iter().find(|m| {
                    m.channel == channel && !["QUEUED", "SENDING"].contains(&m.status.as_str())
                })
            },
        )
        .await
    }
}

/// The WhatsApp Business Account the signup tests connect.
pub const WABA_ID: &str = "102290129340398";

/// What Meta's Graph API knows of one Embedded Signup: the code it issued,
/// the business token it gives for it, and the account's templates.
pub struct SignupGraph {
    pub code: String,
    pub token: String,
}

impl SignupGraph {
    /// A signup unique to the test.
    pub fn new() -> Self {
        let tag = Uuid::new_v4().simple().to_string();
        Self {
            code: format!("AQD{tag}"),
            token: format!("EAAbusiness{tag}"),
        }
    }

    /// Mounts the onboarding endpoints on the fake: the code exchange (this
    /// code only), registration, `subscribed_apps`, two pages of templates
    /// (one approved, one pending) and the number's profile.
    pub async fn mount(&self, graph: &wiremock::MockServer) {
        use wiremock::matchers::{header, method, path, query_param};
        use wiremock::{Mock, ResponseTemplate};
        let bearer = format!("Bearer {}", self.token);
        let success = || ResponseTemplate::new(200).set_body_json(json!({"success": true}));
        Mock::given(method("GET"))
            .and(path("/v21.0/oauth/access_token"))
            .and(query_param("client_id", META_APP_ID))
            .and(query_param("client_secret", META_APP_SECRET))
            .and(query_param("code", self.code.as_str()))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"access_token": self.token, "token_type": "bearer"})),
            )
            .mount(graph)
            .await;
        Mock::given(method("POST"))
            .and(path(format!("/v21.0/{PHONE_NUMBER_ID}/register")))
            .and(header("authorization", bearer.as_str()))
            .respond_with(success())
            .mount(graph)
            .await;
        Mock::given(method("POST"))
            .and(path(format!("/v21.0/{WABA_ID}/subscribed_apps")))
            .and(header("authorization", bearer.as_str()))
            .respond_with(success())
            .mount(graph)
            .await;
        // Meta's own example list (facebook/openapi, getTemplateByNameDefaultFields),
        // with the tenant's booking template, over two pages.
        Mock::given(method("GET"))
            .and(path(format!("/v21.0/{WABA_ID}/message_templates")))
            .and(query_param("after", "MjQZD"))
            .and(header("authorization", bearer.as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "data": [{
                    "category": "MARKETING",
                    "components": [
                        {"format": "TEXT", "text": "Fall Sale", "type": "HEADER"},
                        {"example": {"body_text": [["Mark", "FALL25"]]},
                         "text": "Hi {{1}}, our Fall Sale is on! Use promo code {{2}} Get an extra 25% off every order above $350!",
                         "type": "BODY"},
                        {"buttons": [{"text": "Stop promotions", "type": "QUICK_REPLY"}], "type": "BUTTONS"}
                    ],
                    "id": "920070352646140", "language": "en_US", "name": "2023_april_promo",
                    "status": "PENDING"
                }],
                "paging": {"cursors": {"before": "MjQZD", "after": "MjUZD"}}
            })))
            .mount(graph)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/v21.0/{WABA_ID}/message_templates")))
            .and(header("authorization", bearer.as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "data": [{
                    "category": "UTILITY",
                    "components": [
                        {"example": {"body_text": [["Ana", "BF-1234"]]},
                         "text": "Hola {{1}}, tu reserva {{2}} está confirmada", "type": "BODY"}
                    ],
                    "id": "1192339204654487", "language": WHATSAPP_LANGUAGE,
                    "name": WHATSAPP_TEMPLATE, "parameter_format": "POSITIONAL",
                    "status": "APPROVED"
                }],
                "paging": {"cursors": {"before": "MAZDZD", "after": "MjQZD"},
                           "next": format!("https://graph.facebook.com/v21.0/{WABA_ID}/message_templates?after=MjQZD")}
            })))
            .mount(graph)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/v21.0/{PHONE_NUMBER_ID}")))
            .and(header("authorization", bearer.as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": PHONE_NUMBER_ID, "display_phone_number": "+52 55 5555 0100",
                "verified_name": "Autobuses Prueba", "quality_rating": "GREEN"
            })))
            .mount(graph)
            .await;
    }
}

/// The platform's Meta app in the tests.
pub const META_APP_ID: &str = "1390345048235418";
pub const META_APP_SECRET: &str = "platform-app-secret-for-tests";

pub fn meta_app() -> busflow_activities::providers::whatsapp::onboarding::MetaApp {
    busflow_activities::providers::whatsapp::onboarding::MetaApp {
        app_id: META_APP_ID.to_owned(),
        app_secret: META_APP_SECRET.to_owned(),
    }
}
