//! The activities that connect a tenant's sending domain on SES (the steps
//! of `VerifyEmailDomainWorkflow`): create the identity with Easy DKIM and
//! record the DNS records to publish, check whether SES found them, and set
//! up the configuration set that publishes the domain's receipts. Each is
//! safe to run again.

use crate::model::TenantId;
use crate::notification::NotificationActivities;
use crate::providers::email::domains::{DomainVerification, dns_records};
use crate::providers::email::ses::SesEmail;
use crate::providers::{Failure, FailureClass};
use crate::provisioning::{AccountRef, Step};
use crate::store::{channel_accounts, email_domains};
use crate::traces::Traces;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::future::Future;
use std::sync::Arc;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

/// Which domain account, and where its receipts go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainConnection {
    pub account: AccountRef,
    /// The SNS topic the configuration set publishes events to; `None`:
    /// no receipts (the dev stack's emulator has no event destinations).
    pub events_topic: Option<String>,
    pub patience: VerifyPatience,
}

/// How a domain's verification is waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyPatience {
    /// The first wait before asking SES again; doubled each time…
    pub first_poll_secs: u64,
    /// …up to this.
    pub max_poll_secs: u64,
    /// SES looks for the records for 72 h; so do we.
    pub give_up_after_secs: u64,
}

impl Default for VerifyPatience {
    fn default() -> Self {
        Self {
            first_poll_secs: 60,
            max_poll_secs: 1800,
            give_up_after_secs: 72 * 3600,
        }
    }
}

/// What SES says of the domain now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DomainCheck {
    Verified,
    Pending,
    Failed { reason: String },
}

/// The account's domain settings.
#[derive(Debug, Deserialize)]
struct DomainConfig {
    domain: String,
    #[serde(default)]
    mail_from_domain: Option<String>,
}

pub struct EmailDomainActivities {
    pool: PgPool,
    ses: SesEmail,
    /// Each call to SES is a span of these traces.
    traces: Traces,
}

impl EmailDomainActivities {
    pub fn new(notifications: &NotificationActivities) -> Self {
        let (pool, _, providers) = notifications.parts();
        Self {
            pool: pool.clone(),
            ses: providers.ses.clone(),
            traces: providers.traces.clone(),
        }
    }

    /// One SES call of the domain of `at`, as a client span.
    async fn ses_call<T>(
        &self,
        name: &'static str,
        at: AccountRef,
        call: impl Future<Output = Result<T, Failure>>,
    ) -> Result<T, Failure> {
        self.traces
            .provider_call(name, at.trace_attributes(), Failure::code_only, call)
            .await
    }

    async fn config(&self, at: AccountRef) -> Result<DomainConfig, ActivityError> {
        let account = channel_accounts::get(&self.pool, at.tenant_id, at.channel_account_id)
            .await?
            .ok_or_else(|| {
                anyhow::anyhow!("channel account {} not found", at.channel_account_id)
            })?;
        serde_json::from_value(account.provider_config.0.clone()).map_err(|e| {
            anyhow::anyhow!(
                "channel account {} has no domain: {e}",
                at.channel_account_id
            )
            .into()
        })
    }
}

/// A provider failure as a step: Meta-style refusal or retry.
fn ses_step(failure: crate::providers::Failure) -> Result<Step, ActivityError> {
    match failure.class {
        FailureClass::Retry | FailureClass::Unknown => {
            Err(anyhow::anyhow!("SES {}: {}", failure.code, failure.reason).into())
        }
        FailureClass::Account | FailureClass::Recipient => Ok(Step::Refused {
            reason: format!("SES refused ({}): {}", failure.code, failure.reason),
        }),
    }
}

#[activities]
impl EmailDomainActivities {
    /// Creates the domain identity with Easy DKIM (and the custom MAIL FROM
    /// domain, if asked for) and records the DNS records to publish.
    #[activity(name = "create_domain_identity")]
    pub async fn create_domain_identity(
        self: Arc<Self>,
        _ctx: ActivityContext,
        at: AccountRef,
    ) -> Result<Step, ActivityError> {
        let config = self.config(at).await?;
        let identity = match self
            .ses_call(
                "ses create email identity",
                at,
                self.ses.create_domain_with_dkim(&config.domain),
            )
            .await
        {
            Ok(identity) => identity,
            Err(failure) => return ses_step(failure),
        };
        if let Some(mail_from) = &config.mail_from_domain
            && let Err(failure) = self
                .ses_call(
                    "ses put mail from",
                    at,
                    self.ses.set_mail_from(&config.domain, mail_from),
                )
                .await
        {
            return ses_step(failure);
        }
        let records = dns_records(
            &config.domain,
            &identity,
            config.mail_from_domain.as_deref(),
            &self.ses.region(),
        );
        email_domains::replace_records(&self.pool, at.tenant_id, at.channel_account_id, &records)
            .await?;
        Ok(Step::Done)
    }

    /// Whether SES found the domain's records.
    #[activity(name = "check_domain_identity")]
    pub async fn check_domain_identity(
        self: Arc<Self>,
        _ctx: ActivityContext,
        at: AccountRef,
    ) -> Result<DomainCheck, ActivityError> {
        let config = self.config(at).await?;
        let identity = match self
            .ses_call(
                "ses get email identity",
                at,
                self.ses.domain_identity(&config.domain),
            )
            .await
        {
            Ok(Some(identity)) => identity,
            Ok(None) => {
                return Ok(DomainCheck::Failed {
                    reason: format!("SES has no identity {} any more", config.domain),
                });
            }
            Err(failure) => {
                return match ses_step(failure)? {
                    Step::Refused { reason } => Ok(DomainCheck::Failed { reason }),
                    Step::Done => Ok(DomainCheck::Pending),
                };
            }
        };
        Ok(match identity.verification {
            DomainVerification::Verified => DomainCheck::Verified,
            DomainVerification::Pending => DomainCheck::Pending,
            DomainVerification::Failed => DomainCheck::Failed {
                reason: format!(
                    "SES could not verify {}: the DKIM records are missing or wrong; publish them and re-verify",
                    config.domain
                ),
            },
        })
    }

    /// Creates the tenant's configuration set with its event destination
    /// (sends, deliveries, bounces, complaints, rejects, delays to the SNS
    /// topic) and sends the account through it. Without a topic the account
    /// sends without receipts.
    #[activity(name = "set_up_email_receipts")]
    pub async fn set_up_email_receipts(
        self: Arc<Self>,
        _ctx: ActivityContext,
        connection: DomainConnection,
    ) -> Result<Step, ActivityError> {
        let Some(topic) = &connection.events_topic else {
            return Ok(Step::Done);
        };
        let at = connection.account;
        let name = configuration_set_name(at.tenant_id);
        if let Err(failure) = self
            .ses_call(
                "ses configuration set",
                at,
                self.ses.ensure_configuration_set(&name, Some(topic)),
            )
            .await
        {
            return ses_step(failure);
        }
        email_domains::set_configuration_set(
            &self.pool,
            at.tenant_id,
            at.channel_account_id,
            &name,
        )
        .await?;
        Ok(Step::Done)
    }
}

/// The tenant's configuration set: `busflow-{tenant}` (SES allows 64
/// letters, digits, `-` and `_`).
pub fn configuration_set_name(tenant: TenantId) -> String {
    format!("busflow-{}", tenant.0.simple())
}
