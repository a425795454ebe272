//! `SnoozeWorkflow` (`snooze/{tenant}/{conversation}`): a durable timer until
//! the conversation's `snoozed_until`. A new snooze time (signal, or
//! signal-with-start from `snoozeConversation`) resets it; `stop` (an inbound
//! message, resolve, unsnooze) ends it. When it fires it reopens the
//! conversation only if it is still SNOOZED with that same time, so a
//! concurrent change always wins over a late timer.

use crate::clock::unix_ms;
use crate::steps::postgres_step;
use busflow_activities::inbox::{InboxActivities, WakeInput, WakeOutcome};
use busflow_activities::model::TenantId;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::workflows::select;
use temporalio_sdk::{
    SyncWorkflowContext, TimerResult, WorkflowContext, WorkflowResult, WorkflowTermination,
};
use uuid::Uuid;

/// Which conversation, and until when (Unix milliseconds).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnoozeRequest {
    pub tenant_id: TenantId,
    pub conversation_id: Uuid,
    pub until_ms: i64,
}

/// How the snooze ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnoozeOutcome {
    /// The timer fired; `reopened` is false when the conversation had changed.
    Fired { reopened: bool },
    /// Stopped before it fired (inbound message, resolve, unsnooze).
    Stopped,
}

#[workflow]
#[derive(Default)]
pub struct SnoozeWorkflow {
    until_ms: Option<i64>,
    stopped: bool,
}

#[workflow_methods]
impl SnoozeWorkflow {
    #[run(name = "SnoozeWorkflow")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        request: SnoozeRequest,
    ) -> WorkflowResult<SnoozeOutcome> {
        // A signal-with-start may already have set a newer time.
        ctx.state_mut(|s| {
            if s.until_ms.is_none() {
                s.until_ms = Some(request.until_ms);
            }
        });
        loop {
            let (until, stopped) =
                ctx.state(|s| (s.until_ms.unwrap_or(request.until_ms), s.stopped));
            if stopped {
                return Ok(SnoozeOutcome::Stopped);
            }
            let now_ms = unix_ms(ctx.workflow_time()).unwrap_or(until);
            let delay =
                Duration::from_millis(u64::try_from(until.saturating_sub(now_ms)).unwrap_or(0));
            let mut changed =
                std::pin::pin!(ctx.wait_condition(move |s| s.stopped || s.until_ms != Some(until)));
            let mut timer = std::pin::pin!(ctx.timer(delay.max(Duration::from_millis(1))));
            let fired = select! {
                waited = changed => { waited?; false },
                result = timer => {
                    if result == TimerResult::Cancelled {
                        return Err(WorkflowTermination::cancelled());
                    }
                    true
                }
            };
            if !fired {
                continue;
            }
            let woke = ctx
                .execute_local_activity(
                    InboxActivities::wake_conversation,
                    WakeInput {
                        tenant_id: request.tenant_id,
                        conversation_id: request.conversation_id,
                        until_ms: until,
                    },
                    postgres_step(
                        "reopen the conversation if it is still snoozed",
                        Duration::from_secs(10),
                    ),
                )
                .await?;
            return Ok(SnoozeOutcome::Fired {
                reopened: woke == WakeOutcome::Reopened,
            });
        }
    }

    /// A new snooze time: the timer restarts from it.
    #[signal(name = "snooze_until")]
    pub fn snooze_until(&mut self, _ctx: &mut SyncWorkflowContext<Self>, until_ms: i64) {
        self.until_ms = Some(until_ms);
    }

    /// The conversation is no longer snoozed: end without reopening anything.
    #[signal(name = "stop")]
    pub fn stop(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _reason: String) {
        self.stopped = true;
    }
}
