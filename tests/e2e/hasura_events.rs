//! What Hasura sees: every refusal is a clear 4xx/503 naming the problem,
//! with nothing written; out-of-order and duplicate deliveries are safe.

use crate::support::{TestApp, TestOptions, booking_event, profile_event};
use busflow_comms::dev::processes::free_port;
use serde_json::{Value, json};
use uuid::Uuid;

async fn error_of(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON error body");
    (
        status,
        body["extensions"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        body["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn a_wrong_or_missing_secret_is_401_and_writes_nothing() {
    let app = TestApp::spawn_with(TestOptions {
        start_worker: false,
        ..TestOptions::default()
    })
    .await;
    let event = profile_event(
        app.tenant_id,
        Uuid::new_v4(),
        "Ana",
        &app.recipient("ana"),
        "es",
    );
    for secret in [None, Some("guess"), Some("")] {
        let (status, code, message) = error_of(app.post_raw(event.to_string(), secret).await).await;
        assert_eq!((status, code.as_str()), (401, "UNAUTHORIZED"), "{message}");
        assert!(message.contains("x-busflow-secret"), "{message}");
    }
    assert_eq!(app.count("select count(*) from contacts").await, 0);
}

#[tokio::test]
async fn malformed_json_unknown_triggers_and_missing_fields_are_400s_that_name_the_problem() {
    let app = TestApp::spawn_with(TestOptions {
        start_worker: false,
        ..TestOptions::default()
    })
    .await;
    let profile = Uuid::new_v4();

    let (status, code, message) = error_of(
        app.post_raw("{\"id\": ".to_owned(), Some(crate::support::app::SECRET))
            .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (400, "INVALID_PAYLOAD"),
        "{message}"
    );

    let mut no_trigger = profile_event(app.tenant_id, profile, "Ana", &app.recipient("ana"), "es");
    no_trigger
        .as_object_mut()
        .expect("object")
        .remove("trigger");
    let (status, code, message) = error_of(app.post_event(&no_trigger).await).await;
    assert_eq!((status, code.as_str()), (400, "INVALID_PAYLOAD"));
    assert!(message.contains("trigger"), "{message}");

    let mut unknown = profile_event(app.tenant_id, profile, "Ana", &app.recipient("ana"), "es");
    unknown["trigger"]["name"] = json!("bus_exploded");
    let (status, code, message) = error_of(app.post_event(&unknown).await).await;
    assert_eq!((status, code.as_str()), (400, "UNKNOWN_TRIGGER"));
    assert!(
        message.contains("bus_exploded") && message.contains("booking_confirmed"),
        "{message}"
    );

    let mut no_tenant = profile_event(app.tenant_id, profile, "Ana", &app.recipient("ana"), "es");
    no_tenant["event"]["data"]["new"]
        .as_object_mut()
        .expect("row")
        .remove("tenant_id");
    let (status, code, message) = error_of(app.post_event(&no_tenant).await).await;
    assert_eq!((status, code.as_str()), (400, "INVALID_ROW"));
    assert!(message.contains("tenant_id"), "{message}");

    let mut deleted = booking_event("evt-1", app.tenant_id, profile, "BF-1");
    deleted["event"]["op"] = json!("DELETE");
    deleted["event"]["data"]["new"] = Value::Null;
    let (status, code, _) = error_of(app.post_event(&deleted).await).await;
    assert_eq!((status, code.as_str()), (400, "MISSING_ROW"));

    let mut bad_id = profile_event(app.tenant_id, profile, "Ana", &app.recipient("ana"), "es");
    bad_id["id"] = json!("../../etc");
    let (status, code, _) = error_of(app.post_event(&bad_id).await).await;
    assert_eq!((status, code.as_str()), (400, "INVALID_EVENT_ID"));

    assert_eq!(app.count("select count(*) from contacts").await, 0);
    assert_eq!(app.count("select count(*) from messages").await, 0);
}

#[tokio::test]
async fn a_passenger_profile_becomes_one_normalized_contact_however_often_it_arrives() {
    let app = TestApp::spawn_with(TestOptions {
        start_worker: false,
        ..TestOptions::default()
    })
    .await;
    let profile = Uuid::new_v4();
    let mut event = profile_event(
        app.tenant_id,
        profile,
        "Ana López",
        "  Ana.Lopez@Example.COM ",
        "es-MX",
    );
    event["event"]["data"]["new"]["whatsapp_phone"] = json!("+52 (55) 8765-4321");
    let first = app.post_event(&event).await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.expect("json");
    let again: Value = app.post_event(&event).await.json().await.expect("json");
    assert_eq!(first["outcome"], "contact_upserted");
    assert_eq!(first["contact_id"], again["contact_id"]);

    let (identifiers, name, locale): (Value, String, Option<String>) = sqlx::query_as(
        "select identifiers, display_name, locale from contacts where passenger_profile_id = $1",
    )
    .bind(profile)
    .fetch_one(&app.pool)
    .await
    .expect("contact");
    assert_eq!(identifiers["email"], "ana.lopez@example.com");
    assert_eq!(identifiers["phone"], "+525512345678");
    assert_eq!(identifiers["whatsapp"], "+525587654321");
    assert_eq!(name, "Ana López");
    assert_eq!(locale.as_deref(), Some("es-MX"));
    assert_eq!(app.count("select count(*) from contacts").await, 1);
}

#[tokio::test]
async fn a_booking_that_arrives_before_its_passenger_is_retried_later_then_notifies() {
    let app = TestApp::spawn().await;
    app.add_email_account(true).await;
    let profile = Uuid::new_v4();
    let event_id = Uuid::new_v4().to_string();
    let booking = booking_event(&event_id, app.tenant_id, profile, "BF-EARLY");

    let early = app.post_event(&booking).await;
    assert_eq!(
        early
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("30")
    );
    let (status, code, _) = error_of(early).await;
    assert_eq!((status, code.as_str()), (409, "CONTACT_NOT_YET_KNOWN"));

    let contact = app
        .upsert_passenger(profile, "Ana López", &app.recipient("ana"), "es")
        .await;
    let redelivered: Value = app.post_event(&booking).await.json().await.expect("json");
    assert_eq!(redelivered["outcome"], "started");
    app.workflow_result(&busflow_workflows::names::notification_workflow_id(
        app.tenant_id,
        &event_id,
        contact,
    ))
    .await
    .expect("sent");
    assert_eq!(app.sent_emails().await.len(), 1);
}

#[tokio::test]
async fn bookings_that_are_not_newly_confirmed_are_acknowledged_and_ignored() {
    let app = TestApp::spawn_with(TestOptions {
        start_worker: false,
        ..TestOptions::default()
    })
    .await;
    let profile = Uuid::new_v4();
    app.upsert_passenger(profile, "Ana López", &app.recipient("ana"), "es")
        .await;

    let mut pending = booking_event("evt-pending", app.tenant_id, profile, "BF-1");
    pending["event"]["data"]["new"]["status"] = json!("PENDING");
    let mut seat_change = booking_event("evt-seat", app.tenant_id, profile, "BF-1");
    seat_change["event"]["data"]["old"]["status"] = json!("CONFIRMED");
    for event in [pending, seat_change] {
        let response = app.post_event(&event).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["outcome"], "ignored", "{body}");
        assert!(
            body["reason"]
                .as_str()
                .is_some_and(|r| r.contains("CONFIRMED")),
            "{body}"
        );
    }
    assert_eq!(app.count("select count(*) from messages").await, 0);
}

#[tokio::test]
async fn temporal_being_down_is_a_503_that_hasura_retries_and_nothing_is_lost() {
    let dead = format!("127.0.0.1:{}", free_port().expect("port"));
    let app = TestApp::spawn_with(TestOptions {
        temporal_address: Some(dead),
        start_worker: false,
        ..TestOptions::default()
    })
    .await;
    let profile = Uuid::new_v4();
    app.upsert_passenger(profile, "Ana López", &app.recipient("ana"), "es")
        .await;

    let response = app
        .post_event(&booking_event("evt-down", app.tenant_id, profile, "BF-1"))
        .await;
    assert!(response.headers().contains_key("retry-after"));
    let (status, code, message) = error_of(response).await;
    assert_eq!(
        (status, code.as_str()),
        (503, "TEMPORAL_UNAVAILABLE"),
        "{message}"
    );
    assert_eq!(app.count("select count(*) from messages").await, 0);
}
