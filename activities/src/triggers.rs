//! The trigger registry: the one list of Hasura event triggers this service
//! understands. For every trigger that notifies someone it says who
//! (audience), how urgently (urgent ones ignore quiet hours), which row of the
//! event the template sees, how the recipient is found, and the default
//! channel chain. Tenants override chain and delivery timeouts per trigger in
//! `tenant_settings.trigger_overrides`.

use crate::model::Channel;
use std::time::Duration;

/// Triggers that maintain data rather than notify.
pub const PASSENGER_PROFILE_UPSERTED: &str = "passenger_profile_upserted";

/// A trip was created or changed: its departure and status feed the reminder.
pub const TRIP_UPSERTED: &str = "trip_upserted";

pub const BOOKING_CONFIRMED: &str = "booking_confirmed";
pub const BOOKING_CANCELLED: &str = "booking_cancelled";

/// Who a notification is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Customer,
    Driver,
    Vendor,
}

/// Urgent notifications go out at once, even in quiet hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    Normal,
    Urgent,
}

/// How the recipient of a trigger's row is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientRule {
    /// The row's `passenger_profile_id` names one passenger.
    PassengerProfile,
    /// The row's `driver_id` names one driver.
    Driver,
    /// The row's `vendor_id` names one vendor.
    Vendor,
    /// Everyone booked on the row's trip (fan-out).
    TripPassengers,
    /// The contact of a conversation (agent replies).
    Conversation,
}

/// A trigger that sends a notification.
#[derive(Debug, Clone, Copy)]
pub struct NotificationTrigger {
    pub name: &'static str,
    /// The key under which the event row is given to templates (`booking`, `trip`…).
    pub row_key: &'static str,
    pub audience: Audience,
    pub recipient: RecipientRule,
    pub urgency: Urgency,
    pub default_chain: &'static [Channel],
    /// Notify only when the row's `status` becomes this (an UPDATE that
    /// leaves it unchanged, or a row in another status, is acknowledged and
    /// ignored).
    pub when_status: Option<&'static str>,
}

use Audience::*;
use Channel::{Email, Sms, WhatsApp};
use RecipientRule as R;
use Urgency::*;

const fn trigger(
    name: &'static str,
    row_key: &'static str,
    audience: Audience,
    recipient: RecipientRule,
    urgency: Urgency,
    default_chain: &'static [Channel],
) -> NotificationTrigger {
    NotificationTrigger {
        name,
        row_key,
        audience,
        recipient,
        urgency,
        default_chain,
        when_status: None,
    }
}

const fn on_status(trigger: NotificationTrigger, status: &'static str) -> NotificationTrigger {
    NotificationTrigger {
        when_status: Some(status),
        ..trigger
    }
}

/// Every notification trigger, by audience.
pub const NOTIFICATION_TRIGGERS: &[NotificationTrigger] = &[
    // Passengers: bookings, payments, invoices.
    on_status(
        trigger(
            BOOKING_CONFIRMED,
            "booking",
            Customer,
            R::PassengerProfile,
            Normal,
            &[WhatsApp, Email, Sms],
        ),
        "CONFIRMED",
    ),
    on_status(
        trigger(
            BOOKING_CANCELLED,
            "booking",
            Customer,
            R::PassengerProfile,
            Normal,
            &[WhatsApp, Email, Sms],
        ),
        "CANCELLED",
    ),
    trigger(
        "booking_changed",
        "booking",
        Customer,
        R::PassengerProfile,
        Normal,
        &[WhatsApp, Email, Sms],
    ),
    trigger(
        "payment_received",
        "payment",
        Customer,
        R::PassengerProfile,
        Normal,
        &[Email, WhatsApp],
    ),
    on_status(
        trigger(
            "payment_failed",
            "payment",
            Customer,
            R::PassengerProfile,
            Normal,
            &[Email, WhatsApp, Sms],
        ),
        "FAILED",
    ),
    trigger(
        "refund_issued",
        "refund",
        Customer,
        R::PassengerProfile,
        Normal,
        &[Email, WhatsApp],
    ),
    trigger(
        "invoice_issued",
        "invoice",
        Customer,
        R::PassengerProfile,
        Normal,
        &[Email],
    ),
    on_status(
        trigger(
            "invoice_overdue",
            "invoice",
            Customer,
            R::PassengerProfile,
            Normal,
            &[Email, WhatsApp],
        ),
        "OVERDUE",
    ),
    // Passengers: trips (one event, every passenger of the trip).
    trigger(
        "trip_delayed",
        "trip",
        Customer,
        R::TripPassengers,
        Urgent,
        &[WhatsApp, Sms, Email],
    ),
    on_status(
        trigger(
            "trip_cancelled",
            "trip",
            Customer,
            R::TripPassengers,
            Urgent,
            &[WhatsApp, Sms, Email],
        ),
        "CANCELLED",
    ),
    trigger(
        "trip_rescheduled",
        "trip",
        Customer,
        R::TripPassengers,
        Urgent,
        &[WhatsApp, Sms, Email],
    ),
    trigger(
        "trip_boarding",
        "trip",
        Customer,
        R::TripPassengers,
        Urgent,
        &[WhatsApp, Sms],
    ),
    trigger(
        "trip_completed",
        "trip",
        Customer,
        R::TripPassengers,
        Normal,
        &[Email, WhatsApp],
    ),
    trigger(
        "incident_created",
        "incident",
        Customer,
        R::TripPassengers,
        Urgent,
        &[WhatsApp, Sms, Email],
    ),
    // Drivers.
    trigger(
        "driver_assigned",
        "assignment",
        Driver,
        R::Driver,
        Normal,
        &[WhatsApp, Sms],
    ),
    trigger(
        "driver_unassigned",
        "assignment",
        Driver,
        R::Driver,
        Urgent,
        &[WhatsApp, Sms],
    ),
    trigger(
        "driver_shift_scheduled",
        "shift",
        Driver,
        R::Driver,
        Normal,
        &[WhatsApp, Sms, Email],
    ),
    trigger(
        "driver_shift_changed",
        "shift",
        Driver,
        R::Driver,
        Urgent,
        &[WhatsApp, Sms],
    ),
    trigger(
        "driver_incident_reported",
        "incident",
        Driver,
        R::Driver,
        Urgent,
        &[WhatsApp, Sms],
    ),
    // Vendors.
    trigger(
        "vendor_order_placed",
        "vendor_order",
        Vendor,
        R::Vendor,
        Normal,
        &[Email, WhatsApp],
    ),
    trigger(
        "vendor_order_cancelled",
        "vendor_order",
        Vendor,
        R::Vendor,
        Normal,
        &[Email, WhatsApp],
    ),
];

/// An agent's reply in a conversation: not a Hasura trigger (it comes from the
/// `sendAgentMessage` action), but planned and sent like one.
pub const AGENT_REPLY: NotificationTrigger = trigger(
    "agent_reply",
    "reply",
    Customer,
    R::Conversation,
    Urgent,
    &[],
);

/// The pre-departure reminder: not a Hasura trigger (the trip's
/// `TripReminderWorkflow` fires it when its timer runs out), but planned,
/// templated and sent like one. Not urgent: quiet hours hold it.
pub const TRIP_REMINDER: NotificationTrigger = trigger(
    "trip_reminder",
    "trip",
    Customer,
    R::TripPassengers,
    Normal,
    &[WhatsApp, Sms, Email],
);

/// Triggers that maintain data (contacts, trips) rather than notify.
pub const DATA_TRIGGERS: &[&str] = &[PASSENGER_PROFILE_UPSERTED, TRIP_UPSERTED];

pub fn notification_trigger(name: &str) -> Option<&'static NotificationTrigger> {
    NOTIFICATION_TRIGGERS.iter().find(|t| t.name == name)
}

/// A registry trigger, the agent reply, or the trip reminder.
pub fn planned_trigger(name: &str) -> Option<&'static NotificationTrigger> {
    notification_trigger(name)
        .or((name == AGENT_REPLY.name).then_some(&AGENT_REPLY))
        .or((name == TRIP_REMINDER.name).then_some(&TRIP_REMINDER))
}

/// Every trigger name the service routes, for error messages and the
/// metadata drift check.
pub fn all_trigger_names() -> impl Iterator<Item = &'static str> {
    DATA_TRIGGERS
        .iter()
        .copied()
        .chain(NOTIFICATION_TRIGGERS.iter().map(|t| t.name))
}

/// How long the workflow waits for a delivery receipt on a channel before it
/// falls back to the next one; `None` means the channel has no receipts and a
/// message counts as done once the provider accepted it (SMS), or once stored
/// (webchat).
pub fn default_delivery_timeout(channel: Channel, urgency: Urgency) -> Option<Duration> {
    match (channel, urgency) {
        (Channel::WhatsApp, Urgency::Urgent) => Some(Duration::from_secs(2 * 60)),
        (Channel::WhatsApp, Urgency::Normal) => Some(Duration::from_secs(15 * 60)),
        (Channel::Email, Urgency::Urgent) => Some(Duration::from_secs(5 * 60)),
        (Channel::Email, Urgency::Normal) => Some(Duration::from_secs(60 * 60)),
        (Channel::Sms, _) | (Channel::Webchat, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_trigger_is_listed_once_with_a_non_empty_chain() {
        let names: BTreeSet<&str> = all_trigger_names().collect();
        assert_eq!(
            names.len(),
            NOTIFICATION_TRIGGERS.len() + DATA_TRIGGERS.len(),
            "duplicate name"
        );
        assert!(NOTIFICATION_TRIGGERS.len() >= 21);
        assert!(
            notification_trigger(TRIP_REMINDER.name).is_none(),
            "the reminder is fired by its workflow, not by Hasura"
        );
        assert_eq!(
            planned_trigger(TRIP_REMINDER.name).map(|t| t.urgency),
            Some(Urgency::Normal)
        );
        for t in NOTIFICATION_TRIGGERS {
            assert!(!t.default_chain.is_empty(), "{} has no channels", t.name);
            let unique: BTreeSet<_> = t.default_chain.iter().collect();
            assert_eq!(
                unique.len(),
                t.default_chain.len(),
                "{} repeats a channel",
                t.name
            );
            assert!(
                t.name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{}",
                t.name
            );
        }
    }

    #[test]
    fn delays_and_cancellations_are_urgent_and_reach_every_passenger() {
        for name in ["trip_delayed", "trip_cancelled", "incident_created"] {
            let t = notification_trigger(name).expect(name);
            assert_eq!(t.urgency, Urgency::Urgent);
            assert_eq!(t.recipient, RecipientRule::TripPassengers);
        }
        assert_eq!(
            notification_trigger(BOOKING_CONFIRMED).map(|t| t.urgency),
            Some(Urgency::Normal)
        );
    }

    #[test]
    fn sms_counts_as_done_once_sent() {
        assert_eq!(
            default_delivery_timeout(Channel::Sms, Urgency::Urgent),
            None
        );
        assert!(default_delivery_timeout(Channel::WhatsApp, Urgency::Normal).is_some());
    }
}
