//! Conversations: the inbox threads between a contact and a channel account.

use crate::model::{Channel, ContactId, TenantId};
use sqlx::PgPool;

/// When the contact last wrote to the tenant on `channel` (any account):
/// the start of WhatsApp's 24 h customer service window.
pub async fn last_inbound_at(
    pool: &PgPool,
    tenant_id: TenantId,
    contact_id: ContactId,
    channel: Channel,
) -> sqlx::Result<Option<chrono::DateTime<chrono::Utc>>> {
    sqlx::query_scalar(
        "select max(c.last_inbound_at)
           from conversations c
           join channel_accounts a on a.tenant_id = c.tenant_id and a.id = c.channel_account_id
          where c.tenant_id = $1 and c.contact_id = $2 and a.channel = $3",
    )
    .bind(tenant_id)
    .bind(contact_id)
    .bind(channel)
    .fetch_one(pool)
    .await
}

/// What an agent reply needs to know about its conversation.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReplyTarget {
    pub contact_id: ContactId,
    pub channel_account_id: crate::model::ChannelAccountId,
    pub channel: Channel,
    pub last_inbound_at: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn reply_target(
    pool: &PgPool,
    tenant_id: TenantId,
    conversation: uuid::Uuid,
) -> sqlx::Result<Option<ReplyTarget>> {
    sqlx::query_as(
        "select c.contact_id, c.channel_account_id, a.channel, c.last_inbound_at
           from conversations c
           join channel_accounts a on a.tenant_id = c.tenant_id and a.id = c.channel_account_id
          where c.tenant_id = $1 and c.id = $2",
    )
    .bind(tenant_id)
    .bind(conversation)
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
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A conversation's routing state after a change.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct ConversationState {
    pub id: uuid::Uuid,
    pub status: String,
    pub assigned_to: Option<String>,
    pub snoozed_until: Option<chrono::DateTime<chrono::Utc>>,
}

const STATE: &str = "id, status, assigned_to, snoozed_until";

/// Claims an unassigned conversation for `agent`. The row lock makes
/// concurrent claims queue: exactly one wins; claiming one's own again is a
/// no-op.
pub async fn claim(
    pool: &PgPool,
    tenant_id: TenantId,
    conversation: uuid::Uuid,
    agent: &str,
) -> Result<ConversationState, ConversationError> {
    let mut tx = pool.begin().await?;
    let current: Option<Option<String>> = sqlx::query_scalar(
        "select assigned_to from conversations where tenant_id = $1 and id = $2 for update",
    )
    .bind(tenant_id)
    .bind(conversation)
    .fetch_optional(&mut *tx)
    .await?;
    match current {
        None => return Err(ConversationError::NotFound(conversation)),
        Some(Some(assignee)) if assignee != agent => {
            return Err(ConversationError::AlreadyClaimed {
                conversation,
                assignee,
            });
        }
        Some(_) => {}
    }
    let state = sqlx::query_as(&format!(
        "update conversations set assigned_to = $3, updated_at = now()
          where tenant_id = $1 and id = $2 returning {STATE}"
    ))
    .bind(tenant_id)
    .bind(conversation)
    .bind(agent)
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
    sqlx::query_as(&format!(
        "update conversations set assigned_to = $3, updated_at = now()
          where tenant_id = $1 and id = $2 returning {STATE}"
    ))
    .bind(tenant_id)
    .bind(conversation)
    .bind(assignee)
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
    sqlx::query_as(&format!(
        "update conversations set status = 'RESOLVED', snoozed_until = null, updated_at = now()
          where tenant_id = $1 and id = $2 returning {STATE}"
    ))
    .bind(tenant_id)
    .bind(conversation)
    .fetch_optional(pool)
    .await?
    .ok_or(ConversationError::NotFound(conversation))
}

/// Moves `agent`'s read cursor forward to `read_at` (never back).
pub async fn mark_read(
    pool: &PgPool,
    tenant_id: TenantId,
    conversation: uuid::Uuid,
    agent: &str,
    read_at: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, ConversationError> {
    let exists: bool = sqlx::query_scalar(
        "select exists(select 1 from conversations where tenant_id = $1 and id = $2)",
    )
    .bind(tenant_id)
    .bind(conversation)
    .fetch_one(pool)
    .await?;
    if !exists {
        return Err(ConversationError::NotFound(conversation));
    }
    Ok(sqlx::query_scalar(
        "insert into conversation_read_cursors (tenant_id, conversation_id, agent_id, last_read_at)
         values ($1, $2, $3, $4)
         on conflict (tenant_id, conversation_id, agent_id)
         do update set last_read_at = greatest(conversation_read_cursors.last_read_at, excluded.last_read_at)
         returning last_read_at",
    )
    .bind(tenant_id)
    .bind(conversation)
    .bind(agent)
    .bind(read_at)
    .fetch_one(pool)
    .await?)
}

/// Snoozes until `until` (a new time replaces the old one).
pub async fn snooze(
    pool: &PgPool,
    tenant_id: TenantId,
    conversation: uuid::Uuid,
    until: chrono::DateTime<chrono::Utc>,
) -> Result<ConversationState, ConversationError> {
    sqlx::query_as(&format!(
        "update conversations set status = 'SNOOZED', snoozed_until = $3, updated_at = now()
          where tenant_id = $1 and id = $2 returning {STATE}"
    ))
    .bind(tenant_id)
    .bind(conversation)
    .bind(until)
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
    sqlx::query_as(&format!(
        "update conversations
            set status = case when status = 'SNOOZED' then 'OPEN' else status end,
                snoozed_until = null, updated_at = now()
          where tenant_id = $1 and id = $2 returning {STATE}"
    ))
    .bind(tenant_id)
    .bind(conversation)
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
    let updated = sqlx::query(
        "update conversations set status = 'OPEN', snoozed_until = null, updated_at = now()
          where tenant_id = $1 and id = $2 and status = 'SNOOZED'
            and floor(extract(epoch from snoozed_until) * 1000)::bigint = $3",
    )
    .bind(tenant_id)
    .bind(conversation)
    .bind(until_ms)
    .execute(pool)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Conversations still SNOOZED past their time (the cron reconciliation).
pub async fn overdue_snoozes(
    pool: &PgPool,
    limit: i64,
) -> sqlx::Result<Vec<(TenantId, uuid::Uuid, chrono::DateTime<chrono::Utc>)>> {
    sqlx::query_as(
        "select tenant_id, id, snoozed_until from conversations
          where status = 'SNOOZED' and snoozed_until < now()
          order by snoozed_until limit $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}
