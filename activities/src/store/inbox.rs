//! The inbound path: a provider delivers a message from a person; it becomes
//! a contact (found by normalized identifier, or created with the provider's
//! profile name), a conversation (the live one, a reopened one, or a new one)
//! and an INBOUND message — in one transaction, without Temporal in the way.
//! Providers deliver at least once (Meta retries for days): the provider's
//! message id makes a second delivery a no-op.
//!
//! People share addresses (a family's one email, a parent's phone), so one
//! identifier can name several contacts. The message goes to exactly one of
//! them, chosen in this order:
//! 1. one with a live (OPEN or SNOOZED) conversation on this account;
//! 2. the one this account last wrote to (the message most likely answers it);
//! 3. one known by the channel's own key (its WhatsApp number) before one
//!    known only by the same phone number;
//! 4. the oldest contact (then the lowest id).

use crate::model::{Channel, ChannelAccountId, ContactId, MessageId, TenantId};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Which identifier the sender is known by on this channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderKey {
    WhatsApp,
    /// Meta's business-scoped user id, for a user known without a number.
    WhatsAppUser,
    Phone,
    Email,
    Webchat,
}

impl SenderKey {
    fn json_key(self) -> &'static str {
        match self {
            SenderKey::WhatsApp => "whatsapp",
            SenderKey::WhatsAppUser => "whatsapp_user_id",
            SenderKey::Phone => "phone",
            SenderKey::Email => "email",
            SenderKey::Webchat => "webchat",
        }
    }
}

/// A message someone sent to a tenant.
#[derive(Debug, Clone)]
pub struct InboundMessage {
    pub tenant_id: TenantId,
    pub channel_account_id: ChannelAccountId,
    pub channel: Channel,
    pub sender_key: SenderKey,
    /// Normalized (E.164 phone, lower-case email, visitor id).
    pub sender: String,
    /// Other identifiers the provider gives for the same person (Meta's user
    /// id next to the number), learned by the contact when it lacks them.
    pub aliases: Vec<(SenderKey, String)>,
    pub sender_name: Option<String>,
    pub external_message_id: String,
    pub subject: Option<String>,
    pub body: String,
    pub content: serde_json::Value,
    pub received_at: chrono::DateTime<chrono::Utc>,
    /// The conversation the message says it continues (an email replying to
    /// one we sent). Honoured only when it is this tenant's, this contact's
    /// and this account's, and not when another conversation of theirs is
    /// live (at most one is): otherwise the usual resolution applies.
    pub conversation_hint: Option<Uuid>,
}

/// What recording an inbound message did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum InboundOutcome {
    Recorded {
        message_id: MessageId,
        conversation_id: Uuid,
        contact_id: ContactId,
        /// The conversation was SNOOZED or RESOLVED and is OPEN again.
        reopened_from: Option<String>,
    },
    /// The provider delivered this message before.
    Duplicate { message_id: MessageId },
}

pub async fn record_inbound(
    pool: &PgPool,
    inbound: &InboundMessage,
) -> sqlx::Result<InboundOutcome> {
    let mut tx = pool.begin().await?;
    if let Some(existing) = find_existing(&mut tx, inbound).await? {
        return Ok(InboundOutcome::Duplicate {
            message_id: existing,
        });
    }
    let contact_id = resolve_contact(&mut tx, inbound).await?;
    let (conversation_id, reopened_from) =
        resolve_conversation(&mut tx, inbound, contact_id).await?;
    // `sent_at` is the provider's time of sending (what unread counts
    // compare); `created_at` is stamped now, under the conversation's row
    // lock, so a conversation's arrivals commit in `created_at` order and a
    // read cursor's arrival watermark never passes one not yet committed.
    let inserted = sqlx::query_scalar!(
        r#"insert into messages
            (tenant_id, conversation_id, contact_id, channel_account_id, direction, channel, status,
             external_message_id, subject, body, content, sent_at, delivered_at, created_at)
         values ($1, $2, $3, $4, 'INBOUND', $5, 'DELIVERED', $6, $7, $8, $9, $10, now(), clock_timestamp())
         on conflict (tenant_id, channel, external_message_id) where external_message_id is not null
         do nothing
         returning id as "id: MessageId""#,
        inbound.tenant_id.0,
        conversation_id,
        contact_id.0,
        inbound.channel_account_id.0,
        inbound.channel as Channel,
        &inbound.external_message_id,
        inbound.subject.as_deref(),
        &inbound.body,
        &inbound.content,
        inbound.received_at
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(message_id) = inserted else {
        // A concurrent delivery of the same message won the insert.
        tx.rollback().await?;
        let existing = find_existing(&mut *pool.acquire().await?, inbound).await?;
        return Ok(InboundOutcome::Duplicate {
            message_id: existing.unwrap_or(MessageId(Uuid::nil())),
        });
    };
    sqlx::query!(
        "update conversations
            set last_message_at = greatest(coalesce(last_message_at, $3), $3),
                last_inbound_at = greatest(coalesce(last_inbound_at, $3), $3),
                updated_at = now()
          where tenant_id = $1 and id = $2",
        inbound.tenant_id.0,
        conversation_id,
        inbound.received_at
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(InboundOutcome::Recorded {
        message_id,
        conversation_id,
        contact_id,
        reopened_from,
    })
}

async fn find_existing(
    conn: &mut PgConnection,
    inbound: &InboundMessage,
) -> sqlx::Result<Option<MessageId>> {
    sqlx::query_scalar!(
        r#"select id as "id: MessageId" from messages
            where tenant_id = $1 and channel = $2 and external_message_id = $3"#,
        inbound.tenant_id.0,
        inbound.channel as Channel,
        &inbound.external_message_id
    )
    .fetch_optional(conn)
    .await
}

/// The contact this identifier names (see the module's rule for a shared
/// one), created with the provider's profile name when unknown. WhatsApp
/// senders also match a contact by phone.
async fn resolve_contact(
    conn: &mut PgConnection,
    inbound: &InboundMessage,
) -> sqlx::Result<ContactId> {
    let key = inbound.sender_key.json_key();
    // Two first messages from the same new person may race: one creates the
    // contact, the other finds it.
    sqlx::query!(
        "select pg_advisory_xact_lock(hashtextextended($1::text || '/' || $2 || '/' || $3, 0))",
        inbound.tenant_id as TenantId,
        key,
        &inbound.sender
    )
    .execute(&mut *conn)
    .await?;
    let found = sqlx::query_scalar!(
        r#"select c.id as "id: ContactId" from contacts c
          where c.tenant_id = $1
            and (c.identifiers ->> $2 = $3 or ($4 and c.identifiers ->> 'phone' = $3))
          order by exists (select 1 from conversations v
                            where v.tenant_id = c.tenant_id and v.contact_id = c.id
                              and v.channel_account_id = $5 and v.status in ('OPEN', 'SNOOZED')) desc,
                   (select max(m.created_at) from messages m
                     where m.tenant_id = c.tenant_id and m.contact_id = c.id
                       and m.channel_account_id = $5 and m.direction = 'OUTBOUND') desc nulls last,
                   coalesce(c.identifiers ->> $2 = $3, false) desc,
                   c.created_at, c.id
          limit 1"#,
        inbound.tenant_id.0,
        key,
        &inbound.sender,
        inbound.sender_key == SenderKey::WhatsApp,
        inbound.channel_account_id.0
    )
    .fetch_optional(&mut *conn)
    .await?;
    let id = match found {
        Some(id) => id,
        None => {
            sqlx::query_scalar!(
                r#"insert into contacts (tenant_id, kind, display_name, identifiers)
                   values ($1, 'CUSTOMER', $2, $3)
                   returning id as "id: ContactId""#,
                inbound.tenant_id.0,
                inbound.sender_name.clone().unwrap_or_default(),
                serde_json::json!({ key: inbound.sender })
            )
            .fetch_one(&mut *conn)
            .await?
        }
    };
    // Learn the WhatsApp number of a contact we knew by phone, and the user
    // id Meta gives next to it.
    let learned = std::iter::once((inbound.sender_key, inbound.sender.as_str()))
        .chain(inbound.aliases.iter().map(|(k, v)| (*k, v.as_str())));
    for (alias_key, value) in learned {
        sqlx::query!(
            "update contacts set identifiers = identifiers || jsonb_build_object($3::text, $4::text), updated_at = now()
              where tenant_id = $1 and id = $2 and not identifiers ? $3",
            inbound.tenant_id.0,
            id.0,
            alias_key.json_key(),
            value
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(id)
}

/// The contact's live conversation on this account, else the hinted one or
/// its latest resolved one reopened, else a new one. Returns the id and, when
/// reopened, the status it had. A hint from another tenant, contact or
/// account matches no row here, so it cannot pull a message across them.
async fn resolve_conversation(
    conn: &mut PgConnection,
    inbound: &InboundMessage,
    contact_id: ContactId,
) -> sqlx::Result<(Uuid, Option<String>)> {
    let latest = sqlx::query!(
        "select id, status from conversations
          where tenant_id = $1 and contact_id = $2 and channel_account_id = $3
          order by (status <> 'RESOLVED') desc,
                   coalesce(id = $4, false) desc,
                   coalesce(last_message_at, created_at) desc
          limit 1
          for update",
        inbound.tenant_id.0,
        contact_id.0,
        inbound.channel_account_id.0,
        inbound.conversation_hint
    )
    .fetch_optional(&mut *conn)
    .await?
    .map(|c| (c.id, c.status));
    match latest {
        Some((id, status)) if status == "OPEN" => Ok((id, None)),
        Some((id, status)) => {
            sqlx::query!(
                "update conversations set status = 'OPEN', snoozed_until = null, updated_at = now()
                  where tenant_id = $1 and id = $2",
                inbound.tenant_id.0,
                id
            )
            .execute(&mut *conn)
            .await?;
            Ok((id, Some(status)))
        }
        None => {
            let inserted = sqlx::query_scalar!(
                "insert into conversations (tenant_id, contact_id, channel_account_id, status)
                 values ($1, $2, $3, 'OPEN')
                 on conflict do nothing
                 returning id",
                inbound.tenant_id.0,
                contact_id.0,
                inbound.channel_account_id.0
            )
            .fetch_optional(&mut *conn)
            .await?;
            match inserted {
                Some(id) => Ok((id, None)),
                None => sqlx::query_scalar!(
                    "select id from conversations
                      where tenant_id = $1 and contact_id = $2 and channel_account_id = $3
                        and status in ('OPEN', 'SNOOZED')",
                    inbound.tenant_id.0,
                    contact_id.0,
                    inbound.channel_account_id.0
                )
                .fetch_one(&mut *conn)
                .await
                .map(|id| (id, None)),
            }
        }
    }
}

/// The conversation of the first of `external_message_ids` (in the caller's
/// order of preference) that is an OUTBOUND message of this tenant on
/// `channel` with a conversation: what a reply to one of our messages
/// continues.
pub async fn conversation_of_outbound(
    pool: &PgPool,
    tenant_id: TenantId,
    channel: Channel,
    external_message_ids: &[String],
) -> sqlx::Result<Option<Uuid>> {
    if external_message_ids.is_empty() {
        return Ok(None);
    }
    sqlx::query_scalar!(
        r#"select conversation_id as "conversation_id!" from messages
            where tenant_id = $1 and channel = $2 and direction = 'OUTBOUND'
              and external_message_id = any($3) and conversation_id is not null
            order by array_position($3, external_message_id), created_at desc
            limit 1"#,
        tenant_id.0,
        channel as Channel,
        external_message_ids as &[String]
    )
    .fetch_optional(pool)
    .await
}

/// Shorthand so the contact id type reads from rows.
impl From<ContactId> for Uuid {
    fn from(id: ContactId) -> Self {
        id.0
    }
}

/// The identifier key a channel's senders are known by.
pub fn sender_key(channel: Channel) -> SenderKey {
    match channel {
        Channel::WhatsApp => SenderKey::WhatsApp,
        Channel::Sms => SenderKey::Phone,
        Channel::Email => SenderKey::Email,
        Channel::Webchat => SenderKey::Webchat,
    }
}
