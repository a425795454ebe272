//! A stand-in for Meta's Graph API on the local stack, so a developer can
//! connect a WhatsApp number with `connectWhatsApp` by curl (README,
//! "Connect a WhatsApp number"). It answers the onboarding calls the way
//! Meta does, including its refusals:
//!
//! - `GET /{v}/oauth/access_token`: the platform app's id and secret, and a
//!   code it has not honoured before (a second use is Meta's 100/36009);
//! - `POST /{v}/{phone}/register`, `POST /{v}/{waba}/subscribed_apps`: with
//!   an override, it checks the callback with Meta's GET challenge first
//!   (a callback that does not answer is Meta's 2200);
//! - `GET /{v}/{waba}/message_templates`: the platform's WhatsApp templates,
//!   approved, in Spanish;
//! - `GET /{v}/{phone}`: the number's profile;
//! - `POST /{v}/{phone}/messages`: accepted with a fresh `wamid`, and
//!   reported delivered a moment later through the number's webhook, signed
//!   with the app secret, as Meta reports it.
//!
//! Development only: `busflow-comms dev` starts it; nothing else does.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// The platform app the stand-in plays Meta for.
#[derive(Debug, Clone)]
pub struct StandInApp {
    pub app_id: String,
    pub app_secret: String,
}

#[derive(Default)]
struct Seen {
    /// Codes already exchanged.
    codes: HashSet<String>,
    /// Business tokens issued.
    tokens: HashSet<String>,
    /// The WABA each token subscribed, and its override callback.
    callbacks: HashMap<String, (String, String)>,
}

struct StandIn {
    app: StandInApp,
    templates: Vec<String>,
    seen: Mutex<Seen>,
    http: reqwest::Client,
}

/// Serves the stand-in on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    app: StandInApp,
    templates: Vec<String>,
) -> anyhow::Result<()> {
    let state = Arc::new(StandIn {
        app,
        templates,
        seen: Mutex::new(Seen::default()),
        http: busflow_activities::http::client(Duration::from_secs(10))?,
    });
    let router = Router::new()
        .route("/{version}/oauth/access_token", get(exchange))
        .route("/{version}/{id}", get(profile))
        .route("/{version}/{id}/register", post(register))
        .route("/{version}/{id}/subscribed_apps", post(subscribe))
        .route("/{version}/{id}/message_templates", get(templates_of))
        .route("/{version}/{id}/messages", post(send))
        .with_state(state);
    axum::serve(listener, router)
        .await
        .map_err(|e| anyhow::anyhow!("the Graph API stand-in stopped: {e}"))
}

fn graph_error(status: StatusCode, code: i64, subcode: Option<i64>, message: &str) -> Response {
    let mut error = json!({"message": message, "type": "OAuthException", "code": code,
                           "fbtrace_id": "DevStandIn"});
    if let Some(subcode) = subcode {
        error["error_subcode"] = json!(subcode);
    }
    (status, Json(json!({"error": error}))).into_response()
}

fn success() -> Response {
    Json(json!({"success": true})).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

impl StandIn {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        bearer(headers).is_some_and(|t| seen.tokens.contains(t))
    }
}

fn unauthorized() -> Response {
    graph_error(
        StatusCode::UNAUTHORIZED,
        190,
        None,
        "Invalid OAuth access token - Cannot parse access token",
    )
}

async fn exchange(
    State(meta): State<Arc<StandIn>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (Some(id), Some(secret), Some(code)) = (
        query.get("client_id"),
        query.get("client_secret"),
        query.get("code"),
    ) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            None,
            "Missing client_id, client_secret or code",
        );
    };
    if *id != meta.app.app_id || *secret != meta.app.app_secret {
        return graph_error(
            StatusCode::BAD_REQUEST,
            1,
            None,
            "Error validating client secret.",
        );
    }
    let mut seen = meta.seen.lock().unwrap_or_else(|p| p.into_inner());
    if !seen.codes.insert(code.clone()) {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            Some(36009),
            "This authorization code has been used.",
        );
    }
    let token = format!("EAADev{}", uuid::Uuid::new_v4().simple());
    seen.tokens.insert(token.clone());
    Json(json!({"access_token": token, "token_type": "bearer"})).into_response()
}

async fn register(
    State(meta): State<Arc<StandIn>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !meta.authorized(&headers) {
        return unauthorized();
    }
    let pin = body["pin"].as_str().unwrap_or_default();
    if pin.len() != 6 || !pin.bytes().all(|b| b.is_ascii_digit()) {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            None,
            "(#100) Invalid parameter: pin",
        );
    }
    success()
}

async fn subscribe(
    State(meta): State<Arc<StandIn>>,
    Path((_, waba)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !meta.authorized(&headers) {
        return unauthorized();
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let (Some(callback), Some(verify_token)) = (
        body["override_callback_uri"].as_str(),
        body["verify_token"].as_str(),
    ) {
        // Meta checks the callback during the call, within about 6 s.
        let challenge = "1158201444";
        let Ok(mut url) = reqwest::Url::parse(callback) else {
            return graph_error(
                StatusCode::BAD_REQUEST,
                100,
                None,
                "(#100) Invalid parameter: override_callback_uri",
            );
        };
        url.query_pairs_mut()
            .append_pair("hub.mode", "subscribe")
            .append_pair("hub.challenge", challenge)
            .append_pair("hub.verify_token", verify_token);
        let answer = meta
            .http
            .get(url)
            .timeout(Duration::from_secs(6))
            .send()
            .await;
        let verified = match answer {
            Ok(response) if response.status().is_success() => {
                response.text().await.ok().as_deref() == Some(challenge)
            }
            _ => false,
        };
        if !verified {
            return graph_error(
                StatusCode::BAD_REQUEST,
                2200,
                None,
                "(#2200) Callback verification failed with the following errors: the callback did not echo hub.challenge",
            );
        }
        let token = bearer(&headers).unwrap_or_default().to_owned();
        let mut seen = meta.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.callbacks.insert(token, (waba, callback.to_owned()));
    }
    success()
}

async fn templates_of(State(meta): State<Arc<StandIn>>, headers: HeaderMap) -> Response {
    if !meta.authorized(&headers) {
        return unauthorized();
    }
    let data: Vec<Value> = meta
        .templates
        .iter()
        .enumerate()
        .map(|(i, name)| {
            json!({"id": format!("{}", 1_000_000 + i), "name": name, "language": "es_MX",
                   "status": "APPROVED", "category": "UTILITY", "parameter_format": "POSITIONAL",
                   "components": [{"type": "BODY", "text": "{{1}}"}]})
        })
        .collect();
    Json(json!({"data": data, "paging": {"cursors": {"before": "MAZDZD", "after": "MjQZD"}}}))
        .into_response()
}

async fn profile(
    State(meta): State<Arc<StandIn>>,
    Path((_, phone)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !meta.authorized(&headers) {
        return unauthorized();
    }
    Json(
        json!({"id": phone, "display_phone_number": "+52 55 5555 0100",
                "verified_name": "Autobuses Demo", "quality_rating": "GREEN"}),
    )
    .into_response()
}

async fn send(
    State(meta): State<Arc<StandIn>>,
    Path((_, phone)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !meta.authorized(&headers) {
        return unauthorized();
    }
    let to = body["to"].as_str().unwrap_or_default().to_owned();
    let wamid = format!("wamid.Dev{}", uuid::Uuid::new_v4().simple());
    let subscribed = {
        let seen = meta.seen.lock().unwrap_or_else(|p| p.into_inner());
        bearer(&headers).and_then(|t| seen.callbacks.get(t).cloned())
    };
    if let Some((waba, callback)) = subscribed {
        let status = json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": waba, "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "525555550100", "phone_number_id": phone},
                "statuses": [{"id": wamid, "status": "delivered",
                              "timestamp": chrono::Utc::now().timestamp().to_string(),
                              "recipient_id": to,
                              "biz_opaque_callback_data": body["biz_opaque_callback_data"]}]
            }}]}]
        })
        .to_string();
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, meta.app.app_secret.as_bytes());
        let signature: String = ring::hmac::sign(&key, status.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let http = meta.http.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let posted = http
                .post(&callback)
                .header("content-type", "application/json")
                .header("x-hub-signature-256", format!("sha256={signature}"))
                .body(status)
                .send()
                .await;
            if let Err(e) = posted {
                tracing::warn!("the Graph API stand-in could not report a delivery: {e}");
            }
        });
    }
    Json(json!({"messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to}],
                "messages": [{"id": wamid}]}))
    .into_response()
}
