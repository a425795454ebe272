//! Quiet hours: while the recipient's local time is inside the tenant's
//! `[quiet_hours_start, quiet_hours_end)` window, non-urgent notifications
//! wait for it to end. Local time is the contact's time zone when it is a
//! known zone, else the tenant's. Postgres does the time-zone arithmetic, so
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
    let opens: Option<Option<DateTime<Utc>>> = sqlx::query_scalar(
        "with settings as (
             select t.quiet_hours_start as qs, t.quiet_hours_end as qe,
                    case
                        when c.time_zone is not null
                         and exists (select 1 from pg_timezone_names where name = c.time_zone)
                        then c.time_zone
                        else t.time_zone
                    end as tz
               from tenant_settings t
               left join contacts c on c.tenant_id = t.tenant_id and c.id = $2
              where t.tenant_id = $1
                and t.quiet_hours_start is not null and t.quiet_hours_end is not null
                and t.quiet_hours_start <> t.quiet_hours_end),
         local as (select qs, qe, tz, (now() at time zone tz) as at from settings)
         select case
                    when (qs < qe and at::time >= qs and at::time < qe)
                      or (qs > qe and (at::time >= qs or at::time < qe))
                    then ((at::date + case when at::time < qe then 0 else 1 end) + qe) at time zone tz
                end
           from local",
    )
    .bind(tenant_id)
    .bind(contact_id)
    .fetch_optional(pool)
    .await?;
    Ok(opens.flatten())
}
