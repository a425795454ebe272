//! `whatsapp_message_templates`: the message templates of each connected
//! WhatsApp Business Account, as Meta last listed them.

use crate::model::{ChannelAccountId, TenantId};
use crate::providers::whatsapp::onboarding::GraphTemplate;
use sqlx::PgPool;

/// Makes the account's rows exactly `templates`, in one transaction: new
/// and changed ones written, ones Meta no longer lists removed.
pub async fn replace(
    pool: &PgPool,
    tenant_id: TenantId,
    account_id: ChannelAccountId,
    templates: &[GraphTemplate],
) -> sqlx::Result<()> {
    let rows = serde_json::to_value(templates).unwrap_or_default();
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "with listed as (
             select * from jsonb_to_recordset($3) as t
                 (id text, name text, language text, status text, category text,
                  parameter_format text, components jsonb))
         delete from whatsapp_message_templates w
          where w.tenant_id = $1 and w.channel_account_id = $2
            and not exists (select 1 from listed l where l.name = w.name and l.language = w.language)",
        tenant_id.0,
        account_id.0,
        &rows
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "insert into whatsapp_message_templates
             (tenant_id, channel_account_id, name, language, meta_template_id, status, category,
              parameter_format, components, synced_at)
         select $1, $2, t.name, t.language, t.id, t.status, t.category, t.parameter_format,
                coalesce(t.components, '[]'::jsonb), now()
           from jsonb_to_recordset($3) as t
                (id text, name text, language text, status text, category text,
                 parameter_format text, components jsonb)
         on conflict (tenant_id, channel_account_id, name, language) do update
            set meta_template_id = excluded.meta_template_id, status = excluded.status,
                category = excluded.category, parameter_format = excluded.parameter_format,
                components = excluded.components, synced_at = excluded.synced_at",
        tenant_id.0,
        account_id.0,
        &rows
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// One synced template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncedTemplate {
    pub name: String,
    pub language: String,
    pub status: String,
}

/// The account's templates, by name and language.
pub async fn list(
    pool: &PgPool,
    tenant_id: TenantId,
    account_id: ChannelAccountId,
) -> sqlx::Result<Vec<SyncedTemplate>> {
    sqlx::query_as!(
        SyncedTemplate,
        "select name, language, status from whatsapp_message_templates
          where tenant_id = $1 and channel_account_id = $2 order by name, language",
        tenant_id.0,
        account_id.0
    )
    .fetch_all(pool)
    .await
}
