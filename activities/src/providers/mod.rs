//! The one edge to the providers. Every outbound message becomes a
//! `SendMessageCommand`; one adapter per channel, in a folder of its own and
//! behind one trait ([`ChannelAdapter`]), says how a contact is reached on
//! it, whether it has receipts and how long to wait for them, what a message
//! costs against the rate limit, how our message id travels with the send,
//! and sends: turning the command into its provider's request and
//! classifying every failure as data (`Failure`), so the workflow decides
//! between retry, fall back and fail without knowing any provider. Adding a
//! channel is a folder, a line in [`ADAPTERS`], a `Channel` variant and a
//! row in the `channels` table.

pub mod aws;
pub mod email;
pub mod router;
pub mod sms;
pub mod webchat;
pub mod whatsapp;

pub use router::Providers;

use crate::crypto::KeyRing;
use crate::model::{Channel, MessageId};
use crate::store::channel_accounts::ChannelAccount;
use crate::store::contacts::Identifiers;
use crate::triggers::Urgency;
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Everything particular to one channel.
pub trait ChannelAdapter: Sync {
    fn channel(&self) -> Channel;

    /// Where the contact is reached on this channel, if anywhere.
    fn address(&self, ids: &Identifiers) -> Option<String>;

    /// How long a notification waits for this channel's delivery receipt
    /// before it falls back; `None`: the channel has no receipts, and an
    /// accepted message is as good as it gets.
    fn receipt_window(&self, urgency: Urgency) -> Option<Duration>;

    /// Sends per second of an account that sets none (`None`: unlimited).
    fn default_rate(&self) -> Option<f64>;

    /// What one message costs against the account's rate limit.
    fn rate_cost(&self, _body: &str) -> i32 {
        1
    }

    /// Where the provider's receipts carry our message id back, so a send
    /// whose answer was lost is still matched; `None`: it cannot be.
    fn correlation(&self) -> Option<&'static str>;

    /// Sends one message from `account` with this channel's provider client.
    fn send<'a>(
        &'a self,
        providers: &'a Providers,
        keys: &'a KeyRing,
        account: &'a ChannelAccount,
        command: &'a SendMessageCommand,
    ) -> BoxFuture<'a, Result<Accepted, Failure>>;
}

/// Every channel's adapter: the registration line of each channel.
pub static ADAPTERS: &[&dyn ChannelAdapter] = &[
    &whatsapp::WhatsApp,
    &email::Email,
    &sms::Sms,
    &webchat::Webchat,
];

/// The adapter of `channel`.
pub fn adapter(channel: Channel) -> &'static dyn ChannelAdapter {
    ADAPTERS
        .iter()
        .copied()
        .find(|adapter| adapter.channel() == channel)
        .unwrap_or(&webchat::Webchat)
}

/// An account's `provider_config` as its channel reads it.
fn account_config<T: DeserializeOwned>(
    account: &ChannelAccount,
    provider: &'static str,
) -> Result<T, Failure> {
    serde_json::from_value(account.provider_config.0.clone()).map_err(|e| {
        account_failure(
            provider,
            format!(
                "{} channel account {} is misconfigured: {e}",
                account.channel, account.id
            ),
        )
    })
}

fn account_failure(provider: &'static str, reason: String) -> Failure {
    Failure {
        provider,
        class: FailureClass::Account,
        code: "InvalidAccountConfig".into(),
        reason,
        retry_after: None,
    }
}

/// A provider-neutral instruction to send one message to one recipient.
#[derive(Debug, Clone)]
pub struct SendMessageCommand {
    pub message_id: MessageId,
    pub channel: Channel,
    /// E.164 phone number, email address, or webchat session, per channel.
    pub recipient: String,
    pub subject: Option<String>,
    pub body: String,
    pub body_html: Option<String>,
    /// WhatsApp only: an approved template to send instead of free-form text
    /// (required outside the 24 h customer service window).
    pub whatsapp_template: Option<WhatsAppTemplate>,
}

/// An approved WhatsApp template with its parameters already rendered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WhatsAppTemplate {
    pub name: String,
    /// Meta language code, e.g. `es_MX`, `en_US`.
    pub language: String,
    /// Text parameters of the HEADER component, in order.
    #[serde(default)]
    pub header: Vec<String>,
    /// Text parameters of the BODY component, in order.
    #[serde(default)]
    pub body: Vec<String>,
}

/// What a provider said when it accepted a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub external_message_id: String,
}

/// How a failure must be handled: the three classes of every provider
/// table, and the outcome nobody knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Transient, and definite: the provider refused the request or it never
    /// left. Try again (after `retry_after` when the provider says so).
    Retry,
    /// This recipient cannot be reached on this channel: fall back.
    Recipient,
    /// The tenant's account is broken (credentials, suspension, unverified
    /// sender): fail, flag the account, fall back.
    Account,
    /// The request may have reached the provider and been accepted (a timeout
    /// after it was written, a connection lost before the answer, a 2xx that
    /// cannot be read). Never sent again on this channel: the provider's
    /// receipt, matched through our message id, tells what happened.
    Unknown,
}

/// A classified provider failure. `reason` is safe to store and show: it never
/// carries credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{provider} {code}: {reason}")]
pub struct Failure {
    pub provider: &'static str,
    pub class: FailureClass,
    pub code: String,
    pub reason: String,
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// The provider, its code and the class, without the reason (which may
    /// name what the provider was told): what a trace may show.
    pub fn code_only(&self) -> String {
        format!("{} {} ({:?})", self.provider, self.code, self.class)
    }
}

/// One row of a provider's error table: an error code and its class.
pub type ErrorRule = (&'static str, FailureClass);

/// Looks a code up in a provider's table; unknown codes retry (bounded by the
/// activity's retry policy).
pub fn classify(table: &[ErrorRule], code: &str) -> FailureClass {
    table
        .iter()
        .find(|(known, _)| *known == code)
        .map(|(_, class)| *class)
        .unwrap_or(FailureClass::Retry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_channel_has_exactly_one_adapter() {
        for channel in Channel::ALL {
            let adapters = ADAPTERS.iter().filter(|a| a.channel() == *channel).count();
            assert_eq!(adapters, 1, "{channel}");
        }
        assert_eq!(ADAPTERS.len(), Channel::ALL.len());
    }
}
