//! Quiet hours: while the recipient's local time is inside the tenant's
//! `[quiet_hours_start, quiet_hours_end)` window, non-urgent notifications
//! wait for it to end. Local time is the contact's time zone when it is a
//! known zone, else the tenant's. Postgres does the time-zone arithmetic
//! (the SQL function `send_window_opens`), so daylight-saving changes follow
//! its tz database.

use crate::model::{ContactId, TenantId};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// When the send window opens for each of these contacts (the SQL function
/// `send_window_opens`): only those whose window is closed now.
pub async fn send_windows_open(
    pool: &PgPool,
    tenant_id: TenantId,
    contact_ids: &[ContactId],
) -> sqlx::Result<std::collections::HashMap<ContactId, DateTime<Utc>>> {
    let closed = crate::store::contacts::send_windows_opening(pool, tenant_id, contact_ids).await?;
    Ok(closed.into_iter().collect())
}
