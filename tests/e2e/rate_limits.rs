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
    // 50 ms of slack covers the gap between taking a slot and recording SENT.
    for i in 0..sent.len() {
        for j in i + 1..sent.len() {
            let n = (j - i + 1) as f64;
            let span = (sent[j] - sent[i]).num_milliseconds() as f64 / 1000.0;
            assert!(
                n <= f64::from(BURST) + RATE * (span + 0.05),
                "{n} sends within {span:.3}s exceed {RATE}/s (burst {BURST}): {sent:?}"
            );
        }
    }
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("busflow_rate_limit_waits_total{channel=\"SMS\"}"),
        "the waits are counted: {metrics}"
    );
    assert!(
        metrics.contains(
            "busflow_dispatch_total{trigger=\"booking_confirmed\",channel=\"SMS\",outcome=\"sent\"}"
        ),
        "{metrics}"
    );
    let waits = app
        .count(&format!(
            "select count(*) from rate_limit_buckets where tenant_id = '{}'",
            app.tenant_id
        ))
        .await;
    assert_eq!(waits, 1, "one bucket: the account");
}
