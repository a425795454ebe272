//! An inbox that shows the whole story: what the customer was sent is in the
//! thread, next to what they wrote; a notification's thread waits resolved
//! until the customer answers; unread counts follow what the agent saw.

use crate::inbox::{APP_SECRET, inbox_app_on, passenger_writes};
use crate::snooze::snooze;
use crate::support::meta::{PASSENGER_WA_ID, PHONE_NUMBER_ID, graph_accepted, messages_path, sign};
use crate::support::{TestApp, TestOptions, booking_event};
use busflow_activities::model::{ChannelAccountId, ContactId, MessageId};
use busflow_activities::store::conversations::ConversationRefs;
use busflow_activities::store::messages::{
    NewOutboundMessage, insert_outbound_queued, insert_outbound_queued_many,
};
use busflow_activities::triggers::Trigger;
use busflow_workflows::BatchNotificationWorkflow;
use busflow_workflows::names::{fanout_workflow_id, notification_workflow_id};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::time::Duration;
use temporalio_client::WorkflowGetResultOptions;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

/// A conversation as the inbox shows it.
#[derive(Debug, PartialEq, Eq, sqlx::FromRow)]
struct Thread {
    id: Uuid,
    contact_id: Uuid,
    status: String,
    assigned_to: Option<String>,
    snoozed_until: Option<DateTime<Utc>>,
    booking_id: Option<Uuid>,
    trip_id: Option<Uuid>,
    invoice_id: Option<Uuid>,
}

async fn threads(app: &TestApp) -> Vec<Thread> {
    sqlx::query_as(
        "select id, contact_id, status, assigned_to, snoozed_until, booking_id, trip_id, invoice_id
           from conversations where tenant_id = $1 order by created_at, id",
    )
    .bind(app.tenant_id)
    .fetch_all(&app.pool)
    .await
    .expect("conversations")
}

async fn thread_of_message(app: &TestApp, workflow_id: &str) -> Option<Uuid> {
    sqlx::query_scalar("select conversation_id from messages where workflow_id = $1")
        .bind(workflow_id)
        .fetch_one(&app.pool)
        .await
        .expect("the notification's message")
}

/// A tenant people write to on WhatsApp, whose booking confirmations go out
/// there as an approved template (the Graph fake accepts every send).
async fn whatsapp_tenant() -> (TestApp, MockServer) {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(graph_accepted("wamid.CONFIRMATION"))
        .mount(&graph)
        .await;
    let app = inbox_app_on(true, Some(graph.uri())).await;
    app.add_whatsapp_template().await;
    (app, graph)
}

/// Ana, known to the bookings context (and reachable on WhatsApp by her
/// phone, the number `passenger_writes` writes from).
async fn ana(app: &TestApp) -> (Uuid, ContactId) {
    let profile = Uuid::new_v4();
    let contact = app
        .upsert_passenger(profile, "Ana López", &app.recipient("ana"), "es-MX")
        .await;
    (profile, contact)
}

/// Hasura reports Ana's booking confirmed; returns the notification's
/// workflow id and the booking row.
async fn confirm(app: &TestApp, profile: Uuid, contact: ContactId) -> (String, Value) {
    let event_id = Uuid::new_v4().to_string();
    let event = booking_event(&event_id, app.tenant_id, profile, "BF-THREAD");
    assert_eq!(app.post_event(&event).await.status(), 200);
    let workflow_id = notification_workflow_id(app.tenant_id, &event_id, contact);
    app.dispatched(&workflow_id, "WHATSAPP").await;
    (workflow_id, event["event"]["data"]["new"].clone())
}

fn uuid_at(row: &Value, key: &str) -> Uuid {
    row[key].as_str().and_then(|s| s.parse().ok()).expect(key)
}

#[tokio::test]
async fn a_booking_confirmation_starts_a_resolved_thread_about_it_that_the_reply_reopens() {
    let (app, _graph) = whatsapp_tenant().await;
    let (profile, contact) = ana(&app).await;

    let (workflow_id, booking) = confirm(&app, profile, contact).await;

    let started = threads(&app).await;
    assert_eq!(
        started,
        vec![Thread {
            id: thread_of_message(&app, &workflow_id)
                .await
                .expect("the confirmation is in a conversation"),
            contact_id: contact.0,
            status: "RESOLVED".into(),
            assigned_to: None,
            snoozed_until: None,
            booking_id: Some(uuid_at(&booking, "id")),
            trip_id: Some(uuid_at(&booking, "trip_id")),
            invoice_id: None,
        }],
        "one thread, nobody's work, about the booking"
    );
    let session = json!({"x-hasura-role": "dispatcher", "x-hasura-user-id": "agent-1",
                         "x-hasura-tenant-id": app.tenant_id.0.to_string()});
    let badge: i32 = sqlx::query_scalar("select unread_conversations from inbox_badge($1::json)")
        .bind(&session)
        .fetch_one(&app.pool)
        .await
        .expect("badge");
    assert_eq!(badge, 0, "a notification alone asks nothing of an agent");

    passenger_writes(&app, "wamid.ANSWER1", "¿Puedo llevar una maleta extra?").await;

    let after = threads(&app).await;
    assert_eq!(after.len(), 1, "the reply continues the thread: {after:?}");
    assert_eq!(
        (after[0].id, after[0].status.as_str()),
        (started[0].id, "OPEN")
    );
    let (reply_thread, direction): (Option<Uuid>, String) = sqlx::query_as(
        "select conversation_id, direction from messages where external_message_id = 'wamid.ANSWER1'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("the reply");
    assert_eq!(
        (reply_thread, direction.as_str()),
        (Some(started[0].id), "INBOUND")
    );
}

#[tokio::test]
async fn a_notification_joins_the_snoozed_thread_and_leaves_status_assignee_and_links_alone() {
    let (app, _graph) = whatsapp_tenant().await;
    let (profile, contact) = ana(&app).await;
    passenger_writes(&app, "wamid.Q1", "¿A qué hora sale el autobús?").await;
    let [thread] = threads(&app).await.try_into().expect("one thread");
    assert_eq!(thread.contact_id, contact.0, "the passenger's own contact");
    let claimed = app
        .post_action(
            "claimConversation",
            json!({"conversation_id": thread.id}),
            "dispatcher",
        )
        .await;
    assert_eq!(claimed.status(), 200);
    assert_eq!(snooze(&app, thread.id, 3600).await.status(), 200);
    // The agent's thread is already about another trip: that link stays.
    let earlier_trip = Uuid::new_v4();
    sqlx::query("update conversations set trip_id = $2 where id = $1")
        .bind(thread.id)
        .bind(earlier_trip)
        .execute(&app.pool)
        .await
        .expect("a trip link");
    let before = threads(&app).await.remove(0);
    assert_eq!(
        (before.status.as_str(), before.assigned_to.as_deref()),
        ("SNOOZED", Some("agent-1"))
    );

    let (workflow_id, booking) = confirm(&app, profile, contact).await;

    assert_eq!(
        thread_of_message(&app, &workflow_id).await,
        Some(thread.id),
        "the confirmation joins the live thread"
    );
    assert_eq!(
        threads(&app).await,
        vec![Thread {
            booking_id: Some(uuid_at(&booking, "id")),
            ..before
        }],
        "still snoozed until the same time, still agent-1's, its trip kept; the booking linked"
    );
    let (last_message_at, queued_at): (Option<DateTime<Utc>>, DateTime<Utc>) = sqlx::query_as(
        "select c.last_message_at, m.created_at
           from messages m join conversations c on c.id = m.conversation_id
          where m.workflow_id = $1",
    )
    .bind(&workflow_id)
    .fetch_one(&app.pool)
    .await
    .expect("thread and message");
    assert!(
        last_message_at >= Some(queued_at),
        "{last_message_at:?} < {queued_at}"
    );
}

#[tokio::test]
async fn a_trip_delay_puts_each_passengers_message_in_a_thread_about_the_trip() {
    let app = TestApp::spawn().await;
    app.add_sandbox_sms_account(None, None).await;
    let account: Uuid = sqlx::query_scalar(
        "select id from channel_accounts where tenant_id = $1 and channel = 'SMS'",
    )
    .bind(app.tenant_id)
    .fetch_one(&app.pool)
    .await
    .expect("SMS account");
    let trip = Uuid::new_v4();
    let passengers: Vec<Uuid> = app
        .insert_passengers(3)
        .await
        .into_iter()
        .map(|(c, _)| c.0)
        .collect();
    sqlx::query(
        "insert into trip_bookings (tenant_id, booking_id, trip_id, contact_id, status, source_version)
         select $1, gen_random_uuid(), $2, c, 'CONFIRMED', now() from unnest($3::uuid[]) as c",
    )
    .bind(app.tenant_id)
    .bind(trip)
    .bind(&passengers)
    .execute(&app.pool)
    .await
    .expect("bookings");
    // The first passenger is talking to agent-7 already.
    let open: Uuid = sqlx::query_scalar(
        "insert into conversations (tenant_id, contact_id, channel_account_id, status, assigned_to)
         values ($1, $2, $3, 'OPEN', 'agent-7') returning id",
    )
    .bind(app.tenant_id)
    .bind(passengers[0])
    .bind(account)
    .fetch_one(&app.pool)
    .await
    .expect("an open thread");

    let event_id = Uuid::new_v4().to_string();
    let event = crate::support::app::trip_event(
        "trip_delayed",
        &event_id,
        app.tenant_id,
        trip,
        Utc::now() + chrono::Duration::days(3),
        "DELAYED",
        Utc::now(),
    );
    assert_eq!(app.post_event(&event).await.status(), 200);
    let progress = tokio::time::timeout(
        Duration::from_secs(120),
        app.temporal()
            .await
            .get_workflow_handle::<BatchNotificationWorkflow>(&fanout_workflow_id(
                app.tenant_id,
                &event_id,
            ))
            .get_result(WorkflowGetResultOptions::default()),
    )
    .await
    .expect("the fan-out finished")
    .expect("the fan-out succeeded");
    assert_eq!(progress.delivered, 3, "{progress:?}");

    let placed: Vec<(Uuid, Option<Uuid>, Option<String>)> = sqlx::query_as(
        "select contact_id, conversation_id, batch_workflow_id from messages
          where tenant_id = $1 and direction = 'OUTBOUND' order by contact_id",
    )
    .bind(app.tenant_id)
    .fetch_all(&app.pool)
    .await
    .expect("messages");
    assert_eq!(placed.len(), 3, "{placed:?}");
    assert!(
        placed.iter().all(|(_, _, batch)| batch.is_some()),
        "sent by the chunk's rounds: {placed:?}"
    );
    let all = threads(&app).await;
    assert_eq!(all.len(), 3, "one thread per passenger: {all:?}");
    for (contact, conversation, _) in &placed {
        let thread = all
            .iter()
            .find(|t| Some(t.id) == *conversation)
            .unwrap_or_else(|| panic!("{contact}'s message is in a conversation: {placed:?}"));
        assert_eq!(thread.contact_id, *contact);
        assert_eq!(thread.trip_id, Some(trip), "about the trip: {thread:?}");
        if *contact == passengers[0] {
            assert_eq!(
                (
                    thread.id,
                    thread.status.as_str(),
                    thread.assigned_to.as_deref()
                ),
                (open, "OPEN", Some("agent-7")),
                "joined the open thread, left as it was"
            );
        } else {
            assert_eq!(
                (thread.status.as_str(), thread.assigned_to.as_deref()),
                ("RESOLVED", None),
                "a thread of its own, nobody's work"
            );
        }
    }
}

#[tokio::test]
async fn a_retried_or_repeated_insert_starts_no_second_thread() {
    let app = TestApp::spawn_with(TestOptions {
        start_worker: false,
        ..TestOptions::default()
    })
    .await;
    app.add_sandbox_sms_account(None, None).await;
    let account: Uuid = sqlx::query_scalar(
        "select id from channel_accounts where tenant_id = $1 and channel = 'SMS'",
    )
    .bind(app.tenant_id)
    .fetch_one(&app.pool)
    .await
    .expect("SMS account");
    let passengers = app.insert_passengers(3).await;
    let booking = Uuid::new_v4();
    let message = |contact: ContactId, key: &str| NewOutboundMessage {
        id: MessageId(Uuid::new_v4()),
        tenant_id: app.tenant_id,
        contact_id: contact,
        channel_account_id: ChannelAccountId(account),
        channel: busflow_activities::model::Channel::Sms,
        workflow_id: format!("notify/{}/{key}/{}", app.tenant_id, contact.0),
        batch_workflow_id: None,
        attempt: 1,
        replaces_message_id: None,
        trigger_event: Trigger::BookingConfirmed,
        template_key: "booking_confirmed/sms".into(),
        conversation_id: None,
        about: ConversationRefs {
            booking_id: Some(booking),
            ..ConversationRefs::default()
        },
        subject: None,
        body: "Tu reserva está confirmada".into(),
        body_html: None,
        whatsapp_template: None,
    };
    let threads_of = |contact: ContactId| {
        let app = &app;
        async move {
            sqlx::query_scalar::<_, Uuid>(
                "select id from conversations where tenant_id = $1 and contact_id = $2",
            )
            .bind(app.tenant_id)
            .bind(contact.0)
            .fetch_all(&app.pool)
            .await
            .expect("conversations")
        }
    };

    // One notification: the activity retried after its insert committed,
    // and a replay racing it.
    let single = message(passengers[0].0, "single");
    let first = insert_outbound_queued(&app.pool, &single, None)
        .await
        .expect("insert");
    let (again, racing) = tokio::join!(
        insert_outbound_queued(&app.pool, &single, None),
        insert_outbound_queued(&app.pool, &single, None)
    );
    assert_eq!(
        (again.expect("retry"), racing.expect("replay")),
        (first, first)
    );
    let [thread] = threads_of(passengers[0].0)
        .await
        .try_into()
        .expect("one thread for the single notification");

    // A fan-out round retried, each attempt with new message ids (the round
    // draws them afresh), twice at once.
    let round = |key: &str| vec![message(passengers[1].0, key), message(passengers[2].0, key)];
    let (attempt, racing_attempt) = (round("fanout"), round("fanout"));
    let (one, other) = tokio::join!(
        insert_outbound_queued_many(&app.pool, &attempt),
        insert_outbound_queued_many(&app.pool, &racing_attempt)
    );
    let one = one.expect("round");
    assert_eq!(one, other.expect("retried round"));
    let retried_later = insert_outbound_queued_many(&app.pool, &round("fanout"))
        .await
        .expect("retried round");
    assert_eq!(retried_later, one);
    for (contact, _) in &passengers[1..] {
        assert_eq!(
            threads_of(*contact).await.len(),
            1,
            "one thread for {contact:?}"
        );
    }

    assert_eq!(
        app.count("select count(*) from messages").await,
        3,
        "one message each"
    );
    let unplaced = app
        .count("select count(*) from messages where conversation_id is null")
        .await;
    assert_eq!(unplaced, 0, "every message is in its thread");
    let (status, booking_id): (String, Option<Uuid>) =
        sqlx::query_as("select status, booking_id from conversations where id = $1")
            .bind(thread)
            .fetch_one(&app.pool)
            .await
            .expect("thread");
    assert_eq!((status.as_str(), booking_id), ("RESOLVED", Some(booking)));
}

/// A Meta webhook carrying the passenger's message `wamid`, sent at `at`
/// by Meta's clock (whole seconds, as Meta reports it).
async fn passenger_wrote_at(app: &TestApp, wamid: &str, text: &str, at: DateTime<Utc>) {
    let body = json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": "Ana López"}, "wa_id": PASSENGER_WA_ID}],
            "messages": [{"from": PASSENGER_WA_ID, "id": wamid, "timestamp": at.timestamp().to_string(),
                          "type": "text", "text": {"body": text}}]
        }}]}]
    })
    .to_string();
    let response = app
        .post_meta_webhook(app.tenant_id, body.clone(), Some(sign(APP_SECRET, &body)))
        .await;
    assert_eq!(response.status(), 200);
}

fn agent(app: &TestApp, id: &str) -> Value {
    json!({"x-hasura-role": "dispatcher", "x-hasura-user-id": id,
           "x-hasura-tenant-id": app.tenant_id.0.to_string()})
}

/// (the conversation's `unread_count` for the agent, the agent's badge).
async fn unread(app: &TestApp, conversation: Uuid, agent_id: &str) -> (i32, i32) {
    let session = agent(app, agent_id);
    let count: i32 = sqlx::query_scalar(
        "select conversation_unread_count(c, $2::json) from conversations c where c.id = $1",
    )
    .bind(conversation)
    .bind(&session)
    .fetch_one(&app.pool)
    .await
    .expect("computed field");
    let badge: i32 = sqlx::query_scalar("select unread_conversations from inbox_badge($1::json)")
        .bind(&session)
        .fetch_one(&app.pool)
        .await
        .expect("badge");
    (count, badge)
}

async fn mark_read(app: &TestApp, conversation: Uuid, read_at: Option<DateTime<Utc>>) -> Value {
    let mut input = json!({"conversation_id": conversation});
    if let Some(at) = read_at {
        input["read_at"] = json!(at);
    }
    let response = app
        .post_action_as("markConversationRead", input, agent(app, "agent-1"))
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

async fn whatsapp_inbox() -> (TestApp, Uuid) {
    let app = inbox_app_on(false, None).await;
    passenger_wrote_at(&app, "wamid.FIRST", "Hola", Utc::now()).await;
    let conversation: Uuid =
        sqlx::query_scalar("select id from conversations where tenant_id = $1")
            .bind(app.tenant_id)
            .fetch_one(&app.pool)
            .await
            .expect("the conversation");
    (app, conversation)
}

#[tokio::test]
async fn a_message_that_arrives_after_the_agent_read_is_unread_even_with_an_older_provider_time() {
    let (app, conversation) = whatsapp_inbox().await;
    // Meta's clock runs ahead of ours: reading what is there reads it.
    passenger_wrote_at(
        &app,
        "wamid.AHEAD",
        "¿Me oyen?",
        Utc::now() + chrono::Duration::seconds(30),
    )
    .await;
    assert_eq!(unread(&app, conversation, "agent-1").await, (2, 1));
    let read = mark_read(&app, conversation, None).await;
    assert_eq!(
        unread(&app, conversation, "agent-1").await,
        (0, 0),
        "{read}"
    );
    let sent_ahead: DateTime<Utc> = sqlx::query_scalar(
        "select sent_at from messages where external_message_id = 'wamid.AHEAD'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("sent_at");
    assert_eq!(
        read["last_read_at"],
        json!(sent_ahead),
        "the cursor is the newest provider time read"
    );

    // Meta redelivers a message sent two minutes ago, after the read; and
    // one more comes within the provider second the agent read up to.
    passenger_wrote_at(
        &app,
        "wamid.LATE",
        "Perdí el boleto",
        Utc::now() - chrono::Duration::seconds(120),
    )
    .await;
    assert_eq!(
        unread(&app, conversation, "agent-1").await,
        (1, 1),
        "never shown to the agent"
    );
    mark_read(&app, conversation, None).await;
    passenger_wrote_at(&app, "wamid.SAME", "¿Siguen ahí?", sent_ahead).await;
    assert_eq!(unread(&app, conversation, "agent-1").await, (1, 1));
    assert_eq!(
        unread(&app, conversation, "agent-2").await,
        (4, 1),
        "another agent has read nothing"
    );
}

#[tokio::test]
async fn reading_up_to_a_message_leaves_what_was_sent_after_it_unread() {
    let (app, conversation) = whatsapp_inbox().await;
    let now = Utc::now();
    passenger_wrote_at(
        &app,
        "wamid.EARLY",
        "uno",
        now - chrono::Duration::seconds(120),
    )
    .await;
    passenger_wrote_at(
        &app,
        "wamid.LATER",
        "dos",
        now - chrono::Duration::seconds(60),
    )
    .await;

    // The agent's screen showed up to the message sent 90 s ago; both
    // arrived before the read.
    mark_read(
        &app,
        conversation,
        Some(now - chrono::Duration::seconds(90)),
    )
    .await;
    assert_eq!(
        unread(&app, conversation, "agent-1").await,
        (2, 1),
        "sent 60 s ago and just now: after what the agent read"
    );
    // A cursor never moves back.
    mark_read(&app, conversation, None).await;
    mark_read(
        &app,
        conversation,
        Some(now - chrono::Duration::seconds(600)),
    )
    .await;
    assert_eq!(unread(&app, conversation, "agent-1").await, (0, 0));
}

#[tokio::test]
async fn claiming_a_resolved_conversation_is_refused_and_writes_nothing() {
    let app = inbox_app_on(false, None).await;
    passenger_writes(&app, "wamid.RES1", "Gracias, era todo").await;
    let conversation: Uuid =
        sqlx::query_scalar("select id from conversations where tenant_id = $1")
            .bind(app.tenant_id)
            .fetch_one(&app.pool)
            .await
            .expect("the conversation");
    let resolved = app
        .post_action(
            "resolveConversation",
            json!({"conversation_id": conversation}),
            "dispatcher",
        )
        .await;
    assert_eq!(resolved.status(), 200);
    let row = || {
        sqlx::query_as::<_, (String, Option<String>, DateTime<Utc>)>(
            "select status, assigned_to, updated_at from conversations where id = $1",
        )
        .bind(conversation)
        .fetch_one(&app.pool)
    };
    let before = row().await.expect("row");

    let response = app
        .post_action_as(
            "claimConversation",
            json!({"conversation_id": conversation}),
            agent(&app, "agent-2"),
        )
        .await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        body["extensions"]["code"], "CONVERSATION_RESOLVED",
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("new message from the customer reopens it")),
        "{body}"
    );
    assert_eq!(row().await.expect("row"), before, "nothing written");

    // As the answer says: the customer writes, and it is work again.
    passenger_writes(&app, "wamid.RES2", "Una cosa más").await;
    let claimed = app
        .post_action_as(
            "claimConversation",
            json!({"conversation_id": conversation}),
            agent(&app, "agent-2"),
        )
        .await;
    assert_eq!(claimed.status(), 200);
}
