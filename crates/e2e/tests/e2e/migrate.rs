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

/// (row id, folder, remote id, contact links) of every stored message, as memberships say.
async fn snapshot(url: &str) -> Vec<String> {
    mailfleet_testkit::strings(
        url,
        "SELECT m.id || ' ' || f.name || ' ' || mf.remote_id || ' '
                || (SELECT count(*) FROM message_contacts mc WHERE mc.message_id = m.id) AS value
         FROM messages m JOIN message_folders mf ON mf.message_id = m.id
         JOIN folders f ON f.id = mf.folder_id ORDER BY m.id",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_membership_migration_keeps_every_row_its_id_and_links() {
    let app = crate::app::App::start().await;
    let mailbox = mailfleet_testkit::TestMailbox::create();
    mailbox
        .seed(&crate::app::small_mailbox(&mailbox.address, 40, 3))
        .unwrap();
    app.connect_account(&mailbox, serde_json::json!({ "create_contacts": true }))
        .await;
    let mailfleet_worker::Outcome::Synced(_) = app.work_one().await else {
        panic!("sync failed")
    };
    let before = snapshot(&app.db.url).await;
    assert_eq!(before.len(), 40);
    assert!(before.iter().any(|r| !r.ends_with(" 0")), "some links");

    // Back to one folder per row (as every installation stood before), then forward again.
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../migrations/2026-12-04-000015_message_folder_memberships"
    );
    let down = std::fs::read_to_string(format!("{dir}/down.sql")).unwrap();
    let up = std::fs::read_to_string(format!("{dir}/up.sql")).unwrap();
    mailfleet_testkit::batch_execute(&app.db.url, &down).await;
    let old_form = mailfleet_testkit::strings(
        &app.db.url,
        "SELECT m.id || ' ' || f.name || ' ' || m.remote_id || ' '
                || (SELECT count(*) FROM message_contacts mc WHERE mc.message_id = m.id) AS value
         FROM messages m JOIN folders f ON f.id = m.folder_id ORDER BY m.id",
    )
    .await;
    assert_eq!(old_form, before);
    mailfleet_testkit::batch_execute(&app.db.url, &up).await;
    assert_eq!(snapshot(&app.db.url).await, before);
}
