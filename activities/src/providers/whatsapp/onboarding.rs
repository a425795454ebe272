//! Connecting a tenant's WhatsApp number after Meta's Embedded Signup: the
//! Graph API calls of onboarding. Exchange the signup code for a business
//! token (with the platform app's id and secret), register the number for
//! the Cloud API, subscribe the app to the WhatsApp Business Account with
//! this tenant's webhook, and read the account's message templates and the
//! number's profile.
//!
//! Every call is safe to repeat except the code exchange: Meta honours a
//! code once, so its token must be kept the moment it arrives. Failures are
//! classified on Meta's numeric `code` and `error_subcode`, never on the
//! text; the token, app secret and code are scrubbed from anything Meta
//! echoes back.

use super::meta::{ErrorEnvelope, MetaCloud, causes, describe, scrub};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The platform's Meta app (its id and secret), which every tenant's number
/// connects through.
#[derive(Clone, PartialEq, Eq)]
pub struct MetaApp {
    pub app_id: String,
    pub app_secret: String,
}

impl fmt::Debug for MetaApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetaApp")
            .field("app_id", &self.app_id)
            .field("app_secret", &"<redacted>")
            .finish()
    }
}

/// A Graph API call of onboarding that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{step}: {reason}")]
pub struct OnboardingError {
    /// Which call: `exchanging the signup code`, `registering the number`…
    pub step: &'static str,
    /// Meta's error code and subcode, when Meta answered with its envelope.
    pub code: Option<i64>,
    pub subcode: Option<i64>,
    /// What went wrong and, where known, what the operator can do.
    pub reason: String,
    /// Whether the same call may succeed later (outage, rate limit).
    pub retryable: bool,
}

impl OnboardingError {
    /// The step and Meta's codes, without the reason: what a trace may show.
    pub fn code_only(&self) -> String {
        format!(
            "{}: Meta {} / {}",
            self.step,
            self.code.map_or("-".to_owned(), |c| c.to_string()),
            self.subcode.map_or("-".to_owned(), |c| c.to_string())
        )
    }
}

/// Codes that mean "later": rate limits, temporary trouble, a number still
/// being deleted elsewhere.
const TRANSIENT_CODES: &[i64] = &[1, 2, 4, 17, 32, 341, 80007, 130429, 131000, 133004, 133015];

/// What the operator can do about a code Meta gives during onboarding.
fn hint(code: i64, subcode: Option<i64>) -> Option<&'static str> {
    Some(match (code, subcode) {
        (100, Some(36009)) => {
            "the signup code was already used; run Embedded Signup again for a new one"
        }
        (100, Some(36007)) => "the signup code expired; run Embedded Signup again for a new one",
        (100, Some(36008)) => {
            "the signup code was issued for another redirect; run Embedded Signup again"
        }
        (190, _) => "the business token is no longer valid; connect the number again",
        (133005, _) => {
            "the number already has a different two-step verification PIN; give that PIN, or reset it in WhatsApp Manager"
        }
        (133006, _) => "the number must be verified again in WhatsApp Manager first",
        (133016, _) => {
            "the number was registered too often (10 times in 72 hours); try again after 72 hours"
        }
        (2200, _) => {
            "Meta could not verify this tenant's webhook URL; check that BUSFLOW_PUBLIC_URL reaches this service"
        }
        (10 | 200..=299, _) => {
            "the signup did not grant this app access to the WhatsApp Business Account"
        }
        _ => return None,
    })
}

/// The profile of a business phone number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneNumberProfile {
    #[serde(default)]
    pub display_phone_number: Option<String>,
    #[serde(default)]
    pub verified_name: Option<String>,
    #[serde(default)]
    pub quality_rating: Option<String>,
}

/// One message template of a WhatsApp Business Account, as Meta lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphTemplate {
    pub id: String,
    pub name: String,
    pub language: String,
    /// APPROVED, PENDING, REJECTED, PAUSED, DISABLED…; only APPROVED sends.
    pub status: String,
    #[serde(default)]
    pub category: Option<String>,
    /// POSITIONAL (`{{1}}`) or NAMED (`{{first_name}}`); absent on old templates.
    #[serde(default)]
    pub parameter_format: Option<String>,
    #[serde(default)]
    pub components: serde_json::Value,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
}

#[derive(Deserialize)]
struct Success {
    #[serde(default)]
    success: bool,
}

#[derive(Deserialize)]
struct TemplatePage {
    #[serde(default)]
    data: Vec<GraphTemplate>,
    #[serde(default)]
    paging: Option<Paging>,
}

#[derive(Deserialize)]
struct Paging {
    #[serde(default)]
    cursors: Option<Cursors>,
    /// Present only when another page exists.
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct Cursors {
    #[serde(default)]
    after: Option<String>,
}

/// Pages of templates read at most (100 each).
const MAX_TEMPLATE_PAGES: usize = 50;

impl MetaCloud {
    /// The platform's Meta app, when configured.
    pub fn app(&self) -> Option<&MetaApp> {
        self.settings().app.as_ref()
    }

    /// Exchanges Embedded Signup's `code` for the business token.
    pub async fn exchange_signup_code(&self, code: &str) -> Result<String, OnboardingError> {
        const STEP: &str = "exchanging the signup code";
        let app = self.settings().app.as_ref().ok_or_else(|| OnboardingError {
            step: STEP,
            code: None,
            subcode: None,
            reason: "the platform's Meta app is not configured (BUSFLOW_META_APP_ID, BUSFLOW_META_APP_SECRET)".into(),
            retryable: false,
        })?;
        let url = with_query(
            STEP,
            &self.graph_url("oauth/access_token"),
            &[
                ("client_id", app.app_id.as_str()),
                ("client_secret", app.app_secret.as_str()),
                ("code", code),
            ],
        )?;
        let request = self.http().get(url);
        let secrets = [app.app_secret.as_str(), code];
        let body = call(STEP, request, &secrets).await?;
        let token = serde_json::from_slice::<TokenResponse>(&body)
            .ok()
            .map(|t| t.access_token)
            .filter(|t| !t.is_empty());
        token.ok_or_else(|| OnboardingError {
            step: STEP,
            code: None,
            subcode: None,
            reason: "Meta's answer carries no access_token".into(),
            retryable: false,
        })
    }

    /// Registers the number for the Cloud API with its two-step verification
    /// PIN (six digits). Registering again with the same PIN is harmless.
    pub async fn register_phone_number(
        &self,
        token: &str,
        phone_number_id: &str,
        pin: &str,
    ) -> Result<(), OnboardingError> {
        const STEP: &str = "registering the number";
        let request = self
            .http()
            .post(self.graph_url(&format!("{}/register", graph_id(STEP, phone_number_id)?)))
            .header(AUTHORIZATION, bearer(STEP, token)?)
            .json(&serde_json::json!({"messaging_product": "whatsapp", "pin": pin}));
        succeeded(STEP, &call(STEP, request, &[token, pin]).await?)
    }

    /// Subscribes the platform app to the WhatsApp Business Account, then
    /// points its webhooks at `callback` (this tenant's URL) with
    /// `verify_token`. Meta checks the URL with a GET challenge during the
    /// second call, so the token must already be answerable.
    pub async fn subscribe_app(
        &self,
        token: &str,
        waba_id: &str,
        callback: &str,
        verify_token: &str,
    ) -> Result<(), OnboardingError> {
        const STEP: &str = "subscribing the app to the WhatsApp Business Account";
        let url = self.graph_url(&format!("{}/subscribed_apps", graph_id(STEP, waba_id)?));
        // An override is refused until the app is subscribed at all.
        let plain = self
            .http()
            .post(&url)
            .header(AUTHORIZATION, bearer(STEP, token)?);
        succeeded(STEP, &call(STEP, plain, &[token]).await?)?;
        let overridden = self
            .http()
            .post(&url)
            .header(AUTHORIZATION, bearer(STEP, token)?)
            .json(&serde_json::json!({
                "override_callback_uri": callback,
                "verify_token": verify_token,
            }));
        succeeded(STEP, &call(STEP, overridden, &[token, verify_token]).await?)
    }

    /// Every message template of the WhatsApp Business Account, page by page.
    pub async fn message_templates(
        &self,
        token: &str,
        waba_id: &str,
    ) -> Result<Vec<GraphTemplate>, OnboardingError> {
        const STEP: &str = "reading the message templates";
        let url = self.graph_url(&format!("{}/message_templates", graph_id(STEP, waba_id)?));
        let mut templates = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_TEMPLATE_PAGES {
            let mut query = vec![
                (
                    "fields",
                    "id,name,language,status,category,parameter_format,components",
                ),
                ("limit", "100"),
            ];
            if let Some(cursor) = &after {
                query.push(("after", cursor.as_str()));
            }
            let request = self
                .http()
                .get(with_query(STEP, &url, &query)?)
                .header(AUTHORIZATION, bearer(STEP, token)?);
            let body = call(STEP, request, &[token]).await?;
            let page: TemplatePage =
                serde_json::from_slice(&body).map_err(|e| OnboardingError {
                    step: STEP,
                    code: None,
                    subcode: None,
                    reason: format!("Meta's answer is not a template list: {e}"),
                    retryable: true,
                })?;
            templates.extend(page.data);
            after = page
                .paging
                .filter(|p| p.next.is_some())
                .and_then(|p| p.cursors)
                .and_then(|c| c.after);
            if after.is_none() {
                return Ok(templates);
            }
        }
        Ok(templates)
    }

    /// The number's display number, verified name and quality rating.
    pub async fn phone_number_profile(
        &self,
        token: &str,
        phone_number_id: &str,
    ) -> Result<PhoneNumberProfile, OnboardingError> {
        const STEP: &str = "reading the number's profile";
        let url = with_query(
            STEP,
            &self.graph_url(graph_id(STEP, phone_number_id)?),
            &[(
                "fields",
                "display_phone_number,verified_name,quality_rating",
            )],
        )?;
        let request = self
            .http()
            .get(url)
            .header(AUTHORIZATION, bearer(STEP, token)?);
        let body = call(STEP, request, &[token]).await?;
        serde_json::from_slice(&body).map_err(|e| OnboardingError {
            step: STEP,
            code: None,
            subcode: None,
            reason: format!("Meta's answer is not a phone number: {e}"),
            retryable: true,
        })
    }
}

/// `url` with `pairs` as its query, percent-encoded.
fn with_query(
    step: &'static str,
    url: &str,
    pairs: &[(&str, &str)],
) -> Result<reqwest::Url, OnboardingError> {
    let mut url = reqwest::Url::parse(url).map_err(|e| OnboardingError {
        step,
        code: None,
        subcode: None,
        reason: format!("the Graph API URL is not valid: {e}"),
        retryable: false,
    })?;
    url.query_pairs_mut().extend_pairs(pairs);
    Ok(url)
}

/// A Graph API node id: digits only, so it cannot change the path.
fn graph_id<'a>(step: &'static str, id: &'a str) -> Result<&'a str, OnboardingError> {
    if !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(id)
    } else {
        Err(OnboardingError {
            step,
            code: None,
            subcode: None,
            reason: format!("'{id}' is not a Graph API id"),
            retryable: false,
        })
    }
}

fn bearer(step: &'static str, token: &str) -> Result<HeaderValue, OnboardingError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .ok()
        .filter(|_| !token.is_empty())
        .ok_or_else(|| OnboardingError {
            step,
            code: None,
            subcode: None,
            reason: "the business token is empty or not a valid header value".into(),
            retryable: false,
        })?;
    value.set_sensitive(true);
    Ok(value)
}

/// Sends the request; a 2xx gives its body, anything else a classified
/// error with `secrets` scrubbed from Meta's text.
async fn call(
    step: &'static str,
    request: reqwest::RequestBuilder,
    secrets: &[&str],
) -> Result<Vec<u8>, OnboardingError> {
    let response = request.send().await.map_err(|e| OnboardingError {
        step,
        code: None,
        subcode: None,
        // The URL may carry the code and app secret: only the causes are kept.
        reason: format!("the Graph API could not be reached{}", causes(&e)),
        retryable: true,
    })?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| OnboardingError {
        step,
        code: None,
        subcode: None,
        reason: format!("the Graph API's answer could not be read{}", causes(&e)),
        retryable: true,
    })?;
    if status.is_success() {
        return Ok(body.to_vec());
    }
    let scrubbed = |text: String| secrets.iter().fold(text, |text, s| scrub(&text, s));
    let Some(error) = serde_json::from_slice::<ErrorEnvelope>(&body)
        .ok()
        .map(|e| e.error)
    else {
        return Err(OnboardingError {
            step,
            code: None,
            subcode: None,
            reason: format!("the Graph API answered {status} without a Meta error"),
            retryable: status.is_server_error() || status.as_u16() == 429,
        });
    };
    let code = error.code();
    let subcode = error.error_subcode;
    let retryable =
        error.is_transient == Some(true) || code.is_some_and(|c| TRANSIENT_CODES.contains(&c));
    let mut reason = scrubbed(describe(&error));
    if let Some(hint) = code.and_then(|c| hint(c, subcode)) {
        reason = format!("{hint} ({reason})");
    }
    Err(OnboardingError {
        step,
        code,
        subcode,
        reason,
        retryable,
    })
}

fn succeeded(step: &'static str, body: &[u8]) -> Result<(), OnboardingError> {
    match serde_json::from_slice::<Success>(body) {
        Ok(Success { success: true }) => Ok(()),
        _ => Err(OnboardingError {
            step,
            code: None,
            subcode: None,
            reason: "Meta did not answer {\"success\": true}".into(),
            retryable: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::whatsapp::meta::MetaSettings;
    use wiremock::matchers::{body_json, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    async fn meta(server: &MockServer) -> MetaCloud {
        MetaCloud::new(MetaSettings {
            graph_base_url: server.uri(),
            app: Some(MetaApp {
                app_id: "1234567890".into(),
                app_secret: "platform-app-secret".into(),
            }),
            ..MetaSettings::default()
        })
        .expect("client")
    }

    #[tokio::test]
    async fn a_used_signup_code_is_refused_for_good_with_what_to_do() {
        let server = MockServer::start().await;
        // Meta's answer to a second exchange of one code (a captured response).
        Mock::given(method("GET"))
            .and(path("/v21.0/oauth/access_token"))
            .and(query_param("code", "AQBcode"))
            .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
                "error": {"message": "This authorization code has been used.",
                          "type": "OAuthException", "code": 100, "error_subcode": 36009,
                          "fbtrace_id": "AHtohT4VFYAhX-Ii6g-6xL7"}
            })))
            .mount(&server)
            .await;
        let error = meta(&server)
            .await
            .exchange_signup_code("AQBcode")
            .await
            .expect_err("refused");
        assert!(!error.retryable);
        assert_eq!((error.code, error.subcode), (Some(100), Some(36009)));
        assert!(
            error.reason.starts_with("the signup code was already used"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn the_app_secret_never_appears_in_an_error() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/v21.0/oauth/access_token"))
            .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
                "error": {"message": "Error validating client secret platform-app-secret.",
                          "type": "OAuthException", "code": 1}
            })))
            .mount(&server)
            .await;
        let error = meta(&server)
            .await
            .exchange_signup_code("AQBcode")
            .await
            .expect_err("refused");
        assert!(
            !error.to_string().contains("platform-app-secret"),
            "{error}"
        );
        assert!(error.retryable, "code 1 is Meta's unknown, temporary error");
    }

    #[tokio::test]
    async fn the_override_follows_a_plain_subscription() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v21.0/102290129340398/subscribed_apps"))
            .and(body_json(serde_json::json!({
                "override_callback_uri": "https://comms.example/webhooks/meta/t1",
                "verify_token": "v1",
            })))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(serde_json::json!({"success": true})),
            )
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/v21.0/102290129340398/subscribed_apps"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(serde_json::json!({"success": true})),
            )
            .expect(1)
            .mount(&server)
            .await;
        meta(&server)
            .await
            .subscribe_app(
                "EAAtoken",
                "102290129340398",
                "https://comms.example/webhooks/meta/t1",
                "v1",
            )
            .await
            .expect("subscribed");
        let calls = server.received_requests().await.expect("requests");
        assert!(calls[0].body.is_empty(), "first a plain subscription");
        assert!(!calls[1].body.is_empty(), "then the override");
    }

    #[tokio::test]
    async fn templates_are_read_across_pages() {
        let server = MockServer::start().await;
        let template = |name: &str| {
            serde_json::json!({"name": name, "language": "es_MX", "status": "APPROVED",
                               "category": "UTILITY", "id": format!("id-{name}"),
                               "components": [{"type": "BODY", "text": "Hola {{1}}"}]})
        };
        Mock::given(method("GET"))
            .and(path("/v21.0/102290129340398/message_templates"))
            .and(query_param("after", "MjQZD"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "data": [template("second")],
                "paging": {"cursors": {"before": "MjQZD", "after": "MjUZD"}}
            })))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v21.0/102290129340398/message_templates"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "data": [template("first")],
                "paging": {"cursors": {"before": "MAZDZD", "after": "MjQZD"},
                           "next": "https://graph.facebook.com/v21.0/102290129340398/message_templates?after=MjQZD"}
            })))
            .mount(&server)
            .await;
        let templates = meta(&server)
            .await
            .message_templates("EAAtoken", "102290129340398")
            .await
            .expect("templates");
        let names: Vec<&str> = templates.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["first", "second"]);
    }
}
