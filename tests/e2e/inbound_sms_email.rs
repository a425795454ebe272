//! People write to a tenant by SMS and by email; AWS delivers both through
//! SNS to `/webhooks/sns`, and they land in the inbox like WhatsApp does.

use crate::snooze::{snooze, snooze_result};
use crate::support::sns_inbound::{email_received, inbound_sms, signed_notification};
use crate::support::{TestApp, TestOptions};
use busflow_activities::model::{ChannelAccountId, TenantId};
use busflow_comms::dev::seed;
use busflow_workflows::snooze::SnoozeOutcome;
use serde_json::Value;
use uuid::Uuid;

/// The tenant's two-way SMS number and a passenger's phone (AWS's
/// documented example numbers).
const OUR_NUMBER: &str = "+12125550101";
const PASSENGER: &str = "+14255550182";

async fn sms_app(worker: bool) -> (TestApp, ChannelAccountId) {
    let app = TestApp::spawn_with(TestOptions {
        start_worker: worker,
        ..Default::default()
    })
    .await;
    let account = app.add_sms_number(app.tenant_id, OUR_NUMBER).await;
    (app, account)
}

async fn email_app() -> TestApp {
    let app = TestApp::spawn_with(TestOptions {
        start_worker: false,
        ..Default::default()
    })
    .await;
    app.add_email_account(false).await;
    app
}

async fn inbox_is_empty(app: &TestApp) {
    for table in ["messages", "contacts", "conversations"] {
        assert_eq!(
            app.count(&format!("select count(*) from {table}")).await,
            0,
            "nothing written to {table}"
        );
    }
}

#[tokio::test]
async fn an_sms_opens_a_conversation_on_the_sms_account_once_however_often_sns_delivers_it() {
    let (app, account) = sms_app(false).await;
    let sms = inbound_sms(
        PASSENGER,
        OUR_NUMBER,
        "¿Hay lugar en el de las 9?",
        "in-sms-1",
    );
    let envelope = signed_notification(&sms);

    let first = app.post_sns(&envelope).await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.expect("json");
    let again: Value = app.post_sns(&envelope).await.json().await.expect("json");
    assert_eq!(
        (&first["received"], &again["received"], &again["duplicates"]),
        (&1.into(), &0.into(), &1.into()),
        "{first} / {again}"
    );

    let (identifiers, kind): (Value, String) =
        sqlx::query_as("select identifiers, kind from contacts where tenant_id = $1")
            .bind(app.tenant_id)
            .fetch_one(&app.pool)
            .await
            .expect("one contact");
    assert_eq!(identifiers, serde_json::json!({"phone": PASSENGER}));
    assert_eq!(kind, "CUSTOMER");
    let (conversation, on_account, status): (Uuid, Uuid, String) = sqlx::query_as(
        "select id, channel_account_id, status from conversations where tenant_id = $1",
    )
    .bind(app.tenant_id)
    .fetch_one(&app.pool)
    .await
    .expect("one conversation");
    assert_eq!((on_account, status.as_str()), (account.0, "OPEN"));
    let (direction, channel, msg_status, body, external_id, content): (
        String,
        String,
        String,
        String,
        String,
        Value,
    ) = sqlx::query_as(
        "select direction, channel, status, body, external_message_id, content
           from messages where conversation_id = $1",
    )
    .bind(conversation)
    .fetch_one(&app.pool)
    .await
    .expect("exactly one message");
    assert_eq!(
        (
            direction.as_str(),
            channel.as_str(),
            msg_status.as_str(),
            body.as_str(),
            external_id.as_str()
        ),
        (
            "INBOUND",
            "SMS",
            "DELIVERED",
            "¿Hay lugar en el de las 9?",
            "in-sms-1"
        )
    );
    assert_eq!(content, sms, "the provider's payload is kept");
}

#[tokio::test]
async fn an_sms_to_a_number_no_single_tenant_owns_is_acknowledged_and_kept_as_a_dead_letter() {
    let (app, _) = sms_app(false).await;
    let nobodys = app
        .sns_delivers(&inbound_sms(PASSENGER, "+12125550199", "hola", "in-sms-2"))
        .await;
    assert!(nobodys["dead_letter"].is_string(), "{nobodys}");

    // A second tenant claims the same number: neither gets the message.
    let other = TenantId(Uuid::new_v4());
    seed::upsert_tenant(
        &app.pool,
        other,
        "Otra Línea",
        "MX",
        "es-MX",
        "America/Mexico_City",
    )
    .await
    .expect("second tenant");
    app.add_sms_number(other, OUR_NUMBER).await;
    let shared = app
        .sns_delivers(&inbound_sms(PASSENGER, OUR_NUMBER, "hola", "in-sms-3"))
        .await;
    assert!(shared["dead_letter"].is_string(), "{shared}");

    // Not an inbound message at all: acknowledged, never retried.
    let stray = app
        .sns_delivers(&serde_json::json!({"eventType": "Delivery", "mail": {"messageId": "x"}}))
        .await;
    assert!(stray["ignored"].is_string(), "{stray}");
    inbox_is_empty(&app).await;
    let kept: Vec<(String, String, Value)> =
        sqlx::query_as("select provider, code, payload from inbound_dead_letters order by id")
            .fetch_all(&app.pool)
            .await
            .expect("dead letters");
    let kept: Vec<(&str, &str, &str)> = kept
        .iter()
        .map(|(p, c, payload)| {
            (
                p.as_str(),
                c.as_str(),
                payload["message"]["inboundMessageId"]
                    .as_str()
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        kept,
        [
            ("AWS_SNS", "UNKNOWN_ACCOUNT", "in-sms-2"),
            ("AWS_SNS", "UNKNOWN_ACCOUNT", "in-sms-3")
        ],
        "both people's messages are kept, the stray notification is not"
    );

    // The tenant connects the number the first one was sent to; the replay
    // brings it in. The shared number stays refused.
    app.add_sms_number(app.tenant_id, "+12125550199").await;
    let report = busflow_api::dead_letters::replay(&app.pool, &app.gateway(), None)
        .await
        .expect("replay");
    assert_eq!(
        report.iter().map(|r| r.used).collect::<Vec<_>>(),
        [true, false],
        "{report:?}"
    );
    let replayed: i64 = app
        .count("select count(*) from messages where direction = 'INBOUND' and external_message_id = 'in-sms-2'")
        .await;
    assert_eq!(replayed, 1);
}

#[tokio::test]
async fn a_forged_signature_is_refused_and_nothing_is_written() {
    let (app, _) = sms_app(false).await;
    let mut forged = signed_notification(&inbound_sms(PASSENGER, OUR_NUMBER, "hola", "in-sms-4"));
    forged.message = inbound_sms(PASSENGER, OUR_NUMBER, "págame aquí", "in-sms-4").to_string();
    let response = app.post_sns(&forged).await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["extensions"]["code"], "UNAUTHORIZED");

    let mut unsigned = busflow_api::testing::notification(
        &inbound_sms(PASSENGER, OUR_NUMBER, "hola", "in-sms-5").to_string(),
    );
    unsigned.signature = "bm90IGEgc2lnbmF0dXJl".to_owned();
    assert_eq!(app.post_sns(&unsigned).await.status(), 401);
    inbox_is_empty(&app).await;
}

#[tokio::test]
async fn an_sms_that_wakes_a_snoozed_conversation_stops_its_timer() {
    let (app, _) = sms_app(true).await;
    app.sns_delivers(&inbound_sms(PASSENGER, OUR_NUMBER, "Hola", "in-sms-6"))
        .await;
    let conversation: Uuid =
        sqlx::query_scalar("select id from conversations where tenant_id = $1")
            .bind(app.tenant_id)
            .fetch_one(&app.pool)
            .await
            .expect("conversation");
    assert_eq!(snooze(&app, conversation, 600).await.status(), 200);

    app.sns_delivers(&inbound_sms(
        PASSENGER,
        OUR_NUMBER,
        "¿Siguen ahí?",
        "in-sms-7",
    ))
    .await;
    let status: String = sqlx::query_scalar("select status from conversations where id = $1")
        .bind(conversation)
        .fetch_one(&app.pool)
        .await
        .expect("row");
    assert_eq!(status, "OPEN");
    assert_eq!(
        snooze_result(&app, conversation).await,
        SnoozeOutcome::Stopped
    );
}

/// A reply as a mail client writes it: multipart/alternative, the text part
/// quoted-printable UTF-8 with a soft line break, an HTML twin.
fn mime_reply(from: &str, to: &str, subject_header: &str, in_reply_to: Option<&str>) -> String {
    let threading = in_reply_to
        .map(|id| format!("In-Reply-To: {id}\nReferences: <older@mail.example.com> {id}\n"))
        .unwrap_or_default();
    format!(
        "From: {from}\nTo: {to}\nSubject: {subject_header}\n{threading}\
         Message-ID: <CAF=abc123@mail.example.com>\nMIME-Version: 1.0\n\
         Content-Type: multipart/alternative; boundary=\"000000000000a1b2c3\"\n\n\
         --000000000000a1b2c3\n\
         Content-Type: text/plain; charset=\"UTF-8\"\n\
         Content-Transfer-Encoding: quoted-printable\n\n\
         Buenos d=C3=ADas, =C2=BFpuedo llevar una bicicleta en el viaje a Le=C3=B3n=\n\
         ? Gracias.\n\n\
         --000000000000a1b2c3\n\
         Content-Type: text/html; charset=\"UTF-8\"\n\
         Content-Transfer-Encoding: quoted-printable\n\n\
         <div dir=3D\"ltr\">Buenos d=C3=ADas</div>\n\n\
         --000000000000a1b2c3--\n"
    )
    .replace('\n', "\r\n")
}

#[tokio::test]
async fn an_email_opens_a_conversation_with_the_senders_name_subject_and_text() {
    let app = email_app().await;
    let from = "\"Ana López\" <Ana.Lopez@Example.com>";
    let to = app.sender();
    let notification = email_received(
        "o3vrnil0e2ic28trm7dfhrc2v0clambda4nbp0g1",
        from,
        &to,
        "Bicicleta en el viaje",
        &mime_reply(from, &to, "Bicicleta en el viaje", None),
    );
    let envelope = signed_notification(&notification);
    let first: Value = app.post_sns(&envelope).await.json().await.expect("json");
    let again: Value = app.post_sns(&envelope).await.json().await.expect("json");
    assert_eq!(
        (&first["received"], &again["duplicates"]),
        (&1.into(), &1.into()),
        "{first} / {again}"
    );

    let (identifiers, name): (Value, String) =
        sqlx::query_as("select identifiers, display_name from contacts where tenant_id = $1")
            .bind(app.tenant_id)
            .fetch_one(&app.pool)
            .await
            .expect("one contact");
    assert_eq!(
        identifiers,
        serde_json::json!({"email": "ana.lopez@example.com"})
    );
    assert_eq!(name, "Ana López");
    let on_account: Uuid =
        sqlx::query_scalar("select channel_account_id from conversations where tenant_id = $1")
            .bind(app.tenant_id)
            .fetch_one(&app.pool)
            .await
            .expect("one conversation");
    assert_eq!(on_account, app.email_account_id().await.0);
    let (channel, direction, subject, body, external_id, content): (
        String,
        String,
        Option<String>,
        String,
        String,
        Value,
    ) = sqlx::query_as(
        "select channel, direction, subject, body, external_message_id, content
           from messages where tenant_id = $1",
    )
    .bind(app.tenant_id)
    .fetch_one(&app.pool)
    .await
    .expect("exactly one message");
    assert_eq!(
        (channel.as_str(), direction.as_str(), subject.as_deref()),
        ("EMAIL", "INBOUND", Some("Bicicleta en el viaje"))
    );
    assert_eq!(
        body,
        "Buenos días, ¿puedo llevar una bicicleta en el viaje a León? Gracias."
    );
    assert_eq!(external_id, "o3vrnil0e2ic28trm7dfhrc2v0clambda4nbp0g1");
    assert!(content.get("content").is_none(), "the raw MIME is not kept");
    assert_eq!(
        content["mail"]["commonHeaders"]["subject"],
        "Bicicleta en el viaje"
    );
}

#[tokio::test]
async fn a_reply_to_an_email_we_sent_lands_in_that_emails_conversation() {
    let app = email_app().await;
    let account = app.email_account_id().await;
    let contact: Uuid = sqlx::query_scalar(
        "insert into contacts (tenant_id, display_name, identifiers)
         values ($1, 'Ana López', '{\"email\": \"ana.lopez@example.com\"}') returning id",
    )
    .bind(app.tenant_id)
    .fetch_one(&app.pool)
    .await
    .expect("contact");
    // Two resolved conversations; without threading the newer one would be
    // reopened.
    let mut conversations = Vec::new();
    for days_ago in [10, 1] {
        let id: Uuid = sqlx::query_scalar(
            "insert into conversations (tenant_id, contact_id, channel_account_id, status, last_message_at)
             values ($1, $2, $3, 'RESOLVED', now() - make_interval(days => $4)) returning id",
        )
        .bind(app.tenant_id)
        .bind(contact)
        .bind(account)
        .bind(days_ago)
        .fetch_one(&app.pool)
        .await
        .expect("conversation");
        conversations.push(id);
    }
    let (older, newer) = (conversations[0], conversations[1]);
    let ses_id = "0100018c7a1b2c3d-5e6f7a8b-1c2d-4e5f-8a9b-0c1d2e3f4a5b-000000";
    sqlx::query(
        "insert into messages
            (tenant_id, conversation_id, contact_id, channel_account_id, direction, channel,
             status, external_message_id, subject, body, sent_at)
         values ($1, $2, $3, $4, 'OUTBOUND', 'EMAIL', 'DELIVERED', $5,
                 'Tu reserva a León', 'Tu reserva está confirmada', now() - interval '10 days')",
    )
    .bind(app.tenant_id)
    .bind(older)
    .bind(contact)
    .bind(account)
    .bind(ses_id)
    .execute(&app.pool)
    .await
    .expect("our email");

    let from = "Ana López <ana.lopez@example.com>";
    let to = app.sender();
    let encoded_subject = "=?UTF-8?Q?Re:_Tu_reserva_a_Le=C3=B3n?=";
    let reply = email_received(
        "reply0e2ic28trm7dfhrc2v0clambda4nbp0g1",
        from,
        &to,
        encoded_subject,
        &mime_reply(
            from,
            &to,
            encoded_subject,
            Some(&format!("<{ses_id}@email.amazonses.com>")),
        ),
    );
    let answer = app.sns_delivers(&reply).await;
    assert_eq!(answer["received"], 1, "{answer}");

    let (landed_in, subject): (Uuid, Option<String>) = sqlx::query_as(
        "select conversation_id, subject from messages where tenant_id = $1 and direction = 'INBOUND'",
    )
    .bind(app.tenant_id)
    .fetch_one(&app.pool)
    .await
    .expect("the reply");
    assert_eq!(landed_in, older, "threaded by In-Reply-To");
    assert_eq!(subject.as_deref(), Some("Re: Tu reserva a León"));
    for (conversation, expected) in [(older, "OPEN"), (newer, "RESOLVED")] {
        let status: String = sqlx::query_scalar("select status from conversations where id = $1")
            .bind(conversation)
            .fetch_one(&app.pool)
            .await
            .expect("conversation");
        assert_eq!(status, expected);
    }
}

#[tokio::test]
async fn an_sms_from_the_inbound_email_topic_is_refused_and_nothing_is_written() {
    use busflow_api::testing::TEST_TOPIC_ARN;
    use busflow_api::webhooks::sns_topics::SnsTopics;
    let app = TestApp::spawn_with(TestOptions {
        start_worker: false,
        sns_topics: Some(
            SnsTopics::only(
                vec!["arn:aws:sns:us-east-1:123456789012:ses-events".into()],
                vec![TEST_TOPIC_ARN.into()],
                vec!["arn:aws:sns:us-east-1:123456789012:inbound-sms".into()],
            )
            .expect("topics"),
        ),
        ..Default::default()
    })
    .await;
    app.add_sms_number(app.tenant_id, OUR_NUMBER).await;

    let response = app
        .post_sns(&signed_notification(&inbound_sms(
            PASSENGER, OUR_NUMBER, "hola", "in-sms-x",
        )))
        .await;

    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.expect("json");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("inbound SMS")),
        "names the feed: {body}"
    );
    inbox_is_empty(&app).await;
}

/// SES's verdicts on a real mail that failed DMARC (`tests/fixtures/ses/`).
fn dmarc_failed() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ses/inbound_received_dmarc_fail.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

async fn quarantined_rows(app: &TestApp) -> Vec<(String, String, Option<String>, Value)> {
    sqlx::query_as(
        "select reason, claimed_sender, body, verdicts from inbound_quarantine
          where tenant_id = $1 order by created_at",
    )
    .bind(app.tenant_id)
    .fetch_all(&app.pool)
    .await
    .expect("quarantine")
}

#[tokio::test]
async fn a_mail_in_anas_name_that_fails_dmarc_is_quarantined_and_never_joins_her_conversation() {
    let app = email_app().await;
    let ana = "\"Ana López\" <Ana.Lopez@Example.com>";
    let to = app.sender();
    // Ana writes, and her conversation is resolved.
    let genuine = email_received(
        "ses-genuine-1",
        ana,
        &to,
        "Bicicleta en el viaje",
        &mime_reply(ana, &to, "Bicicleta en el viaje", None),
    );
    let answer: Value = app
        .post_sns(&signed_notification(&genuine))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(answer["received"], 1, "{answer}");
    sqlx::query("update conversations set status = 'RESOLVED' where tenant_id = $1")
        .bind(app.tenant_id)
        .execute(&app.pool)
        .await
        .expect("resolve");

    // Someone else writes in her name: SES's verdicts are those of a real
    // DMARC failure (SPF FAIL, DMARC FAIL, policy reject).
    let real = dmarc_failed();
    let mut spoof = email_received(
        "ses-spoof-1",
        ana,
        &to,
        "Cambie mi asiento",
        &mime_reply(ana, &to, "Cambie mi asiento", None),
    );
    for verdict in [
        "spfVerdict",
        "dkimVerdict",
        "dmarcVerdict",
        "dmarcPolicy",
        "spamVerdict",
        "virusVerdict",
    ] {
        spoof["receipt"][verdict] = real["receipt"][verdict].clone();
    }
    let envelope = signed_notification(&spoof);
    for _ in 0..2 {
        let response = app.post_sns(&envelope).await;
        assert_eq!(response.status(), 200, "SNS must not redeliver it");
        let answer: Value = response.json().await.expect("json");
        assert_eq!(answer["quarantined"], "DMARC_FAIL", "{answer}");
        assert_eq!(answer["received"], 0, "{answer}");
    }

    assert_eq!(
        app.count("select count(*) from messages").await,
        1,
        "only Ana's own mail is in the inbox"
    );
    let status: String =
        sqlx::query_scalar("select status from conversations where tenant_id = $1")
            .bind(app.tenant_id)
            .fetch_one(&app.pool)
            .await
            .expect("one conversation");
    assert_eq!(status, "RESOLVED", "the spoof reopened nothing");
    let rows = quarantined_rows(&app).await;
    assert_eq!(
        rows.len(),
        1,
        "one row however often SNS delivers: {rows:?}"
    );
    let (reason, claimed, body, verdicts) = &rows[0];
    assert_eq!(reason, "DMARC_FAIL");
    assert_eq!(claimed, "ana.lopez@example.com");
    assert!(
        body.as_deref().is_some_and(|b| b.contains("bicicleta")),
        "the tenant can read what was claimed: {body:?}"
    );
    assert_eq!(verdicts["dmarc"], "FAIL");
    assert_eq!(verdicts["dmarc_policy"], "reject");
    assert_eq!(
        app.metric(
            "busflow_inbound_quarantined_24h",
            &[("reason", "DMARC_FAIL")]
        )
        .await,
        Some(1.0),
        "counted"
    );
}

#[tokio::test]
async fn a_real_dmarc_failure_stored_in_s3_and_a_virus_are_quarantined_without_their_text() {
    let app = email_app().await;
    let to = app.sender();
    // The real notification as SES sent it (an S3 action: no raw message),
    // only addressed to this tenant.
    let mut real = dmarc_failed();
    real["mail"]["destination"] = serde_json::json!([to]);
    real["mail"]["commonHeaders"]["to"] = serde_json::json!([to]);
    real["receipt"]["recipients"] = serde_json::json!([to]);
    let answer: Value = app
        .post_sns(&signed_notification(&real))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(answer["quarantined"], "DMARC_FAIL", "{answer}");

    let ana = "Ana <ana@example.com>";
    let mut virus = email_received(
        "ses-virus-1",
        ana,
        &to,
        "Factura",
        &mime_reply(ana, &to, "Factura", None),
    );
    virus["receipt"]["virusVerdict"]["status"] = serde_json::json!("FAIL");
    let answer: Value = app
        .post_sns(&signed_notification(&virus))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(answer["quarantined"], "VIRUS", "{answer}");

    inbox_is_empty(&app).await;
    let rows = quarantined_rows(&app).await;
    let reasons: Vec<(&str, &str, bool)> = rows
        .iter()
        .map(|(reason, claimed, body, _)| (reason.as_str(), claimed.as_str(), body.is_some()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("DMARC_FAIL", "source@sender.com", false),
            ("VIRUS", "ana@example.com", false)
        ]
    );
}
