use crate::StoreError;
use diesel::{Connection, RunQueryDsl};
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Applies pending migrations; returns the versions applied. Safe to run from several
/// processes at once: Postgres serialises the DDL and diesel records each version once.
pub async fn run_migrations(database_url: &str) -> Result<Vec<String>, StoreError> {
    let url = database_url.to_owned();
    // The wrapper blocks on its own runtime, so it must not run on a runtime thread.
    tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        // One migrator at a time: concurrent `migrate` runs would race on CREATE TABLE.
        diesel::sql_query("SELECT pg_advisory_lock(726150)")
            .execute(&mut conn)
            .map_err(StoreError::Query)?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|v| v.iter().map(|m| m.to_string()).collect())
            .map_err(|e| StoreError::Migration(e.to_string()));
        let _ = diesel::sql_query("SELECT pg_advisory_unlock(726150)").execute(&mut conn);
        applied
    })
    .await
    .map_err(|e| StoreError::Migration(e.to_string()))?
}

/// Creates the database named in `database_url` when it does not exist (the quick start's
/// first `migrate` on a fresh Postgres). Connects to the server's `postgres` database.
pub async fn ensure_database(database_url: &str) -> Result<bool, StoreError> {
    use diesel_async::AsyncConnection;
    if AsyncPgConnection::establish(database_url).await.is_ok() {
        return Ok(false);
    }
    let name = database_name(database_url)
        .ok_or_else(|| StoreError::Migration("DATABASE_URL has no database name".into()))?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StoreError::Migration(format!(
            "will not create database {name:?}: use letters, digits and _"
        )));
    }
    let admin = with_database(database_url, "postgres")
        .ok_or_else(|| StoreError::Migration("DATABASE_URL has no database name".into()))?;
    let mut conn = AsyncPgConnection::establish(&admin)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    match diesel_async::RunQueryDsl::execute(
        diesel::sql_query(format!("CREATE DATABASE {name}")),
        &mut conn,
    )
    .await
    {
        Ok(_) => Ok(true),
        // Another process created it meanwhile.
        Err(diesel::result::Error::DatabaseError(_, info))
            if info.message().contains("already exists") =>
        {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// `url` with its database name replaced by `name` (user, password, host and query kept);
/// `None` when `url` is not a URL or names no database.
pub fn with_database(url: &str, name: &str) -> Option<String> {
    let mut parsed = url::Url::parse(url).ok()?;
    database_name(url)?;
    parsed.set_path(&format!("/{name}"));
    Some(parsed.to_string())
}

/// The database name in `url` (percent-decoded), if it names one.
pub fn database_name(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let name = parsed.path().strip_prefix('/')?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    percent_encoding::percent_decode_str(name)
        .decode_utf8()
        .ok()
        .map(|n| n.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_reads_the_database_in_a_url() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x").as_deref(),
            Some("postgres://u@h:5432/x")
        );
        assert_eq!(
            with_database("postgres://u@h/app?sslmode=disable", "x").as_deref(),
            Some("postgres://u@h/x?sslmode=disable")
        );
        assert_eq!(
            database_name("postgres://u@h/app?sslmode=disable").as_deref(),
            Some("app")
        );
        // A password with URL-special characters survives, percent-encoded as it came.
        assert_eq!(
            with_database("postgres://u:p%40ss%2Fw@h:5432/app", "x").as_deref(),
            Some("postgres://u:p%40ss%2Fw@h:5432/x")
        );
        assert_eq!(with_database("not a url", "x"), None);
        assert_eq!(with_database("postgres://u@h", "x"), None);
        assert_eq!(database_name("postgres://u@h"), None);
    }
}
