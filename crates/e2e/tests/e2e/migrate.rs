//! `mailfleet migrate` as a database owner without CREATEROLE, as on managed Postgres: it
//! needs the cluster-wide role `mailfleet_viewer` created and granted by an administrator, and
//! says exactly what to run until then.

use mailfleet_testkit::{TestDb, UnprivilegedDb, admin_database_url, execute};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_owner_without_createrole_migrates_once_granted_the_viewer_role() {
    // Any migrated database makes sure the role exists in this cluster (as a superuser).
    let _existing = TestDb::create().await;
    let db = UnprivilegedDb::create().await;

    // Not a member yet, and no right to grant it: refused, with the statement to run.
    let err = mailfleet_store::run_migrations(&db.url)
        .await
        .expect_err("an owner without the role cannot finish");
    let text = err.to_string();
    assert!(
        text.contains(&format!("GRANT mailfleet_viewer TO {};", db.role)),
        "{text}"
    );
    assert!(!text.contains("permission denied to create role"), "{text}");

    // Once an administrator granted it, the same command succeeds, and the API's reads can
    // take the role.
    execute(
        &admin_database_url(),
        &format!("GRANT mailfleet_viewer TO {}", db.role),
    )
    .await;
    let applied = mailfleet_store::run_migrations(&db.url)
        .await
        .expect("migrate as the owner");
    assert!(!applied.is_empty());
    let seen = mailfleet_testkit::count_as_role(
        &db.url,
        "mailfleet_viewer",
        "SELECT count(*) AS count FROM messages",
    )
    .await;
    assert_eq!(seen, 0);
    let owner = mailfleet_testkit::strings(
        &db.url,
        "SELECT tableowner::text AS value FROM pg_tables WHERE tablename = 'messages'",
    )
    .await;
    assert_eq!(owner, std::slice::from_ref(&db.role));
}
