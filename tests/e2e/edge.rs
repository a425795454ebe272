//! The HTTP edge keeps to itself what is not for everyone (`/metrics`
//! behind its bearer token when one is set), and lets no caller tie the
//! service up: bodies are bounded per route, a request that takes too long
//! is dropped, and beyond the concurrency limit new requests are turned
//! away at once. Every refusal is the usual JSON error.

use crate::support::{TestApp, TestOptions};
use busflow_api::edge::EdgeLimits;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

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

/// A client that sends a request's headers and then stalls before its
/// body: the request stays in flight until the server gives up on it.
async fn stalled_request(app: &TestApp) -> TcpStream {
    let address = app.base_url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream
        .write_all(
            format!(
                "POST /hasura/actions HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await
        .expect("send the headers");
    stream
}

async fn error_code(response: reqwest::Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("a JSON error body");
    let code = body["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (status, code, body)
}

#[tokio::test]
async fn an_unknown_route_a_wrong_method_and_an_oversized_body_are_named_in_json() {
    let app = TestApp::spawn_with(TestOptions {
        start_worker: false,
        ..Default::default()
    })
    .await;
    let http = reqwest::Client::new();
    let (status, code, body) = error_code(
        http.get(format!("{}/hasura/nothing-here", app.base_url))
            .send()
            .await
            .expect("GET"),
    )
    .await;
    assert_eq!((status, code.as_str()), (404, "NOT_FOUND"), "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("/hasura/nothing-here")
    );

    let (status, code, _) = error_code(
        http.get(format!("{}/hasura/events", app.base_url))
            .send()
            .await
            .expect("GET"),
    )
    .await;
    assert_eq!((status, code.as_str()), (405, "METHOD_NOT_ALLOWED"));

    // An agent's reply of 300 KiB: over what an action may carry.
    let reply = "a".repeat(300 * 1024);
    let response = app
        .post_action(
            "sendAgentMessage",
            json!({"conversation_id": uuid::Uuid::new_v4(), "body": reply, "client_message_id": "big"}),
            "dispatcher",
        )
        .await;
    let (status, code, body) = error_code(response).await;
    assert_eq!(
        (status, code.as_str()),
        (413, "PAYLOAD_TOO_LARGE"),
        "{body}"
    );
    assert_eq!(
        app.count("select count(*) from messages").await,
        0,
        "nothing written"
    );
}

#[tokio::test]
async fn a_request_that_takes_too_long_is_dropped_and_answered_503_to_try_again() {
    let app = TestApp::spawn_with(TestOptions {
        start_worker: false,
        edge: EdgeLimits {
            request_timeout: Duration::from_secs(1),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let mut stalled = stalled_request(&app).await;
    let mut answer = String::new();
    tokio::time::timeout(
        Duration::from_secs(20),
        tokio::io::AsyncReadExt::read_to_string(&mut stalled, &mut answer),
    )
    .await
    .expect("the server answers the stalled request")
    .ok();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after:"),
        "{answer}"
    );
    assert!(answer.contains("REQUEST_TIMEOUT"), "{answer}");
}

#[tokio::test]
async fn beyond_the_concurrency_limit_a_request_is_turned_away_at_once_not_queued() {
    let app = TestApp::spawn_with(TestOptions {
        start_worker: false,
        edge: EdgeLimits {
            max_concurrent_requests: 1,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let _holding_the_only_slot = stalled_request(&app).await;
    let http = reqwest::Client::new();
    let turned_away = app
        .eventually(
            "a second request is turned away",
            Duration::from_secs(20),
            || {
                let http = http.clone();
                let url = format!("{}/healthz", app.base_url);
                async move {
                    let response = http.get(url).send().await.ok()?;
                    (response.status() == 503).then_some(response)
                }
            },
        )
        .await;
    assert!(turned_away.headers().contains_key("retry-after"));
    let (_, code, _) = error_code(turned_away).await;
    assert_eq!(code, "OVERLOADED");
    // The visitors' long polls have a limit of their own.
    let poll = http
        .get(format!(
            "{}/webchat/{}/messages?wait=0",
            app.base_url, app.tenant_id
        ))
        .send()
        .await
        .expect("GET");
    assert_ne!(
        poll.status(),
        503,
        "the webchat poll is not behind the same limit"
    );
}
