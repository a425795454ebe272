//! Which SNS topics each SNS endpoint takes deliveries from. A topic is the
//! only thing that ties a signed SNS message to an AWS account of ours: any
//! account can create a topic and subscribe our endpoint to it, and SNS
//! signs its messages just the same. So every feed has its own list, a
//! delivery from a topic outside its feed's list is refused before anything
//! is read or confirmed, and outside `busflow-comms dev` an empty list
//! refuses to start.

use std::fmt;

/// What an SNS subscription brings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnsFeed {
    /// SES event publishing (`/webhooks/ses`).
    SesEvents,
    /// SES receipt rules: inbound email (`/webhooks/sns`).
    InboundEmail,
    /// Two-way SMS (`/webhooks/sns`).
    InboundSms,
}

impl SnsFeed {
    /// The setting that lists this feed's topics.
    pub fn setting(self) -> &'static str {
        match self {
            SnsFeed::SesEvents => "BUSFLOW_SNS_SES_EVENT_TOPIC_ARNS",
            SnsFeed::InboundEmail => "BUSFLOW_SNS_INBOUND_EMAIL_TOPIC_ARNS",
            SnsFeed::InboundSms => "BUSFLOW_SNS_INBOUND_SMS_TOPIC_ARNS",
        }
    }
}

impl fmt::Display for SnsFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SnsFeed::SesEvents => "SES events",
            SnsFeed::InboundEmail => "inbound email",
            SnsFeed::InboundSms => "inbound SMS",
        })
    }
}

/// The topics of every feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnsTopics {
    /// Any topic: the local dev stack only, where moto has no real accounts.
    AnyForDev,
    Only {
        ses_events: Vec<String>,
        inbound_email: Vec<String>,
        inbound_sms: Vec<String>,
    },
}

/// A feed's topic list that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnsTopicsError {
    #[error(
        "{0} is empty: list the SNS topic ARNs of your AWS accounts that publish to it (comma-separated), or `none` to turn the feed off"
    )]
    Empty(&'static str),
    #[error("{setting}: '{value}' is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)")]
    NotATopicArn {
        setting: &'static str,
        value: String,
    },
}

impl SnsTopics {
    /// Every feed from its setting's values; `["none"]` turns a feed off.
    pub fn only(
        ses_events: Vec<String>,
        inbound_email: Vec<String>,
        inbound_sms: Vec<String>,
    ) -> Result<Self, SnsTopicsError> {
        Ok(Self::Only {
            ses_events: checked(SnsFeed::SesEvents, ses_events)?,
            inbound_email: checked(SnsFeed::InboundEmail, inbound_email)?,
            inbound_sms: checked(SnsFeed::InboundSms, inbound_sms)?,
        })
    }

    /// The same topics for every feed (tests).
    pub fn same_for_every_feed(topics: Vec<String>) -> Self {
        Self::Only {
            ses_events: topics.clone(),
            inbound_email: topics.clone(),
            inbound_sms: topics,
        }
    }

    /// The topic a new sending domain's configuration set publishes its
    /// events to: the first SES events topic (none on the dev stack).
    pub fn ses_events_topic(&self) -> Option<&str> {
        match self {
            SnsTopics::AnyForDev => None,
            SnsTopics::Only { ses_events, .. } => ses_events.first().map(String::as_str),
        }
    }

    pub fn allows(&self, feed: SnsFeed, topic_arn: &str) -> bool {
        match self {
            SnsTopics::AnyForDev => true,
            SnsTopics::Only {
                ses_events,
                inbound_email,
                inbound_sms,
            } => match feed {
                SnsFeed::SesEvents => ses_events,
                SnsFeed::InboundEmail => inbound_email,
                SnsFeed::InboundSms => inbound_sms,
            }
            .iter()
            .any(|t| t == topic_arn),
        }
    }
}

fn checked(feed: SnsFeed, values: Vec<String>) -> Result<Vec<String>, SnsTopicsError> {
    let values: Vec<String> = values
        .into_iter()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect();
    match values.as_slice() {
        [] => Err(SnsTopicsError::Empty(feed.setting())),
        [only] if only == "none" => Ok(Vec::new()),
        _ => {
            for value in &values {
                let parts: Vec<&str> = value.split(':').collect();
                let well_formed = parts.len() == 6
                    && parts[0] == "arn"
                    && parts[2] == "sns"
                    && parts[4].len() == 12
                    && parts[4].bytes().all(|b| b.is_ascii_digit())
                    && !parts[5].is_empty();
                if !well_formed {
                    return Err(SnsTopicsError::NotATopicArn {
                        setting: feed.setting(),
                        value: value.clone(),
                    });
                }
            }
            Ok(values)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SES: &str = "arn:aws:sns:us-east-1:123456789012:ses-events";
    const SMS: &str = "arn:aws:sns:us-east-1:123456789012:inbound-sms";

    #[test]
    fn each_feed_accepts_only_its_own_topics() {
        let topics =
            SnsTopics::only(vec![SES.into()], vec!["none".into()], vec![SMS.into()]).expect("ok");

        assert!(topics.allows(SnsFeed::SesEvents, SES));
        assert!(
            !topics.allows(SnsFeed::SesEvents, SMS),
            "another feed's topic"
        );
        assert!(
            !topics.allows(SnsFeed::InboundEmail, SES),
            "a feed turned off"
        );
        assert!(topics.allows(SnsFeed::InboundSms, SMS));
    }

    #[test]
    fn an_empty_or_malformed_list_is_refused_naming_its_setting() {
        assert_eq!(
            SnsTopics::only(vec![], vec!["none".into()], vec!["none".into()]),
            Err(SnsTopicsError::Empty("BUSFLOW_SNS_SES_EVENT_TOPIC_ARNS"))
        );
        assert_eq!(
            SnsTopics::only(
                vec![SES.into()],
                vec!["ses-inbound".into()],
                vec!["none".into()]
            ),
            Err(SnsTopicsError::NotATopicArn {
                setting: "BUSFLOW_SNS_INBOUND_EMAIL_TOPIC_ARNS",
                value: "ses-inbound".into()
            })
        );
    }
}
