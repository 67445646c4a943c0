//! `send_message`: hand one outbox message to the account's server exactly once, then file
//! its copy in the Sent folder (remote and local) exactly once.
//!
//! Exactly once rests on three facts recorded in Postgres: the claim (one worker at a time,
//! fenced by a token), `data_started_at` (committed just before the message's bytes go out:
//! an attempt interrupted before it is safe to repeat, one interrupted after it is not), and
//! the server's acceptance (`sent`). A send interrupted after DATA is resolved by looking for
//! its Message-ID in Sent, and otherwise recorded as `unknown` — never sent again.

use crate::handler::{Outcome, Worker};
use mailfleet_provider::{
    ErrorClass, FetchedMessage, MailSession, MailSubmission, ProviderError, SubmitError,
};
use mailfleet_store::models::{Account, Outgoing};
use mailfleet_store::outgoing::{self, SendClaim, SentCopy};
use mailfleet_store::{StoreError, accounts, folders};
use std::time::Duration;

/// What became of a `send_message` job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Accepted by the server; the Sent copy's local message id when it was filed.
    Sent { copy: Option<i64> },
    /// A later attempt is scheduled (the server was unreachable or said 4xx).
    Retrying(String),
    /// The server refused it for good, or the account can't send.
    Failed { code: String, reply: String },
    /// Interrupted after the message went out and not found in Sent: not sent again.
    Unknown(String),
    /// The Sent copy of an already sent message was filed (or found).
    CopyFiled(Option<i64>),
    /// Another worker holds the message, or its retry is not due: nothing done.
    NotNow,
    /// Already settled (sent and filed, failed, unknown).
    Settled(String),
}

/// Test builds can crash a worker at the worst moment (`MAILFLEET_FAILPOINT`), to prove
/// that the outcome is resolved and the message not sent twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failpoint {
    /// Abort the process right after the SMTP server accepted the message, before anything
    /// is committed.
    AbortAfterSmtpAccept,
}

impl std::str::FromStr for Failpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "abort-after-smtp-accept" => Ok(Self::AbortAfterSmtpAccept),
            other => Err(format!("unknown failpoint {other:?}")),
        }
    }
}

impl Worker {
    fn claim_secs(&self) -> i64 {
        self.config.send_claim.as_secs().max(1) as i64
    }

    pub(crate) async fn run_send(&self, outgoing_id: i64) -> Result<Outcome, StoreError> {
        let mut conn = self.store.conn().await?;
        let claim = outgoing::claim_send(&mut conn, outgoing_id, self.claim_secs()).await?;
        drop(conn);
        let outcome = match claim {
            // The row is the record and the job only its wake-up call: with the row gone
            // (deleted with its account or user) there is nothing to send or to keep.
            SendClaim::Missing => {
                tracing::info!(
                    outgoing_id,
                    "Send job skipped: the outgoing message no longer exists."
                );
                return Ok(Outcome::Skipped);
            }
            SendClaim::Settled(status) => SendOutcome::Settled(status),
            SendClaim::Busy(_) | SendClaim::NotDue => SendOutcome::NotNow,
            SendClaim::Send(row) => self.send(row).await?,
            SendClaim::Resolve(row) if row.data_started_at.is_none() => {
                // The last attempt stopped before a byte of the message went out.
                self.send(row).await?
            }
            SendClaim::Resolve(row) => self.resolve(row).await?,
            SendClaim::FileCopy(row) => {
                SendOutcome::CopyFiled(self.file_copy(&row, row.attempts, None).await?)
            }
        };
        tracing::info!(outgoing_id, outcome = ?outcome, "Send job done.");
        Ok(Outcome::Send(outcome))
    }

    async fn send(&self, row: Outgoing) -> Result<SendOutcome, StoreError> {
        let token = row.attempts;
        let mut conn = self.store.conn().await?;
        let account = accounts::get(&mut conn, row.account_id).await?;
        drop(conn);
        if account.state != "active" {
            return self
                .fail(
                    &row,
                    "account_disabled",
                    "the account is disabled; re-connect it and send again",
                )
                .await;
        }
        let mut submission = match self.open_submission(&account).await {
            Ok(s) => s,
            Err(e) => return self.unsent(&row, &account, SubmitError::Provider(e)).await,
        };
        if let Err(e) = submission.begin(&row.envelope_from, &row.envelope_to).await {
            submission.close().await;
            return self.unsent(&row, &account, e).await;
        }
        let mut conn = self.store.conn().await?;
        if !outgoing::mark_data_started(&mut conn, row.id, token).await? {
            // The claim ran out and another worker took the message: leave it to them.
            drop(conn);
            submission.close().await;
            return Ok(SendOutcome::NotNow);
        }
        drop(conn);
        let result = submission.transmit(&row.raw_message).await;
        let files_itself = submission.files_sent_copy();
        submission.close().await;
        match result {
            Ok(reply) => {
                if self.config.failpoint == Some(Failpoint::AbortAfterSmtpAccept) {
                    tracing::error!(
                        outgoing_id = row.id,
                        "Failpoint: aborting after the server accepted the message."
                    );
                    std::process::abort();
                }
                let mut conn = self.store.conn().await?;
                let copy_token =
                    outgoing::mark_sent(&mut conn, row.id, token, &reply, self.claim_secs())
                        .await?;
                drop(conn);
                tracing::info!(
                    outgoing_id = row.id,
                    account_id = account.id,
                    "Message sent."
                );
                let copy = match copy_token {
                    // Gmail and Graph file what they send; the sync brings the copy in.
                    Some(t) if files_itself => {
                        let mut conn = self.store.conn().await?;
                        outgoing::copy_filed_by_provider(&mut conn, row.id, t).await?;
                        None
                    }
                    Some(t) => self.file_copy(&row, t, None).await?,
                    None => None,
                };
                Ok(SendOutcome::Sent { copy })
            }
            Err(SubmitError::Interrupted(why)) => {
                // It may have been delivered: never send it again.
                let note = format!(
                    "the connection failed after the message was transmitted ({why}); it may \
                     or may not have been delivered, and was not sent again"
                );
                self.unknown(&row, token, note).await
            }
            Err(e) => self.unsent(&row, &account, e).await,
        }
    }

    /// It may have been delivered, so it is never sent again: `unknown`, with why.
    async fn unknown(
        &self,
        row: &Outgoing,
        token: i32,
        note: String,
    ) -> Result<SendOutcome, StoreError> {
        let mut conn = self.store.conn().await?;
        outgoing::finish(
            &mut conn,
            row.id,
            token,
            "unknown",
            "unknown_outcome",
            &note,
        )
        .await?;
        tracing::warn!(
            outgoing_id = row.id,
            "Send outcome unknown; not sent again."
        );
        Ok(SendOutcome::Unknown(note))
    }

    /// The server did not take the message: retry what may pass later, fail the rest.
    async fn unsent(
        &self,
        row: &Outgoing,
        account: &Account,
        e: SubmitError,
    ) -> Result<SendOutcome, StoreError> {
        match e {
            SubmitError::Refused {
                transient: false,
                reply,
            } => self.fail(row, "rejected", &reply).await,
            SubmitError::Refused {
                transient: true,
                reply,
            } => self.retry(row, &reply).await,
            SubmitError::Interrupted(why) => self.retry(row, &why).await,
            SubmitError::Provider(e) => match e.class() {
                ErrorClass::AuthFailed => {
                    let mut conn = self.store.conn().await?;
                    accounts::disable(
                        &mut conn,
                        account.id,
                        "auth_failed",
                        crate::sync_job::AUTH_FAILED_MESSAGE,
                    )
                    .await?;
                    drop(conn);
                    tracing::warn!(
                        account_id = account.id,
                        "Account disabled: SMTP authentication failed."
                    );
                    self.fail(row, "auth_failed", &e.to_string()).await
                }
                ErrorClass::Transient | ErrorClass::RateLimited => {
                    self.retry(row, &e.to_string()).await
                }
                ErrorClass::Permanent => self.fail(row, e.code(), &e.to_string()).await,
            },
        }
    }

    async fn fail(
        &self,
        row: &Outgoing,
        code: &str,
        reply: &str,
    ) -> Result<SendOutcome, StoreError> {
        let mut conn = self.store.conn().await?;
        outgoing::finish(&mut conn, row.id, row.attempts, "failed", code, reply).await?;
        tracing::warn!(outgoing_id = row.id, code, reply, "Send failed.");
        Ok(SendOutcome::Failed {
            code: code.to_owned(),
            reply: reply.to_owned(),
        })
    }

    /// Tries again after a growing delay, up to `send_max_attempts`.
    async fn retry(&self, row: &Outgoing, why: &str) -> Result<SendOutcome, StoreError> {
        if row.attempts >= i32::from(self.config.send_max_attempts) {
            return self
                .fail(
                    row,
                    "retries_exhausted",
                    &format!("gave up after {} attempts: {why}", row.attempts),
                )
                .await;
        }
        let delay = self.retry_delay(row.attempts);
        let mut conn = self.store.conn().await?;
        outgoing::requeue(
            &mut conn,
            row.id,
            row.attempts,
            delay.as_secs().max(1) as i64,
            why,
        )
        .await?;
        tracing::info!(
            outgoing_id = row.id,
            attempt = row.attempts,
            retry_in_s = delay.as_secs(),
            why,
            "Send will be retried."
        );
        Ok(SendOutcome::Retrying(why.to_owned()))
    }

    /// `base × 2^(attempt−1)`, capped, with ±20 % jitter so retries of many messages spread.
    fn retry_delay(&self, attempt: i32) -> Duration {
        let base = self.config.send_retry_base.as_secs_f64();
        let exp = base * 2f64.powi((attempt - 1).clamp(0, 20));
        let capped = exp.min(self.config.retry_max_delay.as_secs_f64());
        Duration::from_secs_f64(capped * rand::random_range(0.8..1.2))
    }

    /// A send interrupted after its data went out: sent if the copy is in Sent (a provider
    /// that files sent mail itself, or a copy filed before the crash), else `unknown`.
    async fn resolve(&self, row: Outgoing) -> Result<SendOutcome, StoreError> {
        let token = row.attempts;
        let mut conn = self.store.conn().await?;
        let account = accounts::get(&mut conn, row.account_id).await?;
        drop(conn);
        let found = async {
            let mut session = self.open_session(&account, None).await?;
            let r = async {
                match self.sent_folder(session.as_mut(), &account).await? {
                    Some(f) => session.find_message(&f.name, &row.message_id).await,
                    None => Ok(None),
                }
            }
            .await;
            session.close().await;
            r
        }
        .await;
        let found = match found {
            Ok(found) => found,
            Err(e) if row.attempts < i32::from(self.config.send_max_attempts) => {
                // Can't look now: keep it unresolved and look again later.
                let mut conn = self.store.conn().await?;
                let delay = self.retry_delay(1).as_secs().max(1) as i64;
                outgoing::retry_later(&mut conn, row.id, token, delay, &e.to_string()).await?;
                return Ok(SendOutcome::Retrying(e.to_string()));
            }
            Err(e) => {
                let note = format!(
                    "the worker sending it stopped after the message was transmitted, and Sent \
                     could not be searched ({e}): it may or may not have been delivered, and \
                     was not sent again"
                );
                return self.unknown(&row, token, note).await;
            }
        };
        let mut conn = self.store.conn().await?;
        match found {
            Some(remote) => {
                let copy_token = outgoing::mark_sent(
                    &mut conn,
                    row.id,
                    token,
                    "found in Sent after an interrupted send",
                    self.claim_secs(),
                )
                .await?;
                drop(conn);
                let copy = match copy_token {
                    Some(t) => self.file_copy(&row, t, Some(remote)).await?,
                    None => None,
                };
                Ok(SendOutcome::Sent { copy })
            }
            None => {
                let note = "the worker sending it stopped after the message was transmitted, and \
                            it is not in Sent: it may or may not have been delivered, and was \
                            not sent again";
                drop(conn);
                self.unknown(&row, token, note.into()).await
            }
        }
    }

    /// Files the copy of a sent message in the account's Sent folder (created when the
    /// server has none) unless it is there already, and stores it locally. Failures are
    /// retried later; the message itself is sent either way.
    async fn file_copy(
        &self,
        row: &Outgoing,
        token: i32,
        found: Option<String>,
    ) -> Result<Option<i64>, StoreError> {
        let mut conn = self.store.conn().await?;
        let account = accounts::get(&mut conn, row.account_id).await?;
        drop(conn);
        let filed = async {
            let mut session = self.open_session(&account, None).await?;
            let r = self
                .append_once(session.as_mut(), &account, row, found)
                .await;
            session.close().await;
            r
        }
        .await;
        let mut conn = self.store.conn().await?;
        let (folder_id, remote_id) = match filed {
            Ok(f) => f,
            Err(e) => {
                let why = format!("filing the Sent copy failed: {e}");
                if e.class() == ErrorClass::Permanent
                    || row.attempts >= i32::from(self.config.send_max_attempts)
                {
                    outgoing::abandon_copy(&mut conn, row.id, token, &why).await?;
                } else {
                    let delay = self.retry_delay(row.attempts).as_secs().max(1) as i64;
                    outgoing::retry_later(&mut conn, row.id, token, delay, &why).await?;
                }
                tracing::warn!(outgoing_id = row.id, error = %e, "Sent copy not filed.");
                return Ok(None);
            }
        };
        let fetched = FetchedMessage {
            remote_id,
            provider_id: None,
            flags: vec!["\\Seen".into()],
            received_at: Some(chrono::Utc::now()),
            raw: row.raw_message.clone(),
        };
        let (message, addresses) =
            mailfleet_sync::parse::parse_fetched(account.id, folder_id, fetched);
        let bcc: Vec<String> = row
            .bcc_addrs
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("email").and_then(|e| e.as_str()).map(str::to_owned))
            .collect();
        let copy = SentCopy {
            folder_id,
            own_addresses: vec![account.email.to_lowercase()],
            create_contacts: account.create_contacts,
        };
        match outgoing::store_sent_copy(&mut conn, row.id, token, &copy, message, addresses, &bcc)
            .await
        {
            Ok(id) => Ok(Some(id)),
            // Another worker took the message over meanwhile; it files the copy (the search
            // by Message-ID keeps it single).
            Err(StoreError::Conflict(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The Sent folder's row id and the remote id of the copy, appending it only when a
    /// search by Message-ID does not find it.
    async fn append_once(
        &self,
        session: &mut dyn MailSession,
        account: &Account,
        row: &Outgoing,
        found: Option<String>,
    ) -> Result<(i64, String), ProviderError> {
        let store_err = |e: StoreError| ProviderError::Disconnected(format!("database: {e}"));
        let folder = match self.sent_folder(session, account).await? {
            Some(f) => f,
            None => {
                if let Err(e) = session.create_folder("Sent").await {
                    // It may exist already without our knowing (no refresh yet).
                    tracing::info!(account_id = account.id, error = %e, "CREATE Sent refused.");
                }
                let mut conn = self.store.conn().await.map_err(store_err)?;
                folders::insert_created(&mut conn, account.id, "Sent", Some("sent"))
                    .await
                    .map_err(store_err)?
            }
        };
        let remote = match found {
            Some(r) => r,
            None => match session.find_message(&folder.name, &row.message_id).await? {
                Some(r) => r,
                None => {
                    session.append_seen(&folder.name, &row.raw_message).await?;
                    session
                        .find_message(&folder.name, &row.message_id)
                        .await?
                        .ok_or_else(|| {
                            ProviderError::Protocol(
                                "the appended copy is not found in Sent by its Message-ID".into(),
                            )
                        })?
                }
            },
        };
        Ok((folder.id, remote))
    }

    /// The account's Sent folder: as stored, else as the server lists it now (an account
    /// whose folder list was never refreshed), recorded when found.
    async fn sent_folder(
        &self,
        session: &mut dyn MailSession,
        account: &Account,
    ) -> Result<Option<mailfleet_store::models::Folder>, ProviderError> {
        let store_err = |e: StoreError| ProviderError::Disconnected(format!("database: {e}"));
        let mut conn = self.store.conn().await.map_err(store_err)?;
        if let Some(f) = folders::sent_folder(&mut conn, account.id)
            .await
            .map_err(store_err)?
        {
            return Ok(Some(f));
        }
        drop(conn);
        let listed = session.list_folders().await?;
        let Some(remote) = listed
            .iter()
            .find(|f| f.role == Some(mailfleet_provider::FolderRole::Sent))
            .or_else(|| listed.iter().find(|f| f.name.eq_ignore_ascii_case("Sent")))
        else {
            return Ok(None);
        };
        let mut conn = self.store.conn().await.map_err(store_err)?;
        folders::insert_created(&mut conn, account.id, &remote.name, Some("sent"))
            .await
            .map(Some)
            .map_err(store_err)
    }

    async fn open_submission(
        &self,
        account: &Account,
    ) -> Result<Box<dyn MailSubmission>, ProviderError> {
        let (provider, access) = self.access(account, None)?;
        self.connector(provider)?.submission(&access).await
    }
}
