//! `NotificationWorkflow`: one notification to one recipient, over the first
//! channel of its chain that takes it.
//!
//! Per channel: prepare (local activity: resolve, render, insert QUEUED) →
//! dispatch (activity: provider call, retried with backoff inside the step
//! deadline) → SENT ends the workflow. A permanent rejection moves on to the
//! next channel with a new message linked to the one it replaces; when the
//! chain is exhausted the workflow fails with `NotificationUndeliverable`, so
//! it shows as Failed in the Temporal UI where ops can inspect or reset it.

use crate::names::search_attributes as sa;
use busflow_activities::model::{Channel, ContactId, MessageId, TenantId};
use busflow_activities::notification::{
    DispatchInput, DispatchOutcome, NotificationActivities, PrepareInput, failure_types,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityCloseTimeouts, ActivityOptions, ApplicationFailure, LocalActivityOptions,
    WorkflowContext, WorkflowResult,
};

/// What the API asks for: who, about what, over which channels.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotificationRequest {
    pub tenant_id: TenantId,
    pub contact_id: ContactId,
    pub trigger_event: String,
    /// The Hasura event id (or another idempotency key) that caused this.
    pub source_event_id: String,
    /// Channels to try, in order.
    pub channels: Vec<Channel>,
    /// Template variables from the event, e.g. `{"booking": {...}}`.
    pub variables: serde_json::Value,
    /// How long one channel's dispatch may keep retrying before it counts as failed.
    #[serde(default = "default_step_deadline_secs")]
    pub step_deadline_secs: u64,
}

fn default_step_deadline_secs() -> u64 {
    15 * 60
}

/// How the notification ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationOutcome {
    pub message_id: MessageId,
    pub channel: Channel,
    pub external_message_id: String,
}

#[workflow]
#[derive(Default)]
pub struct NotificationWorkflow;

#[workflow_methods]
impl NotificationWorkflow {
    #[run(name = "NotificationWorkflow")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        request: NotificationRequest,
    ) -> WorkflowResult<NotificationOutcome> {
        let workflow_id = ctx.workflow_id().to_owned();
        let mut replaces: Option<MessageId> = None;
        let mut failures: Vec<String> = Vec::new();

        for (index, channel) in request.channels.iter().copied().enumerate() {
            let attempt = i16::try_from(index + 1).unwrap_or(i16::MAX);
            let message_id = MessageId(deterministic_uuid(&ctx.uuid4()));
            ctx.upsert_search_attributes([
                sa::CHANNEL.value_set(channel.as_str().to_owned()),
                sa::NOTIFICATION_STATUS.value_set("QUEUED".to_owned()),
            ]);
            let prepared = ctx
                .execute_local_activity(
                    NotificationActivities::prepare_notification,
                    PrepareInput {
                        tenant_id: request.tenant_id,
                        contact_id: request.contact_id,
                        trigger_event: request.trigger_event.clone(),
                        channel,
                        workflow_id: workflow_id.clone(),
                        attempt,
                        message_id,
                        replaces_message_id: replaces,
                        variables: request.variables.clone(),
                    },
                    LocalActivityOptions::builder()
                        .start_to_close_timeout(Duration::from_secs(10))
                        .retry_policy(
                            RetryPolicy::builder()
                                .initial_interval(Duration::from_millis(500))
                                .maximum_interval(Duration::from_secs(30))
                                .maximum_attempts(20)
                                .build(),
                        )
                        .summary(format!("prepare {channel} message"))
                        .build(),
                )
                .await?;
            ctx.upsert_search_attributes([
                sa::MESSAGE_ID.value_set(prepared.message_id.to_string())
            ]);

            let outcome = ctx
                .execute_activity(
                    NotificationActivities::dispatch_message,
                    DispatchInput {
                        tenant_id: request.tenant_id,
                        message_id: prepared.message_id,
                    },
                    ActivityOptions::with_close_timeouts(
                        ActivityCloseTimeouts::ScheduleAndStartToClose {
                            schedule_to_close: Duration::from_secs(request.step_deadline_secs),
                            start_to_close: Duration::from_secs(30),
                        },
                    )
                    .retry_policy(
                        RetryPolicy::builder()
                            .initial_interval(Duration::from_secs(1))
                            .backoff_coefficient(2.0)
                            .maximum_interval(Duration::from_secs(60))
                            .build(),
                    )
                    .summary(format!("send {channel} message {}", prepared.message_id))
                    .build(),
                )
                .await?;

            match outcome {
                DispatchOutcome::Sent {
                    external_message_id,
                } => {
                    ctx.upsert_search_attributes([
                        sa::NOTIFICATION_STATUS.value_set("SENT".to_owned())
                    ]);
                    return Ok(NotificationOutcome {
                        message_id: prepared.message_id,
                        channel,
                        external_message_id,
                    });
                }
                DispatchOutcome::Rejected { reason, .. } => {
                    ctx.upsert_search_attributes([
                        sa::NOTIFICATION_STATUS.value_set("FAILED".to_owned())
                    ]);
                    failures.push(format!("{channel}: {reason}"));
                    replaces = Some(prepared.message_id);
                }
            }
        }

        let summary = if failures.is_empty() {
            "no channel to try".to_owned()
        } else {
            failures.join("; ")
        };
        Err(
            ApplicationFailure::builder(format!("notification not delivered: {summary}"))
                .type_name(failure_types::NOTIFICATION_UNDELIVERABLE.to_owned())
                .non_retryable(true)
                .build()
                .into(),
        )
    }
}

/// `ctx.uuid4()` is replay-safe; parsing it cannot fail, but a workflow must
/// not panic, so a malformed value maps to the nil UUID (never stored: the
/// insert would collide and return the existing row).
fn deterministic_uuid(raw: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(raw).unwrap_or_default()
}
