//! The activities of a notification: prepare (resolve, render, queue) and
//! dispatch (send through the channel's provider, record the outcome).
//!
//! Both are idempotent: prepare inserts one message per workflow step (a retry
//! returns the same row) and dispatch does nothing to a message that already
//! left QUEUED. Inputs and outputs carry ids, never addresses or secrets: those
//! are read from Postgres inside the activity, so Temporal history holds no
//! personal data beyond the event's own variables.

use crate::crypto::KeyRing;
use crate::lifecycle::StatusActor;
use crate::model::{
    Channel, ChannelAccountId, ChannelAccountStatus, ContactId, MessageId, MessageStatus, TenantId,
};
use crate::planning::{self, NotificationPlan};
use crate::providers::{self, Providers};
use crate::providers::{FailureClass, SendMessageCommand};
use crate::store::{self, contacts::Contact, messages::Claim};
use crate::templates::{self, RenderError};
use crate::triggers::{self, Trigger};
use crate::{faults, metrics, rate_limit};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use temporalio_macros::activities;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

/// Application failure types a workflow (and an operator) can tell apart.
pub mod failure_types {
    pub const TEMPLATE_VARIABLE_MISSING: &str = "TemplateVariableMissing";
    pub const TEMPLATE_INVALID: &str = "TemplateInvalid";
    pub const TEMPLATE_NOT_FOUND: &str = "TemplateNotFound";
    pub const CONTACT_NOT_FOUND: &str = "ContactNotFound";
    pub const NO_ADDRESS: &str = "RecipientHasNoAddress";
    pub const NO_CHANNEL_ACCOUNT: &str = "NoActiveChannelAccount";
    pub const MESSAGE_NOT_FOUND: &str = "MessageNotFound";
    pub const PROVIDER_RETRY: &str = "ProviderRetryable";
    pub const NOTIFICATION_UNDELIVERABLE: &str = "NotificationUndeliverable";
    /// No channel confirmed it, and at least one send's outcome is unknown:
    /// it may have reached the person.
    pub const NOTIFICATION_UNCONFIRMED: &str = "NotificationUnconfirmed";
    pub const UNKNOWN_TRIGGER: &str = "UnknownTrigger";
    pub const INVALID_TENANT_SETTINGS: &str = "InvalidTenantSettings";
    /// Held back by a send-rate limit; retried after the wait, never a failure.
    pub const RATE_LIMITED: &str = "RateLimited";
}

/// Input of `prepare_notification`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrepareInput {
    pub tenant_id: TenantId,
    pub contact_id: ContactId,
    pub trigger_event: Trigger,
    pub channel: Channel,
    pub workflow_id: String,
    pub attempt: i16,
    /// Chosen by the workflow (deterministic), so a retry reuses it.
    pub message_id: MessageId,
    pub replaces_message_id: Option<MessageId>,
    /// The event's data, e.g. `{"booking": {...}}`; `contact` and `tenant` are added here.
    pub variables: serde_json::Value,
    /// The conversation this message belongs to (agent replies).
    #[serde(default)]
    pub conversation_id: Option<uuid::Uuid>,
    /// Send from this account rather than the tenant's first one for the channel.
    #[serde(default)]
    pub channel_account_id: Option<ChannelAccountId>,
    /// Text written by an agent: sent as is, no template.
    #[serde(default)]
    pub direct: Option<DirectMessage>,
}

/// A message written by a person rather than rendered from a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectMessage {
    pub body: String,
    #[serde(default)]
    pub subject: Option<String>,
    /// An approved WhatsApp template the agent chose (outside the 24 h window).
    #[serde(default)]
    pub whatsapp_template: Option<crate::providers::WhatsAppTemplate>,
}

/// A message queued for one channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreparedMessage {
    pub message_id: MessageId,
    pub channel: Channel,
    pub channel_account_id: ChannelAccountId,
    pub template_key: String,
}

/// How preparing one channel's message went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PrepareOutcome {
    Queued(PreparedMessage),
    /// This channel cannot carry this notification (no address, no account,
    /// no template for it): the workflow moves on to the next channel.
    Unusable {
        reason: String,
    },
}

/// Input of `plan_notification`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanInput {
    pub tenant_id: TenantId,
    pub contact_id: ContactId,
    pub trigger_event: Trigger,
    /// Recorded with the plan so ops can retry the notification later.
    pub workflow_id: String,
    pub source_event_id: String,
    pub variables: serde_json::Value,
    /// An explicit chain overrides the registry and the tenant's override.
    pub channels: Option<Vec<Channel>>,
    /// Queue the first channel's message in the same step, unless quiet
    /// hours hold it: one local activity less per notification.
    #[serde(default)]
    pub first: Option<FirstMessage>,
}

/// What queueing the first channel's message needs beyond the plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FirstMessage {
    /// Chosen by the workflow (deterministic), so a retry reuses it.
    pub message_id: MessageId,
    pub replaces_message_id: Option<MessageId>,
    pub conversation_id: Option<uuid::Uuid>,
    pub channel_account_id: Option<ChannelAccountId>,
    pub direct: Option<DirectMessage>,
}

/// The plan, and the first channel's message when it was queued with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedNotification {
    #[serde(flatten)]
    pub plan: NotificationPlan,
    #[serde(default)]
    pub first: Option<PrepareOutcome>,
}

/// A message of a tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageRef {
    pub tenant_id: TenantId,
    pub message_id: MessageId,
}

/// A message's current delivery status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageState {
    pub status: MessageStatus,
    pub failed_reason: Option<String>,
    /// SENDING: why the claimed send's outcome is unknown.
    #[serde(default)]
    pub unknown_reason: Option<String>,
    /// The provider's id, once known.
    #[serde(default)]
    pub external_message_id: Option<String>,
}

/// Input of `dispatch_message`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DispatchInput {
    pub tenant_id: TenantId,
    pub message_id: MessageId,
}

/// How a dispatch ended. Retryable failures are not an outcome: they are
/// activity errors that Temporal retries with backoff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DispatchOutcome {
    /// Accepted by the provider. `status` is the message's status right after,
    /// which is further than SENT when a receipt arrived before we recorded
    /// the provider's id.
    Sent {
        external_message_id: String,
        status: MessageStatus,
    },
    /// Permanently refused; the message is FAILED with `reason`.
    Rejected {
        reason: String,
        account_problem: bool,
    },
    /// The send was claimed and may have reached the person, but nobody
    /// knows (a crash, a timeout, an unreadable answer): the message stays
    /// SENDING and is never sent again; a receipt may still settle it.
    Unconfirmed { reason: String },
    /// Held by a send-rate limit for longer than an activity retry should
    /// wait: the workflow sleeps `wait_ms` on a durable timer and dispatches
    /// again. Nothing was claimed.
    Held { wait_ms: u64 },
}

/// Input of `abandon_dispatch`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AbandonInput {
    pub tenant_id: TenantId,
    pub message_id: MessageId,
    pub reason: String,
}

/// The notification activities, registered on the worker.
#[derive(Clone)]
pub struct NotificationActivities {
    pub(crate) pool: PgPool,
    providers: Providers,
    keys: KeyRing,
}

impl NotificationActivities {
    pub fn new(pool: PgPool, providers: Providers, keys: KeyRing) -> Self {
        Self {
            pool,
            providers,
            keys,
        }
    }

    /// What other activity groups built on these share with them.
    pub(crate) fn parts(&self) -> (&PgPool, &KeyRing, &Providers) {
        (&self.pool, &self.keys, &self.providers)
    }
}

#[activities]
impl NotificationActivities {
    /// Plans the channel chain for one recipient (see `crate::planning`).
    #[activity(name = "plan_notification")]
    pub async fn plan_notification(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: PlanInput,
    ) -> Result<PlannedNotification, ActivityError> {
        let pool = &self.pool;
        let trigger = notification_trigger(input.trigger_event)?;
        let view = store::planning_view::read(
            pool,
            input.tenant_id,
            input.contact_id,
            trigger.trigger,
            trigger.name(),
        )
        .await?;
        let contact = view.contact.clone().ok_or_else(|| {
            permanent(
                failure_types::CONTACT_NOT_FOUND,
                format!("contact {} not found", input.contact_id),
            )
        })?;
        let tenant_override = view
            .trigger_override
            .clone()
            .map(|value| store::tenants::parse_override(input.tenant_id, trigger.name(), value))
            .transpose()
            .map_err(override_failure)?;
        let active = store::channel_accounts::channels_of(&view.accounts);
        let request = store::requests::NotificationRequestRow {
            tenant_id: input.tenant_id,
            workflow_id: input.workflow_id.clone(),
            contact_id: contact.id,
            trigger_event: trigger.trigger,
            source_event_id: input.source_event_id.clone(),
            variables: sqlx::types::Json(input.variables.clone()),
        };
        let mut plan = planning::plan(
            trigger,
            input.channels.as_deref(),
            tenant_override.as_ref(),
            &contact,
            &active,
        );
        if trigger.urgency == triggers::Urgency::Normal && !plan.steps.is_empty() {
            plan.hold_until_ms = view.window_opens.map(|at| at.timestamp_millis());
        }
        let first = match (&input.first, plan.steps.first()) {
            (Some(first), Some(step)) if plan.hold_until_ms.is_none() => Some(
                self.prepare(
                    PrepareInput {
                        tenant_id: input.tenant_id,
                        contact_id: contact.id,
                        trigger_event: input.trigger_event,
                        channel: step.channel,
                        workflow_id: input.workflow_id.clone(),
                        attempt: 1,
                        message_id: first.message_id,
                        replaces_message_id: first.replaces_message_id,
                        variables: input.variables,
                        conversation_id: first.conversation_id,
                        channel_account_id: first.channel_account_id,
                        direct: first.direct.clone(),
                    },
                    Preloaded {
                        account: view
                            .accounts
                            .iter()
                            .find(|a| a.channel == step.channel)
                            .cloned(),
                        templates: Some(view.templates_for(contact.kind, step.channel)),
                        contact: Some(contact),
                        tenant: Some(view.tenant),
                        request: Some(&request),
                    },
                )
                .await?,
            ),
            _ => None,
        };
        if !matches!(first, Some(PrepareOutcome::Queued(_))) {
            store::requests::record(pool, &request).await?;
        }
        Ok(PlannedNotification { plan, first })
    }

    /// The message's delivery status as Postgres knows it.
    #[activity(name = "message_status")]
    pub async fn message_status(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: MessageRef,
    ) -> Result<MessageState, ActivityError> {
        let message = outbound(&self.pool, input.tenant_id, input.message_id).await?;
        Ok(MessageState {
            status: message.status,
            failed_reason: message.failed_reason,
            unknown_reason: message.send_unknown_reason,
            external_message_id: message.external_message_id,
        })
    }

    /// Resolves contact, channel account and template, renders, and inserts
    /// the message QUEUED.
    #[activity(name = "prepare_notification")]
    pub async fn prepare_notification(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: PrepareInput,
    ) -> Result<PrepareOutcome, ActivityError> {
        self.prepare(input, Preloaded::default()).await
    }

    /// Sends a QUEUED message through its channel account's provider, once:
    /// the send is claimed (SENDING) before the call, and an attempt that
    /// finds it claimed by an earlier one does not call the provider again.
    /// Heartbeats while the provider answers; a cancelled attempt leaves its
    /// claim, since the request may already have been accepted.
    #[activity(name = "dispatch_message")]
    pub async fn dispatch_message(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: DispatchInput,
    ) -> Result<DispatchOutcome, ActivityError> {
        let _beating = Heartbeats::start(&ctx);
        let pool = &self.pool;
        let (message, account, contact) =
            store::messages::dispatch_view(pool, input.tenant_id, input.message_id)
                .await?
                .ok_or_else(|| {
                    permanent(
                        failure_types::MESSAGE_NOT_FOUND,
                        format!("message {} not found", input.message_id),
                    )
                })?;
        if message.status != MessageStatus::Queued {
            return Ok(outcome_of(&message));
        }
        self.dispatch(
            &ctx,
            &message,
            account.as_ref(),
            contact.as_ref(),
            Pacing::Ask,
        )
        .await
    }

    /// The workflow gave up on a dispatch (its step deadline passed): a
    /// message never claimed is FAILED with the reason; a claimed one may
    /// have been sent and stays as it is.
    #[activity(name = "abandon_dispatch")]
    pub async fn abandon_dispatch(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: AbandonInput,
    ) -> Result<DispatchOutcome, ActivityError> {
        store::messages::mark_failed(&self.pool, input.tenant_id, input.message_id, &input.reason)
            .await?;
        let message = outbound(&self.pool, input.tenant_id, input.message_id).await?;
        Ok(outcome_of(&message))
    }
}

impl NotificationActivities {
    /// `prepare_notification`, with the contact and the tenant's settings
    /// when the caller read them.
    async fn prepare(
        &self,
        input: PrepareInput,
        preloaded: Preloaded<'_>,
    ) -> Result<PrepareOutcome, ActivityError> {
        let pool = &self.pool;
        let Preloaded {
            account: active_account,
            contact,
            tenant,
            templates: tenant_templates,
            request,
        } = preloaded;
        let unusable = |reason: String| Ok(PrepareOutcome::Unusable { reason });
        let contact = match contact {
            Some(contact) => contact,
            None => store::contacts::get(pool, input.tenant_id, input.contact_id)
                .await?
                .ok_or_else(|| {
                    permanent(
                        failure_types::CONTACT_NOT_FOUND,
                        format!("contact {} not found", input.contact_id),
                    )
                })?,
        };
        if recipient_address(&contact, input.channel).is_none() {
            return unusable(format!("contact has no {} address", input.channel));
        }
        let account = match input.channel_account_id {
            Some(id) => store::channel_accounts::get(pool, input.tenant_id, id)
                .await?
                .filter(|a| a.status == ChannelAccountStatus::Active && a.channel == input.channel),
            None => match active_account {
                Some(account) => Some(account),
                None => {
                    store::channel_accounts::active_for_channel(
                        pool,
                        input.tenant_id,
                        input.channel,
                    )
                    .await?
                }
            },
        };
        let Some(account) = account else {
            return unusable(format!(
                "tenant has no ACTIVE {} channel account",
                input.channel
            ));
        };
        let (template_key, rendered) = match &input.direct {
            Some(direct) => (
                format!("{}/direct", input.trigger_event),
                templates::RenderedMessage {
                    subject: direct.subject.clone(),
                    body: direct.body.clone(),
                    body_html: None,
                    whatsapp_template: direct.whatsapp_template.clone(),
                },
            ),
            None => {
                let tenant = match tenant {
                    Some(tenant) => tenant,
                    None => store::tenants::settings(pool, input.tenant_id).await?,
                };
                let locale = contact
                    .locale
                    .clone()
                    .unwrap_or_else(|| tenant.default_locale.clone());
                let chain = templates::locale_chain(&locale);
                let wanted = store::templates::TemplateFor {
                    trigger: input.trigger_event,
                    audience: contact.kind,
                    channel: input.channel,
                };
                let source = match tenant_templates {
                    Some(rows) => store::templates::choose(&rows, wanted, &chain)?,
                    None => {
                        store::templates::resolve(pool, input.tenant_id, wanted, &chain).await?
                    }
                };
                let Some(source) = source else {
                    return unusable(format!(
                        "no {} template for '{}' in {} (tenant or platform)",
                        input.channel,
                        input.trigger_event,
                        chain.join(", ")
                    ));
                };
                let rendered = render_template(
                    &source,
                    input.variables.clone(),
                    &contact,
                    &tenant.display_name,
                )
                .map_err(render_failure)?;
                (source.template_key, rendered)
            }
        };
        let mut rendered = rendered;
        if input.channel == Channel::Email && rendered.body_html.is_none() {
            rendered.body_html = Some(templates::html_from_text(&rendered.body));
        }
        let message_id = store::messages::insert_outbound_queued(
            pool,
            &store::messages::NewOutboundMessage {
                id: input.message_id,
                tenant_id: input.tenant_id,
                contact_id: contact.id,
                channel_account_id: account.id,
                channel: input.channel,
                workflow_id: input.workflow_id.clone(),
                batch_workflow_id: None,
                attempt: input.attempt,
                replaces_message_id: input.replaces_message_id,
                trigger_event: input.trigger_event,
                template_key: template_key.clone(),
                conversation_id: input.conversation_id,
                about: store::conversations::ConversationRefs::of_variables(&input.variables),
                subject: rendered.subject,
                body: rendered.body,
                body_html: rendered.body_html,
                whatsapp_template: rendered.whatsapp_template,
            },
            request,
        )
        .await?;
        tracing::info!(
            tenant.id = %input.tenant_id,
            message.id = %message_id,
            workflow.id = %input.workflow_id,
            "queued {} message {message_id} for {}",
            input.channel,
            input.trigger_event
        );
        Ok(PrepareOutcome::Queued(PreparedMessage {
            message_id,
            channel: input.channel,
            channel_account_id: account.id,
            template_key,
        }))
    }
}

/// What the caller of `prepare` already read.
#[derive(Default)]
struct Preloaded<'a> {
    /// The tenant's ACTIVE account on the message's channel.
    account: Option<store::channel_accounts::ChannelAccount>,
    contact: Option<Contact>,
    tenant: Option<store::tenants::TenantSettings>,
    /// The tenant's own templates for the message's trigger, audience and channel.
    templates: Option<Vec<templates::TemplateSource>>,
    /// The notification's request, recorded with its first message.
    request: Option<&'a store::requests::NotificationRequestRow>,
}

/// How a dispatch waits for its send-rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pacing {
    /// One message per activity: a short wait is an activity retry, a long
    /// one the workflow's durable timer.
    Ask,
    /// Many messages per activity (a fan-out chunk): the caller booked the
    /// send's slot with its group's ([`rate_limit::reserve_many`], up to
    /// [`LONGEST_BOOKED_WAIT`] ahead); the send sleeps until it.
    Booked(rate_limit::Reservation),
}

/// What a send costs its account's rate limit.
pub(crate) fn rate_limited_send<'a>(
    message: &store::messages::OutboundMessage,
    account_id: ChannelAccountId,
    contact_id: ContactId,
    recipient: &'a str,
) -> rate_limit::Send<'a> {
    rate_limit::Send {
        tenant_id: message.tenant_id,
        account_id,
        channel: message.channel,
        contact_id,
        recipient,
        cost: providers::adapter(message.channel).rate_cost(&message.body),
        business_initiated: message.whatsapp_template.is_some(),
    }
}

/// The furthest ahead a fan-out send books its rate-limit slot; a later slot
/// (a spent messaging tier) is the chunk workflow's timer.
pub const LONGEST_BOOKED_WAIT: Duration = Duration::from_secs(30);

impl NotificationActivities {
    /// Sends one QUEUED message, once: checks, waits for the rate limit,
    /// claims the send (SENDING), calls the provider and records the answer.
    /// A message no longer QUEUED is not sent again: its stored state is the
    /// outcome.
    pub(crate) async fn dispatch(
        &self,
        ctx: &ActivityContext,
        message: &store::messages::OutboundMessage,
        account: Option<&store::channel_accounts::ChannelAccount>,
        contact: Option<&Contact>,
        pacing: Pacing,
    ) -> Result<DispatchOutcome, ActivityError> {
        let pool = &self.pool;
        let input = MessageRef {
            tenant_id: message.tenant_id,
            message_id: message.id,
        };
        if message.status != MessageStatus::Queued {
            return Ok(outcome_of(message));
        }
        let (Some(account), Some(contact)) = (account, contact) else {
            return self
                .reject(
                    message,
                    None,
                    "channel account or contact no longer exists",
                    None,
                )
                .await;
        };
        if account.status != ChannelAccountStatus::Active {
            let reason = format!("channel account {} is {}", account.id, account.status);
            return self.reject(message, None, &reason, None).await;
        }
        let Some(recipient) = recipient_address(contact, message.channel) else {
            let reason = format!("contact has no {} address", message.channel);
            return self.reject(message, None, &reason, None).await;
        };
        let whatsapp_template = message.whatsapp_template.clone().map(|t| t.0);
        if message.channel == Channel::WhatsApp && whatsapp_template.is_none() {
            let last_inbound = store::conversations::last_inbound_at(
                pool,
                input.tenant_id,
                contact.id,
                Channel::WhatsApp,
            )
            .await?;
            let window_open = last_inbound
                .is_some_and(|at| chrono::Utc::now() - at < chrono::Duration::hours(24));
            if !window_open {
                let reason = "WhatsApp free-form text is only allowed within 24 h of the contact's last message, \
                              and this template maps to no approved WhatsApp template";
                return self.reject(message, None, reason, None).await;
            }
        }
        let wait = match pacing {
            Pacing::Ask => {
                let send = rate_limited_send(message, account.id, contact.id, &recipient);
                rate_limit::acquire(pool, &account.limits, &send).await?
            }
            Pacing::Booked(reservation) => match reservation {
                rate_limit::Reservation::Go(wait) if wait.is_zero() => None,
                rate_limit::Reservation::Go(wait) => {
                    metrics::global().rate_limited(message.channel, wait);
                    if unless_cancelled(ctx, tokio::time::sleep(wait))
                        .await
                        .is_none()
                    {
                        return Err(ActivityError::cancelled());
                    }
                    None
                }
                rate_limit::Reservation::Held(wait) => Some(wait),
            },
        };
        if let Some(wait) = wait {
            metrics::global().rate_limited(message.channel, wait);
            tracing::debug!(tenant.id = %input.tenant_id, message.id = %message.id, "rate limited for {wait:?}");
            if wait > LONGEST_RETRY_WAIT || matches!(pacing, Pacing::Booked(_)) {
                return Ok(DispatchOutcome::Held {
                    wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                });
            }
            return Err(ActivityError::application(
                ApplicationFailure::builder(format!(
                    "{} account {} is at its send-rate limit; sending in {wait:?}",
                    message.channel, account.id
                ))
                .type_name(failure_types::RATE_LIMITED.to_owned())
                .next_retry_delay(wait)
                .build(),
            ));
        }
        let attempt = uuid::Uuid::new_v4();
        match store::messages::claim_send(pool, input.tenant_id, message.id, attempt).await? {
            Claim::Claimed => {}
            Claim::HeldByEarlierAttempt { .. } | Claim::Ended(_) => {
                let now = outbound(pool, input.tenant_id, message.id).await?;
                if now.status == MessageStatus::Queued {
                    // The earlier attempt released its claim meanwhile.
                    return Err(anyhow::anyhow!(
                        "message {} was released by an earlier attempt; trying again",
                        message.id
                    )
                    .into());
                }
                return Ok(outcome_of(&now));
            }
        }
        faults::reached(faults::Point::Claimed, message.channel);
        let trigger = message
            .trigger_event
            .map(Trigger::as_str)
            .unwrap_or_default();
        let started = Instant::now();
        let record = |outcome: metrics::DispatchOutcome| {
            metrics::global().dispatched(trigger, message.channel, outcome, started.elapsed());
        };
        let command = SendMessageCommand {
            message_id: message.id,
            channel: message.channel,
            recipient,
            subject: message.subject.clone(),
            body: message.body.clone(),
            body_html: message.body_html.clone(),
            whatsapp_template,
        };
        let sent = unless_cancelled(ctx, self.providers.send(&self.keys, account, &command)).await;
        let Some(sent) = sent else {
            record(metrics::DispatchOutcome::Unknown);
            let reason = "the attempt was cancelled while the provider was answering";
            store::messages::note_unknown_outcome(pool, input.tenant_id, message.id, reason)
                .await?;
            return Err(ActivityError::cancelled());
        };
        match sent {
            Ok(accepted) => {
                faults::reached(faults::Point::ProviderAccepted, message.channel);
                record(metrics::DispatchOutcome::Sent);
                let status = record_acceptance(ctx, pool, message, &accepted).await?;
                faults::reached(faults::Point::Recorded, message.channel);
                tracing::info!(
                    tenant.id = %input.tenant_id,
                    message.id = %message.id,
                    "sent {} message {} as {}",
                    message.channel,
                    message.id,
                    accepted.external_message_id
                );
                Ok(DispatchOutcome::Sent {
                    external_message_id: accepted.external_message_id,
                    status,
                })
            }
            Err(failure) => match failure.class {
                FailureClass::Retry => {
                    record(metrics::DispatchOutcome::Retry);
                    store::messages::release_claim(pool, input.tenant_id, message.id, attempt)
                        .await?;
                    tracing::warn!(tenant.id = %input.tenant_id, message.id = %message.id, "dispatch will retry: {failure}");
                    Err(ActivityError::application(
                        ApplicationFailure::builder(failure.to_string())
                            .type_name(failure_types::PROVIDER_RETRY.to_owned())
                            .maybe_next_retry_delay(failure.retry_after)
                            .build(),
                    ))
                }
                FailureClass::Unknown => {
                    record(metrics::DispatchOutcome::Unknown);
                    let reason = match providers::adapter(message.channel).correlation() {
                        Some(via) => format!("{failure}; its receipt will name it ({via})"),
                        None => format!("{failure}; no receipt can name it afterwards"),
                    };
                    store::messages::note_unknown_outcome(
                        pool,
                        input.tenant_id,
                        message.id,
                        &reason,
                    )
                    .await?;
                    tracing::warn!(tenant.id = %input.tenant_id, message.id = %message.id, "outcome unknown, not sent again on this channel: {reason}");
                    Ok(DispatchOutcome::Unconfirmed { reason })
                }
                FailureClass::Recipient => {
                    record(metrics::DispatchOutcome::Rejected);
                    self.reject(message, Some(attempt), &failure.to_string(), None)
                        .await
                }
                FailureClass::Account => {
                    record(metrics::DispatchOutcome::Rejected);
                    self.reject(
                        message,
                        Some(attempt),
                        &failure.to_string(),
                        Some(account.id),
                    )
                    .await
                }
            },
        }
    }
}

/// The outbound message `id` of the tenant, or a permanent failure naming it.
async fn outbound(
    pool: &PgPool,
    tenant_id: TenantId,
    id: MessageId,
) -> Result<store::messages::OutboundMessage, ActivityError> {
    store::messages::get_outbound(pool, tenant_id, id)
        .await?
        .ok_or_else(|| {
            permanent(
                failure_types::MESSAGE_NOT_FOUND,
                format!("message {id} not found"),
            )
        })
}

/// Rate-limit waits up to this long are activity retries; longer ones are
/// the workflow's durable timers.
pub const LONGEST_RETRY_WAIT: Duration = Duration::from_secs(5);

/// Heartbeat interval of a dispatch; its heartbeat timeout is a few of these.
pub const DISPATCH_HEARTBEAT: Duration = Duration::from_secs(2);

/// Heartbeats for the activity until dropped, so a dead worker is noticed
/// within the heartbeat timeout, and a cancel reaches a live one.
pub(crate) struct Heartbeats(tokio::task::JoinHandle<()>);

impl Heartbeats {
    pub(crate) fn start(ctx: &ActivityContext) -> Self {
        let ctx = ctx.clone();
        Self(tokio::spawn(async move {
            // The first beat after one period: a send that answers sooner
            // costs the server no heartbeat at all.
            let first = tokio::time::Instant::now() + DISPATCH_HEARTBEAT;
            let mut beat = tokio::time::interval_at(first, DISPATCH_HEARTBEAT);
            loop {
                beat.tick().await;
                // A heartbeat that cannot be sent is not the send's problem.
                let _ = ctx.record_heartbeat(()).await;
            }
        }))
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the provider call unless the attempt is cancelled first (`None`: the
/// call is dropped mid-flight).
async fn unless_cancelled<T>(ctx: &ActivityContext, call: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        answered = call => Some(answered),
        () = ctx.cancelled() => None,
    }
}

/// Records the provider's acceptance. The message is out: a database hiccup
/// here must not cost the provider's id, so this retries for up to
/// [`RECORD_PATIENCE`] before the attempt fails and leaves the claim to be
/// reconciled from the receipts.
async fn record_acceptance(
    ctx: &ActivityContext,
    pool: &PgPool,
    message: &store::messages::OutboundMessage,
    accepted: &crate::providers::Accepted,
) -> Result<MessageStatus, ActivityError> {
    let started = Instant::now();
    let mut wait = Duration::from_millis(200);
    loop {
        match store::messages::mark_sent(
            pool,
            message.tenant_id,
            message.id,
            &accepted.external_message_id,
        )
        .await
        {
            Ok(status) => return Ok(status),
            Err(e) if started.elapsed() < RECORD_PATIENCE && !ctx.is_cancelled() => {
                tracing::warn!(tenant.id = %message.tenant_id, message.id = %message.id, "recording the send of {} failed, retrying: {e}", message.id);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// How long a dispatch keeps trying to record an accepted send.
pub const RECORD_PATIENCE: Duration = Duration::from_secs(20);

/// What a message's stored state says about its dispatch.
pub(crate) fn outcome_of(message: &store::messages::OutboundMessage) -> DispatchOutcome {
    match message.status {
        MessageStatus::Failed => DispatchOutcome::Rejected {
            reason: message.failed_reason.clone().unwrap_or_default(),
            account_problem: false,
        },
        MessageStatus::Queued | MessageStatus::Sending => DispatchOutcome::Unconfirmed {
            reason: message.send_unknown_reason.clone().unwrap_or_else(|| {
                "an earlier attempt claimed the send and did not record how it went".to_owned()
            }),
        },
        status => DispatchOutcome::Sent {
            external_message_id: message.external_message_id.clone().unwrap_or_default(),
            status,
        },
    }
}

impl NotificationActivities {
    /// Fails the message for good: the claimed send of `attempt`, or (no
    /// attempt) a message that was never claimed.
    async fn reject(
        &self,
        message: &store::messages::OutboundMessage,
        attempt: Option<uuid::Uuid>,
        reason: &str,
        broken_account: Option<ChannelAccountId>,
    ) -> Result<DispatchOutcome, ActivityError> {
        let (tenant_id, message_id) = (message.tenant_id, message.id);
        match attempt {
            Some(attempt) => {
                store::messages::fail_claim(&self.pool, tenant_id, message_id, attempt, reason)
                    .await?
            }
            None => store::messages::mark_failed(&self.pool, tenant_id, message_id, reason).await?,
        }
        if let Some(account_id) = broken_account {
            store::channel_accounts::move_to(
                &self.pool,
                tenant_id,
                account_id,
                ChannelAccountStatus::Attention,
                Some(reason),
                &StatusActor::Dispatch,
            )
            .await?;
            tracing::error!(
                tenant.id = %tenant_id,
                channel_account.id = %account_id,
                "channel account {account_id} needs attention: {reason}"
            );
        }
        tracing::warn!(tenant.id = %tenant_id, message.id = %message_id, "message {message_id} failed: {reason}");
        Ok(DispatchOutcome::Rejected {
            reason: reason.to_owned(),
            account_problem: broken_account.is_some(),
        })
    }
}

/// The contact's address on a channel, if it has one.
pub fn recipient_address(contact: &Contact, channel: Channel) -> Option<String> {
    providers::adapter(channel).address(&contact.identifiers.0)
}

/// Renders a template for one contact, with `contact` and `tenant` added to
/// the event's variables.
pub(crate) fn render_template(
    source: &templates::TemplateSource,
    variables: serde_json::Value,
    contact: &Contact,
    tenant_name: &str,
) -> Result<templates::RenderedMessage, RenderError> {
    templates::render(source, &template_variables(variables, contact, tenant_name))
}

/// A template that cannot render is a permanent failure naming the variable
/// or the error.
fn render_failure(e: RenderError) -> ActivityError {
    match &e {
        RenderError::MissingVariable { .. } => {
            permanent(failure_types::TEMPLATE_VARIABLE_MISSING, e.to_string())
        }
        RenderError::Invalid { .. } => permanent(failure_types::TEMPLATE_INVALID, e.to_string()),
    }
}

fn template_variables(
    mut variables: serde_json::Value,
    contact: &Contact,
    tenant_name: &str,
) -> serde_json::Value {
    if !variables.is_object() {
        variables = serde_json::json!({});
    }
    let first_name = contact
        .display_name
        .split_whitespace()
        .next()
        .unwrap_or_default();
    variables["contact"] = serde_json::json!({
        "display_name": contact.display_name,
        "first_name": first_name,
        "locale": contact.locale,
    });
    variables["tenant"] = serde_json::json!({ "display_name": tenant_name });
    variables
}

/// The registry's notification trigger, or a permanent failure naming it.
pub(crate) fn notification_trigger(
    trigger: Trigger,
) -> Result<&'static triggers::NotificationTrigger, ActivityError> {
    trigger.notification().ok_or_else(|| {
        permanent(
            failure_types::UNKNOWN_TRIGGER,
            format!("trigger '{trigger}' sends no notification"),
        )
    })
}

/// Postgres away is retried; a tenant's malformed override is permanent.
pub(crate) fn override_failure(e: store::tenants::OverrideError) -> ActivityError {
    match e {
        store::tenants::OverrideError::Database(e) => ActivityError::from(e),
        invalid => permanent(failure_types::INVALID_TENANT_SETTINGS, invalid.to_string()),
    }
}

pub(crate) fn permanent(type_name: &str, message: String) -> ActivityError {
    ActivityError::application(
        ApplicationFailure::builder(message)
            .type_name(type_name.to_owned())
            .non_retryable(true)
            .build(),
    )
}
