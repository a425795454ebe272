//! `NotificationWorkflow`: one notification to one recipient, over the first
//! channel of its chain that delivers it.
//!
//! Plan (local activity: chain filtered by address, opt-outs and active
//! accounts; it also queues the first channel's message) → per channel:
//! prepare (local activity: render, insert QUEUED; done by the plan for the
//! first) → dispatch (local activity: the provider call, claimed before it
//! is made, retried with backoff inside the step deadline) → wait for a
//! delivery signal up to the channel's timeout. All local activities: a
//! notification on a channel without receipts is one workflow task, eight
//! history events.
//! DELIVERED or READ ends the workflow; nothing else is ever sent for it. A
//! FAILED callback, a permanent rejection or the timeout moves on to the next
//! channel with a new message linked to the one it replaces. A channel without
//! receipts (SMS) is done once SENT. When the chain is exhausted the workflow
//! fails with `NotificationUndeliverable`, so it shows as Failed in the UI.
//!
//! Before falling back on a timeout the workflow re-reads the message status
//! from Postgres: a receipt whose signal was lost (webhook process died after
//! its database write) still counts.

use crate::clock::unix_ms;
use crate::names::search_attributes as sa;
use crate::steps::postgres_step;
use busflow_activities::model::{
    Channel, ChannelAccountId, ContactId, MessageId, MessageStatus, TenantId,
};
use busflow_activities::notification::{
    AbandonInput, DirectMessage, DispatchInput, DispatchOutcome, FirstMessage, MessageRef,
    NotificationActivities, PlanInput, PrepareInput, PrepareOutcome, failure_types,
};
use busflow_activities::planning::ChannelStep;
use busflow_activities::triggers::Trigger;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use temporalio_common::RetryPolicy;
use temporalio_common::error::ActivityExecutionError;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::workflows::select;
use temporalio_sdk::{
    ApplicationFailure, LocalActivityOptions, SyncWorkflowContext, TimerResult, WorkflowContext,
    WorkflowContextView, WorkflowResult, WorkflowTermination,
};

/// What the API asks for: who, about what, and (optionally) over which channels.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotificationRequest {
    pub tenant_id: TenantId,
    pub contact_id: ContactId,
    pub trigger_event: Trigger,
    /// The Hasura event id (or another idempotency key) that caused this.
    pub source_event_id: String,
    /// An explicit chain (an agent reply goes out on its conversation's
    /// channel); `None` plans it from the registry and the tenant's overrides.
    #[serde(default)]
    pub channels: Option<Vec<Channel>>,
    /// Template variables from the event, e.g. `{"booking": {...}}`.
    pub variables: serde_json::Value,
    /// How long one channel's dispatch may keep retrying before it counts as failed.
    #[serde(default = "default_step_deadline_secs")]
    pub step_deadline_secs: u64,
    /// A retry of a failed message links its first message to that one.
    #[serde(default)]
    pub replaces_message_id: Option<MessageId>,
    /// An agent reply: the conversation, the account it goes out from, and
    /// the agent's text (no template).
    #[serde(default)]
    pub reply: Option<ConversationReply>,
}

/// What makes a notification an agent's reply in a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationReply {
    pub conversation_id: uuid::Uuid,
    pub channel_account_id: ChannelAccountId,
    pub message: DirectMessage,
}

fn default_step_deadline_secs() -> u64 {
    15 * 60
}

/// How the notification ended (the workflow's result).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationOutcome {
    /// The message that got through, if one did.
    pub delivered: Option<DeliveredMessage>,
    /// Why nothing was sent (no reachable channel).
    pub not_sent_reason: Option<String>,
    /// One line per channel tried, in order.
    pub attempts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveredMessage {
    pub message_id: MessageId,
    pub channel: Channel,
    pub external_message_id: String,
    /// DELIVERED or READ; SENT for channels without receipts.
    pub status: MessageStatus,
}

/// A provider receipt, relayed by the webhook handlers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryUpdate {
    pub message_id: MessageId,
    pub status: MessageStatus,
    #[serde(default)]
    pub reason: Option<String>,
}

/// What the workflow is doing, for the `progress` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationProgress {
    /// Quiet hours: held until this moment (Unix ms) before the first send.
    #[serde(default)]
    pub held_until_ms: Option<i64>,
    pub current_channel: Option<Channel>,
    pub current_message: Option<MessageId>,
    pub attempts: Vec<String>,
}

#[workflow]
#[derive(Default)]
pub struct NotificationWorkflow {
    /// Latest receipt per message (only ever moves forward).
    receipts: BTreeMap<MessageId, DeliveryUpdate>,
    progress: NotificationProgress,
    /// Every message shown in the search attributes so far, oldest first.
    shown: Vec<MessageId>,
}

/// How waiting on one channel ended.
enum Wait {
    Delivered(MessageStatus),
    Failed(String),
    TimedOut(u64),
    /// The send was claimed and its outcome never became known.
    Unknown(String),
}

#[workflow_methods]
impl NotificationWorkflow {
    #[run(name = "NotificationWorkflow")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        request: NotificationRequest,
    ) -> WorkflowResult<NotificationOutcome> {
        let first_message = MessageId(deterministic_uuid(&ctx.uuid4()));
        let planned = ctx
            .execute_local_activity(
                NotificationActivities::plan_notification,
                PlanInput {
                    tenant_id: request.tenant_id,
                    contact_id: request.contact_id,
                    trigger_event: request.trigger_event,
                    workflow_id: ctx.workflow_id().to_owned(),
                    source_event_id: request.source_event_id.clone(),
                    variables: request.variables.clone(),
                    channels: request.channels.clone(),
                    first: Some(FirstMessage {
                        message_id: first_message,
                        replaces_message_id: request.replaces_message_id,
                        conversation_id: request.reply.as_ref().map(|r| r.conversation_id),
                        channel_account_id: request.reply.as_ref().map(|r| r.channel_account_id),
                        direct: request.reply.as_ref().map(|r| r.message.clone()),
                    }),
                },
                db_step("plan the channel chain and queue the first message"),
            )
            .await?;
        let plan = planned.plan;
        let mut first_prepared = planned.first;
        if plan.steps.is_empty() {
            let reason = plan.not_sent_reason();
            ctx.upsert_search_attributes(
                [sa::NOTIFICATION_STATUS.value_set("NOT_SENT".to_owned())],
            );
            ctx.set_current_details(reason.clone());
            return Ok(NotificationOutcome {
                delivered: None,
                not_sent_reason: Some(reason),
                attempts: plan.skipped,
            });
        }

        if let Some(until_ms) = plan.hold_until_ms {
            Self::hold_for_quiet_hours(ctx, until_ms).await?;
        }

        let workflow_id = ctx.workflow_id().to_owned();
        let mut replaces: Option<MessageId> = request.replaces_message_id;
        // A channel whose outcome stayed unknown may have reached the person.
        let mut maybe_reached = false;
        let mut last: Option<(Channel, MessageId)> = None;
        for (index, step) in plan.steps.iter().enumerate() {
            let attempt = i16::try_from(index + 1).unwrap_or(i16::MAX);
            let message_id = if index == 0 {
                first_message
            } else {
                MessageId(deterministic_uuid(&ctx.uuid4()))
            };
            let channel = step.channel;
            ctx.state_mut(|s| {
                s.progress.current_channel = Some(channel);
                s.progress.current_message = Some(message_id);
            });
            let queued = match first_prepared.take() {
                Some(prepared) if index == 0 => prepared,
                _ => {
                    ctx.execute_local_activity(
                        NotificationActivities::prepare_notification,
                        PrepareInput {
                            tenant_id: request.tenant_id,
                            contact_id: request.contact_id,
                            trigger_event: request.trigger_event,
                            channel,
                            workflow_id: workflow_id.clone(),
                            attempt,
                            message_id,
                            replaces_message_id: replaces,
                            variables: request.variables.clone(),
                            conversation_id: request.reply.as_ref().map(|r| r.conversation_id),
                            channel_account_id: request
                                .reply
                                .as_ref()
                                .map(|r| r.channel_account_id),
                            direct: request.reply.as_ref().map(|r| r.message.clone()),
                        },
                        db_step("render and queue the message"),
                    )
                    .await?
                }
            };
            let prepared = match queued {
                PrepareOutcome::Queued(prepared) => prepared,
                PrepareOutcome::Unusable { reason } => {
                    let line = format!("{channel}: skipped: {reason}");
                    ctx.state_mut(|s| s.progress.attempts.push(line));
                    continue;
                }
            };
            let message_id = prepared.message_id;
            last = Some((channel, message_id));

            let outcome = Self::dispatch(ctx, &request, channel, message_id).await?;

            let sent = match outcome {
                DispatchOutcome::Rejected { reason, .. } => Err(Wait::Failed(reason)),
                DispatchOutcome::Sent {
                    external_message_id,
                    status,
                } => Ok((external_message_id, status, None)),
                DispatchOutcome::Unconfirmed { reason } => {
                    Ok((String::new(), MessageStatus::Sending, Some(reason)))
                }
                DispatchOutcome::Held { .. } => {
                    Err(Wait::Failed("held by the send-rate limit".to_owned()))
                }
            };
            let result = match sent {
                Err(wait) => wait,
                Ok((external_message_id, status, unconfirmed)) => {
                    let waited =
                        Self::await_receipt(ctx, &request, step, message_id, status, unconfirmed)
                            .await?;
                    if let Wait::Delivered(status) = waited {
                        let line = format!("{channel}: {status}");
                        ctx.state_mut(|s| s.progress.attempts.push(line));
                        show(ctx, channel, message_id, status.as_str());
                        let external_message_id = if external_message_id.is_empty() {
                            Self::provider_id(ctx, &request, message_id).await?
                        } else {
                            external_message_id
                        };
                        return Ok(NotificationOutcome {
                            delivered: Some(DeliveredMessage {
                                message_id,
                                channel,
                                external_message_id,
                                status,
                            }),
                            not_sent_reason: None,
                            attempts: ctx.state(|s| s.progress.attempts.clone()),
                        });
                    }
                    waited
                }
            };
            let line = match result {
                Wait::Failed(reason) => format!("{channel}: failed: {reason}"),
                Wait::TimedOut(secs) => format!("{channel}: no delivery receipt within {secs}s"),
                Wait::Delivered(status) => format!("{channel}: {status}"),
                Wait::Unknown(reason) => {
                    maybe_reached = true;
                    format!("{channel}: outcome unknown, not sent again on this channel: {reason}")
                }
            };
            ctx.state_mut(|s| s.progress.attempts.push(line));
            replaces = Some(message_id);
        }

        let attempts = ctx.state(|s| s.progress.attempts.join("; "));
        let (status, failure, type_name) = if maybe_reached {
            (
                "UNCONFIRMED",
                format!("notification not confirmed (it may have reached the person): {attempts}"),
                failure_types::NOTIFICATION_UNCONFIRMED,
            )
        } else {
            (
                "FAILED",
                format!("notification not delivered: {attempts}"),
                failure_types::NOTIFICATION_UNDELIVERABLE,
            )
        };
        match last {
            Some((channel, message_id)) => show(ctx, channel, message_id, status),
            None => {
                ctx.upsert_search_attributes([sa::NOTIFICATION_STATUS.value_set(status.to_owned())])
            }
        }
        Err(ApplicationFailure::builder(failure)
            .type_name(type_name.to_owned())
            .non_retryable(true)
            .build()
            .into())
    }

    /// A provider receipt for one of this workflow's messages.
    #[signal(name = "delivery_status")]
    pub fn delivery_status(
        &mut self,
        _ctx: &mut SyncWorkflowContext<Self>,
        update: DeliveryUpdate,
    ) {
        let newer = self
            .receipts
            .get(&update.message_id)
            .is_none_or(|known| is_forward(known.status, update.status));
        if newer {
            self.receipts.insert(update.message_id, update);
        }
    }

    /// Which channel the notification is on and what happened so far.
    #[query(name = "progress")]
    pub fn progress(&self, _ctx: &WorkflowContextView) -> NotificationProgress {
        self.progress.clone()
    }
}

impl NotificationWorkflow {
    /// Quiet hours: a durable timer until the recipient's send window opens.
    async fn hold_for_quiet_hours(
        ctx: &mut WorkflowContext<Self>,
        until_ms: i64,
    ) -> WorkflowResult<()> {
        let now_ms = unix_ms(ctx.workflow_time()).unwrap_or(until_ms);
        let Ok(wait_ms) = u64::try_from(until_ms - now_ms) else {
            return Ok(());
        };
        if wait_ms == 0 {
            return Ok(());
        }
        ctx.upsert_search_attributes([sa::NOTIFICATION_STATUS.value_set("HELD".to_owned())]);
        ctx.set_current_details(format!(
            "held for quiet hours: sends in {}s (at Unix ms {until_ms})",
            wait_ms / 1000
        ));
        ctx.state_mut(|s| s.progress.held_until_ms = Some(until_ms));
        if ctx.timer(Duration::from_millis(wait_ms)).await == TimerResult::Cancelled {
            return Err(WorkflowTermination::cancelled());
        }
        ctx.state_mut(|s| s.progress.held_until_ms = None);
        Ok(())
    }

    /// Dispatches one message within the step deadline: long rate-limit waits
    /// are durable timers, and a dispatch that runs out of deadline (an
    /// outage, persistent 5xx or 429) is abandoned: its message is FAILED
    /// unless its send was claimed, and the notification falls back.
    async fn dispatch(
        ctx: &mut WorkflowContext<Self>,
        request: &NotificationRequest,
        channel: Channel,
        message_id: MessageId,
    ) -> WorkflowResult<DispatchOutcome> {
        let deadline = Duration::from_secs(request.step_deadline_secs);
        let started = ctx.workflow_time();
        let elapsed = |ctx: &WorkflowContext<Self>| match (ctx.workflow_time(), started) {
            (Some(now), Some(start)) => now.duration_since(start).unwrap_or_default(),
            _ => Duration::ZERO,
        };
        let mut backoff = Duration::from_secs(1);
        loop {
            let remaining = deadline.saturating_sub(elapsed(ctx));
            if remaining.is_zero() {
                let reason = format!(
                    "not sent within the step deadline of {}s",
                    deadline.as_secs()
                );
                return Self::abandon(ctx, request, message_id, reason).await;
            }
            let attempt = ctx
                .execute_local_activity(
                    NotificationActivities::dispatch_message,
                    DispatchInput {
                        tenant_id: request.tenant_id,
                        message_id,
                    },
                    dispatch_options(remaining, channel, message_id),
                )
                .await;
            match attempt {
                Ok(DispatchOutcome::Held { wait_ms }) => {
                    let wait = Duration::from_millis(wait_ms);
                    if wait >= deadline.saturating_sub(elapsed(ctx)) {
                        let reason = format!(
                            "held by the send-rate limit for {}s, past the step deadline of {}s",
                            wait.as_secs(),
                            deadline.as_secs()
                        );
                        return Self::abandon(ctx, request, message_id, reason).await;
                    }
                    ctx.set_current_details(format!(
                        "{channel} message {message_id} held by the send-rate limit for {}s",
                        wait.as_secs()
                    ));
                    show(ctx, channel, message_id, "HELD");
                    if ctx.timer(wait).await == TimerResult::Cancelled {
                        return Err(WorkflowTermination::cancelled());
                    }
                }
                Ok(outcome) => return Ok(outcome),
                Err(ActivityExecutionError::Cancelled(_)) => {
                    return Err(WorkflowTermination::cancelled());
                }
                Err(e) => {
                    // Retried here rather than by the local activity's own
                    // policy: each wait is a durable timer that the step
                    // deadline bounds.
                    let wait = match retry_delay(&e) {
                        Some(asked) => asked.unwrap_or(backoff),
                        None => Duration::MAX,
                    };
                    if wait >= deadline.saturating_sub(elapsed(ctx)) {
                        let reason = format!("dispatch gave up: {}", root_cause(&e));
                        return Self::abandon(ctx, request, message_id, reason).await;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    if ctx.timer(wait).await == TimerResult::Cancelled {
                        return Err(WorkflowTermination::cancelled());
                    }
                }
            }
        }
    }

    async fn abandon(
        ctx: &mut WorkflowContext<Self>,
        request: &NotificationRequest,
        message_id: MessageId,
        reason: String,
    ) -> WorkflowResult<DispatchOutcome> {
        Ok(ctx
            .execute_local_activity(
                NotificationActivities::abandon_dispatch,
                AbandonInput {
                    tenant_id: request.tenant_id,
                    message_id,
                    reason,
                },
                db_step("fail the message that could not be sent"),
            )
            .await?)
    }

    /// The provider's id of a message whose send answer was lost, learnt
    /// from the receipt that settled it.
    async fn provider_id(
        ctx: &mut WorkflowContext<Self>,
        request: &NotificationRequest,
        message_id: MessageId,
    ) -> WorkflowResult<String> {
        let current = ctx
            .execute_local_activity(
                NotificationActivities::message_status,
                MessageRef {
                    tenant_id: request.tenant_id,
                    message_id,
                },
                db_step("read the provider's id"),
            )
            .await?;
        Ok(current.external_message_id.unwrap_or_default())
    }

    /// Waits on one sent message until it is delivered, fails, or the channel's
    /// delivery timeout passes.
    async fn await_receipt(
        ctx: &mut WorkflowContext<Self>,
        request: &NotificationRequest,
        step: &ChannelStep,
        message_id: MessageId,
        status_after_send: MessageStatus,
        unconfirmed: Option<String>,
    ) -> WorkflowResult<Wait> {
        if let Some(done) = settled(status_after_send, None) {
            return Ok(done);
        }
        let Some(timeout_secs) = step.delivery_timeout_secs else {
            // No receipts on this channel: accepted is as good as it gets,
            // and an unknown outcome stays unknown.
            return Ok(match unconfirmed {
                Some(reason) => Wait::Unknown(reason),
                None => Wait::Delivered(status_after_send),
            });
        };
        show(ctx, step.channel, message_id, status_after_send.as_str());
        let mut receipt_arrived = std::pin::pin!(ctx.wait_condition(|s| {
            s.receipts
                .get(&message_id)
                .is_some_and(|r| settled(r.status, None).is_some())
        }));
        let mut timer = std::pin::pin!(ctx.timer(Duration::from_secs(timeout_secs)));
        select! {
            arrived = receipt_arrived => arrived?,
            fired = timer => {
                if fired == TimerResult::Cancelled {
                    return Err(WorkflowTermination::cancelled());
                }
                let current = ctx
                    .execute_local_activity(
                        NotificationActivities::message_status,
                        MessageRef { tenant_id: request.tenant_id, message_id },
                        db_step("re-read the delivery status"),
                    )
                    .await?;
                return Ok(match settled(current.status, current.failed_reason) {
                    Some(done) => done,
                    None if current.status == MessageStatus::Sending => Wait::Unknown(
                        current.unknown_reason.or(unconfirmed).unwrap_or_else(|| "the send was claimed and never recorded".to_owned()),
                    ),
                    None => Wait::TimedOut(timeout_secs),
                });
            }
        };
        let receipt = ctx.state(|s| s.receipts.get(&message_id).cloned());
        Ok(receipt
            .and_then(|r| settled(r.status, r.reason))
            .unwrap_or(Wait::TimedOut(timeout_secs)))
    }
}

/// The innermost failure of an activity that gave up: the provider's last
/// refusal, not "activity task failed" or the timeout wrapped around it.
fn root_cause(error: &ActivityExecutionError) -> String {
    let Some(mut failure) = error.failure() else {
        return error.to_string();
    };
    while let Some(cause) = failure.cause.as_deref() {
        failure = cause;
    }
    failure.message.clone()
}

/// How long to wait before dispatching again after `error`: `None` when it
/// must not be retried (a permanent failure), `Some(None)` for the caller's
/// backoff, `Some(Some(d))` when the failure asked for `d` (a rate limit, a
/// provider's Retry-After).
fn retry_delay(error: &ActivityExecutionError) -> Option<Option<Duration>> {
    let Some(mut failure) = error.failure() else {
        return Some(None);
    };
    while let Some(cause) = failure.cause.as_deref() {
        failure = cause;
    }
    match failure.maybe_application_failure() {
        Some(app) if app.non_retryable => None,
        Some(app) => Some(
            app.next_retry_delay
                .and_then(|d| Duration::try_from(d).ok())
                .filter(|d| !d.is_zero()),
        ),
        None => Some(None),
    }
}

/// DELIVERED/READ end the notification; FAILED moves on; anything else waits.
fn settled(status: MessageStatus, reason: Option<String>) -> Option<Wait> {
    match status {
        MessageStatus::Delivered | MessageStatus::Read => Some(Wait::Delivered(status)),
        MessageStatus::Failed => {
            Some(Wait::Failed(reason.unwrap_or_else(|| {
                "the provider reported a failure".to_owned()
            })))
        }
        MessageStatus::Queued | MessageStatus::Sending | MessageStatus::Sent => None,
    }
}

/// QUEUED < SENDING < SENT < DELIVERED < READ; FAILED only from QUEUED,
/// SENDING or SENT.
fn is_forward(from: MessageStatus, to: MessageStatus) -> bool {
    use MessageStatus::*;
    match (from, to) {
        (Failed, _) => false,
        (Queued | Sending | Sent, Failed) => true,
        (_, Failed) => false,
        (from, to) => rank(to) > rank(from),
    }
}

fn rank(status: MessageStatus) -> u8 {
    match status {
        MessageStatus::Queued => 0,
        MessageStatus::Sending => 1,
        MessageStatus::Sent => 2,
        MessageStatus::Delivered => 3,
        MessageStatus::Read => 4,
        MessageStatus::Failed => 5,
    }
}

/// Short Postgres steps: local activities, retried for as long as Postgres
/// is away (an outage delays a notification, it does not fail it).
fn db_step(summary: &str) -> LocalActivityOptions {
    postgres_step(summary, Duration::from_secs(10))
}

/// One dispatch attempt's budget: the provider call (15 s at most, connect
/// included), recording it (up to `RECORD_PATIENCE`), and the reads and the
/// rate-limit take before it (each bounded by the pool's 5 s acquire).
const DISPATCH_START_TO_CLOSE: Duration = Duration::from_secs(75);

/// The provider call, as a local activity: no history events of its own
/// beyond its marker, and no task round trip through the server. One
/// attempt each: [`NotificationWorkflow::dispatch`] retries with backoff on
/// timers inside what is left of the step deadline. A worker that dies
/// mid-call loses its workflow task; the next one replays and runs the
/// dispatch again, which finds the send claimed and does not repeat it.
fn dispatch_options(
    remaining: Duration,
    channel: Channel,
    message_id: MessageId,
) -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .schedule_to_close_timeout(remaining)
        .start_to_close_timeout(DISPATCH_START_TO_CLOSE)
        .retry_policy(RetryPolicy::builder().maximum_attempts(1).build())
        .summary(format!("send {channel} message {message_id}"))
        .build()
}

/// Shows the notification's current message in its search attributes, in
/// one upsert (each upsert is a history event), with every message it has
/// had: ops find the notification by an earlier attempt's id too.
fn show(
    ctx: &WorkflowContext<NotificationWorkflow>,
    channel: Channel,
    message_id: MessageId,
    status: &str,
) {
    let shown = ctx.state_mut(|s| {
        if !s.shown.contains(&message_id) {
            s.shown.push(message_id);
        }
        s.shown.iter().map(ToString::to_string).collect::<Vec<_>>()
    });
    ctx.upsert_search_attributes([
        sa::CHANNEL.value_set(channel.as_str().to_owned()),
        sa::MESSAGE_ID.value_set(message_id.to_string()),
        sa::MESSAGE_IDS.value_set(shown),
        sa::NOTIFICATION_STATUS.value_set(status.to_owned()),
    ]);
}

/// `ctx.uuid4()` is replay-safe; parsing it cannot fail, but a workflow must
/// not panic, so a malformed value maps to the nil UUID (never stored: the
/// insert would collide and return the existing row).
fn deterministic_uuid(raw: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(raw).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use MessageStatus::*;

    #[test]
    fn receipts_only_move_forward() {
        assert!(is_forward(Sent, Delivered));
        assert!(is_forward(Delivered, Read));
        assert!(is_forward(Sent, Read), "read may arrive before delivered");
        assert!(!is_forward(Read, Delivered));
        assert!(is_forward(Sent, Failed));
        assert!(
            !is_forward(Delivered, Failed),
            "a delivered message does not fail later"
        );
        assert!(!is_forward(Failed, Read), "FAILED is terminal");
    }
}
