//! The Hasura Event Trigger payload, as documented by Hasura.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
pub struct EventTriggerPayload {
    /// Hasura's event id: the idempotency key of everything this event causes.
    pub id: String,
    pub trigger: TriggerRef,
    pub table: Option<TableRef>,
    pub event: EventBody,
    #[serde(default)]
    pub delivery_info: Option<DeliveryInfo>,
}

#[derive(Debug, Deserialize)]
pub struct TriggerRef {
    pub name: String,
}

#[derive(Debug, Deserialize)]
pub struct TableRef {
    pub schema: String,
    pub name: String,
}

#[derive(Debug, Deserialize)]
pub struct DeliveryInfo {
    pub current_retry: Option<u32>,
    pub max_retries: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub struct EventBody {
    pub op: Op,
    pub data: EventData,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Op {
    Insert,
    Update,
    Delete,
    Manual,
}

#[derive(Debug, Deserialize)]
pub struct EventData {
    pub old: Option<Value>,
    pub new: Option<Value>,
}
