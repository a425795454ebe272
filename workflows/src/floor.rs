//! `FloorWorkflow`: one workflow, one no-op activity — the cheapest durable
//! work a Temporal server runs. `busflow-comms bench` runs it on the same
//! server as our notifications and prints our throughput as a ratio of it.

use busflow_activities::floor::FloorActivities;
use std::time::Duration;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowResult};

#[workflow]
#[derive(Default)]
pub struct FloorWorkflow;

#[workflow_methods]
impl FloorWorkflow {
    #[run(name = "FloorWorkflow")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: u64) -> WorkflowResult<u64> {
        Ok(ctx
            .execute_activity(
                FloorActivities::noop,
                input,
                ActivityOptions::start_to_close_timeout(Duration::from_secs(10)),
            )
            .await?)
    }
}
