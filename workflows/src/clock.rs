//! Workflow time as Unix milliseconds (the form ids, signals and Postgres
//! exchange), from the replay-safe `ctx.workflow_time()`.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn unix_ms(time: Option<SystemTime>) -> Option<i64> {
    time.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
