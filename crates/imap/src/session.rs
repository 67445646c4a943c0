use crate::errors;
use crate::examine::{self, Mode};
use crate::mailbox_name;
use crate::stream::ImapStream;
use crate::uidset::uid_set;
use async_imap::types::{Fetch, Flag, NameAttribute};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mailfleet_provider::{
    ActionOutcome, ChangeBatch, FetchLimits, FetchedMessage, FlagChange, FlagUpdate, FolderCursor,
    FolderRole, IdentifiedMessage, MailSession, MoveItem, ProviderError, RemoteFolder, Removed,
    StoredCopies,
};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::timeout;

/// RFC 7162 extensions in use for this session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extensions {
    pub condstore: bool,
    pub qresync: bool,
    /// RFC 8474: folders have stable ids, so a rename can be told from delete + create.
    pub objectid: bool,
    /// RFC 6851 `UID MOVE`; without it a move is COPY + `\Deleted` + expunge.
    pub move_: bool,
    /// RFC 4315: COPYUID answers and `UID EXPUNGE` of exactly the given messages.
    pub uidplus: bool,
}

/// The folder being synced and the UIDs still to fetch from it.
pub(crate) struct Open {
    name: String,
    uidvalidity: u32,
    uidnext: u32,
    highestmodseq: Option<u64>,
    /// (UID, RFC822.SIZE) of the messages still to fetch, ascending.
    pending: VecDeque<(u32, u32)>,
    /// The UIDVALIDITY changed: stored copies are identified by Message-ID and size instead of
    /// being downloaded again.
    rebaseline: bool,
    /// Stored copies not yet claimed by an identified message, per (Message-ID, size).
    copies: HashMap<(String, u64), u32>,
}

pub struct ImapSession {
    pub(crate) session: async_imap::Session<ImapStream>,
    /// Wire names (modified UTF-7) of the folders the last LIST gave, by decoded name.
    wire_names: HashMap<String, String>,
    /// A folder is open read-only (EXAMINE): some servers (Courier) refuse an APPEND to it.
    pub(crate) examining: bool,
    pub(crate) command_timeout: Duration,
    pub(crate) extensions: Extensions,
    received: Arc<AtomicU64>,
    /// The folder being synced; whatever opens another folder resets it.
    pub(crate) open: Option<Open>,
}

impl ImapSession {
    pub(crate) fn new(
        session: async_imap::Session<ImapStream>,
        command_timeout: Duration,
        extensions: Extensions,
        received: Arc<AtomicU64>,
    ) -> Self {
        Self {
            session,
            wire_names: HashMap::new(),
            examining: false,
            command_timeout,
            extensions,
            received,
            open: None,
        }
    }

    /// Bytes the server has sent on this connection so far.
    pub fn bytes_received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    pub fn extensions(&self) -> Extensions {
        self.extensions
    }

    /// Untagged responses that arrive outside a command pile up in a bounded channel; drain
    /// them so the connection never stalls on a full channel.
    pub(crate) fn drain_unsolicited(&mut self) {
        while self.session.unsolicited_responses.try_recv().is_ok() {}
    }

    /// The name to send for a folder: as the server listed it, else encoded.
    pub(crate) fn wire(&self, name: &str) -> String {
        self.wire_names
            .get(name)
            .cloned()
            .unwrap_or_else(|| mailbox_name::encode(name))
    }

    pub(crate) async fn examine(
        &mut self,
        name: &str,
        mode: Mode,
    ) -> Result<examine::Examined, ProviderError> {
        self.open = None;
        let wire = self.wire(name);
        let ex = timeout(
            self.command_timeout,
            examine::examine(&mut self.session, &wire, mode),
        )
        .await
        .map_err(|_| errors::timeout("EXAMINE"))??;
        self.examining = true;
        if ex.uidvalidity.is_none() {
            return Err(ProviderError::Protocol(format!(
                "no UIDVALIDITY for folder {name:?}"
            )));
        }
        Ok(ex)
    }

    async fn uid_fetch(&mut self, set: &str, query: &str) -> Result<Vec<Fetch>, ProviderError> {
        let fetches = timeout(self.command_timeout, async {
            let stream = self.session.uid_fetch(set, query).await?;
            stream.try_collect::<Vec<Fetch>>().await
        })
        .await
        .map_err(|_| errors::timeout("UID FETCH"))?
        .map_err(errors::command)?;
        self.drain_unsolicited();
        Ok(fetches)
    }

    async fn uid_search(&mut self, query: &str) -> Result<Vec<u32>, ProviderError> {
        let found = timeout(self.command_timeout, self.session.uid_search(query))
            .await
            .map_err(|_| errors::timeout("UID SEARCH"))?
            .map_err(errors::command)?;
        self.drain_unsolicited();
        let mut uids: Vec<u32> = found.into_iter().collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// New messages from `from_uid` on, received since `since`, with their sizes.
    async fn search_new(
        &mut self,
        from_uid: u32,
        since: DateTime<Utc>,
    ) -> Result<VecDeque<(u32, u32)>, ProviderError> {
        let query = format!("UID {from_uid}:* SINCE {}", since.format("%d-%b-%Y"));
        // `n:*` always matches the highest UID, even when it is below n.
        let uids: Vec<u32> = self
            .uid_search(&query)
            .await?
            .into_iter()
            .filter(|u| *u >= from_uid)
            .collect();
        if uids.is_empty() {
            return Ok(VecDeque::new());
        }
        // Sizes first (a few dozen bytes a message), so batches can be cut by bytes: a
        // batch of 200 two-megabyte messages must not sit in memory at once.
        let sizes = self.uid_fetch(&uid_set(&uids), "(UID RFC822.SIZE)").await?;
        let by_uid: HashMap<u32, u32> = sizes
            .iter()
            .filter_map(|f| Some((f.uid?, f.size?)))
            .collect();
        // A UID that vanished between SEARCH and FETCH (expunged) is dropped.
        Ok(uids
            .into_iter()
            .filter_map(|u| by_uid.get(&u).map(|s| (u, *s)))
            .collect())
    }

    /// Downloads the messages `(uid, size)`: the small ones in one pipelined UID FETCH, each
    /// large one in pieces.
    async fn fetch_bodies(
        &mut self,
        batch: &[(u32, u32)],
        uidvalidity: u32,
    ) -> Result<Vec<FetchedMessage>, ProviderError> {
        let small: Vec<u32> = batch
            .iter()
            .filter(|(_, size)| *size <= LARGE_MESSAGE)
            .map(|(uid, _)| *uid)
            .collect();
        let mut out = if small.is_empty() {
            Vec::new()
        } else {
            self.fetch_whole(&small, uidvalidity).await?
        };
        for (uid, size) in batch.iter().filter(|(_, size)| *size > LARGE_MESSAGE) {
            if let Some(m) = self.fetch_large(*uid, *size, uidvalidity).await? {
                out.push(m);
            }
        }
        out.sort_by_key(|m| uid_of(&m.remote_id));
        if self.extensions.objectid && !out.is_empty() {
            // RFC 8474: the message's own id, the same in every folder that holds it.
            let uids: Vec<u32> = out.iter().filter_map(|m| uid_of(&m.remote_id)).collect();
            let reply = self
                .command(
                    &format!("UID FETCH {} (UID EMAILID)", uid_set(&uids)),
                    "UID FETCH EMAILID",
                )
                .await?;
            let ids: HashMap<u32, String> = reply.email_ids.into_iter().collect();
            for m in &mut out {
                m.provider_id = uid_of(&m.remote_id).and_then(|u| ids.get(&u).cloned());
            }
        }
        Ok(out)
    }

    /// One large message, `LARGE_CHUNK` bytes per partial FETCH; `None` if it vanished.
    async fn fetch_large(
        &mut self,
        uid: u32,
        size: u32,
        uidvalidity: u32,
    ) -> Result<Option<FetchedMessage>, ProviderError> {
        let set = uid.to_string();
        let meta = self
            .uid_fetch(&set, "(UID FLAGS INTERNALDATE RFC822.SIZE)")
            .await?;
        let Some(f) = meta.iter().find(|f| f.uid == Some(uid)) else {
            return Ok(None);
        };
        let total = f.size.unwrap_or(size) as usize;
        let (flags, received_at) = (
            flags_of(f),
            f.internal_date().map(|d| d.with_timezone(&Utc)),
        );
        drop(meta);
        let mut raw = Vec::with_capacity(total);
        while raw.len() < total {
            let part = self
                .uid_fetch(
                    &set,
                    &format!("(UID BODY.PEEK[]<{}.{LARGE_CHUNK}>)", raw.len()),
                )
                .await?;
            match part
                .iter()
                .find(|f| f.uid == Some(uid))
                .and_then(|f| f.body())
            {
                Some(bytes) if !bytes.is_empty() => raw.extend_from_slice(bytes),
                // Shorter than announced (or expunged meanwhile): keep what came.
                _ => break,
            }
        }
        Ok(Some(FetchedMessage {
            remote_id: remote_id(uidvalidity, uid),
            provider_id: None,
            flags,
            received_at,
            raw,
        }))
    }

    async fn fetch_whole(
        &mut self,
        uids: &[u32],
        uidvalidity: u32,
    ) -> Result<Vec<FetchedMessage>, ProviderError> {
        let fetches = self
            .uid_fetch(
                &uid_set(uids),
                "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])",
            )
            .await?;
        let mut out = Vec::with_capacity(fetches.len());
        for f in fetches {
            // Flag updates for other messages can arrive as untagged FETCH without a body.
            let (Some(uid), Some(body)) = (f.uid, f.body()) else {
                continue;
            };
            out.push(FetchedMessage {
                remote_id: remote_id(uidvalidity, uid),
                provider_id: None,
                flags: flags_of(&f),
                received_at: f.internal_date().map(|d| d.with_timezone(&Utc)),
                raw: body.to_vec(),
            });
        }
        out.sort_by_key(|m| uid_of(&m.remote_id));
        Ok(out)
    }

    /// After a UIDVALIDITY change: reads Message-ID and size of `uids` (a few hundred bytes
    /// each), reports those with an unclaimed stored copy as identified, and downloads only
    /// the rest. `copies` counts the stored copies per key, asked of `stored` once per key,
    /// so that duplicates beyond the stored count are downloaded.
    async fn identify_then_fetch(
        &mut self,
        uids: &[u32],
        uidvalidity: u32,
        copies: &mut HashMap<(String, u64), u32>,
        stored: &dyn StoredCopies,
    ) -> Result<(Vec<FetchedMessage>, Vec<IdentifiedMessage>), ProviderError> {
        let heads = self
            .uid_fetch(
                &uid_set(uids),
                "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])",
            )
            .await?;
        let mut seen: Vec<(u32, Option<String>, u64, Vec<String>)> = heads
            .iter()
            .filter_map(|f| {
                let uid = f.uid?;
                let mid = f.header().and_then(message_id_of);
                Some((uid, mid, u64::from(f.size.unwrap_or(0)), flags_of(f)))
            })
            .collect();
        seen.sort_by_key(|(uid, ..)| *uid);
        let mut unknown: Vec<(String, u64)> = seen
            .iter()
            .filter_map(|(_, mid, size, _)| Some((mid.clone()?, *size)))
            .filter(|k| !copies.contains_key(k))
            .collect();
        unknown.sort();
        unknown.dedup();
        if !unknown.is_empty() {
            let counts = stored.count(&unknown).await?;
            for k in unknown {
                let n = counts.get(&k).copied().unwrap_or(0);
                copies.insert(k, n);
            }
        }
        let mut identified = Vec::new();
        let mut to_fetch = Vec::new();
        for (uid, mid, size, flags) in seen {
            let claimed = mid
                .as_ref()
                .and_then(|m| copies.get_mut(&(m.clone(), size)));
            match (mid, claimed) {
                (Some(message_id), Some(n)) if *n > 0 => {
                    *n -= 1;
                    identified.push(IdentifiedMessage {
                        remote_id: remote_id(uidvalidity, uid),
                        message_id,
                        size,
                        flags,
                    });
                }
                _ => to_fetch.push((uid, size.min(u64::from(u32::MAX)) as u32)),
            }
        }
        let fetched = if to_fetch.is_empty() {
            Vec::new()
        } else {
            self.fetch_bodies(&to_fetch, uidvalidity).await?
        };
        Ok((fetched, identified))
    }

    /// What happened to the messages stored so far (UIDs below `known_next`): flag changes
    /// and expunges. With QRESYNC the EXAMINE already said; with CONDSTORE an unchanged
    /// HIGHESTMODSEQ means nothing happened; otherwise the server lists what exists.
    async fn changes_to_known(
        &mut self,
        ex: &examine::Examined,
        mode: Mode,
        known_next: u32,
        known_modseq: Option<u64>,
    ) -> Result<(Vec<FlagUpdate>, Removed), ProviderError> {
        let uidvalidity = ex.uidvalidity.expect("checked in examine");
        if known_next <= 1 {
            return Ok((Vec::new(), Removed::Nothing));
        }
        let known = |u: &u32| *u < known_next;
        if let Mode::Qresync { .. } = mode {
            let flags = ex
                .changed
                .iter()
                .filter(|(u, _)| known(u))
                .map(|(u, f)| FlagUpdate {
                    remote_id: remote_id(uidvalidity, *u),
                    flags: clean_flags(f.iter().map(String::as_str)),
                })
                .collect();
            let gone: Vec<String> = ex
                .vanished
                .iter()
                .flat_map(|r| *r.start()..=(*r.end()).min(known_next - 1))
                .map(|u| remote_id(uidvalidity, u))
                .collect();
            let removed = if gone.is_empty() {
                Removed::Nothing
            } else {
                Removed::These(gone)
            };
            return Ok((flags, removed));
        }
        if ex.exists == 0 {
            return Ok((Vec::new(), Removed::AllBut(Vec::new())));
        }
        let range = format!("1:{}", known_next - 1);
        if let (Some(server), Some(stored), true) =
            (ex.highestmodseq, known_modseq, self.extensions.condstore)
        {
            if server == stored {
                return Ok((Vec::new(), Removed::Nothing));
            }
            let changed = self
                .uid_fetch(&range, &format!("(UID FLAGS) (CHANGEDSINCE {stored})"))
                .await?;
            let present = self.uid_search(&format!("UID {range}")).await?;
            return Ok((
                flag_updates(uidvalidity, &changed, known_next),
                all_but(uidvalidity, present, known_next),
            ));
        }
        let all = self.uid_fetch(&range, "(UID FLAGS)").await?;
        let present = all.iter().filter_map(|f| f.uid).collect();
        Ok((
            flag_updates(uidvalidity, &all, known_next),
            all_but(uidvalidity, present, known_next),
        ))
    }
}

/// Whether a Message-ID (without angle brackets) can be searched for as `"<id>"`. It is a
/// dot-atom between brackets: nothing to quote. Anything that would need quoting is refused
/// rather than built into a search.
pub(crate) fn searchable(message_id: &str) -> bool {
    !message_id.is_empty()
        && !message_id
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '"' | '\\' | '<' | '>'))
}

/// The Message-ID (without angle brackets) in a `HEADER.FIELDS (MESSAGE-ID)` section.
fn message_id_of(header: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(header);
    // Unfold continuation lines, then find the field.
    let unfolded = text.replace("\r\n ", " ").replace("\r\n\t", " ");
    let line = unfolded
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))?;
    let value = &line["message-id:".len()..];
    let start = value.find('<')? + 1;
    let end = start + value[start..].find('>')?;
    let id = value[start..end].trim();
    (!id.is_empty()).then(|| id.to_owned())
}

pub(crate) fn remote_id(uidvalidity: u32, uid: u32) -> String {
    format!("{uidvalidity}:{uid}")
}

/// The UID in a remote id made by `remote_id`.
pub(crate) fn uid_of(remote_id: &str) -> Option<u32> {
    remote_id.split_once(':')?.1.parse().ok()
}

fn flag_updates(uidvalidity: u32, fetches: &[Fetch], known_next: u32) -> Vec<FlagUpdate> {
    fetches
        .iter()
        .filter_map(|f| {
            let uid = f.uid.filter(|u| *u < known_next)?;
            Some(FlagUpdate {
                remote_id: remote_id(uidvalidity, uid),
                flags: flags_of(f),
            })
        })
        .collect()
}

fn all_but(uidvalidity: u32, present: Vec<u32>, known_next: u32) -> Removed {
    Removed::AllBut(
        present
            .into_iter()
            .filter(|u| *u < known_next)
            .map(|u| remote_id(uidvalidity, u))
            .collect(),
    )
}

fn flags_of(f: &Fetch) -> Vec<String> {
    let names: Vec<String> = f.flags().map(|fl| flag_name(&fl)).collect();
    clean_flags(names.iter().map(String::as_str))
}

/// Sorted, without `\Recent` (it belongs to a session, not to the message).
fn clean_flags<'a>(flags: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut v: Vec<String> = flags
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        .map(str::to_owned)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The next batch: at most `max_messages` and about `max_bytes`, but always one message, so
/// a message larger than the budget is still fetched (alone).
/// The next (UID, size) pairs to fetch: at most `max_messages`, and about `max_bytes` (an
/// oversized message goes alone).
fn take_sized_batch(pending: &mut VecDeque<(u32, u32)>, limits: FetchLimits) -> Vec<(u32, u32)> {
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    while let Some(&(uid, size)) = pending.front() {
        let len = size as usize;
        if !batch.is_empty()
            && (batch.len() >= limits.max_messages || bytes + len > limits.max_bytes)
        {
            break;
        }
        batch.push((uid, size));
        bytes += len;
        pending.pop_front();
    }
    batch
}

/// Messages above this size are fetched in `LARGE_CHUNK` pieces (partial FETCH), so neither
/// the connection's read buffer nor a parsed response ever holds one whole: the message exists
/// once in memory, in the buffer it is assembled into.
const LARGE_MESSAGE: u32 = 4 << 20;
const LARGE_CHUNK: usize = 1 << 20;

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

/// The name without the personal namespace's `INBOX.` prefix (Courier, Cyrus without
/// altnamespace): `INBOX.Trash` is Trash by name, as `Trash` is elsewhere.
fn namespace_relative(name: &str, delimiter: Option<&str>) -> String {
    delimiter
        .and_then(|d| name.strip_prefix("INBOX")?.strip_prefix(d))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(name)
        .to_owned()
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
    #[tracing::instrument(name = "imap.list_folders", skip_all)]
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
        self.wire_names.clear();
        let mut folders: Vec<RemoteFolder> = Vec::with_capacity(names.len());
        for n in &names {
            let name = mailbox_name::from_wire(n.name());
            self.wire_names.insert(name.clone(), n.name().to_owned());
            folders.push(RemoteFolder {
                role: role_of(&namespace_relative(&name, n.delimiter()), n.attributes()),
                name,
                remote_id: None,
                delimiter: n.delimiter().map(str::to_owned),
                selectable: !n
                    .attributes()
                    .iter()
                    .any(|a| matches!(a, NameAttribute::NoSelect)),
            });
        }
        if self.extensions.objectid {
            // One EXAMINE per folder for its MAILBOXID: only on servers that have ids.
            for f in folders.iter_mut().filter(|f| f.selectable) {
                let ex = self.examine(&f.name, Mode::Plain).await?;
                f.remote_id = ex.mailbox_id;
            }
        }
        Ok(folders)
    }

    async fn current_cursor(
        &mut self,
        folder: &RemoteFolder,
    ) -> Result<FolderCursor, ProviderError> {
        let mode = if self.extensions.condstore {
            Mode::Condstore
        } else {
            Mode::Plain
        };
        let ex = self.examine(&folder.name, mode).await?;
        Ok(FolderCursor::Imap {
            uidvalidity: ex.uidvalidity.expect("checked in examine"),
            uidnext: ex.uidnext.unwrap_or(1),
            highestmodseq: ex.highestmodseq,
        })
    }

    #[tracing::instrument(name = "imap.next_changes", skip_all, fields(folder = %folder.name))]
    async fn next_changes(
        &mut self,
        folder: &RemoteFolder,
        cursor: &FolderCursor,
        limits: FetchLimits,
        stored: &dyn StoredCopies,
    ) -> Result<ChangeBatch, ProviderError> {
        let mut flag_updates = Vec::new();
        let mut removed = Removed::Nothing;
        if self.open.as_ref().is_none_or(|o| o.name != folder.name) {
            // First call for this folder in this sync: open it, learn what changed among the
            // stored messages, and list the new ones.
            let (stored_uv, stored_next, stored_modseq) = match cursor {
                FolderCursor::Imap {
                    uidvalidity,
                    uidnext,
                    highestmodseq,
                } => (Some(*uidvalidity), *uidnext, *highestmodseq),
                _ => (None, 1, None),
            };
            let mode = match (stored_uv, stored_modseq) {
                (Some(uidvalidity), Some(modseq)) if self.extensions.qresync && stored_next > 1 => {
                    Mode::Qresync {
                        uidvalidity,
                        modseq,
                    }
                }
                _ if self.extensions.condstore => Mode::Condstore,
                _ => Mode::Plain,
            };
            let mut ex = self.examine(&folder.name, mode).await?;
            let uidvalidity = ex.uidvalidity.expect("checked in examine");
            let from_uid = if stored_uv.is_some_and(|v| v != uidvalidity) {
                // Every stored UID is void: the engine re-matches what it has.
                removed = Removed::All;
                ex.changed.clear();
                1
            } else {
                let (f, r) = self
                    .changes_to_known(&ex, mode, stored_next, stored_modseq)
                    .await?;
                flag_updates = f;
                removed = r;
                stored_next
            };
            let uidnext = match ex.uidnext {
                Some(n) => n,
                None => self.uid_search("ALL").await?.last().map_or(1, |m| m + 1),
            };
            let pending = if from_uid < uidnext && ex.exists > 0 {
                self.search_new(from_uid, limits.since).await?
            } else {
                VecDeque::new()
            };
            self.open = Some(Open {
                name: folder.name.clone(),
                uidvalidity,
                uidnext: uidnext.max(from_uid),
                highestmodseq: ex.highestmodseq,
                pending,
                rebaseline: matches!(removed, Removed::All),
                copies: HashMap::new(),
            });
        }
        let open = self.open.as_mut().expect("opened above");
        let (uidvalidity, uidnext, modseq) = (open.uidvalidity, open.uidnext, open.highestmodseq);
        let batch = take_sized_batch(&mut open.pending, limits);
        let uids: Vec<u32> = batch.iter().map(|(uid, _)| *uid).collect();
        let more = !open.pending.is_empty();
        let rebaseline = open.rebaseline;
        let mut copies = std::mem::take(&mut open.copies);
        let (new_messages, identified) = if uids.is_empty() {
            (Vec::new(), Vec::new())
        } else if rebaseline {
            self.identify_then_fetch(&uids, uidvalidity, &mut copies, stored)
                .await?
        } else {
            (self.fetch_bodies(&batch, uidvalidity).await?, Vec::new())
        };
        if let Some(open) = self.open.as_mut() {
            open.copies = copies;
        }
        let next_cursor = if more {
            // Mid-folder: the modseq is only valid once the folder is complete.
            FolderCursor::Imap {
                uidvalidity,
                uidnext: uids.last().map_or(uidnext, |l| l + 1),
                highestmodseq: None,
            }
        } else {
            self.open = None;
            FolderCursor::Imap {
                uidvalidity,
                uidnext: uids.last().map_or(uidnext, |l| uidnext.max(l + 1)),
                highestmodseq: modseq,
            }
        };
        Ok(ChangeBatch {
            new_messages,
            identified,
            flag_updates,
            removed,
            next_cursor,
            more,
        })
    }

    #[tracing::instrument(name = "imap.find_message", skip_all, fields(folder))]
    async fn find_message(
        &mut self,
        folder: &str,
        message_id: &str,
    ) -> Result<Option<String>, ProviderError> {
        if !searchable(message_id) {
            return Err(ProviderError::Permanent(format!(
                "not a searchable Message-ID: {message_id:?}"
            )));
        }
        let ex = self.examine(folder, Mode::Plain).await?;
        let uidvalidity = ex.uidvalidity.expect("checked in examine");
        let found = self
            .uid_search(&format!("HEADER Message-ID \"<{message_id}>\""))
            .await?;
        Ok(found.first().map(|uid| remote_id(uidvalidity, *uid)))
    }

    #[tracing::instrument(name = "imap.append", skip_all, fields(folder, bytes = raw.len()))]
    async fn append_seen(&mut self, folder: &str, raw: &[u8]) -> Result<(), ProviderError> {
        self.open = None;
        if self.examining {
            // Courier refuses an APPEND to the folder open read-only; CLOSE after EXAMINE
            // removes nothing (RFC 3501 §6.4.2).
            timeout(self.command_timeout, self.session.close())
                .await
                .map_err(|_| errors::timeout("CLOSE"))?
                .map_err(errors::command)?;
            self.examining = false;
        }
        let wire = self.wire(folder);
        timeout(
            self.command_timeout,
            self.session.append(wire, Some("(\\Seen)"), None, raw),
        )
        .await
        .map_err(|_| errors::timeout("APPEND"))?
        .map_err(errors::command)?;
        self.drain_unsolicited();
        Ok(())
    }

    async fn create_folder(&mut self, name: &str) -> Result<(), ProviderError> {
        let wire = self.wire(name);
        timeout(self.command_timeout, self.session.create(wire))
            .await
            .map_err(|_| errors::timeout("CREATE"))?
            .map_err(errors::command)?;
        self.drain_unsolicited();
        Ok(())
    }

    #[tracing::instrument(name = "imap.set_flag", skip_all, fields(folder = %folder.name, messages = remote_ids.len()))]
    async fn set_flag(
        &mut self,
        folder: &RemoteFolder,
        remote_ids: &[String],
        change: FlagChange,
        unchanged_since: Option<u64>,
    ) -> Result<Vec<ActionOutcome>, ProviderError> {
        self.apply_flag(folder, remote_ids, change, unchanged_since)
            .await
    }

    #[tracing::instrument(name = "imap.move_messages", skip_all, fields(folder = %folder.name, target = %target.name, messages = messages.len()))]
    async fn move_messages(
        &mut self,
        folder: &RemoteFolder,
        target: &RemoteFolder,
        messages: &[MoveItem],
    ) -> Result<Vec<ActionOutcome>, ProviderError> {
        self.apply_move(folder, target, messages).await
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
    fn message_ids_are_read_from_header_fields_folded_or_not() {
        assert_eq!(
            message_id_of(b"Message-ID: <a.b@example.test>\r\n\r\n").as_deref(),
            Some("a.b@example.test")
        );
        assert_eq!(
            message_id_of(b"message-id:\r\n <folded@example.test>\r\n\r\n").as_deref(),
            Some("folded@example.test")
        );
        assert_eq!(message_id_of(b"\r\n"), None);
        assert_eq!(message_id_of(b"Message-ID: no brackets\r\n\r\n"), None);
    }

    fn take_batch(pending: &mut VecDeque<(u32, u32)>, limits: FetchLimits) -> Vec<u32> {
        take_sized_batch(pending, limits)
            .into_iter()
            .map(|(uid, _)| uid)
            .collect()
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
        // Courier lists its folders under the INBOX. namespace.
        assert_eq!(
            role_of(&namespace_relative("INBOX.Trash", Some(".")), &[]),
            Some(FolderRole::Trash)
        );
        assert_eq!(namespace_relative("INBOX", Some(".")), "INBOX");
        assert_eq!(
            namespace_relative("Projects/Sent", Some("/")),
            "Projects/Sent"
        );
        assert_eq!(
            role_of(&namespace_relative("Projects/Sent", Some("/")), &[]),
            None
        );
    }
}
