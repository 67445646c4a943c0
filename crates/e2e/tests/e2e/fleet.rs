//! One worker per mailbox (leases with fencing tokens) and long syncs in slices.

use crate::app::{App, small_mailbox};
use mailfleet_store::leases;
use mailfleet_store::messages::{BatchOwner, FolderChanges, store_batch};
use mailfleet_testkit::{FlakyProxy, TestMailbox, count};
use mailfleet_worker::Outcome;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_copies_of_a_sync_job_on_three_workers_open_one_imap_session_at_a_time() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    mailbox
        .seed(&small_mailbox(&mailbox.address, 300, 31))
        .unwrap();
    let proxy = FlakyProxy::start("127.0.0.1:993").await;
    let id = app.connect_through(&mailbox, proxy.port).await;
    let body = format!(
        r#"{{"schema_version":1,"job_id":"3f0c1d2e-0000-4000-8000-000000000009","kind":"sync_account","account_id":{id},"published_at":"2026-11-26T10:00:00Z"}}"#
    );
    for _ in 0..19 {
        app.broker
            .publish_raw(&app.broker.names().sync, body.as_bytes())
            .await
            .unwrap();
    }
    assert_eq!(app.sync_ready().await, 20);

    let (stop, rx) = tokio::sync::watch::channel(false);
    let mut workers = vec![tokio::spawn(app.worker.clone().run(rx.clone()))];
    for _ in 0..2 {
        let w = std::sync::Arc::new(App::start_sharing(&app).await);
        workers.push(tokio::spawn(w.run(rx.clone())));
    }
    // Wait (boundedly) for the queue to drain and the last holder to let go.
    let url = app.db.url.clone();
    let mut drained = false;
    for _ in 0..300 {
        let held = count(
            &url,
            &format!(
                "SELECT count(*) AS count FROM accounts WHERE id = {id} AND lease_expires_at IS NOT NULL"
            ),
        )
        .await;
        if app.sync_ready().await == 0 && held == 0 && proxy.connections().0 == 0 {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send(true).unwrap();
    for w in workers {
        w.await.unwrap().unwrap();
    }
    assert!(drained, "the jobs did not finish");
    let (_, max_open) = proxy.connections();
    assert_eq!(
        max_open, 1,
        "more than one IMAP session for one mailbox at a time"
    );
    assert_eq!(app.message_count(id).await, 300);
    let runs = count(
        &url,
        "SELECT count(*) AS count FROM sync_runs WHERE outcome = 'ok'",
    )
    .await;
    assert!(
        (1..=20).contains(&runs),
        "{runs} syncs ran; the other jobs were no-ops"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_with_a_lost_lease_commits_nothing() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    let id = app.connect_account(&mailbox, json!({})).await["id"]
        .as_i64()
        .unwrap();
    let Outcome::Synced(_) = app.work_one().await else {
        panic!("sync failed")
    };
    let mut conn = app.store.conn().await.unwrap();
    let folder = mailfleet_store::folders::list(&mut conn, id)
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.name == "INBOX")
        .unwrap();

    // A holds the lease; B can't take it until it expires; then B can, with a newer token.
    let a = leases::acquire(&mut conn, id, "worker-a", 1)
        .await
        .unwrap()
        .expect("free");
    assert!(
        leases::acquire(&mut conn, id, "worker-b", 60)
            .await
            .unwrap()
            .is_none()
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let b = leases::acquire(&mut conn, id, "worker-b", 60)
        .await
        .unwrap()
        .expect("expired");
    assert!(b.token > a.token);
    assert!(
        !leases::renew(&mut conn, a, 60).await.unwrap(),
        "A can't renew a lost lease"
    );

    // A wakes up and tries to move INBOX's cursor: refused, nothing written.
    let owner = BatchOwner {
        account_id: id,
        folder_id: folder.id,
        own_addresses: vec![],
        create_contacts: false,
        fence: Some(a),
    };
    let stale = mailfleet_store::folders::CursorUpdate {
        uidvalidity: Some(1),
        uidnext: Some(1),
        ..Default::default()
    };
    let err = store_batch(&mut conn, &owner, vec![], &FolderChanges::default(), &stale)
        .await
        .unwrap_err();
    assert!(
        matches!(err, mailfleet_store::StoreError::LeaseLost { .. }),
        "{err}"
    );
    let after = mailfleet_store::folders::list(&mut conn, id)
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.name == "INBOX")
        .unwrap();
    assert_eq!(
        (after.uidvalidity, after.uidnext),
        (folder.uidvalidity, folder.uidnext)
    );

    // B's writes go through.
    let owner_b = BatchOwner {
        fence: Some(b),
        ..owner
    };
    let same = mailfleet_store::folders::CursorUpdate {
        uidvalidity: folder.uidvalidity,
        uidnext: folder.uidnext,
        highestmodseq: folder.highestmodseq,
        ..Default::default()
    };
    store_batch(
        &mut conn,
        &owner_b,
        vec![],
        &FolderChanges::default(),
        &same,
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_sync_continues_in_follow_up_jobs_and_ends_complete() {
    let app = App::start_with(|c| c.sync.max_duration = Some(Duration::ZERO)).await;
    let mailbox = TestMailbox::create();
    mailbox
        .seed(&small_mailbox(&mailbox.address, 100, 2))
        .unwrap();
    let id = app.connect_account(&mailbox, json!({})).await["id"]
        .as_i64()
        .unwrap();
    let mut slices = 0;
    loop {
        let Outcome::Synced(report) = app.work_one().await else {
            panic!("slice failed")
        };
        slices += 1;
        if !report.incomplete {
            break;
        }
        assert_eq!(
            app.sync_ready().await,
            1,
            "each slice queues exactly one follow-up"
        );
        let (_, view) = app.get(&format!("/v1/accounts/{id}")).await;
        assert_eq!(
            view["sync_status"], "queued",
            "the claim stays while slices continue"
        );
        assert_eq!(
            app.scheduler.tick().await.unwrap(),
            0,
            "no extra job meanwhile"
        );
        assert!(slices < 50, "never finishes");
    }
    assert!(
        slices >= 4,
        "100 messages in batches of 25 take several slices: {slices}"
    );
    assert_eq!(app.message_count(id).await, 100);
    assert_eq!(app.distinct_message_ids(id).await, 100);
    let (_, view) = app.get(&format!("/v1/accounts/{id}")).await;
    assert_eq!(view["sync_status"], "idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_and_publishers_come_back_after_the_broker_connection_drops() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    mailbox
        .seed(&small_mailbox(&mailbox.address, 10, 5))
        .unwrap();
    let id = app.connect_account(&mailbox, json!({})).await["id"]
        .as_i64()
        .unwrap();

    // A worker and a publisher that reach RabbitMQ through a proxy that can drop them.
    let amqp = FlakyProxy::start("127.0.0.1:5672").await;
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", amqp.port);
    let prefix = app.broker.names().prefix.clone();
    let publisher = mailfleet_queue::Broker::connect(&url, &prefix)
        .await
        .unwrap();
    let worker = std::sync::Arc::new(App::start_sharing_via(&app, &url).await);
    let (stop, rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(worker.run(rx));

    let synced = |n: i64| {
        let db = app.db.url.clone();
        async move {
            for _ in 0..200 {
                if count(&db, &format!("SELECT count(*) AS count FROM messages WHERE account_id = {id}")).await == n
                    && count(&db, &format!("SELECT count(*) AS count FROM accounts WHERE id = {id} AND sync_queued_at IS NULL")).await == 1
                {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        }
    };
    assert!(synced(10).await, "the first job was not run");

    // The broker connections drop (as in a RabbitMQ restart).
    amqp.cut_all();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Publishing still works: the publisher reconnects and re-declares.
    mailbox
        .seed(&small_mailbox(&mailbox.address, 4, 77))
        .unwrap();
    let mut conn = app.store.conn().await.unwrap();
    assert!(
        mailfleet_store::accounts::claim_now(&mut conn, id)
            .await
            .unwrap()
    );
    publisher
        .publish(&mailfleet_core::JobEnvelope::new(
            mailfleet_core::Job::SyncAccount { account_id: id },
        ))
        .await
        .expect("publish after the connection dropped");
    // And the worker resumed consuming.
    assert!(synced(14).await, "the worker did not come back");
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_holds_the_job_instead_of_burning_its_deliveries() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    mailbox
        .seed(&small_mailbox(&mailbox.address, 20, 8))
        .unwrap();
    let id = app.connect_account(&mailbox, json!({})).await["id"]
        .as_i64()
        .unwrap();

    let pg = FlakyProxy::start("127.0.0.1:5432").await;
    let via_proxy = app
        .db
        .url
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", pg.port));
    assert_ne!(via_proxy, app.db.url);
    let worker = App::start_sharing_through(&app, &mailfleet_testkit::amqp_url(), &via_proxy).await;
    pg.refuse(true);
    pg.cut_all();

    let job = tokio::spawn(async move { worker.process_one().await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !job.is_finished(),
        "the job is held while the database is away"
    );
    pg.refuse(false);
    let outcome = tokio::time::timeout(Duration::from_secs(60), job)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(outcome, Outcome::Synced(_)), "{outcome:?}");
    assert_eq!(app.message_count(id).await, 20);
    assert_eq!(
        app.broker
            .ready_count(&app.broker.names().dead)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claim_of_a_worker_that_died_mid_sync_is_taken_up_once_its_lease_expires() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    let id = app.connect_account(&mailbox, json!({})).await["id"]
        .as_i64()
        .unwrap();
    // A worker took the job and the lease, then died (no release, no finish).
    let ch = app.broker.consumer_channel(1).await.unwrap();
    let d = mailfleet_queue::Broker::get(&ch, &app.broker.names().sync)
        .await
        .unwrap()
        .unwrap();
    d.acker.ack(Default::default()).await.unwrap();
    let mut conn = app.store.conn().await.unwrap();
    leases::acquire(&mut conn, id, "dead-worker", 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        app.scheduler.tick().await.unwrap(),
        0,
        "the lease is still valid"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    mailfleet_store::accounts::request_sync(&mut conn, id)
        .await
        .unwrap();
    assert_eq!(
        app.scheduler.tick().await.unwrap(),
        1,
        "the orphaned claim is taken up"
    );
    let Outcome::Synced(_) = app.work_one().await else {
        panic!("sync failed")
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_is_ready_only_while_consuming_with_the_broker_and_database_up() {
    let app = App::start().await;
    let pg = FlakyProxy::start("127.0.0.1:5432").await;
    let via_proxy = app
        .db
        .url
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", pg.port));
    let worker = std::sync::Arc::new(
        App::start_sharing_through(&app, &mailfleet_testkit::amqp_url(), &via_proxy).await,
    );
    let r = worker.readiness().await;
    assert!(!r.ready() && !r.consuming, "not consuming yet: {r:?}");

    let (stop, rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(worker.clone().run(rx));
    let mut ready = false;
    for _ in 0..50 {
        if worker.readiness().await.ready() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "{:?}", worker.readiness().await);

    // The database goes away: not ready; back: ready again.
    pg.refuse(true);
    pg.cut_all();
    let r = worker.readiness().await;
    assert!(!r.ready() && !r.database && r.broker, "{r:?}");
    pg.refuse(false);
    assert!(worker.readiness().await.ready());

    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
    assert!(
        !worker.readiness().await.ready(),
        "a stopped worker is not ready"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_holders_lease_is_taken_at_once_a_frozen_holders_only_once_it_expires() {
    let app = App::start().await;
    let mailbox = TestMailbox::create();
    let id = app.connect_account(&mailbox, json!({})).await["id"]
        .as_i64()
        .unwrap();
    let a = leases::acquire_live(&app.store, id, "worker-a", 60)
        .await
        .unwrap()
        .expect("free");
    assert!(a.liveness.held());
    // A is alive (or frozen: its connection stays open): its lease holds for 60 s.
    assert!(
        leases::acquire_live(&app.store, id, "worker-b", 60)
            .await
            .unwrap()
            .is_none()
    );
    // A dies without releasing anything; Postgres ends its session and the lock with it.
    drop(a);
    let started = std::time::Instant::now();
    let b = loop {
        if let Some(b) = leases::acquire_live(&app.store, id, "worker-b", 60)
            .await
            .unwrap()
        {
            break b;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the dead holder's lease was not taken before its expiry"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(b.liveness.held());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_given_back_twice_commits_one_batch_and_hands_over_to_a_fresh_job() {
    let app = App::start_with(|c| c.sync.batch_messages = 10).await;
    let mailbox = TestMailbox::create();
    mailbox
        .seed(&small_mailbox(&mailbox.address, 60, 3))
        .unwrap();
    let id = app.connect_account(&mailbox, json!({})).await["id"]
        .as_i64()
        .unwrap();
    // Two workers took the job and gave it back (as killed ones do).
    for _ in 0..2 {
        let ch = app.broker.consumer_channel(1).await.unwrap();
        let taken = mailfleet_queue::Broker::get(&ch, &app.broker.names().sync)
            .await
            .unwrap()
            .expect("the sync job");
        taken
            .acker
            .nack(mailfleet_queue::BasicNackOptions {
                requeue: true,
                multiple: false,
            })
            .await
            .unwrap();
        let _ = ch.close(200, "done".into()).await;
    }

    let Outcome::Synced(report) = app.work_one().await else {
        panic!("the redelivery failed")
    };
    assert!(report.incomplete, "{report:?}");
    assert!(
        (1..=10).contains(&report.messages_added),
        "one batch (of at most 10), then a fresh job: {report:?}"
    );
    assert_eq!(app.sync_ready().await, 1, "the follow-up is queued");
    // The fresh job (first delivery) syncs the rest in one go.
    let Outcome::Synced(report) = app.work_one().await else {
        panic!("the follow-up failed")
    };
    assert!(!report.incomplete, "{report:?}");
    assert_eq!(app.message_count(id).await, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_that_cannot_be_queued_leaves_the_sync_due_not_finished() {
    use lapin::options::{BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions};
    use lapin::types::{FieldTable, ShortString};
    let app = App::start_with(|c| c.sync.max_duration = Some(Duration::ZERO)).await;
    let mailbox = TestMailbox::create();
    mailbox
        .seed(&small_mailbox(&mailbox.address, 60, 4))
        .unwrap();
    let id = app.connect_account(&mailbox, json!({})).await["id"]
        .as_i64()
        .unwrap();
    // Park the job in a queue of its own and delete the sync queue: the slice's follow-up
    // publish is then unroutable, as when RabbitMQ is away at that moment.
    let names = app.broker.names().clone();
    let parked = format!("{}.parked", names.prefix);
    let ch = app.broker.consumer_channel(1).await.unwrap();
    ch.queue_declare(
        ShortString::from(parked.as_str()),
        // Exclusive: gone with the test's broker connection (the worker shares it).
        QueueDeclareOptions {
            exclusive: true,
            ..QueueDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let job = mailfleet_queue::Broker::get(&ch, &names.sync)
        .await
        .unwrap()
        .expect("the sync job");
    ch.basic_publish(
        ShortString::from(""),
        ShortString::from(parked.as_str()),
        BasicPublishOptions::default(),
        &job.data,
        job.properties.clone(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    job.acker
        .ack(mailfleet_queue::BasicAckOptions::default())
        .await
        .unwrap();
    ch.queue_delete(
        ShortString::from(names.sync.as_str()),
        QueueDeleteOptions::default(),
    )
    .await
    .unwrap();

    let Outcome::Synced(report) = app.worker.process_one_from(&parked).await.unwrap() else {
        panic!("the slice failed")
    };
    assert!(report.incomplete, "{report:?}");
    assert!(app.message_count(id).await < 60);
    let (_, view) = app.get(&format!("/v1/accounts/{id}")).await;
    assert!(
        view["last_synced_at"].is_null(),
        "a half-done sync is not recorded as synced: {view}"
    );
    // Due at once, not after the sync interval (an hour here).
    let mut conn = app.store.conn().await.unwrap();
    let due = mailfleet_store::accounts::claim_due(&mut conn, 3600, 10)
        .await
        .unwrap();
    assert_eq!(due, vec![id]);
}
