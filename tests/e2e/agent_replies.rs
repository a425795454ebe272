//! Agents reply from the inbox: once per client message id, on the
//! conversation's channel, and on WhatsApp only inside the 24 h window.

use crate::inbox::{inbox_app_on, passenger_writes, the_conversation};
use crate::support::meta::{graph_accepted, messages_path};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

#[tokio::test]
async fn a_reply_retried_with_the_same_client_id_goes_out_once_as_free_form_text() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(graph_accepted("wamid.REPLY1"))
        .mount(&graph)
        .await;
    let app = inbox_app_on(true, Some(graph.uri())).await;
    passenger_writes(&app, "wamid.Q1", "¿Hay asientos de ventana?").await;
    let (conversation, _) = the_conversation(&app).await;

    let input = json!({"conversation_id": conversation, "body": "Sí, el 14A está libre.", "client_message_id": "web-7f3a"});
    let first: Value = app
        .post_action("sendAgentMessage", input.clone(), "dispatcher")
        .await
        .json()
        .await
        .expect("json");
    let again: Value = app
        .post_action("sendAgentMessage", input, "dispatcher")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(first["result"], "started", "{first}");
    assert_eq!(again["result"], "already_started");
    assert_eq!(first["workflow_id"], again["workflow_id"]);

    let workflow_id = first["workflow_id"].as_str().expect("id").to_owned();
    let outcome = app.workflow_result(&workflow_id).await.expect("sent");
    let delivered = outcome.delivered.expect("sent");
    assert_eq!(delivered.external_message_id, "wamid.REPLY1");
    let requests = graph.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 1);
    let sent: Value = serde_json::from_slice(&requests[0].body).expect("json body");
    assert_eq!(sent["type"], "text");
    assert_eq!(sent["text"]["body"], "Sí, el 14A está libre.");

    let (direction, status, conversation_of_reply): (String, String, Option<uuid::Uuid>) =
        sqlx::query_as(
            "select direction, status, conversation_id from messages where workflow_id = $1",
        )
        .bind(&workflow_id)
        .fetch_one(&app.pool)
        .await
        .expect("one reply row");
    assert_eq!((direction.as_str(), status.as_str()), ("OUTBOUND", "SENT"));
    assert_eq!(
        conversation_of_reply,
        Some(conversation),
        "the reply is part of the thread"
    );
}

#[tokio::test]
async fn a_whatsapp_reply_after_the_24h_window_is_refused_with_window_closed() {
    let graph = MockServer::start().await;
    let app = inbox_app_on(true, Some(graph.uri())).await;
    passenger_writes(&app, "wamid.Q2", "Gracias").await;
    let (conversation, _) = the_conversation(&app).await;
    sqlx::query(
        "update conversations set last_inbound_at = now() - interval '25 hours' where id = $1",
    )
    .bind(conversation)
    .execute(&app.pool)
    .await
    .expect("a day later");

    let response = app
        .post_action(
            "sendAgentMessage",
            json!({"conversation_id": conversation, "body": "¿Algo más?", "client_message_id": "web-1"}),
            "dispatcher",
        )
        .await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["extensions"]["code"], "WINDOW_CLOSED");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("sendAgentTemplate")),
        "{body}"
    );
    assert_eq!(
        app.count("select count(*) from messages where direction = 'OUTBOUND'")
            .await,
        0
    );
    assert!(
        graph
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test]
async fn after_the_window_an_approved_template_still_reaches_the_contact() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(graph_accepted("wamid.TPL1"))
        .mount(&graph)
        .await;
    let app = inbox_app_on(true, Some(graph.uri())).await;
    passenger_writes(&app, "wamid.Q3", "Gracias").await;
    let (conversation, _) = the_conversation(&app).await;
    sqlx::query(
        "update conversations set last_inbound_at = now() - interval '3 days' where id = $1",
    )
    .bind(conversation)
    .execute(&app.pool)
    .await
    .expect("days later");

    let response = app
        .post_action(
            "sendAgentTemplate",
            json!({"conversation_id": conversation, "template_name": "trip_follow_up", "language": "es_MX",
                   "body_parameters": ["Ana", "BF-7Q2K"], "client_message_id": "web-tpl-1"}),
            "dispatcher",
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    let outcome = app
        .workflow_result(body["workflow_id"].as_str().expect("id"))
        .await
        .expect("sent");
    assert_eq!(
        outcome.delivered.expect("sent").external_message_id,
        "wamid.TPL1"
    );
    let requests = graph.received_requests().await.expect("recorded");
    let sent: Value = serde_json::from_slice(&requests[0].body).expect("json body");
    assert_eq!(sent["type"], "template");
    assert_eq!(sent["template"]["name"], "trip_follow_up");
    assert_eq!(sent["template"]["language"]["code"], "es_MX");
    assert_eq!(
        sent["template"]["components"][0]["parameters"][1]["text"],
        "BF-7Q2K"
    );
    let text: String =
        sqlx::query_scalar("select body from messages where external_message_id = 'wamid.TPL1'")
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert_eq!(
        text, "[template trip_follow_up] Ana · BF-7Q2K",
        "the thread shows what was sent"
    );
}
