//! Email, through Amazon SES v2 (`ses`): reached by the contact's address;
//! the events its configuration set publishes are its receipts, and they
//! carry our message id back in the message tag `busflow_message_id`.

pub mod domains;
pub mod ses;

use super::{Accepted, ChannelAdapter, Failure, Providers, SendMessageCommand};
use crate::crypto::KeyRing;
use crate::model::Channel;
use crate::store::channel_accounts::ChannelAccount;
use crate::store::contacts::Identifiers;
use crate::triggers::Urgency;
use futures::future::BoxFuture;
use std::time::Duration;

pub struct Email;

impl ChannelAdapter for Email {
    fn channel(&self) -> Channel {
        Channel::Email
    }

    fn address(&self, ids: &Identifiers) -> Option<String> {
        ids.email.clone()
    }

    fn receipt_window(&self, urgency: Urgency) -> Option<Duration> {
        Some(match urgency {
            Urgency::Urgent => Duration::from_secs(5 * 60),
            Urgency::Normal => Duration::from_secs(60 * 60),
        })
    }

    /// SES's usual production sending rate.
    fn default_rate(&self) -> Option<f64> {
        Some(14.0)
    }

    fn correlation(&self) -> Option<&'static str> {
        Some("the SES message tag busflow_message_id")
    }

    fn send<'a>(
        &'a self,
        providers: &'a Providers,
        _keys: &'a KeyRing,
        account: &'a ChannelAccount,
        command: &'a SendMessageCommand,
    ) -> BoxFuture<'a, Result<Accepted, Failure>> {
        Box::pin(async move {
            let config: ses::EmailAccountConfig = super::account_config(account, "SES")?;
            providers.ses.send(&config, command).await
        })
    }
}
