//! The HTTP edge keeps to itself what is not for everyone: `/metrics`
//! behind its bearer token when one is set.

use crate::support::{TestApp, TestOptions};

#[tokio::test]
async fn metrics_behind_a_token_are_refused_to_a_scrape_without_it() {
    let app = TestApp::spawn_with(TestOptions {
        metrics_token: Some("scrape-token".into()),
        ..Default::default()
    })
    .await;
    let url = format!("{}/metrics", app.base_url);
    let http = reqwest::Client::new();
    let without = http.get(&url).send().await.expect("GET /metrics");
    assert_eq!(without.status(), 401);
    let wrong = http
        .get(&url)
        .bearer_auth("not-the-token")
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(wrong.status(), 401);
    let with = http
        .get(&url)
        .bearer_auth("scrape-token")
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(with.status(), 200);
    assert!(
        with.text()
            .await
            .expect("body")
            .contains("busflow_stuck_messages")
    );
}
