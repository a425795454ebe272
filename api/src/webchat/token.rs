//! A visitor's token: `{visitor}.{expires, unix seconds}.{hex HMAC-SHA256}`,
//! signed with the tenant's widget secret over
//! `webchat/v2/{tenant}/{visitor}/{expires}`, so a token names one visitor of
//! one tenant until it expires. An expired token still proves who the visitor
//! is, and is renewed (same visitor, new expiry) for a while after.
//!
//! Verification is constant time (`ring::hmac::verify`).

use busflow_activities::model::TenantId;
use chrono::{DateTime, Utc};

/// A token this tenant's widget secret signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitorToken {
    pub visitor: String,
    pub expires_at: DateTime<Utc>,
}

/// Why a token does not admit its bearer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("missing or invalid visitor token")]
    Invalid,
    #[error("the visitor token expired at {}", .0.expires_at.to_rfc3339())]
    Expired(VisitorToken),
}

/// A new token for `visitor`, valid until `expires_at`.
pub fn issue(
    secret: &str,
    tenant_id: TenantId,
    visitor: &str,
    expires_at: DateTime<Utc>,
) -> String {
    let expires = expires_at.timestamp();
    let signature = sign(secret, &signing_input(tenant_id, visitor, expires));
    format!("{visitor}.{expires}.{}", hex(signature.as_ref()))
}

/// The token's visitor, when the secret signed it for this tenant and it has
/// not expired at `now`.
pub fn verify(
    secret: &str,
    tenant_id: TenantId,
    token: &str,
    now: DateTime<Utc>,
) -> Result<VisitorToken, TokenError> {
    let mut parts = token.split('.');
    let (Some(visitor), Some(expires), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Invalid);
    };
    if !is_visitor_id(visitor) {
        return Err(TokenError::Invalid);
    }
    let expires: i64 = expires.parse().map_err(|_| TokenError::Invalid)?;
    let signature = crate::webhooks::meta::decode_hex(signature).ok_or(TokenError::Invalid)?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::verify(
        &key,
        signing_input(tenant_id, visitor, expires).as_bytes(),
        &signature,
    )
    .map_err(|_| TokenError::Invalid)?;
    let token = VisitorToken {
        visitor: visitor.to_owned(),
        expires_at: DateTime::from_timestamp(expires, 0).ok_or(TokenError::Invalid)?,
    };
    if token.expires_at <= now {
        return Err(TokenError::Expired(token));
    }
    Ok(token)
}

/// A visitor id as we issue them: 1–64 ASCII letters and digits.
pub fn is_visitor_id(visitor: &str) -> bool {
    !visitor.is_empty() && visitor.len() <= 64 && visitor.chars().all(|c| c.is_ascii_alphanumeric())
}

fn signing_input(tenant_id: TenantId, visitor: &str, expires: i64) -> String {
    format!("webchat/v2/{tenant_id}/{visitor}/{expires}")
}

fn sign(secret: &str, input: &str) -> ring::hmac::Tag {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::sign(&key, input.as_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use uuid::Uuid;

    #[test]
    fn a_token_admits_its_visitor_only_for_its_tenant_secret_and_lifetime() {
        let tenant = TenantId(Uuid::new_v4());
        let now = Utc::now();
        let token = issue("s3cret", tenant, "abc123", now + Duration::hours(1));
        let admitted = verify("s3cret", tenant, &token, now).expect("admitted");
        assert_eq!(admitted.visitor, "abc123");

        assert_eq!(
            verify("other", tenant, &token, now),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            verify("s3cret", TenantId(Uuid::new_v4()), &token, now),
            Err(TokenError::Invalid)
        );
        assert!(matches!(
            verify("s3cret", tenant, &token, now + Duration::hours(2)),
            Err(TokenError::Expired(VisitorToken { ref visitor, .. })) if visitor == "abc123"
        ));
        // A later expiry cannot be written onto a token: it is signed.
        let (head, signature) = token.rsplit_once('.').expect("signed");
        let (visitor, _) = head.split_once('.').expect("expiry");
        let stretched = format!(
            "{visitor}.{}.{signature}",
            (now + Duration::days(365)).timestamp()
        );
        assert_eq!(
            verify("s3cret", tenant, &stretched, now),
            Err(TokenError::Invalid)
        );
        for malformed in ["", "abc123", "abc123.1.00", "abc-123.1.00", "a.b.c.d"] {
            assert_eq!(
                verify("s3cret", tenant, malformed, now),
                Err(TokenError::Invalid),
                "{malformed}"
            );
        }
    }
}
