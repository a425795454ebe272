//! Plays the providers' receipts back to the service as they would arrive:
//! Meta's signed status webhooks for every message the Graph fake accepted
//! (naming our message id in `biz_opaque_callback_data`, as Meta echoes it),
//! and SES delivery events through SNS for every email moto recorded, with
//! the send's tags as SES returns them (kept by the SES front). A
//! webhook answered non-2xx is sent again, as both providers do.

use crate::graph::{Accepted, GraphFake};
use crate::ses_front::{SentTags, SesFront};
use crate::support::TestApp;
use crate::support::meta::{PASSENGER_WA_ID, PHONE_NUMBER_ID, sign};
use busflow_activities::secrets::ProviderSecrets;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How Meta's receipts arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptMode {
    /// sent, then delivered.
    InOrder,
    /// read, sent, delivered, then delivered and read again, each its own
    /// webhook, all at once.
    DuplicatedAndReordered,
}

pub struct ReceiptPlayer {
    task: JoinHandle<()>,
}

impl Drop for ReceiptPlayer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Target {
    http: reqwest::Client,
    base_url: String,
    tenant: uuid::Uuid,
    app_secret: String,
    domain: String,
    moto: String,
    sent_tags: SentTags,
}

impl ReceiptPlayer {
    pub fn start(
        app: &TestApp,
        secrets: &ProviderSecrets,
        graph: &GraphFake,
        ses: &SesFront,
        mode: ReceiptMode,
    ) -> Self {
        let target = Arc::new(Target {
            http: busflow_activities::http::client(Duration::from_secs(30)).expect("http"),
            base_url: app.base_url.clone(),
            tenant: app.tenant_id.0,
            app_secret: secrets.app_secret.clone().expect("app secret"),
            domain: app.domain.clone(),
            moto: app.aws_endpoint.clone(),
            sent_tags: ses.tags.clone(),
        });
        let graph = graph.unplayed_handle();
        let task = tokio::spawn(async move {
            let mut played_emails = HashSet::new();
            loop {
                for accepted in graph.take() {
                    tokio::spawn(play_meta(target.clone(), accepted, mode));
                }
                for id in target.new_emails(&mut played_emails).await {
                    tokio::spawn(play_ses(target.clone(), id));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Self { task }
    }
}

impl Target {
    async fn new_emails(&self, played: &mut HashSet<String>) -> Vec<String> {
        let Ok(response) = self
            .http
            .get(format!("{}/moto-api/data.json", self.moto))
            .send()
            .await
        else {
            return Vec::new();
        };
        let record: serde_json::Value = response.json().await.unwrap_or_default();
        record["ses"]["Message"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| {
                m["source"]
                    .as_str()
                    .is_some_and(|s| s.contains(&self.domain))
            })
            .filter_map(|m| m["id"].as_str().map(str::to_owned))
            // SES names the tags in every event: wait until the front has them.
            .filter(|id| self.sent_tags.lock().expect("tags lock").contains_key(id))
            .filter(|id| played.insert(id.clone()))
            .collect()
    }

    /// POSTs until the service answers 2xx (up to a minute, as a provider
    /// retries).
    async fn deliver(&self, request: impl Fn() -> reqwest::RequestBuilder) {
        for _ in 0..120 {
            if let Ok(response) = request().send().await
                && response.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

async fn play_meta(target: Arc<Target>, accepted: Accepted, mode: ReceiptMode) {
    let statuses: &[&str] = match mode {
        ReceiptMode::InOrder => &["sent", "delivered"],
        ReceiptMode::DuplicatedAndReordered => &["read", "sent", "delivered", "delivered", "read"],
    };
    let posts = statuses.iter().map(|status| {
        let body = json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
                "statuses": [{
                    "id": accepted.wamid,
                    "status": status,
                    "timestamp": chrono::Utc::now().timestamp().to_string(),
                    "recipient_id": if accepted.to.is_empty() { PASSENGER_WA_ID } else { &accepted.to },
                    "biz_opaque_callback_data": accepted.ours.to_string(),
                    "pricing": {"billable": true, "pricing_model": "PMP", "category": "utility", "type": "regular"}
                }]
            }}]}]
        })
        .to_string();
        let target = target.clone();
        async move {
            let signature = sign(&target.app_secret, &body);
            let url = format!("{}/webhooks/meta/{}", target.base_url, target.tenant);
            target
                .deliver(|| {
                    target
                        .http
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("x-hub-signature-256", &signature)
                        .body(body.clone())
                })
                .await;
        }
    });
    match mode {
        ReceiptMode::InOrder => {
            for post in posts {
                post.await;
            }
        }
        ReceiptMode::DuplicatedAndReordered => {
            futures::future::join_all(posts).await;
        }
    }
}

async fn play_ses(target: Arc<Target>, ses_id: String) {
    use busflow_api::testing::{TEST_KEY_PEM, notification, sign_envelope};
    let tags = target
        .sent_tags
        .lock()
        .expect("tags lock")
        .get(&ses_id)
        .cloned();
    let event = json!({"eventType": "Delivery",
        "mail": {"messageId": ses_id, "timestamp": chrono::Utc::now().to_rfc3339(), "tags": tags},
        "delivery": {"timestamp": chrono::Utc::now().to_rfc3339(), "recipients": []}});
    let mut envelope = notification(&event.to_string());
    envelope.message_id = uuid::Uuid::new_v4().to_string();
    sign_envelope(&mut envelope, TEST_KEY_PEM);
    let body = serde_json::to_string(&envelope).expect("envelope");
    let url = format!("{}/webhooks/ses", target.base_url);
    target
        .deliver(|| {
            target
                .http
                .post(&url)
                .header("content-type", "text/plain; charset=UTF-8")
                .header("x-amz-sns-message-type", "Notification")
                .body(body.clone())
        })
        .await;
}
