//! Who may read decoded payloads: the ops credential of the codec server.
//! Either a bearer token shared with ops tooling (`BUSFLOW_CODEC_TOKEN`), or
//! a JWT from the operator's identity provider, checked against its JWKS
//! (`BUSFLOW_CODEC_JWKS_URL`, with issuer and audience): the access token a
//! Web UI with SSO passes to its codec endpoint. With neither, nobody is
//! admitted; "open" is for the dev stack alone, whose UI has no login.

use crate::error::ApiError;
use axum::http::{HeaderMap, header};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tokio::sync::RwLock;

/// The codec server's credential.
#[derive(Clone, Default)]
pub struct OpsCredential {
    /// A static bearer token.
    pub bearer: Option<String>,
    /// JWTs of this issuer.
    pub jwt: Option<Arc<JwtIssuer>>,
    /// Admit anyone (the dev stack's UI, on loopback).
    pub open: bool,
}

impl fmt::Debug for OpsCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpsCredential")
            .field("bearer", &self.bearer.as_ref().map(|_| "<redacted>"))
            .field("jwt", &self.jwt)
            .field("open", &self.open)
            .finish()
    }
}

impl OpsCredential {
    /// Whether the request carries the credential; 401 naming what is
    /// missing when not.
    pub async fn admit(&self, headers: &HeaderMap, http: &reqwest::Client) -> Result<(), ApiError> {
        if self.open {
            return Ok(());
        }
        if self.bearer.is_none() && self.jwt.is_none() {
            return Err(ApiError::unauthorized(
                "the codec server has no ops credential configured: set BUSFLOW_CODEC_TOKEN or BUSFLOW_CODEC_JWKS_URL",
            ));
        }
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the codec needs Authorization: Bearer <ops credential>")
            })?;
        if let Some(token) = &self.bearer
            && bool::from(presented.as_bytes().ct_eq(token.as_bytes()))
        {
            return Ok(());
        }
        match &self.jwt {
            Some(issuer) => issuer
                .verify(presented, http)
                .await
                .map_err(|e| ApiError::unauthorized(format!("ops credential refused: {e}"))),
            None => Err(ApiError::unauthorized("ops credential refused")),
        }
    }
}

/// Signatures the identity provider may use: asymmetric only, so holding
/// the JWKS (public) never lets anyone mint a token.
const ALGORITHMS: [Algorithm; 7] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// An unknown key id fetches the JWKS again, but not more often than this,
/// so a flood of forged tokens cannot make us hammer the provider.
const REFETCH_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum JwtRefusal {
    #[error("not a JWT")]
    Malformed,
    #[error("signature algorithm {0:?} is not accepted")]
    Algorithm(Algorithm),
    #[error("no key '{0}' in the identity provider's JWKS")]
    UnknownKey(String),
    #[error("the identity provider's JWKS could not be read")]
    Jwks,
    #[error("{0}")]
    Invalid(jsonwebtoken::errors::Error),
}

/// An identity provider: where its keys are, and what its tokens must say.
pub struct JwtIssuer {
    pub jwks_url: String,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    keys: RwLock<Option<(Instant, JwkSet)>>,
}

impl fmt::Debug for JwtIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtIssuer")
            .field("jwks_url", &self.jwks_url)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl JwtIssuer {
    pub fn new(jwks_url: String, issuer: Option<String>, audience: Option<String>) -> Self {
        Self {
            jwks_url,
            issuer,
            audience,
            keys: RwLock::new(None),
        }
    }

    /// Checks the signature, expiry, issuer and audience.
    pub async fn verify(&self, token: &str, http: &reqwest::Client) -> Result<(), JwtRefusal> {
        let head = jsonwebtoken::decode_header(token).map_err(|_| JwtRefusal::Malformed)?;
        if !ALGORITHMS.contains(&head.alg) {
            return Err(JwtRefusal::Algorithm(head.alg));
        }
        let jwk = self.key(head.kid.as_deref(), http).await?;
        let key = DecodingKey::from_jwk(&jwk).map_err(JwtRefusal::Invalid)?;
        let mut validation = Validation::new(head.alg);
        validation.set_required_spec_claims(&["exp"]);
        match &self.issuer {
            Some(issuer) => validation.set_issuer(&[issuer]),
            None => validation.iss = None,
        }
        match &self.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map(|_| ())
            .map_err(JwtRefusal::Invalid)
    }

    async fn key(&self, kid: Option<&str>, http: &reqwest::Client) -> Result<Jwk, JwtRefusal> {
        let stale = {
            let cached = self.keys.read().await;
            if let Some((_, set)) = cached.as_ref()
                && let Some(jwk) = find(set, kid)
            {
                return Ok(jwk);
            }
            cached
                .as_ref()
                .is_none_or(|(at, _)| at.elapsed() > REFETCH_AFTER)
        };
        if stale {
            let set = self.fetch(http).await?;
            *self.keys.write().await = Some((Instant::now(), set));
        }
        let cached = self.keys.read().await;
        cached
            .as_ref()
            .and_then(|(_, set)| find(set, kid))
            .ok_or_else(|| JwtRefusal::UnknownKey(kid.unwrap_or("(none)").to_owned()))
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<JwkSet, JwtRefusal> {
        let response = http
            .get(&self.jwks_url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| {
                tracing::warn!(error = %e, url = %self.jwks_url, "fetching the codec's JWKS");
                JwtRefusal::Jwks
            })?;
        response.json().await.map_err(|e| {
            tracing::warn!(error = %e, url = %self.jwks_url, "reading the codec's JWKS");
            JwtRefusal::Jwks
        })
    }
}

/// The key named `kid`; a token without one may use the only key there is.
fn find(set: &JwkSet, kid: Option<&str>) -> Option<Jwk> {
    match kid {
        Some(kid) => set.find(kid).cloned(),
        None if set.keys.len() == 1 => set.keys.first().cloned(),
        None => None,
    }
}
