//! The shared-secret header Hasura sends on every event, cron and action
//! call. Compared in constant time; checked before the body is parsed.

use crate::error::ApiError;
use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

/// Header name Hasura is configured to send (see `hasura/metadata`).
pub const SECRET_HEADER: &str = "x-busflow-secret";

pub fn require_shared_secret(headers: &HeaderMap, expected: &str) -> Result<(), ApiError> {
    let presented = headers
        .get(SECRET_HEADER)
        .ok_or_else(|| ApiError::unauthorized(format!("missing {SECRET_HEADER} header")))?;
    if expected.is_empty() || !bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        return Err(ApiError::unauthorized(format!(
            "wrong {SECRET_HEADER} header"
        )));
    }
    Ok(())
}
