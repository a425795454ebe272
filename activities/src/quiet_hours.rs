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

/// [`send_window_opens`] for many contacts at once: only those whose window
/// is closed now, each with when it opens.
pub async fn send_windows_open(
    pool: &PgPool,
    tenant_id: TenantId,
    contact_ids: &[ContactId],
) -> sqlx::Result<std::collections::HashMap<ContactId, DateTime<Utc>>> {
    let closed: Vec<(ContactId, DateTime<Utc>)> = sqlx::query_as(
        "select c.id, w.opens
           from unnest($2::uuid[]) as c(id), send_window_opens($1, c.id) as w(opens)
          where w.opens is not null",
    )
    .bind(tenant_id)
    .bind(contact_ids.iter().map(|c| c.0).collect::<Vec<_>>())
    .fetch_all(pool)
    .await?;
    Ok(closed.into_iter().collect())
}
