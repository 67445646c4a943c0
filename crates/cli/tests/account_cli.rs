//! `mailfleet account …` against a real `mailfleet coordinator` process (and, for connection
//! tests, a real worker and Dovecot): the CLI is run as a person or a script would run it.

use mailfleet_core::{Credentials, SecretKey};
use mailfleet_testkit::{TEST_SECRET_KEY, TestDb, TestMailbox, TestQueues, ca_file};
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "account-cli-test-token";

/// A child process that is killed when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Env {
    // Processes first: they stop before their database and queues go.
    coordinator: Proc,
    _worker: Option<Proc>,
    _queues: TestQueues,
    db: TestDb,
    api: String,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

fn mailfleet(db: &TestDb, queues: &TestQueues, role: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailfleet"));
    c.arg(role)
        .env("DATABASE_URL", &db.url)
        .env("AMQP_URL", mailfleet_testkit::amqp_url())
        .env("MAILFLEET_QUEUE_PREFIX", &queues.prefix)
        .env("MAILFLEET_SECRET_KEY", TEST_SECRET_KEY)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    c
}

/// A coordinator (and a worker) of their own, on a database and queues of their own.
async fn start(with_worker: bool) -> Env {
    mailfleet_testkit::init();
    let db = TestDb::create().await;
    let queues = TestQueues::new();
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let coordinator = Proc(
        mailfleet(&db, &queues, "coordinator")
            .env("MAILFLEET_API_ADDR", addr.to_string())
            .env("MAILFLEET_API_TOKEN", TOKEN)
            .spawn()
            .expect("start mailfleet coordinator"),
    );
    let worker = with_worker.then(|| {
        Proc(
            mailfleet(&db, &queues, "worker")
                .env("MAILFLEET_EXTRA_CA_FILE", ca_file())
                .env("MAILFLEET_HEALTH_ADDR", "127.0.0.1:0")
                .env("MAILFLEET_WORKER_SLOTS", "2")
                .spawn()
                .expect("start mailfleet worker"),
        )
    });
    let mut env = Env {
        coordinator,
        _worker: worker,
        _queues: queues,
        db,
        api: format!("http://{addr}"),
    };
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{}/readyz", env.api)).send().await
            && r.status() == 200
        {
            break;
        }
        if let Some(status) = env.coordinator.0.try_wait().unwrap() {
            panic!("the coordinator exited: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the coordinator is not ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env
}

impl Env {
    /// A CRM user, made through the API.
    async fn user(&self, email: &str, admin: bool) -> i64 {
        let resp = reqwest::Client::new()
            .post(format!("{}/v1/users", self.api))
            .bearer_auth(TOKEN)
            .json(&json!({ "email": email, "is_admin": admin }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        resp.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
    }

    /// `mailfleet account ARGS` as `user`, with `stdin` as its input.
    fn account(&self, user: i64, args: &[&str], stdin: &str) -> Run {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mailfleet"))
            .arg("account")
            .args(args)
            .env("MAILFLEET_API_URL", &self.api)
            .env("MAILFLEET_API_TOKEN", TOKEN)
            .env("MAILFLEET_USER", user.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run mailfleet account");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        Run {
            code: out.status.code().expect("exited"),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }
}

fn server_args(mailbox: &TestMailbox) -> Vec<&str> {
    vec![
        "--email",
        &mailbox.address,
        "--imap-host",
        "127.0.0.1",
        "--imap-port",
        "993",
        "--imap-encryption",
        "ssl",
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        "587",
        "--smtp-encryption",
        "starttls",
        "--password-stdin",
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_add_list_primary_and_delete_through_the_api() {
    // A worker lists the chosen folders before the API connects the account.
    let env = start(true).await;
    let ann = env.user("ann@example.test", false).await;
    let mailbox = TestMailbox::create();
    let password = format!("{}\n", mailbox.password);

    let mut add = vec!["--json", "add"];
    add.extend(server_args(&mailbox));
    add.extend(["--sync-from", "1_month", "--folder", "INBOX"]);
    let created = env.account(ann, &add, &password).ok();
    assert!(!created.stdout.contains(&mailbox.password));
    assert!(!created.stderr.contains(&mailbox.password));
    let account = created.json();
    let id = account["id"].as_i64().unwrap();
    assert_eq!(account["email"], mailbox.address.as_str());
    assert_eq!(account["kind"], "personal");
    assert_eq!(account["owner_user_id"], ann);
    assert_eq!(account["imap"]["port"], 993);
    assert_eq!(account["smtp"]["encryption"], "starttls");
    assert_eq!(account["sync_from"], "1_month");
    assert_eq!(account["create_contacts"], false);

    // The password went from stdin to the sealed credentials as it is, without the newline.
    let stored = {
        let store = env.db.store();
        let mut conn = store.conn().await.unwrap();
        mailfleet_store::accounts::get(&mut conn, id).await.unwrap()
    };
    let key = SecretKey::from_base64(TEST_SECRET_KEY).unwrap();
    let Credentials::Password { password: sealed } =
        Credentials::open(&key, id, &stored.credentials).unwrap()
    else {
        panic!("an IMAP account holds a password")
    };
    assert_eq!(sealed.expose(), &mailbox.password);

    let list = env.account(ann, &["list", "--json"], "").ok().json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["is_primary"], false);

    let primary = env.account(ann, &["primary", &id.to_string()], "").ok();
    assert!(primary.stdout.contains("primary"), "{}", primary.stdout);
    let table = env.account(ann, &["list"], "").ok().stdout;
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("ID") && header.contains("LAST SYNC"),
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.contains(&mailbox.address))
        .unwrap_or_else(|| panic!("no row for the account:\n{table}"));
    assert!(row.contains(" * ") && row.contains("personal") && row.contains("active"));

    // Another user: the account is not theirs to see, and they are told so with a 4xx.
    let bob = env.user("bob@example.test", false).await;
    let refused = env.account(bob, &["delete", &id.to_string(), "--yes"], "");
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.starts_with("error: not_found: "),
        "{}",
        refused.stderr
    );

    // A user that does not exist.
    let unknown = env.account(999_999, &["list"], "");
    assert_eq!(unknown.code, 2);
    assert_eq!(
        unknown.stderr.trim(),
        "error: unknown_user: user 999999 does not exist"
    );
    assert!(unknown.stdout.is_empty());

    // Without --yes the deletion asks; anything but yes keeps the account.
    let kept = env.account(ann, &["delete", &id.to_string()], "n\n");
    assert_eq!(kept.code, 1, "{}", kept.stderr);
    assert!(kept.stderr.contains("Not deleted."), "{}", kept.stderr);
    let deleted = env
        .account(ann, &["delete", &id.to_string(), "--yes"], "")
        .ok();
    assert!(deleted.stdout.starts_with(&format!("Deleted account {id}")));
    let list = env.account(ann, &["list", "--json"], "").ok().json();
    assert_eq!(list, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_test_and_an_interactive_add_pick_folders_through_a_worker() {
    let env = start(true).await;
    let ann = env.user("ann@example.test", false).await;
    let mailbox = TestMailbox::create();
    let password = format!("{}\n", mailbox.password);

    let mut test = vec!["test"];
    test.extend(server_args(&mailbox));
    let passed = env.account(ann, &test, &password).ok();
    assert!(
        passed.stdout.contains("Connection test passed"),
        "{}",
        passed.stdout
    );
    assert!(
        passed.stdout.lines().any(|l| l.starts_with("INBOX ")),
        "{}",
        passed.stdout
    );

    let failed = env.account(ann, &test, "not-the-password\n");
    assert_eq!(failed.code, 1);
    assert!(
        failed.stderr.starts_with("error: auth_failed: IMAP: "),
        "{}",
        failed.stderr
    );

    // Which number Sent has in the list `add` shows: the selectable folders, the inbox first.
    test.insert(0, "--json");
    let found = env.account(ann, &test, &password).ok().json();
    let mut selectable: Vec<&str> = found["folders"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["selectable"] == true)
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    selectable.sort_by_key(|n| *n != "INBOX");
    let number = |name: &str| 1 + selectable.iter().position(|n| *n == name).unwrap();

    let mut add = vec!["add"];
    add.extend(server_args(&mailbox));
    add.extend(["--sync-from", "now"]);
    let answer = format!("{password}{}, {}\n", number("Sent"), number("INBOX"));
    let added = env.account(ann, &add, &answer).ok();
    assert!(
        added.stderr.contains("  1. INBOX") && added.stderr.contains("Folders to sync"),
        "{}",
        added.stderr
    );
    assert!(
        added.stdout.contains("syncing Sent, INBOX"),
        "{}",
        added.stdout
    );
    let id = env.account(ann, &["list", "--json"], "").ok().json()[0]["id"]
        .as_i64()
        .unwrap()
        .to_string();

    // The first sync lists the folders; only those picked are active.
    let started = Instant::now();
    let account = loop {
        let a = env
            .account(ann, &["folders", &id, "--json"], "")
            .ok()
            .json();
        if a["last_synced_at"].is_string() {
            break a;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never synced: {a}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let active = |a: &Value| -> Vec<String> {
        let mut v: Vec<String> = a["folders"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["active"] == true)
            .map(|f| f["name"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(active(&account), ["INBOX", "Sent"]);

    let changed = env
        .account(
            ann,
            &[
                "--json",
                "folders",
                &id,
                "--activate",
                "Archive",
                "--deactivate",
                "Sent",
                "--yes",
            ],
            "",
        )
        .ok()
        .json();
    assert_eq!(active(&changed), ["Archive", "INBOX"]);
    let shown = env.account(ann, &["folders", &id], "").ok().stdout;
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("Archive ") && l.contains(" yes ")),
        "{shown}"
    );
    let unknown = env.account(ann, &["folders", &id, "--activate", "Nope"], "");
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    assert!(unknown.stderr.starts_with("error: "), "{}", unknown.stderr);
}
