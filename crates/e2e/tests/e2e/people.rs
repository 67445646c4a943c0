//! People and accounts: who may see which mail (enforced by row-level security), shared
//! inboxes and their grants, the primary account, deleting a user.

use crate::app::App;
use mailfleet_core::{Job, JobEnvelope};
use mailfleet_testkit::{TestMailbox, count, count_as_viewer, execute};
use serde_json::{Value, json};

async fn admin(app: &App) -> i64 {
    let (status, u) = app
        .post(
            "/v1/users",
            json!({ "email": format!("admin-{}@crm.example.test", mailfleet_testkit::unique_suffix()), "is_admin": true }),
        )
        .await;
    assert_eq!(status, 201, "{u}");
    u["id"].as_i64().unwrap()
}

/// A mailbox with `n` messages in INBOX, one of them from carol@example.test.
fn seeded(n: usize) -> TestMailbox {
    let m = TestMailbox::create();
    let now = chrono::Utc::now();
    for i in 0..n {
        let from = if i == 0 {
            "Carol <carol@example.test>".to_string()
        } else {
            format!("Sender {i} <s{i}@example.test>")
        };
        let raw = mailfleet_mailgen::simple_message(
            &from,
            &m.address,
            &format!("Message {i}"),
            "Hello",
            &format!("{}-{i}@example.test", m.address.replace('@', ".")),
            now - chrono::Duration::minutes(i as i64),
        );
        let received = std::time::SystemTime::now() - std::time::Duration::from_secs(60 * i as u64);
        m.write_message("INBOX", &raw, received, false, false)
            .unwrap();
    }
    m
}

async fn messages_as(app: &App, user: i64, query: &str) -> (u16, Value) {
    app.request_as(
        reqwest::Method::GET,
        &format!("/v1/messages{query}"),
        Some(user),
        None,
        None,
    )
    .await
}

fn accounts_of(page: &Value) -> Vec<i64> {
    let mut ids: Vec<i64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["account_id"].as_i64().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

#[tokio::test]
async fn each_user_sees_their_own_mail_the_inboxes_granted_and_contact_profiles_nothing_else() {
    let app = App::start().await;
    let carol = count(
        &app.db.url,
        "WITH c AS (INSERT INTO contacts (email) VALUES ('carol@example.test') RETURNING id)
         SELECT id AS count FROM c",
    )
    .await;
    let (ann_box, bob_box, sales_box) = (seeded(5), seeded(3), seeded(4));
    let ann_account = app
        .connect_account(&ann_box, json!({ "active_folders": ["INBOX"] }))
        .await;
    let (ann, ann_id) = (
        ann_account["owner_user_id"].as_i64().unwrap(),
        ann_account["id"].as_i64().unwrap(),
    );
    app.work_one().await;
    let bob_account = app
        .connect_account(&bob_box, json!({ "active_folders": ["INBOX"] }))
        .await;
    let (bob, bob_id) = (
        bob_account["owner_user_id"].as_i64().unwrap(),
        bob_account["id"].as_i64().unwrap(),
    );
    app.work_one().await;
    let admin = admin(&app).await;
    let sales = app.connect_shared(admin, &sales_box).await;
    app.work_one().await;
    let dave = app.create_user().await;

    // Personal mail is its owner's alone.
    let (_, page) = messages_as(&app, ann, "").await;
    assert_eq!(accounts_of(&page), [ann_id]);
    assert_eq!(page["messages"].as_array().unwrap().len(), 5);
    let (_, page) = messages_as(&app, bob, &format!("?account_id={ann_id}")).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 0, "{page}");
    let (status, _) = app
        .request_as(
            reqwest::Method::GET,
            &format!("/v1/accounts/{ann_id}"),
            Some(bob),
            None,
            None,
        )
        .await;
    assert_eq!(status, 404);

    // A shared inbox: administrators, and users once granted — until revoked.
    let (_, page) = messages_as(&app, admin, "").await;
    assert_eq!(
        accounts_of(&page),
        [sales],
        "an admin sees shared inboxes, not personal mail"
    );
    let (_, page) = messages_as(&app, bob, "").await;
    assert_eq!(accounts_of(&page), [bob_id]);
    let (status, _) = app
        .request_as(
            reqwest::Method::POST,
            &format!("/v1/accounts/{sales}/access"),
            Some(bob),
            None,
            Some(json!({ "user_id": bob })),
        )
        .await;
    assert_eq!(status, 403, "only administrators grant access");
    let (status, grants) = app
        .request_as(
            reqwest::Method::POST,
            &format!("/v1/accounts/{sales}/access"),
            Some(admin),
            None,
            Some(json!({ "user_id": bob })),
        )
        .await;
    assert_eq!((status, grants["user_ids"].clone()), (200, json!([bob])));
    let (_, page) = messages_as(&app, bob, "").await;
    assert_eq!(accounts_of(&page), [bob_id, sales]);
    let (status, _) = app
        .request_as(
            reqwest::Method::PATCH,
            &format!("/v1/accounts/{sales}"),
            Some(bob),
            None,
            Some(json!({ "create_contacts": true })),
        )
        .await;
    assert_eq!(
        status, 403,
        "a granted user reads a shared inbox but does not change it"
    );
    let (_, page) = messages_as(&app, dave, "").await;
    assert!(page["messages"].as_array().unwrap().is_empty(), "{page}");

    // On Carol's profile anyone sees the mail linked to her, from any account; the general
    // list filtered by her still shows only what the user may read anyway.
    let (status, page) = app
        .request_as(
            reqwest::Method::GET,
            &format!("/v1/contacts/{carol}/messages"),
            Some(dave),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(accounts_of(&page), [ann_id, bob_id, sales]);
    assert_eq!(page["messages"].as_array().unwrap().len(), 3);
    let (_, page) = messages_as(&app, dave, &format!("?contact_id={carol}")).await;
    assert!(page["messages"].as_array().unwrap().is_empty(), "{page}");

    let (status, _) = app
        .request_as(
            reqwest::Method::DELETE,
            &format!("/v1/accounts/{sales}/access/{bob}"),
            Some(admin),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (_, page) = messages_as(&app, bob, "").await;
    assert_eq!(accounts_of(&page), [bob_id]);

    // The database itself enforces it: a query with no WHERE at all, run as the API's role.
    let all = "SELECT count(*) AS count FROM messages";
    assert_eq!(count_as_viewer(&app.db.url, ann, all).await, 5);
    assert_eq!(count_as_viewer(&app.db.url, bob, all).await, 3);
    assert_eq!(count_as_viewer(&app.db.url, dave, all).await, 0);
    assert_eq!(
        count_as_viewer(
            &app.db.url,
            dave,
            "SELECT count(*) AS count FROM message_addresses"
        )
        .await,
        0
    );
    assert_eq!(
        count(&app.db.url, all).await,
        12,
        "workers and migrations are not restricted"
    );
}

#[tokio::test]
async fn messages_page_newest_first_with_a_cursor() {
    let app = App::start().await;
    let mailbox = seeded(7);
    let account = app
        .connect_account(&mailbox, json!({ "active_folders": ["INBOX"] }))
        .await;
    let user = account["owner_user_id"].as_i64().unwrap();
    app.work_one().await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("?limit=3&folder=INBOX&cursor={c}"),
            None => "?limit=3&folder=INBOX".to_string(),
        };
        let (status, page) = messages_as(&app, user, &query).await;
        assert_eq!(status, 200, "{page}");
        for m in page["messages"].as_array().unwrap() {
            seen.push(m["subject"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..7).map(|i| format!("Message {i}")).collect();
    assert_eq!(seen, expected, "newest first, each once");
    let (status, err) = messages_as(&app, user, "?cursor=garbage").await;
    assert_eq!((status, err["code"].as_str()), (400, Some("invalid_query")));
}

#[tokio::test]
async fn only_owners_connect_personal_accounts_and_only_admins_shared_ones() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    let someone = app.create_user().await;
    let other = app.create_user().await;
    let body = |kind: &str, owner: Option<i64>| {
        json!({
            "provider": "imap", "kind": kind, "owner_user_id": owner,
            "email": mailbox.address, "password": mailbox.password,
            "imap": { "host": "127.0.0.1", "port": 993, "encryption": "ssl" },
            "smtp": { "host": "127.0.0.1", "port": 587, "encryption": "starttls" },
            "sync_from": "now"
        })
    };
    for (b, code) in [
        (body("personal", Some(other)), "forbidden"),
        (body("shared", None), "forbidden"),
    ] {
        let (status, err) = app
            .request_as(
                reqwest::Method::POST,
                "/v1/accounts",
                Some(someone),
                None,
                Some(b),
            )
            .await;
        assert_eq!((status, err["code"].as_str()), (403, Some(code)), "{err}");
    }
    assert_eq!(
        count(&app.db.url, "SELECT count(*) AS count FROM accounts").await,
        0
    );
    // Without owner_user_id a personal account is the acting user's.
    let (status, account) = app
        .request_as(
            reqwest::Method::POST,
            "/v1/accounts",
            Some(someone),
            None,
            Some(body("personal", None)),
        )
        .await;
    assert_eq!(status, 201, "{account}");
    assert_eq!(account["owner_user_id"], someone);
}

#[tokio::test]
async fn one_primary_account_per_user_listed_first() {
    let app = App::start().await;
    let (first, second) = (TestMailbox::create(), TestMailbox::create());
    let a = app.connect_account(&first, json!({})).await;
    let user = a["owner_user_id"].as_i64().unwrap();
    let b = app
        .request_as(
            reqwest::Method::POST,
            "/v1/accounts",
            Some(user),
            None,
            Some(json!({
                "provider": "imap", "kind": "personal",
                "email": second.address, "password": second.password,
                "imap": { "host": "127.0.0.1", "port": 993, "encryption": "ssl" },
                "smtp": { "host": "127.0.0.1", "port": 587, "encryption": "starttls" },
                "sync_from": "now"
            })),
        )
        .await
        .1;
    let (a, b) = (a["id"].as_i64().unwrap(), b["id"].as_i64().unwrap());
    let admin = admin(&app).await;
    let shared_box = TestMailbox::create();
    let shared = app.connect_shared(admin, &shared_box).await;
    app.request_as(
        reqwest::Method::POST,
        &format!("/v1/accounts/{shared}/access"),
        Some(admin),
        None,
        Some(json!({ "user_id": user })),
    )
    .await;

    let listed = |list: Value| -> Vec<(i64, bool)> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["id"].as_i64().unwrap(),
                    v["is_primary"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    let (_, list) = app.get("/v1/accounts").await;
    assert_eq!(listed(list), [(a, false), (b, false), (shared, false)]);
    for (primary, expected) in [(b, [(b, true), (a, false)]), (a, [(a, true), (b, false)])] {
        let (status, _) = app
            .request_as(
                reqwest::Method::POST,
                &format!("/v1/accounts/{primary}/primary"),
                Some(user),
                None,
                None,
            )
            .await;
        assert_eq!(status, 200);
        let (_, list) = app.get("/v1/accounts").await;
        let list = listed(list);
        assert_eq!(list[..2], expected);
        assert_eq!(
            list[2],
            (shared, false),
            "shared inboxes come after the user's own"
        );
    }
    let (status, err) = app
        .request_as(
            reqwest::Method::POST,
            &format!("/v1/accounts/{shared}/primary"),
            Some(user),
            None,
            None,
        )
        .await;
    assert_eq!((status, err["code"].as_str()), (422, Some("not_personal")));
    // The database refuses a second primary whatever the code does.
    let second_primary = mailfleet_testkit::try_execute(
        &app.db.url,
        &format!("UPDATE accounts SET is_primary = TRUE WHERE id = {b}"),
    )
    .await;
    assert!(second_primary.is_err(), "two primary accounts were stored");
}

#[tokio::test]
async fn deleting_a_user_removes_their_mailboxes_and_jobs_and_keeps_shared_inboxes_and_contacts() {
    let app = App::start().await;
    let mailbox = seeded(30);
    let account = app
        .connect_account(&mailbox, json!({ "active_folders": ["INBOX"] }))
        .await;
    let (user, id) = (
        account["owner_user_id"].as_i64().unwrap(),
        account["id"].as_i64().unwrap(),
    );
    app.work_one().await;
    let carol_before = count(&app.db.url, "SELECT count(*) AS count FROM contacts").await;
    let admin = admin(&app).await;
    let shared_box = TestMailbox::create();
    let shared = app.connect_shared(admin, &shared_box).await;
    app.work_one().await;
    // The user also happens to be recorded as the shared inbox's owner.
    execute(
        &app.db.url,
        &format!("UPDATE accounts SET owner_user_id = {user} WHERE id = {shared}"),
    )
    .await;
    let (status, _) = app
        .send_as(
            user,
            Some("bye"),
            json!({ "account_id": id, "to": ["x@example.test"], "text": "bye" }),
        )
        .await;
    assert_eq!(status, 202);
    // A sync job still queued for the account when the user goes.
    app.broker
        .publish(&JobEnvelope::new(Job::SyncAccount { account_id: id }))
        .await
        .unwrap();

    let (status, _) = app
        .request_as(
            reqwest::Method::DELETE,
            &format!("/v1/users/{user}"),
            Some(user),
            None,
            None,
        )
        .await;
    assert_eq!(status, 403, "only administrators delete users");
    let (status, deleted) = app
        .request_as(
            reqwest::Method::DELETE,
            &format!("/v1/users/{user}"),
            Some(admin),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["deleted_accounts"], 1);
    assert_eq!(deleted["deleted_messages"], 30);

    for table in ["messages", "folders", "outgoing_messages", "sync_runs"] {
        assert_eq!(
            count(
                &app.db.url,
                &format!("SELECT count(*) AS count FROM {table} WHERE account_id = {id}")
            )
            .await,
            0,
            "{table}"
        );
    }
    assert_eq!(
        count(
            &app.db.url,
            &format!("SELECT count(*) AS count FROM users WHERE id = {user}")
        )
        .await,
        0
    );
    assert_eq!(
        count(&app.db.url, &format!("SELECT count(*) AS count FROM accounts WHERE id = {shared} AND owner_user_id IS NULL")).await,
        1,
        "the shared inbox stays"
    );
    assert_eq!(
        count(&app.db.url, "SELECT count(*) AS count FROM contacts").await,
        carol_before
    );

    // The jobs still queued for the account run into its tombstone: dropped, not poison.
    for queue in [
        app.broker.names().sync.clone(),
        app.broker.names().send.clone(),
    ] {
        loop {
            match app.worker.process_one_from(&queue).await.unwrap() {
                mailfleet_worker::Outcome::Empty => break,
                mailfleet_worker::Outcome::Skipped => {}
                other => panic!("a job of the deleted user ran: {other:?}"),
            }
        }
    }
    let dead = app
        .broker
        .ready_count(&app.broker.names().dead)
        .await
        .unwrap();
    assert_eq!(
        dead, 0,
        "jobs of a deleted user are dropped, not dead-lettered"
    );
}

#[tokio::test]
async fn another_database_role_reading_the_crm_tables_still_sees_every_row() {
    let app = App::start().await;
    let mailbox = seeded(3);
    app.connect_account(&mailbox, json!({ "active_folders": ["INBOX"] }))
        .await;
    app.work_one().await;
    // A CRM's own read-only role (not the table owner, no BYPASSRLS).
    let role = format!(
        "crm_reader_{}",
        mailfleet_testkit::unique_suffix().replace('-', "_")
    );
    execute(&app.db.url, &format!("CREATE ROLE {role} NOLOGIN")).await;
    execute(
        &app.db.url,
        &format!("GRANT SELECT ON messages, message_addresses TO {role}"),
    )
    .await;
    let n = mailfleet_testkit::count_as_role(
        &app.db.url,
        &role,
        "SELECT count(*) AS count FROM messages",
    )
    .await;
    execute(
        &app.db.url,
        &format!("REVOKE ALL ON messages, message_addresses FROM {role}"),
    )
    .await;
    execute(&app.db.url, &format!("DROP ROLE {role}")).await;
    assert_eq!(n, 3);
}
