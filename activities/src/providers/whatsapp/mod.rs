//! WhatsApp, through Meta's Cloud API (`meta`): reached by the contact's
//! WhatsApp number, else their phone, else their business-scoped user id;
//! Meta's status webhooks are its receipts, and they carry our message id
//! back in `biz_opaque_callback_data`.

pub mod meta;
pub mod onboarding;

use super::{Accepted, ChannelAdapter, Failure, Providers, SendMessageCommand};
use crate::crypto::KeyRing;
use crate::model::Channel;
use crate::store::channel_accounts::ChannelAccount;
use crate::store::contacts::Identifiers;
use crate::triggers::Urgency;
use futures::future::BoxFuture;
use std::time::Duration;

pub struct WhatsApp;

impl ChannelAdapter for WhatsApp {
    fn channel(&self) -> Channel {
        Channel::WhatsApp
    }

    fn address(&self, ids: &Identifiers) -> Option<String> {
        ids.whatsapp
            .clone()
            .or_else(|| ids.phone.clone())
            .or_else(|| ids.whatsapp_user_id.clone())
    }

    fn receipt_window(&self, urgency: Urgency) -> Option<Duration> {
        Some(match urgency {
            Urgency::Urgent => Duration::from_secs(2 * 60),
            Urgency::Normal => Duration::from_secs(15 * 60),
        })
    }

    /// Meta's default throughput per business number.
    fn default_rate(&self) -> Option<f64> {
        Some(80.0)
    }

    fn correlation(&self) -> Option<&'static str> {
        Some("biz_opaque_callback_data")
    }

    fn send<'a>(
        &'a self,
        providers: &'a Providers,
        keys: &'a KeyRing,
        account: &'a ChannelAccount,
        command: &'a SendMessageCommand,
    ) -> BoxFuture<'a, Result<Accepted, Failure>> {
        Box::pin(async move {
            let config: meta::WhatsAppAccountConfig = super::account_config(account, "WhatsApp")?;
            let opened = crate::secrets::open(keys, account)
                .map_err(|e| super::account_failure("WhatsApp", e.to_string()))?;
            let token = opened.access_token.ok_or_else(|| {
                super::account_failure(
                    "WhatsApp",
                    format!("channel account {} has no access token", account.id),
                )
            })?;
            providers.meta.send(&config, &token, command).await
        })
    }
}
