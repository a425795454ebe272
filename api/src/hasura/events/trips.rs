//! Trips on `POST /hasura/events`: `trip_upserted` records a trip and tells
//! its reminder; trip-wide triggers fan out to everyone on the trip. Trips
//! are stored versioned by the event's time, so a late or replayed event
//! changes nothing, and news that a newer write already overtook (a delay
//! arriving after the cancellation) is not sent.

use super::response::{
    EventResponse, Outcome, event_version, new_row, row_write, with_local_times,
};
use crate::AppState;
use crate::error::ApiError;
use crate::hasura::payload::EventTriggerPayload;
use crate::temporal::StartResult;
use busflow_activities::model::TenantId;
use busflow_activities::store;
use busflow_activities::triggers::{
    Decision, NotificationTrigger, RecipientRule, RowWrite, Trigger, status,
};
use busflow_workflows::names::fanout_workflow_id;
use busflow_workflows::{BatchProgress, BatchRequest, Recipients};
use serde::Deserialize;
use uuid::Uuid;

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
    delay_minutes: Option<i32>,
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

/// Whether the event was the trip's latest when it arrived.
enum Recorded {
    /// It was (or is a replay of the latest); the reminder was told.
    Latest { reminder: String },
    /// A newer write about the trip was recorded first.
    Overtaken,
}

/// Records the trip (if this event is its latest) and tells its reminder.
async fn record_trip(
    app: &AppState,
    event: &EventTriggerPayload,
    row: &TripRow,
) -> Result<Recorded, ApiError> {
    let tenant_id = TenantId(row.tenant_id);
    let applied = store::trips::upsert(
        &app.pool,
        &store::trips::TripUpdate {
            tenant_id,
            trip_id: row.id,
            departure_at: row.departure_at,
            status: row
                .status
                .clone()
                .unwrap_or_else(|| status::SCHEDULED.to_owned()),
            delay_minutes: row.delay_minutes,
            driver_id: row.driver_id,
            data: event.event.data.new.clone().unwrap_or_default(),
            version: event_version(event),
        },
    )
    .await?;
    if !applied {
        return Ok(Recorded::Overtaken);
    }
    let schedule = store::trips::schedule(&app.pool, tenant_id, row.id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("trip {} vanished right after it was stored", row.id))?;
    let reminder = app
        .temporal
        .trip_changed(
            tenant_id,
            row.id,
            schedule,
            app.config.step_deadline.as_secs(),
        )
        .await
        .map_err(|e| e.into_api_error("trip reminder not updated, retry later"))?;
    Ok(Recorded::Latest { reminder })
}

/// `trip_upserted`: a trip was created or changed (departure, status, delay, driver).
pub(super) async fn upsert_trip(
    app: &AppState,
    event: &EventTriggerPayload,
) -> Result<EventResponse, ApiError> {
    let row: TripRow = new_row(event)?;
    match record_trip(app, event, &row).await? {
        Recorded::Latest { reminder } => Ok(EventResponse {
            outcome: Outcome::TripUpdated,
            workflow_id: Some(reminder),
            ..EventResponse::default()
        }),
        Recorded::Overtaken => Ok(EventResponse::ignored(format!(
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
    let RecipientRule::TripPassengers { driver } = trigger.recipient else {
        return Err(anyhow::anyhow!("{} is not a trip-wide trigger", trigger.trigger).into());
    };
    let row: TripWideRow = new_row(event)?;
    let tenant_id = TenantId(row.tenant_id);
    let write = row_write(event);
    let is_trip_row = trigger.row_key == "trip";
    let trip_id = if is_trip_row {
        let trip: TripRow = new_row(event)?;
        let recorded = record_trip(app, event, &trip).await?;
        if let Decision::Ignore(reason) = trigger.decide(&write) {
            return Ok(EventResponse::ignored(reason));
        }
        if let Recorded::Overtaken = recorded
            && let Some(stale) = overtaken(app, tenant_id, &row).await?
        {
            return Ok(EventResponse::ignored(stale));
        }
        row.id
    } else {
        let trip_id = row.trip_id.ok_or_else(|| {
            ApiError::bad_request(
                "INVALID_ROW",
                format!(
                    "trigger '{}': event.data.new.trip_id is required (the trip whose passengers to notify)",
                    trigger.trigger
                ),
            )
        })?;
        if let Decision::Ignore(reason) = trigger.decide(&write) {
            return Ok(EventResponse::ignored(reason));
        }
        trip_id
    };
    if trigger.trigger == Trigger::TripDelayed
        && let Some(within) = delay_not_news(app, event, tenant_id, trip_id, &write).await?
    {
        return Ok(EventResponse::ignored(within));
    }
    let data = with_local_times(
        app,
        tenant_id,
        event.event.data.new.clone().unwrap_or_default(),
    )
    .await?;
    let trip = store::trips::schedule(&app.pool, tenant_id, trip_id)
        .await?
        .map(|s| s.variables)
        .unwrap_or_else(|| {
            if is_trip_row {
                data.clone()
            } else {
                serde_json::json!({})
            }
        });
    let mut variables = serde_json::json!({ "trip": trip });
    let mut entity_refs = vec![format!("trip:{trip_id}")];
    if !is_trip_row {
        variables[trigger.row_key] = data;
        entity_refs.push(format!("{}:{}", trigger.row_key, row.id));
    }
    let workflow_id = fanout_workflow_id(tenant_id, &event.id);
    let request = BatchRequest {
        tenant_id,
        trigger_event: trigger.trigger,
        source_event_id: event.id.clone(),
        variables,
        recipients: Recipients::TripPassengers {
            trip_id,
            include_driver: driver,
        },
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
            format!("{} to everyone on trip {trip_id}", trigger.trigger),
        )
        .await
        .map_err(|e| e.into_api_error("fan-out not started, retry later"))?;
    Ok(EventResponse {
        outcome: match result {
            StartResult::Started => Outcome::Started,
            StartResult::AlreadyStarted => Outcome::AlreadyStarted,
        },
        workflow_id: Some(workflow_id),
        ..EventResponse::default()
    })
}

/// When a newer write about the trip arrived first, this event's news is
/// sent only if the trip still is what it says (a delay that arrives after
/// the cancellation is not).
async fn overtaken(
    app: &AppState,
    tenant_id: TenantId,
    row: &TripWideRow,
) -> Result<Option<String>, ApiError> {
    let Some(now) = store::trips::schedule(&app.pool, tenant_id, row.id).await? else {
        return Ok(None);
    };
    let said = row.status.as_deref().unwrap_or(status::SCHEDULED);
    Ok((now.status != said).then(|| {
        format!(
            "trip {} is {} now: a newer write was recorded before this {said} event arrived",
            row.id, now.status
        )
    }))
}

/// A further delay is told only once it grows by the tenant's
/// `delay_notice_minutes` over the delay the passengers were last told
/// (claimed in Postgres by this event, whose own retries may claim again).
async fn delay_not_news(
    app: &AppState,
    event: &EventTriggerPayload,
    tenant_id: TenantId,
    trip_id: Uuid,
    write: &RowWrite<'_>,
) -> Result<Option<String>, ApiError> {
    let settings = store::tenants::settings(&app.pool, tenant_id).await?;
    let minutes = i32::try_from(RowWrite::delay_minutes(write.new)).unwrap_or(i32::MAX);
    let claimed = store::trips::claim_delay_notice(
        &app.pool,
        &store::trips::DelayNotice {
            tenant_id,
            trip_id,
            delay_minutes: minutes,
            event_id: event.id.clone(),
            threshold_minutes: settings.delay_notice_minutes,
        },
    )
    .await?;
    Ok((!claimed).then(|| {
        format!(
            "a delay of {minutes} min is within {} min of the delay the passengers were last told",
            settings.delay_notice_minutes
        )
    }))
}
