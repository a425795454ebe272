//! `POST /hasura/events`: Hasura Event Trigger webhooks, routed by their
//! typed trigger through the registry (`busflow_activities::triggers`).
//!
//! Order of checks: shared secret, then the JSON envelope, then the trigger
//! and its table, then the trigger's row. Any refusal happens before anything
//! is written. Every route is idempotent on Hasura's event id (Hasura
//! delivers at least once, and one event per trigger a write fires).
//!
//! - people rows (`contacts`): contacts of passengers, drivers, vendors;
//! - `trip_upserted` and trip-wide notifications (`trips`);
//! - one-person notifications (`notify`), keeping passengers on their
//!   trips (`bookings`).
//!
//! The children share `response` and import no sibling but `bookings`.

mod bookings;
mod contacts;
mod notify;
mod response;
mod trips;

pub use response::{EventResponse, Outcome};

use super::payload::EventTriggerPayload;
use crate::AppState;
use crate::auth::require_shared_secret;
use crate::error::{ApiError, parse_json};
use crate::traced;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use busflow_activities::triggers::{self, RecipientRule, Route, Trigger};
use opentelemetry::KeyValue;
use std::sync::Arc;

#[utoipa::path(
    post,
    path = "/hasura/events",
    tag = "hasura",
    request_body = EventTriggerPayload,
    params(("x-busflow-secret" = String, Header, description = "The shared secret (BUSFLOW_WEBHOOK_SECRET)")),
    responses(
        (status = 200, description = "Done, or nothing to do (`outcome`): Hasura stops retrying", body = EventResponse),
        (status = 400, description = "INVALID_PAYLOAD, INVALID_EVENT_ID, UNKNOWN_TRIGGER, WRONG_TABLE, MISSING_ROW, INVALID_ROW: nothing written; the message names the field", body = crate::openapi::ApiErrorBody),
        (status = 401, description = "UNAUTHORIZED: the shared secret is missing or wrong", body = crate::openapi::ApiErrorBody),
        (status = 409, description = "CONTACT_NOT_YET_KNOWN, TRIP_NOT_YET_KNOWN: the event came before the person or trip it names; Retry-After", body = crate::openapi::ApiErrorBody),
        (status = 503, description = "TEMPORAL_UNAVAILABLE: retry (Retry-After)", body = crate::openapi::ApiErrorBody),
    )
)]
pub async fn receive(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if app.traces.tracer().is_none() {
        return handle(&app, &headers, &body).await.into_response();
    }
    // The trace goes on from Hasura's: the event's own trace context, else
    // the request's headers.
    let probe: TraceProbe = serde_json::from_slice(&body).unwrap_or_default();
    let parent = probe
        .event
        .trace_context
        .as_ref()
        .and_then(traced::parent_from_hasura)
        .unwrap_or_else(|| traced::parent_from_headers(&headers));
    let trigger = probe.trigger.name.unwrap_or_default();
    traced::in_server_span(
        &app.traces,
        format!("hasura event {trigger}"),
        &parent,
        vec![
            KeyValue::new("busflow.trigger", trigger),
            KeyValue::new("hasura.event_id", probe.id.unwrap_or_default()),
        ],
        async { handle(&app, &headers, &body).await.into_response() },
    )
    .await
}

/// What tracing reads of an event before it is checked.
#[derive(Debug, Default, serde::Deserialize)]
struct TraceProbe {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    trigger: TraceProbeTrigger,
    #[serde(default)]
    event: TraceProbeEvent,
}

#[derive(Debug, Default, serde::Deserialize)]
struct TraceProbeTrigger {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct TraceProbeEvent {
    #[serde(default)]
    trace_context: Option<serde_json::Value>,
}

async fn handle(
    app: &Arc<AppState>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Json<EventResponse>, ApiError> {
    let app = Arc::clone(app);
    require_shared_secret(headers, &app.config.webhook_secret)?;
    let event: EventTriggerPayload = parse_json(body)?;
    validate_event_id(&event.id)?;
    let name = event.trigger.name.as_str();
    let unknown = || {
        ApiError::bad_request(
            "UNKNOWN_TRIGGER",
            format!(
                "unknown trigger '{name}'; this service handles: {}",
                triggers::hasura_triggers()
                    .map(Trigger::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    };
    let trigger: Trigger = name.parse().map_err(|_| unknown())?;
    let route = trigger.route().ok_or_else(unknown)?;
    if let (Some(table), Some(expected)) = (&event.table, trigger.table())
        && table.name != expected.as_str()
    {
        return Err(ApiError::bad_request(
            "WRONG_TABLE",
            format!(
                "trigger '{trigger}' watches table {expected}, but this event comes from {}.{}",
                table.schema, table.name
            ),
        ));
    }
    let response = match route {
        Route::Contact(kind) => contacts::upsert(&app, &event, kind).await?,
        Route::Trip => trips::upsert_trip(&app, &event).await?,
        Route::Notify(notification) => match notification.recipient {
            RecipientRule::TripPassengers { .. } => {
                trips::notify_trip(&app, &event, notification).await?
            }
            _ => notify::notify_one(&app, &event, notification).await?,
        },
    };
    Ok(Json(response))
}

/// Event ids end up in workflow ids: keep them to a safe alphabet.
fn validate_event_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "INVALID_EVENT_ID",
            "event id must be 1-128 characters of letters, digits, '-' or '_'",
        ))
    }
}
