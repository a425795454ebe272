//! The keys that sign a tenant's Meta webhooks (its WhatsApp accounts' app
//! secrets), kept for a short while so that a burst of receipts does not
//! read and open the same secrets once per POST.
//!
//! A signature that none of the kept keys verifies reads the accounts again
//! before it is refused, so a new or rotated secret works at once. A secret
//! that was removed keeps verifying for at most [`KEPT_FOR`].

use crate::error::ApiError;
use busflow_activities::crypto::KeyRing;
use busflow_activities::model::{Channel, TenantId};
use busflow_activities::secrets;
use busflow_activities::store::channel_accounts::{self, ChannelAccount};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a tenant's keys are used without reading its accounts again.
pub const KEPT_FOR: Duration = Duration::from_secs(30);

/// The HMAC keys of each tenant seen lately.
#[derive(Debug, Default)]
pub struct SigningKeys {
    kept: Mutex<HashMap<TenantId, Kept>>,
}

#[derive(Debug, Clone)]
struct Kept {
    read_at: Instant,
    keys: Arc<Vec<ring::hmac::Key>>,
}

/// Whether a body's signature is one of the tenant's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Signed,
    NotSigned,
    /// The tenant has no WhatsApp account, so no webhook.
    NoWebhook,
}

impl SigningKeys {
    /// Verifies `signature` (the raw HMAC-SHA256 bytes) over `body`.
    pub async fn verify(
        &self,
        pool: &PgPool,
        ring_keys: &KeyRing,
        tenant_id: TenantId,
        body: &[u8],
        signature: &[u8],
    ) -> Result<Verdict, ApiError> {
        let signed_by = |keys: &[ring::hmac::Key]| {
            keys.iter()
                .any(|key| ring::hmac::verify(key, body, signature).is_ok())
        };
        if let Some(kept) = self.fresh(tenant_id)
            && signed_by(&kept.keys)
        {
            return Ok(Verdict::Signed);
        }
        let accounts = channel_accounts::for_channel(pool, tenant_id, Channel::WhatsApp)
            .await
            .map_err(anyhow::Error::from)?;
        if accounts.is_empty() {
            self.forget(tenant_id);
            return Ok(Verdict::NoWebhook);
        }
        let keys = Arc::new(hmac_keys(ring_keys, &accounts)?);
        let verdict = if signed_by(&keys) {
            Verdict::Signed
        } else {
            Verdict::NotSigned
        };
        self.keep(tenant_id, keys);
        Ok(verdict)
    }

    fn fresh(&self, tenant_id: TenantId) -> Option<Kept> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.get(&tenant_id)
            .filter(|k| k.read_at.elapsed() < KEPT_FOR)
            .cloned()
    }

    fn keep(&self, tenant_id: TenantId, keys: Arc<Vec<ring::hmac::Key>>) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        // Tenants that stopped sending do not pile up.
        kept.retain(|_, k| k.read_at.elapsed() < KEPT_FOR);
        kept.insert(
            tenant_id,
            Kept {
                read_at: Instant::now(),
                keys,
            },
        );
    }

    fn forget(&self, tenant_id: TenantId) {
        self.kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&tenant_id);
    }
}

fn hmac_keys(
    ring_keys: &KeyRing,
    accounts: &[ChannelAccount],
) -> Result<Vec<ring::hmac::Key>, ApiError> {
    let mut keys = Vec::new();
    for account in accounts {
        let opened =
            secrets::open(ring_keys, account).map_err(|e| ApiError::Unexpected(e.into()))?;
        if let Some(secret) = opened.app_secret {
            keys.push(ring::hmac::Key::new(
                ring::hmac::HMAC_SHA256,
                secret.as_bytes(),
            ));
        }
    }
    Ok(keys)
}
