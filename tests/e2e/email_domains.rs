//! An operator connects a sending domain: `connectEmailDomain` answers with
//! the DNS records to publish, and a workflow waits for SES to find them.
//! SES here is a stand-in speaking SES v2's REST API with AWS's own
//! documented answers (moto has no DKIM tokens and no event destinations).

use crate::support::app::account_id;
use crate::support::{TestApp, TestOptions};
use busflow_activities::email_domains::VerifyPatience;
use busflow_activities::model::{ChannelAccountId, ChannelAccountStatus};
use busflow_activities::store::channel_accounts;
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const DOMAIN: &str = "reservas.example.mx";
/// AWS's example tokens (SES workshop output of GetEmailIdentity).
const TOKENS: [&str; 3] = [
    "oc4vbmhlp2jdgulaqmj64h4a5ea6rvhi",
    "cw3h654y4ufvu7ux4a2mf2bec3le3sw4",
    "67cc7cuhbidfnrxmaocfq33jtdyutqfi",
];

fn identity(status: &str, verified: bool) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "IdentityType": "DOMAIN",
        "FeedbackForwardingStatus": true,
        "VerifiedForSendingStatus": verified,
        "DkimAttributes": {"SigningEnabled": true, "Status": status, "Tokens": TOKENS,
                           "SigningAttributesOrigin": "AWS_SES"},
        "MailFromAttributes": {"MailFromDomain": format!("mail.{DOMAIN}"),
                               "MailFromDomainStatus": "PENDING",
                               "BehaviorOnMxFailure": "USE_DEFAULT_VALUE"},
        "Policies": {}, "Tags": [],
        "VerificationStatus": status
    }))
}

/// SES, answering the identity and configuration-set calls; the identity
/// is PENDING `pending_checks` times before it is verified (never, if None).
async fn ses(pending_checks: Option<u64>) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/email/identities"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "IdentityType": "DOMAIN", "VerifiedForSendingStatus": false,
            "DkimAttributes": {"SigningEnabled": true, "Status": "PENDING", "Tokens": TOKENS,
                               "SigningAttributesOrigin": "AWS_SES"}
        })))
        .mount(&server)
        .await;
    let get = format!("/v2/email/identities/{DOMAIN}");
    match pending_checks {
        Some(n) => {
            Mock::given(method("GET"))
                .and(path(get.as_str()))
                .respond_with(identity("PENDING", false))
                .up_to_n_times(n)
                .mount(&server)
                .await;
            Mock::given(method("GET"))
                .and(path(get.as_str()))
                .respond_with(identity("SUCCESS", true))
                .mount(&server)
                .await;
        }
        None => {
            Mock::given(method("GET"))
                .and(path(get.as_str()))
                .respond_with(identity("PENDING", false))
                .mount(&server)
                .await;
        }
    }
    for (verb, route) in [
        ("PUT", format!("/v2/email/identities/{DOMAIN}/mail-from")),
        ("POST", "/v2/email/configuration-sets".to_owned()),
    ] {
        Mock::given(method(verb))
            .and(path(route.as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .and(wiremock::matchers::path_regex(
            "^/v2/email/configuration-sets/[^/]+/event-destinations$",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    server
}

async fn app_with_ses(ses: &MockServer, give_up_after_secs: u64) -> TestApp {
    TestApp::spawn_with(TestOptions {
        aws_endpoint: Some(ses.uri()),
        email_verification: VerifyPatience {
            first_poll_secs: 1,
            max_poll_secs: 1,
            give_up_after_secs,
        },
        ..TestOptions::default()
    })
    .await
}

async fn connect(app: &TestApp, input: Value) -> (u16, Value) {
    let response = app
        .post_action("connectEmailDomain", input, "tenant_admin")
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON answer"))
}

async fn status_of(app: &TestApp, account: ChannelAccountId) -> (String, Option<String>) {
    sqlx::query_as("select status, status_reason from channel_accounts where id = $1")
        .bind(account)
        .fetch_one(&app.pool)
        .await
        .expect("account")
}

#[tokio::test]
async fn an_operator_gets_the_records_to_publish_and_the_domain_goes_active_once_ses_finds_them() {
    let ses = ses(Some(2)).await;
    let app = app_with_ses(&ses, 600).await;
    let (status, answer) = connect(
        &app,
        json!({"domain": "Reservas.Example.MX", "from_address": "Boletos@reservas.example.mx",
               "mail_from_subdomain": "mail"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "VERIFYING", "{answer}");
    let records: Vec<(String, String, String)> = answer["dns_records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            (
                r["record_type"].as_str().unwrap_or_default().to_owned(),
                r["name"].as_str().unwrap_or_default().to_owned(),
                r["value"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for token in TOKENS {
        assert!(
            records.contains(&(
                "CNAME".into(),
                format!("{token}._domainkey.{DOMAIN}"),
                format!("{token}.dkim.amazonses.com")
            )),
            "{records:?}"
        );
    }
    assert!(records.contains(&(
        "MX".into(),
        format!("mail.{DOMAIN}"),
        "10 feedback-smtp.us-east-1.amazonses.com".into()
    )));
    assert!(records.contains(&(
        "TXT".into(),
        format!("mail.{DOMAIN}"),
        "\"v=spf1 include:amazonses.com ~all\"".into()
    )));
    let account = account_id(&answer);

    app.eventually("SES finds the records", Duration::from_secs(60), || async {
        (status_of(&app, account).await.0 == "ACTIVE").then_some(())
    })
    .await;
    let moves: Vec<_> = channel_accounts::history(&app.pool, app.tenant_id, account)
        .await
        .expect("history")
        .into_iter()
        .map(|c| c.to_status)
        .collect();
    use ChannelAccountStatus::*;
    assert_eq!(moves, [Pending, Verifying, Active]);

    // The receipts: a configuration set publishing to the SES events topic.
    let requests = ses.received_requests().await.expect("requests");
    let destination = requests
        .iter()
        .find(|r| r.url.path().ends_with("/event-destinations"))
        .expect("an event destination");
    let body: Value = serde_json::from_slice(&destination.body).expect("body");
    assert_eq!(
        body["EventDestination"]["SnsDestination"]["TopicArn"],
        busflow_api::testing::TEST_TOPIC_ARN
    );
    let config: Value =
        sqlx::query_scalar("select provider_config from channel_accounts where id = $1")
            .bind(account)
            .fetch_one(&app.pool)
            .await
            .expect("config");
    assert_eq!(
        config["configuration_set"],
        format!("busflow-{}", app.tenant_id.0.simple())
    );
    assert_eq!(config["from_address"], "boletos@reservas.example.mx");
    let checks = requests
        .iter()
        .filter(|r| r.method.as_str() == "GET")
        .count();
    assert_eq!(checks, 3, "asked until SES had found the records");
}

#[tokio::test]
async fn a_domain_ses_never_verifies_is_left_in_attention_saying_what_to_do() {
    let ses = ses(None).await;
    let app = app_with_ses(&ses, 3).await;
    let (status, answer) = connect(&app, json!({"domain": DOMAIN})).await;
    assert_eq!(status, 200, "{answer}");
    let account = account_id(&answer);
    let (status, reason) = app
        .eventually("the wait runs out", Duration::from_secs(60), || async {
            let now = status_of(&app, account).await;
            (now.0 != "VERIFYING" && now.0 != "PENDING").then_some(now)
        })
        .await;
    assert_eq!(status, "ATTENTION");
    assert!(
        reason
            .as_deref()
            .unwrap_or_default()
            .contains("did not find the DNS records within 3 s"),
        "{reason:?}"
    );
    assert!(
        channel_accounts::active(&app.pool, app.tenant_id)
            .await
            .expect("accounts")
            .is_empty(),
        "never planned"
    );
}

#[tokio::test]
async fn a_domain_another_tenant_holds_or_a_malformed_one_is_refused() {
    let ses = ses(Some(1)).await;
    let app = app_with_ses(&ses, 600).await;
    sqlx::query(
        "insert into channel_accounts (tenant_id, channel, provider, status, provider_config, external_account_id)
         values ($1, 'EMAIL', 'AWS_SES', 'ACTIVE', $2, $3)",
    )
    .bind(Uuid::new_v4())
    .bind(json!({"domain": DOMAIN, "from_address": format!("hola@{DOMAIN}")}))
    .bind(format!("hola@{DOMAIN}"))
    .execute(&app.pool)
    .await
    .expect("the other tenant's domain");
    let (status, answer) = connect(&app, json!({"domain": DOMAIN})).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(
        answer["extensions"]["code"],
        "DOMAIN_HELD_BY_ANOTHER_TENANT"
    );

    let (status, answer) = connect(&app, json!({"domain": "not a domain"})).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["extensions"]["code"], "INVALID_INPUT");
    let (status, answer) = connect(
        &app,
        json!({"domain": "otro.example.mx", "from_address": "hola@elsewhere.example"}),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("from_address")
    );
    assert!(
        ses.received_requests().await.expect("requests").is_empty(),
        "nothing reached SES"
    );
}

#[tokio::test]
async fn on_the_emulator_a_domain_is_created_on_ses_and_active_at_once() {
    // moto, as the dev stack runs it: it verifies a domain at once, and has
    // no event destinations (the dev stack publishes no receipts).
    let app = TestApp::spawn_with(TestOptions {
        sns_topics: Some(busflow_api::webhooks::sns_topics::SnsTopics::AnyForDev),
        ..TestOptions::default()
    })
    .await;
    let domain = format!("d{}.example.mx", &Uuid::new_v4().simple().to_string()[..10]);
    let (status, answer) = connect(&app, json!({"domain": domain})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "ACTIVE", "{answer}");
    let config: Value =
        sqlx::query_scalar("select provider_config from channel_accounts where id = $1")
            .bind(account_id(&answer))
            .fetch_one(&app.pool)
            .await
            .expect("config");
    assert_eq!(config["from_address"], format!("no-reply@{domain}"));
    assert!(
        config.get("configuration_set").is_none(),
        "no receipts without a topic"
    );

    // The domain is on SES now: the identity the workflow created.
    let providers = busflow_comms::worker::providers(
        &crate::support::app::aws_settings(&app.aws_endpoint),
        Default::default(),
        None,
    )
    .await
    .expect("providers");
    let identity = providers
        .ses
        .domain_identity(&domain)
        .await
        .expect("SES answers")
        .expect("the identity exists");
    assert_eq!(
        identity.verification,
        busflow_activities::providers::email::domains::DomainVerification::Verified
    );
}
