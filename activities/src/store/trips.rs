//! Trips and who is booked on them, as Hasura events describe them. Every
//! write carries the event's time as its version and only moves a row
//! forward: a late or replayed event changes nothing.

use crate::model::{ContactId, TenantId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

/// A trip event's row, as stored.
#[derive(Debug, Clone)]
pub struct TripUpdate {
    pub tenant_id: TenantId,
    pub trip_id: Uuid,
    pub departure_at: Option<DateTime<Utc>>,
    pub status: String,
    pub delay_minutes: Option<i32>,
    pub driver_id: Option<Uuid>,
    pub data: serde_json::Value,
    pub version: DateTime<Utc>,
}

/// Statuses after which a trip needs no reminder.
pub const ENDED_STATUSES: &[&str] = &["CANCELLED", "COMPLETED", "DEPARTED", "IN_PROGRESS"];

/// Stores the trip unless a newer event was stored already. Returns whether
/// this event is the trip's latest (a replay of the latest counts). A trip
/// that is no longer DELAYED forgets the delay its passengers were told: the
/// next delay is news again.
pub async fn upsert(pool: &PgPool, trip: &TripUpdate) -> sqlx::Result<bool> {
    let applied = sqlx::query_scalar!(
        r#"insert into trips (tenant_id, id, departure_at, status, delay_minutes, driver_id, data, source_version)
         values ($1, $2, $3, $4, $5, $6, $7, $8)
         on conflict (tenant_id, id) do update
            set departure_at = excluded.departure_at, status = excluded.status,
                delay_minutes = excluded.delay_minutes,
                driver_id = excluded.driver_id, data = excluded.data,
                notified_delay_minutes = case when excluded.status = 'DELAYED'
                                              then trips.notified_delay_minutes end,
                notified_delay_event = case when excluded.status = 'DELAYED'
                                            then trips.notified_delay_event end,
                source_version = excluded.source_version, updated_at = now()
          where trips.source_version <= excluded.source_version
         returning true as "applied!""#,
        trip.tenant_id.0,
        trip.trip_id,
        trip.departure_at,
        &trip.status,
        trip.delay_minutes,
        trip.driver_id,
        &trip.data,
        trip.version
    )
    .fetch_optional(pool)
    .await?;
    Ok(applied.unwrap_or(false))
}

/// A booking's place on a trip.
#[derive(Debug, Clone)]
pub struct BookingUpdate {
    pub tenant_id: TenantId,
    pub booking_id: Uuid,
    pub trip_id: Uuid,
    pub contact_id: ContactId,
    pub confirmed: bool,
    pub version: DateTime<Utc>,
}

/// Stores the booking unless a newer event was stored already; returns
/// whether this event is the booking's latest.
pub async fn upsert_booking(pool: &PgPool, booking: &BookingUpdate) -> sqlx::Result<bool> {
    let applied = sqlx::query_scalar!(
        r#"insert into trip_bookings (tenant_id, booking_id, trip_id, contact_id, status, source_version)
         values ($1, $2, $3, $4, $5, $6)
         on conflict (tenant_id, booking_id) do update
            set trip_id = excluded.trip_id, contact_id = excluded.contact_id,
                status = excluded.status, source_version = excluded.source_version,
                updated_at = now()
          where trip_bookings.source_version <= excluded.source_version
         returning true as "applied!""#,
        booking.tenant_id.0,
        booking.booking_id,
        booking.trip_id,
        booking.contact_id.0,
        if booking.confirmed {
            "CONFIRMED"
        } else {
            "CANCELLED"
        },
        booking.version
    )
    .fetch_optional(pool)
    .await?;
    Ok(applied.unwrap_or(false))
}

/// What the reminder needs to know about a trip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TripSchedule {
    pub departure_at_ms: Option<i64>,
    pub status: String,
    /// The event's time (Unix ms): a snapshot only replaces an older one.
    pub version_ms: i64,
    /// `trip.*` for templates: the row plus `departure_local` in the
    /// tenant's time zone.
    pub variables: serde_json::Value,
}

impl TripSchedule {
    pub fn ended(&self) -> bool {
        ENDED_STATUSES.contains(&self.status.as_str())
    }
}

/// The stored trip with its template variables.
pub async fn schedule(
    pool: &PgPool,
    tenant_id: TenantId,
    trip_id: Uuid,
) -> sqlx::Result<Option<TripSchedule>> {
    sqlx::query_as!(
        TripSchedule,
        r#"select floor(extract(epoch from t.departure_at) * 1000)::bigint as departure_at_ms,
                t.status,
                floor(extract(epoch from t.source_version) * 1000)::bigint as "version_ms!",
                t.data || jsonb_build_object(
                    'departure_local',
                    coalesce(to_char(t.departure_at at time zone coalesce(s.time_zone, 'UTC'), 'YYYY-MM-DD HH24:MI'), ''))
                    as "variables!"
           from trips t
           left join tenant_settings s on s.tenant_id = t.tenant_id
          where t.tenant_id = $1 and t.id = $2"#,
        tenant_id.0,
        trip_id
    )
    .fetch_optional(pool)
    .await
}

/// The driver of a stored trip: `None` when the trip is not known,
/// `Some(None)` when it has no driver.
pub async fn driver(
    pool: &PgPool,
    tenant_id: TenantId,
    trip_id: Uuid,
) -> sqlx::Result<Option<Option<Uuid>>> {
    sqlx::query_scalar!(
        "select driver_id from trips where tenant_id = $1 and id = $2",
        tenant_id.0,
        trip_id
    )
    .fetch_optional(pool)
    .await
}

/// A delay about to be told to a trip's passengers.
#[derive(Debug, Clone)]
pub struct DelayNotice {
    pub tenant_id: TenantId,
    pub trip_id: Uuid,
    pub delay_minutes: i32,
    /// The Hasura event telling it: its own retries may claim it again.
    pub event_id: String,
    pub threshold_minutes: i32,
}

/// Claims the right to tell the passengers this delay: granted for the
/// trip's first delay, for one at least `threshold_minutes` longer than the
/// delay last told, and again to the event that claimed it (its retries).
pub async fn claim_delay_notice(pool: &PgPool, notice: &DelayNotice) -> sqlx::Result<bool> {
    let claimed = sqlx::query_scalar!(
        r#"update trips
            set notified_delay_minutes = $3, notified_delay_event = $4, updated_at = now()
          where tenant_id = $1 and id = $2
            and (notified_delay_event = $4
                 or notified_delay_minutes is null
                 or $3 >= notified_delay_minutes + $5)
         returning true as "claimed!""#,
        notice.tenant_id.0,
        notice.trip_id,
        notice.delay_minutes,
        &notice.event_id,
        notice.threshold_minutes
    )
    .fetch_optional(pool)
    .await?;
    Ok(claimed.unwrap_or(false))
}

/// The reminder lead of a tenant without settings: 24 h.
pub const DEFAULT_REMINDER_LEAD_MS: i64 = 24 * 3600 * 1000;

/// How long before departure the tenant reminds passengers (24 h by default).
pub async fn reminder_lead_ms(pool: &PgPool, tenant_id: TenantId) -> sqlx::Result<i64> {
    let lead = sqlx::query_scalar!(
        r#"select (extract(epoch from reminder_lead) * 1000)::bigint as "lead_ms!"
             from tenant_settings where tenant_id = $1"#,
        tenant_id.0
    )
    .fetch_optional(pool)
    .await?;
    Ok(lead.unwrap_or(DEFAULT_REMINDER_LEAD_MS))
}

/// One confirmed booking on a trip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookedPassenger {
    pub booking_id: Uuid,
    pub contact_id: ContactId,
    pub version_ms: i64,
}

/// The confirmed bookings of a trip.
pub async fn confirmed_bookings(
    pool: &PgPool,
    tenant_id: TenantId,
    trip_id: Uuid,
) -> sqlx::Result<Vec<BookedPassenger>> {
    sqlx::query_as!(
        BookedPassenger,
        r#"select booking_id, contact_id as "contact_id: ContactId",
                  floor(extract(epoch from source_version) * 1000)::bigint as "version_ms!"
             from trip_bookings
            where tenant_id = $1 and trip_id = $2 and status = 'CONFIRMED'
            order by booking_id"#,
        tenant_id.0,
        trip_id
    )
    .fetch_all(pool)
    .await
}

/// The recipients of a trip-wide notice, in contact id order: confirmed
/// bookings and (when asked) the driver. One text for both statements so the
/// page of chunks and the chunk's own read can never disagree on who they
/// are: `trip_recipients!(query!([head…], [tail…], args…))` runs `head`, the
/// recipients (`$1` tenant, `$2` trip, `$3` whether the driver is one), `tail`.
macro_rules! trip_recipients {
    ($query:ident!([$($head:literal),+], [$($tail:literal),+] $(, $arg:expr)* $(,)?)) => {
        sqlx::$query!(
            $($head +)+ "select contact_id from trip_bookings
      where tenant_id = $1 and trip_id = $2 and status = 'CONFIRMED'
     union
     select c.id from trips t
       join contacts c on c.tenant_id = t.tenant_id and c.driver_id = t.driver_id
      where t.tenant_id = $1 and t.id = $2 and $3" $(+ $tail)+
            $(, $arg)*
        )
    };
}

/// One chunk of a trip's recipients: those with ids in `(after, last]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecipientSpan {
    pub after: Option<ContactId>,
    pub last: ContactId,
    /// Recipients in the span when the page was read.
    pub count: u32,
}

/// The next page of a trip's recipients after `after`, at most
/// `chunks` spans of `chunk_size`: only the spans' ends are read out, the
/// chunks read their own recipients.
pub async fn recipient_spans(
    pool: &PgPool,
    tenant_id: TenantId,
    trip_id: Uuid,
    include_driver: bool,
    after: Option<ContactId>,
    chunk_size: u32,
    chunks: u32,
) -> sqlx::Result<Vec<RecipientSpan>> {
    let ends = trip_recipients!(query!(
        ["with page as (
             select contact_id, row_number() over (order by contact_id) as n
               from ("],
        [r#") r
              where $4::uuid is null or contact_id > $4
              order by contact_id
              limit $5::bigint * $6::bigint)
         select contact_id as "contact_id!: ContactId", n as "n!" from page
          where n % $5 = 0 or n = (select max(n) from page)
          order by n"#],
        tenant_id.0,
        trip_id,
        include_driver,
        after.map(|a| a.0),
        i64::from(chunk_size),
        i64::from(chunks)
    ))
    .fetch_all(pool)
    .await?;
    let mut spans = Vec::with_capacity(ends.len());
    let (mut from, mut counted) = (after, 0i64);
    for (last, n) in ends.into_iter().map(|e| (e.contact_id, e.n)) {
        spans.push(RecipientSpan {
            after: from,
            last,
            count: u32::try_from(n - counted).unwrap_or(u32::MAX),
        });
        (from, counted) = (Some(last), n);
    }
    Ok(spans)
}

/// A span's recipients as they are now.
pub async fn recipients_in(
    pool: &PgPool,
    tenant_id: TenantId,
    trip_id: Uuid,
    include_driver: bool,
    span: &RecipientSpan,
) -> sqlx::Result<Vec<ContactId>> {
    trip_recipients!(query_scalar!(
        ["select contact_id as \"contact_id!: ContactId\" from ("],
        [") r
          where ($4::uuid is null or contact_id > $4) and contact_id <= $5
          order by contact_id"],
        tenant_id.0,
        trip_id,
        include_driver,
        span.after.map(|a| a.0),
        span.last.0
    ))
    .fetch_all(pool)
    .await
}

/// Confirmed bookings of `contacts` on the trip, as the booking events leave
/// them (the benchmark's fan-outs).
pub async fn insert_bench_bookings(
    pool: &PgPool,
    tenant_id: TenantId,
    trip_id: Uuid,
    contacts: &[ContactId],
) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into trip_bookings (tenant_id, booking_id, trip_id, contact_id, status, source_version)
         select $1, gen_random_uuid(), $2, c, 'CONFIRMED', now() from unnest($3::uuid[]) as c",
        tenant_id.0,
        trip_id,
        &contacts.iter().map(|c| c.0).collect::<Vec<_>>()
    )
    .execute(pool)
    .await?;
    Ok(())
}
