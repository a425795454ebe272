//! The Hasura Event Trigger payloads the benchmark sends, shaped as Hasura
//! sends them, and the one call that posts them to our API.

use anyhow::Context;
use busflow_activities::model::TenantId;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

/// The shared secret the benchmark's API expects in `x-busflow-secret`.
pub const SECRET: &str = "bench-secret";

/// `booking_confirmed` for a passenger (no trip: the booking alone).
pub fn booking_confirmed(event_id: &str, tenant: TenantId, profile: Uuid) -> Value {
    json!({
        "id": event_id,
        "created_at": Utc::now().to_rfc3339(),
        "trigger": {"name": "booking_confirmed"},
        "table": {"schema": "public", "name": "bookings"},
        "event": {"op": "INSERT", "data": {"old": null, "new": {
            "id": Uuid::new_v4(), "tenant_id": tenant.0,
            "passenger_profile_id": profile, "status": "CONFIRMED",
            "booking_reference": format!("BF-{}", event_id.get(..8).unwrap_or(event_id))
        }}}
    })
}

/// `trip_delayed`: a SCHEDULED trip turned DELAYED, departing at `departure_at`.
pub fn trip_delayed(
    event_id: &str,
    tenant: TenantId,
    trip: Uuid,
    departure_at: DateTime<Utc>,
) -> Value {
    json!({
        "id": event_id,
        "created_at": Utc::now().to_rfc3339(),
        "trigger": {"name": "trip_delayed"},
        "table": {"schema": "public", "name": "trips"},
        "event": {
            "op": "UPDATE",
            "session_variables": {"x-hasura-role": "admin"},
            "data": {
                "old": {"status": "SCHEDULED"},
                "new": {
                    "id": trip, "tenant_id": tenant.0, "status": "DELAYED", "delay_minutes": 45,
                    "departure_at": departure_at.to_rfc3339(), "route_name": "CDMX - Puebla"
                }
            }
        }
    })
}

/// `trip_upserted`: a new SCHEDULED trip departing at `departure_at`.
pub fn trip_upserted(tenant: TenantId, trip: Uuid, departure_at: DateTime<Utc>) -> Value {
    json!({
        "id": Uuid::new_v4().to_string(),
        "created_at": Utc::now().to_rfc3339(),
        "trigger": {"name": "trip_upserted"},
        "table": {"schema": "public", "name": "trips"},
        "event": {"op": "INSERT", "data": {"old": null, "new": {
            "id": trip, "tenant_id": tenant.0, "status": "SCHEDULED",
            "departure_at": departure_at.to_rfc3339()
        }}}
    })
}

/// Posts one event to `{api_base}/hasura/events`; an answer other than 2xx is an error.
pub async fn post(http: &reqwest::Client, api_base: &str, event: &Value) -> anyhow::Result<()> {
    let response = http
        .post(format!("{api_base}/hasura/events"))
        .header("x-busflow-secret", SECRET)
        .json(event)
        .send()
        .await
        .context("posting a Hasura event")?;
    let status = response.status();
    anyhow::ensure!(
        status.is_success(),
        "event {} refused: {status} {}",
        event["trigger"]["name"],
        response.text().await.unwrap_or_default()
    );
    Ok(())
}
