use crate::errors;
use crate::stream::ImapStream;
use crate::uidset::uid_set;
use async_imap::types::{Fetch, Flag, NameAttribute};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mailfleet_provider::{
    ChangeBatch, FetchLimits, FetchedMessage, FolderCursor, FolderRole, MailSession, ProviderError,
    RemoteFolder,
};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::timeout;

/// The folder currently examined and the UIDs still to fetch from it in this sync.
struct Examined {
    name: String,
    uidvalidity: u32,
    uidnext: u32,
    highestmodseq: Option<u64>,
    /// (UID, RFC822.SIZE) of the messages still to fetch, ascending.
    pending: Option<VecDeque<(u32, u32)>>,
}

pub struct ImapSession {
    session: async_imap::Session<ImapStream>,
    command_timeout: Duration,
    examined: Option<Examined>,
}

impl ImapSession {
    pub(crate) fn new(session: async_imap::Session<ImapStream>, command_timeout: Duration) -> Self {
        Self {
            session,
            command_timeout,
            examined: None,
        }
    }

    /// Untagged responses that arrive outside a command pile up in a bounded channel; drain
    /// them so the connection never stalls on a full channel.
    fn drain_unsolicited(&mut self) {
        while self.session.unsolicited_responses.try_recv().is_ok() {}
    }

    async fn examine(&mut self, name: &str) -> Result<&mut Examined, ProviderError> {
        if self.examined.as_ref().is_none_or(|e| e.name != name) {
            self.examined = None;
            let mbox = timeout(self.command_timeout, self.session.examine(name))
                .await
                .map_err(|_| errors::timeout("EXAMINE"))?
                .map_err(errors::command)?;
            let uidvalidity = mbox.uid_validity.ok_or_else(|| {
                ProviderError::Protocol(format!("no UIDVALIDITY for folder {name:?}"))
            })?;
            let uidnext = match mbox.uid_next {
                Some(n) => n,
                None => self.probe_uidnext().await?,
            };
            self.examined = Some(Examined {
                name: name.to_owned(),
                uidvalidity,
                uidnext,
                highestmodseq: mbox.highest_modseq,
                pending: None,
            });
        }
        Ok(self.examined.as_mut().expect("set above"))
    }

    /// A server that omits UIDNEXT: the highest UID plus one.
    async fn probe_uidnext(&mut self) -> Result<u32, ProviderError> {
        let uids = timeout(self.command_timeout, self.session.uid_search("ALL"))
            .await
            .map_err(|_| errors::timeout("UID SEARCH"))?
            .map_err(errors::command)?;
        Ok(uids.into_iter().max().map_or(1, |m| m + 1))
    }

    async fn search_new(
        &mut self,
        from_uid: u32,
        since: DateTime<Utc>,
    ) -> Result<VecDeque<(u32, u32)>, ProviderError> {
        let query = format!("UID {from_uid}:* SINCE {}", since.format("%d-%b-%Y"));
        let found = timeout(self.command_timeout, self.session.uid_search(&query))
            .await
            .map_err(|_| errors::timeout("UID SEARCH"))?
            .map_err(errors::command)?;
        // `n:*` always matches the highest UID, even when it is below n.
        let mut uids: Vec<u32> = found.into_iter().filter(|u| *u >= from_uid).collect();
        uids.sort_unstable();
        if uids.is_empty() {
            return Ok(VecDeque::new());
        }
        // Sizes first (a few dozen bytes a message), so batches can be cut by bytes: a
        // batch of 200 two-megabyte messages must not sit in memory at once.
        let set = uid_set(&uids);
        let sizes: Vec<Fetch> = timeout(self.command_timeout, async {
            let stream = self.session.uid_fetch(&set, "(UID RFC822.SIZE)").await?;
            stream.try_collect().await
        })
        .await
        .map_err(|_| errors::timeout("UID FETCH RFC822.SIZE"))?
        .map_err(errors::command)?;
        self.drain_unsolicited();
        let by_uid: std::collections::HashMap<u32, u32> = sizes
            .iter()
            .filter_map(|f| Some((f.uid?, f.size?)))
            .collect();
        // A UID that vanished between SEARCH and FETCH (expunged) is dropped.
        Ok(uids
            .into_iter()
            .filter_map(|u| by_uid.get(&u).map(|s| (u, *s)))
            .collect())
    }

    async fn fetch(
        &mut self,
        uids: &[u32],
        uidvalidity: u32,
    ) -> Result<Vec<FetchedMessage>, ProviderError> {
        let set = uid_set(uids);
        let fetches: Vec<Fetch> = timeout(self.command_timeout, async {
            let stream = self
                .session
                .uid_fetch(&set, "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
                .await?;
            stream.try_collect().await
        })
        .await
        .map_err(|_| errors::timeout("UID FETCH"))?
        .map_err(errors::command)?;
        self.drain_unsolicited();
        let mut out = Vec::with_capacity(fetches.len());
        for f in fetches {
            // Flag updates for other messages can arrive as untagged FETCH without a body.
            let (Some(uid), Some(body)) = (f.uid, f.body()) else {
                continue;
            };
            out.push(FetchedMessage {
                remote_id: format!("{uidvalidity}:{uid}"),
                imap_uid: Some(uid),
                flags: f.flags().map(|fl| flag_name(&fl)).collect(),
                received_at: f.internal_date().map(|d| d.with_timezone(&Utc)),
                raw: body.to_vec(),
            });
        }
        out.sort_by_key(|m| m.imap_uid);
        Ok(out)
    }
}

/// The next batch: at most `max_messages` and about `max_bytes`, but always one message, so
/// a message larger than the budget is still fetched (alone).
fn take_batch(pending: &mut VecDeque<(u32, u32)>, limits: FetchLimits) -> Vec<u32> {
    let mut uids = Vec::new();
    let mut bytes = 0usize;
    while let Some(&(uid, size)) = pending.front() {
        let size = size as usize;
        if !uids.is_empty()
            && (uids.len() >= limits.max_messages || bytes + size > limits.max_bytes)
        {
            break;
        }
        uids.push(uid);
        bytes += size;
        pending.pop_front();
    }
    uids
}

fn flag_name(flag: &Flag<'_>) -> String {
    match flag {
        Flag::Seen => "\\Seen".into(),
        Flag::Answered => "\\Answered".into(),
        Flag::Flagged => "\\Flagged".into(),
        Flag::Deleted => "\\Deleted".into(),
        Flag::Draft => "\\Draft".into(),
        Flag::Recent => "\\Recent".into(),
        Flag::MayCreate => "\\*".into(),
        Flag::Custom(c) => c.to_string(),
    }
}

fn role_of(name: &str, attributes: &[NameAttribute<'_>]) -> Option<FolderRole> {
    for a in attributes {
        let role = match a {
            NameAttribute::Sent => FolderRole::Sent,
            NameAttribute::Drafts => FolderRole::Drafts,
            NameAttribute::Trash => FolderRole::Trash,
            NameAttribute::Junk => FolderRole::Junk,
            NameAttribute::Archive => FolderRole::Archive,
            NameAttribute::All => FolderRole::All,
            NameAttribute::Flagged => FolderRole::Flagged,
            _ => continue,
        };
        return Some(role);
    }
    if name.eq_ignore_ascii_case("INBOX") {
        return Some(FolderRole::Inbox);
    }
    // Servers without SPECIAL-USE: the usual names.
    match name.to_ascii_lowercase().as_str() {
        "sent" | "sent items" | "sent messages" | "sent mail" => Some(FolderRole::Sent),
        "drafts" => Some(FolderRole::Drafts),
        "trash" | "deleted items" | "deleted messages" | "bin" => Some(FolderRole::Trash),
        "junk" | "spam" | "junk e-mail" | "junk email" | "bulk mail" => Some(FolderRole::Junk),
        "archive" | "archives" => Some(FolderRole::Archive),
        _ => None,
    }
}

#[async_trait]
impl MailSession for ImapSession {
    async fn list_folders(&mut self) -> Result<Vec<RemoteFolder>, ProviderError> {
        let names: Vec<_> = timeout(self.command_timeout, async {
            self.session
                .list(Some(""), Some("*"))
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await
        .map_err(|_| errors::timeout("LIST"))?
        .map_err(errors::command)?;
        self.drain_unsolicited();
        Ok(names
            .iter()
            .map(|n| RemoteFolder {
                name: n.name().to_owned(),
                remote_id: None,
                delimiter: n.delimiter().map(str::to_owned),
                role: role_of(n.name(), n.attributes()),
                selectable: !n
                    .attributes()
                    .iter()
                    .any(|a| matches!(a, NameAttribute::NoSelect)),
            })
            .collect())
    }

    async fn next_changes(
        &mut self,
        folder: &RemoteFolder,
        cursor: &FolderCursor,
        limits: FetchLimits,
    ) -> Result<ChangeBatch, ProviderError> {
        let ex = self.examine(&folder.name).await?;
        let (uidvalidity, server_uidnext, modseq) = (ex.uidvalidity, ex.uidnext, ex.highestmodseq);
        // A changed UIDVALIDITY invalidates every stored UID: start the folder over.
        let from_uid = match cursor {
            FolderCursor::Imap {
                uidvalidity: v,
                uidnext,
                ..
            } if *v == uidvalidity => *uidnext,
            _ => 1,
        };
        let done = FolderCursor::Imap {
            uidvalidity,
            uidnext: server_uidnext.max(from_uid),
            highestmodseq: modseq,
        };
        if from_uid >= server_uidnext && ex.pending.is_none() {
            return Ok(ChangeBatch {
                new_messages: Vec::new(),
                next_cursor: done,
                more: false,
            });
        }
        if ex.pending.is_none() {
            let found = self.search_new(from_uid, limits.since).await?;
            self.examined.as_mut().expect("examined").pending = Some(found);
        }
        let pending = self
            .examined
            .as_mut()
            .and_then(|e| e.pending.as_mut())
            .expect("pending set above");
        let uids = take_batch(pending, limits);
        let more = !pending.is_empty();
        if uids.is_empty() {
            self.examined.as_mut().expect("examined").pending = None;
            return Ok(ChangeBatch {
                new_messages: Vec::new(),
                next_cursor: done,
                more: false,
            });
        }
        let messages = self.fetch(&uids, uidvalidity).await?;
        let last = *uids.last().expect("non-empty");
        let next_cursor = if more {
            FolderCursor::Imap {
                uidvalidity,
                uidnext: last + 1,
                highestmodseq: None,
            }
        } else {
            self.examined.as_mut().expect("examined").pending = None;
            FolderCursor::Imap {
                uidvalidity,
                uidnext: server_uidnext.max(last + 1),
                highestmodseq: modseq,
            }
        };
        Ok(ChangeBatch {
            new_messages: messages,
            next_cursor,
            more,
        })
    }

    async fn close(mut self: Box<Self>) {
        let _ = timeout(Duration::from_secs(5), self.session.logout()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_messages: usize, max_bytes: usize) -> FetchLimits {
        FetchLimits {
            since: chrono::DateTime::UNIX_EPOCH,
            max_messages,
            max_bytes,
        }
    }

    #[test]
    fn batches_are_cut_by_count_and_by_bytes() {
        let mut p: VecDeque<(u32, u32)> = [(1, 10), (2, 10), (3, 10), (4, 10)].into();
        assert_eq!(take_batch(&mut p, limits(3, 1000)), vec![1, 2, 3]);
        assert_eq!(take_batch(&mut p, limits(3, 1000)), vec![4]);
        assert!(take_batch(&mut p, limits(3, 1000)).is_empty());

        let mut p: VecDeque<(u32, u32)> = [(1, 600), (2, 600), (3, 100), (4, 5000)].into();
        assert_eq!(take_batch(&mut p, limits(100, 1000)), vec![1]);
        assert_eq!(take_batch(&mut p, limits(100, 1000)), vec![2, 3]);
        assert_eq!(
            take_batch(&mut p, limits(100, 1000)),
            vec![4],
            "an oversized message goes alone"
        );
    }

    #[test]
    fn roles_come_from_special_use_then_names() {
        assert_eq!(
            role_of("Gesendet", &[NameAttribute::Sent]),
            Some(FolderRole::Sent)
        );
        assert_eq!(role_of("INBOX", &[]), Some(FolderRole::Inbox));
        assert_eq!(role_of("Spam", &[]), Some(FolderRole::Junk));
        assert_eq!(role_of("Deleted Items", &[]), Some(FolderRole::Trash));
        assert_eq!(role_of("Projects", &[]), None);
    }
}
