//! Per-tenant send-rate limits, checked before every provider call and shared
//! by every worker through Postgres (`crate::store::rate_limits`:
//! `rate_limit_take`, a GCRA over
//! `rate_limit_buckets`, one statement per send; a fan-out round books a
//! group of sends in one, `rate_limit_reserve_many`).
//!
//! Per channel account: messages per second (SMS: message parts per second)
//! with a burst; on WhatsApp also the pair limit (one message per 6 s to the
//! same user after a burst) and the messaging tier (unique users sent
//! business-initiated messages per rolling 24 h). A limited send is not an
//! error: the caller waits the returned time and tries again.

use crate::model::{Channel, ChannelAccountId, ContactId, TenantId};
use anyhow::Context;
use sqlx::PgPool;
use std::time::Duration;

/// One GCRA bucket a send draws from.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub key: String,
    pub per_second: f64,
    pub burst: i32,
    pub cost: i32,
}

/// A channel account's limits as configured (NULL columns = defaults).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct AccountLimits {
    pub max_send_rate: Option<f64>,
    pub send_burst: Option<i32>,
    pub messaging_tier: Option<String>,
    pub pair_burst: Option<i32>,
}

/// Meta's pair limit: about one message every 6 s to the same user.
const WHATSAPP_PAIR_INTERVAL_SECS: f64 = 6.0;
const WHATSAPP_PAIR_BURST: i32 = 45;

/// Unique business-initiated recipients per rolling 24 h for a tier name.
pub fn tier_limit(tier: &str) -> Option<i64> {
    match tier {
        "TIER_250" => Some(250),
        "TIER_2K" => Some(2_000),
        "TIER_10K" => Some(10_000),
        "TIER_100K" => Some(100_000),
        _ => None,
    }
}

/// What one send costs and whom it goes to.
#[derive(Debug, Clone)]
pub struct Send<'a> {
    pub tenant_id: TenantId,
    pub account_id: ChannelAccountId,
    pub channel: Channel,
    pub contact_id: ContactId,
    /// The provider address (phone, e-mail), for the WhatsApp pair limit.
    pub recipient: &'a str,
    /// Message parts for SMS; 1 otherwise.
    pub cost: i32,
    /// A WhatsApp template message (business-initiated: counts against the tier).
    pub business_initiated: bool,
}

/// The buckets a send draws from, sorted by key (the lock order).
pub fn buckets(limits: &AccountLimits, send: &Send<'_>) -> Vec<Bucket> {
    let Some(rate) = limits
        .max_send_rate
        .or(crate::providers::adapter(send.channel).default_rate())
    else {
        return Vec::new();
    };
    let burst = limits
        .send_burst
        .unwrap_or_else(|| (rate.ceil() as i32).max(1));
    let mut buckets = vec![Bucket {
        key: format!("account:{}", send.account_id),
        per_second: rate,
        burst,
        cost: send.cost.max(1),
    }];
    if send.channel == Channel::WhatsApp {
        buckets.push(Bucket {
            key: format!("pair:{}:{}", send.account_id, send.recipient),
            per_second: 1.0 / WHATSAPP_PAIR_INTERVAL_SECS,
            burst: limits.pair_burst.unwrap_or(WHATSAPP_PAIR_BURST),
            cost: 1,
        });
    }
    buckets.sort_by(|a, b| a.key.cmp(&b.key));
    buckets
}

/// Takes the send from every bucket of an account with `limits`, or
/// returns how long to wait before it may go. `None` = go now.
pub async fn acquire(
    pool: &PgPool,
    limits: &AccountLimits,
    send: &Send<'_>,
) -> anyhow::Result<Option<Duration>> {
    if let Some(wait) = tier_wait(pool, limits, send).await? {
        return Ok(Some(wait));
    }
    take(pool, send.tenant_id, &buckets(limits, send)).await
}

/// Takes one unit of `cost` from every bucket of the tenant at once, or from
/// none: `None` = taken, else how long until all of them would allow it.
/// Pass the buckets sorted by key (the lock order).
pub async fn take(
    pool: &PgPool,
    tenant_id: TenantId,
    buckets: &[Bucket],
) -> anyhow::Result<Option<Duration>> {
    if buckets.is_empty() {
        return Ok(None);
    }
    let wait = crate::store::rate_limits::take(pool, tenant_id, buckets).await?;
    Ok(positive(wait))
}

/// What booking a send's slot gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Booked: send once this wait has passed (zero: now).
    Go(Duration),
    /// Not booked: the next slot is further away than the caller would wait.
    Held(Duration),
}

/// Books the send's slot (see [`reserve_many`]): a sender of many messages
/// waits once per message, never asks twice.
pub async fn reserve(
    pool: &PgPool,
    limits: &AccountLimits,
    send: &Send<'_>,
    longest_wait: Duration,
) -> anyhow::Result<Reservation> {
    let mut booked = reserve_many(pool, limits, std::slice::from_ref(send), longest_wait).await?;
    Ok(booked.pop().unwrap_or(Reservation::Go(Duration::ZERO)))
}

/// Books the slots of `sends`, in order, all on one account with `limits`:
/// one statement for all of them (`rate_limit_reserve_many`), plus one
/// per send that counts against a WhatsApp messaging tier.
pub async fn reserve_many(
    pool: &PgPool,
    limits: &AccountLimits,
    sends: &[Send<'_>],
    longest_wait: Duration,
) -> anyhow::Result<Vec<Reservation>> {
    let held_or_go = |wait: Duration| {
        if wait <= longest_wait {
            Reservation::Go(wait)
        } else {
            Reservation::Held(wait)
        }
    };
    let mut booked = vec![Reservation::Go(Duration::ZERO); sends.len()];
    // Rows of (send, bucket): the sends that draw from a bucket, numbered 1…
    let mut booking = Vec::new();
    let mut rows: Vec<(i32, Bucket)> = Vec::new();
    for (i, send) in sends.iter().enumerate() {
        if let Some(wait) = tier_wait(pool, limits, send).await? {
            booked[i] = held_or_go(wait);
            continue;
        }
        let buckets = buckets(limits, send);
        if buckets.is_empty() {
            continue;
        }
        booking.push(i);
        let number = i32::try_from(booking.len()).context("too many sends to book at once")?;
        rows.extend(buckets.into_iter().map(|b| (number, b)));
    }
    let Some(tenant_id) = sends.first().map(|s| s.tenant_id) else {
        return Ok(booked);
    };
    if booking.is_empty() {
        return Ok(booked);
    }
    let waits =
        crate::store::rate_limits::reserve_many(pool, tenant_id, &rows, longest_wait.as_secs_f64())
            .await?;
    anyhow::ensure!(
        waits.len() == booking.len(),
        "rate_limit_reserve_many booked {} of {} sends",
        waits.len(),
        booking.len()
    );
    for (i, wait) in booking.into_iter().zip(waits) {
        booked[i] = if wait < 0.0 {
            Reservation::Held(Duration::from_secs_f64(-wait))
        } else {
            Reservation::Go(positive(wait).unwrap_or_default())
        };
    }
    Ok(booked)
}

fn positive(wait_secs: f64) -> Option<Duration> {
    (wait_secs > 0.0).then(|| Duration::from_secs_f64(wait_secs).max(Duration::from_millis(1)))
}

/// The messaging tier (WhatsApp, business-initiated): a recipient already
/// counted in the last 24 h is free; a new one waits while the account is at
/// its limit, until the oldest hour of the window leaves it. A counter
/// (`whatsapp_tier_take`), not a scan of the day's messages.
async fn tier_wait(
    pool: &PgPool,
    limits: &AccountLimits,
    send: &Send<'_>,
) -> anyhow::Result<Option<Duration>> {
    let Some(limit) = limits.messaging_tier.as_deref().and_then(tier_limit) else {
        return Ok(None);
    };
    if send.channel != Channel::WhatsApp || !send.business_initiated {
        return Ok(None);
    }
    let wait = crate::store::rate_limits::tier_take(
        pool,
        send.tenant_id,
        send.account_id,
        send.contact_id,
        i32::try_from(limit).unwrap_or(i32::MAX),
    )
    .await?;
    Ok(positive(wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(channel: Channel) -> Send<'static> {
        Send {
            tenant_id: TenantId(uuid::Uuid::nil()),
            account_id: ChannelAccountId(uuid::Uuid::nil()),
            channel,
            contact_id: ContactId(uuid::Uuid::nil()),
            recipient: "+525512345678",
            cost: 1,
            business_initiated: true,
        }
    }

    #[test]
    fn whatsapp_defaults_to_eighty_per_second_and_the_pair_limit() {
        let buckets = buckets(&AccountLimits::default(), &send(Channel::WhatsApp));
        assert_eq!(buckets.len(), 2);
        assert_eq!(buckets[0].per_second, 80.0);
        assert_eq!(buckets[0].burst, 80);
        assert!(buckets[1].key.starts_with("pair:"));
        assert!((buckets[1].per_second - 1.0 / 6.0).abs() < 1e-9);
    }

    #[test]
    fn sms_costs_its_parts_and_webchat_is_unlimited() {
        let limits = AccountLimits {
            max_send_rate: Some(3.0),
            send_burst: Some(1),
            ..AccountLimits::default()
        };
        let mut sms = send(Channel::Sms);
        sms.cost = 3;
        let buckets = buckets(&limits, &sms);
        assert_eq!(buckets.len(), 1);
        assert_eq!(
            (buckets[0].per_second, buckets[0].burst, buckets[0].cost),
            (3.0, 1, 3)
        );
        assert!(
            super::buckets(&AccountLimits::default(), &send(Channel::Webchat)).is_empty(),
            "webchat has no default limit"
        );
        assert_eq!(
            super::buckets(&limits, &send(Channel::Webchat)).len(),
            1,
            "an explicit rate limits webchat too"
        );
    }

    #[test]
    fn tiers_name_their_recipient_counts() {
        assert_eq!(tier_limit("TIER_250"), Some(250));
        assert_eq!(tier_limit("TIER_100K"), Some(100_000));
        assert_eq!(tier_limit("UNLIMITED"), None);
    }
}
