//! The actions that connect a tenant's channels and look after them:
//! `connectWhatsApp` (the result of Meta's Embedded Signup),
//! `connectEmailDomain` (SES domain verification), `connectPlatformSms`, `disconnectChannelAccount`, `reverifyChannelAccount`
//! and `rotateChannelAccountCredentials`. They are the
//! tenant administrator's (`tenant_admin`, or Hasura's `admin`).
//!
//! Secrets the operator hands over (the signup code) are sealed before
//! anything starts; workflows get ids only.

use super::actions::{Session, input};
use crate::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::http::StatusCode;
use busflow_activities::email_domains::DomainConnection;
use busflow_activities::lifecycle::StatusActor;
use busflow_activities::model::{Channel, ChannelAccountId, ChannelAccountStatus, TenantId};
use busflow_activities::provisioning::{
    AccountRef, ConnectRequest, code_sha256, random_text, signup_id,
};
use busflow_activities::secrets;
use busflow_activities::store::channel_accounts::{self, Move};
use busflow_activities::store::email_domains::{self, DomainError, DomainRequest};
use busflow_activities::store::platform_sms::AssignError;
use busflow_activities::store::whatsapp_signups::{self, Signup, SignupError};
use busflow_activities::workflow_state::WorkflowState;
use busflow_workflows::ConnectOutcome;
use busflow_workflows::names::{connect_whatsapp_workflow_id, verify_email_domain_workflow_id};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

/// Who may connect and change a tenant's channels.
pub const ADMINS: &[&str] = &["tenant_admin", "admin"];

/// How long `connectWhatsApp` waits for the connection to finish before it
/// answers with the account as it is (Hasura gives an action 30 s).
const CONNECT_WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ConnectWhatsAppInput {
    code: String,
    waba_id: String,
    phone_number_id: String,
    #[serde(default)]
    display_name: Option<String>,
}

/// `connectWhatsApp`: records the signup, seals its code, starts
/// `ConnectWhatsAppWorkflow` and waits up to [`CONNECT_WAIT`] for it.
pub async fn connect_whatsapp(
    app: &AppState,
    session: &Session,
    raw: Value,
) -> Result<Json<Value>, ApiError> {
    session.require_role(ADMINS)?;
    let request: ConnectWhatsAppInput = input("connectWhatsApp", raw)?;
    let code = request.code.trim();
    if code.is_empty() || code.len() > 2048 {
        return Err(invalid(
            "code must be the Embedded Signup code (1 to 2048 characters)",
        ));
    }
    for (field, id) in [
        ("waba_id", &request.waba_id),
        ("phone_number_id", &request.phone_number_id),
    ] {
        if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(&format!(
                "{field} must be a Graph API id (digits), not '{id}'"
            )));
        }
    }
    let code_sha256 = code_sha256(code);
    let signup = signup_id(code);
    let tenant_id = session.tenant_id;
    let recorded = whatsapp_signups::record(
        &app.pool,
        &Signup {
            tenant_id,
            waba_id: &request.waba_id,
            phone_number_id: &request.phone_number_id,
            code_sha256: &code_sha256,
            display_name: request.display_name.as_deref().filter(|n| !n.is_empty()),
        },
        |account| connect_whatsapp_workflow_id(tenant_id, account, &signup),
    )
    .await
    .map_err(signup_error)?;
    let account = AccountRef {
        tenant_id,
        channel_account_id: recorded.channel_account_id,
    };
    let ran_before = !recorded.new
        && app
            .temporal
            .workflow_state(&recorded.workflow_id)
            .await
            .map_err(|e| e.into_api_error("connection not started"))?
            != WorkflowState::Missing;
    if !ran_before {
        let code = code.to_owned();
        secrets::modify(
            &app.pool,
            &app.keys,
            tenant_id,
            account.channel_account_id,
            move |s| s.signup_code = Some(code),
        )
        .await
        .map_err(|e| ApiError::Unexpected(e.into()))?;
        app.temporal
            .start_connect_whatsapp(
                &recorded.workflow_id,
                ConnectRequest {
                    account,
                    signup: Some(signup),
                },
            )
            .await
            .map_err(|e| e.into_api_error("connection not started"))?;
    }
    let outcome = app
        .temporal
        .connect_outcome(&recorded.workflow_id, CONNECT_WAIT)
        .await;
    account_answer(app, account, &recorded.workflow_id, outcome.as_ref()).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AccountInput {
    #[schema(value_type = uuid::Uuid)]
    channel_account_id: ChannelAccountId,
    #[serde(default)]
    reason: Option<String>,
}

/// `disconnectChannelAccount`: the account stops sending and owns nothing
/// any more (its number or domain can be connected elsewhere).
pub async fn disconnect(
    app: &AppState,
    session: &Session,
    raw: Value,
) -> Result<Json<Value>, ApiError> {
    session.require_role(ADMINS)?;
    let request: AccountInput = input("disconnectChannelAccount", raw)?;
    let reason = request
        .reason
        .as_deref()
        .filter(|r| !r.trim().is_empty())
        .unwrap_or("disconnected by the operator");
    let moved = channel_accounts::move_to(
        &app.pool,
        session.tenant_id,
        request.channel_account_id,
        ChannelAccountStatus::Disconnected,
        Some(reason),
        &actor(session),
    )
    .await
    .map_err(|e| ApiError::Unexpected(e.into()))?;
    match moved {
        Move::Moved { .. } | Move::AlreadyThere => {}
        Move::Missing => return Err(not_found(request.channel_account_id)),
        Move::Refused { current } => return Err(refused(current, "disconnected")),
    }
    let account = AccountRef {
        tenant_id: session.tenant_id,
        channel_account_id: request.channel_account_id,
    };
    account_answer(app, account, "", None).await
}

/// `reverifyChannelAccount`: checks the account with its provider again
/// (for WhatsApp: token, registration, webhook subscription and templates)
/// and makes it ACTIVE if all is well, or leaves it in ATTENTION with why.
pub async fn reverify(
    app: &AppState,
    session: &Session,
    raw: Value,
) -> Result<Json<Value>, ApiError> {
    session.require_role(ADMINS)?;
    let request: AccountInput = input("reverifyChannelAccount", raw)?;
    let tenant_id = session.tenant_id;
    let account = connected_account(app, tenant_id, request.channel_account_id, "verified").await?;
    match account.channel {
        Channel::WhatsApp => start_reverification(app, tenant_id, account.id).await,
        Channel::Email if account.provider_config.0.get("domain").is_some() => {
            start_domain_verification(app, tenant_id, account.id).await
        }
        channel => Err(ApiError::bad_request(
            "NOT_VERIFIABLE",
            format!(
                "reverifyChannelAccount: this {channel} account was not connected through this service, so there is nothing to verify"
            ),
        )),
    }
}

/// Starts the WhatsApp account's re-verification and waits up to
/// [`CONNECT_WAIT`] for it.
async fn start_reverification(
    app: &AppState,
    tenant_id: TenantId,
    account_id: ChannelAccountId,
) -> Result<Json<Value>, ApiError> {
    let history = channel_accounts::history(&app.pool, tenant_id, account_id)
        .await
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    // The same account in the same state is the same re-verification: a
    // call repeated while one runs finds the workflow the first started.
    let workflow_id = connect_whatsapp_workflow_id(
        tenant_id,
        account_id,
        &format!("reverify-{}", history.len()),
    );
    let reference = AccountRef {
        tenant_id,
        channel_account_id: account_id,
    };
    app.temporal
        .start_connect_whatsapp(
            &workflow_id,
            ConnectRequest {
                account: reference,
                signup: None,
            },
        )
        .await
        .map_err(|e| e.into_api_error("re-verification not started"))?;
    let outcome = app
        .temporal
        .connect_outcome(&workflow_id, CONNECT_WAIT)
        .await;
    account_answer(app, reference, &workflow_id, outcome.as_ref()).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateInput {
    #[schema(value_type = uuid::Uuid)]
    channel_account_id: ChannelAccountId,
    /// WhatsApp: the new system-user access token from Meta Business Manager.
    #[serde(default)]
    access_token: Option<String>,
}

/// `rotateChannelAccountCredentials`: new credentials, sealed under the
/// active key. WhatsApp: the given access token and a fresh verify token,
/// then a re-verification (which subscribes the webhook with the new verify
/// token and checks the token with Meta). Webchat: a new widget secret
/// (visitors' sessions signed with the old one end; the widget starts new
/// ones).
pub async fn rotate(
    app: &AppState,
    session: &Session,
    raw: Value,
) -> Result<Json<Value>, ApiError> {
    session.require_role(ADMINS)?;
    let request: RotateInput = input("rotateChannelAccountCredentials", raw)?;
    let tenant_id = session.tenant_id;
    let account = channel_accounts::get(&app.pool, tenant_id, request.channel_account_id)
        .await
        .map_err(|e| ApiError::Unexpected(e.into()))?
        .ok_or_else(|| not_found(request.channel_account_id))?;
    if account.status == ChannelAccountStatus::Disconnected {
        return Err(refused(
            account.status,
            "given new credentials; connect it again",
        ));
    }
    let rotate_error = |message: &str| {
        ApiError::bad_request(
            "INVALID_INPUT",
            format!("rotateChannelAccountCredentials: {message}"),
        )
    };
    match account.channel {
        Channel::WhatsApp => {
            let token = request
                .access_token
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| rotate_error("access_token is required for a WhatsApp account"))?;
            if token.len() > 4096 || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(rotate_error("access_token is not a Meta access token"));
            }
            let (token, verify_token) = (token.to_owned(), random_text(32, false));
            secrets::modify(&app.pool, &app.keys, tenant_id, account.id, move |s| {
                s.access_token = Some(token);
                s.verify_token = Some(verify_token);
                s.signup_code = None;
            })
            .await
            .map_err(|e| ApiError::Unexpected(e.into()))?;
            start_reverification(app, tenant_id, account.id).await
        }
        Channel::Webchat => {
            if request.access_token.is_some() {
                return Err(rotate_error("a webchat account takes no access_token"));
            }
            let secret = random_text(48, false);
            secrets::modify(&app.pool, &app.keys, tenant_id, account.id, move |s| {
                s.widget_secret = Some(secret);
            })
            .await
            .map_err(|e| ApiError::Unexpected(e.into()))?;
            let reference = AccountRef {
                tenant_id,
                channel_account_id: account.id,
            };
            account_answer(app, reference, "", None).await
        }
        Channel::Email | Channel::Sms => Err(ApiError::bad_request(
            "NOTHING_TO_ROTATE",
            format!(
                "rotateChannelAccountCredentials: {} accounts send with the platform's AWS credentials; they have none of their own",
                account.channel
            ),
        )),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PlatformSmsInput {
    /// ISO 3166 country of the sender; the tenant's default region if absent.
    #[serde(default)]
    country: Option<String>,
}

/// `connectPlatformSms`: a tenant without an SMS number of its own gets one
/// of the platform's senders for its country, ACTIVE at once, its sends
/// counted against the platform's daily allowance per tenant.
pub async fn connect_platform_sms(
    app: &AppState,
    session: &Session,
    raw: Value,
) -> Result<Json<Value>, ApiError> {
    session.require_role(ADMINS)?;
    let request: PlatformSmsInput = input("connectPlatformSms", raw)?;
    let tenant_id = session.tenant_id;
    let country = match request.country {
        Some(country) => country.trim().to_ascii_uppercase(),
        None => {
            busflow_activities::store::tenants::settings(&app.pool, tenant_id)
                .await
                .map_err(|e| ApiError::Unexpected(e.into()))?
                .default_region
        }
    };
    let platform = &app.config.platform_sms;
    let sender = platform.pool.sender_for(&country, tenant_id).ok_or_else(|| {
        let served = platform.pool.countries();
        ApiError::bad_request(
            "NO_PLATFORM_SENDER",
            format!(
                "connectPlatformSms: the platform has no SMS sender for '{country}' (it has: {})",
                if served.is_empty() {
                    "none; set BUSFLOW_SMS_POOL".to_owned()
                } else {
                    served.join(", ")
                }
            ),
        )
    })?;
    let assigned = busflow_activities::store::platform_sms::assign(
        &app.pool,
        tenant_id,
        &country,
        sender,
        platform.daily_limit,
    )
    .await
    .map_err(|e| match e {
        AssignError::OwnNumber(_) => {
            ApiError::client(StatusCode::CONFLICT, "OWN_SMS_NUMBER", e.to_string())
        }
        AssignError::Database(e) => ApiError::Unexpected(e.into()),
    })?;
    let reference = AccountRef {
        tenant_id,
        channel_account_id: assigned.channel_account_id,
    };
    account_answer(app, reference, "", None).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EmailDomainInput {
    domain: String,
    /// The sender address, at the domain (default `no-reply@<domain>`).
    #[serde(default)]
    from_address: Option<String>,
    /// The sender name (default the tenant's name).
    #[serde(default)]
    from_name: Option<String>,
    /// A subdomain for a custom MAIL FROM (`mail` → `mail.<domain>`).
    #[serde(default)]
    mail_from_subdomain: Option<String>,
}

/// How long `connectEmailDomain` waits for SES to hand out the DNS records.
const RECORDS_WAIT: Duration = Duration::from_secs(15);

/// `connectEmailDomain`: records the domain's account, starts
/// `VerifyEmailDomainWorkflow` and answers with the DNS records to publish
/// as soon as SES gave them.
pub async fn connect_email_domain(
    app: &AppState,
    session: &Session,
    raw: Value,
) -> Result<Json<Value>, ApiError> {
    session.require_role(ADMINS)?;
    let request: EmailDomainInput = input("connectEmailDomain", raw)?;
    let invalid = |message: String| {
        ApiError::bad_request("INVALID_INPUT", format!("connectEmailDomain: {message}"))
    };
    let domain = request
        .domain
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if !is_domain(&domain) {
        return Err(invalid(format!(
            "domain '{}' is not a domain name (labels of letters, digits and '-', dot-separated)",
            request.domain
        )));
    }
    let from_address = request
        .from_address
        .map(|a| a.trim().to_ascii_lowercase())
        .unwrap_or_else(|| format!("no-reply@{domain}"));
    match from_address.rsplit_once('@') {
        Some((local, at)) if at == domain && !local.is_empty() && !local.contains(' ') => {}
        _ => {
            return Err(invalid(format!(
                "from_address '{from_address}' must be an address at {domain}"
            )));
        }
    }
    let mail_from = match request.mail_from_subdomain.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(sub) if is_domain(&format!("{sub}.x")) && !sub.contains('.') => {
            Some(format!("{}.{domain}", sub.to_ascii_lowercase()))
        }
        Some(sub) => {
            return Err(invalid(format!(
                "mail_from_subdomain '{sub}' is not one label"
            )));
        }
    };
    let tenant_id = session.tenant_id;
    let from_name = match request.from_name.filter(|n| !n.trim().is_empty()) {
        Some(name) => name,
        None => {
            busflow_activities::store::tenants::settings(&app.pool, tenant_id)
                .await
                .map_err(|e| ApiError::Unexpected(e.into()))?
                .display_name
        }
    };
    let account_id = email_domains::record(
        &app.pool,
        &DomainRequest {
            tenant_id,
            domain: &domain,
            from_address: &from_address,
            from_name: &from_name,
            mail_from: mail_from.as_deref(),
        },
    )
    .await
    .map_err(|e| match e {
        DomainError::Held(_) => ApiError::client(
            StatusCode::CONFLICT,
            "DOMAIN_HELD_BY_ANOTHER_TENANT",
            e.to_string(),
        ),
        DomainError::InProgress(_) => ApiError::client(
            StatusCode::CONFLICT,
            "VERIFICATION_IN_PROGRESS",
            e.to_string(),
        ),
        DomainError::Database(e) => ApiError::Unexpected(e.into()),
    })?;
    start_domain_verification(app, tenant_id, account_id).await
}

/// Starts the sending domain's verification and answers once SES gave the
/// DNS records (or after [`RECORDS_WAIT`]).
async fn start_domain_verification(
    app: &AppState,
    tenant_id: TenantId,
    account_id: ChannelAccountId,
) -> Result<Json<Value>, ApiError> {
    let moves = channel_accounts::history(&app.pool, tenant_id, account_id)
        .await
        .map_err(|e| ApiError::Unexpected(e.into()))?
        .len();
    let workflow_id = verify_email_domain_workflow_id(tenant_id, account_id, moves);
    let account = AccountRef {
        tenant_id,
        channel_account_id: account_id,
    };
    app.temporal
        .start_verify_email_domain(
            &workflow_id,
            DomainConnection {
                account,
                events_topic: app.config.sns_topics.ses_events_topic().map(str::to_owned),
                patience: app.config.email_verification,
            },
        )
        .await
        .map_err(|e| e.into_api_error("domain verification not started"))?;
    let deadline = tokio::time::Instant::now() + RECORDS_WAIT;
    loop {
        let created = channel_accounts::history(&app.pool, tenant_id, account_id)
            .await
            .map_err(|e| ApiError::Unexpected(e.into()))?
            .len()
            > moves + 1
            || has_records(app, account).await?;
        if created || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let Json(mut answer) = account_answer(app, account, &workflow_id, None).await?;
    let records = email_domains::records(&app.pool, tenant_id, account_id)
        .await
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    answer["dns_records"] = json!(records);
    Ok(Json(answer))
}

async fn has_records(app: &AppState, at: AccountRef) -> Result<bool, ApiError> {
    Ok(
        !email_domains::records(&app.pool, at.tenant_id, at.channel_account_id)
            .await
            .map_err(|e| ApiError::Unexpected(e.into()))?
            .is_empty(),
    )
}

fn is_domain(name: &str) -> bool {
    name.len() <= 253
        && name.contains('.')
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The account as it is now, with the workflow looking after it.
async fn account_answer(
    app: &AppState,
    at: AccountRef,
    workflow_id: &str,
    outcome: Option<&ConnectOutcome>,
) -> Result<Json<Value>, ApiError> {
    let account = tenant_account(app, at.tenant_id, at.channel_account_id).await?;
    let reason: Option<String> =
        channel_accounts::status_reason(&app.pool, at.tenant_id, at.channel_account_id)
            .await
            .map_err(|e| ApiError::Unexpected(e.into()))?;
    let (approved, templates) = match outcome {
        Some(ConnectOutcome::Connected {
            approved,
            templates,
        }) => (Some(*approved), Some(*templates)),
        _ => (None, None),
    };
    Ok(Json(json!({
        "channel_account_id": account.id,
        "channel": account.channel,
        "status": account.status,
        "status_reason": reason,
        "workflow_id": (!workflow_id.is_empty()).then_some(workflow_id),
        "approved_templates": approved,
        "templates": templates,
    })))
}

/// The tenant's account, or 404.
async fn tenant_account(
    app: &AppState,
    tenant_id: TenantId,
    id: ChannelAccountId,
) -> Result<channel_accounts::ChannelAccount, ApiError> {
    channel_accounts::get(&app.pool, tenant_id, id)
        .await
        .map_err(|e| ApiError::Unexpected(e.into()))?
        .ok_or_else(|| not_found(id))
}

/// The tenant's account unless it is DISCONNECTED (then 409: it cannot be
/// `what`, only connected again).
async fn connected_account(
    app: &AppState,
    tenant_id: TenantId,
    id: ChannelAccountId,
    what: &str,
) -> Result<channel_accounts::ChannelAccount, ApiError> {
    let account = tenant_account(app, tenant_id, id).await?;
    if account.status == ChannelAccountStatus::Disconnected {
        return Err(refused(
            account.status,
            &format!("{what}; connect it again"),
        ));
    }
    Ok(account)
}

fn actor(session: &Session) -> StatusActor {
    StatusActor::Operator(
        session
            .user_id
            .clone()
            .unwrap_or_else(|| session.role.clone()),
    )
}

fn invalid(message: &str) -> ApiError {
    ApiError::bad_request("INVALID_INPUT", format!("connectWhatsApp: {message}"))
}

fn not_found(id: ChannelAccountId) -> ApiError {
    ApiError::client(
        StatusCode::NOT_FOUND,
        "CHANNEL_ACCOUNT_NOT_FOUND",
        format!("channel account {id} not found for this tenant"),
    )
}

fn refused(current: ChannelAccountStatus, what: &str) -> ApiError {
    ApiError::client(
        StatusCode::CONFLICT,
        "CHANNEL_ACCOUNT_STATUS",
        format!("the account is {current} and cannot be {what}"),
    )
}

fn signup_error(e: SignupError) -> ApiError {
    let code = match &e {
        SignupError::CodeUsed => "SIGNUP_CODE_ALREADY_USED",
        SignupError::PhoneNumberHeld(_) => "PHONE_NUMBER_HELD_BY_ANOTHER_TENANT",
        SignupError::WabaHeld(_) => "WABA_HELD_BY_ANOTHER_TENANT",
        SignupError::InProgress { .. } => "CONNECTION_IN_PROGRESS",
        SignupError::Database(_) => return ApiError::Unexpected(e.into()),
    };
    ApiError::client(StatusCode::CONFLICT, code, e.to_string())
}
