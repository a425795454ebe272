//! Lifecycle stories, played the way Hasura delivers them from the shipped
//! metadata (`support::hasura`): every write fires every event trigger
//! Hasura would fire, each with its own event id and the whole rows. Each
//! story asserts the exact notifications every person received, counted at
//! the provider (moto's recorded emails and SMS), and that each went out.

use crate::support::story::{Received, Story, triggers};
use chrono::{Duration as Span, Utc};
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn a_trip_delayed_delayed_more_and_cancelled_tells_each_person_each_piece_of_news_once() {
    let mut story = Story::new().await;
    let ana = story.passenger("Ana López", "es-MX").await;
    let john = story.passenger("John Smith", "en-US").await;
    let pedro = story.driver("Pedro Ruiz").await;
    let mut trip = story.trip(Some(&pedro)).await;
    story.book(&ana, &trip, "BF-ANA").await;
    story.book(&john, &trip, "BF-JOHN").await;

    // One write that fires six of the trip's triggers: delayed, and its
    // departure moved by the delay (a delay, not also a reschedule).
    let departure: chrono::DateTime<Utc> =
        serde_json::from_value(trip["departure_at"].clone()).expect("departure");
    let delayed = story
        .update("trips", &mut trip, |t| {
            t["status"] = json!("DELAYED");
            t["delay_minutes"] = json!(20);
            t["departure_at"] = json!((departure + Span::minutes(20)).to_rfc3339());
        })
        .await;
    assert_eq!(
        delayed.triggers(),
        [
            "trip_boarding",
            "trip_cancelled",
            "trip_completed",
            "trip_delayed",
            "trip_rescheduled",
            "trip_upserted"
        ]
    );
    // Five more minutes is not news; twenty-five more is.
    story
        .update("trips", &mut trip, |t| t["delay_minutes"] = json!(25))
        .await;
    let more = story
        .update("trips", &mut trip, |t| t["delay_minutes"] = json!(45))
        .await;
    // Hasura redelivers the whole write, and a column nobody listens to changes.
    story.redeliver(&more).await;
    let renamed = story
        .update("trips", &mut trip, |t| {
            t["route_name"] = json!("CDMX - Puebla Express")
        })
        .await;
    assert!(
        renamed.deliveries.is_empty(),
        "no trigger listens to route_name"
    );
    // Cancelled, and moved, in one write.
    story
        .update("trips", &mut trip, |t| {
            t["status"] = json!("CANCELLED");
            t["departure_at"] = json!((Utc::now() + Span::days(4)).to_rfc3339());
        })
        .await;
    story.settle().await;

    for (person, language) in [(&ana, "/es"), (&john, "/en")] {
        let received = story.received_by(person).await;
        assert_eq!(
            triggers(&received),
            [
                "booking_confirmed",
                "trip_cancelled",
                "trip_delayed",
                "trip_delayed"
            ],
            "{received:#?}"
        );
        let delays: Vec<&Received> = received
            .iter()
            .filter(|r| r.trigger == "trip_delayed")
            .collect();
        assert!(
            delays.iter().any(|r| r.text.contains("20"))
                && delays.iter().any(|r| r.text.contains("45")),
            "{delays:#?}"
        );
        assert!(
            received.iter().all(
                |r| r.template_key.contains("/CUSTOMER/") && r.template_key.ends_with(language)
            ),
            "{received:#?}"
        );
    }
    let driver = story.received_by(&pedro).await;
    assert_eq!(
        triggers(&driver),
        ["trip_cancelled", "trip_delayed", "trip_delayed"],
        "{driver:#?}"
    );
    assert!(
        driver.iter().all(|r| r.template_key.contains("/DRIVER/")),
        "the driver's own words: {driver:#?}"
    );
}

#[tokio::test]
async fn a_trip_that_boards_departs_and_completes_tells_boarding_and_completion_once() {
    let mut story = Story::new().await;
    let ana = story.passenger("Ana López", "es-MX").await;
    let pedro = story.driver("Pedro Ruiz").await;
    let mut trip = story.trip(Some(&pedro)).await;
    story.book(&ana, &trip, "BF-ANA").await;
    for status in ["BOARDING", "DEPARTED", "COMPLETED"] {
        story
            .update("trips", &mut trip, |t| t["status"] = json!(status))
            .await;
    }
    story.settle().await;

    let received = story.received_by(&ana).await;
    assert_eq!(
        triggers(&received),
        ["booking_confirmed", "trip_boarding", "trip_completed"],
        "{received:#?}"
    );
    // Boarding is urgent and short: SMS; completion is a thank-you email.
    let channel_of = |trigger: &str| {
        received
            .iter()
            .find(|r| r.trigger == trigger)
            .map(|r| r.channel.clone())
    };
    assert_eq!(channel_of("trip_boarding").as_deref(), Some("SMS"));
    assert_eq!(channel_of("trip_completed").as_deref(), Some("EMAIL"));
    let driver = story.received_by(&pedro).await;
    assert_eq!(
        triggers(&driver),
        ["trip_boarding", "trip_completed"],
        "{driver:#?}"
    );
}

#[tokio::test]
async fn a_failed_payment_says_it_failed_and_a_paid_then_refunded_one_says_received_then_refunded()
{
    let mut story = Story::new().await;
    let ana = story.passenger("Ana López", "es-MX").await;
    let payment = |amount: f64| {
        json!({"id": Uuid::new_v4(), "tenant_id": ana["tenant_id"], "booking_id": Uuid::new_v4(),
               "passenger_profile_id": ana["id"], "amount": amount, "currency": "MXN", "status": "PENDING"})
    };
    let mut failing = payment(450.0);
    story.insert("payments", &failing).await;
    story
        .update("payments", &mut failing, |p| p["status"] = json!("FAILED"))
        .await;

    let mut paid = payment(380.0);
    story.insert("payments", &paid).await;
    story
        .update("payments", &mut paid, |p| p["status"] = json!("SUCCEEDED"))
        .await;
    let mut refund = json!({"id": Uuid::new_v4(), "tenant_id": ana["tenant_id"], "payment_id": paid["id"],
                            "passenger_profile_id": ana["id"], "amount": 380.0, "currency": "MXN", "status": "PENDING"});
    story.insert("refunds", &refund).await;
    story
        .update("refunds", &mut refund, |r| r["status"] = json!("ISSUED"))
        .await;
    story
        .update("payments", &mut paid, |p| p["status"] = json!("REFUNDED"))
        .await;
    story.settle().await;

    let received = story.received_by(&ana).await;
    assert_eq!(
        triggers(&received),
        ["payment_failed", "payment_received", "refund_issued"],
        "{received:#?}"
    );
    let failed = received
        .iter()
        .find(|r| r.trigger == "payment_failed")
        .expect("failed");
    assert!(failed.text.contains("450"), "{}", failed.text);
    let received_text = received
        .iter()
        .find(|r| r.trigger == "payment_received")
        .expect("received");
    assert!(received_text.text.contains("380"), "{}", received_text.text);
}

#[tokio::test]
async fn an_invoice_issued_then_overdue_then_paid_reaches_its_passenger_or_its_contact_email() {
    let mut story = Story::new().await;
    let ana = story.passenger("Ana López", "es-MX").await;
    let mut invoice = json!({"id": Uuid::new_v4(), "tenant_id": ana["tenant_id"], "number": "F-2026-0042",
                             "contact_email": ana["email"], "passenger_profile_id": ana["id"], "amount": 1200.5,
                             "currency": "MXN", "due_date": "2026-12-15", "status": "ISSUED"});
    story.insert("invoices", &invoice).await;
    story
        .update("invoices", &mut invoice, |i| i["status"] = json!("OVERDUE"))
        .await;
    story
        .update("invoices", &mut invoice, |i| i["status"] = json!("PAID"))
        .await;
    // A company's invoice names only an address.
    let company = story.app.recipient("facturas");
    let billed = json!({"id": Uuid::new_v4(), "tenant_id": ana["tenant_id"], "number": "F-2026-0043",
                        "contact_email": company, "passenger_profile_id": null, "amount": 5000,
                        "currency": "MXN", "due_date": null, "status": "ISSUED"});
    story.insert("invoices", &billed).await;
    story.settle().await;

    let received = story.received_by(&ana).await;
    assert_eq!(
        triggers(&received),
        ["invoice_issued", "invoice_overdue"],
        "{received:#?}"
    );
    let to_company = story.received().await.remove(&company).unwrap_or_default();
    assert_eq!(triggers(&to_company), ["invoice_issued"], "{to_company:#?}");
    assert!(
        to_company[0].text.contains("F-2026-0043"),
        "{}",
        to_company[0].text
    );
}

#[tokio::test]
async fn a_booking_moved_to_another_trip_then_cancelled_follows_the_passenger_between_trips() {
    let mut story = Story::new().await;
    let ana = story.passenger("Ana López", "es-MX").await;
    let mut first = story.trip(None).await;
    let mut second = story.trip(None).await;
    let mut booking = story.book(&ana, &first, "BF-MOVE").await;
    story
        .update("bookings", &mut booking, |b| {
            b["trip_id"] = second["id"].clone();
            b["seat"] = json!("3A");
        })
        .await;
    story.settle().await;
    assert_eq!(
        story.reminder(&first).await.passengers,
        0,
        "she left the first trip"
    );
    assert_eq!(
        story.reminder(&second).await.passengers,
        1,
        "and joined the second"
    );

    // The trip she left is delayed: not her news. The one she is on: hers.
    story
        .update("trips", &mut first, |t| {
            t["status"] = json!("DELAYED");
            t["delay_minutes"] = json!(30);
        })
        .await;
    story
        .update("trips", &mut second, |t| {
            t["status"] = json!("DELAYED");
            t["delay_minutes"] = json!(20);
        })
        .await;
    story.settle().await;
    story
        .update("bookings", &mut booking, |b| {
            b["status"] = json!("CANCELLED")
        })
        .await;
    story.settle().await;
    assert_eq!(
        story.reminder(&second).await.passengers,
        0,
        "cancelled: off the trip"
    );
    story
        .update("trips", &mut second, |t| t["delay_minutes"] = json!(60))
        .await;
    story.settle().await;

    let received = story.received_by(&ana).await;
    assert_eq!(
        triggers(&received),
        [
            "booking_cancelled",
            "booking_changed",
            "booking_confirmed",
            "trip_delayed"
        ],
        "{received:#?}"
    );
    let changed = received
        .iter()
        .find(|r| r.trigger == "booking_changed")
        .expect("changed");
    assert!(
        changed.text.contains("3A"),
        "the new seat: {}",
        changed.text
    );
}

#[tokio::test]
async fn a_booking_that_hasura_delivers_before_its_passenger_is_retried_then_redelivered_once_known()
 {
    let mut story = Story::new().await;
    let trip = story.trip(None).await;
    let ana = json!({
        "id": Uuid::new_v4(), "tenant_id": story.tenant(), "full_name": "Ana López",
        "email": story.app.recipient("ana"), "phone": null, "whatsapp_phone": null, "locale": "es-MX",
    });
    let booking = json!({
        "id": Uuid::new_v4(), "tenant_id": story.tenant(), "trip_id": trip["id"],
        "passenger_profile_id": ana["id"], "status": "CONFIRMED", "booking_reference": "BF-EARLY", "seat": "2C",
    });
    // The passenger's own write has not reached us: Hasura retries the
    // booking as the service asks (409, Retry-After), then gives up on it.
    let early = story.hasura.insert("bookings", &booking).await;
    let refused = &early.deliveries[0];
    assert_eq!(
        (refused.trigger.as_str(), refused.status),
        ("booking_confirmed", 409)
    );
    assert_eq!(
        refused.attempts, 121,
        "the first delivery and the metadata's 120 retries"
    );
    assert_eq!(refused.body["extensions"]["code"], "CONTACT_NOT_YET_KNOWN");

    story.insert("passenger_profiles", &ana).await;
    let redelivered = story.hasura.redeliver(&early).await;
    story.keep(redelivered);
    story.settle().await;
    assert_eq!(
        triggers(&story.received_by(&ana).await),
        ["booking_confirmed"]
    );
    assert_eq!(story.reminder(&trip).await.passengers, 1);
}
