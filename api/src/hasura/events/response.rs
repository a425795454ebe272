//! What every event route shares: the 200 body Hasura logs, reading the
//! trigger's row (and its times in the tenant's clock), the write it
//! describes, and the event's place in time.

use crate::AppState;
use crate::error::ApiError;
use crate::hasura::payload::{EventTriggerPayload, Op};
use busflow_activities::model::TenantId;
use busflow_activities::store;
use busflow_activities::triggers::{RowWrite, WriteOp};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

/// What the service did with an event (200 body).
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct EventResponse {
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Fields of a person row that could not be used, with why.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub problems: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    ContactUpserted,
    /// A trip's departure or status was recorded and its reminder told.
    TripUpdated,
    Started,
    AlreadyStarted,
    #[default]
    Ignored,
}

impl EventResponse {
    pub fn ignored(reason: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Ignored,
            reason: Some(reason.into()),
            ..Self::default()
        }
    }
}

/// Deserializes `event.data.new` into the trigger's row type.
pub fn new_row<T: DeserializeOwned>(event: &EventTriggerPayload) -> Result<T, ApiError> {
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

/// The write the event reports, for the registry's conditions.
pub fn row_write(event: &EventTriggerPayload) -> RowWrite<'_> {
    RowWrite {
        op: match event.event.op {
            Op::Insert => WriteOp::Insert,
            Op::Update => WriteOp::Update,
            Op::Delete => WriteOp::Delete,
            Op::Manual => WriteOp::Manual,
        },
        old: event.event.data.old.as_ref().filter(|v| !v.is_null()),
        new: event.event.data.new.as_ref().filter(|v| !v.is_null()),
    }
}

/// The event's time orders it against other events about the same row;
/// without one (a manual replay tool) it counts as now.
pub fn event_version(event: &EventTriggerPayload) -> chrono::DateTime<chrono::Utc> {
    event.created_at.unwrap_or_else(chrono::Utc::now)
}

/// Columns that hold a time a person reads in their own clock.
const LOCAL_TIME_COLUMNS: &[&str] = &["starts_at", "ends_at", "needed_by", "departure_at"];

/// The row with its timestamps as the tenant's people read them
/// (`YYYY-MM-DD HH:MM` in the tenant's time zone), next to each:
/// `starts_at` → `starts_local`, `needed_by` → `needed_by_local`.
pub async fn with_local_times(
    app: &AppState,
    tenant_id: TenantId,
    mut row: Value,
) -> Result<Value, ApiError> {
    let stamps: Vec<(&str, String)> = LOCAL_TIME_COLUMNS
        .iter()
        .filter_map(|c| {
            row.get(*c)
                .and_then(Value::as_str)
                .map(|v| (*c, v.to_owned()))
        })
        .collect();
    if stamps.is_empty() {
        return Ok(row);
    }
    let values: Vec<String> = stamps.iter().map(|(_, v)| v.clone()).collect();
    let local: Vec<Option<String>> =
        store::tenants::local_times(&app.pool, tenant_id, &values).await?;
    for ((column, _), local) in stamps.iter().zip(local) {
        if let (Some(local), Some(object)) = (local, row.as_object_mut()) {
            let name = column.strip_suffix("_at").unwrap_or(column);
            object.insert(format!("{name}_local"), Value::String(local));
        }
    }
    Ok(row)
}
