//! Template lookup: the tenant's template or the platform default, walking the
//! locale chain (see `crate::templates`).

use crate::model::{Channel, ContactKind, TenantId};
use crate::templates::{TemplateSource, platform};
use crate::triggers::Trigger;
use sqlx::PgPool;

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
    let tenant_rows: Vec<TemplateSource> = sqlx::query_as(
        "select tenant_id::text || '/' || trigger_event || '/' || audience || '/' || channel || '/' || locale
                    as template_key,
                locale, subject, body, body_html,
                whatsapp_template_name, whatsapp_language, whatsapp_parameters
           from notification_templates
          where tenant_id = $1 and trigger_event = $2 and audience = $3 and channel = $4
            and locale = any($5)",
    )
    .bind(tenant_id)
    .bind(wanted.trigger)
    .bind(wanted.audience)
    .bind(wanted.channel)
    .bind(locale_chain)
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
