//! The trip activities: what a trip's reminder workflow knows when it starts,
//! and the pages of recipients a trip-wide fan-out sends to.

use crate::model::{ContactId, TenantId};
use crate::store::trips::{self, BookedPassenger, RecipientSpan, TripSchedule};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::sync::Arc;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TripRef {
    pub tenant_id: TenantId,
    pub trip_id: Uuid,
}

/// The trip as Postgres knows it when its reminder (re)starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TripReminderSeed {
    pub schedule: Option<TripSchedule>,
    pub lead_ms: i64,
    pub passengers: Vec<BookedPassenger>,
}

/// Input of `trip_recipient_spans`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecipientSpansInput {
    pub tenant_id: TenantId,
    pub trip_id: Uuid,
    /// Whether the trip's driver is among the recipients.
    #[serde(default = "yes")]
    pub include_driver: bool,
    pub after: Option<ContactId>,
    pub chunk_size: u32,
    pub chunks: u32,
}

fn yes() -> bool {
    true
}

pub struct TripActivities {
    pool: PgPool,
}

impl TripActivities {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[activities]
impl TripActivities {
    /// The stored trip, the tenant's reminder lead time and the confirmed
    /// bookings.
    #[activity(name = "load_trip_reminder")]
    pub async fn load_trip_reminder(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: TripRef,
    ) -> Result<TripReminderSeed, ActivityError> {
        let pool = &self.pool;
        Ok(TripReminderSeed {
            schedule: trips::schedule(pool, input.tenant_id, input.trip_id).await?,
            lead_ms: trips::reminder_lead_ms(pool, input.tenant_id).await?,
            passengers: trips::confirmed_bookings(pool, input.tenant_id, input.trip_id).await?,
        })
    }

    /// The next page of a trip's recipients, as chunk spans: the page
    /// stays a few hundred bytes however many passengers the trip has.
    #[activity(name = "trip_recipient_spans")]
    pub async fn trip_recipient_spans(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: RecipientSpansInput,
    ) -> Result<Vec<RecipientSpan>, ActivityError> {
        Ok(trips::recipient_spans(
            &self.pool,
            input.tenant_id,
            input.trip_id,
            input.include_driver,
            input.after,
            input.chunk_size,
            input.chunks,
        )
        .await?)
    }
}
