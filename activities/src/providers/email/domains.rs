//! A tenant's sending domain on SES v2: the domain identity with Easy DKIM
//! (and the DNS records the operator must publish for it), an optional
//! custom MAIL FROM domain, and the configuration set whose event
//! destination publishes the domain's receipts to SNS.
//!
//! Every call is safe to repeat: an identity or configuration set that
//! exists already is read, not created again.

use super::ses::SesEmail;
use crate::providers::aws::classify_sdk_error;
use crate::providers::{ErrorRule, Failure, FailureClass};
use aws_sdk_sesv2::config::http::HttpResponse;
use aws_sdk_sesv2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sesv2::types::{
    BehaviorOnMxFailure, DkimStatus, EventDestinationDefinition, EventType, SnsDestination,
    VerificationStatus,
};
use serde::{Deserialize, Serialize};

const PROVIDER: &str = "SES";

/// What SES's identity and configuration-set calls refuse, and whether it
/// passes. Codes not listed retry.
const DOMAIN_ERRORS: &[ErrorRule] = &[
    ("TooManyRequestsException", FailureClass::Retry),
    ("ConcurrentModificationException", FailureClass::Retry),
    ("LimitExceededException", FailureClass::Account),
    ("BadRequestException", FailureClass::Account),
    ("NotFoundException", FailureClass::Account),
    ("AccessDeniedException", FailureClass::Account),
];

/// The domain identity as SES reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainIdentity {
    /// The three Easy DKIM tokens: each is a CNAME to publish.
    pub dkim_tokens: Vec<String>,
    pub verification: DomainVerification,
    /// The custom MAIL FROM domain's status, when one is set.
    pub mail_from_status: Option<String>,
}

/// Where a domain's verification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DomainVerification {
    /// SES has not found the records yet (it keeps looking for 72 h).
    Pending,
    Verified,
    /// SES gave up (records not found in 72 h, or wrong): the reason is SES's status.
    Failed,
}

/// One DNS record the operator must publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecord {
    /// CNAME, MX or TXT.
    pub record_type: String,
    pub name: String,
    pub value: String,
    /// What it is for: DKIM, MAIL_FROM_MX, MAIL_FROM_SPF.
    pub purpose: String,
}

/// The records that verify `domain` (Easy DKIM CNAMEs) and, with a custom
/// MAIL FROM domain, route its bounces (MX) and pass SPF (TXT) in `region`.
pub fn dns_records(
    domain: &str,
    identity: &DomainIdentity,
    mail_from: Option<&str>,
    region: &str,
) -> Vec<DnsRecord> {
    let mut records: Vec<DnsRecord> = identity
        .dkim_tokens
        .iter()
        .map(|token| DnsRecord {
            record_type: "CNAME".into(),
            name: format!("{token}._domainkey.{domain}"),
            value: format!("{token}.dkim.amazonses.com"),
            purpose: "DKIM".into(),
        })
        .collect();
    if let Some(mail_from) = mail_from {
        records.push(DnsRecord {
            record_type: "MX".into(),
            name: mail_from.to_owned(),
            value: format!("10 feedback-smtp.{region}.amazonses.com"),
            purpose: "MAIL_FROM_MX".into(),
        });
        records.push(DnsRecord {
            record_type: "TXT".into(),
            name: mail_from.to_owned(),
            value: "\"v=spf1 include:amazonses.com ~all\"".into(),
            purpose: "MAIL_FROM_SPF".into(),
        });
    }
    records
}

fn failure<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Failure {
    classify_sdk_error(PROVIDER, DOMAIN_ERRORS, err)
}

fn exists<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    // moto names a configuration set's duplicate its own way.
    matches!(err, SdkError::ServiceError(e) if matches!(
        e.err().code(),
        Some("AlreadyExistsException" | "ConfigurationSetAlreadyExistsException")
    ))
}

impl SesEmail {
    /// The AWS region SES is called in.
    pub fn region(&self) -> String {
        self.client
            .config()
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".into())
    }

    /// Creates the domain identity with Easy DKIM, or reads it if it exists.
    pub async fn create_domain_with_dkim(&self, domain: &str) -> Result<DomainIdentity, Failure> {
        match self
            .client
            .create_email_identity()
            .email_identity(domain)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if exists(&e) => {}
            Err(e) => return Err(failure(&e)),
        }
        self.domain_identity(domain).await?.ok_or_else(|| Failure {
            provider: PROVIDER,
            class: FailureClass::Retry,
            code: "NotFoundException".into(),
            reason: format!("SES created identity {domain} but does not find it yet"),
            retry_after: None,
        })
    }

    /// The domain identity, or `None` if SES has none.
    pub async fn domain_identity(&self, domain: &str) -> Result<Option<DomainIdentity>, Failure> {
        let got = match self
            .client
            .get_email_identity()
            .email_identity(domain)
            .send()
            .await
        {
            Ok(got) => got,
            Err(SdkError::ServiceError(e)) if e.err().is_not_found_exception() => {
                return Ok(None);
            }
            Err(e) => return Err(failure(&e)),
        };
        let dkim = got.dkim_attributes();
        let dkim_status = dkim.and_then(|d| d.status());
        let verification = match (got.verification_status(), dkim_status) {
            _ if got.verified_for_sending_status() => DomainVerification::Verified,
            (Some(VerificationStatus::Success), _) | (_, Some(DkimStatus::Success)) => {
                DomainVerification::Verified
            }
            (Some(VerificationStatus::Failed), _) | (_, Some(DkimStatus::Failed)) => {
                DomainVerification::Failed
            }
            _ => DomainVerification::Pending,
        };
        Ok(Some(DomainIdentity {
            dkim_tokens: dkim.map(|d| d.tokens().to_vec()).unwrap_or_default(),
            verification,
            mail_from_status: got
                .mail_from_attributes()
                .map(|m| m.mail_from_domain_status().as_str().to_owned()),
        }))
    }

    /// Sends the domain's mail from `mail_from` (a subdomain of it).
    pub async fn set_mail_from(&self, domain: &str, mail_from: &str) -> Result<(), Failure> {
        self.client
            .put_email_identity_mail_from_attributes()
            .email_identity(domain)
            .mail_from_domain(mail_from)
            .behavior_on_mx_failure(BehaviorOnMxFailure::UseDefaultValue)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failure(&e))
    }

    /// Creates the configuration set `name` unless it exists, with an event
    /// destination publishing sends, deliveries, bounces, complaints,
    /// rejects and delivery delays to `events_topic`.
    pub async fn ensure_configuration_set(
        &self,
        name: &str,
        events_topic: Option<&str>,
    ) -> Result<(), Failure> {
        match self
            .client
            .create_configuration_set()
            .configuration_set_name(name)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if exists(&e) => {}
            Err(e) => return Err(failure(&e)),
        }
        let Some(topic) = events_topic else {
            return Ok(());
        };
        let sns = SnsDestination::builder()
            .topic_arn(topic)
            .build()
            .map_err(|e| Failure {
                provider: PROVIDER,
                class: FailureClass::Account,
                code: "InvalidTopic".into(),
                reason: format!("SNS topic '{topic}': {e}"),
                retry_after: None,
            })?;
        let destination = EventDestinationDefinition::builder()
            .enabled(true)
            .set_matching_event_types(Some(vec![
                EventType::Send,
                EventType::Delivery,
                EventType::Bounce,
                EventType::Complaint,
                EventType::Reject,
                EventType::DeliveryDelay,
            ]))
            .sns_destination(sns)
            .build();
        match self
            .client
            .create_configuration_set_event_destination()
            .configuration_set_name(name)
            .event_destination_name("busflow-receipts")
            .event_destination(destination)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if exists(&e) => Ok(()),
            Err(e) => Err(failure(&e)),
        }
    }
}
