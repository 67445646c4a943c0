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
        &format!("SELECT f.name AS value FROM messages m JOIN folders f ON f.id = m.folder_id WHERE m.id = {copy}"),
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
        (Some(stranger), ok.clone(), 403, "forbidden"),
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
