//! Per-tenant send-rate limits shared by every worker through Postgres.

use crate::support::app::{TestApp, booking_event};
use chrono::{DateTime, Utc};
use std::time::Duration;
use uuid::Uuid;

#[tokio::test]
async fn two_workers_sharing_a_limit_never_exceed_it_and_send_everything() {
    const RATE: f64 = 4.0;
    const BURST: i32 = 1;
    const MESSAGES: usize = 14;
    let app = TestApp::spawn().await;
    app.spawn_second_worker();
    app.add_sandbox_sms_account(Some(RATE), Some(BURST)).await;
    let passengers = app.insert_passengers(MESSAGES).await;
    let app = &app;
    let posts = passengers.iter().map(|(_, profile)| {
        let event = booking_event(
            &Uuid::new_v4().to_string(),
            app.tenant_id,
            *profile,
            "BF-RATE",
        );
        async move { app.post_event(&event).await.status() }
    });
    for status in futures::future::join_all(posts).await {
        assert_eq!(status, 200);
    }

    let sent: Vec<DateTime<Utc>> = app
        .eventually("every message sent", Duration::from_secs(60), || async {
            let sent: Vec<DateTime<Utc>> = sqlx::query_scalar(
                "select sent_at from messages
                  where tenant_id = $1 and status = 'SENT' and sent_at is not null order by sent_at",
            )
            .bind(app.tenant_id)
            .fetch_all(&app.pool)
            .await
            .expect("sent");
            (sent.len() == MESSAGES).then_some(sent)
        })
        .await;
    // GCRA: any n consecutive sends span at least (n - burst) / rate seconds.
    // `sent_at` is recorded after the slot is taken, the claim made and the
    // sandbox answered: under CI's load that once took 230 ms, so one send
    // can be recorded next to the following one. The slack of one slot
    // (250 ms) keeps that from failing, while the two workers each keeping
    // a bucket of their own (twice the rate) still fails by seconds.
    const SLACK: f64 = 1.0 / RATE;
    for i in 0..sent.len() {
        for j in i + 1..sent.len() {
            let n = (j - i + 1) as f64;
            let span = (sent[j] - sent[i]).num_milliseconds() as f64 / 1000.0;
            assert!(
                n <= f64::from(BURST) + RATE * (span + SLACK),
                "{n} sends within {span:.3}s exceed {RATE}/s (burst {BURST}): {sent:?}"
            );
        }
    }
    assert!(
        app.metric("busflow_rate_limit_waits_total", &[("channel", "SMS")])
            .await
            .is_some_and(|waits| waits > 0.0),
        "the waits are counted"
    );
    assert!(
        app.metric(
            "busflow_dispatch_total",
            &[
                ("trigger", "booking_confirmed"),
                ("channel", "SMS"),
                ("outcome", "sent")
            ]
        )
        .await
        .is_some_and(|sent| sent > 0.0),
        "the sends are counted"
    );
    let waits = app
        .count(&format!(
            "select count(*) from rate_limit_buckets where tenant_id = '{}'",
            app.tenant_id
        ))
        .await;
    assert_eq!(waits, 1, "one bucket: the account");
}

/// Two passengers with a phone and an email each; the first booking's SMS
/// takes the account's only slot. Returns the second notification's
/// workflow id.
pub(crate) async fn second_booking_behind_the_limit(app: &TestApp) -> String {
    let passengers = app.insert_passengers(2).await;
    sqlx::query(
        "update contacts set identifiers = identifiers || jsonb_build_object('email', 'p' || id || '@example.com')
          where tenant_id = $1",
    )
    .bind(app.tenant_id)
    .execute(&app.pool)
    .await
    .expect("emails");
    let mut workflows = Vec::new();
    for (contact, profile) in &passengers {
        let event_id = Uuid::new_v4().to_string();
        let event = booking_event(&event_id, app.tenant_id, *profile, "BF-SLOT");
        assert_eq!(app.post_event(&event).await.status(), 200);
        let workflow_id =
            busflow_workflows::names::notification_workflow_id(app.tenant_id, &event_id, *contact);
        if workflows.is_empty() {
            app.dispatched(&workflow_id, "SMS").await;
        }
        workflows.push(workflow_id);
    }
    workflows.pop().expect("two")
}

#[tokio::test]
async fn a_long_rate_limit_wait_is_a_durable_timer_not_an_activity_retry() {
    let app = TestApp::spawn().await;
    // One SMS every ~6.7 s: longer than an activity retry should wait.
    app.add_sandbox_sms_account(Some(0.15), Some(1)).await;
    app.override_booking_confirmed(&["SMS"], serde_json::json!({}))
        .await;
    let second = second_booking_behind_the_limit(&app).await;

    let outcome = app.workflow_result(&second).await.expect("sent");
    assert_eq!(outcome.delivered.expect("sent").channel.as_str(), "SMS");
    let history = app
        .temporal()
        .await
        .get_workflow_handle::<busflow_workflows::NotificationWorkflow>(&second)
        .fetch_history(temporalio_client::WorkflowFetchHistoryOptions::default())
        .to_json()
        .await
        .expect("history");
    let history = String::from_utf8_lossy(&history);
    // The timer the workflow slept on: the wait the limit asked for.
    let timer = history
        .split("TimerStartedEventAttributes")
        .nth(1)
        .and_then(|rest| rest.split("\"start_to_fire_timeout\":\"").nth(1))
        .and_then(|rest| rest.split('s').next())
        .and_then(|secs| secs.parse::<f64>().ok())
        .expect("a timer in the history");
    assert!(
        (5.0..=7.0).contains(&timer),
        "slept the limit's wait, {timer} s"
    );
}

#[tokio::test]
async fn a_rate_limit_wait_past_the_step_deadline_fails_the_message_and_falls_back() {
    let app = TestApp::spawn_with(crate::support::TestOptions {
        step_deadline: Duration::from_secs(3),
        ..Default::default()
    })
    .await;
    // One SMS a minute: the second waits far past its 3 s deadline, as a
    // spent WhatsApp tier makes it wait.
    app.add_sandbox_sms_account(Some(1.0 / 60.0), Some(1)).await;
    app.add_email_account(true).await;
    app.override_booking_confirmed(&["SMS", "EMAIL"], serde_json::json!({}))
        .await;
    let second = second_booking_behind_the_limit(&app).await;

    let email = app.dispatched(&second, "EMAIL").await;
    assert_eq!(email.status, "SENT");
    let rows = app.messages(&second).await;
    assert_eq!(
        (rows[0].channel.as_str(), rows[0].status.as_str()),
        ("SMS", "FAILED")
    );
    let reason = rows[0].failed_reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("send-rate limit") && reason.contains("step deadline"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_spent_whatsapp_tier_holds_new_recipients_and_lets_known_ones_through() {
    let app = TestApp::spawn().await;
    let account = Uuid::new_v4();
    let take = |contact: Uuid| {
        let pool = app.pool.clone();
        let tenant = app.tenant_id;
        async move {
            sqlx::query_scalar::<_, f64>("select whatsapp_tier_take($1, $2, $3, 2)")
                .bind(tenant)
                .bind(account)
                .bind(contact)
                .fetch_one(&pool)
                .await
                .expect("tier take")
        }
    };
    let (first, second, third) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(take(first).await, 0.0, "first of two");
    assert_eq!(take(second).await, 0.0, "second of two");
    let wait = take(third).await;
    assert!(
        (23.0 * 3600.0..=25.0 * 3600.0).contains(&wait),
        "a third new recipient waits for the oldest hour to leave the window: {wait} s"
    );
    assert_eq!(take(first).await, 0.0, "a recipient of the window is free");
}

/// A fan-out round books a group's slots in one statement: each send waits
/// exactly as long as if the group had booked one by one, and a send held
/// past the longest wait books nothing, so the next one takes its slot.
#[tokio::test]
async fn sends_booked_together_wait_as_if_booked_one_by_one() {
    use busflow_activities::model::{Channel, ChannelAccountId, ContactId, TenantId};
    use busflow_activities::rate_limit::{self, AccountLimits, Reservation, Send};

    let url = crate::support::services::fresh_database()
        .await
        .expect("db");
    let pool = busflow_comms::database::connect(&url, 2)
        .await
        .expect("connect");
    // 10 a second with a burst of 2; one message per 6 s to the same user.
    let limits = AccountLimits {
        max_send_rate: Some(10.0),
        send_burst: Some(2),
        messaging_tier: None,
        pair_burst: Some(1),
    };
    let group = |tenant: TenantId| -> Vec<Send<'static>> {
        let account = ChannelAccountId(Uuid::from_u128(7));
        [
            "+34600000001",
            "+34600000002",
            "+34600000001",
            "+34600000003",
        ]
        .into_iter()
        .enumerate()
        .map(|(i, recipient)| Send {
            tenant_id: tenant,
            account_id: account,
            channel: Channel::WhatsApp,
            contact_id: ContactId(Uuid::from_u128(i as u128)),
            recipient,
            cost: 1,
            business_initiated: false,
        })
        .collect()
    };
    let longest = Duration::from_secs(1);
    let together =
        rate_limit::reserve_many(&pool, &limits, &group(TenantId(Uuid::new_v4())), longest)
            .await
            .expect("book the group");
    let mut one_by_one = Vec::new();
    for send in group(TenantId(Uuid::new_v4())) {
        one_by_one.push(
            rate_limit::reserve(&pool, &limits, &send, longest)
                .await
                .expect("book one"),
        );
    }

    let secs = |r: &Reservation| match r {
        Reservation::Go(wait) => wait.as_secs_f64(),
        Reservation::Held(wait) => -wait.as_secs_f64(),
    };
    for (i, (a, b)) in together.iter().zip(&one_by_one).enumerate() {
        assert!(
            (secs(a) - secs(b)).abs() < 0.05,
            "send {i}: {a:?} together, {b:?} one by one"
        );
    }
    assert!(
        matches!(together[0], Reservation::Go(w) if w.is_zero()),
        "{together:?}"
    );
    assert!(
        matches!(together[1], Reservation::Go(w) if w.is_zero()),
        "{together:?}"
    );
    assert!(
        matches!(together[2], Reservation::Held(w) if w > Duration::from_secs(5)),
        "the same user again within 6 s is held: {together:?}"
    );
    assert!(
        matches!(together[3], Reservation::Go(w) if w > Duration::ZERO && w <= Duration::from_millis(100)),
        "the held send left its slot to the next: {together:?}"
    );
}
