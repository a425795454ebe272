//! A dependency that goes away delays what Hasura sends, never loses it:
//! the service answers 503 with `Retry-After`, Hasura keeps the event in its
//! event log and sends it again, and the person is told once it is back.

use crate::support::services;
use crate::support::story::{Story, triggers};
use crate::support::{TestApp, TestOptions};
use busflow_comms::dev::processes::free_port;
use std::time::Duration;

#[tokio::test]
async fn a_booking_confirmed_while_temporal_is_down_reaches_its_person_once_temporal_is_back() {
    let port = free_port().expect("port");
    let app = TestApp::spawn_with(TestOptions {
        temporal_address: Some(format!("127.0.0.1:{port}")),
        start_worker: false,
        ..TestOptions::default()
    })
    .await;
    app.add_email_account(true).await;
    app.add_sms_account().await;
    let mut story = Story::of(app);
    let ana = story.passenger("Ana López", "es-MX").await;

    // Temporal comes back on the address the service uses while Hasura keeps
    // sending the trip's and the booking's events.
    let back = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // Detached: it forwards for the rest of the test.
        drop(services::forward_port(port, services::shared().temporal_address.clone()).await);
    };
    let writes = async {
        let trip = story.trip(None).await;
        story.book(&ana, &trip, "BF-OUTAGE").await;
    };
    tokio::join!(back, writes);
    story.app.spawn_second_worker();
    story.settle().await;

    let received = story.received_by(&ana).await;
    assert_eq!(triggers(&received), ["booking_confirmed"], "{received:?}");
    let refused: Vec<(u16, Option<u64>)> = story
        .refusals()
        .into_iter()
        .filter(|(status, _)| *status == 503)
        .collect();
    assert!(!refused.is_empty(), "Temporal was down: Hasura was refused");
    assert!(
        refused.iter().all(|(_, after)| *after == Some(30)),
        "every refusal asks Hasura to come back in 30 s, as retry_conf waits: {refused:?}"
    );
}
