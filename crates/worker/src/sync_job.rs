//! `sync_account`: log in, sync the active folders, record the outcome on the account.

use crate::handler::{Outcome, Worker};
use mailfleet_core::{Job, JobEnvelope};
use mailfleet_provider::{ErrorClass, MailSession, ProviderError};
use mailfleet_store::leases::{self, Fence};
use mailfleet_store::models::Account;
use mailfleet_store::{StoreError, accounts, sync_runs};
use mailfleet_sync::{SyncError, SyncReport, sync_account};
use uuid::Uuid;

/// From this delivery of a sync job on, it commits one batch and hands over (see `run_sync`).
/// Not from the first redelivery: each hand-over costs a login, and a single crash is common.
const REDELIVERY_SHORT_SLICE: i64 = 3;

impl Worker {
    pub(crate) async fn run_sync(
        &self,
        account_id: i64,
        job_id: Uuid,
        attempt: i64,
    ) -> Result<Outcome, StoreError> {
        let account = match self.active_account(account_id).await? {
            Ok(a) => a,
            Err(outcome) => return Ok(outcome),
        };
        // One worker per mailbox: without the lease this job is a duplicate of one running.
        let ttl = self.config.lease_ttl.as_secs().max(1) as i64;
        let lease = leases::acquire_live(&self.store, account_id, &self.id, ttl).await?;
        let mut conn = self.store.conn().await?;
        let Some(lease) = lease else {
            // Another worker holds the account. Ask for one more sync after it: should that
            // worker be frozen, its lease expires and the scheduler picks the request up.
            accounts::request_sync(&mut conn, account_id).await?;
            tracing::info!(account_id, %job_id, "Job skipped: another worker holds the account.");
            return Ok(Outcome::Busy);
        };
        let fence = lease.fence;
        let run_id = sync_runs::start(&mut conn, account_id, job_id).await?;
        drop(conn);

        let renewal = self.keep_lease(lease);
        let mut options = self.config.sync;
        if attempt >= REDELIVERY_SHORT_SLICE {
            // Given back more than once (workers died or returned it): commit one batch and
            // hand over to a fresh follow-up job, so that workers killed while syncing a large
            // mailbox don't add up to the queue's delivery limit and dead-letter a healthy
            // sync. A job that kills its worker before any progress still reaches the limit.
            options.max_duration = Some(std::time::Duration::ZERO);
        }
        let result = self.sync_once(&account, fence, options).await;
        renewal.abort();
        let mut conn = self.store.conn().await?;
        // Let go of the lease before the claim is cleared or a follow-up is published: a job
        // that found the lease held is acked as a duplicate, so the lease must never outlive
        // the claim that queued the next job.
        if !matches!(result, Err(SyncError::Store(StoreError::LeaseLost { .. }))) {
            let _ = leases::release(&mut conn, fence).await;
        }
        self.settle_sync(&mut conn, account_id, job_id, run_id, result)
            .await
    }

    /// Renews the lease every third of its lifetime until aborted or lost. The task owns the
    /// lease's liveness lock: aborting it lets the lock go.
    fn keep_lease(&self, lease: leases::Lease) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        let ttl = self.config.lease_ttl;
        let fence = lease.fence;
        let mut liveness = lease.liveness;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                // Taken over from a frozen holder: hold the lock once that holder is gone.
                let _ = liveness.try_hold(&store).await;
                let renewed = match store.conn().await {
                    Ok(mut c) => leases::renew(&mut c, fence, ttl.as_secs().max(1) as i64).await,
                    Err(e) => Err(e),
                };
                match renewed {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(
                            account_id = fence.account_id,
                            "Lease lost to another worker."
                        );
                        return;
                    }
                    // The database is away: the sync's own writes will fail too; keep trying.
                    Err(e) => {
                        tracing::warn!(account_id = fence.account_id, error = %e, "Lease renewal failed.")
                    }
                }
            }
        })
    }

    async fn settle_sync(
        &self,
        conn: &mut mailfleet_store::Conn,
        account_id: i64,
        job_id: Uuid,
        run_id: i64,
        result: Result<SyncReport, SyncError>,
    ) -> Result<Outcome, StoreError> {
        match result {
            Ok(report) if report.incomplete => {
                // Out of time slice: continue in a new delivery; the claim stays.
                let next = JobEnvelope::new(Job::SyncAccount { account_id });
                if let Err(e) = self.broker.publish(&next).await {
                    tracing::warn!(account_id, error = %e, "Follow-up sync not published; the scheduler will resume it.");
                    // Not finish_sync: that records a complete sync, and the account would
                    // wait a whole interval with its mailbox half synced.
                    accounts::release_claim(conn, account_id).await?;
                } else {
                    accounts::renew_claim(conn, account_id).await?;
                }
                sync_runs::finish(conn, run_id, run_end("partial", &report, None)).await?;
                tracing::info!(account_id, %job_id, added = report.messages_added, "Sync slice done; continuing.");
                Ok(Outcome::Synced(report))
            }
            Ok(report) => {
                let warning = (!report.failed_folders.is_empty()).then(|| {
                    report
                        .failed_folders
                        .iter()
                        .map(|(f, e)| format!("{f}: {e}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                });
                accounts::finish_sync(conn, account_id, warning.as_deref()).await?;
                sync_runs::finish(conn, run_id, run_end("ok", &report, warning.as_deref())).await?;
                tracing::info!(
                    account_id, %job_id, added = report.messages_added,
                    bytes = report.bytes_fetched, "Sync finished."
                );
                Ok(Outcome::Synced(report))
            }
            Err(SyncError::Store(StoreError::LeaseLost { .. })) => {
                // Another worker owns the account now: it finishes the sync and the claim.
                let _ = sync_runs::finish(
                    conn,
                    run_id,
                    run_end("lease_lost", &SyncReport::default(), None),
                )
                .await;
                tracing::warn!(account_id, %job_id, "Sync stopped: the lease was taken over; nothing more was written.");
                Ok(Outcome::LeaseLost)
            }
            Err(SyncError::Store(e)) => {
                // The database went away mid-sync: the delivery goes back to the queue; what
                // was committed stays (the cursor moved with it).
                let _ = sync_runs::finish(
                    conn,
                    run_id,
                    run_end("failed", &SyncReport::default(), Some(&e.to_string())),
                )
                .await;
                Err(e)
            }
            Err(SyncError::Provider(e)) => {
                let text = e.to_string();
                if e.class() == ErrorClass::AuthFailed {
                    accounts::disable(conn, account_id, "auth_failed", AUTH_FAILED_MESSAGE).await?;
                    sync_runs::finish(
                        conn,
                        run_id,
                        run_end("auth_failed", &SyncReport::default(), Some(&text)),
                    )
                    .await?;
                    tracing::warn!(account_id, %job_id, error = %text, "Account disabled: authentication failed.");
                } else {
                    // Network trouble and the like: the account stays enabled and is retried
                    // after a growing delay, or when the provider said.
                    let retry_after = e.retry_after().map(|d| d.as_secs() as i64);
                    let max_delay = self.config.retry_max_delay.as_secs() as i64;
                    accounts::fail_sync(conn, account_id, &text, retry_after, max_delay).await?;
                    sync_runs::finish(
                        conn,
                        run_id,
                        run_end("failed", &SyncReport::default(), Some(&text)),
                    )
                    .await?;
                    tracing::warn!(account_id, %job_id, error = %text, class = ?e.class(), "Sync failed.");
                }
                Ok(Outcome::Failed(e))
            }
        }
    }

    /// The account a job acts on, or what becomes of the job: a missing account can never
    /// succeed (dead letter); a disabled one is left alone.
    async fn active_account(
        &self,
        account_id: i64,
    ) -> Result<Result<Account, Outcome>, StoreError> {
        let mut conn = self.store.conn().await?;
        let found = accounts::get(&mut conn, account_id).await;
        if let Ok(a) = &found {
            // The job span declares the field; log lines inside the job carry it.
            tracing::Span::current().record("provider", a.provider.as_str());
        }
        match found {
            Ok(a) if a.state == "active" => Ok(Ok(a)),
            Ok(_) => {
                tracing::info!(account_id, "Job skipped: the account is disabled.");
                Ok(Err(Outcome::Skipped))
            }
            // Deleted with its user (or on its own): its queued jobs are void, not poison.
            Err(StoreError::NotFound { .. })
                if mailfleet_store::deletion::was_deleted(&mut conn, account_id).await? =>
            {
                tracing::info!(account_id, "Job skipped: the account was deleted.");
                Ok(Err(Outcome::Skipped))
            }
            Err(StoreError::NotFound { .. }) => Ok(Err(Outcome::Rejected(format!(
                "account {account_id} does not exist"
            )))),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn run_refresh(&self, account_id: i64) -> Result<Outcome, StoreError> {
        let account = match self.active_account(account_id).await? {
            Ok(a) => a,
            Err(outcome) => return Ok(outcome),
        };
        let ttl = self.config.lease_ttl.as_secs().max(1) as i64;
        let lease = leases::acquire_live(&self.store, account_id, &self.id, ttl).await?;
        let Some(lease) = lease else {
            // A sync holds the account; it lists the folders too. Try again next interval.
            let mut conn = self.store.conn().await?;
            accounts::finish_refresh(&mut conn, account_id).await?;
            return Ok(Outcome::Busy);
        };
        let fence = lease.fence;
        let result = async {
            let mut session = self.open_session(&account, Some(fence)).await?;
            let r = mailfleet_sync::refresh_folders(
                &self.store,
                session.as_mut(),
                &account,
                Some(fence),
            )
            .await;
            session.close().await;
            r
        }
        .await;
        let mut conn = self.store.conn().await?;
        let _ = leases::release(&mut conn, fence).await;
        drop(lease);
        let outcome = match result {
            Ok(r) => {
                tracing::info!(account_id, added = ?r.added, removed = ?r.removed, "Folders refreshed.");
                Outcome::Refreshed(r)
            }
            Err(SyncError::Store(e)) => return Err(e),
            Err(SyncError::Provider(e)) if e.class() == ErrorClass::AuthFailed => {
                accounts::disable(&mut conn, account_id, "auth_failed", AUTH_FAILED_MESSAGE)
                    .await?;
                Outcome::Failed(e)
            }
            Err(SyncError::Provider(e)) => {
                tracing::warn!(account_id, error = %e, "Folder refresh failed.");
                Outcome::Failed(e)
            }
        };
        accounts::finish_refresh(&mut conn, account_id).await?;
        Ok(outcome)
    }

    async fn sync_once(
        &self,
        account: &Account,
        fence: Fence,
        options: mailfleet_sync::SyncOptions,
    ) -> Result<SyncReport, SyncError> {
        let mut session = self.open_session(account, Some(fence)).await?;
        let result = sync_account(
            &self.store,
            session.as_mut(),
            account,
            options,
            Some(fence),
            Some(&self.draining),
        )
        .await;
        session.close().await;
        result
    }

    /// A mail session for the account, through its provider's connector.
    pub(crate) async fn open_session(
        &self,
        account: &Account,
        fence: Option<Fence>,
    ) -> Result<Box<dyn MailSession>, ProviderError> {
        let (provider, access) = self.access(account, fence)?;
        self.connector(provider)?.session(&access).await
    }
}

pub(crate) const AUTH_FAILED_MESSAGE: &str =
    "The mail server refused the credentials. Re-connect the account to sync it again.";

fn run_end<'a>(
    outcome: &'a str,
    report: &SyncReport,
    error: Option<&'a str>,
) -> sync_runs::RunEnd<'a> {
    sync_runs::RunEnd {
        outcome,
        messages_added: report.messages_added as i64,
        bytes_fetched: report.bytes_fetched as i64,
        error,
    }
}
