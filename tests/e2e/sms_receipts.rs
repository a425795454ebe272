//! SMS delivery receipts: SNS delivery-status logs reach us through a
//! Firehose HTTP endpoint; with receipts on, an SMS waits for one.

use crate::support::TestApp;
use crate::support::app::FIREHOSE_KEY;
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn an_sms_receipt_from_firehose_marks_it_delivered_and_a_wrong_key_changes_nothing() {
    let app = TestApp::spawn().await;
    sqlx::query(
        "insert into channel_accounts (tenant_id, channel, provider, status, provider_config, external_account_id)
         values ($1, 'SMS', 'AWS_SNS', 'ACTIVE', '{\"delivery_receipts\": true}', 'platform-sms')",
    )
    .bind(app.tenant_id)
    .execute(&app.pool)
    .await
    .expect("sms account");
    sqlx::query("update tenant_settings set trigger_overrides = $2 where tenant_id = $1")
        .bind(app.tenant_id)
        .bind(json!({"booking_confirmed": {"chain": ["SMS"], "timeouts": {"SMS": 600}}}))
        .execute(&app.pool)
        .await
        .expect("override");
    let profile = Uuid::new_v4();
    let contact = app
        .upsert_passenger(profile, "Ana López", &app.recipient("ana"), "es-MX")
        .await;
    let workflow_id = app.confirm_booking(profile, contact, "BF-SMS").await;
    let sns_id: String = app.provider_id_once_sent(&workflow_id, "SMS").await;
    let receipt = json!({
        "notification": {"messageId": sns_id, "timestamp": "2026-11-27 10:00:00.123"},
        "delivery": {"destination": "+525512345678", "providerResponse": "Phone carrier has accepted the message",
                     "smsType": "Transactional", "dwellTimeMs": 300},
        "status": "SUCCESS"
    });

    let forged = app
        .post_sms_receipts(std::slice::from_ref(&receipt), "guess")
        .await;
    assert_eq!(forged.status(), 401);
    assert_eq!(
        app.count("select count(*) from messages where status = 'SENT'")
            .await,
        1
    );

    let response = app.post_sms_receipts(&[receipt], FIREHOSE_KEY).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(
        body["requestId"], "req-1",
        "Firehose needs its request id back"
    );

    // The receipt timeout is 600 s: finishing now proves the receipt ended it.
    let outcome = app.workflow_result(&workflow_id).await.expect("delivered");
    let delivered = outcome.delivered.expect("delivered");
    assert_eq!(
        (delivered.channel.as_str(), delivered.status.as_str()),
        ("SMS", "DELIVERED")
    );
}

#[tokio::test]
async fn a_firehose_delivery_over_its_bounds_is_refused_whole_and_named() {
    let app = TestApp::spawn_with(crate::support::TestOptions {
        start_worker: false,
        ..Default::default()
    })
    .await;
    let post = |records: serde_json::Value| {
        app.http()
            .post(format!("{}/webhooks/sms-status", app.base_url))
            .header("x-amz-firehose-access-key", FIREHOSE_KEY)
            .json(&json!({"requestId": "req-big", "timestamp": 0, "records": records}))
            .send()
    };
    let empty = busflow_api::webhooks::sms_status::MAX_RECORDS + 1;
    let too_many = post(json!(vec![json!({"data": "e30="}); empty]))
        .await
        .expect("POST");
    assert_eq!(too_many.status(), 413);
    let body: serde_json::Value = too_many.json().await.expect("json");
    assert_eq!(body["extensions"]["code"], "TOO_MANY_RECORDS", "{body}");
    // A record that is not what Firehose sends names its index.
    let unreadable = post(json!([{"data": "e30="}, {"data": "not base64!"}]))
        .await
        .expect("POST");
    assert_eq!(unreadable.status(), 400);
    let body: serde_json::Value = unreadable.json().await.expect("json");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("record 1"),
        "{body}"
    );
}
