//! Which channels a notification tries, in which order, and how long each
//! waits for a delivery receipt.
//!
//! The chain starts from the tenant's override for the trigger, else the
//! registry default; then drops every channel the contact cannot be reached
//! on (no address, opted out) or the tenant cannot send on (no ACTIVE
//! account). What was dropped, and why, travels with the plan, so an empty
//! chain is recorded as "not sent: reason".

use crate::model::Channel;
use crate::notification::recipient_address;
use crate::store::channel_accounts::ActiveChannel;
use crate::store::contacts::Contact;
use crate::triggers::NotificationTrigger;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A tenant's override for one trigger (`tenant_settings.trigger_overrides[trigger]`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TriggerOverride {
    #[serde(default)]
    pub chain: Option<Vec<Channel>>,
    /// Seconds to wait for a delivery receipt, per channel.
    #[serde(default)]
    pub timeouts: BTreeMap<Channel, u64>,
}

/// One channel of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStep {
    pub channel: Channel,
    /// `None`: done once the provider accepted the message (no receipts).
    pub delivery_timeout_secs: Option<u64>,
}

/// The channels to try, and the ones left out with the reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationPlan {
    pub steps: Vec<ChannelStep>,
    pub skipped: Vec<String>,
    /// Quiet hours: a non-urgent notification waits until this moment (Unix
    /// milliseconds) before its first send.
    #[serde(default)]
    pub hold_until_ms: Option<i64>,
}

impl NotificationPlan {
    /// "not sent: …" for an empty plan.
    pub fn not_sent_reason(&self) -> String {
        if self.skipped.is_empty() {
            "not sent: the channel chain is empty".to_owned()
        } else {
            format!("not sent: {}", self.skipped.join("; "))
        }
    }
}

/// Plans the chain for one recipient.
pub fn plan(
    trigger: &NotificationTrigger,
    requested: Option<&[Channel]>,
    tenant_override: Option<&TriggerOverride>,
    contact: &Contact,
    active_channels: &[ActiveChannel],
) -> NotificationPlan {
    let chain: Vec<Channel> = requested
        .map(<[Channel]>::to_vec)
        .or_else(|| tenant_override.and_then(|o| o.chain.clone()))
        .unwrap_or_else(|| trigger.default_chain.to_vec());
    let mut result = NotificationPlan::default();
    for channel in chain {
        if result.steps.iter().any(|s| s.channel == channel) {
            continue;
        }
        if contact.has_opted_out(channel) {
            result.skipped.push(format!("{channel}: contact opted out"));
        } else if recipient_address(contact, channel).is_none() {
            result.skipped.push(format!(
                "{channel}: contact has no {} address",
                channel.as_str().to_lowercase()
            ));
        } else if let Some(account) = active_channels.iter().find(|a| a.channel == channel) {
            let timeout = account
                .receipts
                .then(|| {
                    tenant_override
                        .and_then(|o| o.timeouts.get(&channel).copied())
                        .or_else(|| {
                            crate::providers::adapter(channel)
                                .receipt_window(trigger.urgency)
                                .map(|d| d.as_secs())
                        })
                })
                .flatten();
            result.steps.push(ChannelStep {
                channel,
                delivery_timeout_secs: timeout,
            });
        } else {
            result
                .skipped
                .push(format!("{channel}: tenant has no ACTIVE channel account"));
        }
    }
    // A single requested channel (an agent reply) has nothing to fall back to:
    // waiting for its receipt would only turn a slow receipt into a failure.
    if requested.is_some()
        && let [only] = result.steps.as_mut_slice()
    {
        only.delivery_timeout_secs = None;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContactId, ContactKind, TenantId};
    use crate::store::contacts::Identifiers;
    use crate::triggers::Trigger;
    use uuid::Uuid;

    fn contact(email: bool, phone: bool, opted_out: &[&str]) -> Contact {
        Contact {
            id: ContactId(Uuid::nil()),
            tenant_id: TenantId(Uuid::nil()),
            kind: ContactKind::Customer,
            display_name: "Ana".into(),
            identifiers: sqlx::types::Json(Identifiers {
                email: email.then(|| "ana@example.com".into()),
                phone: phone.then(|| "+525512345678".into()),
                whatsapp: None,
                whatsapp_user_id: None,
                webchat: None,
            }),
            passenger_profile_id: None,
            locale: None,
            time_zone: None,
            opted_out_channels: opted_out.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    fn booking() -> &'static NotificationTrigger {
        Trigger::BookingConfirmed
            .notification()
            .expect("registered")
    }

    fn with_receipts(channels: &[Channel]) -> Vec<ActiveChannel> {
        channels
            .iter()
            .map(|&channel| ActiveChannel {
                channel,
                receipts: channel != Channel::Sms,
            })
            .collect()
    }

    #[test]
    fn the_default_chain_is_filtered_by_address_opt_out_and_active_accounts() {
        let all = with_receipts(&[Channel::WhatsApp, Channel::Email, Channel::Sms]);
        let plan = plan(booking(), None, None, &contact(true, true, &["SMS"]), &all);
        let channels: Vec<Channel> = plan.steps.iter().map(|s| s.channel).collect();
        // WhatsApp falls back to the phone number; SMS is opted out.
        assert_eq!(channels, [Channel::WhatsApp, Channel::Email]);
        assert_eq!(plan.skipped, ["SMS: contact opted out"]);

        let email_only = super::plan(
            booking(),
            None,
            None,
            &contact(true, true, &[]),
            &with_receipts(&[Channel::Email]),
        );
        assert_eq!(email_only.steps.len(), 1);
        assert_eq!(email_only.skipped.len(), 2);
    }

    #[test]
    fn a_tenant_override_sets_chain_and_timeouts() {
        let o = TriggerOverride {
            chain: Some(vec![Channel::Sms, Channel::Email]),
            timeouts: BTreeMap::from([(Channel::Email, 30)]),
        };
        let all = with_receipts(&[Channel::WhatsApp, Channel::Email, Channel::Sms]);
        let plan = plan(booking(), None, Some(&o), &contact(true, true, &[]), &all);
        assert_eq!(
            plan.steps,
            [
                ChannelStep {
                    channel: Channel::Sms,
                    delivery_timeout_secs: None
                },
                ChannelStep {
                    channel: Channel::Email,
                    delivery_timeout_secs: Some(30)
                },
            ]
        );
    }

    #[test]
    fn an_account_without_receipts_is_done_once_sent() {
        let no_events = [ActiveChannel {
            channel: Channel::Email,
            receipts: false,
        }];
        let plan = plan(
            booking(),
            None,
            None,
            &contact(true, false, &[]),
            &no_events,
        );
        assert_eq!(
            plan.steps,
            [ChannelStep {
                channel: Channel::Email,
                delivery_timeout_secs: None
            }]
        );
    }

    #[test]
    fn nobody_reachable_is_a_reasoned_empty_plan() {
        let plan = plan(
            booking(),
            None,
            None,
            &contact(false, false, &[]),
            &with_receipts(&[Channel::Email]),
        );
        assert!(plan.steps.is_empty());
        let reason = plan.not_sent_reason();
        assert!(
            reason.starts_with("not sent: WHATSAPP: contact has no"),
            "{reason}"
        );
    }
}
