//! Error policy of the HTTP API.
//!
//! Every 4xx/5xx has one JSON shape, Hasura's action error shape:
//! `{"message": "...", "extensions": {"code": "..."}}`. Handlers return
//! `ApiError`; expected problems (bad input, auth, conflicts, Temporal down)
//! are constructed with a code that names them, and anything unexpected is an
//! `anyhow::Error` that becomes an opaque 500 and is logged once, here.

use axum::http::{HeaderValue, StatusCode, header};

/// Seconds Hasura is asked to wait (`Retry-After`) before it sends again an
/// event the service could not take because Temporal or Postgres is away.
/// Every event trigger's `retry_conf.interval_sec` is the same, and its
/// `num_retries` outlast an outage of an hour (`tests/hasura_metadata.rs`).
pub const RETRY_AFTER_SECS: u64 = 30;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    Client {
        status: StatusCode,
        code: &'static str,
        message: String,
        retry_after_secs: Option<u64>,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::client(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::client(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::client(StatusCode::CONFLICT, code, message)
    }

    /// A dependency is down; the caller should retry (Hasura does).
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::client(StatusCode::SERVICE_UNAVAILABLE, code, message).retry_after(RETRY_AFTER_SECS)
    }

    pub fn client(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self::Client {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// Asks the caller to come back after `secs` (Hasura honours `Retry-After`).
    pub fn retry_after(mut self, secs: u64) -> Self {
        if let Self::Client {
            retry_after_secs, ..
        } = &mut self
        {
            *retry_after_secs = Some(secs);
        }
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Client {
                status,
                code,
                message,
                retry_after_secs,
            } => {
                if status.is_server_error() {
                    tracing::warn!(error.code = code, "{message}");
                }
                let mut response = (
                    status,
                    axum::Json(json!({"message": message, "extensions": {"code": code}})),
                )
                    .into_response();
                if let Some(secs) = retry_after_secs {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                response
            }
            ApiError::Database(err) if database_away(&err) => ApiError::unavailable(
                "DATABASE_UNAVAILABLE",
                format!("Postgres is unreachable: {err}"),
            )
            .into_response(),
            ApiError::Database(err) => ApiError::Unexpected(err.into()).into_response(),
            // Postgres away or saturated deep inside a handler: the caller
            // should come back (providers and Hasura retry a 503).
            ApiError::Unexpected(err)
                if err
                    .chain()
                    .any(|e| e.downcast_ref::<sqlx::Error>().is_some_and(database_away)) =>
            {
                ApiError::unavailable(
                    "DATABASE_UNAVAILABLE",
                    format!("Postgres is unreachable: {err:#}"),
                )
                .into_response()
            }
            ApiError::Unexpected(err) => {
                tracing::error!(error = format!("{err:#}"), "unexpected error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(json!({
                        "message": "internal error; see the service log",
                        "extensions": {"code": "INTERNAL"}
                    })),
                )
                    .into_response()
            }
        }
    }
}

/// Parses a JSON body, naming the problem on failure (serde's message has the
/// field and position).
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "INVALID_PAYLOAD",
            format!("request body is not a valid payload: {e}"),
        )
    })
}

/// A caller's idempotency key for a message it sends (an agent's reply, a
/// visitor's message): 1-64 letters, digits, `-` or `_`.
pub fn check_client_message_id(id: &str) -> Result<(), ApiError> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "INVALID_INPUT",
            "client_message_id must be 1-64 letters, digits, '-' or '_'",
        ))
    }
}

/// Postgres is away (not a bad query): the caller should come back later.
fn database_away(err: &sqlx::Error) -> bool {
    matches!(
        err,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
    )
}
