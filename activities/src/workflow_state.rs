//! Whether a workflow still runs, as ops tools ask it (the watchdog before
//! it marks a message FAILED, `retryMessage` before it starts another
//! delivery).

use temporalio_client::{Client, UntypedWorkflow};
use temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus as ProtoStatus;

/// A workflow id's latest run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkflowState {
    Running,
    /// It ended; how, in Temporal's words (`WORKFLOW_EXECUTION_STATUS_FAILED`…).
    Ended(String),
    /// No workflow ever ran under this id.
    Missing,
}

pub async fn workflow_state(client: &Client, workflow_id: &str) -> anyhow::Result<WorkflowState> {
    let handle = client.get_workflow_handle::<UntypedWorkflow>(workflow_id);
    match handle.describe(Default::default()).await {
        Ok(description) => {
            let status = description
                .raw_description
                .workflow_execution_info
                .as_ref()
                .and_then(|info| ProtoStatus::try_from(info.status).ok())
                .unwrap_or(ProtoStatus::Unspecified);
            Ok(match status {
                ProtoStatus::Running | ProtoStatus::Paused => WorkflowState::Running,
                other => WorkflowState::Ended(other.as_str_name().to_owned()),
            })
        }
        Err(e) if e.to_string().to_lowercase().contains("not found") => Ok(WorkflowState::Missing),
        Err(e) => Err(anyhow::Error::new(e).context(format!("describing {workflow_id}"))),
    }
}
