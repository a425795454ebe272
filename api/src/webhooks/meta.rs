//! `GET|POST /webhooks/meta/{tenant_id}`: the WhatsApp Cloud API webhook of
//! one tenant (registered per WABA with Meta's override API).
//!
//! GET answers Meta's verification challenge when `hub.verify_token` matches
//! one of the tenant's WhatsApp accounts. POST verifies
//! `X-Hub-Signature-256` (HMAC-SHA256 of the raw body with the account's app
//! secret, compared in constant time) before parsing, then applies every
//! status in the payload. The tenant comes from the path and bounds every
//! lookup: tenant A's URL can never touch tenant B's messages.

use super::delivery;
use super::meta_signing::Verdict;
use super::whatsapp_inbound::{InboundValue, inbound_messages};
use crate::AppState;
use crate::error::ApiError;
use crate::temporal::TemporalGateway;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use busflow_activities::model::{Channel, MessageId, MessageStatus, TenantId};
use busflow_activities::secrets::{self, ProviderSecrets};
use busflow_activities::store::channel_accounts::{self, ChannelAccount};
use busflow_activities::store::dead_letters::{self, DeadLetter};
use busflow_activities::store::inbox::{self, InboundOutcome};
use busflow_activities::store::messages::{CallbackEffect, DeliveryCallback};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use uuid::Uuid;

pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Meta's subscription check: echo `hub.challenge` when the token matches.
#[utoipa::path(
    get,
    path = "/webhooks/meta/{tenant_id}",
    tag = "providers",
    params(
        ("tenant_id" = uuid::Uuid, Path, description = "The tenant whose WABA subscribed this URL"),
        ("hub.mode" = String, Query, description = "`subscribe`"),
        ("hub.verify_token" = String, Query, description = "The verify token sealed with the tenant's WhatsApp account"),
        ("hub.challenge" = String, Query, description = "Echoed back"),
    ),
    responses(
        (status = 200, description = "The challenge, as text", content_type = "text/plain", body = String),
        (status = 400, description = "INVALID_CHALLENGE, UNKNOWN_TENANT", body = crate::openapi::ApiErrorBody),
        (status = 403, description = "FORBIDDEN: hub.verify_token does not match", body = crate::openapi::ApiErrorBody),
    )
)]
pub async fn verify(
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<String, ApiError> {
    let tenant_id = parse_tenant(&tenant)?;
    let (Some(mode), Some(token), Some(challenge)) = (
        params.get("hub.mode"),
        params.get("hub.verify_token"),
        params.get("hub.challenge"),
    ) else {
        return Err(ApiError::bad_request(
            "INVALID_CHALLENGE",
            "expected hub.mode, hub.verify_token and hub.challenge",
        ));
    };
    if mode != "subscribe" {
        return Err(ApiError::bad_request(
            "INVALID_CHALLENGE",
            format!("hub.mode '{mode}' is not 'subscribe'"),
        ));
    }
    let accounts = tenant_accounts(&app, tenant_id).await?;
    let matches = open_secrets(&app, &accounts)?.iter().any(|s| {
        s.verify_token
            .as_deref()
            .is_some_and(|expected| bool::from(expected.as_bytes().ct_eq(token.as_bytes())))
    });
    if !matches {
        return Err(ApiError::client(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "hub.verify_token does not match",
        ));
    }
    Ok(challenge.clone())
}

/// Statuses (and, later, inbound messages) for one tenant.
#[utoipa::path(
    post,
    path = "/webhooks/meta/{tenant_id}",
    tag = "providers",
    request_body(content = Object, description = "Meta's WhatsApp Business Account webhook: `object`, `entry[].changes[].value` with `statuses` (receipts) and `messages` (inbound)"),
    params(
        ("tenant_id" = uuid::Uuid, Path, description = "The tenant whose WABA subscribed this URL"),
        ("X-Hub-Signature-256" = String, Header, description = "`sha256=<hex HMAC-SHA256 of the raw body with the app secret>`, checked before the body is read"),
    ),
    responses(
        (status = 200, description = "Recorded (receipts and inbound messages, counted), also for what is kept as a dead letter", body = Object),
        (status = 400, description = "INVALID_PAYLOAD, UNKNOWN_TENANT", body = crate::openapi::ApiErrorBody),
        (status = 401, description = "UNAUTHORIZED: the signature is missing or does not match", body = crate::openapi::ApiErrorBody),
    )
)]
pub async fn receive(
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let tenant_id = parse_tenant(&tenant)?;
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(decode_hex)
        .ok_or_else(|| {
            ApiError::unauthorized(format!("missing or malformed {SIGNATURE_HEADER}"))
        })?;
    match app
        .meta_signing
        .verify(&app.pool, &app.keys, tenant_id, &body, &signature)
        .await?
    {
        Verdict::Signed => {}
        Verdict::NoWebhook => return Err(no_such_webhook()),
        Verdict::NotSigned => {
            return Err(ApiError::unauthorized(format!(
                "{SIGNATURE_HEADER} does not match the body"
            )));
        }
    }

    let payload: WebhookPayload = crate::error::parse_json(&body)?;
    let mut applied = 0usize;
    let mut pending = 0usize;
    for status in payload.statuses() {
        let Some(callback) = status.to_callback(tenant_id) else {
            continue;
        };
        match delivery::apply(&app, &callback).await? {
            CallbackEffect::Applied { .. } => applied += 1,
            CallbackEffect::Pending => pending += 1,
        }
    }
    let mut received = Recorded::default();
    let values: Vec<&ChangeValue> = payload
        .entry
        .iter()
        .flat_map(|e| e.changes.iter())
        .map(|c| &c.value)
        .filter(|v| !v.inbound.messages.is_empty())
        .collect();
    // Receipts need no account (the path names the tenant); inbound
    // messages are matched to the account they were written to.
    let accounts = match values.is_empty() {
        true => Vec::new(),
        false => tenant_accounts(&app, tenant_id).await?,
    };
    for value in values {
        received.add(
            record_inbound(
                &app.pool,
                &app.temporal,
                tenant_id,
                &accounts,
                &value.inbound,
            )
            .await?,
        );
    }
    Ok(Json(json!({
        "applied": applied, "pending": pending,
        "received": received.messages, "dead_letters": received.dead_letters,
    })))
}

/// How many inbound messages a change brought, and how many of them had to
/// be kept as dead letters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub messages: usize,
    pub dead_letters: usize,
}

impl Recorded {
    fn add(&mut self, other: Recorded) {
        self.messages += other.messages;
        self.dead_letters += other.dead_letters;
    }
}

/// Records one change's messages in the inbox, and keeps the ones nobody
/// can be found for as dead letters.
pub async fn record_inbound(
    pool: &PgPool,
    temporal: &TemporalGateway,
    tenant_id: TenantId,
    accounts: &[ChannelAccount],
    value: &InboundValue,
) -> Result<Recorded, ApiError> {
    let inbound = inbound_messages(tenant_id, accounts, value);
    let mut recorded = Recorded::default();
    for message in &inbound.messages {
        let outcome = inbox::record_inbound(pool, message).await?;
        if let InboundOutcome::Recorded {
            conversation_id,
            reopened_from,
            ..
        } = outcome
        {
            recorded.messages += 1;
            if reopened_from.as_deref() == Some("SNOOZED") {
                temporal
                    .stop_snooze(tenant_id, conversation_id, "the contact wrote")
                    .await;
            }
        }
    }
    for letter in &inbound.dead_letters {
        dead_letters::keep(pool, letter).await?;
        recorded.dead_letters += 1;
    }
    Ok(recorded)
}

/// Tries a kept WhatsApp message again with the tenant's accounts as they
/// are now. `Ok(None)` when it still names nobody.
pub async fn replay(
    pool: &PgPool,
    temporal: &TemporalGateway,
    letter: &DeadLetter,
) -> anyhow::Result<Option<Recorded>> {
    let Some(tenant_id) = letter.tenant_id else {
        return Ok(None);
    };
    let value: InboundValue = serde_json::from_value(letter.payload.0.clone()).map_err(|e| {
        anyhow::anyhow!(
            "dead letter {}: not a WhatsApp change value: {e}",
            letter.id
        )
    })?;
    let accounts = channel_accounts::for_channel(pool, tenant_id, Channel::WhatsApp).await?;
    if !inbound_messages(tenant_id, &accounts, &value)
        .dead_letters
        .is_empty()
    {
        return Ok(None);
    }
    record_inbound(pool, temporal, tenant_id, &accounts, &value)
        .await
        .map(Some)
        .map_err(|e| anyhow::anyhow!("dead letter {}: {e}", letter.id))
}

fn parse_tenant(raw: &str) -> Result<TenantId, ApiError> {
    raw.parse::<Uuid>()
        .map(TenantId)
        .map_err(|_| no_such_webhook())
}

/// The tenant's WhatsApp accounts. A tenant without one has no webhook: 404,
/// the same answer as for an unknown tenant.
async fn tenant_accounts(
    app: &AppState,
    tenant_id: TenantId,
) -> Result<Vec<ChannelAccount>, ApiError> {
    let accounts = channel_accounts::for_channel(&app.pool, tenant_id, Channel::WhatsApp)
        .await
        .map_err(anyhow::Error::from)?;
    if accounts.is_empty() {
        return Err(no_such_webhook());
    }
    Ok(accounts)
}

fn no_such_webhook() -> ApiError {
    ApiError::client(StatusCode::NOT_FOUND, "UNKNOWN_TENANT", "no such webhook")
}

/// The opened secrets of those accounts.
fn open_secrets(
    app: &AppState,
    accounts: &[ChannelAccount],
) -> Result<Vec<ProviderSecrets>, ApiError> {
    accounts
        .iter()
        .map(|account| secrets::open(&app.keys, account))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::Unexpected(e.into()))
}

pub(crate) fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Meta leaves out what is empty; a `null` reads as empty too, so a lenient
/// sender's payload is never refused (and retried for days) over it.
pub(crate) fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Deserialize)]
struct WebhookPayload {
    #[serde(default, deserialize_with = "null_as_empty")]
    entry: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(default, deserialize_with = "null_as_empty")]
    changes: Vec<Change>,
}

#[derive(Debug, Deserialize)]
struct Change {
    #[serde(default)]
    value: ChangeValue,
}

#[derive(Debug, Default, Deserialize)]
struct ChangeValue {
    #[serde(default, deserialize_with = "null_as_empty")]
    statuses: Vec<StatusUpdate>,
    #[serde(flatten)]
    inbound: InboundValue,
}

#[derive(Debug, Deserialize)]
struct StatusUpdate {
    id: String,
    status: String,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    errors: Vec<MetaError>,
    /// Our message id, as the send set it.
    #[serde(default)]
    biz_opaque_callback_data: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MetaError {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl WebhookPayload {
    fn statuses(&self) -> impl Iterator<Item = &StatusUpdate> {
        self.entry
            .iter()
            .flat_map(|e| e.changes.iter())
            .flat_map(|c| c.value.statuses.iter())
    }
}

impl StatusUpdate {
    /// `None` for statuses we do not track (e.g. `deleted`, `warning`).
    fn to_callback(&self, tenant_id: TenantId) -> Option<DeliveryCallback> {
        let status = match self.status.as_str() {
            "sent" => MessageStatus::Sent,
            "delivered" => MessageStatus::Delivered,
            "read" => MessageStatus::Read,
            "failed" => MessageStatus::Failed,
            _ => return None,
        };
        let occurred_at = self
            .timestamp
            .as_deref()
            .and_then(|t| t.parse::<i64>().ok())
            .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
            .unwrap_or_else(chrono::Utc::now);
        let reason = self.errors.first().map(|e| {
            format!(
                "WhatsApp {}: {}",
                e.code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "error".into()),
                e.message
                    .as_deref()
                    .or(e.title.as_deref())
                    .unwrap_or("no details")
            )
        });
        Some(DeliveryCallback {
            tenant_id: Some(tenant_id),
            channel: Channel::WhatsApp,
            external_message_id: self.id.clone(),
            status,
            reason,
            occurred_at,
            detail: json!({"status": self.status, "error_codes": self.errors.iter().filter_map(|e| e.code).collect::<Vec<_>>()}),
            correlation: self
                .biz_opaque_callback_data
                .as_deref()
                .and_then(|ours| ours.parse::<Uuid>().ok())
                .map(MessageId),
            configuration_set: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_signatures_decode_and_junk_does_not() {
        assert_eq!(decode_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(decode_hex("0"), None);
        assert_eq!(decode_hex("zz"), None);
    }

    #[test]
    fn failed_statuses_carry_the_error_code_and_message() {
        let update: StatusUpdate = serde_json::from_value(json!({
            "id": "wamid.1", "status": "failed", "timestamp": "1764237600",
            "errors": [{"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable"}]
        }))
        .expect("status");
        let callback = update.to_callback(TenantId(Uuid::nil())).expect("tracked");
        assert_eq!(callback.status, MessageStatus::Failed);
        assert_eq!(
            callback.reason.as_deref(),
            Some("WhatsApp 131026: Message undeliverable")
        );
        assert_eq!(callback.occurred_at.timestamp(), 1_764_237_600);
    }
}
