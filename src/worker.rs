//! The Temporal worker: registers workflows and activities on the task queue
//! and runs until asked to stop. The worker future is not `Send`; run it on
//! the task that owns the runtime (main, or a dedicated thread in tests).

use anyhow::Context;
use busflow_activities::email_domains::EmailDomainActivities;
use busflow_activities::fanout::FanoutActivities;
use busflow_activities::inbox::InboxActivities;
use busflow_activities::notification::NotificationActivities;
use busflow_activities::providers::aws::{AwsSettings, sdk_config};
use busflow_activities::providers::email::ses::SesEmail;
use busflow_activities::providers::router::Providers;
use busflow_activities::providers::sms::sns::SnsSms;
use busflow_activities::providers::whatsapp::meta::{MetaCloud, MetaSettings};
use busflow_activities::provisioning::ProvisioningActivities;
use busflow_activities::trips::TripActivities;
use busflow_activities::watchdog::{SweepInput, WatchdogActivities};
use busflow_workflows::names::{
    TEMPLATE_SYNC_SCHEDULE_ID, TEMPLATE_SYNC_WORKFLOW_ID, WATCHDOG_SCHEDULE_ID,
    WATCHDOG_WORKFLOW_ID,
};
use busflow_workflows::watchdog::StuckMessageWatchdog;
use busflow_workflows::{
    BatchNotificationWorkflow, ConnectWhatsAppWorkflow, FanoutChunkWorkflow, NotificationWorkflow,
    SnoozeWorkflow, TemplateSyncWorkflow, TripReminderWorkflow, VerifyEmailDomainWorkflow,
};
use sqlx::PgPool;
use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;
use temporalio_client::Client;
use temporalio_client::schedules::{
    CreateScheduleOptions, ScheduleAction, ScheduleError, ScheduleOverlapPolicy, ScheduleSpec,
};
use temporalio_client::tonic;
use temporalio_common::telemetry::TelemetryOptions;
use temporalio_sdk::runtime::worker_tuner::{FixedSizeSlotSupplier, TunerHolder};
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
        traces: Default::default(),
    })
}

/// How the stuck-message watchdog runs.
#[derive(Debug, Clone)]
pub struct WatchdogSettings {
    pub interval: Duration,
    /// A message QUEUED longer than this is stuck.
    pub threshold: Duration,
    pub alert_url: Option<String>,
}

/// Creates the watchdog's Temporal Schedule unless it exists.
pub async fn ensure_watchdog_schedule(
    client: &Client,
    task_queue: &str,
    watchdog: &WatchdogSettings,
) -> anyhow::Result<()> {
    let action = ScheduleAction::start_workflow(
        StuckMessageWatchdog::run,
        SweepInput {
            threshold_secs: watchdog.threshold.as_secs(),
        },
        task_queue,
        WATCHDOG_WORKFLOW_ID,
    );
    ensure_schedule(client, WATCHDOG_SCHEDULE_ID, action, watchdog.interval).await
}

/// How often every connected WhatsApp account's templates are read again.
pub const TEMPLATE_SYNC_INTERVAL: Duration = Duration::from_secs(6 * 3600);

/// Creates the template-sync Schedule unless it exists.
pub async fn ensure_template_sync_schedule(
    client: &Client,
    task_queue: &str,
) -> anyhow::Result<()> {
    let action = ScheduleAction::start_workflow(
        TemplateSyncWorkflow::run,
        (),
        task_queue,
        TEMPLATE_SYNC_WORKFLOW_ID,
    );
    ensure_schedule(
        client,
        TEMPLATE_SYNC_SCHEDULE_ID,
        action,
        TEMPLATE_SYNC_INTERVAL,
    )
    .await
}

/// Creates the Schedule `id` running `action` every `interval` unless it
/// exists. An existing schedule is left as it is (ops may have paused or
/// tuned it in the UI).
async fn ensure_schedule(
    client: &Client,
    id: &str,
    action: ScheduleAction,
    interval: Duration,
) -> anyhow::Result<()> {
    let created = client
        .create_schedule(
            id,
            CreateScheduleOptions::builder()
                .action(action)
                .spec(ScheduleSpec::from_interval(interval))
                .overlap_policy(ScheduleOverlapPolicy::Skip)
                .build(),
        )
        .await;
    match created {
        Ok(_) => {
            tracing::info!("created schedule {id} (every {interval:?})");
            Ok(())
        }
        Err(ScheduleError::Rpc(status)) if status.code() == tonic::Code::AlreadyExists => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("creating schedule {id}"))),
    }
}

/// Task pollers that scale with the backlog: the SDK's single default
/// workflow poller caps a worker near the dev server's ~33 workflows/s.
pub fn pollers() -> PollerBehavior {
    PollerBehavior::Autoscaling(
        AutoscalingOptions::builder()
            .minimum(1)
            .maximum(100)
            .initial(5)
            .build(),
    )
}

/// Connections a worker keeps beyond its slots (schedule setup, sweeps).
const SPARE_CONNECTIONS: u32 = 2;

/// Activities (and, as many again, local activities) one worker runs at
/// once with `pool`. Each holds at most one Postgres connection at a time,
/// so the slots never outnumber the pool: a burst of dispatches cannot
/// starve the step that records a send.
pub fn slots_for(pool: &PgPool) -> usize {
    let connections = pool.options().get_max_connections();
    (connections.saturating_sub(SPARE_CONNECTIONS) / 2).max(1) as usize
}

/// The pool a worker with `slots` activity slots needs.
pub fn pool_size_for(slots: usize) -> u32 {
    u32::try_from(slots.max(1) * 2)
        .unwrap_or(u32::MAX)
        .saturating_add(SPARE_CONNECTIONS)
}

fn tuner(slots: usize) -> TunerHolder {
    TunerHolder::builder()
        .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(WORKFLOW_TASK_SLOTS))
        .activity_task_slot_supplier(FixedSizeSlotSupplier::new(slots))
        .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(slots))
        .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(1))
        .build()
}

/// Workflows a worker keeps in memory by default: three times the workflow
/// task slots, room for every workflow that is busy now. A cached run costs
/// about 60 KB, so the SDK's 1,000 held 60 MB of parked reminders and
/// snoozes. An evicted one replays its short history when its timer or
/// signal wakes it.
pub const MAX_CACHED_WORKFLOWS: usize = 3 * WORKFLOW_TASK_SLOTS;

/// Workflow tasks a worker runs at once.
const WORKFLOW_TASK_SLOTS: usize = 100;

/// Runs the worker until `shutdown` resolves, then drains and returns. Its
/// activity slots follow the pool's size ([`slots_for`]).
pub async fn run(
    client: Client,
    task_queue: &str,
    pool: PgPool,
    activities: NotificationActivities,
    watchdog: &WatchdogSettings,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    run_cached(
        client,
        task_queue,
        pool,
        activities,
        watchdog,
        MAX_CACHED_WORKFLOWS,
        shutdown,
    )
    .await
}

/// [`run`], keeping at most `max_cached_workflows` workflows in memory.
pub async fn run_cached(
    client: Client,
    task_queue: &str,
    pool: PgPool,
    activities: NotificationActivities,
    watchdog: &WatchdogSettings,
    max_cached_workflows: usize,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let telemetry = TelemetryOptions::builder()
        .metrics(busflow_activities::metrics::sdk_meter().context("the SDK's metrics")?)
        .build();
    let runtime = Runtime::from_current_tokio(
        RuntimeOptions::builder()
            .telemetry_options(telemetry)
            .build()
            .map_err(|e| anyhow::anyhow!("the Temporal runtime's options: {e}"))?,
    )
    .context("creating the Temporal runtime")?;
    let slots = slots_for(&pool);
    ensure_watchdog_schedule(&client, task_queue, watchdog).await?;
    ensure_template_sync_schedule(&client, task_queue).await?;
    let provisioning = ProvisioningActivities::new(&activities);
    let email_domains = EmailDomainActivities::new(&activities);
    let fanout = FanoutActivities::new(activities.clone());
    let inbox = InboxActivities::new(pool.clone());
    let trips = TripActivities::new(pool.clone());
    let watchdog_activities =
        WatchdogActivities::new(pool, client.clone(), watchdog.alert_url.clone());
    let options = WorkerOptions::new(task_queue)
        .register_workflow::<NotificationWorkflow>()
        .context("registering NotificationWorkflow")?
        .register_workflow::<SnoozeWorkflow>()
        .context("registering SnoozeWorkflow")?
        .register_activities(activities)
        .register_workflow::<StuckMessageWatchdog>()
        .context("registering StuckMessageWatchdog")?
        .register_workflow::<BatchNotificationWorkflow>()
        .context("registering BatchNotificationWorkflow")?
        .register_workflow::<FanoutChunkWorkflow>()
        .context("registering FanoutChunkWorkflow")?
        .register_activities(fanout)
        .register_workflow::<TripReminderWorkflow>()
        .context("registering TripReminderWorkflow")?
        .register_activities(inbox)
        .register_activities(trips)
        .register_activities(watchdog_activities)
        .register_workflow::<ConnectWhatsAppWorkflow>()
        .context("registering ConnectWhatsAppWorkflow")?
        .register_workflow::<TemplateSyncWorkflow>()
        .context("registering TemplateSyncWorkflow")?
        .register_activities(provisioning)
        .register_workflow::<VerifyEmailDomainWorkflow>()
        .context("registering VerifyEmailDomainWorkflow")?
        .register_activities(email_domains)
        .max_cached_workflows(max_cached_workflows)
        .tuner(tuner(slots))
        .workflow_task_poller_behavior(pollers())
        .activity_task_poller_behavior(pollers())
        // A nondeterministic workflow fails visibly instead of retrying its task forever.
        .workflow_failure_errors(HashSet::from([WorkflowErrorType::Nondeterminism]))
        .build();
    let mut worker =
        Worker::new(&runtime, client, options).context("creating the Temporal worker")?;
    let stop = worker.shutdown_handle();
    tracing::info!(
        task_queue,
        "worker polling task queue {task_queue} with {slots} activity slots"
    );
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
