//! A tenant that brings no SMS number of its own sends from the platform's
//! sender for its country, within the platform's daily allowance.

use crate::rate_limits::second_booking_behind_the_limit;
use crate::support::{TestApp, TestOptions};
use busflow_activities::sms_pool::SmsPool;
use busflow_api::PlatformSms;
use serde_json::{Value, json};
use std::time::Duration;

const POOL: &str = "MX=+525500000100|+525500000101,US=+18445550100";

async fn app_with_pool(daily_limit: u32, step_deadline: Duration) -> TestApp {
    TestApp::spawn_with(TestOptions {
        platform_sms: PlatformSms {
            pool: SmsPool::parse(POOL).expect("pool"),
            daily_limit,
        },
        step_deadline,
        ..TestOptions::default()
    })
    .await
}

async fn connect_platform_sms(app: &TestApp, input: Value) -> (u16, Value) {
    let response = app
        .post_action("connectPlatformSms", input, "tenant_admin")
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON answer"))
}

#[tokio::test]
async fn a_tenant_without_a_number_gets_the_platforms_sender_for_its_country_once() {
    let app = app_with_pool(1000, Duration::from_secs(120)).await;
    let (status, answer) = connect_platform_sms(&app, json!({})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["channel"], "SMS");
    assert_eq!(answer["status"], "ACTIVE");
    let (_, again) = connect_platform_sms(&app, json!({})).await;
    assert_eq!(again["channel_account_id"], answer["channel_account_id"]);

    let config: Value = sqlx::query_scalar(
        "select provider_config from channel_accounts where tenant_id = $1 and channel = 'SMS'",
    )
    .bind(app.tenant_id)
    .fetch_one(&app.pool)
    .await
    .expect("account");
    assert_eq!(config["country"], "MX", "the tenant's default region");
    let number = config["origination_number"].as_str().unwrap_or_default();
    assert!(
        ["+525500000100", "+525500000101"].contains(&number),
        "{config}"
    );

    app.override_booking_confirmed(&["SMS"], json!({})).await;
    let profile = uuid::Uuid::new_v4();
    let contact = app
        .upsert_passenger(profile, "Ana López", &app.recipient("ana"), "es-MX")
        .await;
    let reference = crate::support::meta::booking_reference("BF-PSMS");
    let workflow_id = app.confirm_booking(profile, contact, &reference).await;
    let outcome = app.workflow_result(&workflow_id).await.expect("sent");
    assert_eq!(outcome.delivered.expect("sent").channel.as_str(), "SMS");
    assert_eq!(
        app.sent_sms(&reference).await.len(),
        1,
        "the SMS reached Ana"
    );
}

#[tokio::test]
async fn sends_beyond_the_daily_allowance_wait_and_fall_back() {
    let app = app_with_pool(1, Duration::from_secs(3)).await;
    let (status, answer) = connect_platform_sms(&app, json!({"country": "us"})).await;
    assert_eq!(status, 200, "{answer}");
    app.add_email_account(true).await;
    app.override_booking_confirmed(&["SMS", "EMAIL"], json!({}))
        .await;

    let second = second_booking_behind_the_limit(&app).await;
    let email = app.dispatched(&second, "EMAIL").await;
    assert_eq!(email.status, "SENT");
    let rows = app.messages(&second).await;
    assert_eq!(
        (rows[0].channel.as_str(), rows[0].status.as_str()),
        ("SMS", "FAILED")
    );
    assert!(
        rows[0]
            .failed_reason
            .as_deref()
            .unwrap_or_default()
            .contains("send-rate limit"),
        "{:?}",
        rows[0].failed_reason
    );
}

#[tokio::test]
async fn a_tenant_with_its_own_number_or_outside_the_pool_is_told_why() {
    let app = app_with_pool(1000, Duration::from_secs(120)).await;
    let (status, answer) = connect_platform_sms(&app, json!({"country": "ES"})).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["extensions"]["code"], "NO_PLATFORM_SENDER");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("MX, US"),
        "{answer}"
    );

    app.add_sms_account().await;
    let (status, answer) = connect_platform_sms(&app, json!({})).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["extensions"]["code"], "OWN_SMS_NUMBER");
    assert_eq!(
        app.count("select count(*) from channel_accounts where channel = 'SMS'")
            .await,
        1
    );
}
