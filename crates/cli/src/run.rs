//! The long-running roles.

use crate::config::{Common, CoordinatorArgs, WorkerArgs};
use anyhow::Context;
use mailfleet_coordinator::{ApiState, Scheduler};
use mailfleet_imap::TlsTrust;
use mailfleet_queue::Broker;
use mailfleet_store::Store;
use mailfleet_worker::{Worker, WorkerConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub async fn migrate(common: &Common) -> anyhow::Result<()> {
    if mailfleet_store::ensure_database(&common.database_url).await? {
        tracing::info!("Database created.");
    }
    let applied = mailfleet_store::run_migrations(&common.database_url).await?;
    tracing::info!(applied = applied.len(), "Migrations applied.");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("Shutting down.");
        let _ = tx.send(true);
    });
    rx
}

pub async fn coordinator(common: &Common, args: &CoordinatorArgs) -> anyhow::Result<()> {
    let key = args.key.key()?;
    if args.api_token.expose() == "mailfleet-dev-token" {
        tracing::warn!(
            "MAILFLEET_API_TOKEN is the development default; set a real token in production."
        );
    }
    let shutdown = shutdown_signal();
    let listener = tokio::net::TcpListener::bind(args.api_addr)
        .await
        .with_context(|| format!("binding the API to {}", args.api_addr))?;
    let handle = start_coordinator(common, args, key, listener, shutdown.clone()).await?;
    handle.await??;
    Ok(())
}

/// Starts the scheduler and the API on `listener`; the handle ends after `shutdown`.
pub async fn start_coordinator(
    common: &Common,
    args: &CoordinatorArgs,
    key: mailfleet_core::SecretKey,
    listener: tokio::net::TcpListener,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let store = Store::connect(&common.database_url, common.db_pool_size)?;
    let broker = Arc::new(
        Broker::connect(&common.amqp_url, &common.queue_prefix)
            .await
            .context("connecting to RabbitMQ")?,
    );
    let interval = Duration::from_secs(args.sync_interval_secs.max(1));
    let scheduler = Scheduler::new(store.clone(), broker.clone(), interval)
        .with_refresh_interval(Duration::from_secs(args.folder_refresh_secs.max(1)));
    let tick = interval.min(Duration::from_millis(args.scheduler_tick_ms.max(100)));
    tokio::spawn(scheduler.clone().run(tick, shutdown.clone()));
    let state = ApiState {
        store,
        broker,
        scheduler,
        key,
        api_token: Arc::new(args.api_token.clone()),
        rpc_timeout: Duration::from_secs(args.rpc_timeout_secs.max(1)),
    };
    let app = mailfleet_coordinator::router(state);
    tracing::info!(addr = %listener.local_addr()?, "API listening.");
    let mut stop = shutdown;
    Ok(tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|v| *v).await;
            })
            .await?;
        Ok(())
    }))
}

pub async fn worker(common: &Common, args: &WorkerArgs) -> anyhow::Result<()> {
    let key = args.key.key()?;
    let shutdown = shutdown_signal();
    let worker = build_worker(common, args, key).await?;
    let listener = tokio::net::TcpListener::bind(args.health_addr)
        .await
        .with_context(|| format!("binding the health endpoints to {}", args.health_addr))?;
    tracing::info!(addr = %args.health_addr, "Health endpoints listening.");
    tokio::spawn(serve_worker_health(listener, worker.clone()));
    worker.run(shutdown).await?;
    Ok(())
}

/// `/healthz` (alive: answers at all), `/readyz` (consuming, broker and database up) and
/// `/metrics` (Prometheus).
async fn serve_worker_health(listener: tokio::net::TcpListener, worker: Arc<Worker>) {
    use axum::http::StatusCode;
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(|| async {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        mailfleet_telemetry::metrics::CONTENT_TYPE,
                    )],
                    mailfleet_telemetry::metrics::render(),
                )
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let worker = worker.clone();
                async move {
                    let r = worker.readiness().await;
                    let status = if r.ready() {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (status, axum::Json(r))
                }
            }),
        );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "Health endpoints stopped.");
    }
}

pub async fn build_worker(
    common: &Common,
    args: &WorkerArgs,
    key: mailfleet_core::SecretKey,
) -> anyhow::Result<Arc<Worker>> {
    let ca = match &args.extra_ca_file {
        Some(path) => Some((
            path.display().to_string(),
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        )),
        None => None,
    };
    let trust = TlsTrust::new(ca.as_ref().map(|(p, b)| (p.as_str(), b.as_slice())))?;
    let store = Store::connect(&common.database_url, common.db_pool_size)?;
    let broker = Arc::new(
        Broker::connect(&common.amqp_url, &common.queue_prefix)
            .await
            .context("connecting to RabbitMQ")?,
    );
    let mut config = WorkerConfig {
        slots: args.slots.max(1),
        lease_ttl: Duration::from_secs(args.lease_secs.max(1)),
        send_claim: Duration::from_secs(args.send_claim_secs.max(1)),
        send_retry_base: Duration::from_secs(args.send_retry_secs.max(1)),
        send_max_attempts: args.send_max_attempts.max(1),
        failpoint: args.failpoint,
        ..WorkerConfig::default()
    };
    config.sync.max_duration = Some(Duration::from_secs(args.sync_slice_secs.max(1)));
    config.sync.batch_messages = args.batch.max(1);
    config.sync.batch_bytes = args.batch_bytes.max(1);
    Ok(Arc::new(Worker::new(store, broker, key, trust, config)))
}
