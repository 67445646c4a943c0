//! The conformance suite: what every provider must do, run against every real server here —
//! Dovecot (CONDSTORE, QRESYNC, MOVE), Cyrus IMAP 3.6 (CONDSTORE, QRESYNC, OBJECTID, MOVE) and
//! Courier-IMAP (none of them: the fallbacks). Each scenario is written once, against a
//! `Server`; what a server lacks is skipped by its capabilities, never by its name. (The Gmail
//! and Graph fakes join with their providers.)

use crate::app::{App, OtherClient, flags_of_uid, other_client, uids_with_message_id};
use chrono::{DateTime, Duration, Utc};
use futures::TryStreamExt;
use mailfleet_provider::ErrorClass;
use mailfleet_testkit::count;
use mailfleet_worker::Outcome;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Dovecot,
    Cyrus,
    Courier,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Dovecot => "dovecot",
            Server::Cyrus => "cyrus",
            Server::Courier => "courier",
        }
    }

    fn imaps_port(self) -> u16 {
        match self {
            Server::Dovecot => 993,
            Server::Cyrus => 1993,
            Server::Courier => 2993,
        }
    }

    /// A folder's name on this server (Courier keeps folders under `INBOX.`).
    fn folder(self, name: &str) -> String {
        match self {
            Server::Courier if name != "INBOX" => format!("INBOX.{name}"),
            _ => name.to_owned(),
        }
    }
}

/// A mail user on one server (and on Dovecot, whose SASL the SMTP submission uses), deleted
/// when dropped.
struct User {
    server: Server,
    address: String,
    password: String,
}

fn mail_user(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/mail-user.sh");
    let out = std::process::Command::new(script)
        .args(args)
        .output()
        .expect("run scripts/mail-user.sh");
    assert!(
        out.status.success(),
        "mail-user.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl User {
    fn create(server: Server) -> Self {
        let suffix = mailfleet_testkit::unique_suffix();
        let user = Self {
            server,
            address: format!("c-{suffix}@example.test"),
            password: format!("pw-{suffix}"),
        };
        let mut args = vec!["--server", "dovecot"];
        if server != Server::Dovecot {
            args.extend(["--server", server.name()]);
        }
        args.extend(["add", &user.address, &user.password]);
        mail_user(&args);
        user
    }

    async fn client(&self) -> OtherClient {
        other_client(self.server.imaps_port(), &self.address, &self.password).await
    }

    /// Appends a message to `folder` (this server's name for it) as the other client; its
    /// INTERNALDATE `age` ago. Returns its Message-ID.
    async fn deliver(&self, folder: &str, tag: &str, age: Duration) -> String {
        let id = format!("{tag}-{}@example.org", mailfleet_testkit::unique_suffix());
        let date: DateTime<Utc> = Utc::now() - age;
        let raw = mailfleet_mailgen::simple_message(
            "carol@client.example.org",
            &self.address,
            tag,
            "body",
            &id,
            date,
        );
        let mut c = self.client().await;
        let when = format!("\"{}\"", date.format("%d-%b-%Y %H:%M:%S +0000"));
        c.append(self.server.folder(folder), None, Some(&when), &raw)
            .await
            .unwrap();
        c.logout().await.unwrap();
        id
    }

    /// The UID of the message with this Message-ID in `folder`, selected read-write.
    async fn find(c: &mut OtherClient, folder: &str, message_id: &str) -> Option<u32> {
        c.select(folder).await.unwrap();
        uids_with_message_id(c, message_id).await.into_iter().next()
    }

    async fn store(&self, folder: &str, message_id: &str, change: &str) {
        let mut c = self.client().await;
        let uid = Self::find(&mut c, &self.server.folder(folder), message_id)
            .await
            .expect("the message is there");
        let _: Vec<_> = c
            .uid_store(uid.to_string(), change)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        c.logout().await.unwrap();
    }

    async fn delete(&self, folder: &str, message_id: &str) {
        self.store(folder, message_id, "+FLAGS.SILENT (\\Deleted)")
            .await;
        let mut c = self.client().await;
        c.select(self.server.folder(folder)).await.unwrap();
        let _: Vec<_> = c.expunge().await.unwrap().try_collect().await.unwrap();
        c.logout().await.unwrap();
    }

    /// Copies to `to` and expunges from `from`: a move as every server can do it.
    async fn move_to(&self, from: &str, to: &str, message_id: &str) {
        let mut c = self.client().await;
        let uid = Self::find(&mut c, &self.server.folder(from), message_id)
            .await
            .expect("the message is there");
        c.uid_copy(uid.to_string(), self.server.folder(to))
            .await
            .unwrap();
        drop(c);
        self.delete(from, message_id).await;
    }

    /// Flags of the message in `folder` as another client sees them; `None`: not there.
    async fn flags(&self, folder: &str, message_id: &str) -> Option<Vec<String>> {
        let mut c = self.client().await;
        let uid = Self::find(&mut c, &self.server.folder(folder), message_id).await?;
        let flags = flags_of_uid(&mut c, uid).await;
        c.logout().await.unwrap();
        Some(flags)
    }

    async fn has(&self, capability: &str) -> bool {
        let mut c = self.client().await;
        let has = c.capabilities().await.unwrap().has_str(capability);
        c.logout().await.unwrap();
        has
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let mut args = vec!["--server", "dovecot"];
        if self.server != Server::Dovecot {
            args.extend(["--server", self.server.name()]);
        }
        args.extend(["del", &self.address]);
        mail_user(&args);
    }
}

/// Connects the user's account on its server (IMAPS, SMTP through the local Postfix).
async fn connect(app: &App, user: &User, extra: Value) -> i64 {
    let mut body = json!({
        "imap": { "host": "127.0.0.1", "port": user.server.imaps_port(), "encryption": "ssl" },
        "sync_from": "1_month",
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    app.connect_with(&user.address, &user.password, body).await["id"]
        .as_i64()
        .unwrap()
}

/// Stored messages per folder name, and which folders are active.
async fn folders(app: &App, id: i64) -> Vec<(String, i64, bool)> {
    let (_, view) = app.get(&format!("/v1/accounts/{id}")).await;
    view["folders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_owned(),
                f["message_count"].as_i64().unwrap(),
                f["active"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn folder<'a>(all: &'a [(String, i64, bool)], name: &str) -> &'a (String, i64, bool) {
    all.iter()
        .find(|f| f.0 == name)
        .unwrap_or_else(|| panic!("no folder {name} in {all:?}"))
}

async fn act(app: &App, body: Value) -> Value {
    let (status, action) = app.post("/v1/mailbox-actions", body).await;
    assert_eq!(status, 202, "{action}");
    action
}

/// Folders, the sync window, and the first sync leaving Trash and Junk out.
async fn first_sync(server: Server) {
    let app = App::start().await;
    let user = User::create(server);
    let (recent, old) = (
        user.deliver("INBOX", "recent", Duration::days(2)).await,
        user.deliver("INBOX", "old", Duration::days(60)).await,
    );
    user.deliver("Archive", "archived", Duration::days(3)).await;
    user.deliver("Trash", "trashed", Duration::days(1)).await;
    user.deliver("Junk", "junk", Duration::days(1)).await;
    let id = connect(&app, &user, json!({})).await;
    let report = app.sync(id).await;
    assert_eq!(report.messages_added, 2, "{server:?}: {report:?}");
    let all = folders(&app, id).await;
    assert_eq!(
        folder(&all, "INBOX").1,
        1,
        "{server:?}: only what is in the window"
    );
    assert_eq!(folder(&all, &server.folder("Archive")).1, 1);
    for skipped in ["Trash", "Junk"] {
        let f = folder(&all, &server.folder(skipped));
        assert_eq!(
            (f.1, f.2),
            (0, false),
            "{server:?}: {skipped} is not synced first"
        );
    }
    assert!(app.row_of(&recent).await > 0);
    assert_eq!(
        count(
            &app.db.url,
            &format!("SELECT count(*) AS count FROM messages WHERE message_id = '{old}'")
        )
        .await,
        0
    );
}

/// New mail, flag changes and deletions made in another client reach the CRM; the CRM's
/// actions reach the server; a move either way keeps the message's row.
async fn both_ways(server: Server) {
    let app = App::start().await;
    let user = User::create(server);
    let (a, b, c) = (
        user.deliver("INBOX", "a", Duration::days(1)).await,
        user.deliver("INBOX", "b", Duration::days(1)).await,
        user.deliver("Archive", "c", Duration::days(1)).await,
    );
    let archive = server.folder("Archive");
    let id = connect(&app, &user, json!({ "active_folders": ["INBOX", archive] })).await;
    app.sync(id).await;
    let (a_id, b_id, c_id) = (
        app.row_of(&a).await,
        app.row_of(&b).await,
        app.row_of(&c).await,
    );

    // The other client: new mail, a flag, a deletion, a move.
    let d = user.deliver("INBOX", "d", Duration::hours(1)).await;
    user.store("INBOX", &a, "+FLAGS.SILENT (\\Flagged)").await;
    user.delete("INBOX", &b).await;
    user.move_to("Archive", "INBOX", &c).await;
    let report = app.sync(id).await;
    assert_eq!(report.messages_added, 1, "{server:?}: {report:?}");
    assert_eq!(report.messages_attached, 1, "{server:?}: {report:?}");
    assert!(app.row_of(&d).await > 0);
    let (_, m) = app.get(&format!("/v1/messages/{a_id}")).await;
    assert_eq!(m["flags"], json!(["\\Flagged"]), "{server:?}: {m}");
    let (status, _) = app.get(&format!("/v1/messages/{b_id}")).await;
    assert_eq!(status, 404, "{server:?}: deleted elsewhere");
    let (_, m) = app.get(&format!("/v1/messages/{c_id}")).await;
    assert_eq!(
        m["folders"],
        json!(["INBOX"]),
        "{server:?}: moved elsewhere, same row"
    );

    // The CRM: read, unflag, move; each reaches the server at the next sync.
    act(
        &app,
        json!({ "message_ids": [a_id], "action": "mark_read" }),
    )
    .await;
    act(&app, json!({ "message_ids": [a_id], "action": "unflag" })).await;
    act(
        &app,
        json!({ "message_ids": [c_id], "action": "move", "folder": archive }),
    )
    .await;
    let report = app.sync(id).await;
    assert_eq!(report.actions.done, 3, "{server:?}: {report:?}");
    assert_eq!(
        user.flags("INBOX", &a).await,
        Some(vec!["Seen".to_string()])
    );
    assert_eq!(user.flags("INBOX", &c).await, None, "{server:?}");
    assert!(user.flags("Archive", &c).await.is_some(), "{server:?}");
    let report = app.sync(id).await;
    assert_eq!(
        (
            report.messages_added,
            report.messages_removed,
            report.messages_deleted
        ),
        (0, 0, 0),
        "{server:?}: the CRM's move is known: {report:?}"
    );
    assert_eq!(app.row_of(&c).await, c_id);
    let (_, m) = app.get(&format!("/v1/messages/{c_id}")).await;
    assert_eq!(m["folders"], json!([archive]), "{server:?}: {m}");

    // And back: unread, flagged.
    act(
        &app,
        json!({ "message_ids": [a_id], "action": "mark_unread" }),
    )
    .await;
    act(&app, json!({ "message_ids": [a_id], "action": "flag" })).await;
    let report = app.sync(id).await;
    assert_eq!(report.actions.done, 2, "{server:?}: {report:?}");
    assert_eq!(
        user.flags("INBOX", &a).await,
        Some(vec!["Flagged".to_string()])
    );

    // Trash and spam: to the server's Trash and Junk; they leave the CRM.
    act(&app, json!({ "message_ids": [a_id], "action": "trash" })).await;
    act(
        &app,
        json!({ "message_ids": [app.row_of(&d).await], "action": "mark_spam" }),
    )
    .await;
    let report = app.sync(id).await;
    assert_eq!(report.actions.done, 2, "{server:?}: {report:?}");
    assert!(
        user.flags("Trash", &a).await.is_some(),
        "{server:?}: in Trash"
    );
    assert!(
        user.flags("Junk", &d).await.is_some(),
        "{server:?}: in Junk"
    );

    // A change made meanwhile in another client is reported, not overwritten — where the
    // server can tell (CONDSTORE).
    if user.has("CONDSTORE").await {
        act(&app, json!({ "message_ids": [c_id], "action": "flag" })).await;
        user.store("Archive", &c, "+FLAGS.SILENT (\\Seen)").await;
        let report = app.sync(id).await;
        assert_eq!(report.actions.conflicts, 1, "{server:?}: {report:?}");
        assert_eq!(
            user.flags("Archive", &c).await,
            Some(vec!["Seen".to_string()])
        );
    }
}

/// Sending: the message goes out through SMTP and its copy is in Sent once — on the server
/// and in the CRM.
async fn sent_copy(server: Server) {
    let app = App::start().await;
    let user = User::create(server);
    let id = connect(&app, &user, json!({ "active_folders": ["INBOX"] })).await;
    app.sync(id).await;
    let (status, sent) = app
        .post(
            "/v1/messages",
            json!({ "account_id": id, "to": [user.address], "subject": "Quote", "text": "Hello" }),
        )
        .await;
    assert_eq!(status, 202, "{sent}");
    app.work_send().await;
    let (_, sent) = app
        .get(&format!("/v1/outgoing-messages/{}", sent["id"]))
        .await;
    assert_eq!(sent["status"], "sent", "{server:?}: {sent}");
    let message_id = sent["message_id"].as_str().unwrap();
    let mut c = user.client().await;
    c.examine(server.folder("Sent")).await.unwrap();
    let copies = uids_with_message_id(&mut c, message_id).await.len();
    c.logout().await.unwrap();
    assert_eq!(
        copies,
        1,
        "{server:?}: one copy in Sent: {sent} {:?}",
        folders(&app, id).await
    );
    assert_eq!(
        count(
            &app.db.url,
            &format!("SELECT count(*) AS count FROM messages WHERE message_id = '{message_id}'")
        )
        .await,
        1
    );
}

/// A refused password disables the account with a reason; it is not retried.
async fn auth_failure(server: Server) {
    let app = App::start().await;
    let user = User::create(server);
    let mut body = json!({
        "imap": { "host": "127.0.0.1", "port": server.imaps_port(), "encryption": "ssl" },
        "sync_from": "1_month",
    });
    body["password"] = json!("not-the-password");
    let id = app
        .connect_with(&user.address, "not-the-password", body)
        .await["id"]
        .as_i64()
        .unwrap();
    let Outcome::Failed(e) = app.work_one().await else {
        panic!("{server:?}: expected an authentication failure")
    };
    assert_eq!(e.class(), ErrorClass::AuthFailed, "{server:?}: {e}");
    let (_, view) = app.get(&format!("/v1/accounts/{id}")).await;
    assert_eq!(
        (view["state"].clone(), view["disabled_reason"].clone()),
        (json!("disabled"), json!("auth_failed"))
    );
}

/// Where the server gives folders and messages ids of their own (RFC 8474 OBJECTID): a
/// renamed folder keeps its row and messages, and a copy in another folder is the same
/// message (its EMAILID), one row in two folders. Servers without ids skip this.
async fn object_ids(server: Server) {
    let app = App::start().await;
    let user = User::create(server);
    if !user.has("OBJECTID").await {
        return;
    }
    let projects = server.folder("Projects");
    let mut c = user.client().await;
    c.create(&projects).await.unwrap();
    c.logout().await.unwrap();
    let a = user.deliver("INBOX", "a", Duration::days(1)).await;
    let p = user.deliver("Projects", "p", Duration::days(1)).await;
    let id = connect(
        &app,
        &user,
        json!({ "active_folders": ["INBOX", projects] }),
    )
    .await;
    app.sync(id).await;
    let (a_id, p_id) = (app.row_of(&a).await, app.row_of(&p).await);

    // A copy: the same message (EMAILID), now in two folders.
    let mut c = user.client().await;
    let uid = User::find(&mut c, "INBOX", &a).await.unwrap();
    c.uid_copy(uid.to_string(), &projects).await.unwrap();
    c.logout().await.unwrap();
    let report = app.sync(id).await;
    assert_eq!(
        (report.messages_added, report.messages_attached),
        (0, 1),
        "{server:?}: {report:?}"
    );
    let (_, m) = app.get(&format!("/v1/messages/{a_id}")).await;
    let mut shown: Vec<String> = serde_json::from_value(m["folders"].clone()).unwrap();
    shown.sort();
    let mut expected = vec!["INBOX".to_string(), projects.clone()];
    expected.sort();
    assert_eq!(shown, expected, "{server:?}: {m}");

    // A rename: the folder keeps its row, its messages and its being active.
    let renamed = server.folder("Projects 2026");
    let mut c = user.client().await;
    c.rename(&projects, &renamed).await.unwrap();
    c.logout().await.unwrap();
    let mut conn = app.store.conn().await.unwrap();
    mailfleet_store::accounts::backdate_folder_refresh(&mut conn, id, 7200)
        .await
        .unwrap();
    drop(conn);
    assert_eq!(app.scheduler.tick_refreshes().await.unwrap(), 1);
    let refresh = app.broker.names().refresh.clone();
    match app.worker.process_one_from(&refresh).await.unwrap() {
        Outcome::Refreshed(r) => {
            assert_eq!(
                r.renamed,
                vec![(projects.clone(), renamed.clone())],
                "{server:?}: {r:?}"
            )
        }
        other => panic!("expected a refresh, got {other:?}"),
    }
    let report = app.sync(id).await;
    assert_eq!(
        (report.messages_added, report.messages_deleted),
        (0, 0),
        "{server:?}: {report:?}"
    );
    assert_eq!(app.row_of(&p).await, p_id, "{server:?}: the same row");
    let all = folders(&app, id).await;
    let f = folder(&all, &renamed);
    assert_eq!((f.1, f.2), (2, true), "{server:?}: {all:?}");
}

macro_rules! conformance {
    ($($server:ident: $variant:expr),+ $(,)?) => {$(
        mod $server {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn first_sync_takes_the_window_and_skips_trash_and_junk() {
                first_sync($variant).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn changes_reach_each_side_and_moves_keep_the_row() {
                both_ways($variant).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_sent_message_is_filed_in_sent_once() {
                sent_copy($variant).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_refused_password_disables_the_account() {
                auth_failure($variant).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn with_object_ids_renames_and_copies_keep_identity() {
                object_ids($variant).await;
            }
        }
    )+};
}

conformance!(dovecot: Server::Dovecot, cyrus: Server::Cyrus, courier: Server::Courier);

/// Network trouble (nobody listening where the server was) is transient: retried later with
/// a growing delay, the account stays enabled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_out_of_reach_is_transient_and_never_disables_the_account() {
    let app = App::start().await;
    // A port nobody listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let id = app
        .connect_with(
            "away@example.test",
            "secret",
            json!({ "imap": { "host": "127.0.0.1", "port": port, "encryption": "ssl" } }),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let Outcome::Failed(e) = app.work_one().await else {
        panic!("expected a network failure")
    };
    assert_eq!(e.class(), ErrorClass::Transient, "{e}");
    let (_, view) = app.get(&format!("/v1/accounts/{id}")).await;
    assert_eq!(view["state"], "active", "{view}");
    assert!(view["last_error"].is_string(), "{view}");
}

/// A provider's rate limit (IMAP: RFC 5530 `[LIMIT]`, Gmail's `[THROTTLED]`) is retried
/// later — at the time the provider gave, else after the growing delay — and never taken for
/// bad credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_is_retried_later_and_never_disables_the_account() {
    let app = App::start().await;
    let mut replies = std::collections::HashMap::new();
    replies.insert(
        "CAPABILITY".to_string(),
        (
            vec!["* CAPABILITY IMAP4rev1".to_string()],
            "OK done".to_string(),
        ),
    );
    replies.insert(
        "LOGIN".to_string(),
        (
            vec![],
            "NO [LIMIT] Too many simultaneous connections".to_string(),
        ),
    );
    let server = mailfleet_testkit::ScriptedImap::start("* OK IMAP4rev1 ready", replies).await;
    let id = app
        .connect_with(
            "limited@example.test",
            "secret",
            json!({ "imap": { "host": "127.0.0.1", "port": server.port, "encryption": "none" } }),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let Outcome::Failed(e) = app.work_one().await else {
        panic!("expected a rate limit")
    };
    assert_eq!(e.class(), ErrorClass::RateLimited, "{e}");
    let (_, view) = app.get(&format!("/v1/accounts/{id}")).await;
    assert_eq!(view["state"], "active", "{view}");
    // No time given: the first step of the growing delay (30 s, up to 20 % jitter).
    let wait = count(
        &app.db.url,
        &format!(
            "SELECT extract(epoch FROM next_attempt_at - last_sync_attempt_at)::bigint AS count
             FROM accounts WHERE id = {id}"
        ),
    )
    .await;
    assert!((30..=36).contains(&wait), "{wait}");

    // A provider that says how long (Retry-After) is taken at its word.
    let mut conn = app.store.conn().await.unwrap();
    mailfleet_store::accounts::fail_sync(&mut conn, id, "rate limited", Some(90), 3600)
        .await
        .unwrap();
    let wait = count(
        &app.db.url,
        &format!(
            "SELECT extract(epoch FROM next_attempt_at - last_sync_attempt_at)::bigint AS count
             FROM accounts WHERE id = {id}"
        ),
    )
    .await;
    assert_eq!(wait, 90);
}
