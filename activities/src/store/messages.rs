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
use crate::store::channel_accounts::ChannelAccount;
use crate::store::contacts::Contact;
use crate::store::conversations::ConversationRefs;
use crate::triggers::Trigger;
use crate::watchdog::StuckMessage;
use sqlx::PgPool;
use sqlx::types::Json;

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
///
/// `place_in_conversation!(query_scalar!([head…], [tail…], args…))` runs the
/// statement `head`, these CTEs, `tail`: one literal, which the query macros
/// check like any other.
macro_rules! place_in_conversation {
    ($query:ident!([$($head:literal),+], [$($tail:literal),+] $(, $arg:expr)* $(,)?)) => {
        sqlx::$query!(
            $($head +)+ "
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
          where c.tenant_id = l.tenant_id and c.id = l.id)" $(+ $tail)+
            $(, $arg)*
        )
    };
}

/// Inserts the message QUEUED in its conversation, or returns the one this
/// workflow step already created (activity retries, workflow replays, a
/// repeated Hasura event). An agent's reply goes in the conversation it was
/// given; a notification joins the contact's live conversation on the
/// account or starts a RESOLVED one of its own (see
/// `place_in_conversation!`). One statement, one round trip.
pub async fn insert_outbound_queued(
    pool: &PgPool,
    message: &NewOutboundMessage,
    request: Option<&crate::store::requests::NotificationRequestRow>,
) -> sqlx::Result<MessageId> {
    let m = message;
    // `$record_request`: a CTE (with its comma) or nothing.
    macro_rules! insert {
        ($record_request:literal $(, $arg:expr)*) => {
            place_in_conversation!(query_scalar!(
                ["with ", $record_request, "
         given as (
             select $2::uuid as tenant_id, $3::uuid as contact_id, $4::uuid as channel_account_id,
                    $6::text as workflow_id, $7::smallint as attempt, $15::uuid as conversation_id,
                    $17::uuid as booking_id, $18::uuid as trip_id, $19::uuid as invoice_id),"],
                [r#"
         insert into messages
            (id, tenant_id, contact_id, channel_account_id, direction, channel, status,
             workflow_id, attempt, replaces_message_id, trigger_event, template_key, subject, body, body_html, whatsapp_template, conversation_id,
             batch_workflow_id)
         select $1, $2, $3, $4, 'OUTBOUND', $5, 'QUEUED', $6, $7, $8, $9, $10, $11, $12, $13, $14,
                coalesce(p.joins, p.starts), $16
           from placed p
         on conflict (tenant_id, workflow_id, attempt) where workflow_id is not null
         do update set updated_at = messages.updated_at
         returning id as "id: MessageId""#],
                m.id.0,
                m.tenant_id.0,
                m.contact_id.0,
                m.channel_account_id.0,
                m.channel as Channel,
                &m.workflow_id,
                m.attempt,
                m.replaces_message_id.map(|id| id.0),
                m.trigger_event as Trigger,
                &m.template_key,
                m.subject.as_deref(),
                &m.body,
                m.body_html.as_deref(),
                m.whatsapp_template.as_ref().map(Json) as Option<Json<&WhatsAppTemplate>>,
                m.conversation_id,
                m.batch_workflow_id.as_deref(),
                m.about.booking_id,
                m.about.trip_id,
                m.about.invoice_id
                $(, $arg)*
            ))
            .fetch_one(pool)
            .await
        };
    }
    match request {
        // A notification's first message records its request in the same
        // statement: never a message without its request.
        Some(request) => insert!(
            "request as (
                 insert into notification_requests
                     (tenant_id, workflow_id, contact_id, trigger_event, source_event_id, variables)
                 values ($2, $6, $3, $20, $21, $22)
                 on conflict (tenant_id, workflow_id) do nothing),",
            request.trigger_event as Trigger,
            &request.source_event_id,
            &request.variables.0
        ),
        None => insert!(""),
    }
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
    let stored = place_in_conversation!(query!(
        ["with given as (
             select * from jsonb_to_recordset($1) as r(
                 ordinal int, id uuid, tenant_id uuid, contact_id uuid, channel_account_id uuid,
                 channel text, workflow_id text, batch_workflow_id text, attempt smallint,
                 replaces_message_id uuid, trigger_event text, template_key text,
                 conversation_id uuid, booking_id uuid, trip_id uuid, invoice_id uuid,
                 subject text, body text, body_html text, whatsapp_template jsonb)),"],
        [r#",
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
         select g.ordinal, i.id as "id!: MessageId"
           from given g
           join inserted i on i.workflow_id = g.workflow_id
          order by g.ordinal"#],
        serde_json::Value::Array(rows)
    ))
    .fetch_all(pool)
    .await?;
    Ok(stored.into_iter().map(|row| row.id).collect())
}

/// What the dispatch step needs to know about a message.
#[derive(Debug, Clone)]
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

/// `select_outbound!(query_as!(OutboundMessage, [tail…], args…))`: selects the
/// [`OutboundMessage`] columns of `messages m`, then `tail` (more columns,
/// `from`, `where`).
macro_rules! select_outbound {
    ($query:ident!($($record:ident,)? [$($tail:literal),+] $(, $arg:expr)* $(,)?)) => {
        sqlx::$query!(
            $($record,)?
            r#"select m.id as "id: MessageId", m.tenant_id as "tenant_id: TenantId",
                      m.contact_id as "contact_id: ContactId",
                      m.channel_account_id as "channel_account_id: ChannelAccountId",
                      m.channel as "channel: Channel", m.status as "status: MessageStatus",
                      m.external_message_id, m.subject, m.body, m.body_html,
                      m.whatsapp_template as "whatsapp_template: Json<WhatsAppTemplate>",
                      m.failed_reason, m.send_unknown_reason, m.workflow_id, m.batch_workflow_id,
                      m.trigger_event as "trigger_event: Trigger""# $(+ $tail)+
            $(, $arg)*
        )
    };
}

pub async fn get_outbound(
    pool: &PgPool,
    tenant_id: TenantId,
    id: MessageId,
) -> sqlx::Result<Option<OutboundMessage>> {
    select_outbound!(query_as!(
        OutboundMessage,
        [" from messages m
          where m.tenant_id = $1 and m.id = $2 and m.direction = 'OUTBOUND'"],
        tenant_id.0,
        id.0
    ))
    .fetch_optional(pool)
    .await
}

/// A message with its channel account and its contact, in one read: what a
/// dispatch needs (either may be gone).
pub async fn dispatch_view(
    pool: &PgPool,
    tenant_id: TenantId,
    id: MessageId,
) -> sqlx::Result<Option<(OutboundMessage, Option<ChannelAccount>, Option<Contact>)>> {
    let row = select_outbound!(query!(
        [r#", to_jsonb(a) as "account: Json<ChannelAccount>", to_jsonb(c) as "contact: Json<Contact>"
           from messages m
           left join channel_accounts a on a.tenant_id = m.tenant_id and a.id = m.channel_account_id
           left join contacts c on c.tenant_id = m.tenant_id and c.id = m.contact_id
          where m.tenant_id = $1 and m.id = $2 and m.direction = 'OUTBOUND'"#],
        tenant_id.0,
        id.0
    ))
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| {
        let message = OutboundMessage {
            id: r.id,
            tenant_id: r.tenant_id,
            contact_id: r.contact_id,
            channel_account_id: r.channel_account_id,
            channel: r.channel,
            status: r.status,
            external_message_id: r.external_message_id,
            subject: r.subject,
            body: r.body,
            body_html: r.body_html,
            whatsapp_template: r.whatsapp_template,
            failed_reason: r.failed_reason,
            send_unknown_reason: r.send_unknown_reason,
            workflow_id: r.workflow_id,
            batch_workflow_id: r.batch_workflow_id,
            trigger_event: r.trigger_event,
        };
        (message, r.account.map(|a| a.0), r.contact.map(|c| c.0))
    }))
}

/// Many outbound messages of a tenant, in no particular order.
pub async fn get_outbound_many(
    pool: &PgPool,
    tenant_id: TenantId,
    ids: &[MessageId],
) -> sqlx::Result<Vec<OutboundMessage>> {
    select_outbound!(query_as!(
        OutboundMessage,
        [" from messages m
          where m.tenant_id = $1 and m.id = any($2) and m.direction = 'OUTBOUND'"],
        tenant_id.0,
        &ids.iter().map(|id| id.0).collect::<Vec<_>>()
    ))
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
    select_outbound!(query_as!(
        OutboundMessage,
        [" from messages m
          where m.tenant_id = $1 and m.workflow_id = any($2) and m.attempt = $3
            and m.direction = 'OUTBOUND'"],
        tenant_id.0,
        workflow_ids as &[String],
        attempt
    ))
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
    let rows = sqlx::query!(
        r#"select id as "id: MessageId", status as "status: MessageStatus",
                  coalesce(failed_reason, send_unknown_reason) as reason
             from messages
            where tenant_id = $1 and id = any($2) and status <> 'SENT'"#,
        tenant_id.0,
        &ids.iter().map(|id| id.0).collect::<Vec<_>>()
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.id, r.status, r.reason))
        .collect())
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
    let claimed = sqlx::query!(
        "update messages
            set status = 'SENDING', send_attempt_id = $3, send_claimed_at = now(),
                send_unknown_reason = null, updated_at = now()
          where tenant_id = $1 and id = $2 and status = 'QUEUED'",
        tenant_id.0,
        id.0,
        attempt_id
    )
    .execute(pool)
    .await?;
    if claimed.rows_affected() == 1 {
        return Ok(Claim::Claimed);
    }
    let held = sqlx::query!(
        r#"select status as "status: MessageStatus", send_attempt_id, send_claimed_at
             from messages where tenant_id = $1 and id = $2"#,
        tenant_id.0,
        id.0
    )
    .fetch_one(pool)
    .await?;
    Ok(match held.status {
        MessageStatus::Sending => Claim::HeldByEarlierAttempt {
            attempt_id: held.send_attempt_id,
            claimed_at: held.send_claimed_at,
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
    sqlx::query!(
        "update messages
            set status = 'QUEUED', send_attempt_id = null, send_claimed_at = null, updated_at = now()
          where tenant_id = $1 and id = $2 and status = 'SENDING' and send_attempt_id = $3",
        tenant_id.0,
        id.0,
        attempt_id
    )
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
    sqlx::query!(
        "update messages
            set status = 'FAILED', failed_reason = $4, failed_at = now(), updated_at = now()
          where tenant_id = $1 and id = $2 and status = 'SENDING' and send_attempt_id = $3",
        tenant_id.0,
        id.0,
        attempt_id,
        reason
    )
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
    sqlx::query!(
        "update messages set send_unknown_reason = $3, updated_at = now()
          where tenant_id = $1 and id = $2 and status = 'SENDING'",
        tenant_id.0,
        id.0,
        reason
    )
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
    let row = sqlx::query!(
        r#"select id as "id: MessageId", channel as "channel: Channel",
                  status as "status: MessageStatus"
             from messages
            where tenant_id = $1
              and (workflow_id = $2 or left(workflow_id, length($3)) = $3)
              and status in ('SENDING', 'SENT', 'DELIVERED', 'READ')
            order by created_at
            limit 1"#,
        tenant_id.0,
        workflow_id,
        format!("{workflow_id}/retry/")
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| (r.id, r.channel, r.status)))
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
    let row = sqlx::query!(
        r#"select sent_channel as "channel!: Channel", sent_status as "status!: MessageStatus",
                  pending as "pending!"
             from mark_message_sent($1, $2, $3)"#,
        tenant_id.0,
        id.0,
        external_message_id
    )
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(MessageStatus::Failed);
    };
    if !row.pending {
        return Ok(row.status);
    }
    let mut tx = pool.begin().await?;
    lock_external_id(&mut tx, external_message_id).await?;
    let status = apply_pending_callbacks(&mut tx, tenant_id, id, row.channel, external_message_id)
        .await?
        .unwrap_or(row.status);
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
    sqlx::query!(
        "update messages
            set status = 'FAILED', failed_reason = $3, failed_at = now(), updated_at = now()
          where tenant_id = $1 and id = $2 and status = 'QUEUED'",
        tenant_id.0,
        id.0,
        reason
    )
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
    let matched = sqlx::query!(
        r#"select matched_id as "matched_id!: MessageId",
                  matched_tenant as "matched_tenant!: TenantId",
                  signal_workflow_id, after_status as "after_status!: MessageStatus",
                  changed as "changed!", settles as "settles!"
             from record_delivery_callback($1, $2, $3, $4, $5, $6, $7, $8, $9)"#,
        callback.tenant_id.map(|t| t.0),
        callback.channel as Channel,
        &callback.external_message_id,
        callback.status as MessageStatus,
        callback.reason.as_deref(),
        callback.occurred_at,
        &callback.detail,
        callback.correlation.map(|m| m.0),
        callback.configuration_set.as_deref()
    )
    .fetch_optional(pool)
    .await?;
    Ok(match matched {
        None => CallbackEffect::Pending,
        Some(m) => CallbackEffect::Applied {
            tenant_id: m.matched_tenant,
            message_id: m.matched_id,
            workflow_id: m.signal_workflow_id,
            status: m.after_status,
            changed: m.changed,
            settles: m.settles,
        },
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
    sqlx::query!(
        "select pg_advisory_xact_lock(hashtext('busflow.messages.external_message_id'), hashtext($1))",
        external_message_id
    )
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
    let applied = sqlx::query!(
        r#"select after_status as "after_status!: MessageStatus", changed as "changed!"
             from apply_message_status($1, $2, $3, $4, $5)"#,
        tenant_id.0,
        message_id.0,
        callback.status as MessageStatus,
        callback.occurred_at,
        callback.reason.as_deref()
    )
    .fetch_one(tx)
    .await?;
    Ok((applied.after_status, applied.changed))
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
    let pending = sqlx::query!(
        r#"select id, status as "status: MessageStatus", reason, occurred_at from delivery_callbacks
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
          for update"#,
        channel as Channel,
        external_message_id,
        tenant_id.0,
        message_id.0
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut last = None;
    for row in pending {
        let callback = DeliveryCallback {
            tenant_id: Some(tenant_id),
            channel,
            external_message_id: external_message_id.to_owned(),
            status: row.status,
            reason: row.reason,
            occurred_at: row.occurred_at,
            detail: serde_json::Value::Null,
            correlation: None,
            configuration_set: None,
        };
        let (after, _) = apply_status(tx, tenant_id, message_id, &callback).await?;
        sqlx::query!(
            "update delivery_callbacks set tenant_id = $2, message_id = $3, applied_at = now() where id = $1",
            row.id,
            tenant_id.0,
            message_id.0
        )
        .execute(&mut *tx)
        .await?;
        last = Some(after);
    }
    Ok(last)
}

/// The oldest 500 messages QUEUED for over `secs` seconds, of any tenant
/// (the watchdog's sweep), with the workflow that sends each.
pub async fn queued_longer_than(pool: &PgPool, secs: f64) -> sqlx::Result<Vec<StuckMessage>> {
    sqlx::query_as!(
        StuckMessage,
        r#"select tenant_id as "tenant_id: TenantId", id as "message_id: MessageId",
                  coalesce(batch_workflow_id, workflow_id) as workflow_id
             from messages
            where status = 'QUEUED' and created_at < now() - make_interval(secs => $1)
            order by created_at limit 500"#,
        secs
    )
    .fetch_all(pool)
    .await
}

/// The oldest 500 messages SENDING (claimed) for over `secs` seconds, of any
/// tenant (the watchdog's sweep), with the workflow that sends each.
pub async fn claimed_longer_than(pool: &PgPool, secs: f64) -> sqlx::Result<Vec<StuckMessage>> {
    sqlx::query_as!(
        StuckMessage,
        r#"select tenant_id as "tenant_id: TenantId", id as "message_id: MessageId",
                  coalesce(batch_workflow_id, workflow_id) as workflow_id
             from messages
            where status = 'SENDING' and send_claimed_at < now() - make_interval(secs => $1)
            order by send_claimed_at limit 500"#,
        secs
    )
    .fetch_all(pool)
    .await
}

/// The benchmark's fan-out: how many of the tenant's `trip_delayed`
/// messages are done (DELIVERED or READ) and how many FAILED.
pub async fn bench_fanout_outcomes(pool: &PgPool, tenant_id: TenantId) -> sqlx::Result<(i64, i64)> {
    let counts = sqlx::query!(
        r#"select count(*) filter (where status in ('DELIVERED', 'READ')) as "done!",
                  count(*) filter (where status = 'FAILED') as "failed!"
             from messages where tenant_id = $1 and trigger_event = 'trip_delayed'"#,
        tenant_id.0
    )
    .fetch_one(pool)
    .await?;
    Ok((counts.done, counts.failed))
}

/// The benchmark's fan-out: when our API received the first DELIVERED or
/// READ receipt of each of the tenant's `trip_delayed` messages.
pub async fn bench_fanout_receipts(
    pool: &PgPool,
    tenant_id: TenantId,
) -> sqlx::Result<Vec<chrono::DateTime<chrono::Utc>>> {
    sqlx::query_scalar!(
        r#"select min(d.received_at) as "received_at!"
             from messages m join delivery_callbacks d
               on d.tenant_id = m.tenant_id and d.message_id = m.id and d.status in ('DELIVERED', 'READ')
            where m.tenant_id = $1 and m.trigger_event = 'trip_delayed'
            group by m.id"#,
        tenant_id.0
    )
    .fetch_all(pool)
    .await
}

/// The benchmark's floor: a bare `trip_delayed` WhatsApp message, QUEUED.
pub async fn insert_bench_floor(
    pool: &PgPool,
    tenant_id: TenantId,
    workflow_id: &str,
    body: &str,
) -> sqlx::Result<MessageId> {
    sqlx::query_scalar!(
        r#"insert into messages (tenant_id, direction, channel, workflow_id, trigger_event, body)
         values ($1, 'OUTBOUND', 'WHATSAPP', $2, 'trip_delayed', $3) returning id as "id: MessageId""#,
        tenant_id.0,
        workflow_id,
        body
    )
    .fetch_one(pool)
    .await
}

/// The benchmark's floor: the message SENT, as a provider's answer leaves it.
pub async fn mark_bench_floor_sent(
    pool: &PgPool,
    tenant_id: TenantId,
    id: MessageId,
    external_message_id: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "update messages set status = 'SENT', sent_at = now(), external_message_id = $3, updated_at = now()
          where tenant_id = $1 and id = $2",
        tenant_id.0,
        id.0,
        external_message_id
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// The benchmark's single notifications: how many of the messages of
/// `workflow_ids` are in one of `done_statuses`, how many FAILED, and one
/// failure's reason.
pub async fn bench_outcomes(
    pool: &PgPool,
    tenant_id: TenantId,
    workflow_ids: &[String],
    done_statuses: &[String],
) -> sqlx::Result<(i64, i64, Option<String>)> {
    let counts = sqlx::query!(
        r#"select count(*) filter (where status = any($3)) as "done!",
                  count(*) filter (where status = 'FAILED') as "failed!",
                  min(failed_reason) as reason
             from messages where tenant_id = $1 and workflow_id = any($2)"#,
        tenant_id.0,
        workflow_ids as &[String],
        done_statuses as &[String]
    )
    .fetch_one(pool)
    .await?;
    Ok((counts.done, counts.failed, counts.reason))
}

/// When a message became SENT and DELIVERED: DELIVERED is when our API
/// received the receipt (`delivery_callbacks.received_at`), since the
/// message's own `delivered_at` is the provider's time, in whole seconds.
#[derive(Debug)]
pub struct MessageTimes {
    pub workflow_id: String,
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
    pub delivered_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The benchmark's single notifications: the times of the messages of
/// `workflow_ids`.
pub async fn bench_times(
    pool: &PgPool,
    tenant_id: TenantId,
    workflow_ids: &[String],
) -> sqlx::Result<Vec<MessageTimes>> {
    sqlx::query_as!(
        MessageTimes,
        r#"select m.workflow_id as "workflow_id!", m.sent_at,
                (select min(d.received_at) from delivery_callbacks d
                  where d.tenant_id = m.tenant_id and d.message_id = m.id
                    and d.status in ('DELIVERED', 'READ')) as delivered_at
           from messages m
          where m.tenant_id = $1 and m.workflow_id = any($2)"#,
        tenant_id.0,
        workflow_ids as &[String]
    )
    .fetch_all(pool)
    .await
}

/// The benchmark's single notifications: how many messages of
/// `workflow_ids` are READ.
pub async fn bench_count_read(
    pool: &PgPool,
    tenant_id: TenantId,
    workflow_ids: &[String],
) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"select count(*) as "read!" from messages
            where tenant_id = $1 and workflow_id = any($2) and status = 'READ'"#,
        tenant_id.0,
        workflow_ids as &[String]
    )
    .fetch_one(pool)
    .await
}
