//! The API's way to Temporal: a lazily connected client (the API starts and
//! answers 503 while Temporal is down, and connects once it is back) and the
//! starters for each workflow.

use anyhow::Context;
use busflow_activities::crypto::KeyRing;
use busflow_activities::email_domains::DomainConnection;
use busflow_activities::model::TenantId;
use busflow_activities::payload_codec::PayloadEncryption;
use busflow_activities::provisioning::ConnectRequest;
use busflow_activities::store::trips::TripSchedule;
use busflow_activities::traces::Traces;
use busflow_activities::workflow_state::{WorkflowState, workflow_state};
use busflow_workflows::names::{memo, search_attributes as sa, workflow_types};
use busflow_workflows::names::{snooze_workflow_id, trip_reminder_workflow_id};
use busflow_workflows::notification::DeliveryUpdate;
use busflow_workflows::{
    BatchNotificationWorkflow, BatchRequest, BookingChange, NotificationRequest,
    NotificationWorkflow, SnoozeRequest, SnoozeWorkflow, TripReminderRequest, TripReminderWorkflow,
};
use busflow_workflows::{ConnectOutcome, ConnectWhatsAppWorkflow, VerifyEmailDomainWorkflow};
use std::time::Duration;
use temporalio_client::{
    Client, ClientOptions, Connection, Url, WorkflowGetResultOptions, WorkflowIdConflictPolicy,
    WorkflowIdReusePolicy, WorkflowSignalOptions, WorkflowStartOptions,
    envconfig::LoadClientConfigProfileOptions, errors::WorkflowStartError,
};
use temporalio_common::search_attributes::SearchAttributes;
use temporalio_common::{HasWorkflowDefinition, MemoValues, SignalDefinition};
use temporalio_sdk::opentelemetry::OpenTelemetryPlugin;
use tokio::sync::OnceCell;
use uuid::Uuid;

/// Where Temporal is. `None` fields come from the standard Temporal
/// environment (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_TLS_*`,
/// `TEMPORAL_API_KEY`, `temporal.toml`).
#[derive(Debug, Clone, Default)]
pub struct TemporalSettings {
    /// `host:port` or a URL.
    pub address: Option<String>,
    pub namespace: Option<String>,
    /// Seals every payload the client hands Temporal (`payload_codec`);
    /// `None` only for tools that read raw histories or drive bare
    /// workflows (the benchmark's floor).
    pub payload_keys: Option<KeyRing>,
    /// When on, the client and the workers made from it carry each trace
    /// through workflows and activities (the SDK's `OpenTelemetryPlugin`).
    pub traces: Traces,
}

/// Connects a client per the settings and the Temporal environment.
pub async fn connect(settings: &TemporalSettings, identity: &str) -> anyhow::Result<Client> {
    let (mut connection, mut client_options) =
        ClientOptions::load_from_config(LoadClientConfigProfileOptions::default()).map_err(
            |e| anyhow::anyhow!("reading Temporal client configuration from the environment: {e}"),
        )?;
    if let Some(address) = &settings.address {
        let url = if address.contains("://") {
            address.clone()
        } else {
            let scheme = if connection.tls_options.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{address}")
        };
        connection.target =
            Url::parse(&url).with_context(|| format!("Temporal address '{address}'"))?;
    }
    if let Some(namespace) = &settings.namespace {
        client_options.namespace = namespace.clone();
    }
    if let Some(keys) = &settings.payload_keys {
        client_options.data_converter = PayloadEncryption::new(keys.clone()).data_converter();
    }
    if let Some(tracer) = settings.traces.tracer() {
        // Plugins are set on the builder only.
        client_options = ClientOptions::new(client_options.namespace)
            .data_converter(client_options.data_converter)
            .client_interceptors(client_options.client_interceptors)
            .plugin(
                OpenTelemetryPlugin::builder()
                    .tracer(tracer.clone())
                    .build(),
            )
            .build();
    }
    connection.identity = identity.to_owned();
    connection.connect_timeout = Some(Duration::from_secs(3));
    let target = connection.target.to_string();
    let connection = Connection::connect(connection)
        .await
        .with_context(|| format!("connecting to Temporal at {target}"))?;
    Client::new(connection, client_options).context("creating the Temporal client")
}

/// Whether a start created the workflow or found it already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StartResult {
    Started,
    AlreadyStarted,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("Temporal is unreachable: {0:#}")]
    Unavailable(anyhow::Error),
}

impl StartError {
    /// The 503 Hasura retries: `what` did not happen because Temporal is down.
    pub fn into_api_error(self, what: &str) -> crate::error::ApiError {
        let StartError::Unavailable(e) = self;
        crate::error::ApiError::unavailable("TEMPORAL_UNAVAILABLE", format!("{what}: {e:#}"))
    }
}

/// Lazily connected starter used by the API handlers.
pub struct TemporalGateway {
    settings: TemporalSettings,
    task_queue: String,
    client: OnceCell<Client>,
}

/// What to show an operator about a notification in the Temporal UI.
#[derive(Debug, Clone)]
pub struct NotificationLabels {
    /// `booking:<id>`, `trip:<id>`…: found with `EntityRefs = 'booking:<id>'`.
    pub entity_refs: Vec<String>,
    pub summary: String,
}

impl TemporalGateway {
    pub fn new(settings: TemporalSettings, task_queue: impl Into<String>) -> Self {
        Self {
            settings,
            task_queue: task_queue.into(),
            client: OnceCell::new(),
        }
    }

    /// The same gateway around an existing client (worker and API in one process).
    pub fn with_client(client: Client, task_queue: impl Into<String>) -> Self {
        Self {
            settings: TemporalSettings::default(),
            task_queue: task_queue.into(),
            client: OnceCell::new_with(Some(client)),
        }
    }

    pub async fn client(&self) -> anyhow::Result<&Client> {
        self.client
            .get_or_try_init(|| connect(&self.settings, "busflow-comms-api"))
            .await
    }

    /// Whether the workflow runs, ended, or never ran.
    pub async fn workflow_state(&self, workflow_id: &str) -> Result<WorkflowState, StartError> {
        let client = self.client().await.map_err(StartError::Unavailable)?;
        workflow_state(client, workflow_id)
            .await
            .map_err(StartError::Unavailable)
    }

    /// Starts the conversation's snooze timer, or moves it to `until`.
    pub async fn snooze(
        &self,
        tenant_id: TenantId,
        conversation_id: Uuid,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StartError> {
        let client = self.client().await.map_err(StartError::Unavailable)?;
        let workflow_id = snooze_workflow_id(tenant_id, conversation_id);
        let until_ms = until.timestamp_millis();
        let options = WorkflowStartOptions::new(self.task_queue.clone(), workflow_id.clone())
            .id_reuse_policy(WorkflowIdReusePolicy::AllowDuplicate)
            .search_attributes(SearchAttributes::new([
                sa::TENANT_ID.value_set(tenant_id.to_string())
            ]))
            .static_summary(format!(
                "snooze conversation {conversation_id} until {until}"
            ))
            .build();
        client
            .signal_with_start_workflow(
                SnoozeWorkflow::run,
                SnoozeRequest {
                    tenant_id,
                    conversation_id,
                    until_ms,
                },
                SnoozeWorkflow::snooze_until,
                until_ms,
                options,
            )
            .await
            .map(|_| ())
            .map_err(|e| StartError::Unavailable(anyhow::Error::new(e)))
    }

    /// Ends the conversation's snooze timer, if one runs.
    pub async fn stop_snooze(&self, tenant_id: TenantId, conversation_id: Uuid, reason: &str) {
        let workflow_id = snooze_workflow_id(tenant_id, conversation_id);
        let result = match self.client().await {
            Ok(client) => client
                .get_workflow_handle::<SnoozeWorkflow>(&workflow_id)
                .signal(
                    SnoozeWorkflow::stop,
                    reason.to_owned(),
                    WorkflowSignalOptions::default(),
                )
                .await
                .map_err(anyhow::Error::new),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            // No timer running (never snoozed, or already fired) is the usual case.
            tracing::debug!(workflow.id = %workflow_id, "snooze not stopped: {e:#}");
        }
    }

    /// Relays a delivery receipt to the notification that owns the message.
    pub async fn signal_delivery(
        &self,
        workflow_id: &str,
        update: DeliveryUpdate,
    ) -> anyhow::Result<()> {
        let client = self.client().await?;
        client
            .get_workflow_handle::<NotificationWorkflow>(workflow_id)
            .signal(
                NotificationWorkflow::delivery_status,
                update,
                WorkflowSignalOptions::default(),
            )
            .await
            .with_context(|| format!("signalling {workflow_id}"))
    }

    /// Tells the trip's reminder about the trip's latest state, starting the
    /// reminder if it does not run.
    pub async fn trip_changed(
        &self,
        tenant_id: TenantId,
        trip_id: Uuid,
        trip: TripSchedule,
        step_deadline_secs: u64,
    ) -> Result<String, StartError> {
        self.signal_reminder(
            tenant_id,
            trip_id,
            step_deadline_secs,
            TripReminderWorkflow::run,
            TripReminderWorkflow::trip_changed,
            trip,
        )
        .await
    }

    /// Tells the trip's reminder that a booking was confirmed or cancelled.
    pub async fn booking_changed(
        &self,
        tenant_id: TenantId,
        trip_id: Uuid,
        change: BookingChange,
        step_deadline_secs: u64,
    ) -> Result<String, StartError> {
        self.signal_reminder(
            tenant_id,
            trip_id,
            step_deadline_secs,
            TripReminderWorkflow::run,
            TripReminderWorkflow::booking_changed,
            change,
        )
        .await
    }

    /// Signal-with-start of the trip's `TripReminderWorkflow`; returns its id.
    /// (`reminder` is `TripReminderWorkflow::run`: the SDK's type for it is private.)
    async fn signal_reminder<W, S>(
        &self,
        tenant_id: TenantId,
        trip_id: Uuid,
        step_deadline_secs: u64,
        reminder: W,
        signal: S,
        input: S::Input,
    ) -> Result<String, StartError>
    where
        W: HasWorkflowDefinition<Input = TripReminderRequest>,
        S: SignalDefinition<Workflow = W::Run>,
        S::Input: Send,
    {
        let client = self.client().await.map_err(StartError::Unavailable)?;
        let (workflow_id, options) = self.reminder_options(tenant_id, trip_id);
        client
            .signal_with_start_workflow(
                reminder,
                TripReminderRequest {
                    tenant_id,
                    trip_id,
                    step_deadline_secs,
                    carried: None,
                },
                signal,
                input,
                options,
            )
            .await
            .map_err(|e| StartError::Unavailable(anyhow::Error::new(e)))?;
        Ok(workflow_id)
    }

    fn reminder_options(
        &self,
        tenant_id: TenantId,
        trip_id: Uuid,
    ) -> (String, WorkflowStartOptions) {
        let workflow_id = trip_reminder_workflow_id(tenant_id, trip_id);
        let options = WorkflowStartOptions::new(self.task_queue.clone(), workflow_id.clone())
            .id_reuse_policy(WorkflowIdReusePolicy::AllowDuplicate)
            .search_attributes(SearchAttributes::new([
                sa::TENANT_ID.value_set(tenant_id.to_string()),
                sa::ENTITY_REFS.value_set(vec![format!("trip:{trip_id}")]),
            ]))
            .static_summary(format!("pre-departure reminder of trip {trip_id}"))
            .build();
        (workflow_id, options)
    }

    /// Starts a fan-out under `workflow_id`; a second start of the same id is
    /// `AlreadyStarted`.
    pub async fn start_batch(
        &self,
        workflow_id: &str,
        request: BatchRequest,
        summary: String,
    ) -> Result<StartResult, StartError> {
        let search_attributes = SearchAttributes::new([
            sa::TENANT_ID.value_set(request.tenant_id.to_string()),
            sa::TRIGGER_EVENT.value_set(request.trigger_event.to_string()),
            sa::ENTITY_REFS.value_set(request.entity_refs.clone()),
        ]);
        self.start_once(
            BatchNotificationWorkflow::run,
            workflow_types::BATCH_NOTIFICATION,
            request,
            workflow_id,
            search_attributes,
            summary,
        )
        .await
    }

    /// Starts `NotificationWorkflow` under `workflow_id`; a second start of the
    /// same id — running or closed — is `AlreadyStarted`, never a second run.
    pub async fn start_notification(
        &self,
        workflow_id: &str,
        request: NotificationRequest,
        labels: NotificationLabels,
    ) -> Result<StartResult, StartError> {
        let search_attributes = busflow_workflows::labels::notification(
            request.tenant_id,
            request.trigger_event,
            request.contact_id,
            &labels.entity_refs,
        );
        self.start_once(
            NotificationWorkflow::run,
            workflow_types::NOTIFICATION,
            request,
            workflow_id,
            search_attributes,
            labels.summary,
        )
        .await
    }

    /// Starts the connection of a WhatsApp number under `workflow_id` (one
    /// per signup: a second start of the same id is `AlreadyStarted`).
    pub async fn start_connect_whatsapp(
        &self,
        workflow_id: &str,
        connection: ConnectRequest,
    ) -> Result<StartResult, StartError> {
        let account = connection.account;
        let search_attributes =
            SearchAttributes::new([sa::TENANT_ID.value_set(account.tenant_id.to_string())]);
        self.start_once(
            ConnectWhatsAppWorkflow::run,
            workflow_types::CONNECT_WHATSAPP,
            connection,
            workflow_id,
            search_attributes,
            format!(
                "connect WhatsApp account {} of tenant {}",
                account.channel_account_id, account.tenant_id
            ),
        )
        .await
    }

    /// Starts the verification of a sending domain under `workflow_id`.
    pub async fn start_verify_email_domain(
        &self,
        workflow_id: &str,
        connection: DomainConnection,
    ) -> Result<StartResult, StartError> {
        let account = connection.account;
        let search_attributes =
            SearchAttributes::new([sa::TENANT_ID.value_set(account.tenant_id.to_string())]);
        self.start_once(
            VerifyEmailDomainWorkflow::run,
            workflow_types::VERIFY_EMAIL_DOMAIN,
            connection,
            workflow_id,
            search_attributes,
            format!(
                "verify the email domain of account {} of tenant {}",
                account.channel_account_id, account.tenant_id
            ),
        )
        .await
    }

    /// The connection's outcome, if it ends within `wait`.
    pub async fn connect_outcome(
        &self,
        workflow_id: &str,
        wait: Duration,
    ) -> Option<ConnectOutcome> {
        let client = self.client().await.ok()?;
        let handle = client.get_workflow_handle::<ConnectWhatsAppWorkflow>(workflow_id);
        tokio::time::timeout(wait, handle.get_result(WorkflowGetResultOptions::default()))
            .await
            .ok()?
            .ok()
    }

    /// Starts `workflow` under `workflow_id` unless that id ever ran (the id
    /// is the idempotency key), with `summary` as memo and static summary.
    async fn start_once<W>(
        &self,
        workflow: W,
        workflow_type: &str,
        input: W::Input,
        workflow_id: &str,
        search_attributes: SearchAttributes,
        summary: String,
    ) -> Result<StartResult, StartError>
    where
        W: HasWorkflowDefinition,
        W::Input: Send,
    {
        let client = self.client().await.map_err(StartError::Unavailable)?;
        let mut memo_values = MemoValues::new();
        memo_values.insert(memo::SUMMARY, summary.clone());
        let options = WorkflowStartOptions::new(self.task_queue.clone(), workflow_id.to_owned())
            .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
            .id_conflict_policy(WorkflowIdConflictPolicy::Fail)
            .search_attributes(search_attributes)
            .memo(memo_values)
            .static_summary(summary)
            .build();
        match client.start_workflow(workflow, input, options).await {
            Ok(_) => {
                tracing::info!(
                    workflow.id = workflow_id,
                    "started {workflow_type} {workflow_id}"
                );
                Ok(StartResult::Started)
            }
            Err(WorkflowStartError::AlreadyStarted { .. }) => Ok(StartResult::AlreadyStarted),
            Err(other) => Err(StartError::Unavailable(anyhow::Error::new(other))),
        }
    }
}
