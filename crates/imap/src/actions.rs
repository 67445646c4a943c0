//! What the CRM does to messages (#13 item 2): flag changes and moves.
//!
//! Every command here is sent raw and its responses are read into a [`Reply`]: async-imap's
//! typed commands lose what these need (`uid_store` can't report UNCHANGEDSINCE's
//! `[MODIFIED …]`, a response code imap-proto does not know; `uid_mv` and `uid_copy` return
//! `()`, dropping COPYUID).
//!
//! Applied once, never twice: a move is `UID MOVE` where the server has it (atomic: the message
//! is in one folder or the other); elsewhere `UID COPY`, `\Deleted`, `UID EXPUNGE`, which a
//! crash can interrupt after the copy. So an item that is retried is first looked for in the
//! target by its Message-ID; found there (with the same size, if the source still has it), its
//! source copy is only deleted. A message that is gone from the source gets no command at all.

use crate::errors;
use crate::examine::{self, Mode, quote};
use crate::session::{ImapSession, remote_id, searchable};
use crate::stream::ImapStream;
use crate::uidset::uid_set;
use async_imap::imap_proto::rfc4315::UidSetMember;
use async_imap::imap_proto::{
    AttributeValue, MailboxDatum, Outcome, RequestId, Response, ResponseCode, Status,
};
use mailfleet_provider::{ActionOutcome, FlagChange, MoveItem, ProviderError, RemoteFolder};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::RangeInclusive;
use tokio::time::timeout;

/// What a conditional STORE reports for a message changed meanwhile.
const CHANGED: &str = "changed on the server since the last sync";

/// A COPYUID (or MODIFIED) set larger than this is not believed: it can't be the answer to a
/// command about fewer messages, and expanding it would cost memory for nothing.
const MAX_SET: u64 = 1_000_000;

/// The tagged status of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tagged {
    Ok,
    No,
    Bad,
}

/// RFC 4315 COPYUID: where the copies (or moved messages) are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Copied {
    uidvalidity: u32,
    /// Source UID → UID in the target.
    uids: HashMap<u32, u32>,
}

/// What a command answered, as far as the actions need it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Reply {
    /// `None` until the tagged response came.
    status: Option<Tagged>,
    /// The tagged response's text, with its response code.
    text: String,
    /// `* SEARCH` results.
    found: Vec<u32>,
    /// (UID, RFC822.SIZE) of `* FETCH` responses that carry both.
    sizes: Vec<(u32, u32)>,
    /// COPYUID, untagged (`* OK [COPYUID …]`, before a MOVE's expunges) or tagged.
    copied: Option<Copied>,
    /// RFC 7162 `[MODIFIED <uid-set>]`: messages a conditional STORE left alone.
    modified: Vec<RangeInclusive<u32>>,
    /// (UID, RFC 8474 EMAILID) of `* FETCH` responses that carry both.
    pub(crate) email_ids: Vec<(u32, String)>,
}

impl Reply {
    /// Takes in one response; true once it was the command's tagged one.
    fn absorb(&mut self, resp: &Response<'_>, tag: &RequestId) -> bool {
        match resp {
            Response::Done {
                tag: t,
                status,
                outcome,
            } if t == tag => {
                self.status = Some(match status {
                    Status::Ok => Tagged::Ok,
                    Status::Bad => Tagged::Bad,
                    _ => Tagged::No,
                });
                let info = outcome.information.as_deref().unwrap_or("");
                self.text = match &outcome.code {
                    Some(ResponseCode::TryCreate) => format!("[TRYCREATE] {info}"),
                    Some(code) => format!("[{code:?}] {info}"),
                    None => info.to_string(),
                };
                self.code(outcome);
                true
            }
            Response::Data { outcome, .. } => {
                self.code(outcome);
                false
            }
            Response::MailboxData(MailboxDatum::Search(uids)) => {
                self.found.extend(uids);
                false
            }
            Response::Fetch(_, attrs) => {
                let uid = attrs.iter().find_map(|a| match a {
                    AttributeValue::Uid(u) => Some(*u),
                    _ => None,
                });
                let size = attrs.iter().find_map(|a| match a {
                    AttributeValue::Rfc822Size(n) => Some(*n),
                    _ => None,
                });
                if let (Some(uid), Some(size)) = (uid, size) {
                    self.sizes.push((uid, size));
                }
                let email_id = attrs.iter().find_map(|a| match a {
                    AttributeValue::EmailId(id) => Some(id.to_string()),
                    _ => None,
                });
                if let (Some(uid), Some(id)) = (uid, email_id) {
                    self.email_ids.push((uid, id));
                }
                false
            }
            // EXPUNGE, VANISHED, EXISTS: the next sync learns them from the server anyway.
            _ => false,
        }
    }

    fn code(&mut self, outcome: &Outcome<'_>) {
        match &outcome.code {
            Some(ResponseCode::CopyUid(uidvalidity, src, dst)) => {
                match (expand(src), expand(dst)) {
                    (Some(src), Some(dst)) if src.len() == dst.len() => {
                        let copied = self.copied.get_or_insert_with(Copied::default);
                        copied.uidvalidity = *uidvalidity;
                        copied.uids.extend(src.into_iter().zip(dst));
                    }
                    _ => tracing::warn!(?src, ?dst, "COPYUID sets that don't pair up; ignored."),
                }
            }
            // imap-proto knows no MODIFIED code: it arrives as the text of the response.
            None => {
                if let Some(set) = outcome.information.as_deref().and_then(modified) {
                    self.modified.extend(set);
                }
            }
            _ => {}
        }
    }

    /// `Ok(self)` if the server said OK, else its refusal, classified.
    fn ok(self, what: &str) -> Result<Self, ProviderError> {
        match self.status {
            Some(Tagged::Ok) => Ok(self),
            status => Err(errors::refused(
                what,
                status == Some(Tagged::Bad),
                &self.text,
            )),
        }
    }

    fn is_modified(&self, uid: u32) -> bool {
        self.modified.iter().any(|r| r.contains(&uid))
    }
}

/// The UIDs of a COPYUID set, in its order (the source and target sets pair up in order).
fn expand(set: &[UidSetMember]) -> Option<Vec<u32>> {
    let mut total = 0u64;
    for m in set {
        total += match m {
            UidSetMember::Uid(_) => 1,
            UidSetMember::UidRange(r) => u64::from(r.end() - r.start()) + 1,
        };
    }
    if total > MAX_SET {
        return None;
    }
    let mut out = Vec::with_capacity(total as usize);
    for m in set {
        match m {
            UidSetMember::Uid(u) => out.push(*u),
            UidSetMember::UidRange(r) => out.extend(r.clone()),
        }
    }
    Some(out)
}

/// `[MODIFIED 7,9:11] Conditional STORE failed` → `[7..=7, 9..=11]`.
fn modified(text: &str) -> Option<Vec<RangeInclusive<u32>>> {
    let rest = text.trim_start();
    let head = rest.get(..10)?;
    if !head.eq_ignore_ascii_case("[MODIFIED ") {
        return None;
    }
    let rest = &rest[10..];
    let set = &rest[..rest.find(']')?];
    let mut out = Vec::new();
    for part in set.split(',') {
        let (a, b) = part.split_once(':').unwrap_or((part, part));
        let (a, b): (u32, u32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        out.push(a.min(b)..=a.max(b));
    }
    Some(out)
}

/// Reads a command's responses up to its tagged one.
async fn run(
    session: &mut async_imap::Session<ImapStream>,
    command: &str,
    what: &str,
) -> Result<Reply, ProviderError> {
    let tag = session
        .run_command(command)
        .await
        .map_err(errors::command)?;
    let mut reply = Reply::default();
    loop {
        let Some(resp) = session
            .read_response()
            .await
            .map_err(|e| errors::read(what, e))?
        else {
            return Err(ProviderError::Disconnected(format!(
                "connection closed during {what}"
            )));
        };
        if reply.absorb(resp.parsed(), &tag) {
            return Ok(reply);
        }
    }
}

/// `"<uidvalidity>:<uid>"` → (uidvalidity, uid).
fn parse_id(id: &str) -> Result<(u32, u32), ProviderError> {
    id.split_once(':')
        .and_then(|(v, u)| Some((v.parse().ok()?, u.parse().ok()?)))
        .filter(|&(_, uid)| uid > 0)
        .ok_or_else(|| ProviderError::Permanent(format!("not an IMAP message id: {id:?}")))
}

/// Whether two folder names are one folder (INBOX is case-insensitive, RFC 3501 §5.1).
fn same_folder(a: &str, b: &str) -> bool {
    a == b || (a.eq_ignore_ascii_case("INBOX") && b.eq_ignore_ascii_case("INBOX"))
}

/// What a retry found in the target: per Message-ID, the (UID, size) of its copies there.
#[derive(Debug, Default)]
struct InTarget {
    uidvalidity: u32,
    copies: HashMap<String, Vec<(u32, u32)>>,
}

impl InTarget {
    /// The copy of a retried item: the newest with its Message-ID (the one an interrupted
    /// attempt made) and, when the source's size is known, of that size.
    fn copy_of(&self, item: &MoveItem, size: Option<u32>) -> Option<String> {
        let id = item.message_id.as_deref().filter(|_| item.retry)?;
        let uid = self
            .copies
            .get(id)?
            .iter()
            .filter(|(_, n)| size.is_none_or(|s| s == *n))
            .map(|(u, _)| *u)
            .max()?;
        Some(remote_id(self.uidvalidity, uid))
    }
}

/// What becomes of a message that is in the source folder.
enum Plan {
    /// Move it (or copy, then delete it).
    Move,
    /// A copy is in the target already (this remote id): only delete it from the source.
    DeleteOnly(String),
}

impl ImapSession {
    /// A raw command, answered within the command timeout.
    pub(crate) async fn command(
        &mut self,
        command: &str,
        what: &str,
    ) -> Result<Reply, ProviderError> {
        self.drain_unsolicited();
        timeout(self.command_timeout, run(&mut self.session, command, what))
            .await
            .map_err(|_| errors::timeout(what))?
    }

    /// Opens `name` read-write and returns its UIDVALIDITY. The sync's open folder is
    /// forgotten, so the next sync step opens its folder again (with EXAMINE).
    async fn select(&mut self, name: &str) -> Result<u32, ProviderError> {
        self.open = None;
        let wire = self.wire(name);
        let selected = timeout(
            self.command_timeout,
            examine::select(&mut self.session, &wire, Mode::Plain),
        )
        .await
        .map_err(|_| errors::timeout("SELECT"))??;
        self.examining = false;
        selected
            .uidvalidity
            .ok_or_else(|| ProviderError::Protocol(format!("no UIDVALIDITY for folder {name:?}")))
    }

    /// Which of `ids` the selected folder (of `uidvalidity`) holds, in one UID SEARCH. Ids of
    /// another UIDVALIDITY are void: not there.
    async fn present(
        &mut self,
        uidvalidity: u32,
        ids: &[(u32, u32)],
    ) -> Result<BTreeSet<u32>, ProviderError> {
        let wanted: BTreeSet<u32> = ids
            .iter()
            .filter(|(v, _)| *v == uidvalidity)
            .map(|(_, u)| *u)
            .collect();
        if wanted.is_empty() {
            return Ok(wanted);
        }
        let set = uid_set(&wanted.iter().copied().collect::<Vec<_>>());
        let reply = self
            .command(&format!("UID SEARCH UID {set}"), "UID SEARCH")
            .await?
            .ok("UID SEARCH")?;
        Ok(reply
            .found
            .into_iter()
            .filter(|u| wanted.contains(u))
            .collect())
    }

    pub(crate) async fn apply_flag(
        &mut self,
        folder: &RemoteFolder,
        remote_ids: &[String],
        change: FlagChange,
        unchanged_since: Option<u64>,
    ) -> Result<Vec<ActionOutcome>, ProviderError> {
        if remote_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = remote_ids
            .iter()
            .map(|id| parse_id(id))
            .collect::<Result<Vec<_>, _>>()?;
        let uidvalidity = self.select(&folder.name).await?;
        let present = self.present(uidvalidity, &ids).await?;
        let mut reply = Reply::default();
        if !present.is_empty() {
            let set = uid_set(&present.iter().copied().collect::<Vec<_>>());
            let condition = match unchanged_since {
                Some(modseq) if self.extensions.condstore => {
                    format!("(UNCHANGEDSINCE {modseq}) ")
                }
                _ => String::new(),
            };
            let sign = if change.set() { '+' } else { '-' };
            reply = self
                .command(
                    &format!(
                        "UID STORE {set} {condition}{sign}FLAGS.SILENT ({})",
                        change.flag()
                    ),
                    "UID STORE",
                )
                .await?;
            // RFC 4551 servers may say NO along with MODIFIED; what they did not list was
            // stored all the same.
            if reply.modified.is_empty() {
                reply = reply.ok("UID STORE")?;
            }
        }
        Ok(ids
            .iter()
            .map(|&(v, uid)| {
                if v != uidvalidity || !present.contains(&uid) {
                    ActionOutcome::Gone
                } else if reply.is_modified(uid) {
                    ActionOutcome::Conflict(CHANGED.into())
                } else {
                    ActionOutcome::Done
                }
            })
            .collect())
    }

    pub(crate) async fn apply_move(
        &mut self,
        folder: &RemoteFolder,
        target: &RemoteFolder,
        items: &[MoveItem],
    ) -> Result<Vec<ActionOutcome>, ProviderError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        if same_folder(&folder.name, &target.name) {
            return Err(ProviderError::Permanent(format!(
                "messages can't be moved to the folder they are in ({:?})",
                folder.name
            )));
        }
        let ids = items
            .iter()
            .map(|m| parse_id(&m.remote_id))
            .collect::<Result<Vec<_>, _>>()?;
        // The target first (a retry's lookup), so that the source stays selected after it.
        let in_target = self.find_in_target(target, items).await?;
        let uidvalidity = self.select(&folder.name).await?;
        let present = self.present(uidvalidity, &ids).await?;
        // A copy found by Message-ID replaces the move only if it is the same size: the source
        // is deleted on its strength.
        let mut check: Vec<u32> = ids
            .iter()
            .zip(items)
            .filter(|((v, u), m)| {
                *v == uidvalidity && present.contains(u) && in_target.copy_of(m, None).is_some()
            })
            .map(|((_, u), _)| *u)
            .collect();
        check.sort_unstable();
        check.dedup();
        let source_sizes = self.sizes(&check).await?;

        let mut outcomes: Vec<Option<ActionOutcome>> = vec![None; items.len()];
        let mut plans: BTreeMap<u32, Plan> = BTreeMap::new();
        for (i, &(v, uid)) in ids.iter().enumerate() {
            let here = v == uidvalidity && present.contains(&uid);
            let copy = if here {
                source_sizes
                    .get(&uid)
                    .and_then(|size| in_target.copy_of(&items[i], Some(*size)))
            } else {
                in_target.copy_of(&items[i], None)
            };
            match (here, copy) {
                // Moved by the interrupted attempt: nothing to do.
                (false, Some(id)) => {
                    outcomes[i] = Some(ActionOutcome::Moved {
                        remote_id: Some(id),
                    })
                }
                (false, None) => outcomes[i] = Some(ActionOutcome::Gone),
                // Copied by the interrupted attempt (COPY, then the crash).
                (true, Some(id)) => {
                    plans.insert(uid, Plan::DeleteOnly(id));
                }
                (true, None) => {
                    plans.entry(uid).or_insert(Plan::Move);
                }
            }
        }

        let mut done: HashMap<u32, ActionOutcome> = HashMap::new();
        let mut delete: Vec<u32> = Vec::new();
        let mut to_move: Vec<u32> = Vec::new();
        for (uid, plan) in plans {
            match plan {
                Plan::Move => to_move.push(uid),
                Plan::DeleteOnly(id) => {
                    delete.push(uid);
                    done.insert(
                        uid,
                        ActionOutcome::Moved {
                            remote_id: Some(id),
                        },
                    );
                }
            }
        }
        if !to_move.is_empty() {
            let wire = quote(&self.wire(&target.name))?;
            let verb = if self.extensions.move_ {
                "UID MOVE"
            } else {
                "UID COPY"
            };
            let reply = self
                .command(&format!("{verb} {} {wire}", uid_set(&to_move)), verb)
                .await?
                .ok(verb)?;
            for uid in to_move {
                let outcome = match &reply.copied {
                    Some(c) => match c.uids.get(&uid) {
                        Some(new) => ActionOutcome::Moved {
                            remote_id: Some(remote_id(c.uidvalidity, *new)),
                        },
                        // Not among the copied: expunged meanwhile by another client.
                        None => ActionOutcome::Gone,
                    },
                    None => ActionOutcome::Moved { remote_id: None },
                };
                // A copy leaves the source to delete; only what was certainly copied (COPYUID
                // lists it, or the server gives no COPYUID and said OK to all).
                if !self.extensions.move_ && matches!(outcome, ActionOutcome::Moved { .. }) {
                    delete.push(uid);
                }
                done.insert(uid, outcome);
            }
        }
        if !delete.is_empty() {
            delete.sort_unstable();
            self.delete_from_source(&delete).await?;
        }
        Ok(outcomes
            .into_iter()
            .zip(&ids)
            .map(|(o, (_, uid))| {
                o.or_else(|| done.get(uid).cloned())
                    .unwrap_or(ActionOutcome::Gone)
            })
            .collect())
    }

    /// The copies in `target` of the retried items, by Message-ID: one EXAMINE, one SEARCH per
    /// Message-ID and one FETCH of the sizes.
    async fn find_in_target(
        &mut self,
        target: &RemoteFolder,
        items: &[MoveItem],
    ) -> Result<InTarget, ProviderError> {
        let mut wanted: Vec<&str> = Vec::new();
        for item in items.iter().filter(|m| m.retry) {
            match item.message_id.as_deref() {
                Some(id) if searchable(id) => wanted.push(id),
                // Without a Message-ID a copy can't be recognised: moved again, at worst
                // it is in the target twice, never lost.
                _ => tracing::warn!(
                    remote_id = %item.remote_id,
                    "A retried move has no searchable Message-ID; it is moved as if new."
                ),
            }
        }
        wanted.sort_unstable();
        wanted.dedup();
        let mut found = InTarget::default();
        if wanted.is_empty() {
            return Ok(found);
        }
        found.uidvalidity = self
            .examine(&target.name, Mode::Plain)
            .await?
            .uidvalidity
            .expect("checked in examine");
        let mut by_uid: HashMap<u32, &str> = HashMap::new();
        for id in wanted {
            let reply = self
                .command(
                    &format!("UID SEARCH HEADER Message-ID \"<{id}>\""),
                    "UID SEARCH",
                )
                .await?
                .ok("UID SEARCH")?;
            by_uid.extend(reply.found.into_iter().map(|u| (u, id)));
        }
        let mut uids: Vec<u32> = by_uid.keys().copied().collect();
        uids.sort_unstable();
        for (uid, size) in self.sizes(&uids).await? {
            if let Some(id) = by_uid.get(&uid) {
                found
                    .copies
                    .entry(id.to_string())
                    .or_default()
                    .push((uid, size));
            }
        }
        Ok(found)
    }

    /// RFC822.SIZE of messages of the open folder (those still there), in one FETCH.
    async fn sizes(&mut self, uids: &[u32]) -> Result<HashMap<u32, u32>, ProviderError> {
        if uids.is_empty() {
            return Ok(HashMap::new());
        }
        let reply = self
            .command(
                &format!("UID FETCH {} (UID RFC822.SIZE)", uid_set(uids)),
                "UID FETCH",
            )
            .await?
            .ok("UID FETCH")?;
        Ok(reply
            .sizes
            .into_iter()
            .filter(|(u, _)| uids.binary_search(u).is_ok())
            .collect())
    }

    /// Deletes messages of the selected folder whose copy is safe in the target: `\Deleted`,
    /// then `UID EXPUNGE` of exactly these (UIDPLUS). Without UIDPLUS there is only EXPUNGE,
    /// which removes every `\Deleted` message of the folder: it is sent only when no other
    /// message carries the flag. Otherwise these stay `\Deleted` (a mail client's expunge, or
    /// a later move, removes them) rather than expunge what someone else only marked.
    async fn delete_from_source(&mut self, uids: &[u32]) -> Result<(), ProviderError> {
        let set = uid_set(uids);
        self.command(
            &format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"),
            "UID STORE",
        )
        .await?
        .ok("UID STORE")?;
        if self.extensions.uidplus {
            self.command(&format!("UID EXPUNGE {set}"), "UID EXPUNGE")
                .await?
                .ok("UID EXPUNGE")?;
            return Ok(());
        }
        let deleted = self
            .command("UID SEARCH DELETED", "UID SEARCH")
            .await?
            .ok("UID SEARCH")?
            .found;
        let others = deleted
            .iter()
            .filter(|u| uids.binary_search(u).is_err())
            .count();
        if others == 0 {
            self.command("EXPUNGE", "EXPUNGE").await?.ok("EXPUNGE")?;
        } else {
            tracing::warn!(
                messages = uids.len(),
                others,
                "Moved messages stay in the source folder flagged \\Deleted: the server has no \
                 UIDPLUS, and EXPUNGE would also remove other messages flagged \\Deleted."
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds raw response lines to a `Reply` for the command tagged `a1`.
    fn reply(lines: &[&str]) -> Reply {
        let tag = RequestId("a1".into());
        let mut r = Reply::default();
        for (i, line) in lines.iter().enumerate() {
            let wire = format!("{line}\r\n");
            let (rest, resp) = Response::parse(wire.as_bytes())
                .unwrap_or_else(|e| panic!("{line:?} does not parse: {e:?}"));
            assert!(rest.is_empty(), "{line:?}");
            let done = r.absorb(&resp, &tag);
            assert_eq!(done, i == lines.len() - 1, "{line:?}");
        }
        r
    }

    fn copied(uidvalidity: u32, pairs: &[(u32, u32)]) -> Option<Copied> {
        Some(Copied {
            uidvalidity,
            uids: pairs.iter().copied().collect(),
        })
    }

    #[test]
    fn copyuid_maps_source_to_target_uids_untagged_or_tagged() {
        let table: &[(&[&str], Option<Copied>)] = &[
            // Dovecot and Cyrus: untagged, before the expunges of a MOVE.
            (
                &[
                    "* OK [COPYUID 1796412655 1:2 1:2] Moved UIDs.",
                    "* VANISHED 1:2",
                    "* 1 RECENT",
                    "a1 OK [HIGHESTMODSEQ 7] Move completed (0.022 + 0.000 + 0.021 secs).",
                ],
                copied(1796412655, &[(1, 1), (2, 2)]),
            ),
            // Courier: in the tagged OK of a COPY; RFC 4315's example with a gap.
            (
                &["a1 OK [COPYUID 796412648 1:2 1:2] COPY completed."],
                copied(796412648, &[(1, 1), (2, 2)]),
            ),
            (
                &["a1 OK [COPYUID 38505 304,319:320 3956:3958] Done"],
                copied(38505, &[(304, 3956), (319, 3957), (320, 3958)]),
            ),
            (
                &[
                    "* OK [COPYUID 9 3,7 10:11] Moved UIDs.",
                    "* 2 EXPUNGE",
                    "* 1 EXPUNGE",
                    "a1 ok Completed",
                ],
                copied(9, &[(3, 10), (7, 11)]),
            ),
            // No COPYUID (no UIDPLUS, or nothing was there to copy).
            (&["a1 OK No messages found"], None),
            (&["a1 OK COPY completed."], None),
            // Sets that don't pair up are not believed.
            (&["a1 OK [COPYUID 9 1:3 10:11] Done"], None),
        ];
        for (lines, want) in table {
            let r = reply(lines);
            assert_eq!(r.status, Some(Tagged::Ok), "{lines:?}");
            assert_eq!(&r.copied, want, "{lines:?}");
        }
    }

    #[test]
    fn modified_lists_what_a_conditional_store_left_alone() {
        let table: &[(&str, &[u32], &[u32])] = &[
            (
                "a1 OK [MODIFIED 1,3] Conditional store failed (0.001 + 0.000 secs).",
                &[1, 3],
                &[2, 4],
            ),
            ("a1 OK [MODIFIED 1:3] Completed", &[1, 2, 3], &[4]),
            (
                "a1 OK [MODIFIED 7,9:11] Conditional STORE failed",
                &[7, 9, 10, 11],
                &[8, 12],
            ),
            (
                "a1 NO [MODIFIED 2] Some of the messages changed",
                &[2],
                &[1],
            ),
            ("a1 ok [modified 5] done", &[5], &[4]),
            ("a1 OK Store completed (0.001 + 0.000 secs).", &[], &[1]),
            ("a1 OK [MODIFIED x] nonsense", &[], &[1]),
            ("a1 OK [MODIFIEDX 1] not the code", &[], &[1]),
        ];
        for (line, yes, no) in table {
            let r = reply(&["* 2 FETCH (UID 2 MODSEQ (6))", line]);
            for u in *yes {
                assert!(r.is_modified(*u), "{line}: {u}");
            }
            for u in *no {
                assert!(!r.is_modified(*u), "{line}: {u}");
            }
        }
    }

    #[test]
    fn search_results_and_refusals_are_read() {
        let r = reply(&["* SEARCH 3 9 4", "a1 OK Search completed"]);
        assert_eq!(r.found, vec![3, 9, 4]);
        let r = reply(&["* SEARCH", "a1 OK Completed (0 msgs in 0.000 secs)"]);
        assert!(r.found.is_empty());

        let r = reply(&["a1 NO [TRYCREATE] Mailbox doesn't exist: Nowhere"]);
        assert!(
            matches!(r.clone().ok("UID MOVE"), Err(ProviderError::Permanent(m)) if m.contains("TRYCREATE")),
            "{r:?}"
        );
        let r = reply(&["a1 NO [UNAVAILABLE] Try again later"]);
        assert!(matches!(
            r.ok("UID COPY"),
            Err(ProviderError::Disconnected(_))
        ));
        let r = reply(&["a1 BAD Error in IMAP command UID MOVE: Invalid arguments."]);
        assert!(matches!(r.ok("UID MOVE"), Err(ProviderError::Protocol(_))));
        // Another command's tagged response does not end this one.
        let tag = RequestId("a1".into());
        let (_, other) = Response::parse(b"a0 OK done\r\n").unwrap();
        assert!(!Reply::default().absorb(&other, &tag));
    }

    #[test]
    fn a_copy_in_the_target_is_the_newest_of_its_message_id_and_size() {
        let found = InTarget {
            uidvalidity: 7,
            copies: [("a@x".to_string(), vec![(3, 100), (9, 250), (5, 100)])].into(),
        };
        let retry = |id: &str, retry| MoveItem {
            remote_id: "1:1".into(),
            message_id: Some(id.into()),
            retry,
        };
        assert_eq!(
            found.copy_of(&retry("a@x", true), None).as_deref(),
            Some("7:9")
        );
        assert_eq!(
            found.copy_of(&retry("a@x", true), Some(100)).as_deref(),
            Some("7:5")
        );
        assert_eq!(found.copy_of(&retry("a@x", true), Some(101)), None);
        assert_eq!(found.copy_of(&retry("b@x", true), None), None);
        assert_eq!(
            found.copy_of(&retry("a@x", false), None),
            None,
            "not a retry"
        );
    }

    #[test]
    fn remote_ids_and_folder_identity() {
        assert_eq!(parse_id("1796412654:17").unwrap(), (1796412654, 17));
        for bad in ["17", "a:b", "1:0", "1:-2", ":5", "1:2:3"] {
            assert!(parse_id(bad).is_err(), "{bad}");
        }
        assert!(same_folder("INBOX", "inbox"));
        assert!(same_folder("INBOX.Archive", "INBOX.Archive"));
        assert!(!same_folder("Archive", "archive"));
        assert!(!same_folder("INBOX", "INBOX.Archive"));
    }
}
