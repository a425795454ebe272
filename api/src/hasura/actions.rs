//! `POST /hasura/actions`: Hasura Actions, dispatched on `action.name`. The
//! acting user, role and tenant come only from `session_variables`; errors use
//! Hasura's action error shape (4xx, `{message, extensions: {code}}`).

use super::provisioning;
use crate::AppState;
use crate::auth::require_shared_secret;
use crate::error::{ApiError, parse_json};
use crate::retry::{self, RetryError};
use crate::temporal::NotificationLabels;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use busflow_activities::model::Channel;
use busflow_activities::model::{MessageId, TenantId};
use busflow_activities::notification::DirectMessage;
use busflow_activities::providers::WhatsAppTemplate;
use busflow_activities::store::conversations::{self, ConversationError};
use busflow_activities::triggers::AGENT_REPLY;
use busflow_workflows::NotificationRequest;
use busflow_workflows::names::agent_reply_workflow_id;
use busflow_workflows::notification::ConversationReply;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// Every action this endpoint serves (checked against the Hasura metadata).
pub const ACTIONS: &[&str] = &[
    "retryMessage",
    "claimConversation",
    "reassignConversation",
    "resolveConversation",
    "markConversationRead",
    "snoozeConversation",
    "unsnoozeConversation",
    "sendAgentMessage",
    "sendAgentTemplate",
    "connectWhatsApp",
    "connectPlatformSms",
    "connectEmailDomain",
    "disconnectChannelAccount",
    "reverifyChannelAccount",
    "rotateChannelAccountCredentials",
];

/// Roles that work the inbox.
const AGENTS: &[&str] = &["dispatcher", "admin"];

/// A Hasura action call.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct ActionPayload {
    action: ActionName,
    /// The action's arguments: the input of the action named.
    #[serde(default)]
    #[schema(value_type = ActionInput)]
    input: Value,
    /// Who acts: `x-hasura-role`, `x-hasura-user-id`, `x-hasura-tenant-id`
    /// (the only source of the acting tenant and user).
    #[serde(default)]
    session_variables: HashMap<String, String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct ActionName {
    /// One of [`ACTIONS`].
    #[schema(example = "claimConversation")]
    name: String,
}

/// Each action's input, as Hasura sends it (only described: the handler
/// reads the input of the action named).
#[derive(utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(super) enum ActionInput {
    /// `claimConversation`, `resolveConversation`, `unsnoozeConversation`.
    Conversation(ConversationInput),
    /// `reassignConversation` (admin).
    Reassign(ReassignInput),
    /// `snoozeConversation`.
    Snooze(SnoozeInput),
    /// `markConversationRead`.
    MarkRead(MarkReadInput),
    /// `sendAgentMessage`.
    SendAgentMessage(SendAgentMessageInput),
    /// `sendAgentTemplate`.
    SendAgentTemplate(SendAgentTemplateInput),
    /// `retryMessage`.
    RetryMessage(RetryMessageInput),
    /// `connectWhatsApp`.
    ConnectWhatsApp(provisioning::ConnectWhatsAppInput),
    /// `connectEmailDomain`.
    ConnectEmailDomain(provisioning::EmailDomainInput),
    /// `connectPlatformSms`.
    ConnectPlatformSms(provisioning::PlatformSmsInput),
    /// `disconnectChannelAccount`, `reverifyChannelAccount`.
    Account(provisioning::AccountInput),
    /// `rotateChannelAccountCredentials`.
    Rotate(provisioning::RotateInput),
}

/// Who is acting, from Hasura's session variables.
#[derive(Debug, Clone)]
pub struct Session {
    pub tenant_id: TenantId,
    pub role: String,
    pub user_id: Option<String>,
}

impl Session {
    fn from_variables(vars: &HashMap<String, String>) -> Result<Self, ApiError> {
        let get = |key: &str| {
            vars.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.clone())
        };
        let tenant = get("x-hasura-tenant-id")
            .ok_or_else(|| forbidden("the session has no x-hasura-tenant-id"))?;
        let tenant_id = tenant
            .parse::<Uuid>()
            .map(TenantId)
            .map_err(|_| forbidden("x-hasura-tenant-id is not a tenant id"))?;
        let role =
            get("x-hasura-role").ok_or_else(|| forbidden("the session has no x-hasura-role"))?;
        Ok(Self {
            tenant_id,
            role,
            user_id: get("x-hasura-user-id"),
        })
    }

    /// The acting agent (`x-hasura-user-id`).
    fn agent(&self) -> Result<&str, ApiError> {
        self.user_id
            .as_deref()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| forbidden("the session has no x-hasura-user-id"))
    }

    pub(super) fn require_role(&self, allowed: &[&str]) -> Result<(), ApiError> {
        if allowed.contains(&self.role.as_str()) {
            Ok(())
        } else {
            Err(forbidden(&format!(
                "role '{}' may not do this (allowed: {})",
                self.role,
                allowed.join(", ")
            )))
        }
    }
}

fn forbidden(message: &str) -> ApiError {
    ApiError::client(StatusCode::FORBIDDEN, "FORBIDDEN", message)
}

pub(super) fn input<T: DeserializeOwned>(action: &str, value: Value) -> Result<T, ApiError> {
    serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request("INVALID_INPUT", format!("{action}: input: {e}")))
}

#[utoipa::path(
    post,
    path = "/hasura/actions",
    tag = "hasura",
    request_body = ActionPayload,
    params(("x-busflow-secret" = String, Header, description = "The shared secret (BUSFLOW_WEBHOOK_SECRET)")),
    responses(
        (status = 200, description = "The action's output type (hasura/metadata/actions.graphql): a conversation's state (claim, reassign, resolve, snooze, unsnooze), `{conversation_id, last_read_at}` (markConversationRead), `{workflow_id, message_id, outcome}` (sendAgentMessage, sendAgentTemplate), `{workflow_id, result}` (retryMessage), a `ChannelAccountState` (connect…, disconnect, reverify, rotate)", body = Object),
        (status = 400, description = "INVALID_PAYLOAD, UNKNOWN_ACTION, INVALID_INPUT (names the field), NOT_WHATSAPP, NOT_RETRYABLE, MESSAGE_NOT_FAILED, NOT_VERIFIABLE, NOTHING_TO_ROTATE, NO_PLATFORM_SENDER: nothing written", body = crate::openapi::ApiErrorBody),
        (status = 401, description = "UNAUTHORIZED: the shared secret is missing or wrong", body = crate::openapi::ApiErrorBody),
        (status = 403, description = "FORBIDDEN: no tenant, user or role in the session, or a role the action does not allow", body = crate::openapi::ApiErrorBody),
        (status = 404, description = "CONVERSATION_NOT_FOUND, MESSAGE_NOT_FOUND, CHANNEL_ACCOUNT_NOT_FOUND (in the session's tenant)", body = crate::openapi::ApiErrorBody),
        (status = 409, description = "ALREADY_CLAIMED, CONVERSATION_RESOLVED, WINDOW_CLOSED, STILL_RUNNING, ALREADY_DELIVERED, SIGNUP_CODE_ALREADY_USED, PHONE_NUMBER_HELD_BY_ANOTHER_TENANT, WABA_HELD_BY_ANOTHER_TENANT, CONNECTION_IN_PROGRESS, DOMAIN_HELD_BY_ANOTHER_TENANT, VERIFICATION_IN_PROGRESS, OWN_SMS_NUMBER, CHANNEL_ACCOUNT_STATUS", body = crate::openapi::ApiErrorBody),
        (status = 503, description = "TEMPORAL_UNAVAILABLE: retry (Retry-After)", body = crate::openapi::ApiErrorBody),
    )
)]
pub async fn receive(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    require_shared_secret(&headers, &app.config.webhook_secret)?;
    let payload: ActionPayload = parse_json(&body)?;
    let session = Session::from_variables(&payload.session_variables)?;
    match payload.action.name.as_str() {
        "retryMessage" => retry_message(&app, &session, payload.input).await,
        "claimConversation" => {
            session.require_role(AGENTS)?;
            let input: ConversationInput = input("claimConversation", payload.input)?;
            let agent = session.agent()?;
            let state =
                conversations::claim(&app.pool, session.tenant_id, input.conversation_id, agent)
                    .await
                    .map_err(conversation_error)?;
            Ok(Json(json!(state)))
        }
        "reassignConversation" => {
            session.require_role(&["admin"])?;
            let input: ReassignInput = input("reassignConversation", payload.input)?;
            let state = conversations::reassign(
                &app.pool,
                session.tenant_id,
                input.conversation_id,
                input.assignee_id.as_deref(),
            )
            .await
            .map_err(conversation_error)?;
            Ok(Json(json!(state)))
        }
        "resolveConversation" => {
            session.require_role(AGENTS)?;
            let input: ConversationInput = input("resolveConversation", payload.input)?;
            let state = conversations::resolve(&app.pool, session.tenant_id, input.conversation_id)
                .await
                .map_err(conversation_error)?;
            app.temporal
                .stop_snooze(session.tenant_id, input.conversation_id, "resolved")
                .await;
            Ok(Json(json!(state)))
        }
        "snoozeConversation" => {
            session.require_role(AGENTS)?;
            let input: SnoozeInput = input("snoozeConversation", payload.input)?;
            // The timer and the row must agree to the millisecond (the wake-up
            // compares them), so the time is kept at millisecond precision.
            let until = chrono::DateTime::from_timestamp_millis(input.until.timestamp_millis())
                .unwrap_or(input.until);
            if until <= chrono::Utc::now() {
                return Err(ApiError::bad_request(
                    "INVALID_INPUT",
                    "snoozeConversation: until must be in the future",
                ));
            }
            let state =
                conversations::snooze(&app.pool, session.tenant_id, input.conversation_id, until)
                    .await
                    .map_err(conversation_error)?;
            // If Temporal is down the row still says SNOOZED; the
            // conversation_snooze_wakeup cron starts the missing timer.
            app.temporal
                .snooze(session.tenant_id, input.conversation_id, until)
                .await
                .map_err(|e| e.into_api_error("snooze timer not started"))?;
            Ok(Json(json!(state)))
        }
        "sendAgentMessage" => send_agent_message(&app, &session, payload.input).await,
        "sendAgentTemplate" => send_agent_template(&app, &session, payload.input).await,
        "connectWhatsApp" => provisioning::connect_whatsapp(&app, &session, payload.input).await,
        "connectEmailDomain" => {
            provisioning::connect_email_domain(&app, &session, payload.input).await
        }
        "connectPlatformSms" => {
            provisioning::connect_platform_sms(&app, &session, payload.input).await
        }
        "disconnectChannelAccount" => provisioning::disconnect(&app, &session, payload.input).await,
        "reverifyChannelAccount" => provisioning::reverify(&app, &session, payload.input).await,
        "rotateChannelAccountCredentials" => {
            provisioning::rotate(&app, &session, payload.input).await
        }
        "unsnoozeConversation" => {
            session.require_role(AGENTS)?;
            let input: ConversationInput = input("unsnoozeConversation", payload.input)?;
            let state =
                conversations::unsnooze(&app.pool, session.tenant_id, input.conversation_id)
                    .await
                    .map_err(conversation_error)?;
            app.temporal
                .stop_snooze(session.tenant_id, input.conversation_id, "unsnoozed")
                .await;
            Ok(Json(json!(state)))
        }
        "markConversationRead" => {
            session.require_role(AGENTS)?;
            let input: MarkReadInput = input("markConversationRead", payload.input)?;
            let agent = session.agent()?;
            let last_read_at = conversations::mark_read(
                &app.pool,
                session.tenant_id,
                input.conversation_id,
                agent,
                input.read_at,
            )
            .await
            .map_err(conversation_error)?;
            Ok(Json(
                json!({"conversation_id": input.conversation_id, "last_read_at": last_read_at}),
            ))
        }
        other => Err(ApiError::bad_request(
            "UNKNOWN_ACTION",
            format!(
                "unknown action '{other}'; this service serves: {}",
                ACTIONS.join(", ")
            ),
        )),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct ConversationInput {
    conversation_id: Uuid,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct SendAgentMessageInput {
    conversation_id: Uuid,
    body: String,
    /// Chosen by the agent's client; a retried call with the same id sends nothing new.
    client_message_id: String,
}

/// WhatsApp lets a business write free-form text only this long after the
/// contact's last message; outside it, only approved templates.
const CUSTOMER_SERVICE_WINDOW: chrono::Duration = chrono::Duration::hours(24);

async fn send_agent_message(
    app: &AppState,
    session: &Session,
    raw: Value,
) -> Result<Json<Value>, ApiError> {
    session.require_role(AGENTS)?;
    let input: SendAgentMessageInput = input("sendAgentMessage", raw)?;
    let body = input.body.trim();
    if body.is_empty() || body.chars().count() > 4096 {
        return Err(ApiError::bad_request(
            "INVALID_INPUT",
            "sendAgentMessage: body must be 1 to 4096 characters",
        ));
    }
    let message = DirectMessage {
        body: body.to_owned(),
        subject: None,
        whatsapp_template: None,
    };
    send_reply(
        app,
        session,
        input.conversation_id,
        &input.client_message_id,
        message,
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct SendAgentTemplateInput {
    conversation_id: Uuid,
    template_name: String,
    /// Meta language code, e.g. `es_MX`.
    language: String,
    #[serde(default)]
    body_parameters: Vec<String>,
    client_message_id: String,
}

/// An approved WhatsApp template, for when the 24 h window is closed.
async fn send_agent_template(
    app: &AppState,
    session: &Session,
    raw: Value,
) -> Result<Json<Value>, ApiError> {
    session.require_role(AGENTS)?;
    let input: SendAgentTemplateInput = input("sendAgentTemplate", raw)?;
    let valid_name = !input.template_name.is_empty()
        && input.template_name.len() <= 512
        && input
            .template_name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid_name || input.language.is_empty() {
        return Err(ApiError::bad_request(
            "INVALID_INPUT",
            "sendAgentTemplate: template_name must be a Meta template name (lower-case, digits, '_') and language a code like es_MX",
        ));
    }
    let readable = if input.body_parameters.is_empty() {
        format!("[template {}]", input.template_name)
    } else {
        format!(
            "[template {}] {}",
            input.template_name,
            input.body_parameters.join(" · ")
        )
    };
    let message = DirectMessage {
        body: readable,
        subject: None,
        whatsapp_template: Some(WhatsAppTemplate {
            name: input.template_name.clone(),
            language: input.language.clone(),
            header: Vec::new(),
            body: input.body_parameters.clone(),
        }),
    };
    send_reply(
        app,
        session,
        input.conversation_id,
        &input.client_message_id,
        message,
    )
    .await
}

/// Starts the reply's delivery on the conversation's own channel account,
/// once per `client_message_id`. Free-form WhatsApp text is refused outside
/// the customer service window; a template is the only way then.
async fn send_reply(
    app: &AppState,
    session: &Session,
    conversation_id: Uuid,
    client_message_id: &str,
    message: DirectMessage,
) -> Result<Json<Value>, ApiError> {
    let id = client_message_id;
    crate::error::check_client_message_id(id)?;
    let target = conversations::reply_target(&app.pool, session.tenant_id, conversation_id)
        .await
        .map_err(anyhow::Error::from)?
        .ok_or_else(|| conversation_error(ConversationError::NotFound(conversation_id)))?;
    if message.whatsapp_template.is_some() && target.channel != Channel::WhatsApp {
        return Err(ApiError::bad_request(
            "NOT_WHATSAPP",
            format!(
                "templates are for WhatsApp; this conversation is on {}",
                target.channel
            ),
        ));
    }
    if target.channel == Channel::WhatsApp && message.whatsapp_template.is_none() {
        let open = target
            .last_inbound_at
            .is_some_and(|at| chrono::Utc::now() - at < CUSTOMER_SERVICE_WINDOW);
        if !open {
            return Err(ApiError::client(
                StatusCode::UNPROCESSABLE_ENTITY,
                "WINDOW_CLOSED",
                "the contact has not written in the last 24 h: WhatsApp allows only an approved template (sendAgentTemplate)",
            ));
        }
    }
    let workflow_id = agent_reply_workflow_id(session.tenant_id, conversation_id, id);
    let request = NotificationRequest {
        tenant_id: session.tenant_id,
        contact_id: target.contact_id,
        trigger_event: AGENT_REPLY.trigger,
        source_event_id: id.to_owned(),
        channels: Some(vec![target.channel]),
        variables: json!({"agent": session.user_id}),
        step_deadline_secs: app.config.step_deadline.as_secs(),
        replaces_message_id: None,
        reply: Some(ConversationReply {
            conversation_id,
            channel_account_id: target.channel_account_id,
            message,
        }),
    };
    let labels = NotificationLabels {
        entity_refs: vec![format!("conversation:{conversation_id}")],
        summary: format!(
            "agent reply in conversation {conversation_id} ({})",
            target.channel
        ),
    };
    let result = app
        .temporal
        .start_notification(&workflow_id, request, labels)
        .await
        .map_err(|e| e.into_api_error("reply not sent, retry"))?;
    Ok(Json(json!({"workflow_id": workflow_id, "result": result})))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct SnoozeInput {
    conversation_id: Uuid,
    until: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct ReassignInput {
    conversation_id: Uuid,
    /// `null` returns the conversation to the shared queue.
    assignee_id: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct MarkReadInput {
    conversation_id: Uuid,
    #[serde(default)]
    read_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn conversation_error(e: ConversationError) -> ApiError {
    match e {
        ConversationError::NotFound(_) => ApiError::client(
            StatusCode::NOT_FOUND,
            "CONVERSATION_NOT_FOUND",
            e.to_string(),
        ),
        ConversationError::AlreadyClaimed { .. } => {
            ApiError::conflict("ALREADY_CLAIMED", e.to_string())
        }
        ConversationError::Resolved(_) => {
            ApiError::conflict("CONVERSATION_RESOLVED", e.to_string())
        }
        ConversationError::Database(db) => ApiError::Unexpected(db.into()),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct RetryMessageInput {
    message_id: Uuid,
}

async fn retry_message(
    app: &AppState,
    session: &Session,
    raw: Value,
) -> Result<Json<Value>, ApiError> {
    session.require_role(AGENTS)?;
    let input: RetryMessageInput = input("retryMessage", raw)?;
    let started = retry::retry_message(
        &app.pool,
        &app.temporal,
        session.tenant_id,
        MessageId(input.message_id),
        app.config.step_deadline,
    )
    .await
    .map_err(|e| match e {
        RetryError::NotFound(_) => {
            ApiError::client(StatusCode::NOT_FOUND, "MESSAGE_NOT_FOUND", e.to_string())
        }
        RetryError::NotFailed(..) => ApiError::conflict("MESSAGE_NOT_FAILED", e.to_string()),
        RetryError::NoWorkflow(_) => ApiError::conflict("NOT_RETRYABLE", e.to_string()),
        RetryError::AlreadyDelivered { .. } => {
            ApiError::conflict("ALREADY_DELIVERED", e.to_string())
        }
        RetryError::StillRunning(_) => ApiError::conflict("STILL_RUNNING", e.to_string()),
        RetryError::Temporal(start) => start.into_api_error("retry not started"),
        RetryError::Database(db) => ApiError::Unexpected(db.into()),
    })?;
    Ok(Json(
        json!({"workflow_id": started.workflow_id, "result": started.result}),
    ))
}
