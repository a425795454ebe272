//! WhatsApp messages people send to a tenant, as the Meta webhook carries
//! them (`entry[].changes[].value.messages[]`): text, media (metadata only —
//! media ids are fetched from Meta when an agent opens them), interactive
//! replies, buttons, locations, system notices. Each becomes an
//! `InboundMessage` with a readable `body` for the inbox and the whole
//! provider object in `content`.
//!
//! Meta's word is authoritative for who wrote: `from` (the `wa_id`) is kept
//! as Meta sends it, even for numbers our phone library would call invalid
//! (new ranges, test numbers); a user known only by Meta's business-scoped
//! user id (`from_user_id`, no number) is kept by that id. A message that
//! names nobody, or reaches a number no account of the tenant has, is not
//! dropped: it comes back as a dead letter with its payload.

use busflow_activities::model::Provider;
use busflow_activities::model::{Channel, TenantId};
use busflow_activities::store::channel_accounts::ChannelAccount;
use busflow_activities::store::dead_letters::{DeadLetterCode, NewDeadLetter};
use busflow_activities::store::inbox::{InboundMessage, SenderKey};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Default, Deserialize)]
pub struct InboundValue {
    #[serde(default)]
    pub metadata: Option<Value>,
    #[serde(default, deserialize_with = "super::meta::null_as_empty")]
    pub contacts: Vec<WaContact>,
    #[serde(default, deserialize_with = "super::meta::null_as_empty")]
    pub messages: Vec<Value>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct WaContact {
    #[serde(default)]
    pub wa_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub profile: Option<Profile>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Profile {
    #[serde(default)]
    pub name: Option<String>,
}

/// What one change's messages became.
#[derive(Debug, Default)]
pub struct Inbound {
    pub messages: Vec<InboundMessage>,
    pub dead_letters: Vec<NewDeadLetter>,
}

/// Meta sends absent values as missing keys, and (before 2026) as "".
fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A `wa_id` as Meta writes it: digits, possibly with a leading `+`.
fn wa_number(raw: &str) -> Option<String> {
    let digits = raw.trim_start_matches('+');
    (digits.len() >= 5 && digits.len() <= 20 && digits.chars().all(|c| c.is_ascii_digit()))
        .then(|| format!("+{digits}"))
}

/// Turns one change's messages into inbound messages for the account that
/// owns its phone number, and dead letters for those that cannot be.
pub fn inbound_messages(
    tenant_id: TenantId,
    accounts: &[ChannelAccount],
    value: &InboundValue,
) -> Inbound {
    let mut out = Inbound::default();
    let phone_number_id = value
        .metadata
        .as_ref()
        .and_then(|m| m.get("phone_number_id"))
        .and_then(Value::as_str);
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
    for message in &value.messages {
        // What a dead letter keeps: this message with what names its sender.
        let dead = |code: DeadLetterCode, reason: String| NewDeadLetter {
            tenant_id: Some(tenant_id),
            provider: Provider::MetaCloud,
            code,
            reason,
            payload: json!({
                "metadata": value.metadata,
                "contacts": value.contacts,
                "messages": [message],
            }),
        };
        let Some(account) = account else {
            out.dead_letters.push(dead(
                DeadLetterCode::UnknownAccount,
                format!(
                    "no WhatsApp account of the tenant has phone_number_id {phone_number_id:?}"
                ),
            ));
            continue;
        };
        let Some(id) = text(message, "id") else {
            out.dead_letters.push(dead(
                DeadLetterCode::NoMessageId,
                "the message has no id".into(),
            ));
            continue;
        };
        let number = text(message, "from").map(|f| (f, wa_number(f)));
        let user_id = text(message, "from_user_id").map(str::to_owned);
        let (sender_key, sender) = match (number, &user_id) {
            (Some((_, Some(number))), _) => (SenderKey::WhatsApp, number),
            (None, Some(user)) => (SenderKey::WhatsAppUser, user.clone()),
            (Some((raw, None)), Some(user)) => {
                tracing::warn!(tenant.id = %tenant_id, "WhatsApp message {id}: `from` is not digits ({} chars); kept by its user id", raw.len());
                (SenderKey::WhatsAppUser, user.clone())
            }
            (Some((_, None)), None) => {
                out.dead_letters.push(dead(
                    DeadLetterCode::UnreadableSender,
                    format!(
                        "message {id}: `from` is not a WhatsApp number and there is no from_user_id"
                    ),
                ));
                continue;
            }
            (None, None) => {
                out.dead_letters.push(dead(
                    DeadLetterCode::NoSender,
                    format!("message {id} has neither `from` nor `from_user_id`"),
                ));
                continue;
            }
        };
        let aliases = match (sender_key, &user_id) {
            (SenderKey::WhatsApp, Some(user)) => vec![(SenderKey::WhatsAppUser, user.clone())],
            _ => Vec::new(),
        };
        let from = text(message, "from");
        let name = value
            .contacts
            .iter()
            .find(|c| {
                (from.is_some() && c.wa_id.as_deref() == from)
                    || (user_id.is_some() && c.user_id == user_id)
            })
            .and_then(|c| c.profile.as_ref())
            .and_then(|p| p.name.clone())
            .filter(|n| !n.trim().is_empty());
        let received_at = message
            .get("timestamp")
            .and_then(|t| {
                t.as_i64()
                    .or_else(|| t.as_str().and_then(|s| s.parse().ok()))
            })
            .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
            .unwrap_or_else(chrono::Utc::now);
        out.messages.push(InboundMessage {
            aliases,
            tenant_id,
            channel_account_id: account.id,
            channel: Channel::WhatsApp,
            sender_key,
            sender,
            sender_name: name,
            external_message_id: id.to_owned(),
            subject: None,
            body: readable_body(message),
            content: message.clone(),
            received_at,
            conversation_hint: None,
        });
    }
    out
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
        "reaction" => match field(&["reaction", "emoji"]) {
            Some(emoji) => format!("[reaction] {emoji}"),
            None => "[reaction removed]".to_owned(),
        },
        "system" => match field(&["system", "body"]) {
            Some(body) => format!("[system] {body}"),
            None => "[system]".to_owned(),
        },
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
