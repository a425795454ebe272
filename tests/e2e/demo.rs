//! The demo tenant of the README's stack (`temporal-dev.yml`), seeded as
//! `busflow-comms dev` seeds it: its sandbox WhatsApp number has approved a
//! template for every trigger, so every trigger can go out on WhatsApp; a
//! template it has not approved is refused as Meta refuses it.

use crate::support::TestApp;
use crate::support::app::test_keys;
use busflow_activities::model::TenantId;
use busflow_activities::templates::platform;
use busflow_comms::dev::config::DevStack;
use busflow_comms::dev::seed;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;

async fn demo(app: &TestApp) -> DevStack {
    let stack = DevStack::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("temporal-dev.yml"))
        .expect("temporal-dev.yml");
    seed::seed_demo_tenant(&app.pool, &test_keys(), &stack.demo_tenant)
        .await
        .expect("seed the demo tenant");
    stack
}

#[tokio::test]
async fn the_demo_number_has_approved_a_whatsapp_template_for_every_trigger() {
    let app = TestApp::spawn_with(crate::support::TestOptions {
        start_worker: false,
        ..Default::default()
    })
    .await;
    let stack = demo(&app).await;
    let config: Value = sqlx::query_scalar(
        "select provider_config from channel_accounts where tenant_id = $1 and channel = 'WHATSAPP'",
    )
    .bind(stack.demo_tenant.id)
    .fetch_one(&app.pool)
    .await
    .expect("the demo number");
    let approved: BTreeSet<&str> = config["sandbox"]["approved_templates"]
        .as_array()
        .expect("approved templates")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let needed = platform::catalog()
        .expect("catalog")
        .whatsapp_template_names();
    let missing: Vec<&&str> = needed.iter().filter(|n| !approved.contains(**n)).collect();
    assert!(
        missing.is_empty(),
        "not approved on the demo number: {missing:?}"
    );
    assert!(approved.contains(stack.demo_tenant.whatsapp.template_name.as_str()));

    // And an account for every channel of every trigger's default chain.
    let active: BTreeSet<String> = sqlx::query_scalar(
        "select channel from channel_accounts where tenant_id = $1 and status = 'ACTIVE'",
    )
    .bind(stack.demo_tenant.id)
    .fetch_all(&app.pool)
    .await
    .expect("accounts")
    .into_iter()
    .collect();
    for trigger in busflow_activities::triggers::templated_triggers() {
        for channel in trigger.default_chain {
            assert!(
                active.contains(channel.as_str()),
                "{}: no {channel} account on the demo",
                trigger.trigger
            );
        }
    }
}

#[tokio::test]
async fn a_template_the_sandbox_number_never_approved_is_refused_as_meta_refuses_it_and_sms_follows()
 {
    let app = TestApp::spawn().await;
    let stack = demo(&app).await;
    let tenant = TenantId(stack.demo_tenant.id);
    sqlx::query(
        "update notification_templates set whatsapp_template_name = 'never_approved' where tenant_id = $1",
    )
    .bind(tenant)
    .execute(&app.pool)
    .await
    .expect("map to an unapproved template");
    // Luis is not among the sandbox's failing recipients: only the template fails.
    let luis = stack
        .demo_tenant
        .passengers
        .iter()
        .find(|p| p.full_name.starts_with("Luis"))
        .expect("Luis");
    let event_id = uuid::Uuid::new_v4().to_string();
    let mut booking =
        crate::support::booking_event(&event_id, tenant, luis.passenger_profile_id, "BF-LUIS");
    booking["event"]["data"]["new"]["tenant_id"] = json!(tenant.0);
    let answer: Value = app.post_event(&booking).await.json().await.expect("json");
    let workflow_id = answer["workflow_id"].as_str().expect("started").to_owned();
    let _ = app.workflow_result(&workflow_id).await;
    let (status, reason): (String, Option<String>) = sqlx::query_as(
        "select status, failed_reason from messages where workflow_id = $1 and channel = 'WHATSAPP'",
    )
    .bind(&workflow_id)
    .fetch_one(&app.pool)
    .await
    .expect("the WhatsApp attempt");
    assert_eq!(status, "FAILED");
    assert!(
        reason.as_deref().is_some_and(|r| r.contains("132001")),
        "{reason:?}"
    );
    let fallback: String = sqlx::query_scalar(
        "select status from messages where workflow_id = $1 and channel = 'SMS'",
    )
    .bind(&workflow_id)
    .fetch_one(&app.pool)
    .await
    .expect("the SMS it fell back to");
    assert_eq!(fallback, "SENT");
}
