//! The Hasura Event Trigger payload, as documented by Hasura.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct EventTriggerPayload {
    /// Hasura's event id: the idempotency key of everything this event causes.
    pub id: String,
    pub trigger: TriggerRef,
    pub table: Option<TableRef>,
    pub event: EventBody,
    #[serde(default)]
    pub delivery_info: Option<DeliveryInfo>,
    /// When the change happened (Hasura sends UTC without an offset). Orders
    /// events that arrive out of order.
    #[serde(default, deserialize_with = "utc_timestamp")]
    pub created_at: Option<DateTime<Utc>>,
}

fn utc_timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let Some(raw) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    DateTime::parse_from_rfc3339(&raw)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDateTime::parse_from_str(&raw, "%Y-%m-%dT%H:%M:%S%.f").map(|t| t.and_utc())
        })
        .map(Some)
        .map_err(|_| {
            serde::de::Error::custom(format!(
                "created_at '{raw}' is not a timestamp like 2026-11-27T10:00:00.123456"
            ))
        })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TriggerRef {
    pub name: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TableRef {
    pub schema: String,
    pub name: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct DeliveryInfo {
    pub current_retry: Option<u32>,
    pub max_retries: Option<u32>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct EventBody {
    pub op: Op,
    pub data: EventData,
    /// Hasura's trace (`trace_id`, `span_id`), which this service's trace
    /// continues when tracing is on (`crate::traced`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub trace_context: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Op {
    Insert,
    Update,
    Delete,
    Manual,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct EventData {
    /// The row before the write (UPDATE, DELETE).
    #[schema(value_type = Option<Object>)]
    pub old: Option<Value>,
    /// The row after the write (INSERT, UPDATE).
    #[schema(value_type = Option<Object>)]
    pub new: Option<Value>,
}
