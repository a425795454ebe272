//! Messages: one row per message per channel. Status only moves forward
//! (QUEUED < SENT < DELIVERED < READ; FAILED is terminal), enforced in the
//! UPDATE statements themselves so concurrent or late writers cannot regress it.

use crate::model::{Channel, ChannelAccountId, ContactId, MessageId, MessageStatus, TenantId};
use sqlx::PgPool;

/// An outbound message about to be queued by a workflow.
#[derive(Debug, Clone)]
pub struct NewOutboundMessage {
    pub id: MessageId,
    pub tenant_id: TenantId,
    pub contact_id: ContactId,
    pub channel_account_id: ChannelAccountId,
    pub channel: Channel,
    pub workflow_id: String,
    pub attempt: i16,
    pub replaces_message_id: Option<MessageId>,
    pub trigger_event: String,
    pub template_key: String,
    pub subject: Option<String>,
    pub body: String,
    pub body_html: Option<String>,
}

/// Inserts the message QUEUED, or returns the one this workflow step already
/// created (activity retries, workflow replays, a repeated Hasura event).
pub async fn insert_outbound_queued(
    pool: &PgPool,
    message: &NewOutboundMessage,
) -> sqlx::Result<MessageId> {
    sqlx::query_scalar(
        "insert into messages
            (id, tenant_id, contact_id, channel_account_id, direction, channel, status,
             workflow_id, attempt, replaces_message_id, trigger_event, template_key, subject, body, body_html)
         values ($1, $2, $3, $4, 'OUTBOUND', $5, 'QUEUED', $6, $7, $8, $9, $10, $11, $12, $13)
         on conflict (tenant_id, workflow_id, attempt) where workflow_id is not null
         do update set updated_at = messages.updated_at
         returning id",
    )
    .bind(message.id)
    .bind(message.tenant_id)
    .bind(message.contact_id)
    .bind(message.channel_account_id)
    .bind(message.channel)
    .bind(&message.workflow_id)
    .bind(message.attempt)
    .bind(message.replaces_message_id)
    .bind(&message.trigger_event)
    .bind(&message.template_key)
    .bind(&message.subject)
    .bind(&message.body)
    .bind(&message.body_html)
    .fetch_one(pool)
    .await
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
    pub failed_reason: Option<String>,
}

pub async fn get_outbound(
    pool: &PgPool,
    tenant_id: TenantId,
    id: MessageId,
) -> sqlx::Result<Option<OutboundMessage>> {
    sqlx::query_as(
        "select id, tenant_id, contact_id, channel_account_id, channel, status,
                external_message_id, subject, body, body_html, failed_reason
           from messages
          where tenant_id = $1 and id = $2 and direction = 'OUTBOUND'",
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Records the provider's acceptance. A callback that already moved the
/// message further (DELIVERED before our SENT write) keeps its status.
pub async fn mark_sent(
    pool: &PgPool,
    tenant_id: TenantId,
    id: MessageId,
    external_message_id: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "update messages
            set status = case when status = 'QUEUED' then 'SENT' else status end,
                external_message_id = coalesce(external_message_id, $3),
                sent_at = coalesce(sent_at, now()),
                updated_at = now()
          where tenant_id = $1 and id = $2 and status <> 'FAILED'",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(external_message_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Marks the message FAILED with a reason, unless it already got through.
pub async fn mark_failed(
    pool: &PgPool,
    tenant_id: TenantId,
    id: MessageId,
    reason: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "update messages
            set status = 'FAILED', failed_reason = $3, failed_at = now(), updated_at = now()
          where tenant_id = $1 and id = $2 and status in ('QUEUED', 'SENT')",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(())
}
