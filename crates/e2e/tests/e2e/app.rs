//! A whole mailfleet in the test process: the real API router and scheduler on a port of
//! their own, a worker driven step by step, a fresh database and queue prefix.

use chrono::{Duration, Utc};
use mailfleet_coordinator::{ApiState, Scheduler};
use mailfleet_core::{Secret, SecretKey};
use mailfleet_imap::TlsTrust;
use mailfleet_mailgen::{GeneratedMessage, MailboxSpec, SizeMix};
use mailfleet_queue::Broker;
use mailfleet_store::Store;
use mailfleet_testkit::{TEST_SECRET_KEY, TestDb, TestMailbox, TestQueues, ca_file};
use mailfleet_worker::{Outcome, Worker, WorkerConfig};
use serde_json::{Value, json};
use std::sync::Arc;

pub const TOKEN: &str = "test-token";

pub struct App {
    pub db: TestDb,
    _queues: TestQueues,
    pub store: Store,
    pub broker: Arc<Broker>,
    pub scheduler: Scheduler,
    pub worker: Arc<Worker>,
    pub api: String,
    pub http: reqwest::Client,
    /// Sent as the acting user by `get`/`post`/`put`/`patch`: the owner of the account last
    /// connected with `connect_account`, unless a test chose with `act_as`.
    acting: std::sync::Mutex<Option<i64>>,
    _server: tokio::task::JoinHandle<()>,
    /// Stops the connection-test responder when the app goes.
    _responder: tokio::sync::watch::Sender<bool>,
}

impl App {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with a worker configuration adjusted by `tune`.
    pub async fn start_with(tune: impl FnOnce(&mut WorkerConfig)) -> Self {
        Self::build(tune, true).await
    }

    /// Starts with nobody answering connection tests (the tests of that timeout).
    pub async fn start_unanswered() -> Self {
        Self::build(|_| {}, false).await
    }

    /// `answer_tests`: a worker of its own answers connection tests in the background (the
    /// API runs one when an account is connected with chosen folders), while `worker` is
    /// driven step by step.
    async fn build(tune: impl FnOnce(&mut WorkerConfig), answer_tests: bool) -> Self {
        let db = TestDb::create().await;
        let queues = TestQueues::new();
        let store = db.store();
        let broker = Arc::new(queues.broker().await);
        let key = SecretKey::from_base64(TEST_SECRET_KEY).unwrap();
        let scheduler = Scheduler::new(
            store.clone(),
            broker.clone(),
            std::time::Duration::from_secs(3600),
        );
        let state = ApiState {
            store: store.clone(),
            broker: broker.clone(),
            scheduler: scheduler.clone(),
            key: key.clone(),
            api_token: Arc::new(Secret::new(TOKEN.to_string())),
            rpc_timeout: std::time::Duration::from_secs(5),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = format!("http://{}", listener.local_addr().unwrap());
        let router = mailfleet_coordinator::router(state);
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        let ca = std::fs::read(ca_file()).expect("test CA (run scripts/services-up.sh)");
        let trust = TlsTrust::new(Some(("test CA", &ca))).unwrap();
        let mut config = WorkerConfig {
            slots: 1,
            // Small batches, so every sync crosses several batch and cursor boundaries.
            sync: mailfleet_sync::SyncOptions {
                batch_messages: 25,
                batch_bytes: 64 * 1024,
                ..mailfleet_sync::SyncOptions::default()
            },
            ..WorkerConfig::default()
        };
        tune(&mut config);
        let (responder_stop, stopped) = tokio::sync::watch::channel(false);
        if answer_tests {
            let responder = Arc::new(Worker::new(
                store.clone(),
                broker.clone(),
                key.clone(),
                trust.clone(),
                config.clone(),
            ));
            let queue = broker.names().test_connection.clone();
            tokio::spawn(responder.run_on(vec![queue], stopped));
        }
        let worker = Arc::new(Worker::new(
            store.clone(),
            broker.clone(),
            key,
            trust,
            config,
        ));
        let app = Self {
            db,
            _queues: queues,
            store,
            broker,
            scheduler,
            worker,
            api,
            http: reqwest::Client::new(),
            acting: std::sync::Mutex::new(None),
            _server: server,
            _responder: responder_stop,
        };
        // Someone to act as before any account exists (connection tests, …).
        let someone = app.create_user().await;
        app.act_as(someone);
        app
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, body).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, path, body).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PATCH, path, body).await
    }

    /// Makes `user` the acting user of later `get`/`post`/`put`/`patch` calls.
    pub fn act_as(&self, user: i64) {
        *self.acting.lock().unwrap() = Some(user);
    }

    pub fn acting(&self) -> Option<i64> {
        *self.acting.lock().unwrap()
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        self.request_as(method, path, self.acting(), None, Some(body))
            .await
    }

    /// A request made for `user` (the acting user header), with an optional idempotency key.
    pub async fn request_as(
        &self,
        method: reqwest::Method,
        path: &str,
        user: Option<i64>,
        idempotency_key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(TOKEN);
        if let Some(u) = user {
            r = r.header(mailfleet_coordinator::ACTING_USER_HEADER, u.to_string());
        }
        if let Some(k) = idempotency_key {
            r = r.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `POST /v1/messages` for `user`.
    pub async fn send_as(&self, user: i64, key: Option<&str>, body: Value) -> (u16, Value) {
        self.request_as(
            reqwest::Method::POST,
            "/v1/messages",
            Some(user),
            key,
            Some(body),
        )
        .await
    }

    /// Takes the next job off the send queue and acks it unrun (tests that stage a row's
    /// state by hand, then let the relay publish it).
    pub async fn discard_send_job(&self) {
        let channel = self.broker.consumer_channel(1).await.unwrap();
        let delivery = Broker::get(&channel, &self.broker.names().send)
            .await
            .unwrap()
            .expect("a send job");
        delivery
            .acker
            .ack(mailfleet_queue::BasicAckOptions::default())
            .await
            .unwrap();
        let _ = channel.close(200, "done".into()).await;
    }

    /// Runs one job from the send queue; fails the test if there is none.
    pub async fn work_send(&self) -> mailfleet_worker::SendOutcome {
        match self
            .worker
            .process_one_from(&self.broker.names().send)
            .await
            .unwrap()
        {
            Outcome::Send(o) => o,
            other => panic!("expected a send job, got {other:?}"),
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.request_as(reqwest::Method::GET, path, self.acting(), None, None)
            .await
    }

    /// A new administrator's id.
    pub async fn create_admin(&self) -> i64 {
        let (status, user) = self
            .post(
                "/v1/users",
                json!({ "email": format!("admin-{}@crm.example.test", mailfleet_testkit::unique_suffix()), "is_admin": true }),
            )
            .await;
        assert_eq!(status, 201, "{user}");
        user["id"].as_i64().unwrap()
    }

    pub async fn create_user(&self) -> i64 {
        let (status, user) = self
            .post(
                "/v1/users",
                json!({ "email": format!("u-{}@crm.example.test", mailfleet_testkit::unique_suffix()) }),
            )
            .await;
        assert_eq!(status, 201, "{user}");
        user["id"].as_i64().unwrap()
    }

    /// Connects `mailbox` over IMAPS (certificate verified against the test CA), as a
    /// personal account of a new user, who becomes the acting user.
    pub async fn connect_account(&self, mailbox: &TestMailbox, extra: Value) -> Value {
        self.connect_with(&mailbox.address, &mailbox.password, extra)
            .await
    }

    /// `connect_account` for any address and password (a user of another IMAP server).
    pub async fn connect_with(&self, address: &str, password: &str, extra: Value) -> Value {
        let owner = self.create_user().await;
        self.act_as(owner);
        let mut body = json!({
            "provider": "imap", "kind": "personal", "owner_user_id": owner,
            "email": address, "password": password,
            "imap": { "host": "127.0.0.1", "port": 993, "encryption": "ssl" },
            "smtp": { "host": "127.0.0.1", "port": 587, "encryption": "starttls" },
            "sync_from": "3_months", "create_contacts": false
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, account) = self.post("/v1/accounts", body).await;
        assert_eq!(status, 201, "{account}");
        account
    }

    /// Connects `mailbox` as a shared inbox, as the administrator `admin`, syncing INBOX;
    /// returns its id.
    pub async fn connect_shared(&self, admin: i64, mailbox: &TestMailbox) -> i64 {
        let (status, account) = self
            .request_as(
                reqwest::Method::POST,
                "/v1/accounts",
                Some(admin),
                None,
                Some(json!({
                    "provider": "imap", "kind": "shared",
                    "email": mailbox.address, "password": mailbox.password,
                    "imap": { "host": "127.0.0.1", "port": 993, "encryption": "ssl" },
                    "smtp": { "host": "127.0.0.1", "port": 587, "encryption": "starttls" },
                    "sync_from": "3_months", "active_folders": ["INBOX"]
                })),
            )
            .await;
        assert_eq!(status, 201, "{account}");
        account["id"].as_i64().unwrap()
    }

    /// A second worker (own connections) on the same database and queues as `app`.
    pub async fn start_sharing(app: &App) -> Worker {
        Self::start_sharing_via(app, &mailfleet_testkit::amqp_url()).await
    }

    /// The same, reaching RabbitMQ at `amqp_url`.
    pub async fn start_sharing_via(app: &App, amqp_url: &str) -> Worker {
        Self::start_sharing_through(app, amqp_url, &app.db.url).await
    }

    /// The same, reaching RabbitMQ at `amqp_url` and Postgres at `database_url`.
    pub async fn start_sharing_through(app: &App, amqp_url: &str, database_url: &str) -> Worker {
        let broker = Arc::new(
            mailfleet_queue::Broker::connect(amqp_url, &app.broker.names().prefix)
                .await
                .unwrap(),
        );
        let key = SecretKey::from_base64(TEST_SECRET_KEY).unwrap();
        let ca = std::fs::read(ca_file()).unwrap();
        let trust = TlsTrust::new(Some(("test CA", &ca))).unwrap();
        let store = mailfleet_store::Store::connect(database_url, 4).unwrap();
        Worker::new(store, broker, key, trust, WorkerConfig::default())
    }

    /// Connects `mailbox` with IMAP going through a proxy on `port` (e.g. a `FlakyProxy` in
    /// front of Dovecot's 993); returns the account id.
    pub async fn connect_through(&self, mailbox: &TestMailbox, port: u16) -> i64 {
        self.connect_account(
            mailbox,
            json!({ "imap": { "host": "127.0.0.1", "port": port, "encryption": "ssl" } }),
        )
        .await["id"]
            .as_i64()
            .unwrap()
    }

    /// Stored messages of an account that are in a folder (what the CRM sees).
    pub async fn message_count(&self, account_id: i64) -> i64 {
        mailfleet_testkit::count(
            &self.db.url,
            &format!(
                "SELECT count(*) AS count FROM messages
                 WHERE account_id = {account_id} AND orphaned_at IS NULL"
            ),
        )
        .await
    }

    /// Stored messages of an account in no folder: gone from the server, deleted for good
    /// at the end of the next complete sync unless found in another folder.
    pub async fn orphan_count(&self, account_id: i64) -> i64 {
        mailfleet_testkit::count(
            &self.db.url,
            &format!(
                "SELECT count(*) AS count FROM messages
                 WHERE account_id = {account_id} AND orphaned_at IS NOT NULL"
            ),
        )
        .await
    }

    /// Distinct Message-IDs among an account's stored messages.
    pub async fn distinct_message_ids(&self, account_id: i64) -> i64 {
        mailfleet_testkit::count(
            &self.db.url,
            &format!(
                "SELECT count(DISTINCT message_id) AS count FROM messages WHERE account_id = {account_id}"
            ),
        )
        .await
    }

    /// Asks for a sync of the account and runs it; fails the test unless it syncs.
    pub async fn sync(&self, account_id: i64) -> mailfleet_sync::SyncReport {
        self.post(&format!("/v1/accounts/{account_id}/sync"), json!({}))
            .await;
        match self.work_one().await {
            Outcome::Synced(r) => r,
            other => panic!("sync failed: {other:?}"),
        }
    }

    /// The row id of the stored message with this Message-ID.
    pub async fn row_of(&self, message_id: &str) -> i64 {
        mailfleet_testkit::count(
            &self.db.url,
            &format!("SELECT id AS count FROM messages WHERE message_id = '{message_id}'"),
        )
        .await
    }

    /// Runs exactly one queued job; fails the test if the queue is empty.
    pub async fn work_one(&self) -> Outcome {
        match self.worker.process_one().await.unwrap() {
            Outcome::Empty => panic!("expected a queued job, found none"),
            o => o,
        }
    }

    /// Runs the worker's real consume loop in the background until the returned sender is
    /// dropped or set (connection tests need a worker answering while the API waits).
    pub fn run_worker(&self) -> tokio::sync::watch::Sender<bool> {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(self.worker.clone().run(rx));
        tx
    }

    pub async fn sync_ready(&self) -> u32 {
        self.broker
            .ready_count(&self.broker.names().sync)
            .await
            .unwrap()
    }
}

/// A plain IMAP client (port 143, no TLS) that plays the user's other mail program: it
/// changes the mailbox behind mailfleet's back.
pub async fn raw_session(mailbox: &TestMailbox) -> async_imap::Session<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect("127.0.0.1:143")
        .await
        .unwrap();
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await.unwrap();
    client
        .login(&mailbox.address, &mailbox.password)
        .await
        .map_err(|(e, _)| e)
        .unwrap()
}

/// The user's other mail program over IMAPS on `port` (certificate checked against the test
/// CA): what works on every server, Cyrus included (it refuses LOGIN without TLS).
pub type OtherClient = async_imap::Session<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

pub async fn other_client(port: u16, login: &str, password: &str) -> OtherClient {
    use rustls_pki_types::pem::PemObject;
    let ca = std::fs::read(ca_file()).expect("test CA (run scripts/services-up.sh)");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let mut client = async_imap::Client::new(tls);
    client.read_response().await.unwrap();
    client
        .login(login, password)
        .await
        .map_err(|(e, _)| e)
        .unwrap()
}

/// Writes a message from carol@client.example.org into `folder`, received two hours ago;
/// returns its Message-ID.
pub fn deliver(mailbox: &TestMailbox, folder: &str, tag: &str) -> String {
    let id = format!("{tag}@example.org");
    let date = Utc::now() - Duration::hours(2);
    let raw = mailfleet_mailgen::simple_message(
        "carol@client.example.org",
        &mailbox.address,
        tag,
        "body",
        &id,
        date,
    );
    mailbox
        .write_message(
            folder,
            &raw,
            std::time::SystemTime::from(date),
            false,
            false,
        )
        .unwrap();
    id
}

/// What the other client's session (plain or TLS) must be.
pub trait ImapIo:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + std::fmt::Debug + Send
{
}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + std::fmt::Debug + Send> ImapIo
    for T
{
}

/// UIDs of the messages with this Message-ID in the open folder.
pub async fn uids_with_message_id<T: ImapIo>(
    s: &mut async_imap::Session<T>,
    message_id: &str,
) -> Vec<u32> {
    let mut uids: Vec<u32> = s
        .uid_search(format!("HEADER Message-ID \"<{message_id}>\""))
        .await
        .unwrap()
        .into_iter()
        .collect();
    uids.sort_unstable();
    uids
}

/// The flags of a message of the open folder, sorted, as another client sees them
/// (`\Recent` belongs to a session, not to the message).
pub async fn flags_of_uid<T: ImapIo>(s: &mut async_imap::Session<T>, uid: u32) -> Vec<String> {
    use futures::TryStreamExt;
    let fetched: Vec<_> = s
        .uid_fetch(uid.to_string(), "FLAGS")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut flags: Vec<String> = fetched[0]
        .flags()
        .map(|f| format!("{f:?}"))
        .filter(|f| f != "Recent")
        .collect();
    flags.sort();
    flags
}

/// A mailbox of `count` small messages over INBOX, Sent and Archive from the last 60 days.
pub fn small_mailbox(owner: &str, count: usize, seed: u64) -> Vec<GeneratedMessage> {
    mailfleet_mailgen::generate(&MailboxSpec {
        owner: owner.to_string(),
        owner_name: "Test Owner".into(),
        count,
        seed,
        now: Utc::now() - Duration::hours(1),
        span_days: 60,
        folders: vec![
            ("INBOX".into(), 60),
            ("Sent".into(), 20),
            ("Archive".into(), 20),
        ],
        size_mix: SizeMix::Small,
    })
}
