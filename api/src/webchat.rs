//! The webchat widget's two calls, per tenant:
//!
//! - `POST /webchat/{tenant_id}/sessions` gives an anonymous visitor an id and
//!   a token: `{visitor}.{hex HMAC-SHA256(widget_secret, "{tenant}/{visitor}")}`,
//!   signed with the tenant's webchat account's widget secret (sealed at rest).
//! - `POST /webchat/{tenant_id}/messages` (`Authorization: Bearer <token>`)
//!   records the visitor's message on the inbound path: contact (by visitor id),
//!   conversation, INBOUND message. The widget's `client_message_id` makes a
//!   re-sent message a no-op.
//!
//! The token is checked (constant time, via `ring::hmac::verify`) before the
//! body is read; a token of another tenant never verifies.

use crate::AppState;
use crate::error::{ApiError, parse_json};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use busflow_activities::model::{Channel, TenantId};
use busflow_activities::secrets;
use busflow_activities::store::channel_accounts::{self, ChannelAccount};
use busflow_activities::store::inbox::{self, InboundMessage, InboundOutcome, SenderKey};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use uuid::Uuid;

#[derive(Debug, Deserialize)]
struct SessionRequest {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct VisitorMessage {
    client_message_id: String,
    text: String,
    #[serde(default)]
    name: Option<String>,
}

/// A new anonymous visitor: id and token.
pub async fn start_session(
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (tenant_id, account) = widget_account(&app, &tenant).await?;
    let request: SessionRequest = if body.is_empty() {
        SessionRequest { name: None }
    } else {
        parse_json(&body)?
    };
    let secret = widget_secret(&app, &account)?;
    let visitor = Uuid::new_v4().simple().to_string();
    let token = format!("{visitor}.{}", signature_hex(&secret, tenant_id, &visitor));
    Ok(Json(
        json!({"visitor_id": visitor, "token": token, "name": request.name}),
    ))
}

/// A message from a visitor.
pub async fn receive_message(
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (tenant_id, account) = widget_account(&app, &tenant).await?;
    let secret = widget_secret(&app, &account)?;
    let visitor = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| verified_visitor(&secret, tenant_id, token))
        .ok_or_else(|| ApiError::unauthorized("missing or invalid visitor token"))?;
    let message: VisitorMessage = parse_json(&body)?;
    let text = message.text.trim();
    if text.is_empty() || text.chars().count() > 4096 {
        return Err(ApiError::bad_request(
            "INVALID_INPUT",
            "text must be 1 to 4096 characters",
        ));
    }
    let id = &message.client_message_id;
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::bad_request(
            "INVALID_INPUT",
            "client_message_id must be 1-64 letters, digits, '-' or '_'",
        ));
    }
    let outcome = inbox::record_inbound(
        &app.pool,
        &InboundMessage {
            aliases: Vec::new(),
            tenant_id,
            channel_account_id: account.id,
            channel: Channel::Webchat,
            sender_key: SenderKey::Webchat,
            sender: visitor.clone(),
            sender_name: message.name.clone(),
            external_message_id: format!("{visitor}:{id}"),
            subject: None,
            body: text.to_owned(),
            content: json!({"client_message_id": id}),
            received_at: chrono::Utc::now(),
            conversation_hint: None,
        },
    )
    .await
    .map_err(anyhow::Error::from)?;
    Ok(Json(match outcome {
        InboundOutcome::Recorded {
            message_id,
            conversation_id,
            reopened_from,
            ..
        } => {
            if reopened_from.as_deref() == Some("SNOOZED") {
                app.temporal
                    .stop_snooze(tenant_id, conversation_id, "the visitor wrote")
                    .await;
            }
            json!({"message_id": message_id, "conversation_id": conversation_id, "duplicate": false})
        }
        InboundOutcome::Duplicate { message_id } => {
            json!({"message_id": message_id, "duplicate": true})
        }
    }))
}

/// The tenant's ACTIVE webchat account; 404 (as for an unknown tenant) otherwise.
async fn widget_account(
    app: &AppState,
    tenant: &str,
) -> Result<(TenantId, ChannelAccount), ApiError> {
    let not_found = || ApiError::client(StatusCode::NOT_FOUND, "UNKNOWN_TENANT", "no webchat here");
    let tenant_id = tenant
        .parse::<Uuid>()
        .map(TenantId)
        .map_err(|_| not_found())?;
    let account = channel_accounts::active_for_channel(&app.pool, tenant_id, Channel::Webchat)
        .await
        .map_err(anyhow::Error::from)?
        .ok_or_else(not_found)?;
    Ok((tenant_id, account))
}

fn widget_secret(app: &AppState, account: &ChannelAccount) -> Result<String, ApiError> {
    secrets::open(&app.keys, account)
        .map_err(|e| ApiError::Unexpected(e.into()))?
        .widget_secret
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ApiError::client(
                StatusCode::SERVICE_UNAVAILABLE,
                "WEBCHAT_NOT_CONFIGURED",
                "the webchat account has no widget secret",
            )
        })
}

fn signing_input(tenant_id: TenantId, visitor: &str) -> String {
    format!("{tenant_id}/{visitor}")
}

fn signature_hex(secret: &str, tenant_id: TenantId, visitor: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::sign(&key, signing_input(tenant_id, visitor).as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The visitor id of a token this tenant's widget secret signed.
fn verified_visitor(secret: &str, tenant_id: TenantId, token: &str) -> Option<String> {
    let (visitor, signature) = token.split_once('.')?;
    if visitor.is_empty()
        || visitor.len() > 64
        || !visitor.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return None;
    }
    let signature = crate::webhooks::meta::decode_hex(signature)?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::verify(
        &key,
        signing_input(tenant_id, visitor).as_bytes(),
        &signature,
    )
    .ok()?;
    Some(visitor.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_only_for_its_tenant_and_secret() {
        let tenant = TenantId(Uuid::new_v4());
        let token = format!("abc123.{}", signature_hex("s3cret", tenant, "abc123"));
        assert_eq!(
            verified_visitor("s3cret", tenant, &token).as_deref(),
            Some("abc123")
        );
        assert!(verified_visitor("other", tenant, &token).is_none());
        assert!(verified_visitor("s3cret", TenantId(Uuid::new_v4()), &token).is_none());
        assert!(verified_visitor("s3cret", tenant, "abc124.00").is_none());
        assert!(verified_visitor("s3cret", tenant, "no-dot").is_none());
    }
}
