//! Credentials are provider-tagged and sealed; a provider's renewed OAuth token is written
//! back under the account's lease, so a worker that lost the account writes nothing.

use crate::app::App;
use mailfleet_core::{Credentials, Secret, SecretKey};
use mailfleet_store::{accounts, leases};
use mailfleet_testkit::{TEST_SECRET_KEY, TestMailbox};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_credentials_are_written_back_only_under_the_current_lease() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    let id = app.connect_account(&mailbox, json!({})).await["id"]
        .as_i64()
        .unwrap();
    let key = SecretKey::from_base64(TEST_SECRET_KEY).unwrap();
    let renewed = |token: &str| Credentials::OAuth {
        access_token: Secret::new(token.to_string()),
        refresh_token: Secret::new("refresh".into()),
        expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
    };
    let mut conn = app.store.conn().await.unwrap();
    let old = leases::acquire(&mut conn, id, "worker-a", 60)
        .await
        .unwrap()
        .expect("free");
    leases::release(&mut conn, old).await.unwrap();
    let current = leases::acquire(&mut conn, id, "worker-b", 60)
        .await
        .unwrap()
        .expect("released");

    let stale = renewed("from-the-old-holder").seal(&key, id);
    assert!(
        accounts::save_credentials(&mut conn, id, &stale, Some(old))
            .await
            .is_err(),
        "a lost lease writes nothing"
    );
    let fresh = renewed("from-the-holder").seal(&key, id);
    accounts::save_credentials(&mut conn, id, &fresh, Some(current))
        .await
        .unwrap();
    let stored = accounts::get(&mut conn, id).await.unwrap();
    let Credentials::OAuth { access_token, .. } =
        Credentials::open(&key, id, &stored.credentials).unwrap()
    else {
        panic!("the renewed tokens are stored")
    };
    assert_eq!(access_token.expose(), "from-the-holder");
}
