//! The webchat widget: a visitor gets a token and writes into the inbox.

use crate::support::TestApp;
use serde_json::{Value, json};
use uuid::Uuid;

pub use crate::support::app::WIDGET_SECRET;

/// A test app (no worker) whose tenant has a webchat widget.
pub async fn widget_tenant() -> TestApp {
    let app = TestApp::spawn_with(crate::support::TestOptions {
        start_worker: false,
        ..Default::default()
    })
    .await;
    app.add_widget_account().await;
    app
}

/// Gives the app's tenant an ACTIVE webchat account with a sealed widget secret.
pub async fn add_widget_account(app: &TestApp) {
    app.add_widget_account().await;
}

async fn visitor_says(
    app: &TestApp,
    tenant: &str,
    token: &str,
    client_id: &str,
    text: &str,
) -> reqwest::Response {
    app.http()
        .post(format!("{}/webchat/{tenant}/messages", app.base_url))
        .bearer_auth(token)
        .json(&json!({"client_message_id": client_id, "text": text, "name": "Visitante"}))
        .send()
        .await
        .expect("POST /webchat/messages")
}

#[tokio::test]
async fn a_visitor_writes_into_the_inbox_once_per_message_with_a_token_of_this_tenant() {
    let app = widget_tenant().await;
    let tenant = app.tenant_id.0.to_string();
    let session: Value = app
        .start_webchat_session()
        .await
        .json()
        .await
        .expect("json");
    let token = session["token"].as_str().expect("token").to_owned();
    let visitor = session["visitor_id"].as_str().expect("visitor").to_owned();

    let first = visitor_says(&app, &tenant, &token, "m-1", "¿Tienen wifi a bordo?").await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.expect("json");
    let again: Value = visitor_says(&app, &tenant, &token, "m-1", "¿Tienen wifi a bordo?")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(first["duplicate"], false);
    assert_eq!(again["duplicate"], true);
    assert_eq!(
        app.count(
            "select count(*) from messages where direction = 'INBOUND' and channel = 'WEBCHAT'"
        )
        .await,
        1
    );
    let identifiers: Value =
        sqlx::query_scalar("select identifiers from contacts where tenant_id = $1")
            .bind(app.tenant_id)
            .fetch_one(&app.pool)
            .await
            .expect("contact");
    assert_eq!(
        identifiers["webchat"],
        visitor.as_str(),
        "replies can reach the visitor"
    );

    let forged = format!("{visitor}.{}", "00".repeat(32));
    assert_eq!(
        visitor_says(&app, &tenant, &forged, "m-2", "hola")
            .await
            .status(),
        401
    );
    let other_tenant = Uuid::new_v4().to_string();
    assert_eq!(
        visitor_says(&app, &other_tenant, &token, "m-3", "hola")
            .await
            .status(),
        404
    );
    assert_eq!(app.count("select count(*) from messages").await, 1);
}
