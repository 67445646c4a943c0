//! The real `mailfleet worker` process: SIGTERM drains it in time, a worker frozen with
//! SIGSTOP past its lease writes nothing after another worker took the mailbox over, and a
//! worker that dies right after the SMTP server accepted a message does not get it sent twice.

use chrono::Utc;
use mailfleet_coordinator::Scheduler;
use mailfleet_core::{Credentials, Job, JobEnvelope, Secret, SecretKey};
use mailfleet_store::accounts;
use mailfleet_store::models::NewAccount;
use mailfleet_store::models::NewOutgoing;
use mailfleet_store::outgoing::{self, Enqueued};
use mailfleet_testkit::{
    TEST_SECRET_KEY, TestDb, TestMailbox, TestQueues, ca_file, count, delivered_copies,
};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Fixture {
    db: TestDb,
    queues: TestQueues,
    mailbox: TestMailbox,
    account_id: i64,
}

async fn fixture(messages: usize) -> Fixture {
    let db = TestDb::create().await;
    let queues = TestQueues::new();
    let mailbox = TestMailbox::create();
    mailbox
        .seed(&mailfleet_mailgen::generate(
            &mailfleet_mailgen::MailboxSpec {
                owner: mailbox.address.clone(),
                owner_name: "Owner".into(),
                count: messages,
                seed: 9,
                now: Utc::now(),
                span_days: 20,
                folders: vec![("INBOX".into(), 1)],
                size_mix: mailfleet_mailgen::SizeMix::Small,
            },
        ))
        .unwrap();
    let store = db.store();
    let mut conn = store.conn().await.unwrap();
    let id = accounts::next_id(&mut conn).await.unwrap();
    let key = SecretKey::from_base64(TEST_SECRET_KEY).unwrap();
    let credentials = Credentials::Password {
        password: Secret::new(mailbox.password.clone()),
    }
    .seal(&key, id);
    let new = NewAccount {
        id,
        provider: "imap".into(),
        kind: "shared".into(),
        owner_user_id: None,
        email: mailbox.address.clone(),
        username: None,
        credentials,
        imap_host: Some("127.0.0.1".into()),
        imap_port: Some(993),
        imap_encryption: Some("ssl".into()),
        smtp_host: Some("127.0.0.1".into()),
        smtp_port: Some(587),
        smtp_encryption: Some("starttls".into()),
        allow_insecure_cert: false,
        sync_from: "1_month".into(),
        sync_window_start: Utc::now() - chrono::Duration::days(31),
        create_contacts: false,
        sync_requested: false,
    };
    let inbox = mailfleet_store::folders::ListedFolder {
        name: "INBOX".into(),
        remote_id: None,
        delimiter: Some("/".into()),
        role: Some("inbox".into()),
        selectable: true,
        active_if_new: true,
    };
    accounts::create(&mut conn, &new, &[inbox]).await.unwrap();
    Fixture {
        db,
        queues,
        mailbox,
        account_id: id,
    }
}

impl Fixture {
    async fn publish_sync(&self) {
        let broker = self.queues.broker().await;
        let mut conn = self.db.store().conn().await.unwrap();
        accounts::claim_now(&mut conn, self.account_id)
            .await
            .unwrap();
        broker
            .publish(&JobEnvelope::new(Job::SyncAccount {
                account_id: self.account_id,
            }))
            .await
            .unwrap();
        broker.close().await;
    }

    fn worker(&self, lease_secs: u64) -> Child {
        self.worker_with_health(lease_secs, "127.0.0.1:0")
    }

    fn worker_with_health(&self, lease_secs: u64, health: &str) -> Child {
        self.worker_command(lease_secs, health)
            .spawn()
            .expect("start mailfleet worker")
    }

    fn worker_command(&self, lease_secs: u64, health: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mailfleet"));
        c.arg("worker")
            .env("DATABASE_URL", &self.db.url)
            .env("AMQP_URL", mailfleet_testkit::amqp_url())
            .env("MAILFLEET_QUEUE_PREFIX", &self.queues.prefix)
            .env("MAILFLEET_SECRET_KEY", TEST_SECRET_KEY)
            .env("MAILFLEET_EXTRA_CA_FILE", ca_file())
            .env("MAILFLEET_SYNC_BATCH", "20")
            .env("MAILFLEET_WORKER_SLOTS", "1")
            .env("MAILFLEET_LEASE_SECS", lease_secs.to_string())
            .env("MAILFLEET_HEALTH_ADDR", health)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        c
    }

    async fn stored(&self) -> i64 {
        count(
            &self.db.url,
            &format!(
                "SELECT count(*) AS count FROM messages WHERE account_id = {}",
                self.account_id
            ),
        )
        .await
    }

    async fn wait_for_messages(&self, at_least: i64) {
        let started = Instant::now();
        while self.stored().await < at_least {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the worker stored nothing"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("the worker did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a worker process until the account's sync is done.
async fn finish_with_a_worker(f: &Fixture, total: i64) {
    let mut w = f.worker(60);
    let started = Instant::now();
    loop {
        let idle = count(
            &f.db.url,
            &format!(
                "SELECT count(*) AS count FROM accounts WHERE id = {} AND sync_queued_at IS NULL",
                f.account_id
            ),
        )
        .await;
        if f.stored().await == total && idle == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the sync did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    signal(&w, "-TERM");
    assert!(wait_exit(&mut w, Duration::from_secs(25)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_worker_within_25_seconds_and_the_sync_continues_elsewhere() {
    mailfleet_testkit::init();
    let f = fixture(2000).await;
    f.publish_sync().await;
    let health = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let mut worker = f.worker_with_health(60, &health);
    f.wait_for_messages(100).await;

    // The worker's probes answer while it works.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let live = http
        .get(format!("http://{health}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let ready = http
        .get(format!("http://{health}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["consuming"], true, "{body}");

    let asked = Instant::now();
    signal(&worker, "-TERM");
    let status = wait_exit(&mut worker, Duration::from_secs(25));
    assert!(status.success(), "exit status {status}");
    assert!(asked.elapsed() < Duration::from_secs(25));

    let url = &f.db.url;
    let stopped_at = f.stored().await;
    assert_eq!(
        count(url, &format!("SELECT count(*) AS count FROM accounts WHERE id = {} AND lease_expires_at IS NOT NULL", f.account_id)).await,
        0,
        "the lease is released"
    );
    if stopped_at < 2000 {
        // It stopped after a committed batch and queued the rest.
        let broker = f.queues.broker().await;
        assert_eq!(broker.ready_count(&broker.names().sync).await.unwrap(), 1);
        broker.close().await;
    }
    finish_with_a_worker(&f, 2000).await;
    assert_eq!(
        count(
            url,
            &format!(
                "SELECT count(DISTINCT message_id) AS count FROM messages WHERE account_id = {}",
                f.account_id
            )
        )
        .await,
        2000
    );
    drop(f.mailbox);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_frozen_past_its_lease_writes_nothing_after_the_takeover() {
    mailfleet_testkit::init();
    let f = fixture(2000).await;
    f.publish_sync().await;
    let mut frozen = f.worker(2);
    f.wait_for_messages(100).await;
    signal(&frozen, "-STOP");
    // Past the 2 s lease.
    tokio::time::sleep(Duration::from_secs(4)).await;

    // Another worker takes the mailbox over and syncs it completely.
    f.publish_sync().await;
    finish_with_a_worker(&f, 2000).await;
    let url = &f.db.url;
    let cursor = |url: String, id: i64| async move {
        count(
            &url,
            &format!(
                "SELECT uidnext AS count FROM folders WHERE account_id = {id} AND name = 'INBOX'"
            ),
        )
        .await
    };
    let after_takeover = cursor(url.clone(), f.account_id).await;

    // The frozen one wakes up mid-sync. Frozen between transactions, its next write fails the
    // fencing check (`lease_lost`); frozen inside one, Postgres ended its session after 10 s
    // and the write fails with it (`failed`). Either way its run ends without writing.
    signal(&frozen, "-CONT");
    let started = Instant::now();
    loop {
        let first_run = mailfleet_testkit::strings(
            url,
            "SELECT coalesce(outcome, 'running') AS value FROM sync_runs ORDER BY id LIMIT 1",
        )
        .await;
        match first_run.first().map(String::as_str) {
            Some("lease_lost") | Some("failed") => break,
            Some("ok") => panic!("the frozen worker finished its sync after the takeover"),
            _ => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the woken worker never noticed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        cursor(url.clone(), f.account_id).await,
        after_takeover,
        "the cursor did not move back"
    );
    assert_eq!(f.stored().await, 2000);
    signal(&frozen, "-TERM");
    assert!(wait_exit(&mut frozen, Duration::from_secs(25)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_after_the_smtp_server_accepted_leaves_the_message_unknown_not_resent() {
    mailfleet_testkit::init();
    let f = fixture(1).await;
    let bob = TestMailbox::create();
    let message_id = format!("crash-{}@example.test", mailfleet_testkit::unique_suffix());
    let raw = mailfleet_mailgen::simple_message(
        &f.mailbox.address,
        &bob.address,
        "Crash test",
        "Sent once, whatever happens.",
        &message_id,
        Utc::now(),
    );
    let store = f.db.store();
    let mut conn = store.conn().await.unwrap();
    let Enqueued::New(id) = outgoing::enqueue(
        &mut conn,
        &NewOutgoing {
            account_id: f.account_id,
            kind: "system".into(),
            sender_user_id: None,
            idempotency_key: "crash-1".into(),
            request_sha256: None,
            message_id: message_id.clone(),
            to_addrs: serde_json::json!([{ "email": bob.address }]),
            cc_addrs: serde_json::json!([]),
            bcc_addrs: serde_json::json!([]),
            subject: Some("Crash test".into()),
            text_body: None,
            html_body: None,
            in_reply_to_message: None,
            raw_message: raw,
            envelope_from: f.mailbox.address.clone(),
            envelope_to: vec![bob.address.clone()],
            attachments: serde_json::json!([]),
        },
    )
    .await
    .unwrap() else {
        panic!("not enqueued");
    };
    drop(conn);
    let broker = f.queues.broker().await;
    let scheduler = Scheduler::new(
        store.clone(),
        std::sync::Arc::new(broker),
        Duration::from_secs(3600),
    );
    assert_eq!(scheduler.tick_outbox().await.unwrap(), 1);

    // The first worker aborts the moment Postfix has said 250.
    let mut doomed = f
        .worker_command(60, "127.0.0.1:0")
        .env("MAILFLEET_FAILPOINT", "abort-after-smtp-accept")
        .env("MAILFLEET_SEND_CLAIM_SECS", "2")
        .spawn()
        .unwrap();
    let status = wait_exit(&mut doomed, Duration::from_secs(60));
    assert!(!status.success(), "the failpoint did not fire: {status:?}");
    assert_eq!(delivered_copies(&bob, &message_id).await, 1);

    // Another worker gets the redelivered job; once the dead worker's claim has run out the
    // relay publishes it again and the send is resolved: not in Sent, so `unknown`.
    let mut survivor = f
        .worker_command(60, "127.0.0.1:0")
        .env("MAILFLEET_SEND_CLAIM_SECS", "2")
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        scheduler.tick_outbox().await.unwrap();
        let mut conn = store.conn().await.unwrap();
        let row = outgoing::get(&mut conn, id).await.unwrap();
        if row.status != "sending" {
            break row;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never resolved"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    signal(&survivor, "-TERM");
    assert!(wait_exit(&mut survivor, Duration::from_secs(25)).success());
    assert_eq!(status.status, "unknown");
    assert_eq!(status.error_code.as_deref(), Some("unknown_outcome"));
    assert!(mailfleet_testkit::postfix_queue_empty());
    assert_eq!(
        bob.messages_with_id("INBOX", &message_id).len(),
        1,
        "sent twice"
    );
}
