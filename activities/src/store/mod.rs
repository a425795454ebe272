//! Postgres access, one module per table: all of the service's SQL but
//! `/metrics`' (`busflow_api::metrics`). Every query of a tenant's rows takes
//! the tenant id and filters by it: a query that forgets the tenant cannot be
//! written through these functions; the few that read across tenants
//! (webhook routing, sweeps, key rotation) return each row's tenant.
//!
//! Queries are `sqlx::query!`, `query_as!` and `query_scalar!`, checked at
//! build time against the offline data in `.sqlx/` (see the README); the
//! only SQL built at run time names a database ([`databases`]).

pub mod channel_accounts;
pub mod contacts;
pub mod conversations;
pub mod databases;
pub mod dead_letters;
pub mod email_domains;
pub mod gauges;
pub mod inbox;
pub mod messages;
pub mod planning_view;
pub mod platform_sms;
pub mod quarantine;
pub mod rate_limits;
pub mod requests;
pub mod templates;
pub mod tenants;
pub mod trips;
pub mod webchat;
pub mod whatsapp_signups;
pub mod whatsapp_templates;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use std::time::Duration;

/// The embedded migrations in `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Opens a pool; fails fast (5 s) when Postgres does not answer.
pub async fn connect(database_url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        // sqlx pings every connection as it goes back to the pool; pinging
        // it again as it comes out doubles the round trips of every query.
        // A connection that broke meanwhile fails its query, is closed, and
        // the step is retried like any other Postgres error.
        .test_before_acquire(false)
        .connect(database_url)
        .await
}

/// Whether Postgres answers a query on this pool (readiness).
pub async fn ping(pool: &PgPool) -> sqlx::Result<()> {
    sqlx::query_scalar!("select 1").fetch_one(pool).await?;
    Ok(())
}
