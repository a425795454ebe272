//! Retrying a failed message: a fresh delivery of the same notification (same
//! recipient, trigger and data, the chain planned anew), as a new workflow
//! linked to the old one — its id is the old id plus `/retry/{message}`, and
//! its first message replaces the failed one. One retry per failed message:
//! asking twice finds the same workflow.
//!
//! A retry never sends what may already have reached the person: it is
//! refused while the notification still runs (it is still trying, or still
//! waiting for a receipt), and once any of its messages (or a retry's) got
//! through on some channel, or was claimed for sending with an outcome that
//! never became known.

use crate::temporal::{NotificationLabels, StartError, StartResult, TemporalGateway};
use busflow_activities::model::{Channel, MessageId, MessageStatus, TenantId};
use busflow_activities::store;
use busflow_activities::workflow_state::WorkflowState;
use busflow_workflows::NotificationRequest;
use sqlx::PgPool;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("message {0} not found")]
    NotFound(MessageId),
    #[error("message {0} is {1}, not FAILED: only failed messages are retried")]
    NotFailed(MessageId, MessageStatus),
    #[error("message {0} was not sent by a notification workflow (nothing to retry)")]
    NoWorkflow(MessageId),
    #[error(
        "notification {workflow_id} already reached its person, or may have: message {message} is {status} on {channel}"
    )]
    AlreadyDelivered {
        workflow_id: String,
        message: MessageId,
        channel: Channel,
        status: MessageStatus,
    },
    #[error(
        "notification {0} is still running (trying its channels or waiting for a receipt); retry once it has ended"
    )]
    StillRunning(String),
    #[error(transparent)]
    Temporal(#[from] StartError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// What the retry started.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RetryStarted {
    pub workflow_id: String,
    pub result: StartResult,
}

pub async fn retry_message(
    pool: &PgPool,
    temporal: &TemporalGateway,
    tenant_id: TenantId,
    message_id: MessageId,
    step_deadline: Duration,
) -> Result<RetryStarted, RetryError> {
    let message = store::messages::get_outbound(pool, tenant_id, message_id)
        .await?
        .ok_or(RetryError::NotFound(message_id))?;
    if message.status != MessageStatus::Failed {
        return Err(RetryError::NotFailed(message_id, message.status));
    }
    let original_workflow = message
        .workflow_id
        .ok_or(RetryError::NoWorkflow(message_id))?;
    let request = store::requests::get(pool, tenant_id, &original_workflow)
        .await?
        .ok_or(RetryError::NoWorkflow(message_id))?;
    let workflow_id = format!("{original_workflow}/retry/{message_id}");
    // Asking again finds the retry already made.
    if temporal.workflow_state(&workflow_id).await? != WorkflowState::Missing {
        return Ok(RetryStarted {
            workflow_id,
            result: StartResult::AlreadyStarted,
        });
    }
    // A running notification may be mid-send (SENDING) on another channel:
    // "still running" is what ops need to hear then.
    // A fan-out recipient's message is sent by its chunk, not by a workflow
    // of its own.
    let sender = message
        .batch_workflow_id
        .clone()
        .unwrap_or_else(|| original_workflow.clone());
    if temporal.workflow_state(&sender).await? == WorkflowState::Running {
        return Err(RetryError::StillRunning(sender));
    }
    if let Some((message, channel, status)) =
        store::messages::reached(pool, tenant_id, &original_workflow).await?
    {
        return Err(RetryError::AlreadyDelivered {
            workflow_id: original_workflow,
            message,
            channel,
            status,
        });
    }
    let labels = NotificationLabels {
        entity_refs: vec![
            format!("message:{message_id}"),
            format!("workflow:{original_workflow}"),
        ],
        summary: format!(
            "retry of failed message {message_id} ({})",
            request.trigger_event
        ),
    };
    let result = temporal
        .start_notification(
            &workflow_id,
            NotificationRequest {
                tenant_id,
                contact_id: request.contact_id,
                trigger_event: request.trigger_event,
                source_event_id: request.source_event_id,
                channels: None,
                variables: request.variables.0,
                step_deadline_secs: step_deadline.as_secs(),
                replaces_message_id: Some(message_id),
                reply: None,
            },
            labels,
        )
        .await?;
    tracing::info!(tenant.id = %tenant_id, message.id = %message_id, workflow.id = %workflow_id, "retry of message {message_id}: {result:?}");
    Ok(RetryStarted {
        workflow_id,
        result,
    })
}
