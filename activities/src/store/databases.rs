//! `pg_database`: the server's databases, as the binary creates its own
//! (`busflow-comms migrate`, `dev`) and the benchmark starts afresh. Run on a
//! connection to the server's maintenance database (`postgres`), not to the one named.

/// Whether the server has a database called `name`.
pub async fn exists(db: impl sqlx::PgExecutor<'_>, name: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"select exists(select 1 from pg_database where datname = $1) as "exists!""#,
        name
    )
    .fetch_one(db)
    .await
}

/// Creates the database `name` (fails with 42P04 when it exists).
pub async fn create(db: impl sqlx::PgExecutor<'_>, name: &str) -> sqlx::Result<()> {
    // A database's name is an identifier, not a value: no parameter can carry it.
    sqlx::query(&format!("create database {}", quote_identifier(name)))
        .execute(db)
        .await?;
    Ok(())
}

/// Drops the database `name` if it exists, ending its sessions.
pub async fn drop_if_exists(db: impl sqlx::PgExecutor<'_>, name: &str) -> sqlx::Result<()> {
    // A database's name is an identifier, not a value: no parameter can carry it.
    sqlx::query(&format!(
        "drop database if exists {} with (force)",
        quote_identifier(name)
    ))
    .execute(db)
    .await?;
    Ok(())
}

/// `name` as a quoted SQL identifier.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
