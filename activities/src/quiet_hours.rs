//! Quiet hours: while the recipient's local time is inside the tenant's
//! `[quiet_hours_start, quiet_hours_end)` window, non-urgent notifications
//! wait for it to end. Local time is the contact's time zone when it is a
//! known zone, else the tenant's. Postgres does the time-zone arithmetic (`send_window_opens`), so
//! daylight-saving changes follow its tz database.

use crate::model::{ContactId, TenantId};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// When the send window opens for this contact: `None` when it is open now
/// (or the tenant has no quiet hours).
pub async fn send_window_opens(
    pool: &PgPool,
    tenant_id: TenantId,
    contact_id: ContactId,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    let opens: Option<DateTime<Utc>> = sqlx::query_scalar("select send_window_opens($1, $2)")
        .bind(tenant_id)
        .bind(contact_id)
        .fetch_one(pool)
        .await?;
    Ok(opens)
}
