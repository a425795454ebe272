//! Applying a delivery receipt: record it in Postgres (monotonic status,
//! kept for later when the message does not know its provider id yet), then
//! signal the workflow that owns the message. A workflow that already ended
//! is not an error: the row is the record.

use crate::AppState;
use busflow_activities::store::messages::{self, CallbackEffect, DeliveryCallback};
use busflow_workflows::notification::DeliveryUpdate;

/// Records and relays one callback; returns what recording it did. Only the
/// receipt that settles a message is signalled: a SENT receipt, or a READ
/// after DELIVERED, would wake the workflow for nothing, and a workflow task
/// per receipt is what the Temporal server spends most on.
pub async fn apply(app: &AppState, callback: &DeliveryCallback) -> anyhow::Result<CallbackEffect> {
    let effect = messages::record_callback(&app.pool, callback).await?;
    match &effect {
        CallbackEffect::Applied {
            tenant_id,
            message_id,
            workflow_id: Some(workflow_id),
            status,
            settles: true,
            ..
        } => {
            let update = DeliveryUpdate {
                message_id: *message_id,
                status: *status,
                reason: callback.reason.clone(),
            };
            if let Err(e) = app.temporal.signal_delivery(workflow_id, update).await {
                // The workflow re-reads the status from Postgres before it
                // gives up on a channel, so a lost signal delays nothing.
                tracing::info!(
                    tenant.id = %tenant_id,
                    message.id = %message_id,
                    workflow.id = %workflow_id,
                    "receipt {status} for message {message_id} not signalled: {e:#}"
                );
            }
        }
        CallbackEffect::Applied { .. } => {}
        CallbackEffect::Pending => tracing::info!(
            channel = %callback.channel,
            "receipt {} for unknown {} message {} kept until the message records that id",
            callback.status,
            callback.channel,
            callback.external_message_id
        ),
    }
    Ok(effect)
}
