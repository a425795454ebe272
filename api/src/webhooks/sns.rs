//! Amazon SNS HTTP(S) deliveries: parsing the envelope SNS POSTs and
//! verifying its signature, so that handlers only act on what AWS signed.
//!
//! Policy:
//! - Nothing in an [`SnsEnvelope`] is trusted before [`SnsVerifier::verify`]
//!   succeeded: the topic is an expected one, `SignatureVersion` is `1`
//!   (SHA1withRSA) or `2` (SHA256withRSA), and the signature over
//!   [`string_to_sign`] checks out against the certificate at
//!   `SigningCertURL`.
//! - That certificate is fetched only over HTTPS from an SNS endpoint
//!   (`sns.<region>.amazonaws.com[.cn]`, see [`is_allowed_cert_url`]), and the
//!   URL is checked before anything is fetched. The TLS connection to AWS is
//!   what makes the certificate trustworthy; its own chain is not checked.
//! - Public keys are cached per certificate URL for the verifier's lifetime.
//!   A fetch that failed (or fetched no usable certificate) is remembered
//!   for [`FAILED_FETCH_TTL`]: envelopes naming that URL are refused without
//!   fetching again. And at most [`NEW_CERT_FETCHES_PER_MINUTE`] URLs not
//!   yet known are fetched a minute: an unsigned flood naming ever new URLs
//!   costs a handful of fetches, not one per request. SNS redelivers what
//!   was refused, so a genuine new certificate is only delayed.
//! - A subscription is confirmed ([`confirm_subscription`]) only by a GET to a
//!   `SubscribeURL` on an SNS endpoint, after the confirmation was verified.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use url::{Host, Url};
use x509_parser::public_key::PublicKey;

/// Header SNS sets on every HTTP(S) delivery, naming the message type.
pub const MESSAGE_TYPE_HEADER: &str = "x-amz-sns-message-type";

/// How long fetching a signing certificate may take.
pub const CERT_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// SNS certificates are about 2 KiB; anything much larger is not one.
const MAX_CERT_BYTES: usize = 64 * 1024;

/// How long a certificate URL whose fetch failed is refused without a new
/// fetch.
pub const FAILED_FETCH_TTL: Duration = Duration::from_secs(300);

/// How many certificate URLs not yet cached are fetched a minute, at most.
pub const NEW_CERT_FETCHES_PER_MINUTE: usize = 10;

/// SNS uses a handful of certificates at a time; the bound only matters if
/// someone makes us fetch many distinct (still AWS-hosted) URLs.
const MAX_CACHED_KEYS: usize = 64;

/// The `Type` of an SNS HTTP(S) message (also sent as [`MESSAGE_TYPE_HEADER`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum SnsMessageType {
    /// Sent once after subscribing; confirmed by visiting `SubscribeURL`.
    SubscriptionConfirmation,
    /// A message published to the topic.
    Notification,
    /// Sent after the endpoint was unsubscribed.
    UnsubscribeConfirmation,
}

impl SnsMessageType {
    /// The wire name, as in `Type` and the message-type header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SubscriptionConfirmation => "SubscriptionConfirmation",
            Self::Notification => "Notification",
            Self::UnsubscribeConfirmation => "UnsubscribeConfirmation",
        }
    }
}

/// The JSON body of an SNS HTTP(S) delivery (raw message delivery off).
/// Untrusted until [`SnsVerifier::verify`] accepted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SnsEnvelope {
    /// `Type`.
    pub r#type: SnsMessageType,
    /// `MessageId`: the same on SNS's retries of one message.
    pub message_id: String,
    /// `Token`: confirmations only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// `TopicArn`.
    pub topic_arn: String,
    /// `Subject`: notifications published with a subject only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// `Message`: the payload (for SES events, itself a JSON document).
    pub message: String,
    /// `Timestamp` (ISO 8601, UTC), as sent: it is part of the signed string.
    pub timestamp: String,
    /// `SignatureVersion`: `1` (SHA1withRSA) or `2` (SHA256withRSA).
    pub signature_version: String,
    /// `Signature`: base64 of the RSA signature over [`string_to_sign`].
    pub signature: String,
    /// `SigningCertURL`.
    #[serde(rename = "SigningCertURL")]
    pub signing_cert_url: String,
    /// `SubscribeURL`: confirmations only.
    #[serde(
        rename = "SubscribeURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub subscribe_url: Option<String>,
    /// `UnsubscribeURL`: notifications only.
    #[serde(
        rename = "UnsubscribeURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub unsubscribe_url: Option<String>,
}

/// Parses the body SNS POSTs (JSON, sent as `text/plain`).
pub fn parse_envelope(body: &[u8]) -> Result<SnsEnvelope, serde_json::Error> {
    serde_json::from_slice(body)
}

/// The string SNS signs: `key\nvalue\n` for each signed field, in AWS's
/// order. Notification: Message, MessageId, Subject, Timestamp, TopicArn,
/// Type. Confirmations: Message, MessageId, SubscribeURL, Timestamp, Token,
/// TopicArn, Type. Absent optional fields are left out, as AWS does for
/// Subject.
pub fn string_to_sign(envelope: &SnsEnvelope) -> String {
    let e = envelope;
    let fields = match e.r#type {
        SnsMessageType::Notification => vec![
            ("Message", Some(e.message.as_str())),
            ("MessageId", Some(e.message_id.as_str())),
            ("Subject", e.subject.as_deref()),
            ("Timestamp", Some(e.timestamp.as_str())),
            ("TopicArn", Some(e.topic_arn.as_str())),
            ("Type", Some(e.r#type.as_str())),
        ],
        SnsMessageType::SubscriptionConfirmation | SnsMessageType::UnsubscribeConfirmation => vec![
            ("Message", Some(e.message.as_str())),
            ("MessageId", Some(e.message_id.as_str())),
            ("SubscribeURL", e.subscribe_url.as_deref()),
            ("Timestamp", Some(e.timestamp.as_str())),
            ("Token", e.token.as_deref()),
            ("TopicArn", Some(e.topic_arn.as_str())),
            ("Type", Some(e.r#type.as_str())),
        ],
    };
    let mut out = String::new();
    for (key, value) in fields {
        if let Some(value) = value {
            out.push_str(key);
            out.push('\n');
            out.push_str(value);
            out.push('\n');
        }
    }
    out
}

/// Whether `url` is on an Amazon SNS endpoint: `https`, host exactly
/// `sns.<region>.amazonaws.com` or `sns.<region>.amazonaws.com.cn`, no user
/// info, port 443. The rule for `SubscribeURL`; certificate URLs must also
/// pass [`is_allowed_cert_url`].
pub fn is_allowed_aws_url(url: &str) -> bool {
    parse_aws_url(url).is_some()
}

/// [`is_allowed_aws_url`], plus a path ending in `.pem` and no query or
/// fragment (which would only make distinct cache keys for one certificate).
pub fn is_allowed_cert_url(url: &str) -> bool {
    parse_cert_url(url).is_some()
}

fn parse_aws_url(raw: &str) -> Option<Url> {
    let url = Url::parse(raw).ok()?;
    let on_sns_host = matches!(url.host(), Some(Host::Domain(host)) if is_sns_host(host));
    let allowed = url.scheme() == "https"
        && url.username().is_empty()
        && url.password().is_none()
        && url.port_or_known_default() == Some(443)
        && on_sns_host;
    allowed.then_some(url)
}

fn parse_cert_url(raw: &str) -> Option<Url> {
    parse_aws_url(raw).filter(|url| {
        url.path().ends_with(".pem") && url.query().is_none() && url.fragment().is_none()
    })
}

/// `sns.<region>.amazonaws.com` or `sns.<region>.amazonaws.com.cn` (the url
/// crate has already lowercased the host).
fn is_sns_host(host: &str) -> bool {
    host.strip_prefix("sns.")
        .and_then(|rest| {
            rest.strip_suffix(".amazonaws.com")
                .or_else(|| rest.strip_suffix(".amazonaws.com.cn"))
        })
        .is_some_and(is_region)
}

/// An AWS region name: lowercase words and a number joined by dashes, such as
/// `us-east-1`, `eu-west-3`, `us-gov-west-1`, `cn-north-1`.
fn is_region(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    let Some((number, words)) = parts.split_last() else {
        return false;
    };
    words.len() >= 2
        && words
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        && !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
}

/// Why an SNS message was not accepted, or a subscription not confirmed.
#[derive(Debug, thiserror::Error)]
pub enum SnsVerifyError {
    #[error("signing certificate URL {0:?} is not an https .pem URL on an AWS SNS endpoint")]
    UntrustedCertUrl(String),
    #[error("could not fetch the SNS signing certificate: {0}")]
    CertFetch(String),
    #[error("the SNS signing certificate {0} failed to fetch lately; not fetched again yet")]
    CertFetchFailedLately(String),
    #[error("too many new SNS signing certificates this minute; {0} not fetched")]
    CertFetchBudgetSpent(String),
    #[error("the SNS signing certificate is not a PEM X.509 certificate with an RSA key")]
    BadCertificate,
    #[error("the SNS Signature field is not valid base64")]
    BadSignatureEncoding,
    #[error("unsupported SNS SignatureVersion {0:?} (expected \"1\" or \"2\")")]
    UnsupportedSignatureVersion(String),
    #[error("the SNS signature does not match the message")]
    SignatureMismatch,
    #[error("SNS topic {0} is not one this service subscribes to")]
    TopicNotAllowed(String),
    #[error("only a SubscriptionConfirmation can be confirmed, not a {}", .0.as_str())]
    NotSubscriptionConfirmation(SnsMessageType),
    #[error("SubscribeURL {0:?} is missing or not an https URL on an AWS SNS endpoint")]
    UntrustedSubscribeUrl(String),
    #[error("confirming the SNS subscription failed: {0}")]
    SubscriptionConfirm(String),
}

/// The future [`CertFetcher::fetch`] returns.
pub type CertFetchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<u8>, SnsVerifyError>> + Send + 'a>>;

/// Where [`SnsVerifier`] gets signing certificates: [`HttpsCertFetcher`] in
/// production, a fixture in tests.
pub trait CertFetcher: Send + Sync {
    /// The PEM bytes of the certificate at `url`. Only called with URLs that
    /// passed [`is_allowed_cert_url`].
    fn fetch<'a>(&'a self, url: &'a str) -> CertFetchFuture<'a>;
}

/// Fetches certificates over HTTPS within [`CERT_FETCH_TIMEOUT`], without
/// following redirects, refusing oversized bodies.
#[derive(Debug, Clone)]
pub struct HttpsCertFetcher {
    http: reqwest::Client,
}

impl HttpsCertFetcher {
    /// Builds the fetcher's HTTP client (installs the process TLS provider).
    pub fn new() -> reqwest::Result<Self> {
        busflow_activities::http::install_crypto_provider();
        // Not `http::client`: a redirect must not take the fetch off the
        // host the URL policy approved.
        let http = reqwest::Client::builder()
            .timeout(CERT_FETCH_TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .https_only(true)
            .build()?;
        Ok(Self { http })
    }
}

impl CertFetcher for HttpsCertFetcher {
    fn fetch<'a>(&'a self, url: &'a str) -> CertFetchFuture<'a> {
        Box::pin(async move {
            let failed = |e: reqwest::Error| SnsVerifyError::CertFetch(format!("{url}: {e}"));
            let mut response = self
                .http
                .get(url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(failed)?;
            let mut pem = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(failed)? {
                if pem.len() + chunk.len() > MAX_CERT_BYTES {
                    return Err(SnsVerifyError::CertFetch(format!(
                        "{url}: body larger than {MAX_CERT_BYTES} bytes"
                    )));
                }
                pem.extend_from_slice(&chunk);
            }
            Ok(pem)
        })
    }
}

/// Verifies SNS envelopes; share one per process (it caches certificates).
pub struct SnsVerifier {
    fetcher: Arc<dyn CertFetcher>,
    /// Certificate URL → DER `RSAPublicKey` of that certificate.
    keys: Mutex<HashMap<String, Arc<[u8]>>>,
    /// What was fetched lately: failures, and the budget of new fetches.
    fetches: Mutex<FetchHistory>,
    allowed_topics: Vec<String>,
}

/// The certificate fetches of the last minutes.
#[derive(Debug, Default)]
struct FetchHistory {
    /// Certificate URL → when its fetch failed.
    failed: HashMap<String, Instant>,
    /// When each fetch of the last minute started.
    recent: VecDeque<Instant>,
}

impl FetchHistory {
    /// Whether `url` may be fetched now; if so, the fetch is counted.
    fn admit(&mut self, url: &str, now: Instant) -> Result<(), SnsVerifyError> {
        self.failed
            .retain(|_, at| now.duration_since(*at) < FAILED_FETCH_TTL);
        if self.failed.contains_key(url) {
            return Err(SnsVerifyError::CertFetchFailedLately(url.to_owned()));
        }
        while self
            .recent
            .front()
            .is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(60))
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= NEW_CERT_FETCHES_PER_MINUTE {
            return Err(SnsVerifyError::CertFetchBudgetSpent(url.to_owned()));
        }
        self.recent.push_back(now);
        Ok(())
    }
}

impl SnsVerifier {
    /// A verifier that accepts any topic and fetches certificates with
    /// `fetcher`.
    pub fn new(fetcher: Arc<dyn CertFetcher>) -> Self {
        Self {
            fetcher,
            keys: Mutex::new(HashMap::new()),
            fetches: Mutex::new(FetchHistory::default()),
            allowed_topics: Vec::new(),
        }
    }

    /// Accepts only messages from these topic ARNs (empty: any topic).
    pub fn with_allowed_topics(mut self, topic_arns: Vec<String>) -> Self {
        self.allowed_topics = topic_arns;
        self
    }

    /// Accepts `envelope` only if its topic is allowed and its signature was
    /// made with the key of the AWS-hosted certificate it names. Checks that
    /// need no network come first, so a bad message never causes a fetch.
    pub async fn verify(&self, envelope: &SnsEnvelope) -> Result<(), SnsVerifyError> {
        if !self.allowed_topics.is_empty() && !self.allowed_topics.contains(&envelope.topic_arn) {
            return Err(SnsVerifyError::TopicNotAllowed(envelope.topic_arn.clone()));
        }
        let algorithm: &'static dyn VerificationAlgorithm =
            match envelope.signature_version.as_str() {
                // SNS still signs with SHA1 unless the topic is set to version 2.
                "1" => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
                "2" => &signature::RSA_PKCS1_2048_8192_SHA256,
                other => {
                    return Err(SnsVerifyError::UnsupportedSignatureVersion(
                        other.to_owned(),
                    ));
                }
            };
        let cert_url = parse_cert_url(&envelope.signing_cert_url)
            .ok_or_else(|| SnsVerifyError::UntrustedCertUrl(envelope.signing_cert_url.clone()))?;
        let signature = BASE64
            .decode(envelope.signature.as_bytes())
            .map_err(|_| SnsVerifyError::BadSignatureEncoding)?;
        let key = self.public_key(cert_url.as_str()).await?;
        UnparsedPublicKey::new(algorithm, &*key)
            .verify(string_to_sign(envelope).as_bytes(), &signature)
            .map_err(|_| SnsVerifyError::SignatureMismatch)
    }

    async fn public_key(&self, cert_url: &str) -> Result<Arc<[u8]>, SnsVerifyError> {
        if let Some(key) = self.lock_keys().get(cert_url) {
            return Ok(Arc::clone(key));
        }
        self.lock_fetches().admit(cert_url, Instant::now())?;
        // The lock is not held across the fetch: two first verifications may
        // both fetch, which is harmless.
        let fetched = match self.fetcher.fetch(cert_url).await {
            Ok(pem) => rsa_public_key_from_pem(&pem),
            Err(e) => Err(e),
        };
        let key = match fetched {
            Ok(key) => key,
            Err(e) => {
                self.lock_fetches()
                    .failed
                    .insert(cert_url.to_owned(), Instant::now());
                return Err(e);
            }
        };
        let mut keys = self.lock_keys();
        if keys.len() >= MAX_CACHED_KEYS {
            keys.clear();
        }
        keys.insert(cert_url.to_owned(), Arc::clone(&key));
        Ok(key)
    }

    fn lock_keys(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<[u8]>>> {
        // A panic cannot leave the map half-updated, so a poisoned lock is fine.
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_fetches(&self) -> std::sync::MutexGuard<'_, FetchHistory> {
        self.fetches.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The DER `RSAPublicKey` of the PEM certificate, the form ring verifies
/// with. ring itself rejects keys outside 2048–8192 bits when verifying.
fn rsa_public_key_from_pem(pem: &[u8]) -> Result<Arc<[u8]>, SnsVerifyError> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(pem).map_err(|_| SnsVerifyError::BadCertificate)?;
    let cert = pem
        .parse_x509()
        .map_err(|_| SnsVerifyError::BadCertificate)?;
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(PublicKey::RSA(_)) => Ok(Arc::from(spki.subject_public_key.data.as_ref())),
        _ => Err(SnsVerifyError::BadCertificate),
    }
}

/// Confirms the subscription by a GET to its `SubscribeURL`. Only for a
/// `SubscriptionConfirmation` that [`SnsVerifier::verify`] accepted, and only
/// to a URL that passes [`is_allowed_aws_url`].
pub async fn confirm_subscription(
    http: &reqwest::Client,
    envelope: &SnsEnvelope,
) -> Result<(), SnsVerifyError> {
    if envelope.r#type != SnsMessageType::SubscriptionConfirmation {
        return Err(SnsVerifyError::NotSubscriptionConfirmation(envelope.r#type));
    }
    let raw = envelope.subscribe_url.as_deref().unwrap_or_default();
    let url =
        parse_aws_url(raw).ok_or_else(|| SnsVerifyError::UntrustedSubscribeUrl(raw.to_owned()))?;
    http.get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| SnsVerifyError::SubscriptionConfirm(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{
        StaticCertFetcher, TEST_CERT_URL, TEST_KEY_PEM, TEST_TOPIC_ARN, notification,
        sign_envelope, subscription_confirmation,
    };

    const OTHER_KEY_PEM: &str = include_str!("../../tests/fixtures/sns-other-key.pem");

    fn verifier() -> (Arc<StaticCertFetcher>, SnsVerifier) {
        let fetcher = Arc::new(StaticCertFetcher::test_cert());
        let verifier = SnsVerifier::new(fetcher.clone());
        (fetcher, verifier)
    }

    fn signed(mut envelope: SnsEnvelope) -> SnsEnvelope {
        sign_envelope(&mut envelope, TEST_KEY_PEM);
        envelope
    }

    fn ses_delivery() -> SnsEnvelope {
        notification(r#"{"eventType":"Delivery","mail":{"messageId":"0100018c"}}"#)
    }

    #[test]
    fn parses_the_aws_json_shape() {
        let body = br#"{
          "Type" : "Notification",
          "MessageId" : "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
          "TopicArn" : "arn:aws:sns:us-west-2:123456789012:MyTopic",
          "Subject" : "My First Message",
          "Message" : "Hello world!",
          "Timestamp" : "2012-05-02T00:54:06.655Z",
          "SignatureVersion" : "1",
          "Signature" : "EXAMPLEw6JRN...",
          "SigningCertURL" : "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
          "UnsubscribeURL" : "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-west-2:123456789012:MyTopic:c9135db0",
          "MessageAttributes" : {"k": {"Type": "String", "Value": "v"}}
        }"#;
        let envelope = parse_envelope(body).expect("parses");
        assert_eq!(envelope.r#type, SnsMessageType::Notification);
        assert_eq!(envelope.message_id, "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324");
        assert_eq!(
            envelope.topic_arn,
            "arn:aws:sns:us-west-2:123456789012:MyTopic"
        );
        assert_eq!(envelope.subject.as_deref(), Some("My First Message"));
        assert_eq!(envelope.signature_version, "1");
        assert!(envelope.signing_cert_url.ends_with("52f.pem"));
        assert!(envelope.unsubscribe_url.is_some());
        assert_eq!(envelope.token, None);
        assert_eq!(envelope.subscribe_url, None);
        assert!(is_allowed_cert_url(&envelope.signing_cert_url));
    }

    #[test]
    fn parses_a_subscription_confirmation() {
        let body = br#"{"Type":"SubscriptionConfirmation","MessageId":"165545c9","Token":"2336412f37",
          "TopicArn":"arn:aws:sns:us-west-2:123456789012:MyTopic","Message":"You have chosen...",
          "SubscribeURL":"https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-west-2:123456789012:MyTopic&Token=2336412f37",
          "Timestamp":"2012-04-26T20:45:04.751Z","SignatureVersion":"1","Signature":"EXAMPLE",
          "SigningCertURL":"https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem"}"#;
        let envelope = parse_envelope(body).expect("parses");
        assert_eq!(envelope.r#type, SnsMessageType::SubscriptionConfirmation);
        assert_eq!(envelope.token.as_deref(), Some("2336412f37"));
        assert!(is_allowed_aws_url(
            envelope.subscribe_url.as_deref().expect("present")
        ));
    }

    #[test]
    fn rejects_an_unknown_type() {
        let body =
            br#"{"Type":"Surprise","MessageId":"1","TopicArn":"t","Message":"m","Timestamp":"t",
          "SignatureVersion":"1","Signature":"s","SigningCertURL":"u"}"#;
        assert!(parse_envelope(body).is_err());
    }

    #[test]
    fn string_to_sign_of_a_notification_leaves_out_an_absent_subject() {
        let mut envelope = notification("hello\nworld");
        assert_eq!(
            string_to_sign(&envelope),
            format!(
                "Message\nhello\nworld\nMessageId\n{}\nTimestamp\n{}\nTopicArn\n{TEST_TOPIC_ARN}\nType\nNotification\n",
                envelope.message_id, envelope.timestamp
            )
        );
        envelope.subject = Some("Delivery".to_owned());
        assert!(string_to_sign(&envelope).contains(&format!(
            "MessageId\n{}\nSubject\nDelivery\nTimestamp\n",
            envelope.message_id
        )));
    }

    #[test]
    fn string_to_sign_of_a_confirmation_has_subscribe_url_and_token() {
        let envelope = subscription_confirmation();
        let subscribe_url = envelope.subscribe_url.clone().expect("present");
        let token = envelope.token.clone().expect("present");
        assert_eq!(
            string_to_sign(&envelope),
            format!(
                "Message\n{}\nMessageId\n{}\nSubscribeURL\n{subscribe_url}\nTimestamp\n{}\nToken\n{token}\nTopicArn\n{TEST_TOPIC_ARN}\nType\nSubscriptionConfirmation\n",
                envelope.message, envelope.message_id, envelope.timestamp
            )
        );
    }

    #[test]
    fn verification_can_run_in_a_handler() {
        // axum handlers and tokio::spawn need Send futures and a shareable
        // verifier behind `Arc<dyn CertFetcher>`.
        fn assert_send<T: Send>(_: &T) {}
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SnsVerifier>();
        let fetcher: Arc<dyn CertFetcher> = Arc::new(StaticCertFetcher::test_cert());
        let verifier = SnsVerifier::new(fetcher);
        let envelope = ses_delivery();
        assert_send(&verifier.verify(&envelope));
        let http = http();
        assert_send(&confirm_subscription(&http, &envelope));
    }

    #[tokio::test]
    async fn a_v1_notification_verifies() {
        let (_, verifier) = verifier();
        let mut envelope = ses_delivery();
        envelope.signature_version = "1".to_owned();
        verifier.verify(&signed(envelope)).await.expect("valid v1");
    }

    #[tokio::test]
    async fn a_v2_notification_verifies() {
        let (fetcher, verifier) = verifier();
        verifier
            .verify(&signed(ses_delivery()))
            .await
            .expect("valid v2");
        assert_eq!(fetcher.fetched_urls(), vec![TEST_CERT_URL.to_owned()]);
    }

    #[tokio::test]
    async fn a_notification_with_a_subject_verifies_and_the_subject_is_signed() {
        let (_, verifier) = verifier();
        let mut envelope = ses_delivery();
        envelope.subject = Some("Amazon SES Email Event Notification".to_owned());
        let mut envelope = signed(envelope);
        verifier
            .verify(&envelope)
            .await
            .expect("valid with subject");

        envelope.subject = Some("Something else".to_owned());
        assert!(matches!(
            verifier.verify(&envelope).await,
            Err(SnsVerifyError::SignatureMismatch)
        ));
        envelope.subject = None;
        assert!(matches!(
            verifier.verify(&envelope).await,
            Err(SnsVerifyError::SignatureMismatch)
        ));
    }

    #[tokio::test]
    async fn confirmations_verify() {
        let (_, verifier) = verifier();
        let mut envelope = subscription_confirmation();
        envelope.signature_version = "1".to_owned();
        verifier
            .verify(&signed(envelope.clone()))
            .await
            .expect("valid v1 confirmation");
        envelope.r#type = SnsMessageType::UnsubscribeConfirmation;
        verifier
            .verify(&signed(envelope))
            .await
            .expect("valid unsubscribe confirmation");
    }

    #[tokio::test]
    async fn a_body_signed_then_serialized_and_parsed_verifies() {
        let (_, verifier) = verifier();
        let body = serde_json::to_vec(&signed(ses_delivery())).expect("serializes");
        let envelope = parse_envelope(&body).expect("parses");
        verifier.verify(&envelope).await.expect("round trip");
    }

    #[tokio::test]
    async fn a_tampered_message_is_a_mismatch() {
        let (_, verifier) = verifier();
        let mut envelope = signed(ses_delivery());
        envelope.message = envelope.message.replace("Delivery", "Bounce");
        assert!(matches!(
            verifier.verify(&envelope).await,
            Err(SnsVerifyError::SignatureMismatch)
        ));
    }

    #[tokio::test]
    async fn a_changed_signature_version_is_a_mismatch() {
        let (_, verifier) = verifier();
        let mut envelope = signed(ses_delivery());
        envelope.signature_version = "1".to_owned();
        assert!(matches!(
            verifier.verify(&envelope).await,
            Err(SnsVerifyError::SignatureMismatch)
        ));
    }

    #[tokio::test]
    async fn a_signature_by_another_key_is_a_mismatch() {
        let (_, verifier) = verifier();
        let mut envelope = ses_delivery();
        sign_envelope(&mut envelope, OTHER_KEY_PEM);
        assert!(matches!(
            verifier.verify(&envelope).await,
            Err(SnsVerifyError::SignatureMismatch)
        ));
    }

    #[tokio::test]
    async fn an_untrusted_cert_url_is_refused_without_fetching() {
        let (fetcher, verifier) = verifier();
        for url in [
            "https://sns.us-east-1.amazonaws.com.evil.com/cert.pem",
            "http://sns.us-east-1.amazonaws.com/cert.pem",
            "https://127.0.0.1/cert.pem",
        ] {
            let mut envelope = ses_delivery();
            envelope.signing_cert_url = url.to_owned();
            let envelope = signed(envelope);
            match verifier.verify(&envelope).await {
                Err(SnsVerifyError::UntrustedCertUrl(refused)) => assert_eq!(refused, url),
                other => panic!("{url}: expected UntrustedCertUrl, got {other:?}"),
            }
        }
        assert_eq!(fetcher.fetch_count(), 0);
    }

    #[tokio::test]
    async fn an_unknown_signature_version_is_refused_without_fetching() {
        let (fetcher, verifier) = verifier();
        let mut envelope = signed(ses_delivery());
        envelope.signature_version = "3".to_owned();
        match verifier.verify(&envelope).await {
            Err(SnsVerifyError::UnsupportedSignatureVersion(version)) => assert_eq!(version, "3"),
            other => panic!("expected UnsupportedSignatureVersion, got {other:?}"),
        }
        assert_eq!(fetcher.fetch_count(), 0);
    }

    #[tokio::test]
    async fn a_topic_outside_the_allowed_list_is_refused() {
        let fetcher = Arc::new(StaticCertFetcher::test_cert());
        let verifier = SnsVerifier::new(fetcher.clone()).with_allowed_topics(vec![
            "arn:aws:sns:eu-west-1:123456789012:ses-events".to_owned(),
        ]);
        match verifier.verify(&signed(ses_delivery())).await {
            Err(SnsVerifyError::TopicNotAllowed(topic)) => assert_eq!(topic, TEST_TOPIC_ARN),
            other => panic!("expected TopicNotAllowed, got {other:?}"),
        }
        assert_eq!(fetcher.fetch_count(), 0);

        let verifier =
            SnsVerifier::new(fetcher).with_allowed_topics(vec![TEST_TOPIC_ARN.to_owned()]);
        verifier
            .verify(&signed(ses_delivery()))
            .await
            .expect("allowed topic");
    }

    #[tokio::test]
    async fn a_signature_that_is_not_base64_is_refused() {
        let (_, verifier) = verifier();
        let mut envelope = ses_delivery();
        envelope.signature = "not base64!".to_owned();
        assert!(matches!(
            verifier.verify(&envelope).await,
            Err(SnsVerifyError::BadSignatureEncoding)
        ));
    }

    #[tokio::test]
    async fn the_certificate_is_fetched_once_per_url() {
        let (fetcher, verifier) = verifier();
        verifier
            .verify(&signed(ses_delivery()))
            .await
            .expect("first");
        let mut second = notification("another event");
        second.signature_version = "1".to_owned();
        verifier.verify(&signed(second)).await.expect("second");
        assert_eq!(fetcher.fetch_count(), 1);

        let mut other_url = ses_delivery();
        other_url.signing_cert_url =
            "https://sns.eu-west-3.amazonaws.com/SimpleNotificationService-other.pem".to_owned();
        verifier
            .verify(&signed(other_url))
            .await
            .expect("other url");
        assert_eq!(fetcher.fetch_count(), 2);
    }

    #[tokio::test]
    async fn a_bad_certificate_is_refused_and_not_fetched_again_for_a_while() {
        let fetcher = Arc::new(StaticCertFetcher::new(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
        ));
        let verifier = SnsVerifier::new(fetcher.clone());
        let envelope = signed(ses_delivery());
        assert!(matches!(
            verifier.verify(&envelope).await,
            Err(SnsVerifyError::BadCertificate)
        ));
        for _ in 0..5 {
            assert!(matches!(
                verifier.verify(&envelope).await,
                Err(SnsVerifyError::CertFetchFailedLately(_))
            ));
        }
        assert_eq!(fetcher.fetch_count(), 1);
    }

    #[tokio::test]
    async fn a_flood_naming_ever_new_certificates_costs_a_handful_of_fetches() {
        let fetcher = Arc::new(StaticCertFetcher::new(b"not a certificate".to_vec()));
        let verifier = SnsVerifier::new(fetcher.clone());
        let mut refused_unfetched = 0;
        for n in 0..100 {
            let mut envelope = ses_delivery();
            envelope.signing_cert_url =
                format!("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-{n}.pem");
            match verifier.verify(&signed(envelope)).await {
                Err(SnsVerifyError::CertFetchBudgetSpent(_)) => refused_unfetched += 1,
                Err(SnsVerifyError::BadCertificate) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(fetcher.fetch_count(), NEW_CERT_FETCHES_PER_MINUTE);
        assert_eq!(refused_unfetched, 100 - NEW_CERT_FETCHES_PER_MINUTE);
    }

    #[test]
    fn a_failed_fetch_is_forgotten_after_its_time_and_the_budget_refills() {
        let mut history = FetchHistory::default();
        let start = Instant::now();
        history.admit("a", start).expect("first fetch");
        history.failed.insert("a".to_owned(), start);
        assert!(history.admit("a", start + Duration::from_secs(1)).is_err());
        history
            .admit("a", start + FAILED_FETCH_TTL)
            .expect("fetched again once the failure is old");
        for n in 0..NEW_CERT_FETCHES_PER_MINUTE - 1 {
            history
                .admit(&format!("u{n}"), start + FAILED_FETCH_TTL)
                .expect("within the budget");
        }
        assert!(matches!(
            history.admit("over", start + FAILED_FETCH_TTL),
            Err(SnsVerifyError::CertFetchBudgetSpent(_))
        ));
        history
            .admit("later", start + FAILED_FETCH_TTL + Duration::from_secs(60))
            .expect("a minute later the budget refilled");
    }

    #[test]
    fn url_policy() {
        let cert_ok = [
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.eu-west-3.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
            "https://sns.ap-southeast-2.amazonaws.com:443/a.pem",
            "https://SNS.US-EAST-1.AMAZONAWS.COM/a.pem",
        ];
        for url in cert_ok {
            assert!(is_allowed_cert_url(url), "{url} should be allowed");
            assert!(is_allowed_aws_url(url), "{url} should be allowed");
        }
        let refused = [
            "https://sns.us-east-1.amazonaws.com.evil.com/a.pem",
            "https://evil.com/sns.us-east-1.amazonaws.com/a.pem",
            "https://evil.com/?u=https://sns.us-east-1.amazonaws.com/a.pem",
            "http://sns.us-east-1.amazonaws.com/a.pem",
            "https://sns.us-east-1.amazonaws.com@evil.com/a.pem",
            "https://user:pw@sns.us-east-1.amazonaws.com/a.pem",
            "https://sns.us-east-1.amazonaws.com:8443/a.pem",
            "https://evil-sns.us-east-1.amazonaws.com/a.pem",
            "https://sns.evil.amazonaws.com/a.pem",
            "https://sns.evil.com.amazonaws.com/a.pem",
            "https://sns.us-east-1.evil.com/a.pem",
            "https://s3.us-east-1.amazonaws.com/a.pem",
            "https://sns.amazonaws.com/a.pem",
            "https://sns.us-east-1.amazonaws.com./a.pem",
            "https://54.239.28.85/a.pem",
            "ftp://sns.us-east-1.amazonaws.com/a.pem",
            "sns.us-east-1.amazonaws.com/a.pem",
            "",
        ];
        for url in refused {
            assert!(!is_allowed_aws_url(url), "{url} should be refused");
            assert!(!is_allowed_cert_url(url), "{url} should be refused");
        }
        let aws_but_not_a_cert = [
            "https://sns.us-east-1.amazonaws.com/",
            "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=x",
            "https://sns.us-east-1.amazonaws.com/a.pem?x=1",
            "https://sns.us-east-1.amazonaws.com/a.pem#x",
            "https://sns.us-east-1.amazonaws.com/a.pem.exe",
        ];
        for url in aws_but_not_a_cert {
            assert!(is_allowed_aws_url(url), "{url} is on AWS");
            assert!(!is_allowed_cert_url(url), "{url} is not a cert URL");
        }
    }

    #[tokio::test]
    async fn the_https_fetcher_refuses_plain_http_before_connecting() {
        let fetcher = HttpsCertFetcher::new().expect("client builds");
        match fetcher.fetch("http://127.0.0.1:9/cert.pem").await {
            Err(SnsVerifyError::CertFetch(reason)) => {
                assert!(
                    reason.starts_with("http://127.0.0.1:9/cert.pem: "),
                    "{reason}"
                )
            }
            other => panic!("expected CertFetch, got {other:?}"),
        }
    }

    fn http() -> reqwest::Client {
        busflow_activities::http::client(Duration::from_secs(1)).expect("client builds")
    }

    #[tokio::test]
    async fn confirm_subscription_refuses_a_notification() {
        let envelope = signed(ses_delivery());
        assert!(matches!(
            confirm_subscription(&http(), &envelope).await,
            Err(SnsVerifyError::NotSubscriptionConfirmation(
                SnsMessageType::Notification
            ))
        ));
    }

    #[tokio::test]
    async fn confirm_subscription_refuses_a_url_off_aws() {
        for url in [
            Some("https://127.0.0.1:1/?Action=ConfirmSubscription"),
            Some("http://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"),
            Some("https://sns.us-east-1.amazonaws.com.evil.com/"),
            None,
        ] {
            let mut envelope = subscription_confirmation();
            envelope.subscribe_url = url.map(str::to_owned);
            match confirm_subscription(&http(), &envelope).await {
                Err(SnsVerifyError::UntrustedSubscribeUrl(refused)) => {
                    assert_eq!(refused, url.unwrap_or_default())
                }
                other => panic!("{url:?}: expected UntrustedSubscribeUrl, got {other:?}"),
            }
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let url = "https://evil.com/a.pem";
        assert!(
            SnsVerifyError::UntrustedCertUrl(url.to_owned())
                .to_string()
                .contains(url)
        );
        assert!(
            SnsVerifyError::UnsupportedSignatureVersion("3".to_owned())
                .to_string()
                .contains("\"3\"")
        );
        assert_eq!(
            SnsVerifyError::NotSubscriptionConfirmation(SnsMessageType::Notification).to_string(),
            "only a SubscriptionConfirmation can be confirmed, not a Notification"
        );
    }
}
