//! What SREs see of real `mailfleet coordinator` and `mailfleet worker` processes: one sync is
//! one trace from the API request through RabbitMQ to the worker's IMAP and database spans
//! (received by a local OTLP/HTTP endpoint), it is counted on both processes' `/metrics`,
//! and TRACE-level JSON logs of a sync and a send hold no secret.

use base64::Engine;
use mailfleet_testkit::{TEST_SECRET_KEY, TestDb, TestMailbox, TestQueues, ca_file};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "telemetry-test-token-6f1d";

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// What an OTLP/HTTP receiver (JSON encoding) was sent: trace and metric exports.
#[derive(Clone, Default)]
struct Received {
    traces: Arc<Mutex<Vec<Value>>>,
    metrics: Arc<Mutex<Vec<Value>>>,
}

async fn otlp_receiver() -> (String, Received) {
    let got = Received::default();
    let keep = |into: Arc<Mutex<Vec<Value>>>| {
        axum::routing::post(move |body: axum::body::Bytes| {
            let into = into.clone();
            async move {
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    into.lock().unwrap().push(v);
                }
                axum::Json(json!({}))
            }
        })
    };
    let app = axum::Router::new()
        .route("/v1/traces", keep(got.traces.clone()))
        .route("/v1/metrics", keep(got.metrics.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

struct Fleet {
    _db: TestDb,
    _queues: TestQueues,
    api: String,
    worker_health: String,
    coordinator: Child,
    worker: Child,
    logs: Vec<PathBuf>,
    http: reqwest::Client,
}

impl Fleet {
    async fn start(otlp: Option<&str>, log_level: &str, tag: &str) -> Self {
        let db = TestDb::create().await;
        let queues = TestQueues::new();
        let api_addr = free_addr();
        let worker_health = free_addr();
        let dir = std::env::temp_dir();
        let mut logs = Vec::new();
        let mut spawn = |role: &str, extra: &[(&str, &str)]| {
            let log = dir.join(format!("mailfleet-{tag}-{role}-{}.log", std::process::id()));
            logs.push(log.clone());
            let mut c = Command::new(env!("CARGO_BIN_EXE_mailfleet"));
            c.arg(role)
                .env("DATABASE_URL", &db.url)
                .env("AMQP_URL", mailfleet_testkit::amqp_url())
                .env("MAILFLEET_QUEUE_PREFIX", &queues.prefix)
                .env("MAILFLEET_SECRET_KEY", TEST_SECRET_KEY)
                .env("MAILFLEET_API_TOKEN", TOKEN)
                .env("MAILFLEET_API_ADDR", &api_addr)
                .env("MAILFLEET_HEALTH_ADDR", &worker_health)
                .env("MAILFLEET_EXTRA_CA_FILE", ca_file())
                .env("MAILFLEET_SCHEDULER_TICK_MS", "200")
                .env("MAILFLEET_LOG_FORMAT", "json")
                .env("RUST_LOG", log_level)
                .env("OTEL_BSP_SCHEDULE_DELAY", "100")
                .env("OTEL_METRIC_EXPORT_INTERVAL", "200")
                .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
                .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap());
            for (k, v) in extra {
                c.env(k, v);
            }
            if let Some(url) = otlp {
                c.env("OTEL_EXPORTER_OTLP_ENDPOINT", url);
            }
            c.spawn().unwrap()
        };
        let coordinator = spawn("coordinator", &[]);
        let worker = spawn("worker", &[]);
        let http = reqwest::Client::new();
        let api = format!("http://{api_addr}");
        let started = Instant::now();
        while http
            .get(format!("{api}/readyz"))
            .send()
            .await
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "coordinator not ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Fleet {
            _db: db,
            _queues: queues,
            api,
            worker_health,
            coordinator,
            worker,
            logs,
            http,
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        user: Option<i64>,
        body: Option<Value>,
    ) -> Value {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(TOKEN);
        if let Some(u) = user {
            r = r.header("X-Mailfleet-User", u.to_string());
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    /// Connects `mailbox` for a new user and waits for the first sync; (user, account).
    async fn connect_and_sync(&self, mailbox: &TestMailbox) -> (i64, i64) {
        let user = self
            .call(
                reqwest::Method::POST,
                "/v1/users",
                None,
                Some(json!({ "email": format!("u-{}@crm.example.test", mailfleet_testkit::unique_suffix()) })),
            )
            .await["id"]
            .as_i64()
            .unwrap();
        let account = self
            .call(
                reqwest::Method::POST,
                "/v1/accounts",
                Some(user),
                Some(json!({
                    "provider": "imap", "kind": "personal", "email": mailbox.address,
                    "password": mailbox.password,
                    "imap": { "host": "127.0.0.1", "port": 993, "encryption": "ssl" },
                    "smtp": { "host": "127.0.0.1", "port": 587, "encryption": "starttls" },
                    "sync_from": "1_month", "active_folders": ["INBOX"]
                })),
            )
            .await["id"]
            .as_i64()
            .unwrap();
        let started = Instant::now();
        loop {
            let v = self
                .call(
                    reqwest::Method::GET,
                    &format!("/v1/accounts/{account}"),
                    Some(user),
                    None,
                )
                .await;
            if v["sync_status"] == "idle" && !v["last_synced_at"].is_null() {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "no sync: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (user, account)
    }

    async fn scrape(&self, base: &str) -> String {
        self.http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// SIGTERM both; each flushes its spans and exits 0.
    fn stop(&mut self) {
        for child in [&mut self.coordinator, &mut self.worker] {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        for child in [&mut self.coordinator, &mut self.worker] {
            let started = Instant::now();
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    assert!(status.success(), "exit {status:?}");
                    break;
                }
                assert!(started.elapsed() < Duration::from_secs(25), "did not stop");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.coordinator.kill();
        let _ = self.worker.kill();
        for l in &self.logs {
            let _ = std::fs::remove_file(l);
        }
    }
}

fn seeded_mailbox(n: usize) -> TestMailbox {
    let m = TestMailbox::create();
    for i in 0..n {
        let raw = mailfleet_mailgen::simple_message(
            &format!("Sender {i} <s{i}@example.test>"),
            &m.address,
            &format!("Message {i}"),
            "Hello",
            &format!(
                "tel-{i}-{}@example.test",
                mailfleet_testkit::unique_suffix()
            ),
            chrono::Utc::now(),
        );
        m.write_message("INBOX", &raw, std::time::SystemTime::now(), false, false)
            .unwrap();
    }
    m
}

/// (service, trace id, span id, parent span id, name) of every exported span.
fn spans(exports: &[Value]) -> Vec<(String, String, String, String, String)> {
    let mut out = Vec::new();
    for e in exports {
        for rs in e["resourceSpans"].as_array().into_iter().flatten() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .and_then(|a| a["value"]["stringValue"].as_str())
                .unwrap_or_default()
                .to_owned();
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let text = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
                    out.push((
                        service.clone(),
                        text("traceId"),
                        text("spanId"),
                        text("parentSpanId"),
                        text("name"),
                    ));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sync_is_one_trace_from_the_api_request_to_the_workers_imap_and_database_spans() {
    mailfleet_testkit::init();
    let (otlp, exports) = otlp_receiver().await;
    let mut fleet = Fleet::start(Some(&otlp), "info", "trace").await;
    let mailbox = seeded_mailbox(5);
    fleet.connect_and_sync(&mailbox).await;

    // Both processes count it.
    let worker_metrics = fleet
        .scrape(&format!("http://{}", fleet.worker_health))
        .await;
    assert!(
        worker_metrics.contains("mailfleet_jobs_consumed_total{kind=\"sync_account\"}"),
        "{worker_metrics}"
    );
    assert!(
        worker_metrics.contains("mailfleet_messages_synced_total 5"),
        "{worker_metrics}"
    );
    assert!(
        worker_metrics.contains("mailfleet_job_duration_seconds_bucket{"),
        "{worker_metrics}"
    );
    let coordinator_metrics = fleet.scrape(&fleet.api).await;
    assert!(
        coordinator_metrics.contains("mailfleet_jobs_published_total{kind=\"sync_account\"}"),
        "{coordinator_metrics}"
    );
    assert!(
        coordinator_metrics.contains("mailfleet_accounts{state=\"active\"} 1"),
        "{coordinator_metrics}"
    );
    assert!(
        coordinator_metrics.contains("mailfleet_queue_messages{queue="),
        "{coordinator_metrics}"
    );
    for text in [&worker_metrics, &coordinator_metrics] {
        assert!(
            !text.contains(&mailbox.address),
            "an address became a label"
        );
    }

    fleet.stop();
    // Metrics go out by OTLP too.
    let pushed = serde_json::to_string(&*exports.metrics.lock().unwrap()).unwrap();
    assert!(
        pushed.contains("mailfleet_jobs_consumed"),
        "no OTLP metrics: {pushed}"
    );
    assert!(
        pushed.contains("mailfleet_jobs_published"),
        "no OTLP metrics: {pushed}"
    );
    let exported = spans(&exports.traces.lock().unwrap());
    let request = exported
        .iter()
        .find(|s| s.0 == "mailfleet-coordinator" && s.4 == "POST /v1/accounts")
        .unwrap_or_else(|| panic!("no request span among {exported:#?}"));
    let trace: Vec<_> = exported.iter().filter(|s| s.1 == request.1).collect();
    let find = |service: &str, name: &str| {
        trace
            .iter()
            .find(|s| s.0 == service && s.4 == name)
            .unwrap_or_else(|| {
                panic!("no {service} span {name:?} in the request's trace: {trace:#?}")
            })
    };
    let publish = find("mailfleet-coordinator", "publish sync_account");
    let job = find("mailfleet-worker", "sync_account job");
    assert_eq!(publish.3, request.2, "publish is a child of the request");
    assert_eq!(
        job.3, publish.2,
        "the worker's job continues from the publish, across RabbitMQ"
    );
    for name in [
        "sync.account",
        "imap.connect",
        "imap.next_changes",
        "db.store_batch",
    ] {
        find("mailfleet-worker", name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_level_json_logs_of_a_sync_and_a_send_hold_no_secret() {
    mailfleet_testkit::init();
    let mut fleet = Fleet::start(None, "trace", "secrets").await;
    let mailbox = seeded_mailbox(3);
    let (user, account) = fleet.connect_and_sync(&mailbox).await;
    let sent = fleet
        .call(
            reqwest::Method::POST,
            "/v1/messages",
            Some(user),
            Some(json!({ "account_id": account, "to": [mailbox.address], "text": "hello" })),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let started = Instant::now();
    loop {
        let v = fleet
            .call(
                reqwest::Method::GET,
                &format!("/v1/outgoing-messages/{sent}"),
                Some(user),
                None,
            )
            .await;
        if v["status"] == "sent" && !v["sent_copy_message_id"].is_null() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "not sent: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fleet.stop();

    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let secrets = [
        mailbox.password.clone(),
        // SASL PLAIN and LOGIN carry the password base64-encoded.
        b64(&format!("\0{}\0{}", mailbox.address, mailbox.password)),
        b64(&mailbox.password),
        TOKEN.to_string(),
        TEST_SECRET_KEY.to_string(),
    ];
    let mut lines = 0;
    let mut job_lines = 0;
    let mut with_provider = 0;
    for log in &fleet.logs {
        let text = std::fs::read_to_string(log).unwrap();
        for line in text.lines() {
            lines += 1;
            for s in &secrets {
                assert!(
                    !line.contains(s.as_str()),
                    "a secret in {}: {line}",
                    log.display()
                );
            }
            assert!(!line.contains("Authorization"), "{line}");
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            if v["span"]["name"] == "job" && v["span"]["kind"] == "sync_account" {
                job_lines += 1;
                for field in ["job_id", "account_id", "trace_id", "attempt"] {
                    assert!(!v["span"][field].is_null(), "{field} missing: {line}");
                }
                // Known once the job has read the account.
                if v["span"]["provider"] == "imap" {
                    with_provider += 1;
                }
            }
        }
    }
    assert!(lines > 1000, "TRACE logging was not on ({lines} lines)");
    assert!(job_lines > 0, "no log line inside a sync job");
    assert!(with_provider > 0, "no job line names the provider");
}
