//! Platform-managed SMS accounts: a tenant that brings no number of its own
//! sends SMS from one of the platform's senders (`sms_pool`), through an
//! account of its own whose send-rate limit is the platform's per-tenant
//! daily allowance.

use crate::model::{ChannelAccountId, TenantId};
use crate::sms_pool::PlatformSender;
use sqlx::PgPool;

/// The tenant's platform SMS account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    pub channel_account_id: ChannelAccountId,
    /// False: the tenant had it already.
    pub new: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AssignError {
    #[error("the tenant sends SMS from a number of its own ({0}); disconnect it first")]
    OwnNumber(ChannelAccountId),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Gives the tenant an ACTIVE SMS account on `sender` (of `country`),
/// allowed `daily_limit` sends a day (bursts up to that many), or returns
/// the one it has.
pub async fn assign(
    pool: &PgPool,
    tenant_id: TenantId,
    country: &str,
    sender: &PlatformSender,
    daily_limit: u32,
) -> Result<Assigned, AssignError> {
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "select pg_advisory_xact_lock(hashtextextended('platform-sms:' || $1::text, 0))",
        tenant_id as TenantId
    )
    .execute(&mut *tx)
    .await?;
    let accounts: Vec<(ChannelAccountId, bool)> = sqlx::query!(
        r#"select id as "id: ChannelAccountId",
                  coalesce((provider_config ->> 'platform_managed')::boolean, false) as "platform!"
             from channel_accounts
            where tenant_id = $1 and channel = 'SMS' and status <> 'DISCONNECTED'
            order by created_at, id"#,
        tenant_id.0
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|a| (a.id, a.platform))
    .collect();
    if let Some((id, _)) = accounts.iter().find(|(_, platform)| !platform) {
        return Err(AssignError::OwnNumber(*id));
    }
    if let Some((id, _)) = accounts.first() {
        return Ok(Assigned {
            channel_account_id: *id,
            new: false,
        });
    }
    let mut config = serde_json::json!({"platform_managed": true, "country": country});
    match sender {
        PlatformSender::Number(number) => config["origination_number"] = number.as_str().into(),
        PlatformSender::SenderId(id) => config["sender_id"] = id.as_str().into(),
    }
    sqlx::query_scalar!("select set_config('busflow.status_actor', 'provisioning', true)")
        .fetch_one(&mut *tx)
        .await?;
    // Shared by many tenants, the sender routes no inbound SMS: no
    // external_account_id.
    let id = sqlx::query_scalar!(
        r#"insert into channel_accounts
             (tenant_id, channel, provider, display_name, status, mode, provider_config,
              max_send_rate, send_burst)
         values ($1, 'SMS', 'AWS_SNS', $2, 'ACTIVE', 'LIVE', $3, $4, $5)
         returning id as "id: ChannelAccountId""#,
        tenant_id.0,
        format!("Platform SMS ({country})"),
        &config,
        f64::from(daily_limit.max(1)) / 86_400.0,
        i32::try_from(daily_limit.max(1)).unwrap_or(i32::MAX)
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Assigned {
        channel_account_id: id,
        new: true,
    })
}
