//! The benchmark's tenants: one per question, so that counting a tenant's
//! messages answers it without ambiguity. A tenant has exactly one sandbox
//! account, which decides the channel its notifications plan: an SMS-only
//! tenant sends SMS (no receipts: done once SENT), a WhatsApp-only tenant
//! sends WhatsApp, whose sandbox plays signed Meta receipts back to our API
//! (done once DELIVERED).
//!
//! Outside the 24 h service window WhatsApp refuses free-form text, so the
//! WhatsApp path rides on the platform's approved templates (one per
//! trigger, `templates/<trigger>/whatsapp.yaml`); the sandbox number approves
//! exactly those, as `busflow-comms dev` seeds its demo number.

use anyhow::Context;
use busflow_activities::crypto::KeyRing;
use busflow_activities::model::{ChannelAccountId, ContactId, TenantId};
use busflow_activities::secrets::ProviderSecrets;
use sqlx::PgPool;
use std::sync::atomic::{AtomicI32, Ordering};
use uuid::Uuid;

/// A send limit far above anything one machine reaches: the limiter's
/// Postgres call is made and measured, but never waits.
pub const UNREACHED_RATE: f64 = 1_000_000.0;

/// Phone numbers are handed out once per benchmark, across tenants.
static NEXT_PHONE: AtomicI32 = AtomicI32::new(1);

async fn tenant(pool: &PgPool, name: &str) -> anyhow::Result<TenantId> {
    let id = TenantId(Uuid::new_v4());
    crate::dev::seed::upsert_tenant(pool, id, name, "MX", "es-MX", "America/Mexico_City").await?;
    Ok(id)
}

/// A tenant whose only account is a sandbox SMS number without limit.
pub async fn sms(pool: &PgPool, name: &str) -> anyhow::Result<TenantId> {
    let id = tenant(pool, name).await?;
    sqlx::query(
        "insert into channel_accounts (tenant_id, channel, provider, status, mode, external_account_id, max_send_rate)
         values ($1, 'SMS', 'AWS_SNS', 'ACTIVE', 'SANDBOX', '+15550009999', $2)",
    )
    .bind(id)
    .bind(UNREACHED_RATE)
    .execute(pool)
    .await
    .with_context(|| format!("seeding the sandbox SMS account of {name}"))?;
    Ok(id)
}

/// A tenant whose only account is a sandbox WhatsApp number that delivers
/// (and plays the receipts of) every message. `max_send_rate` `None` leaves
/// the adapter's default (80 msg/s, Meta's default per number).
pub async fn whatsapp(
    pool: &PgPool,
    keys: &KeyRing,
    name: &str,
    max_send_rate: Option<f64>,
    send_burst: Option<i32>,
) -> anyhow::Result<TenantId> {
    let id = tenant(pool, name).await?;
    let approved: Vec<&str> = busflow_activities::templates::platform::catalog()
        .map_err(|e| anyhow::anyhow!("platform templates: {e}"))?
        .whatsapp_template_names()
        .into_iter()
        .collect();
    let phone_number_id = format!("bench-{}", id.0.simple());
    let config = serde_json::json!({
        "phone_number_id": phone_number_id,
        "sandbox": {"outcome": "delivered", "approved_templates": approved},
    });
    let account: Uuid = sqlx::query_scalar(
        "insert into channel_accounts
            (tenant_id, channel, provider, display_name, status, mode, provider_config,
             external_account_id, max_send_rate, send_burst)
         values ($1, 'WHATSAPP', 'META_CLOUD', $2, 'ACTIVE', 'SANDBOX', $3, $4, $5, $6)
         returning id",
    )
    .bind(id)
    .bind(name)
    .bind(&config)
    .bind(&phone_number_id)
    .bind(max_send_rate)
    .bind(send_burst)
    .fetch_one(pool)
    .await
    .with_context(|| format!("seeding the sandbox WhatsApp account of {name}"))?;
    // The API checks the receipts' X-Hub-Signature-256 with this secret.
    let secrets = ProviderSecrets {
        access_token: Some("sandbox-access-token".to_owned()),
        app_secret: Some(format!("bench-app-secret-{}", Uuid::new_v4().simple())),
        verify_token: Some("bench-verify-token".to_owned()),
        widget_secret: None,
        ..Default::default()
    };
    busflow_activities::secrets::store(pool, keys, id, ChannelAccountId(account), &secrets)
        .await
        .with_context(|| format!("sealing the sandbox WhatsApp secrets of {name}"))?;
    Ok(id)
}

/// `n` passengers with a phone each, as `passenger_profile_upserted`
/// events leave them; returns (contact, passenger profile) pairs.
pub async fn passengers(
    pool: &PgPool,
    tenant: TenantId,
    n: usize,
) -> anyhow::Result<Vec<(ContactId, Uuid)>> {
    let n = i32::try_from(n).context("too many passengers")?;
    let first = NEXT_PHONE.fetch_add(n, Ordering::Relaxed);
    let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "insert into contacts (tenant_id, display_name, identifiers, passenger_profile_id, locale)
         select $1, 'Pasajero ' || i, jsonb_build_object('phone', '+5255' || lpad(i::text, 8, '0')),
                gen_random_uuid(), 'es-MX'
           from generate_series($2::int, $2::int + $3::int - 1) as i
         returning id, passenger_profile_id",
    )
    .bind(tenant)
    .bind(first)
    .bind(n)
    .fetch_all(pool)
    .await
    .context("seeding passengers")?;
    Ok(rows
        .into_iter()
        .map(|(contact, profile)| (ContactId(contact), profile))
        .collect())
}

/// Confirmed bookings of `contacts` on `trip`, as the booking events leave them.
pub async fn book(
    pool: &PgPool,
    tenant: TenantId,
    trip: Uuid,
    contacts: &[ContactId],
) -> anyhow::Result<()> {
    sqlx::query(
        "insert into trip_bookings (tenant_id, booking_id, trip_id, contact_id, status, source_version)
         select $1, gen_random_uuid(), $2, c, 'CONFIRMED', now() from unnest($3::uuid[]) as c",
    )
    .bind(tenant)
    .bind(trip)
    .bind(contacts.iter().map(|c| c.0).collect::<Vec<_>>())
    .execute(pool)
    .await
    .context("seeding the trip's bookings")?;
    Ok(())
}
