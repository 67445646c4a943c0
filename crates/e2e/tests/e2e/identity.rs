//! A message keeps its row — its id, its contact links, whatever the CRM hangs on the id —
//! when another mail client moves it to another active folder, in either order of the sync's
//! folders; moved where no active folder holds it, it goes after one complete sync.

use crate::app::{App, deliver, raw_session, uids_with_message_id};
use mailfleet_testkit::{TestMailbox, count, strings};
use serde_json::json;

/// (row id, folder names, contact links) of the message with this Message-ID.
async fn row(app: &App, message_id: &str) -> (i64, Vec<String>, i64) {
    let id = count(
        &app.db.url,
        &format!("SELECT id AS count FROM messages WHERE message_id = '{message_id}'"),
    )
    .await;
    let folders = strings(
        &app.db.url,
        &format!(
            "SELECT f.name AS value FROM message_folders mf JOIN folders f ON f.id = mf.folder_id
             WHERE mf.message_id = {id} ORDER BY 1"
        ),
    )
    .await;
    let links = count(
        &app.db.url,
        &format!("SELECT count(*) AS count FROM message_contacts WHERE message_id = {id}"),
    )
    .await;
    (id, folders, links)
}

/// Moves the message with this Message-ID from `from` to `to` (UID MOVE, RFC 6851).
async fn move_elsewhere(mailbox: &TestMailbox, message_id: &str, from: &str, to: &str) {
    let mut s = raw_session(mailbox).await;
    s.select(from).await.unwrap();
    let uids = uids_with_message_id(&mut s, message_id).await;
    assert_eq!(uids.len(), 1, "{message_id} in {from}");
    let uid = uids[0];
    s.uid_mv(uid.to_string(), to).await.unwrap();
    s.logout().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_moved_in_another_client_keeps_its_row_links_and_id() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    mailfleet_testkit::execute(
        &app.db.url,
        "INSERT INTO contacts (email, name) VALUES ('carol@client.example.org', 'Carol')",
    )
    .await;
    // INBOX is synced first, Archive after it: one move each way.
    let down = deliver(&mailbox, "INBOX", "to-archive");
    let up = deliver(&mailbox, "Archive", "to-inbox");
    let id = app
        .connect_account(&mailbox, json!({ "active_folders": ["INBOX", "Archive"] }))
        .await["id"]
        .as_i64()
        .unwrap();
    app.sync(id).await;
    let (down_id, folders, links) = row(&app, &down).await;
    assert_eq!((folders, links), (vec!["INBOX".to_string()], 1));
    let (up_id, folders, _) = row(&app, &up).await;
    assert_eq!(folders, ["Archive"]);

    move_elsewhere(&mailbox, &down, "INBOX", "Archive").await;
    move_elsewhere(&mailbox, &up, "Archive", "INBOX").await;
    let report = app.sync(id).await;
    assert_eq!(report.messages_added, 0, "{report:?}");
    assert_eq!(report.messages_attached, 2, "{report:?}");
    assert_eq!(report.messages_removed, 2, "{report:?}");
    assert_eq!(report.messages_deleted, 0, "{report:?}");
    // Moved out of INBOX (orphaned a moment), found in Archive: the same row.
    assert_eq!(row(&app, &down).await, (down_id, vec!["Archive".into()], 1));
    // Found in INBOX while Archive still held it, then gone from Archive: the same row.
    assert_eq!(row(&app, &up).await, (up_id, vec!["INBOX".into()], 1));
    assert_eq!(app.message_count(id).await, 2);
    assert_eq!(app.orphan_count(id).await, 0);

    // The API shows the folders, and the lists follow the move.
    let (_, page) = app
        .get(&format!("/v1/messages?account_id={id}&folder=Archive"))
        .await;
    let listed: Vec<i64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, [down_id], "{page}");
    assert_eq!(page["messages"][0]["folders"], json!(["Archive"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_moved_to_an_inactive_folder_goes_after_one_complete_sync() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    let gone = deliver(&mailbox, "INBOX", "to-projects");
    deliver(&mailbox, "Projects", "stays-unsynced");
    let id = app
        .connect_account(&mailbox, json!({ "active_folders": ["INBOX"] }))
        .await["id"]
        .as_i64()
        .unwrap();
    app.sync(id).await;
    assert_eq!(app.message_count(id).await, 1);

    move_elsewhere(&mailbox, &gone, "INBOX", "Projects").await;
    let report = app.sync(id).await;
    assert_eq!(report.messages_removed, 1, "{report:?}");
    // Hidden at once (the API shows no orphan), kept one more sync in case it turns up.
    assert_eq!(app.message_count(id).await, 0);
    assert_eq!(app.orphan_count(id).await, 1);
    let (_, page) = app.get(&format!("/v1/messages?account_id={id}")).await;
    assert_eq!(page["messages"], json!([]), "{page}");

    let report = app.sync(id).await;
    assert_eq!(report.messages_deleted, 1, "{report:?}");
    assert_eq!(app.orphan_count(id).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivating_a_folder_keeps_the_messages_another_active_folder_holds() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    let only_archive = deliver(&mailbox, "Archive", "only-archive");
    let both = deliver(&mailbox, "INBOX", "both");
    let id = app
        .connect_account(&mailbox, json!({ "active_folders": ["INBOX", "Archive"] }))
        .await["id"]
        .as_i64()
        .unwrap();
    app.sync(id).await;
    // Another client copies `both` to Archive: one row, two folders.
    let mut s = raw_session(&mailbox).await;
    s.select("INBOX").await.unwrap();
    s.uid_copy("1:*", "Archive").await.unwrap();
    s.logout().await.unwrap();
    let report = app.sync(id).await;
    assert_eq!(
        (report.messages_added, report.messages_attached),
        (0, 1),
        "{report:?}"
    );
    let (both_id, folders, _) = row(&app, &both).await;
    assert_eq!(folders, ["Archive", "INBOX"]);

    let (status, view) = app
        .put(
            &format!("/v1/accounts/{id}/folders"),
            json!({ "active": ["INBOX"] }),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        row(&app, &both).await,
        (both_id, vec!["INBOX".to_string()], 0)
    );
    assert_eq!(
        count(
            &app.db.url,
            &format!("SELECT count(*) AS count FROM messages WHERE message_id = '{only_archive}'")
        )
        .await,
        0,
        "in no active folder: gone at once"
    );
}
