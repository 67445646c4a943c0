//! Applies the account's pending mailbox actions (mark read, flag, move, trash, spam) over its
//! provider, at the start of a sync, with the session and lease the sync holds. Each item's
//! outcome is committed with what it changes (flags, memberships), so a crash repeats only
//! what was not recorded — and a move asked again looks in the target before it moves.

use mailfleet_provider::{
    ActionOutcome, ErrorClass, FlagChange, MailSession, MoveItem, ProviderError, RemoteFolder,
};
use mailfleet_store::actions::{self, Finished, Pending};
use mailfleet_store::leases::Fence;
use mailfleet_store::models::{Account, Folder};
use mailfleet_store::{Store, StoreError};
use std::collections::BTreeMap;

/// What became of the items applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActionsReport {
    pub done: usize,
    pub conflicts: usize,
    pub failed: usize,
}

const GONE: &str = "the message is no longer on the server";

/// Applies every pending item of the account, oldest action first. Provider trouble that a
/// later attempt may not have (network, rate limits, authentication) ends it with the error
/// and leaves the rest pending; a permanent refusal fails the items it concerned.
pub async fn apply_pending(
    store: &Store,
    session: &mut dyn MailSession,
    account: &Account,
    remote: &[RemoteFolder],
    stored: &[Folder],
    fence: Option<Fence>,
) -> Result<ActionsReport, ProviderError> {
    let unavailable = |e: StoreError| ProviderError::Disconnected(format!("database: {e}"));
    let mut conn = store.conn().await.map_err(unavailable)?;
    let pending = actions::pending(&mut conn, account.id)
        .await
        .map_err(unavailable)?;
    drop(conn);
    let mut report = ActionsReport::default();
    // One action at a time, in the order they were asked for.
    let mut by_action: BTreeMap<i64, Vec<Pending>> = BTreeMap::new();
    for p in pending {
        by_action.entry(p.action_id).or_default().push(p);
    }
    let folders = Folders {
        remote,
        stored,
        touched: Default::default(),
    };
    for (action_id, rows) in by_action {
        let outcomes = match rows[0].action.as_str() {
            "mark_read" => flag(session, &folders, &rows, FlagChange::Seen(true)).await,
            "mark_unread" => flag(session, &folders, &rows, FlagChange::Seen(false)).await,
            "flag" => flag(session, &folders, &rows, FlagChange::Flagged(true)).await,
            "unflag" => flag(session, &folders, &rows, FlagChange::Flagged(false)).await,
            "move" | "trash" | "mark_spam" => {
                move_all(store, session, &folders, &rows, fence).await
            }
            other => Ok(rows
                .iter()
                .map(|r| {
                    (
                        r.message_id,
                        Finished::Failed(format!("unknown action {other:?}")),
                    )
                })
                .collect()),
        }?;
        let mut conn = store.conn().await.map_err(unavailable)?;
        for (message_id, outcome) in outcomes {
            match &outcome {
                Finished::Flagged { .. } | Finished::Moved { .. } | Finished::Unchanged => {
                    report.done += 1
                }
                Finished::Conflict(_) => report.conflicts += 1,
                Finished::Failed(_) => report.failed += 1,
            }
            actions::finish(&mut conn, action_id, message_id, &outcome, fence)
                .await
                .map_err(unavailable)?;
        }
    }
    Ok(report)
}

/// The account's folders as stored and as the server listed them.
struct Folders<'a> {
    remote: &'a [RemoteFolder],
    stored: &'a [Folder],
    /// Folders this run changed flags in.
    touched: std::sync::Mutex<std::collections::HashSet<i64>>,
}

impl Folders<'_> {
    fn remote(&self, folder_id: Option<i64>) -> Option<(&Folder, &RemoteFolder)> {
        let stored = self.stored.iter().find(|f| Some(f.id) == folder_id)?;
        let remote = self.remote.iter().find(|r| r.name == stored.name)?;
        Some((stored, remote))
    }
}

/// A permanent refusal fails the items; anything else ends the run.
fn failed_or_stop(e: ProviderError) -> Result<String, ProviderError> {
    if e.class() == ErrorClass::Permanent {
        Ok(e.to_string())
    } else {
        Err(e)
    }
}

/// Sets or clears a flag in every folder that holds each message.
async fn flag(
    session: &mut dyn MailSession,
    folders: &Folders<'_>,
    rows: &[Pending],
    change: FlagChange,
) -> Result<Vec<(i64, Finished)>, ProviderError> {
    // Per message: (applied somewhere, why not elsewhere).
    let mut result: BTreeMap<i64, (bool, Option<Finished>)> = BTreeMap::new();
    let mut by_folder: BTreeMap<i64, Vec<&Pending>> = BTreeMap::new();
    for r in rows {
        let entry = result.entry(r.message_id).or_insert((false, None));
        match (r.folder_id, &r.remote_id) {
            (Some(f), Some(_)) => by_folder.entry(f).or_default().push(r),
            _ => entry.1 = Some(Finished::Conflict(GONE.into())),
        }
    }
    for (folder_id, rows) in by_folder {
        let Some((stored, remote)) = folders.remote(Some(folder_id)) else {
            for r in rows {
                result.entry(r.message_id).or_default().1 = Some(Finished::Conflict(GONE.into()));
            }
            continue;
        };
        let ids: Vec<String> = rows.iter().filter_map(|r| r.remote_id.clone()).collect();
        // The folder's modseq at the last sync: a change since is another client's — unless
        // this run changed the folder already (then the modseq moved on by our own hand, and
        // the later change goes without the check).
        let since = stored
            .highestmodseq
            .and_then(|m| u64::try_from(m).ok())
            .filter(|_| {
                !folders
                    .touched
                    .lock()
                    .expect("not poisoned")
                    .contains(&folder_id)
            });
        folders
            .touched
            .lock()
            .expect("not poisoned")
            .insert(folder_id);
        let outcomes = match session.set_flag(remote, &ids, change, since).await {
            Ok(o) => o,
            Err(e) => {
                let why = failed_or_stop(e)?;
                for r in &rows {
                    result.entry(r.message_id).or_default().1 = Some(Finished::Failed(why.clone()));
                }
                continue;
            }
        };
        for (r, outcome) in rows.iter().zip(outcomes) {
            let entry = result.entry(r.message_id).or_default();
            match outcome {
                ActionOutcome::Done | ActionOutcome::Moved { .. } => entry.0 = true,
                ActionOutcome::Conflict(why) => entry.1 = Some(Finished::Conflict(why)),
                ActionOutcome::Gone => {
                    entry.1.get_or_insert(Finished::Conflict(GONE.into()));
                }
            }
        }
    }
    Ok(result
        .into_iter()
        .map(|(message_id, (applied, refused))| {
            let outcome = match refused {
                // Changed meanwhile in one folder: reported, whatever happened elsewhere.
                Some(Finished::Conflict(why)) if why != GONE || !applied => Finished::Conflict(why),
                Some(Finished::Failed(why)) => Finished::Failed(why),
                _ => Finished::Flagged {
                    flag: change.flag().to_owned(),
                    set: change.set(),
                },
            };
            (message_id, outcome)
        })
        .collect())
}

/// Moves each message from its source to its target, grouped by the pair.
async fn move_all(
    store: &Store,
    session: &mut dyn MailSession,
    folders: &Folders<'_>,
    rows: &[Pending],
    fence: Option<Fence>,
) -> Result<Vec<(i64, Finished)>, ProviderError> {
    let unavailable = |e: StoreError| ProviderError::Disconnected(format!("database: {e}"));
    let mut out = Vec::new();
    let mut groups: BTreeMap<(i64, i64), Vec<&Pending>> = BTreeMap::new();
    for r in rows {
        match (r.folder_id, r.target_folder_id, &r.remote_id) {
            (Some(from), Some(to), Some(_)) => groups.entry((from, to)).or_default().push(r),
            // Gone from its folder (or the target folder is gone): no command is sent.
            _ => out.push((r.message_id, Finished::Conflict(GONE.into()))),
        }
    }
    for ((from, to), rows) in groups {
        if from == to {
            out.extend(rows.iter().map(|r| (r.message_id, Finished::Unchanged)));
            continue;
        }
        let (Some((_, source)), Some((_, target))) =
            (folders.remote(Some(from)), folders.remote(Some(to)))
        else {
            for r in rows {
                out.push((
                    r.message_id,
                    Finished::Conflict("the folder is no longer on the server".into()),
                ));
            }
            continue;
        };
        // Recorded before the provider is asked: after a crash the retry looks first.
        let keys: Vec<(i64, i64)> = rows.iter().map(|r| (r.action_id, r.message_id)).collect();
        let mut conn = store.conn().await.map_err(unavailable)?;
        actions::mark_attempted(&mut conn, &keys, fence)
            .await
            .map_err(unavailable)?;
        drop(conn);
        let items: Vec<MoveItem> = rows
            .iter()
            .map(|r| MoveItem {
                remote_id: r.remote_id.clone().unwrap_or_default(),
                message_id: r.header_message_id.clone(),
                retry: r.attempts > 0,
            })
            .collect();
        let outcomes = match session.move_messages(source, target, &items).await {
            Ok(o) => o,
            Err(e) => {
                let why = failed_or_stop(e)?;
                out.extend(
                    rows.iter()
                        .map(|r| (r.message_id, Finished::Failed(why.clone()))),
                );
                continue;
            }
        };
        for (r, outcome) in rows.iter().zip(outcomes) {
            let finished = match outcome {
                ActionOutcome::Moved { remote_id } => Finished::Moved {
                    from,
                    to,
                    remote_id,
                },
                ActionOutcome::Done => Finished::Moved {
                    from,
                    to,
                    remote_id: None,
                },
                ActionOutcome::Conflict(why) => Finished::Conflict(why),
                ActionOutcome::Gone => Finished::Conflict(GONE.into()),
            };
            out.push((r.message_id, finished));
        }
    }
    Ok(out)
}
