//! Inbound SMS and email as AWS delivers them to `/webhooks/sns`: SNS
//! envelopes signed with the test key around a two-way SMS payload or an SES
//! `Received` notification, and the accounts they are addressed to.

use super::app::TestApp;
use busflow_activities::model::{ChannelAccountId, TenantId};
use busflow_api::testing::{TEST_KEY_PEM, notification, sign_envelope};
use busflow_api::webhooks::sns::SnsEnvelope;
use serde_json::{Value, json};
use uuid::Uuid;

/// The two-way SMS payload AWS End User Messaging publishes (the documented
/// example's shape) for `body` from `from` to our number `to`.
pub fn inbound_sms(from: &str, to: &str, body: &str, inbound_message_id: &str) -> Value {
    json!({
        "originationNumber": from,
        "destinationNumber": to,
        "messageKeyword": "KEYWORD_123456789012",
        "messageBody": body,
        "inboundMessageId": inbound_message_id,
        "previousPublishedMessageId": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    })
}

/// The SES receiving notification of an SNS action (encoding UTF-8) for the
/// raw message `raw_mime` sent to `to`, with SES's `mail.messageId`.
pub fn email_received(
    mail_message_id: &str,
    from: &str,
    to: &str,
    subject: &str,
    raw_mime: &str,
) -> Value {
    json!({
        "notificationType": "Received",
        "mail": {
            "timestamp": "2026-11-27T10:00:00.000Z",
            "source": "bounces+1234@mail.example.com",
            "messageId": mail_message_id,
            "destination": [to],
            "headersTruncated": false,
            "headers": [
                {"name": "From", "value": from},
                {"name": "To", "value": to},
                {"name": "Subject", "value": subject}
            ],
            "commonHeaders": {
                "returnPath": "bounces+1234@mail.example.com",
                "from": [from],
                "date": "Fri, 27 Nov 2026 10:00:00 +0000",
                "to": [to],
                "messageId": format!("<{mail_message_id}@mail.example.com>"),
                "subject": subject
            }
        },
        "receipt": {
            "timestamp": "2026-11-27T10:00:00.000Z",
            "processingTimeMillis": 222,
            "recipients": [to],
            "spamVerdict": {"status": "PASS"},
            "virusVerdict": {"status": "PASS"},
            "spfVerdict": {"status": "PASS"},
            "dkimVerdict": {"status": "PASS"},
            "dmarcVerdict": {"status": "PASS"},
            "action": {
                "type": "SNS",
                "topicArn": busflow_api::testing::TEST_TOPIC_ARN,
                "encoding": "UTF8"
            }
        },
        "content": raw_mime
    })
}

/// An SNS notification carrying `message`, signed with the test key.
pub fn signed_notification(message: &Value) -> SnsEnvelope {
    let mut envelope = notification(&message.to_string());
    envelope.message_id = Uuid::new_v4().to_string();
    sign_envelope(&mut envelope, TEST_KEY_PEM);
    envelope
}

impl TestApp {
    /// POSTs `envelope` to `/webhooks/sns` as SNS does.
    pub async fn post_sns(&self, envelope: &SnsEnvelope) -> reqwest::Response {
        self.http()
            .post(format!("{}/webhooks/sns", self.base_url))
            .header("content-type", "text/plain; charset=UTF-8")
            .header("x-amz-sns-message-type", envelope.r#type.as_str())
            .body(serde_json::to_string(envelope).expect("envelope json"))
            .send()
            .await
            .expect("POST /webhooks/sns")
    }

    /// POSTs `message` in a freshly signed notification; expects 200 and
    /// returns the answer.
    pub async fn sns_delivers(&self, message: &Value) -> Value {
        let response = self.post_sns(&signed_notification(message)).await;
        let status = response.status();
        let answer: Value = response.json().await.expect("json answer");
        assert_eq!(status, 200, "{answer}");
        answer
    }

    /// An ACTIVE two-way SMS account of `tenant_id` whose origination number
    /// (its `external_account_id`) is `number`.
    pub async fn add_sms_number(&self, tenant_id: TenantId, number: &str) -> ChannelAccountId {
        ChannelAccountId(
            sqlx::query_scalar(
                "insert into channel_accounts
                    (tenant_id, channel, provider, display_name, status, provider_config, external_account_id)
                 values ($1, 'SMS', 'AWS_SNS', 'SMS', 'ACTIVE', $2, $3)
                 returning id",
            )
            .bind(tenant_id)
            .bind(json!({"origination_number": number}))
            .bind(number)
            .fetch_one(&self.pool)
            .await
            .expect("SMS channel account"),
        )
    }

    /// The tenant's email account (`add_email_account` makes it).
    pub async fn email_account_id(&self) -> ChannelAccountId {
        ChannelAccountId(
            sqlx::query_scalar(
                "select id from channel_accounts where tenant_id = $1 and channel = 'EMAIL'",
            )
            .bind(self.tenant_id)
            .fetch_one(&self.pool)
            .await
            .expect("the email account"),
        )
    }
}
