//! The webchat widget's API, per tenant. Every call but the first carries the
//! visitor's token (`Authorization: Bearer`, [`token`]), checked before the
//! body is read; a token of another tenant never verifies.
//!
//! - `POST /webchat/{tenant}/sessions`: a new anonymous visitor, id and token
//!   (rate-limited per tenant and per client address).
//! - `POST /webchat/{tenant}/sessions/renew`: a new token for the visitor of
//!   a valid or lately expired one.
//! - `POST /webchat/{tenant}/messages`: the visitor writes, on the inbound
//!   path (contact by visitor id, conversation, INBOUND message); the
//!   widget's `client_message_id` makes a re-sent message a no-op.
//! - `GET /webchat/{tenant}/messages?after=&wait=`: the visitor's thread after
//!   the cursor, long-polling up to 25 s ([`hub`]). Fetching an outbound
//!   message is its delivery receipt: DELIVERED, and its workflow told.
//! - `POST /webchat/{tenant}/read`: the widget showed these: READ.
//! - `GET /webchat/{tenant}/widget.js` and `/demo`: the widget ([`assets`]).

pub mod assets;
pub mod hub;
pub mod token;

use crate::AppState;
use crate::error::{ApiError, parse_json};
use axum::body::Bytes;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::{Extension, Json};
use busflow_activities::model::{Channel, MessageId, MessageStatus, TenantId};
use busflow_activities::providers::webchat::Webchat;
use busflow_activities::rate_limit::{self, Bucket};
use busflow_activities::secrets;
use busflow_activities::store::channel_accounts::{self, ChannelAccount};
use busflow_activities::store::inbox::{self, InboundMessage, InboundOutcome, SenderKey};
use busflow_activities::store::messages::DeliveryCallback;
use busflow_activities::store::webchat::{self as store, VisitorMessage};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use token::TokenError;
use uuid::Uuid;

/// The longest a fetch holds before it answers with nothing new.
pub const LONGEST_POLL: Duration = Duration::from_secs(25);
/// Messages one fetch returns at most; the widget asks again for the rest.
const PAGE: i64 = 100;
/// Message ids one read acknowledgement may name.
const MOST_READ_AT_ONCE: usize = 100;

/// How the widget's sessions are handed out.
#[derive(Debug, Clone)]
pub struct WebchatSettings {
    /// How long a token admits its visitor.
    pub token_ttl: Duration,
    /// How long after its expiry a token can still be renewed.
    pub renew_within: Duration,
    /// New sessions per second (and burst) for one tenant, all addresses.
    pub sessions_per_tenant: (f64, i32),
    /// New sessions per second (and burst) from one client address.
    pub sessions_per_address: (f64, i32),
    /// The header a trusted proxy in front of us puts the client's address
    /// in (its last entry is the one our proxy added); `None`: the peer.
    pub client_address_header: Option<HeaderName>,
}

impl Default for WebchatSettings {
    fn default() -> Self {
        Self {
            token_ttl: Duration::from_secs(24 * 3600),
            renew_within: Duration::from_secs(30 * 24 * 3600),
            sessions_per_tenant: (5.0, 100),
            sessions_per_address: (1.0 / 30.0, 10),
            client_address_header: None,
        }
    }
}

/// What the widget may say of a new visitor.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct SessionRequest {
    #[serde(default)]
    name: Option<String>,
}

/// A visitor's message.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct VisitorWrites {
    client_message_id: String,
    text: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FetchQuery {
    /// The cursor of the last message seen (absent: from the start).
    #[serde(default)]
    after: Option<String>,
    /// Seconds to wait for news when there is none (25 at most).
    #[serde(default)]
    wait: Option<u64>,
}

/// The messages the widget showed.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct ReadAcknowledgement {
    #[schema(value_type = Vec<uuid::Uuid>)]
    message_ids: Vec<MessageId>,
}

/// A new anonymous visitor: id and token.
#[utoipa::path(
    post,
    path = "/webchat/{tenant_id}/sessions",
    tag = "webchat",
    params(("tenant_id" = uuid::Uuid, Path, description = "The tenant whose widget it is")),
    request_body(content = Option<SessionRequest>, description = "Optional; an empty body is a visitor without a name"),
    responses(
        (status = 200, description = "`visitor`, `token`, `expires_at`", body = Object),
        (status = 400, description = "UNKNOWN_TENANT, INVALID_PAYLOAD", body = crate::openapi::ApiErrorBody),
        (status = 404, description = "WEBCHAT_NOT_CONFIGURED: the tenant has no webchat account", body = crate::openapi::ApiErrorBody),
        (status = 429, description = "RATE_LIMITED: too many new sessions from this address or tenant (Retry-After)", body = crate::openapi::ApiErrorBody),
    )
)]
pub async fn start_session(
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (tenant_id, account) = widget_account(&app, &tenant).await?;
    let request: SessionRequest = if body.is_empty() {
        SessionRequest { name: None }
    } else {
        parse_json(&body)?
    };
    let secret = widget_secret(&app, &account)?;
    let settings = &app.config.webchat;
    let address = client_address(settings, &headers, peer.map(|Extension(ConnectInfo(a))| a));
    admit_new_session(&app, tenant_id, address).await?;
    let visitor = Uuid::new_v4().simple().to_string();
    Ok(Json(session(
        &app,
        &secret,
        tenant_id,
        &visitor,
        request.name,
    )))
}

/// A fresh token for the visitor of a valid or lately expired one.
#[utoipa::path(
    post,
    path = "/webchat/{tenant_id}/sessions/renew",
    tag = "webchat",
    params(("tenant_id" = uuid::Uuid, Path, description = "The tenant whose widget it is"), ("Authorization" = String, Header, description = "`Bearer <visitor token>`")),
    responses(
        (status = 200, description = "`visitor`, `token`, `expires_at`: the same visitor", body = Object),
        (status = 401, description = "INVALID_TOKEN, TOKEN_EXPIRED (more than 30 days ago: start a new session)", body = crate::openapi::ApiErrorBody),
        (status = 404, description = "WEBCHAT_NOT_CONFIGURED", body = crate::openapi::ApiErrorBody),
    )
)]
pub async fn renew_session(
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let (tenant_id, account) = widget_account(&app, &tenant).await?;
    let secret = widget_secret(&app, &account)?;
    let presented = bearer(&headers).ok_or_else(invalid_token)?;
    let visitor = match token::verify(&secret, tenant_id, presented, Utc::now()) {
        Ok(token) => token.visitor,
        Err(TokenError::Expired(token))
            if Utc::now() - token.expires_at
                <= chrono::Duration::from_std(app.config.webchat.renew_within)
                    .unwrap_or(chrono::Duration::MAX) =>
        {
            token.visitor
        }
        Err(TokenError::Expired(_)) => {
            return Err(ApiError::client(
                StatusCode::UNAUTHORIZED,
                "TOKEN_EXPIRED",
                "the visitor token expired too long ago to renew; start a new session",
            ));
        }
        Err(TokenError::Invalid) => return Err(invalid_token()),
    };
    Ok(Json(session(&app, &secret, tenant_id, &visitor, None)))
}

/// A message from a visitor.
#[utoipa::path(
    post,
    path = "/webchat/{tenant_id}/messages",
    tag = "webchat",
    params(("tenant_id" = uuid::Uuid, Path, description = "The tenant whose widget it is"), ("Authorization" = String, Header, description = "`Bearer <visitor token>`")),
    request_body = VisitorWrites,
    responses(
        (status = 200, description = "Stored once per `client_message_id`: `message_id`, `conversation_id`, `duplicate`", body = Object),
        (status = 400, description = "INVALID_PAYLOAD, INVALID_INPUT (empty or too long)", body = crate::openapi::ApiErrorBody),
        (status = 401, description = "INVALID_TOKEN, TOKEN_EXPIRED (renew)", body = crate::openapi::ApiErrorBody),
        (status = 404, description = "WEBCHAT_NOT_CONFIGURED", body = crate::openapi::ApiErrorBody),
    )
)]
pub async fn receive_message(
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (tenant_id, account, visitor) = admitted_visitor(&app, &tenant, &headers).await?;
    let message: VisitorWrites = parse_json(&body)?;
    let text = message.text.trim();
    if text.is_empty() || text.chars().count() > 4096 {
        return Err(ApiError::bad_request(
            "INVALID_INPUT",
            "text must be 1 to 4096 characters",
        ));
    }
    let id = &message.client_message_id;
    crate::error::check_client_message_id(id)?;
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
            received_at: Utc::now(),
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

/// The visitor's thread after the cursor: at once when there is something,
/// else when something arrives, within `wait` seconds (25 at most).
#[utoipa::path(
    get,
    path = "/webchat/{tenant_id}/messages",
    tag = "webchat",
    params(("tenant_id" = uuid::Uuid, Path, description = "The tenant whose widget it is"), ("Authorization" = String, Header, description = "`Bearer <visitor token>`"), FetchQuery),
    responses(
        (status = 200, description = "`messages` (theirs and ours, oldest first) and the next `cursor`; fetching an outbound message is its DELIVERED receipt", body = Object),
        (status = 400, description = "INVALID_CURSOR", body = crate::openapi::ApiErrorBody),
        (status = 401, description = "INVALID_TOKEN, TOKEN_EXPIRED (renew)", body = crate::openapi::ApiErrorBody),
        (status = 404, description = "WEBCHAT_NOT_CONFIGURED", body = crate::openapi::ApiErrorBody),
    )
)]
pub async fn fetch_messages(
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    Query(query): Query<FetchQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let (tenant_id, _account, visitor) = admitted_visitor(&app, &tenant, &headers).await?;
    let cursor = match query.after.as_deref().filter(|c| !c.is_empty()) {
        None => 0,
        Some(cursor) => cursor
            .parse::<i64>()
            .ok()
            .filter(|c| *c >= 0)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "INVALID_CURSOR",
                    "after must be a cursor this endpoint returned",
                )
            })?,
    };
    let wait = query
        .wait
        .map_or(LONGEST_POLL, Duration::from_secs)
        .min(LONGEST_POLL);
    let deadline = tokio::time::Instant::now() + wait;
    let news = app.webchat.watch(&app.pool, tenant_id, &visitor);
    let mut messages = loop {
        let notified = news.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let messages = store::after(&app.pool, tenant_id, &visitor, cursor, PAGE).await?;
        if !messages.is_empty() {
            break messages;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            break Vec::new();
        }
    };
    acknowledge(&app, tenant_id, &mut messages, MessageStatus::Delivered).await?;
    let cursor = messages.last().map_or(cursor, |m| m.seq);
    Ok(Json(json!({
        "messages": messages.iter().map(shown).collect::<Vec<_>>(),
        "cursor": cursor.to_string(),
    })))
}

/// The widget showed these messages to the visitor.
#[utoipa::path(
    post,
    path = "/webchat/{tenant_id}/read",
    tag = "webchat",
    params(("tenant_id" = uuid::Uuid, Path, description = "The tenant whose widget it is"), ("Authorization" = String, Header, description = "`Bearer <visitor token>`")),
    request_body = ReadAcknowledgement,
    responses(
        (status = 200, description = "`read`: the messages now READ", body = Object),
        (status = 400, description = "INVALID_PAYLOAD", body = crate::openapi::ApiErrorBody),
        (status = 401, description = "INVALID_TOKEN, TOKEN_EXPIRED (renew)", body = crate::openapi::ApiErrorBody),
    )
)]
pub async fn mark_read(
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (tenant_id, _account, visitor) = admitted_visitor(&app, &tenant, &headers).await?;
    let read: ReadAcknowledgement = parse_json(&body)?;
    if read.message_ids.len() > MOST_READ_AT_ONCE {
        return Err(ApiError::bad_request(
            "INVALID_INPUT",
            format!("message_ids may name at most {MOST_READ_AT_ONCE} messages"),
        ));
    }
    let mut messages =
        store::sent_to_visitor(&app.pool, tenant_id, &visitor, &read.message_ids).await?;
    let read = acknowledge(&app, tenant_id, &mut messages, MessageStatus::Read).await?;
    Ok(Json(json!({"read": read})))
}

/// Records the widget's receipt `status` for each outbound message it moves
/// forward, through the path every provider's receipts take (status moved
/// forward, workflow signalled). Returns how many moved.
async fn acknowledge(
    app: &AppState,
    tenant_id: TenantId,
    messages: &mut [VisitorMessage],
    status: MessageStatus,
) -> Result<usize, ApiError> {
    let mut moved = 0;
    for message in messages.iter_mut().filter(|m| {
        m.direction == busflow_activities::model::Direction::Outbound && m.status < status
    }) {
        let callback = DeliveryCallback {
            tenant_id: Some(tenant_id),
            channel: Channel::Webchat,
            external_message_id: message
                .external_message_id
                .clone()
                .unwrap_or_else(|| Webchat::external_id(message.id)),
            status,
            reason: None,
            occurred_at: Utc::now(),
            detail: json!({"reported_by": "widget"}),
            correlation: Some(message.id),
            configuration_set: None,
        };
        let effect = crate::webhooks::delivery::apply(app, &callback).await?;
        if let busflow_activities::store::messages::CallbackEffect::Applied {
            status: after,
            changed,
            ..
        } = effect
        {
            message.status = after;
            moved += usize::from(changed);
        }
    }
    Ok(moved)
}

fn shown(message: &VisitorMessage) -> Value {
    json!({
        "id": message.id,
        "direction": message.direction,
        "body": message.body,
        "subject": message.subject,
        "sent_at": message.sent_at.to_rfc3339(),
        "status": message.status,
        "cursor": message.seq.to_string(),
    })
}

fn session(
    app: &AppState,
    secret: &str,
    tenant_id: TenantId,
    visitor: &str,
    name: Option<String>,
) -> Value {
    let expires_at = Utc::now()
        + chrono::Duration::from_std(app.config.webchat.token_ttl)
            .unwrap_or(chrono::Duration::hours(24));
    let token = token::issue(secret, tenant_id, visitor, expires_at);
    json!({
        "visitor_id": visitor,
        "token": token,
        "expires_at": expires_at.to_rfc3339(),
        "name": name,
    })
}

/// Books one new session against the tenant's and the address's limits.
async fn admit_new_session(
    app: &AppState,
    tenant_id: TenantId,
    address: Option<IpAddr>,
) -> Result<(), ApiError> {
    let settings = &app.config.webchat;
    let mut buckets = vec![Bucket {
        key: "webchat-sessions".to_owned(),
        per_second: settings.sessions_per_tenant.0,
        burst: settings.sessions_per_tenant.1,
        cost: 1,
    }];
    if let Some(address) = address {
        buckets.push(Bucket {
            key: format!("webchat-sessions:{}", address_bucket(address)),
            per_second: settings.sessions_per_address.0,
            burst: settings.sessions_per_address.1,
            cost: 1,
        });
    }
    buckets.sort_by(|a, b| a.key.cmp(&b.key));
    match rate_limit::take(&app.pool, tenant_id, &buckets).await? {
        None => Ok(()),
        Some(wait) => Err(ApiError::client(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            "too many new webchat sessions; try again later",
        )
        .retry_after(wait.as_secs().max(1))),
    }
}

/// IPv6 clients are limited per /64: one host holds a whole /64.
fn address_bucket(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The client's address: from the trusted proxy's header when configured,
/// else the peer of the connection.
fn client_address(
    settings: &WebchatSettings,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Option<IpAddr> {
    match &settings.client_address_header {
        Some(name) => headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .next_back()
            .and_then(|v| v.trim().parse().ok()),
        None => peer.map(|p| p.ip()),
    }
}

/// The tenant's webchat account and the visitor its token admits.
async fn admitted_visitor(
    app: &AppState,
    tenant: &str,
    headers: &HeaderMap,
) -> Result<(TenantId, ChannelAccount, String), ApiError> {
    let (tenant_id, account) = widget_account(app, tenant).await?;
    let secret = widget_secret(app, &account)?;
    let presented = bearer(headers).ok_or_else(invalid_token)?;
    match token::verify(&secret, tenant_id, presented, Utc::now()) {
        Ok(token) => Ok((tenant_id, account, token.visitor)),
        Err(TokenError::Expired(_)) => Err(ApiError::client(
            StatusCode::UNAUTHORIZED,
            "TOKEN_EXPIRED",
            "the visitor token expired; renew it at /sessions/renew",
        )),
        Err(TokenError::Invalid) => Err(invalid_token()),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

fn invalid_token() -> ApiError {
    ApiError::client(
        StatusCode::UNAUTHORIZED,
        "INVALID_TOKEN",
        "missing or invalid visitor token",
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behind_a_trusted_proxy_the_client_is_the_address_it_added_last() {
        let settings = WebchatSettings {
            client_address_header: Some(HeaderName::from_static("x-forwarded-for")),
            ..WebchatSettings::default()
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "10.9.9.9, 203.0.113.7".parse().expect("header"),
        );
        let peer = Some(SocketAddr::from(([127, 0, 0, 1], 4000)));
        assert_eq!(
            client_address(&settings, &headers, peer),
            Some(IpAddr::from([203, 0, 113, 7]))
        );
        assert_eq!(
            client_address(&WebchatSettings::default(), &headers, peer),
            Some(IpAddr::from([127, 0, 0, 1])),
            "without a trusted proxy the header is the client's own word"
        );
    }

    #[test]
    fn one_ipv6_host_is_limited_as_its_whole_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("v6");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("v6");
        assert_eq!(address_bucket(a), address_bucket(b));
        let mapped: IpAddr = "::ffff:198.51.100.4".parse().expect("mapped");
        assert_eq!(address_bucket(mapped), "198.51.100.4");
    }
}
