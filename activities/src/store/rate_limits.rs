//! The send-rate limiter's state: the GCRA buckets (`rate_limit_buckets`)
//! and the WhatsApp messaging tier's counters (`whatsapp_tier_counts`,
//! `whatsapp_tier_recipients`), each moved by one SQL function call.
//! `crate::rate_limit` decides which buckets a send draws from.

use crate::model::{ChannelAccountId, ContactId, TenantId};
use crate::rate_limit::Bucket;
use sqlx::PgPool;

/// `rate_limit_take`: takes from every bucket or none; returns the wait in
/// seconds until all of them would allow it (not positive: taken).
pub async fn take(pool: &PgPool, tenant_id: TenantId, buckets: &[Bucket]) -> sqlx::Result<f64> {
    sqlx::query_scalar!(
        r#"select rate_limit_take($1, $2, $3, $4, $5) as "wait!""#,
        tenant_id.0,
        &buckets.iter().map(|b| b.key.clone()).collect::<Vec<_>>(),
        &buckets.iter().map(|b| b.per_second).collect::<Vec<_>>(),
        &buckets.iter().map(|b| b.burst).collect::<Vec<_>>(),
        &buckets.iter().map(|b| b.cost).collect::<Vec<_>>()
    )
    .fetch_one(pool)
    .await
}

/// `rate_limit_reserve_many`: books the sends numbered `1…` in `rows`
/// (send number, bucket), in order, none further away than
/// `longest_wait_secs`; returns each send's wait in seconds (negative: not
/// booked, the next slot that far away).
pub async fn reserve_many(
    pool: &PgPool,
    tenant_id: TenantId,
    rows: &[(i32, Bucket)],
    longest_wait_secs: f64,
) -> sqlx::Result<Vec<f64>> {
    sqlx::query_scalar!(
        r#"select rate_limit_reserve_many($1, $2, $3, $4, $5, $6, $7) as "waits!""#,
        tenant_id.0,
        &rows.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        &rows.iter().map(|(_, b)| b.key.clone()).collect::<Vec<_>>(),
        &rows.iter().map(|(_, b)| b.per_second).collect::<Vec<_>>(),
        &rows.iter().map(|(_, b)| b.burst).collect::<Vec<_>>(),
        &rows.iter().map(|(_, b)| b.cost).collect::<Vec<_>>(),
        longest_wait_secs
    )
    .fetch_one(pool)
    .await
}

/// `whatsapp_tier_take`: counts the recipient against the account's tier of
/// `limit` recipients a day; returns the wait in seconds (not positive: go).
pub async fn tier_take(
    pool: &PgPool,
    tenant_id: TenantId,
    account_id: ChannelAccountId,
    contact_id: ContactId,
    limit: i32,
) -> sqlx::Result<f64> {
    sqlx::query_scalar!(
        r#"select whatsapp_tier_take($1, $2, $3, $4) as "wait!""#,
        tenant_id.0,
        account_id.0,
        contact_id.0,
        limit
    )
    .fetch_one(pool)
    .await
}
