//! `whatsapp_signups`: each Embedded Signup an operator finished, and the
//! account it connects. Recording one decides, under a lock on the number,
//! whether the signup may go ahead: a code belongs to one signup, a number
//! and a WhatsApp Business Account to one tenant at a time, and a number to
//! one running connection.

use crate::model::{ChannelAccountId, ChannelAccountStatus, TenantId};
use sqlx::PgPool;

/// The signup as the operator's browser reported it.
#[derive(Debug, Clone)]
pub struct Signup<'a> {
    pub tenant_id: TenantId,
    pub waba_id: &'a str,
    pub phone_number_id: &'a str,
    /// SHA-256 of the code, hex.
    pub code_sha256: &'a str,
    pub display_name: Option<&'a str>,
}

/// A signup that may go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub channel_account_id: ChannelAccountId,
    pub workflow_id: String,
    /// False: this exact signup was recorded before (Hasura retrying).
    pub new: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    #[error("this signup code was already used for another number; run Embedded Signup again")]
    CodeUsed,
    #[error("phone number {0} is connected to another tenant")]
    PhoneNumberHeld(String),
    #[error("WhatsApp Business Account {0} is connected to another tenant")]
    WabaHeld(String),
    #[error("phone number {phone_number_id} is being connected already ({workflow_id})")]
    InProgress {
        phone_number_id: String,
        workflow_id: String,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Records the signup and the PENDING account it connects (an existing
/// account for the number is reused; a DISCONNECTED one is connected again),
/// or says why it may not go ahead.
pub async fn record(
    pool: &PgPool,
    signup: &Signup<'_>,
    workflow_id_for: impl FnOnce(ChannelAccountId) -> String,
) -> Result<Recorded, SignupError> {
    let mut tx = pool.begin().await?;
    // One signup of a number at a time, across tenants.
    sqlx::query!(
        "select pg_advisory_xact_lock(hashtextextended('whatsapp-number:' || $1, 0))",
        signup.phone_number_id
    )
    .execute(&mut *tx)
    .await?;
    let earlier = sqlx::query!(
        r#"select tenant_id as "tenant_id: TenantId",
                  channel_account_id as "channel_account_id: ChannelAccountId",
                  phone_number_id, workflow_id
             from whatsapp_signups where code_sha256 = $1"#,
        signup.code_sha256
    )
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(earlier) = earlier {
        if earlier.tenant_id == signup.tenant_id
            && earlier.phone_number_id == signup.phone_number_id
        {
            return Ok(Recorded {
                channel_account_id: earlier.channel_account_id,
                workflow_id: earlier.workflow_id,
                new: false,
            });
        }
        return Err(SignupError::CodeUsed);
    }
    let holders = sqlx::query!(
        "select tenant_id, external_account_id, provider_config ->> 'waba_id' as waba_id
           from channel_accounts
          where channel = 'WHATSAPP' and status <> 'DISCONNECTED' and tenant_id <> $1
            and (external_account_id = $2 or provider_config ->> 'waba_id' = $3)",
        signup.tenant_id.0,
        signup.phone_number_id,
        signup.waba_id
    )
    .fetch_all(&mut *tx)
    .await?;
    if holders
        .iter()
        .any(|h| h.external_account_id.as_deref() == Some(signup.phone_number_id))
    {
        return Err(SignupError::PhoneNumberHeld(
            signup.phone_number_id.to_owned(),
        ));
    }
    if !holders.is_empty() {
        return Err(SignupError::WabaHeld(signup.waba_id.to_owned()));
    }
    let existing = sqlx::query!(
        r#"select id as "id: ChannelAccountId", status as "status: ChannelAccountStatus"
             from channel_accounts
            where tenant_id = $1 and channel = 'WHATSAPP' and external_account_id = $2
            for update"#,
        signup.tenant_id.0,
        signup.phone_number_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .map(|a| (a.id, a.status));
    let config = serde_json::json!({
        "phone_number_id": signup.phone_number_id,
        "waba_id": signup.waba_id,
    });
    sqlx::query_scalar!("select set_config('busflow.status_actor', 'provisioning', true)")
        .fetch_one(&mut *tx)
        .await?;
    let account_id = match existing {
        Some((id, ChannelAccountStatus::Verifying)) => {
            let running = sqlx::query_scalar!(
                "select workflow_id from whatsapp_signups
                  where tenant_id = $1 and channel_account_id = $2
                  order by created_at desc limit 1",
                signup.tenant_id.0,
                id.0
            )
            .fetch_optional(&mut *tx)
            .await?;
            return Err(SignupError::InProgress {
                phone_number_id: signup.phone_number_id.to_owned(),
                workflow_id: running.unwrap_or_default(),
            });
        }
        Some((id, status)) => {
            sqlx::query!(
                "update channel_accounts
                    set provider_config = provider_config || $3,
                        status = case when $4 then 'PENDING' else status end,
                        status_reason = case when $4 then null else status_reason end,
                        display_name = coalesce($5, display_name),
                        mode = 'LIVE', updated_at = now()
                  where tenant_id = $1 and id = $2",
                signup.tenant_id.0,
                id.0,
                &config,
                status == ChannelAccountStatus::Disconnected,
                signup.display_name
            )
            .execute(&mut *tx)
            .await?;
            id
        }
        None => {
            sqlx::query_scalar!(
                r#"insert into channel_accounts
                     (tenant_id, channel, provider, display_name, status, mode, provider_config, external_account_id)
                 values ($1, 'WHATSAPP', 'META_CLOUD', coalesce($2, ''), 'PENDING', 'LIVE', $3, $4)
                 returning id as "id: ChannelAccountId""#,
                signup.tenant_id.0,
                signup.display_name,
                &config,
                signup.phone_number_id
            )
            .fetch_one(&mut *tx)
            .await?
        }
    };
    let workflow_id = workflow_id_for(account_id);
    sqlx::query!(
        "insert into whatsapp_signups
             (code_sha256, tenant_id, channel_account_id, waba_id, phone_number_id, workflow_id)
         values ($1, $2, $3, $4, $5, $6)",
        signup.code_sha256,
        signup.tenant_id.0,
        account_id.0,
        signup.waba_id,
        signup.phone_number_id,
        &workflow_id
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Recorded {
        channel_account_id: account_id,
        workflow_id,
        new: true,
    })
}
