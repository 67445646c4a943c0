use futures::StreamExt;
use mailfleet_core::{Job, JobEnvelope, SecretKey};
use mailfleet_imap::TlsTrust;
use mailfleet_provider::ProviderError;
use mailfleet_queue::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, Broker, Delivery, QueueError,
};
use mailfleet_store::{Store, StoreError};
use mailfleet_sync::{SyncOptions, SyncReport};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tracing::Instrument;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs run at once; also the consumer prefetch.
    pub slots: u16,
    pub sync: SyncOptions,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// Use IMAP CONDSTORE / QRESYNC where servers offer them.
    pub use_condstore: bool,
    pub use_qresync: bool,
    /// How long an account's lease lasts without renewal (renewed every third of it).
    pub lease_ttl: Duration,
    /// The longest delay between retries of a failing account.
    pub retry_max_delay: Duration,
    /// How long shutdown waits for running jobs to wind down.
    pub drain_timeout: Duration,
    /// How long a job waits for an unavailable database before it goes back to the queue.
    pub db_outage_patience: Duration,
    /// How long a worker holds an outgoing message while it sends it; after that another
    /// worker may resolve an interrupted send. Longer than any SMTP exchange takes.
    pub send_claim: Duration,
    /// The first retry delay of a send the server deferred (doubles each time).
    pub send_retry_base: Duration,
    /// Attempts before a deferred send is `failed`.
    pub send_max_attempts: u16,
    /// Crash on purpose at a chosen point (tests only).
    pub failpoint: Option<crate::Failpoint>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            slots: 4,
            sync: SyncOptions::default(),
            connect_timeout: Duration::from_secs(20),
            command_timeout: Duration::from_secs(300),
            use_condstore: true,
            use_qresync: true,
            lease_ttl: Duration::from_secs(60),
            retry_max_delay: Duration::from_secs(3600),
            drain_timeout: Duration::from_secs(20),
            db_outage_patience: Duration::from_secs(600),
            send_claim: Duration::from_secs(600),
            send_retry_base: Duration::from_secs(30),
            send_max_attempts: 8,
            failpoint: None,
        }
    }
}

/// What `/readyz` reports for a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Readiness {
    pub consuming: bool,
    pub broker: bool,
    pub database: bool,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.consuming && self.broker && self.database
    }
}

/// What became of one delivery.
#[derive(Debug)]
pub enum Outcome {
    /// The queue was empty (`process_one` only).
    Empty,
    Synced(SyncReport),
    /// The provider failed; recorded on the account (disabled when authentication failed).
    Failed(ProviderError),
    /// Nothing to do (the account is disabled, or a connection test's caller gave up).
    Skipped,
    /// Another worker holds the account's lease: this job was a duplicate.
    Busy,
    /// The lease was taken over mid-sync (this worker was too slow to renew it); nothing was
    /// written after that.
    LeaseLost,
    /// The folder list was reconciled.
    Refreshed(mailfleet_store::folders::Reconciled),
    /// A connection test was run and answered.
    Tested(mailfleet_core::connection_test::ConnectionTestResult),
    /// The job can never succeed (malformed, unknown kind or version, no such account):
    /// dead-lettered.
    Rejected(String),
    /// The database was unavailable: the delivery was returned to the queue.
    Requeued(String),
    /// A `send_message` job ran.
    Send(crate::SendOutcome),
}

pub struct Worker {
    /// Names this worker as a lease owner: host, process and a random part.
    pub(crate) id: String,
    /// Set on shutdown: running syncs commit their current batch, queue a follow-up and stop.
    pub(crate) draining: std::sync::atomic::AtomicBool,
    /// True while the consume loop holds live consumers.
    pub(crate) consuming: std::sync::atomic::AtomicBool,
    pub(crate) store: Store,
    pub(crate) broker: Arc<Broker>,
    pub(crate) key: SecretKey,
    /// Opens IMAP sessions and SMTP submissions (see `connectors.rs`).
    pub(crate) imap: mailfleet_imap::ImapConnector,
    pub(crate) config: WorkerConfig,
}

impl Worker {
    pub fn new(
        store: Store,
        broker: Arc<Broker>,
        key: SecretKey,
        trust: TlsTrust,
        config: WorkerConfig,
    ) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
        let id = format!(
            "{host}-{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Self {
            id,
            draining: std::sync::atomic::AtomicBool::new(false),
            consuming: std::sync::atomic::AtomicBool::new(false),
            store,
            broker,
            key,
            imap: mailfleet_imap::ImapConnector {
                trust,
                connect_timeout: config.connect_timeout,
                command_timeout: config.command_timeout,
                use_condstore: config.use_condstore,
                use_qresync: config.use_qresync,
            },
            config,
        }
    }

    /// Takes one job from the sync queue, if there is one, and handles it. Tests drive the
    /// worker with this, step by step, instead of sleeping.
    pub async fn process_one(&self) -> Result<Outcome, QueueError> {
        self.process_one_from(&self.broker.names().sync).await
    }

    /// Takes one job from `queue`, if there is one, and handles it.
    pub async fn process_one_from(&self, queue: &str) -> Result<Outcome, QueueError> {
        let channel = self.broker.consumer_channel(1).await?;
        let outcome = match Broker::get(&channel, queue).await? {
            None => Outcome::Empty,
            Some(d) => self.handle(d).await?,
        };
        let _ = channel.close(200, "done".into()).await;
        Ok(outcome)
    }

    /// Consumes the sync, folder-refresh, send and connection-test queues until `shutdown` turns
    /// true, running up to `slots` jobs at once. When RabbitMQ goes away it reconnects with a
    /// growing delay and resumes; deliveries that were in flight are redelivered by the broker
    /// (handlers are idempotent).
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) -> Result<(), QueueError> {
        let names = self.broker.names();
        let queues = vec![
            names.sync.clone(),
            names.refresh.clone(),
            names.send.clone(),
            names.test_connection.clone(),
        ];
        self.run_on(queues, shutdown).await
    }

    /// `run`, consuming only `queues` (e.g. a test's responder for connection tests, beside a
    /// worker it drives step by step).
    pub async fn run_on(
        self: Arc<Self>,
        queues: Vec<String>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), QueueError> {
        let slots = Arc::new(Semaphore::new(usize::from(self.config.slots)));
        let mut delay = Duration::from_millis(500);
        loop {
            match self.clone().consume(&queues, &slots, &mut shutdown).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "Lost RabbitMQ; reconnecting.");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => break,
                    }
                    delay = (delay * 2).min(Duration::from_secs(30));
                    match self.broker.ensure_connected().await {
                        Ok(()) => delay = Duration::from_millis(500),
                        Err(e) => tracing::warn!(error = %e, "RabbitMQ still unreachable."),
                    }
                }
            }
        }
        // Running syncs stop after their current batch and queue a follow-up; give them a
        // bounded time (Kubernetes' grace period is 30 s), then go: what is still unacked
        // returns to the queue when the connection closes.
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let drained = tokio::time::timeout(
            self.config.drain_timeout,
            slots.acquire_many(u32::from(self.config.slots)),
        )
        .await;
        if drained.is_err() {
            tracing::warn!(
                "Shutdown: jobs still running after the drain timeout; they will be redelivered."
            );
        }
        tracing::info!("Worker stopped.");
        Ok(())
    }

    /// Consumes until shutdown (`Ok`) or until the channel or connection fails (`Err`).
    async fn consume(
        self: Arc<Self>,
        queues: &[String],
        slots: &Arc<Semaphore>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), QueueError> {
        let channel = self.broker.consumer_channel(self.config.slots).await?;
        let names = self.broker.names();
        let mut consumers = Vec::new();
        for queue in queues {
            consumers.push(
                channel
                    .basic_consume(
                        queue.as_str().into(),
                        "".into(),
                        BasicConsumeOptions::default(),
                        Default::default(),
                    )
                    .await
                    .map_err(QueueError::from)?,
            );
        }
        let mut consumer = futures::stream::select_all(consumers);
        self.consuming
            .store(true, std::sync::atomic::Ordering::SeqCst);
        tracing::info!(slots = self.config.slots, prefix = %names.prefix, "Worker consuming.");
        let result = loop {
            let permit = slots
                .clone()
                .acquire_owned()
                .await
                .expect("semaphore is never closed");
            let next = tokio::select! {
                d = consumer.next() => d,
                _ = shutdown.changed() => break Ok(()),
            };
            let delivery = match next {
                Some(Ok(d)) => d,
                Some(Err(e)) => break Err(QueueError::from(e)),
                None => break Err(QueueError::Closed),
            };
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(e) = me.handle(delivery).await {
                    tracing::error!(error = %e, "Could not settle a delivery; the broker will redeliver it.");
                }
                drop(permit);
            });
        };
        self.consuming
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let _ = channel.close(200, "bye".into()).await;
        result
    }

    /// Readiness: consuming, with RabbitMQ connected and Postgres answering. (Liveness needs
    /// none of these: a worker waiting for a database restart is alive, not ready.)
    pub async fn readiness(&self) -> Readiness {
        Readiness {
            consuming: self.consuming.load(std::sync::atomic::Ordering::SeqCst)
                && !self.draining.load(std::sync::atomic::Ordering::SeqCst),
            broker: self.broker.is_connected().await,
            database: self.store.ping().await.is_ok(),
        }
    }

    /// Runs one delivery and settles it: ack after the outcome is committed, reject (→ dead
    /// letter) what can never succeed, requeue when the database is unavailable.
    pub async fn handle(&self, delivery: Delivery) -> Result<Outcome, QueueError> {
        let parsed = JobEnvelope::from_bytes(&delivery.data);
        let kind = match &parsed {
            Ok(env) => env.job.kind(),
            Err(_) => "malformed",
        };
        // The job's span continues the trace of whoever published it (traceparent header).
        let span = tracing::info_span!(
            "job",
            otel.name = %format!("{kind} job"),
            kind,
            job_id = tracing::field::Empty,
            account_id = tracing::field::Empty,
            provider = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            attempt = delivery_attempt(&delivery),
        );
        mailfleet_telemetry::propagation::continue_from(
            &span,
            &mailfleet_queue::text_headers(&delivery),
        );
        if let Ok(env) = &parsed {
            span.record("job_id", tracing::field::display(env.job_id));
            if let Some(id) = env.job.account_id() {
                span.record("account_id", id);
            }
        }
        let started = std::time::Instant::now();
        let outcome = async {
            if let Some(t) = mailfleet_telemetry::current_trace_id() {
                tracing::Span::current().record("trace_id", t);
            }
            match parsed {
                Err(e) => Outcome::Rejected(e.to_string()),
                Ok(env) => self.run_holding(&delivery, &env).await,
            }
        }
        .instrument(span)
        .await;
        record_metrics(kind, &outcome, started.elapsed());
        match &outcome {
            Outcome::Rejected(why) => {
                tracing::warn!(reason = %why, "Job dead-lettered.");
                self.broker.dead_letter(&delivery, why).await?;
            }
            Outcome::Requeued(why) => {
                tracing::warn!(reason = %why, "Job returned to the queue.");
                delivery
                    .acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        multiple: false,
                    })
                    .await?;
            }
            _ => {
                delivery.acker.ack(BasicAckOptions::default()).await?;
            }
        }
        Ok(outcome)
    }
}

/// Which delivery of the job this is (RabbitMQ counts them on quorum queues).
fn delivery_attempt(delivery: &Delivery) -> i64 {
    let counted = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-delivery-count").cloned())
        .and_then(|v| match v {
            mailfleet_queue::AMQPValue::LongLongInt(n) => Some(n),
            mailfleet_queue::AMQPValue::LongInt(n) => Some(i64::from(n)),
            mailfleet_queue::AMQPValue::LongUInt(n) => Some(i64::from(n)),
            _ => None,
        });
    counted
        .map(|n| n + 1)
        .unwrap_or(if delivery.redelivered { 2 } else { 1 })
}

fn record_metrics(kind: &str, outcome: &Outcome, took: Duration) {
    let m = mailfleet_telemetry::metrics::metrics();
    if matches!(outcome, Outcome::Empty) {
        return;
    }
    m.job_consumed(kind, took.as_secs_f64());
    match outcome {
        Outcome::Synced(r) => m.synced(r.messages_added as u64, r.bytes_fetched),
        Outcome::Failed(e) => {
            m.job_failed(kind);
            m.provider_error(match e.class() {
                mailfleet_provider::ErrorClass::AuthFailed => "auth_failed",
                mailfleet_provider::ErrorClass::Transient => "transient",
                mailfleet_provider::ErrorClass::RateLimited => "rate_limited",
                mailfleet_provider::ErrorClass::Permanent => "permanent",
            });
        }
        Outcome::Requeued(_) => m.job_failed(kind),
        Outcome::LeaseLost => m.lease_takeover(),
        Outcome::Send(s) => match s {
            crate::SendOutcome::Sent { .. } => m.message_sent("sent"),
            crate::SendOutcome::Retrying(_) => m.message_sent("retrying"),
            crate::SendOutcome::Failed { .. } => m.message_sent("failed"),
            crate::SendOutcome::Unknown(_) => m.message_sent("unknown"),
            crate::SendOutcome::CopyFiled(_) => m.message_sent("copy_filed"),
            crate::SendOutcome::NotNow | crate::SendOutcome::Settled(_) => {}
        },
        _ => {}
    }
}

impl Worker {
    async fn run_job(&self, delivery: &Delivery, env: &JobEnvelope) -> Result<Outcome, StoreError> {
        match env.job {
            Job::SyncAccount { account_id } => {
                self.run_sync(account_id, env.job_id, delivery_attempt(delivery))
                    .await
            }
            Job::TestConnection { test_id } => self.answer_test(delivery, test_id).await,
            Job::RefreshFolders { account_id } => self.run_refresh(account_id).await,
            Job::SendMessage { outgoing_id } => self.run_send(outgoing_id).await,
        }
    }

    /// Runs the job; while Postgres is unavailable, keeps the delivery and tries again with a
    /// growing delay instead of returning it at once: a requeue counts against the queue's
    /// delivery limit, and a database restart must not dead-letter every job in flight. Gives
    /// the delivery back after `db_outage_patience`, or at shutdown.
    async fn run_holding(&self, delivery: &Delivery, env: &JobEnvelope) -> Outcome {
        let started = std::time::Instant::now();
        let mut delay = Duration::from_millis(250);
        loop {
            match self.run_job(delivery, env).await {
                Ok(o) => return o,
                // A query error is an outage only if the database doesn't answer at all.
                Err(e)
                    if e.is_unavailable()
                        || (matches!(e, StoreError::Query(_))
                            && self.store.ping().await.is_err()) =>
                {
                    let waited = started.elapsed();
                    if waited >= self.config.db_outage_patience
                        || self.draining.load(std::sync::atomic::Ordering::SeqCst)
                    {
                        return Outcome::Requeued(e.to_string());
                    }
                    tracing::warn!(job_id = %env.job_id, error = %e, retry_in_ms = delay.as_millis() as u64, "Database unavailable; holding the job.");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
                Err(e) => return Outcome::Requeued(e.to_string()),
            }
        }
    }

    async fn answer_test(
        &self,
        delivery: &Delivery,
        test_id: i64,
    ) -> Result<Outcome, mailfleet_store::StoreError> {
        let Some(result) = self.run_connection_test(test_id).await? else {
            return Ok(Outcome::Skipped);
        };
        let props = &delivery.properties;
        match (props.reply_to(), props.correlation_id()) {
            (Some(to), Some(id)) => {
                let body = serde_json::to_vec(&result).expect("a test result serialises");
                if let Err(e) = self.broker.reply(to.as_str(), id.as_str(), &body).await {
                    tracing::warn!(test_id, error = %e, "Could not answer a connection test.");
                }
            }
            _ => tracing::warn!(
                test_id,
                "Connection test without reply_to: nobody to answer."
            ),
        }
        Ok(Outcome::Tested(result))
    }
}
