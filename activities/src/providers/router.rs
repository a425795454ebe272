//! From a channel account to the adapter that serves it: reads the account's
//! provider_config, opens its secrets (only here, only for the call), and
//! sends. Sandbox accounts never leave the process: they answer with a
//! synthetic id and, for WhatsApp, play the provider's receipts back through
//! the real, signed webhook of this service, so the local demo runs the whole
//! loop.

use super::email::ses::SesEmail;
use super::sms::sns::SnsSms;
use super::whatsapp::meta::MetaCloud;
use super::{Accepted, Failure, FailureClass, SendMessageCommand, account_failure};
use crate::crypto::KeyRing;
use crate::model::{Channel, ChannelAccountMode, TenantId};
use crate::secrets;
use crate::store::channel_accounts::ChannelAccount;
use crate::traces::Traces;
use opentelemetry::KeyValue;
use serde::Deserialize;
use std::time::Duration;

/// Provider clients shared by every dispatch.
#[derive(Clone, Debug)]
pub struct Providers {
    pub ses: SesEmail,
    pub sms: SnsSms,
    pub meta: MetaCloud,
    /// Where sandbox accounts post their simulated receipts (this service's
    /// API); `None` disables simulated receipts.
    pub sandbox_webhook_base: Option<String>,
    /// Each provider call is a span of these traces.
    pub traces: Traces,
}

/// `provider_config.sandbox` of a sandbox account.
#[derive(Debug, Clone, Default, Deserialize)]
struct SandboxConfig {
    #[serde(default)]
    outcome: SandboxOutcome,
    /// Recipients whose messages get a FAILED receipt whatever `outcome` says
    /// (a demo of fallback next to a demo of a delivered reply).
    #[serde(default)]
    failing_recipients: Vec<String>,
    /// The WhatsApp templates the sandbox number has approved; a template
    /// message with another name is refused as Meta refuses it (132001).
    /// `None`: every name is approved.
    #[serde(default)]
    approved_templates: Option<Vec<String>>,
}

impl SandboxConfig {
    fn outcome_for(&self, recipient: &str) -> SandboxOutcome {
        if self.failing_recipients.iter().any(|r| r == recipient) {
            SandboxOutcome::FailedReceipt
        } else {
            self.outcome
        }
    }
}

/// What the simulated provider does with a message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SandboxOutcome {
    /// Accepted, then delivered and read.
    #[default]
    Delivered,
    /// Refused at once as undeliverable (WhatsApp 131026).
    Undeliverable,
    /// Accepted, then a FAILED receipt (WhatsApp 131026).
    FailedReceipt,
    /// Accepted, and never a receipt.
    Silent,
}

impl Providers {
    pub async fn send(
        &self,
        keys: &KeyRing,
        account: &ChannelAccount,
        command: &SendMessageCommand,
    ) -> Result<Accepted, Failure> {
        let attributes = vec![
            KeyValue::new("busflow.tenant_id", account.tenant_id.to_string()),
            KeyValue::new("busflow.channel_account_id", account.id.to_string()),
            KeyValue::new("busflow.message_id", command.message_id.to_string()),
            KeyValue::new("busflow.channel", command.channel.as_str()),
            KeyValue::new(
                "busflow.sandbox",
                account.mode == ChannelAccountMode::Sandbox,
            ),
        ];
        let name = match command.channel {
            Channel::WhatsApp => "send WHATSAPP",
            Channel::Email => "send EMAIL",
            Channel::Sms => "send SMS",
            Channel::Webchat => "send WEBCHAT",
        };
        self.traces
            .provider_call(name, attributes, Failure::code_only, async {
                if account.mode == ChannelAccountMode::Sandbox {
                    return self.send_sandbox(keys, account, command);
                }
                super::adapter(command.channel)
                    .send(self, keys, account, command)
                    .await
            })
            .await
    }

    fn send_sandbox(
        &self,
        keys: &KeyRing,
        account: &ChannelAccount,
        command: &SendMessageCommand,
    ) -> Result<Accepted, Failure> {
        let sandbox: SandboxConfig = account
            .provider_config
            .0
            .get("sandbox")
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| {
                account_failure(
                    "sandbox",
                    format!("provider_config.sandbox is invalid: {e}"),
                )
            })?
            .unwrap_or_default();
        if let (Some(approved), Some(template)) =
            (&sandbox.approved_templates, &command.whatsapp_template)
            && !approved.contains(&template.name)
        {
            return Err(Failure {
                provider: "sandbox",
                class: FailureClass::Account,
                code: "132001".into(),
                reason: format!(
                    "sandbox: template name '{}' does not exist in the translation (simulated WhatsApp 132001)",
                    template.name
                ),
                retry_after: None,
            });
        }
        let outcome = sandbox.outcome_for(&command.recipient);
        if outcome == SandboxOutcome::Undeliverable {
            return Err(Failure {
                provider: "sandbox",
                class: FailureClass::Recipient,
                code: "131026".into(),
                reason: "sandbox: message undeliverable (simulated WhatsApp 131026)".into(),
                retry_after: None,
            });
        }
        let external_message_id = match command.channel {
            Channel::WhatsApp => format!("wamid.sandbox-{}", command.message_id),
            _ => format!("sandbox-{}", command.message_id),
        };
        let plays_receipts =
            command.channel == Channel::WhatsApp && outcome != SandboxOutcome::Silent;
        if plays_receipts
            && let Some(base) = &self.sandbox_webhook_base
            && let Ok(opened) = secrets::open(keys, account)
            && let Some(app_secret) = opened.app_secret
        {
            let statuses: &[(&str, Option<i64>)] = match outcome {
                SandboxOutcome::FailedReceipt => &[("sent", None), ("failed", Some(131_026))],
                _ => &[("sent", None), ("delivered", None), ("read", None)],
            };
            tokio::spawn(play_meta_receipts(
                format!("{base}/webhooks/meta/{}", account.tenant_id),
                app_secret,
                account.tenant_id,
                external_message_id.clone(),
                statuses
                    .iter()
                    .map(|(s, c)| ((*s).to_owned(), *c))
                    .collect(),
            ));
        }
        Ok(Accepted {
            external_message_id,
        })
    }
}

/// Posts Meta-shaped status webhooks, signed like Meta signs them.
async fn play_meta_receipts(
    url: String,
    app_secret: String,
    tenant_id: TenantId,
    wamid: String,
    statuses: Vec<(String, Option<i64>)>,
) {
    // One client for every receipt: building one loads the TLS roots,
    // which at hundreds of sends a second was most of the sandbox's cost.
    static CLIENT: std::sync::OnceLock<Option<reqwest::Client>> = std::sync::OnceLock::new();
    let Some(http) = CLIENT
        .get_or_init(|| crate::http::client(Duration::from_secs(10)).ok())
        .as_ref()
    else {
        return;
    };
    for (status, code) in statuses {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let errors: Vec<serde_json::Value> = code
            .map(|c| serde_json::json!({"code": c, "title": "Message undeliverable", "message": "Message undeliverable (sandbox)"}))
            .into_iter()
            .collect();
        let body = serde_json::json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "sandbox", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"phone_number_id": "sandbox"},
                "statuses": [{"id": wamid, "status": status,
                              "timestamp": chrono::Utc::now().timestamp().to_string(),
                              "errors": errors}]
            }}]}]
        })
        .to_string();
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, app_secret.as_bytes());
        let signature: String = ring::hmac::sign(&key, body.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        // As Meta does, a webhook that is not answered 2xx is sent again,
        // backing off (Meta keeps trying for days; the sandbox for minutes).
        let mut backoff = Duration::from_secs(1);
        for attempt in 1..=SANDBOX_RECEIPT_ATTEMPTS {
            let sent = http
                .post(&url)
                .header("content-type", "application/json")
                .header("x-hub-signature-256", format!("sha256={signature}"))
                .body(body.clone())
                .send()
                .await;
            let problem = match sent {
                Ok(answer) if answer.status().is_success() => break,
                Ok(answer) => answer.status().to_string(),
                Err(e) => e.to_string(),
            };
            if attempt == SANDBOX_RECEIPT_ATTEMPTS {
                tracing::warn!(tenant.id = %tenant_id, "sandbox receipt {status} for {wamid} given up after {attempt} attempts: {problem}");
            } else {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// How often the sandbox posts one receipt before it gives up (about five
/// minutes of backing off).
const SANDBOX_RECEIPT_ATTEMPTS: u32 = 14;
