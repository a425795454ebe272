//! What a webchat visitor's widget reads: the visitor's own messages and
//! what we sent them, in the order of the visitor's sequence numbers
//! (`messages.webchat_seq`, taken under the visitor's row lock, so a cursor
//! never skips a message that commits late; see the migration
//! `…13_webchat_delivery.sql`). An outbound message is visible from SENT on.

use crate::model::{Direction, MessageId, MessageStatus, TenantId};
use sqlx::PgPool;

/// The channel each visible message is announced on, as `{tenant}:{visitor}`.
pub const NOTIFY_CHANNEL: &str = "busflow_webchat";

/// One message as the widget shows it.
#[derive(Debug, Clone)]
pub struct VisitorMessage {
    pub id: MessageId,
    pub direction: Direction,
    pub body: String,
    pub subject: Option<String>,
    pub sent_at: chrono::DateTime<chrono::Utc>,
    pub status: MessageStatus,
    /// Its place in the visitor's sequence: the widget's cursor.
    pub seq: i64,
    pub external_message_id: Option<String>,
}

/// `visitor_messages!("where…", args…)`: a visitor's messages (`v`: their
/// row, `m`: their messages) as the widget shows them.
macro_rules! visitor_messages {
    ($($tail:literal),+ $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            VisitorMessage,
            r#"select m.id as "id: MessageId", m.direction as "direction: Direction", m.body,
                      m.subject, coalesce(m.sent_at, m.created_at) as "sent_at!",
                      m.status as "status: MessageStatus", m.webchat_seq as "seq!",
                      m.external_message_id
                 from webchat_visitors v
                 join messages m on m.tenant_id = v.tenant_id and m.contact_id = v.contact_id
                "# $(+ $tail)+
            $(, $arg)*
        )
    };
}

/// The visitor's messages after `cursor`, oldest first, at most `limit`.
pub async fn after(
    pool: &PgPool,
    tenant_id: TenantId,
    visitor: &str,
    cursor: i64,
    limit: i64,
) -> sqlx::Result<Vec<VisitorMessage>> {
    visitor_messages!(
        "where v.tenant_id = $1 and v.visitor_id = $2
            and m.channel = 'WEBCHAT' and m.webchat_seq > $3
          order by m.webchat_seq
          limit $4",
        tenant_id.0,
        visitor,
        cursor,
        limit
    )
    .fetch_all(pool)
    .await
}

/// Of `ids`, the outbound messages sent to this visitor (and visible).
pub async fn sent_to_visitor(
    pool: &PgPool,
    tenant_id: TenantId,
    visitor: &str,
    ids: &[MessageId],
) -> sqlx::Result<Vec<VisitorMessage>> {
    visitor_messages!(
        "where v.tenant_id = $1 and v.visitor_id = $2 and m.id = any($3)
            and m.channel = 'WEBCHAT' and m.direction = 'OUTBOUND' and m.webchat_seq is not null
          order by m.webchat_seq",
        tenant_id.0,
        visitor,
        &ids.iter().map(|id| id.0).collect::<Vec<_>>()
    )
    .fetch_all(pool)
    .await
}
