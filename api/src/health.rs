//! Liveness and readiness for orchestrators and the dev stack.

use crate::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

/// The process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Object))
)]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Postgres and Temporal both answer.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    responses(
        (status = 200, description = "Both answer: `{\"postgres\": true, \"temporal\": true}`", body = Object),
        (status = 503, description = "One does not: the same object, saying which", body = Object),
    )
)]
pub async fn readyz(State(app): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    let postgres = busflow_activities::store::ping(&app.pool).await.is_ok();
    let temporal = app.temporal.client().await.is_ok();
    let status = if postgres && temporal {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"postgres": postgres, "temporal": temporal})),
    )
}
