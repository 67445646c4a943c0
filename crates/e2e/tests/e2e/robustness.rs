//! Bad input loses nothing and stops nothing; concurrent workers agree on contacts.

use crate::app::App;
use mailfleet_testkit::{TestMailbox, count, strings};
use mailfleet_worker::Outcome;
use serde_json::json;
use std::time::SystemTime;

fn write(mailbox: &TestMailbox, folder: &str, raw: &[u8]) {
    mailbox
        .write_message(folder, raw, SystemTime::now(), false, false)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_huge_messages_are_stored_and_never_stop_their_folder() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    let good = mailfleet_mailgen::simple_message(
        "good@example.org",
        &mailbox.address,
        "Fine",
        "hello",
        "good-1@example.org",
        chrono::Utc::now(),
    );
    write(&mailbox, "INBOX", &good);
    write(
        &mailbox,
        "INBOX",
        b"From: nobody@example.org\r\nSubject: no id\r\n\r\nbody\r\n",
    );
    write(
        &mailbox,
        "INBOX",
        b"Message-ID: <broken-mime@example.org>\r\nFrom: a@example.org\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nunterminated part\r\n--z",
    );
    write(
        &mailbox,
        "INBOX",
        b"Message-ID: <eight-bit@example.org>\r\nFrom: \xff\xfe G\xe4rbage <g@example.org>\r\nSubject: \xc3\x28 \x00 nul\r\n\r\n\xff\xfe\x00 body\r\n",
    );
    // 25 MB attachment.
    let mut big = b"Message-ID: <big@example.org>\r\nFrom: big@example.org\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: application/octet-stream; name=big.bin\r\nContent-Disposition: attachment; filename=big.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
    let line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n";
    while big.len() < 25 << 20 {
        big.extend_from_slice(line);
    }
    big.extend_from_slice(b"--b--\r\n");
    write(&mailbox, "INBOX", &big);

    let id = app.connect_account(&mailbox, json!({})).await["id"]
        .as_i64()
        .unwrap();
    let Outcome::Synced(report) = app.work_one().await else {
        panic!("sync failed")
    };
    assert_eq!(report.messages_added, 5, "{report:?}");
    let url = &app.db.url;
    assert_eq!(
        count(url, &format!("SELECT count(*) AS count FROM messages WHERE account_id = {id} AND message_id IS NULL AND parse_problem LIKE '%Message-ID%'")).await,
        1
    );
    let big_row = strings(url, "SELECT size_bytes::text || ' ' || (attachments->0->>'filename') || ' ' || encode(content_hash, 'hex') AS value FROM messages WHERE message_id = 'big@example.org'").await;
    // Fetched in 1 MB pieces and assembled: the very same bytes.
    let hash = blake3::hash(&big).to_hex().to_string();
    assert_eq!(big_row, vec![format!("{} big.bin {hash}", big.len())]);
    let garbage = strings(url, "SELECT coalesce(subject, '') AS value FROM messages WHERE message_id = 'eight-bit@example.org'").await;
    assert_eq!(garbage.len(), 1);
    assert!(!garbage[0].contains('\0'));
    assert_eq!(
        count(
            url,
            "SELECT count(*) AS count FROM messages WHERE message_id = 'broken-mime@example.org'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_the_server_cannot_open_does_not_stop_the_others() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    for (folder, id) in [("INBOX", "in-1"), ("Clients", "cl-1"), ("Partners", "pa-1")] {
        let raw = mailfleet_mailgen::simple_message(
            "x@example.org",
            &mailbox.address,
            folder,
            "b",
            &format!("{id}@example.org"),
            chrono::Utc::now(),
        );
        write(&mailbox, folder, &raw);
    }
    let id = app
        .connect_account(
            &mailbox,
            json!({ "active_folders": ["INBOX", "Clients", "Partners"] }),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    // Dovecot answers NO to SELECT of a folder it may not read.
    let clients = mailbox.maildir().join("Clients").join("cur");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&clients, std::fs::Permissions::from_mode(0o000)).unwrap();
    let outcome = app.work_one().await;
    std::fs::set_permissions(&clients, std::fs::Permissions::from_mode(0o700)).unwrap();
    let Outcome::Synced(report) = outcome else {
        panic!("sync failed: {outcome:?}")
    };
    assert_eq!(report.messages_added, 2, "{report:?}");
    assert_eq!(report.failed_folders.len(), 1, "{report:?}");
    assert_eq!(report.failed_folders[0].0, "Clients");
    let (_, view) = app.get(&format!("/v1/accounts/{id}")).await;
    assert_eq!(view["state"], "active");
    assert!(
        view["last_error"].as_str().unwrap().contains("Clients"),
        "{view}"
    );

    // Readable again: the next sync fetches it and clears the error.
    app.post(&format!("/v1/accounts/{id}/sync"), json!({}))
        .await;
    let Outcome::Synced(report) = app.work_one().await else {
        panic!("sync failed")
    };
    assert_eq!(report.messages_added, 1);
    let (_, view) = app.get(&format!("/v1/accounts/{id}")).await;
    assert!(view["last_error"].is_null(), "{view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_linking_the_same_new_address_at_once_create_one_contact() {
    let app = App::start().await;
    let other = App::start_sharing(&app).await;
    let boxes = [TestMailbox::create(), TestMailbox::create()];
    for (i, b) in boxes.iter().enumerate() {
        for j in 0..20 {
            let raw = mailfleet_mailgen::simple_message(
                "New.Person@Example.ORG",
                &b.address,
                "hi",
                "b",
                &format!("race-{i}-{j}@example.org"),
                chrono::Utc::now(),
            );
            write(b, "INBOX", &raw);
        }
        app.connect_account(b, json!({ "create_contacts": true }))
            .await;
    }
    let (a, b) = tokio::join!(app.work_one(), other.process_one());
    assert!(matches!(a, Outcome::Synced(_)), "{a:?}");
    assert!(matches!(b, Ok(Outcome::Synced(_))), "{b:?}");
    let url = &app.db.url;
    assert_eq!(
        count(
            url,
            "SELECT count(*) AS count FROM contacts WHERE email = 'new.person@example.org'"
        )
        .await,
        1
    );
    assert_eq!(
        count(url, "SELECT count(*) AS count FROM message_contacts mc JOIN contacts c ON c.id = mc.contact_id WHERE c.email = 'new.person@example.org'").await,
        40,
        "every message of both accounts is linked to the one contact"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_lost_mid_sync_is_retried_keeps_the_account_and_loses_or_doubles_nothing() {
    use mailfleet_provider::ErrorClass;
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    let seeded = crate::app::small_mailbox(&mailbox.address, 300, 17);
    mailbox.seed(&seeded).unwrap();
    let proxy = mailfleet_testkit::FlakyProxy::start("127.0.0.1:993").await;
    let id = app.connect_through(&mailbox, proxy.port).await;
    // The server goes away a third of the way through.
    let total: usize = seeded.iter().map(|m| m.raw.len()).sum();
    proxy.fail_after(total as u64 / 3);
    match app.work_one().await {
        Outcome::Failed(e) => assert_eq!(e.class(), ErrorClass::Transient, "{e}"),
        other => panic!("expected a network failure, got {other:?}"),
    }
    let partial = app.message_count(id).await;
    assert!(
        partial > 0 && partial < 300,
        "committed batches stay: {partial}"
    );

    // Still down: the next attempt fails the same way, and the account stays enabled.
    app.post(&format!("/v1/accounts/{id}/sync"), json!({}))
        .await;
    let Outcome::Failed(e) = app.work_one().await else {
        panic!("expected a failure")
    };
    assert_eq!(e.class(), ErrorClass::Transient, "{e}");
    let (_, view) = app.get(&format!("/v1/accounts/{id}")).await;
    assert_eq!(view["state"], "active", "{view}");
    assert!(view["last_error"].is_string());

    // Back up: the sync resumes where it stopped and completes.
    proxy.refuse(false);
    app.post(&format!("/v1/accounts/{id}/sync"), json!({}))
        .await;
    let Outcome::Synced(report) = app.work_one().await else {
        panic!("sync failed")
    };
    assert_eq!(report.messages_added as i64, 300 - partial);
    assert_eq!(app.message_count(id).await, 300);
    assert_eq!(app.distinct_message_ids(id).await, 300);
    let (_, view) = app.get(&format!("/v1/accounts/{id}")).await;
    assert!(view["last_error"].is_null());
}
