//! Channel accounts: a tenant's sender on one provider.

use crate::crypto::SealedSecret;
use crate::lifecycle::{self, StatusActor};
use crate::model::{
    Channel, ChannelAccountId, ChannelAccountMode, ChannelAccountStatus, Provider, TenantId,
};
use sqlx::PgPool;
use sqlx::types::Json;

/// A channel account row. `provider_secrets` stays sealed until the dispatch
/// activity opens it.
#[derive(Debug, Clone, serde::Deserialize, sqlx::FromRow)]
pub struct ChannelAccount {
    pub id: ChannelAccountId,
    pub tenant_id: TenantId,
    pub channel: Channel,
    pub provider: Provider,
    pub status: ChannelAccountStatus,
    pub mode: ChannelAccountMode,
    pub provider_config: Json<serde_json::Value>,
    pub provider_secrets: Option<Json<SealedSecret>>,
    /// Its send-rate limits, read with it so a send needs no second read.
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub limits: crate::rate_limit::AccountLimits,
}

impl ChannelAccount {
    /// The associated data that binds this account's sealed secrets to it.
    pub fn secret_context(&self) -> String {
        secret_context(self.tenant_id, self.id)
    }
}

/// Sealed secrets are bound to their tenant and account: a ciphertext copied
/// onto another account does not open.
pub fn secret_context(tenant_id: TenantId, account_id: ChannelAccountId) -> String {
    format!("{tenant_id}/{account_id}")
}

const COLUMNS: &str = "id, tenant_id, channel, provider, status, mode, provider_config, provider_secrets, \
     max_send_rate, send_burst, messaging_tier, pair_burst";

/// The tenant's ACTIVE account for a channel (the oldest, if several).
pub async fn active_for_channel(
    pool: &PgPool,
    tenant_id: TenantId,
    channel: Channel,
) -> sqlx::Result<Option<ChannelAccount>> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from channel_accounts
          where tenant_id = $1 and channel = $2 and status = 'ACTIVE'
          order by created_at, id limit 1"
    ))
    .bind(tenant_id)
    .bind(channel)
    .fetch_optional(pool)
    .await
}

pub async fn get(
    pool: &PgPool,
    tenant_id: TenantId,
    id: ChannelAccountId,
) -> sqlx::Result<Option<ChannelAccount>> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from channel_accounts where tenant_id = $1 and id = $2"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// A channel the tenant can send on, and whether its account reports delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct ActiveChannel {
    pub channel: Channel,
    /// WhatsApp and webchat always do; email when the account publishes SES events
    /// through a configuration set; SMS when delivery-status logging is on.
    pub receipts: bool,
}

impl ChannelAccount {
    /// Whether its provider reports delivery: WhatsApp and webchat always;
    /// email when the account publishes SES events through a configuration
    /// set; SMS when delivery-status logging is on.
    pub fn reports_delivery(&self) -> bool {
        let config = &self.provider_config.0;
        match self.channel {
            Channel::WhatsApp => true,
            Channel::Email => config["configuration_set"]
                .as_str()
                .is_some_and(|set| !set.is_empty()),
            Channel::Sms => match &config["delivery_receipts"] {
                serde_json::Value::Bool(on) => *on,
                serde_json::Value::String(on) => on.eq_ignore_ascii_case("true"),
                _ => false,
            },
            // The widget reports each fetch and each read.
            Channel::Webchat => true,
        }
    }
}

/// The tenant's ACTIVE accounts, oldest first (the one a channel sends from).
pub async fn active(pool: &PgPool, tenant_id: TenantId) -> sqlx::Result<Vec<ChannelAccount>> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from channel_accounts
          where tenant_id = $1 and status = 'ACTIVE'
          order by created_at, id"
    ))
    .bind(tenant_id)
    .fetch_all(pool)
    .await
}

/// The channels these ACTIVE accounts send on, each reporting delivery if
/// any of its accounts does.
pub fn channels_of(accounts: &[ChannelAccount]) -> Vec<ActiveChannel> {
    let mut channels: Vec<ActiveChannel> = Vec::new();
    for account in accounts {
        let receipts = account.reports_delivery();
        match channels.iter_mut().find(|c| c.channel == account.channel) {
            Some(known) => known.receipts |= receipts,
            None => channels.push(ActiveChannel {
                channel: account.channel,
                receipts,
            }),
        }
    }
    channels
}

/// The channels on which the tenant has an ACTIVE account.
pub async fn active_channels(
    pool: &PgPool,
    tenant_id: TenantId,
) -> sqlx::Result<Vec<ActiveChannel>> {
    Ok(channels_of(&active(pool, tenant_id).await?))
}

/// Every account the tenant has on a channel, whatever its status (webhooks
/// must still verify callbacks for a suspended account's last messages).
pub async fn for_channel(
    pool: &PgPool,
    tenant_id: TenantId,
    channel: Channel,
) -> sqlx::Result<Vec<ChannelAccount>> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from channel_accounts
          where tenant_id = $1 and channel = $2 and status <> 'DISCONNECTED'
          order by created_at, id"
    ))
    .bind(tenant_id)
    .bind(channel)
    .fetch_all(pool)
    .await
}

/// The accounts on `channel`, of any tenant, whose `external_account_id` is
/// `external_account_id` (an SMS account's origination number, E.164).
/// Account-level webhooks carry no tenant: this id routes them. The schema
/// keeps it unique per tenant only, so more than one row means several
/// tenants claim it — the caller must refuse rather than pick one.
/// DISCONNECTED accounts no longer own anything and are left out.
pub async fn by_external_id(
    pool: &PgPool,
    channel: Channel,
    external_account_id: &str,
) -> sqlx::Result<Vec<ChannelAccount>> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from channel_accounts
          where channel = $1 and external_account_id = $2 and status <> 'DISCONNECTED'
          order by created_at, id"
    ))
    .bind(channel)
    .bind(external_account_id)
    .fetch_all(pool)
    .await
}

/// An account found by one of its addresses.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AddressedAccount {
    /// The address that matched, lower-case.
    pub address: String,
    #[sqlx(flatten)]
    pub account: ChannelAccount,
}

/// The accounts on `channel`, of any tenant, whose sender address
/// (`provider_config.from_address`) or `external_account_id` is one of
/// `addresses` (compared lower-case): where inbound email to those addresses
/// belongs. One row per (address, account); the caller decides what an
/// address claimed by several tenants means.
pub async fn by_address(
    pool: &PgPool,
    channel: Channel,
    addresses: &[String],
) -> sqlx::Result<Vec<AddressedAccount>> {
    let addresses: Vec<String> = addresses.iter().map(|a| a.to_lowercase()).collect();
    sqlx::query_as(
        "select distinct on (a.address, c.created_at, c.id)
                a.address, c.id, c.tenant_id, c.channel, c.provider, c.status, c.mode,
                c.provider_config, c.provider_secrets,
                c.max_send_rate, c.send_burst, c.messaging_tier, c.pair_burst
           from channel_accounts c
          cross join lateral unnest(array[
                lower(c.provider_config ->> 'from_address'),
                lower(c.external_account_id)]) as a(address)
          where c.channel = $1 and c.status <> 'DISCONNECTED' and a.address = any($2)
          order by a.address, c.created_at, c.id",
    )
    .bind(channel)
    .bind(&addresses)
    .fetch_all(pool)
    .await
}

/// How a move of an account's status went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Move {
    Moved {
        from: ChannelAccountStatus,
    },
    /// It was in that status already; nothing changed.
    AlreadyThere,
    /// The lifecycle does not allow that move from where the account is.
    Refused {
        current: ChannelAccountStatus,
    },
    /// No such account for this tenant.
    Missing,
}

/// Moves the account to `to` if the lifecycle allows it from its current
/// status, recording `reason` and `actor` (the history row is written by the
/// database's trigger, in the same transaction).
pub async fn move_to(
    pool: &PgPool,
    tenant_id: TenantId,
    id: ChannelAccountId,
    to: ChannelAccountStatus,
    reason: Option<&str>,
    actor: &StatusActor,
) -> sqlx::Result<Move> {
    let mut tx = pool.begin().await?;
    let current: Option<ChannelAccountStatus> = sqlx::query_scalar(
        "select status from channel_accounts where tenant_id = $1 and id = $2 for update",
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(current) = current else {
        return Ok(Move::Missing);
    };
    if current == to {
        return Ok(Move::AlreadyThere);
    }
    if !lifecycle::may_move(current, to) {
        return Ok(Move::Refused { current });
    }
    sqlx::query("select set_config('busflow.status_actor', $1, true)")
        .bind(actor.to_string())
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "update channel_accounts set status = $3, status_reason = $4, updated_at = now()
          where tenant_id = $1 and id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(to)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Move::Moved { from: current })
}

/// One recorded move of an account's status.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct StatusChange {
    /// `None`: the account was created in `to_status`.
    pub from_status: Option<ChannelAccountStatus>,
    pub to_status: ChannelAccountStatus,
    pub reason: Option<String>,
    pub changed_by: String,
    pub changed_at: chrono::DateTime<chrono::Utc>,
}

/// The account's moves, oldest first.
pub async fn history(
    pool: &PgPool,
    tenant_id: TenantId,
    id: ChannelAccountId,
) -> sqlx::Result<Vec<StatusChange>> {
    sqlx::query_as(
        "select from_status, to_status, reason, changed_by, changed_at
           from channel_account_status_history
          where tenant_id = $1 and channel_account_id = $2
          order by id",
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_all(pool)
    .await
}

/// Records the number's profile as Meta shows it (`provider_config.profile`)
/// and names the account after it unless the operator named it.
pub async fn set_profile(
    pool: &PgPool,
    tenant_id: TenantId,
    id: ChannelAccountId,
    profile: &serde_json::Value,
    name: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "update channel_accounts
            set provider_config = provider_config || jsonb_build_object('profile', $3::jsonb),
                display_name = case when display_name = '' then coalesce($4, '') else display_name end,
                updated_at = now()
          where tenant_id = $1 and id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(profile)
    .bind(name)
    .execute(pool)
    .await?;
    Ok(())
}

/// Every tenant's ACTIVE, live WhatsApp accounts that name their WABA.
pub async fn connected_whatsapp(pool: &PgPool) -> sqlx::Result<Vec<(TenantId, ChannelAccountId)>> {
    sqlx::query_as(
        "select tenant_id, id from channel_accounts
          where channel = 'WHATSAPP' and status = 'ACTIVE' and mode = 'LIVE'
            and provider_config ? 'waba_id'
          order by tenant_id, id",
    )
    .fetch_all(pool)
    .await
}

/// Why the account is in its status, if it says.
pub async fn status_reason(
    pool: &PgPool,
    tenant_id: TenantId,
    id: ChannelAccountId,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "select status_reason from channel_accounts where tenant_id = $1 and id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(pool)
    .await
    .map(Option::flatten)
}
