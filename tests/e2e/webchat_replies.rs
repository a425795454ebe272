//! The visitor hears back: the widget's long poll receives agent replies and
//! notifications, its fetch is their delivery and its acknowledgement their
//! read, a message no widget fetches falls back, and tokens expire and renew.

use crate::support::TestApp;
use crate::webchat::{WIDGET_SECRET, add_widget_account};
use busflow_activities::model::TenantId;
use busflow_api::webchat::token;
use chrono::Utc;
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

/// A visitor's widget, speaking the widget's API.
struct Widget<'a> {
    app: &'a TestApp,
    token: String,
    visitor: String,
}

impl<'a> Widget<'a> {
    async fn open(app: &'a TestApp) -> Widget<'a> {
        let session = new_session(app).await;
        assert_eq!(session.status(), 200);
        let session: Value = session.json().await.expect("session");
        Widget {
            app,
            token: session["token"].as_str().expect("token").to_owned(),
            visitor: session["visitor_id"].as_str().expect("visitor").to_owned(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/webchat/{}/{path}",
            self.app.base_url, self.app.tenant_id
        )
    }

    async fn says(&self, client_id: &str, text: &str) -> Value {
        let answer = self
            .app
            .http()
            .post(self.url("messages"))
            .bearer_auth(&self.token)
            .json(&json!({"client_message_id": client_id, "text": text}))
            .send()
            .await
            .expect("POST messages");
        assert_eq!(answer.status(), 200);
        answer.json().await.expect("json")
    }

    async fn fetch(&self, after: &str, wait_secs: u64) -> reqwest::Response {
        self.app
            .http()
            .get(format!(
                "{}?after={after}&wait={wait_secs}",
                self.url("messages")
            ))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(40))
            .send()
            .await
            .expect("GET messages")
    }

    async fn thread(&self, after: &str, wait_secs: u64) -> Value {
        let answer = self.fetch(after, wait_secs).await;
        assert_eq!(answer.status(), 200);
        answer.json().await.expect("json")
    }

    async fn read(&self, ids: &[&str]) -> Value {
        self.app
            .http()
            .post(self.url("read"))
            .bearer_auth(&self.token)
            .json(&json!({"message_ids": ids}))
            .send()
            .await
            .expect("POST read")
            .json()
            .await
            .expect("json")
    }
}

async fn new_session(app: &TestApp) -> reqwest::Response {
    app.start_webchat_session().await
}

async fn status_of(app: &TestApp, message: &str) -> String {
    sqlx::query_scalar("select status from messages where id = $1::uuid")
        .bind(message)
        .fetch_one(&app.pool)
        .await
        .expect("message")
}

#[tokio::test]
async fn an_agent_reply_reaches_the_waiting_widget_at_once_and_is_read_when_shown() {
    let app = TestApp::spawn().await;
    add_widget_account(&app).await;
    let widget = Widget::open(&app).await;
    let wrote = widget.says("m-1", "¿Sale a tiempo el de las 8?").await;
    let conversation = wrote["conversation_id"].as_str().expect("conversation");

    let own = widget.thread("", 0).await;
    assert_eq!(own["messages"].as_array().expect("messages").len(), 1);
    assert_eq!(own["messages"][0]["direction"], "INBOUND");
    let cursor = own["cursor"].as_str().expect("cursor").to_owned();

    // The widget waits; the agent claims and answers.
    let waiting = widget.fetch(&cursor, 25);
    let agent = async {
        assert_eq!(
            app.post_action(
                "claimConversation",
                json!({"conversation_id": conversation}),
                "dispatcher"
            )
            .await
            .status(),
            200
        );
        let reply = app
            .post_action(
                "sendAgentMessage",
                json!({"conversation_id": conversation, "body": "Sí, sale a las 8:00.", "client_message_id": "r-1"}),
                "dispatcher",
            )
            .await;
        assert_eq!(reply.status(), 200);
        std::time::Instant::now()
    };
    let (answer, replied_at) = tokio::join!(waiting, agent);
    assert_eq!(answer.status(), 200);
    let news: Value = answer.json().await.expect("json");
    eprintln!(
        "the reply reached the waiting widget {:?} after the action answered",
        replied_at.elapsed()
    );
    let messages = news["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1, "{news}");
    assert_eq!(messages[0]["direction"], "OUTBOUND");
    assert_eq!(messages[0]["body"], "Sí, sale a las 8:00.");
    assert_eq!(messages[0]["status"], "DELIVERED", "fetched is delivered");
    let reply = messages[0]["id"].as_str().expect("id").to_owned();
    assert_eq!(status_of(&app, &reply).await, "DELIVERED");

    assert_eq!(widget.read(&[&reply]).await["read"], 1);
    assert_eq!(status_of(&app, &reply).await, "READ");
    assert_eq!(widget.read(&[&reply]).await["read"], 0, "read once");

    // Reopened later, the widget shows the whole thread in order, once.
    let thread = widget.thread("", 0).await;
    let bodies: Vec<&str> = thread["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["body"].as_str().expect("body"))
        .collect();
    assert_eq!(
        bodies,
        ["¿Sale a tiempo el de las 8?", "Sí, sale a las 8:00."]
    );
    let quiet = widget
        .thread(thread["cursor"].as_str().expect("cursor"), 1)
        .await;
    assert_eq!(quiet["messages"], json!([]), "nothing new: an empty answer");
    assert_eq!(quiet["cursor"], thread["cursor"]);
}

#[tokio::test]
async fn a_webchat_message_no_widget_fetches_falls_back_to_email() {
    let app = TestApp::spawn().await;
    app.add_email_account(true).await;
    add_widget_account(&app).await;
    sqlx::query("update tenant_settings set trigger_overrides = $2 where tenant_id = $1")
        .bind(app.tenant_id)
        .bind(json!({"booking_confirmed": {"chain": ["WEBCHAT", "EMAIL"], "timeouts": {"WEBCHAT": 2}}}))
        .execute(&app.pool)
        .await
        .expect("override");
    let profile = Uuid::new_v4();
    let contact = app
        .upsert_passenger(profile, "Ana López", &app.recipient("ana"), "es-MX")
        .await;
    sqlx::query(
        "update contacts set identifiers = identifiers || '{\"webchat\": \"gone0visitor\"}' where id = $1",
    )
    .bind(contact.0)
    .execute(&app.pool)
    .await
    .expect("visitor");

    let workflow_id = app.confirm_booking(profile, contact, "BF-WC").await;
    let outcome = app.workflow_result(&workflow_id).await.expect("delivered");
    assert_eq!(
        outcome.attempts[0], "WEBCHAT: no delivery receipt within 2s",
        "stored for a widget nobody has open is not delivered"
    );
    assert_eq!(outcome.delivered.expect("sent").channel.as_str(), "EMAIL");
    assert_eq!(app.sent_emails().await.len(), 1);
}

#[tokio::test]
async fn an_expired_token_is_refused_and_renewed_for_the_same_visitor() {
    let app = TestApp::spawn_with(crate::support::TestOptions {
        start_worker: false,
        ..Default::default()
    })
    .await;
    add_widget_account(&app).await;
    let tenant = app.tenant_id;
    let mint = |expires_in: chrono::Duration| {
        token::issue(WIDGET_SECRET, tenant, "visitor42", Utc::now() + expires_in)
    };
    let expired = Widget {
        app: &app,
        token: mint(-chrono::Duration::hours(1)),
        visitor: "visitor42".to_owned(),
    };
    let refused = expired.fetch("", 0).await;
    assert_eq!(refused.status(), 401);
    let refused: Value = refused.json().await.expect("json");
    assert_eq!(refused["extensions"]["code"], "TOKEN_EXPIRED");

    let renew = |presented: String| {
        let app = &app;
        async move {
            app.http()
                .post(format!(
                    "{}/webchat/{}/sessions/renew",
                    app.base_url, tenant
                ))
                .bearer_auth(presented)
                .send()
                .await
                .expect("renew")
        }
    };
    let renewed: Value = renew(expired.token.clone())
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(renewed["visitor_id"], "visitor42", "the same visitor");
    let renewed = Widget {
        app: &app,
        token: renewed["token"].as_str().expect("token").to_owned(),
        visitor: "visitor42".to_owned(),
    };
    assert_eq!(renewed.fetch("", 0).await.status(), 200);
    assert_eq!(renewed.visitor, "visitor42");

    let long_gone = renew(mint(-chrono::Duration::days(31))).await;
    assert_eq!(long_gone.status(), 401, "renewed only for 30 days");
    let other_tenant = token::issue(
        WIDGET_SECRET,
        TenantId(Uuid::new_v4()),
        "visitor42",
        Utc::now() + chrono::Duration::hours(1),
    );
    let forged: Value = renew(other_tenant).await.json().await.expect("json");
    assert_eq!(forged["extensions"]["code"], "INVALID_TOKEN");
}

#[tokio::test]
async fn one_address_starting_session_after_session_is_told_to_wait() {
    let app = TestApp::spawn_with(crate::support::TestOptions {
        start_worker: false,
        ..Default::default()
    })
    .await;
    add_widget_account(&app).await;
    let burst = busflow_api::webchat::WebchatSettings::default()
        .sessions_per_address
        .1;
    for _ in 0..burst {
        assert_eq!(new_session(&app).await.status(), 200);
    }
    let refused = new_session(&app).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let refused: Value = refused.json().await.expect("json");
    assert_eq!(refused["extensions"]["code"], "RATE_LIMITED");
}
