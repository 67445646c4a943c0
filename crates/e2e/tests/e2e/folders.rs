//! Active folders, the first sync's Trash/Junk rule, and the sync window.

use crate::app::App;
use chrono::{Duration, Utc};
use mailfleet_testkit::{TestMailbox, count};
use mailfleet_worker::Outcome;
use serde_json::json;
use std::collections::HashMap;
use std::time::SystemTime;

fn deliver(mailbox: &TestMailbox, folder: &str, n: usize, age: Duration, tag: &str) -> Vec<String> {
    (0..n)
        .map(|i| {
            let id = format!("{tag}-{i}@example.org");
            let date = Utc::now() - age;
            let raw = mailfleet_mailgen::simple_message(
                "sender@example.org",
                &mailbox.address,
                &format!("{tag} {i}"),
                "body",
                &id,
                date,
            );
            mailbox
                .write_message(folder, &raw, SystemTime::from(date), true, false)
                .unwrap();
            id
        })
        .collect()
}

async fn counts(app: &App, id: i64) -> (HashMap<String, i64>, HashMap<String, bool>) {
    let (_, view) = app.get(&format!("/v1/accounts/{id}")).await;
    let mut c = HashMap::new();
    let mut a = HashMap::new();
    for f in view["folders"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap().to_string();
        c.insert(name.clone(), f["message_count"].as_i64().unwrap());
        a.insert(name, f["active"].as_bool().unwrap());
    }
    (c, a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trash_and_junk_are_skipped_first_and_give_only_newer_mail_once_activated() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    deliver(&mailbox, "INBOX", 4, Duration::days(2), "inbox");
    deliver(&mailbox, "Trash", 5, Duration::days(2), "old-trash");
    deliver(&mailbox, "Junk", 3, Duration::days(2), "old-junk");
    let id = app.connect_account(&mailbox, json!({})).await["id"]
        .as_i64()
        .unwrap();
    let Outcome::Synced(_) = app.work_one().await else {
        panic!("first sync failed")
    };
    let (c, active) = counts(&app, id).await;
    assert_eq!(c["INBOX"], 4);
    assert_eq!((c["Trash"], c["Junk"]), (0, 0));
    assert_eq!(
        (active["Trash"], active["Junk"], active["Drafts"]),
        (false, false, false)
    );

    let newer = deliver(&mailbox, "Trash", 2, Duration::hours(1), "new-trash");
    let (status, view) = app
        .put(
            &format!("/v1/accounts/{id}/folders"),
            json!({ "active": ["INBOX", "Trash"] }),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        app.sync_ready().await,
        1,
        "activating a folder queues a sync"
    );
    let Outcome::Synced(report) = app.work_one().await else {
        panic!("sync failed")
    };
    assert_eq!(report.messages_added, 2, "{report:?}");
    let (c, _) = counts(&app, id).await;
    assert_eq!(c["Trash"], 2);
    for m in newer {
        assert_eq!(
            count(
                &app.db.url,
                &format!("SELECT count(*) AS count FROM messages WHERE message_id = '{m}'")
            )
            .await,
            1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivating_a_folder_drops_its_messages_and_unknown_folders_are_refused() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    deliver(&mailbox, "INBOX", 3, Duration::days(1), "i");
    deliver(&mailbox, "Archive", 4, Duration::days(1), "a");
    let id = app.connect_account(&mailbox, json!({})).await["id"]
        .as_i64()
        .unwrap();
    let Outcome::Synced(_) = app.work_one().await else {
        panic!("sync failed")
    };
    assert_eq!(counts(&app, id).await.0["Archive"], 4);

    for bad in [
        json!({ "active": ["INBOX", "Nope"] }),
        json!({ "active": "INBOX" }),
    ] {
        let (status, body) = app.put(&format!("/v1/accounts/{id}/folders"), bad).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["code"], "invalid_request");
    }
    let (c, active) = counts(&app, id).await;
    assert_eq!(
        (c["Archive"], active["Archive"]),
        (4, true),
        "a refused change changes nothing"
    );

    let (status, _) = app
        .put(
            &format!("/v1/accounts/{id}/folders"),
            json!({ "active": ["INBOX"] }),
        )
        .await;
    assert_eq!(status, 200);
    let (c, active) = counts(&app, id).await;
    assert_eq!((c["Archive"], active["Archive"]), (0, false));
    assert_eq!(c["INBOX"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_older_than_the_sync_window_is_fetched() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    let recent = deliver(&mailbox, "INBOX", 5, Duration::days(10), "recent");
    deliver(&mailbox, "INBOX", 6, Duration::days(60), "old");
    let id = app
        .connect_account(&mailbox, json!({ "sync_from": "1_month" }))
        .await["id"]
        .as_i64()
        .unwrap();
    let Outcome::Synced(report) = app.work_one().await else {
        panic!("sync failed")
    };
    assert_eq!(report.messages_added, 5);
    let stored = mailfleet_testkit::strings(
        &app.db.url,
        &format!("SELECT message_id AS value FROM messages WHERE account_id = {id} ORDER BY 1"),
    )
    .await;
    let mut want = recent;
    want.sort();
    assert_eq!(stored, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_window_cannot_be_changed_after_connecting() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    let id = app
        .connect_account(&mailbox, json!({ "sync_from": "3_months" }))
        .await["id"]
        .as_i64()
        .unwrap();
    let (status, body) = app
        .patch(
            &format!("/v1/accounts/{id}"),
            json!({ "sync_from": "6_months" }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "sync_window_fixed");
    let (status, body) = app
        .patch(
            &format!("/v1/accounts/{id}"),
            json!({ "sync_from": "3_months", "create_contacts": true }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sync_from"], "3_months");
    assert_eq!(body["create_contacts"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hourly_refresh_adds_new_folders_inactive_and_drops_vanished_and_renamed_ones() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    deliver(&mailbox, "INBOX", 2, Duration::days(1), "i");
    // Not a special-use folder: Dovecot re-creates those on its own.
    deliver(&mailbox, "Clients", 3, Duration::days(1), "a");
    let id = app
        .connect_account(&mailbox, json!({ "active_folders": ["INBOX", "Clients"] }))
        .await["id"]
        .as_i64()
        .unwrap();
    let Outcome::Synced(_) = app.work_one().await else {
        panic!("sync failed")
    };
    assert_eq!(counts(&app, id).await.0["Clients"], 3);
    // Not due yet: nothing is published.
    assert_eq!(app.scheduler.tick_refreshes().await.unwrap(), 0);

    // Behind mailfleet's back: a new folder, and Clients renamed.
    let tcp = tokio::net::TcpStream::connect("127.0.0.1:143")
        .await
        .unwrap();
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await.unwrap();
    let mut raw = client
        .login(&mailbox.address, &mailbox.password)
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    raw.create("Projects").await.unwrap();
    raw.rename("Clients", "Clients 2025").await.unwrap();
    raw.logout().await.unwrap();

    let mut conn = app.store.conn().await.unwrap();
    mailfleet_store::accounts::backdate_folder_refresh(&mut conn, id, 7200)
        .await
        .unwrap();
    drop(conn);
    assert_eq!(app.scheduler.tick_refreshes().await.unwrap(), 1);
    assert_eq!(
        app.scheduler.tick_refreshes().await.unwrap(),
        0,
        "claimed once"
    );
    let refresh = app.broker.names().refresh.clone();
    match app.worker.process_one_from(&refresh).await.unwrap() {
        Outcome::Refreshed(r) => {
            assert_eq!(r.removed, vec!["Clients".to_string()]);
            let mut added = r.added.clone();
            added.sort();
            assert_eq!(
                added,
                vec!["Clients 2025".to_string(), "Projects".to_string()]
            );
        }
        other => panic!("expected a refresh, got {other:?}"),
    }
    let (c, active) = counts(&app, id).await;
    assert!(!c.contains_key("Clients"), "the vanished folder is gone");
    assert!(!active["Projects"]);
    assert!(
        !active["Clients 2025"],
        "a rename without folder ids is a new folder"
    );
    assert_eq!(c["INBOX"], 2, "other folders are untouched");
    assert_eq!(
        count(
            &app.db.url,
            &format!("SELECT count(*) AS count FROM messages WHERE account_id = {id} AND subject LIKE 'a %' AND orphaned_at IS NULL")
        )
        .await,
        0,
        "the vanished folder's messages went with it"
    );
    assert_eq!(
        app.scheduler.tick_refreshes().await.unwrap(),
        0,
        "refreshed: not due again"
    );
    // In no folder through the next complete sync: deleted for good.
    app.post(&format!("/v1/accounts/{id}/sync"), json!({}))
        .await;
    let Outcome::Synced(report) = app.work_one().await else {
        panic!("sync failed")
    };
    assert_eq!(report.messages_deleted, 3, "{report:?}");
    assert_eq!(app.orphan_count(id).await, 0);
}

/// Replies of an IMAP server with RFC 8474 folder ids, listing `folders` as (name, id).
fn objectid_server_script(
    folders: &[(&str, &str)],
) -> std::collections::HashMap<String, (Vec<String>, String)> {
    let mut r = std::collections::HashMap::new();
    let ok = |s: &str| s.to_string();
    r.insert("LOGIN".into(), (vec![], ok("OK logged in")));
    r.insert(
        "CAPABILITY".into(),
        (vec![ok("* CAPABILITY IMAP4rev1 OBJECTID")], ok("OK done")),
    );
    r.insert("LOGOUT".into(), (vec![ok("* BYE")], ok("OK bye")));
    let list = folders
        .iter()
        .map(|(name, _)| format!("* LIST () \"/\" \"{name}\""))
        .collect();
    r.insert("LIST".into(), (list, ok("OK listed")));
    for (i, (name, id)) in folders.iter().enumerate() {
        r.insert(
            format!("EXAMINE \"{name}\""),
            (
                vec![
                    ok("* 0 EXISTS"),
                    format!("* OK [UIDVALIDITY {}] ok", i + 1),
                    ok("* OK [UIDNEXT 1] ok"),
                    format!("* OK [MAILBOXID ({id})] ok"),
                ],
                ok("OK [READ-ONLY] examined"),
            ),
        );
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_server_with_folder_ids_a_renamed_folder_keeps_its_messages() {
    use mailfleet_core::{Encryption, Secret};
    use mailfleet_imap::{ImapSettings, TlsTrust};
    let app = App::start().await;
    let before = mailfleet_testkit::ScriptedImap::start(
        "* OK IMAP4rev1 ready",
        objectid_server_script(&[("INBOX", "F-inbox"), ("Projects", "F-proj")]),
    )
    .await;
    let mailbox = TestMailbox::create(); // only for an address and password
    let id = app
        .connect_account(
            &mailbox,
            json!({
                "imap": { "host": "127.0.0.1", "port": before.port, "encryption": "none" },
                "active_folders": ["INBOX", "Projects"]
            }),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let mut conn = app.store.conn().await.unwrap();
    let account = mailfleet_store::accounts::get(&mut conn, id).await.unwrap();
    let session_to = |port: u16| {
        let settings = ImapSettings::new(
            "127.0.0.1",
            port,
            Encryption::None,
            mailbox.address.clone(),
            Secret::new(mailbox.password.clone()),
        );
        async move {
            mailfleet_imap::connect(&settings, &TlsTrust::new(None).unwrap())
                .await
                .unwrap()
        }
    };
    let mut session = session_to(before.port).await;
    assert!(session.extensions().objectid);
    mailfleet_sync::sync_account(
        &app.store,
        &mut session,
        &account,
        Default::default(),
        None,
        None,
    )
    .await
    .unwrap();
    let projects: i64 = count(
        &app.db.url,
        &format!("SELECT id AS count FROM folders WHERE account_id = {id} AND name = 'Projects'"),
    )
    .await;
    // A message in it, as a sync would have stored.
    mailfleet_testkit::strings(
        &app.db.url,
        &format!(
            "WITH m AS (
                 INSERT INTO messages (account_id, thread_key, size_bytes, content_hash, message_id)
                 VALUES ({id}, 'k', 10, '\\x00', 'kept@example.org') RETURNING id)
             INSERT INTO message_folders (message_id, folder_id, remote_id)
             SELECT id, {projects}, '1:1' FROM m RETURNING 'x' AS value"
        ),
    )
    .await;

    // The server renames Projects; the hourly refresh sees the same MAILBOXID under a new name.
    let after = mailfleet_testkit::ScriptedImap::start(
        "* OK IMAP4rev1 ready",
        objectid_server_script(&[("INBOX", "F-inbox"), ("Projects 2025", "F-proj")]),
    )
    .await;
    let mut session = session_to(after.port).await;
    let r = mailfleet_sync::refresh_folders(&app.store, &mut session, &account, None)
        .await
        .unwrap();
    assert_eq!(
        r.renamed,
        vec![("Projects".to_string(), "Projects 2025".to_string())]
    );
    assert!(r.removed.is_empty() && r.added.is_empty(), "{r:?}");
    let (c, active) = counts(&app, id).await;
    assert_eq!(c["Projects 2025"], 1, "the message stayed with its folder");
    assert!(active["Projects 2025"], "still active");
    assert_eq!(
        count(
            &app.db.url,
            &format!(
                "SELECT id AS count FROM folders WHERE account_id = {id} AND name = 'Projects 2025'"
            )
        )
        .await,
        projects,
        "the same folder row"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trash_and_junk_chosen_when_connecting_bring_no_history() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    deliver(&mailbox, "INBOX", 4, Duration::days(2), "inbox");
    deliver(&mailbox, "Trash", 5, Duration::days(2), "old-trash");
    deliver(&mailbox, "Junk", 3, Duration::days(2), "old-junk");
    let id = app
        .connect_account(
            &mailbox,
            json!({ "active_folders": ["INBOX", "Trash", "Junk"] }),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let Outcome::Synced(report) = app.work_one().await else {
        panic!("first sync failed")
    };
    assert_eq!(report.messages_added, 4, "{report:?}");
    let (c, active) = counts(&app, id).await;
    assert_eq!((c["INBOX"], c["Trash"], c["Junk"]), (4, 0, 0));
    assert_eq!((active["Trash"], active["Junk"]), (true, true));

    // Newer mail in them arrives.
    deliver(&mailbox, "Trash", 2, Duration::hours(1), "new-trash");
    deliver(&mailbox, "Junk", 1, Duration::hours(1), "new-junk");
    app.post(&format!("/v1/accounts/{id}/sync"), json!({}))
        .await;
    let Outcome::Synced(report) = app.work_one().await else {
        panic!("second sync failed")
    };
    assert_eq!(report.messages_added, 3, "{report:?}");
    let (c, _) = counts(&app, id).await;
    assert_eq!((c["INBOX"], c["Trash"], c["Junk"]), (4, 2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trash_activated_later_on_an_account_connected_with_chosen_folders_gets_only_newer_mail() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    deliver(&mailbox, "INBOX", 3, Duration::days(2), "inbox");
    deliver(&mailbox, "Trash", 11, Duration::days(3), "old-trash");
    let id = app
        .connect_account(&mailbox, json!({ "active_folders": ["INBOX"] }))
        .await["id"]
        .as_i64()
        .unwrap();
    let Outcome::Synced(_) = app.work_one().await else {
        panic!("first sync failed")
    };
    // Mail that reaches Trash after the first sync is "newer": it comes once Trash is active.
    let newer = deliver(&mailbox, "Trash", 2, Duration::hours(1), "new-trash");
    let (status, view) = app
        .put(
            &format!("/v1/accounts/{id}/folders"),
            json!({ "active": ["INBOX", "Trash"] }),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    let Outcome::Synced(report) = app.work_one().await else {
        panic!("sync failed")
    };
    assert_eq!(report.messages_added, 2, "{report:?}");
    let (c, _) = counts(&app, id).await;
    assert_eq!(c["Trash"], 2);
    let stored = mailfleet_testkit::strings(
        &app.db.url,
        &format!(
            "SELECT m.message_id AS value FROM messages m JOIN message_folders mf ON mf.message_id = m.id JOIN folders f ON f.id = mf.folder_id
             WHERE f.account_id = {id} AND f.name = 'Trash' ORDER BY 1"
        ),
    )
    .await;
    let mut newer = newer;
    newer.sort();
    assert_eq!(stored, newer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_names_are_stored_and_shown_as_people_write_them() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    // Dovecot keeps folders under their modified UTF-7 names (RFC 3501 §5.1.3).
    deliver(&mailbox, "INBOX", 1, Duration::days(1), "inbox");
    deliver(
        &mailbox,
        "Projekte/&ANw-bersicht",
        3,
        Duration::days(1),
        "projekte",
    );
    deliver(&mailbox, "Tom &- Jerry", 2, Duration::days(1), "cartoons");

    // The connection test lists them decoded.
    let (status, tested) = app
        .post(
            "/v1/connection-tests",
            json!({
                "email": mailbox.address, "password": mailbox.password,
                "imap": { "host": "127.0.0.1", "port": 993, "encryption": "ssl" },
                "smtp": { "host": "127.0.0.1", "port": 587, "encryption": "starttls" }
            }),
        )
        .await;
    assert_eq!(status, 200, "{tested}");
    let names: Vec<&str> = tested["folders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"Projekte/Übersicht"), "{names:?}");
    assert!(names.contains(&"Tom & Jerry"), "{names:?}");
    assert!(!names.iter().any(|n| n.contains("&ANw-")), "{names:?}");

    // A name the server doesn't list is refused before anything is stored — the wire form
    // too, which is not the folder's name.
    for wrong in ["Projekte/Uebersicht", "Projekte/&ANw-bersicht"] {
        let owner = app.create_user().await;
        app.act_as(owner);
        let (status, body) = app
            .post(
                "/v1/accounts",
                json!({
                    "provider": "imap", "kind": "personal",
                    "email": mailbox.address, "password": mailbox.password,
                    "imap": { "host": "127.0.0.1", "port": 993, "encryption": "ssl" },
                    "smtp": { "host": "127.0.0.1", "port": 587, "encryption": "starttls" },
                    "sync_from": "1_month", "active_folders": ["INBOX", wrong]
                }),
            )
            .await;
        assert_eq!(status, 422, "{wrong}: {body}");
        assert!(body["message"].as_str().unwrap().contains(wrong), "{body}");
    }
    assert_eq!(
        count(&app.db.url, "SELECT count(*) AS count FROM accounts").await,
        0,
        "nothing stored"
    );

    let id = app
        .connect_account(
            &mailbox,
            json!({ "active_folders": ["INBOX", "Projekte/Übersicht", "Tom & Jerry"] }),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let Outcome::Synced(report) = app.work_one().await else {
        panic!("sync failed")
    };
    assert_eq!(report.messages_added, 6, "{report:?}");
    let (c, active) = counts(&app, id).await;
    assert_eq!((c["Projekte/Übersicht"], c["Tom & Jerry"]), (3, 2));
    assert!(active["Projekte/Übersicht"]);
    let stored = mailfleet_testkit::strings(
        &app.db.url,
        &format!("SELECT name AS value FROM folders WHERE account_id = {id} ORDER BY 1"),
    )
    .await;
    assert!(
        stored.contains(&"Projekte/Übersicht".to_string()),
        "{stored:?}"
    );
    assert!(!stored.iter().any(|n| n.contains("&ANw-")), "{stored:?}");

    // Incremental syncs open the folder by its wire name.
    deliver(
        &mailbox,
        "Projekte/&ANw-bersicht",
        1,
        Duration::hours(1),
        "later",
    );
    app.post(&format!("/v1/accounts/{id}/sync"), json!({}))
        .await;
    let Outcome::Synced(report) = app.work_one().await else {
        panic!("second sync failed")
    };
    assert_eq!(report.messages_added, 1, "{report:?}");
    assert!(report.failed_folders.is_empty(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_decodes_folder_names_stored_in_modified_utf7() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    let id = app.connect_account(&mailbox, json!({})).await["id"]
        .as_i64()
        .unwrap();
    mailfleet_testkit::execute(
        &app.db.url,
        &format!(
            "INSERT INTO folders (account_id, name, active, selectable) VALUES
             ({id}, 'Projekte/&ANw-bersicht', true, true),
             ({id}, '~peter/mail/&U,BTFw-/&ZeVnLIqe-', false, true),
             ({id}, 'Tom &- Jerry', false, true),
             ({id}, '&2D3eAA- Fun', false, true),
             ({id}, 'Caf&AOk', false, true),
             ({id}, '&AGE-', false, true)"
        ),
    )
    .await;
    // What stood before this migration: its SQL once more over these rows.
    mailfleet_testkit::batch_execute(
        &app.db.url,
        include_str!("../../../../migrations/2026-12-04-000014_decode_folder_names/up.sql"),
    )
    .await;
    let names = mailfleet_testkit::strings(
        &app.db.url,
        &format!("SELECT name AS value FROM folders WHERE account_id = {id} ORDER BY id"),
    )
    .await;
    assert_eq!(
        names,
        [
            "Projekte/Übersicht",
            "~peter/mail/台北/日本語",
            "Tom & Jerry",
            "😀 Fun",
            "Caf&AOk", // not modified UTF-7: kept as the server sent it
            "&AGE-",   // likewise ("a" must not be shifted)
        ]
    );
}
