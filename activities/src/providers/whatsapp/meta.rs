//! WhatsApp through the Meta Cloud API: one `POST
//! /{version}/{phone_number_id}/messages` per message, an approved template
//! when the command carries one, free-form text (only valid inside the 24 h
//! customer service window) otherwise.
//!
//! Policy: failures are classified on Meta's numeric error `code`, never on
//! its text, by `META_ERRORS` and two code ranges (132xxx template errors and
//! 2xx permission errors belong to the account). A body that is not Meta's
//! error envelope is classified by HTTP status. The access token only ever
//! travels in the Authorization header (marked sensitive) and is scrubbed from
//! anything Meta sends back, so no `Failure` can carry it.

use crate::providers::{
    Accepted, ErrorRule, Failure, FailureClass, SendMessageCommand, WhatsAppTemplate,
};
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use serde::{Deserialize, Serialize};
use std::ops::RangeInclusive;
use std::time::Duration;

const PROVIDER: &str = "Meta";

/// Upper bound for one send, connection included, unless set otherwise.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// Meta Cloud API error codes and what they mean for delivery. Sources: Meta's
/// Cloud API error codes reference and PROVIDERS_NOTES.md. Codes not listed
/// here or in [`ACCOUNT_CODE_RANGES`] retry (bounded by the activity's retry
/// policy).
pub const META_ERRORS: &[ErrorRule] = &[
    // Throughput and transient trouble: retry with backoff.
    ("130429", FailureClass::Retry), // per-number throughput reached
    ("131056", FailureClass::Retry), // pair rate: ~1 message / 6 s to one user
    ("131057", FailureClass::Retry), // business account in maintenance mode
    ("80007", FailureClass::Retry),  // WhatsApp Business Account rate limit
    ("4", FailureClass::Retry),      // application API call limit
    ("131000", FailureClass::Retry), // something went wrong (generic)
    // This recipient cannot be reached on WhatsApp: fall back.
    ("131026", FailureClass::Recipient), // undeliverable (no WhatsApp, old app…)
    ("131047", FailureClass::Recipient), // free-form outside the 24 h window
    ("131051", FailureClass::Recipient), // unsupported message type
    ("100", FailureClass::Recipient),    // invalid parameter
    ("131008", FailureClass::Recipient), // required parameter missing
    ("131009", FailureClass::Recipient), // parameter value not valid
    // Spam / ecosystem limits: retrying soon makes the number's quality worse.
    ("131048", FailureClass::Recipient),
    ("131049", FailureClass::Recipient),
    // The channel account is broken: fail, flag it, fall back.
    ("0", FailureClass::Account),      // AuthException
    ("3", FailureClass::Account),      // capability or permission missing
    ("10", FailureClass::Account),     // permission denied
    ("33", FailureClass::Account),     // business phone number deleted
    ("190", FailureClass::Account),    // access token expired or invalid
    ("200", FailureClass::Account),    // API permission
    ("131031", FailureClass::Account), // business account locked
    ("368", FailureClass::Account),    // blocked for policy violations
];

/// Code families that are the account's problem whatever the exact code:
/// 200–299 API permission errors and 132xxx template errors (missing, paused,
/// parameter count mismatch…).
pub const ACCOUNT_CODE_RANGES: &[RangeInclusive<i64>] = &[200..=299, 132_000..=132_999];

/// Where the Graph API lives. Tests point it at a local fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaSettings {
    /// Without a trailing slash, e.g. `https://graph.facebook.com`.
    pub graph_base_url: String,
    /// e.g. `v21.0`.
    pub api_version: String,
    /// Upper bound for one send, connection included.
    pub send_timeout: Duration,
    /// The platform's Meta app, through which tenants connect their numbers
    /// (Embedded Signup). `None`: connecting a number is refused.
    pub app: Option<super::onboarding::MetaApp>,
}

impl Default for MetaSettings {
    fn default() -> Self {
        Self {
            graph_base_url: "https://graph.facebook.com".into(),
            api_version: "v21.0".into(),
            send_timeout: SEND_TIMEOUT,
            app: None,
        }
    }
}

/// The non-secret `provider_config` of a WhatsApp channel account.
#[derive(Debug, Clone, Deserialize)]
pub struct WhatsAppAccountConfig {
    /// The Graph API id of the sending business phone number.
    pub phone_number_id: String,
    /// The WhatsApp Business Account the number belongs to.
    #[serde(default)]
    pub waba_id: Option<String>,
}

/// The Meta Cloud API adapter.
#[derive(Debug, Clone)]
pub struct MetaCloud {
    settings: MetaSettings,
    http: reqwest::Client,
}

impl MetaCloud {
    /// An adapter with its own HTTP client. Fails only when the HTTP client
    /// cannot be built (TLS setup), which is a startup error.
    pub fn new(settings: MetaSettings) -> Result<Self, reqwest::Error> {
        let http = crate::http::client(settings.send_timeout)?;
        Ok(Self { settings, http })
    }

    /// Sends one WhatsApp message from `account`'s number, authenticated with
    /// that account's system-user `access_token`. Returns the `wamid`.
    pub async fn send(
        &self,
        account: &WhatsAppAccountConfig,
        access_token: &str,
        command: &SendMessageCommand,
    ) -> Result<Accepted, Failure> {
        let url = self.messages_url(account)?;
        let authorization = bearer(access_token)?;
        let message = OutboundMessage::new(whatsapp_recipient(&command.recipient)?, command);
        let response = self
            .http
            .post(url)
            .header(AUTHORIZATION, authorization)
            .json(&message)
            .send()
            .await
            .map_err(transport_failure)?;
        let status = response.status();
        let retry_after = retry_after_header(response.headers());
        let body = response.bytes().await.map_err(|e| {
            if status.is_success() {
                failure(
                    FailureClass::Unknown,
                    "BadResponse",
                    format!(
                        "Meta accepted the message but its answer could not be read{}",
                        causes(&e)
                    ),
                )
            } else {
                failure(
                    FailureClass::Retry,
                    "BadResponse",
                    format!("Meta refused the message ({status}) and its answer could not be read"),
                )
            }
        })?;
        if status.is_success() {
            accepted(&body)
        } else {
            Err(rejection(status, retry_after, &body, access_token))
        }
    }

    /// The Graph API URL of `path` (no leading slash) in the configured version.
    pub(super) fn graph_url(&self, path: &str) -> String {
        format!(
            "{}/{}/{path}",
            self.settings.graph_base_url.trim_end_matches('/'),
            self.settings.api_version.trim_matches('/'),
        )
    }

    pub(super) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub(super) fn settings(&self) -> &MetaSettings {
        &self.settings
    }

    fn messages_url(&self, account: &WhatsAppAccountConfig) -> Result<String, Failure> {
        let id = &account.phone_number_id;
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(failure(
                FailureClass::Account,
                "InvalidPhoneNumberId",
                format!("phone_number_id '{id}' is not a Graph API id"),
            ));
        }
        Ok(format!(
            "{}/{}/{id}/messages",
            self.settings.graph_base_url.trim_end_matches('/'),
            self.settings.api_version.trim_matches('/'),
        ))
    }
}

fn bearer(access_token: &str) -> Result<HeaderValue, Failure> {
    let unusable = || {
        failure(
            FailureClass::Account,
            "InvalidAccessToken",
            "the account's access token is empty or not a valid header value".into(),
        )
    };
    if access_token.is_empty() {
        return Err(unusable());
    }
    let mut value =
        HeaderValue::from_str(&format!("Bearer {access_token}")).map_err(|_| unusable())?;
    value.set_sensitive(true);
    Ok(value)
}

/// Who a message goes to: a number (Meta's `to`, the E.164 number without
/// its `+`), or a user known only by their business-scoped user id (Meta's
/// `recipient`, e.g. `US.13491208655302741918`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WhatsAppRecipient<'a> {
    Number(&'a str),
    User(&'a str),
}

fn whatsapp_recipient(recipient: &str) -> Result<WhatsAppRecipient<'_>, Failure> {
    let is_user_id = |id: &str| {
        id.len() <= 160
            && id.split('.').count() >= 2
            && id
                .split('.')
                .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric()))
    };
    match recipient.strip_prefix('+') {
        Some(digits)
            if (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Ok(WhatsAppRecipient::Number(digits))
        }
        None if is_user_id(recipient) => Ok(WhatsAppRecipient::User(recipient)),
        _ => Err(failure(
            FailureClass::Recipient,
            "InvalidRecipient",
            format!("'{recipient}' is neither an E.164 phone number nor a WhatsApp user id"),
        )),
    }
}

/// The request body of `POST /messages`.
#[derive(Debug, Serialize)]
struct OutboundMessage<'a> {
    messaging_product: &'static str,
    recipient_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recipient: Option<&'a str>,
    #[serde(flatten)]
    content: Content<'a>,
    /// Our message id; Meta returns it on every status webhook of the
    /// message, so a send whose answer was lost is still matched.
    biz_opaque_callback_data: String,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Content<'a> {
    Text { text: Text<'a> },
    Template { template: Template<'a> },
}

#[derive(Debug, Serialize)]
struct Text<'a> {
    preview_url: bool,
    body: &'a str,
}

#[derive(Debug, Serialize)]
struct Template<'a> {
    name: &'a str,
    language: Language<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    components: Vec<Component<'a>>,
}

#[derive(Debug, Serialize)]
struct Language<'a> {
    code: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Component<'a> {
    Header { parameters: Vec<Parameter<'a>> },
    Body { parameters: Vec<Parameter<'a>> },
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Parameter<'a> {
    Text { text: &'a str },
}

impl<'a> OutboundMessage<'a> {
    fn new(to: WhatsAppRecipient<'a>, command: &'a SendMessageCommand) -> Self {
        let content = match &command.whatsapp_template {
            Some(template) => Content::Template {
                template: Template::new(template),
            },
            None => Content::Text {
                text: Text {
                    preview_url: false,
                    body: &command.body,
                },
            },
        };
        let (to, recipient) = match to {
            WhatsAppRecipient::Number(digits) => (Some(digits), None),
            WhatsAppRecipient::User(id) => (None, Some(id)),
        };
        Self {
            messaging_product: "whatsapp",
            recipient_type: "individual",
            to,
            recipient,
            content,
            biz_opaque_callback_data: command.message_id.to_string(),
        }
    }
}

impl<'a> Template<'a> {
    fn new(template: &'a WhatsAppTemplate) -> Self {
        let texts = |values: &'a [String]| -> Vec<Parameter<'a>> {
            values.iter().map(|text| Parameter::Text { text }).collect()
        };
        let mut components = Vec::new();
        if !template.header.is_empty() {
            components.push(Component::Header {
                parameters: texts(&template.header),
            });
        }
        if !template.body.is_empty() {
            components.push(Component::Body {
                parameters: texts(&template.body),
            });
        }
        Self {
            name: &template.name,
            language: Language {
                code: &template.language,
            },
            components,
        }
    }
}

/// `{"messaging_product":"whatsapp","contacts":[…],"messages":[{"id":"wamid…"}]}`
#[derive(Deserialize)]
struct SendResponse {
    #[serde(default)]
    messages: Vec<SentMessage>,
}

#[derive(Deserialize)]
struct SentMessage {
    id: String,
}

fn accepted(body: &[u8]) -> Result<Accepted, Failure> {
    let wamid = serde_json::from_slice::<SendResponse>(body)
        .ok()
        .and_then(|response| response.messages.into_iter().next())
        .map(|message| message.id)
        .filter(|id| !id.is_empty());
    match wamid {
        Some(id) => Ok(Accepted {
            external_message_id: id,
        }),
        None => Err(failure(
            FailureClass::Unknown,
            "NoMessageId",
            "Meta accepted the request but its answer names no message id".into(),
        )),
    }
}

/// `{"error":{"message","type","code","error_subcode","error_data":{"details"},"fbtrace_id"}}`
#[derive(Deserialize)]
pub(super) struct ErrorEnvelope {
    pub(super) error: GraphError,
}

#[derive(Deserialize)]
pub(super) struct GraphError {
    code: GraphErrorCode,
    #[serde(default)]
    pub(super) error_subcode: Option<i64>,
    #[serde(default)]
    pub(super) is_transient: Option<bool>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    error_data: Option<ErrorData>,
    #[serde(default)]
    fbtrace_id: Option<String>,
}

/// Documented as an integer; tolerated as a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum GraphErrorCode {
    Number(i64),
    Text(String),
}

impl GraphError {
    /// The numeric code, if it is one.
    pub(super) fn code(&self) -> Option<i64> {
        match &self.code {
            GraphErrorCode::Number(code) => Some(*code),
            GraphErrorCode::Text(code) => code.trim().parse().ok(),
        }
    }
}

#[derive(Deserialize)]
struct ErrorData {
    #[serde(default)]
    details: Option<String>,
}

/// Classifies a non-2xx answer.
fn rejection(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
    access_token: &str,
) -> Failure {
    let envelope = serde_json::from_slice::<ErrorEnvelope>(body)
        .ok()
        .and_then(|envelope| Some((envelope.error.code()?, envelope.error)));
    let Some((code, error)) = envelope else {
        let class = classify_status(status);
        return Failure {
            provider: PROVIDER,
            class,
            code: format!("HTTP{}", status.as_u16()),
            reason: format!("Graph API answered {status} without a Meta error"),
            retry_after: retry_after.filter(|_| class == FailureClass::Retry),
        };
    };
    let class = classify_code(code);
    let retry_after = match class {
        FailureClass::Retry => retry_after.or_else(|| retry_hint(code)),
        // Nothing will be retried: a delay would mean nothing.
        FailureClass::Recipient | FailureClass::Account | FailureClass::Unknown => None,
    };
    Failure {
        provider: PROVIDER,
        class,
        code: code.to_string(),
        reason: scrub(&describe(&error), access_token),
        retry_after,
    }
}

/// The class of a Meta error code: the table, then the code families, else
/// retry.
pub fn classify_code(code: i64) -> FailureClass {
    let text = code.to_string();
    META_ERRORS
        .iter()
        .find(|(known, _)| *known == text)
        .map(|(_, class)| *class)
        .or_else(|| {
            ACCOUNT_CODE_RANGES
                .iter()
                .any(|range| range.contains(&code))
                .then_some(FailureClass::Account)
        })
        .unwrap_or(FailureClass::Retry)
}

/// For answers that are not Meta's error envelope (proxies, outages).
fn classify_status(status: StatusCode) -> FailureClass {
    match status.as_u16() {
        401 | 403 => FailureClass::Account,
        408 | 429 => FailureClass::Retry,
        400..=499 => FailureClass::Recipient,
        _ => FailureClass::Retry,
    }
}

/// How long to wait when Meta names a rate limit but sends no Retry-After.
fn retry_hint(code: i64) -> Option<Duration> {
    match code {
        130429 => Some(Duration::from_secs(1)),
        131056 => Some(Duration::from_secs(6)),
        _ => None,
    }
}

/// `Retry-After` as delay-seconds or an HTTP date.
fn retry_after_header(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

pub(super) fn describe(error: &GraphError) -> String {
    let mut reason = error.message.clone();
    if let Some(details) = error
        .error_data
        .as_ref()
        .and_then(|data| data.details.as_deref())
        .filter(|details| !details.is_empty() && *details != error.message)
    {
        reason.push_str(": ");
        reason.push_str(details);
    }
    if let Some(trace) = &error.fbtrace_id {
        reason.push_str(&format!(" (fbtrace_id {trace})"));
    }
    reason
}

/// Meta echoes a malformed token back in its error message.
pub(super) fn scrub(text: &str, access_token: &str) -> String {
    if access_token.is_empty() {
        text.to_owned()
    } else {
        text.replace(access_token, "[redacted]")
    }
}

/// A request that failed before Meta answered. Only a connection that was
/// never made (or a request that could not be built) is known not to have
/// reached Meta; anything later (a timeout, a reset while waiting for the
/// answer) may have been accepted.
fn transport_failure(err: reqwest::Error) -> Failure {
    let (class, code, what) = if err.is_connect() {
        (
            FailureClass::Retry,
            "Unreachable",
            "the Graph API could not be reached",
        )
    } else if err.is_builder() {
        (
            FailureClass::Retry,
            "RequestNotSent",
            "the request to the Graph API could not be built",
        )
    } else if err.is_timeout() {
        (
            FailureClass::Unknown,
            "Timeout",
            "the Graph API did not answer in time; the message may have been accepted",
        )
    } else {
        (
            FailureClass::Unknown,
            "ConnectionLost",
            "the connection to the Graph API failed before its answer; the message may have been accepted",
        )
    };
    failure(class, code, format!("{what}{}", causes(&err)))
}

/// The chain of causes (refused, reset, DNS…), without the URL.
pub(super) fn causes(err: &reqwest::Error) -> String {
    let mut reason = String::new();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        reason.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    reason
}

fn failure(class: FailureClass, code: &str, reason: String) -> Failure {
    Failure {
        provider: PROVIDER,
        class,
        code: code.into(),
        reason,
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Channel, MessageId};
    use serde_json::json;
    use wiremock::matchers::{body_json, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const TOKEN: &str = "EAAGtestSECRETtoken0123456789";
    const PHONE_NUMBER_ID: &str = "106540352242922";
    const MESSAGES_PATH: &str = "/v21.0/106540352242922/messages";
    const WAMID: &str = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3NjVERDZFMjVGMjhFODhFOUQA";
    const MESSAGE_ID: &str = "0d3f2c2e-5b7a-4e7c-9f61-2b8f6c1a4e10";

    fn account() -> WhatsAppAccountConfig {
        WhatsAppAccountConfig {
            phone_number_id: PHONE_NUMBER_ID.into(),
            waba_id: Some("102290129340398".into()),
        }
    }

    fn text_message(body: &str) -> SendMessageCommand {
        SendMessageCommand {
            message_id: MessageId(uuid::Uuid::parse_str(MESSAGE_ID).expect("uuid")),
            channel: Channel::WhatsApp,
            recipient: "+5215512345678".into(),
            subject: None,
            body: body.into(),
            body_html: None,
            whatsapp_template: None,
        }
    }

    fn template_message(template: WhatsAppTemplate) -> SendMessageCommand {
        SendMessageCommand {
            whatsapp_template: Some(template),
            ..text_message("rendered fallback text")
        }
    }

    fn adapter(server: &MockServer) -> MetaCloud {
        MetaCloud::new(MetaSettings {
            graph_base_url: server.uri(),
            api_version: "v21.0".into(),
            send_timeout: SEND_TIMEOUT,
            app: None,
        })
        .expect("http client")
    }

    fn success() -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": "5215512345678", "wa_id": "5215512345678"}],
            "messages": [{"id": WAMID}]
        }))
    }

    fn meta_error(status: u16, code: i64, message: &str, details: &str) -> ResponseTemplate {
        ResponseTemplate::new(status).set_body_json(json!({
            "error": {
                "message": message,
                "type": "OAuthException",
                "code": code,
                "error_data": {"messaging_product": "whatsapp", "details": details},
                "fbtrace_id": "AbCdEf123"
            }
        }))
    }

    /// Sends a text message to a server that always answers `response`.
    async fn failure_for(response: ResponseTemplate) -> Failure {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(response)
            .mount(&server)
            .await;
        adapter(&server)
            .send(&account(), TOKEN, &text_message("hola"))
            .await
            .expect_err("Meta said no")
    }

    #[tokio::test]
    async fn a_template_message_has_meta_shape_and_returns_the_wamid() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(MESSAGES_PATH))
            .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
            .and(body_json(json!({
                "biz_opaque_callback_data": MESSAGE_ID,
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "5215512345678",
                "type": "template",
                "template": {
                    "name": "booking_confirmed",
                    "language": {"code": "es_MX"},
                    "components": [
                        {"type": "header", "parameters": [{"type": "text", "text": "MEX-GDL"}]},
                        {"type": "body", "parameters": [
                            {"type": "text", "text": "Ana"},
                            {"type": "text", "text": "12 de mayo, 09:00"}
                        ]}
                    ]
                }
            })))
            .respond_with(success())
            .expect(1)
            .mount(&server)
            .await;
        let command = template_message(WhatsAppTemplate {
            name: "booking_confirmed".into(),
            language: "es_MX".into(),
            header: vec!["MEX-GDL".into()],
            body: vec!["Ana".into(), "12 de mayo, 09:00".into()],
        });

        let accepted = adapter(&server)
            .send(&account(), TOKEN, &command)
            .await
            .expect("accepted");

        assert_eq!(accepted.external_message_id, WAMID);
    }

    #[tokio::test]
    async fn a_template_without_parameters_has_no_components() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(MESSAGES_PATH))
            .and(body_json(json!({
                "biz_opaque_callback_data": MESSAGE_ID,
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "5215512345678",
                "type": "template",
                "template": {"name": "hello_world", "language": {"code": "en_US"}}
            })))
            .respond_with(success())
            .expect(1)
            .mount(&server)
            .await;
        let command = template_message(WhatsAppTemplate {
            name: "hello_world".into(),
            language: "en_US".into(),
            header: vec![],
            body: vec![],
        });

        adapter(&server)
            .send(&account(), TOKEN, &command)
            .await
            .expect("accepted");
    }

    #[tokio::test]
    async fn a_body_only_template_omits_the_header_component() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(body_json(json!({
                "biz_opaque_callback_data": MESSAGE_ID,
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "5215512345678",
                "type": "template",
                "template": {
                    "name": "trip_reminder",
                    "language": {"code": "es_MX"},
                    "components": [
                        {"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}
                    ]
                }
            })))
            .respond_with(success())
            .expect(1)
            .mount(&server)
            .await;
        let command = template_message(WhatsAppTemplate {
            name: "trip_reminder".into(),
            language: "es_MX".into(),
            header: vec![],
            body: vec!["Ana".into()],
        });

        adapter(&server)
            .send(&account(), TOKEN, &command)
            .await
            .expect("accepted");
    }

    #[tokio::test]
    async fn a_text_message_has_meta_shape_and_returns_the_wamid() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(MESSAGES_PATH))
            .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
            .and(body_json(json!({
                "biz_opaque_callback_data": MESSAGE_ID,
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "5215512345678",
                "type": "text",
                "text": {"preview_url": false, "body": "Su autobús sale a las 9:00"}
            })))
            .respond_with(success())
            .expect(1)
            .mount(&server)
            .await;

        let accepted = adapter(&server)
            .send(
                &account(),
                TOKEN,
                &text_message("Su autobús sale a las 9:00"),
            )
            .await
            .expect("accepted");

        assert_eq!(accepted.external_message_id, WAMID);
    }

    #[tokio::test]
    async fn an_undeliverable_recipient_falls_back() {
        let failure = failure_for(meta_error(
            400,
            131026,
            "(#131026) Message undeliverable",
            "Message Undeliverable.",
        ))
        .await;

        assert_eq!(failure.class, FailureClass::Recipient);
        assert_eq!(failure.code, "131026");
        assert_eq!(
            failure.reason,
            "(#131026) Message undeliverable: Message Undeliverable. (fbtrace_id AbCdEf123)"
        );
        assert_eq!(failure.retry_after, None);
    }

    #[tokio::test]
    async fn an_expired_token_is_the_account_problem() {
        let failure = failure_for(meta_error(
            401,
            190,
            "Error validating access token: Session has expired",
            "",
        ))
        .await;

        assert_eq!(failure.class, FailureClass::Account);
        assert_eq!(failure.code, "190");
    }

    #[tokio::test]
    async fn a_template_error_is_the_account_problem() {
        let failure = failure_for(meta_error(
            400,
            132001,
            "(#132001) Template name does not exist in the translation",
            "template name (booking_confirmed) does not exist in es_MX",
        ))
        .await;

        assert_eq!(failure.class, FailureClass::Account);
        assert_eq!(failure.code, "132001");
        assert!(failure.reason.contains("does not exist in es_MX"));
    }

    #[tokio::test]
    async fn a_throughput_limit_retries_after_meta_retry_after() {
        let failure = failure_for(
            meta_error(
                400,
                130429,
                "(#130429) Rate limit hit",
                "Cloud API throughput reached",
            )
            .insert_header("Retry-After", "30"),
        )
        .await;

        assert_eq!(failure.class, FailureClass::Retry);
        assert_eq!(failure.retry_after, Some(Duration::from_secs(30)));
    }

    #[tokio::test]
    async fn rate_limits_without_retry_after_get_a_hint() {
        let throughput = failure_for(meta_error(400, 130429, "Rate limit hit", "")).await;
        let pair = failure_for(meta_error(400, 131056, "Pair rate limit hit", "")).await;

        assert_eq!(throughput.retry_after, Some(Duration::from_secs(1)));
        assert_eq!(pair.class, FailureClass::Retry);
        assert_eq!(pair.retry_after, Some(Duration::from_secs(6)));
    }

    #[tokio::test]
    async fn an_html_server_error_retries() {
        let failure = failure_for(ResponseTemplate::new(500).set_body_raw(
            "<html><body>Internal Server Error</body></html>",
            "text/html",
        ))
        .await;

        assert_eq!(failure.class, FailureClass::Retry);
        assert_eq!(failure.code, "HTTP500");
    }

    #[tokio::test]
    async fn bodies_without_the_envelope_are_classified_by_status() {
        let cases = [
            (401, FailureClass::Account),
            (403, FailureClass::Account),
            (408, FailureClass::Retry),
            (429, FailureClass::Retry),
            (503, FailureClass::Retry),
            (404, FailureClass::Recipient),
            (400, FailureClass::Recipient),
        ];
        for (status, class) in cases {
            let failure =
                failure_for(ResponseTemplate::new(status).set_body_string("upstream trouble"))
                    .await;
            assert_eq!(failure.class, class, "HTTP {status}");
        }
    }

    #[tokio::test]
    async fn an_unknown_code_retries() {
        let failure = failure_for(meta_error(400, 999_999, "Something new", "")).await;

        assert_eq!(failure.class, FailureClass::Retry);
        assert_eq!(failure.code, "999999");
    }

    #[tokio::test]
    async fn a_success_without_a_wamid_has_an_unknown_outcome() {
        let failure = failure_for(ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp",
            "messages": []
        })))
        .await;

        assert_eq!(failure.class, FailureClass::Unknown);
        assert_eq!(failure.code, "NoMessageId");
    }

    /// A Graph API address where nothing listens: a port that was free a
    /// moment ago.
    fn unreachable_adapter() -> MetaCloud {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        MetaCloud::new(MetaSettings {
            graph_base_url: format!("http://127.0.0.1:{port}"),
            api_version: "v21.0".into(),
            send_timeout: SEND_TIMEOUT,
            app: None,
        })
        .expect("http client")
    }

    #[tokio::test]
    async fn an_unreachable_graph_api_retries() {
        let meta = unreachable_adapter();

        let failure = meta
            .send(&account(), TOKEN, &text_message("hola"))
            .await
            .expect_err("nobody listens");

        assert_eq!(failure.class, FailureClass::Retry);
        assert_eq!(failure.code, "Unreachable");
    }

    #[tokio::test]
    async fn a_slow_graph_api_times_out_with_an_unknown_outcome() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(success().set_delay(Duration::from_secs(5)))
            .mount(&server)
            .await;
        let meta = MetaCloud::new(MetaSettings {
            graph_base_url: server.uri(),
            api_version: "v21.0".into(),
            send_timeout: Duration::from_millis(200),
            app: None,
        })
        .expect("http client");

        let failure = meta
            .send(&account(), TOKEN, &text_message("hola"))
            .await
            .expect_err("too slow");

        assert_eq!(failure.class, FailureClass::Unknown);
        assert_eq!(failure.code, "Timeout");
    }

    #[tokio::test]
    async fn bad_account_config_and_recipients_fail_before_calling_meta() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(success())
            .expect(0)
            .mount(&server)
            .await;
        let meta = adapter(&server);
        let bad_id = WhatsAppAccountConfig {
            phone_number_id: "../../me".into(),
            waba_id: None,
        };

        let wrong_id = meta.send(&bad_id, TOKEN, &text_message("hola")).await;
        let no_token = meta.send(&account(), "", &text_message("hola")).await;
        let bad_token = meta.send(&account(), "a\nb", &text_message("hola")).await;
        let national = SendMessageCommand {
            recipient: "5512345678".into(),
            ..text_message("hola")
        };
        let bad_recipient = meta.send(&account(), TOKEN, &national).await;

        assert_eq!(wrong_id.expect_err("bad id").class, FailureClass::Account);
        assert_eq!(no_token.expect_err("no token").class, FailureClass::Account);
        assert_eq!(
            bad_token.expect_err("bad token").class,
            FailureClass::Account
        );
        assert_eq!(
            bad_recipient.expect_err("not E.164").class,
            FailureClass::Recipient
        );
    }

    #[test]
    fn a_user_known_only_by_their_user_id_is_addressed_as_recipient() {
        let to_user = SendMessageCommand {
            recipient: "US.13491208655302741918".into(),
            ..text_message("hola")
        };
        let body = serde_json::to_value(OutboundMessage::new(
            whatsapp_recipient(&to_user.recipient).expect("a user id"),
            &to_user,
        ))
        .expect("json");
        assert_eq!(body["recipient"], "US.13491208655302741918");
        assert!(body.get("to").is_none(), "{body}");
        assert!(whatsapp_recipient("US.ENT.11815799212886844830").is_ok());
        assert!(whatsapp_recipient("US..1").is_err());
        assert!(whatsapp_recipient("5512345678").is_err());
    }

    #[tokio::test]
    async fn no_failure_ever_shows_the_access_token() {
        let mut failures = vec![
            // Meta quotes a malformed token in its message.
            failure_for(meta_error(
                401,
                190,
                &format!("Malformed access token {TOKEN}"),
                &format!("token {TOKEN} could not be parsed"),
            ))
            .await,
            failure_for(meta_error(400, 131026, "Message undeliverable", "")).await,
            failure_for(meta_error(400, 132001, "Template name does not exist", "")).await,
            failure_for(meta_error(400, 999_999, "Something new", "")).await,
            failure_for(ResponseTemplate::new(500).set_body_string("oops")).await,
            failure_for(ResponseTemplate::new(200).set_body_string("{}")).await,
        ];
        failures.push(
            unreachable_adapter()
                .send(&account(), TOKEN, &text_message("hola"))
                .await
                .expect_err("unreachable"),
        );

        assert!(failures[0].reason.contains("[redacted]"), "{}", failures[0]);
        for failure in &failures {
            let shown = format!("{failure} {failure:?}");
            assert!(!shown.contains(TOKEN), "token leaked: {shown}");
            assert!(!shown.contains("Bearer"), "header leaked: {shown}");
        }
    }

    #[test]
    fn the_table_and_ranges_sort_meta_codes() {
        for code in [130429, 131056, 131057, 80007, 4, 131000] {
            assert_eq!(classify_code(code), FailureClass::Retry, "{code}");
        }
        for code in [131026, 131047, 131051, 100, 131008, 131009, 131048, 131049] {
            assert_eq!(classify_code(code), FailureClass::Recipient, "{code}");
        }
        for code in [
            190, 10, 200, 131031, 368, 132000, 132001, 132015, 132999, 294,
        ] {
            assert_eq!(classify_code(code), FailureClass::Account, "{code}");
        }
        assert_eq!(
            classify_code(133_000),
            FailureClass::Retry,
            "outside 132xxx"
        );
        assert_eq!(
            classify_code(131_999),
            FailureClass::Retry,
            "outside 132xxx"
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after_header(&headers), None);

        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after_header(&headers), Some(Duration::from_secs(7)));

        let in_an_hour = (Utc::now() + chrono::Duration::hours(1)).to_rfc2822();
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_str(&in_an_hour).expect("header"),
        );
        let delay = retry_after_header(&headers).expect("date");
        assert!(
            (3590..=3600).contains(&delay.as_secs()),
            "{delay:?} from {in_an_hour}"
        );

        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after_header(&headers), Some(Duration::ZERO), "past");
    }
}
