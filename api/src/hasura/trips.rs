//! Trips on `POST /hasura/events`: `trip_upserted` records a trip and tells
//! its reminder; bookings with a `trip_id` join or leave it; trip-wide
//! triggers fan out to everyone on it. Trips and bookings are stored
//! versioned by the event's time, so a late or replayed event changes nothing.

use super::events::{EventResponse, Outcome, ignored, new_row, status_gate};
use super::payload::EventTriggerPayload;
use crate::AppState;
use crate::error::ApiError;
use crate::temporal::StartResult;
use busflow_activities::model::{ContactId, TenantId};
use busflow_activities::store;
use busflow_activities::triggers::{self, NotificationTrigger};
use busflow_workflows::names::fanout_workflow_id;
use busflow_workflows::{BatchProgress, BatchRequest, BookingChange, Recipients};
use serde::Deserialize;
use uuid::Uuid;

/// A confirmed or cancelled booking on a trip: stored, and the trip's
/// reminder told (other booking triggers change nothing here).
pub(super) async fn record_booking(
    app: &AppState,
    event: &EventTriggerPayload,
    trigger: &NotificationTrigger,
    tenant_id: TenantId,
    trip_id: Uuid,
    booking_id: Uuid,
    contact_id: ContactId,
) -> Result<(), ApiError> {
    let Some(confirmed) = booking_status_change(trigger) else {
        return Ok(());
    };
    let applied = store::trips::upsert_booking(
        &app.pool,
        &store::trips::BookingUpdate {
            tenant_id,
            booking_id,
            trip_id,
            contact_id,
            confirmed,
            version: event_version(event),
        },
    )
    .await
    .map_err(anyhow::Error::from)?;
    if applied {
        let change = BookingChange {
            booking_id,
            contact_id,
            confirmed,
            version_ms: event_version(event).timestamp_millis(),
        };
        app.temporal
            .booking_changed(
                tenant_id,
                trip_id,
                change,
                app.config.step_deadline.as_secs(),
            )
            .await
            .map_err(|e| e.into_api_error("trip reminder not updated, retry later"))?;
    }
    Ok(())
}

/// Whether a booking trigger puts its passenger on the trip or takes them off.
fn booking_status_change(trigger: &NotificationTrigger) -> Option<bool> {
    match trigger.name {
        triggers::BOOKING_CONFIRMED => Some(true),
        triggers::BOOKING_CANCELLED => Some(false),
        _ => None,
    }
}

/// The event's time orders it against other events about the same row;
/// without one (a manual replay tool) it counts as now.
fn event_version(event: &EventTriggerPayload) -> chrono::DateTime<chrono::Utc> {
    event.created_at.unwrap_or_else(chrono::Utc::now)
}

/// A trip row as Hasura sends it (`trips` INSERT/UPDATE).
#[derive(Debug, Deserialize)]
struct TripRow {
    id: Uuid,
    tenant_id: Uuid,
    #[serde(default, deserialize_with = "departure_at")]
    departure_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    driver_id: Option<Uuid>,
}

/// `departure_at` as Hasura sends a timestamptz; the error names the field
/// (serde's own message for a bad timestamp does not).
fn departure_at<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, D::Error> {
    let Some(raw) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    chrono::DateTime::parse_from_rfc3339(&raw)
        .map(|t| Some(t.with_timezone(&chrono::Utc)))
        .map_err(|e| {
            serde::de::Error::custom(format!(
                "departure_at '{raw}' is not an RFC 3339 timestamp ({e})"
            ))
        })
}

/// Records the trip (if this event is its latest) and tells its reminder.
/// Returns the reminder's workflow id, or `None` when a newer event about
/// the trip was recorded already.
async fn record_trip(
    app: &AppState,
    event: &EventTriggerPayload,
    row: &TripRow,
) -> Result<Option<String>, ApiError> {
    let tenant_id = TenantId(row.tenant_id);
    let applied = store::trips::upsert(
        &app.pool,
        &store::trips::TripUpdate {
            tenant_id,
            trip_id: row.id,
            departure_at: row.departure_at,
            status: row.status.clone().unwrap_or_else(|| "SCHEDULED".to_owned()),
            driver_id: row.driver_id,
            data: event.event.data.new.clone().unwrap_or_default(),
            version: event_version(event),
        },
    )
    .await
    .map_err(anyhow::Error::from)?;
    if !applied {
        return Ok(None);
    }
    let schedule = store::trips::schedule(&app.pool, tenant_id, row.id)
        .await
        .map_err(anyhow::Error::from)?
        .ok_or_else(|| anyhow::anyhow!("trip {} vanished right after it was stored", row.id))?;
    let workflow_id = app
        .temporal
        .trip_changed(
            tenant_id,
            row.id,
            schedule,
            app.config.step_deadline.as_secs(),
        )
        .await
        .map_err(|e| e.into_api_error("trip reminder not updated, retry later"))?;
    Ok(Some(workflow_id))
}

/// `trip_upserted`: a trip was created or changed (departure, status).
pub(super) async fn upsert_trip(
    app: &AppState,
    event: &EventTriggerPayload,
) -> Result<EventResponse, ApiError> {
    let row: TripRow = new_row(event)?;
    match record_trip(app, event, &row).await? {
        Some(workflow_id) => Ok(EventResponse {
            outcome: Outcome::TripUpdated,
            workflow_id: Some(workflow_id),
            contact_id: None,
            reason: None,
        }),
        None => Ok(ignored(format!(
            "a newer event about trip {} was applied already",
            row.id
        ))),
    }
}

/// The columns a trip-wide notification's row has: the trip itself, or a
/// row (an incident) that names its trip.
#[derive(Debug, Deserialize)]
struct TripWideRow {
    id: Uuid,
    tenant_id: Uuid,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    trip_id: Option<Uuid>,
}

/// One event for everyone on a trip: a `BatchNotificationWorkflow` under
/// `fanout/{tenant}/{event}`.
pub(super) async fn notify_trip(
    app: &AppState,
    event: &EventTriggerPayload,
    trigger: &NotificationTrigger,
) -> Result<EventResponse, ApiError> {
    let row: TripWideRow = new_row(event)?;
    if let Some(skip) = status_gate(event, trigger, row.status.as_deref()) {
        return Ok(skip);
    }
    let tenant_id = TenantId(row.tenant_id);
    let data = event.event.data.new.clone().unwrap_or_default();
    let trip_id = if trigger.row_key == "trip" {
        let trip: TripRow = new_row(event)?;
        record_trip(app, event, &trip).await?;
        row.id
    } else {
        row.trip_id.ok_or_else(|| {
            ApiError::bad_request(
                "INVALID_ROW",
                format!(
                    "trigger '{}': event.data.new.trip_id is required (the trip whose passengers to notify)",
                    trigger.name
                ),
            )
        })?
    };
    let trip = store::trips::schedule(&app.pool, tenant_id, trip_id)
        .await
        .map_err(anyhow::Error::from)?
        .map(|s| s.variables)
        .unwrap_or_else(|| data.clone());
    let mut variables = serde_json::json!({ "trip": trip });
    if trigger.row_key != "trip" {
        variables[trigger.row_key] = data;
    }
    let mut entity_refs = vec![format!("trip:{trip_id}")];
    if trigger.row_key != "trip" {
        entity_refs.push(format!("{}:{}", trigger.row_key, row.id));
    }
    let workflow_id = fanout_workflow_id(tenant_id, &event.id);
    let request = BatchRequest {
        tenant_id,
        trigger_event: trigger.name.to_owned(),
        source_event_id: event.id.clone(),
        variables,
        recipients: Recipients::TripPassengers { trip_id },
        entity_refs,
        concurrency: app.config.fanout_concurrency,
        step_deadline_secs: app.config.step_deadline.as_secs(),
        progress: BatchProgress::default(),
    };
    let result = app
        .temporal
        .start_batch(
            &workflow_id,
            request,
            format!("{} to everyone on trip {trip_id}", trigger.name),
        )
        .await
        .map_err(|e| e.into_api_error("fan-out not started, retry later"))?;
    Ok(EventResponse {
        outcome: match result {
            StartResult::Started => Outcome::Started,
            StartResult::AlreadyStarted => Outcome::AlreadyStarted,
        },
        workflow_id: Some(workflow_id),
        contact_id: None,
        reason: None,
    })
}
