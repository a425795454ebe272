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
use busflow_activities::model::{ContactId, TenantId};
use busflow_activities::secrets::ProviderSecrets;
use busflow_activities::store;
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
    store::channel_accounts::insert_bench_sms(pool, id, UNREACHED_RATE)
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
    let account = store::channel_accounts::insert_bench_whatsapp(
        pool,
        id,
        name,
        &phone_number_id,
        &config,
        max_send_rate,
        send_burst,
    )
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
    busflow_activities::secrets::store(pool, keys, id, account, &secrets)
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
    store::contacts::insert_bench_passengers(pool, tenant, first, n)
        .await
        .context("seeding passengers")
}

/// Confirmed bookings of `contacts` on `trip`, as the booking events leave them.
pub async fn book(
    pool: &PgPool,
    tenant: TenantId,
    trip: Uuid,
    contacts: &[ContactId],
) -> anyhow::Result<()> {
    store::trips::insert_bench_bookings(pool, tenant, trip, contacts)
        .await
        .context("seeding the trip's bookings")
}
