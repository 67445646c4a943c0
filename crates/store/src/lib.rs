//! Postgres through diesel-async: the schema, the rows and every query mailfleet makes.
//! Callers get typed rows and `StoreError`; SQL stays in this crate.

pub mod access;
pub mod accounts;
pub mod actions;
pub mod connection_tests;
pub mod contacts;
pub mod deletion;
pub mod folders;
pub mod leases;
pub mod messages;
mod migrate;
pub mod models;
pub mod outgoing;
pub mod schema;
pub mod sync_runs;
pub mod system;
pub mod users;
pub mod viewer;

use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};

/// See `Store::connect`.
const IDLE_IN_TRANSACTION_MS: u64 = 10_000;
use diesel_async::pooled_connection::deadpool::{Object, Pool};

pub use migrate::{database_name, ensure_database, run_migrations, with_database};

pub type Conn = Object<AsyncPgConnection>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("migrations failed: {0}")]
    Migration(String),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: i64 },
    #[error("{0}")]
    Conflict(String),
    /// Another worker took over the account: this one must stop writing.
    #[error("the lease on account {account_id} was lost to another worker")]
    LeaseLost { account_id: i64 },
    /// The request contradicts what is stored (an unknown folder name, …).
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    /// Connection trouble, as opposed to a query the database refused.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// A pool of connections to one database.
#[derive(Clone)]
pub struct Store {
    pool: Pool<AsyncPgConnection>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Builds the pool; connections are opened lazily, so this does not fail when the database
    /// is down (readiness reports that).
    pub fn connect(database_url: &str, max_connections: usize) -> Result<Self, StoreError> {
        let mut config = ManagerConfig::<AsyncPgConnection>::default();
        config.custom_setup = Box::new(|url| {
            let url = url.to_owned();
            Box::pin(async move {
                use diesel_async::{AsyncConnection, RunQueryDsl};
                let mut conn = AsyncPgConnection::establish(&url).await?;
                // A process frozen inside a transaction (a VM pause, SIGSTOP) would hold its
                // row locks, the account's lease row among them, and stall the worker taking
                // over. Postgres ends such a session after this long.
                diesel::sql_query(format!(
                    "SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_MS}"
                ))
                .execute(&mut conn)
                .await
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(conn)
            })
        });
        let mgr = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
            database_url,
            config,
        );
        let pool = Pool::builder(mgr)
            .max_size(max_connections)
            .build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Self { pool })
    }

    pub async fn conn(&self) -> Result<Conn, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// `SELECT 1`: for readiness probes.
    pub async fn ping(&self) -> Result<(), StoreError> {
        use diesel_async::RunQueryDsl;
        let mut c = self.conn().await?;
        diesel::sql_query("SELECT 1").execute(&mut c).await?;
        Ok(())
    }
}
