//! Test support for crates that drive the webhooks end to end: SNS envelopes
//! signed with a throwaway key, and a certificate fetcher that serves the
//! matching certificate instead of calling AWS.
//!
//! Compiled with the `test-support` feature (and in this crate's own tests).
//! Never enable that feature in a production build. The helpers panic on
//! misuse, as test helpers do.

use crate::webhooks::sns::{
    CertFetchFuture, CertFetcher, SnsEnvelope, SnsMessageType, string_to_sign,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use std::sync::{Mutex, PoisonError};

/// The throwaway private key (PKCS#8 PEM) matching [`TEST_CERT_PEM`].
pub const TEST_KEY_PEM: &str = include_str!("../tests/fixtures/sns-test-key.pem");

/// A self-signed certificate for [`TEST_KEY_PEM`].
pub const TEST_CERT_PEM: &str = include_str!("../tests/fixtures/sns-test-cert.pem");

/// A signing-certificate URL that passes the URL policy (never fetched when
/// the verifier uses a [`StaticCertFetcher`]).
pub const TEST_CERT_URL: &str =
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-busflow-test.pem";

/// The topic of the envelopes built here.
pub const TEST_TOPIC_ARN: &str = "arn:aws:sns:us-east-1:123456789012:busflow-test";

/// An unsigned `Notification` carrying `message`, SignatureVersion `2`, on
/// [`TEST_TOPIC_ARN`] with [`TEST_CERT_URL`]. Sign it with [`sign_envelope`].
pub fn notification(message: &str) -> SnsEnvelope {
    SnsEnvelope {
        r#type: SnsMessageType::Notification,
        message_id: "6a1f1c3e-0000-4000-8000-000000000001".to_owned(),
        token: None,
        topic_arn: TEST_TOPIC_ARN.to_owned(),
        subject: None,
        message: message.to_owned(),
        timestamp: "2026-01-15T10:20:30.123Z".to_owned(),
        signature_version: "2".to_owned(),
        signature: String::new(),
        signing_cert_url: TEST_CERT_URL.to_owned(),
        subscribe_url: None,
        unsubscribe_url: Some(format!(
            "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={TEST_TOPIC_ARN}:sub"
        )),
    }
}

/// An unsigned `SubscriptionConfirmation` for [`TEST_TOPIC_ARN`],
/// SignatureVersion `2`. Sign it with [`sign_envelope`].
pub fn subscription_confirmation() -> SnsEnvelope {
    let token = "2336412f37fb687f5d51e6e2425c464de0000000000000000000000000000000";
    SnsEnvelope {
        r#type: SnsMessageType::SubscriptionConfirmation,
        message_id: "6a1f1c3e-0000-4000-8000-000000000002".to_owned(),
        token: Some(token.to_owned()),
        topic_arn: TEST_TOPIC_ARN.to_owned(),
        subject: None,
        message: format!(
            "You have chosen to subscribe to the topic {TEST_TOPIC_ARN}.\n\
             To confirm the subscription, visit the SubscribeURL included in this message."
        ),
        timestamp: "2026-01-15T10:20:30.123Z".to_owned(),
        signature_version: "2".to_owned(),
        signature: String::new(),
        signing_cert_url: TEST_CERT_URL.to_owned(),
        subscribe_url: Some(format!(
            "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TEST_TOPIC_ARN}&Token={token}"
        )),
        unsubscribe_url: None,
    }
}

/// Fills `envelope.signature` the way SNS does for its `signature_version`
/// (`1`: SHA1withRSA, `2`: SHA256withRSA), with `private_key_pem` (PKCS#8
/// or PKCS#1). Sign after the last change to a signed field.
///
/// # Panics
/// If the key is not an RSA private key PEM, or the version is not 1 or 2.
pub fn sign_envelope(envelope: &mut SnsEnvelope, private_key_pem: &str) {
    let key = RsaPrivateKey::from_pkcs8_pem(private_key_pem)
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(private_key_pem))
        .unwrap_or_else(|e| panic!("sign_envelope: not an RSA private key PEM: {e}"));
    let signed = string_to_sign(envelope);
    let signature = match envelope.signature_version.as_str() {
        "1" => SigningKey::<sha1::Sha1>::new(key)
            .sign(signed.as_bytes())
            .to_vec(),
        "2" => SigningKey::<sha2::Sha256>::new(key)
            .sign(signed.as_bytes())
            .to_vec(),
        other => panic!("sign_envelope: SNS has no SignatureVersion {other:?}; use \"1\" or \"2\""),
    };
    envelope.signature = BASE64.encode(signature);
}

/// A [`CertFetcher`] that serves one fixed PEM for every URL and records the
/// URLs it was asked for.
#[derive(Debug)]
pub struct StaticCertFetcher {
    pem: Vec<u8>,
    fetched: Mutex<Vec<String>>,
}

impl StaticCertFetcher {
    /// Serves `pem` (which need not be a valid certificate).
    pub fn new(pem: impl Into<Vec<u8>>) -> Self {
        Self {
            pem: pem.into(),
            fetched: Mutex::new(Vec::new()),
        }
    }

    /// Serves [`TEST_CERT_PEM`].
    pub fn test_cert() -> Self {
        Self::new(TEST_CERT_PEM)
    }

    /// How many times `fetch` was called.
    pub fn fetch_count(&self) -> usize {
        self.fetched_urls().len()
    }

    /// The URLs `fetch` was called with, in order.
    pub fn fetched_urls(&self) -> Vec<String> {
        self.fetched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl CertFetcher for StaticCertFetcher {
    fn fetch<'a>(&'a self, url: &'a str) -> CertFetchFuture<'a> {
        self.fetched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(url.to_owned());
        let pem = self.pem.clone();
        Box::pin(async move { Ok(pem) })
    }
}
