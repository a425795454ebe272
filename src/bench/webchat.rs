//! How long an agent's reply takes to appear in a visitor's widget: visitors
//! write, wait on the widget's long poll, and an agent answers each through
//! the `sendAgentMessage` action. Measured from the action's answer to the
//! long poll's answer carrying the reply (the widget renders it at once), so
//! it is the whole path: the reply's `NotificationWorkflow`, its dispatch,
//! the commit's announcement, the poll waking and its fetch (which records
//! the reply DELIVERED). Visitors take turns in groups of `in_flight`.

use super::events::SECRET;
use super::stack::Stack;
use super::stats::Latency;
use anyhow::{Context, ensure};
use busflow_activities::model::TenantId;
use busflow_activities::secrets::ProviderSecrets;
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use uuid::Uuid;

const WIDGET_SECRET: &str = "bench-widget-secret";

/// What the visitors saw.
#[derive(Debug, Clone)]
pub struct ReplyLatency {
    pub replies: usize,
    pub in_flight: usize,
    pub latency: Latency,
}

pub async fn measure(
    stack: &Stack,
    http: &reqwest::Client,
    replies: usize,
    in_flight: usize,
) -> anyhow::Result<ReplyLatency> {
    let tenant = widget_tenant(stack).await?;
    let visitors = futures::stream::iter(0..replies)
        .map(|i| one_reply(stack, http, tenant, i))
        .buffer_unordered(in_flight.max(1))
        .collect::<Vec<_>>()
        .await;
    let mut ms = Vec::with_capacity(replies);
    for waited in visitors {
        ms.push(i64::try_from(waited?.as_millis()).unwrap_or(i64::MAX));
    }
    Ok(ReplyLatency {
        replies,
        in_flight,
        latency: Latency::of(ms),
    })
}

/// One visitor writes, an agent replies, the visitor's poll receives it.
async fn one_reply(
    stack: &Stack,
    http: &reqwest::Client,
    tenant: TenantId,
    i: usize,
) -> anyhow::Result<Duration> {
    let widget = format!("{}/webchat/{tenant}", stack.api_base);
    let session: Value = http
        .post(format!("{widget}/sessions"))
        .json(&json!({}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = session["token"].as_str().context("no token")?.to_owned();
    let wrote: Value = http
        .post(format!("{widget}/messages"))
        .bearer_auth(&token)
        .json(&json!({"client_message_id": format!("q-{i}"), "text": "¿A qué hora sale?"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let conversation = wrote["conversation_id"]
        .as_str()
        .context("no conversation")?
        .to_owned();
    let own: Value = http
        .get(format!("{widget}/messages?wait=0"))
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let cursor = own["cursor"].as_str().context("no cursor")?.to_owned();

    let poll = async {
        let answer: Value = http
            .get(format!("{widget}/messages?after={cursor}&wait=25"))
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok::<_, anyhow::Error>((answer, Instant::now()))
    };
    let reply = async {
        http.post(format!("{}/hasura/actions", stack.api_base))
            .header("x-busflow-secret", SECRET)
            .json(&json!({
                "action": {"name": "sendAgentMessage"},
                "input": {"conversation_id": conversation, "body": "A las 8:00.", "client_message_id": format!("a-{i}")},
                "session_variables": {"x-hasura-role": "dispatcher", "x-hasura-user-id": "bench-agent",
                                      "x-hasura-tenant-id": tenant.to_string()},
            }))
            .send()
            .await?
            .error_for_status()?;
        Ok::<_, anyhow::Error>(Instant::now())
    };
    let (polled, replied) = tokio::join!(poll, reply);
    let (answer, seen_at) = polled?;
    let replied_at = replied?;
    let messages = answer["messages"].as_array().context("no messages")?;
    ensure!(
        messages.iter().any(|m| m["direction"] == "OUTBOUND"),
        "visitor {i}'s widget answered without the reply within 25 s: {answer}"
    );
    Ok(seen_at.saturating_duration_since(replied_at))
}

/// A tenant with a webchat account, and visitors' sessions not limited.
async fn widget_tenant(stack: &Stack) -> anyhow::Result<TenantId> {
    let tenant = TenantId(Uuid::new_v4());
    crate::dev::seed::upsert_tenant(
        &stack.pool,
        tenant,
        "Autobuses Bench Webchat",
        "MX",
        "es-MX",
        "America/Mexico_City",
    )
    .await?;
    let account =
        busflow_activities::store::channel_accounts::insert_bench_webchat(&stack.pool, tenant)
            .await
            .context("seeding the webchat account")?;
    let secrets = ProviderSecrets {
        widget_secret: Some(WIDGET_SECRET.to_owned()),
        ..ProviderSecrets::default()
    };
    busflow_activities::secrets::store(&stack.pool, &stack.keys, tenant, account, &secrets)
        .await
        .context("sealing the widget secret")?;
    Ok(tenant)
}
