//! Template lookup: the tenant's template or the platform default, walking the
//! locale chain (see `crate::templates`).

use crate::model::{Channel, TenantId};
use crate::templates::TemplateSource;
use sqlx::PgPool;

pub async fn resolve(
    pool: &PgPool,
    tenant_id: TenantId,
    trigger_event: &str,
    channel: Channel,
    locale_chain: &[String],
) -> sqlx::Result<Option<TemplateSource>> {
    sqlx::query_as(
        "select coalesce(tenant_id::text, 'platform') || '/' || trigger_event || '/' || channel || '/' || locale
                    as template_key,
                locale, subject, body, body_html,
                whatsapp_template_name, whatsapp_language, whatsapp_parameters
           from notification_templates
          where (tenant_id = $1 or tenant_id is null)
            and trigger_event = $2
            and channel = $3
            and locale = any($4)
          order by array_position($4, locale), tenant_id nulls last
          limit 1",
    )
    .bind(tenant_id)
    .bind(trigger_event)
    .bind(channel)
    .bind(locale_chain)
    .fetch_optional(pool)
    .await
}
