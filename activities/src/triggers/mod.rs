//! The trigger registry: the one list of triggers this service understands.
//!
//! A Hasura event trigger is named after its table and what happened there
//! (`booking_confirmed`); its name is a [`Trigger`], parsed once at the edge.
//! Data triggers keep our copy of other contexts' rows in step (contacts,
//! trips). Notification triggers say which table they watch, the exact
//! condition on the write (`event.data.old` → `new`) under which they notify,
//! who is notified, how urgently (urgent ones ignore quiet hours), and the
//! default channel chain. Tenants override chain and delivery timeouts per
//! trigger in `tenant_settings.trigger_overrides`.
//!
//! One write can fire several triggers (Hasura sends one event per trigger,
//! each with the same rows). Among the notification triggers of one table
//! that reach the same people, the first in [`NOTIFICATION_TRIGGERS`] whose
//! condition holds is the write's notification; the others step aside. So a
//! trip that is cancelled and moved in one write sends only the cancellation.

mod conditions;

pub use conditions::{Condition, RowWrite, WriteOp};

use crate::model::{Channel, ContactKind, text_enum};

text_enum!(
    /// Every trigger: the Hasura event triggers (named exactly as in
    /// `hasura/metadata`), and the two that are planned like them but start
    /// inside this service (an agent's reply, a trip's reminder).
    Trigger {
        PassengerProfileUpserted => "passenger_profile_upserted",
        DriverUpserted => "driver_upserted",
        VendorUpserted => "vendor_upserted",
        TripUpserted => "trip_upserted",
        BookingConfirmed => "booking_confirmed",
        BookingCancelled => "booking_cancelled",
        BookingChanged => "booking_changed",
        PaymentReceived => "payment_received",
        PaymentFailed => "payment_failed",
        RefundIssued => "refund_issued",
        InvoiceIssued => "invoice_issued",
        InvoiceOverdue => "invoice_overdue",
        TripDelayed => "trip_delayed",
        TripCancelled => "trip_cancelled",
        TripRescheduled => "trip_rescheduled",
        TripBoarding => "trip_boarding",
        TripCompleted => "trip_completed",
        IncidentCreated => "incident_created",
        DriverAssigned => "driver_assigned",
        DriverUnassigned => "driver_unassigned",
        DriverShiftScheduled => "driver_shift_scheduled",
        DriverShiftChanged => "driver_shift_changed",
        DriverIncidentReported => "driver_incident_reported",
        VendorOrderPlaced => "vendor_order_placed",
        VendorOrderCancelled => "vendor_order_cancelled",
        TripReminder => "trip_reminder",
        AgentReply => "agent_reply",
    }
);

text_enum!(
    /// The tables of other contexts whose writes reach this service.
    DomainTable {
        PassengerProfiles => "passenger_profiles",
        Drivers => "drivers",
        Vendors => "vendors",
        Trips => "trips",
        Bookings => "bookings",
        Payments => "payments",
        Refunds => "refunds",
        Invoices => "invoices",
        Incidents => "incidents",
        DriverAssignments => "driver_assignments",
        DriverShifts => "driver_shifts",
        VendorOrders => "vendor_orders",
    }
);

/// Status values of the domain rows (DESIGN.md), as the conditions use them.
pub mod status {
    pub const CONFIRMED: &str = "CONFIRMED";
    pub const CANCELLED: &str = "CANCELLED";
    pub const SUCCEEDED: &str = "SUCCEEDED";
    pub const FAILED: &str = "FAILED";
    pub const ISSUED: &str = "ISSUED";
    pub const OVERDUE: &str = "OVERDUE";
    pub const SCHEDULED: &str = "SCHEDULED";
    pub const DELAYED: &str = "DELAYED";
    pub const BOARDING: &str = "BOARDING";
    pub const COMPLETED: &str = "COMPLETED";
    pub const ASSIGNED: &str = "ASSIGNED";
    pub const UNASSIGNED: &str = "UNASSIGNED";
    pub const PLACED: &str = "PLACED";
}

/// Urgent notifications go out at once, even in quiet hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    Normal,
    Urgent,
}

/// Who a notification trigger reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientRule {
    /// The one person the row names: `passenger_profile_id` for customers
    /// (an invoice without one goes to its `contact_email`), `driver_id` for
    /// drivers, `vendor_id` for vendors.
    Person(ContactKind),
    /// Everyone with a confirmed booking on the row's trip and, when
    /// `driver`, the trip's driver (with the driver's own template).
    TripPassengers { driver: bool },
    /// The driver of the row's trip.
    TripDriver,
    /// The contact of a conversation (agent replies).
    Conversation,
}

impl RecipientRule {
    /// The row column that names the person of a `Person` rule.
    pub fn person_column(kind: ContactKind) -> &'static str {
        match kind {
            ContactKind::Customer => "passenger_profile_id",
            ContactKind::Driver => "driver_id",
            ContactKind::Vendor => "vendor_id",
        }
    }
}

/// A trigger that sends a notification.
#[derive(Debug, Clone, Copy)]
pub struct NotificationTrigger {
    pub trigger: Trigger,
    /// The table whose writes fire it; `None` for the internal triggers.
    pub table: Option<DomainTable>,
    /// The key under which the event row is given to templates (`booking`, `trip`…).
    pub row_key: &'static str,
    pub recipient: RecipientRule,
    pub urgency: Urgency,
    pub default_chain: &'static [Channel],
    /// When a write is news for this trigger.
    pub condition: Condition,
}

/// Whether a write notifies through a trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Notify,
    /// Acknowledged, nothing sent; the reason is shown to Hasura and ops.
    Ignore(String),
}

impl NotificationTrigger {
    /// The trigger's name, as Hasura and the templates know it.
    pub fn name(&self) -> &'static str {
        self.trigger.as_str()
    }

    /// Whether templates also see `trip` (the stored trip, or `{}` when it
    /// is not known yet): the trip's own triggers, and rows about a trip.
    pub fn carries_trip(&self) -> bool {
        matches!(self.row_key, "trip" | "booking" | "assignment" | "incident")
    }

    /// Notify when this trigger's condition holds for the write and no more
    /// specific trigger of the same table reaches the same people.
    pub fn decide(&self, write: &RowWrite<'_>) -> Decision {
        if !self.condition.holds(write) {
            return Decision::Ignore(format!(
                "{}: this write is not news ({} does not hold)",
                self.trigger,
                self.condition.describe()
            ));
        }
        let winner = NOTIFICATION_TRIGGERS
            .iter()
            .filter(|t| t.table == self.table && t.recipient == self.recipient)
            .find(|t| t.condition.holds(write));
        match winner {
            Some(winner) if winner.trigger != self.trigger => Decision::Ignore(format!(
                "{}: superseded by {} for this write (each person gets the most specific notification)",
                self.trigger, winner.trigger
            )),
            _ => Decision::Notify,
        }
    }
}

/// What a Hasura event trigger does.
#[derive(Debug, Clone, Copy)]
pub enum Route {
    /// Keeps the contact of a person row (profile, driver, vendor) in step.
    Contact(ContactKind),
    /// Records a trip (departure, status, delay, driver) and tells its reminder.
    Trip,
    /// Notifies the people the write concerns.
    Notify(&'static NotificationTrigger),
}

use Channel::{Email, Sms, WhatsApp};
use Condition::*;
use ContactKind::{Customer, Driver, Vendor};
use DomainTable as T;
use RecipientRule as R;
use Urgency::*;

const fn notify(
    trigger: Trigger,
    table: DomainTable,
    row_key: &'static str,
    recipient: RecipientRule,
    urgency: Urgency,
    default_chain: &'static [Channel],
    condition: Condition,
) -> NotificationTrigger {
    NotificationTrigger {
        trigger,
        table: Some(table),
        row_key,
        recipient,
        urgency,
        default_chain,
        condition,
    }
}

const OPEN_TRIP: &[&str] = &[status::SCHEDULED, status::DELAYED, status::BOARDING];
const TRIP_CHAIN: &[Channel] = &[WhatsApp, Sms, Email];
const BOOKING_CHAIN: &[Channel] = &[WhatsApp, Email, Sms];

/// Every notification trigger of a Hasura table. Within a table, triggers
/// that reach the same people are listed most specific first: that order
/// decides which one a write that fires several of them sends.
pub const NOTIFICATION_TRIGGERS: &[NotificationTrigger] = &[
    // bookings: cancelled > confirmed > changed.
    notify(
        Trigger::BookingCancelled,
        T::Bookings,
        "booking",
        R::Person(Customer),
        Normal,
        BOOKING_CHAIN,
        EntersStatus {
            status: status::CANCELLED,
            on_insert: false,
        },
    ),
    notify(
        Trigger::BookingConfirmed,
        T::Bookings,
        "booking",
        R::Person(Customer),
        Normal,
        BOOKING_CHAIN,
        EntersStatus {
            status: status::CONFIRMED,
            on_insert: true,
        },
    ),
    notify(
        Trigger::BookingChanged,
        T::Bookings,
        "booking",
        R::Person(Customer),
        Normal,
        BOOKING_CHAIN,
        Changed {
            columns: &["trip_id", "seat"],
            status_in: Some(&[status::CONFIRMED]),
        },
    ),
    // payments, refunds, invoices.
    notify(
        Trigger::PaymentReceived,
        T::Payments,
        "payment",
        R::Person(Customer),
        Normal,
        &[Email, WhatsApp],
        EntersStatus {
            status: status::SUCCEEDED,
            on_insert: true,
        },
    ),
    notify(
        Trigger::PaymentFailed,
        T::Payments,
        "payment",
        R::Person(Customer),
        Normal,
        &[Email, WhatsApp, Sms],
        EntersStatus {
            status: status::FAILED,
            on_insert: true,
        },
    ),
    notify(
        Trigger::RefundIssued,
        T::Refunds,
        "refund",
        R::Person(Customer),
        Normal,
        &[Email, WhatsApp],
        EntersStatus {
            status: status::ISSUED,
            on_insert: true,
        },
    ),
    notify(
        Trigger::InvoiceIssued,
        T::Invoices,
        "invoice",
        R::Person(Customer),
        Normal,
        &[Email],
        EntersStatus {
            status: status::ISSUED,
            on_insert: true,
        },
    ),
    notify(
        Trigger::InvoiceOverdue,
        T::Invoices,
        "invoice",
        R::Person(Customer),
        Normal,
        &[Email, WhatsApp],
        EntersStatus {
            status: status::OVERDUE,
            on_insert: false,
        },
    ),
    // trips, to everyone on board: cancelled > delayed > rescheduled > boarding > completed.
    notify(
        Trigger::TripCancelled,
        T::Trips,
        "trip",
        R::TripPassengers { driver: true },
        Urgent,
        TRIP_CHAIN,
        EntersStatus {
            status: status::CANCELLED,
            on_insert: false,
        },
    ),
    notify(
        Trigger::TripDelayed,
        T::Trips,
        "trip",
        R::TripPassengers { driver: true },
        Urgent,
        TRIP_CHAIN,
        DelayGrows,
    ),
    notify(
        Trigger::TripRescheduled,
        T::Trips,
        "trip",
        R::TripPassengers { driver: true },
        Urgent,
        TRIP_CHAIN,
        Changed {
            columns: &["departure_at"],
            status_in: Some(OPEN_TRIP),
        },
    ),
    notify(
        Trigger::TripBoarding,
        T::Trips,
        "trip",
        R::TripPassengers { driver: true },
        Urgent,
        &[WhatsApp, Sms],
        EntersStatus {
            status: status::BOARDING,
            on_insert: false,
        },
    ),
    notify(
        Trigger::TripCompleted,
        T::Trips,
        "trip",
        R::TripPassengers { driver: true },
        Normal,
        &[Email, WhatsApp],
        EntersStatus {
            status: status::COMPLETED,
            on_insert: false,
        },
    ),
    // incidents: the passengers hear `incident_created`, the driver `driver_incident_reported`.
    notify(
        Trigger::IncidentCreated,
        T::Incidents,
        "incident",
        R::TripPassengers { driver: false },
        Urgent,
        TRIP_CHAIN,
        Inserted,
    ),
    notify(
        Trigger::DriverIncidentReported,
        T::Incidents,
        "incident",
        R::TripDriver,
        Urgent,
        &[WhatsApp, Sms],
        Inserted,
    ),
    // drivers.
    notify(
        Trigger::DriverUnassigned,
        T::DriverAssignments,
        "assignment",
        R::Person(Driver),
        Urgent,
        &[WhatsApp, Sms],
        EntersStatus {
            status: status::UNASSIGNED,
            on_insert: false,
        },
    ),
    notify(
        Trigger::DriverAssigned,
        T::DriverAssignments,
        "assignment",
        R::Person(Driver),
        Normal,
        &[WhatsApp, Sms],
        EntersStatus {
            status: status::ASSIGNED,
            on_insert: true,
        },
    ),
    notify(
        Trigger::DriverShiftScheduled,
        T::DriverShifts,
        "shift",
        R::Person(Driver),
        Normal,
        &[WhatsApp, Sms, Email],
        Inserted,
    ),
    notify(
        Trigger::DriverShiftChanged,
        T::DriverShifts,
        "shift",
        R::Person(Driver),
        Urgent,
        &[WhatsApp, Sms],
        Changed {
            columns: &["starts_at", "ends_at", "status"],
            status_in: None,
        },
    ),
    // vendors: cancelled > placed.
    notify(
        Trigger::VendorOrderCancelled,
        T::VendorOrders,
        "vendor_order",
        R::Person(Vendor),
        Normal,
        &[Email, WhatsApp],
        EntersStatus {
            status: status::CANCELLED,
            on_insert: false,
        },
    ),
    notify(
        Trigger::VendorOrderPlaced,
        T::VendorOrders,
        "vendor_order",
        R::Person(Vendor),
        Normal,
        &[Email, WhatsApp],
        EntersStatus {
            status: status::PLACED,
            on_insert: true,
        },
    ),
];

/// An agent's reply in a conversation: not a Hasura trigger (it comes from the
/// `sendAgentMessage` action), but planned and sent like one.
pub const AGENT_REPLY: NotificationTrigger = NotificationTrigger {
    trigger: Trigger::AgentReply,
    table: None,
    row_key: "reply",
    recipient: R::Conversation,
    urgency: Urgent,
    default_chain: &[],
    condition: Inserted,
};

/// The pre-departure reminder: not a Hasura trigger (the trip's
/// `TripReminderWorkflow` fires it when its timer runs out), but planned,
/// templated and sent like one. Not urgent: quiet hours hold it.
pub const TRIP_REMINDER: NotificationTrigger = NotificationTrigger {
    trigger: Trigger::TripReminder,
    table: None,
    row_key: "trip",
    recipient: R::TripPassengers { driver: false },
    urgency: Normal,
    default_chain: TRIP_CHAIN,
    condition: Inserted,
};

/// Triggers that keep data in step rather than notify, with their table.
pub const DATA_TRIGGERS: &[(Trigger, DomainTable, Route)] = &[
    (
        Trigger::PassengerProfileUpserted,
        T::PassengerProfiles,
        Route::Contact(Customer),
    ),
    (Trigger::DriverUpserted, T::Drivers, Route::Contact(Driver)),
    (Trigger::VendorUpserted, T::Vendors, Route::Contact(Vendor)),
    (Trigger::TripUpserted, T::Trips, Route::Trip),
];

impl Trigger {
    /// What this trigger does when Hasura calls it; `None` for the internal
    /// triggers, which Hasura never sends.
    pub fn route(self) -> Option<Route> {
        DATA_TRIGGERS
            .iter()
            .find(|(t, _, _)| *t == self)
            .map(|(_, _, route)| *route)
            .or_else(|| {
                NOTIFICATION_TRIGGERS
                    .iter()
                    .find(|t| t.trigger == self)
                    .map(Route::Notify)
            })
    }

    /// The table whose writes fire this Hasura trigger.
    pub fn table(self) -> Option<DomainTable> {
        DATA_TRIGGERS
            .iter()
            .find(|(t, _, _)| *t == self)
            .map(|(_, table, _)| *table)
            .or_else(|| self.notification().and_then(|t| t.table))
    }

    /// The notification this trigger sends: a registry entry, the agent
    /// reply or the trip reminder.
    pub fn notification(self) -> Option<&'static NotificationTrigger> {
        NOTIFICATION_TRIGGERS
            .iter()
            .find(|t| t.trigger == self)
            .or(match self {
                Trigger::AgentReply => Some(&AGENT_REPLY),
                Trigger::TripReminder => Some(&TRIP_REMINDER),
                _ => None,
            })
    }

    /// The people this trigger's templates are written for: customers, and
    /// drivers too where a trip-wide notification reaches the driver.
    pub fn audiences(self) -> &'static [ContactKind] {
        match self.notification().map(|t| t.recipient) {
            Some(R::Person(kind)) => match kind {
                Customer => &[Customer],
                Driver => &[Driver],
                Vendor => &[Vendor],
            },
            Some(R::TripPassengers { driver: true }) => &[Customer, Driver],
            Some(R::TripPassengers { driver: false }) | Some(R::Conversation) => &[Customer],
            Some(R::TripDriver) => &[Driver],
            None => &[],
        }
    }
}

/// The data trigger that keeps contacts of `kind` in step.
pub fn contact_trigger(kind: ContactKind) -> Option<Trigger> {
    DATA_TRIGGERS
        .iter()
        .find(|(_, _, route)| matches!(route, Route::Contact(k) if *k == kind))
        .map(|(trigger, _, _)| *trigger)
}

/// Every trigger Hasura may send, for error messages and the metadata
/// drift check.
pub fn hasura_triggers() -> impl Iterator<Item = Trigger> {
    Trigger::ALL.iter().copied().filter(|t| t.route().is_some())
}

/// Every trigger that renders a template: the registry, plus the reminder
/// (agent replies are written by a person).
pub fn templated_triggers() -> impl Iterator<Item = &'static NotificationTrigger> {
    NOTIFICATION_TRIGGERS
        .iter()
        .chain(std::iter::once(&TRIP_REMINDER))
}

#[cfg(test)]
mod tests;
