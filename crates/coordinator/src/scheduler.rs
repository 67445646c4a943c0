use mailfleet_core::{Job, JobEnvelope};
use mailfleet_queue::Broker;
use mailfleet_store::{Store, StoreError, accounts, outgoing};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Publishes a `sync_account` job for each due account. The claim in Postgres (see
/// `accounts::claim_due`) makes this safe to run in several coordinators at once, and keeps a
/// second job from being queued while one is queued or running.
#[derive(Clone)]
pub struct Scheduler {
    store: Store,
    broker: Arc<Broker>,
    interval: Duration,
    refresh_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

const CLAIM_BATCH: i64 = 500;

impl Scheduler {
    /// Syncs every `interval`; folder lists are refreshed every hour unless
    /// `with_refresh_interval` says otherwise.
    pub fn new(store: Store, broker: Arc<Broker>, interval: Duration) -> Self {
        Self {
            store,
            broker,
            interval,
            refresh_interval: Duration::from_secs(3600),
        }
    }

    pub fn with_refresh_interval(mut self, every: Duration) -> Self {
        self.refresh_interval = every;
        self
    }

    /// One scheduling pass; returns how many jobs were published.
    pub async fn tick(&self) -> Result<usize, ScheduleError> {
        Ok(self.tick_syncs().await? + self.tick_refreshes().await? + self.tick_outbox().await?)
    }

    /// The outbox relay: publishes `send_message` for outgoing messages that are due and
    /// have no job in flight (new, retried after a delay, or left by a vanished worker).
    pub async fn tick_outbox(&self) -> Result<usize, ScheduleError> {
        let mut published = 0;
        loop {
            let mut conn = self.store.conn().await?;
            let due = outgoing::claim_for_relay(&mut conn, CLAIM_BATCH).await?;
            drop(conn);
            let n = due.len();
            for outgoing_id in due {
                let env = JobEnvelope::new(Job::SendMessage { outgoing_id });
                match self.broker.publish(&env).await {
                    Ok(()) => published += 1,
                    Err(e) => {
                        tracing::warn!(outgoing_id, error = %e, "Publishing a send job failed; will retry.");
                        let mut conn = self.store.conn().await?;
                        outgoing::unpublish(&mut conn, outgoing_id).await?;
                        return Ok(published);
                    }
                }
            }
            if (n as i64) < CLAIM_BATCH {
                return Ok(published);
            }
        }
    }

    /// Publishes `refresh_folders` for accounts whose folder list is due.
    pub async fn tick_refreshes(&self) -> Result<usize, ScheduleError> {
        let mut conn = self.store.conn().await?;
        let due = accounts::claim_due_refresh(
            &mut conn,
            self.refresh_interval.as_secs() as i64,
            CLAIM_BATCH,
        )
        .await?;
        drop(conn);
        let mut published = 0;
        for account_id in due {
            let env = JobEnvelope::new(Job::RefreshFolders { account_id });
            match self.broker.publish(&env).await {
                Ok(()) => published += 1,
                Err(e) => {
                    tracing::warn!(account_id, error = %e, "Publishing a folder refresh failed; will retry.");
                    let mut conn = self.store.conn().await?;
                    accounts::release_refresh_claim(&mut conn, account_id).await?;
                }
            }
        }
        Ok(published)
    }

    /// Publishes `sync_account` for due accounts.
    pub async fn tick_syncs(&self) -> Result<usize, ScheduleError> {
        let mut published = 0;
        loop {
            let mut conn = self.store.conn().await?;
            let due =
                accounts::claim_due(&mut conn, self.interval.as_secs() as i64, CLAIM_BATCH).await?;
            drop(conn);
            let n = due.len();
            for id in due {
                if self.publish(id).await? {
                    published += 1;
                }
            }
            if (n as i64) < CLAIM_BATCH {
                return Ok(published);
            }
        }
    }

    /// Queues a sync of one account now, unless one is queued or running (then one more
    /// sync follows it). Returns whether a job was published.
    pub async fn sync_now(&self, account_id: i64) -> Result<bool, ScheduleError> {
        let mut conn = self.store.conn().await?;
        let claimed = accounts::claim_now(&mut conn, account_id).await?;
        drop(conn);
        if claimed {
            return self.publish(account_id).await;
        }
        Ok(false)
    }

    async fn publish(&self, account_id: i64) -> Result<bool, ScheduleError> {
        use tracing::Instrument;
        let env = JobEnvelope::new(Job::SyncAccount { account_id });
        // A scheduled sync starts its own trace; one asked for by an API request continues
        // the request's.
        let span = tracing::info_span!("publish sync_account", account_id, job_id = %env.job_id);
        match self.broker.publish(&env).instrument(span).await {
            Ok(()) => {
                tracing::debug!(account_id, job_id = %env.job_id, "Sync job published.");
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(account_id, error = %e, "Publishing a sync job failed; will retry.");
                let mut conn = self.store.conn().await?;
                accounts::release_claim(&mut conn, account_id).await?;
                Ok(false)
            }
        }
    }

    /// Ticks every `every` until `shutdown` turns true.
    pub async fn run(self, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            match self.tick().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(published = n, "Sync jobs published."),
                Err(e) => tracing::warn!(error = %e, "Scheduling pass failed."),
            }
        }
    }
}
