//! Tenant settings, with the defaults a tenant without a row gets.

use crate::model::TenantId;
use sqlx::PgPool;

#[derive(Debug, Clone, serde::Deserialize)]
pub struct TenantSettings {
    pub display_name: String,
    pub default_region: String,
    pub default_locale: String,
    pub time_zone: String,
    /// A further delay is news once it grows by this many minutes.
    pub delay_notice_minutes: i32,
}

impl Default for TenantSettings {
    fn default() -> Self {
        Self {
            display_name: String::new(),
            default_region: "MX".into(),
            default_locale: "es-MX".into(),
            time_zone: "America/Mexico_City".into(),
            delay_notice_minutes: 15,
        }
    }
}

pub async fn settings(pool: &PgPool, tenant_id: TenantId) -> sqlx::Result<TenantSettings> {
    let row = sqlx::query_as!(
        TenantSettings,
        "select display_name, default_region, default_locale, time_zone, delay_notice_minutes
           from tenant_settings where tenant_id = $1",
        tenant_id.0
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.unwrap_or_default())
}

/// The tenant's override for one trigger, if any. A malformed override is an
/// error naming the trigger, not a silent default.
/// Why a tenant's override of a trigger could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    /// Postgres did not answer: try again.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The tenant's settings are wrong: trying again cannot help.
    #[error("tenant {tenant_id}: trigger_overrides.{trigger} is invalid: {reason}")]
    Invalid {
        tenant_id: TenantId,
        trigger: String,
        reason: String,
    },
}

pub async fn trigger_override(
    pool: &PgPool,
    tenant_id: TenantId,
    trigger: &str,
) -> Result<Option<crate::planning::TriggerOverride>, OverrideError> {
    Ok(settings_for_trigger(pool, tenant_id, trigger).await?.1)
}

/// The tenant's settings and its override for one trigger, in one read.
pub async fn settings_for_trigger(
    pool: &PgPool,
    tenant_id: TenantId,
    trigger: &str,
) -> Result<(TenantSettings, Option<crate::planning::TriggerOverride>), OverrideError> {
    let row = sqlx::query!(
        "select display_name, default_region, default_locale, time_zone, delay_notice_minutes,
                trigger_overrides -> $2 as trigger_override
           from tenant_settings where tenant_id = $1",
        tenant_id.0,
        trigger
    )
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok((TenantSettings::default(), None));
    };
    let tenant_override = row
        .trigger_override
        .map(|value| parse_override(tenant_id, trigger, value))
        .transpose()?;
    let settings = TenantSettings {
        display_name: row.display_name,
        default_region: row.default_region,
        default_locale: row.default_locale,
        time_zone: row.time_zone,
        delay_notice_minutes: row.delay_notice_minutes,
    };
    Ok((settings, tenant_override))
}

/// A trigger's override as stored in `tenant_settings.trigger_overrides`.
pub fn parse_override(
    tenant_id: TenantId,
    trigger: &str,
    value: serde_json::Value,
) -> Result<crate::planning::TriggerOverride, OverrideError> {
    serde_json::from_value(value).map_err(|e| OverrideError::Invalid {
        tenant_id,
        trigger: trigger.to_owned(),
        reason: e.to_string(),
    })
}

/// Each timestamp as a person of the tenant reads it (`YYYY-MM-DD HH:MM` in
/// the tenant's time zone); `None` for a value that is not a timestamp.
pub async fn local_times(
    pool: &PgPool,
    tenant_id: TenantId,
    timestamps: &[String],
) -> sqlx::Result<Vec<Option<String>>> {
    let zone = settings(pool, tenant_id).await?.time_zone;
    let parsed: Vec<Option<chrono::DateTime<chrono::Utc>>> = timestamps
        .iter()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .ok()
                .map(|t| t.with_timezone(&chrono::Utc))
        })
        .collect();
    let formatted = sqlx::query_scalar!(
        "select to_char(t at time zone $1, 'YYYY-MM-DD HH24:MI')
           from unnest($2::timestamptz[]) with ordinality as u(t, n) order by n",
        &zone,
        // `None` (not a timestamp) stays a null element.
        &parsed as _
    )
    .fetch_all(pool)
    .await?;
    Ok(formatted)
}

/// Creates or updates the tenant's settings row (the dev stack's demo tenant,
/// the benchmark's tenants).
pub async fn upsert_settings(
    pool: &PgPool,
    tenant_id: TenantId,
    display_name: &str,
    default_region: &str,
    default_locale: &str,
    time_zone: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into tenant_settings (tenant_id, display_name, default_region, default_locale, time_zone)
         values ($1, $2, $3, $4, $5)
         on conflict (tenant_id) do update
            set display_name = excluded.display_name, default_region = excluded.default_region,
                default_locale = excluded.default_locale, time_zone = excluded.time_zone,
                updated_at = now()",
        tenant_id.0,
        display_name,
        default_region,
        default_locale,
        time_zone
    )
    .execute(pool)
    .await?;
    Ok(())
}
