//! Temporal's history is ciphertext; ops read it through the codec server
//! with their credential (a bearer token, or their identity provider's
//! JWT), and nobody reads it without.

use crate::support::app::{CODEC_TOKEN, UI_ORIGIN, for_each_payload};
use crate::support::services::tools_bin;
use crate::support::{TestApp, TestOptions};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use busflow_api::codec::credential::JwtIssuer;
use busflow_api::codec::{CodecSettings, OpsCredential};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};
use std::sync::Arc;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A booking confirmed by SMS; its workflow id and booking reference.
async fn notified(app: &TestApp) -> (String, String) {
    app.add_sandbox_sms_account(None, None).await;
    let profile = Uuid::new_v4();
    let phone = app.unique_phone();
    let contact = app.upsert_passenger_with_phone(profile, &phone).await;
    let reference = format!("BF-COD{}", &Uuid::new_v4().simple().to_string()[..6]);
    let workflow_id = app.confirm_booking(profile, contact, &reference).await;
    app.workflow_result(&workflow_id).await.expect("sent");
    (workflow_id, reference)
}

/// The payloads of the history's events, as the Web UI sends them to the
/// codec server.
async fn history_payloads(app: &TestApp, workflow_id: &str) -> Vec<Value> {
    let mut history = app.history_json(workflow_id).await;
    let mut payloads = Vec::new();
    for_each_payload(&mut history, &mut |p| {
        payloads.push(json!({
            "metadata": p.metadata.iter().map(|(k, v)| (k.clone(), B64.encode(v))).collect::<std::collections::BTreeMap<_, _>>(),
            "data": B64.encode(&p.data),
        }))
    });
    payloads
}

fn metadata(payload: &Value, key: &str) -> Option<String> {
    let value = payload["metadata"][key].as_str()?;
    String::from_utf8(B64.decode(value).ok()?).ok()
}

fn data(payload: &Value) -> String {
    String::from_utf8_lossy(
        &B64.decode(payload["data"].as_str().unwrap_or_default())
            .expect("base64"),
    )
    .into_owned()
}

/// `temporal workflow show -o json`, with `codec` flags.
async fn cli_show(app: &TestApp, workflow_id: &str, codec: &[&str]) -> String {
    let output = tokio::process::Command::new(tools_bin("temporal"))
        .args(["workflow", "show", "-w", workflow_id, "--address"])
        .arg(&app.temporal_address)
        .args(["-o", "json"])
        .args(codec)
        .output()
        .await
        .expect("temporal workflow show");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut text = String::new();
    every_base64_string(
        &serde_json::from_slice(&output.stdout).expect("JSON history"),
        &mut text,
    );
    text
}

/// Every string of `json` that is base64, decoded (payload data is).
fn every_base64_string(json: &Value, out: &mut String) {
    match json {
        Value::String(s) => {
            if let Ok(bytes) = B64.decode(s) {
                out.push_str(&String::from_utf8_lossy(&bytes));
                out.push('\n');
            }
        }
        Value::Array(items) => items.iter().for_each(|v| every_base64_string(v, out)),
        Value::Object(fields) => fields.values().for_each(|v| every_base64_string(v, out)),
        _ => {}
    }
}

async fn codec_call(
    app: &TestApp,
    op: &str,
    credential: Option<&str>,
    namespace: Option<&str>,
    payloads: &[Value],
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/codec/{op}", app.base_url))
        .json(&json!({ "payloads": payloads }));
    if let Some(credential) = credential {
        request = request.bearer_auth(credential);
    }
    if let Some(namespace) = namespace {
        request = request.header("X-Namespace", namespace);
    }
    let response = request.send().await.expect("codec call");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_notifications_history_is_ciphertext_that_ops_decode_with_their_token_and_nobody_without()
{
    let app = TestApp::spawn().await;
    let (workflow_id, reference) = notified(&app).await;

    let payloads = history_payloads(&app, &workflow_id).await;
    let sealed: Vec<&Value> = payloads
        .iter()
        .filter(|p| metadata(p, "encoding").as_deref() == Some("binary/encrypted"))
        .collect();
    assert!(
        sealed.len() >= 3,
        "the input, the activities' results, the outcome: {payloads:#?}"
    );
    for payload in &sealed {
        assert_eq!(
            metadata(payload, "encryption-key-id").as_deref(),
            Some("test-2")
        );
    }
    // Only the search attributes stay plain, and they hold ids.
    let plain: Vec<String> = payloads
        .iter()
        .filter(|p| metadata(p, "encoding").as_deref() != Some("binary/encrypted"))
        .map(data)
        .collect();
    assert!(
        plain.iter().all(|text| !text.contains(&reference)),
        "{plain:?}"
    );
    assert!(!app.raw_history(&workflow_id).await.contains(&reference));

    let sealed: Vec<Value> = sealed.into_iter().cloned().collect();
    let (status, decoded) =
        codec_call(&app, "decode", Some(CODEC_TOKEN), Some("default"), &sealed).await;
    assert_eq!(status, 200, "{decoded}");
    let decoded = decoded["payloads"].as_array().expect("payloads").clone();
    assert_eq!(decoded.len(), sealed.len());
    assert!(
        decoded
            .iter()
            .all(|p| metadata(p, "encoding").as_deref() == Some("json/plain")),
        "{decoded:#?}"
    );
    assert!(decoded.iter().any(|p| data(p).contains(&reference)));

    // The Temporal CLI speaks the same protocol as the Web UI.
    let endpoint = format!("{}/codec", app.base_url);
    let authorization = format!("Bearer {CODEC_TOKEN}");
    let decoded_by_cli = cli_show(
        &app,
        &workflow_id,
        &[
            "--codec-endpoint",
            &endpoint,
            "--codec-auth",
            &authorization,
        ],
    )
    .await;
    assert!(decoded_by_cli.contains(&reference), "{decoded_by_cli}");
    assert!(!cli_show(&app, &workflow_id, &[]).await.contains(&reference));

    for (credential, namespace, expected) in [
        (None, Some("default"), 401),
        (Some("not-the-ops-token"), Some("default"), 401),
        (Some(CODEC_TOKEN), None, 400),
        (Some(CODEC_TOKEN), Some("another-namespace"), 400),
    ] {
        let (status, body) = codec_call(&app, "decode", credential, namespace, &sealed).await;
        assert_eq!(status, expected, "{credential:?} {namespace:?}: {body}");
        assert!(!body.to_string().contains(&reference));
        assert!(body["extensions"]["code"].is_string(), "{body}");
    }
}

#[tokio::test]
async fn what_ops_encode_through_the_codec_opens_again_and_names_the_active_key() {
    let app = TestApp::spawn().await;
    let plain = json!({
        "metadata": {"encoding": B64.encode("json/plain")},
        "data": B64.encode(r#"{"booking_reference":"BF-OPS1"}"#),
    });
    let (status, encoded) = codec_call(
        &app,
        "encode",
        Some(CODEC_TOKEN),
        Some("default"),
        std::slice::from_ref(&plain),
    )
    .await;
    assert_eq!(status, 200, "{encoded}");
    let sealed = encoded["payloads"][0].clone();
    assert_eq!(
        metadata(&sealed, "encoding").as_deref(),
        Some("binary/encrypted")
    );
    assert_eq!(
        metadata(&sealed, "encryption-key-id").as_deref(),
        Some("test-2")
    );
    assert!(!data(&sealed).contains("BF-OPS1"));
    let (status, decoded) = codec_call(
        &app,
        "decode",
        Some(CODEC_TOKEN),
        Some("default"),
        &[sealed],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(decoded["payloads"][0], plain);

    let garbled = json!({
        "metadata": {"encoding": B64.encode("binary/encrypted"), "encryption-key-id": B64.encode("test-2")},
        "data": B64.encode("not sealed by us"),
    });
    let (status, body) = codec_call(
        &app,
        "decode",
        Some(CODEC_TOKEN),
        Some("default"),
        &[garbled],
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["extensions"]["code"], "PAYLOAD_NOT_OPENED");
}

#[tokio::test]
async fn the_web_ui_origin_may_call_the_codec_from_a_browser_and_no_other_origin_may() {
    let app = TestApp::spawn().await;
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        http.request(
            reqwest::Method::OPTIONS,
            format!("{}/codec/decode", app.base_url),
        )
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type,x-namespace",
        )
        .send()
    };
    let allowed = preflight(UI_ORIGIN).await.expect("preflight");
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let headers = allowed.headers();
    assert_eq!(headers["access-control-allow-origin"], UI_ORIGIN);
    assert_eq!(headers["access-control-allow-credentials"], "true");
    let allowed_headers = headers["access-control-allow-headers"]
        .to_str()
        .expect("header")
        .to_ascii_lowercase();
    for header in ["authorization", "content-type", "x-namespace"] {
        assert!(allowed_headers.contains(header), "{allowed_headers}");
    }
    let other = preflight("https://evil.example").await.expect("preflight");
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

/// An identity provider: its JWKS served on 127.0.0.1, its signing key.
struct IdentityProvider {
    server: MockServer,
    pkcs8: Vec<u8>,
}

const ISSUER: &str = "https://idp.busflow.test/";
const AUDIENCE: &str = "temporal-ui";

impl IdentityProvider {
    async fn start() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .expect("key")
            .as_ref()
            .to_vec();
        let key = Ed25519KeyPair::from_pkcs8(&pkcs8).expect("key");
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/.well-known/jwks.json"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keys": [{
                "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": "ops-1",
                "x": B64URL.encode(key.public_key().as_ref()),
            }]})))
            .mount(&server)
            .await;
        Self { server, pkcs8 }
    }

    fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.server.uri())
    }

    /// A token of this provider, `expires_in` seconds from now (negative:
    /// expired), for `audience`.
    fn token(&self, audience: &str, expires_in: i64) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some("ops-1".to_owned());
        let claims = json!({
            "sub": "ops@busflow.test",
            "iss": ISSUER,
            "aud": audience,
            "exp": chrono::Utc::now().timestamp() + expires_in,
        });
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_ed_der(&self.pkcs8),
        )
        .expect("token")
    }
}

#[tokio::test]
async fn ops_signed_in_with_the_identity_provider_decode_and_an_expired_or_foreign_token_does_not()
{
    let idp = IdentityProvider::start().await;
    let app = TestApp::spawn_with(TestOptions {
        codec: CodecSettings {
            credential: OpsCredential {
                jwt: Some(Arc::new(JwtIssuer::new(
                    idp.jwks_url(),
                    Some(ISSUER.to_owned()),
                    Some(AUDIENCE.to_owned()),
                ))),
                ..Default::default()
            },
            namespace: Some("default".to_owned()),
            ui_origins: vec![],
        },
        ..Default::default()
    })
    .await;
    let (workflow_id, reference) = notified(&app).await;
    let payloads = history_payloads(&app, &workflow_id).await;

    let (status, decoded) = codec_call(
        &app,
        "decode",
        Some(&idp.token(AUDIENCE, 300)),
        Some("default"),
        &payloads,
    )
    .await;
    assert_eq!(status, 200, "{decoded}");
    assert!(decoded.to_string().len() > 10);
    let opened = decoded["payloads"].as_array().expect("payloads");
    assert!(opened.iter().any(|p| data(p).contains(&reference)));

    let stranger = IdentityProvider::start().await;
    for (what, token) in [
        ("expired", idp.token(AUDIENCE, -120)),
        ("for another audience", idp.token("another-app", 300)),
        ("signed by another key", stranger.token(AUDIENCE, 300)),
        ("not a JWT", "not-a-jwt".to_owned()),
        ("the static token", CODEC_TOKEN.to_owned()),
    ] {
        let (status, body) =
            codec_call(&app, "decode", Some(&token), Some("default"), &payloads).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(!body.to_string().contains(&reference), "{what}");
    }
}
