//! Email people send to a tenant's address, as SES email receiving publishes
//! it with an SNS action: a `Received` notification whose `content` is the
//! raw message (UTF-8, or base64 when the action's encoding is `BASE64`).
//!
//! Reading it yields who the mail says wrote it (the `From` header, with
//! the display name), the subject, the text (`mime`, through
//! `mail-parser`), the addresses it was delivered to (the receipt's
//! envelope recipients first, then the header recipients: where it
//! belongs), and the SES message ids of our own mail it replies to. SES
//! overwrites the `Message-ID` of mail it sends with
//! `<SES-message-id@<region>.amazonses.com>` (`email.amazonses.com` in
//! us-east-1), and our outbound rows keep that SES message id, so a reply's
//! `In-Reply-To`/`References` lead back to the conversation.
//!
//! A `From` header is only a claim. SES's receipt verdicts say whether to
//! believe it, and a mail they do not vouch for is quarantined
//! ([`Receipt::quarantine`]), never attached to the claimed sender's
//! conversation: a virus, spam, a failed DMARC check of the sender's own
//! domain, or neither SPF nor DKIM passing without a DMARC pass. GRAY (the
//! domain publishes no policy) and PROCESSING_FAILED are not failures; a
//! receipt rule without scanning (no verdicts) quarantines nothing, so keep
//! `ScanEnabled` on.
//!
//! What is stored as the message's `content` is the notification minus the
//! raw message (up to 150 KB, attachments included) plus the attachment list.

use super::mime;
use base64::Engine as _;
use busflow_activities::identifiers::EmailAddress;
use busflow_activities::store::quarantine::QuarantineReason;
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
    pub spf_verdict: Option<Verdict>,
    #[serde(default)]
    pub dkim_verdict: Option<Verdict>,
    #[serde(default)]
    pub dmarc_verdict: Option<Verdict>,
    /// The sender's domain's DMARC policy (`none`, `quarantine`, `reject`),
    /// present when its DMARC check failed.
    #[serde(default)]
    pub dmarc_policy: Option<String>,
    #[serde(default)]
    pub spam_verdict: Option<Verdict>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Verdict {
    pub status: VerdictStatus,
}

/// One of SES's receipt verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VerdictStatus {
    Pass,
    Fail,
    /// Neither pass nor fail: e.g. the domain publishes no policy.
    Gray,
    ProcessingFailed,
    /// A status this service does not know yet: not a failure.
    #[serde(other)]
    Unknown,
}

impl Receipt {
    /// Why SES's verdicts put the mail in quarantine, if they do; the most
    /// serious reason first.
    pub fn quarantine(&self) -> Option<QuarantineReason> {
        let status = |verdict: &Option<Verdict>| verdict.map(|v| v.status);
        let fails = |verdict: &Option<Verdict>| status(verdict) == Some(VerdictStatus::Fail);
        if fails(&self.virus_verdict) {
            Some(QuarantineReason::Virus)
        } else if fails(&self.dmarc_verdict) {
            Some(QuarantineReason::DmarcFail)
        } else if fails(&self.spam_verdict) {
            Some(QuarantineReason::Spam)
        } else if status(&self.dmarc_verdict) != Some(VerdictStatus::Pass)
            && fails(&self.spf_verdict)
            && fails(&self.dkim_verdict)
        {
            Some(QuarantineReason::SenderNotAuthenticated)
        } else {
            None
        }
    }

    /// The verdicts as kept with a quarantined mail.
    pub fn verdicts(&self) -> Value {
        let status = |verdict: &Option<Verdict>| verdict.map(|v| v.status);
        json!({
            "spf": status(&self.spf_verdict),
            "dkim": status(&self.dkim_verdict),
            "dmarc": status(&self.dmarc_verdict),
            "dmarc_policy": self.dmarc_policy,
            "spam": status(&self.spam_verdict),
            "virus": status(&self.virus_verdict),
        })
    }
}

/// An email, read.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadEmail {
    /// SES's `mail.messageId`: the dedupe key.
    pub message_id: String,
    /// Who the `From` header names; trust it only without `quarantine`.
    pub sender: EmailAddress,
    pub sender_name: Option<String>,
    pub subject: Option<String>,
    /// The text; empty for a mail with a virus.
    pub body: String,
    /// Lower-case, envelope recipients first, no repeats.
    pub recipients: Vec<String>,
    /// SES message ids this mail replies to, most relevant first
    /// (`In-Reply-To`, then `References` newest first).
    pub replies_to_ses_ids: Vec<String>,
    pub received_at: Option<DateTime<Utc>>,
    /// What the inbox keeps of the notification.
    pub content: Value,
    /// Why SES's verdicts do not vouch for the sender, if they do not.
    pub quarantine: Option<QuarantineReason>,
    /// SES's verdicts, as kept with a quarantined mail.
    pub verdicts: Value,
}

/// Why a notification was not read as an email (kept as a dead letter).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    #[error("a {0} notification carries no email")]
    NotReceived(String),
    #[error("the notification has no content (the receipt action is not SNS)")]
    NoContent,
    #[error("the content is not valid base64")]
    BadEncoding,
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
    /// minus the raw message, as the message's content). A quarantined mail
    /// needs no raw message: its headers are enough to show it.
    pub fn read(&self, notification: &Value) -> Result<ReadEmail, Unreadable> {
        if self.notification_type != "Received" {
            return Err(Unreadable::NotReceived(self.notification_type.clone()));
        }
        let quarantine = self.receipt.quarantine();
        let read = match self.raw_message() {
            Ok(raw) => mime::read(&raw),
            Err(Unreadable::NoContent) if quarantine.is_some() => mime::ReadMail::default(),
            Err(unreadable) => return Err(unreadable),
        };
        let from = read
            .from
            .clone()
            .or_else(|| {
                self.mail
                    .common_headers
                    .from
                    .first()
                    .and_then(|f| mime::mailbox(f))
            })
            .ok_or(Unreadable::NoSender)?;
        let sender = EmailAddress::parse(&from.address).map_err(|_| Unreadable::NoSender)?;
        let subject = read.subject.clone().or_else(|| {
            self.mail
                .common_headers
                .subject
                .as_deref()
                .and_then(mime::subject)
        });

        let mut recipients: Vec<String> = Vec::new();
        for address in self.receipt.recipients.iter().chain(&self.mail.destination) {
            let address = bare_address(address).to_lowercase();
            if !address.is_empty() && !recipients.contains(&address) {
                recipients.push(address);
            }
        }

        let mut replies_to_ses_ids: Vec<String> = Vec::new();
        for id in read.answers.iter().filter_map(|id| ses_message_id(id)) {
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
        let body = match quarantine {
            Some(QuarantineReason::Virus) => String::new(),
            _ => read.text,
        };
        Ok(ReadEmail {
            message_id: self.mail.message_id.clone(),
            sender,
            sender_name: from.name,
            subject,
            body,
            recipients,
            replies_to_ses_ids,
            received_at,
            content,
            quarantine,
            verdicts: self.receipt.verdicts(),
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

/// `Name <a@b.c>` → `a@b.c`; a bare address as it is.
fn bare_address(raw: &str) -> &str {
    match (raw.rfind('<'), raw.rfind('>')) {
        (Some(open), Some(close)) if open < close => raw[open + 1..close].trim(),
        _ => raw.trim(),
    }
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

    const RAW: &str = "From: \"López, Ana\" <Ana.Lopez@Example.com>\r\nTo: reservas@autobuses.test\r\nSubject: =?UTF-8?Q?Re:_Tu_reserva_en_Le=C3=B3n?=\r\nIn-Reply-To: <0100018c-aaaa-000000@email.amazonses.com>\r\nReferences: <other@mail.gmail.com>\r\n <0100018c-bbbb-000000@eu-west-1.amazonses.com>\r\n <0100018c-aaaa-000000@email.amazonses.com>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGracias, ¿y el equipaje?\r\n";

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
            ("<ana@example.com>", "ana@example.com", None),
            ("Ana@Example.com", "ana@example.com", None),
        ];
        for (raw, address, name) in cases {
            let mut value = notification("Subject: x\r\n\r\nbody", "UTF8");
            value["mail"]["commonHeaders"]["from"] = json!([raw]);
            let email = read(&value).expect(raw);
            assert_eq!(
                (email.sender.as_str(), email.sender_name.as_deref()),
                (address, name),
                "{raw}"
            );
        }
        let mut nobody = notification("Subject: x\r\n\r\nbody", "UTF8");
        nobody["mail"]["commonHeaders"]["from"] = json!(["Ana <not an address>"]);
        assert_eq!(read(&nobody), Err(Unreadable::NoSender));
    }

    fn fixture(name: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/ses")
            .join(name);
        serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("json")
    }

    /// Real `Received` notifications (`tests/fixtures/ses/`, with sources).
    #[test]
    fn the_verdicts_of_real_notifications_decide_the_quarantine() {
        let cases = [
            ("inbound_received_pass.json", None),
            ("inbound_received_s3_action.json", None),
            ("inbound_received_gray_verdicts_s3.json", None),
            ("inbound_received_doc_sns_action.json", None),
            (
                "inbound_received_spam_fail.json",
                Some(QuarantineReason::Spam),
            ),
            (
                "inbound_received_dmarc_fail.json",
                Some(QuarantineReason::DmarcFail),
            ),
        ];
        for (file, reason) in cases {
            let value = fixture(file);
            let received: SesReceived = serde_json::from_value(value.clone()).expect(file);
            assert_eq!(received.receipt.quarantine(), reason, "{file}");
            if reason.is_some() {
                // Quarantined mail needs no raw message: its headers show it.
                let email = received.read(&value).expect(file);
                assert_eq!(email.quarantine, reason, "{file}");
                assert!(!email.sender.as_str().is_empty(), "{file}");
            }
        }
        let passing = fixture("inbound_received_pass.json");
        let email = read(&passing).expect("a real SNS-action mail reads");
        assert_eq!(email.quarantine, None);
        assert!(!email.body.is_empty());
        let dmarc = fixture("inbound_received_dmarc_fail.json");
        let received: SesReceived = serde_json::from_value(dmarc.clone()).expect("shape");
        let email = received.read(&dmarc).expect("readable");
        assert_eq!(email.verdicts["dmarc"], "FAIL");
        assert_eq!(email.verdicts["dmarc_policy"], "reject");
    }

    #[test]
    fn verdicts_quarantine_only_what_ses_does_not_vouch_for() {
        use QuarantineReason::*;
        let verdicts = |spf: &str, dkim: &str, dmarc: Option<&str>, spam: &str, virus: &str| {
            let mut value = notification(RAW, "UTF8");
            let receipt = &mut value["receipt"];
            receipt["spfVerdict"] = json!({"status": spf});
            receipt["dkimVerdict"] = json!({"status": dkim});
            receipt["spamVerdict"] = json!({"status": spam});
            receipt["virusVerdict"] = json!({"status": virus});
            if let Some(dmarc) = dmarc {
                receipt["dmarcVerdict"] = json!({"status": dmarc});
            }
            read(&value).expect("readable").quarantine
        };
        assert_eq!(verdicts("PASS", "PASS", Some("PASS"), "PASS", "PASS"), None);
        assert_eq!(
            verdicts("FAIL", "PASS", Some("FAIL"), "PASS", "PASS"),
            Some(DmarcFail)
        );
        assert_eq!(
            verdicts("PASS", "PASS", Some("PASS"), "FAIL", "PASS"),
            Some(Spam)
        );
        assert_eq!(
            verdicts("PASS", "PASS", Some("FAIL"), "FAIL", "FAIL"),
            Some(Virus)
        );
        assert_eq!(
            verdicts("FAIL", "FAIL", Some("GRAY"), "PASS", "PASS"),
            Some(SenderNotAuthenticated)
        );
        assert_eq!(
            verdicts("FAIL", "FAIL", None, "PASS", "PASS"),
            Some(SenderNotAuthenticated)
        );
        // One of SPF or DKIM passing, with no DMARC policy to align them: kept.
        assert_eq!(verdicts("FAIL", "PASS", Some("GRAY"), "PASS", "PASS"), None);
        assert_eq!(verdicts("GRAY", "GRAY", Some("GRAY"), "GRAY", "GRAY"), None);
        assert_eq!(
            verdicts(
                "PROCESSING_FAILED",
                "PASS",
                Some("PROCESSING_FAILED"),
                "PASS",
                "PASS"
            ),
            None
        );
        assert_eq!(
            verdicts("PASS", "PASS", Some("SOMETHING_NEW"), "PASS", "PASS"),
            None
        );
        let mut virus = notification(RAW, "UTF8");
        virus["receipt"]["virusVerdict"]["status"] = json!("FAIL");
        let email = read(&virus).expect("readable");
        assert_eq!(email.quarantine, Some(Virus));
        assert_eq!(email.body, "", "nothing of a virus mail's text is kept");
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
    }
}
