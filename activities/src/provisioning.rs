//! The activities that connect a tenant's channel accounts (the steps of
//! `ConnectWhatsAppWorkflow` and the template sync). Each step is safe to
//! run again: it finds what an earlier attempt did and does only the rest.
//!
//! Secrets never cross into Temporal: the signup code, business token, PIN
//! and verify token are sealed in the account's `provider_secrets` and read
//! back by the next step; inputs and outcomes carry ids and reasons only.
//!
//! A step either succeeds (`Step::Done`), fails for good with a reason the
//! operator can act on (`Step::Refused`: the workflow moves the account to
//! ATTENTION), or returns a retryable error (Meta or Postgres away), which
//! Temporal retries.

use crate::crypto::KeyRing;
use crate::lifecycle::StatusActor;
use crate::model::{ChannelAccountId, ChannelAccountStatus, TenantId};
use crate::notification::NotificationActivities;
use crate::providers::whatsapp::meta::{MetaCloud, WhatsAppAccountConfig};
use crate::providers::whatsapp::onboarding::OnboardingError;
use crate::secrets::{self, ProviderSecrets};
use crate::store::channel_accounts::{self, Move};
use crate::store::whatsapp_templates;
use crate::traces::Traces;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

/// Which account a step works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRef {
    pub tenant_id: TenantId,
    pub channel_account_id: ChannelAccountId,
}

impl AccountRef {
    /// What a trace of a call for this account says of it: ids.
    pub fn trace_attributes(self) -> Vec<opentelemetry::KeyValue> {
        vec![
            opentelemetry::KeyValue::new("busflow.tenant_id", self.tenant_id.to_string()),
            opentelemetry::KeyValue::new(
                "busflow.channel_account_id",
                self.channel_account_id.to_string(),
            ),
        ]
    }
}

/// Which account, and which signup (its id: the first 16 hex digits of
/// its code's SHA-256) a connection exchanges; `None` re-verifies with the
/// token the account holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectRequest {
    pub account: AccountRef,
    pub signup: Option<String>,
}

/// A signup code's SHA-256, hex: what `whatsapp_signups` keys it by.
pub fn code_sha256(code: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, code.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The id of a signup: the first 16 hex digits of its code's SHA-256.
pub fn signup_id(code: &str) -> String {
    code_sha256(code)[..16].to_owned()
}

/// How a step went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    Done,
    /// It cannot succeed as things are; `reason` says what to do.
    Refused {
        reason: String,
    },
}

/// What a template sync found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TemplateSync {
    Synced { approved: u32, total: u32 },
    Refused { reason: String },
}

/// Where a provisioning ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settle {
    pub account: AccountRef,
    /// ACTIVE, or ATTENTION with `reason`.
    pub to: ChannelAccountStatus,
    pub reason: Option<String>,
}

pub struct ProvisioningActivities {
    pool: PgPool,
    keys: KeyRing,
    meta: MetaCloud,
    /// This service's public URL, where Meta posts the tenant's webhooks.
    public_url: Option<String>,
    /// Each call to Meta is a span of these traces.
    traces: Traces,
}

impl ProvisioningActivities {
    /// The provisioning steps, with the notification activities' pool, key
    /// ring and providers.
    pub fn new(notifications: &NotificationActivities) -> Self {
        let (pool, keys, providers) = notifications.parts();
        Self {
            pool: pool.clone(),
            keys: keys.clone(),
            meta: providers.meta.clone(),
            public_url: providers.sandbox_webhook_base.clone(),
            traces: providers.traces.clone(),
        }
    }

    /// One Graph API call of the connection of `at`, as a client span.
    async fn graph_call<T>(
        &self,
        name: &'static str,
        at: AccountRef,
        call: impl Future<Output = Result<T, OnboardingError>>,
    ) -> Result<T, OnboardingError> {
        self.traces
            .provider_call(
                name,
                at.trace_attributes(),
                OnboardingError::code_only,
                call,
            )
            .await
    }

    async fn account(
        &self,
        at: AccountRef,
    ) -> Result<channel_accounts::ChannelAccount, ActivityError> {
        channel_accounts::get(&self.pool, at.tenant_id, at.channel_account_id)
            .await?
            .ok_or_else(|| {
                crate::notification::permanent(
                    "ChannelAccountNotFound",
                    format!("channel account {} not found", at.channel_account_id),
                )
            })
    }

    async fn secrets(&self, at: AccountRef) -> Result<ProviderSecrets, ActivityError> {
        let account = self.account(at).await?;
        secrets::open(&self.keys, &account).map_err(|e| ActivityError::from(anyhow::Error::from(e)))
    }

    /// Edits the account's sealed secrets; retried here a few times, so a
    /// token Meta handed over once is not lost to a short Postgres hiccup.
    async fn seal(
        &self,
        at: AccountRef,
        change: impl Fn(&mut ProviderSecrets) + Clone,
    ) -> Result<(), ActivityError> {
        let mut delay = Duration::from_millis(250);
        let mut attempts = 0;
        loop {
            attempts += 1;
            match secrets::modify(
                &self.pool,
                &self.keys,
                at.tenant_id,
                at.channel_account_id,
                change.clone(),
            )
            .await
            {
                Ok(_) => return Ok(()),
                Err(e) if attempts >= 8 => return Err(anyhow::Error::from(e).into()),
                Err(e) => {
                    tracing::warn!(channel_account.id = %at.channel_account_id, "sealing secrets failed, retrying: {e}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn whatsapp_config(
        account: &channel_accounts::ChannelAccount,
    ) -> Result<WhatsAppAccountConfig, Step> {
        serde_json::from_value::<WhatsAppAccountConfig>(account.provider_config.0.clone())
            .ok()
            .filter(|c| c.waba_id.is_some())
            .ok_or_else(|| Step::Refused {
                reason: "the account has no phone_number_id and waba_id".into(),
            })
    }
}

/// An onboarding error the workflow sees: a reason to stop, or an error
/// Temporal retries.
fn onboarding_step(error: OnboardingError) -> Result<Step, ActivityError> {
    if error.retryable {
        Err(anyhow::anyhow!("{error}").into())
    } else {
        Ok(Step::Refused {
            reason: error.to_string(),
        })
    }
}

/// `n` random characters from `[A-Za-z0-9]` (URL-safe, as Meta's verify
/// token must be) or digits only.
pub fn random_text(n: usize, digits_only: bool) -> String {
    use ring::rand::{SecureRandom, SystemRandom};
    const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let alphabet: &[u8] = if digits_only {
        b"0123456789"
    } else {
        ALPHANUMERIC
    };
    let mut bytes = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source");
    bytes
        .iter()
        .map(|b| alphabet[usize::from(*b) % alphabet.len()] as char)
        .collect()
}

#[activities]
impl ProvisioningActivities {
    /// Moves the account to VERIFYING (from PENDING, ACTIVE or ATTENTION).
    #[activity(name = "begin_verification")]
    pub async fn begin_verification(
        self: Arc<Self>,
        _ctx: ActivityContext,
        at: AccountRef,
    ) -> Result<Step, ActivityError> {
        let moved = channel_accounts::move_to(
            &self.pool,
            at.tenant_id,
            at.channel_account_id,
            ChannelAccountStatus::Verifying,
            None,
            &StatusActor::Provisioning,
        )
        .await?;
        Ok(match moved {
            Move::Moved { .. } | Move::AlreadyThere => Step::Done,
            Move::Refused { current } => Step::Refused {
                reason: format!("the account is {current}; connect it again first"),
            },
            Move::Missing => Step::Refused {
                reason: "the account no longer exists".into(),
            },
        })
    }

    /// Exchanges the sealed signup code for the business token and seals the
    /// token (with the platform app's secret, which signs the webhooks) in
    /// its place. Done already when the code is gone and the token is there;
    /// refused when a newer signup replaced this one.
    #[activity(name = "exchange_signup_code")]
    pub async fn exchange_signup_code(
        self: Arc<Self>,
        _ctx: ActivityContext,
        connection: ConnectRequest,
    ) -> Result<Step, ActivityError> {
        let at = connection.account;
        let secrets = self.secrets(at).await?;
        let code = match (&connection.signup, secrets.signup_code.clone()) {
            (Some(ours), Some(code)) if signup_id(&code) == *ours => code,
            (Some(_), Some(_)) => {
                return Ok(Step::Refused {
                    reason: "a newer signup of this number replaced this one".into(),
                });
            }
            (_, None) | (None, Some(_)) => {
                return Ok(match secrets.access_token {
                    Some(_) => Step::Done,
                    None => Step::Refused {
                        reason: "no signup code to exchange; run Embedded Signup again".into(),
                    },
                });
            }
        };
        let token = match self
            .graph_call(
                "graph exchange signup code",
                at,
                self.meta.exchange_signup_code(&code),
            )
            .await
        {
            Ok(token) => token,
            Err(e) => return onboarding_step(e),
        };
        let app_secret = self.meta.app().map(|a| a.app_secret.clone());
        self.seal(at, move |s| {
            s.access_token = Some(token.clone());
            s.signup_code = None;
            if app_secret.is_some() {
                s.app_secret = app_secret.clone();
            }
        })
        .await?;
        Ok(Step::Done)
    }

    /// Registers the number for the Cloud API with its PIN (chosen here and
    /// sealed first, so every attempt uses the same one).
    #[activity(name = "register_phone_number")]
    pub async fn register_phone_number(
        self: Arc<Self>,
        _ctx: ActivityContext,
        at: AccountRef,
    ) -> Result<Step, ActivityError> {
        let account = self.account(at).await?;
        let config = match Self::whatsapp_config(&account) {
            Ok(config) => config,
            Err(refused) => return Ok(refused),
        };
        let mut secrets = self.secrets(at).await?;
        if secrets.registration_pin.is_none() {
            let pin = random_text(6, true);
            self.seal(at, move |s| {
                s.registration_pin.get_or_insert_with(|| pin.clone());
            })
            .await?;
            secrets = self.secrets(at).await?;
        }
        let (Some(token), Some(pin)) = (&secrets.access_token, &secrets.registration_pin) else {
            return Ok(Step::Refused {
                reason: "the account has no business token".into(),
            });
        };
        match self
            .graph_call(
                "graph register phone number",
                at,
                self.meta
                    .register_phone_number(token, &config.phone_number_id, pin),
            )
            .await
        {
            Ok(()) => Ok(Step::Done),
            Err(e) => onboarding_step(e),
        }
    }

    /// Subscribes the platform app to the account's WABA with the tenant's
    /// webhook URL and a verify token (generated and sealed first: Meta
    /// checks the URL while the call runs), sealing the platform app's
    /// current secret too (a re-verification after the app secret was
    /// reset makes the webhooks verify again).
    #[activity(name = "subscribe_webhooks")]
    pub async fn subscribe_webhooks(
        self: Arc<Self>,
        _ctx: ActivityContext,
        at: AccountRef,
    ) -> Result<Step, ActivityError> {
        let Some(public_url) = &self.public_url else {
            return Ok(Step::Refused {
                reason: "BUSFLOW_PUBLIC_URL is not set, so Meta has nowhere to send this tenant's webhooks".into(),
            });
        };
        let account = self.account(at).await?;
        let config = match Self::whatsapp_config(&account) {
            Ok(config) => config,
            Err(refused) => return Ok(refused),
        };
        let mut secrets = self.secrets(at).await?;
        // Meta signs the number's webhooks with the platform app's secret:
        // a connection or re-verification seals the current one.
        let app_secret = self.meta.app().map(|a| a.app_secret.clone());
        let stale_app_secret = app_secret.is_some() && secrets.app_secret != app_secret;
        if secrets.verify_token.is_none() || stale_app_secret {
            let token = random_text(32, false);
            self.seal(at, move |s| {
                s.verify_token.get_or_insert_with(|| token.clone());
                if app_secret.is_some() {
                    s.app_secret = app_secret.clone();
                }
            })
            .await?;
            secrets = self.secrets(at).await?;
        }
        let (Some(token), Some(verify_token)) = (&secrets.access_token, &secrets.verify_token)
        else {
            return Ok(Step::Refused {
                reason: "the account has no business token".into(),
            });
        };
        let callback = format!(
            "{}/webhooks/meta/{}",
            public_url.trim_end_matches('/'),
            at.tenant_id
        );
        let waba_id = config.waba_id.as_deref().unwrap_or_default();
        match self
            .graph_call(
                "graph subscribe app",
                at,
                self.meta
                    .subscribe_app(token, waba_id, &callback, verify_token),
            )
            .await
        {
            Ok(()) => Ok(Step::Done),
            Err(e) => onboarding_step(e),
        }
    }

    /// Reads the WABA's message templates into `whatsapp_message_templates`
    /// (templates Meta no longer lists are removed) and the number's
    /// profile into the account.
    #[activity(name = "sync_whatsapp_templates")]
    pub async fn sync_whatsapp_templates(
        self: Arc<Self>,
        _ctx: ActivityContext,
        at: AccountRef,
    ) -> Result<TemplateSync, ActivityError> {
        let account = self.account(at).await?;
        let config = match Self::whatsapp_config(&account) {
            Ok(config) => config,
            Err(Step::Refused { reason }) => return Ok(TemplateSync::Refused { reason }),
            Err(Step::Done) => unreachable!("whatsapp_config refuses or gives a config"),
        };
        let secrets = self.secrets(at).await?;
        let Some(token) = &secrets.access_token else {
            return Ok(TemplateSync::Refused {
                reason: "the account has no business token".into(),
            });
        };
        let waba_id = config.waba_id.as_deref().unwrap_or_default();
        let templates = match self
            .graph_call(
                "graph message templates",
                at,
                self.meta.message_templates(token, waba_id),
            )
            .await
        {
            Ok(templates) => templates,
            Err(e) => {
                return match onboarding_step(e)? {
                    Step::Refused { reason } => Ok(TemplateSync::Refused { reason }),
                    Step::Done => unreachable!("onboarding_step never turns an error into Done"),
                };
            }
        };
        let profile = match self
            .meta
            .phone_number_profile(token, &config.phone_number_id)
            .await
        {
            Ok(profile) => Some(profile),
            // The profile is a nicety: the templates matter.
            Err(e) => {
                tracing::warn!(channel_account.id = %at.channel_account_id, "{e}");
                None
            }
        };
        let approved = templates.iter().filter(|t| t.status == "APPROVED").count();
        let total = templates.len();
        whatsapp_templates::replace(&self.pool, at.tenant_id, at.channel_account_id, &templates)
            .await?;
        if let Some(profile) = profile {
            channel_accounts::set_profile(
                &self.pool,
                at.tenant_id,
                at.channel_account_id,
                &serde_json::to_value(&profile).unwrap_or_default(),
                profile.verified_name.as_deref(),
            )
            .await?;
        }
        Ok(TemplateSync::Synced {
            approved: u32::try_from(approved).unwrap_or(u32::MAX),
            total: u32::try_from(total).unwrap_or(u32::MAX),
        })
    }

    /// The ACTIVE, live WhatsApp accounts connected through a WABA: the ones
    /// whose templates the sync reads.
    #[activity(name = "connected_whatsapp_accounts")]
    pub async fn connected_whatsapp_accounts(
        self: Arc<Self>,
        _ctx: ActivityContext,
        _input: (),
    ) -> Result<Vec<AccountRef>, ActivityError> {
        let accounts = channel_accounts::connected_whatsapp(&self.pool).await?;
        Ok(accounts
            .into_iter()
            .map(|(tenant_id, channel_account_id)| AccountRef {
                tenant_id,
                channel_account_id,
            })
            .collect())
    }

    /// Ends a provisioning: ACTIVE, or ATTENTION with the reason.
    #[activity(name = "settle_provisioning")]
    pub async fn settle_provisioning(
        self: Arc<Self>,
        _ctx: ActivityContext,
        settle: Settle,
    ) -> Result<Move, ActivityError> {
        Ok(channel_accounts::move_to(
            &self.pool,
            settle.account.tenant_id,
            settle.account.channel_account_id,
            settle.to,
            settle.reason.as_deref(),
            &StatusActor::Provisioning,
        )
        .await?)
    }
}
