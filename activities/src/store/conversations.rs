//! Conversations: the inbox threads between a contact and a channel account.
//!
//! A thread holds everything said on that account: what the contact wrote,
//! agents' replies and the automated notifications. A notification joins the
//! contact's live (OPEN or SNOOZED) conversation without changing it, or
//! starts one RESOLVED, since nobody needs to act on it until the contact
//! answers ([`crate::store::messages::insert_outbound_queued`]).

use crate::model::{Channel, ChannelAccountId, ContactId, TenantId};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// What a conversation is about: its soft links to the other contexts' rows
/// that the inbox sidebar shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConversationRefs {
    pub booking_id: Option<Uuid>,
    pub trip_id: Option<Uuid>,
    pub invoice_id: Option<Uuid>,
}

impl ConversationRefs {
    /// What a notification's variables name: the booking (`booking.id`, or
    /// the booking a payment is for), the trip (`trip.id`, or the trip of the
    /// booking or incident) and the invoice (`invoice.id`). Anything absent
    /// or not a uuid is no link.
    pub fn of_variables(variables: &Value) -> Self {
        let id = |path: &[&str]| {
            path.iter()
                .try_fold(variables, |value, key| value.get(key))
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<Uuid>().ok())
        };
        Self {
            booking_id: id(&["booking", "id"]).or_else(|| id(&["payment", "booking_id"])),
            trip_id: id(&["trip", "id"])
                .or_else(|| id(&["booking", "trip_id"]))
                .or_else(|| id(&["incident", "trip_id"])),
            invoice_id: id(&["invoice", "id"]),
        }
    }
}

/// When the contact last wrote to the tenant on `channel` (any account):
/// the start of WhatsApp's 24 h customer service window.
pub async fn last_inbound_at(
    pool: &PgPool,
    tenant_id: TenantId,
    contact_id: ContactId,
    channel: Channel,
) -> sqlx::Result<Option<chrono::DateTime<chrono::Utc>>> {
    sqlx::query_scalar!(
        "select max(c.last_inbound_at)
           from conversations c
           join channel_accounts a on a.tenant_id = c.tenant_id and a.id = c.channel_account_id
          where c.tenant_id = $1 and c.contact_id = $2 and a.channel = $3",
        tenant_id.0,
        contact_id.0,
        channel as Channel
    )
    .fetch_one(pool)
    .await
}

/// What an agent reply needs to know about its conversation.
#[derive(Debug, Clone)]
pub struct ReplyTarget {
    pub contact_id: ContactId,
    pub channel_account_id: ChannelAccountId,
    pub channel: Channel,
    pub last_inbound_at: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn reply_target(
    pool: &PgPool,
    tenant_id: TenantId,
    conversation: uuid::Uuid,
) -> sqlx::Result<Option<ReplyTarget>> {
    sqlx::query_as!(
        ReplyTarget,
        r#"select c.contact_id as "contact_id: ContactId",
                  c.channel_account_id as "channel_account_id: ChannelAccountId",
                  a.channel as "channel: Channel", c.last_inbound_at
             from conversations c
             join channel_accounts a on a.tenant_id = c.tenant_id and a.id = c.channel_account_id
            where c.tenant_id = $1 and c.id = $2"#,
        tenant_id.0,
        conversation
    )
    .fetch_optional(pool)
    .await
}

/// Why a conversation change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConversationError {
    #[error("conversation {0} not found")]
    NotFound(uuid::Uuid),
    #[error("conversation {conversation} is already claimed by {assignee}")]
    AlreadyClaimed {
        conversation: uuid::Uuid,
        assignee: String,
    },
    #[error(
        "conversation {0} is resolved: nobody needs to work it; a new message from the customer reopens it"
    )]
    Resolved(uuid::Uuid),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A conversation's routing state after a change.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConversationState {
    pub id: uuid::Uuid,
    pub status: String,
    pub assigned_to: Option<String>,
    pub snoozed_until: Option<chrono::DateTime<chrono::Utc>>,
}

/// `update_state!("update … where …", args…)`: the statement, returning the
/// [`ConversationState`] afterwards.
macro_rules! update_state {
    ($update:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            ConversationState,
            $update + " returning id, status, assigned_to, snoozed_until"
            $(, $arg)*
        )
    };
}

/// Claims an unassigned conversation for `agent`. The row lock makes
/// concurrent claims queue: exactly one wins; claiming one's own again is a
/// no-op. A RESOLVED conversation is nobody's work (a notification's thread
/// starts so) and is refused unchanged: the contact's next message reopens it.
pub async fn claim(
    pool: &PgPool,
    tenant_id: TenantId,
    conversation: uuid::Uuid,
    agent: &str,
) -> Result<ConversationState, ConversationError> {
    let mut tx = pool.begin().await?;
    let current = sqlx::query!(
        r#"select status = 'RESOLVED' as "resolved!", assigned_to from conversations
            where tenant_id = $1 and id = $2 for update"#,
        tenant_id.0,
        conversation
    )
    .fetch_optional(&mut *tx)
    .await?
    .map(|c| (c.resolved, c.assigned_to));
    match current {
        None => return Err(ConversationError::NotFound(conversation)),
        Some((true, _)) => {
            return Err(ConversationError::Resolved(conversation));
        }
        Some((_, Some(assignee))) if assignee != agent => {
            return Err(ConversationError::AlreadyClaimed {
                conversation,
                assignee,
            });
        }
        Some(_) => {}
    }
    let state = update_state!(
        "update conversations set assigned_to = $3, updated_at = now()
          where tenant_id = $1 and id = $2",
        tenant_id.0,
        conversation,
        agent
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(state)
}

/// Assigns (or, with `None`, releases) a conversation regardless of owner.
pub async fn reassign(
    pool: &PgPool,
    tenant_id: TenantId,
    conversation: uuid::Uuid,
    assignee: Option<&str>,
) -> Result<ConversationState, ConversationError> {
    update_state!(
        "update conversations set assigned_to = $3, updated_at = now()
          where tenant_id = $1 and id = $2",
        tenant_id.0,
        conversation,
        assignee
    )
    .fetch_optional(pool)
    .await?
    .ok_or(ConversationError::NotFound(conversation))
}

/// Resolves a conversation (a snoozed one stops snoozing).
pub async fn resolve(
    pool: &PgPool,
    tenant_id: TenantId,
    conversation: uuid::Uuid,
) -> Result<ConversationState, ConversationError> {
    update_state!(
        "update conversations set status = 'RESOLVED', snoozed_until = null, updated_at = now()
          where tenant_id = $1 and id = $2",
        tenant_id.0,
        conversation
    )
    .fetch_optional(pool)
    .await?
    .ok_or(ConversationError::NotFound(conversation))
}

/// Marks what `agent` has seen of the conversation as read, and returns the
/// cursor's provider time (`last_read_at`).
///
/// The cursor is two watermarks over the INBOUND messages present at this
/// moment — those sent up to `read_at` when given (the provider time of the
/// last message the agent's screen showed), else all of them: the greatest
/// provider time (`sent_at`) and the greatest arrival here (`created_at`).
/// `conversation_unread_count` counts a message unread when it is newer on
/// either clock, so a message that arrives after this read stays unread even
/// when its provider time is older than what was read (a late delivery, or
/// the same provider second). A cursor at `now()` would instead swallow any
/// message already sent but not yet arrived. Both watermarks only move
/// forward. Nothing seen yet (no INBOUND message): the provider watermark is
/// `read_at` or now, and every later arrival counts.
pub async fn mark_read(
    pool: &PgPool,
    tenant_id: TenantId,
    conversation: uuid::Uuid,
    agent: &str,
    read_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<chrono::DateTime<chrono::Utc>, ConversationError> {
    // Arrivals within one conversation commit in `created_at` order (the
    // inbound path stamps them under the conversation's row lock), so what
    // this statement's snapshot does not see arrived after its watermark.
    sqlx::query_scalar!(
        "with seen as (
             select max(m.sent_at) as sent_at, max(m.created_at) as created_at
               from messages m
              where m.tenant_id = $1 and m.conversation_id = $2 and m.direction = 'INBOUND'
                and ($4::timestamptz is null or m.sent_at <= $4))
         insert into conversation_read_cursors as r
             (tenant_id, conversation_id, agent_id, last_read_at, last_read_created_at)
         select c.tenant_id, c.id, $3, coalesce($4, s.sent_at, now()),
                coalesce(s.created_at, '-infinity')
           from conversations c cross join seen s
          where c.tenant_id = $1 and c.id = $2
         on conflict (tenant_id, conversation_id, agent_id)
         do update set last_read_at = greatest(r.last_read_at, excluded.last_read_at),
                       last_read_created_at = greatest(coalesce(r.last_read_created_at, r.last_read_at),
                                                       excluded.last_read_created_at)
         returning last_read_at",
        tenant_id.0,
        conversation,
        agent,
        read_at
    )
    .fetch_optional(pool)
    .await?
    .ok_or(ConversationError::NotFound(conversation))
}

/// Snoozes until `until` (a new time replaces the old one).
pub async fn snooze(
    pool: &PgPool,
    tenant_id: TenantId,
    conversation: uuid::Uuid,
    until: chrono::DateTime<chrono::Utc>,
) -> Result<ConversationState, ConversationError> {
    update_state!(
        "update conversations set status = 'SNOOZED', snoozed_until = $3, updated_at = now()
          where tenant_id = $1 and id = $2",
        tenant_id.0,
        conversation,
        until
    )
    .fetch_optional(pool)
    .await?
    .ok_or(ConversationError::NotFound(conversation))
}

/// Ends a snooze early: OPEN again (a resolved conversation stays resolved).
pub async fn unsnooze(
    pool: &PgPool,
    tenant_id: TenantId,
    conversation: uuid::Uuid,
) -> Result<ConversationState, ConversationError> {
    update_state!(
        "update conversations
            set status = case when status = 'SNOOZED' then 'OPEN' else status end,
                snoozed_until = null, updated_at = now()
          where tenant_id = $1 and id = $2",
        tenant_id.0,
        conversation
    )
    .fetch_optional(pool)
    .await?
    .ok_or(ConversationError::NotFound(conversation))
}

/// The snooze timer fired: reopen only if still SNOOZED until exactly that time.
pub async fn wake(
    pool: &PgPool,
    tenant_id: TenantId,
    conversation: uuid::Uuid,
    until_ms: i64,
) -> sqlx::Result<bool> {
    let updated = sqlx::query!(
        "update conversations set status = 'OPEN', snoozed_until = null, updated_at = now()
          where tenant_id = $1 and id = $2 and status = 'SNOOZED'
            and floor(extract(epoch from snoozed_until) * 1000)::bigint = $3",
        tenant_id.0,
        conversation,
        until_ms
    )
    .execute(pool)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Conversations still SNOOZED past their time (the cron reconciliation).
pub async fn overdue_snoozes(
    pool: &PgPool,
    limit: i64,
) -> sqlx::Result<Vec<(TenantId, uuid::Uuid, chrono::DateTime<chrono::Utc>)>> {
    let rows = sqlx::query!(
        r#"select tenant_id as "tenant_id: TenantId", id, snoozed_until as "snoozed_until!"
             from conversations
            where status = 'SNOOZED' and snoozed_until < now()
            order by snoozed_until limit $1"#,
        limit
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.tenant_id, r.id, r.snoozed_until))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_notification_links_the_booking_trip_and_invoice_its_variables_name() {
        let (booking, trip, invoice) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let booking_confirmed = json!({"booking": {"id": booking, "trip_id": trip}, "trip": {}});
        assert_eq!(
            ConversationRefs::of_variables(&booking_confirmed),
            ConversationRefs {
                booking_id: Some(booking),
                trip_id: Some(trip),
                invoice_id: None,
            },
            "a trip not known yet (`trip: {{}}`) is the booking's"
        );
        let stored_trip = Uuid::new_v4();
        let incident = json!({"incident": {"id": Uuid::new_v4(), "trip_id": trip}, "trip": {"id": stored_trip}});
        assert_eq!(
            ConversationRefs::of_variables(&incident).trip_id,
            Some(stored_trip)
        );
        let payment = json!({"payment": {"id": Uuid::new_v4(), "booking_id": booking}});
        assert_eq!(
            ConversationRefs::of_variables(&payment).booking_id,
            Some(booking)
        );
        let invoice_issued = json!({"invoice": {"id": invoice, "number": "F-1"}});
        assert_eq!(
            ConversationRefs::of_variables(&invoice_issued),
            ConversationRefs {
                invoice_id: Some(invoice),
                ..ConversationRefs::default()
            }
        );
        let agent_reply = json!({"agent": "agent-1", "booking": {"id": "BF-7Q2K"}});
        assert_eq!(
            ConversationRefs::of_variables(&agent_reply),
            ConversationRefs::default(),
            "nothing named, or not an id: no link"
        );
    }
}
