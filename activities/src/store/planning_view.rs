//! What planning a notification reads, in one query: the contact, the
//! tenant's settings with this trigger's override, its ACTIVE channel
//! accounts, when the contact's send window opens (quiet hours), and the
//! tenant's own templates for the trigger. One round trip where it was five.

use super::channel_accounts::ChannelAccount;
use super::contacts::Contact;
use super::tenants::TenantSettings;
use crate::model::{Channel, ContactId, ContactKind, TenantId};
use crate::templates::TemplateSource;
use crate::triggers::Trigger;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::types::Json;

/// One of the tenant's templates for the trigger.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct TenantTemplate {
    pub audience: ContactKind,
    pub channel: Channel,
    #[serde(flatten)]
    pub source: TemplateSource,
}

/// The planning reads of one notification.
#[derive(Debug, Clone)]
pub struct PlanningView {
    /// `None`: no such contact (any more).
    pub contact: Option<Contact>,
    /// The defaults when the tenant has no settings row.
    pub tenant: TenantSettings,
    /// `tenant_settings.trigger_overrides -> trigger`, unparsed.
    pub trigger_override: Option<serde_json::Value>,
    /// ACTIVE accounts, oldest first.
    pub accounts: Vec<ChannelAccount>,
    /// `None` when the send window is open now (or there are no quiet hours).
    pub window_opens: Option<DateTime<Utc>>,
    pub templates: Vec<TenantTemplate>,
}

pub async fn read(
    pool: &PgPool,
    tenant_id: TenantId,
    contact_id: ContactId,
    trigger: Trigger,
    trigger_name: &str,
) -> sqlx::Result<PlanningView> {
    let row = sqlx::query!(
        r#"select (select to_jsonb(c) from contacts c where c.tenant_id = $1 and c.id = $2)
                    as "contact: Json<Contact>",
                (select to_jsonb(t) from tenant_settings t where t.tenant_id = $1)
                    as "tenant: Json<TenantSettings>",
                (select t.trigger_overrides -> $4 from tenant_settings t where t.tenant_id = $1)
                    as trigger_override,
                (select coalesce(jsonb_agg(to_jsonb(a) order by a.created_at, a.id), '[]'::jsonb)
                   from channel_accounts a where a.tenant_id = $1 and a.status = 'ACTIVE')
                    as "accounts!: Json<Vec<ChannelAccount>>",
                send_window_opens($1, $2) as window_opens,
                (select coalesce(jsonb_agg(jsonb_build_object(
                            'audience', nt.audience, 'channel', nt.channel,
                            'template_key', nt.tenant_id::text || '/' || nt.trigger_event || '/' || nt.audience
                                            || '/' || nt.channel || '/' || nt.locale,
                            'locale', nt.locale, 'subject', nt.subject, 'body', nt.body,
                            'body_html', nt.body_html,
                            'whatsapp_template_name', nt.whatsapp_template_name,
                            'whatsapp_language', nt.whatsapp_language,
                            'whatsapp_parameters', nt.whatsapp_parameters)), '[]'::jsonb)
                   from notification_templates nt
                  where nt.tenant_id = $1 and nt.trigger_event = $3)
                    as "templates!: Json<Vec<TenantTemplate>>""#,
        tenant_id.0,
        contact_id.0,
        trigger as Trigger,
        trigger_name
    )
    .fetch_one(pool)
    .await?;
    Ok(PlanningView {
        contact: row.contact.map(|c| c.0),
        tenant: row.tenant.map(|t| t.0).unwrap_or_default(),
        trigger_override: row.trigger_override,
        accounts: row.accounts.0,
        window_opens: row.window_opens,
        templates: row.templates.0,
    })
}

impl PlanningView {
    /// The tenant's templates for one audience and channel.
    pub fn templates_for(&self, audience: ContactKind, channel: Channel) -> Vec<TemplateSource> {
        self.templates
            .iter()
            .filter(|t| t.audience == audience && t.channel == channel)
            .map(|t| t.source.clone())
            .collect()
    }
}
