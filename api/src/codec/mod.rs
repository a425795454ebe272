//! The codec server: Temporal's remote codec protocol, so the Web UI and
//! `temporal workflow show --codec-endpoint` show ops the payloads the
//! payload codec sealed (`busflow_activities::payload_codec`).
//!
//! `POST /codec/decode` and `POST /codec/encode` take and answer
//! `{"payloads": [{"metadata": {key: base64}, "data": base64}]}` for the
//! namespace in `X-Namespace`. Both sit behind the ops credential
//! ([`credential::OpsCredential`]), with CORS for the UI's origins.

pub mod credential;

use crate::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use busflow_activities::payload_codec::{CodecError, PayloadEncryption};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use temporalio_common::protos::temporal::api::common::v1::Payload;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use credential::OpsCredential;

/// The header naming the namespace whose payloads are asked for.
pub const NAMESPACE_HEADER: &str = "x-namespace";

/// The codec server's settings.
#[derive(Debug, Clone, Default)]
pub struct CodecSettings {
    /// Who may decode. The default admits nobody.
    pub credential: OpsCredential,
    /// The namespace whose payloads this service seals; `None`: any.
    pub namespace: Option<String>,
    /// Origins of the Web UI allowed to call from a browser.
    pub ui_origins: Vec<HeaderValue>,
}

/// The protocol's body: payloads in protobuf JSON (bytes as base64).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CodecBody {
    pub payloads: Vec<JsonPayload>,
}

/// One payload: its metadata values and its data, base64.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JsonPayload {
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub data: String,
}

/// Opens sealed payloads for ops (Temporal's remote codec protocol).
#[utoipa::path(
    post,
    path = "/codec/decode",
    tag = "ops",
    request_body = CodecBody,
    params(
        ("X-Namespace" = String, Header, description = "The namespace of the payloads: the service's (TEMPORAL_NAMESPACE)"),
        ("Authorization" = String, Header, description = "`Bearer <BUSFLOW_CODEC_TOKEN>`, or an identity provider's JWT (BUSFLOW_CODEC_JWKS_URL)"),
    ),
    responses(
        (status = 200, description = "The payloads, in order", body = CodecBody),
        (status = 400, description = "NAMESPACE_REQUIRED, UNKNOWN_NAMESPACE, INVALID_BODY, INVALID_PAYLOAD", body = crate::openapi::ApiErrorBody),
        (status = 401, description = "UNAUTHORIZED: no credential, a wrong one, or none configured; nothing is decoded", body = crate::openapi::ApiErrorBody),
        (status = 422, description = "PAYLOAD_NOT_OPENED: no key of the ring opens a payload", body = crate::openapi::ApiErrorBody),
    )
)]
pub async fn decode(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<CodecBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<CodecBody>, ApiError> {
    let payloads = admit(&app, &headers, body).await?;
    let codec = PayloadEncryption::new(app.keys.clone());
    let opened = codec.decrypt_all(payloads).map_err(refused)?;
    Ok(Json(to_json(opened)))
}

/// Seals payloads (what the Web UI sends, e.g. a signal's input).
#[utoipa::path(
    post,
    path = "/codec/encode",
    tag = "ops",
    request_body = CodecBody,
    params(
        ("X-Namespace" = String, Header, description = "The namespace of the payloads: the service's (TEMPORAL_NAMESPACE)"),
        ("Authorization" = String, Header, description = "`Bearer <BUSFLOW_CODEC_TOKEN>`, or an identity provider's JWT (BUSFLOW_CODEC_JWKS_URL)"),
    ),
    responses(
        (status = 200, description = "The payloads, in order", body = CodecBody),
        (status = 400, description = "NAMESPACE_REQUIRED, UNKNOWN_NAMESPACE, INVALID_BODY, INVALID_PAYLOAD", body = crate::openapi::ApiErrorBody),
        (status = 401, description = "UNAUTHORIZED: no credential, a wrong one, or none configured; nothing is decoded", body = crate::openapi::ApiErrorBody),
        (status = 422, description = "PAYLOAD_NOT_OPENED: no key of the ring opens a payload", body = crate::openapi::ApiErrorBody),
    )
)]
pub async fn encode(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<CodecBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<CodecBody>, ApiError> {
    let payloads = admit(&app, &headers, body).await?;
    let codec = PayloadEncryption::new(app.keys.clone());
    let sealed = codec.encrypt_all(payloads).map_err(refused)?;
    Ok(Json(to_json(sealed)))
}

/// The credential first (nothing about the body is told to a stranger),
/// then the namespace, then the payloads.
async fn admit(
    app: &AppState,
    headers: &HeaderMap,
    body: Result<Json<CodecBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Vec<Payload>, ApiError> {
    let settings = &app.config.codec;
    settings.credential.admit(headers, &app.http).await?;
    let namespace = headers
        .get(NAMESPACE_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(
                "NAMESPACE_REQUIRED",
                "the X-Namespace header names the namespace of the payloads",
            )
        })?;
    if let Some(served) = &settings.namespace
        && served != namespace
    {
        return Err(ApiError::bad_request(
            "UNKNOWN_NAMESPACE",
            format!("this codec serves namespace '{served}', not '{namespace}'"),
        ));
    }
    let Json(body) = body.map_err(|e| match e.status() {
        axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::client(e.status(), "PAYLOAD_TOO_LARGE", format!("codec body: {e}"))
        }
        _ => ApiError::bad_request("INVALID_BODY", format!("codec body: {e}")),
    })?;
    body.payloads
        .into_iter()
        .enumerate()
        .map(|(i, p)| from_json(p).map_err(|field| invalid_payload(i, field)))
        .collect()
}

fn from_json(payload: JsonPayload) -> Result<Payload, String> {
    let metadata = payload
        .metadata
        .into_iter()
        .map(|(key, value)| {
            B64.decode(value)
                .map(|v| (key.clone(), v))
                .map_err(|_| format!("metadata.{key}"))
        })
        .collect::<Result<_, _>>()?;
    let data = B64.decode(payload.data).map_err(|_| "data".to_owned())?;
    Ok(Payload {
        metadata,
        data,
        ..Default::default()
    })
}

fn to_json(payloads: Vec<Payload>) -> CodecBody {
    CodecBody {
        payloads: payloads
            .into_iter()
            .map(|p| JsonPayload {
                metadata: p
                    .metadata
                    .into_iter()
                    .map(|(k, v)| (k, B64.encode(v)))
                    .collect(),
                data: B64.encode(p.data),
            })
            .collect(),
    }
}

fn invalid_payload(index: usize, field: String) -> ApiError {
    ApiError::bad_request(
        "INVALID_PAYLOAD",
        format!("payloads[{index}].{field} is not base64"),
    )
}

fn refused(e: CodecError) -> ApiError {
    ApiError::client(
        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        "PAYLOAD_NOT_OPENED",
        e.to_string(),
    )
}

/// CORS for the Web UI: its origins, POST, and the headers it sends
/// (with credentials, for a UI that passes its user's access token).
pub fn cors(settings: &CodecSettings) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(settings.ui_origins.clone()))
        .allow_methods([Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static(NAMESPACE_HEADER),
        ])
        .allow_credentials(true)
        .max_age(Duration::from_secs(600))
}
