//! Channel fallback: a notification moves down its chain when a channel
//! fails or stays silent, and stops at the first delivery.

use crate::support::TestApp;
use busflow_activities::model::ContactId;
use serde_json::json;
use uuid::Uuid;

async fn give_webchat_visitor(app: &TestApp, contact: ContactId) {
    sqlx::query("update contacts set identifiers = identifiers || '{\"webchat\": \"visitor1\"}' where id = $1")
        .bind(contact.0)
        .execute(&app.pool)
        .await
        .expect("visitor");
}

#[tokio::test]
async fn an_email_without_a_receipt_within_its_timeout_falls_back_to_webchat() {
    let app = TestApp::spawn().await;
    app.email_with_receipts_then_webchat(2).await;
    let profile = Uuid::new_v4();
    let contact = app
        .upsert_passenger(profile, "Ana López", &app.recipient("ana"), "es-MX")
        .await;
    give_webchat_visitor(&app, contact).await;
    let workflow_id = app.confirm_booking(profile, contact, "BF-FB").await;

    // The visitor has the widget open: its long poll fetches the message.
    let widget = app.visitor_fetches("visitor1").await;
    assert_eq!(widget["messages"][0]["direction"], "OUTBOUND");

    let outcome = app
        .workflow_result(&workflow_id)
        .await
        .expect("delivered on webchat");
    let delivered = outcome.delivered.expect("delivered");
    assert_eq!(delivered.channel.as_str(), "WEBCHAT");
    assert_eq!(delivered.status.as_str(), "DELIVERED");
    assert_eq!(outcome.attempts[0], "EMAIL: no delivery receipt within 2s");

    let rows: Vec<(Uuid, String, String, i16, Option<Uuid>)> = sqlx::query_as(
        "select id, channel, status, attempt, replaces_message_id from messages where workflow_id = $1 order by attempt",
    )
    .bind(&workflow_id)
    .fetch_all(&app.pool)
    .await
    .expect("messages");
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].1.as_str(), rows[0].2.as_str()), ("EMAIL", "SENT"));
    assert_eq!(
        (rows[1].1.as_str(), rows[1].2.as_str()),
        ("WEBCHAT", "DELIVERED")
    );
    assert_eq!(
        rows[1].4,
        Some(rows[0].0),
        "the webchat message replaces the email"
    );
    assert_eq!(app.sent_emails().await.len(), 1);
}

#[tokio::test]
async fn a_receipt_recorded_while_the_signal_was_lost_still_ends_the_notification() {
    let app = TestApp::spawn().await;
    app.email_with_receipts_then_webchat(3).await;
    let profile = Uuid::new_v4();
    let contact = app
        .upsert_passenger(profile, "Ana López", &app.recipient("ana"), "es-MX")
        .await;
    give_webchat_visitor(&app, contact).await;
    let workflow_id = app.confirm_booking(profile, contact, "BF-LOST").await;

    // The delivery is written to Postgres but no signal reaches the workflow
    // (as if the webhook process died between the two).
    let external_id: String = app.provider_id_once_sent(&workflow_id, "EMAIL").await;
    let effect = busflow_activities::store::messages::record_callback(
        &app.pool,
        &busflow_activities::store::messages::DeliveryCallback {
            tenant_id: None,
            channel: busflow_activities::model::Channel::Email,
            external_message_id: external_id,
            status: busflow_activities::model::MessageStatus::Delivered,
            reason: None,
            occurred_at: chrono::Utc::now(),
            detail: json!({"eventType": "Delivery"}),
            correlation: None,
            // The set `email_with_receipts_then_webchat` sends through.
            configuration_set: Some("busflow-events".into()),
        },
    )
    .await
    .expect("callback recorded");
    assert!(matches!(
        effect,
        busflow_activities::store::messages::CallbackEffect::Applied { changed: true, .. }
    ));

    let outcome = app.workflow_result(&workflow_id).await.expect("delivered");
    let delivered = outcome.delivered.expect("delivered");
    assert_eq!(delivered.channel.as_str(), "EMAIL");
    assert_eq!(delivered.status.as_str(), "DELIVERED");
    assert_eq!(
        app.count("select count(*) from messages where channel = 'WEBCHAT'")
            .await,
        0,
        "no second send"
    );
}

#[tokio::test]
async fn a_recipient_no_channel_can_reach_is_recorded_as_not_sent() {
    let app = TestApp::spawn().await;
    app.add_email_account(true).await;
    let profile = Uuid::new_v4();
    let contact = app
        .upsert_passenger(profile, "Ana López", &app.recipient("ana"), "es-MX")
        .await;
    sqlx::query("update contacts set opted_out_channels = '{EMAIL}' where id = $1")
        .bind(contact.0)
        .execute(&app.pool)
        .await
        .expect("opt out");
    let workflow_id = app.confirm_booking(profile, contact, "BF-NONE").await;

    let outcome = app
        .workflow_result(&workflow_id)
        .await
        .expect("completes without sending");
    assert!(outcome.delivered.is_none());
    let reason = outcome.not_sent_reason.expect("a reason");
    assert!(reason.contains("EMAIL: contact opted out"), "{reason}");
    assert!(
        reason.contains("WHATSAPP: tenant has no ACTIVE channel account"),
        "{reason}"
    );
    assert_eq!(app.count("select count(*) from messages").await, 0);
    assert!(app.sent_emails().await.is_empty());
}

#[tokio::test]
async fn a_broken_whatsapp_account_moves_to_attention_and_is_not_tried_again() {
    let app = TestApp::spawn().await;
    app.add_email_account(true).await;
    // A WhatsApp account whose secrets were never stored (no access token).
    sqlx::query(
        "insert into channel_accounts (tenant_id, channel, provider, status, provider_config, external_account_id)
         values ($1, 'WHATSAPP', 'META_CLOUD', 'ACTIVE', '{\"phone_number_id\": \"1234567890\"}', '1234567890')",
    )
    .bind(app.tenant_id)
    .execute(&app.pool)
    .await
    .expect("whatsapp account");
    sqlx::query(
        "insert into notification_templates (tenant_id, trigger_event, channel, locale, body, whatsapp_template_name, whatsapp_language)
         values ($1, 'booking_confirmed', 'WHATSAPP', 'es', 'Reserva {{ booking.booking_reference }}', 'booking_confirmed', 'es_MX')",
    )
    .bind(app.tenant_id)
    .execute(&app.pool)
    .await
    .expect("whatsapp template");
    let profile = Uuid::new_v4();
    let contact = app
        .upsert_passenger(profile, "Ana López", &app.recipient("ana"), "es-MX")
        .await;
    let workflow_id = app.confirm_booking(profile, contact, "BF-ATT").await;

    let outcome = app
        .workflow_result(&workflow_id)
        .await
        .expect("email took over");
    assert_eq!(
        outcome.delivered.expect("delivered").channel.as_str(),
        "EMAIL"
    );
    assert!(
        outcome.attempts[0].starts_with("WHATSAPP: failed:"),
        "{:?}",
        outcome.attempts
    );
    let (status, reason): (String, Option<String>) = sqlx::query_as(
        "select status, status_reason from channel_accounts where tenant_id = $1 and channel = 'WHATSAPP'",
    )
    .bind(app.tenant_id)
    .fetch_one(&app.pool)
    .await
    .expect("account");
    assert_eq!(status, "ATTENTION");
    assert!(
        reason.is_some_and(|r| r.contains("no access token")),
        "the account says why it needs attention"
    );
    let moves: Vec<(Option<String>, String, String)> = sqlx::query_as(
        "select from_status, to_status, changed_by from channel_account_status_history
          where tenant_id = $1 order by id",
    )
    .bind(app.tenant_id)
    .fetch_all(&app.pool)
    .await
    .expect("history");
    assert!(
        moves.contains(&(
            Some("ACTIVE".to_owned()),
            "ATTENTION".to_owned(),
            "dispatch".to_owned()
        )),
        "{moves:?}"
    );
    assert_eq!(app.sent_emails().await.len(), 1);

    // The next notification does not try the account at all.
    let workflow_id = app.confirm_booking(profile, contact, "BF-ATT-2").await;
    let outcome = app
        .workflow_result(&workflow_id)
        .await
        .expect("email again");
    assert_eq!(
        outcome.delivered.expect("delivered").channel.as_str(),
        "EMAIL"
    );
    assert!(
        outcome.attempts.iter().all(|a| !a.starts_with("WHATSAPP")),
        "{:?}",
        outcome.attempts
    );
    assert_eq!(
        app.count("select count(*) from messages where channel = 'WHATSAPP'")
            .await,
        1
    );
    assert_eq!(app.sent_emails().await.len(), 2);
}
