//! A tenant's sending domains: the EMAIL account that sends from one, and
//! the DNS records its operator must publish. Recording a domain decides,
//! under a lock on the domain, whether it may be connected: a domain
//! belongs to one tenant at a time, and to one running verification.

use crate::model::{ChannelAccountId, ChannelAccountStatus, TenantId};
use crate::providers::email::domains::DnsRecord;
use sqlx::PgPool;

/// The domain as the operator asked for it.
#[derive(Debug, Clone)]
pub struct DomainRequest<'a> {
    pub tenant_id: TenantId,
    /// Lower-case.
    pub domain: &'a str,
    pub from_address: &'a str,
    pub from_name: &'a str,
    /// A subdomain to send MAIL FROM (bounces), if the operator wants one.
    pub mail_from: Option<&'a str>,
}

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("domain {0} is connected to another tenant")]
    Held(String),
    #[error("domain {0} is being verified already")]
    InProgress(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Records the PENDING account that sends from the domain (an existing one
/// is reused; a DISCONNECTED one is connected again) and returns it.
pub async fn record(
    pool: &PgPool,
    request: &DomainRequest<'_>,
) -> Result<ChannelAccountId, DomainError> {
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "select pg_advisory_xact_lock(hashtextextended('email-domain:' || $1, 0))",
        request.domain
    )
    .execute(&mut *tx)
    .await?;
    let held = sqlx::query_scalar!(
        "select tenant_id from channel_accounts
          where channel = 'EMAIL' and status <> 'DISCONNECTED' and tenant_id <> $1
            and provider_config ->> 'domain' = $2
          limit 1",
        request.tenant_id.0,
        request.domain
    )
    .fetch_optional(&mut *tx)
    .await?;
    if held.is_some() {
        return Err(DomainError::Held(request.domain.to_owned()));
    }
    let existing = sqlx::query!(
        r#"select id as "id: ChannelAccountId", status as "status: ChannelAccountStatus"
             from channel_accounts
            where tenant_id = $1 and channel = 'EMAIL' and provider_config ->> 'domain' = $2
            order by (status = 'DISCONNECTED'), created_at limit 1
            for update"#,
        request.tenant_id.0,
        request.domain
    )
    .fetch_optional(&mut *tx)
    .await?
    .map(|a| (a.id, a.status));
    let mut config = serde_json::json!({
        "domain": request.domain,
        "from_address": request.from_address,
        "from_name": request.from_name,
    });
    if let Some(mail_from) = request.mail_from {
        config["mail_from_domain"] = mail_from.into();
    }
    sqlx::query_scalar!("select set_config('busflow.status_actor', 'provisioning', true)")
        .fetch_one(&mut *tx)
        .await?;
    let id = match existing {
        Some((_, ChannelAccountStatus::Verifying)) => {
            return Err(DomainError::InProgress(request.domain.to_owned()));
        }
        Some((id, status)) => {
            sqlx::query!(
                "update channel_accounts
                    set provider_config = provider_config || $3,
                        external_account_id = $4,
                        status = case when $5 then 'PENDING' else status end,
                        status_reason = case when $5 then null else status_reason end,
                        updated_at = now()
                  where tenant_id = $1 and id = $2",
                request.tenant_id.0,
                id.0,
                &config,
                request.from_address,
                status == ChannelAccountStatus::Disconnected
            )
            .execute(&mut *tx)
            .await?;
            id
        }
        None => {
            sqlx::query_scalar!(
                r#"insert into channel_accounts
                     (tenant_id, channel, provider, display_name, status, mode, provider_config, external_account_id)
                 values ($1, 'EMAIL', 'AWS_SES', $2, 'PENDING', 'LIVE', $3, $4)
                 returning id as "id: ChannelAccountId""#,
                request.tenant_id.0,
                request.from_name,
                &config,
                request.from_address
            )
            .fetch_one(&mut *tx)
            .await?
        }
    };
    tx.commit().await?;
    Ok(id)
}

/// Makes the account's records exactly `records`.
pub async fn replace_records(
    pool: &PgPool,
    tenant_id: TenantId,
    account_id: ChannelAccountId,
    records: &[DnsRecord],
) -> sqlx::Result<()> {
    let rows = serde_json::to_value(records).unwrap_or_default();
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "delete from email_domain_dns_records where tenant_id = $1 and channel_account_id = $2",
        tenant_id.0,
        account_id.0
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "insert into email_domain_dns_records
             (tenant_id, channel_account_id, record_type, name, value, purpose)
         select $1, $2, r.record_type, r.name, r.value, r.purpose
           from jsonb_to_recordset($3) as r (record_type text, name text, value text, purpose text)",
        tenant_id.0,
        account_id.0,
        &rows
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// The records the operator must publish for the account's domain.
pub async fn records(
    pool: &PgPool,
    tenant_id: TenantId,
    account_id: ChannelAccountId,
) -> sqlx::Result<Vec<DnsRecord>> {
    sqlx::query_as!(
        DnsRecord,
        "select record_type, name, value, purpose from email_domain_dns_records
          where tenant_id = $1 and channel_account_id = $2
          order by purpose, name",
        tenant_id.0,
        account_id.0
    )
    .fetch_all(pool)
    .await
}

/// Records the configuration set the account sends through.
pub async fn set_configuration_set(
    pool: &PgPool,
    tenant_id: TenantId,
    account_id: ChannelAccountId,
    name: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "update channel_accounts
            set provider_config = provider_config || jsonb_build_object('configuration_set', $3::text),
                updated_at = now()
          where tenant_id = $1 and id = $2",
        tenant_id.0,
        account_id.0,
        name
    )
    .execute(pool)
    .await?;
    Ok(())
}
