use crate::app::{App, TOKEN};
use mailfleet_core::{Credentials, SecretKey};
use mailfleet_testkit::{TEST_SECRET_KEY, TestMailbox};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_the_bearer_token_are_refused() {
    let app = App::start().await;
    let url = format!("{}/v1/accounts", app.api);
    let none = app.http.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let body: serde_json::Value = none.json().await.unwrap();
    assert_eq!(body["code"], "unauthorized");
    let wrong = app.http.get(&url).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    // The token alone is not enough: the request must name who it is for.
    let anonymous = app.http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let body: serde_json::Value = anonymous.json().await.unwrap();
    assert_eq!(body["code"], "acting_user_required");
    let (status, _) = app.get("/v1/accounts").await;
    assert_eq!(status, 200);
    // Probes need no token.
    let health = app
        .http
        .get(format!("{}/healthz", app.api))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = app
        .http
        .get(format!("{}/readyz", app.api))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_account_input_gets_a_typed_error_and_stores_nothing() {
    let app = App::start().await;
    let owner = app.create_user().await;
    app.act_as(owner);
    let good = json!({
        "provider": "imap", "kind": "personal", "owner_user_id": owner,
        "email": "ann@example.test", "password": "pw",
        "imap": { "host": "127.0.0.1", "port": 993, "encryption": "ssl" },
        "smtp": { "host": "127.0.0.1", "port": 587, "encryption": "starttls" },
        "sync_from": "1_month"
    });
    let cases = [
        ("email", json!("not an address")),
        ("password", json!("")),
        ("sync_from", json!("2_years")),
        (
            "imap",
            json!({ "host": "127.0.0.1", "port": 993, "encryption": "tls13" }),
        ),
        (
            "imap",
            json!({ "host": "", "port": 993, "encryption": "ssl" }),
        ),
        ("kind", json!("team")),
        ("provider", json!("aol")),
    ];
    for (field, value) in cases {
        let mut body = good.clone();
        body[field] = value.clone();
        let (status, err) = app.post("/v1/accounts", body).await;
        assert_eq!(status, 422, "{field}={value}: {err}");
        assert!(
            err["code"].is_string() && err["message"].is_string(),
            "{err}"
        );
    }
    let (status, err) = app.post("/v1/accounts", json!({"provider": "gmail"})).await;
    assert_eq!(status, 422, "{err}");
    let (_, list) = app.get("/v1/accounts").await;
    assert_eq!(list.as_array().unwrap().len(), 0, "nothing was stored");
    assert_eq!(app.sync_ready().await, 0, "nothing was queued");

    let (status, _) = app.post("/v1/accounts", good).await;
    assert_eq!(status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_encrypted_at_rest_and_bound_to_their_account() {
    let app = App::start().await;
    let a = TestMailbox::create();
    let b = TestMailbox::create();
    let ida = app.connect_account(&a, json!({})).await["id"]
        .as_i64()
        .unwrap();
    let idb = app.connect_account(&b, json!({})).await["id"]
        .as_i64()
        .unwrap();
    let mut conn = app.store.conn().await.unwrap();
    let rowa = mailfleet_store::accounts::get(&mut conn, ida)
        .await
        .unwrap();
    let rowb = mailfleet_store::accounts::get(&mut conn, idb)
        .await
        .unwrap();
    let pw = a.password.as_bytes();
    assert!(
        !rowa.credentials.windows(pw.len()).any(|w| w == pw),
        "password stored in clear"
    );
    let key = SecretKey::from_base64(TEST_SECRET_KEY).unwrap();
    assert!(Credentials::open(&key, ida, &rowa.credentials).is_ok());
    // The same ciphertext copied to another account's row does not open there.
    assert!(Credentials::open(&key, idb, &rowa.credentials).is_err());
    assert!(Credentials::open(&key, idb, &rowb.credentials).is_ok());
    // And the API never shows it.
    let (_, view) = app.get(&format!("/v1/accounts/{ida}")).await;
    let text = view.to_string();
    assert!(!text.contains(&a.password) && !text.contains("credentials"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent() {
    let app = App::start().await;
    let again = mailfleet_store::run_migrations(&app.db.url).await.unwrap();
    assert!(again.is_empty());
}
