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
