//! Channel account secrets: what `provider_secrets` holds once opened, and
//! the only ways to read, write and rotate it. Opened secrets exist only in
//! memory, inside the activity or webhook handler that needs them; their
//! `Debug` is redacted, and they are never serialized into workflow payloads.

use crate::crypto::{CryptoError, KeyRing, SealedSecret};
use crate::model::{ChannelAccountId, TenantId};
use crate::store::channel_accounts::{self, ChannelAccount, secret_context};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::types::Json;
use std::fmt;

/// The secret half of a channel account's configuration.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderSecrets {
    /// Meta system-user access token (WhatsApp sends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// Meta app secret (webhook `X-Hub-Signature-256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_secret: Option<String>,
    /// Meta webhook verification token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_token: Option<String>,
    /// Signs webchat visitor tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub widget_secret: Option<String>,
    /// Meta Embedded Signup's single-use code, kept only until it is
    /// exchanged for the business token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signup_code: Option<String>,
    /// The two-step verification PIN the number was registered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_pin: Option<String>,
}

impl fmt::Debug for ProviderSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("ProviderSecrets")
            .field("access_token", &shown(&self.access_token))
            .field("app_secret", &shown(&self.app_secret))
            .field("verify_token", &shown(&self.verify_token))
            .field("widget_secret", &shown(&self.widget_secret))
            .field("signup_code", &shown(&self.signup_code))
            .field("registration_pin", &shown(&self.registration_pin))
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("channel account {0} secrets: {1}")]
    Crypto(ChannelAccountId, #[source] CryptoError),
    #[error("channel account {0} secrets are not valid JSON after opening")]
    Malformed(ChannelAccountId),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Opens the account's secrets (empty when it has none).
pub fn open(keys: &KeyRing, account: &ChannelAccount) -> Result<ProviderSecrets, SecretsError> {
    let Some(Json(sealed)) = &account.provider_secrets else {
        return Ok(ProviderSecrets::default());
    };
    let plaintext = keys
        .open(sealed, &account.secret_context())
        .map_err(|e| SecretsError::Crypto(account.id, e))?;
    serde_json::from_slice(&plaintext).map_err(|_| SecretsError::Malformed(account.id))
}

fn seal(
    keys: &KeyRing,
    tenant_id: TenantId,
    account_id: ChannelAccountId,
    secrets: &ProviderSecrets,
) -> Result<SealedSecret, SecretsError> {
    let plaintext = serde_json::to_vec(secrets).map_err(|_| SecretsError::Malformed(account_id))?;
    keys.seal(&plaintext, &secret_context(tenant_id, account_id))
        .map_err(|e| SecretsError::Crypto(account_id, e))
}

/// Seals and stores the account's secrets under the active key.
pub async fn store(
    pool: &PgPool,
    keys: &KeyRing,
    tenant_id: TenantId,
    account_id: ChannelAccountId,
    secrets: &ProviderSecrets,
) -> Result<(), SecretsError> {
    let sealed = seal(keys, tenant_id, account_id, secrets)?;
    channel_accounts::set_secrets(pool, tenant_id, account_id, &sealed).await?;
    Ok(())
}

/// Opens the account's secrets under a row lock, lets `change` edit them,
/// and seals them back under the active key: concurrent editors of one
/// account's secrets never lose each other's changes. Returns what `change`
/// returned, or `None` when the account does not exist.
pub async fn modify<T>(
    pool: &PgPool,
    keys: &KeyRing,
    tenant_id: TenantId,
    account_id: ChannelAccountId,
    change: impl FnOnce(&mut ProviderSecrets) -> T,
) -> Result<Option<T>, SecretsError> {
    let mut tx = pool.begin().await?;
    let Some(sealed) = channel_accounts::lock_secrets(&mut tx, tenant_id, account_id).await? else {
        return Ok(None);
    };
    let mut secrets = match sealed {
        Some(Json(sealed)) => {
            let plaintext = keys
                .open(&sealed, &secret_context(tenant_id, account_id))
                .map_err(|e| SecretsError::Crypto(account_id, e))?;
            serde_json::from_slice(&plaintext).map_err(|_| SecretsError::Malformed(account_id))?
        }
        None => ProviderSecrets::default(),
    };
    let result = change(&mut secrets);
    let resealed = seal(keys, tenant_id, account_id, &secrets)?;
    channel_accounts::set_secrets(&mut *tx, tenant_id, account_id, &resealed).await?;
    tx.commit().await?;
    Ok(Some(result))
}

/// Re-seals every secret not under the active key; returns how many moved.
/// Each account is re-sealed in its own short transaction with a row lock, so
/// a concurrent writer is never overwritten with stale secrets.
pub async fn rotate(pool: &PgPool, keys: &KeyRing) -> Result<usize, SecretsError> {
    let stale = channel_accounts::sealed_under_other_keys(pool, keys.active_kid()).await?;
    let mut moved = 0;
    for (tenant_id, account_id) in stale {
        let mut tx = pool.begin().await?;
        let sealed = channel_accounts::lock_secrets(&mut tx, tenant_id, account_id)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        let Some(Json(sealed)) = sealed.filter(|Json(s)| keys.is_stale(s)) else {
            continue;
        };
        let plaintext = keys
            .open(&sealed, &secret_context(tenant_id, account_id))
            .map_err(|e| SecretsError::Crypto(account_id, e))?;
        let resealed = keys
            .seal(&plaintext, &secret_context(tenant_id, account_id))
            .map_err(|e| SecretsError::Crypto(account_id, e))?;
        channel_accounts::set_secrets(&mut *tx, tenant_id, account_id, &resealed).await?;
        tx.commit().await?;
        moved += 1;
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_secret() {
        let secrets = ProviderSecrets {
            access_token: Some("EAAG-very-secret".into()),
            app_secret: Some("app-secret-value".into()),
            verify_token: None,
            widget_secret: None,
            ..Default::default()
        };
        let shown = format!("{secrets:?}");
        assert!(
            !shown.contains("EAAG") && !shown.contains("app-secret-value"),
            "{shown}"
        );
        assert!(shown.contains("<redacted>"));
    }
}
