//! What `/metrics` reads from Postgres at scrape time: counts across the
//! tables, for every tenant at once (operator-wide gauges, never shown to a
//! tenant), so every API replica reports the same truth whichever worker
//! did the work.

use sqlx::PgPool;
use std::time::Duration;

/// The cluster-wide counts one scrape reports.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Messages QUEUED longer than the stuck threshold.
    pub stuck: i64,
    /// Messages claimed (SENDING) longer than the stuck threshold ago whose
    /// outcome is still unknown.
    pub unconfirmed: i64,
    /// Messages created in the last 24 h: (channel, direction, status, count).
    pub messages_24h: Vec<(String, String, String, i64)>,
    /// Inbound messages kept for nobody, not yet replayed: (provider, code, count).
    pub dead_letters: Vec<(String, String, i64)>,
    /// Inbound mail quarantined in the last 24 h: (reason, count).
    pub quarantined_24h: Vec<(String, i64)>,
    /// Contacts with an unusable field: (kind, field, count).
    pub identifier_problems: Vec<(String, String, i64)>,
}

/// Reads every gauge, `stuck_threshold` deciding what counts as stuck.
pub async fn read(pool: &PgPool, stuck_threshold: Duration) -> sqlx::Result<Gauges> {
    let threshold = stuck_threshold.as_secs_f64();
    let stuck = sqlx::query_scalar!(
        r#"select count(*) as "count!" from messages
            where status = 'QUEUED' and created_at < now() - make_interval(secs => $1)"#,
        threshold
    )
    .fetch_one(pool)
    .await?;
    let unconfirmed = sqlx::query_scalar!(
        r#"select count(*) as "count!" from messages
            where status = 'SENDING' and send_claimed_at < now() - make_interval(secs => $1)"#,
        threshold
    )
    .fetch_one(pool)
    .await?;
    let messages_24h = sqlx::query!(
        r#"select channel, direction, status, count(*) as "count!" from messages
            where created_at > now() - interval '24 hours'
            group by channel, direction, status order by 1, 2, 3"#
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| (r.channel, r.direction, r.status, r.count))
    .collect();
    let dead_letters = sqlx::query!(
        r#"select provider, code, count(*) as "count!" from inbound_dead_letters
            where replayed_at is null group by provider, code order by 1, 2"#
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| (r.provider, r.code, r.count))
    .collect();
    let quarantined_24h = sqlx::query!(
        r#"select reason, count(*) as "count!" from inbound_quarantine
            where created_at > now() - interval '24 hours' group by reason order by 1"#
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| (r.reason, r.count))
    .collect();
    let identifier_problems = sqlx::query!(
        r#"select c.kind, p.field as "field!", count(*) as "count!"
             from contacts c, jsonb_object_keys(c.identifier_problems) as p(field)
            group by c.kind, p.field order by 1, 2"#
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| (r.kind, r.field, r.count))
    .collect();
    Ok(Gauges {
        stuck,
        unconfirmed,
        messages_24h,
        dead_letters,
        quarantined_24h,
        identifier_problems,
    })
}
