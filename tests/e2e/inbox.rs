//! The inbox: people write in, dispatchers claim, resolve and read.

use crate::support::TestApp;
use crate::support::meta::{PASSENGER_PHONE, PASSENGER_WA_ID, PHONE_NUMBER_ID, meta_secrets, sign};
use busflow_activities::model::TenantId;
use busflow_activities::secrets::ProviderSecrets;
use serde_json::{Value, json};
use uuid::Uuid;

/// A Meta webhook carrying one text message from the passenger.
fn inbound_webhook(wamid: &str, text: &str, at: i64) -> String {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": "Ana López"}, "wa_id": PASSENGER_WA_ID}],
            "messages": [{"from": PASSENGER_WA_ID, "id": wamid, "timestamp": at.to_string(),
                          "type": "text", "text": {"body": text}}]
        }}]}]
    })
    .to_string()
}

pub(crate) async fn passenger_writes(app: &TestApp, wamid: &str, text: &str) -> Value {
    let body = inbound_webhook(wamid, text, chrono::Utc::now().timestamp());
    let secret = APP_SECRET;
    let response = app
        .post_meta_webhook(app.tenant_id, body.clone(), Some(sign(secret, &body)))
        .await;
    let status = response.status();
    let answer: Value = response.json().await.expect("json");
    assert_eq!(status, 200, "{answer}");
    answer
}

pub(crate) async fn the_conversation(app: &TestApp) -> (Uuid, String) {
    sqlx::query_as("select id, status from conversations where tenant_id = $1")
        .bind(app.tenant_id)
        .fetch_one(&app.pool)
        .await
        .expect("one conversation")
}

async fn inbox_app() -> TestApp {
    inbox_app_with(false).await
}

/// A tenant with a WhatsApp number people write to (`worker` runs the snooze timers).
pub(crate) async fn inbox_app_with(worker: bool) -> TestApp {
    inbox_app_on(worker, None).await
}

/// The same, sending WhatsApp through the Graph fake at `graph`.
pub(crate) async fn inbox_app_on(worker: bool, graph: Option<String>) -> TestApp {
    let app = TestApp::spawn_with(crate::support::TestOptions {
        start_worker: worker,
        meta_graph_url: graph,
        ..Default::default()
    })
    .await;
    let secrets = ProviderSecrets {
        app_secret: Some(APP_SECRET.to_owned()),
        ..meta_secrets()
    };
    app.add_whatsapp_account(&secrets).await;
    app
}

pub(crate) const APP_SECRET: &str = "inbox-test-app-secret";

#[tokio::test]
async fn a_whatsapp_message_opens_a_conversation_once_however_often_meta_delivers_it() {
    let app = inbox_app().await;
    let first = passenger_writes(&app, "wamid.IN1", "¿Puedo cambiar mi asiento?").await;
    let again = passenger_writes(&app, "wamid.IN1", "¿Puedo cambiar mi asiento?").await;
    assert_eq!(
        (first["received"].as_u64(), again["received"].as_u64()),
        (Some(1), Some(0))
    );

    let (identifiers, name): (Value, String) =
        sqlx::query_as("select identifiers, display_name from contacts where tenant_id = $1")
            .bind(app.tenant_id)
            .fetch_one(&app.pool)
            .await
            .expect("a contact from the profile");
    assert_eq!(identifiers["whatsapp"], PASSENGER_PHONE);
    assert_eq!(name, "Ana López");
    let (conversation, status) = the_conversation(&app).await;
    assert_eq!(status, "OPEN");
    let (direction, msg_status, body): (String, String, String) =
        sqlx::query_as("select direction, status, body from messages where conversation_id = $1")
            .bind(conversation)
            .fetch_one(&app.pool)
            .await
            .expect("exactly one message");
    assert_eq!(
        (direction.as_str(), msg_status.as_str(), body.as_str()),
        ("INBOUND", "DELIVERED", "¿Puedo cambiar mi asiento?")
    );
    let last_inbound: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("select last_inbound_at from conversations where id = $1")
            .bind(conversation)
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert!(last_inbound.is_some());
}

#[tokio::test]
async fn a_new_message_reopens_a_resolved_conversation() {
    let app = inbox_app().await;
    passenger_writes(&app, "wamid.R1", "Hola").await;
    let (conversation, _) = the_conversation(&app).await;
    let resolved = app
        .post_action(
            "resolveConversation",
            json!({"conversation_id": conversation}),
            "dispatcher",
        )
        .await;
    assert_eq!(resolved.status(), 200);
    assert_eq!(the_conversation(&app).await.1, "RESOLVED");

    passenger_writes(&app, "wamid.R2", "Otra pregunta").await;
    let (same, status) = the_conversation(&app).await;
    assert_eq!(
        (same, status.as_str()),
        (conversation, "OPEN"),
        "the same conversation, reopened"
    );
    assert_eq!(app.count("select count(*) from messages").await, 2);
}

#[tokio::test]
async fn of_twenty_concurrent_claims_exactly_one_wins() {
    let app = inbox_app().await;
    passenger_writes(&app, "wamid.C1", "Ayuda").await;
    let (conversation, _) = the_conversation(&app).await;

    let claims = (0..20).map(|i| {
        let app = &app;
        async move {
            let session = json!({"x-hasura-role": "dispatcher", "x-hasura-user-id": format!("agent-{i}"),
                                 "x-hasura-tenant-id": app.tenant_id.0.to_string()});
            let response = app
                .post_action_as("claimConversation", json!({"conversation_id": conversation}), session)
                .await;
            let status = response.status().as_u16();
            let body: Value = response.json().await.expect("json");
            (status, body)
        }
    });
    let results = futures::future::join_all(claims).await;
    let winners: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for (status, body) in results.iter().filter(|(s, _)| *s != 200) {
        assert_eq!(*status, 409);
        assert_eq!(body["extensions"]["code"], "ALREADY_CLAIMED");
    }
    let assignee: Option<String> =
        sqlx::query_scalar("select assigned_to from conversations where id = $1")
            .bind(conversation)
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert_eq!(assignee.as_deref(), winners[0]["assigned_to"].as_str());
}

#[tokio::test]
async fn only_an_admin_reassigns_and_nobody_reaches_another_tenant() {
    let app = inbox_app().await;
    passenger_writes(&app, "wamid.A1", "Hola").await;
    let (conversation, _) = the_conversation(&app).await;

    let by_dispatcher = app
        .post_action(
            "reassignConversation",
            json!({"conversation_id": conversation, "assignee_id": "agent-7"}),
            "dispatcher",
        )
        .await;
    assert_eq!(by_dispatcher.status(), 403);
    let by_admin = app
        .post_action(
            "reassignConversation",
            json!({"conversation_id": conversation, "assignee_id": "agent-7"}),
            "admin",
        )
        .await;
    assert_eq!(by_admin.status(), 200);

    let other_tenant = TenantId(Uuid::new_v4());
    for action in [
        "claimConversation",
        "resolveConversation",
        "markConversationRead",
    ] {
        let session = json!({"x-hasura-role": "admin", "x-hasura-user-id": "intruder",
                             "x-hasura-tenant-id": other_tenant.0.to_string()});
        let response = app
            .post_action_as(action, json!({"conversation_id": conversation}), session)
            .await;
        assert_eq!(response.status(), 404, "{action} from another tenant");
    }
    let (assignee, status): (Option<String>, String) =
        sqlx::query_as("select assigned_to, status from conversations where id = $1")
            .bind(conversation)
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert_eq!(
        (assignee.as_deref(), status.as_str()),
        (Some("agent-7"), "OPEN"),
        "nothing written"
    );
    assert_eq!(
        app.count("select count(*) from conversation_read_cursors")
            .await,
        0
    );
}

#[tokio::test]
async fn unread_counts_move_with_inbound_messages_and_each_agents_cursor() {
    let app = inbox_app().await;
    passenger_writes(&app, "wamid.U1", "uno").await;
    passenger_writes(&app, "wamid.U2", "dos").await;
    let (conversation, _) = the_conversation(&app).await;
    let contact: Uuid = sqlx::query_scalar("select contact_id from conversations where id = $1")
        .bind(conversation)
        .fetch_one(&app.pool)
        .await
        .expect("contact");
    // An agent's reply never counts as unread.
    sqlx::query(
        "insert into messages (tenant_id, conversation_id, contact_id, direction, channel, status, body)
         values ($1, $2, $3, 'OUTBOUND', 'WHATSAPP', 'SENT', 'respuesta')",
    )
    .bind(app.tenant_id)
    .bind(conversation)
    .bind(contact)
    .execute(&app.pool)
    .await
    .expect("outbound");

    let unread = |agent: &'static str| {
        let app = &app;
        async move {
            let session = json!({"x-hasura-role": "dispatcher", "x-hasura-user-id": agent,
                                 "x-hasura-tenant-id": app.tenant_id.0.to_string()});
            let count: i32 = sqlx::query_scalar("select conversation_unread_count(c, $2::json) from conversations c where c.id = $1")
                .bind(conversation)
                .bind(&session)
                .fetch_one(&app.pool)
                .await
                .expect("computed field");
            let badge: i32 =
                sqlx::query_scalar("select unread_conversations from inbox_badge($1::json)")
                    .bind(&session)
                    .fetch_one(&app.pool)
                    .await
                    .expect("badge");
            (count, badge)
        }
    };
    assert_eq!(unread("agent-1").await, (2, 1));

    let session = json!({"x-hasura-role": "dispatcher", "x-hasura-user-id": "agent-1",
                         "x-hasura-tenant-id": app.tenant_id.0.to_string()});
    let read = app
        .post_action_as(
            "markConversationRead",
            json!({"conversation_id": conversation}),
            session,
        )
        .await;
    assert_eq!(read.status(), 200);
    assert_eq!(unread("agent-1").await, (0, 0));
    assert_eq!(
        unread("agent-2").await,
        (2, 1),
        "each agent has their own cursor"
    );

    passenger_writes(&app, "wamid.U3", "tres").await;
    assert_eq!(unread("agent-1").await, (1, 1));
}
