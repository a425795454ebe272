//! Getting the database ready: create it when missing, apply migrations, and
//! say in one line what to do when Postgres does not answer.

use anyhow::Context;
use busflow_activities::store::databases;
use sqlx::{Connection, PgConnection, PgPool};

/// Connects the pool, or fails with one line that names the fix.
pub async fn connect(database_url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    busflow_activities::store::connect(database_url, max_connections)
        .await
        .map_err(|e| unreachable_postgres(database_url, &e))
}

/// Creates the database named in `database_url` if it does not exist.
pub async fn ensure_database(database_url: &str) -> anyhow::Result<()> {
    let (server_url, name) = split_database(database_url)?;
    let mut conn = PgConnection::connect(&format!("{server_url}/postgres"))
        .await
        .map_err(|e| unreachable_postgres(database_url, &e))?;
    if !databases::exists(&mut conn, &name).await? {
        match databases::create(&mut conn, &name).await {
            Ok(_) => tracing::info!("created database {name}"),
            // Another process created it between our check and our create.
            Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42P04") => {}
            Err(e) => return Err(e).with_context(|| format!("creating database {name}")),
        }
    }
    Ok(())
}

/// Applies pending migrations; a second run is a no-op.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    busflow_activities::store::MIGRATOR
        .run(pool)
        .await
        .context("applying migrations")
}

/// `postgres://u@h:p/db?x` → (`postgres://u@h:p`, `db`).
pub fn split_database(database_url: &str) -> anyhow::Result<(String, String)> {
    let without_query = database_url.split('?').next().unwrap_or(database_url);
    let (server, name) = without_query
        .rsplit_once('/')
        .filter(|(server, name)| {
            server.contains("://") && !server.ends_with('/') && !name.is_empty()
        })
        .ok_or_else(|| {
            anyhow::anyhow!("DATABASE_URL '{}' names no database", redact(database_url))
        })?;
    Ok((server.to_owned(), name.to_owned()))
}

fn unreachable_postgres(database_url: &str, err: &sqlx::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "Postgres at {} does not answer ({err}). Start it (e.g. `pg_ctlcluster 15 main start`) or point DATABASE_URL at a running server.",
        redact(database_url)
    )
}

/// Hides a password in a URL (`postgres://u:secret@h` → `postgres://u:***@h`).
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_database_name_off_the_url() {
        let (server, name) =
            split_database("postgres://postgres@127.0.0.1:5432/busflow_comms?sslmode=disable")
                .expect("splits");
        assert_eq!(server, "postgres://postgres@127.0.0.1:5432");
        assert_eq!(name, "busflow_comms");
        assert!(split_database("postgres://127.0.0.1:5432/").is_err());
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://app:hunter2@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(
            redact("postgres://postgres@db/x"),
            "postgres://postgres@db/x"
        );
    }
}
