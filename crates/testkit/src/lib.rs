//! Real-server fixtures for tests: each test gets its own Postgres database (created and
//! migrated), its own RabbitMQ queue prefix and its own Dovecot users, so tests run in
//! parallel and leave nothing behind.

use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use std::sync::Once;

mod proxy;
mod scripted_imap;

pub use mailfleet_mailgen::dovecot::{LocalMailbox, ca_file, run_dir};
pub use proxy::FlakyProxy;
pub use scripted_imap::ScriptedImap;

/// The server a test database lives on (its `postgres` database is used to create others).
pub fn admin_database_url() -> String {
    std::env::var("MAILFLEET_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A fixed key for tests (32 bytes, base64).
pub const TEST_SECRET_KEY: &str = "dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktMTIzNDU=";

/// Installs the ring crypto provider once per process (reqwest and rustls need one).
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("MAILFLEET_TEST_LOG")
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
    });
}

/// A short random name part.
pub fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// A fresh, migrated database, dropped when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> Self {
        init();
        let name = format!("mf_test_{}", unique_suffix());
        let admin = admin_database_url();
        let mut conn = AsyncPgConnection::establish(&admin)
            .await
            .expect("connect to Postgres (is it running? see scripts/services-up.sh)");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let url = mailfleet_store::with_database(&admin, &name).expect("database URL");
        mailfleet_store::run_migrations(&url)
            .await
            .expect("migrate test database");
        Self { name, url }
    }

    pub fn store(&self) -> mailfleet_store::Store {
        mailfleet_store::Store::connect(&self.url, 8).expect("pool")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = admin_database_url();
        // Drop runs inside a test's runtime: use a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut c) = AsyncPgConnection::establish(&admin).await {
                    let _ =
                        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .execute(&mut c)
                            .await;
                }
            });
        })
        .join();
    }
}

/// An empty database owned by a login role of its own without CREATEROLE or CREATEDB, as a
/// managed Postgres gives an application; the database and the role go when dropped.
pub struct UnprivilegedDb {
    pub role: String,
    pub name: String,
    /// Logs in as `role` (the test server trusts local logins: no password).
    pub url: String,
}

impl UnprivilegedDb {
    pub async fn create() -> Self {
        init();
        let admin = admin_database_url();
        let suffix = unique_suffix();
        let (role, name) = (format!("mf_owner_{suffix}"), format!("mf_managed_{suffix}"));
        execute(
            &admin,
            &format!("CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB"),
        )
        .await;
        execute(&admin, &format!("CREATE DATABASE {name} OWNER {role}")).await;
        let mut url = url::Url::parse(&admin).expect("database URL");
        url.set_path(&name);
        url.set_username(&role).expect("a URL with a host");
        url.set_password(None).expect("a URL with a host");
        Self {
            url: url.to_string(),
            role,
            name,
        }
    }
}

impl Drop for UnprivilegedDb {
    fn drop(&mut self) {
        let (admin, name, role) = (admin_database_url(), self.name.clone(), self.role.clone());
        block_on_detached(async move {
            if let Ok(mut c) = AsyncPgConnection::establish(&admin).await {
                for sql in [
                    format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    format!("DROP ROLE IF EXISTS {role}"),
                ] {
                    let _ = diesel::sql_query(sql).execute(&mut c).await;
                }
            }
        });
    }
}

/// Runs cleanup from `Drop`, which may be inside a test's runtime: on a thread with a
/// runtime of its own.
fn block_on_detached(fut: impl std::future::Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(fut);
    })
    .join();
}

/// Counts rows with a raw query returning one `count` column.
pub async fn count(url: &str, sql: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct C {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        count: i64,
    }
    let mut c = AsyncPgConnection::establish(url).await.expect("connect");
    let row: C = diesel::sql_query(sql).get_result(&mut c).await.expect(sql);
    row.count
}

/// Runs a statement; returns the rows it touched.
pub async fn execute(url: &str, sql: &str) -> usize {
    try_execute(url, sql).await.expect(sql)
}

/// Runs a statement the database may refuse (a constraint under test).
pub async fn try_execute(url: &str, sql: &str) -> Result<usize, diesel::result::Error> {
    let mut c = AsyncPgConnection::establish(url).await.expect("connect");
    diesel::sql_query(sql).execute(&mut c).await
}

/// Runs several statements as one script (a migration's SQL, say).
pub async fn batch_execute(url: &str, sql: &str) {
    use diesel_async::SimpleAsyncConnection;
    let mut c = AsyncPgConnection::establish(url).await.expect("connect");
    c.batch_execute(sql).await.expect("batch");
}

/// Runs a query that returns one text column per row.
pub async fn strings(url: &str, sql: &str) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct S {
        #[diesel(sql_type = Text)]
        value: String,
    }
    let mut c = AsyncPgConnection::establish(url).await.expect("connect");
    let rows: Vec<S> = diesel::sql_query(sql).load(&mut c).await.expect(sql);
    rows.into_iter().map(|r| r.value).collect()
}

/// Makes an account's scheduled retry due now.
pub async fn backdate_retry(conn: &mut mailfleet_store::Conn, account_id: i64) {
    diesel::sql_query(format!(
        "UPDATE accounts SET next_attempt_at = now() - interval '1 second' WHERE id = {account_id}"
    ))
    .execute(conn)
    .await
    .expect("backdate retry");
}

/// A queue prefix of a test's own; its queues are deleted when the value is dropped.
pub struct TestQueues {
    pub prefix: String,
}

impl TestQueues {
    pub fn new() -> Self {
        Self {
            prefix: format!("mf-test-{}", unique_suffix()),
        }
    }

    pub async fn broker(&self) -> mailfleet_queue::Broker {
        mailfleet_queue::Broker::connect(&amqp_url(), &self.prefix)
            .await
            .expect("connect to RabbitMQ (is it running? see scripts/services-up.sh)")
    }
}

impl Default for TestQueues {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestQueues {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        block_on_detached(async move {
            if let Ok(b) = mailfleet_queue::Broker::connect(&amqp_url(), &prefix).await {
                let _ = b.delete_topology().await;
                b.close().await;
            }
        });
    }
}

/// A mail user that is deleted, with its mail, when dropped.
pub struct TestMailbox(pub LocalMailbox);

impl TestMailbox {
    pub fn create() -> Self {
        let address = format!("t-{}@example.test", unique_suffix());
        let password = format!("pw-{}", unique_suffix());
        Self(LocalMailbox::create(&address, &password).expect("create Dovecot user"))
    }
}

impl std::ops::Deref for TestMailbox {
    type Target = LocalMailbox;
    fn deref(&self) -> &LocalMailbox {
        &self.0
    }
}

impl Drop for TestMailbox {
    fn drop(&mut self) {
        let _ = self.0.delete();
    }
}

/// Whether the local Postfix has nothing left to deliver (`postqueue -p`).
pub fn postfix_queue_empty() -> bool {
    let out = std::process::Command::new("postqueue")
        .arg("-c")
        .arg(run_dir().join("postfix/etc"))
        .arg("-p")
        .output()
        .expect("postqueue runs (scripts/services-up.sh installs Postfix)");
    String::from_utf8_lossy(&out.stdout).contains("Mail queue is empty")
}

/// Waits until Postfix delivered a message with this Message-ID to `mailbox`'s INBOX and
/// its queue is empty (so a second copy would have arrived too); returns how many copies
/// the INBOX holds. Panics after 60 s without one.
pub async fn delivered_copies(mailbox: &LocalMailbox, message_id: &str) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let n = mailbox.messages_with_id("INBOX", message_id).len();
        if n > 0 && postfix_queue_empty() {
            // Let an LMTP delivery that left the queue a moment ago land.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            return mailbox.messages_with_id("INBOX", message_id).len();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no copy of <{message_id}> reached {} within 60 s",
            mailbox.address
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Counts rows as `role` sees them (`SET LOCAL ROLE`).
pub async fn count_as_role(url: &str, role: &str, sql: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct C {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        count: i64,
    }
    let mut c = AsyncPgConnection::establish(url).await.expect("connect");
    let (role, sql) = (role.to_owned(), sql.to_owned());
    c.transaction::<_, diesel::result::Error, _>(async |tx| {
        diesel::sql_query(format!("SET LOCAL ROLE {role}"))
            .execute(tx)
            .await?;
        let row: C = diesel::sql_query(&sql).get_result(tx).await?;
        Ok(row.count)
    })
    .await
    .expect("query as role")
}

/// Counts rows as the API's database role sees them for `viewer` (row-level security on):
/// `sql` is run as is, with no filter of its own.
pub async fn count_as_viewer(url: &str, viewer: i64, sql: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct C {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        count: i64,
    }
    let mut c = AsyncPgConnection::establish(url).await.expect("connect");
    let sql = sql.to_owned();
    c.transaction::<_, diesel::result::Error, _>(async |tx| {
        diesel::sql_query(format!(
            "SELECT set_config('mailfleet.viewer_id', '{viewer}', true)"
        ))
        .execute(tx)
        .await?;
        diesel::sql_query("SET LOCAL ROLE mailfleet_viewer")
            .execute(tx)
            .await?;
        let row: C = diesel::sql_query(&sql).get_result(tx).await?;
        Ok(row.count)
    })
    .await
    .expect("query as viewer")
}
