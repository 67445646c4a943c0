//! `POST /v1/mailbox-actions`: what a user does in the CRM shows at once, reaches the mailbox
//! at the account's next sync (Dovecot here), and is applied once.

use crate::app::{App, deliver, flags_of_uid, raw_session, uids_with_message_id};
use futures::TryStreamExt;
use mailfleet_testkit::{TestMailbox, count, execute};
use mailfleet_worker::Outcome;
use serde_json::{Value, json};

async fn act(app: &App, key: Option<&str>, body: Value) -> (u16, Value) {
    app.request_as(
        reqwest::Method::POST,
        "/v1/mailbox-actions",
        app.acting(),
        key,
        Some(body),
    )
    .await
}

/// The flags the server holds for the message with this Message-ID in `folder` (`None`: it
/// is not there), as another mail client sees them.
async fn server_flags(mailbox: &TestMailbox, folder: &str, message_id: &str) -> Option<String> {
    let mut s = raw_session(mailbox).await;
    s.examine(folder).await.unwrap();
    let uid = uids_with_message_id(&mut s, message_id).await.pop()?;
    let flags = flags_of_uid(&mut s, uid).await;
    s.logout().await.unwrap();
    Some(flags.join(" "))
}

/// How many copies of the message `folder` holds on the server.
async fn copies(mailbox: &TestMailbox, folder: &str, message_id: &str) -> usize {
    let mut s = raw_session(mailbox).await;
    s.examine(folder).await.unwrap();
    let n = uids_with_message_id(&mut s, message_id).await.len();
    s.logout().await.unwrap();
    n
}

async fn connect(app: &App, mailbox: &TestMailbox) -> i64 {
    let id = app
        .connect_account(mailbox, json!({ "active_folders": ["INBOX", "Archive"] }))
        .await["id"]
        .as_i64()
        .unwrap();
    app.sync(id).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_and_moves_show_at_once_and_reach_the_mailbox_at_the_next_sync() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    let (a, b) = (
        deliver(&mailbox, "INBOX", "a"),
        deliver(&mailbox, "INBOX", "b"),
    );
    let account = connect(&app, &mailbox).await;
    let (a_id, b_id) = (app.row_of(&a).await, app.row_of(&b).await);

    let (status, action) = act(
        &app,
        None,
        json!({ "message_ids": [a_id, b_id], "action": "mark_read" }),
    )
    .await;
    assert_eq!(status, 202, "{action}");
    assert_eq!(action["state"], "pending");
    assert_eq!(
        action["messages"][0],
        json!({ "id": a_id, "state": "pending", "error": null })
    );
    // At once in the CRM, with the marker; the mailbox is unchanged until the sync.
    let (_, m) = app.get(&format!("/v1/messages/{a_id}")).await;
    assert_eq!(
        (m["flags"].clone(), m["pending"].clone()),
        (json!(["\\Seen"]), json!(true)),
        "{m}"
    );
    assert_eq!(
        server_flags(&mailbox, "INBOX", &a).await.as_deref(),
        Some("")
    );
    // What a sync stores meanwhile (the server's flags) doesn't flip the CRM's view back.
    execute(
        &app.db.url,
        &format!("UPDATE messages SET flags = '{{}}' WHERE id = {a_id}"),
    )
    .await;
    let (_, m) = app.get(&format!("/v1/messages/{a_id}")).await;
    assert_eq!(m["flags"], json!(["\\Seen"]), "{m}");

    let report = app.sync(account).await;
    assert_eq!(report.actions.done, 2, "{report:?}");
    let (_, done) = app
        .get(&format!("/v1/mailbox-actions/{}", action["id"]))
        .await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(
        server_flags(&mailbox, "INBOX", &a).await.as_deref(),
        Some("Seen")
    );
    let (_, m) = app.get(&format!("/v1/messages/{a_id}")).await;
    assert_eq!(
        (m["flags"].clone(), m["pending"].clone()),
        (json!(["\\Seen"]), json!(false))
    );

    // A move: shown in Archive at once, moved by the sync, the same row after it.
    let (status, moved) = act(
        &app,
        None,
        json!({ "message_ids": [b_id], "action": "move", "folder": "Archive" }),
    )
    .await;
    assert_eq!(status, 202, "{moved}");
    let (_, m) = app.get(&format!("/v1/messages/{b_id}")).await;
    assert_eq!(
        (m["folders"].clone(), m["pending"].clone()),
        (json!(["Archive"]), json!(true))
    );
    let (_, inbox) = app
        .get(&format!("/v1/messages?account_id={account}&folder=INBOX"))
        .await;
    assert_eq!(inbox["messages"].as_array().unwrap().len(), 1, "{inbox}");
    app.sync(account).await;
    assert_eq!(
        (
            copies(&mailbox, "INBOX", &b).await,
            copies(&mailbox, "Archive", &b).await
        ),
        (0, 1)
    );
    assert_eq!(app.row_of(&b).await, b_id);
    let report = app.sync(account).await;
    assert_eq!(
        (
            report.messages_added,
            report.messages_removed,
            report.messages_attached
        ),
        (0, 0, 0),
        "the move is known already: {report:?}"
    );
    let (_, m) = app.get(&format!("/v1/messages/{b_id}")).await;
    assert_eq!(
        (m["folders"].clone(), m["pending"].clone()),
        (json!(["Archive"]), json!(false))
    );

    // Trash: Trash is not active, so the message leaves the CRM — at once, then for good.
    let (status, trashed) = act(
        &app,
        None,
        json!({ "message_ids": [a_id], "action": "trash" }),
    )
    .await;
    assert_eq!(status, 202, "{trashed}");
    let (_, m) = app.get(&format!("/v1/messages/{a_id}")).await;
    assert_eq!(m["folders"], json!([]), "{m}");
    app.sync(account).await;
    assert_eq!(copies(&mailbox, "Trash", &a).await, 1);
    app.sync(account).await;
    let (status, _) = app.get(&format!("/v1/messages/{a_id}")).await;
    assert_eq!(status, 404);
    assert_eq!(app.orphan_count(account).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_meanwhile_elsewhere_or_a_gone_message_is_a_conflict_not_overwritten() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    let (a, b) = (
        deliver(&mailbox, "INBOX", "a"),
        deliver(&mailbox, "INBOX", "b"),
    );
    let account = connect(&app, &mailbox).await;
    let (a_id, b_id) = (app.row_of(&a).await, app.row_of(&b).await);
    let (_, action) = act(
        &app,
        None,
        json!({ "message_ids": [a_id, b_id], "action": "flag" }),
    )
    .await;
    // Meanwhile another client marks `a` read (after the CRM's last sync) and deletes `b`.
    let mut s = raw_session(&mailbox).await;
    s.select("INBOX").await.unwrap();
    for (message_id, change) in [(&a, "+FLAGS (\\Seen)"), (&b, "+FLAGS (\\Deleted)")] {
        let uid = uids_with_message_id(&mut s, message_id).await[0];
        let _: Vec<_> = s
            .uid_store(uid.to_string(), change)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
    }
    let _: Vec<_> = s.expunge().await.unwrap().try_collect().await.unwrap();
    s.logout().await.unwrap();

    let report = app.sync(account).await;
    assert_eq!(report.actions.conflicts, 2, "{report:?}");
    let (_, view) = app
        .get(&format!("/v1/mailbox-actions/{}", action["id"]))
        .await;
    assert_eq!(view["state"], "conflict", "{view}");
    assert_eq!(view["messages"][0]["state"], "conflict");
    assert_eq!(view["messages"][1]["state"], "conflict");
    // The other client's change stands, and the CRM shows it.
    assert_eq!(
        server_flags(&mailbox, "INBOX", &a).await.as_deref(),
        Some("Seen")
    );
    let (_, m) = app.get(&format!("/v1/messages/{a_id}")).await;
    assert_eq!(
        (m["flags"].clone(), m["pending"].clone()),
        (json!(["\\Seen"]), json!(false))
    );
    // The gone message had no further command, and it goes.
    app.sync(account).await;
    let (status, _) = app.get(&format!("/v1/messages/{b_id}")).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_interrupted_after_the_server_moved_it_is_applied_once() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    let a = deliver(&mailbox, "INBOX", "a");
    let account = connect(&app, &mailbox).await;
    let a_id = app.row_of(&a).await;
    let (_, action) = act(
        &app,
        None,
        json!({ "message_ids": [a_id], "action": "move", "folder": "Archive" }),
    )
    .await;
    // A worker asked the server, which moved it, and died before recording the outcome.
    execute(
        &app.db.url,
        &format!("UPDATE mailbox_action_items SET attempts = 1, attempted_at = now() WHERE message_id = {a_id}"),
    )
    .await;
    let mut s = raw_session(&mailbox).await;
    s.select("INBOX").await.unwrap();
    let uid = uids_with_message_id(&mut s, &a).await[0];
    s.uid_mv(uid.to_string(), "Archive").await.unwrap();
    s.logout().await.unwrap();

    let report = app.sync(account).await;
    assert_eq!(report.actions.done, 1, "{report:?}");
    let (_, view) = app
        .get(&format!("/v1/mailbox-actions/{}", action["id"]))
        .await;
    assert_eq!(view["state"], "done", "{view}");
    assert_eq!(
        (
            copies(&mailbox, "INBOX", &a).await,
            copies(&mailbox, "Archive", &a).await
        ),
        (0, 1),
        "moved once"
    );
    let (_, m) = app.get(&format!("/v1/messages/{a_id}")).await;
    assert_eq!(
        (m["folders"].clone(), m["pending"].clone()),
        (json!(["Archive"]), json!(false))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_are_refused_clearly_and_recorded_once_per_key() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    let a = deliver(&mailbox, "INBOX", "a");
    let account = connect(&app, &mailbox).await;
    let owner = app.acting().unwrap();
    let a_id = app.row_of(&a).await;
    // Carol is a contact: the other user's mail from her is on her profile, for anyone.
    execute(
        &app.db.url,
        "INSERT INTO contacts (email, name) VALUES ('carol@client.example.org', 'Carol')",
    )
    .await;
    let other_box = TestMailbox::create();
    let b = deliver(&other_box, "INBOX", "b");
    let other_account = connect(&app, &other_box).await;
    let b_id = app.row_of(&b).await;
    app.act_as(owner);
    let carol = count(
        &app.db.url,
        "SELECT id AS count FROM contacts WHERE email = 'carol@client.example.org'",
    )
    .await;
    let (_, profile) = app.get(&format!("/v1/contacts/{carol}/messages")).await;
    assert!(
        profile["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == b_id),
        "{profile}"
    );

    // Another user's message — even one seen on a contact's profile — is not found; nor is
    // a message that does not exist.
    for ids in [json!([b_id]), json!([a_id, 999_999_999])] {
        let (status, body) = act(&app, None, json!({ "message_ids": ids, "action": "flag" })).await;
        assert_eq!(
            (status, body["code"].clone()),
            (404, json!("not_found")),
            "{body}"
        );
    }
    for (body, what) in [
        (
            json!({ "message_ids": [], "action": "flag" }),
            "no messages",
        ),
        (
            json!({ "message_ids": vec![a_id; 501], "action": "flag" }),
            "too many",
        ),
        (
            json!({ "message_ids": [a_id], "action": "move" }),
            "move without folder",
        ),
        (
            json!({ "message_ids": [a_id], "action": "flag", "folder": "Archive" }),
            "folder with flag",
        ),
        (
            json!({ "message_ids": [a_id], "action": "move", "folder": "Nope" }),
            "unknown folder",
        ),
        (
            json!({ "message_ids": [a_id], "action": "move", "folder": "Junk" }),
            "inactive folder",
        ),
        (
            json!({ "message_ids": [a_id], "action": "explode" }),
            "unknown action",
        ),
    ] {
        let (status, reply) = act(&app, None, body).await;
        assert_eq!(status, 422, "{what}: {reply}");
        assert_eq!(reply["code"], "invalid_request", "{what}");
    }
    assert_eq!(
        count(&app.db.url, "SELECT count(*) AS count FROM mailbox_actions").await,
        0,
        "nothing recorded"
    );

    // Once per key: the same body answers the same action; another body is refused.
    let body = json!({ "message_ids": [a_id], "action": "mark_read" });
    let (s1, first) = act(&app, Some("k-1"), body.clone()).await;
    let (s2, again) = act(&app, Some("k-1"), body).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(first["id"], again["id"]);
    let (status, reused) = act(
        &app,
        Some("k-1"),
        json!({ "message_ids": [a_id], "action": "mark_unread" }),
    )
    .await;
    assert_eq!(
        (status, reused["code"].clone()),
        (409, json!("idempotency_key_reused"))
    );
    // Only the user who asked (or who may use every account it touches) sees it.
    let stranger = app.create_user().await;
    let (status, _) = app
        .request_as(
            reqwest::Method::GET,
            &format!("/v1/mailbox-actions/{}", first["id"]),
            Some(stranger),
            None,
            None,
        )
        .await;
    assert_eq!(status, 404);
    app.act_as(owner);

    // A disabled account is 409.
    execute(
        &app.db.url,
        &format!("UPDATE accounts SET state = 'disabled', disabled_reason = 'auth_failed' WHERE id = {account}"),
    )
    .await;
    let (status, body) = act(
        &app,
        None,
        json!({ "message_ids": [a_id], "action": "flag" }),
    )
    .await;
    assert_eq!(
        (status, body["code"].clone()),
        (409, json!("account_disabled")),
        "{body}"
    );
    let _ = other_account;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_several_accounts_go_in_one_action() {
    let app = App::start().await;
    let (one, two) = (TestMailbox::create(), TestMailbox::create());
    let (a, b) = (deliver(&one, "INBOX", "a"), deliver(&two, "INBOX", "b"));
    let (status, admin) = app
        .post(
            "/v1/users",
            json!({ "email": format!("admin-{}@crm.example.test", mailfleet_testkit::unique_suffix()), "is_admin": true }),
        )
        .await;
    assert_eq!(status, 201, "{admin}");
    let admin = admin["id"].as_i64().unwrap();
    let accounts = [
        app.connect_shared(admin, &one).await,
        app.connect_shared(admin, &two).await,
    ];
    for _ in accounts {
        let Outcome::Synced(_) = app.work_one().await else {
            panic!("sync failed")
        };
    }
    app.act_as(admin);
    let ids = [app.row_of(&a).await, app.row_of(&b).await];
    let (status, action) = act(&app, None, json!({ "message_ids": ids, "action": "flag" })).await;
    assert_eq!(status, 202, "{action}");
    assert_eq!(app.sync_ready().await, 2, "a sync queued for each account");
    for _ in accounts {
        let Outcome::Synced(_) = app.work_one().await else {
            panic!("sync failed")
        };
    }
    let (_, view) = app
        .get(&format!("/v1/mailbox-actions/{}", action["id"]))
        .await;
    assert_eq!(view["state"], "done", "{view}");
    assert_eq!(
        server_flags(&one, "INBOX", &a).await.as_deref(),
        Some("Flagged")
    );
    assert_eq!(
        server_flags(&two, "INBOX", &b).await.as_deref(),
        Some("Flagged")
    );
}
