//! Connection tests over RabbitMQ request/reply, and re-connecting a disabled account.

use crate::app::App;
use mailfleet_testkit::TestMailbox;
use mailfleet_worker::Outcome;
use serde_json::{Value, json};

fn settings(mailbox: &TestMailbox) -> Value {
    json!({
        "email": mailbox.address, "password": mailbox.password,
        "imap": { "host": "127.0.0.1", "port": 993, "encryption": "ssl" },
        "smtp": { "host": "127.0.0.1", "port": 587, "encryption": "starttls" }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_test_returns_the_folders_or_a_typed_error() {
    let app = App::start().await;
    let _worker = app.run_worker();
    let mailbox = TestMailbox::create();

    let (status, body) = app.post("/v1/connection-tests", settings(&mailbox)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true, "{body}");
    let roles: Vec<(String, String)> = body["folders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["role"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect();
    for (name, role) in [
        ("INBOX", "inbox"),
        ("Sent", "sent"),
        ("Trash", "trash"),
        ("Junk", "junk"),
        ("Drafts", "drafts"),
        ("Archive", "archive"),
    ] {
        assert!(
            roles.contains(&(name.to_string(), role.to_string())),
            "{roles:?}"
        );
    }

    let mut wrong = settings(&mailbox);
    wrong["password"] = json!("wrong-password");
    let (status, body) = app.post("/v1/connection-tests", wrong).await;
    assert_eq!(status, 200);
    assert_eq!(body["ok"], false);
    assert_eq!(body["error"]["code"], "auth_failed", "{body}");
    assert_eq!(body["error"]["server"], "imap");
    assert!(
        !body.to_string().contains("wrong-password"),
        "the password is never echoed"
    );

    let mut no_smtp = settings(&mailbox);
    no_smtp["smtp"] = json!({ "host": "127.0.0.1", "port": 9, "encryption": "starttls" });
    let (_, body) = app.post("/v1/connection-tests", no_smtp).await;
    assert_eq!(body["error"]["code"], "unreachable", "{body}");
    assert_eq!(body["error"]["server"], "smtp");

    // Port 25 offers no AUTH: the test fails rather than pass unauthenticated.
    let mut plain_smtp = settings(&mailbox);
    plain_smtp["smtp"] = json!({ "host": "127.0.0.1", "port": 25, "encryption": "none" });
    let (_, body) = app.post("/v1/connection-tests", plain_smtp).await;
    assert_eq!(body["ok"], false, "{body}");
    assert_eq!(body["error"]["server"], "smtp");

    let rows = mailfleet_testkit::count(
        &app.db.url,
        "SELECT count(*) AS count FROM connection_tests",
    )
    .await;
    assert_eq!(rows, 0, "test settings are deleted once answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_test_with_no_worker_times_out_cleanly() {
    let app = App::start_unanswered().await;
    let mailbox = TestMailbox::create();
    let started = std::time::Instant::now();
    let (status, body) = app.post("/v1/connection-tests", settings(&mailbox)).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["code"], "timeout");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_account_is_enabled_again_only_by_a_passing_reconnect() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    mailbox
        .seed(&crate::app::small_mailbox(&mailbox.address, 5, 1))
        .unwrap();
    let id = app
        .connect_account(&mailbox, json!({ "password": "not-it" }))
        .await["id"]
        .as_i64()
        .unwrap();
    let Outcome::Failed(_) = app.work_one().await else {
        panic!("expected auth failure")
    };
    let (_, view) = app.get(&format!("/v1/accounts/{id}")).await;
    assert_eq!(view["state"], "disabled");

    let worker = app.run_worker();
    // Same (wrong) settings: still refused, still disabled.
    let (status, body) = app
        .post(&format!("/v1/accounts/{id}/reconnect"), json!({}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "auth_failed");
    let (_, view) = app.get(&format!("/v1/accounts/{id}")).await;
    assert_eq!(view["state"], "disabled");

    // The right password: enabled, and the stored credentials are the new ones.
    let (status, body) = app
        .post(
            &format!("/v1/accounts/{id}/reconnect"),
            json!({ "password": mailbox.password }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "active");
    assert!(body["disabled_reason"].is_null());
    drop(worker);
    // The background worker may already have run the queued sync; either way it completes.
    for _ in 0..100 {
        let (_, v) = app.get(&format!("/v1/accounts/{id}")).await;
        if v["message_count"] == 5 && v["sync_status"] == "idle" {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if app.sync_ready().await > 0 {
            let _ = app.worker.process_one().await;
        }
    }
    panic!("the re-connected account did not sync");
}
