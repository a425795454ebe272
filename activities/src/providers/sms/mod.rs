//! SMS, through Amazon SNS (`sns`): reached by the contact's phone, else
//! their WhatsApp number. SNS has no per-message callback, so an SMS is done
//! once SNS accepted it, and a send whose answer was lost cannot be matched
//! to anything afterwards: it moves on to the next channel at once.

pub mod sns;

use super::{Accepted, ChannelAdapter, Failure, Providers, SendMessageCommand};
use crate::crypto::KeyRing;
use crate::model::Channel;
use crate::store::channel_accounts::ChannelAccount;
use crate::store::contacts::Identifiers;
use crate::triggers::Urgency;
use futures::future::BoxFuture;
use std::time::Duration;

pub struct Sms;

impl ChannelAdapter for Sms {
    fn channel(&self) -> Channel {
        Channel::Sms
    }

    fn address(&self, ids: &Identifiers) -> Option<String> {
        ids.phone.clone().or_else(|| ids.whatsapp.clone())
    }

    fn receipt_window(&self, _urgency: Urgency) -> Option<Duration> {
        None
    }

    /// Message parts per second: a conservative rate for a new number.
    fn default_rate(&self) -> Option<f64> {
        Some(20.0)
    }

    /// SNS splits a long text into parts, and each part counts.
    fn rate_cost(&self, body: &str) -> i32 {
        i32::try_from(sns::sms_parts(body)).unwrap_or(i32::MAX)
    }

    fn correlation(&self) -> Option<&'static str> {
        None
    }

    fn send<'a>(
        &'a self,
        providers: &'a Providers,
        _keys: &'a KeyRing,
        account: &'a ChannelAccount,
        command: &'a SendMessageCommand,
    ) -> BoxFuture<'a, Result<Accepted, Failure>> {
        Box::pin(async move {
            let config: sns::SmsAccountConfig = super::account_config(account, "SNS")?;
            providers.sms.send(&config, command).await
        })
    }
}
