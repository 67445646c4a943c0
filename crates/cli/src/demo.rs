//! `mailfleet demo`: a realistic mailbox in the local Dovecot, synced through the real
//! coordinator, RabbitMQ and workers, with a progress bar and a summary.

use crate::config::{Common, CoordinatorArgs, DemoArgs, KeyArgs, SeedArgs, WorkerArgs};
use crate::run;
use anyhow::{Context, bail};
use base64::Engine;
use chrono::{Months, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use mailfleet_core::{EmailAddress, Secret, SecretKey};
use mailfleet_mailgen::dovecot::{LocalMailbox, ca_file};
use mailfleet_mailgen::{MailboxSpec, SizeMix};
use mailfleet_store::Store;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const TOKEN: &str = "mailfleet-demo-token";

pub async fn run(common: &Common, args: &DemoArgs) -> anyhow::Result<()> {
    // The demo keeps its data apart from a real deployment's: its own database and queues.
    let mut common = common.clone();
    common.database_url = demo_database_url(&common.database_url)?;
    common.queue_prefix = format!("{}-demo", common.queue_prefix);
    let key = match std::env::var("MAILFLEET_SECRET_KEY") {
        Ok(k) => SecretKey::from_base64(&k)?,
        Err(_) => {
            let bytes: [u8; 32] = rand::random();
            let k = base64::engine::general_purpose::STANDARD.encode(bytes);
            println!(
                "MAILFLEET_SECRET_KEY is not set: the demo uses a key of its own for this run."
            );
            SecretKey::from_base64(&k)?
        }
    };
    println!("Database {}", redact_url(&common.database_url));
    run::migrate(&common).await?;

    // 1. A mailbox with a year of mail.
    let started = Instant::now();
    let suffix = &uuid_suffix();
    let address = format!("demo-{suffix}@example.test");
    let password = format!("demo-{suffix}-pw");
    let mailbox = LocalMailbox::create(&address, &password).context(
        "creating the demo mail user (run scripts/services-up.sh first to start Dovecot)",
    )?;
    let spec = MailboxSpec {
        owner: address.clone(),
        owner_name: "Dana Demo".into(),
        count: args.messages,
        seed: 2026,
        now: Utc::now(),
        span_days: 365,
        folders: folder_mix(),
        size_mix: SizeMix::Realistic,
    };
    let messages = tokio::task::spawn_blocking({
        let spec = spec.clone();
        move || mailfleet_mailgen::generate(&spec)
    })
    .await?;
    let seeded_bytes: usize = messages.iter().map(|m| m.raw.len()).sum();
    let mut seeded: BTreeMap<String, usize> = BTreeMap::new();
    for m in &messages {
        *seeded.entry(m.folder.clone()).or_default() += 1;
    }
    let window_start = Utc::now()
        .checked_sub_months(Months::new(6))
        .expect("six months ago exists");
    let in_window = |m: &&mailfleet_mailgen::GeneratedMessage| {
        m.internal_date.date_naive() >= window_start.date_naive()
    };
    let mut seeded_in_window: BTreeMap<String, usize> = BTreeMap::new();
    for m in messages.iter().filter(in_window) {
        *seeded_in_window.entry(m.folder.clone()).or_default() += 1;
    }
    let expected: usize = ["INBOX", "Sent", "Archive"]
        .iter()
        .map(|f| seeded_in_window.get(*f).copied().unwrap_or(0))
        .sum();
    let mb = mailbox.clone();
    tokio::task::spawn_blocking(move || mb.seed(&messages)).await??;
    println!(
        "Seeded {address}: {} messages, {:.0} MB, over {:?} in {:.1}s",
        args.messages,
        seeded_bytes as f64 / 1e6,
        seeded,
        started.elapsed().as_secs_f64()
    );

    // 2. The CRM already knows some of the people in it.
    let store = Store::connect(&common.database_url, 4)?;
    {
        let mut conn = store.conn().await?;
        for (name, email) in mailfleet_mailgen::contacts(&spec).iter().take(15) {
            mailfleet_store::contacts::upsert(&mut conn, &EmailAddress::parse(email)?, Some(name))
                .await?;
        }
    }

    // 3. A coordinator and workers, in this process, each with its own connections.
    let (stop_tx, stop) = watch::channel(false);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}", listener.local_addr()?);
    let coord_args = CoordinatorArgs {
        key: KeyArgs { secret_key: None },
        api_addr: listener.local_addr()?,
        api_token: Secret::new(TOKEN.into()),
        sync_interval_secs: 300,
        folder_refresh_secs: 3600,
        scheduler_tick_ms: 1000,
        rpc_timeout_secs: 30,
    };
    let coordinator =
        run::start_coordinator(&common, &coord_args, key.clone(), listener, stop.clone()).await?;
    let worker_args = WorkerArgs {
        key: KeyArgs { secret_key: None },
        health_addr: "127.0.0.1:0".parse().expect("an address"),
        slots: 2,
        batch: 200,
        batch_bytes: 16 << 20,
        lease_secs: 60,
        sync_slice_secs: 300,
        extra_ca_file: Some(ca_file()),
        send_claim_secs: 600,
        send_retry_secs: 30,
        send_max_attempts: 8,
        failpoint: None,
    };
    let mut workers = Vec::new();
    for _ in 0..args.workers.max(1) {
        let w = run::build_worker(&common, &worker_args, key.clone()).await?;
        workers.push(tokio::spawn(w.run(stop.clone())));
    }

    // 4. Connect the account through the API, as the CRM would.
    let http = reqwest::Client::new();
    let user: Value = post(
        &http,
        &format!("{api}/v1/users"),
        json!({
            "email": format!("dana-{suffix}@crm.example.test"), "name": "Dana Demo"
        }),
    )
    .await?;
    // From here on Dana is the acting user of every request.
    let mut acting = reqwest::header::HeaderMap::new();
    acting.insert(
        mailfleet_coordinator::ACTING_USER_HEADER,
        user["id"].to_string().parse()?,
    );
    let http = reqwest::Client::builder().default_headers(acting).build()?;
    let sync_started = Instant::now();
    let account: Value = post(
        &http,
        &format!("{api}/v1/accounts"),
        json!({
            "provider": "imap", "kind": "personal", "owner_user_id": user["id"],
            "email": address, "password": password,
            "imap": { "host": "127.0.0.1", "port": 993, "encryption": "ssl" },
            "smtp": { "host": "127.0.0.1", "port": 587, "encryption": "starttls" },
            "allow_insecure_cert": false, "sync_from": "6_months", "create_contacts": true
        }),
    )
    .await?;
    let id = account["id"].as_i64().context("account id")?;
    println!(
        "Connected account {id} ({address}); syncing the last 6 months of INBOX, Sent and Archive (Trash and Junk are skipped)."
    );

    let bar = ProgressBar::new(expected as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} messages ({per_sec})",
        )
        .expect("valid template"),
    );
    let view = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let v: Value = get(&http, &format!("{api}/v1/accounts/{id}")).await?;
        bar.set_position(v["message_count"].as_u64().unwrap_or(0));
        if v["state"] == "disabled" {
            bar.abandon();
            bail!("the account was disabled: {}", v["last_error"]);
        }
        if v["sync_status"] == "idle" && !v["last_synced_at"].is_null() {
            break v;
        }
        if v["sync_status"] == "idle" && !v["last_error"].is_null() {
            bar.abandon();
            bail!("the sync failed: {}", v["last_error"]);
        }
    };
    bar.finish();
    let elapsed = sync_started.elapsed();

    // 5. Dana writes to a colleague from the CRM: through the outbox, SMTP (Postfix) and a
    //    copy in her Sent folder.
    let sent = send_a_message(
        &http,
        &api,
        user["id"].as_i64().context("user id")?,
        id,
        suffix,
    )
    .await?;

    let _ = stop_tx.send(true);
    for w in workers {
        w.await??;
    }
    coordinator.await??;

    let mut conn = store.conn().await?;
    let (created, linked) = mailfleet_store::contacts::account_stats(&mut conn, id).await?;
    let (_, bytes) = mailfleet_store::sync_runs::totals(&mut conn, id).await?;
    let total = view["message_count"].as_i64().unwrap_or(0);
    println!();
    println!(
        "{:<10} {:<8} {:>7} {:>8} {:>17} {:>8}",
        "folder", "role", "active", "seeded", "in sync window", "synced"
    );
    for f in view["folders"].as_array().into_iter().flatten() {
        let name = f["name"].as_str().unwrap_or("?");
        println!(
            "{:<10} {:<8} {:>7} {:>8} {:>17} {:>8}",
            name,
            f["role"].as_str().unwrap_or("-"),
            if f["active"] == true { "yes" } else { "no" },
            seeded.get(name).copied().unwrap_or(0),
            seeded_in_window.get(name).copied().unwrap_or(0),
            f["message_count"].as_i64().unwrap_or(0)
        );
    }
    println!();
    println!("messages synced     {total} (expected {expected} in the window)");
    println!("contacts linked     {linked} ({created} of them created from unknown senders)");
    println!("time                {:.1}s", elapsed.as_secs_f64());
    println!(
        "throughput          {:.0} messages/s, {:.1} MB/s",
        total as f64 / elapsed.as_secs_f64(),
        bytes as f64 / 1e6 / elapsed.as_secs_f64()
    );
    println!("sent                {sent}");
    println!();
    println!(
        "The data stays in {} for you to look at.",
        redact_url(&common.database_url)
    );
    Ok(())
}

/// Sends one message from the demo account to a new local mailbox, with a signature, and
/// waits until it is sent and its copy filed in Sent; returns a line describing it.
async fn send_a_message(
    http: &reqwest::Client,
    api: &str,
    user: i64,
    account: i64,
    suffix: &str,
) -> anyhow::Result<String> {
    let to = format!("lee-{suffix}@example.test");
    LocalMailbox::create(&to, &format!("lee-{suffix}-pw"))
        .context("creating the recipient's mailbox")?;
    let r = http
        .put(format!("{api}/v1/users/{user}/signature"))
        .bearer_auth(TOKEN)
        .json(&json!({ "text": "Dana Demo\nmailfleet demo" }))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("setting the signature: {}", r.status());
    }
    let r = http
        .post(format!("{api}/v1/messages"))
        .bearer_auth(TOKEN)
        .header("Idempotency-Key", format!("demo-{suffix}"))
        .json(&json!({
            "account_id": account,
            "to": [{ "email": to, "name": "Lee" }],
            "subject": "Numbers for the quarterly review",
            "text": "Hi Lee,\n\nthe numbers are in; see you at the review.",
        }))
        .send()
        .await?;
    let queued: Value = r.json().await?;
    let id = queued["id"]
        .as_i64()
        .with_context(|| format!("the send was refused: {queued}"))?;
    let started = Instant::now();
    loop {
        let v = get(http, &format!("{api}/v1/outgoing-messages/{id}")).await?;
        match v["status"].as_str() {
            Some("sent") if !v["sent_copy_message_id"].is_null() => {
                return Ok(format!(
                    "1 message to {to} in {:.1}s: \"{}\" (filed in Sent as message {})",
                    started.elapsed().as_secs_f64(),
                    v["server_reply"].as_str().unwrap_or("accepted"),
                    v["sent_copy_message_id"]
                ));
            }
            Some("failed") | Some("unknown") => bail!("the demo message was not sent: {v}"),
            _ if started.elapsed() > Duration::from_secs(60) => {
                bail!("the demo message was not sent within 60 s: {v}")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The folders and weights of a generated mailbox.
fn folder_mix() -> Vec<(String, u32)> {
    vec![
        ("INBOX".into(), 55),
        ("Sent".into(), 18),
        ("Archive".into(), 17),
        ("Trash".into(), 5),
        ("Junk".into(), 5),
    ]
}

/// `mailfleet dev-seed`: a fresh local mail user with generated mail (held in memory while it
/// is written: about 65 KB a message).
pub async fn seed(args: &SeedArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let mailbox = LocalMailbox::create(&args.address, &args.password)
        .context("creating the mail user (run scripts/services-up.sh first)")?;
    mailbox.delete()?;
    let mailbox = LocalMailbox::create(&args.address, &args.password)?;
    let spec = MailboxSpec {
        owner: mailbox.address.clone(),
        owner_name: "Bench Owner".into(),
        count: args.messages,
        seed: args.seed,
        now: Utc::now(),
        span_days: args.span_days,
        folders: folder_mix(),
        size_mix: SizeMix::Realistic,
    };
    let (count, bytes, per_folder) = tokio::task::spawn_blocking(move || {
        let messages = mailfleet_mailgen::generate(&spec);
        let bytes: usize = messages.iter().map(|m| m.raw.len()).sum();
        let mut per_folder: BTreeMap<String, usize> = BTreeMap::new();
        for m in &messages {
            *per_folder.entry(m.folder.clone()).or_default() += 1;
        }
        mailbox
            .seed(&messages)
            .map(|()| (messages.len(), bytes, per_folder))
    })
    .await??;
    println!(
        "seeded {} messages, {:.0} MB, {:?} in {:.1}s",
        count,
        bytes as f64 / 1e6,
        per_folder,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn post(http: &reqwest::Client, url: &str, body: Value) -> anyhow::Result<Value> {
    let r = http.post(url).bearer_auth(TOKEN).json(&body).send().await?;
    let status = r.status();
    let v: Value = r.json().await?;
    if !status.is_success() {
        bail!("POST {url}: {status}: {v}");
    }
    Ok(v)
}

async fn get(http: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    let r = http.get(url).bearer_auth(TOKEN).send().await?;
    let status = r.status();
    let v: Value = r.json().await?;
    if !status.is_success() {
        bail!("GET {url}: {status}: {v}");
    }
    Ok(v)
}

fn demo_database_url(url: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let (server, name) = base
        .rsplit_once('/')
        .context("DATABASE_URL has no database name")?;
    let demo = format!("{server}/{name}_demo");
    Ok(match query {
        Some(q) => format!("{demo}?{q}"),
        None => demo,
    })
}

/// The URL without its password, for printing.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn uuid_suffix() -> String {
    let n: u64 = rand::random();
    format!("{:08x}", n as u32)
}

#[cfg(test)]
mod tests {
    #[test]
    fn demo_gets_its_own_database() {
        assert_eq!(
            super::demo_database_url("postgres://p@h:5432/mailfleet").unwrap(),
            "postgres://p@h:5432/mailfleet_demo"
        );
    }

    #[test]
    fn printed_urls_hide_the_password() {
        assert_eq!(
            super::redact_url("postgres://u:pw@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }
}
