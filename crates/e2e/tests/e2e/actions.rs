//! The CRM's actions over IMAP (#13 item 2): flag changes (`UID STORE`, with `UNCHANGEDSINCE`
//! where CONDSTORE is offered) and moves (`UID MOVE` with COPYUID; `UID COPY` + `\Deleted` +
//! `UID EXPUNGE` where MOVE is missing), against Dovecot (MOVE, CONDSTORE, QRESYNC), Courier
//! (no MOVE, no CONDSTORE, `INBOX.` namespace) and Cyrus. A second, raw session plays the
//! other mail client.

use crate::app::raw_session;
use async_imap::Session;
use futures::TryStreamExt;
use mailfleet_core::{Encryption, Secret};
use mailfleet_imap::{ImapSession, ImapSettings, TlsTrust};
use mailfleet_provider::{
    ActionOutcome, ChangeBatch, FetchLimits, FlagChange, FolderCursor, MailSession, MoveItem,
    ProviderError, RemoteFolder, Removed, StoredCopies,
};
use mailfleet_testkit::{TestMailbox, ca_file, init, unique_suffix};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::net::TcpStream;

type Raw = Session<TcpStream>;

fn trust() -> TlsTrust {
    let ca = std::fs::read(ca_file()).unwrap();
    TlsTrust::new(Some(("test CA", &ca))).unwrap()
}

fn settings(port: u16, login: &str, password: &str) -> ImapSettings {
    ImapSettings {
        connect_timeout: Duration::from_secs(10),
        command_timeout: Duration::from_secs(30),
        ..ImapSettings::new(
            "127.0.0.1",
            port,
            Encryption::Ssl,
            login,
            Secret::new(password.to_string()),
        )
    }
}

async fn connect(settings: &ImapSettings) -> ImapSession {
    mailfleet_imap::connect(settings, &trust())
        .await
        .unwrap_or_else(|e| panic!("{}:{}: {e}", settings.host, settings.port))
}

/// A user of Cyrus or Courier (`scripts/mail-user.sh`), deleted with its mail when dropped.
struct ServerUser {
    server: &'static str,
    address: String,
    password: String,
}

fn mail_user(args: &[&str]) -> std::process::Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/mail-user.sh");
    std::process::Command::new(script)
        .args(args)
        .output()
        .expect("scripts/mail-user.sh runs")
}

impl ServerUser {
    fn create(server: &'static str) -> Self {
        let address = format!("act-{}@example.test", unique_suffix());
        let password = format!("pw-{}", unique_suffix());
        let out = mail_user(&["--server", server, "add", &address, &password]);
        assert!(
            out.status.success(),
            "mail-user.sh --server {server} add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            server,
            address,
            password,
        }
    }
}

impl Drop for ServerUser {
    fn drop(&mut self) {
        let _ = mail_user(&["--server", self.server, "del", &self.address]);
    }
}

/// The other mail client: plain IMAP on loopback (Dovecot 143, Courier 2143).
async fn raw_plain(port: u16, login: &str, password: &str) -> Raw {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await.unwrap();
    client
        .login(login, password)
        .await
        .map_err(|(e, _)| e)
        .unwrap()
}

fn message(id: &str) -> Vec<u8> {
    format!(
        "From: Ann <ann@example.test>\r\nTo: Bob <bob@example.test>\r\nSubject: {id}\r\n\
         Date: Mon, 01 Dec 2025 10:00:00 +0000\r\nMessage-ID: <{id}>\r\n\r\nHello {id}.\r\n"
    )
    .into_bytes()
}

/// Appends one message per id to `folder` (unflagged); the ids, in UID order.
async fn seed(raw: &mut Raw, folder: &str, n: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n)
        .map(|i| format!("act-{i}-{}@example.test", unique_suffix()))
        .collect();
    for id in &ids {
        raw.append(folder, Some("()"), None, message(id))
            .await
            .unwrap();
    }
    ids
}

async fn uids_with_id(raw: &mut Raw, folder: &str, message_id: &str) -> Vec<u32> {
    raw.examine(folder).await.unwrap();
    let mut v: Vec<u32> = raw
        .uid_search(format!("HEADER Message-ID \"<{message_id}>\""))
        .await
        .unwrap()
        .into_iter()
        .collect();
    v.sort_unstable();
    v
}

async fn all_uids(raw: &mut Raw, folder: &str) -> Vec<u32> {
    raw.examine(folder).await.unwrap();
    let mut v: Vec<u32> = raw.uid_search("ALL").await.unwrap().into_iter().collect();
    v.sort_unstable();
    v
}

/// The flags of one message, as the server has them.
async fn flags(raw: &mut Raw, folder: &str, uid: u32) -> Vec<String> {
    raw.examine(folder).await.unwrap();
    let fetches: Vec<_> = raw
        .uid_fetch(uid.to_string(), "(UID FLAGS)")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    fetches
        .iter()
        .filter(|f| f.uid == Some(uid))
        .flat_map(|f| f.flags().map(|fl| format!("{fl:?}")))
        .filter(|f| f != "Recent")
        .collect()
}

async fn run(raw: &mut Raw, command: &str) {
    raw.run_command_and_check_ok(command)
        .await
        .unwrap_or_else(|e| panic!("{command}: {e}"));
}

async fn folder(s: &mut ImapSession, name: &str) -> RemoteFolder {
    let all = s.list_folders().await.unwrap();
    all.iter()
        .find(|f| f.name == name)
        .cloned()
        .unwrap_or_else(|| panic!("no folder {name:?} in {all:?}"))
}

fn uidvalidity(cursor: &FolderCursor) -> u32 {
    match cursor {
        FolderCursor::Imap { uidvalidity, .. } => *uidvalidity,
        other => panic!("not an IMAP cursor: {other:?}"),
    }
}

struct NoCopies;

impl StoredCopies for NoCopies {
    fn count<'a, 'b, 't>(
        &'a self,
        _keys: &'b [(String, u64)],
    ) -> Pin<Box<dyn Future<Output = Result<HashMap<(String, u64), u32>, ProviderError>> + Send + 't>>
    where
        'a: 't,
        'b: 't,
        Self: 't,
    {
        Box::pin(async { Ok(HashMap::new()) })
    }
}

/// One whole sync of `folder` from `cursor`, as the engine drives it.
async fn sync(
    s: &mut ImapSession,
    folder: &RemoteFolder,
    cursor: &FolderCursor,
) -> (Vec<ChangeBatch>, FolderCursor) {
    let limits = FetchLimits {
        since: chrono::DateTime::UNIX_EPOCH,
        max_messages: 2,
        max_bytes: 1 << 20,
    };
    let mut cursor = cursor.clone();
    let mut batches = Vec::new();
    loop {
        let b = s
            .next_changes(folder, &cursor, limits, &NoCopies)
            .await
            .unwrap();
        cursor = b.next_cursor.clone();
        let more = b.more;
        batches.push(b);
        if !more {
            return (batches, cursor);
        }
    }
}

fn moved_to(o: &ActionOutcome) -> String {
    match o {
        ActionOutcome::Moved {
            remote_id: Some(id),
        } => id.clone(),
        other => panic!("expected Moved with an id, got {other:?}"),
    }
}

fn uid(remote_id: &str) -> u32 {
    remote_id.split_once(':').unwrap().1.parse().unwrap()
}

fn item(remote_id: String, message_id: &str, retry: bool) -> MoveItem {
    MoveItem {
        remote_id,
        message_id: Some(message_id.to_string()),
        retry,
    }
}

#[tokio::test]
async fn dovecot_flags_are_set_and_cleared_and_the_next_sync_sees_them() {
    init();
    let mailbox = TestMailbox::create();
    let mut raw = raw_session(&mailbox).await;
    seed(&mut raw, "INBOX", 3).await;
    let mut s = connect(&settings(993, &mailbox.address, &mailbox.password)).await;
    assert!(s.extensions().condstore && s.extensions().move_);
    let inbox = folder(&mut s, "INBOX").await;
    // Synced halfway (batches of 2): the action comes between two steps of the sync.
    let limits = FetchLimits {
        since: chrono::DateTime::UNIX_EPOCH,
        max_messages: 2,
        max_bytes: 1 << 20,
    };
    let first = s
        .next_changes(&inbox, &FolderCursor::Initial, limits, &NoCopies)
        .await
        .unwrap();
    assert!(first.more);
    let uv = uidvalidity(&first.next_cursor);
    let ids: Vec<String> = (1..=3).map(|u| format!("{uv}:{u}")).collect();

    let out = s
        .set_flag(
            &inbox,
            &[
                ids[0].clone(),
                ids[1].clone(),
                format!("{uv}:999"),
                format!("{}:2", uv + 1),
            ],
            FlagChange::Seen(true),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        [
            ActionOutcome::Done,
            ActionOutcome::Done,
            ActionOutcome::Gone,
            ActionOutcome::Gone
        ],
        "a UID not in the folder, or of another UIDVALIDITY, is gone"
    );
    assert!(flags(&mut raw, "INBOX", 1).await.contains(&"Seen".into()));
    assert!(flags(&mut raw, "INBOX", 2).await.contains(&"Seen".into()));
    assert!(!flags(&mut raw, "INBOX", 3).await.contains(&"Seen".into()));

    // The sync goes on after the SELECT: the rest of the folder, then the flag changes.
    let (rest, cursor) = sync(&mut s, &inbox, &first.next_cursor).await;
    let fetched: usize = rest.iter().map(|b| b.new_messages.len()).sum();
    assert_eq!(fetched, 1, "{rest:?}");

    let out = s
        .set_flag(&inbox, &ids[1..], FlagChange::Seen(false), None)
        .await
        .unwrap();
    assert_eq!(out, [ActionOutcome::Done, ActionOutcome::Done]);
    let out = s
        .set_flag(&inbox, &ids[2..], FlagChange::Flagged(true), None)
        .await
        .unwrap();
    assert_eq!(out, [ActionOutcome::Done]);
    assert!(!flags(&mut raw, "INBOX", 2).await.contains(&"Seen".into()));
    assert_eq!(flags(&mut raw, "INBOX", 3).await, ["Flagged"]);

    let (batches, _) = sync(&mut s, &inbox, &cursor).await;
    let mut updates: Vec<(String, Vec<String>)> = batches
        .iter()
        .flat_map(|b| b.flag_updates.iter())
        .map(|u| (u.remote_id.clone(), u.flags.clone()))
        .collect();
    updates.sort();
    assert_eq!(
        updates,
        [
            (ids[1].clone(), vec![]),
            (ids[2].clone(), vec!["\\Flagged".to_string()])
        ]
    );
    Box::new(s).close().await;
}

#[tokio::test]
async fn dovecot_a_flag_changed_meanwhile_in_another_client_is_a_conflict_not_overwritten() {
    init();
    let mailbox = TestMailbox::create();
    let mut raw = raw_session(&mailbox).await;
    seed(&mut raw, "INBOX", 3).await;
    let mut s = connect(&settings(993, &mailbox.address, &mailbox.password)).await;
    let inbox = folder(&mut s, "INBOX").await;
    let (_, cursor) = sync(&mut s, &inbox, &FolderCursor::Initial).await;
    let FolderCursor::Imap {
        uidvalidity: uv,
        highestmodseq: Some(modseq),
        ..
    } = cursor
    else {
        panic!("no HIGHESTMODSEQ: {cursor:?}")
    };

    // After the CRM's last sync, someone marks message 1 read elsewhere and flags message 2.
    raw.select("INBOX").await.unwrap();
    run(&mut raw, "UID STORE 1 +FLAGS.SILENT (\\Seen)").await;
    run(&mut raw, "UID STORE 2 +FLAGS.SILENT (\\Flagged)").await;

    // The CRM marks 1 and 2 unread and 3 read, as of what it saw.
    let ids: Vec<String> = (1..=3).map(|u| format!("{uv}:{u}")).collect();
    let conflict = ActionOutcome::Conflict("changed on the server since the last sync".into());
    let out = s
        .set_flag(&inbox, &ids[..2], FlagChange::Seen(false), Some(modseq))
        .await
        .unwrap();
    assert_eq!(out, [conflict.clone(), conflict.clone()]);
    let out = s
        .set_flag(&inbox, &ids[2..], FlagChange::Seen(true), Some(modseq))
        .await
        .unwrap();
    assert_eq!(out, [ActionOutcome::Done]);
    assert!(
        flags(&mut raw, "INBOX", 1).await.contains(&"Seen".into()),
        "the other client's change is kept"
    );
    assert!(flags(&mut raw, "INBOX", 3).await.contains(&"Seen".into()));

    // As of the newer state (after a sync) the change goes through.
    let (_, cursor) = sync(&mut s, &inbox, &cursor).await;
    let FolderCursor::Imap {
        highestmodseq: Some(newer),
        ..
    } = cursor
    else {
        panic!("{cursor:?}")
    };
    let out = s
        .set_flag(&inbox, &ids[..1], FlagChange::Seen(false), Some(newer))
        .await
        .unwrap();
    assert_eq!(out, [ActionOutcome::Done]);
    assert!(!flags(&mut raw, "INBOX", 1).await.contains(&"Seen".into()));
    Box::new(s).close().await;
}

#[tokio::test]
async fn dovecot_moves_report_the_new_ids_and_gone_messages_get_no_command() {
    init();
    let mailbox = TestMailbox::create();
    let mut raw = raw_session(&mailbox).await;
    let mids = seed(&mut raw, "INBOX", 3).await;
    seed(&mut raw, "Archive", 2).await;
    let mut s = connect(&settings(993, &mailbox.address, &mailbox.password)).await;
    let inbox = folder(&mut s, "INBOX").await;
    let archive = folder(&mut s, "Archive").await;
    let (_, cursor) = sync(&mut s, &inbox, &FolderCursor::Initial).await;
    let uv = uidvalidity(&cursor);
    let id = |u: u32| format!("{uv}:{u}");

    assert!(matches!(
        s.move_messages(&inbox, &inbox, &[item(id(1), &mids[0], false)])
            .await,
        Err(ProviderError::Permanent(_))
    ));

    let out = s
        .move_messages(
            &inbox,
            &archive,
            &[
                item(id(3), &mids[2], false),
                item(id(9), "nowhere@example.test", false),
                item(id(1), &mids[0], false),
            ],
        )
        .await
        .unwrap();
    assert_eq!(out[1], ActionOutcome::Gone);
    // COPYUID: Archive's UIDs go on after its two messages, in source order.
    let archive_uv = uidvalidity(&s.current_cursor(&archive).await.unwrap());
    assert_eq!(moved_to(&out[2]), format!("{archive_uv}:3"));
    assert_eq!(moved_to(&out[0]), format!("{archive_uv}:4"));
    assert_eq!(uids_with_id(&mut raw, "Archive", &mids[0]).await, [3]);
    assert_eq!(uids_with_id(&mut raw, "Archive", &mids[2]).await, [4]);
    assert_eq!(all_uids(&mut raw, "INBOX").await, [2]);

    // Only gone messages: no command is sent for them (a MOVE to a folder that does not exist
    // would be refused).
    let nowhere = RemoteFolder {
        name: "Nowhere".into(),
        ..archive.clone()
    };
    let out = s
        .move_messages(&inbox, &nowhere, &[item(id(1), &mids[0], false)])
        .await
        .unwrap();
    assert_eq!(out, [ActionOutcome::Gone]);
    assert!(matches!(
        s.move_messages(&inbox, &nowhere, &[item(id(2), &mids[1], false)])
            .await,
        Err(ProviderError::Permanent(m)) if m.contains("TRYCREATE")
    ));

    // The next sync of INBOX sees the two leave.
    let (batches, _) = sync(&mut s, &inbox, &cursor).await;
    let gone: Vec<String> = batches
        .iter()
        .flat_map(|b| match &b.removed {
            Removed::These(v) => v.clone(),
            Removed::AllBut(present) => (1..=3).map(id).filter(|i| !present.contains(i)).collect(),
            Removed::Nothing => Vec::new(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(gone, [id(1), id(3)]);
    Box::new(s).close().await;
}

#[tokio::test]
async fn dovecot_a_retried_move_is_applied_once() {
    init();
    let mailbox = TestMailbox::create();
    let mut raw = raw_session(&mailbox).await;
    let mids = seed(&mut raw, "INBOX", 5).await;
    let mut s = connect(&settings(993, &mailbox.address, &mailbox.password)).await;
    let inbox = folder(&mut s, "INBOX").await;
    let archive = folder(&mut s, "Archive").await;
    let uv = uidvalidity(&s.current_cursor(&inbox).await.unwrap());
    let id = |u: u32| format!("{uv}:{u}");

    // The interrupted attempt: 1 was moved (MOVE answered, the crash came before the commit),
    // 2 was copied (a COPY fallback interrupted after the COPY); 3 is untouched; 4 was
    // deleted by someone meanwhile. Archive holds another message that reuses 5's
    // Message-ID (not 5: another size), so 5 is not taken as copied.
    let mut impostor = message(&mids[4]);
    impostor.extend_from_slice(b"Not the same message.\r\n");
    raw.append("Archive", Some("()"), None, impostor)
        .await
        .unwrap();
    raw.select("INBOX").await.unwrap();
    run(&mut raw, "UID MOVE 1 Archive").await;
    run(&mut raw, "UID COPY 2 Archive").await;
    run(&mut raw, "UID STORE 4 +FLAGS.SILENT (\\Deleted)").await;
    run(&mut raw, "UID EXPUNGE 4").await;
    let moved_before = uids_with_id(&mut raw, "Archive", &mids[0]).await;
    let copied_before = uids_with_id(&mut raw, "Archive", &mids[1]).await;

    let items: Vec<MoveItem> = (0..5)
        .map(|i| item(id(i as u32 + 1), &mids[i], true))
        .collect();
    let out = s.move_messages(&inbox, &archive, &items).await.unwrap();
    let archive_uv = uidvalidity(&s.current_cursor(&archive).await.unwrap());
    assert_eq!(
        moved_to(&out[0]),
        format!("{archive_uv}:{}", moved_before[0])
    );
    assert_eq!(
        moved_to(&out[1]),
        format!("{archive_uv}:{}", copied_before[0])
    );
    let third = moved_to(&out[2]);
    assert_eq!(out[3], ActionOutcome::Gone);
    let fifth = moved_to(&out[4]);
    assert_eq!(
        uids_with_id(&mut raw, "Archive", &mids[4]).await,
        [1, uid(&fifth)],
        "moved beside the other message of its Message-ID"
    );
    for (i, mid) in mids[..3].iter().enumerate() {
        assert_eq!(
            uids_with_id(&mut raw, "Archive", mid).await.len(),
            1,
            "message {i} is in Archive once"
        );
        assert!(uids_with_id(&mut raw, "INBOX", mid).await.is_empty());
    }
    assert_eq!(
        uids_with_id(&mut raw, "Archive", &mids[2]).await,
        [uid(&third)]
    );

    // Called once more (the commit was lost again): nothing changes.
    let again = s.move_messages(&inbox, &archive, &items).await.unwrap();
    assert_eq!(again, out);
    assert_eq!(all_uids(&mut raw, "Archive").await.len(), 5);
    assert!(all_uids(&mut raw, "INBOX").await.is_empty());
    Box::new(s).close().await;
}

/// Courier: no MOVE, no CONDSTORE; UIDPLUS; folders under `INBOX.` with `.`.
#[tokio::test]
async fn courier_moves_by_copy_then_deleted_then_uid_expunge_of_its_own_only() {
    init();
    let user = ServerUser::create("courier");
    let mut raw = raw_plain(2143, &user.address, &user.password).await;
    let mids = seed(&mut raw, "INBOX", 4).await;
    let mut s = connect(&settings(2993, &user.address, &user.password)).await;
    let ext = s.extensions();
    assert!(!ext.move_ && !ext.condstore && ext.uidplus, "{ext:?}");
    let inbox = folder(&mut s, "INBOX").await;
    let archive = folder(&mut s, "INBOX.Archive").await;
    s.create_folder("INBOX.Übersicht").await.unwrap();
    let overview = folder(&mut s, "INBOX.Übersicht").await;
    let uv = uidvalidity(&s.current_cursor(&inbox).await.unwrap());
    let id = |u: u32| format!("{uv}:{u}");

    // Someone else marked message 4 deleted without expunging it: it must stay.
    raw.select("INBOX").await.unwrap();
    run(&mut raw, "UID STORE 4 +FLAGS.SILENT (\\Deleted)").await;

    let out = s
        .move_messages(
            &inbox,
            &archive,
            &[item(id(1), &mids[0], false), item(id(2), &mids[1], false)],
        )
        .await
        .unwrap();
    let archive_uv = uidvalidity(&s.current_cursor(&archive).await.unwrap());
    assert_eq!(moved_to(&out[0]), format!("{archive_uv}:1"));
    assert_eq!(moved_to(&out[1]), format!("{archive_uv}:2"));
    let out = s
        .move_messages(&inbox, &overview, &[item(id(3), &mids[2], false)])
        .await
        .unwrap();
    let overview_uv = uidvalidity(&s.current_cursor(&overview).await.unwrap());
    assert_eq!(moved_to(&out[0]), format!("{overview_uv}:1"));

    assert_eq!(
        all_uids(&mut raw, "INBOX").await,
        [4],
        "only its own expunged"
    );
    assert_eq!(all_uids(&mut raw, "INBOX.Archive").await, [1, 2]);
    assert_eq!(
        uids_with_id(&mut raw, "INBOX.&ANw-bersicht", &mids[2]).await,
        [1],
        "the wire name is modified UTF-7"
    );
    assert_eq!(flags(&mut raw, "INBOX", 4).await, ["Deleted"]);
    assert_eq!(
        flags(&mut raw, "INBOX.Archive", 1).await,
        Vec::<String>::new()
    );

    // Flags: no CONDSTORE, so `unchanged_since` is ignored.
    let out = s
        .set_flag(
            &archive,
            &[format!("{archive_uv}:2"), format!("{archive_uv}:7")],
            FlagChange::Flagged(true),
            Some(1),
        )
        .await
        .unwrap();
    assert_eq!(out, [ActionOutcome::Done, ActionOutcome::Gone]);
    assert_eq!(flags(&mut raw, "INBOX.Archive", 2).await, ["Flagged"]);
    Box::new(s).close().await;
}

#[tokio::test]
async fn courier_a_retry_after_an_interrupted_copy_does_not_copy_again() {
    init();
    let user = ServerUser::create("courier");
    let mut raw = raw_plain(2143, &user.address, &user.password).await;
    let mids = seed(&mut raw, "INBOX", 3).await;
    let mut s = connect(&settings(2993, &user.address, &user.password)).await;
    let inbox = folder(&mut s, "INBOX").await;
    let archive = folder(&mut s, "INBOX.Archive").await;
    let uv = uidvalidity(&s.current_cursor(&inbox).await.unwrap());
    let id = |u: u32| format!("{uv}:{u}");

    // The interrupted attempt: 1 copied (crash before \Deleted), 2 copied and flagged
    // \Deleted (crash before the expunge); 3 untouched.
    raw.select("INBOX").await.unwrap();
    run(&mut raw, "UID COPY 1:2 INBOX.Archive").await;
    run(&mut raw, "UID STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    assert_eq!(all_uids(&mut raw, "INBOX.Archive").await, [1, 2]);

    let items: Vec<MoveItem> = (0..3)
        .map(|i| item(id(i as u32 + 1), &mids[i], true))
        .collect();
    let out = s.move_messages(&inbox, &archive, &items).await.unwrap();
    let archive_uv = uidvalidity(&s.current_cursor(&archive).await.unwrap());
    assert_eq!(
        out.iter().map(moved_to).collect::<Vec<_>>(),
        [1, 2, 3].map(|u| format!("{archive_uv}:{u}"))
    );
    assert_eq!(all_uids(&mut raw, "INBOX.Archive").await, [1, 2, 3]);
    for mid in &mids {
        assert_eq!(uids_with_id(&mut raw, "INBOX.Archive", mid).await.len(), 1);
    }
    assert!(all_uids(&mut raw, "INBOX").await.is_empty());
    Box::new(s).close().await;
}

#[tokio::test]
async fn courier_without_uidplus_expunges_only_when_no_other_message_is_deleted() {
    init();
    let user = ServerUser::create("courier");
    let mut raw = raw_plain(2143, &user.address, &user.password).await;
    let mids = seed(&mut raw, "INBOX", 3).await;
    let mut s = connect(&ImapSettings {
        use_uidplus: false,
        ..settings(2993, &user.address, &user.password)
    })
    .await;
    assert!(!s.extensions().uidplus);
    let inbox = folder(&mut s, "INBOX").await;
    let archive = folder(&mut s, "INBOX.Archive").await;
    let uv = uidvalidity(&s.current_cursor(&inbox).await.unwrap());
    let id = |u: u32| format!("{uv}:{u}");

    let out = s
        .move_messages(&inbox, &archive, &[item(id(1), &mids[0], false)])
        .await
        .unwrap();
    // Courier answers COPYUID even though the session does not count on UIDPLUS.
    assert!(matches!(out[0], ActionOutcome::Moved { .. }), "{out:?}");
    assert_eq!(all_uids(&mut raw, "INBOX").await, [2, 3], "expunged");

    // Someone else's \Deleted message: a plain EXPUNGE would take it too, so none is sent.
    raw.select("INBOX").await.unwrap();
    run(&mut raw, "UID STORE 3 +FLAGS.SILENT (\\Deleted)").await;
    let out = s
        .move_messages(&inbox, &archive, &[item(id(2), &mids[1], false)])
        .await
        .unwrap();
    assert!(matches!(out[0], ActionOutcome::Moved { .. }), "{out:?}");
    assert_eq!(all_uids(&mut raw, "INBOX").await, [2, 3]);
    assert_eq!(flags(&mut raw, "INBOX", 2).await, ["Deleted"]);
    assert_eq!(flags(&mut raw, "INBOX", 3).await, ["Deleted"]);
    assert_eq!(all_uids(&mut raw, "INBOX.Archive").await, [1, 2]);

    // A retry then finds the copy and copies nothing again.
    let out = s
        .move_messages(&inbox, &archive, &[item(id(2), &mids[1], true)])
        .await
        .unwrap();
    assert!(matches!(out[0], ActionOutcome::Moved { .. }), "{out:?}");
    assert_eq!(all_uids(&mut raw, "INBOX.Archive").await, [1, 2]);
    Box::new(s).close().await;
}

/// Cyrus: MOVE, UIDPLUS, CONDSTORE; a second session of ours is the other client.
#[tokio::test]
async fn cyrus_flags_conflicts_and_moves() {
    init();
    let user = ServerUser::create("cyrus");
    let cfg = settings(1993, &user.address, &user.password);
    let mut s = connect(&cfg).await;
    let mut other = connect(&cfg).await;
    let ext = s.extensions();
    assert!(ext.move_ && ext.uidplus && ext.condstore, "{ext:?}");
    let inbox = folder(&mut s, "INBOX").await;
    let archive = folder(&mut s, "Archive").await;
    let mids: Vec<String> = (0..3)
        .map(|i| format!("cy-{i}-{}@example.test", unique_suffix()))
        .collect();
    for m in &mids {
        s.append_seen("INBOX", &message(m)).await.unwrap();
    }
    let (_, cursor) = sync(&mut s, &inbox, &FolderCursor::Initial).await;
    let FolderCursor::Imap {
        uidvalidity: uv,
        highestmodseq: Some(modseq),
        ..
    } = cursor
    else {
        panic!("{cursor:?}")
    };
    let id = |u: u32| format!("{uv}:{u}");
    let other_inbox = folder(&mut other, "INBOX").await;
    let out = other
        .set_flag(&other_inbox, &[id(1)], FlagChange::Flagged(true), None)
        .await
        .unwrap();
    assert_eq!(out, [ActionOutcome::Done]);

    let out = s
        .set_flag(
            &inbox,
            &[id(1), id(2)],
            FlagChange::Seen(false),
            Some(modseq),
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        [
            ActionOutcome::Conflict("changed on the server since the last sync".into()),
            ActionOutcome::Done
        ]
    );

    let out = s
        .move_messages(
            &inbox,
            &archive,
            &[item(id(2), &mids[1], false), item(id(3), &mids[2], true)],
        )
        .await
        .unwrap();
    let archive_uv = uidvalidity(&s.current_cursor(&archive).await.unwrap());
    assert_eq!(moved_to(&out[0]), format!("{archive_uv}:1"));
    assert_eq!(moved_to(&out[1]), format!("{archive_uv}:2"));
    assert_eq!(
        s.find_message("Archive", &mids[2]).await.unwrap(),
        Some(format!("{archive_uv}:2"))
    );
    assert_eq!(s.find_message("INBOX", &mids[1]).await.unwrap(), None);
    Box::new(other).close().await;
    Box::new(s).close().await;
}
