//! The service's OpenAPI 3.1 document, served at `GET /openapi.json`. It is
//! generated from the handlers' own `#[utoipa::path]` annotations and
//! types: every route is registered through `utoipa-axum`'s `routes!`
//! (see [`crate::router`]), so a route cannot be served without being
//! described, and `tests/e2e/openapi.rs` fails on one added otherwise.
//!
//! Every error, whatever the route, is [`ApiErrorBody`]; each route lists
//! its codes in its responses. Errors any route may answer are not
//! repeated there: 413 `PAYLOAD_TOO_LARGE`, 503 `REQUEST_TIMEOUT` and
//! `OVERLOADED` (with `Retry-After`), 503 `DATABASE_UNAVAILABLE`, 500
//! `INTERNAL`.

use axum::Json;
use axum::extract::Extension;
use serde::Serialize;
use std::sync::Arc;
use utoipa::openapi::OpenApi as Document;
use utoipa::{OpenApi, ToSchema};

/// Every 4xx and 5xx answer (Hasura's action error shape).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiErrorBody {
    /// What went wrong, naming the field or the thing.
    #[schema(example = "request body is not a valid payload: missing field `trigger`")]
    pub message: String,
    pub extensions: ApiErrorExtensions,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiErrorExtensions {
    /// A stable code, e.g. `INVALID_PAYLOAD`, `TEMPORAL_UNAVAILABLE`.
    #[schema(example = "INVALID_PAYLOAD")]
    pub code: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "busflow-comms",
        description = "The communications service of Busflow: Hasura event triggers, actions and cron triggers; provider webhooks (Meta, SES/SNS, Firehose); the webchat widget; the Temporal codec server; health and metrics. Every error is `ApiErrorBody`. Any route may also answer 413 PAYLOAD_TOO_LARGE, 503 REQUEST_TIMEOUT / OVERLOADED / DATABASE_UNAVAILABLE (with Retry-After) and 500 INTERNAL.",
    ),
    components(schemas(ApiErrorBody)),
    tags(
        (name = "hasura", description = "Called by Hasura: event triggers, actions, cron triggers (header x-busflow-secret)"),
        (name = "providers", description = "Provider webhooks: Meta WhatsApp, SES and SNS, Firehose"),
        (name = "webchat", description = "The webchat widget, from any site (a visitor's bearer token)"),
        (name = "ops", description = "Health, metrics, the codec server, this document"),
    )
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "ops",
    responses((status = 200, description = "The OpenAPI 3.1 document of every route", content_type = "application/json"))
)]
pub async fn document(Extension(document): Extension<Arc<Document>>) -> Json<Document> {
    Json(document.as_ref().clone())
}
