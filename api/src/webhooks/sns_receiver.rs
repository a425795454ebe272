//! What every SNS HTTPS endpoint does before it reads a message: parse the
//! envelope, verify its signature, confirm a subscription, acknowledge an
//! unsubscribe. Written once so that `/webhooks/ses` and `/webhooks/sns`
//! cannot drift apart on the security-relevant part.
//!
//! Policy (status codes SNS sees):
//! - not an SNS envelope → 400;
//! - a topic outside the endpoint's feeds (`sns_topics`) → 401, before its
//!   signature is checked or its subscription confirmed;
//! - signature, topic or certificate URL refused → 401, nothing is read;
//! - the signing certificate could not be fetched → 503 (SNS retries, and
//!   the next attempt may fetch it);
//! - a verified SubscriptionConfirmation is confirmed by a GET to its
//!   allow-listed `SubscribeURL` (503 if that fails, so SNS sends it again);
//! - only a verified Notification reaches the endpoint's own handler.

use super::sns::{self, SnsEnvelope, SnsMessageType, SnsVerifyError};
use super::sns_topics::SnsFeed;
use crate::AppState;
use crate::error::ApiError;
use serde_json::{Value, json};

/// What the prologue made of a delivery.
#[derive(Debug)]
pub enum SnsDelivery {
    /// A verified notification, for the endpoint to act on.
    Notification(Box<SnsEnvelope>),
    /// Handled here (a confirmation or an unsubscribe): answer with this body.
    Answered(Value),
}

/// Parses and verifies `body` as a delivery of one of `feeds`, confirming
/// subscriptions on the way.
pub async fn accept(
    app: &AppState,
    body: &[u8],
    feeds: &[SnsFeed],
) -> Result<SnsDelivery, ApiError> {
    let envelope = sns::parse_envelope(body).map_err(|e| {
        ApiError::bad_request("INVALID_PAYLOAD", format!("not an SNS message: {e}"))
    })?;
    require_topic(app, &envelope, feeds)?;
    app.sns.verify(&envelope).await.map_err(|e| match e {
        SnsVerifyError::CertFetch(_)
        | SnsVerifyError::CertFetchFailedLately(_)
        | SnsVerifyError::CertFetchBudgetSpent(_) => {
            ApiError::unavailable("SNS_CERT_UNAVAILABLE", e.to_string())
        }
        other => ApiError::unauthorized(format!("SNS signature rejected: {other}")),
    })?;
    match envelope.r#type {
        SnsMessageType::SubscriptionConfirmation => {
            sns::confirm_subscription(&app.http, &envelope)
                .await
                .map_err(|e| ApiError::unavailable("SNS_CONFIRM_FAILED", e.to_string()))?;
            tracing::info!(topic = %envelope.topic_arn, "confirmed the SNS subscription to {}", envelope.topic_arn);
            Ok(SnsDelivery::Answered(
                json!({"confirmed": envelope.topic_arn}),
            ))
        }
        SnsMessageType::UnsubscribeConfirmation => Ok(SnsDelivery::Answered(
            json!({"acknowledged": "unsubscribe"}),
        )),
        SnsMessageType::Notification => Ok(SnsDelivery::Notification(Box::new(envelope))),
    }
}

/// Refuses a delivery whose topic is not one of `feeds`' topics.
pub fn require_topic(
    app: &AppState,
    envelope: &SnsEnvelope,
    feeds: &[SnsFeed],
) -> Result<(), ApiError> {
    if feeds
        .iter()
        .any(|feed| app.config.sns_topics.allows(*feed, &envelope.topic_arn))
    {
        return Ok(());
    }
    let names: Vec<String> = feeds.iter().map(ToString::to_string).collect();
    Err(ApiError::unauthorized(format!(
        "SNS topic {} is not a topic of this endpoint's feeds ({})",
        envelope.topic_arn,
        names.join(", ")
    )))
}
