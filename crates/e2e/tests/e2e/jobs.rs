use crate::app::{App, small_mailbox};
use mailfleet_testkit::{TestMailbox, count};
use mailfleet_worker::Outcome;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_whose_job_is_queued_gets_no_second_job() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    let account = app.connect_account(&mailbox, json!({})).await;
    let id = account["id"].as_i64().unwrap();
    assert_eq!(app.sync_ready().await, 1);

    // "Sync now" twice and a scheduler pass while the first job is queued: still one job.
    for _ in 0..2 {
        let (status, body) = app
            .post(&format!("/v1/accounts/{id}/sync"), json!({}))
            .await;
        assert_eq!(status, 202);
        assert_eq!(body["new_job"], false);
    }
    assert_eq!(app.scheduler.tick().await.unwrap(), 0);
    assert_eq!(app.sync_ready().await, 1);

    // After it ran, the requests made meanwhile give exactly one follow-up sync.
    let Outcome::Synced(_) = app.work_one().await else {
        panic!("sync failed")
    };
    assert_eq!(app.scheduler.tick().await.unwrap(), 1);
    assert_eq!(app.scheduler.tick().await.unwrap(), 0);
    assert_eq!(app.sync_ready().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_scheduler_passes_publish_each_due_account_once() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    let account = app.connect_account(&mailbox, json!({})).await;
    let id = account["id"].as_i64().unwrap();
    // Run the queued first job, then make the account due again.
    let Outcome::Synced(_) = app.work_one().await else {
        panic!("sync failed")
    };
    let mut conn = app.store.conn().await.unwrap();
    mailfleet_store::accounts::backdate_last_attempt(&mut conn, id, 7200)
        .await
        .unwrap();
    let (a, b, c) = tokio::join!(
        app.scheduler.tick(),
        app.scheduler.tick(),
        app.scheduler.tick()
    );
    assert_eq!(a.unwrap() + b.unwrap() + c.unwrap(), 1);
    assert_eq!(app.sync_ready().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_job_published_by_the_crm_as_raw_json_is_run() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    mailbox
        .seed(&small_mailbox(&mailbox.address, 10, 3))
        .unwrap();
    let account = app.connect_account(&mailbox, json!({})).await;
    let id = account["id"].as_i64().unwrap();
    let Outcome::Synced(first) = app.work_one().await else {
        panic!("sync failed")
    };
    assert_eq!(first.messages_added, 10);

    mailbox
        .seed(&small_mailbox(&mailbox.address, 3, 99))
        .unwrap();
    // Exactly what docs/jobs.md tells a CRM to publish.
    let body = format!(
        r#"{{"schema_version":1,"job_id":"3f0c1d2e-0000-4000-8000-000000000001","kind":"sync_account","account_id":{id},"published_at":"2026-11-26T10:00:00Z"}}"#
    );
    app.broker
        .publish_raw(&app.broker.names().sync, body.as_bytes())
        .await
        .unwrap();
    let Outcome::Synced(second) = app.work_one().await else {
        panic!("sync failed")
    };
    assert_eq!(second.messages_added, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_jobs_are_dead_lettered_and_good_jobs_keep_flowing() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    let sync = app.broker.names().sync.clone();
    for poison in [
        &b"not json at all"[..],
        br#"{"schema_version":99,"kind":"sync_account","account_id":1}"#,
        br#"{"schema_version":1,"job_id":"3f0c1d2e-0000-4000-8000-000000000002","kind":"format_disk","published_at":"2026-11-26T10:00:00Z"}"#,
        br#"{"schema_version":1,"job_id":"3f0c1d2e-0000-4000-8000-000000000003","kind":"sync_account","account_id":987654,"published_at":"2026-11-26T10:00:00Z"}"#,
    ] {
        app.broker.publish_raw(&sync, poison).await.unwrap();
    }
    let account = app.connect_account(&mailbox, json!({})).await;
    assert!(account["id"].is_i64());
    let mut rejected = 0;
    let mut synced = 0;
    for _ in 0..5 {
        match app.work_one().await {
            Outcome::Rejected(_) => rejected += 1,
            Outcome::Synced(_) => synced += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((rejected, synced), (4, 1));
    // Dead-lettering is asynchronous inside the broker: wait for it, boundedly.
    let dead = app.broker.names().dead.clone();
    let mut n = 0;
    for _ in 0..50 {
        n = app.broker.ready_count(&dead).await.unwrap();
        if n == 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(n, 4);
    assert_eq!(
        count(
            &app.db.url,
            "SELECT count(*) AS count FROM sync_runs WHERE outcome = 'ok'"
        )
        .await,
        1
    );
}

async fn retry_delay(url: &str, id: i64) -> i64 {
    count(
        url,
        &format!(
            "SELECT extract(epoch FROM next_attempt_at - last_sync_attempt_at)::bigint AS count
             FROM accounts WHERE id = {id}"
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_syncs_are_retried_after_a_growing_delay_or_the_providers_retry_after() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    let proxy = mailfleet_testkit::FlakyProxy::start("127.0.0.1:993").await;
    proxy.refuse(true);
    let id = app.connect_through(&mailbox, proxy.port).await;
    let url = app.db.url.clone();
    let mut delays = Vec::new();
    for _ in 0..3 {
        let Outcome::Failed(_) = app.work_one().await else {
            panic!("expected a failure")
        };
        delays.push(retry_delay(&url, id).await);
        // Not due before its time…
        assert_eq!(app.scheduler.tick().await.unwrap(), 0);
        // …and due after it.
        let mut conn = app.store.conn().await.unwrap();
        mailfleet_testkit::backdate_retry(&mut conn, id).await;
        assert_eq!(app.scheduler.tick().await.unwrap(), 1);
    }
    assert!((30..=36).contains(&delays[0]), "{delays:?}");
    assert!((60..=72).contains(&delays[1]), "{delays:?}");
    assert!((120..=144).contains(&delays[2]), "{delays:?}");

    // Back up: success clears the failure count and the retry schedule.
    proxy.refuse(false);
    let Outcome::Synced(_) = app.work_one().await else {
        panic!("sync failed")
    };
    assert_eq!(
        count(
            &url,
            &format!("SELECT consecutive_failures::bigint AS count FROM accounts WHERE id = {id}")
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &url,
            &format!(
                "SELECT count(*) AS count FROM accounts WHERE id = {id} AND next_attempt_at IS NULL"
            )
        )
        .await,
        1
    );

    // A provider's Retry-After wins over the computed delay.
    let mut conn = app.store.conn().await.unwrap();
    mailfleet_store::accounts::fail_sync(&mut conn, id, "rate limited", Some(90), 3600)
        .await
        .unwrap();
    assert_eq!(retry_delay(&url, id).await, 90);
}
