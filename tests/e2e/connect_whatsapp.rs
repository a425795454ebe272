//! An operator connects a WhatsApp number: the browser hands over Embedded
//! Signup's result, `connectWhatsApp` runs the connection as a workflow
//! against the Graph API fake, and the number sends. Counted at the fake:
//! what reached Meta, and what Meta would see.

use crate::support::app::account_id;
use crate::support::meta::{
    META_APP_SECRET, PASSENGER_WA_ID, PHONE_NUMBER_ID, SignupGraph, WABA_ID, booking_reference,
    graph_accepted, messages_path, meta_app, seconds_ago, wamid,
};
use crate::support::{TestApp, TestOptions};
use busflow_activities::model::{ChannelAccountId, ChannelAccountStatus};
use busflow_activities::secrets::{self, ProviderSecrets};
use busflow_activities::store::channel_accounts;
use busflow_workflows::TemplateSyncWorkflow;
use serde_json::{Value, json};
use std::time::Duration;
use temporalio_client::{WorkflowGetResultOptions, WorkflowStartOptions};
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn app_with_graph(graph: &MockServer) -> TestApp {
    TestApp::spawn_with(TestOptions {
        meta_graph_url: Some(graph.uri()),
        meta_app: Some(meta_app()),
        ..TestOptions::default()
    })
    .await
}

fn signup_input(code: &str) -> Value {
    json!({"code": code, "waba_id": WABA_ID, "phone_number_id": PHONE_NUMBER_ID,
           "display_name": "Autobuses Prueba"})
}

async fn connect(app: &TestApp, input: Value) -> (u16, Value) {
    let response = app
        .post_action("connectWhatsApp", input, "tenant_admin")
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON answer"))
}

/// The account's secrets, opened.
async fn sealed_secrets(app: &TestApp, account: ChannelAccountId) -> ProviderSecrets {
    let row = channel_accounts::get(&app.pool, app.tenant_id, account)
        .await
        .expect("read")
        .expect("account");
    secrets::open(&crate::support::app::test_keys(), &row).expect("open")
}

/// The requests the fake received on `path_suffix`.
async fn calls(graph: &MockServer, path_suffix: &str) -> Vec<wiremock::Request> {
    graph
        .received_requests()
        .await
        .expect("recorded requests")
        .into_iter()
        .filter(|r| r.url.path().ends_with(path_suffix))
        .collect()
}

#[tokio::test]
async fn an_operator_connects_a_whatsapp_number_and_it_sends_booking_confirmations() {
    let graph = MockServer::start().await;
    let signup = SignupGraph::new();
    signup.mount(&graph).await;
    let app = app_with_graph(&graph).await;

    let (status, answer) = connect(&app, signup_input(&signup.code)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "ACTIVE", "{answer}");
    assert_eq!(answer["approved_templates"], 1, "{answer}");
    assert_eq!(answer["templates"], 2, "{answer}");
    let account = account_id(&answer);

    // What reached Meta: the code exchanged once, the number registered
    // with a six-digit PIN, the app subscribed and then pointed at this
    // tenant's webhook with a verify token.
    assert_eq!(calls(&graph, "/oauth/access_token").await.len(), 1);
    let register = calls(&graph, "/register").await;
    assert_eq!(register.len(), 1);
    let body: Value = serde_json::from_slice(&register[0].body).expect("register body");
    assert_eq!(body["messaging_product"], "whatsapp");
    let pin = body["pin"].as_str().expect("pin");
    assert!(
        pin.len() == 6 && pin.bytes().all(|b| b.is_ascii_digit()),
        "{pin}"
    );
    let subscribed = calls(&graph, "/subscribed_apps").await;
    assert_eq!(
        subscribed.len(),
        2,
        "a plain subscription, then the override"
    );
    let over: Value = serde_json::from_slice(&subscribed[1].body).expect("override body");
    assert_eq!(
        over["override_callback_uri"],
        format!("{}/webhooks/meta/{}", app.base_url, app.tenant_id)
    );
    let verify_token = over["verify_token"].as_str().expect("verify token");

    // Meta's check of the callback, as it makes it during that call.
    let challenge = app
        .verify_meta_webhook(app.tenant_id, verify_token, "1158201444")
        .await;
    assert_eq!(challenge.status(), 200);
    assert_eq!(challenge.text().await.expect("body"), "1158201444");

    let moves: Vec<_> = channel_accounts::history(&app.pool, app.tenant_id, account)
        .await
        .expect("history")
        .into_iter()
        .map(|c| (c.to_status, c.changed_by))
        .collect();
    assert_eq!(
        moves,
        [
            (ChannelAccountStatus::Pending, "provisioning".to_owned()),
            (ChannelAccountStatus::Verifying, "provisioning".to_owned()),
            (ChannelAccountStatus::Active, "provisioning".to_owned()),
        ]
    );
    let templates: Vec<(String, String)> = sqlx::query_as(
        "select name, status from whatsapp_message_templates where tenant_id = $1 order by name",
    )
    .bind(app.tenant_id)
    .fetch_all(&app.pool)
    .await
    .expect("templates");
    assert_eq!(
        templates,
        [
            ("2023_april_promo".to_owned(), "PENDING".to_owned()),
            ("booking_confirmation".to_owned(), "APPROVED".to_owned()),
        ]
    );

    // The secrets are sealed, the code is gone, and none of it is in Temporal.
    let opened = sealed_secrets(&app, account).await;
    assert_eq!(opened.access_token.as_deref(), Some(signup.token.as_str()));
    assert_eq!(opened.signup_code, None);
    let history = app
        .readable_history(answer["workflow_id"].as_str().expect("workflow id"))
        .await;
    for secret in [
        signup.code.as_str(),
        signup.token.as_str(),
        verify_token,
        pin,
    ] {
        assert!(!history.contains(secret), "a secret is in the history");
    }

    // And the number sends, with the business token.
    let sent = wamid();
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(graph_accepted(&sent))
        .mount(&graph)
        .await;
    app.add_whatsapp_template().await;
    let profile = Uuid::new_v4();
    let contact = app
        .upsert_passenger(profile, "Ana López", &app.recipient("ana"), "es-MX")
        .await;
    app.override_booking_confirmed(&["WHATSAPP"], json!({"WHATSAPP": 120}))
        .await;
    let workflow_id = app
        .confirm_booking(profile, contact, &booking_reference("BF-CON"))
        .await;
    let sends = app
        .eventually(
            "the confirmation reaches Meta",
            Duration::from_secs(30),
            || async { Some(calls(&graph, "/messages").await).filter(|s| !s.is_empty()) },
        )
        .await;
    assert_eq!(
        sends[0].headers.get("authorization").map(|v| v.as_bytes()),
        Some(format!("Bearer {}", signup.token).as_bytes()),
        "sent with the business token"
    );
    let sent_body: Value = serde_json::from_slice(&sends[0].body).expect("send body");
    assert_eq!(sent_body["to"], PASSENGER_WA_ID);
    // Meta signs the number's webhooks with the platform app's secret.
    app.meta_reports(
        app.tenant_id,
        META_APP_SECRET,
        &[(&sent, "delivered", seconds_ago(1))],
    )
    .await;
    let outcome = app.workflow_result(&workflow_id).await.expect("delivered");
    assert_eq!(outcome.attempts, ["WHATSAPP: DELIVERED"], "{outcome:?}");
    assert_eq!(calls(&graph, "/messages").await.len(), 1);
}

#[tokio::test]
async fn hasura_retrying_the_action_connects_the_number_once() {
    let graph = MockServer::start().await;
    let signup = SignupGraph::new();
    signup.mount(&graph).await;
    let app = app_with_graph(&graph).await;

    let (first, answer) = connect(&app, signup_input(&signup.code)).await;
    let (again, retried) = connect(&app, signup_input(&signup.code)).await;
    assert_eq!((first, again), (200, 200), "{answer} {retried}");
    assert_eq!(answer["channel_account_id"], retried["channel_account_id"]);
    assert_eq!(answer["workflow_id"], retried["workflow_id"]);
    assert_eq!(retried["status"], "ACTIVE");
    assert_eq!(calls(&graph, "/oauth/access_token").await.len(), 1);
    assert_eq!(calls(&graph, "/register").await.len(), 1);
}

#[tokio::test]
async fn a_code_meta_already_honoured_leaves_the_account_in_attention_saying_what_to_do() {
    let graph = MockServer::start().await;
    // Meta's answer to a second exchange of one code (a captured response).
    Mock::given(method("GET"))
        .and(path("/v21.0/oauth/access_token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {"message": "This authorization code has been used.",
                      "type": "OAuthException", "code": 100, "error_subcode": 36009,
                      "fbtrace_id": "AHtohT4VFYAhX-Ii6g-6xL7"}
        })))
        .mount(&graph)
        .await;
    let app = app_with_graph(&graph).await;

    let (status, answer) = connect(&app, signup_input("AQDalreadyused")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "ATTENTION", "{answer}");
    let reason = answer["status_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("the signup code was already used; run Embedded Signup again"),
        "{reason}"
    );
    assert!(
        calls(&graph, "/register").await.is_empty(),
        "nothing after the refusal"
    );
    let planned = channel_accounts::active(&app.pool, app.tenant_id)
        .await
        .expect("accounts");
    assert!(
        planned.is_empty(),
        "an account in ATTENTION is never planned"
    );
}

#[tokio::test]
async fn a_number_or_waba_another_tenant_holds_is_refused_and_nothing_is_written() {
    let graph = MockServer::start().await;
    let signup = SignupGraph::new();
    signup.mount(&graph).await;
    let app = app_with_graph(&graph).await;
    let other = busflow_activities::model::TenantId(Uuid::new_v4());
    sqlx::query(
        "insert into channel_accounts (tenant_id, channel, provider, status, provider_config, external_account_id)
         values ($1, 'WHATSAPP', 'META_CLOUD', 'ACTIVE', $2, $3)",
    )
    .bind(other)
    .bind(json!({"phone_number_id": PHONE_NUMBER_ID, "waba_id": WABA_ID}))
    .bind(PHONE_NUMBER_ID)
    .execute(&app.pool)
    .await
    .expect("the other tenant's number");

    let (status, answer) = connect(&app, signup_input(&signup.code)).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(
        answer["extensions"]["code"], "PHONE_NUMBER_HELD_BY_ANOTHER_TENANT",
        "{answer}"
    );

    let mut other_number = signup_input(&signup.code);
    other_number["phone_number_id"] = json!("106540352242999");
    let (status, answer) = connect(&app, other_number).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(
        answer["extensions"]["code"], "WABA_HELD_BY_ANOTHER_TENANT",
        "{answer}"
    );

    let ours: i64 =
        sqlx::query_scalar("select count(*) from channel_accounts where tenant_id = $1")
            .bind(app.tenant_id)
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(ours, 0);
    assert_eq!(app.count("select count(*) from whatsapp_signups").await, 0);
    assert!(
        graph
            .received_requests()
            .await
            .expect("requests")
            .is_empty()
    );
}

#[tokio::test]
async fn bad_signup_input_gets_a_clear_error_naming_the_field() {
    let graph = MockServer::start().await;
    let app = app_with_graph(&graph).await;
    let mut input = signup_input("AQDcode");
    input["waba_id"] = json!("../me/accounts");
    let (status, answer) = connect(&app, input).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["extensions"]["code"], "INVALID_INPUT");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("waba_id"),
        "{answer}"
    );

    let response = app
        .post_action("connectWhatsApp", signup_input("AQDcode"), "dispatcher")
        .await;
    assert_eq!(response.status(), 403, "agents do not connect numbers");
    assert_eq!(app.count("select count(*) from channel_accounts").await, 0);
}

#[tokio::test]
async fn a_disconnected_number_stops_sending_and_can_be_connected_again_with_a_new_signup() {
    let graph = MockServer::start().await;
    let first = SignupGraph::new();
    first.mount(&graph).await;
    let app = app_with_graph(&graph).await;
    let (_, answer) = connect(&app, signup_input(&first.code)).await;
    let account = account_id(&answer);

    let response = app
        .post_action(
            "disconnectChannelAccount",
            json!({"channel_account_id": account.0}),
            "tenant_admin",
        )
        .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("JSON");
    assert_eq!(answer["status"], "DISCONNECTED");
    assert!(
        channel_accounts::active(&app.pool, app.tenant_id)
            .await
            .expect("accounts")
            .is_empty()
    );
    let response = app
        .post_action(
            "reverifyChannelAccount",
            json!({"channel_account_id": account.0}),
            "tenant_admin",
        )
        .await;
    assert_eq!(
        response.status(),
        409,
        "a disconnected account is connected, not re-verified"
    );

    let second = SignupGraph::new();
    second.mount(&graph).await;
    let (status, answer) = connect(&app, signup_input(&second.code)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "ACTIVE", "{answer}");
    assert_eq!(
        account_id(&answer),
        account,
        "the same account, connected again"
    );
}

#[tokio::test]
async fn an_account_in_attention_is_verified_again_without_a_new_code() {
    let graph = MockServer::start().await;
    let signup = SignupGraph::new();
    signup.mount(&graph).await;
    let app = app_with_graph(&graph).await;
    let (_, answer) = connect(&app, signup_input(&signup.code)).await;
    let account = account_id(&answer);
    channel_accounts::move_to(
        &app.pool,
        app.tenant_id,
        account,
        ChannelAccountStatus::Attention,
        Some("Meta: (#131031) Business account locked"),
        &busflow_activities::lifecycle::StatusActor::Dispatch,
    )
    .await
    .expect("attention");
    // The platform's app secret was reset since the number was connected.
    secrets::modify(
        &app.pool,
        &crate::support::app::test_keys(),
        app.tenant_id,
        account,
        |s| s.app_secret = Some("the-app-secret-before-its-reset".into()),
    )
    .await
    .expect("an old app secret");

    let request = json!({"channel_account_id": account.0});
    let response = app
        .post_action("reverifyChannelAccount", request, "tenant_admin")
        .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("JSON");
    assert_eq!(answer["status"], "ACTIVE", "{answer}");
    assert_eq!(answer["status_reason"], Value::Null);
    assert_eq!(
        calls(&graph, "/oauth/access_token").await.len(),
        1,
        "the business token is kept; no new code is needed"
    );
    assert_eq!(calls(&graph, "/register").await.len(), 2);
    let opened = sealed_secrets(&app, account).await;
    assert_eq!(
        opened.app_secret.as_deref(),
        Some(META_APP_SECRET),
        "the webhooks verify with the platform app's current secret again"
    );
}

#[tokio::test]
async fn the_template_sync_moves_an_account_whose_token_meta_refuses_to_attention() {
    let graph = MockServer::start().await;
    let signup = SignupGraph::new();
    signup.mount(&graph).await;
    let app = app_with_graph(&graph).await;
    let (_, answer) = connect(&app, signup_input(&signup.code)).await;
    let account = account_id(&answer);
    // The business token expired since (Meta's answer for an expired session).
    Mock::given(method("GET"))
        .and(path(format!("/v21.0/{WABA_ID}/message_templates")))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {"message": "Error validating access token: Session has expired on Friday, 04-Dec-26 10:00:00 PST.",
                      "type": "OAuthException", "code": 190, "error_subcode": 463,
                      "fbtrace_id": "AqM1qB8d2VZ"}
        })))
        .with_priority(1)
        .mount(&graph)
        .await;

    let client = app.temporal().await;
    let handle = client
        .start_workflow(
            TemplateSyncWorkflow::run,
            (),
            WorkflowStartOptions::new(app.task_queue.clone(), format!("sync-{}", Uuid::new_v4()))
                .build(),
        )
        .await
        .expect("start the sync");
    let report = handle
        .get_result(WorkflowGetResultOptions::default())
        .await
        .expect("sync report");
    assert_eq!((report.synced, report.refused), (0, 1), "{report:?}");
    let (status, reason): (String, Option<String>) =
        sqlx::query_as("select status, status_reason from channel_accounts where id = $1")
            .bind(account)
            .fetch_one(&app.pool)
            .await
            .expect("account");
    assert_eq!(status, "ATTENTION");
    assert!(
        reason.is_some_and(|r| r.contains("the business token is no longer valid")),
        "the operator is told what to do"
    );
}

#[tokio::test]
async fn a_rotated_whatsapp_token_is_sealed_checked_with_meta_and_the_webhook_gets_a_new_verify_token()
 {
    let graph = MockServer::start().await;
    let signup = SignupGraph::new();
    signup.mount(&graph).await;
    let app = app_with_graph(&graph).await;
    let (_, answer) = connect(&app, signup_input(&signup.code)).await;
    let account = account_id(&answer);
    let first_override: Value =
        serde_json::from_slice(&calls(&graph, "/subscribed_apps").await[1].body).expect("body");
    let old_verify = first_override["verify_token"]
        .as_str()
        .expect("token")
        .to_owned();

    // The operator's new system-user token, which Meta knows.
    let rotated = SignupGraph::new();
    rotated.mount(&graph).await;
    let response = app
        .post_action(
            "rotateChannelAccountCredentials",
            json!({"channel_account_id": account.0, "access_token": rotated.token}),
            "tenant_admin",
        )
        .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("JSON");
    assert_eq!(answer["status"], "ACTIVE", "checked with Meta: {answer}");

    let opened = sealed_secrets(&app, account).await;
    assert_eq!(opened.access_token.as_deref(), Some(rotated.token.as_str()));
    let overrides = calls(&graph, "/subscribed_apps").await;
    let new_override: Value =
        serde_json::from_slice(&overrides[overrides.len() - 1].body).expect("body");
    let new_verify = new_override["verify_token"].as_str().expect("token");
    assert_ne!(new_verify, old_verify);
    assert_eq!(
        app.verify_meta_webhook(app.tenant_id, new_verify, "42")
            .await
            .status(),
        200
    );
    assert_eq!(
        app.verify_meta_webhook(app.tenant_id, &old_verify, "42")
            .await
            .status(),
        403,
        "the old verify token no longer answers Meta's check"
    );
    let history = app
        .readable_history(answer["workflow_id"].as_str().expect("workflow id"))
        .await;
    assert!(
        !history.contains(&rotated.token),
        "the token is not in Temporal"
    );
}

#[tokio::test]
async fn rotating_needs_what_the_channel_uses_and_says_so() {
    let graph = MockServer::start().await;
    let app = app_with_graph(&graph).await;
    app.add_email_account(false).await;
    let email: Uuid = sqlx::query_scalar(
        "select id from channel_accounts where tenant_id = $1 and channel = 'EMAIL'",
    )
    .bind(app.tenant_id)
    .fetch_one(&app.pool)
    .await
    .expect("email account");
    let response = app
        .post_action(
            "rotateChannelAccountCredentials",
            json!({"channel_account_id": email}),
            "tenant_admin",
        )
        .await;
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.expect("JSON");
    assert_eq!(
        answer["extensions"]["code"], "NOTHING_TO_ROTATE",
        "{answer}"
    );

    app.add_widget_account().await;
    let widget: Uuid = sqlx::query_scalar(
        "select id from channel_accounts where tenant_id = $1 and channel = 'WEBCHAT'",
    )
    .bind(app.tenant_id)
    .fetch_one(&app.pool)
    .await
    .expect("webchat account");
    let old_token = busflow_api::webchat::token::issue(
        crate::support::app::WIDGET_SECRET,
        app.tenant_id,
        "visitor-1",
        chrono::Utc::now() + chrono::Duration::hours(1),
    );
    let response = app
        .post_action(
            "rotateChannelAccountCredentials",
            json!({"channel_account_id": widget}),
            "tenant_admin",
        )
        .await;
    assert_eq!(response.status(), 200);
    let fetched = reqwest::Client::new()
        .get(format!(
            "{}/webchat/{}/messages",
            app.base_url, app.tenant_id
        ))
        .bearer_auth(&old_token)
        .send()
        .await
        .expect("GET messages");
    assert_eq!(
        fetched.status(),
        401,
        "a visitor token signed with the old widget secret is refused"
    );
}
