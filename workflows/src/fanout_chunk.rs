//! `FanoutChunkWorkflow` (`fanout/{tenant}/{event}/chunk/{hash}`): one
//! event's notification to a few hundred recipients, sent round by round.
//!
//! Plan (activity: take the recipients on, plan each chain) → per round: send
//! every pending recipient's message for the next step of its chain (one
//! activity, many sends, each claimed before it is made) → wait once for the
//! round's receipt windows, reading the statuses from Postgres with growing
//! pauses → whoever is not delivered falls back to the next channel in the
//! next round. A recipient's fallback is its own, as in a single
//! notification; a silent recipient holds up no one's send, only its own
//! next channel.
//!
//! Recipients in quiet hours are each left to a `NotificationWorkflow` of
//! their own (`notify/…`), which holds on a durable timer.

use crate::names::{notification_workflow_id, search_attributes as sa};
use crate::notification::{NotificationRequest, NotificationWorkflow};
use crate::steps::postgres_step;
use busflow_activities::fanout::{
    AbandonRoundInput, ChunkPlanInput, ChunkRecipients, FanoutActivities, MessageSettlement,
    RecipientPlan, RoundInput, RoundMessages, RoundOutcome, RoundSend,
};
use busflow_activities::model::{ContactId, MessageId, MessageStatus, TenantId};
use busflow_activities::notification::DispatchOutcome;
use busflow_activities::triggers::Trigger;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;
use temporalio_common::RetryPolicy;
use temporalio_common::error::ActivityExecutionError;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::workflows::join_all;
use temporalio_sdk::{
    ActivityCloseTimeouts, ActivityOptions, ChildWorkflowOptions, ChildWorkflowStartError,
    ParentClosePolicy, StartChildWorkflowExecutionFailedCause, TimerResult, WorkflowContext,
    WorkflowContextView, WorkflowIdReusePolicy, WorkflowResult, WorkflowTermination,
};

/// One chunk of a fan-out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkRequest {
    pub tenant_id: TenantId,
    pub trigger_event: Trigger,
    pub source_event_id: String,
    pub variables: serde_json::Value,
    pub recipients: ChunkRecipients,
    #[serde(default)]
    pub entity_refs: Vec<String>,
    /// How long one round may keep trying to send before its unsent
    /// messages count as failed.
    pub step_deadline_secs: u64,
}

/// The chunk's counts: its result, and its `progress` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkOutcome {
    pub recipients: u64,
    /// Reached (DELIVERED/READ, or SENT on a channel without receipts).
    pub delivered: u64,
    /// No channel could reach them.
    pub not_sent: u64,
    /// Every channel tried, none delivered.
    pub failed: u64,
    /// None confirmed, and at least one send's outcome is unknown: they may
    /// have been reached.
    pub unconfirmed: u64,
    pub already_notified: u64,
    /// Rounds sent so far (a recipient's n-th round is its n-th channel).
    pub rounds: u32,
    /// Sent messages of the current round still waiting for a receipt.
    pub awaiting_receipts: u64,
}

#[workflow]
#[derive(Default)]
pub struct FanoutChunkWorkflow {
    outcome: ChunkOutcome,
}

/// Where one recipient is in its chain.
struct Recipient {
    plan: RecipientPlan,
    /// Index of the step to send next.
    next: usize,
    last_message: Option<MessageId>,
    /// A send on some channel may have reached the person.
    maybe_reached: bool,
    done: bool,
}

/// A sent message waiting for its receipt.
struct Awaiting {
    recipient: usize,
    message_id: MessageId,
    window: Duration,
}

#[workflow_methods]
impl FanoutChunkWorkflow {
    #[run(name = "FanoutChunkWorkflow")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        request: ChunkRequest,
    ) -> WorkflowResult<ChunkOutcome> {
        let plan = ctx
            .execute_activity(
                FanoutActivities::plan_chunk,
                ChunkPlanInput {
                    tenant_id: request.tenant_id,
                    trigger_event: request.trigger_event,
                    source_event_id: request.source_event_id.clone(),
                    chunk_workflow_id: ctx.workflow_id().to_owned(),
                    variables: request.variables.clone(),
                    recipients: request.recipients.clone(),
                },
                patient_step("plan the chunk's recipients", Duration::from_secs(120)),
            )
            .await?;
        ctx.state_mut(|s| {
            s.outcome.recipients = plan.recipients_read;
            s.outcome.already_notified = plan.already_notified;
            s.outcome.not_sent = plan.not_sent.len() as u64;
        });
        let shared: &WorkflowContext<Self> = ctx;
        let held = join_all(
            plan.held
                .iter()
                .map(|h| Self::notify_on_its_own(shared, &request, h.contact_id)),
        );
        let mut recipients: Vec<Recipient> = plan
            .recipients
            .into_iter()
            .map(|plan| Recipient {
                plan,
                next: 0,
                last_message: None,
                maybe_reached: false,
                done: false,
            })
            .collect();
        Self::send_rounds(shared, &request, &mut recipients).await?;
        for finished in held.await {
            finished?;
        }
        let outcome = ctx.state_mut(|s| {
            s.outcome.awaiting_receipts = 0;
            s.outcome.clone()
        });
        let status = if outcome.failed > 0 {
            "FAILED"
        } else if outcome.unconfirmed > 0 {
            "UNCONFIRMED"
        } else {
            "DELIVERED"
        };
        ctx.upsert_search_attributes([sa::NOTIFICATION_STATUS.value_set(status.to_owned())]);
        ctx.set_current_details(format!(
            "{} recipients: {} delivered, {} not sent, {} failed, {} unconfirmed, {} already notified",
            outcome.recipients,
            outcome.delivered,
            outcome.not_sent,
            outcome.failed,
            outcome.unconfirmed,
            outcome.already_notified
        ));
        Ok(outcome)
    }

    /// Counts so far.
    #[query(name = "progress")]
    pub fn progress(&self, _ctx: &WorkflowContextView) -> ChunkOutcome {
        self.outcome.clone()
    }
}

impl FanoutChunkWorkflow {
    /// Round after round until every recipient is delivered or out of channels.
    async fn send_rounds(
        ctx: &WorkflowContext<Self>,
        request: &ChunkRequest,
        recipients: &mut [Recipient],
    ) -> WorkflowResult<()> {
        let mut attempt: i16 = 0;
        loop {
            let pending: Vec<usize> = (0..recipients.len())
                .filter(|&i| !recipients[i].done)
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            attempt = attempt.saturating_add(1);
            ctx.state_mut(|s| s.outcome.rounds = u32::try_from(attempt).unwrap_or_default());
            let sends: Vec<RoundSend> = pending
                .iter()
                .map(|&i| {
                    let r = &recipients[i];
                    RoundSend {
                        contact_id: r.plan.contact_id,
                        channel: r.plan.steps[r.next].channel,
                        replaces: r.last_message,
                    }
                })
                .collect();
            let outcomes = Self::send_round(ctx, request, attempt, sends).await?;
            let mut awaiting = Vec::new();
            for (&i, outcome) in pending.iter().zip(outcomes) {
                let step = recipients[i].plan.steps[recipients[i].next].clone();
                let window = step.delivery_timeout_secs.map(Duration::from_secs);
                match outcome {
                    RoundOutcome::Unusable { .. } => Self::fall_back(ctx, &mut recipients[i]),
                    RoundOutcome::Dispatched {
                        message_id,
                        outcome,
                    } => {
                        recipients[i].last_message = Some(message_id);
                        match (outcome, window) {
                            (DispatchOutcome::Sent { status, .. }, _) if reached(status) => {
                                Self::delivered(ctx, &mut recipients[i]);
                            }
                            (DispatchOutcome::Sent { .. }, None) => {
                                Self::delivered(ctx, &mut recipients[i]);
                            }
                            (
                                DispatchOutcome::Sent { .. } | DispatchOutcome::Unconfirmed { .. },
                                Some(window),
                            ) => awaiting.push(Awaiting {
                                recipient: i,
                                message_id,
                                window,
                            }),
                            (DispatchOutcome::Unconfirmed { .. }, None) => {
                                recipients[i].maybe_reached = true;
                                Self::fall_back(ctx, &mut recipients[i]);
                            }
                            (
                                DispatchOutcome::Rejected { .. } | DispatchOutcome::Held { .. },
                                _,
                            ) => {
                                Self::fall_back(ctx, &mut recipients[i]);
                            }
                        }
                    }
                }
            }
            Self::await_receipts(ctx, request, recipients, awaiting).await?;
        }
    }

    /// Sends one round, holding on a timer for the rate limit when it asks
    /// for longer than a send waits, within the step deadline; what the
    /// deadline leaves unsent is abandoned (FAILED, or kept when claimed).
    async fn send_round(
        ctx: &WorkflowContext<Self>,
        request: &ChunkRequest,
        attempt: i16,
        sends: Vec<RoundSend>,
    ) -> WorkflowResult<Vec<RoundOutcome>> {
        let deadline = Duration::from_secs(request.step_deadline_secs);
        let started = ctx.workflow_time();
        let elapsed = || match (ctx.workflow_time(), started) {
            (Some(now), Some(start)) => now.duration_since(start).unwrap_or_default(),
            _ => Duration::ZERO,
        };
        let mut outcomes: Vec<Option<RoundOutcome>> = vec![None; sends.len()];
        let mut left: Vec<usize> = (0..sends.len()).collect();
        loop {
            let remaining = deadline.saturating_sub(elapsed());
            let reason = if remaining.is_zero() {
                Some(format!(
                    "not sent within the step deadline of {}s",
                    deadline.as_secs()
                ))
            } else {
                let input = RoundInput {
                    tenant_id: request.tenant_id,
                    trigger_event: request.trigger_event,
                    source_event_id: request.source_event_id.clone(),
                    chunk_workflow_id: ctx.workflow_id().to_owned(),
                    variables: request.variables.clone(),
                    attempt,
                    sends: left.iter().map(|&i| sends[i].clone()).collect(),
                };
                match ctx
                    .execute_activity(
                        FanoutActivities::send_round,
                        input,
                        round_options(remaining, attempt, left.len()),
                    )
                    .await
                {
                    Ok(result) => {
                        let mut held = Vec::new();
                        let mut longest = Duration::ZERO;
                        for (&i, outcome) in left.iter().zip(result.outcomes) {
                            if let RoundOutcome::Dispatched {
                                outcome: DispatchOutcome::Held { wait_ms },
                                ..
                            } = &outcome
                            {
                                held.push(i);
                                longest = longest.max(Duration::from_millis(*wait_ms));
                            }
                            outcomes[i] = Some(outcome);
                        }
                        left = held;
                        if left.is_empty() {
                            break;
                        }
                        if longest >= deadline.saturating_sub(elapsed()) {
                            Some(format!(
                                "held by the send-rate limit for {}s, past the step deadline of {}s",
                                longest.as_secs(),
                                deadline.as_secs()
                            ))
                        } else {
                            ctx.set_current_details(format!(
                                "round {attempt}: {} sends held by the send-rate limit for {}s",
                                left.len(),
                                longest.as_secs()
                            ));
                            if ctx.timer(longest).await == TimerResult::Cancelled {
                                return Err(WorkflowTermination::cancelled());
                            }
                            None
                        }
                    }
                    Err(ActivityExecutionError::Cancelled(_)) => {
                        return Err(WorkflowTermination::cancelled());
                    }
                    Err(e) => Some(format!("the round gave up: {e}")),
                }
            };
            if let Some(reason) = reason {
                Self::abandon(ctx, request, attempt, &sends, &left, reason, &mut outcomes).await?;
                break;
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or(RoundOutcome::Unusable {
                    reason: "not sent".to_owned(),
                })
            })
            .collect())
    }

    /// Gives the round's unsent recipients up.
    async fn abandon(
        ctx: &WorkflowContext<Self>,
        request: &ChunkRequest,
        attempt: i16,
        sends: &[RoundSend],
        left: &[usize],
        reason: String,
        outcomes: &mut [Option<RoundOutcome>],
    ) -> WorkflowResult<()> {
        let settled: HashMap<ContactId, MessageSettlement> = ctx
            .execute_local_activity(
                FanoutActivities::abandon_round,
                AbandonRoundInput {
                    tenant_id: request.tenant_id,
                    source_event_id: request.source_event_id.clone(),
                    attempt,
                    contacts: left.iter().map(|&i| sends[i].contact_id).collect(),
                    reason: reason.clone(),
                },
                postgres_step(
                    "fail the messages that could not be sent",
                    Duration::from_secs(30),
                ),
            )
            .await?
            .into_iter()
            .collect();
        for &i in left {
            outcomes[i] = Some(match settled.get(&sends[i].contact_id) {
                Some(m) => RoundOutcome::Dispatched {
                    message_id: m.message_id,
                    outcome: match m.status {
                        MessageStatus::Failed | MessageStatus::Queued => {
                            DispatchOutcome::Rejected {
                                reason: m.reason.clone().unwrap_or_else(|| reason.clone()),
                                account_problem: false,
                            }
                        }
                        MessageStatus::Sending => DispatchOutcome::Unconfirmed {
                            reason: m.reason.clone().unwrap_or_else(|| reason.clone()),
                        },
                        status => DispatchOutcome::Sent {
                            external_message_id: String::new(),
                            status,
                        },
                    },
                },
                None => RoundOutcome::Unusable {
                    reason: reason.clone(),
                },
            });
        }
        Ok(())
    }

    /// Waits once for the round's receipts: reads the statuses after 1 s,
    /// then after pauses that double up to 30 s, until every message is
    /// settled or its channel's window has passed.
    async fn await_receipts(
        ctx: &WorkflowContext<Self>,
        request: &ChunkRequest,
        recipients: &mut [Recipient],
        mut awaiting: Vec<Awaiting>,
    ) -> WorkflowResult<()> {
        let started = ctx.workflow_time();
        let elapsed = || match (ctx.workflow_time(), started) {
            (Some(now), Some(start)) => now.duration_since(start).unwrap_or_default(),
            _ => Duration::ZERO,
        };
        let mut pause = Duration::from_secs(1);
        while !awaiting.is_empty() {
            ctx.state_mut(|s| s.outcome.awaiting_receipts = awaiting.len() as u64);
            let first_window_end = awaiting
                .iter()
                .map(|a| a.window)
                .min()
                .unwrap_or_default()
                .saturating_sub(elapsed());
            let sleep = pause.min(first_window_end).max(Duration::from_millis(1));
            if ctx.timer(sleep).await == TimerResult::Cancelled {
                return Err(WorkflowTermination::cancelled());
            }
            pause = (pause * 2).min(Duration::from_secs(30));
            let settled: HashMap<MessageId, MessageSettlement> = ctx
                .execute_local_activity(
                    FanoutActivities::unsettled,
                    RoundMessages {
                        tenant_id: request.tenant_id,
                        message_ids: awaiting.iter().map(|a| a.message_id).collect(),
                    },
                    postgres_step("read the round's receipts", Duration::from_secs(30)),
                )
                .await?
                .into_iter()
                .map(|m| (m.message_id, m))
                .collect();
            let now = elapsed();
            let mut still = Vec::with_capacity(awaiting.len());
            for waiting in awaiting {
                let recipient = &mut recipients[waiting.recipient];
                let status = settled.get(&waiting.message_id).map(|m| m.status);
                match status {
                    Some(status) if reached(status) => Self::delivered(ctx, recipient),
                    Some(MessageStatus::Failed) => Self::fall_back(ctx, recipient),
                    _ if now < waiting.window => still.push(waiting),
                    Some(MessageStatus::Sending) => {
                        recipient.maybe_reached = true;
                        Self::fall_back(ctx, recipient);
                    }
                    // No receipt within the window.
                    _ => Self::fall_back(ctx, recipient),
                }
            }
            awaiting = still;
        }
        Ok(())
    }

    fn delivered(ctx: &WorkflowContext<Self>, recipient: &mut Recipient) {
        recipient.done = true;
        ctx.state_mut(|s| s.outcome.delivered += 1);
    }

    /// On to the recipient's next channel, or out of channels.
    fn fall_back(ctx: &WorkflowContext<Self>, recipient: &mut Recipient) {
        recipient.next += 1;
        if recipient.next < recipient.plan.steps.len() {
            return;
        }
        recipient.done = true;
        let unconfirmed = recipient.maybe_reached;
        ctx.state_mut(|s| {
            if unconfirmed {
                s.outcome.unconfirmed += 1;
            } else {
                s.outcome.failed += 1;
            }
        });
    }

    /// A recipient in quiet hours: its own notification workflow, under the
    /// id a single notification would have.
    async fn notify_on_its_own(
        ctx: &WorkflowContext<Self>,
        request: &ChunkRequest,
        contact: ContactId,
    ) -> WorkflowResult<()> {
        let options = ChildWorkflowOptions::builder()
            .workflow_id(notification_workflow_id(
                request.tenant_id,
                &request.source_event_id,
                contact,
            ))
            .parent_close_policy(ParentClosePolicy::Abandon)
            .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
            .search_attributes(crate::labels::notification(
                request.tenant_id,
                request.trigger_event,
                contact,
                &request.entity_refs,
            ))
            .static_summary(format!(
                "{} → contact {contact} (fan-out {}, quiet hours)",
                request.trigger_event, request.source_event_id
            ))
            .build();
        let child_request = NotificationRequest {
            tenant_id: request.tenant_id,
            contact_id: contact,
            trigger_event: request.trigger_event,
            source_event_id: request.source_event_id.clone(),
            channels: None,
            variables: request.variables.clone(),
            step_deadline_secs: request.step_deadline_secs,
            replaces_message_id: None,
            reply: None,
        };
        match ctx
            .start_child_workflow(NotificationWorkflow::run, child_request, options)
            .await
        {
            Ok(child) => {
                let outcome = child.result().await;
                ctx.state_mut(|s| match outcome {
                    Ok(o) if o.delivered.is_some() => s.outcome.delivered += 1,
                    Ok(_) => s.outcome.not_sent += 1,
                    Err(_) => s.outcome.failed += 1,
                });
            }
            Err(ChildWorkflowStartError::StartFailed {
                cause: StartChildWorkflowExecutionFailedCause::WorkflowAlreadyExists,
                ..
            }) => ctx.state_mut(|s| s.outcome.already_notified += 1),
            Err(other) => return Err(other.into()),
        }
        Ok(())
    }
}

/// DELIVERED or READ: the person has it.
fn reached(status: MessageStatus) -> bool {
    matches!(status, MessageStatus::Delivered | MessageStatus::Read)
}

/// An activity that must eventually run: retried with backoff for as long
/// as Postgres is away.
fn patient_step(summary: &str, start_to_close: Duration) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(start_to_close)
        .retry_policy(backoff())
        .summary(summary.to_owned())
        .build()
}

fn backoff() -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_secs(1))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(60))
        .build()
}

/// A round's sends: retried inside what is left of the step deadline, each
/// attempt given ten minutes (a round of hundreds of sends at a shared
/// account's pace), with heartbeats so a dead worker's round resumes in
/// seconds. A retry sends only what is still QUEUED.
fn round_options(remaining: Duration, attempt: i16, sends: usize) -> ActivityOptions {
    ActivityOptions::with_close_timeouts(ActivityCloseTimeouts::ScheduleAndStartToClose {
        schedule_to_close: remaining,
        start_to_close: remaining.min(Duration::from_secs(600)),
    })
    .heartbeat_timeout(busflow_activities::notification::DISPATCH_HEARTBEAT * 5)
    .retry_policy(backoff())
    .summary(format!("round {attempt}: send {sends} messages"))
    .build()
}
