//! Passengers on trips: a booking that is (or was) confirmed joins, leaves
//! or moves between trips on every booking event, whichever trigger it came
//! through, and the trips' reminders are told. Stored versioned by the
//! event's time, so a late or replayed event changes nothing.

use super::response::{event_version, new_row};
use crate::AppState;
use crate::error::ApiError;
use crate::hasura::payload::EventTriggerPayload;
use busflow_activities::model::{ContactId, TenantId};
use busflow_activities::store;
use busflow_activities::triggers::status;
use busflow_workflows::BookingChange;
use serde::Deserialize;
use uuid::Uuid;

/// A booking row, as far as trips care.
#[derive(Debug, Deserialize)]
struct BookingRow {
    id: Uuid,
    #[serde(default)]
    trip_id: Option<Uuid>,
    #[serde(default)]
    status: Option<String>,
}

/// Puts the booking's passenger on its trip (or takes them off) as the row
/// now says, and tells the reminders: the trip it is on and, when it moved,
/// the trip it left. A newer event about the booking wins.
pub(super) async fn record_booking(
    app: &AppState,
    event: &EventTriggerPayload,
    tenant_id: TenantId,
    contact_id: ContactId,
) -> Result<(), ApiError> {
    let row: BookingRow = new_row(event)?;
    let left = event
        .event
        .data
        .old
        .as_ref()
        .and_then(|old| old.get("trip_id"))
        .and_then(|v| serde_json::from_value::<Uuid>(v.clone()).ok())
        .filter(|old_trip| Some(*old_trip) != row.trip_id);
    let Some(trip_id) = row.trip_id else {
        return Ok(());
    };
    let confirmed = row.status.as_deref() == Some(status::CONFIRMED);
    let version = event_version(event);
    let applied = store::trips::upsert_booking(
        &app.pool,
        &store::trips::BookingUpdate {
            tenant_id,
            booking_id: row.id,
            trip_id,
            contact_id,
            confirmed,
            version,
        },
    )
    .await?;
    if !applied {
        return Ok(());
    }
    let change = |confirmed| BookingChange {
        booking_id: row.id,
        contact_id,
        confirmed,
        version_ms: version.timestamp_millis(),
    };
    let deadline = app.config.step_deadline.as_secs();
    let unavailable =
        |e: crate::temporal::StartError| e.into_api_error("trip reminder not updated, retry later");
    if let Some(old_trip) = left {
        app.temporal
            .booking_changed(tenant_id, old_trip, change(false), deadline)
            .await
            .map_err(unavailable)?;
    }
    app.temporal
        .booking_changed(tenant_id, trip_id, change(confirmed), deadline)
        .await
        .map_err(unavailable)?;
    Ok(())
}
