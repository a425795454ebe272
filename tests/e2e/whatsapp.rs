//! WhatsApp: booking confirmations through Meta's Cloud API (a wiremock
//! Graph API), falling back to email or SMS when WhatsApp refuses or stays
//! silent, and ended by Meta's signed delivery receipts — however late, early,
//! repeated or out of order they arrive, and never by forged ones.

use crate::support::app::{TEST_KEY_SPEC, test_keys};
use crate::support::meta::{
    PASSENGER_PHONE, PASSENGER_WA_ID, PHONE_NUMBER_ID, WHATSAPP_LANGUAGE, WHATSAPP_TEMPLATE,
    booking_reference, graph_accepted, graph_error, messages_path, meta_secrets, seconds_ago, sign,
    status_webhook, wamid,
};
use crate::support::{TestApp, TestOptions};
use busflow_activities::crypto::KeyRing;
use busflow_activities::model::{Channel, ContactId, MessageId, MessageStatus, TenantId};
use busflow_activities::secrets::{self, ProviderSecrets};
use busflow_activities::store::messages::{self, DeliveryCallback};
use busflow_comms::dev::seed;
use busflow_workflows::NotificationOutcome;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer};

async fn app_with_graph(graph: &MockServer) -> TestApp {
    TestApp::spawn_with(TestOptions {
        meta_graph_url: Some(graph.uri()),
        ..TestOptions::default()
    })
    .await
}

/// The tenant's WhatsApp account and its approved booking template; returns
/// the account's Meta credentials.
async fn whatsapp_tenant(app: &TestApp) -> ProviderSecrets {
    let secrets = meta_secrets();
    app.add_whatsapp_account(&secrets).await;
    app.add_whatsapp_template().await;
    secrets
}

/// Ana: an email address and +52 55 1234 5678 (no WhatsApp number of its
/// own, so WhatsApp uses the phone).
async fn passenger(app: &TestApp) -> (Uuid, ContactId) {
    let profile = Uuid::new_v4();
    let contact = app
        .upsert_passenger(profile, "Ana López", &app.recipient("ana"), "es-MX")
        .await;
    (profile, contact)
}

fn app_secret(secrets: &ProviderSecrets) -> &str {
    secrets.app_secret.as_deref().expect("app secret")
}

fn at(unix_seconds: i64) -> Option<DateTime<Utc>> {
    Some(DateTime::from_timestamp(unix_seconds, 0).expect("timestamp"))
}

/// Asserts the notification ended on WhatsApp with `status` for `wamid`.
fn assert_ended_on_whatsapp(outcome: &NotificationOutcome, status: &str, wamid: &str) {
    let delivered = outcome.delivered.as_ref().expect("a message got through");
    assert_eq!(delivered.channel.as_str(), "WHATSAPP", "{outcome:?}");
    assert_eq!(delivered.status.as_str(), status, "{outcome:?}");
    assert_eq!(delivered.external_message_id, wamid);
    assert_eq!(outcome.attempts, [format!("WHATSAPP: {status}")]);
}

#[tokio::test]
async fn an_undeliverable_whatsapp_number_gets_the_confirmation_by_email() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(graph_error(
            131026,
            "(#131026) Message undeliverable",
            "Message Undeliverable.",
        ))
        .mount(&graph)
        .await;
    let app = app_with_graph(&graph).await;
    let secrets = whatsapp_tenant(&app).await;
    app.add_email_account(true).await;
    let (profile, contact) = passenger(&app).await;
    let reference = booking_reference("BF-UND");

    let workflow_id = app.confirm_booking(profile, contact, &reference).await;
    let outcome = app
        .workflow_result(&workflow_id)
        .await
        .expect("delivered by email");

    let delivered = outcome.delivered.as_ref().expect("a message got through");
    assert_eq!(delivered.channel.as_str(), "EMAIL");
    assert!(
        outcome.attempts[0].starts_with("WHATSAPP: failed: Meta 131026"),
        "{:?}",
        outcome.attempts
    );
    let emails = app.sent_emails().await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert_eq!(emails[0].to(), vec![app.recipient("ana")]);
    assert!(
        emails[0].subject.contains(&reference),
        "{}",
        emails[0].subject
    );

    let rows = app.messages(&workflow_id).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (whatsapp, email) = (&rows[0], &rows[1]);
    assert_eq!(
        (whatsapp.channel.as_str(), whatsapp.status.as_str()),
        ("WHATSAPP", "FAILED")
    );
    let reason = whatsapp.failed_reason.as_deref().unwrap_or_default();
    assert!(reason.contains("131026"), "{reason}");
    assert_eq!(whatsapp.external_message_id, None);
    assert_eq!(
        (email.channel.as_str(), email.status.as_str()),
        ("EMAIL", "SENT")
    );
    assert_eq!(email.replaces_message_id, Some(whatsapp.id));
    assert_eq!(
        email.external_message_id.as_deref(),
        Some(emails[0].id.as_str())
    );

    let requests = graph.received_requests().await.expect("requests recorded");
    assert_eq!(requests.len(), 1, "a permanent refusal is not retried");
    let token = secrets.access_token.as_deref().expect("token");
    assert_eq!(
        requests[0]
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(
        requests[0].body_json::<Value>().expect("JSON body"),
        json!({
            "biz_opaque_callback_data": whatsapp.id.to_string(),
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": PASSENGER_WA_ID,
            "type": "template",
            "template": {
                "name": WHATSAPP_TEMPLATE,
                "language": {"code": WHATSAPP_LANGUAGE},
                "components": [{"type": "body", "parameters": [
                    {"type": "text", "text": "Ana"},
                    {"type": "text", "text": reference}
                ]}]
            }
        })
    );
}

#[tokio::test]
async fn a_whatsapp_message_without_a_receipt_within_its_timeout_is_followed_by_an_sms() {
    let graph = MockServer::start().await;
    let wamid = wamid();
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(graph_accepted(&wamid))
        .expect(1)
        .mount(&graph)
        .await;
    let app = app_with_graph(&graph).await;
    whatsapp_tenant(&app).await;
    app.add_sms_account().await;
    app.add_sms_template().await;
    app.override_booking_confirmed(&["WHATSAPP", "SMS"], json!({"WHATSAPP": 2}))
        .await;
    let (profile, contact) = passenger(&app).await;
    let reference = booking_reference("BF-SIL");

    let workflow_id = app.confirm_booking(profile, contact, &reference).await;
    let outcome = app
        .workflow_result(&workflow_id)
        .await
        .expect("delivered by SMS");

    let delivered = outcome.delivered.as_ref().expect("a message got through");
    assert_eq!(delivered.channel.as_str(), "SMS");
    assert_eq!(
        delivered.status.as_str(),
        "SENT",
        "SMS has no receipts: done once sent"
    );
    assert_eq!(
        outcome.attempts[0],
        "WHATSAPP: no delivery receipt within 2s"
    );
    let sms = app.sent_sms(&reference).await;
    assert_eq!(sms.len(), 1, "{sms:?}");
    assert_eq!(sms[0].phone_number, PASSENGER_PHONE);
    assert!(sms[0].message.contains("está confirmada"), "{sms:?}");
    assert_eq!(delivered.external_message_id, sms[0].message_id);

    let rows = app.messages(&workflow_id).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (whatsapp, text) = (&rows[0], &rows[1]);
    assert_eq!(
        (whatsapp.channel.as_str(), whatsapp.status.as_str()),
        ("WHATSAPP", "SENT")
    );
    assert_eq!(
        whatsapp.external_message_id.as_deref(),
        Some(wamid.as_str())
    );
    assert_eq!(
        (text.channel.as_str(), text.status.as_str()),
        ("SMS", "SENT")
    );
    assert_eq!(text.replaces_message_id, Some(whatsapp.id));
}

#[tokio::test]
async fn a_delivered_receipt_ends_the_notification_on_whatsapp_and_late_receipts_only_update_it() {
    let graph = MockServer::start().await;
    let wamid = wamid();
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(graph_accepted(&wamid))
        .expect(1)
        .mount(&graph)
        .await;
    let app = app_with_graph(&graph).await;
    let secrets = whatsapp_tenant(&app).await;
    // Email and SMS are ready to take over, should WhatsApp not deliver.
    app.add_email_account(true).await;
    app.add_sms_account().await;
    app.add_sms_template().await;
    app.override_booking_confirmed(&["WHATSAPP", "EMAIL", "SMS"], json!({"WHATSAPP": 600}))
        .await;
    let (profile, contact) = passenger(&app).await;
    let reference = booking_reference("BF-DLV");

    let workflow_id = app.confirm_booking(profile, contact, &reference).await;
    let sent = app.dispatched(&workflow_id, "WHATSAPP").await;
    assert_eq!(sent.external_message_id.as_deref(), Some(wamid.as_str()));
    let delivered_at = seconds_ago(3);
    let answer = app
        .meta_reports(
            app.tenant_id,
            app_secret(&secrets),
            &[(&wamid, "delivered", delivered_at)],
        )
        .await;
    assert_eq!(
        answer,
        json!({"applied": 1, "pending": 0, "received": 0, "dead_letters": 0})
    );
    let outcome = app
        .workflow_result(&workflow_id)
        .await
        .expect("delivered on WhatsApp");

    assert_ended_on_whatsapp(&outcome, "DELIVERED", &wamid);
    assert!(app.sent_emails().await.is_empty(), "no email");
    assert!(app.sent_sms(&reference).await.is_empty(), "no SMS");
    assert_eq!(app.messages(&workflow_id).await.len(), 1);

    // Meta keeps reporting after the notification has ended.
    let read_at = seconds_ago(1);
    let late_read = app
        .meta_reports(
            app.tenant_id,
            app_secret(&secrets),
            &[(&wamid, "read", read_at)],
        )
        .await;
    let duplicate = app
        .meta_reports(
            app.tenant_id,
            app_secret(&secrets),
            &[(&wamid, "delivered", delivered_at)],
        )
        .await;
    assert_eq!(
        late_read,
        json!({"applied": 1, "pending": 0, "received": 0, "dead_letters": 0})
    );
    assert_eq!(
        duplicate,
        json!({"applied": 1, "pending": 0, "received": 0, "dead_letters": 0})
    );
    let rows = app.messages(&workflow_id).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].status, "READ");
    assert_eq!(
        (rows[0].delivered_at, rows[0].read_at),
        (at(delivered_at), at(read_at))
    );
    assert!(app.sent_emails().await.is_empty(), "still no email");
    assert!(app.sent_sms(&reference).await.is_empty(), "still no SMS");
}

#[tokio::test]
async fn a_receipt_settles_a_message_once_whatever_comes_after_it() {
    let graph = MockServer::start().await;
    let wamid = wamid();
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(graph_accepted(&wamid))
        .expect(1)
        .mount(&graph)
        .await;
    let app = app_with_graph(&graph).await;
    whatsapp_tenant(&app).await;
    app.override_booking_confirmed(&["WHATSAPP"], json!({"WHATSAPP": 600}))
        .await;
    let (profile, contact) = passenger(&app).await;
    let workflow_id = app
        .confirm_booking(profile, contact, &booking_reference("BF-WAKE"))
        .await;
    let sent = app.dispatched(&workflow_id, "WHATSAPP").await;
    // Meta's usual sequence. The message is SENT already (Meta's answer to
    // the send said so), DELIVERED settles it, READ changes nothing the
    // notification waits for: only DELIVERED may wake it.
    let mut settled = Vec::new();
    for status in [
        MessageStatus::Sent,
        MessageStatus::Delivered,
        MessageStatus::Read,
        MessageStatus::Delivered,
    ] {
        let effect = messages::record_callback(
            &app.pool,
            &DeliveryCallback {
                tenant_id: Some(app.tenant_id),
                channel: Channel::WhatsApp,
                external_message_id: wamid.clone(),
                status,
                reason: None,
                occurred_at: Utc::now(),
                detail: json!({}),
                correlation: None,
                configuration_set: None,
            },
        )
        .await
        .expect("recorded");
        let messages::CallbackEffect::Applied { settles, .. } = effect else {
            panic!("the message is known: {effect:?}");
        };
        settled.push(settles);
    }
    assert_eq!(settled, [false, true, false, false]);
    let rows = app.messages(&workflow_id).await;
    assert_eq!(rows[0].status, "READ");
    assert_eq!(rows[0].id, sent.id);
}

#[tokio::test]
async fn receipts_out_of_order_and_twice_end_exactly_like_receipts_in_order() {
    let graph = MockServer::start().await;
    let (in_order_reference, reversed_reference) =
        (booking_reference("BF-ORD"), booking_reference("BF-REV"));
    let (in_order_wamid, reversed_wamid) = (wamid(), wamid());
    for (reference, wamid) in [
        (&in_order_reference, &in_order_wamid),
        (&reversed_reference, &reversed_wamid),
    ] {
        Mock::given(method("POST"))
            .and(path(messages_path()))
            .and(body_string_contains(reference.as_str()))
            .respond_with(graph_accepted(wamid))
            .expect(1)
            .mount(&graph)
            .await;
    }
    let app = app_with_graph(&graph).await;
    let secrets = whatsapp_tenant(&app).await;
    app.override_booking_confirmed(&["WHATSAPP"], json!({"WHATSAPP": 600}))
        .await;
    let (profile, contact) = passenger(&app).await;
    let in_order = app
        .confirm_booking(profile, contact, &in_order_reference)
        .await;
    let reversed = app
        .confirm_booking(profile, contact, &reversed_reference)
        .await;
    for (workflow_id, wamid) in [(&in_order, &in_order_wamid), (&reversed, &reversed_wamid)] {
        let sent = app.dispatched(workflow_id, "WHATSAPP").await;
        assert_eq!(sent.external_message_id.as_deref(), Some(wamid.as_str()));
    }
    let (delivered_at, read_at) = (seconds_ago(120), seconds_ago(60));
    // Meta delivers each webhook at least once: every status comes twice.
    let report = |wamid: &str, status: &'static str, at: i64| {
        let wamid = wamid.to_owned();
        let app = &app;
        let secret = app_secret(&secrets).to_owned();
        async move {
            for _ in 0..2 {
                let answer = app
                    .meta_reports(app.tenant_id, &secret, &[(&wamid, status, at)])
                    .await;
                assert_eq!(
                    answer,
                    json!({"applied": 1, "pending": 0, "received": 0, "dead_letters": 0}),
                    "{status}"
                );
            }
        }
    };

    report(&in_order_wamid, "delivered", delivered_at).await;
    let in_order_outcome = app.workflow_result(&in_order).await.expect("delivered");
    report(&in_order_wamid, "read", read_at).await;
    report(&reversed_wamid, "read", read_at).await;
    let reversed_outcome = app.workflow_result(&reversed).await.expect("read");
    report(&reversed_wamid, "delivered", delivered_at).await;

    assert_ended_on_whatsapp(&in_order_outcome, "DELIVERED", &in_order_wamid);
    assert_ended_on_whatsapp(&reversed_outcome, "READ", &reversed_wamid);
    for workflow_id in [&in_order, &reversed] {
        let rows = app.messages(workflow_id).await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(
            (
                rows[0].status.as_str(),
                rows[0].delivered_at,
                rows[0].read_at
            ),
            ("READ", at(delivered_at), at(read_at)),
            "{workflow_id}"
        );
    }
}

#[tokio::test]
async fn forged_or_misaddressed_receipts_never_change_a_message() {
    let graph = MockServer::start().await;
    let wamid = wamid();
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(graph_accepted(&wamid))
        .expect(1)
        .mount(&graph)
        .await;
    let app = app_with_graph(&graph).await;
    let secrets = whatsapp_tenant(&app).await;
    app.override_booking_confirmed(&["WHATSAPP"], json!({"WHATSAPP": 600}))
        .await;
    // Another tenant of the service, with a WhatsApp number of its own.
    let other = TenantId(Uuid::new_v4());
    seed::upsert_tenant(
        &app.pool,
        other,
        "Otra Línea",
        "MX",
        "es-MX",
        "America/Mexico_City",
    )
    .await
    .expect("other tenant");
    let other_secrets = meta_secrets();
    app.add_whatsapp_account_for(other, "106540352242923", &other_secrets, &test_keys())
        .await;
    let (profile, contact) = passenger(&app).await;

    // The other tenant's webhook names our wamid before we even sent it...
    let early = app
        .meta_reports(
            other,
            app_secret(&other_secrets),
            &[(&wamid, "delivered", seconds_ago(10))],
        )
        .await;
    assert_eq!(
        early,
        json!({"applied": 0, "pending": 1, "received": 0, "dead_letters": 0})
    );
    let workflow_id = app
        .confirm_booking(profile, contact, &booking_reference("BF-FRG"))
        .await;
    let sent = app.dispatched(&workflow_id, "WHATSAPP").await;
    assert_eq!(sent.external_message_id.as_deref(), Some(wamid.as_str()));
    assert_eq!(
        sent.status, "SENT",
        "the other tenant's receipt is not ours"
    );
    // ...and after.
    let late = app
        .meta_reports(
            other,
            app_secret(&other_secrets),
            &[(&wamid, "read", seconds_ago(5))],
        )
        .await;
    assert_eq!(
        late,
        json!({"applied": 0, "pending": 1, "received": 0, "dead_letters": 0})
    );
    // Forgeries on our own webhook.
    let body = status_webhook(&[(&wamid, "delivered", seconds_ago(5))]);
    let forgeries = [
        (
            "signed with another app's secret",
            body.clone(),
            Some(sign(app_secret(&other_secrets), &body)),
        ),
        (
            "changed after signing",
            body.replace("\"delivered\"", "\"read\""),
            Some(sign(app_secret(&secrets), &body)),
        ),
        ("unsigned", body.clone(), None),
        (
            "signed without the sha256= scheme",
            body.clone(),
            Some(sign(app_secret(&secrets), &body).replace("sha256=", "")),
        ),
    ];
    for (forgery, body, signature) in forgeries {
        let response = app.post_meta_webhook(app.tenant_id, body, signature).await;
        assert_eq!(response.status(), 401, "{forgery}");
    }

    let rows = app.messages(&workflow_id).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (
            rows[0].status.as_str(),
            rows[0].delivered_at,
            rows[0].read_at
        ),
        ("SENT", None, None)
    );
    let callbacks: Vec<(Option<Uuid>, Option<Uuid>, bool)> = sqlx::query_as(
        "select tenant_id, message_id, applied_at is not null from delivery_callbacks
          where external_message_id = $1 order by id",
    )
    .bind(&wamid)
    .fetch_all(&app.pool)
    .await
    .expect("callbacks");
    assert_eq!(
        callbacks,
        [(Some(other.0), None, false), (Some(other.0), None, false)],
        "kept under the tenant whose webhook got them, applied to nothing; forgeries not kept"
    );

    // The genuine receipt still counts.
    let genuine = app
        .meta_reports(
            app.tenant_id,
            app_secret(&secrets),
            &[(&wamid, "delivered", seconds_ago(1))],
        )
        .await;
    assert_eq!(
        genuine,
        json!({"applied": 1, "pending": 0, "received": 0, "dead_letters": 0})
    );
    let outcome = app.workflow_result(&workflow_id).await.expect("delivered");
    assert_ended_on_whatsapp(&outcome, "DELIVERED", &wamid);
}

#[tokio::test]
async fn a_receipt_that_beats_metas_send_response_is_applied_once_the_wamid_is_recorded() {
    let graph = MockServer::start().await;
    let wamid = wamid();
    // Meta is slow to answer the send, and quick to call the webhook.
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(graph_accepted(&wamid).set_delay(Duration::from_secs(3)))
        .expect(1)
        .mount(&graph)
        .await;
    let app = app_with_graph(&graph).await;
    let secrets = whatsapp_tenant(&app).await;
    // A pass cannot come from the timeout.
    app.override_booking_confirmed(&["WHATSAPP"], json!({"WHATSAPP": 600}))
        .await;
    let (profile, contact) = passenger(&app).await;

    let workflow_id = app
        .confirm_booking(profile, contact, &booking_reference("BF-EARLY"))
        .await;
    app.eventually(
        "the send to reach Meta",
        Duration::from_secs(20),
        || async {
            let requests = graph.received_requests().await.unwrap_or_default();
            (!requests.is_empty()).then_some(())
        },
    )
    .await;
    let early = app
        .meta_reports(
            app.tenant_id,
            app_secret(&secrets),
            &[(&wamid, "delivered", seconds_ago(1))],
        )
        .await;
    assert_eq!(
        early,
        json!({"applied": 0, "pending": 1, "received": 0, "dead_letters": 0}),
        "no message knows the wamid yet"
    );
    let outcome = app
        .workflow_result(&workflow_id)
        .await
        .expect("delivered without waiting 600 s");

    assert_ended_on_whatsapp(&outcome, "DELIVERED", &wamid);
    let rows = app.messages(&workflow_id).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].status, "DELIVERED");
    assert!(rows[0].delivered_at.is_some());
    let applied_to: Vec<Option<Uuid>> = sqlx::query_scalar(
        "select message_id from delivery_callbacks where external_message_id = $1 and applied_at is not null",
    )
    .bind(&wamid)
    .fetch_all(&app.pool)
    .await
    .expect("callbacks");
    assert_eq!(applied_to, [Some(rows[0].id)]);
}

#[tokio::test]
async fn a_receipt_that_arrives_while_the_send_is_being_recorded_is_never_lost() {
    // Meta's answer to the send and its webhook reach two processes at once:
    // the worker records the wamid while the API records the receipt.
    // Whichever commits first, the message must end up DELIVERED.
    let app = TestApp::spawn_with(TestOptions {
        start_worker: false,
        ..TestOptions::default()
    })
    .await;
    let mut lost = Vec::new();
    for round in 0..100 {
        let message_id = MessageId(
            sqlx::query_scalar(
                "insert into messages (tenant_id, direction, channel, status)
                 values ($1, 'OUTBOUND', 'WHATSAPP', 'QUEUED') returning id",
            )
            .bind(app.tenant_id)
            .fetch_one(&app.pool)
            .await
            .expect("queued message"),
        );
        let wamid = wamid();
        let receipt = DeliveryCallback {
            tenant_id: Some(app.tenant_id),
            channel: Channel::WhatsApp,
            external_message_id: wamid.clone(),
            status: MessageStatus::Delivered,
            reason: None,
            occurred_at: Utc::now(),
            detail: json!({"status": "delivered"}),
            correlation: None,
            configuration_set: None,
        };

        let (sent, recorded) = tokio::join!(
            messages::mark_sent(&app.pool, app.tenant_id, message_id, &wamid),
            messages::record_callback(&app.pool, &receipt),
        );

        sent.expect("send recorded");
        recorded.expect("receipt recorded");
        let status: String = sqlx::query_scalar("select status from messages where id = $1")
            .bind(message_id)
            .fetch_one(&app.pool)
            .await
            .expect("status");
        if status != "DELIVERED" {
            lost.push(round);
        }
    }
    assert!(lost.is_empty(), "receipts lost in rounds {lost:?}");
}

#[tokio::test]
async fn meta_credentials_never_reach_temporal_and_only_the_verify_token_answers_the_challenge() {
    let graph = MockServer::start().await;
    let wamid = wamid();
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(graph_accepted(&wamid))
        .expect(1)
        .mount(&graph)
        .await;
    let app = app_with_graph(&graph).await;
    let secrets = whatsapp_tenant(&app).await;
    app.override_booking_confirmed(&["WHATSAPP"], json!({"WHATSAPP": 600}))
        .await;
    let (profile, contact) = passenger(&app).await;
    let reference = booking_reference("BF-SEC");
    let workflow_id = app.confirm_booking(profile, contact, &reference).await;
    app.dispatched(&workflow_id, "WHATSAPP").await;
    app.meta_reports(
        app.tenant_id,
        app_secret(&secrets),
        &[(&wamid, "delivered", seconds_ago(1))],
    )
    .await;
    let outcome = app.workflow_result(&workflow_id).await.expect("delivered");
    assert_ended_on_whatsapp(&outcome, "DELIVERED", &wamid);

    // Without the key, Temporal holds neither the booking nor the send...
    let raw = app.raw_history(&workflow_id).await;
    assert!(
        !raw.contains(&reference),
        "the event's booking in plain text"
    );
    assert!(!raw.contains(&wamid), "the dispatch result in plain text");
    // ...which ops read through the codec...
    let history = app.readable_history(&workflow_id).await;
    assert!(history.contains(&reference), "the event's booking");
    assert!(history.contains(&wamid), "the dispatch result");
    // ...and even opened, none of the account's credentials.
    for (name, secret) in [
        ("access token", &secrets.access_token),
        ("app secret", &secrets.app_secret),
        ("verify token", &secrets.verify_token),
    ] {
        let secret = secret.as_deref().expect(name);
        assert!(!history.contains(secret), "the {name} is in the history");
    }

    let verify_token = secrets.verify_token.as_deref().expect("verify token");
    let subscribed = app
        .verify_meta_webhook(app.tenant_id, verify_token, "1158201444")
        .await;
    assert_eq!(subscribed.status(), 200);
    assert_eq!(subscribed.text().await.expect("body"), "1158201444");
    for wrong in ["not-the-verify-token", app_secret(&secrets)] {
        let refused = app
            .verify_meta_webhook(app.tenant_id, wrong, "1158201444")
            .await;
        assert_eq!(refused.status(), 403, "{wrong}");
        assert!(
            !refused
                .text()
                .await
                .unwrap_or_default()
                .contains("1158201444")
        );
    }
    let no_whatsapp = app
        .verify_meta_webhook(TenantId(Uuid::new_v4()), verify_token, "1158201444")
        .await;
    assert_eq!(no_whatsapp.status(), 404);
}

#[tokio::test]
async fn after_a_key_rotation_whatsapp_still_sends_with_the_right_token_and_verifies_receipts() {
    let graph = MockServer::start().await;
    let wamid = wamid();
    let secrets = meta_secrets();
    let token = secrets.access_token.clone().expect("token");
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .respond_with(graph_accepted(&wamid))
        .expect(1)
        .mount(&graph)
        .await;
    let app = app_with_graph(&graph).await;
    // Sealed while test-1 was the active key.
    let before_rotation = KeyRing::parse(TEST_KEY_SPEC, Some("test-1")).expect("key ring");
    let account = app
        .add_whatsapp_account_for(app.tenant_id, PHONE_NUMBER_ID, &secrets, &before_rotation)
        .await;
    app.add_whatsapp_template().await;
    app.override_booking_confirmed(&["WHATSAPP"], json!({"WHATSAPP": 600}))
        .await;
    let sealed_with = || async {
        sqlx::query_scalar::<_, String>(
            "select provider_secrets ->> 'kid' from channel_accounts where id = $1",
        )
        .bind(account)
        .fetch_one(&app.pool)
        .await
        .expect("kid")
    };
    assert_eq!(sealed_with().await, "test-1");

    let moved = secrets::rotate(&app.pool, &test_keys())
        .await
        .expect("rotate");
    assert_eq!(moved, 1);
    assert_eq!(sealed_with().await, "test-2");
    let moved_again = secrets::rotate(&app.pool, &test_keys())
        .await
        .expect("rotate again");
    assert_eq!(moved_again, 0, "nothing left under the old key");

    let (profile, contact) = passenger(&app).await;
    let workflow_id = app
        .confirm_booking(profile, contact, &booking_reference("BF-ROT"))
        .await;
    let sent = app.dispatched(&workflow_id, "WHATSAPP").await;
    assert_eq!(
        (sent.status.as_str(), sent.external_message_id.as_deref()),
        ("SENT", Some(wamid.as_str())),
        "Meta accepted the token opened from the re-sealed secrets: {sent:?}"
    );
    // The API opens the re-sealed app secret to verify Meta's receipt.
    let answer = app
        .meta_reports(
            app.tenant_id,
            app_secret(&secrets),
            &[(&wamid, "delivered", seconds_ago(1))],
        )
        .await;
    assert_eq!(
        answer,
        json!({"applied": 1, "pending": 0, "received": 0, "dead_letters": 0})
    );
    let outcome = app.workflow_result(&workflow_id).await.expect("delivered");
    assert_ended_on_whatsapp(&outcome, "DELIVERED", &wamid);
}
