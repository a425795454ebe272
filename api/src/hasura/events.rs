//! `POST /hasura/events`: Hasura Event Trigger webhooks, routed by trigger name.
//!
//! Order of checks: shared secret, then the JSON envelope, then the trigger's
//! row. Any refusal happens before anything is written. Every route is
//! idempotent on Hasura's event id (Hasura delivers at least once).

use super::payload::{EventTriggerPayload, Op};
use super::trips;
use crate::AppState;
use crate::auth::require_shared_secret;
use crate::error::{ApiError, parse_json};
use crate::temporal::{NotificationLabels, StartResult};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use busflow_activities::identifiers::{EmailAddress, IdentifierError, PhoneNumber};
use busflow_activities::model::TenantId;
use busflow_activities::store::{self, contacts::PassengerContact, contacts::UpsertContactError};
use busflow_activities::triggers::{self, NotificationTrigger, RecipientRule};
use busflow_workflows::NotificationRequest;
use busflow_workflows::names::notification_workflow_id;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

/// What the service did with an event (200 body).
#[derive(Debug, Serialize)]
pub struct EventResponse {
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    ContactUpserted,
    /// A trip's departure or status was recorded and its reminder told.
    TripUpdated,
    Started,
    AlreadyStarted,
    Ignored,
}

pub async fn receive(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<EventResponse>, ApiError> {
    require_shared_secret(&headers, &app.config.webhook_secret)?;
    let event: EventTriggerPayload = parse_json(&body)?;
    validate_event_id(&event.id)?;
    let name = event.trigger.name.as_str();
    if name == triggers::PASSENGER_PROFILE_UPSERTED {
        return upsert_passenger_profile(&app, &event).await.map(Json);
    }
    if name == triggers::TRIP_UPSERTED {
        return trips::upsert_trip(&app, &event).await.map(Json);
    }
    match triggers::notification_trigger(name) {
        Some(trigger) if trigger.recipient == RecipientRule::PassengerProfile => {
            notify_passenger(&app, &event, trigger).await.map(Json)
        }
        Some(trigger) if trigger.recipient == RecipientRule::TripPassengers => {
            trips::notify_trip(&app, &event, trigger).await.map(Json)
        }
        Some(trigger) => Err(ApiError::client(
            axum::http::StatusCode::NOT_IMPLEMENTED,
            "TRIGGER_NOT_ROUTED",
            format!(
                "trigger '{}' ({:?} recipients) is in the registry but not routed by this version yet",
                trigger.name, trigger.recipient
            ),
        )),
        None => Err(ApiError::bad_request(
            "UNKNOWN_TRIGGER",
            format!(
                "unknown trigger '{name}'; this service handles: {}",
                triggers::all_trigger_names().collect::<Vec<_>>().join(", ")
            ),
        )),
    }
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

/// Deserializes `event.data.new` into the trigger's row type.
pub(super) fn new_row<T: DeserializeOwned>(event: &EventTriggerPayload) -> Result<T, ApiError> {
    let trigger = &event.trigger.name;
    let Some(row) = event.event.data.new.clone().filter(|v| !v.is_null()) else {
        return Err(ApiError::bad_request(
            "MISSING_ROW",
            format!(
                "trigger '{trigger}' needs event.data.new (op {:?}); configure it for INSERT/UPDATE",
                event.event.op
            ),
        ));
    };
    serde_json::from_value(row).map_err(|e| {
        ApiError::bad_request(
            "INVALID_ROW",
            format!("trigger '{trigger}': event.data.new: {e}"),
        )
    })
}

#[derive(Debug, Deserialize)]
struct PassengerProfileRow {
    id: Uuid,
    tenant_id: Uuid,
    #[serde(default)]
    full_name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    whatsapp_phone: Option<String>,
    #[serde(default)]
    locale: Option<String>,
    #[serde(default)]
    time_zone: Option<String>,
}

async fn upsert_passenger_profile(
    app: &AppState,
    event: &EventTriggerPayload,
) -> Result<EventResponse, ApiError> {
    let row: PassengerProfileRow = new_row(event)?;
    let tenant_id = TenantId(row.tenant_id);
    let settings = store::tenants::settings(&app.pool, tenant_id)
        .await
        .map_err(anyhow::Error::from)?;
    let invalid = |field: &str, e: IdentifierError| {
        ApiError::bad_request(
            "INVALID_IDENTIFIER",
            format!("passenger profile {}: {field}: {e}", row.id),
        )
    };
    let present = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let email = present(&row.email)
        .map(|e| EmailAddress::parse(&e))
        .transpose()
        .map_err(|e| invalid("email", e))?;
    let phone = present(&row.phone)
        .map(|p| PhoneNumber::parse(&p, &settings.default_region))
        .transpose()
        .map_err(|e| invalid("phone", e))?;
    let whatsapp = present(&row.whatsapp_phone)
        .map(|p| PhoneNumber::parse(&p, &settings.default_region))
        .transpose()
        .map_err(|e| invalid("whatsapp_phone", e))?;
    let contact = PassengerContact {
        tenant_id,
        passenger_profile_id: row.id,
        display_name: present(&row.full_name).unwrap_or_default(),
        email,
        phone,
        whatsapp,
        locale: present(&row.locale),
        time_zone: present(&row.time_zone),
    };
    let contact_id = store::contacts::upsert_passenger(&app.pool, &contact)
        .await
        .map_err(|e| match e {
            taken @ UpsertContactError::IdentifierTaken(_) => ApiError::conflict(
                "IDENTIFIER_TAKEN",
                format!("passenger profile {}: {taken}", row.id),
            ),
            UpsertContactError::Database(db) => ApiError::Unexpected(db.into()),
        })?;
    tracing::info!(tenant.id = %tenant_id, contact.id = %contact_id, "upserted contact {contact_id} from passenger profile {}", row.id);
    Ok(EventResponse {
        outcome: Outcome::ContactUpserted,
        workflow_id: None,
        contact_id: Some(contact_id.0),
        reason: None,
    })
}

/// The columns every single-recipient notification row has.
#[derive(Debug, Deserialize)]
struct NotifiedRow {
    id: Uuid,
    tenant_id: Uuid,
    passenger_profile_id: Uuid,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    trip_id: Option<Uuid>,
}

#[derive(Debug, Deserialize)]
struct StatusOnly {
    #[serde(default)]
    status: Option<String>,
}

/// A notification to the passenger the row names (`passenger_profile_id`).
async fn notify_passenger(
    app: &AppState,
    event: &EventTriggerPayload,
    trigger: &NotificationTrigger,
) -> Result<EventResponse, ApiError> {
    let row: NotifiedRow = new_row(event)?;
    if let Some(skip) = status_gate(event, trigger, row.status.as_deref()) {
        return Ok(skip);
    }
    let tenant_id = TenantId(row.tenant_id);
    let contact = store::contacts::find_by_passenger_profile(&app.pool, tenant_id, row.passenger_profile_id)
        .await
        .map_err(anyhow::Error::from)?
        .ok_or_else(|| {
            ApiError::conflict(
                "CONTACT_NOT_YET_KNOWN",
                format!(
                    "no contact for passenger profile {} yet (its passenger_profile_upserted event has not arrived); retry later",
                    row.passenger_profile_id
                ),
            )
            .retry_after(30)
        })?;
    if let Some(trip_id) = row.trip_id {
        trips::record_booking(app, event, trigger, tenant_id, trip_id, row.id, contact.id).await?;
    }
    let workflow_id = notification_workflow_id(tenant_id, &event.id, contact.id);
    let mut entity_refs = vec![
        format!("{}:{}", trigger.row_key, row.id),
        format!("passenger_profile:{}", row.passenger_profile_id),
    ];
    if let Some(trip) = row.trip_id {
        entity_refs.push(format!("trip:{trip}"));
    }
    let data = event.event.data.new.clone().unwrap_or_default();
    let reference = ["booking_reference", "number", "reference"]
        .iter()
        .find_map(|key| data.get(*key).and_then(|v| v.as_str()))
        .map(str::to_owned)
        .unwrap_or_else(|| row.id.to_string());
    let request = NotificationRequest {
        tenant_id,
        contact_id: contact.id,
        trigger_event: trigger.name.to_owned(),
        source_event_id: event.id.clone(),
        channels: None,
        variables: serde_json::json!({ trigger.row_key: data }),
        step_deadline_secs: app.config.step_deadline.as_secs(),
        replaces_message_id: None,
        reply: None,
    };
    let labels = NotificationLabels {
        entity_refs,
        summary: format!(
            "{} for {} {reference} → contact {}",
            trigger.name, trigger.row_key, contact.id
        ),
    };
    let result = app
        .temporal
        .start_notification(&workflow_id, request, labels)
        .await
        .map_err(|e| e.into_api_error("workflow not started, retry later"))?;
    Ok(EventResponse {
        outcome: match result {
            StartResult::Started => Outcome::Started,
            StartResult::AlreadyStarted => Outcome::AlreadyStarted,
        },
        workflow_id: Some(workflow_id),
        contact_id: Some(contact.id.0),
        reason: None,
    })
}

/// A trigger with `when_status` notifies only when the row's status becomes
/// that status; anything else is acknowledged and ignored.
pub(super) fn status_gate(
    event: &EventTriggerPayload,
    trigger: &NotificationTrigger,
    status: Option<&str>,
) -> Option<EventResponse> {
    let wanted = trigger.when_status?;
    let now = status.unwrap_or_default();
    if now != wanted {
        return Some(ignored(format!(
            "{} status is {now}, not {wanted}",
            trigger.row_key
        )));
    }
    if event.event.op == Op::Update {
        let was = event
            .event
            .data
            .old
            .clone()
            .and_then(|old| serde_json::from_value::<StatusOnly>(old).ok())
            .and_then(|old| old.status);
        if was.as_deref() == Some(wanted) {
            return Some(ignored(format!("{} was already {wanted}", trigger.row_key)));
        }
    }
    None
}

pub(super) fn ignored(reason: String) -> EventResponse {
    EventResponse {
        outcome: Outcome::Ignored,
        workflow_id: None,
        contact_id: None,
        reason: Some(reason),
    }
}
