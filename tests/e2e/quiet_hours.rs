//! Quiet hours: non-urgent notifications wait for the recipient's local send
//! window; urgent ones go at once.

use crate::support::app::{TestApp, trip_booking_event, trip_event};
use busflow_activities::model::ContactId;
use chrono::{DateTime, Utc};
use std::time::Duration;
use uuid::Uuid;

async fn sent_at(app: &TestApp, contact: ContactId, trigger: &str) -> Option<DateTime<Utc>> {
    sqlx::query_scalar(
        "select sent_at from messages
          where tenant_id = $1 and contact_id = $2 and trigger_event = $3 and sent_at is not null",
    )
    .bind(app.tenant_id)
    .bind(contact.0)
    .bind(trigger)
    .fetch_optional(&app.pool)
    .await
    .expect("message")
}

#[tokio::test]
async fn a_confirmation_waits_for_the_passengers_morning_and_a_delay_does_not() {
    let app = TestApp::spawn().await;
    app.add_sandbox_sms_account(None, None).await;
    let (ana_profile, luis_profile) = (Uuid::new_v4(), Uuid::new_v4());
    let ana = app
        .upsert_passenger_with_phone(ana_profile, "55 7777 0001")
        .await;
    let luis = app
        .upsert_passenger_with_phone(luis_profile, "55 7777 0002")
        .await;
    // Ana lives in Tokyo; the tenant (and Luis) in Mexico City. Quiet hours
    // are "from an hour ago until 5 s from now" on Ana's clock, which is
    // 15 h ahead: Luis's clock is outside them.
    sqlx::query("update contacts set time_zone = 'Asia/Tokyo' where tenant_id = $1 and id = $2")
        .bind(app.tenant_id)
        .bind(ana.0)
        .execute(&app.pool)
        .await
        .expect("Ana's zone");
    let opens: DateTime<Utc> = sqlx::query_scalar(
        "update tenant_settings
            set quiet_hours_start = ((now() - interval '1 hour') at time zone 'Asia/Tokyo')::time,
                quiet_hours_end = ((now() + interval '5 seconds') at time zone 'Asia/Tokyo')::time
          where tenant_id = $1
         returning now() + interval '5 seconds'",
    )
    .bind(app.tenant_id)
    .fetch_one(&app.pool)
    .await
    .expect("quiet hours");

    let trip = Uuid::new_v4();
    let departure = Utc::now() + chrono::Duration::hours(3);
    let event = trip_event(
        "trip_upserted",
        "q-trip",
        app.tenant_id,
        trip,
        departure,
        "SCHEDULED",
        Utc::now(),
    );
    assert_eq!(app.post_event(&event).await.status(), 200);
    for (profile, id) in [(ana_profile, "q-ana"), (luis_profile, "q-luis")] {
        let booking = trip_booking_event(
            id,
            app.tenant_id,
            Uuid::new_v4(),
            trip,
            profile,
            true,
            Utc::now(),
        );
        assert_eq!(app.post_event(&booking).await.status(), 200);
    }
    let delay = trip_event(
        "trip_delayed",
        "q-delay",
        app.tenant_id,
        trip,
        departure + chrono::Duration::minutes(30),
        "DELAYED",
        Utc::now(),
    );
    assert_eq!(app.post_event(&delay).await.status(), 200);

    let urgent = app
        .eventually("the delay reaches Ana", Duration::from_secs(20), || async {
            sent_at(&app, ana, "trip_delayed").await
        })
        .await;
    assert!(urgent < opens, "urgent went out during quiet hours");
    app.eventually("Luis's confirmation", Duration::from_secs(20), || async {
        sent_at(&app, luis, "booking_confirmed").await
    })
    .await;
    let held = app
        .eventually("Ana's confirmation", Duration::from_secs(30), || async {
            sent_at(&app, ana, "booking_confirmed").await
        })
        .await;
    assert!(
        held >= opens,
        "Ana's confirmation went out at {held}, before her quiet hours ended at {opens}"
    );
}
