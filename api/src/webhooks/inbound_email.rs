//! Email people send to a tenant's address, as SES email receiving publishes
//! it with an SNS action: a `Received` notification whose `content` is the
//! raw message (UTF-8, or base64 when the action's encoding is `BASE64`).
//!
//! Reading it yields who wrote (the `From` header, lower-cased, with the
//! display name), the subject, the text (see `mime`), the addresses it was
//! delivered to (the receipt's envelope recipients first, then the header
//! recipients: where it belongs), and the SES message ids of our own mail it
//! replies to. SES overwrites the `Message-ID` of mail it sends with
//! `<SES-message-id@<region>.amazonses.com>` (`email.amazonses.com` in
//! us-east-1), and our outbound rows keep that SES message id, so a reply's
//! `In-Reply-To`/`References` lead back to the conversation.
//!
//! What is stored as the message's `content` is the notification minus the
//! raw message (up to 150 KB, attachments included) plus the attachment list.

use super::mime::{self, Entity};
use base64::Engine as _;
use busflow_activities::identifiers::EmailAddress;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

/// The `Received` notification of SES email receiving.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SesReceived {
    pub notification_type: String,
    pub mail: ReceivedMail,
    #[serde(default)]
    pub receipt: Receipt,
    /// The raw message; only SNS actions include it.
    #[serde(default)]
    pub content: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceivedMail {
    /// SES's id for the received message: the same on redeliveries.
    pub message_id: String,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub destination: Vec<String>,
    #[serde(default)]
    pub common_headers: CommonHeaders,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommonHeaders {
    #[serde(default)]
    pub from: Vec<String>,
    #[serde(default)]
    pub subject: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// Envelope RCPT TO addresses the receipt rule matched.
    #[serde(default)]
    pub recipients: Vec<String>,
    #[serde(default)]
    pub action: ReceiptAction,
    #[serde(default)]
    pub virus_verdict: Option<Verdict>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptAction {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub encoding: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Verdict {
    pub status: String,
}

/// An email, read.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadEmail {
    /// SES's `mail.messageId`: the dedupe key.
    pub message_id: String,
    pub sender: EmailAddress,
    pub sender_name: Option<String>,
    pub subject: Option<String>,
    pub body: String,
    /// Lower-case, envelope recipients first, no repeats.
    pub recipients: Vec<String>,
    /// SES message ids this mail replies to, most relevant first
    /// (`In-Reply-To`, then `References` newest first).
    pub replies_to_ses_ids: Vec<String>,
    pub received_at: Option<DateTime<Utc>>,
    /// What the inbox keeps of the notification.
    pub content: Value,
}

/// Why a notification was not read as an email (answered 200, logged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    #[error("a {0} notification carries no email")]
    NotReceived(String),
    #[error("the notification has no content (the receipt action is not SNS)")]
    NoContent,
    #[error("the content is not valid base64")]
    BadEncoding,
    #[error("SES found a virus")]
    Virus,
    #[error("no readable sender address")]
    NoSender,
}

impl SesReceived {
    /// Whether a parsed SNS `Message` has this shape.
    pub fn is_shape_of(message: &Value) -> bool {
        message.get("notificationType").and_then(Value::as_str) == Some("Received")
            && message.get("mail").is_some()
    }

    /// Reads the email; `notification` is the same document as a value (kept,
    /// minus the raw message, as the message's content).
    pub fn read(&self, notification: &Value) -> Result<ReadEmail, Unreadable> {
        if self.notification_type != "Received" {
            return Err(Unreadable::NotReceived(self.notification_type.clone()));
        }
        if self
            .receipt
            .virus_verdict
            .as_ref()
            .is_some_and(|v| v.status.eq_ignore_ascii_case("FAIL"))
        {
            return Err(Unreadable::Virus);
        }
        let raw = self.raw_message()?;
        let entity = Entity::parse(&raw);
        let read = mime::read(&raw);

        let from = self
            .mail
            .common_headers
            .from
            .first()
            .cloned()
            .or_else(|| entity.header("from").map(str::to_owned))
            .ok_or(Unreadable::NoSender)?;
        let (sender, sender_name) = parse_mailbox(&from).ok_or(Unreadable::NoSender)?;
        let subject = self
            .mail
            .common_headers
            .subject
            .clone()
            .or_else(|| entity.header("subject").map(str::to_owned))
            .map(|s| mime::decode_words(&s).trim().to_owned())
            .filter(|s| !s.is_empty());

        let mut recipients: Vec<String> = Vec::new();
        for address in self.receipt.recipients.iter().chain(&self.mail.destination) {
            let address = bare_address(address).to_lowercase();
            if !address.is_empty() && !recipients.contains(&address) {
                recipients.push(address);
            }
        }

        let mut referenced = message_ids(entity.header("in-reply-to").unwrap_or_default());
        let mut references = message_ids(entity.header("references").unwrap_or_default());
        references.reverse();
        referenced.extend(references);
        let mut replies_to_ses_ids: Vec<String> = Vec::new();
        for id in referenced.iter().filter_map(|id| ses_message_id(id)) {
            if !replies_to_ses_ids.iter().any(|known| known == id) {
                replies_to_ses_ids.push(id.to_owned());
            }
        }

        let received_at = self
            .mail
            .timestamp
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        let mut content = notification.clone();
        if let Some(object) = content.as_object_mut() {
            object.remove("content");
            object.insert(
                "attachments".to_owned(),
                read.attachments
                    .iter()
                    .map(|a| json!({"filename": a.filename, "content_type": a.content_type, "size": a.size}))
                    .collect(),
            );
        }
        Ok(ReadEmail {
            message_id: self.mail.message_id.clone(),
            sender,
            sender_name,
            subject,
            body: read.text,
            recipients,
            replies_to_ses_ids,
            received_at,
            content,
        })
    }

    fn raw_message(&self) -> Result<Vec<u8>, Unreadable> {
        let content = self.content.as_deref().ok_or(Unreadable::NoContent)?;
        let base64 = self
            .receipt
            .action
            .encoding
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case("base64"));
        if base64 {
            let compact: String = content.split_whitespace().collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map_err(|_| Unreadable::BadEncoding)
        } else {
            Ok(content.as_bytes().to_vec())
        }
    }
}

/// `"Ana López" <Ana@Example.com>`, `=?utf-8?Q?…?= <a@b.c>`, `a@b.c (Ana)` or
/// `a@b.c` → the address (normalized) and the display name, if any.
pub fn parse_mailbox(raw: &str) -> Option<(EmailAddress, Option<String>)> {
    let raw = raw.trim();
    let (address, name) = match (raw.rfind('<'), raw.rfind('>')) {
        (Some(open), Some(close)) if open < close => {
            (&raw[open + 1..close], raw[..open].trim().to_owned())
        }
        _ => match (raw.find('('), raw.rfind(')')) {
            (Some(open), Some(close)) if open < close => {
                (raw[..open].trim(), raw[open + 1..close].trim().to_owned())
            }
            _ => (raw, String::new()),
        },
    };
    let address = EmailAddress::parse(address).ok()?;
    let name = mime::decode_words(&mime::unquote(&name)).trim().to_owned();
    let name = (!name.is_empty() && name != address.as_str()).then_some(name);
    Some((address, name))
}

/// `Name <a@b.c>` → `a@b.c`; a bare address as it is.
fn bare_address(raw: &str) -> &str {
    match (raw.rfind('<'), raw.rfind('>')) {
        (Some(open), Some(close)) if open < close => raw[open + 1..close].trim(),
        _ => raw.trim(),
    }
}

/// The `<…>` message ids of an `In-Reply-To` or `References` value, in order.
fn message_ids(value: &str) -> Vec<&str> {
    let mut ids = Vec::new();
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let Some(len) = rest[open + 1..].find('>') else {
            break;
        };
        let id = rest[open + 1..open + 1 + len].trim();
        if !id.is_empty() {
            ids.push(id);
        }
        rest = &rest[open + 1 + len + 1..];
    }
    ids
}

/// The SES message id in a `Message-ID` SES assigned
/// (`<id>@email.amazonses.com`, `<id>@<region>.amazonses.com`).
fn ses_message_id(message_id: &str) -> Option<&str> {
    let (local, domain) = message_id.rsplit_once('@')?;
    let domain = domain.to_ascii_lowercase();
    let by_ses = domain == "amazonses.com" || domain.ends_with(".amazonses.com");
    (by_ses && !local.is_empty()).then_some(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(content: &str, encoding: &str) -> Value {
        json!({
            "notificationType": "Received",
            "receipt": {
                "timestamp": "2026-11-27T10:00:00.000Z",
                "recipients": ["Reservas@Autobuses.test"],
                "virusVerdict": {"status": "PASS"},
                "action": {"type": "SNS", "topicArn": "arn:aws:sns:us-east-1:1:t", "encoding": encoding}
            },
            "mail": {
                "timestamp": "2026-11-27T10:00:00.000Z",
                "source": "bounce-123@mail.example.com",
                "messageId": "o3vrnil0e2ic28trm7dfhrc2v0clambda4nbp0g1",
                "destination": ["reservas@autobuses.test", "otra@example.com"],
                "headersTruncated": false,
                "headers": [],
                "commonHeaders": {
                    "from": ["\"López, Ana\" <Ana.Lopez@Example.com>"],
                    "to": ["reservas@autobuses.test"],
                    "subject": "=?UTF-8?Q?Re:_Tu_reserva_en_Le=C3=B3n?="
                }
            },
            "content": content
        })
    }

    fn read(value: &Value) -> Result<ReadEmail, Unreadable> {
        let received: SesReceived = serde_json::from_value(value.clone()).expect("shape");
        received.read(value)
    }

    const RAW: &str = "From: \"López, Ana\" <Ana.Lopez@Example.com>\r\nTo: reservas@autobuses.test\r\nSubject: Re: Tu reserva\r\nIn-Reply-To: <0100018c-aaaa-000000@email.amazonses.com>\r\nReferences: <other@mail.gmail.com>\r\n <0100018c-bbbb-000000@eu-west-1.amazonses.com>\r\n <0100018c-aaaa-000000@email.amazonses.com>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGracias, ¿y el equipaje?\r\n";

    #[test]
    fn a_received_notification_reads_as_an_email() {
        let value = notification(RAW, "UTF8");
        assert!(SesReceived::is_shape_of(&value));
        let email = read(&value).expect("readable");
        assert_eq!(email.message_id, "o3vrnil0e2ic28trm7dfhrc2v0clambda4nbp0g1");
        assert_eq!(email.sender.as_str(), "ana.lopez@example.com");
        assert_eq!(email.sender_name.as_deref(), Some("López, Ana"));
        assert_eq!(email.subject.as_deref(), Some("Re: Tu reserva en León"));
        assert_eq!(email.body, "Gracias, ¿y el equipaje?");
        assert_eq!(
            email.recipients,
            vec!["reservas@autobuses.test", "otra@example.com"]
        );
        assert_eq!(
            email.replies_to_ses_ids,
            vec!["0100018c-aaaa-000000", "0100018c-bbbb-000000"]
        );
        assert!(email.received_at.is_some());
        assert!(email.content.get("content").is_none(), "raw MIME not kept");
        assert_eq!(email.content["mail"]["messageId"], email.message_id);
        assert_eq!(email.content["attachments"], json!([]));
    }

    #[test]
    fn base64_content_is_decoded() {
        let encoded = base64::engine::general_purpose::STANDARD.encode(RAW);
        let email = read(&notification(&encoded, "BASE64")).expect("readable");
        assert_eq!(email.body, "Gracias, ¿y el equipaje?");
        assert!(matches!(
            read(&notification("not base64!", "BASE64")),
            Err(Unreadable::BadEncoding)
        ));
    }

    #[test]
    fn notifications_without_an_email_are_unreadable() {
        let mut no_content = notification(RAW, "UTF8");
        no_content
            .as_object_mut()
            .expect("object")
            .remove("content");
        assert_eq!(read(&no_content), Err(Unreadable::NoContent));
        let mut virus = notification(RAW, "UTF8");
        virus["receipt"]["virusVerdict"]["status"] = json!("FAIL");
        assert_eq!(read(&virus), Err(Unreadable::Virus));
        let mut nobody = notification("Subject: x\r\n\r\nbody", "UTF8");
        nobody["mail"]["commonHeaders"]["from"] = json!(["undisclosed"]);
        assert_eq!(read(&nobody), Err(Unreadable::NoSender));
        assert!(!SesReceived::is_shape_of(
            &json!({"eventType": "Delivery", "mail": {}})
        ));
    }

    #[test]
    fn mailboxes_in_their_usual_forms() {
        let cases = [
            (
                "Ana López <ana@example.com>",
                "ana@example.com",
                Some("Ana López"),
            ),
            (
                "\"Pérez, José \\\"Pepe\\\"\" <JOSE@example.com>",
                "jose@example.com",
                Some("Pérez, José \"Pepe\""),
            ),
            (
                "=?utf-8?B?QW5hIEzDs3Bleg==?= <ana@example.com>",
                "ana@example.com",
                Some("Ana López"),
            ),
            ("ana@example.com (Ana)", "ana@example.com", Some("Ana")),
            ("<ana@example.com>", "ana@example.com", None),
            ("Ana@Example.com", "ana@example.com", None),
        ];
        for (raw, address, name) in cases {
            let (parsed, parsed_name) = parse_mailbox(raw).expect(raw);
            assert_eq!(
                (parsed.as_str(), parsed_name.as_deref()),
                (address, name),
                "{raw}"
            );
        }
        assert!(parse_mailbox("Ana <not an address>").is_none());
    }

    #[test]
    fn only_ses_assigned_message_ids_name_our_mail() {
        assert_eq!(
            ses_message_id("0100018c-1-000000@email.amazonses.com"),
            Some("0100018c-1-000000")
        );
        assert_eq!(ses_message_id("abc@us-west-2.amazonses.com"), Some("abc"));
        assert_eq!(ses_message_id("abc@mail.gmail.com"), None);
        assert_eq!(ses_message_id("abc@notamazonses.com"), None);
        assert_eq!(message_ids(" <a@b> <c@d>\t<e@f"), vec!["a@b", "c@d"]);
    }
}
