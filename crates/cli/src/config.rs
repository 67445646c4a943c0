use anyhow::Context;
use clap::Args;
use mailfleet_core::{Secret, SecretKey};
use std::net::SocketAddr;

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Postgres connection URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/mailfleet",
        global = true
    )]
    pub database_url: String,
    /// RabbitMQ connection URL.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        global = true
    )]
    pub amqp_url: String,
    /// Prefix of the RabbitMQ queues (`<prefix>.sync`, …).
    #[arg(
        long,
        env = "MAILFLEET_QUEUE_PREFIX",
        default_value = "mailfleet",
        global = true
    )]
    pub queue_prefix: String,
    /// `text` or `json`.
    #[arg(
        long,
        env = "MAILFLEET_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: String,
    /// Postgres connections per process.
    #[arg(
        long,
        env = "MAILFLEET_DB_POOL_SIZE",
        default_value_t = 10,
        global = true
    )]
    pub db_pool_size: usize,
}

#[derive(Args, Debug, Clone)]
pub struct KeyArgs {
    /// 32 bytes, base64 (`openssl rand -base64 32`): seals account credentials at rest.
    #[arg(long, env = "MAILFLEET_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<Secret<String>>,
}

impl KeyArgs {
    /// The key, or an error that tells how to make one: the process never runs without it.
    pub fn key(&self) -> anyhow::Result<SecretKey> {
        let raw = self.secret_key.as_ref().context(
            "MAILFLEET_SECRET_KEY is not set: generate one with `openssl rand -base64 32`",
        )?;
        Ok(SecretKey::from_base64(raw.expose())?)
    }
}

#[derive(Args, Debug, Clone)]
pub struct CoordinatorArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    /// Address the HTTP API listens on.
    #[arg(long, env = "MAILFLEET_API_ADDR", default_value = "127.0.0.1:8080")]
    pub api_addr: SocketAddr,
    /// Bearer token the API requires.
    #[arg(
        long,
        env = "MAILFLEET_API_TOKEN",
        default_value = "mailfleet-dev-token",
        hide_env_values = true
    )]
    pub api_token: Secret<String>,
    /// Seconds between two syncs of an account.
    #[arg(long, env = "MAILFLEET_SYNC_INTERVAL_SECS", default_value_t = 300)]
    pub sync_interval_secs: u64,
    /// Milliseconds between two scheduling passes (due syncs, refreshes, orphaned claims).
    #[arg(long, env = "MAILFLEET_SCHEDULER_TICK_MS", default_value_t = 5000)]
    pub scheduler_tick_ms: u64,
    /// Seconds between two folder-list refreshes of an account.
    #[arg(long, env = "MAILFLEET_FOLDER_REFRESH_SECS", default_value_t = 3600)]
    pub folder_refresh_secs: u64,
    /// Seconds a connection test waits for a worker's answer.
    #[arg(long, env = "MAILFLEET_RPC_TIMEOUT_SECS", default_value_t = 30)]
    pub rpc_timeout_secs: u64,
}

#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    /// Address of the worker's `/healthz` and `/readyz`.
    #[arg(long, env = "MAILFLEET_HEALTH_ADDR", default_value = "127.0.0.1:8081")]
    pub health_addr: SocketAddr,
    /// Jobs one worker runs at once (and its RabbitMQ prefetch).
    #[arg(long, env = "MAILFLEET_WORKER_SLOTS", default_value_t = 4)]
    pub slots: u16,
    /// Messages fetched and committed per batch, at most.
    #[arg(long, env = "MAILFLEET_SYNC_BATCH", default_value_t = 200)]
    pub batch: usize,
    /// Bytes of mail fetched per batch, about (bounds the worker's memory).
    #[arg(long, env = "MAILFLEET_SYNC_BATCH_BYTES", default_value_t = 16 << 20)]
    pub batch_bytes: usize,
    /// Seconds an account's lease lasts without renewal (one worker per mailbox).
    #[arg(long, env = "MAILFLEET_LEASE_SECS", default_value_t = 60)]
    pub lease_secs: u64,
    /// Seconds one sync job may run before it commits and continues in a follow-up job.
    #[arg(long, env = "MAILFLEET_SYNC_SLICE_SECS", default_value_t = 300)]
    pub sync_slice_secs: u64,
    /// PEM file of extra CAs to trust for IMAP/SMTP servers (a private CA).
    #[arg(long, env = "MAILFLEET_EXTRA_CA_FILE")]
    pub extra_ca_file: Option<std::path::PathBuf>,
    /// Seconds a worker holds an outgoing message while sending it (after that, another
    /// worker may resolve an interrupted send).
    #[arg(long, env = "MAILFLEET_SEND_CLAIM_SECS", default_value_t = 600)]
    pub send_claim_secs: u64,
    /// First retry delay of a deferred send, in seconds (doubles each attempt).
    #[arg(long, env = "MAILFLEET_SEND_RETRY_SECS", default_value_t = 30)]
    pub send_retry_secs: u64,
    /// Attempts before a deferred send is given up as `failed`.
    #[arg(long, env = "MAILFLEET_SEND_MAX_ATTEMPTS", default_value_t = 8)]
    pub send_max_attempts: u16,
    /// Tests only: crash on purpose at this point (`abort-after-smtp-accept`).
    #[arg(long, env = "MAILFLEET_FAILPOINT", hide = true)]
    pub failpoint: Option<mailfleet_worker::Failpoint>,
}

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Messages in the demo mailbox.
    #[arg(long, default_value_t = 3000)]
    pub messages: usize,
    /// Workers to run.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
}

#[derive(Args, Debug, Clone)]
pub struct SeedArgs {
    /// Address of the mail user to create (its mail is replaced).
    #[arg(long)]
    pub address: String,
    #[arg(long)]
    pub password: String,
    #[arg(long, default_value_t = 10_000)]
    pub messages: usize,
    /// Days of mail, back from now.
    #[arg(long, default_value_t = 150)]
    pub span_days: i64,
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
}

/// How `mailfleet account …` reaches the coordinator's API, and for whom it acts.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Client options")]
pub struct ApiClientArgs {
    /// Base URL of the coordinator's HTTP API.
    #[arg(
        long,
        env = "MAILFLEET_API_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub api_url: String,
    /// Bearer token of the API (required).
    #[arg(
        long,
        env = "MAILFLEET_API_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub api_token: Option<Secret<String>>,
    /// Id of the acting user, sent as `X-Mailfleet-User` (required).
    #[arg(long = "user", env = "MAILFLEET_USER", global = true)]
    pub user: Option<i64>,
}
