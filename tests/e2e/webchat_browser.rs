//! The webchat widget in a real browser (headless Chromium on the demo page):
//! a visitor writes from the widget, an agent answers from the inbox, and the
//! answer appears in the visitor's widget — once — and is marked READ when
//! the visitor can see it, not before.

use crate::support::TestApp;
use crate::support::browser::Browser;
use crate::webchat::{WIDGET_SECRET, add_widget_account};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use uuid::Uuid;

const QUESTION: &str = "¿Puedo llevar una bicicleta en el autobús de las 07:30?";
const REPLY: &str = "Sí: va en la bodega, sin costo, si la traes embalada. <b>¡Buen viaje!</b>";

/// How many agent messages on the page read exactly `arguments[0]`.
const OUTBOUND_WITH_TEXT: &str = "var text = arguments[0];
    return Array.from(document.querySelectorAll('.bf-message.bf-outbound .bf-body'))
        .filter(function (body) { return body.textContent === text; }).length;";

#[tokio::test]
async fn an_agents_reply_reaches_the_visitors_widget_once_and_is_marked_read() {
    let app = TestApp::spawn().await;
    add_widget_account(&app).await;
    let tenant = app.tenant_id.0;
    let browser = Browser::launch().await;
    browser.goto(&demo_page(&app)).await;

    // The visitor opens the chat and asks.
    let launcher = browser
        .wait_for("#busflow-webchat #bf-launcher", Duration::from_secs(10))
        .await;
    browser.click(&launcher).await;
    let input = browser.wait_for("#bf-input", Duration::from_secs(5)).await;
    browser.send_keys(&input, QUESTION).await;
    let send = browser.wait_for("#bf-send", Duration::from_secs(5)).await;
    browser.click(&send).await;
    let question = browser
        .wait_for(
            ".bf-message.bf-inbound[data-message-id]:not(.bf-pending)",
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(
        browser.text(&question).await,
        QUESTION,
        "the question as typed"
    );
    let question_id = browser
        .attribute(&question, "data-message-id")
        .await
        .expect("the question's id");
    let conversation: Uuid = sqlx::query_scalar(
        "select conversation_id from messages
          where tenant_id = $1 and id = $2::uuid and direction = 'INBOUND' and channel = 'WEBCHAT'
            and body = $3",
    )
    .bind(tenant)
    .bind(&question_id)
    .bind(QUESTION)
    .fetch_one(&app.pool)
    .await
    .expect("the question reached the inbox, in a conversation");

    // The agent claims the conversation and answers from the inbox.
    let reply = agent_answers(&app, conversation, REPLY, "inbox-bici-1").await;
    browser
        .wait_until(
            "the reply on the visitor's page",
            Duration::from_secs(30),
            || async { (shown_with_text(&browser, REPLY).await > 0).then_some(()) },
        )
        .await;
    let latency = reply.answered.elapsed();
    let (reply_id, sent_at) = reply.row(&app).await;
    eprintln!(
        "webchat: the reply appeared on the page {} ms after sendAgentMessage answered \
         (stored as sent by the worker after {} ms)",
        latency.as_millis(),
        sent_at.map_or_else(
            || "?".to_owned(),
            |at| (at - reply.answered_at).num_milliseconds().to_string()
        ),
    );

    // The panel is open on a visible page: the visitor has read it.
    until_status(&app, reply_id, "READ").await;
    browser
        .wait_for(
            &format!(".bf-message.bf-outbound[data-message-id='{reply_id}'][data-status='READ']"),
            Duration::from_secs(5),
        )
        .await;

    // What reached the person: the question once, the reply once, as text.
    assert_eq!(
        shown_with_text(&browser, REPLY).await,
        1,
        "the reply is shown exactly once"
    );
    assert_eq!(
        browser.find_all(".bf-message.bf-outbound").await.len(),
        1,
        "nothing else from the agent"
    );
    assert_eq!(
        browser.find_all(".bf-message.bf-inbound").await.len(),
        1,
        "the question is shown once"
    );
    assert!(
        browser.find("#bf-messages b").await.is_none(),
        "the reply's markup is shown as text, never as HTML"
    );
    assert_eq!(
        app.count(
            "select count(*) from messages where channel = 'WEBCHAT' and direction = 'INBOUND'"
        )
        .await,
        1,
        "the question was recorded once"
    );
}

#[tokio::test]
async fn a_returning_visitor_with_an_expired_token_keeps_the_thread_and_reads_replies_on_opening() {
    let app = TestApp::spawn().await;
    add_widget_account(&app).await;
    let tenant = app.tenant_id.0;

    // Yesterday the visitor asked; their token has expired since.
    let session: Value = app
        .start_webchat_session()
        .await
        .json()
        .await
        .expect("json");
    let visitor = session["visitor_id"].as_str().expect("visitor").to_owned();
    let asked: Value = app
        .http()
        .post(format!("{}/webchat/{tenant}/messages", app.base_url))
        .bearer_auth(session["token"].as_str().expect("token"))
        .json(&json!({"client_message_id": "ayer-1", "text": QUESTION}))
        .send()
        .await
        .expect("the visitor writes")
        .json()
        .await
        .expect("json");
    let conversation: Uuid = asked["conversation_id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("a conversation in {asked}"));
    let expired = busflow_api::webchat::token::issue(
        WIDGET_SECRET,
        app.tenant_id,
        &visitor,
        Utc::now() - chrono::Duration::hours(2),
    );
    let browser = Browser::launch().await;
    browser.goto(&demo_page(&app)).await;
    browser
        .execute(
            "localStorage.setItem(arguments[0], JSON.stringify({visitor_id: arguments[1], token: arguments[2]}));",
            vec![
                json!(format!("busflow-webchat:{tenant}")),
                json!(visitor),
                json!(expired),
            ],
        )
        .await;
    browser.goto(&demo_page(&app)).await;

    // The widget renews the token (same visitor) and shows the thread, closed.
    browser
        .wait_for(
            &format!(
                ".bf-message.bf-inbound[data-message-id='{}']",
                asked["message_id"].as_str().expect("message id")
            ),
            Duration::from_secs(15),
        )
        .await;
    let stored = browser
        .execute(
            "return JSON.parse(localStorage.getItem(arguments[0]));",
            vec![json!(format!("busflow-webchat:{tenant}"))],
        )
        .await;
    assert_eq!(stored["visitor_id"], visitor.as_str(), "the same visitor");
    assert_ne!(stored["token"], expired.as_str(), "a renewed token");

    // The agent answers while the panel is closed: delivered, not read.
    let reply = agent_answers(&app, conversation, REPLY, "inbox-bici-2").await;
    let shown = browser
        .wait_for(
            ".bf-message.bf-outbound[data-message-id]",
            Duration::from_secs(30),
        )
        .await;
    let (reply_id, _) = reply.row(&app).await;
    assert_eq!(
        browser.attribute(&shown, "data-message-id").await,
        Some(reply_id.to_string())
    );
    until_status(&app, reply_id, "DELIVERED").await;
    assert_ne!(
        browser.attribute(&shown, "data-status").await.as_deref(),
        Some("READ")
    );
    let badge = browser
        .wait_for("#bf-launcher .bf-badge", Duration::from_secs(5))
        .await;
    assert_eq!(browser.text(&badge).await, "1", "one unread reply");

    // The visitor opens the panel: now it is read.
    let launcher = browser
        .wait_for("#bf-launcher", Duration::from_secs(5))
        .await;
    browser.click(&launcher).await;
    until_status(&app, reply_id, "READ").await;
    browser
        .wait_for(
            &format!(".bf-message.bf-outbound[data-message-id='{reply_id}'][data-status='READ']"),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(shown_with_text(&browser, REPLY).await, 1, "shown once");
}

fn demo_page(app: &TestApp) -> String {
    format!("{}/webchat/{}/demo", app.base_url, app.tenant_id.0)
}

async fn shown_with_text(browser: &Browser, text: &str) -> u64 {
    browser
        .execute(OUTBOUND_WITH_TEXT, vec![json!(text)])
        .await
        .as_u64()
        .unwrap_or(0)
}

/// An agent's reply, as the inbox sent it.
struct AgentReply {
    workflow_id: String,
    /// When `sendAgentMessage` answered.
    answered: Instant,
    answered_at: DateTime<Utc>,
}

impl AgentReply {
    /// The reply's message id and when the worker stored it as sent.
    async fn row(&self, app: &TestApp) -> (Uuid, Option<DateTime<Utc>>) {
        let (id, channel, sent_at): (Uuid, String, Option<DateTime<Utc>>) = sqlx::query_as(
            "select id, channel, sent_at from messages where workflow_id = $1 and direction = 'OUTBOUND'",
        )
        .bind(&self.workflow_id)
        .fetch_one(&app.pool)
        .await
        .expect("the reply's row");
        assert_eq!(
            channel, "WEBCHAT",
            "answered on the channel it was asked on"
        );
        (id, sent_at)
    }
}

/// A dispatcher claims the conversation and answers in it.
async fn agent_answers(
    app: &TestApp,
    conversation: Uuid,
    body: &str,
    client_message_id: &str,
) -> AgentReply {
    let claimed = app
        .post_action(
            "claimConversation",
            json!({"conversation_id": conversation}),
            "dispatcher",
        )
        .await;
    assert_eq!(claimed.status(), 200, "claimConversation");
    let sent = app
        .post_action(
            "sendAgentMessage",
            json!({"conversation_id": conversation, "body": body, "client_message_id": client_message_id}),
            "dispatcher",
        )
        .await;
    let answered = Instant::now();
    let answered_at = Utc::now();
    assert_eq!(sent.status(), 200, "sendAgentMessage");
    let sent: Value = sent.json().await.expect("json");
    AgentReply {
        workflow_id: sent["workflow_id"]
            .as_str()
            .unwrap_or_else(|| panic!("a workflow id in {sent}"))
            .to_owned(),
        answered,
        answered_at,
    }
}

async fn until_status(app: &TestApp, message: Uuid, status: &str) {
    app.eventually(
        &format!("the reply is {status}"),
        Duration::from_secs(20),
        || async {
            let now: String = sqlx::query_scalar("select status from messages where id = $1")
                .bind(message)
                .fetch_one(&app.pool)
                .await
                .ok()?;
            (now == status).then_some(())
        },
    )
    .await;
}
