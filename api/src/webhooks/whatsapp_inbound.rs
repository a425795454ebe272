//! WhatsApp messages people send to a tenant, as the Meta webhook carries
//! them (`entry[].changes[].value.messages[]`): text, media (metadata only —
//! media ids are fetched from Meta when an agent opens them), interactive
//! replies, buttons, locations. Each becomes an `InboundMessage` with a
//! readable `body` for the inbox and the whole provider object in `content`.

use busflow_activities::identifiers::PhoneNumber;
use busflow_activities::model::{Channel, TenantId};
use busflow_activities::store::channel_accounts::ChannelAccount;
use busflow_activities::store::inbox::{InboundMessage, SenderKey};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Default, Deserialize)]
pub struct InboundValue {
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub contacts: Vec<WaContact>,
    #[serde(default)]
    pub messages: Vec<Value>,
}

#[derive(Debug, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub phone_number_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct WaContact {
    #[serde(default)]
    pub wa_id: Option<String>,
    #[serde(default)]
    pub profile: Option<Profile>,
}

#[derive(Debug, Deserialize)]
pub struct Profile {
    #[serde(default)]
    pub name: Option<String>,
}

/// Turns one change's messages into inbound messages for the account that
/// owns its phone number. Messages that cannot be read (no sender, no id)
/// are skipped with a warning, never retried by Meta for days.
pub fn inbound_messages(
    tenant_id: TenantId,
    accounts: &[ChannelAccount],
    value: &InboundValue,
) -> Vec<InboundMessage> {
    let phone_number_id = value
        .metadata
        .as_ref()
        .and_then(|m| m.phone_number_id.as_deref());
    let account = accounts
        .iter()
        .find(|a| {
            a.provider_config
                .0
                .get("phone_number_id")
                .and_then(Value::as_str)
                == phone_number_id
        })
        .or(if accounts.len() == 1 {
            accounts.first()
        } else {
            None
        });
    let Some(account) = account else {
        if !value.messages.is_empty() {
            tracing::warn!(tenant.id = %tenant_id, "WhatsApp messages for unknown phone number {phone_number_id:?} ignored");
        }
        return Vec::new();
    };
    value
        .messages
        .iter()
        .filter_map(|message| {
            let from = message.get("from").and_then(Value::as_str)?;
            let id = message.get("id").and_then(Value::as_str)?;
            let Ok(sender) = PhoneNumber::parse_e164(&format!("+{}", from.trim_start_matches('+'))) else {
                tracing::warn!(tenant.id = %tenant_id, "WhatsApp message {id} from an unreadable number ignored");
                return None;
            };
            let name = value
                .contacts
                .iter()
                .find(|c| c.wa_id.as_deref() == Some(from))
                .and_then(|c| c.profile.as_ref())
                .and_then(|p| p.name.clone());
            let received_at = message
                .get("timestamp")
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<i64>().ok())
                .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
                .unwrap_or_else(chrono::Utc::now);
            Some(InboundMessage {
                tenant_id,
                channel_account_id: account.id,
                channel: Channel::WhatsApp,
                sender_key: SenderKey::WhatsApp,
                sender: sender.to_string(),
                sender_name: name,
                external_message_id: id.to_owned(),
                subject: None,
                body: readable_body(message),
                content: message.clone(),
                received_at,
                conversation_hint: None,
            })
        })
        .collect()
}

/// What an agent reads in the thread for each message type.
fn readable_body(message: &Value) -> String {
    let kind = message
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let field = |path: &[&str]| -> Option<String> {
        let mut current = message;
        for key in path {
            current = current.get(*key)?;
        }
        current.as_str().map(str::to_owned)
    };
    match kind {
        "text" => field(&["text", "body"]).unwrap_or_default(),
        "image" | "video" | "document" | "audio" | "sticker" => {
            let caption = field(&[kind, "caption"]).or_else(|| field(&[kind, "filename"]));
            match caption {
                Some(caption) => format!("[{kind}] {caption}"),
                None => format!("[{kind}]"),
            }
        }
        "interactive" => field(&["interactive", "button_reply", "title"])
            .or_else(|| field(&["interactive", "list_reply", "title"]))
            .unwrap_or_else(|| "[interactive reply]".to_owned()),
        "button" => field(&["button", "text"]).unwrap_or_else(|| "[button]".to_owned()),
        "location" => {
            let location = message.get("location");
            let coordinate = |key: &str| location.and_then(|l| l.get(key)).and_then(Value::as_f64);
            let label = field(&["location", "name"])
                .or_else(|| field(&["location", "address"]))
                .unwrap_or_else(|| "location".to_owned());
            match (coordinate("latitude"), coordinate("longitude")) {
                (Some(lat), Some(lng)) => format!("[location] {label} ({lat}, {lng})"),
                _ => format!("[location] {label}"),
            }
        }
        "reaction" => format!(
            "[reaction] {}",
            field(&["reaction", "emoji"]).unwrap_or_default()
        ),
        other => format!("[{other}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_message_type_reads_as_text_in_the_inbox() {
        let cases = [
            (
                json!({"type": "text", "text": {"body": "¿A qué hora sale?"}}),
                "¿A qué hora sale?",
            ),
            (
                json!({"type": "image", "image": {"id": "m1", "mime_type": "image/jpeg", "caption": "mi boleto"}}),
                "[image] mi boleto",
            ),
            (
                json!({"type": "audio", "audio": {"id": "m2", "mime_type": "audio/ogg"}}),
                "[audio]",
            ),
            (
                json!({"type": "interactive", "interactive": {"type": "button_reply", "button_reply": {"id": "yes", "title": "Sí, confirmo"}}}),
                "Sí, confirmo",
            ),
            (
                json!({"type": "location", "location": {"latitude": 19.43, "longitude": -99.13, "name": "Terminal Norte"}}),
                "[location] Terminal Norte (19.43, -99.13)",
            ),
            (json!({"type": "unsupported"}), "[unsupported]"),
        ];
        for (message, expected) in cases {
            assert_eq!(readable_body(&message), expected);
        }
    }
}
