//! Secrets at rest: AES-256-GCM with a key ring.
//!
//! A `SealedSecret` stores the id of the key that sealed it, a fresh 96-bit
//! nonce and the ciphertext; the key id and tenant-scoped associated data are
//! authenticated, so a ciphertext copied onto another channel account does not
//! open. Keys come from the environment (`BUSFLOW_SECRET_KEYS`), never from the
//! database; rotation adds a key, makes it active, and re-seals every secret.

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// AES-GCM's 96-bit nonce.
const NONCE_LEN: usize = 12;

/// A secret as stored in `channel_accounts.provider_secrets`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    pub kid: String,
    pub nonce: String,
    pub ciphertext: String,
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSecret")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("key ring is empty: set BUSFLOW_SECRET_KEYS to 'id:base64-32-byte-key[,id:key...]'")]
    EmptyKeyRing,
    #[error("key ring entry '{0}' is not 'id:base64-32-byte-key'")]
    MalformedKey(String),
    #[error("active key '{0}' is not in the key ring")]
    UnknownActiveKey(String),
    #[error("secret was sealed with key '{0}', which is not in the key ring")]
    UnknownKey(String),
    #[error("secret cannot be opened (wrong key, tampered, or moved to another account)")]
    Open,
    #[error("secret could not be sealed")]
    Seal,
}

/// The keys this process may use; one of them seals new secrets.
#[derive(Clone)]
pub struct KeyRing {
    keys: BTreeMap<String, Key<Aes256Gcm>>,
    active: String,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .field("active", &self.active)
            .finish()
    }
}

impl KeyRing {
    /// Parses `id:base64key,id:base64key`; the active key is `active` or, when
    /// absent, the last entry (so appending a key and restarting rotates).
    pub fn parse(spec: &str, active: Option<&str>) -> Result<Self, CryptoError> {
        let mut keys = BTreeMap::new();
        let mut last = None;
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (kid, b64) = entry
                .split_once(':')
                .ok_or_else(|| CryptoError::MalformedKey(redact(entry)))?;
            let bytes = B64
                .decode(b64.trim())
                .map_err(|_| CryptoError::MalformedKey(kid.to_owned()))?;
            if bytes.len() != 32 || kid.is_empty() {
                return Err(CryptoError::MalformedKey(kid.to_owned()));
            }
            keys.insert(kid.to_owned(), *Key::<Aes256Gcm>::from_slice(&bytes));
            last = Some(kid.to_owned());
        }
        let active = match active.filter(|a| !a.is_empty()) {
            Some(kid) if keys.contains_key(kid) => kid.to_owned(),
            Some(kid) => return Err(CryptoError::UnknownActiveKey(kid.to_owned())),
            None => last.ok_or(CryptoError::EmptyKeyRing)?,
        };
        Ok(Self { keys, active })
    }

    pub fn active_kid(&self) -> &str {
        &self.active
    }

    /// Seals `plaintext` under the active key, bound to `context` (e.g. the
    /// tenant and channel account id).
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Result<SealedSecret, CryptoError> {
        let (nonce, ciphertext) = self.encrypt(plaintext, context)?;
        Ok(SealedSecret {
            kid: self.active.clone(),
            nonce: B64.encode(nonce),
            ciphertext: B64.encode(ciphertext),
        })
    }

    pub fn open(&self, sealed: &SealedSecret, context: &str) -> Result<Vec<u8>, CryptoError> {
        let nonce = B64.decode(&sealed.nonce).map_err(|_| CryptoError::Open)?;
        let ciphertext = B64
            .decode(&sealed.ciphertext)
            .map_err(|_| CryptoError::Open)?;
        self.decrypt(&sealed.kid, &nonce, &ciphertext, context)
    }

    /// Seals `plaintext` as one byte string, `nonce ‖ ciphertext`, for
    /// binary carriers (Temporal payloads); the key id travels beside it.
    pub fn seal_bytes(&self, plaintext: &[u8], context: &str) -> Result<Vec<u8>, CryptoError> {
        let (nonce, ciphertext) = self.encrypt(plaintext, context)?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    /// Opens what `seal_bytes` sealed under the key `kid`.
    pub fn open_bytes(
        &self,
        kid: &str,
        sealed: &[u8],
        context: &str,
    ) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < NONCE_LEN {
            return Err(CryptoError::Open);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.decrypt(kid, nonce, ciphertext, context)
    }

    fn encrypt(
        &self,
        plaintext: &[u8],
        context: &str,
    ) -> Result<(aes_gcm::aead::Nonce<Aes256Gcm>, Vec<u8>), CryptoError> {
        let key = &self.keys[&self.active];
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = associated_data(&self.active, context);
        let ciphertext = Aes256Gcm::new(key)
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Seal)?;
        Ok((nonce, ciphertext))
    }

    fn decrypt(
        &self,
        kid: &str,
        nonce: &[u8],
        ciphertext: &[u8],
        context: &str,
    ) -> Result<Vec<u8>, CryptoError> {
        let key = self
            .keys
            .get(kid)
            .ok_or_else(|| CryptoError::UnknownKey(kid.to_owned()))?;
        if nonce.len() != NONCE_LEN {
            return Err(CryptoError::Open);
        }
        let aad = associated_data(kid, context);
        Aes256Gcm::new(key)
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Open)
    }

    /// Whether `sealed` should be re-sealed under the active key.
    pub fn is_stale(&self, sealed: &SealedSecret) -> bool {
        sealed.kid != self.active
    }
}

fn associated_data(kid: &str, context: &str) -> Vec<u8> {
    format!("busflow-comms/v1|{kid}|{context}").into_bytes()
}

fn redact(entry: &str) -> String {
    entry.chars().take(8).chain("…".chars()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        B64.encode([byte; 32])
    }

    #[test]
    fn seals_and_opens_with_the_same_context() {
        let ring = KeyRing::parse(&format!("k1:{}", key(1)), None).expect("ring");
        let sealed = ring.seal(b"EAAG-token", "tenant/account").expect("seal");
        assert_eq!(sealed.kid, "k1");
        assert!(!sealed.ciphertext.contains("EAAG"));
        assert_eq!(
            ring.open(&sealed, "tenant/account").expect("open"),
            b"EAAG-token"
        );
        assert!(matches!(
            ring.open(&sealed, "other/account"),
            Err(CryptoError::Open)
        ));
    }

    #[test]
    fn rotation_keeps_old_secrets_readable_and_marks_them_stale() {
        let old = KeyRing::parse(&format!("k1:{}", key(1)), None).expect("ring");
        let sealed = old.seal(b"s3cret", "ctx").expect("seal");
        let rotated = KeyRing::parse(&format!("k1:{},k2:{}", key(1), key(2)), None).expect("ring");
        assert_eq!(rotated.active_kid(), "k2");
        assert!(rotated.is_stale(&sealed));
        assert_eq!(rotated.open(&sealed, "ctx").expect("open"), b"s3cret");
    }

    #[test]
    fn malformed_rings_are_refused_without_echoing_keys() {
        assert!(matches!(
            KeyRing::parse("", None),
            Err(CryptoError::EmptyKeyRing)
        ));
        assert!(
            matches!(KeyRing::parse("k1:c2hvcnQ=", None), Err(CryptoError::MalformedKey(k)) if k == "k1")
        );
        let err = KeyRing::parse("nocolonsupersecretvalue", None).expect_err("malformed");
        assert!(!err.to_string().contains("supersecretvalue"));
        assert!(matches!(
            KeyRing::parse(&format!("k1:{}", key(1)), Some("k9")),
            Err(CryptoError::UnknownActiveKey(_))
        ));
    }
}
