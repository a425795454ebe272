//! `POST /webhooks/sns`: messages people send to a tenant over AWS, delivered
//! by an SNS topic with an HTTPS subscription to this endpoint —
//! two-way SMS (AWS End User Messaging publishes each inbound SMS to the
//! topic) and inbound email (an SES receipt rule with an SNS action).
//!
//! `sns_receiver` verifies the envelope and confirms subscriptions first.
//! A notification is then dispatched on the shape of its `Message`:
//! - two-way SMS (`originationNumber`, `destinationNumber`,
//!   `inboundMessageId`): the SMS account whose `external_account_id` is the
//!   destination number receives it;
//! - an SES `Received` notification: the email account whose sender address
//!   (or `external_account_id`) is one of the recipients receives it, in the
//!   conversation of our email it replies to when there is one;
//! - anything else: answered 200 `{"ignored": …}` and logged, so SNS does not
//!   retry what will never be read.
//!
//! These deliveries are account-level: no tenant in the path. The account
//! found by number or address is the tenant; a number or address claimed by
//! several tenants is refused (200, logged), never guessed. Each message is
//! recorded once (`inbox::record_inbound` dedupes on the provider's id); one
//! that reopens a SNOOZED conversation stops its snooze timer. Phone numbers
//! and addresses of people are never logged; a tenant's own number is.

use super::inbound_email::{ReadEmail, SesReceived};
use super::sns::SnsEnvelope;
use super::sns_receiver::{self, SnsDelivery};
use super::sns_topics::SnsFeed;
use crate::AppState;
use crate::error::ApiError;
use crate::temporal::TemporalGateway;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use busflow_activities::identifiers::PhoneNumber;
use busflow_activities::model::{Channel, Provider, TenantId};
use busflow_activities::store::channel_accounts::{self, AddressedAccount};
use busflow_activities::store::dead_letters::DeadLetter;
use busflow_activities::store::dead_letters::{self, DeadLetterCode, NewDeadLetter};
use busflow_activities::store::inbox::{self, InboundMessage, InboundOutcome, SenderKey};
use busflow_activities::store::quarantine::{self, NewQuarantined, QuarantineReason};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::sync::Arc;

#[utoipa::path(
    post,
    path = "/webhooks/sns",
    tag = "providers",
    request_body(content = SnsEnvelope, description = "An SNS delivery (text/plain JSON): a two-way SMS, or an SES `Received` notification with the raw mail, or a subscription confirmation"),
    responses(
        (status = 200, description = "Into the inbox (`received`, `duplicates`), quarantined (`quarantined`: VIRUS, SPAM, DMARC_FAIL, SENDER_NOT_AUTHENTICATED), kept as a dead letter (`dead_letter`), confirmed or ignored", body = Object),
        (status = 400, description = "INVALID_PAYLOAD", body = crate::openapi::ApiErrorBody),
        (status = 401, description = "UNAUTHORIZED: the SNS signature or the topic is refused", body = crate::openapi::ApiErrorBody),
        (status = 503, description = "SNS_CERT_UNAVAILABLE, SNS_CONFIRM_FAILED, TEMPORAL_UNAVAILABLE: SNS delivers again", body = crate::openapi::ApiErrorBody),
    )
)]
pub async fn receive(
    State(app): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let feeds = [SnsFeed::InboundEmail, SnsFeed::InboundSms];
    match sns_receiver::accept(&app, &body, &feeds).await? {
        SnsDelivery::Answered(answer) => Ok(Json(answer)),
        SnsDelivery::Notification(envelope) => {
            if let Some(feed) = feed_of(&envelope) {
                sns_receiver::require_topic(&app, &envelope, &[feed])?;
            }
            let inbox = Inbox {
                pool: &app.pool,
                temporal: &app.temporal,
            };
            notification(&inbox, &envelope).await
        }
    }
}

/// Which inbound feed a notification's message belongs to, by its shape.
fn feed_of(envelope: &SnsEnvelope) -> Option<SnsFeed> {
    let message = serde_json::from_str::<Value>(&envelope.message).ok()?;
    if InboundSms::is_shape_of(&message) {
        Some(SnsFeed::InboundSms)
    } else if SesReceived::is_shape_of(&message) {
        Some(SnsFeed::InboundEmail)
    } else {
        None
    }
}

/// Where inbound messages are written: Postgres, and Temporal for the
/// snooze timers a message stops. The webhook and dead-letter replay share it.
pub struct Inbox<'a> {
    pub pool: &'a PgPool,
    pub temporal: &'a TemporalGateway,
}

/// Tries a kept SMS or email again, as SNS delivered it. `Ok(None)` when it
/// still names nobody.
pub async fn replay(inbox: &Inbox<'_>, letter: &DeadLetter) -> anyhow::Result<Option<usize>> {
    let envelope: SnsEnvelope = serde_json::from_value(letter.payload.0["envelope"].clone())
        .map_err(|e| anyhow::anyhow!("dead letter {}: no SNS envelope: {e}", letter.id))?;
    let Json(answer) = notification(inbox, &envelope)
        .await
        .map_err(|e| anyhow::anyhow!("dead letter {}: {e}", letter.id))?;
    if answer.get("dead_letter").is_some() || answer.get("ignored").is_some() {
        return Ok(None);
    }
    Ok(Some(answer["received"].as_u64().unwrap_or(0) as usize))
}

async fn notification(app: &Inbox<'_>, envelope: &SnsEnvelope) -> Result<Json<Value>, ApiError> {
    let Ok(message) = serde_json::from_str::<Value>(&envelope.message) else {
        return Ok(ignored(envelope, "the SNS Message is not JSON"));
    };
    if InboundSms::is_shape_of(&message) {
        return match serde_json::from_value::<InboundSms>(message.clone()) {
            Ok(sms) => inbound_sms(app, envelope, sms, message).await,
            Err(e) => {
                let why = format!("unreadable two-way SMS: {e}");
                kept(
                    app,
                    envelope,
                    Provider::AwsSns,
                    DeadLetterCode::UnreadableSender,
                    &why,
                    message,
                )
                .await
            }
        };
    }
    if SesReceived::is_shape_of(&message) {
        let email = serde_json::from_value::<SesReceived>(message.clone())
            .map_err(|e| format!("unreadable SES notification: {e}"))
            .and_then(|received| {
                received
                    .read(&message)
                    .map_err(|why| format!("SES Received: {why}"))
            });
        return match email {
            Ok(email) => inbound_email(app, envelope, email, message).await,
            Err(why) => {
                let code = DeadLetterCode::UnreadableSender;
                kept(app, envelope, Provider::AwsSes, code, &why, message).await
            }
        };
    }
    Ok(ignored(envelope, "not an inbound SMS or email"))
}

/// A person's message nobody can be found for: kept as a dead letter (with
/// the SNS envelope's ids and time) and answered 200, so SNS stops retrying.
async fn kept(
    app: &Inbox<'_>,
    envelope: &SnsEnvelope,
    provider: Provider,
    code: DeadLetterCode,
    why: &str,
    message: Value,
) -> Result<Json<Value>, ApiError> {
    dead_letters::keep(
        app.pool,
        &NewDeadLetter {
            tenant_id: None,
            provider,
            code,
            reason: why.to_owned(),
            // The whole envelope, to replay it as SNS delivered it.
            payload: json!({"envelope": envelope, "message": message}),
        },
    )
    .await?;
    Ok(Json(json!({"dead_letter": why})))
}

/// The 200 answer for a notification we will not act on, logged once.
fn ignored(envelope: &SnsEnvelope, why: &str) -> Json<Value> {
    tracing::info!(
        sns.message_id = %envelope.message_id,
        topic = %envelope.topic_arn,
        "SNS notification {} ignored: {why}",
        envelope.message_id
    );
    Json(json!({"ignored": why}))
}

/// What AWS End User Messaging publishes for an SMS sent to one of our
/// numbers (docs: "Example of a two-way SMS message payload for Amazon SNS
/// topics").
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InboundSms {
    origination_number: String,
    destination_number: String,
    #[serde(default)]
    message_body: String,
    inbound_message_id: String,
}

impl InboundSms {
    fn is_shape_of(message: &Value) -> bool {
        ["originationNumber", "destinationNumber", "inboundMessageId"]
            .iter()
            .all(|key| message.get(key).is_some())
    }
}

async fn inbound_sms(
    app: &Inbox<'_>,
    envelope: &SnsEnvelope,
    sms: InboundSms,
    message: Value,
) -> Result<Json<Value>, ApiError> {
    let Ok(destination) = PhoneNumber::parse_e164(sms.destination_number.trim()) else {
        let why = "the SMS destination is not an E.164 number";
        return kept(
            app,
            envelope,
            Provider::AwsSns,
            DeadLetterCode::UnknownAccount,
            why,
            message,
        )
        .await;
    };
    let accounts = channel_accounts::by_external_id(app.pool, Channel::Sms, destination.as_str())
        .await
        .map_err(anyhow::Error::from)?;
    let account = match accounts.as_slice() {
        [account] => account,
        [] => {
            let why = format!("no SMS account has the number {destination}");
            return kept(
                app,
                envelope,
                Provider::AwsSns,
                DeadLetterCode::UnknownAccount,
                &why,
                message,
            )
            .await;
        }
        several => {
            let tenants: Vec<String> = several.iter().map(|a| a.tenant_id.to_string()).collect();
            tracing::warn!(
                tenants = ?tenants,
                "inbound SMS to {destination} refused: {} tenants claim that number",
                several.len()
            );
            let why = format!("the number {destination} is claimed by several tenants");
            return kept(
                app,
                envelope,
                Provider::AwsSns,
                DeadLetterCode::UnknownAccount,
                &why,
                message,
            )
            .await;
        }
    };
    let Ok(sender) = PhoneNumber::parse_e164(sms.origination_number.trim()) else {
        let why = "the SMS sender is not an E.164 number";
        return kept(
            app,
            envelope,
            Provider::AwsSns,
            DeadLetterCode::UnreadableSender,
            why,
            message,
        )
        .await;
    };
    let inbound = InboundMessage {
        aliases: Vec::new(),
        tenant_id: account.tenant_id,
        channel_account_id: account.id,
        channel: Channel::Sms,
        sender_key: SenderKey::Phone,
        sender: sender.to_string(),
        sender_name: None,
        external_message_id: sms.inbound_message_id,
        subject: None,
        body: sms.message_body,
        content: message,
        // The payload has no time of its own; SNS stamps the publish.
        received_at: published_at(envelope),
        conversation_hint: None,
    };
    let outcome = record(app, &inbound).await?;
    Ok(Json(answer(Channel::Sms, &[outcome])))
}

async fn inbound_email(
    app: &Inbox<'_>,
    envelope: &SnsEnvelope,
    email: ReadEmail,
    message: Value,
) -> Result<Json<Value>, ApiError> {
    let matches = channel_accounts::by_address(app.pool, Channel::Email, &email.recipients)
        .await
        .map_err(anyhow::Error::from)?;
    let destinations = destinations(&email.recipients, matches);
    if destinations.is_empty() {
        let why = "no email account of a single tenant has any of the recipient addresses";
        return kept(
            app,
            envelope,
            Provider::AwsSes,
            DeadLetterCode::UnknownAccount,
            why,
            message,
        )
        .await;
    }
    if let Some(reason) = email.quarantine {
        return quarantined(app, &email, reason, &destinations).await;
    }
    let mut outcomes = Vec::with_capacity(destinations.len());
    for account in destinations {
        let tenant_id = account.account.tenant_id;
        let conversation_hint = inbox::conversation_of_outbound(
            app.pool,
            tenant_id,
            Channel::Email,
            &email.replies_to_ses_ids,
        )
        .await
        .map_err(anyhow::Error::from)?;
        let inbound = InboundMessage {
            aliases: Vec::new(),
            tenant_id,
            channel_account_id: account.account.id,
            channel: Channel::Email,
            sender_key: SenderKey::Email,
            sender: email.sender.to_string(),
            sender_name: email.sender_name.clone(),
            external_message_id: email.message_id.clone(),
            subject: email.subject.clone(),
            body: email.body.clone(),
            content: email.content.clone(),
            received_at: email.received_at.unwrap_or_else(|| published_at(envelope)),
            conversation_hint,
        };
        outcomes.push(record(app, &inbound).await?);
    }
    Ok(Json(answer(Channel::Email, &outcomes)))
}

/// A mail SES does not vouch for: kept in each tenant's quarantine, shown
/// as such, and in no conversation. Answered 200: SNS has delivered it.
async fn quarantined(
    app: &Inbox<'_>,
    email: &ReadEmail,
    reason: QuarantineReason,
    destinations: &[AddressedAccount],
) -> Result<Json<Value>, ApiError> {
    let mut kept = 0;
    for account in destinations {
        let mail = NewQuarantined {
            tenant_id: account.account.tenant_id,
            channel_account_id: account.account.id,
            external_message_id: email.message_id.clone(),
            reason,
            claimed_sender: email.sender.to_string(),
            claimed_sender_name: email.sender_name.clone(),
            subject: email.subject.clone(),
            body: Some(email.body.clone()).filter(|body| !body.is_empty()),
            verdicts: email.verdicts.clone(),
            content: email.content.clone(),
            received_at: email.received_at,
        };
        if quarantine::keep(app.pool, &mail).await? {
            kept += 1;
        }
        tracing::warn!(
            tenant.id = %account.account.tenant_id,
            channel_account.id = %account.account.id,
            ses.message_id = %email.message_id,
            "inbound email {} quarantined ({reason}): SES does not vouch for its sender",
            email.message_id
        );
    }
    Ok(Json(json!({
        "channel": Channel::Email,
        "quarantined": reason,
        "received": 0,
        "kept": kept,
    })))
}

/// Where an email goes: for each tenant, the account of the first recipient
/// (in `recipients` order) it owns. An address that accounts of several
/// tenants claim routes nowhere.
fn destinations(recipients: &[String], matches: Vec<AddressedAccount>) -> Vec<AddressedAccount> {
    let mut chosen: Vec<AddressedAccount> = Vec::new();
    for address in recipients {
        let claimants: Vec<&AddressedAccount> =
            matches.iter().filter(|m| &m.address == address).collect();
        let Some(first) = claimants.first() else {
            continue;
        };
        if claimants
            .iter()
            .any(|c| c.account.tenant_id != first.account.tenant_id)
        {
            let tenants: Vec<String> = claimants
                .iter()
                .map(|c| c.account.tenant_id.to_string())
                .collect();
            tracing::warn!(
                tenants = ?tenants,
                "inbound email to {address} not routed: several tenants claim that address"
            );
            continue;
        }
        let tenant: TenantId = first.account.tenant_id;
        if !chosen.iter().any(|c| c.account.tenant_id == tenant) {
            chosen.push((*first).clone());
        }
    }
    chosen
}

/// Records one inbound message; a conversation it woke from SNOOZED has its
/// snooze timer stopped.
async fn record(app: &Inbox<'_>, inbound: &InboundMessage) -> Result<InboundOutcome, ApiError> {
    let outcome = inbox::record_inbound(app.pool, inbound)
        .await
        .map_err(anyhow::Error::from)?;
    match &outcome {
        InboundOutcome::Recorded {
            message_id,
            conversation_id,
            reopened_from,
            ..
        } => {
            tracing::info!(
                tenant.id = %inbound.tenant_id,
                message.id = %message_id,
                conversation.id = %conversation_id,
                "inbound {} message {message_id} recorded in conversation {conversation_id}",
                inbound.channel
            );
            if reopened_from.as_deref() == Some("SNOOZED") {
                app.temporal
                    .stop_snooze(inbound.tenant_id, *conversation_id, "the contact wrote")
                    .await;
            }
        }
        InboundOutcome::Duplicate { message_id } => tracing::info!(
            tenant.id = %inbound.tenant_id,
            message.id = %message_id,
            "inbound {} message {message_id} was delivered before",
            inbound.channel
        ),
    }
    Ok(outcome)
}

fn answer(channel: Channel, outcomes: &[InboundOutcome]) -> Value {
    let received = outcomes
        .iter()
        .filter(|o| matches!(o, InboundOutcome::Recorded { .. }))
        .count();
    json!({
        "channel": channel,
        "received": received,
        "duplicates": outcomes.len() - received,
    })
}

/// When SNS published the notification (its signed `Timestamp`), or now.
fn published_at(envelope: &SnsEnvelope) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&envelope.timestamp)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use busflow_activities::model::{
        ChannelAccountId, ChannelAccountMode, ChannelAccountStatus, Provider,
    };
    use sqlx::types::Json as SqlJson;
    use uuid::Uuid;

    fn account(tenant: u128, address: &str) -> AddressedAccount {
        AddressedAccount {
            address: address.to_owned(),
            account: channel_accounts::ChannelAccount {
                id: ChannelAccountId(Uuid::new_v4()),
                tenant_id: TenantId(Uuid::from_u128(tenant)),
                channel: Channel::Email,
                provider: Provider::AwsSes,
                status: ChannelAccountStatus::Active,
                mode: ChannelAccountMode::Live,
                provider_config: SqlJson(json!({"from_address": address})),
                provider_secrets: None,
                limits: Default::default(),
            },
        }
    }

    #[test]
    fn each_tenant_gets_the_email_once_and_a_shared_address_routes_nowhere() {
        let recipients: Vec<String> = [
            "ventas@a.test",
            "reservas@a.test",
            "info@shared.test",
            "hola@b.test",
        ]
        .map(str::to_owned)
        .to_vec();
        let a_ventas = account(1, "ventas@a.test");
        let a_reservas = account(1, "reservas@a.test");
        let b = account(2, "hola@b.test");
        let chosen = destinations(
            &recipients,
            vec![
                a_reservas.clone(),
                account(1, "info@shared.test"),
                account(3, "info@shared.test"),
                b.clone(),
                a_ventas.clone(),
            ],
        );
        let ids: Vec<ChannelAccountId> = chosen.iter().map(|c| c.account.id).collect();
        assert_eq!(ids, vec![a_ventas.account.id, b.account.id]);
    }

    #[test]
    fn the_two_way_sms_shape() {
        let documented = json!({
            "originationNumber": "+14255550182",
            "destinationNumber": "+12125550101",
            "messageKeyword": "JOIN",
            "messageBody": "EXAMPLE",
            "inboundMessageId": "cae173d2-66b9-564c-8309-21f858e9fb84",
            "previousPublishedMessageId": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        });
        assert!(InboundSms::is_shape_of(&documented));
        let sms: InboundSms = serde_json::from_value(documented).expect("documented payload");
        assert_eq!(sms.message_body, "EXAMPLE");
        assert!(!InboundSms::is_shape_of(
            &json!({"notificationType": "Received", "mail": {}})
        ));
    }
}
