//! `POST /webhooks/ses`: SES delivery events, published by a configuration
//! set to an SNS topic with an HTTPS subscription to this endpoint.
//!
//! The SNS envelope is verified and subscriptions confirmed by
//! `sns_receiver` before anything here runs; a notification's SES event (a
//! JSON string inside the envelope) becomes a delivery callback. SES events
//! are account-level: the tenant comes from the message row found by the SES
//! message id.

use super::delivery;
use super::sns::SnsEnvelope;
use super::sns_receiver::{self, SnsDelivery};
use super::sns_topics::SnsFeed;
use crate::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use busflow_activities::model::{Channel, MessageId, MessageStatus};
use busflow_activities::store::messages::{CallbackEffect, DeliveryCallback};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

#[utoipa::path(
    post,
    path = "/webhooks/ses",
    tag = "providers",
    request_body(content = SnsEnvelope, description = "An SNS delivery (text/plain JSON) of an SES event-publishing record (its `Message`), or a subscription confirmation"),
    responses(
        (status = 200, description = "Recorded, confirmed, or ignored (with why)", body = Object),
        (status = 400, description = "INVALID_PAYLOAD, INVALID_SES_EVENT", body = crate::openapi::ApiErrorBody),
        (status = 401, description = "UNAUTHORIZED: the SNS signature or the topic is refused", body = crate::openapi::ApiErrorBody),
        (status = 503, description = "SNS_CERT_UNAVAILABLE, SNS_CONFIRM_FAILED: SNS delivers again", body = crate::openapi::ApiErrorBody),
    )
)]
pub async fn receive(
    State(app): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    match sns_receiver::accept(&app, &body, &[SnsFeed::SesEvents]).await? {
        SnsDelivery::Answered(answer) => Ok(Json(answer)),
        SnsDelivery::Notification(envelope) => notification(&app, &envelope).await,
    }
}

async fn notification(app: &AppState, envelope: &SnsEnvelope) -> Result<Json<Value>, ApiError> {
    let event: SesEvent = serde_json::from_str(&envelope.message).map_err(|e| {
        ApiError::bad_request(
            "INVALID_SES_EVENT",
            format!("the SNS Message is not an SES event: {e}"),
        )
    })?;
    let Some(callback) = event.to_callback() else {
        return Ok(Json(json!({"ignored": event.kind()})));
    };
    let effect = delivery::apply(app, &callback).await?;
    Ok(Json(json!({
        "event": event.kind(),
        "applied": matches!(effect, CallbackEffect::Applied { .. }),
    })))
}

/// An SES event (configuration-set event publishing uses `eventType`;
/// identity notifications use `notificationType`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesEvent {
    event_type: Option<String>,
    notification_type: Option<String>,
    mail: Mail,
    #[serde(default)]
    bounce: Option<Bounce>,
    #[serde(default)]
    reject: Option<Value>,
    #[serde(default)]
    delivery: Option<Timestamped>,
    #[serde(default)]
    open: Option<Timestamped>,
    #[serde(default)]
    click: Option<Timestamped>,
    #[serde(default, rename = "failure")]
    rendering_failure: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Mail {
    message_id: String,
    #[serde(default)]
    timestamp: Option<String>,
    /// The message tags of the send, each a list of values.
    #[serde(default)]
    tags: std::collections::HashMap<String, Vec<String>>,
}

impl Mail {
    /// The configuration set the event was published through (SES adds it
    /// to every event's tags).
    fn configuration_set(&self) -> Option<String> {
        self.tags.get("ses:configuration-set")?.first().cloned()
    }

    /// Our message id, from the tag every send carries.
    fn correlation(&self) -> Option<MessageId> {
        self.tags
            .get(busflow_activities::providers::email::ses::MESSAGE_ID_TAG)?
            .first()?
            .parse::<uuid::Uuid>()
            .ok()
            .map(MessageId)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bounce {
    bounce_type: String,
    #[serde(default)]
    bounce_sub_type: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    bounced_recipients: Vec<Value>,
}

#[derive(Debug, Deserialize)]
struct Timestamped {
    #[serde(default)]
    timestamp: Option<String>,
}

impl SesEvent {
    fn kind(&self) -> String {
        self.event_type
            .clone()
            .or_else(|| self.notification_type.clone())
            .unwrap_or_else(|| "Unknown".to_owned())
    }

    /// The delivery status this event means, or `None` for events that do not
    /// move a message (transient bounces, delays, complaints: the mail is
    /// still on its way or was delivered).
    fn to_callback(&self) -> Option<DeliveryCallback> {
        let kind = self.kind();
        let (status, reason, at) = match kind.as_str() {
            "Send" => (MessageStatus::Sent, None, self.mail.timestamp.clone()),
            "Delivery" => (
                MessageStatus::Delivered,
                None,
                self.delivery.as_ref().and_then(|d| d.timestamp.clone()),
            ),
            "Open" => (
                MessageStatus::Read,
                None,
                self.open.as_ref().and_then(|o| o.timestamp.clone()),
            ),
            "Click" => (
                MessageStatus::Read,
                None,
                self.click.as_ref().and_then(|c| c.timestamp.clone()),
            ),
            "Bounce" => {
                let bounce = self.bounce.as_ref()?;
                if bounce.bounce_type != "Permanent" {
                    return None;
                }
                let diagnostic = bounce
                    .bounced_recipients
                    .first()
                    .and_then(|r| r.get("diagnosticCode"))
                    .and_then(Value::as_str)
                    .unwrap_or("no diagnostic");
                (
                    MessageStatus::Failed,
                    Some(format!(
                        "SES bounce Permanent/{}: {diagnostic}",
                        bounce.bounce_sub_type.as_deref().unwrap_or("General")
                    )),
                    bounce.timestamp.clone(),
                )
            }
            "Reject" => (
                MessageStatus::Failed,
                Some(format!(
                    "SES rejected the message: {}",
                    self.reject
                        .as_ref()
                        .and_then(|r| r.get("reason"))
                        .and_then(Value::as_str)
                        .unwrap_or("no reason given")
                )),
                self.mail.timestamp.clone(),
            ),
            "Rendering Failure" => (
                MessageStatus::Failed,
                Some(format!(
                    "SES could not render the message: {}",
                    self.rendering_failure
                        .as_ref()
                        .and_then(|f| f.get("errorMessage"))
                        .and_then(Value::as_str)
                        .unwrap_or("no details")
                )),
                self.mail.timestamp.clone(),
            ),
            _ => return None,
        };
        let occurred_at = at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_else(chrono::Utc::now);
        Some(DeliveryCallback {
            tenant_id: None,
            channel: Channel::Email,
            external_message_id: self.mail.message_id.clone(),
            status,
            reason,
            occurred_at,
            detail: json!({"eventType": kind}),
            correlation: self.mail.correlation(),
            configuration_set: self.mail.configuration_set(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(value: Value) -> SesEvent {
        serde_json::from_value(value).expect("SES event")
    }

    #[test]
    fn ses_events_map_to_forward_statuses() {
        let delivery = event(json!({"eventType": "Delivery", "mail": {"messageId": "m1"},
            "delivery": {"timestamp": "2026-11-27T10:00:00.000Z"}}));
        let cb = delivery.to_callback().expect("tracked");
        assert_eq!(
            (cb.status, cb.external_message_id.as_str()),
            (MessageStatus::Delivered, "m1")
        );

        let permanent = event(json!({"eventType": "Bounce", "mail": {"messageId": "m2"},
            "bounce": {"bounceType": "Permanent", "bounceSubType": "NoEmail",
                       "bouncedRecipients": [{"emailAddress": "x@y.z", "diagnosticCode": "550 5.1.1 user unknown"}]}}));
        let cb = permanent.to_callback().expect("tracked");
        assert_eq!(cb.status, MessageStatus::Failed);
        assert_eq!(
            cb.reason.as_deref(),
            Some("SES bounce Permanent/NoEmail: 550 5.1.1 user unknown")
        );

        let transient = event(
            json!({"notificationType": "Bounce", "mail": {"messageId": "m3"},
            "bounce": {"bounceType": "Transient"}}),
        );
        assert!(
            transient.to_callback().is_none(),
            "SES keeps retrying a transient bounce"
        );
        let delay = event(json!({"eventType": "DeliveryDelay", "mail": {"messageId": "m4"}}));
        assert!(delay.to_callback().is_none());
        let open = event(json!({"eventType": "Open", "mail": {"messageId": "m5"}, "open": {}}));
        assert_eq!(
            open.to_callback().map(|c| c.status),
            Some(MessageStatus::Read)
        );
    }
}
