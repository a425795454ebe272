//! What the provisioning workflows share: how a connection ends, the
//! options of a provider step, and the moves of the account at the start
//! and end of a connection.

use crate::steps::postgres_step;
use busflow_activities::model::ChannelAccountStatus;
use busflow_activities::provisioning::{AccountRef, ProvisioningActivities, Settle, Step};
use busflow_activities::store::channel_accounts::Move;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use temporalio_common::RetryPolicy;
use temporalio_sdk::{ActivityCloseTimeouts, ActivityOptions, WorkflowContext, WorkflowResult};

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectOutcome {
    /// ACTIVE: the number sends, with `approved` of `templates` usable.
    Connected { approved: u32, templates: u32 },
    /// ATTENTION: `step` could not be done, for `reason`.
    NeedsAttention { step: String, reason: String },
    /// The operator moved the account meanwhile (disconnected it): it is
    /// left as they left it.
    Overtaken { status: ChannelAccountStatus },
}

/// How long one provider step keeps retrying before the account is left
/// in ATTENTION.
const STEP_PATIENCE: Duration = Duration::from_secs(3600);

/// A provider (Graph API, SES) step: one minute per attempt, retried with backoff (2 s to
/// 5 min) for an hour.
pub(crate) fn provider_step(summary: &str) -> ActivityOptions {
    ActivityOptions::with_close_timeouts(ActivityCloseTimeouts::ScheduleAndStartToClose {
        schedule_to_close: STEP_PATIENCE,
        start_to_close: Duration::from_secs(60),
    })
    .retry_policy(
        RetryPolicy::builder()
            .initial_interval(Duration::from_secs(2))
            .backoff_coefficient(2.0)
            .maximum_interval(Duration::from_secs(300))
            .build(),
    )
    .summary(summary.to_owned())
    .build()
}

/// Moves the account to VERIFYING; the outcome if it may not be.
pub(crate) async fn begin<W>(
    ctx: &mut WorkflowContext<W>,
    account: AccountRef,
) -> WorkflowResult<Option<ConnectOutcome>> {
    let begun = ctx
        .execute_local_activity(
            ProvisioningActivities::begin_verification,
            account,
            postgres_step("move the account to VERIFYING", Duration::from_secs(10)),
        )
        .await?;
    Ok(match begun {
        Step::Done => None,
        Step::Refused { reason } => Some(ConnectOutcome::NeedsAttention {
            step: "begin".into(),
            reason,
        }),
    })
}

/// Moves the account to ACTIVE; the outcome if it was no longer the
/// workflow's to move.
pub(crate) async fn activate<W>(
    ctx: &mut WorkflowContext<W>,
    account: AccountRef,
) -> WorkflowResult<Option<ConnectOutcome>> {
    let settled = ctx
        .execute_local_activity(
            ProvisioningActivities::settle_provisioning,
            Settle {
                account,
                to: ChannelAccountStatus::Active,
                reason: None,
            },
            postgres_step("move the account to ACTIVE", Duration::from_secs(10)),
        )
        .await?;
    Ok(overtaken(ctx, settled))
}

/// Why a step stopped the connection, if it did: Meta's refusal, or the
/// error it kept failing with until its patience ran out.
pub(crate) fn refusal<E: std::fmt::Display>(done: Result<Step, E>) -> Option<String> {
    match done {
        Ok(Step::Done) => None,
        Ok(Step::Refused { reason }) => Some(reason),
        Err(e) => Some(kept_failing(e)),
    }
}

/// Why a step that ran out of patience stopped the connection.
pub(crate) fn kept_failing(e: impl std::fmt::Display) -> String {
    format!("it kept failing for {STEP_PATIENCE:?}: {e}")
}

/// The outcome when the account was no longer the workflow's to move.
pub(crate) fn overtaken<W>(ctx: &mut WorkflowContext<W>, settled: Move) -> Option<ConnectOutcome> {
    let status = match settled {
        Move::Moved { .. } | Move::AlreadyThere => return None,
        Move::Refused { current } => current,
        Move::Missing => ChannelAccountStatus::Disconnected,
    };
    ctx.set_current_details(format!("the account is {status} now; left as it is"));
    Some(ConnectOutcome::Overtaken { status })
}

/// Leaves the account in ATTENTION with what went wrong.
pub(crate) async fn attention<W>(
    ctx: &mut WorkflowContext<W>,
    account: AccountRef,
    step: &str,
    reason: String,
) -> WorkflowResult<ConnectOutcome> {
    let full = format!("{step}: {reason}");
    let settled = ctx
        .execute_local_activity(
            ProvisioningActivities::settle_provisioning,
            Settle {
                account,
                to: ChannelAccountStatus::Attention,
                reason: Some(full.clone()),
            },
            postgres_step("move the account to ATTENTION", Duration::from_secs(10)),
        )
        .await?;
    if let Some(overtaken) = overtaken(ctx, settled) {
        return Ok(overtaken);
    }
    ctx.set_current_details(full);
    Ok(ConnectOutcome::NeedsAttention {
        step: step.to_owned(),
        reason,
    })
}
