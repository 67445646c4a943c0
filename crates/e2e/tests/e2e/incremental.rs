//! Incremental sync: flag changes and expunges reach Postgres, with QRESYNC, with CONDSTORE
//! only, and with neither; an unchanged folder costs a few hundred bytes; a UIDVALIDITY change
//! re-baselines without duplicates.

use crate::app::{App, raw_session, small_mailbox};
use futures::TryStreamExt;
use mailfleet_core::{Encryption, Secret};
use mailfleet_imap::{ImapSettings, TlsTrust};
use mailfleet_testkit::{TestMailbox, count, strings};
use mailfleet_worker::Outcome;
use serde_json::json;

async fn uids(s: &mut async_imap::Session<tokio::net::TcpStream>) -> Vec<u32> {
    let mut v: Vec<u32> = s.uid_search("ALL").await.unwrap().into_iter().collect();
    v.sort();
    v
}

async fn store_flags(s: &mut async_imap::Session<tokio::net::TcpStream>, uid: u32, change: &str) {
    let _: Vec<_> = s
        .uid_store(uid.to_string(), change)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
}

async fn flags_of(url: &str, uid: u32) -> String {
    strings(
        url,
        &format!(
            "SELECT array_to_string(m.flags, ' ') AS value FROM messages m JOIN message_folders mf ON mf.message_id = m.id JOIN folders f ON f.id = mf.folder_id
             WHERE f.name = 'INBOX' AND mf.remote_id LIKE '%:{uid}'"
        ),
    )
    .await
    .pop()
    .unwrap_or_else(|| "<gone>".into())
}

async fn flag_changes_and_expunges_reach_postgres(condstore: bool, qresync: bool) {
    let app = App::start_with(|c| {
        c.use_condstore = condstore;
        c.use_qresync = qresync;
    })
    .await;
    let mailbox = TestMailbox::create();
    let seeded = small_mailbox(&mailbox.address, 60, 21);
    mailbox.seed(&seeded).unwrap();
    let inbox = seeded.iter().filter(|m| m.folder == "INBOX").count() as i64;
    let id = app.connect_account(&mailbox, json!({})).await["id"]
        .as_i64()
        .unwrap();
    let Outcome::Synced(_) = app.work_one().await else {
        panic!("first sync failed")
    };

    let mut raw = raw_session(&mailbox).await;
    raw.select("INBOX").await.unwrap();
    let all = uids(&mut raw).await;
    let (flag_it, unseen_it, delete_it) = (all[0], all[1], all[2]);
    store_flags(&mut raw, flag_it, "+FLAGS (\\Flagged)").await;
    store_flags(&mut raw, unseen_it, "+FLAGS (\\Seen)").await;
    store_flags(&mut raw, unseen_it, "-FLAGS (\\Seen)").await;
    store_flags(&mut raw, delete_it, "+FLAGS (\\Deleted)").await;
    let _: Vec<_> = raw.expunge().await.unwrap().try_collect().await.unwrap();
    raw.logout().await.unwrap();

    app.post(&format!("/v1/accounts/{id}/sync"), json!({}))
        .await;
    let Outcome::Synced(report) = app.work_one().await else {
        panic!("second sync failed")
    };
    assert_eq!(report.messages_added, 0);
    assert_eq!(report.messages_removed, 1, "the expunged message");
    assert!(report.flags_updated >= 1, "{report:?}");

    let url = &app.db.url;
    assert!(flags_of(url, flag_it).await.contains("\\Flagged"));
    assert!(!flags_of(url, unseen_it).await.contains("\\Seen"));
    assert_eq!(flags_of(url, delete_it).await, "<gone>");
    let stored_inbox = count(
        url,
        &format!(
            "SELECT count(*) AS count FROM messages m JOIN message_folders mf ON mf.message_id = m.id JOIN folders f ON f.id = mf.folder_id
             WHERE f.name = 'INBOX' AND m.account_id = {id}"
        ),
    )
    .await;
    assert_eq!(stored_inbox, inbox - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_qresync_flag_changes_and_expunges_reach_postgres() {
    flag_changes_and_expunges_reach_postgres(true, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_condstore_only_flag_changes_and_expunges_reach_postgres() {
    flag_changes_and_expunges_reach_postgres(true, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_extensions_flag_changes_and_expunges_reach_postgres() {
    flag_changes_and_expunges_reach_postgres(false, false).await;
}

/// Bytes the server sends for a re-sync of an unchanged 1,000-message INBOX.
async fn bytes_for_unchanged_resync(condstore: bool, qresync: bool) -> u64 {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    let seeded = mailfleet_mailgen::generate(&mailfleet_mailgen::MailboxSpec {
        owner: mailbox.address.clone(),
        owner_name: "Owner".into(),
        count: 1000,
        seed: 4,
        now: chrono::Utc::now(),
        span_days: 20,
        folders: vec![("INBOX".into(), 1)],
        size_mix: mailfleet_mailgen::SizeMix::Small,
    });
    mailbox.seed(&seeded).unwrap();
    let id = app
        .connect_account(&mailbox, json!({ "active_folders": ["INBOX"] }))
        .await["id"]
        .as_i64()
        .unwrap();
    let Outcome::Synced(first) = app.work_one().await else {
        panic!("first sync failed")
    };
    assert_eq!(first.messages_added, 1000);

    let mut conn = app.store.conn().await.unwrap();
    let account = mailfleet_store::accounts::get(&mut conn, id).await.unwrap();
    drop(conn);
    let ca = std::fs::read(mailfleet_testkit::ca_file()).unwrap();
    let trust = TlsTrust::new(Some(("test CA", &ca))).unwrap();
    let settings = ImapSettings {
        use_condstore: condstore,
        use_qresync: qresync,
        ..ImapSettings::new(
            "127.0.0.1",
            993,
            Encryption::Ssl,
            mailbox.address.clone(),
            Secret::new(mailbox.password.clone()),
        )
    };
    let mut session = mailfleet_imap::connect(&settings, &trust).await.unwrap();
    // Dovecot offers both: the session uses exactly what it was allowed to.
    assert_eq!(session.extensions().condstore, condstore);
    assert_eq!(session.extensions().qresync, qresync);
    let before = session.bytes_received();
    let report = mailfleet_sync::sync_account(
        &app.store,
        &mut session,
        &account,
        Default::default(),
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!((report.messages_added, report.messages_removed), (0, 0));
    session.bytes_received() - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_folder_costs_a_few_hundred_bytes_not_the_uid_list() {
    let with_qresync = bytes_for_unchanged_resync(true, true).await;
    let with_condstore = bytes_for_unchanged_resync(true, false).await;
    let without = bytes_for_unchanged_resync(false, false).await;
    eprintln!(
        "unchanged re-sync of 1,000 messages: QRESYNC {with_qresync} B, CONDSTORE {with_condstore} B, neither {without} B"
    );
    // LIST + EXAMINE of one folder; the UID/flag list of 1,000 messages is ~30 KB.
    assert!(with_qresync < 2_000, "{with_qresync} bytes");
    assert!(with_condstore < 2_000, "{with_condstore} bytes");
    assert!(
        without > 20_000,
        "the fallback lists every message: {without} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uidvalidity_change_rebaselines_keeping_rows_without_duplicates_or_loss() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    // INBOX gets ~60: the re-baseline spans several batches of 25.
    let seeded = small_mailbox(&mailbox.address, 100, 8);
    mailbox.seed(&seeded).unwrap();
    // One message without a Message-ID: it can only be matched by its bytes.
    let anonymous = b"From: someone@example.test\r\nSubject: no id\r\n\r\nWho am I?\r\n";
    mailbox
        .write_message(
            "INBOX",
            anonymous,
            std::time::SystemTime::now(),
            false,
            false,
        )
        .unwrap();
    let id = app.connect_account(&mailbox, json!({})).await["id"]
        .as_i64()
        .unwrap();
    let Outcome::Synced(_) = app.work_one().await else {
        panic!("first sync failed")
    };
    let url = app.db.url.clone();
    let rows = |url: String| async move {
        strings(
            &url,
            "SELECT m.id::text || ' ' || coalesce(m.message_id, '-') AS value FROM messages m
             JOIN message_folders mf ON mf.message_id = m.id JOIN folders f ON f.id = mf.folder_id WHERE f.name = 'INBOX' ORDER BY m.id",
        )
        .await
    };
    let before = rows(url.clone()).await;
    let total = app.message_count(id).await;

    // Dovecot picks a new UIDVALIDITY when its UID list and index are lost.
    for entry in std::fs::read_dir(mailbox.maildir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("dovecot-uidlist") || name.starts_with("dovecot.index") {
            std::fs::remove_file(&path).unwrap();
        }
    }
    // UIDVALIDITY is a timestamp in seconds: make sure the new one differs. And one message
    // goes away meanwhile.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let cur = mailbox.maildir().join("cur");
    let victim = std::fs::read_dir(&cur)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::read(p).unwrap() != anonymous)
        .unwrap();
    std::fs::remove_file(&victim).unwrap();

    app.post(&format!("/v1/accounts/{id}/sync"), json!({}))
        .await;
    let Outcome::Synced(report) = app.work_one().await else {
        panic!("re-sync failed")
    };
    let inbox = seeded.iter().filter(|m| m.folder == "INBOX").count() + 1;
    assert_eq!(
        report.messages_added, 0,
        "nothing is added again: {report:?}"
    );
    assert_eq!(report.messages_rematched, inbox - 1, "{report:?}");
    assert_eq!(
        report.bytes_fetched,
        anonymous.len() as u64,
        "only the message without a Message-ID is downloaded again; the others are \
         identified by Message-ID and size: {report:?}"
    );
    assert_eq!(
        report.messages_removed, 1,
        "the message deleted meanwhile: {report:?}"
    );
    let after = rows(url.clone()).await;
    assert_eq!(after.len(), before.len() - 1);
    assert!(
        after.iter().all(|r| before.contains(r)),
        "rows keep their ids"
    );
    assert_eq!(app.message_count(id).await, total - 1);
    assert_eq!(
        app.orphan_count(id).await,
        1,
        "the deleted one, kept one more sync"
    );
    let uidvalidity = count(
        &url,
        "SELECT uidvalidity AS count FROM folders WHERE name = 'INBOX'",
    )
    .await;
    assert_eq!(
        count(
            &url,
            &format!(
                "SELECT count(*) AS count FROM messages m JOIN message_folders mf ON mf.message_id = m.id JOIN folders f ON f.id = mf.folder_id
                 WHERE f.name = 'INBOX' AND NOT starts_with(mf.remote_id, '{uidvalidity}:')"
            )
        )
        .await,
        0,
        "every row carries the new UIDVALIDITY"
    );
    assert_eq!(
        count(
            &url,
            "SELECT uidvalidity_changes::bigint AS count FROM folders WHERE name = 'INBOX'"
        )
        .await,
        1,
        "the change is counted"
    );
    assert_eq!(
        count(
            &url,
            "SELECT count(*) AS count FROM folders WHERE rebaselining"
        )
        .await,
        0
    );

    // In no folder through one more complete sync: deleted for good.
    app.post(&format!("/v1/accounts/{id}/sync"), json!({}))
        .await;
    let Outcome::Synced(report) = app.work_one().await else {
        panic!("third sync failed")
    };
    assert_eq!(report.messages_deleted, 1, "{report:?}");
    assert_eq!(app.orphan_count(id).await, 0);
    assert_eq!(app.message_count(id).await, total - 1);
}
