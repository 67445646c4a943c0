//! Sending through the outbox: the API, SMTP to the real Postfix, the copy in the real
//! Dovecot's Sent folder, exactly once under redelivery, replies, signatures, system mail and
//! the server's refusals.

use crate::app::App;
use mailfleet_core::{Job, JobEnvelope};
use mailfleet_testkit::{TestMailbox, count, delivered_copies, execute, strings};
use mailfleet_worker::SendOutcome;
use serde_json::{Value, json};

/// An account for `mailbox` whose first sync has run (so its folders are known), syncing
/// INBOX only: Sent is not active. Returns (account id, owner user id).
async fn sender(app: &App, mailbox: &TestMailbox) -> (i64, i64) {
    let account = app
        .connect_account(mailbox, json!({ "active_folders": ["INBOX"] }))
        .await;
    app.work_one().await;
    (
        account["id"].as_i64().unwrap(),
        account["owner_user_id"].as_i64().unwrap(),
    )
}

async fn outgoing(app: &App, user: i64, id: i64) -> Value {
    let (status, body) = app
        .request_as(
            reqwest::Method::GET,
            &format!("/v1/outgoing-messages/{id}"),
            Some(user),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn send_queue_empty(app: &App) -> bool {
    app.broker
        .ready_count(&app.broker.names().send)
        .await
        .unwrap()
        == 0
}

#[tokio::test]
async fn a_message_goes_out_once_and_is_filed_in_sent_even_when_sent_is_not_synced() {
    let app = App::start().await;
    let ann = TestMailbox::create();
    let bob = TestMailbox::create();
    let carol = TestMailbox::create();
    let (account_id, user) = sender(&app, &ann).await;
    // Bob is a CRM contact: the stored copy is linked to him.
    let bob_contact = count(
        &app.db.url,
        &format!(
            "WITH c AS (INSERT INTO contacts (email, name) VALUES ('{}', 'Bob') RETURNING id)
             SELECT id AS count FROM c",
            bob.address
        ),
    )
    .await;
    let (status, _) = app
        .request_as(
            reqwest::Method::PUT,
            &format!("/v1/users/{user}/signature"),
            Some(user),
            None,
            Some(json!({ "text": "Ann Example\nSales", "html": "<b>Ann Example</b>" })),
        )
        .await;
    assert_eq!(status, 200);

    let request = json!({
        "account_id": account_id,
        "to": [{ "email": bob.address.to_uppercase(), "name": "Bob" }],
        "bcc": [carol.address],
        "subject": "Your quote",
        "text": "Hello Bob, the quote is attached.",
        "html": "<html><body><p>Hello Bob, the quote is attached.</p></body></html>",
        "attachments": [{ "filename": "quote.txt", "content_type": "text/plain",
                          "content_base64": "UXVvdGU6IDEwMCBFVVI=" }]
    });
    let (status, queued) = app.send_as(user, Some("quote-1"), request.clone()).await;
    assert_eq!(status, 202, "{queued}");
    let id = queued["id"].as_i64().unwrap();
    assert_eq!(queued["status"], "queued");
    let message_id = queued["message_id"].as_str().unwrap().to_owned();
    // The same key and request again: the same message, no second job.
    let (status, again) = app.send_as(user, Some("quote-1"), request).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["id"], id);

    let outcome = app.work_send().await;
    let SendOutcome::Sent { copy: Some(copy) } = outcome else {
        panic!("expected sent with a filed copy, got {outcome:?}");
    };
    assert!(
        send_queue_empty(&app).await,
        "the repeated request queued a second job"
    );

    // Delivered once to each recipient, Bcc included, and without a Bcc header.
    assert_eq!(delivered_copies(&bob, &message_id).await, 1);
    assert_eq!(delivered_copies(&carol, &message_id).await, 1);
    let (path, _) = &bob.messages_with_id("INBOX", &message_id)[0];
    let delivered = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
    assert!(
        !delivered.to_lowercase().contains(&carol.address),
        "Bcc leaked: {delivered}"
    );
    assert!(delivered.contains("quote.txt"));

    // One copy in Sent on the server, marked read.
    let copies = ann.messages_with_id("Sent", &message_id);
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert!(
        copies[0].1.contains('S'),
        "the Sent copy is not \\Seen: {copies:?}"
    );

    // Stored locally in Sent, with the signature, the Bcc recipient and the contact link.
    let view = outgoing(&app, user, id).await;
    assert_eq!(view["status"], "sent", "{view}");
    assert!(
        view["server_reply"].as_str().unwrap().starts_with("250"),
        "{view}"
    );
    assert_eq!(view["sent_copy_message_id"], copy);
    let folder = strings(
        &app.db.url,
        &format!("SELECT f.name AS value FROM messages m JOIN message_folders mf ON mf.message_id = m.id JOIN folders f ON f.id = mf.folder_id WHERE m.id = {copy}"),
    )
    .await;
    assert_eq!(folder, ["Sent"]);
    let body = strings(
        &app.db.url,
        &format!("SELECT text_body AS value FROM messages WHERE id = {copy}"),
    )
    .await;
    assert!(
        body[0]
            .replace("\r\n", "\n")
            .ends_with("\n\n-- \nAnn Example\nSales"),
        "{body:?}"
    );
    assert_eq!(
        count(&app.db.url, &format!("SELECT count(*) AS count FROM message_addresses WHERE message_id = {copy} AND field = 'bcc'")).await,
        1
    );
    assert_eq!(
        count(&app.db.url, &format!("SELECT count(*) AS count FROM message_contacts WHERE message_id = {copy} AND contact_id = {bob_contact}")).await,
        1
    );
}

async fn queue_one(app: &App, account_id: i64, user: i64, to: &str, key: &str) -> (i64, String) {
    let (status, queued) = app
        .send_as(
            user,
            Some(key),
            json!({ "account_id": account_id, "to": [to], "subject": key, "text": "hi" }),
        )
        .await;
    assert_eq!(status, 202, "{queued}");
    (
        queued["id"].as_i64().unwrap(),
        queued["message_id"].as_str().unwrap().to_owned(),
    )
}

async fn publish_send(app: &App, outgoing_id: i64) {
    app.broker
        .publish(&JobEnvelope::new(Job::SendMessage { outgoing_id }))
        .await
        .unwrap();
}

#[tokio::test]
async fn redelivered_and_concurrent_send_jobs_never_send_or_file_twice() {
    let app = App::start().await;
    let ann = TestMailbox::create();
    let bob = TestMailbox::create();
    let (account_id, user) = sender(&app, &ann).await;
    let (id, message_id) = queue_one(&app, account_id, user, &bob.address, "dup-1").await;
    // Two more copies of the job: a redelivery and a relay that published it again.
    publish_send(&app, id).await;
    publish_send(&app, id).await;

    let second = App::start_sharing(&app).await;
    let send_queue = app.broker.names().send.clone();
    let (a, b) = tokio::join!(
        app.worker.process_one_from(&send_queue),
        second.process_one_from(&send_queue)
    );
    let outcomes = [
        a.unwrap(),
        b.unwrap(),
        app.worker.process_one_from(&send_queue).await.unwrap(),
    ];
    let sent = outcomes
        .iter()
        .filter(|o| matches!(o, mailfleet_worker::Outcome::Send(SendOutcome::Sent { .. })))
        .count();
    assert_eq!(sent, 1, "{outcomes:?}");
    assert!(send_queue_empty(&app).await);
    assert_eq!(delivered_copies(&bob, &message_id).await, 1);
    assert_eq!(ann.messages_with_id("Sent", &message_id).len(), 1);

    // A worker that appended the Sent copy but died before recording it: the next delivery
    // finds the copy by its Message-ID instead of appending a second one.
    let copy = outgoing(&app, user, id).await["sent_copy_message_id"]
        .as_i64()
        .unwrap();
    execute(
        &app.db.url,
        &format!(
            "UPDATE outgoing_messages SET sent_copy_filed_at = NULL, sent_copy_message_id = NULL
             WHERE id = {id}"
        ),
    )
    .await;
    execute(
        &app.db.url,
        &format!("DELETE FROM messages WHERE id = {copy}"),
    )
    .await;
    publish_send(&app, id).await;
    let outcome = app.work_send().await;
    assert!(
        matches!(outcome, SendOutcome::CopyFiled(Some(_))),
        "{outcome:?}"
    );
    assert_eq!(ann.messages_with_id("Sent", &message_id).len(), 1);
    assert_eq!(delivered_copies(&bob, &message_id).await, 1);
    assert_eq!(outgoing(&app, user, id).await["status"], "sent");
}

#[tokio::test]
async fn bad_send_requests_get_a_clear_4xx_and_queue_nothing() {
    let app = App::start().await;
    let ann = TestMailbox::create();
    let (account_id, user) = sender(&app, &ann).await;
    let stranger = app.create_user().await;
    let ok = json!({ "account_id": account_id, "to": ["bob@example.test"], "text": "hi" });
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let cases: Vec<(Option<i64>, Value, u16, &str)> = vec![
        (Some(user), with("to", json!([])), 422, "no_recipient"),
        (
            Some(user),
            with("to", json!(["not an address"])),
            422,
            "invalid_address",
        ),
        (
            Some(user),
            with("cc", json!(["bob@"])),
            422,
            "invalid_address",
        ),
        (
            Some(user),
            with("account_id", json!(999_999)),
            404,
            "not_found",
        ),
        (
            Some(user),
            with("in_reply_to", json!(999_999)),
            404,
            "not_found",
        ),
        (
            Some(user),
            with(
                "attachments",
                json!([{ "filename": "a.txt",
            "content_type": "text/plain", "content_base64": "%%%" }]),
            ),
            422,
            "invalid_request",
        ),
        (
            Some(user),
            with("subject", json!("two\r\nlines")),
            422,
            "invalid_request",
        ),
        // Someone else's account is not theirs to learn of.
        (Some(stranger), ok.clone(), 404, "not_found"),
        (None, ok.clone(), 401, "acting_user_required"),
        (Some(999_999), ok.clone(), 403, "unknown_user"),
    ];
    for (who, body, status, code) in cases {
        let (got, answer) = app
            .request_as(
                reqwest::Method::POST,
                "/v1/messages",
                who,
                None,
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            (got, answer["code"].as_str()),
            (status, Some(code)),
            "{body} → {answer}"
        );
    }
    // Attachments over the limit: a JSON error whether the body is read or refused unread.
    let big = |mb: usize| {
        with(
            "attachments",
            json!([{ "filename": "big.bin", "content_type": "application/octet-stream",
                     "content_base64": "A".repeat(mb * 1024 * 1024 / 3 * 4) }]),
        )
    };
    for mb in [26, 40] {
        let (got, answer) = app.send_as(user, None, big(mb)).await;
        assert_eq!(
            (got, answer["code"].as_str()),
            (413, Some("too_large")),
            "{mb} MB"
        );
    }
    // The same idempotency key with another request is refused, not silently merged.
    let (status, _) = app.send_as(user, Some("k"), ok.clone()).await;
    assert_eq!(status, 202);
    let (status, answer) = app
        .send_as(user, Some("k"), with("text", json!("something else")))
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (409, Some("idempotency_key_reused"))
    );
    // A disabled account sends nothing.
    execute(
        &app.db.url,
        &format!("UPDATE accounts SET state = 'disabled', disabled_reason = 'auth_failed' WHERE id = {account_id}"),
    )
    .await;
    let (status, answer) = app.send_as(user, Some("k2"), ok.clone()).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (409, Some("account_disabled"))
    );

    assert_eq!(
        count(
            &app.db.url,
            "SELECT count(*) AS count FROM outgoing_messages"
        )
        .await,
        1,
        "only the one valid request is in the outbox"
    );
    assert_eq!(
        app.broker
            .ready_count(&app.broker.names().send)
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn a_reply_carries_the_thread_headers_and_joins_the_thread() {
    let app = App::start().await;
    let ann = TestMailbox::create();
    let bob = TestMailbox::create();
    let parent_raw = format!(
        "From: Bob <{bob}>\r\nTo: {ann}\r\nSubject: Pricing\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <parent-1@example.test>\r\nReferences: <root-1@example.test>\r\n\
         In-Reply-To: <root-1@example.test>\r\n\r\nWhat does it cost?\r\n",
        bob = bob.address,
        ann = ann.address
    );
    ann.write_message(
        "INBOX",
        parent_raw.as_bytes(),
        std::time::SystemTime::now(),
        false,
        false,
    )
    .unwrap();
    let (account_id, user) = sender(&app, &ann).await;
    let parent = count(
        &app.db.url,
        "SELECT id AS count FROM messages WHERE message_id = 'parent-1@example.test'",
    )
    .await;

    // Someone who can't read Ann's mailbox can't answer from it either.
    let stranger = app.create_user().await;
    let (status, _) = app
        .send_as(
            stranger,
            None,
            json!({ "account_id": account_id, "to": [bob.address], "in_reply_to": parent }),
        )
        .await;
    assert_eq!(status, 404);

    let (status, queued) = app
        .send_as(
            user,
            None,
            json!({ "account_id": account_id, "to": [bob.address], "text": "100 EUR.", "in_reply_to": parent }),
        )
        .await;
    assert_eq!(status, 202, "{queued}");
    let message_id = queued["message_id"].as_str().unwrap().to_owned();
    assert_eq!(queued["subject"], "Re: Pricing");
    let SendOutcome::Sent { copy: Some(copy) } = app.work_send().await else {
        panic!("not sent");
    };

    assert_eq!(delivered_copies(&bob, &message_id).await, 1);
    let (path, _) = &bob.messages_with_id("INBOX", &message_id)[0];
    let delivered = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
    assert!(
        delivered.contains("In-Reply-To: <parent-1@example.test>"),
        "{delivered}"
    );
    assert!(
        delivered.contains("References: <root-1@example.test> <parent-1@example.test>"),
        "{delivered}"
    );
    let threads = strings(
        &app.db.url,
        &format!(
            "SELECT thread_key AS value FROM messages WHERE id IN ({parent}, {copy}) ORDER BY id"
        ),
    )
    .await;
    assert_eq!(threads.len(), 2);
    assert_eq!(
        threads[0], threads[1],
        "the reply is in its parent's thread"
    );
}

#[tokio::test]
async fn the_servers_refusals_fail_retry_or_disable_as_they_should() {
    let app = App::start_with(|c| {
        c.send_max_attempts = 2;
        c.send_retry_base = std::time::Duration::from_secs(60);
    })
    .await;
    let ann = TestMailbox::create();
    let (account_id, user) = sender(&app, &ann).await;

    // 5xx: failed, with the server's reply; not retried.
    let (id, _) = queue_one(
        &app,
        account_id,
        user,
        "refuse-permanently@example.test",
        "p",
    )
    .await;
    let outcome = app.work_send().await;
    assert!(
        matches!(&outcome, SendOutcome::Failed { code, reply } if code == "rejected" && reply.starts_with("550")),
        "{outcome:?}"
    );
    let view = outgoing(&app, user, id).await;
    assert_eq!(view["status"], "failed");
    assert!(
        view["server_reply"].as_str().unwrap().contains("5.1.1"),
        "{view}"
    );
    assert_eq!(app.scheduler.tick_outbox().await.unwrap(), 0);

    // 4xx: queued again with a delay, retried when due, failed after the last attempt.
    let (id, _) = queue_one(
        &app,
        account_id,
        user,
        "refuse-temporarily@example.test",
        "t",
    )
    .await;
    assert!(matches!(app.work_send().await, SendOutcome::Retrying(r) if r.starts_with("450")));
    let view = outgoing(&app, user, id).await;
    assert_eq!(
        (view["status"].as_str(), view["attempts"].as_i64()),
        (Some("queued"), Some(1))
    );
    assert!(view["next_attempt_at"].is_string(), "{view}");
    assert_eq!(app.scheduler.tick_outbox().await.unwrap(), 0, "not due yet");
    execute(
        &app.db.url,
        &format!("UPDATE outgoing_messages SET next_attempt_at = now() WHERE id = {id}"),
    )
    .await;
    assert_eq!(app.scheduler.tick_outbox().await.unwrap(), 1);
    let outcome = app.work_send().await;
    assert!(
        matches!(&outcome, SendOutcome::Failed { code, .. } if code == "retries_exhausted"),
        "{outcome:?}"
    );

    // 535: the account is disabled exactly as for sync, and the message fails.
    // The password was changed on the server: what the account holds is refused.
    let key = mailfleet_core::SecretKey::from_base64(mailfleet_testkit::TEST_SECRET_KEY).unwrap();
    let stale = mailfleet_core::Credentials::Password {
        password: mailfleet_core::Secret::new("an-old-password".to_string()),
    }
    .seal(&key, account_id);
    let mut conn = app.store.conn().await.unwrap();
    mailfleet_store::accounts::reconnect(&mut conn, account_id, Some(&stale))
        .await
        .unwrap();
    drop(conn);
    let (id, _) = queue_one(&app, account_id, user, "bob@example.test", "a").await;
    let outcome = app.work_send().await;
    assert!(
        matches!(&outcome, SendOutcome::Failed { code, .. } if code == "auth_failed"),
        "{outcome:?}"
    );
    assert_eq!(outgoing(&app, user, id).await["error_code"], "auth_failed");
    let (_, account) = app.get(&format!("/v1/accounts/{account_id}")).await;
    assert_eq!(
        (
            account["state"].as_str(),
            account["disabled_reason"].as_str()
        ),
        (Some("disabled"), Some("auth_failed")),
        "{account}"
    );
}

#[tokio::test]
async fn system_mail_goes_out_through_the_designated_account() {
    let app = App::start().await;
    let system = TestMailbox::create();
    let bob = TestMailbox::create();
    let (personal, owner) = sender(&app, &bob).await;
    let (status, admin) = app
        .post(
            "/v1/users",
            json!({ "email": format!("admin-{}@crm.example.test", mailfleet_testkit::unique_suffix()), "is_admin": true }),
        )
        .await;
    assert_eq!(status, 201);
    let admin = admin["id"].as_i64().unwrap();
    // The system account is a shared inbox (noreply@, say), connected by an administrator.
    let system_account = app.connect_shared(admin, &system).await;
    app.work_one().await;
    // Not someone's personal mailbox: an administrator may not send as its owner.
    let (status, _) = app
        .request_as(
            reqwest::Method::PUT,
            "/v1/system-account",
            Some(admin),
            None,
            Some(json!({ "account_id": personal })),
        )
        .await;
    assert_eq!(status, 404);
    let notice =
        json!({ "to": [bob.address], "subject": "Lead assigned", "text": "Lead 7 is yours." });
    let system_mail = |body: Value| {
        app.request_as(
            reqwest::Method::POST,
            "/v1/system-mail",
            None,
            Some("notice-7"),
            Some(body),
        )
    };

    let (status, answer) = system_mail(notice.clone()).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (409, Some("no_system_account"))
    );
    let designate = json!({ "account_id": system_account });
    let (status, _) = app
        .request_as(
            reqwest::Method::PUT,
            "/v1/system-account",
            Some(owner),
            None,
            Some(designate.clone()),
        )
        .await;
    assert_eq!(
        status, 403,
        "only administrators designate the system account"
    );
    let (status, _) = app
        .request_as(
            reqwest::Method::PUT,
            "/v1/system-account",
            Some(admin),
            None,
            Some(designate),
        )
        .await;
    assert_eq!(status, 200);
    let (_, current) = app.get("/v1/system-account").await;
    assert_eq!(current["account_id"], system_account);

    let (status, queued) = system_mail(notice.clone()).await;
    assert_eq!(status, 202, "{queued}");
    assert_eq!(queued["kind"], "system");
    let message_id = queued["message_id"].as_str().unwrap().to_owned();
    // Retried by the CRM with the same key: still one message.
    let (_, again) = system_mail(notice).await;
    assert_eq!(again["id"], queued["id"]);
    assert!(matches!(
        app.work_send().await,
        SendOutcome::Sent { copy: Some(_) }
    ));
    assert!(send_queue_empty(&app).await);
    assert_eq!(delivered_copies(&bob, &message_id).await, 1);
    let (path, _) = &bob.messages_with_id("INBOX", &message_id)[0];
    let delivered = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
    assert!(
        delivered.contains(&format!("From: {}", system.address)),
        "{delivered}"
    );
    assert_eq!(system.messages_with_id("Sent", &message_id).len(), 1);
}

/// Puts an outgoing message in the state a worker leaves when it dies mid-send, its claim
/// run out: before DATA (`data_started` false) or after it.
async fn interrupted(app: &App, id: i64, data_started: bool) {
    execute(
        &app.db.url,
        &format!(
            "UPDATE outgoing_messages SET status = 'sending', attempts = attempts + 1,
                    claimed_until = now() - interval '1 second',
                    data_started_at = {}, published_at = NULL
             WHERE id = {id}",
            if data_started { "now()" } else { "NULL" }
        ),
    )
    .await;
}

#[tokio::test]
async fn an_interrupted_send_is_resolved_without_sending_twice() {
    let app = App::start().await;
    let ann = TestMailbox::create();
    let bob = TestMailbox::create();
    let (account_id, user) = sender(&app, &ann).await;

    // Stopped before DATA: nothing can have left, so it is sent (once).
    let (id, message_id) = queue_one(&app, account_id, user, &bob.address, "before-data").await;
    app.discard_send_job().await;
    interrupted(&app, id, false).await;
    assert_eq!(app.scheduler.tick_outbox().await.unwrap(), 1);
    assert!(matches!(app.work_send().await, SendOutcome::Sent { .. }));
    assert_eq!(delivered_copies(&bob, &message_id).await, 1);

    // Stopped after DATA, and the copy is in Sent (a provider that files sent mail itself,
    // or a copy appended before the crash): sent, stored, and not sent again.
    let (id, message_id) = queue_one(&app, account_id, user, &bob.address, "in-sent").await;
    app.discard_send_job().await;
    interrupted(&app, id, true).await;
    let raw = mailfleet_mailgen::simple_message(
        &ann.address,
        &bob.address,
        "in-sent",
        "hi",
        &message_id,
        chrono::Utc::now(),
    );
    ann.write_message("Sent", &raw, std::time::SystemTime::now(), true, false)
        .unwrap();
    assert_eq!(app.scheduler.tick_outbox().await.unwrap(), 1);
    let outcome = app.work_send().await;
    assert!(
        matches!(outcome, SendOutcome::Sent { copy: Some(_) }),
        "{outcome:?}"
    );
    assert_eq!(ann.messages_with_id("Sent", &message_id).len(), 1);
    assert!(bob.messages_with_id("INBOX", &message_id).is_empty());
    assert!(mailfleet_testkit::postfix_queue_empty());
    assert!(
        bob.messages_with_id("INBOX", &message_id).is_empty(),
        "sent again"
    );

    // Stopped after DATA and not in Sent: `unknown`, never sent again.
    let (id, message_id) = queue_one(&app, account_id, user, &bob.address, "lost").await;
    app.discard_send_job().await;
    interrupted(&app, id, true).await;
    assert_eq!(app.scheduler.tick_outbox().await.unwrap(), 1);
    let outcome = app.work_send().await;
    assert!(matches!(outcome, SendOutcome::Unknown(_)), "{outcome:?}");
    let view = outgoing(&app, user, id).await;
    assert_eq!(
        (view["status"].as_str(), view["error_code"].as_str()),
        (Some("unknown"), Some("unknown_outcome"))
    );
    assert_eq!(app.scheduler.tick_outbox().await.unwrap(), 0);
    assert!(mailfleet_testkit::postfix_queue_empty());
    assert!(
        bob.messages_with_id("INBOX", &message_id).is_empty(),
        "sent again"
    );
}
