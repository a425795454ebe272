//! The Temporal worker: registers workflows and activities on the task queue
//! and runs until asked to stop. The worker future is not `Send`; run it on
//! the task that owns the runtime (main, or a dedicated thread in tests).

use anyhow::Context;
use busflow_activities::inbox::InboxActivities;
use busflow_activities::notification::NotificationActivities;
use busflow_activities::providers::aws::{AwsSettings, sdk_config};
use busflow_activities::providers::meta::{MetaCloud, MetaSettings};
use busflow_activities::providers::router::Providers;
use busflow_activities::providers::ses::SesEmail;
use busflow_activities::providers::sms::SnsSms;
use busflow_workflows::{NotificationWorkflow, SnoozeWorkflow};
use std::collections::HashSet;
use std::future::Future;
use temporalio_client::Client;
use temporalio_sdk::runtime::{
    AutoscalingOptions, PollerBehavior, RuntimeOptions, WorkflowErrorType,
};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

/// Provider clients from settings. `sandbox_webhook_base` is this service's
/// API, where sandbox accounts post their simulated receipts.
pub async fn providers(
    aws: &AwsSettings,
    meta: MetaSettings,
    sandbox_webhook_base: Option<String>,
) -> anyhow::Result<Providers> {
    let sdk = sdk_config(aws).await;
    Ok(Providers {
        ses: SesEmail::new(&sdk),
        sms: SnsSms::new(&sdk),
        meta: MetaCloud::new(meta).context("building the Meta Graph API client")?,
        sandbox_webhook_base,
    })
}

/// Runs the worker until `shutdown` resolves, then drains and returns.
pub async fn run(
    client: Client,
    task_queue: &str,
    activities: NotificationActivities,
    inbox: InboxActivities,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let runtime = Runtime::from_current_tokio(RuntimeOptions::default())
        .context("creating the Temporal runtime")?;
    let pollers = || {
        PollerBehavior::Autoscaling(
            AutoscalingOptions::builder()
                .minimum(1)
                .maximum(100)
                .initial(5)
                .build(),
        )
    };
    let options = WorkerOptions::new(task_queue)
        .register_workflow::<NotificationWorkflow>()
        .context("registering NotificationWorkflow")?
        .register_workflow::<SnoozeWorkflow>()
        .context("registering SnoozeWorkflow")?
        .register_activities(activities)
        .register_activities(inbox)
        .workflow_task_poller_behavior(pollers())
        .activity_task_poller_behavior(pollers())
        // A nondeterministic workflow fails visibly instead of retrying its task forever.
        .workflow_failure_errors(HashSet::from([WorkflowErrorType::Nondeterminism]))
        .build();
    let mut worker =
        Worker::new(&runtime, client, options).context("creating the Temporal worker")?;
    let stop = worker.shutdown_handle();
    tracing::info!(task_queue, "worker polling task queue {task_queue}");
    let run = worker.run();
    tokio::pin!(run);
    tokio::select! {
        result = &mut run => return result.context("worker stopped"),
        () = shutdown => stop(),
    }
    run.await.context("worker shutdown")?;
    tracing::info!("worker stopped");
    Ok(())
}
