//! Template lookup: the tenant's template or the platform default, walking the
//! locale chain (see `crate::templates`).

use crate::model::{Channel, ContactKind, TenantId};
use crate::templates::{TemplateSource, WhatsAppParameters, platform};
use crate::triggers::Trigger;
use sqlx::PgPool;
use sqlx::types::Json;

/// What a template is for.
#[derive(Debug, Clone, Copy)]
pub struct TemplateFor {
    pub trigger: Trigger,
    pub audience: ContactKind,
    pub channel: Channel,
}

/// The tenant's template for the first locale of the chain it has, else the
/// platform's for that locale, walking the chain. `None` only when the
/// trigger has no platform templates at all (an agent reply).
pub async fn resolve(
    pool: &PgPool,
    tenant_id: TenantId,
    wanted: TemplateFor,
    locale_chain: &[String],
) -> anyhow::Result<Option<TemplateSource>> {
    let tenant_rows = sqlx::query_as!(
        TemplateSource,
        r#"select tenant_id::text || '/' || trigger_event || '/' || audience || '/' || channel || '/' || locale
                    as "template_key!",
                locale, subject, body, body_html,
                whatsapp_template_name, whatsapp_language,
                whatsapp_parameters as "whatsapp_parameters: Json<WhatsAppParameters>"
           from notification_templates
          where tenant_id = $1 and trigger_event = $2 and audience = $3 and channel = $4
            and locale = any($5)"#,
        tenant_id.0,
        wanted.trigger as Trigger,
        wanted.audience as ContactKind,
        wanted.channel as Channel,
        locale_chain as &[String]
    )
    .fetch_all(pool)
    .await?;
    choose(&tenant_rows, wanted, locale_chain)
}

/// [`resolve`] among the tenant's templates already read.
pub fn choose(
    tenant_rows: &[TemplateSource],
    wanted: TemplateFor,
    locale_chain: &[String],
) -> anyhow::Result<Option<TemplateSource>> {
    let catalog = platform::catalog().map_err(|e| anyhow::anyhow!("platform templates: {e}"))?;
    Ok(locale_chain.iter().find_map(|locale| {
        tenant_rows
            .iter()
            .find(|row| row.locale.eq_ignore_ascii_case(locale))
            .cloned()
            .or_else(|| {
                catalog
                    .get(wanted.trigger, wanted.audience, wanted.channel, locale)
                    .cloned()
            })
    }))
}

/// The dev stack's demo tenant's own `booking_confirmed` WhatsApp template in
/// `locale`, mapped to its approved template (created or replaced).
pub async fn upsert_demo_whatsapp(
    pool: &PgPool,
    tenant_id: TenantId,
    locale: &str,
    body: &str,
    whatsapp_template_name: &str,
    whatsapp_language: &str,
    whatsapp_parameters: &serde_json::Value,
) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into notification_templates
            (tenant_id, trigger_event, channel, locale, body, whatsapp_template_name, whatsapp_language, whatsapp_parameters)
         values ($1, 'booking_confirmed', 'WHATSAPP', $2, $3, $4, $5, $6)
         on conflict (tenant_id, trigger_event, channel, locale, audience) do update
            set body = excluded.body, whatsapp_template_name = excluded.whatsapp_template_name,
                whatsapp_language = excluded.whatsapp_language, whatsapp_parameters = excluded.whatsapp_parameters",
        tenant_id.0,
        locale,
        body,
        whatsapp_template_name,
        whatsapp_language,
        whatsapp_parameters
    )
    .execute(pool)
    .await?;
    Ok(())
}
