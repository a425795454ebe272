//! Messages: one row per message per channel. Status only moves forward
//! (QUEUED < SENDING < SENT < DELIVERED < READ; FAILED is terminal), enforced
//! in the UPDATE statements themselves so concurrent or late writers cannot
//! regress it.
//!
//! A send is claimed before it is made: [`claim_send`] moves the message
//! QUEUED → SENDING with the attempt's id, and only the attempt holding the
//! claim may release it ([`release_claim`], a definite failure that may be
//! retried) or fail it ([`fail_claim`]). A claim whose outcome is unknown is
//! kept: a receipt matched through our message id settles it.

use crate::model::{Channel, ChannelAccountId, ContactId, MessageId, MessageStatus, TenantId};
use crate::providers::WhatsAppTemplate;
use crate::store::conversations::ConversationRefs;
use crate::triggers::Trigger;
use sqlx::PgPool;

/// An outbound message about to be queued by a workflow.
#[derive(Debug, Clone)]
pub struct NewOutboundMessage {
    pub id: MessageId,
    pub tenant_id: TenantId,
    pub contact_id: ContactId,
    pub channel_account_id: ChannelAccountId,
    pub channel: Channel,
    /// The notification's key (`notify/…`): with `attempt`, one message per
    /// recipient and channel step.
    pub workflow_id: String,
    /// The fan-out chunk that sends it; `None`: `workflow_id`'s own workflow.
    pub batch_workflow_id: Option<String>,
    pub attempt: i16,
    pub replaces_message_id: Option<MessageId>,
    pub trigger_event: Trigger,
    pub template_key: String,
    /// The conversation it answers in (agent replies); `None`: the contact's
    /// thread on the account, found or started by the insert.
    pub conversation_id: Option<uuid::Uuid>,
    /// What the notification is about, linked from its conversation.
    pub about: ConversationRefs,
    pub subject: Option<String>,
    pub body: String,
    pub body_html: Option<String>,
    pub whatsapp_template: Option<WhatsAppTemplate>,
}

/// Where a new outbound message goes in the inbox, in SQL over a relation
/// `given` of the messages (tenant_id, contact_id, channel_account_id,
/// workflow_id, attempt, conversation_id, booking_id, trip_id, invoice_id):
/// `placed` adds `fresh` (this step has no message yet), `joins` (the
/// conversation it was given, else the contact's live one on the account)
/// and `starts` (the conversation it starts when it joins none, named after
/// the message's idempotency key: `notification_conversation_id`).
/// `started` creates those RESOLVED — nobody has to act on a notification
/// until the contact answers, and the answer reopens it — and `joined` moves
/// a joined conversation's last message on and fills the links it lacks,
/// leaving its status and assignee alone. Only a fresh message does either,
/// so a retried or replayed insert creates and touches nothing. `joined`
/// locks its conversations in id order first: two fan-outs to the same
/// passengers then queue instead of deadlocking.
const PLACE_IN_CONVERSATION: &str = "
     placed as (
         select g.*,
                not exists (select 1 from messages m
                             where m.tenant_id = g.tenant_id and m.workflow_id = g.workflow_id
                               and m.attempt = g.attempt) as fresh,
                coalesce(g.conversation_id, live.id) as joins,
                notification_conversation_id(g.tenant_id, g.workflow_id, g.attempt) as starts
           from given g
           left join conversations live
             on g.conversation_id is null
            and live.tenant_id = g.tenant_id and live.contact_id = g.contact_id
            and live.channel_account_id = g.channel_account_id
            and live.status in ('OPEN', 'SNOOZED')),
     started as (
         insert into conversations
             (id, tenant_id, contact_id, channel_account_id, status,
              booking_id, trip_id, invoice_id, last_message_at)
         select starts, tenant_id, contact_id, channel_account_id, 'RESOLVED',
                booking_id, trip_id, invoice_id, now()
           from placed
          where fresh and joins is null
         on conflict do nothing),
     locked as materialized (
         select c.tenant_id, c.id
           from conversations c
           join placed p on p.fresh and c.tenant_id = p.tenant_id and c.id = p.joins
          order by c.id
            for no key update of c),
     joined as (
         update conversations c
            set last_message_at = greatest(coalesce(c.last_message_at, now()), now()),
                booking_id = coalesce(c.booking_id, p.booking_id),
                trip_id = coalesce(c.trip_id, p.trip_id),
                invoice_id = coalesce(c.invoice_id, p.invoice_id),
                updated_at = now()
           from locked l
           join placed p on p.fresh and p.tenant_id = l.tenant_id and p.joins = l.id
          where c.tenant_id = l.tenant_id and c.id = l.id)";

/// Inserts the message QUEUED in its conversation, or returns the one this
/// workflow step already created (activity retries, workflow replays, a
/// repeated Hasura event). An agent's reply goes in the conversation it was
/// given; a notification joins the contact's live conversation on the
/// account or starts a RESOLVED one of its own (see
/// `PLACE_IN_CONVERSATION`). One statement, one round trip.
pub async fn insert_outbound_queued(
    pool: &PgPool,
    message: &NewOutboundMessage,
    request: Option<&crate::store::requests::NotificationRequestRow>,
) -> sqlx::Result<MessageId> {
    // A notification's first message records its request in the same
    // statement: never a message without its request.
    let record_request = match request {
        Some(_) => {
            "request as (
                 insert into notification_requests
                     (tenant_id, workflow_id, contact_id, trigger_event, source_event_id, variables)
                 values ($2, $6, $3, $20, $21, $22)
                 on conflict (tenant_id, workflow_id) do nothing),"
        }
        None => "",
    };
    let sql = format!(
        "with {record_request}
         given as (
             select $2::uuid as tenant_id, $3::uuid as contact_id, $4::uuid as channel_account_id,
                    $6::text as workflow_id, $7::smallint as attempt, $15::uuid as conversation_id,
                    $17::uuid as booking_id, $18::uuid as trip_id, $19::uuid as invoice_id),
         {PLACE_IN_CONVERSATION}
         insert into messages
            (id, tenant_id, contact_id, channel_account_id, direction, channel, status,
             workflow_id, attempt, replaces_message_id, trigger_event, template_key, subject, body, body_html, whatsapp_template, conversation_id,
             batch_workflow_id)
         select $1, $2, $3, $4, 'OUTBOUND', $5, 'QUEUED', $6, $7, $8, $9, $10, $11, $12, $13, $14,
                coalesce(p.joins, p.starts), $16
           from placed p
         on conflict (tenant_id, workflow_id, attempt) where workflow_id is not null
         do update set updated_at = messages.updated_at
         returning id"
    );
    let mut insert = sqlx::query_scalar(&sql)
        .bind(message.id)
        .bind(message.tenant_id)
        .bind(message.contact_id)
        .bind(message.channel_account_id)
        .bind(message.channel)
        .bind(&message.workflow_id)
        .bind(message.attempt)
        .bind(message.replaces_message_id)
        .bind(message.trigger_event)
        .bind(&message.template_key)
        .bind(&message.subject)
        .bind(&message.body)
        .bind(&message.body_html)
        .bind(message.whatsapp_template.as_ref().map(sqlx::types::Json))
        .bind(message.conversation_id)
        .bind(&message.batch_workflow_id)
        .bind(message.about.booking_id)
        .bind(message.about.trip_id)
        .bind(message.about.invoice_id);
    if let Some(request) = request {
        insert = insert
            .bind(request.trigger_event)
            .bind(&request.source_event_id)
            .bind(&request.variables);
    }
    insert.fetch_one(pool).await
}

/// Inserts many messages QUEUED in one statement (a fan-out chunk's round);
/// like [`insert_outbound_queued`], a message this step already created is
/// returned instead, and each new one joins its contact's live conversation
/// or starts one, all in the same statement. Returns each message's id in
/// the order given.
pub async fn insert_outbound_queued_many(
    pool: &PgPool,
    messages: &[NewOutboundMessage],
) -> sqlx::Result<Vec<MessageId>> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<serde_json::Value> = messages
        .iter()
        .enumerate()
        .map(|(ordinal, m)| {
            serde_json::json!({
                "ordinal": ordinal,
                "id": m.id,
                "tenant_id": m.tenant_id,
                "contact_id": m.contact_id,
                "channel_account_id": m.channel_account_id,
                "channel": m.channel,
                "workflow_id": m.workflow_id,
                "batch_workflow_id": m.batch_workflow_id,
                "attempt": m.attempt,
                "replaces_message_id": m.replaces_message_id,
                "trigger_event": m.trigger_event,
                "template_key": m.template_key,
                "conversation_id": m.conversation_id,
                "booking_id": m.about.booking_id,
                "trip_id": m.about.trip_id,
                "invoice_id": m.about.invoice_id,
                "subject": m.subject,
                "body": m.body,
                "body_html": m.body_html,
                "whatsapp_template": m.whatsapp_template,
            })
        })
        .collect();
    let stored: Vec<(i32, MessageId)> = sqlx::query_as(&format!(
        "with given as (
             select * from jsonb_to_recordset($1) as r(
                 ordinal int, id uuid, tenant_id uuid, contact_id uuid, channel_account_id uuid,
                 channel text, workflow_id text, batch_workflow_id text, attempt smallint,
                 replaces_message_id uuid, trigger_event text, template_key text,
                 conversation_id uuid, booking_id uuid, trip_id uuid, invoice_id uuid,
                 subject text, body text, body_html text, whatsapp_template jsonb)),
         {PLACE_IN_CONVERSATION},
         inserted as (
             insert into messages
                 (id, tenant_id, contact_id, channel_account_id, direction, channel, status,
                  workflow_id, batch_workflow_id, attempt, replaces_message_id, trigger_event,
                  template_key, subject, body, body_html, whatsapp_template, conversation_id)
             select id, tenant_id, contact_id, channel_account_id, 'OUTBOUND', channel, 'QUEUED',
                    workflow_id, batch_workflow_id, attempt, replaces_message_id, trigger_event,
                    template_key, subject, body, body_html, whatsapp_template,
                    coalesce(joins, starts)
               from placed
             on conflict (tenant_id, workflow_id, attempt) where workflow_id is not null
             do update set updated_at = messages.updated_at
             returning workflow_id, id)
         select g.ordinal, i.id
           from given g
           join inserted i on i.workflow_id = g.workflow_id
          order by g.ordinal"
    ))
    .bind(sqlx::types::Json(rows))
    .fetch_all(pool)
    .await?;
    Ok(stored.into_iter().map(|(_, id)| id).collect())
}

/// What the dispatch step needs to know about a message.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboundMessage {
    pub id: MessageId,
    pub tenant_id: TenantId,
    pub contact_id: Option<ContactId>,
    pub channel_account_id: Option<ChannelAccountId>,
    pub channel: Channel,
    pub status: MessageStatus,
    pub external_message_id: Option<String>,
    pub subject: Option<String>,
    pub body: String,
    pub body_html: Option<String>,
    pub whatsapp_template: Option<sqlx::types::Json<WhatsAppTemplate>>,
    pub failed_reason: Option<String>,
    /// SENDING: why the claimed send's outcome is unknown.
    pub send_unknown_reason: Option<String>,
    /// The notification it belongs to (`notify/…`, or an agent reply's).
    pub workflow_id: Option<String>,
    /// The fan-out chunk that sends it, when not its own workflow.
    pub batch_workflow_id: Option<String>,
    pub trigger_event: Option<Trigger>,
}

impl OutboundMessage {
    /// The workflow that sends it and waits for its receipts.
    pub fn owner_workflow_id(&self) -> Option<&str> {
        self.batch_workflow_id
            .as_deref()
            .or(self.workflow_id.as_deref())
    }
}

const OUTBOUND_COLUMNS: &str = "id, tenant_id, contact_id, channel_account_id, channel, status,
     external_message_id, subject, body, body_html, whatsapp_template, failed_reason,
     send_unknown_reason, workflow_id, batch_workflow_id, trigger_event";

pub async fn get_outbound(
    pool: &PgPool,
    tenant_id: TenantId,
    id: MessageId,
) -> sqlx::Result<Option<OutboundMessage>> {
    sqlx::query_as(&format!(
        "select {OUTBOUND_COLUMNS} from messages
          where tenant_id = $1 and id = $2 and direction = 'OUTBOUND'"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// A message with its channel account and its contact, in one read: what a
/// dispatch needs (either may be gone).
pub async fn dispatch_view(
    pool: &PgPool,
    tenant_id: TenantId,
    id: MessageId,
) -> sqlx::Result<
    Option<(
        OutboundMessage,
        Option<crate::store::channel_accounts::ChannelAccount>,
        Option<crate::store::contacts::Contact>,
    )>,
> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        message: OutboundMessage,
        account: Option<sqlx::types::Json<crate::store::channel_accounts::ChannelAccount>>,
        contact: Option<sqlx::types::Json<crate::store::contacts::Contact>>,
    }
    let columns = OUTBOUND_COLUMNS
        .split(',')
        .map(|c| format!("m.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let row: Option<Row> = sqlx::query_as(&format!(
        "select {columns}, to_jsonb(a) as account, to_jsonb(c) as contact
           from messages m
           left join channel_accounts a on a.tenant_id = m.tenant_id and a.id = m.channel_account_id
           left join contacts c on c.tenant_id = m.tenant_id and c.id = m.contact_id
          where m.tenant_id = $1 and m.id = $2 and m.direction = 'OUTBOUND'"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| (r.message, r.account.map(|a| a.0), r.contact.map(|c| c.0))))
}

/// Many outbound messages of a tenant, in no particular order.
pub async fn get_outbound_many(
    pool: &PgPool,
    tenant_id: TenantId,
    ids: &[MessageId],
) -> sqlx::Result<Vec<OutboundMessage>> {
    sqlx::query_as(&format!(
        "select {OUTBOUND_COLUMNS} from messages
          where tenant_id = $1 and id = any($2) and direction = 'OUTBOUND'"
    ))
    .bind(tenant_id)
    .bind(ids.iter().map(|id| id.0).collect::<Vec<_>>())
    .fetch_all(pool)
    .await
}

/// The messages of these notifications (by key) at one step of their chains.
pub async fn of_notifications(
    pool: &PgPool,
    tenant_id: TenantId,
    workflow_ids: &[String],
    attempt: i16,
) -> sqlx::Result<Vec<OutboundMessage>> {
    sqlx::query_as(&format!(
        "select {OUTBOUND_COLUMNS} from messages
          where tenant_id = $1 and workflow_id = any($2) and attempt = $3 and direction = 'OUTBOUND'"
    ))
    .bind(tenant_id)
    .bind(workflow_ids)
    .bind(attempt)
    .fetch_all(pool)
    .await
}

/// The status of each of `ids` that is no longer SENT: settled (DELIVERED,
/// READ, FAILED), still claimed (SENDING) or never sent (QUEUED).
pub async fn unsettled_filter(
    pool: &PgPool,
    tenant_id: TenantId,
    ids: &[MessageId],
) -> sqlx::Result<Vec<(MessageId, MessageStatus, Option<String>)>> {
    sqlx::query_as(
        "select id, status, coalesce(failed_reason, send_unknown_reason) from messages
          where tenant_id = $1 and id = any($2) and status <> 'SENT'",
    )
    .bind(tenant_id)
    .bind(ids.iter().map(|id| id.0).collect::<Vec<_>>())
    .fetch_all(pool)
    .await
}

/// What claiming a message's send found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This attempt holds the send: call the provider.
    Claimed,
    /// An earlier attempt claimed it and did not record how it went: it may
    /// have reached the person, so nothing calls the provider again.
    HeldByEarlierAttempt {
        attempt_id: Option<uuid::Uuid>,
        claimed_at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// The send already ended (SENT or further, or FAILED).
    Ended(MessageStatus),
}

/// Claims the send of a QUEUED message for the attempt `attempt_id`.
pub async fn claim_send(
    pool: &PgPool,
    tenant_id: TenantId,
    id: MessageId,
    attempt_id: uuid::Uuid,
) -> sqlx::Result<Claim> {
    let claimed = sqlx::query(
        "update messages
            set status = 'SENDING', send_attempt_id = $3, send_claimed_at = now(),
                send_unknown_reason = null, updated_at = now()
          where tenant_id = $1 and id = $2 and status = 'QUEUED'",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(attempt_id)
    .execute(pool)
    .await?;
    if claimed.rows_affected() == 1 {
        return Ok(Claim::Claimed);
    }
    let (status, attempt_id, claimed_at): (
        MessageStatus,
        Option<uuid::Uuid>,
        Option<chrono::DateTime<chrono::Utc>>,
    ) = sqlx::query_as(
        "select status, send_attempt_id, send_claimed_at from messages where tenant_id = $1 and id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_one(pool)
    .await?;
    Ok(match status {
        MessageStatus::Sending => Claim::HeldByEarlierAttempt {
            attempt_id,
            claimed_at,
        },
        status => Claim::Ended(status),
    })
}

/// Gives the claim back after a definite failure (the provider refused, or
/// the request never left): the message is QUEUED again and a retry may send.
pub async fn release_claim(
    pool: &PgPool,
    tenant_id: TenantId,
    id: MessageId,
    attempt_id: uuid::Uuid,
) -> sqlx::Result<()> {
    sqlx::query(
        "update messages
            set status = 'QUEUED', send_attempt_id = null, send_claimed_at = null, updated_at = now()
          where tenant_id = $1 and id = $2 and status = 'SENDING' and send_attempt_id = $3",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(attempt_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Fails the claimed send after the provider refused it for good.
pub async fn fail_claim(
    pool: &PgPool,
    tenant_id: TenantId,
    id: MessageId,
    attempt_id: uuid::Uuid,
    reason: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "update messages
            set status = 'FAILED', failed_reason = $4, failed_at = now(), updated_at = now()
          where tenant_id = $1 and id = $2 and status = 'SENDING' and send_attempt_id = $3",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(attempt_id)
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(())
}

/// Keeps why a claimed send's outcome is unknown, for ops and the watchdog.
pub async fn note_unknown_outcome(
    pool: &PgPool,
    tenant_id: TenantId,
    id: MessageId,
    reason: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "update messages set send_unknown_reason = $3, updated_at = now()
          where tenant_id = $1 and id = $2 and status = 'SENDING'",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(())
}

/// A message of the notification `workflow_id` (or of one of its retries)
/// that reached the provider (or may have: SENDING, its outcome unknown).
pub async fn reached(
    pool: &PgPool,
    tenant_id: TenantId,
    workflow_id: &str,
) -> sqlx::Result<Option<(MessageId, Channel, MessageStatus)>> {
    sqlx::query_as(
        "select id, channel, status from messages
          where tenant_id = $1
            and (workflow_id = $2 or left(workflow_id, length($3)) = $3)
            and status in ('SENDING', 'SENT', 'DELIVERED', 'READ')
          order by created_at
          limit 1",
    )
    .bind(tenant_id)
    .bind(workflow_id)
    .bind(format!("{workflow_id}/retry/"))
    .fetch_optional(pool)
    .await
}

/// Records the provider's acceptance and applies any callback that arrived
/// before we knew the external id. A callback that already moved the message
/// further keeps its status. Returns the status afterwards. Applies whoever
/// holds the claim: an acceptance is the truth, even when a later attempt
/// took over.
pub async fn mark_sent(
    pool: &PgPool,
    tenant_id: TenantId,
    id: MessageId,
    external_message_id: &str,
) -> sqlx::Result<MessageStatus> {
    // One round trip (`mark_message_sent`) unless a receipt came first.
    let row: Option<(Channel, MessageStatus, bool)> =
        sqlx::query_as("select * from mark_message_sent($1, $2, $3)")
            .bind(tenant_id)
            .bind(id)
            .bind(external_message_id)
            .fetch_optional(pool)
            .await?;
    let Some((channel, status, pending)) = row else {
        return Ok(MessageStatus::Failed);
    };
    if !pending {
        return Ok(status);
    }
    let mut tx = pool.begin().await?;
    lock_external_id(&mut tx, external_message_id).await?;
    let status = apply_pending_callbacks(&mut tx, tenant_id, id, channel, external_message_id)
        .await?
        .unwrap_or(status);
    tx.commit().await?;
    Ok(status)
}

/// Fails a message whose send was never claimed (still QUEUED). A claimed
/// one may have reached the person, and one further on got through: both
/// are left as they are.
pub async fn mark_failed(
    pool: &PgPool,
    tenant_id: TenantId,
    id: MessageId,
    reason: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "update messages
            set status = 'FAILED', failed_reason = $3, failed_at = now(), updated_at = now()
          where tenant_id = $1 and id = $2 and status = 'QUEUED'",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(())
}

/// A provider's word about a message's delivery.
#[derive(Debug, Clone)]
pub struct DeliveryCallback {
    /// Known for per-tenant webhooks (Meta); `None` for account-level ones (SES, SNS).
    pub tenant_id: Option<TenantId>,
    pub channel: Channel,
    pub external_message_id: String,
    pub status: MessageStatus,
    pub reason: Option<String>,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub detail: serde_json::Value,
    /// Our message id as the provider echoed it back (Meta's
    /// `biz_opaque_callback_data`, SES's `mail.tags`): finds a message whose
    /// send answer was lost, so it never learnt the provider's id.
    pub correlation: Option<MessageId>,
    /// SES: the configuration set the event was published through. An
    /// account-level receipt (no tenant) changes only a message whose
    /// account sends through that configuration set, so a receipt from
    /// another account's topic can never touch another tenant's email.
    pub configuration_set: Option<String>,
}

/// What recording a callback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackEffect {
    /// Matched a message; `status` is its status afterwards (unchanged when the
    /// callback was a duplicate or older than what we knew).
    Applied {
        tenant_id: TenantId,
        message_id: MessageId,
        /// The workflow waiting on the receipt as a signal. `None` for a
        /// fan-out chunk's message: the chunk reads the statuses from
        /// Postgres, once for all its recipients.
        workflow_id: Option<String>,
        status: MessageStatus,
        changed: bool,
        /// This callback ended the message's wait for a receipt: it moved
        /// to DELIVERED, READ or FAILED from before them.
        settles: bool,
    },
    /// No message has this external id (yet): kept, and applied when one does.
    Pending,
}

/// Records a provider callback and applies it to its message, monotonically,
/// in one round trip (`record_delivery_callback`).
pub async fn record_callback(
    pool: &PgPool,
    callback: &DeliveryCallback,
) -> sqlx::Result<CallbackEffect> {
    let matched: Option<(
        MessageId,
        TenantId,
        Option<String>,
        MessageStatus,
        bool,
        bool,
    )> = sqlx::query_as(
        "select matched_id, matched_tenant, signal_workflow_id, after_status, changed, settles
               from record_delivery_callback($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(callback.tenant_id)
    .bind(callback.channel)
    .bind(&callback.external_message_id)
    .bind(callback.status)
    .bind(&callback.reason)
    .bind(callback.occurred_at)
    .bind(&callback.detail)
    .bind(callback.correlation)
    .bind(&callback.configuration_set)
    .fetch_optional(pool)
    .await?;
    Ok(match matched {
        None => CallbackEffect::Pending,
        Some((message_id, tenant_id, workflow_id, status, changed, settles)) => {
            CallbackEffect::Applied {
                tenant_id,
                message_id,
                workflow_id,
                status,
                changed,
                settles,
            }
        }
    })
}

/// Serializes the two writers that meet on a provider id: recording the send
/// that returned it (`mark_sent`) and recording a callback about it
/// (`record_callback`). Without it, a callback arriving while the send is
/// being recorded finds no message (that update is not committed yet) and is
/// kept as pending, while the send looks for pending callbacks before that
/// one is committed: neither applies it, and the workflow falls back although
/// the message was delivered. Held until the transaction ends.
async fn lock_external_id(
    tx: &mut sqlx::PgConnection,
    external_message_id: &str,
) -> sqlx::Result<()> {
    sqlx::query("select pg_advisory_xact_lock(hashtext('busflow.messages.external_message_id'), hashtext($1))")
        .bind(external_message_id)
        .execute(tx)
        .await?;
    Ok(())
}

/// Moves the message to `status` if that is forward; returns the status
/// afterwards and whether it changed (`apply_message_status`).
async fn apply_status(
    tx: &mut sqlx::PgConnection,
    tenant_id: TenantId,
    message_id: MessageId,
    callback: &DeliveryCallback,
) -> sqlx::Result<(MessageStatus, bool)> {
    sqlx::query_as("select after_status, changed from apply_message_status($1, $2, $3, $4, $5)")
        .bind(tenant_id)
        .bind(message_id)
        .bind(callback.status)
        .bind(callback.occurred_at)
        .bind(&callback.reason)
        .fetch_one(tx)
        .await
}

/// Applies callbacks that arrived before the message knew its external id.
/// Returns the message's status afterwards.
async fn apply_pending_callbacks(
    tx: &mut sqlx::PgConnection,
    tenant_id: TenantId,
    message_id: MessageId,
    channel: Channel,
    external_message_id: &str,
) -> sqlx::Result<Option<MessageStatus>> {
    let pending: Vec<(
        i64,
        MessageStatus,
        Option<String>,
        chrono::DateTime<chrono::Utc>,
    )> = sqlx::query_as(
        "select id, status, reason, occurred_at from delivery_callbacks
          where channel = $1 and external_message_id = $2 and applied_at is null
            and (tenant_id = $3
                 or (tenant_id is null
                     and (channel <> 'EMAIL'
                          or coalesce(configuration_set, '') = coalesce(
                               (select ca.provider_config->>'configuration_set'
                                  from messages m join channel_accounts ca
                                    on ca.tenant_id = m.tenant_id and ca.id = m.channel_account_id
                                 where m.tenant_id = $3 and m.id = $4), ''))))
          order by occurred_at, id
          for update",
    )
    .bind(channel)
    .bind(external_message_id)
    .bind(tenant_id)
    .bind(message_id)
    .fetch_all(&mut *tx)
    .await?;
    let mut last = None;
    for (id, status, reason, occurred_at) in pending {
        let callback = DeliveryCallback {
            tenant_id: Some(tenant_id),
            channel,
            external_message_id: external_message_id.to_owned(),
            status,
            reason,
            occurred_at,
            detail: serde_json::Value::Null,
            correlation: None,
            configuration_set: None,
        };
        let (after, _) = apply_status(tx, tenant_id, message_id, &callback).await?;
        sqlx::query(
            "update delivery_callbacks set tenant_id = $2, message_id = $3, applied_at = now() where id = $1",
        )
        .bind(id)
        .bind(tenant_id)
        .bind(message_id)
        .execute(&mut *tx)
        .await?;
        last = Some(after);
    }
    Ok(last)
}
