//! The activities of a fan-out chunk: one event's message to a few hundred
//! recipients, planned, queued and sent in a handful of activities instead
//! of a workflow per recipient.
//!
//! - `plan_chunk` takes the chunk's recipients on (one request row each, so
//!   no other chunk or replay notifies them again) and plans each chain.
//! - `send_round` queues every recipient's message for one step of its chain
//!   in one insert and sends them, many at once. Each group of sends books
//!   its slots in the account's shared rate limit in one statement; each
//!   send is claimed before the provider call, exactly as a single
//!   notification's dispatch: an activity retry never sends a message twice.
//! - `unsettled` reads which of the round's messages settled, for the chunk
//!   that waits once for the channel's receipt window.
//!
//! Messages keep the recipient's notification key as `workflow_id`
//! (`notify/{tenant}/{event}/{contact}`) and name the chunk as
//! `batch_workflow_id`.

use crate::model::{
    Channel, ChannelAccountId, ChannelAccountStatus, ContactId, MessageId, MessageStatus, TenantId,
    notification_key,
};
use crate::notification::{
    DispatchOutcome, Heartbeats, LONGEST_BOOKED_WAIT, NotificationActivities, Pacing,
    notification_trigger, outcome_of, override_failure, rate_limited_send, recipient_address,
    render_template,
};
use crate::planning::{self, ChannelStep};
use crate::rate_limit::{self, Reservation};
use crate::store::{
    self, channel_accounts::ChannelAccount, contacts::Contact, trips::RecipientSpan,
};
use crate::triggers::{self, Trigger};
use crate::{quiet_hours, templates};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

/// Sends one `send_round` activity has in flight at once.
pub const SENDS_IN_FLIGHT: usize = 32;

/// Sends whose rate-limit slots are booked in one statement: the account's
/// bucket row is locked once per group, not once per message.
const BOOKED_TOGETHER: usize = 16;

/// Input of `plan_chunk`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkPlanInput {
    pub tenant_id: TenantId,
    pub trigger_event: Trigger,
    pub source_event_id: String,
    /// The chunk's workflow id: the owner of the requests it takes on.
    pub chunk_workflow_id: String,
    pub variables: serde_json::Value,
    pub recipients: ChunkRecipients,
}

/// Whom a chunk sends to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkRecipients {
    /// An explicit list.
    Contacts(Vec<ContactId>),
    /// A span of a trip's recipients (passengers, and the driver when
    /// included), read by the chunk itself when it plans.
    Trip {
        trip_id: uuid::Uuid,
        include_driver: bool,
        span: RecipientSpan,
    },
}

impl ChunkRecipients {
    /// How many recipients the chunk was cut for.
    pub fn expected(&self) -> usize {
        match self {
            Self::Contacts(contacts) => contacts.len(),
            Self::Trip { span, .. } => span.count as usize,
        }
    }
}

/// One recipient the chunk took on, and its channel chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientPlan {
    pub contact_id: ContactId,
    pub steps: Vec<ChannelStep>,
}

/// A recipient whose send window is closed (quiet hours): notified by a
/// workflow of its own, which holds on a timer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRecipient {
    pub contact_id: ContactId,
    pub until_ms: i64,
}

/// What planning a chunk found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkPlan {
    /// Taken on by this chunk, with at least one channel to try.
    pub recipients: Vec<RecipientPlan>,
    pub held: Vec<HeldRecipient>,
    /// Taken on, and no channel can reach them: the reason each.
    pub not_sent: Vec<(ContactId, String)>,
    /// Notified by another chunk or workflow already (a replay or a reset),
    /// or no longer a contact.
    pub already_notified: u64,
    /// The chunk's recipients as it read them.
    #[serde(default)]
    pub recipients_read: u64,
}

/// One recipient's message of a round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundSend {
    pub contact_id: ContactId,
    pub channel: Channel,
    /// The message on the previous channel that this one replaces.
    pub replaces: Option<MessageId>,
}

/// Input of `send_round`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoundInput {
    pub tenant_id: TenantId,
    pub trigger_event: Trigger,
    pub source_event_id: String,
    pub chunk_workflow_id: String,
    pub variables: serde_json::Value,
    /// The place of these messages in each recipient's chain (1 = first).
    pub attempt: i16,
    pub sends: Vec<RoundSend>,
}

/// How one recipient's send of a round went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoundOutcome {
    /// The message was sent (or had been): see the dispatch outcome.
    Dispatched {
        message_id: MessageId,
        outcome: DispatchOutcome,
    },
    /// This channel cannot carry the message (no address, no account, no
    /// template, a template that does not render): try the next one.
    Unusable { reason: String },
}

/// The round's outcomes, in the order of its sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundResult {
    pub outcomes: Vec<RoundOutcome>,
}

/// Input of `unsettled`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoundMessages {
    pub tenant_id: TenantId,
    pub message_ids: Vec<MessageId>,
}

/// Input of `abandon_round`: the recipients of one round given up on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AbandonRoundInput {
    pub tenant_id: TenantId,
    pub source_event_id: String,
    pub attempt: i16,
    pub contacts: Vec<ContactId>,
    pub reason: String,
}

/// A message of a round that is no longer plainly SENT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSettlement {
    pub message_id: MessageId,
    pub status: MessageStatus,
    /// FAILED: the provider's reason; SENDING: why the outcome is unknown.
    pub reason: Option<String>,
}

/// The fan-out activities, registered on the worker next to the
/// notification activities whose dispatch they share.
pub struct FanoutActivities {
    notifications: NotificationActivities,
}

impl FanoutActivities {
    pub fn new(notifications: NotificationActivities) -> Self {
        Self { notifications }
    }
}

#[activities]
impl FanoutActivities {
    /// Takes the chunk's recipients on and plans each one's chain.
    #[activity(name = "plan_chunk")]
    pub async fn plan_chunk(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: ChunkPlanInput,
    ) -> Result<ChunkPlan, ActivityError> {
        let pool = &self.notifications.pool;
        let trigger = notification_trigger(input.trigger_event)?;
        let tenant_override =
            store::tenants::trigger_override(pool, input.tenant_id, trigger.name())
                .await
                .map_err(override_failure)?;
        let active = store::channel_accounts::active_channels(pool, input.tenant_id).await?;
        let wanted = match &input.recipients {
            ChunkRecipients::Contacts(contacts) => contacts.clone(),
            ChunkRecipients::Trip {
                trip_id,
                include_driver,
                span,
            } => {
                store::trips::recipients_in(pool, input.tenant_id, *trip_id, *include_driver, span)
                    .await?
            }
        };
        let contacts = store::contacts::get_many(pool, input.tenant_id, &wanted).await?;
        let windows = if trigger.urgency == triggers::Urgency::Normal {
            quiet_hours::send_windows_open(pool, input.tenant_id, &wanted).await?
        } else {
            HashMap::new()
        };
        let mut plan = ChunkPlan {
            recipients_read: wanted.len() as u64,
            ..ChunkPlan::default()
        };
        let mut planned = Vec::with_capacity(contacts.len());
        for contact in &contacts {
            let chain = planning::plan(trigger, None, tenant_override.as_ref(), contact, &active);
            if !chain.steps.is_empty()
                && let Some(&opens) = windows.get(&contact.id)
            {
                plan.held.push(HeldRecipient {
                    contact_id: contact.id,
                    until_ms: opens.timestamp_millis(),
                });
                continue;
            }
            planned.push((contact.id, chain));
        }
        let requests: Vec<_> = planned
            .iter()
            .map(|(contact_id, _)| store::requests::NotificationRequestRow {
                tenant_id: input.tenant_id,
                workflow_id: notification_key(input.tenant_id, &input.source_event_id, *contact_id),
                contact_id: *contact_id,
                trigger_event: trigger.trigger,
                source_event_id: input.source_event_id.clone(),
                variables: sqlx::types::Json(input.variables.clone()),
            })
            .collect();
        let taken = store::requests::take_on(pool, &input.chunk_workflow_id, &requests).await?;
        let taken: std::collections::HashSet<ContactId> = taken.into_iter().collect();
        for (contact_id, chain) in planned {
            if !taken.contains(&contact_id) {
                continue;
            }
            if chain.steps.is_empty() {
                plan.not_sent.push((contact_id, chain.not_sent_reason()));
            } else {
                plan.recipients.push(RecipientPlan {
                    contact_id,
                    steps: chain.steps,
                });
            }
        }
        let accounted = plan.recipients.len() + plan.held.len() + plan.not_sent.len();
        plan.already_notified = wanted.len().saturating_sub(accounted) as u64;
        Ok(plan)
    }

    /// Queues and sends one step's message to each recipient of the round.
    #[activity(name = "send_round")]
    pub async fn send_round(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: RoundInput,
    ) -> Result<RoundResult, ActivityError> {
        let _beating = Heartbeats::start(&ctx);
        let pool = &self.notifications.pool;
        let contact_ids: Vec<ContactId> = input.sends.iter().map(|s| s.contact_id).collect();
        let contacts: HashMap<ContactId, Contact> =
            store::contacts::get_many(pool, input.tenant_id, &contact_ids)
                .await?
                .into_iter()
                .map(|c| (c.id, c))
                .collect();
        let mut accounts: HashMap<Channel, Option<ChannelAccount>> = HashMap::new();
        for send in &input.sends {
            if let std::collections::hash_map::Entry::Vacant(entry) = accounts.entry(send.channel) {
                entry.insert(
                    store::channel_accounts::active_for_channel(
                        pool,
                        input.tenant_id,
                        send.channel,
                    )
                    .await?,
                );
            }
        }
        let mut renderer = Renderer::new(pool, input.tenant_id).await?;
        let about = store::conversations::ConversationRefs::of_variables(&input.variables);

        let mut outcomes: Vec<Option<RoundOutcome>> = vec![None; input.sends.len()];
        let mut queued = Vec::new();
        let mut queued_at = Vec::new();
        for (i, send) in input.sends.iter().enumerate() {
            let unusable = |reason: String| Some(RoundOutcome::Unusable { reason });
            let Some(contact) = contacts.get(&send.contact_id) else {
                outcomes[i] = unusable(format!("contact {} not found", send.contact_id));
                continue;
            };
            if recipient_address(contact, send.channel).is_none() {
                outcomes[i] = unusable(format!("contact has no {} address", send.channel));
                continue;
            }
            let Some(account) = accounts.get(&send.channel).cloned().flatten() else {
                outcomes[i] = unusable(format!(
                    "tenant has no ACTIVE {} channel account",
                    send.channel
                ));
                continue;
            };
            let rendered = match renderer
                .render(input.trigger_event, send.channel, contact, &input.variables)
                .await?
            {
                Ok(rendered) => rendered,
                Err(reason) => {
                    outcomes[i] = unusable(reason);
                    continue;
                }
            };
            let (template_key, mut rendered) = rendered;
            if send.channel == Channel::Email && rendered.body_html.is_none() {
                rendered.body_html = Some(templates::html_from_text(&rendered.body));
            }
            queued.push(store::messages::NewOutboundMessage {
                id: MessageId(uuid::Uuid::new_v4()),
                tenant_id: input.tenant_id,
                contact_id: contact.id,
                channel_account_id: account.id,
                channel: send.channel,
                workflow_id: notification_key(input.tenant_id, &input.source_event_id, contact.id),
                batch_workflow_id: Some(input.chunk_workflow_id.clone()),
                attempt: input.attempt,
                replaces_message_id: send.replaces,
                trigger_event: input.trigger_event,
                template_key,
                conversation_id: None,
                about,
                subject: rendered.subject,
                body: rendered.body,
                body_html: rendered.body_html,
                whatsapp_template: rendered.whatsapp_template,
            });
            queued_at.push(i);
        }
        let ids = store::messages::insert_outbound_queued_many(pool, &queued).await?;
        let stored: HashMap<MessageId, store::messages::OutboundMessage> =
            store::messages::get_outbound_many(pool, input.tenant_id, &ids)
                .await?
                .into_iter()
                .map(|m| (m.id, m))
                .collect();
        let notifications = &self.notifications;
        let ctx = &ctx;
        let prepared: Vec<Prepared<'_>> = queued_at
            .into_iter()
            .zip(ids)
            .map(|(i, id)| {
                let message = stored.get(&id);
                Prepared {
                    i,
                    id,
                    message,
                    account: message
                        .and_then(|m| accounts.get(&m.channel))
                        .and_then(Option::as_ref),
                    contact: contacts.get(&input.sends[i].contact_id),
                }
            })
            .collect();
        let mut groups: Vec<Vec<Prepared<'_>>> = Vec::new();
        for p in prepared {
            match groups.last_mut() {
                Some(group) if group.len() < BOOKED_TOGETHER => group.push(p),
                _ => groups.push(vec![p]),
            }
        }
        let mut sending = Vec::with_capacity(groups.len());
        for group in groups {
            sending.push(send_group(notifications, ctx, group));
        }
        let mut sent: Vec<(usize, Result<RoundOutcome, ActivityError>)> = Vec::new();
        let mut groups_sent =
            futures::stream::iter(sending).buffer_unordered(SENDS_IN_FLIGHT / BOOKED_TOGETHER);
        while let Some(group) = groups_sent.next().await {
            sent.extend(group);
        }
        // Any send that must be retried retries the round: the others are
        // past QUEUED by then, and a retry only reads how they went.
        let mut retry = None;
        for (i, outcome) in sent {
            match outcome {
                Ok(outcome) => outcomes[i] = Some(outcome),
                Err(e) => retry = Some(e),
            }
        }
        if let Some(error) = retry {
            return Err(error);
        }
        Ok(RoundResult {
            outcomes: outcomes
                .into_iter()
                .map(|o| {
                    o.unwrap_or(RoundOutcome::Unusable {
                        reason: "not prepared".to_owned(),
                    })
                })
                .collect(),
        })
    }

    /// Which of the messages are no longer plainly SENT.
    #[activity(name = "unsettled")]
    pub async fn unsettled(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: RoundMessages,
    ) -> Result<Vec<MessageSettlement>, ActivityError> {
        Ok(store::messages::unsettled_filter(
            &self.notifications.pool,
            input.tenant_id,
            &input.message_ids,
        )
        .await?
        .into_iter()
        .map(|(message_id, status, reason)| MessageSettlement {
            message_id,
            status,
            reason,
        })
        .collect())
    }

    /// The chunk gave up on sending a round (its step deadline passed): each
    /// of its messages never claimed is FAILED with the reason; a claimed one
    /// may have been sent and stays as it is. Returns the state of each
    /// recipient's message, for those that have one.
    #[activity(name = "abandon_round")]
    pub async fn abandon_round(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: AbandonRoundInput,
    ) -> Result<Vec<(ContactId, MessageSettlement)>, ActivityError> {
        let pool = &self.notifications.pool;
        let keys: Vec<String> = input
            .contacts
            .iter()
            .map(|c| notification_key(input.tenant_id, &input.source_event_id, *c))
            .collect();
        let messages =
            store::messages::of_notifications(pool, input.tenant_id, &keys, input.attempt).await?;
        for message in messages
            .iter()
            .filter(|m| m.status == MessageStatus::Queued)
        {
            store::messages::mark_failed(pool, input.tenant_id, message.id, &input.reason).await?;
        }
        let ids: Vec<MessageId> = messages.iter().map(|m| m.id).collect();
        Ok(
            store::messages::get_outbound_many(pool, input.tenant_id, &ids)
                .await?
                .into_iter()
                .filter_map(|m| {
                    Some((
                        m.contact_id?,
                        MessageSettlement {
                            message_id: m.id,
                            status: m.status,
                            reason: m.failed_reason.or(m.send_unknown_reason),
                        },
                    ))
                })
                .collect(),
        )
    }
}

/// A queued message of a round, with what its send needs.
struct Prepared<'a> {
    i: usize,
    id: MessageId,
    message: Option<&'a store::messages::OutboundMessage>,
    account: Option<&'a ChannelAccount>,
    contact: Option<&'a Contact>,
}

/// Books the group's rate-limit slots, one statement per account, then
/// sends its messages at once, each at its slot.
async fn send_group(
    notifications: &NotificationActivities,
    ctx: &ActivityContext,
    group: Vec<Prepared<'_>>,
) -> Vec<(usize, Result<RoundOutcome, ActivityError>)> {
    let booked = match book(notifications, &group).await {
        Ok(booked) => booked,
        Err(e) => {
            let reason = format!("booking the round's rate-limit slots: {e:#}");
            return group
                .iter()
                .map(|p| (p.i, Err(anyhow::anyhow!("{reason}").into())))
                .collect();
        }
    };
    let sends = group
        .into_iter()
        .zip(booked)
        .map(|(p, reservation)| async move {
            let Some(message) = p.message else {
                return (
                    p.i,
                    Err(anyhow::anyhow!("message {} vanished after it was queued", p.id).into()),
                );
            };
            let outcome = if message.status == MessageStatus::Queued {
                notifications
                    .dispatch(
                        ctx,
                        message,
                        p.account,
                        p.contact,
                        Pacing::Booked(reservation),
                    )
                    .await
            } else {
                Ok(outcome_of(message))
            };
            (
                p.i,
                outcome.map(|outcome| RoundOutcome::Dispatched {
                    message_id: message.id,
                    outcome,
                }),
            )
        });
    futures::future::join_all(sends).await
}

/// A message of a group that books a slot: its place in the group and whom
/// it goes to.
struct Bookable<'a> {
    k: usize,
    message: &'a store::messages::OutboundMessage,
    contact_id: ContactId,
    recipient: String,
}

/// The rate-limit slot of each of the group's queued messages that can be
/// sent, booked together per account; the others book nothing (their
/// dispatch turns them away before it would send).
async fn book(
    notifications: &NotificationActivities,
    group: &[Prepared<'_>],
) -> anyhow::Result<Vec<Reservation>> {
    let mut booked = vec![Reservation::Go(std::time::Duration::ZERO); group.len()];
    let mut by_account: HashMap<ChannelAccountId, (&ChannelAccount, Vec<Bookable<'_>>)> =
        HashMap::new();
    for (k, p) in group.iter().enumerate() {
        let (Some(message), Some(account), Some(contact)) = (p.message, p.account, p.contact)
        else {
            continue;
        };
        if message.status != MessageStatus::Queued || account.status != ChannelAccountStatus::Active
        {
            continue;
        }
        let Some(recipient) = recipient_address(contact, message.channel) else {
            continue;
        };
        by_account
            .entry(account.id)
            .or_insert_with(|| (account, Vec::new()))
            .1
            .push(Bookable {
                k,
                message,
                contact_id: contact.id,
                recipient,
            });
    }
    for (account, members) in by_account.into_values() {
        let sends: Vec<rate_limit::Send<'_>> = members
            .iter()
            .map(|m| rate_limited_send(m.message, account.id, m.contact_id, &m.recipient))
            .collect();
        let reservations = rate_limit::reserve_many(
            &notifications.pool,
            &account.limits,
            &sends,
            LONGEST_BOOKED_WAIT,
        )
        .await?;
        for (m, reservation) in members.iter().zip(reservations) {
            booked[m.k] = reservation;
        }
    }
    Ok(booked)
}

/// Renders a round's messages, reading each template once per channel,
/// audience and locale.
struct Renderer<'a> {
    pool: &'a sqlx::PgPool,
    tenant_id: TenantId,
    tenant: store::tenants::TenantSettings,
    sources:
        HashMap<(Channel, crate::model::ContactKind, String), Option<templates::TemplateSource>>,
}

impl<'a> Renderer<'a> {
    async fn new(pool: &'a sqlx::PgPool, tenant_id: TenantId) -> sqlx::Result<Self> {
        Ok(Self {
            pool,
            tenant_id,
            tenant: store::tenants::settings(pool, tenant_id).await?,
            sources: HashMap::new(),
        })
    }

    /// The template key and message, or why this channel cannot carry it.
    async fn render(
        &mut self,
        trigger: Trigger,
        channel: Channel,
        contact: &Contact,
        variables: &serde_json::Value,
    ) -> Result<Result<(String, templates::RenderedMessage), String>, ActivityError> {
        let locale = contact
            .locale
            .clone()
            .unwrap_or_else(|| self.tenant.default_locale.clone());
        let key = (channel, contact.kind, locale.clone());
        let chain = templates::locale_chain(&locale);
        if !self.sources.contains_key(&key) {
            let wanted = store::templates::TemplateFor {
                trigger,
                audience: contact.kind,
                channel,
            };
            let source = store::templates::resolve(self.pool, self.tenant_id, wanted, &chain)
                .await
                .map_err(ActivityError::from)?;
            self.sources.insert(key.clone(), source);
        }
        let Some(Some(source)) = self.sources.get(&key) else {
            return Ok(Err(format!(
                "no {channel} template for '{trigger}' in {} (tenant or platform)",
                chain.join(", ")
            )));
        };
        Ok(
            match render_template(
                source,
                variables.clone(),
                contact,
                &self.tenant.display_name,
            ) {
                Ok(rendered) => Ok((source.template_key.clone(), rendered)),
                Err(e) => Err(format!("the {channel} template does not render: {e}")),
            },
        )
    }
}
