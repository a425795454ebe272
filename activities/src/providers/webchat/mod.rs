//! Webchat: nothing leaves the service. Sending makes the message visible to
//! the visitor's widget (it gets the visitor's next sequence number when it
//! turns SENT); the widget's fetch makes it DELIVERED and its acknowledgement
//! READ, through the same receipt path as any provider's. A message no
//! widget fetches within the receipt window falls back like any other.

use super::{Accepted, ChannelAdapter, Failure, Providers, SendMessageCommand};
use crate::crypto::KeyRing;
use crate::model::Channel;
use crate::store::channel_accounts::ChannelAccount;
use crate::store::contacts::Identifiers;
use crate::triggers::Urgency;
use futures::future::BoxFuture;
use std::time::Duration;

pub struct Webchat;

impl Webchat {
    /// The provider id of a webchat message: ours, there being no provider.
    pub fn external_id(message_id: crate::model::MessageId) -> String {
        format!("webchat-{message_id}")
    }
}

impl ChannelAdapter for Webchat {
    fn channel(&self) -> Channel {
        Channel::Webchat
    }

    fn address(&self, ids: &Identifiers) -> Option<String> {
        ids.webchat.clone()
    }

    /// A visitor with the page open fetches within a second; one who left
    /// may come back, but not for long.
    fn receipt_window(&self, urgency: Urgency) -> Option<Duration> {
        Some(match urgency {
            Urgency::Urgent => Duration::from_secs(2 * 60),
            Urgency::Normal => Duration::from_secs(10 * 60),
        })
    }

    fn default_rate(&self) -> Option<f64> {
        None
    }

    fn correlation(&self) -> Option<&'static str> {
        None
    }

    fn send<'a>(
        &'a self,
        _providers: &'a Providers,
        _keys: &'a KeyRing,
        _account: &'a ChannelAccount,
        command: &'a SendMessageCommand,
    ) -> BoxFuture<'a, Result<Accepted, Failure>> {
        Box::pin(async move {
            Ok(Accepted {
                external_message_id: Webchat::external_id(command.message_id),
            })
        })
    }
}
