//! The one edge to the providers. Every outbound message becomes a
//! `SendMessageCommand`; an adapter per provider turns it into that provider's
//! request and classifies every failure as data (`Failure`), so the workflow
//! decides between retry, fall back and fail without knowing any provider.

pub mod aws;
pub mod meta;
pub mod router;
pub mod ses;
pub mod sms;

use crate::model::{Channel, MessageId};
use std::time::Duration;

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
