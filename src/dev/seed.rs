//! The demo tenant of the dev stack, seeded idempotently on every start.
//! Accounts are created ACTIVE; seeding again leaves an existing account's
//! status alone (only the lifecycle moves it: an account in ATTENTION comes
//! back through `reverifyChannelAccount`).

use super::config::{DemoTenant, DemoWebchat, DemoWhatsApp};
use anyhow::Context;
use busflow_activities::crypto::KeyRing;
use busflow_activities::identifiers::{EmailAddress, PhoneNumber};
use busflow_activities::model::ContactKind;
use busflow_activities::model::{ChannelAccountId, TenantId};
use busflow_activities::secrets::ProviderSecrets;
use busflow_activities::store::contacts::{self, PersonContact, PersonSource};
use busflow_activities::store::{channel_accounts, templates, tenants};
use sqlx::PgPool;

/// Tenant settings row (display name, region, locale, time zone).
pub async fn upsert_tenant(
    pool: &PgPool,
    tenant_id: TenantId,
    display_name: &str,
    default_region: &str,
    default_locale: &str,
    time_zone: &str,
) -> anyhow::Result<()> {
    tenants::upsert_settings(
        pool,
        tenant_id,
        display_name,
        default_region,
        default_locale,
        time_zone,
    )
    .await
    .context("seeding tenant settings")
}

/// An ACTIVE SES email channel account sending from `from_address`.
pub async fn upsert_email_account(
    pool: &PgPool,
    tenant_id: TenantId,
    from_address: &str,
    from_name: &str,
) -> anyhow::Result<ChannelAccountId> {
    let config = serde_json::json!({"from_address": from_address, "from_name": from_name});
    channel_accounts::upsert_demo_email(pool, tenant_id, from_address, from_name, &config)
        .await
        .context("seeding the email channel account")
}

/// An ACTIVE SMS account publishing through SNS from `origination_number`.
pub async fn upsert_sms_account(
    pool: &PgPool,
    tenant_id: TenantId,
    origination_number: &str,
) -> anyhow::Result<ChannelAccountId> {
    let config = serde_json::json!({"origination_number": origination_number});
    channel_accounts::upsert_demo_sms(pool, tenant_id, origination_number, &config)
        .await
        .context("seeding the SMS channel account")
}

/// A SANDBOX WhatsApp account with sealed secrets, an approved template for
/// every trigger, and the tenant's mapping of `booking_confirmed` to its own.
async fn upsert_sandbox_whatsapp(
    pool: &PgPool,
    keys: &KeyRing,
    tenant_id: TenantId,
    whatsapp: &DemoWhatsApp,
) -> anyhow::Result<()> {
    // The demo number has approved every platform template (one per
    // trigger and audience) and the tenant's own booking confirmation.
    let mut approved: Vec<String> = busflow_activities::templates::platform::catalog()
        .map_err(|e| anyhow::anyhow!("platform templates: {e}"))?
        .whatsapp_template_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    approved.push(whatsapp.template_name.clone());
    let config = serde_json::json!({
        "phone_number_id": whatsapp.phone_number_id,
        "sandbox": {
            "outcome": whatsapp.sandbox_outcome,
            "failing_recipients": whatsapp.sandbox_failing_recipients,
            "approved_templates": approved,
        },
    });
    let id =
        channel_accounts::upsert_demo_whatsapp(pool, tenant_id, &whatsapp.phone_number_id, &config)
            .await
            .context("seeding the sandbox WhatsApp account")?;
    let secrets = ProviderSecrets {
        access_token: Some("sandbox-access-token".to_owned()),
        app_secret: Some(whatsapp.app_secret.clone()),
        verify_token: Some(whatsapp.verify_token.clone()),
        widget_secret: None,
        ..Default::default()
    };
    busflow_activities::secrets::store(pool, keys, tenant_id, id, &secrets)
        .await
        .context("sealing the sandbox WhatsApp secrets")?;
    for (locale, body) in [
        (
            "es",
            "Hola {{ contact.first_name }}, tu reserva {{ booking.booking_reference }} está confirmada.",
        ),
        (
            "en",
            "Hi {{ contact.first_name }}, your booking {{ booking.booking_reference }} is confirmed.",
        ),
    ] {
        templates::upsert_demo_whatsapp(
            pool,
            tenant_id,
            locale,
            body,
            &whatsapp.template_name,
            &whatsapp.template_language,
            &serde_json::json!({"body": ["contact.first_name", "booking.booking_reference"]}),
        )
        .await
        .context("seeding the demo WhatsApp template")?;
    }
    Ok(())
}

/// An ACTIVE webchat account whose widget secret signs visitors' tokens.
async fn upsert_webchat_account(
    pool: &PgPool,
    keys: &KeyRing,
    tenant_id: TenantId,
    webchat: &DemoWebchat,
) -> anyhow::Result<()> {
    let id = channel_accounts::upsert_demo_webchat(pool, tenant_id)
        .await
        .context("seeding the webchat channel account")?;
    let secrets = ProviderSecrets {
        widget_secret: Some(webchat.widget_secret.clone()),
        ..ProviderSecrets::default()
    };
    busflow_activities::secrets::store(pool, keys, tenant_id, id, &secrets)
        .await
        .context("sealing the webchat widget secret")?;
    Ok(())
}

/// Seeds the demo tenant declared in `temporal-dev.yml`.
pub async fn seed_demo_tenant(
    pool: &PgPool,
    keys: &KeyRing,
    demo: &DemoTenant,
) -> anyhow::Result<()> {
    let tenant_id = TenantId(demo.id);
    upsert_tenant(
        pool,
        tenant_id,
        &demo.display_name,
        &demo.default_region,
        &demo.default_locale,
        &demo.time_zone,
    )
    .await?;
    upsert_email_account(
        pool,
        tenant_id,
        &demo.email.from_address,
        &demo.email.from_name,
    )
    .await?;
    upsert_sandbox_whatsapp(pool, keys, tenant_id, &demo.whatsapp).await?;
    upsert_sms_account(pool, tenant_id, &demo.sms.origination_number).await?;
    upsert_webchat_account(pool, keys, tenant_id, &demo.webchat).await?;
    for passenger in &demo.passengers {
        let contact = PersonContact {
            tenant_id,
            source: PersonSource {
                kind: ContactKind::Customer,
                id: passenger.passenger_profile_id,
            },
            display_name: passenger.full_name.clone(),
            email: passenger
                .email
                .as_deref()
                .map(EmailAddress::parse)
                .transpose()?,
            phone: passenger
                .phone
                .as_deref()
                .map(|p| PhoneNumber::parse(p, &demo.default_region))
                .transpose()?,
            whatsapp: None,
            locale: passenger.locale.clone(),
            time_zone: None,
            problems: Default::default(),
        };
        contacts::upsert_person(pool, &contact)
            .await
            .with_context(|| format!("seeding demo passenger {}", passenger.full_name))?;
    }
    tracing::info!(tenant.id = %tenant_id, "seeded demo tenant {} ({tenant_id})", demo.display_name);
    Ok(())
}
