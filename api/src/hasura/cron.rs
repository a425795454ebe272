//! `POST /hasura/cron/{name}`: Hasura cron triggers.
//!
//! `conversation_snooze_wakeup` reconciles: every conversation still SNOOZED
//! past its time gets its snooze timer (re)started with that time, so a
//! missing workflow (Temporal was down when the agent snoozed) fires at once
//! and a running one is untouched.

use crate::AppState;
use crate::auth::require_shared_secret;
use crate::error::{ApiError, parse_json};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use busflow_activities::store::conversations;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// Every cron trigger this endpoint serves (checked against the metadata).
pub const CRON_TRIGGERS: &[&str] = &["conversation_snooze_wakeup"];

/// A Hasura cron trigger's call (`id`, `name`, `scheduled_time`, `payload`, `comment`; only `name` is read).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct CronPayload {
    #[serde(default)]
    name: Option<String>,
}

#[utoipa::path(
    post,
    path = "/hasura/cron/{name}",
    tag = "hasura",
    request_body = CronPayload,
    params(
        ("name" = String, Path, description = "The cron trigger: conversation_snooze_wakeup"),
        ("x-busflow-secret" = String, Header, description = "The shared secret (BUSFLOW_WEBHOOK_SECRET)"),
    ),
    responses(
        (status = 200, description = "What the run did, e.g. `{\"restarted\": 2}`", body = Object),
        (status = 400, description = "INVALID_PAYLOAD, UNKNOWN_CRON_TRIGGER", body = crate::openapi::ApiErrorBody),
        (status = 401, description = "UNAUTHORIZED: the shared secret is missing or wrong", body = crate::openapi::ApiErrorBody),
        (status = 503, description = "TEMPORAL_UNAVAILABLE: retry (Retry-After)", body = crate::openapi::ApiErrorBody),
    )
)]
pub async fn receive(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    require_shared_secret(&headers, &app.config.webhook_secret)?;
    let payload: CronPayload = parse_json(&body)?;
    if payload.name.as_deref().is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(
            "INVALID_PAYLOAD",
            format!(
                "cron payload is for '{}', posted to '{name}'",
                payload.name.unwrap_or_default()
            ),
        ));
    }
    match name.as_str() {
        "conversation_snooze_wakeup" => {
            let overdue = conversations::overdue_snoozes(&app.pool, 500)
                .await
                .map_err(anyhow::Error::from)?;
            let mut restarted = 0usize;
            for (tenant_id, conversation_id, until) in &overdue {
                app.temporal
                    .snooze(*tenant_id, *conversation_id, *until)
                    .await
                    .map_err(|e| e.into_api_error("reconciliation incomplete"))?;
                restarted += 1;
            }
            Ok(Json(
                json!({"overdue": overdue.len(), "timers_started": restarted}),
            ))
        }
        other => Err(ApiError::client(
            StatusCode::NOT_FOUND,
            "UNKNOWN_CRON_TRIGGER",
            format!(
                "unknown cron trigger '{other}'; this service serves: {}",
                CRON_TRIGGERS.join(", ")
            ),
        )),
    }
}
