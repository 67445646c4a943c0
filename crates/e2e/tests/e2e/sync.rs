use crate::app::{App, small_mailbox};
use mailfleet_provider::ProviderError;
use mailfleet_testkit::{TestMailbox, count, strings};
use mailfleet_worker::Outcome;
use serde_json::json;
use std::collections::HashMap;

fn folder_counts(account: &serde_json::Value) -> HashMap<String, i64> {
    account["folders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["message_count"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_message_mailbox_syncs_end_to_end_once_and_incrementally() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    let seeded = small_mailbox(&mailbox.address, 200, 7);
    mailbox.seed(&seeded).unwrap();

    // Connecting publishes the first sync through the real scheduler and RabbitMQ.
    let account = app.connect_account(&mailbox, json!({})).await;
    let id = account["id"].as_i64().unwrap();
    assert_eq!(account["state"], "active");
    assert_eq!(account["sync_status"], "queued");
    assert_eq!(app.sync_ready().await, 1);

    let Outcome::Synced(report) = app.work_one().await else {
        panic!("first sync did not succeed")
    };
    assert_eq!(report.messages_added, 200);
    assert_eq!(report.folders_synced, 3, "INBOX, Sent, Archive");

    // Every Message-ID exactly once.
    let ids = strings(
        &app.db.url,
        &format!("SELECT message_id AS value FROM messages WHERE account_id = {id}"),
    )
    .await;
    assert_eq!(ids.len(), 200);
    let mut expected: Vec<String> = seeded.iter().map(|m| m.message_id.clone()).collect();
    let mut got = ids.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);

    // The API shows state, last sync and per-folder counts that match what was seeded.
    let (_, view) = app.get(&format!("/v1/accounts/{id}")).await;
    assert_eq!(view["sync_status"], "idle");
    assert!(view["last_synced_at"].is_string());
    let counts = folder_counts(&view);
    for folder in ["INBOX", "Sent", "Archive"] {
        let n = seeded.iter().filter(|m| m.folder == folder).count() as i64;
        assert_eq!(counts[folder], n, "{folder}");
    }
    assert_eq!(
        counts.get("Trash"),
        Some(&0),
        "Trash is listed but not synced"
    );

    // A second sync fetches nothing already stored.
    let (status, _) = app
        .post(&format!("/v1/accounts/{id}/sync"), json!({}))
        .await;
    assert_eq!(status, 202);
    let Outcome::Synced(again) = app.work_one().await else {
        panic!("re-sync failed")
    };
    assert_eq!(again.messages_added, 0);
    assert_eq!(again.bytes_fetched, 0, "nothing is downloaded again");

    // A message delivered later arrives on the next sync.
    let raw = mailfleet_mailgen::simple_message(
        "late@example.org",
        &mailbox.address,
        "Arrived later",
        "hello",
        "late-1@example.org",
        chrono::Utc::now(),
    );
    mailbox
        .write_message("INBOX", &raw, std::time::SystemTime::now(), false, false)
        .unwrap();
    app.post(&format!("/v1/accounts/{id}/sync"), json!({}))
        .await;
    let Outcome::Synced(third) = app.work_one().await else {
        panic!("third sync failed")
    };
    assert_eq!(third.messages_added, 1);
    assert_eq!(
        count(
            &app.db.url,
            "SELECT count(*) AS count FROM messages WHERE message_id = 'late-1@example.org'"
        )
        .await,
        1
    );
    assert_eq!(app.message_count(id).await, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_disables_the_account_with_a_clear_reason() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    let account = app
        .connect_account(&mailbox, json!({ "password": "not-the-password" }))
        .await;
    let id = account["id"].as_i64().unwrap();
    match app.work_one().await {
        Outcome::Failed(ProviderError::AuthFailed(_)) => {}
        other => panic!("expected an authentication failure, got {other:?}"),
    }
    let (_, view) = app.get(&format!("/v1/accounts/{id}")).await;
    assert_eq!(view["state"], "disabled");
    assert_eq!(view["disabled_reason"], "auth_failed");
    assert!(view["last_error"].as_str().unwrap().contains("Re-connect"));
    // A disabled account gets no more jobs.
    let (status, body) = app
        .post(&format!("/v1/accounts/{id}/sync"), json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "account_disabled");
    assert_eq!(app.scheduler.tick().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_retried_later_and_never_disables_the_account() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    // Port 9 (discard) is closed here: connection refused.
    let account = app
        .connect_account(
            &mailbox,
            json!({ "imap": { "host": "127.0.0.1", "port": 9, "encryption": "ssl" } }),
        )
        .await;
    let id = account["id"].as_i64().unwrap();
    match app.work_one().await {
        Outcome::Failed(ProviderError::Unreachable(_)) => {}
        other => panic!("expected unreachable, got {other:?}"),
    }
    let (_, view) = app.get(&format!("/v1/accounts/{id}")).await;
    assert_eq!(view["state"], "active");
    assert!(view["last_error"].as_str().unwrap().contains("unreachable"));
    assert_eq!(
        view["sync_status"], "idle",
        "the claim is released for the next interval"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_link_to_known_contacts_and_unknown_senders_become_contacts() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    let seeded = small_mailbox(&mailbox.address, 40, 11);
    mailbox.seed(&seeded).unwrap();
    // The CRM knows one correspondent already (given in another case).
    let known = seeded
        .iter()
        .find(|m| m.folder == "INBOX")
        .unwrap()
        .from
        .clone();
    {
        let mut conn = app.store.conn().await.unwrap();
        let email = mailfleet_core::EmailAddress::parse(&known.to_uppercase()).unwrap();
        mailfleet_store::contacts::upsert(&mut conn, &email, Some("Known"))
            .await
            .unwrap();
    }
    let account = app
        .connect_account(&mailbox, json!({ "create_contacts": true }))
        .await;
    let id = account["id"].as_i64().unwrap();
    let Outcome::Synced(report) = app.work_one().await else {
        panic!("sync failed")
    };
    assert!(report.contacts_created > 0);

    let url = &app.db.url;
    // Every message from the known contact is linked to it.
    let from_known = seeded.iter().filter(|m| m.from == known).count() as i64;
    let linked = count(
        url,
        &format!(
            "SELECT count(*) AS count FROM message_contacts mc JOIN contacts c ON c.id = mc.contact_id
             JOIN messages m ON m.id = mc.message_id
             WHERE c.email = '{known}' AND m.from_email = '{known}'"
        ),
    )
    .await;
    assert_eq!(linked, from_known);
    // Every sender of a message in the mailbox is now a contact, but the owner never is.
    let senders_without_contact = count(
        url,
        &format!(
            "SELECT count(*) AS count FROM messages m WHERE m.account_id = {id}
             AND m.from_email <> '{}'
             AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.email = m.from_email)",
            mailbox.address
        ),
    )
    .await;
    assert_eq!(senders_without_contact, 0);
    assert_eq!(
        count(
            url,
            &format!(
                "SELECT count(*) AS count FROM contacts WHERE email = '{}'",
                mailbox.address
            )
        )
        .await,
        0,
        "the account's own address is never a contact"
    );
    // Recipients who are contacts are linked too: Sent mail links to its recipients.
    let sent_links = count(
        url,
        &format!(
            "SELECT count(*) AS count FROM message_contacts mc JOIN messages m ON m.id = mc.message_id
             JOIN message_folders mf ON mf.message_id = m.id JOIN folders f ON f.id = mf.folder_id WHERE f.name = 'Sent' AND m.account_id = {id}"
        ),
    )
    .await;
    assert!(sent_links > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_chosen_active_folders_are_synced() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    let seeded = small_mailbox(&mailbox.address, 30, 5);
    mailbox.seed(&seeded).unwrap();
    let account = app
        .connect_account(&mailbox, json!({ "active_folders": ["INBOX"] }))
        .await;
    let id = account["id"].as_i64().unwrap();
    let Outcome::Synced(_) = app.work_one().await else {
        panic!("sync failed")
    };
    let (_, view) = app.get(&format!("/v1/accounts/{id}")).await;
    let counts = folder_counts(&view);
    let inbox = seeded.iter().filter(|m| m.folder == "INBOX").count() as i64;
    assert_eq!(counts["INBOX"], inbox);
    assert_eq!(counts["Sent"], 0);
    assert_eq!(counts["Archive"], 0);
    let active: Vec<_> = view["folders"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["active"] == true)
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(active, vec!["INBOX"]);
}
