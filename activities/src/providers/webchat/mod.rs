//! Webchat: the widget reads its messages from Postgres, so a message is
//! delivered once it is stored; nothing leaves the service.

use super::{Accepted, ChannelAdapter, Failure, Providers, SendMessageCommand};
use crate::crypto::KeyRing;
use crate::model::{Channel, MessageStatus};
use crate::store::channel_accounts::ChannelAccount;
use crate::store::contacts::Identifiers;
use crate::triggers::Urgency;
use futures::future::BoxFuture;
use std::time::Duration;

pub struct Webchat;

impl ChannelAdapter for Webchat {
    fn channel(&self) -> Channel {
        Channel::Webchat
    }

    fn address(&self, ids: &Identifiers) -> Option<String> {
        ids.webchat.clone()
    }

    fn receipt_window(&self, _urgency: Urgency) -> Option<Duration> {
        None
    }

    fn default_rate(&self) -> Option<f64> {
        None
    }

    fn correlation(&self) -> Option<&'static str> {
        None
    }

    fn delivered_once_accepted(&self) -> Option<MessageStatus> {
        Some(MessageStatus::Delivered)
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
                external_message_id: format!("webchat-{}", command.message_id),
            })
        })
    }
}
