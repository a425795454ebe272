//! Temporal history without personal data in plain text: a payload codec
//! in the SDK's data converter that seals every payload this service hands
//! Temporal (workflow and activity inputs and results, signals, queries,
//! memos, failure details) with AES-256-GCM under the key ring's active key.
//! The key id travels in the payload's metadata, so a payload sealed before
//! a rotation still opens while its key stays in the ring. Search
//! attributes are left plain by the SDK: they hold ids only.
//!
//! The format is the one of Temporal's encryption samples: metadata
//! `encoding: binary/encrypted` and `encryption-key-id`, data the sealed
//! protobuf encoding of the original payload. The codec server
//! (`/codec/decode`, `/codec/encode`) uses the same codec, so ops read
//! payloads in the Web UI and `temporal workflow show --codec-endpoint`.

use crate::crypto::{CryptoError, KeyRing};
use futures::FutureExt;
use futures::future::BoxFuture;
use prost::Message;
use temporalio_common::data_converters::{
    DataConverter, DefaultFailureConverter, PayloadCodec, PayloadConversionError, PayloadConverter,
    SerializationContextData,
};
use temporalio_common::protos::temporal::api::common::v1::Payload;

/// The metadata key naming a payload's encoding.
pub const ENCODING: &str = "encoding";
/// The encoding of a sealed payload.
pub const ENCRYPTED: &[u8] = b"binary/encrypted";
/// The metadata key naming the key that sealed a payload.
pub const KEY_ID: &str = "encryption-key-id";
/// Binds a sealed payload to its use, so a sealed channel secret pasted
/// into a history does not open as a payload, nor the other way round.
const CONTEXT: &str = "temporal-payload";

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("an encrypted payload without its '{KEY_ID}' metadata")]
    NoKeyId,
    #[error("payload: {0}")]
    Crypto(#[from] CryptoError),
    #[error("an opened payload is not a Temporal payload")]
    NotAPayload,
}

/// The payload codec, around the key ring.
#[derive(Debug, Clone)]
pub struct PayloadEncryption {
    keys: KeyRing,
}

impl PayloadEncryption {
    pub fn new(keys: KeyRing) -> Self {
        Self { keys }
    }

    /// The SDK's default converters with this codec: JSON payloads, then
    /// sealed.
    pub fn data_converter(self) -> DataConverter {
        DataConverter::new(
            PayloadConverter::default(),
            DefaultFailureConverter::default(),
            self,
        )
    }

    /// Seals one payload under the active key; a sealed one is left as is.
    pub fn encrypt(&self, payload: Payload) -> Result<Payload, CodecError> {
        if is_encrypted(&payload) {
            return Ok(payload);
        }
        let data = self.keys.seal_bytes(&payload.encode_to_vec(), CONTEXT)?;
        Ok(Payload {
            metadata: [
                (ENCODING.to_owned(), ENCRYPTED.to_vec()),
                (
                    KEY_ID.to_owned(),
                    self.keys.active_kid().as_bytes().to_vec(),
                ),
            ]
            .into(),
            data,
            ..Default::default()
        })
    }

    /// Opens one payload; one that was never sealed (written before this
    /// codec, or by another client) passes through unchanged.
    pub fn decrypt(&self, payload: Payload) -> Result<Payload, CodecError> {
        if !is_encrypted(&payload) {
            return Ok(payload);
        }
        let kid = payload
            .metadata
            .get(KEY_ID)
            .and_then(|kid| std::str::from_utf8(kid).ok())
            .ok_or(CodecError::NoKeyId)?;
        let opened = self.keys.open_bytes(kid, &payload.data, CONTEXT)?;
        Payload::decode(opened.as_slice()).map_err(|_| CodecError::NotAPayload)
    }

    pub fn encrypt_all(&self, payloads: Vec<Payload>) -> Result<Vec<Payload>, CodecError> {
        payloads.into_iter().map(|p| self.encrypt(p)).collect()
    }

    pub fn decrypt_all(&self, payloads: Vec<Payload>) -> Result<Vec<Payload>, CodecError> {
        payloads.into_iter().map(|p| self.decrypt(p)).collect()
    }
}

/// Whether a payload is one this codec sealed.
pub fn is_encrypted(payload: &Payload) -> bool {
    payload.metadata.get(ENCODING).map(Vec::as_slice) == Some(ENCRYPTED)
}

impl PayloadCodec for PayloadEncryption {
    fn encode(
        &self,
        _: &SerializationContextData,
        payloads: Vec<Payload>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, PayloadConversionError>> {
        let sealed = self.encrypt_all(payloads).map_err(conversion_error);
        async move { sealed }.boxed()
    }

    fn decode(
        &self,
        _: &SerializationContextData,
        payloads: Vec<Payload>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, PayloadConversionError>> {
        let opened = self.decrypt_all(payloads).map_err(conversion_error);
        async move { opened }.boxed()
    }
}

fn conversion_error(e: CodecError) -> PayloadConversionError {
    PayloadConversionError::EncodingError(Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;

    fn ring(spec: &[(&str, u8)]) -> KeyRing {
        let spec: Vec<String> = spec
            .iter()
            .map(|(kid, byte)| format!("{kid}:{}", B64.encode([*byte; 32])))
            .collect();
        KeyRing::parse(&spec.join(","), None).expect("ring")
    }

    fn json(text: &str) -> Payload {
        Payload {
            metadata: [(ENCODING.to_owned(), b"json/plain".to_vec())].into(),
            data: text.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn a_sealed_payload_names_its_key_hides_its_data_and_opens_whole() {
        let codec = PayloadEncryption::new(ring(&[("k1", 1)]));
        let plain = json(r#"{"booking_reference":"BF-7781"}"#);
        let sealed = codec.encrypt(plain.clone()).expect("sealed");
        assert_eq!(sealed.metadata[ENCODING], ENCRYPTED);
        assert_eq!(sealed.metadata[KEY_ID], b"k1");
        assert!(!String::from_utf8_lossy(&sealed.data).contains("BF-7781"));
        assert_eq!(codec.decrypt(sealed.clone()).expect("opened"), plain);
        assert_eq!(codec.encrypt(sealed.clone()).expect("again"), sealed);
    }

    #[test]
    fn after_a_rotation_old_payloads_open_and_new_ones_use_the_new_key() {
        let before = PayloadEncryption::new(ring(&[("k1", 1)]));
        let old = before.encrypt(json("1")).expect("sealed");
        let after = PayloadEncryption::new(ring(&[("k1", 1), ("k2", 2)]));
        assert_eq!(after.decrypt(old).expect("opened"), json("1"));
        assert_eq!(
            after.encrypt(json("2")).expect("sealed").metadata[KEY_ID],
            b"k2"
        );
    }

    #[test]
    fn a_payload_of_a_key_not_in_the_ring_or_tampered_is_refused() {
        let sealed = PayloadEncryption::new(ring(&[("k1", 1)]))
            .encrypt(json("1"))
            .expect("sealed");
        let other = PayloadEncryption::new(ring(&[("k2", 2)]));
        assert!(matches!(
            other.decrypt(sealed.clone()),
            Err(CodecError::Crypto(CryptoError::UnknownKey(k))) if k == "k1"
        ));
        let mut tampered = sealed;
        *tampered.data.last_mut().expect("data") ^= 1;
        let codec = PayloadEncryption::new(ring(&[("k1", 1)]));
        assert!(matches!(
            codec.decrypt(tampered),
            Err(CodecError::Crypto(CryptoError::Open))
        ));
    }

    #[test]
    fn a_plain_payload_passes_through_decoding() {
        let codec = PayloadEncryption::new(ring(&[("k1", 1)]));
        assert_eq!(codec.decrypt(json("7")).expect("plain"), json("7"));
    }
}
