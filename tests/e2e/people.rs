//! People as their contexts write them: drivers and vendors are contacts
//! too and hear their own news; people who share an address are still two
//! people; a profile with one unusable field still reaches its person.
//! Played through the Hasura harness, counted at the provider.

use crate::support::story::{Story, triggers};
use chrono::{Duration as Span, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

#[tokio::test]
async fn every_driver_and_vendor_trigger_reaches_its_person_and_an_incident_reaches_passengers_and_driver_once()
 {
    let mut story = Story::new().await;
    let pedro = story.driver("Pedro Ruiz").await;
    let vendor = json!({
        "id": Uuid::new_v4(), "tenant_id": story.tenant(), "name": "Agua Pura SA",
        "email": story.app.recipient("ventas"), "phone": null, "whatsapp_phone": null, "locale": "es-MX",
    });
    story.insert("vendors", &vendor).await;
    let ana = story.passenger("Ana López", "es-MX").await;
    let trip = story.trip(Some(&pedro)).await;
    story.book(&ana, &trip, "BF-ANA").await;

    let mut assignment = json!({"id": Uuid::new_v4(), "tenant_id": story.tenant(), "driver_id": pedro["id"],
                                "trip_id": trip["id"], "status": "ASSIGNED"});
    story.insert("driver_assignments", &assignment).await;
    story
        .update("driver_assignments", &mut assignment, |a| {
            a["status"] = json!("UNASSIGNED")
        })
        .await;
    let starts = "2026-12-02T12:00:00+00:00";
    let mut shift = json!({"id": Uuid::new_v4(), "tenant_id": story.tenant(), "driver_id": pedro["id"],
                           "starts_at": starts, "ends_at": "2026-12-02T20:00:00+00:00",
                           "depot": "Terminal Norte", "status": "SCHEDULED"});
    story.insert("driver_shifts", &shift).await;
    story
        .update("driver_shifts", &mut shift, |s| {
            s["starts_at"] = json!("2026-12-02T13:00:00+00:00")
        })
        .await;
    let incident = json!({"id": Uuid::new_v4(), "tenant_id": story.tenant(), "trip_id": trip["id"],
                          "severity": "HIGH", "summary": "Llanta ponchada\nen la autopista"});
    let reported = story.insert("incidents", &incident).await;
    assert_eq!(
        reported.triggers(),
        ["driver_incident_reported", "incident_created"]
    );
    let mut order = json!({"id": Uuid::new_v4(), "tenant_id": story.tenant(), "vendor_id": vendor["id"],
                           "reference": "OC-2026-117", "description": "40 cajas de agua",
                           "needed_by": (Utc::now() + Span::days(2)).to_rfc3339(), "status": "PLACED"});
    story.insert("vendor_orders", &order).await;
    story
        .update("vendor_orders", &mut order, |o| {
            o["status"] = json!("CANCELLED")
        })
        .await;
    story.settle().await;

    let driver = story.received_by(&pedro).await;
    assert_eq!(
        triggers(&driver),
        [
            "driver_assigned",
            "driver_incident_reported",
            "driver_shift_changed",
            "driver_shift_scheduled",
            "driver_unassigned"
        ],
        "{driver:#?}"
    );
    let scheduled = driver
        .iter()
        .find(|r| r.trigger == "driver_shift_scheduled")
        .expect("shift");
    assert!(
        scheduled.text.contains("06:00"),
        "the shift in the tenant's clock: {}",
        scheduled.text
    );
    let passenger = story.received_by(&ana).await;
    assert_eq!(
        triggers(&passenger),
        ["booking_confirmed", "incident_created"],
        "{passenger:#?}"
    );
    let to_vendor = story.received_by(&vendor).await;
    assert_eq!(
        triggers(&to_vendor),
        ["vendor_order_cancelled", "vendor_order_placed"],
        "{to_vendor:#?}"
    );
    let kinds: Vec<(String, i64)> = sqlx::query_as(
        "select kind, count(*) from contacts where tenant_id = $1 group by kind order by kind",
    )
    .bind(story.app.tenant_id)
    .fetch_all(&story.app.pool)
    .await
    .expect("contacts");
    assert_eq!(
        kinds,
        [
            ("CUSTOMER".to_owned(), 1),
            ("DRIVER".to_owned(), 1),
            ("VENDOR".to_owned(), 1)
        ]
    );
}

#[tokio::test]
async fn two_passengers_who_share_an_email_are_two_contacts_and_each_hears_about_their_own_booking()
{
    let mut story = Story::new().await;
    let family = story.app.recipient("familia.garcia");
    let profile = |name: &str| {
        json!({"id": Uuid::new_v4(), "tenant_id": story.tenant(), "full_name": name, "email": family,
               "phone": null, "whatsapp_phone": null, "locale": "es-MX"})
    };
    let laura = profile("Laura García");
    let mateo = profile("Mateo García");
    for person in [&laura, &mateo] {
        let upserted = story.insert("passenger_profiles", person).await;
        assert_eq!(upserted.deliveries[0].body["outcome"], "contact_upserted");
    }
    let trip = story.trip(None).await;
    story.book(&laura, &trip, "BF-LAURA").await;
    story.book(&mateo, &trip, "BF-MATEO").await;
    story.settle().await;

    let contacts: i64 = story
        .app
        .count(&format!(
            "select count(*) from contacts where tenant_id = '{}' and identifiers ->> 'email' = '{family}'",
            story.app.tenant_id
        ))
        .await;
    assert_eq!(contacts, 2, "one contact per profile");
    let inbox = story.received().await.remove(&family).unwrap_or_default();
    assert_eq!(
        triggers(&inbox),
        ["booking_confirmed", "booking_confirmed"],
        "{inbox:#?}"
    );
    assert!(
        inbox
            .iter()
            .any(|r| r.text.contains("BF-LAURA") && r.text.contains("Laura"))
    );
    assert!(
        inbox
            .iter()
            .any(|r| r.text.contains("BF-MATEO") && r.text.contains("Mateo"))
    );
}

#[tokio::test]
async fn a_profile_with_a_malformed_phone_is_still_reached_by_email_and_the_problem_is_recorded() {
    let mut story = Story::new().await;
    let ana = json!({"id": Uuid::new_v4(), "tenant_id": story.tenant(), "full_name": "Ana López",
                     "email": story.app.recipient("ana"), "phone": "12", "whatsapp_phone": "call me",
                     "locale": "es-MX"});
    let upserted = story.insert("passenger_profiles", &ana).await;
    let answer = &upserted.deliveries[0].body;
    assert_eq!(answer["outcome"], "contact_upserted", "{answer}");
    assert!(
        answer["problems"]["phone"]
            .as_str()
            .is_some_and(|p| p.contains("phone number")),
        "{answer}"
    );
    assert!(answer["problems"]["whatsapp_phone"].is_string(), "{answer}");
    let (identifiers, problems): (Value, Value) = sqlx::query_as(
        "select identifiers, identifier_problems from contacts where tenant_id = $1 and passenger_profile_id = $2",
    )
    .bind(story.app.tenant_id)
    .bind(Uuid::parse_str(ana["id"].as_str().unwrap_or_default()).expect("id"))
    .fetch_one(&story.app.pool)
    .await
    .expect("contact");
    assert_eq!(identifiers, json!({"email": ana["email"]}));
    assert!(
        problems["phone"].is_string() && !problems.to_string().contains("\"12\""),
        "the reason, never the value: {problems}"
    );

    let trip = story.trip(None).await;
    story.book(&ana, &trip, "BF-ANA").await;
    story.settle().await;
    assert_eq!(
        triggers(&story.received_by(&ana).await),
        ["booking_confirmed"]
    );
    assert_eq!(
        story
            .app
            .metric(
                "busflow_contact_identifier_problems",
                &[("kind", "CUSTOMER"), ("field", "phone")]
            )
            .await,
        Some(1.0)
    );
}
