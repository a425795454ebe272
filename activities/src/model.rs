//! Domain vocabulary shared by every crate: ids, channels and statuses.
//!
//! Every value that crosses a process boundary (Postgres, Temporal payloads,
//! HTTP) is a Rust enum or newtype here, never a loose string. Statuses are
//! stored as text with CHECK constraints (see `migrations/`), so the string
//! forms below are the database contract.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub Uuid);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    };
}

id_newtype!(
    /// A bus operator: every row and every workflow belongs to exactly one.
    TenantId
);
id_newtype!(
    /// A person we message: passenger, driver or vendor.
    ContactId
);
id_newtype!(
    /// One message on one channel (an outbound attempt or an inbound message).
    MessageId
);
id_newtype!(
    /// A tenant's account on one provider (a WhatsApp number, an SES identity...).
    ChannelAccountId
);

/// `notify/{tenant}/{source event id}/{contact}`: the key of one
/// notification per event and recipient. A single notification's workflow
/// has this id (`busflow_workflows::names::notification_workflow_id`), and a
/// fan-out chunk records its recipients' messages under it, so neither can
/// notify a person a second time for the same event.
pub fn notification_key(tenant: TenantId, source_event_id: &str, contact: ContactId) -> String {
    format!("notify/{tenant}/{source_event_id}/{contact}")
}

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ::serde::Serialize, ::serde::Deserialize, ::sqlx::Type)]
        #[sqlx(type_name = "text")]
        pub enum $name {
            $(
                $(#[$vdoc])*
                #[serde(rename = $text)]
                #[sqlx(rename = $text)]
                $variant,
            )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored and wire form.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::model::UnknownVariant;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err($crate::model::UnknownVariant {
                        kind: stringify!($name),
                        value: other.to_owned(),
                    }),
                }
            }
        }
    };
}

pub(crate) use text_enum;

/// A string that is not one of an enum's stored forms.
#[derive(Debug, thiserror::Error)]
#[error("unknown {kind} '{value}'")]
pub struct UnknownVariant {
    pub(crate) kind: &'static str,
    pub(crate) value: String,
}

text_enum!(
    /// How a message travels.
    Channel {
        WhatsApp => "WHATSAPP",
        Email => "EMAIL",
        Sms => "SMS",
        Webchat => "WEBCHAT",
    }
);

text_enum!(
    /// Where a message is in its life. Moves only forward:
    /// QUEUED < SENDING < SENT < DELIVERED < READ; FAILED is terminal.
    /// SENDING: a dispatch attempt claimed it and called (or is calling) the
    /// provider; nothing calls the provider for it again.
    MessageStatus {
        Queued => "QUEUED",
        Sending => "SENDING",
        Sent => "SENT",
        Delivered => "DELIVERED",
        Read => "READ",
        Failed => "FAILED",
    }
);

text_enum!(
    /// Which way a message went.
    Direction {
        Inbound => "INBOUND",
        Outbound => "OUTBOUND",
    }
);

text_enum!(
    /// Who a contact is to the operator.
    ContactKind {
        Customer => "CUSTOMER",
        Driver => "DRIVER",
        Vendor => "VENDOR",
    }
);

text_enum!(
    /// A channel account's lifecycle.
    ChannelAccountStatus {
        /// Created; provisioning has not got through its first step.
        Pending => "PENDING",
        /// Provisioning or re-verification is running.
        Verifying => "VERIFYING",
        /// The only status in which the account is planned for a send.
        Active => "ACTIVE",
        /// The provider refused the account itself: sends fall back until it
        /// is fixed and verified again.
        Attention => "ATTENTION",
        /// Taken away by the operator; it owns nothing any more.
        Disconnected => "DISCONNECTED",
    }
);

text_enum!(
    /// Live accounts call the provider; sandbox accounts never leave the process.
    ChannelAccountMode {
        Live => "LIVE",
        Sandbox => "SANDBOX",
    }
);

text_enum!(
    /// The service behind a channel account.
    Provider {
        MetaCloud => "META_CLOUD",
        AwsSes => "AWS_SES",
        AwsSns => "AWS_SNS",
        Webchat => "WEBCHAT",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip_through_from_str() {
        for status in MessageStatus::ALL {
            assert_eq!(status.as_str().parse::<MessageStatus>().ok(), Some(*status));
        }
        assert!(
            "whatsapp".parse::<Channel>().is_err(),
            "stored forms are upper case"
        );
    }

    #[test]
    fn serde_uses_the_stored_form() {
        let json = serde_json::to_string(&Channel::WhatsApp).expect("serializes");
        assert_eq!(json, "\"WHATSAPP\"");
    }
}
