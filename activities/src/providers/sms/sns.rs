//! SMS through Amazon SNS `Publish` straight to a phone number, always as a
//! transactional message, and the count of SMS parts a text costs.
//!
//! Policy: the recipient goes to SNS as given (E.164); SNS judges it, and an
//! `InvalidParameter` answer means this recipient cannot be reached by SMS.
//! Because that code cannot tell a bad phone number from a bad sender ID, the
//! account's sender ID is checked here first so that a broken account is never
//! mistaken for a broken recipient. SNS has no per-message delivery callback:
//! `Accepted` means "sent, delivery unknown".

use crate::providers::aws::{classify_sdk_error, no_message_id};
use crate::providers::{Accepted, ErrorRule, Failure, FailureClass, SendMessageCommand};
use aws_sdk_sns::types::MessageAttributeValue;
use serde::Deserialize;

const PROVIDER: &str = "SNS";

const SMS_TYPE: &str = "AWS.SNS.SMS.SMSType";
const SENDER_ID: &str = "AWS.SNS.SMS.SenderID";
const ORIGINATION_NUMBER: &str = "AWS.MM.SMS.OriginationNumber";

/// SNS `Publish` error codes (as on the wire, which is what the SDK's
/// `code()` returns) and what they mean for delivery. Sources: the SNS API
/// reference for Publish and Common Errors, the `PublishError` variants of
/// aws-sdk-sns 1.121 and its protocol deserializer, PROVIDERS_NOTES.md.
pub const SNS_ERRORS: &[ErrorRule] = &[
    // Bad phone number, empty or oversized message (the SDK's
    // InvalidParameterException / InvalidParameterValueException).
    ("InvalidParameter", FailureClass::Recipient),
    ("ParameterValueInvalid", FailureClass::Recipient),
    ("InvalidParameterValue", FailureClass::Recipient),
    ("ValidationException", FailureClass::Recipient),
    ("OptedOut", FailureClass::Recipient),
    // Credentials, IAM, KMS (encrypted topics) and disabled targets.
    ("AuthorizationError", FailureClass::Account),
    ("InvalidSecurity", FailureClass::Account),
    ("InvalidClientTokenId", FailureClass::Account),
    ("SignatureDoesNotMatch", FailureClass::Account),
    ("AccessDenied", FailureClass::Account),
    ("AccessDeniedException", FailureClass::Account),
    ("OptInRequired", FailureClass::Account),
    ("EndpointDisabled", FailureClass::Account),
    ("PlatformApplicationDisabled", FailureClass::Account),
    ("NotFound", FailureClass::Account),
    ("KMSAccessDenied", FailureClass::Account),
    ("KMSDisabled", FailureClass::Account),
    ("KMSInvalidState", FailureClass::Account),
    ("KMSNotFound", FailureClass::Account),
    ("KMSOptInRequired", FailureClass::Account),
    // Transient.
    ("Throttled", FailureClass::Retry),
    ("Throttling", FailureClass::Retry),
    ("ThrottlingException", FailureClass::Retry),
    ("KMSThrottling", FailureClass::Retry),
    ("InternalError", FailureClass::Retry),
    ("InternalFailure", FailureClass::Retry),
    ("ServiceUnavailable", FailureClass::Retry),
];

/// The non-secret part of an SMS channel account's `provider_config`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SmsAccountConfig {
    /// Alphanumeric sender ID (1 to 11 characters, at least one letter), where
    /// the destination country supports them.
    #[serde(default)]
    pub sender_id: Option<String>,
    /// The origination identity (E.164 long code, toll-free number or short
    /// code) registered for this account.
    #[serde(default)]
    pub origination_number: Option<String>,
}

impl SmsAccountConfig {
    fn sender_id(&self) -> Result<Option<&str>, Failure> {
        let Some(sender_id) = self.sender_id.as_deref().filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let well_formed = sender_id.len() <= 11
            && sender_id.chars().all(|c| c.is_ascii_alphanumeric())
            && sender_id.chars().any(|c| c.is_ascii_alphabetic());
        if well_formed {
            Ok(Some(sender_id))
        } else {
            Err(account_failure(
                "InvalidSenderId",
                format!(
                    "sender ID '{sender_id}' is not 1 to 11 letters and digits with at least one letter"
                ),
            ))
        }
    }

    fn origination_number(&self) -> Option<&str> {
        self.origination_number.as_deref().filter(|n| !n.is_empty())
    }
}

/// The SNS SMS adapter.
#[derive(Clone, Debug)]
pub struct SnsSms {
    client: aws_sdk_sns::Client,
}

impl SnsSms {
    /// An adapter on the shared AWS configuration (see `aws::sdk_config`).
    pub fn new(sdk_config: &aws_config::SdkConfig) -> Self {
        Self {
            client: aws_sdk_sns::Client::new(sdk_config),
        }
    }

    /// Publishes `command.body` to `command.recipient` as one transactional
    /// SMS (SNS splits it into parts, see [`sms_parts`]). Returns the SNS
    /// MessageId.
    pub async fn send(
        &self,
        account: &SmsAccountConfig,
        command: &SendMessageCommand,
    ) -> Result<Accepted, Failure> {
        let mut request = self
            .client
            .publish()
            .phone_number(&command.recipient)
            .message(&command.body)
            .message_attributes(SMS_TYPE, string_attribute("Transactional")?);
        if let Some(sender_id) = account.sender_id()? {
            request = request.message_attributes(SENDER_ID, string_attribute(sender_id)?);
        }
        if let Some(number) = account.origination_number() {
            request = request.message_attributes(ORIGINATION_NUMBER, string_attribute(number)?);
        }
        match request.send().await {
            Ok(output) => match output.message_id {
                Some(id) if !id.is_empty() => Ok(Accepted {
                    external_message_id: id,
                }),
                _ => Err(no_message_id(PROVIDER)),
            },
            Err(err) => Err(classify_sdk_error(PROVIDER, SNS_ERRORS, &err)),
        }
    }
}

fn string_attribute(value: &str) -> Result<MessageAttributeValue, Failure> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| account_failure("InvalidMessageAttribute", e.to_string()))
}

fn account_failure(code: &str, reason: String) -> Failure {
    Failure {
        provider: PROVIDER,
        class: FailureClass::Account,
        code: code.into(),
        reason,
        retry_after: None,
    }
}

/// GSM 03.38 default alphabet: one septet each (ESC, 0x1B, left out).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                          ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// GSM 03.38 extension table: ESC plus one septet each.
const GSM7_EXTENSION: &str = "\u{0C}^{}\\[~]|€";

const GSM7_SINGLE: usize = 160;
const GSM7_PER_PART: usize = 153;
const UCS2_SINGLE: usize = 70;
const UCS2_PER_PART: usize = 67;

/// How many SMS parts `text` is sent as (what the carrier bills). GSM-7 when
/// every character is in the GSM 03.38 alphabet (extension characters such as
/// `€` take two septets): 160 septets fit one SMS, 153 per part once it is
/// concatenated. Otherwise UCS-2: 70 UTF-16 code units, 67 per part. A
/// character is never split across parts. An empty text is 0 parts.
pub fn sms_parts(text: &str) -> usize {
    if text.chars().all(|c| gsm7_septets(c).is_some()) {
        count_parts(
            text.chars().filter_map(gsm7_septets),
            GSM7_SINGLE,
            GSM7_PER_PART,
        )
    } else {
        count_parts(
            text.chars().map(char::len_utf16),
            UCS2_SINGLE,
            UCS2_PER_PART,
        )
    }
}

fn gsm7_septets(c: char) -> Option<usize> {
    if GSM7_BASIC.contains(c) {
        Some(1)
    } else if GSM7_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// Packs characters of the given widths into parts, whole characters only.
fn count_parts(
    widths: impl Iterator<Item = usize> + Clone,
    single: usize,
    per_part: usize,
) -> usize {
    let total: usize = widths.clone().sum();
    if total == 0 {
        return 0;
    }
    if total <= single {
        return 1;
    }
    let (mut parts, mut used) = (1, 0);
    for width in widths {
        if used + width > per_part {
            parts += 1;
            used = 0;
        }
        used += width;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Channel, MessageId};
    use crate::providers::aws::{AwsSettings, sdk_config};
    use crate::providers::classify;
    use std::collections::HashMap;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, Request, ResponseTemplate};

    #[test]
    fn an_empty_text_is_no_part() {
        assert_eq!(sms_parts(""), 0);
    }

    #[test]
    fn gsm7_fits_160_in_one_part_and_153_per_concatenated_part() {
        assert_eq!(sms_parts("a"), 1);
        assert_eq!(sms_parts(&"a".repeat(160)), 1);
        assert_eq!(sms_parts(&"a".repeat(161)), 2);
        assert_eq!(sms_parts(&"a".repeat(306)), 2);
        assert_eq!(sms_parts(&"a".repeat(307)), 3);
    }

    #[test]
    fn an_extension_character_takes_two_septets() {
        assert_eq!(sms_parts(&format!("{}€", "a".repeat(158))), 1);
        assert_eq!(sms_parts(&format!("{}€", "a".repeat(159))), 2);
        assert_eq!(sms_parts(&"{".repeat(80)), 1);
        assert_eq!(sms_parts(&"{".repeat(81)), 2);
    }

    #[test]
    fn an_extension_character_is_not_split_across_parts() {
        // 152 septets then '€' (2): the euro does not fit in part one.
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(sms_parts(&text), 3, "152 | 2+151 | 1");
        let text = format!("{}€{}", "a".repeat(151), "a".repeat(153));
        assert_eq!(sms_parts(&text), 2, "151+2 | 153");
    }

    #[test]
    fn spanish_with_enye_and_e_acute_stays_gsm7() {
        let text = "Señor Pérez: mañana le esperamos a las 9:00 en la terminal norte. ¡Buen viaje!";
        assert!(text.chars().count() > UCS2_SINGLE);
        assert_eq!(sms_parts(text), 1, "GSM-7: one part");
        assert_eq!(sms_parts(&"ñ".repeat(160)), 1, "ñ is one septet");
        assert_eq!(sms_parts(&"é".repeat(161)), 2, "é is one septet");
    }

    #[test]
    fn spanish_with_o_acute_goes_as_ucs2() {
        let text =
            "Señora Gómez: mañana le esperamos a las 9:00 en la terminal norte. ¡Buen viaje!";
        assert_eq!(sms_parts(text), 2, "UCS-2: more than 70 characters");
    }

    #[test]
    fn an_a_acute_switches_the_whole_text_to_ucs2() {
        let gsm = "a".repeat(70);
        assert_eq!(sms_parts(&format!("{gsm}a")), 1, "71 GSM-7 chars: 1 part");
        assert_eq!(sms_parts(&format!("{gsm}á")), 2, "71 UCS-2 chars: 2 parts");
        assert_eq!(sms_parts(&"á".repeat(70)), 1);
        assert_eq!(sms_parts(&"á".repeat(134)), 2);
        assert_eq!(sms_parts(&"á".repeat(135)), 3);
    }

    #[test]
    fn an_emoji_is_ucs2_and_counts_two_code_units() {
        assert_eq!(sms_parts("🚌"), 1);
        assert_eq!(sms_parts(&format!("{}🚌", "a".repeat(68))), 1, "70 units");
        assert_eq!(sms_parts(&format!("{}🚌", "a".repeat(69))), 2, "71 units");
        // 66 units then the emoji (2): the surrogate pair is not split.
        assert_eq!(
            sms_parts(&format!("{}🚌{}", "a".repeat(66), "a".repeat(66))),
            3,
            "66 | 2+65 | 1"
        );
    }

    #[test]
    fn the_gsm7_tables_have_the_standard_sizes() {
        assert_eq!(GSM7_BASIC.chars().count(), 127, "128 minus ESC");
        assert_eq!(GSM7_EXTENSION.chars().count(), 10);
    }

    #[test]
    fn the_table_sorts_sns_codes_into_retry_recipient_and_account() {
        for code in ["InvalidParameter", "ParameterValueInvalid", "OptedOut"] {
            assert_eq!(
                classify(SNS_ERRORS, code),
                FailureClass::Recipient,
                "{code}"
            );
        }
        for code in [
            "AuthorizationError",
            "InvalidClientTokenId",
            "EndpointDisabled",
            "KMSDisabled",
            "KMSAccessDenied",
        ] {
            assert_eq!(classify(SNS_ERRORS, code), FailureClass::Account, "{code}");
        }
        for code in ["Throttling", "Throttled", "InternalError", "KMSThrottling"] {
            assert_eq!(classify(SNS_ERRORS, code), FailureClass::Retry, "{code}");
        }
        assert_eq!(
            classify(SNS_ERRORS, "SomethingNew"),
            FailureClass::Retry,
            "unknown codes retry"
        );
    }

    #[test]
    fn a_malformed_sender_id_is_an_account_problem() {
        for bad in ["BusFlowMexico", "12345", "Bus Flow", "Autobús"] {
            let account = SmsAccountConfig {
                sender_id: Some(bad.into()),
                origination_number: None,
            };
            let failure = account.sender_id().expect_err(bad);
            assert_eq!(failure.class, FailureClass::Account, "{bad}");
            assert_eq!(failure.code, "InvalidSenderId");
        }
        let account = SmsAccountConfig {
            sender_id: Some("BusFlow1".into()),
            origination_number: None,
        };
        assert_eq!(account.sender_id().expect("valid"), Some("BusFlow1"));
    }

    // SNS speaks the AWS query protocol: a form-encoded POST answered by XML.
    // A wiremock server stands in for it to see the exact request and to
    // answer with any error code.

    const PUBLISH_OK: &str = r#"<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
  <PublishResult><MessageId>567910cd-659e-55d4-8ccb-5aaf14679dc0</MessageId></PublishResult>
  <ResponseMetadata><RequestId>d74b8436-ae13-5ab4-a9ff-ce54dfea72a0</RequestId></ResponseMetadata>
</PublishResponse>"#;

    fn error_response(status: u16, code: &str, message: &str) -> ResponseTemplate {
        ResponseTemplate::new(status).set_body_string(format!(
            r#"<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
  <Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>
  <RequestId>9f3a1c52-0d8e-5b7e-9a52-2b2f2e7d1c10</RequestId>
</ErrorResponse>"#
        ))
    }

    async fn adapter(server: &MockServer) -> SnsSms {
        adapter_at(server.uri()).await
    }

    fn sms(recipient: &str, body: &str) -> SendMessageCommand {
        SendMessageCommand {
            message_id: MessageId(uuid::Uuid::new_v4()),
            channel: Channel::Sms,
            recipient: recipient.into(),
            subject: None,
            body: body.into(),
            body_html: None,
            whatsapp_template: None,
        }
    }

    /// The form fields of a query-protocol request, values still encoded.
    fn form_fields(request: &Request) -> HashMap<String, String> {
        String::from_utf8_lossy(&request.body)
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// The message attributes of a Publish request, by name.
    fn message_attributes(fields: &HashMap<String, String>) -> HashMap<String, (String, String)> {
        fields
            .iter()
            .filter_map(|(key, name)| {
                let entry = key
                    .strip_prefix("MessageAttributes.entry.")?
                    .strip_suffix(".Name")?;
                let field = |f: &str| {
                    fields
                        .get(&format!("MessageAttributes.entry.{entry}.Value.{f}"))
                        .cloned()
                        .unwrap_or_default()
                };
                Some((name.clone(), (field("DataType"), field("StringValue"))))
            })
            .collect()
    }

    #[tokio::test]
    async fn publish_sends_a_transactional_sms_with_the_account_identity() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/"))
            .respond_with(ResponseTemplate::new(200).set_body_string(PUBLISH_OK))
            .expect(1)
            .mount(&server)
            .await;
        let account = SmsAccountConfig {
            sender_id: Some("BusFlow".into()),
            origination_number: Some("+18445550123".into()),
        };

        let accepted = adapter(&server)
            .await
            .send(&account, &sms("+525512345678", "Su viaje sale a las 9"))
            .await
            .expect("published");

        assert_eq!(
            accepted.external_message_id,
            "567910cd-659e-55d4-8ccb-5aaf14679dc0"
        );
        let requests = server.received_requests().await.expect("recorded");
        let fields = form_fields(&requests[0]);
        assert_eq!(fields["Action"], "Publish");
        assert_eq!(fields["PhoneNumber"], "%2B525512345678");
        assert_eq!(fields["Message"], "Su%20viaje%20sale%20a%20las%209");
        let attributes = message_attributes(&fields);
        let string = |v: &str| ("String".to_owned(), v.to_owned());
        assert_eq!(
            attributes,
            HashMap::from([
                (SMS_TYPE.to_owned(), string("Transactional")),
                (SENDER_ID.to_owned(), string("BusFlow")),
                (ORIGINATION_NUMBER.to_owned(), string("%2B18445550123")),
            ])
        );
    }

    #[tokio::test]
    async fn an_account_without_identity_sends_only_the_sms_type() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_string(PUBLISH_OK))
            .mount(&server)
            .await;
        let account = SmsAccountConfig {
            sender_id: Some(String::new()),
            origination_number: None,
        };

        adapter(&server)
            .await
            .send(&account, &sms("+525512345678", "hola"))
            .await
            .expect("published");

        let requests = server.received_requests().await.expect("recorded");
        let attributes = message_attributes(&form_fields(&requests[0]));
        assert_eq!(attributes.len(), 1, "{attributes:?}");
        assert!(attributes.contains_key(SMS_TYPE));
    }

    async fn adapter_at(endpoint: String) -> SnsSms {
        let sdk = sdk_config(&AwsSettings {
            region: "us-east-1".into(),
            endpoint_url: Some(endpoint),
            static_credentials: Some(("testing".into(), "testing".into())),
        })
        .await;
        SnsSms::new(&sdk)
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_definite_failure_that_may_retry() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        let sns = adapter_at(format!("http://127.0.0.1:{port}")).await;

        let failure = sns
            .send(&SmsAccountConfig::default(), &sms("+525512345678", "hola"))
            .await
            .expect_err("nobody listens");

        assert_eq!(failure.class, FailureClass::Retry, "{failure}");
        assert_eq!(failure.code, "Unreachable");
    }

    #[tokio::test]
    async fn an_acceptance_whose_answer_is_cut_short_has_an_unknown_outcome() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_string(&PUBLISH_OK[..60]))
            .mount(&server)
            .await;

        let failure = adapter(&server)
            .await
            .send(&SmsAccountConfig::default(), &sms("+525512345678", "hola"))
            .await
            .expect_err("no MessageId to read");

        assert_eq!(failure.class, FailureClass::Unknown, "{failure}");
    }

    #[tokio::test]
    async fn sns_errors_are_classified_by_their_code() {
        let cases = [
            (
                error_response(
                    400,
                    "InvalidParameter",
                    "Invalid parameter: PhoneNumber Reason: +52-55 is not valid to publish to",
                ),
                FailureClass::Recipient,
            ),
            (
                error_response(403, "AuthorizationError", "User is not authorized"),
                FailureClass::Account,
            ),
            (
                error_response(400, "Throttling", "Rate exceeded"),
                FailureClass::Retry,
            ),
            (
                error_response(500, "InternalError", "Internal error"),
                FailureClass::Retry,
            ),
        ];
        for (response, class) in cases {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(response)
                .mount(&server)
                .await;

            let failure = adapter(&server)
                .await
                .send(&SmsAccountConfig::default(), &sms("+525512345678", "hola"))
                .await
                .expect_err("SNS said no");

            assert_eq!(failure.class, class, "{failure}");
            assert_eq!(failure.provider, "SNS");
        }
    }

    #[tokio::test]
    async fn an_invalid_phone_number_keeps_sns_reason() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(error_response(
                400,
                "InvalidParameter",
                "Invalid parameter: PhoneNumber",
            ))
            .mount(&server)
            .await;

        let failure = adapter(&server)
            .await
            .send(&SmsAccountConfig::default(), &sms("5512345678", "hola"))
            .await
            .expect_err("rejected");

        assert_eq!(failure.code, "InvalidParameter");
        assert_eq!(failure.reason, "Invalid parameter: PhoneNumber");
        assert_eq!(failure.class, FailureClass::Recipient);
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_retries() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let sdk = sdk_config(&AwsSettings {
            region: "us-east-1".into(),
            endpoint_url: Some(format!("http://127.0.0.1:{port}")),
            static_credentials: Some(("testing".into(), "testing".into())),
        })
        .await;

        let failure = SnsSms::new(&sdk)
            .send(&SmsAccountConfig::default(), &sms("+525512345678", "hola"))
            .await
            .expect_err("nobody listens");

        assert_eq!(failure.class, FailureClass::Retry);
        assert_eq!(failure.code, "Unreachable");
    }

    #[tokio::test]
    async fn a_malformed_sender_id_is_refused_before_calling_sns() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_string(PUBLISH_OK))
            .expect(0)
            .mount(&server)
            .await;
        let account = SmsAccountConfig {
            sender_id: Some("Bus Flow Mexico".into()),
            origination_number: None,
        };

        let failure = adapter(&server)
            .await
            .send(&account, &sms("+525512345678", "hola"))
            .await
            .expect_err("bad sender id");

        assert_eq!(failure.class, FailureClass::Account);
    }
}
