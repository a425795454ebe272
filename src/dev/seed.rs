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
    sqlx::query(
        "insert into tenant_settings (tenant_id, display_name, default_region, default_locale, time_zone)
         values ($1, $2, $3, $4, $5)
         on conflict (tenant_id) do update
            set display_name = excluded.display_name, default_region = excluded.default_region,
                default_locale = excluded.default_locale, time_zone = excluded.time_zone,
                updated_at = now()",
    )
    .bind(tenant_id)
    .bind(display_name)
    .bind(default_region)
    .bind(default_locale)
    .bind(time_zone)
    .execute(pool)
    .await
    .context("seeding tenant settings")?;
    Ok(())
}

/// An ACTIVE SES email channel account sending from `from_address`.
pub async fn upsert_email_account(
    pool: &PgPool,
    tenant_id: TenantId,
    from_address: &str,
    from_name: &str,
) -> anyhow::Result<ChannelAccountId> {
    let config = serde_json::json!({"from_address": from_address, "from_name": from_name});
    let id = sqlx::query_scalar(
        "insert into channel_accounts
            (tenant_id, channel, provider, display_name, status, mode, provider_config, external_account_id)
         values ($1, 'EMAIL', 'AWS_SES', $2, 'ACTIVE', 'LIVE', $3, $4)
         on conflict (tenant_id, channel, external_account_id) do update
            set provider_config = excluded.provider_config, updated_at = now()
         returning id",
    )
    .bind(tenant_id)
    .bind(from_name)
    .bind(&config)
    .bind(from_address)
    .fetch_one(pool)
    .await
    .context("seeding the email channel account")?;
    Ok(ChannelAccountId(id))
}

/// An ACTIVE SMS account publishing through SNS from `origination_number`.
pub async fn upsert_sms_account(
    pool: &PgPool,
    tenant_id: TenantId,
    origination_number: &str,
) -> anyhow::Result<ChannelAccountId> {
    let config = serde_json::json!({"origination_number": origination_number});
    let id = sqlx::query_scalar(
        "insert into channel_accounts
            (tenant_id, channel, provider, display_name, status, mode, provider_config, external_account_id)
         values ($1, 'SMS', 'AWS_SNS', 'Demo SMS', 'ACTIVE', 'LIVE', $2, $3)
         on conflict (tenant_id, channel, external_account_id) do update
            set provider_config = excluded.provider_config, updated_at = now()
         returning id",
    )
    .bind(tenant_id)
    .bind(&config)
    .bind(origination_number)
    .fetch_one(pool)
    .await
    .context("seeding the SMS channel account")?;
    Ok(ChannelAccountId(id))
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
    let id: uuid::Uuid = sqlx::query_scalar(
        "insert into channel_accounts
            (tenant_id, channel, provider, display_name, status, mode, provider_config, external_account_id)
         values ($1, 'WHATSAPP', 'META_CLOUD', 'Demo WhatsApp (sandbox)', 'ACTIVE', 'SANDBOX', $2, $3)
         on conflict (tenant_id, channel, external_account_id) do update
            set provider_config = excluded.provider_config, mode = 'SANDBOX', updated_at = now()
         returning id",
    )
    .bind(tenant_id)
    .bind(&config)
    .bind(&whatsapp.phone_number_id)
    .fetch_one(pool)
    .await
    .context("seeding the sandbox WhatsApp account")?;
    let secrets = ProviderSecrets {
        access_token: Some("sandbox-access-token".to_owned()),
        app_secret: Some(whatsapp.app_secret.clone()),
        verify_token: Some(whatsapp.verify_token.clone()),
        widget_secret: None,
        ..Default::default()
    };
    busflow_activities::secrets::store(pool, keys, tenant_id, ChannelAccountId(id), &secrets)
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
        sqlx::query(
            "insert into notification_templates
                (tenant_id, trigger_event, channel, locale, body, whatsapp_template_name, whatsapp_language, whatsapp_parameters)
             values ($1, 'booking_confirmed', 'WHATSAPP', $2, $3, $4, $5, $6)
             on conflict (tenant_id, trigger_event, channel, locale, audience) do update
                set body = excluded.body, whatsapp_template_name = excluded.whatsapp_template_name,
                    whatsapp_language = excluded.whatsapp_language, whatsapp_parameters = excluded.whatsapp_parameters",
        )
        .bind(tenant_id)
        .bind(locale)
        .bind(body)
        .bind(&whatsapp.template_name)
        .bind(&whatsapp.template_language)
        .bind(serde_json::json!({"body": ["contact.first_name", "booking.booking_reference"]}))
        .execute(pool)
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
    let id: uuid::Uuid = sqlx::query_scalar(
        "insert into channel_accounts
            (tenant_id, channel, provider, display_name, status, mode, external_account_id)
         values ($1, 'WEBCHAT', 'WEBCHAT', 'Demo webchat', 'ACTIVE', 'LIVE', 'demo-widget')
         on conflict (tenant_id, channel, external_account_id) do update
            set updated_at = now()
         returning id",
    )
    .bind(tenant_id)
    .fetch_one(pool)
    .await
    .context("seeding the webchat channel account")?;
    let secrets = ProviderSecrets {
        widget_secret: Some(webchat.widget_secret.clone()),
        ..ProviderSecrets::default()
    };
    busflow_activities::secrets::store(pool, keys, tenant_id, ChannelAccountId(id), &secrets)
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
