//! Email through Amazon SES v2 `SendEmail` (simple content: text + html).

use crate::providers::aws::{classify_sdk_error, no_message_id};
use crate::providers::{Accepted, ErrorRule, Failure, FailureClass, SendMessageCommand};
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message, MessageTag};
use serde::Deserialize;

const PROVIDER: &str = "SES";

/// The message tag that carries our message id; SES returns it in every
/// event record (`mail.tags`), so a send whose answer was lost is still
/// matched by its receipts.
pub const MESSAGE_ID_TAG: &str = "busflow_message_id";

/// SES error codes and what they mean for delivery. Source: SES v2 API
/// reference for SendEmail, and PROVIDERS_NOTES.md.
pub const SES_ERRORS: &[ErrorRule] = &[
    ("MessageRejected", FailureClass::Recipient),
    ("BadRequestException", FailureClass::Recipient),
    ("MailFromDomainNotVerifiedException", FailureClass::Account),
    ("AccountSuspendedException", FailureClass::Account),
    ("SendingPausedException", FailureClass::Account),
    ("NotFoundException", FailureClass::Account),
    ("TooManyRequestsException", FailureClass::Retry),
    ("LimitExceededException", FailureClass::Retry),
    ("Throttling", FailureClass::Retry),
    ("ThrottlingException", FailureClass::Retry),
    ("InternalFailure", FailureClass::Retry),
    ("ServiceUnavailable", FailureClass::Retry),
];

/// The non-secret part of an email channel account's `provider_config`.
#[derive(Debug, Clone, Deserialize)]
pub struct EmailAccountConfig {
    pub from_address: String,
    #[serde(default)]
    pub from_name: Option<String>,
    #[serde(default)]
    pub reply_to: Option<String>,
    /// SES configuration set that publishes delivery events.
    #[serde(default)]
    pub configuration_set: Option<String>,
}

impl EmailAccountConfig {
    fn sender_header(&self) -> String {
        match &self.from_name {
            Some(name) if !name.is_empty() => {
                format!(
                    "\"{}\" <{}>",
                    name.replace(['"', '\\'], ""),
                    self.from_address
                )
            }
            _ => self.from_address.clone(),
        }
    }
}

/// The SES adapter.
#[derive(Clone, Debug)]
pub struct SesEmail {
    pub(super) client: aws_sdk_sesv2::Client,
}

impl SesEmail {
    pub fn new(sdk_config: &aws_config::SdkConfig) -> Self {
        Self {
            client: aws_sdk_sesv2::Client::new(sdk_config),
        }
    }

    pub async fn send(
        &self,
        account: &EmailAccountConfig,
        command: &SendMessageCommand,
    ) -> Result<Accepted, Failure> {
        let text = |data: &str| {
            Content::builder()
                .data(data)
                .charset("UTF-8")
                .build()
                .map_err(|e| local_failure(e.to_string()))
        };
        let mut body = Body::builder().text(text(&command.body)?);
        if let Some(html) = &command.body_html {
            body = body.html(text(html)?);
        }
        let message = Message::builder()
            .subject(text(command.subject.as_deref().unwrap_or_default())?)
            .body(body.build())
            .build();
        let request = self
            .client
            .send_email()
            .from_email_address(account.sender_header())
            .destination(
                Destination::builder()
                    .to_addresses(command.recipient.clone())
                    .build(),
            )
            .set_reply_to_addresses(account.reply_to.clone().map(|r| vec![r]))
            .set_configuration_set_name(account.configuration_set.clone())
            .email_tags(
                MessageTag::builder()
                    .name(MESSAGE_ID_TAG)
                    .value(command.message_id.to_string())
                    .build()
                    .map_err(|e| local_failure(e.to_string()))?,
            )
            .content(EmailContent::builder().simple(message).build());
        match request.send().await {
            Ok(output) => match output.message_id {
                Some(id) if !id.is_empty() => Ok(Accepted {
                    external_message_id: id,
                }),
                _ => Err(no_message_id(PROVIDER)),
            },
            Err(err) => Err(classify_sdk_error(PROVIDER, SES_ERRORS, &err)),
        }
    }
}

impl SesEmail {
    /// Registers a sending domain identity (verified at once on the moto
    /// emulator; on real SES verification follows the DNS records). An
    /// identity that already exists is fine.
    pub async fn create_domain_identity(&self, domain: &str) -> Result<(), Failure> {
        self.create_domain_with_dkim(domain).await.map(|_| ())
    }
}

fn local_failure(reason: String) -> Failure {
    Failure {
        provider: PROVIDER,
        class: FailureClass::Recipient,
        code: "InvalidContent".into(),
        reason,
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::classify;

    #[test]
    fn the_table_sorts_codes_into_retry_recipient_and_account() {
        assert_eq!(
            classify(SES_ERRORS, "MessageRejected"),
            FailureClass::Recipient
        );
        assert_eq!(
            classify(SES_ERRORS, "AccountSuspendedException"),
            FailureClass::Account
        );
        assert_eq!(
            classify(SES_ERRORS, "SendingPausedException"),
            FailureClass::Account
        );
        assert_eq!(
            classify(SES_ERRORS, "TooManyRequestsException"),
            FailureClass::Retry
        );
        assert_eq!(
            classify(SES_ERRORS, "SomethingNew"),
            FailureClass::Retry,
            "unknown codes retry"
        );
    }

    #[test]
    fn the_sender_header_quotes_the_display_name() {
        let account = EmailAccountConfig {
            from_address: "noreply@demo.busflow.test".into(),
            from_name: Some("Autobuses \"Demo\"".into()),
            reply_to: None,
            configuration_set: None,
        };
        assert_eq!(
            account.sender_header(),
            "\"Autobuses Demo\" <noreply@demo.busflow.test>"
        );
    }
}
