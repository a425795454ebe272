//! The trigger registry: the one list of Hasura event triggers this service
//! understands, and for the ones that notify someone, who (audience), how
//! urgently, and over which channels by default.

use crate::model::Channel;

/// Trigger names, exactly as configured in Hasura metadata.
pub const PASSENGER_PROFILE_UPSERTED: &str = "passenger_profile_upserted";
pub const BOOKING_CONFIRMED: &str = "booking_confirmed";

/// Who a notification is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Customer,
    Driver,
    Vendor,
}

/// Urgent notifications ignore quiet hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    Normal,
    Urgent,
}

/// A trigger that sends a notification.
#[derive(Debug, Clone, Copy)]
pub struct NotificationTrigger {
    pub name: &'static str,
    pub audience: Audience,
    pub urgency: Urgency,
    pub default_chain: &'static [Channel],
}

pub const NOTIFICATION_TRIGGERS: &[NotificationTrigger] = &[NotificationTrigger {
    name: BOOKING_CONFIRMED,
    audience: Audience::Customer,
    urgency: Urgency::Normal,
    default_chain: &[Channel::Email],
}];

/// Triggers that maintain data (contacts) rather than notify.
pub const DATA_TRIGGERS: &[&str] = &[PASSENGER_PROFILE_UPSERTED];

pub fn notification_trigger(name: &str) -> Option<&'static NotificationTrigger> {
    NOTIFICATION_TRIGGERS.iter().find(|t| t.name == name)
}

/// Every trigger name the service routes, for error messages and the
/// metadata drift check.
pub fn all_trigger_names() -> impl Iterator<Item = &'static str> {
    DATA_TRIGGERS
        .iter()
        .copied()
        .chain(NOTIFICATION_TRIGGERS.iter().map(|t| t.name))
}
