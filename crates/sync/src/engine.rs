use crate::{cursor, parse};
use chrono::Utc;
use mailfleet_provider::{
    ChangeBatch, ErrorClass, FetchLimits, FolderCursor, FolderRole, MailSession, ProviderError,
    RemoteFolder, Removed,
};
use mailfleet_store::folders::{self, ListedFolder};
use mailfleet_store::leases::Fence;
use mailfleet_store::messages::{self, BatchOwner, FolderChanges, Removal};
use mailfleet_store::models::{Account, AddressEntry, NewMessage};
use mailfleet_store::{Store, StoreError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct SyncOptions {
    /// Messages fetched and committed together, at most.
    pub batch_messages: usize,
    /// Bytes of raw mail fetched together, about (a larger message is fetched alone).
    pub batch_bytes: usize,
    /// A sync stops after the batch that crosses this much time and reports itself
    /// incomplete; the worker queues a follow-up. Keeps one delivery far from RabbitMQ's
    /// consumer timeout during a large first sync.
    pub max_duration: Option<std::time::Duration>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            batch_messages: 200,
            batch_bytes: 16 << 20,
            max_duration: Some(std::time::Duration::from_secs(300)),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub folders_synced: usize,
    pub messages_added: usize,
    /// Stored messages re-matched to new ids after a UIDVALIDITY change (kept, not re-added).
    pub messages_rematched: usize,
    pub flags_updated: usize,
    /// Messages gone from a folder (expunged there, or moved out of it).
    pub messages_removed: usize,
    /// Stored messages found in another folder (moved or copied there in another client):
    /// they kept their row, id and links.
    pub messages_attached: usize,
    /// Messages deleted for good: in no active folder through a whole sync.
    pub messages_deleted: usize,
    pub bytes_fetched: u64,
    pub contacts_created: usize,
    pub contact_links: usize,
    /// Pending mailbox actions applied at the start of the sync.
    pub actions: crate::actions::ActionsReport,
    /// Folders that failed with a permanent error, with the error; the others were synced.
    pub failed_folders: Vec<(String, String)>,
    /// The sync ran out of its time slice; what it did is committed, a follow-up continues.
    pub incomplete: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Syncs every active folder of `account` through `session`. A folder that fails with a
/// permanent error is reported and skipped; authentication, network and database errors end
/// the sync (the caller decides to retry or disable).
#[tracing::instrument(name = "sync.account", skip_all, fields(account_id = account.id))]
pub async fn sync_account(
    store: &Store,
    session: &mut dyn MailSession,
    account: &Account,
    options: SyncOptions,
    fence: Option<Fence>,
    stop: Option<&AtomicBool>,
) -> Result<SyncReport, SyncError> {
    let mut report = SyncReport::default();
    let deadline = options.max_duration.map(|d| Instant::now() + d);
    let remote = session.list_folders().await?;
    let mut conn = store.conn().await?;
    // Messages orphaned before this moment and still in no folder when this sync has seen
    // every active folder are gone (a message moved between two folders is orphaned for a
    // while: it is taken back when the sync reaches its new folder).
    let started = messages::database_now(&mut conn).await?;
    let known = folders::list(&mut conn, account.id).await?;
    // The first listing picks the default active folders, unless the user chose some when
    // connecting the account; folders that appear later start inactive.
    let first_listing = known.is_empty();
    let listed = listed_folders(&remote, first_listing);
    let mut stored = folders::upsert_listed(&mut conn, account.id, &listed, fence).await?;
    drop(conn);

    // Trash and Junk never bring their history (the spec: not synced at the first sync).
    // Whenever one has no position yet — at the account's first sync, active or not, and
    // however it became active — it starts from where it stands now and gets only newer mail.
    let mut unpositioned = Vec::new();
    let mut positioned = false;
    for folder in stored
        .iter()
        .filter(|f| f.selectable && cursor::load(f) == FolderCursor::Initial)
    {
        let Some(remote_folder) = remote.iter().find(|r| r.name == folder.name) else {
            continue;
        };
        if !remote_folder
            .role
            .is_some_and(FolderRole::skipped_by_default)
        {
            continue;
        }
        let position = match session.current_cursor(remote_folder).await {
            Ok(c) => c,
            Err(e) if e.class() == ErrorClass::Permanent => {
                // Not synced from the window instead: tried again at the next sync.
                tracing::warn!(account_id = account.id, folder = %folder.name, error = %e, "Folder position not read; folder skipped.");
                unpositioned.push(folder.id);
                report
                    .failed_folders
                    .push((folder.name.clone(), e.to_string()));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let mut conn = store.conn().await?;
        folders::save_position(&mut conn, folder.id, &cursor::to_update(&position), fence).await?;
        positioned = true;
    }
    if positioned {
        // An active Trash syncs on from the position just saved, not from the window.
        let mut conn = store.conn().await?;
        stored = folders::list(&mut conn, account.id).await?;
    }

    // What the CRM's users did since the last sync reaches the server before anything is
    // fetched (a sync never flips a pending change back: the store keeps the server's state).
    report.actions =
        crate::actions::apply_pending(store, session, account, &remote, &stored, fence).await?;

    // INBOX first: users judge a sync by their newest mail.
    stored.sort_by_key(|f| (f.role.as_deref() != Some("inbox"), f.name.clone()));
    let owner_addresses = vec![account.email.to_lowercase()];
    for folder in stored
        .iter()
        .filter(|f| f.active && f.selectable && !unpositioned.contains(&f.id))
    {
        let Some(remote_folder) = remote.iter().find(|r| r.name == folder.name) else {
            continue; // chosen, but not on the server (any more)
        };
        let owner = BatchOwner {
            account_id: account.id,
            folder_id: folder.id,
            own_addresses: owner_addresses.clone(),
            create_contacts: account.create_contacts,
            fence,
        };
        let synced = sync_folder(
            store,
            session,
            account,
            remote_folder,
            folder,
            &owner,
            (options, deadline, stop),
            &mut report,
        )
        .await;
        match synced {
            Ok(true) => report.folders_synced += 1,
            Ok(false) => {
                report.incomplete = true;
                break;
            }
            Err(SyncError::Provider(e)) if e.class() == ErrorClass::Permanent => {
                tracing::warn!(account_id = account.id, folder = %folder.name, error = %e, "Folder skipped.");
                report
                    .failed_folders
                    .push((folder.name.clone(), e.to_string()));
            }
            Err(e) => return Err(e),
        }
    }
    if !report.incomplete && report.failed_folders.is_empty() {
        let mut conn = store.conn().await?;
        report.messages_deleted =
            messages::drop_orphans(&mut conn, account.id, started, fence).await?;
    }
    Ok(report)
}

fn listed_folders(remote: &[RemoteFolder], first_listing: bool) -> Vec<ListedFolder> {
    remote
        .iter()
        .map(|f| ListedFolder {
            name: f.name.clone(),
            remote_id: f.remote_id.clone(),
            delimiter: f.delimiter.clone(),
            role: f.role.map(|r| r.as_str().to_owned()),
            selectable: f.selectable,
            active_if_new: first_listing && !f.role.is_some_and(FolderRole::skipped_by_default),
        })
        .collect()
}

/// The hourly folder refresh: the stored folder list becomes the server's (new folders
/// inactive, vanished ones deleted with their messages).
#[tracing::instrument(name = "sync.refresh_folders", skip_all, fields(account_id = account.id))]
pub async fn refresh_folders(
    store: &Store,
    session: &mut dyn MailSession,
    account: &Account,
    fence: Option<Fence>,
) -> Result<folders::Reconciled, SyncError> {
    let remote = session.list_folders().await?;
    let mut conn = store.conn().await?;
    Ok(folders::reconcile(
        &mut conn,
        account.id,
        &listed_folders(&remote, false),
        fence,
    )
    .await?)
}

#[allow(clippy::too_many_arguments)]
#[tracing::instrument(name = "sync.folder", skip_all, fields(folder = %folder.name))]
async fn sync_folder(
    store: &Store,
    session: &mut dyn MailSession,
    account: &Account,
    remote: &RemoteFolder,
    folder: &mailfleet_store::models::Folder,
    owner: &BatchOwner,
    (options, deadline, stop): (SyncOptions, Option<Instant>, Option<&AtomicBool>),
    report: &mut SyncReport,
) -> Result<bool, SyncError> {
    let limits = FetchLimits {
        since: account.sync_window_start,
        max_messages: options.batch_messages,
        max_bytes: options.batch_bytes,
    };
    let mut cursor = cursor::load(folder);
    let copies = StoredInFolder {
        store,
        folder_id: folder.id,
    };
    // Three stages at once: batch n is written while batch n+1 is parsed and batch n+2 is
    // fetched, so the server, the parser and Postgres all work at the same time. Batches are
    // still committed in order, each with its own cursor.
    let mut fetched: Option<ChangeBatch> = None;
    let mut parsed: Option<ParsedBatch> = None;
    let mut fetched_last = false;
    let mut fetched_any = false;
    loop {
        // Out of the time slice, or the worker is shutting down: finish what is fetched and
        // stop; the worker queues a follow-up.
        let out_of_time = fetched_any
            && (deadline.is_some_and(|d| Instant::now() >= d)
                || stop.is_some_and(|s| s.load(Ordering::SeqCst)));
        let fetch_more = !fetched_last && !out_of_time;
        let (to_write, to_parse) = (parsed.take(), fetched.take());
        if to_write.is_none() && to_parse.is_none() && !fetch_more {
            return Ok(fetched_last);
        }
        let writing = async {
            match to_write {
                Some(batch) => write_parsed(store, folder, owner, batch, report).await,
                None => Ok(()),
            }
        };
        let parsing = async {
            match to_parse {
                Some(batch) => parse_batch(account.id, folder.id, batch).await.map(Some),
                None => Ok(None),
            }
        };
        let fetching = async {
            if fetch_more {
                session
                    .next_changes(remote, &cursor, limits, &copies)
                    .await
                    .map(Some)
            } else {
                Ok(None)
            }
        };
        let (written, next_parsed, next_fetched) = tokio::join!(writing, parsing, fetching);
        written?;
        parsed = next_parsed?;
        if let Some(batch) = next_fetched? {
            cursor = batch.next_cursor.clone();
            fetched_last = !batch.more;
            fetched_any = true;
            fetched = Some(batch);
        }
    }
}

/// What the folder holds already, for a provider identifying messages after a UIDVALIDITY
/// change instead of downloading them again.
struct StoredInFolder<'a> {
    store: &'a Store,
    folder_id: i64,
}

#[async_trait::async_trait]
impl mailfleet_provider::StoredCopies for StoredInFolder<'_> {
    async fn count(
        &self,
        keys: &[(String, u64)],
    ) -> Result<std::collections::HashMap<(String, u64), u32>, ProviderError> {
        let unavailable =
            |e: mailfleet_store::StoreError| ProviderError::Disconnected(format!("database: {e}"));
        let mut conn = self.store.conn().await.map_err(unavailable)?;
        let keys: Vec<(String, i64)> = keys.iter().map(|(m, s)| (m.clone(), *s as i64)).collect();
        let rows = messages::count_copies(&mut conn, self.folder_id, &keys)
            .await
            .map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .map(|(m, s, n)| ((m, s as u64), n as u32))
            .collect())
    }
}

/// A fetched batch, parsed into rows, ready to be committed with its cursor.
struct ParsedBatch {
    rows: Vec<(NewMessage, Vec<AddressEntry>)>,
    changes: FolderChanges,
    cursor: FolderCursor,
    bytes: u64,
}

/// Parses a fetched batch. Parsing is CPU work: it runs off the I/O threads.
async fn parse_batch(
    account_id: i64,
    folder_id: i64,
    batch: ChangeBatch,
) -> Result<ParsedBatch, SyncError> {
    let bytes: u64 = batch.new_messages.iter().map(|m| m.raw.len() as u64).sum();
    let messages = batch.new_messages;
    let changes = FolderChanges {
        flags: batch
            .flag_updates
            .into_iter()
            .map(|u| (u.remote_id, u.flags))
            .collect(),
        removal: match batch.removed {
            Removed::Nothing => Removal::Nothing,
            Removed::These(ids) => Removal::These(ids),
            Removed::AllBut(ids) => Removal::AllBut(ids),
            Removed::All => Removal::All,
        },
        current_prefix: match &batch.next_cursor {
            FolderCursor::Imap { uidvalidity, .. } => Some(format!("{uidvalidity}:")),
            _ => None,
        },
        folder_complete: !batch.more,
        identified: batch
            .identified
            .into_iter()
            .map(|m| messages::IdentifiedCopy {
                remote_id: m.remote_id,
                message_id: m.message_id,
                size: m.size as i64,
                flags: m.flags,
            })
            .collect(),
    };
    let rows = tokio::task::spawn_blocking(move || {
        messages
            .into_iter()
            .map(|m| parse::parse_fetched(account_id, folder_id, m))
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| ProviderError::Permanent(format!("parser task failed: {e}")))?;
    Ok(ParsedBatch {
        rows,
        changes,
        cursor: batch.next_cursor,
        bytes,
    })
}

/// Commits a parsed batch with its cursor.
async fn write_parsed(
    store: &Store,
    folder: &mailfleet_store::models::Folder,
    owner: &BatchOwner,
    batch: ParsedBatch,
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    let started = Instant::now();
    let fetched = batch.rows.len();
    let ParsedBatch {
        rows,
        changes,
        cursor: next_cursor,
        bytes,
    } = batch;
    let mut conn = store.conn().await?;
    let outcome = messages::store_batch(
        &mut conn,
        owner,
        rows,
        &changes,
        &cursor::to_update(&next_cursor),
    )
    .await?;
    report.messages_added += outcome.inserted;
    report.messages_attached += outcome.attached;
    report.messages_rematched += outcome.rematched;
    report.flags_updated += outcome.flags_updated;
    report.messages_removed += outcome.removed;
    report.bytes_fetched += bytes;
    report.contacts_created += outcome.contacts_created;
    report.contact_links += outcome.contact_links;
    tracing::debug!(
        account_id = owner.account_id, folder = %folder.name, fetched, inserted = outcome.inserted,
        elapsed_ms = started.elapsed().as_millis() as u64, at = %Utc::now(),
        "Batch stored."
    );
    Ok(())
}
