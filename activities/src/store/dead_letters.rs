//! Inbound messages nobody could be found for: kept whole with the reason,
//! counted by `/metrics` (`busflow_inbound_dead_letters`) until replayed,
//! and replayable once the cause is fixed (`busflow-comms dead-letters
//! replay`). Never only a log line.

use crate::model::{Provider, TenantId, text_enum};
use sqlx::PgPool;

text_enum!(
    /// Why a message could not be used.
    DeadLetterCode {
        /// It reached a number or address no account (of the tenant) has.
        UnknownAccount => "UNKNOWN_ACCOUNT",
        /// It names no sender at all.
        NoSender => "NO_SENDER",
        /// Its sender is not an identifier we can keep.
        UnreadableSender => "UNREADABLE_SENDER",
        /// It has no provider message id (it could not be deduplicated).
        NoMessageId => "NO_MESSAGE_ID",
    }
);

/// A message to keep.
#[derive(Debug, Clone)]
pub struct NewDeadLetter {
    pub tenant_id: Option<TenantId>,
    pub provider: Provider,
    pub code: DeadLetterCode,
    pub reason: String,
    /// The part of the provider's payload that could not be used, whole.
    pub payload: serde_json::Value,
}

/// A kept message, as replay reads it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub id: i64,
    pub tenant_id: Option<TenantId>,
    pub provider: Provider,
    pub code: DeadLetterCode,
    pub reason: String,
    pub payload: sqlx::types::Json<serde_json::Value>,
}

/// Keeps one. A provider that redelivers the same payload (Meta retries
/// for days) leaves one row, not one per delivery.
pub async fn keep(pool: &PgPool, letter: &NewDeadLetter) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into inbound_dead_letters (tenant_id, provider, code, reason, payload)
         select $1, $2, $3, $4, $5
          where not exists (select 1 from inbound_dead_letters
                             where provider = $2 and payload = $5 and replayed_at is null
                               and tenant_id is not distinct from $1)",
        letter.tenant_id.map(|t| t.0),
        letter.provider as Provider,
        letter.code as DeadLetterCode,
        &letter.reason,
        &letter.payload
    )
    .execute(pool)
    .await?;
    tracing::warn!(
        dead_letter.code = %letter.code,
        "inbound {} message kept as a dead letter: {}",
        letter.provider,
        letter.reason
    );
    Ok(())
}

/// The ones not replayed yet, oldest first (one, with `id`).
pub async fn open(pool: &PgPool, id: Option<i64>) -> sqlx::Result<Vec<DeadLetter>> {
    sqlx::query_as!(
        DeadLetter,
        r#"select id, tenant_id as "tenant_id: TenantId", provider as "provider: Provider",
                  code as "code: DeadLetterCode", reason,
                  payload as "payload: sqlx::types::Json<serde_json::Value>"
             from inbound_dead_letters
            where replayed_at is null and ($1::bigint is null or id = $1)
            order by id"#,
        id
    )
    .fetch_all(pool)
    .await
}

/// Records a replay that used the message: it leaves the count.
pub async fn mark_replayed(pool: &PgPool, id: i64, result: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "update inbound_dead_letters set replayed_at = now(), replay_result = $2 where id = $1",
        id,
        result
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Records a replay that still could not use it.
pub async fn note_attempt(pool: &PgPool, id: i64, result: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "update inbound_dead_letters set replay_result = $2 where id = $1",
        id,
        result
    )
    .execute(pool)
    .await?;
    Ok(())
}
