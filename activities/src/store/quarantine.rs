//! Inbound email SES does not vouch for (a virus, spam, a failed DMARC
//! check, a sender neither SPF nor DKIM authenticates): kept per tenant so
//! the inbox can show it as quarantined, counted by `/metrics`
//! (`busflow_inbound_quarantined`), and never attached to a contact's
//! conversation as theirs.

use crate::model::{ChannelAccountId, TenantId, text_enum};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

text_enum!(
    /// Why a mail was quarantined.
    QuarantineReason {
        /// SES found a virus: nothing of its text is kept.
        Virus => "VIRUS",
        /// SES judged it spam.
        Spam => "SPAM",
        /// The sender's own domain's DMARC check failed: the `From` is not
        /// who sent it.
        DmarcFail => "DMARC_FAIL",
        /// Neither SPF nor DKIM passed, and no DMARC verdict vouches for it.
        SenderNotAuthenticated => "SENDER_NOT_AUTHENTICATED",
    }
);

/// A mail to quarantine at one of a tenant's accounts.
#[derive(Debug, Clone)]
pub struct NewQuarantined {
    pub tenant_id: TenantId,
    pub channel_account_id: ChannelAccountId,
    pub external_message_id: String,
    pub reason: QuarantineReason,
    pub claimed_sender: String,
    pub claimed_sender_name: Option<String>,
    pub subject: Option<String>,
    /// `None` for a virus.
    pub body: Option<String>,
    pub verdicts: serde_json::Value,
    pub content: serde_json::Value,
    pub received_at: Option<DateTime<Utc>>,
}

/// Keeps it once: SES redelivering the same mail adds no row. Returns
/// whether this call kept it.
pub async fn keep(pool: &PgPool, mail: &NewQuarantined) -> sqlx::Result<bool> {
    let kept = sqlx::query!(
        "insert into inbound_quarantine
             (tenant_id, channel_account_id, channel, external_message_id, reason,
              claimed_sender, claimed_sender_name, subject, body, verdicts, content, received_at)
         values ($1, $2, 'EMAIL', $3, $4, $5, $6, $7, $8, $9, $10, $11)
         on conflict (tenant_id, channel_account_id, external_message_id) do nothing",
        mail.tenant_id.0,
        mail.channel_account_id.0,
        &mail.external_message_id,
        mail.reason as QuarantineReason,
        &mail.claimed_sender,
        mail.claimed_sender_name.as_deref(),
        mail.subject.as_deref(),
        mail.body.as_deref(),
        &mail.verdicts,
        &mail.content,
        mail.received_at
    )
    .execute(pool)
    .await?;
    Ok(kept.rows_affected() == 1)
}
