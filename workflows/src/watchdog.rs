//! `StuckMessageWatchdog`: one sweep of messages stuck QUEUED, started every
//! minute by the Temporal Schedule `busflow-stuck-message-watchdog` (created
//! by the worker at start-up, idempotently). See `busflow_activities::watchdog`.

use busflow_activities::watchdog::{SweepInput, SweepReport, WatchdogActivities};
use std::time::Duration;
use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowResult};

#[workflow]
#[derive(Default)]
pub struct StuckMessageWatchdog;

#[workflow_methods]
impl StuckMessageWatchdog {
    #[run(name = "StuckMessageWatchdog")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: SweepInput,
    ) -> WorkflowResult<SweepReport> {
        let report = ctx
            .execute_activity(
                WatchdogActivities::sweep_stuck_messages,
                input,
                ActivityOptions::with_start_to_close_timeout(Duration::from_secs(50))
                    .retry_policy(RetryPolicy::builder().maximum_attempts(3).build())
                    .summary("sweep messages stuck QUEUED".to_owned())
                    .build(),
            )
            .await?;
        ctx.set_current_details(format!(
            "{} stuck, {} reconciled, {} unconfirmed, alerted: {}",
            report.stuck.len(),
            report.reconciled,
            report.unconfirmed.len(),
            report.alerted
        ));
        Ok(report)
    }
}
