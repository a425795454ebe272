//! Real WhatsApp webhooks people's messages arrive in: payloads from Meta's
//! docs and other projects' test suites (`tests/fixtures/meta/`, sources in
//! its README). Meta's word is authoritative for who wrote: no message is
//! dropped because our phone library disagrees with a `wa_id`, a user known
//! only by their business-scoped id is kept and answered by it, and what
//! truly names nobody is kept as a dead letter, counted, and replayable.

use crate::inbox::{APP_SECRET, inbox_app_on, the_conversation};
use crate::support::TestApp;
use crate::support::app::test_keys;
use crate::support::meta::{PHONE_NUMBER_ID, graph_accepted, messages_path, sign};
use serde_json::{Value, json};
use std::path::Path;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

fn fixture(name: &str) -> Value {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/meta")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&file).expect("fixture")).expect("fixture JSON")
}

/// Every change value of a webhook body.
fn values(body: &mut Value) -> Vec<&mut Value> {
    body["entry"]
        .as_array_mut()
        .into_iter()
        .flatten()
        .flat_map(|entry| entry["changes"].as_array_mut().into_iter().flatten())
        .map(|change| &mut change["value"])
        .collect()
}

/// The fixture as it would reach this test's number, now.
fn to_our_number(mut body: Value) -> Value {
    let now = chrono::Utc::now().timestamp().to_string();
    for value in values(&mut body) {
        if let Some(metadata) = value.get_mut("metadata") {
            metadata["phone_number_id"] = json!(PHONE_NUMBER_ID);
        }
        for message in value
            .get_mut("messages")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            message["timestamp"] = json!(now);
        }
    }
    body
}

async fn meta_posts(app: &TestApp, body: &Value) -> Value {
    let body = body.to_string();
    let response = app
        .post_meta_webhook(app.tenant_id, body.clone(), Some(sign(APP_SECRET, &body)))
        .await;
    let status = response.status();
    let answer: Value = response.json().await.expect("json");
    assert_eq!(status, 200, "{answer}");
    answer
}

/// Where each message id of the payload ended up: the inbox or the dead letters.
async fn whereabouts(app: &TestApp, body: &mut Value) -> Vec<(String, &'static str)> {
    let mut found = Vec::new();
    for value in values(body) {
        for message in value["messages"].as_array().cloned().unwrap_or_default() {
            let id = message["id"].as_str().unwrap_or_default().to_owned();
            let in_inbox = app
                .count(&format!(
                    "select count(*) from messages where tenant_id = '{}' and direction = 'INBOUND'
                       and external_message_id = '{id}'",
                    app.tenant_id
                ))
                .await;
            let dead = app
                .count(&format!(
                    "select count(*) from inbound_dead_letters
                      where replayed_at is null and payload -> 'messages' -> 0 ->> 'id' = '{id}'"
                ))
                .await;
            found.push((
                id,
                match (in_inbox, dead) {
                    (1, 0) => "inbox",
                    (0, 1) => "dead letter",
                    (0, 0) => "DROPPED",
                    _ => "TWICE",
                },
            ));
        }
    }
    found
}

#[tokio::test]
async fn every_real_inbound_payload_lands_in_the_inbox_or_the_dead_letters_and_none_is_dropped() {
    let app = inbox_app_on(false, None).await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/meta");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("inbound_") && n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(names.len() >= 15, "{names:?}");
    let mut dropped = Vec::new();
    for name in &names {
        let mut body = to_our_number(fixture(name));
        let answer = meta_posts(&app, &body).await;
        for (id, place) in whereabouts(&app, &mut body).await {
            if place != "inbox" && place != "dead letter" {
                dropped.push(format!("{name}: message {id} {place} ({answer})"));
            }
        }
    }
    assert!(dropped.is_empty(), "{dropped:#?}");
    // Numbers libphonenumber calls invalid are people all the same.
    let invalid_sender = app
        .count(&format!(
            "select count(*) from contacts where tenant_id = '{}' and identifiers ->> 'whatsapp' = '+972987654321'",
            app.tenant_id
        ))
        .await;
    assert_eq!(
        invalid_sender, 1,
        "the 972… sender of pywa's suite is a contact"
    );
    // Nothing in these payloads names nobody.
    assert_eq!(
        app.count("select count(*) from inbound_dead_letters").await,
        0
    );
}

#[tokio::test]
async fn a_user_known_only_by_their_whatsapp_user_id_is_kept_and_answered_by_it() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(graph_accepted("wamid.REPLY-BSUID"))
        .mount(&graph)
        .await;
    let app = inbox_app_on(true, Some(graph.uri())).await;
    let answer = meta_posts(
        &app,
        &to_our_number(fixture("inbound_bsuid_only_username.json")),
    )
    .await;
    assert_eq!(answer["received"], 1, "{answer}");
    let (identifiers, name): (Value, String) =
        sqlx::query_as("select identifiers, display_name from contacts where tenant_id = $1")
            .bind(app.tenant_id)
            .fetch_one(&app.pool)
            .await
            .expect("one contact");
    assert_eq!(
        identifiers,
        json!({"whatsapp_user_id": "US.13491208655302741918"})
    );
    assert_eq!(name, "Sheena Nelson");

    let (conversation, _) = the_conversation(&app).await;
    let reply: Value = app
        .post_action(
            "sendAgentMessage",
            json!({"conversation_id": conversation, "body": "Sí, también en azul.", "client_message_id": "bsuid-1"}),
            "dispatcher",
        )
        .await
        .json()
        .await
        .expect("json");
    let workflow_id = reply["workflow_id"].as_str().expect("started").to_owned();
    app.workflow_result(&workflow_id).await.expect("sent");
    let requests = graph.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 1, "one reply reached Meta");
    let sent: Value = serde_json::from_slice(&requests[0].body).expect("json");
    assert_eq!(sent["recipient"], "US.13491208655302741918", "{sent}");
    assert!(
        sent.get("to").is_none(),
        "no phone number to send to: {sent}"
    );
}

#[tokio::test]
async fn a_message_that_names_nobody_is_kept_counted_and_replayed_once_its_number_is_connected() {
    let app = inbox_app_on(false, None).await;
    // A second number, so a change for a third one cannot be guessed.
    let secrets = busflow_activities::secrets::ProviderSecrets {
        app_secret: Some(APP_SECRET.to_owned()),
        ..crate::support::meta::meta_secrets()
    };
    app.add_whatsapp_account_for(app.tenant_id, "200000000000002", &secrets, &test_keys())
        .await;
    let mut to_unknown = to_our_number(fixture("inbound_text.json"));
    for value in values(&mut to_unknown) {
        value["metadata"]["phone_number_id"] = json!("300000000000003");
    }
    let mut anonymous = to_our_number(fixture("inbound_text.json"));
    for value in values(&mut anonymous) {
        let message = &mut value["messages"][0];
        message["id"] = json!("wamid.NOBODY");
        message.as_object_mut().expect("message").remove("from");
    }
    for body in [&to_unknown, &to_unknown, &anonymous] {
        let answer = meta_posts(&app, body).await;
        assert_eq!(
            (answer["received"].as_u64(), answer["dead_letters"].as_u64()),
            (Some(0), Some(1)),
            "{answer}"
        );
    }
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            "busflow_inbound_dead_letters{provider=\"META_CLOUD\",reason=\"UNKNOWN_ACCOUNT\"} 1"
        ),
        "Meta's redelivery is one dead letter: {metrics}"
    );
    assert!(
        metrics.contains(
            "busflow_inbound_dead_letters{provider=\"META_CLOUD\",reason=\"NO_SENDER\"} 1"
        ),
        "{metrics}"
    );

    // The operator connects the number; the replay brings the message in.
    sqlx::query(
        "update channel_accounts set provider_config = provider_config || '{\"phone_number_id\": \"300000000000003\"}'
          where tenant_id = $1 and external_account_id = '200000000000002'",
    )
    .bind(app.tenant_id)
    .execute(&app.pool)
    .await
    .expect("connect the number");
    let gateway = app.gateway();
    let report = busflow_api::dead_letters::replay(&app.pool, &gateway, None)
        .await
        .expect("replay");
    let used: Vec<bool> = report.iter().map(|r| r.used).collect();
    assert_eq!(used, [true, false], "{report:?}");
    let id = fixture_id(&to_unknown).expect("message id");
    assert_eq!(whereabouts(&app, &mut to_unknown).await, [(id, "inbox")]);
    let again = busflow_api::dead_letters::replay(&app.pool, &gateway, None)
        .await
        .expect("replay again");
    assert_eq!(
        again.len(),
        1,
        "only the message that names nobody stays open"
    );
}

fn fixture_id(body: &Value) -> Option<String> {
    body["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test]
async fn a_message_from_a_shared_number_joins_one_conversation_by_the_documented_rule() {
    let app = inbox_app_on(false, None).await;
    let person = |name: &str, age_days: i32| {
        let pool = app.pool.clone();
        let tenant = app.tenant_id;
        let name = name.to_owned();
        async move {
            sqlx::query_scalar::<_, uuid::Uuid>(
                "insert into contacts (tenant_id, display_name, identifiers, passenger_profile_id, created_at)
                 values ($1, $2, jsonb_build_object('phone', $3::text), gen_random_uuid(), now() - make_interval(days => $4))
                 returning id",
            )
            .bind(tenant)
            .bind(name)
            .bind(crate::support::meta::PASSENGER_PHONE)
            .bind(age_days)
            .fetch_one(&pool)
            .await
            .expect("contact")
        }
    };
    let laura = person("Laura García", 30).await;
    let mateo = person("Mateo García", 10).await;
    let writes = |id: &str| {
        let mut body = to_our_number(fixture("inbound_text.json"));
        for value in values(&mut body) {
            value["contacts"][0]["wa_id"] = json!(crate::support::meta::PASSENGER_WA_ID);
            value["messages"][0]["from"] = json!(crate::support::meta::PASSENGER_WA_ID);
            value["messages"][0]["id"] = json!(id);
        }
        body
    };
    let conversation_of = |message: &'static str| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, uuid::Uuid>(
                "select c.contact_id from messages m join conversations c on c.id = m.conversation_id
                  where m.external_message_id = $1",
            )
            .bind(message)
            .fetch_one(&pool)
            .await
            .expect("the message's conversation")
        }
    };

    // Nobody was written to yet and neither is known by WhatsApp: the oldest (4), Laura.
    meta_posts(&app, &writes("wamid.SHARED-1")).await;
    assert_eq!(conversation_of("wamid.SHARED-1").await, laura);
    // Her conversation is live: it keeps the thread (1).
    meta_posts(&app, &writes("wamid.SHARED-2")).await;
    assert_eq!(conversation_of("wamid.SHARED-2").await, laura);
    // Resolved, and we last wrote to Mateo from this number: it answers him
    // (2), though Laura is the one known by the WhatsApp number (3).
    sqlx::query("update conversations set status = 'RESOLVED' where tenant_id = $1")
        .bind(app.tenant_id)
        .execute(&app.pool)
        .await
        .expect("resolve");
    sqlx::query(
        "insert into messages (tenant_id, contact_id, channel_account_id, direction, channel, status, body)
         select $1, $2, id, 'OUTBOUND', 'WHATSAPP', 'SENT', 'Tu reservación está confirmada'
           from channel_accounts where tenant_id = $1 and channel = 'WHATSAPP'",
    )
    .bind(app.tenant_id)
    .bind(mateo)
    .execute(&app.pool)
    .await
    .expect("our last message went to Mateo");
    meta_posts(&app, &writes("wamid.SHARED-3")).await;
    assert_eq!(conversation_of("wamid.SHARED-3").await, mateo);
    // His conversation is live now: the thread continues with him (1).
    meta_posts(&app, &writes("wamid.SHARED-4")).await;
    assert_eq!(conversation_of("wamid.SHARED-4").await, mateo);
    assert_eq!(
        app.count(&format!(
            "select count(*) from contacts where tenant_id = '{}'",
            app.tenant_id
        ))
        .await,
        2,
        "no third contact"
    );
}
