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
#[derive(Debug, Clone, serde::Deserialize)]
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

/// `select_accounts!(["head…"], ["tail…"], args…)`: `head`, the
/// [`ChannelAccount`] columns of `channel_accounts`, `tail`; each row becomes
/// an account with [`account!`].
macro_rules! select_accounts {
    ([$($head:literal),*], [$($tail:literal),+] $(, $arg:expr)* $(,)?) => {
        sqlx::query!(
            $($head +)* r#"id as "id: ChannelAccountId", tenant_id as "tenant_id: TenantId",
                channel as "channel: Channel", provider as "provider: Provider",
                status as "status: ChannelAccountStatus", mode as "mode: ChannelAccountMode",
                provider_config as "provider_config: Json<serde_json::Value>",
                provider_secrets as "provider_secrets: Json<SealedSecret>",
                max_send_rate, send_burst, messaging_tier, pair_burst"# $(+ $tail)+
            $(, $arg)*
        )
    };
}

/// The [`ChannelAccount`] of a row [`select_accounts!`] read.
macro_rules! account {
    ($row:ident) => {
        ChannelAccount {
            id: $row.id,
            tenant_id: $row.tenant_id,
            channel: $row.channel,
            provider: $row.provider,
            status: $row.status,
            mode: $row.mode,
            provider_config: $row.provider_config,
            provider_secrets: $row.provider_secrets,
            limits: crate::rate_limit::AccountLimits {
                max_send_rate: $row.max_send_rate,
                send_burst: $row.send_burst,
                messaging_tier: $row.messaging_tier,
                pair_burst: $row.pair_burst,
            },
        }
    };
}

/// The tenant's ACTIVE account for a channel (the oldest, if several).
pub async fn active_for_channel(
    pool: &PgPool,
    tenant_id: TenantId,
    channel: Channel,
) -> sqlx::Result<Option<ChannelAccount>> {
    let row = select_accounts!(
        ["select "],
        [" from channel_accounts
          where tenant_id = $1 and channel = $2 and status = 'ACTIVE'
          order by created_at, id limit 1"],
        tenant_id.0,
        channel as Channel
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| account!(r)))
}

pub async fn get(
    pool: &PgPool,
    tenant_id: TenantId,
    id: ChannelAccountId,
) -> sqlx::Result<Option<ChannelAccount>> {
    let row = select_accounts!(
        ["select "],
        [" from channel_accounts where tenant_id = $1 and id = $2"],
        tenant_id.0,
        id.0
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| account!(r)))
}

/// A channel the tenant can send on, and whether its account reports delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    let rows = select_accounts!(
        ["select "],
        [" from channel_accounts
          where tenant_id = $1 and status = 'ACTIVE'
          order by created_at, id"],
        tenant_id.0
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| account!(r)).collect())
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
    let rows = select_accounts!(
        ["select "],
        [" from channel_accounts
          where tenant_id = $1 and channel = $2 and status <> 'DISCONNECTED'
          order by created_at, id"],
        tenant_id.0,
        channel as Channel
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| account!(r)).collect())
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
    let rows = select_accounts!(
        ["select "],
        [" from channel_accounts
          where channel = $1 and external_account_id = $2 and status <> 'DISCONNECTED'
          order by created_at, id"],
        channel as Channel,
        external_account_id
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| account!(r)).collect())
}

/// An account found by one of its addresses.
#[derive(Debug, Clone)]
pub struct AddressedAccount {
    /// The address that matched, lower-case.
    pub address: String,
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
    // The account's columns are unqualified: `a` has only `address`.
    let rows = select_accounts!(
        [r#"select distinct on (a.address, c.created_at, c.id)
                a.address as "address!", "#],
        [" from channel_accounts c
          cross join lateral unnest(array[
                lower(c.provider_config ->> 'from_address'),
                lower(c.external_account_id)]) as a(address)
          where c.channel = $1 and c.status <> 'DISCONNECTED' and a.address = any($2)
          order by a.address, c.created_at, c.id"],
        channel as Channel,
        &addresses
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| AddressedAccount {
            address: r.address,
            account: account!(r),
        })
        .collect())
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
    let current = sqlx::query_scalar!(
        r#"select status as "status: ChannelAccountStatus" from channel_accounts
            where tenant_id = $1 and id = $2 for update"#,
        tenant_id.0,
        id.0
    )
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
    sqlx::query_scalar!(
        "select set_config('busflow.status_actor', $1, true)",
        actor.to_string()
    )
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query!(
        "update channel_accounts set status = $3, status_reason = $4, updated_at = now()
          where tenant_id = $1 and id = $2",
        tenant_id.0,
        id.0,
        to as ChannelAccountStatus,
        reason
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Move::Moved { from: current })
}

/// One recorded move of an account's status.
#[derive(Debug, Clone, serde::Serialize)]
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
    sqlx::query_as!(
        StatusChange,
        r#"select from_status as "from_status: ChannelAccountStatus",
                  to_status as "to_status: ChannelAccountStatus", reason, changed_by, changed_at
             from channel_account_status_history
            where tenant_id = $1 and channel_account_id = $2
            order by id"#,
        tenant_id.0,
        id.0
    )
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
    sqlx::query!(
        "update channel_accounts
            set provider_config = provider_config || jsonb_build_object('profile', $3::jsonb),
                display_name = case when display_name = '' then coalesce($4, '') else display_name end,
                updated_at = now()
          where tenant_id = $1 and id = $2",
        tenant_id.0,
        id.0,
        profile,
        name
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Every tenant's ACTIVE, live WhatsApp accounts that name their WABA.
pub async fn connected_whatsapp(pool: &PgPool) -> sqlx::Result<Vec<(TenantId, ChannelAccountId)>> {
    let rows = sqlx::query!(
        r#"select tenant_id as "tenant_id: TenantId", id as "id: ChannelAccountId"
             from channel_accounts
            where channel = 'WHATSAPP' and status = 'ACTIVE' and mode = 'LIVE'
              and provider_config ? 'waba_id'
            order by tenant_id, id"#
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.tenant_id, r.id)).collect())
}

/// Why the account is in its status, if it says.
pub async fn status_reason(
    pool: &PgPool,
    tenant_id: TenantId,
    id: ChannelAccountId,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!(
        "select status_reason from channel_accounts where tenant_id = $1 and id = $2",
        tenant_id.0,
        id.0
    )
    .fetch_optional(pool)
    .await
    .map(Option::flatten)
}

/// Stores the account's sealed secrets.
pub async fn set_secrets(
    db: impl sqlx::PgExecutor<'_>,
    tenant_id: TenantId,
    id: ChannelAccountId,
    sealed: &SealedSecret,
) -> sqlx::Result<()> {
    sqlx::query!(
        "update channel_accounts set provider_secrets = $3, updated_at = now() where tenant_id = $1 and id = $2",
        tenant_id.0,
        id.0,
        Json(sealed) as Json<&SealedSecret>
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The account's sealed secrets, its row locked until the transaction ends:
/// `None` when there is no such account, `Some(None)` when it has none.
pub async fn lock_secrets(
    tx: &mut sqlx::PgConnection,
    tenant_id: TenantId,
    id: ChannelAccountId,
) -> sqlx::Result<Option<Option<Json<SealedSecret>>>> {
    sqlx::query_scalar!(
        r#"select provider_secrets as "provider_secrets: Json<SealedSecret>"
             from channel_accounts where tenant_id = $1 and id = $2 for update"#,
        tenant_id.0,
        id.0
    )
    .fetch_optional(tx)
    .await
}

/// The accounts whose secrets are sealed under another key than `active_kid`.
pub async fn sealed_under_other_keys(
    pool: &PgPool,
    active_kid: &str,
) -> sqlx::Result<Vec<(TenantId, ChannelAccountId)>> {
    let rows = sqlx::query!(
        r#"select tenant_id as "tenant_id: TenantId", id as "id: ChannelAccountId"
             from channel_accounts
            where provider_secrets is not null and provider_secrets ->> 'kid' <> $1"#,
        active_kid
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.tenant_id, r.id)).collect())
}

/// The dev stack's demo SES account sending from `from_address`: created
/// ACTIVE, or its configuration updated (its status left alone).
pub async fn upsert_demo_email(
    pool: &PgPool,
    tenant_id: TenantId,
    from_address: &str,
    from_name: &str,
    config: &serde_json::Value,
) -> sqlx::Result<ChannelAccountId> {
    sqlx::query_scalar!(
        r#"insert into channel_accounts
            (tenant_id, channel, provider, display_name, status, mode, provider_config, external_account_id)
         values ($1, 'EMAIL', 'AWS_SES', $2, 'ACTIVE', 'LIVE', $3, $4)
         on conflict (tenant_id, channel, external_account_id) do update
            set provider_config = excluded.provider_config, updated_at = now()
         returning id as "id: ChannelAccountId""#,
        tenant_id.0,
        from_name,
        config,
        from_address
    )
    .fetch_one(pool)
    .await
}

/// The dev stack's demo SNS account sending from `origination_number`:
/// created ACTIVE, or its configuration updated (its status left alone).
pub async fn upsert_demo_sms(
    pool: &PgPool,
    tenant_id: TenantId,
    origination_number: &str,
    config: &serde_json::Value,
) -> sqlx::Result<ChannelAccountId> {
    sqlx::query_scalar!(
        r#"insert into channel_accounts
            (tenant_id, channel, provider, display_name, status, mode, provider_config, external_account_id)
         values ($1, 'SMS', 'AWS_SNS', 'Demo SMS', 'ACTIVE', 'LIVE', $2, $3)
         on conflict (tenant_id, channel, external_account_id) do update
            set provider_config = excluded.provider_config, updated_at = now()
         returning id as "id: ChannelAccountId""#,
        tenant_id.0,
        config,
        origination_number
    )
    .fetch_one(pool)
    .await
}

/// The dev stack's demo SANDBOX WhatsApp number `phone_number_id`: created
/// ACTIVE, or its configuration updated and made SANDBOX again.
pub async fn upsert_demo_whatsapp(
    pool: &PgPool,
    tenant_id: TenantId,
    phone_number_id: &str,
    config: &serde_json::Value,
) -> sqlx::Result<ChannelAccountId> {
    sqlx::query_scalar!(
        r#"insert into channel_accounts
            (tenant_id, channel, provider, display_name, status, mode, provider_config, external_account_id)
         values ($1, 'WHATSAPP', 'META_CLOUD', 'Demo WhatsApp (sandbox)', 'ACTIVE', 'SANDBOX', $2, $3)
         on conflict (tenant_id, channel, external_account_id) do update
            set provider_config = excluded.provider_config, mode = 'SANDBOX', updated_at = now()
         returning id as "id: ChannelAccountId""#,
        tenant_id.0,
        config,
        phone_number_id
    )
    .fetch_one(pool)
    .await
}

/// The dev stack's demo webchat widget account (created ACTIVE once).
pub async fn upsert_demo_webchat(
    pool: &PgPool,
    tenant_id: TenantId,
) -> sqlx::Result<ChannelAccountId> {
    sqlx::query_scalar!(
        r#"insert into channel_accounts
            (tenant_id, channel, provider, display_name, status, mode, external_account_id)
         values ($1, 'WEBCHAT', 'WEBCHAT', 'Demo webchat', 'ACTIVE', 'LIVE', 'demo-widget')
         on conflict (tenant_id, channel, external_account_id) do update
            set updated_at = now()
         returning id as "id: ChannelAccountId""#,
        tenant_id.0
    )
    .fetch_one(pool)
    .await
}

/// A benchmark tenant's only account: an ACTIVE SANDBOX SNS number.
pub async fn insert_bench_sms(
    pool: &PgPool,
    tenant_id: TenantId,
    max_send_rate: f64,
) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into channel_accounts (tenant_id, channel, provider, status, mode, external_account_id, max_send_rate)
         values ($1, 'SMS', 'AWS_SNS', 'ACTIVE', 'SANDBOX', '+15550009999', $2)",
        tenant_id.0,
        max_send_rate
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// A benchmark tenant's only account: an ACTIVE SANDBOX WhatsApp number.
pub async fn insert_bench_whatsapp(
    pool: &PgPool,
    tenant_id: TenantId,
    display_name: &str,
    phone_number_id: &str,
    config: &serde_json::Value,
    max_send_rate: Option<f64>,
    send_burst: Option<i32>,
) -> sqlx::Result<ChannelAccountId> {
    sqlx::query_scalar!(
        r#"insert into channel_accounts
            (tenant_id, channel, provider, display_name, status, mode, provider_config,
             external_account_id, max_send_rate, send_burst)
         values ($1, 'WHATSAPP', 'META_CLOUD', $2, 'ACTIVE', 'SANDBOX', $3, $4, $5, $6)
         returning id as "id: ChannelAccountId""#,
        tenant_id.0,
        display_name,
        config,
        phone_number_id,
        max_send_rate,
        send_burst
    )
    .fetch_one(pool)
    .await
}

/// The webchat benchmark's widget account (ACTIVE).
pub async fn insert_bench_webchat(
    pool: &PgPool,
    tenant_id: TenantId,
) -> sqlx::Result<ChannelAccountId> {
    sqlx::query_scalar!(
        r#"insert into channel_accounts (tenant_id, channel, provider, status, external_account_id)
         values ($1, 'WEBCHAT', 'WEBCHAT', 'ACTIVE', 'bench-widget')
         returning id as "id: ChannelAccountId""#,
        tenant_id.0
    )
    .fetch_one(pool)
    .await
}
