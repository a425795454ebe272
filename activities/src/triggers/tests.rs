use super::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;

fn update<'a>(old: &'a Value, new: &'a Value) -> RowWrite<'a> {
    RowWrite {
        op: WriteOp::Update,
        old: Some(old),
        new: Some(new),
    }
}

fn insert(new: &Value) -> RowWrite<'_> {
    RowWrite {
        op: WriteOp::Insert,
        old: None,
        new: Some(new),
    }
}

/// The triggers of `table` that notify for the write.
fn notifying(table: DomainTable, write: &RowWrite<'_>) -> Vec<Trigger> {
    NOTIFICATION_TRIGGERS
        .iter()
        .filter(|t| t.table == Some(table))
        .filter(|t| t.decide(write) == Decision::Notify)
        .map(|t| t.trigger)
        .collect()
}

fn trip(status: &str, delay: i64, departure: &str) -> Value {
    json!({"id": "t1", "status": status, "delay_minutes": delay, "departure_at": departure,
           "origin": "CDMX", "destination": "Puebla", "driver_id": null})
}

#[test]
fn every_trigger_is_listed_once_and_the_internal_ones_are_not_hasura_triggers() {
    let names: BTreeSet<&str> = Trigger::ALL.iter().map(|t| t.as_str()).collect();
    assert_eq!(names.len(), Trigger::ALL.len(), "duplicate name");
    for t in Trigger::ALL {
        assert_eq!(t.as_str().parse::<Trigger>().ok(), Some(*t));
        assert!(
            t.as_str()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_'),
            "{t}"
        );
    }
    let hasura: BTreeSet<Trigger> = hasura_triggers().collect();
    assert!(!hasura.contains(&Trigger::TripReminder));
    assert!(!hasura.contains(&Trigger::AgentReply));
    assert_eq!(
        hasura.len(),
        NOTIFICATION_TRIGGERS.len() + DATA_TRIGGERS.len()
    );
    assert!(NOTIFICATION_TRIGGERS.len() >= 21);
    for t in NOTIFICATION_TRIGGERS {
        assert!(!t.default_chain.is_empty(), "{} has no channels", t.trigger);
        let unique: BTreeSet<_> = t.default_chain.iter().collect();
        assert_eq!(
            unique.len(),
            t.default_chain.len(),
            "{} repeats a channel",
            t.trigger
        );
        assert!(t.table.is_some(), "{} has no table", t.trigger);
        assert_eq!(t.trigger.table(), t.table);
    }
    assert_eq!(
        Trigger::TripReminder.notification().map(|t| t.urgency),
        Some(Urgency::Normal)
    );
}

#[test]
fn one_trip_write_notifies_the_most_specific_news_only() {
    let scheduled = trip("SCHEDULED", 0, "2026-12-01T10:00:00+00:00");
    // Cancelled and moved in one write: the cancellation only.
    let moved_and_cancelled = trip("CANCELLED", 0, "2026-12-01T12:00:00+00:00");
    assert_eq!(
        notifying(T::Trips, &update(&scheduled, &moved_and_cancelled)),
        [Trigger::TripCancelled]
    );
    // Delayed with a new departure: the delay, not a reschedule.
    let delayed_later = trip("DELAYED", 30, "2026-12-01T10:30:00+00:00");
    assert_eq!(
        notifying(T::Trips, &update(&scheduled, &delayed_later)),
        [Trigger::TripDelayed]
    );
    // A plain reschedule.
    let later = trip("SCHEDULED", 0, "2026-12-01T11:00:00+00:00");
    assert_eq!(
        notifying(T::Trips, &update(&scheduled, &later)),
        [Trigger::TripRescheduled]
    );
    // Boarding, then completed.
    let boarding = trip("BOARDING", 0, "2026-12-01T10:00:00+00:00");
    assert_eq!(
        notifying(T::Trips, &update(&scheduled, &boarding)),
        [Trigger::TripBoarding]
    );
    let completed = trip("COMPLETED", 0, "2026-12-01T10:00:00+00:00");
    let departed = trip("DEPARTED", 0, "2026-12-01T10:00:00+00:00");
    assert!(notifying(T::Trips, &update(&boarding, &departed)).is_empty());
    assert_eq!(
        notifying(T::Trips, &update(&departed, &completed)),
        [Trigger::TripCompleted]
    );
    // A departure change on a cancelled trip is no news.
    let cancelled_moved = trip("CANCELLED", 0, "2026-12-02T10:00:00+00:00");
    assert!(notifying(T::Trips, &update(&moved_and_cancelled, &cancelled_moved)).is_empty());
}

#[test]
fn a_delay_is_news_when_it_starts_or_grows_and_not_when_an_unrelated_column_changes() {
    let delayed = trip("DELAYED", 20, "2026-12-01T10:00:00+00:00");
    let more = trip("DELAYED", 45, "2026-12-01T10:00:00+00:00");
    let less = trip("DELAYED", 10, "2026-12-01T10:00:00+00:00");
    assert_eq!(
        notifying(T::Trips, &update(&delayed, &more)),
        [Trigger::TripDelayed]
    );
    assert!(notifying(T::Trips, &update(&more, &less)).is_empty());
    let mut renamed = delayed.clone();
    renamed["route_name"] = json!("Express");
    assert!(notifying(T::Trips, &update(&delayed, &renamed)).is_empty());
    assert!(notifying(T::Trips, &update(&delayed, &delayed)).is_empty());
}

#[test]
fn a_payment_notifies_once_on_the_transition_that_matters() {
    let pending = json!({"id": "p1", "status": "PENDING", "passenger_profile_id": "x"});
    let failed = json!({"id": "p1", "status": "FAILED", "passenger_profile_id": "x"});
    let paid = json!({"id": "p1", "status": "SUCCEEDED", "passenger_profile_id": "x"});
    let refunded = json!({"id": "p1", "status": "REFUNDED", "passenger_profile_id": "x"});
    assert!(notifying(T::Payments, &insert(&pending)).is_empty());
    assert_eq!(
        notifying(T::Payments, &update(&pending, &failed)),
        [Trigger::PaymentFailed]
    );
    assert_eq!(
        notifying(T::Payments, &update(&pending, &paid)),
        [Trigger::PaymentReceived]
    );
    assert!(notifying(T::Payments, &update(&paid, &refunded)).is_empty());
    assert!(notifying(T::Payments, &update(&paid, &paid)).is_empty());
    assert_eq!(
        notifying(T::Payments, &insert(&paid)),
        [Trigger::PaymentReceived]
    );
}

#[test]
fn a_booking_write_notifies_its_passenger_once() {
    let pending = json!({"id": "b1", "status": "PENDING", "trip_id": "a", "seat": null});
    let confirmed = json!({"id": "b1", "status": "CONFIRMED", "trip_id": "a", "seat": "14B"});
    let moved = json!({"id": "b1", "status": "CONFIRMED", "trip_id": "b", "seat": "3A"});
    let cancelled_and_moved =
        json!({"id": "b1", "status": "CANCELLED", "trip_id": "c", "seat": null});
    // Confirmed with a seat in one write: the confirmation only.
    assert_eq!(
        notifying(T::Bookings, &update(&pending, &confirmed)),
        [Trigger::BookingConfirmed]
    );
    assert_eq!(
        notifying(T::Bookings, &insert(&confirmed)),
        [Trigger::BookingConfirmed]
    );
    assert_eq!(
        notifying(T::Bookings, &update(&confirmed, &moved)),
        [Trigger::BookingChanged]
    );
    assert_eq!(
        notifying(T::Bookings, &update(&moved, &cancelled_and_moved)),
        [Trigger::BookingCancelled]
    );
    // A seat change on a pending booking is not news.
    let mut pending_seat = pending.clone();
    pending_seat["seat"] = json!("9C");
    assert!(notifying(T::Bookings, &update(&pending, &pending_seat)).is_empty());
}

#[test]
fn an_incident_reaches_the_passengers_and_the_driver_each_with_their_own_trigger() {
    let incident = json!({"id": "i1", "trip_id": "t1", "severity": "HIGH", "summary": "Llanta"});
    assert_eq!(
        notifying(T::Incidents, &insert(&incident)),
        [Trigger::IncidentCreated, Trigger::DriverIncidentReported]
    );
}

#[test]
fn a_superseded_trigger_says_which_one_won() {
    let scheduled = trip("SCHEDULED", 0, "2026-12-01T10:00:00+00:00");
    let delayed_later = trip("DELAYED", 30, "2026-12-01T10:30:00+00:00");
    let rescheduled = Trigger::TripRescheduled.notification().expect("registered");
    match rescheduled.decide(&update(&scheduled, &delayed_later)) {
        Decision::Ignore(reason) => {
            assert!(reason.contains("superseded by trip_delayed"), "{reason}")
        }
        Decision::Notify => panic!("the delay wins"),
    }
}

#[test]
fn delays_and_cancellations_are_urgent_and_reach_everyone_on_the_trip() {
    for t in [Trigger::TripDelayed, Trigger::TripCancelled] {
        let n = t.notification().expect("registered");
        assert_eq!(n.urgency, Urgency::Urgent);
        assert_eq!(n.recipient, RecipientRule::TripPassengers { driver: true });
    }
    assert_eq!(
        Trigger::IncidentCreated.notification().map(|t| t.recipient),
        Some(RecipientRule::TripPassengers { driver: false })
    );
    assert_eq!(
        Trigger::BookingConfirmed.notification().map(|t| t.urgency),
        Some(Urgency::Normal)
    );
}

#[test]
fn sms_counts_as_done_once_sent() {
    use crate::providers::adapter;
    assert_eq!(adapter(Channel::Sms).receipt_window(Urgency::Urgent), None);
    assert!(
        adapter(Channel::WhatsApp)
            .receipt_window(Urgency::Normal)
            .is_some()
    );
}
