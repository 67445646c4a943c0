//! What every mail provider (IMAP, Gmail, Microsoft Graph) offers the sync engine, and the
//! types they exchange. A provider knows nothing of Postgres or RabbitMQ.
//!
//! The sync engine asks a [`MailSession`] for the folder list, then, folder by folder, for
//! [`ChangeBatch`]es that start at a stored [`FolderCursor`]. Each batch carries the cursor to
//! store with it, so that a crash resumes after the last committed batch. The cursor is
//! provider-shaped: IMAP's UIDVALIDITY/UIDNEXT/HIGHESTMODSEQ, Gmail's historyId, Graph's
//! deltaLink.

mod connector;
mod error;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use connector::{AccountAccess, Connector, ServiceSettings, TestFailed, TokenStore};
pub use error::{ErrorClass, ProviderError};

/// The special use of a folder (RFC 6154), or Gmail/Graph's equivalent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FolderRole {
    Inbox,
    Sent,
    Drafts,
    Trash,
    Junk,
    Archive,
    All,
    Flagged,
}

impl FolderRole {
    pub fn as_str(self) -> &'static str {
        match self {
            FolderRole::Inbox => "inbox",
            FolderRole::Sent => "sent",
            FolderRole::Drafts => "drafts",
            FolderRole::Trash => "trash",
            FolderRole::Junk => "junk",
            FolderRole::Archive => "archive",
            FolderRole::All => "all",
            FolderRole::Flagged => "flagged",
        }
    }

    /// Folders the first sync leaves out by default (the spec: skip Trash and Spam/Junk;
    /// drafts are not synced).
    pub fn skipped_by_default(self) -> bool {
        matches!(
            self,
            FolderRole::Trash | FolderRole::Junk | FolderRole::Drafts
        )
    }
}

/// A folder (IMAP mailbox, Gmail label, Graph mailFolder) as the server lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFolder {
    /// The name the server knows it by (IMAP: the full path; Gmail/Graph: the display path).
    pub name: String,
    /// Provider id where the server gives stable ids (Gmail label id, Graph folder id,
    /// IMAP MAILBOXID); `None` for plain IMAP.
    pub remote_id: Option<String>,
    pub delimiter: Option<String>,
    pub role: Option<FolderRole>,
    pub selectable: bool,
}

/// Where a folder's sync stands. `Initial` means nothing was synced yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderCursor {
    Initial,
    Imap {
        uidvalidity: u32,
        uidnext: u32,
        highestmodseq: Option<u64>,
    },
    Gmail {
        history_id: u64,
    },
    Graph {
        delta_link: String,
    },
}

/// A message as fetched: the raw RFC 5322 bytes and what the server knows of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedMessage {
    /// Unique within the folder (IMAP: "uidvalidity:uid").
    pub remote_id: String,
    /// The message's own id where the provider keeps one across folders and moves (IMAP
    /// EMAILID, RFC 8474; Gmail's message id; Graph's immutable id): the same message found
    /// in another folder is then known for certain, not by Message-ID and size.
    pub provider_id: Option<String>,
    /// IMAP system flags and keywords (`\Seen`, `\Flagged`, …); Gmail/Graph map to these.
    pub flags: Vec<String>,
    pub received_at: Option<DateTime<Utc>>,
    pub raw: Vec<u8>,
}

/// New flags of a message already stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagUpdate {
    pub remote_id: String,
    pub flags: Vec<String>,
}

/// Stored messages that are gone from the folder on the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Removed {
    #[default]
    Nothing,
    /// These remote ids are gone (QRESYNC VANISHED, Gmail history, Graph `@removed`).
    These(Vec<String>),
    /// Every stored message but these is gone (a server without QRESYNC lists what exists).
    AllBut(Vec<String>),
    /// The folder's ids are void (UIDVALIDITY changed): what is stored is re-matched or gone.
    All,
}

/// A message the server holds under a new id whose copy is stored already (under the folder's
/// old ids, after an IMAP UIDVALIDITY change): identified by Message-ID and size, its body is
/// not downloaded again; the stored row takes the new id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifiedMessage {
    pub remote_id: String,
    /// Without angle brackets.
    pub message_id: String,
    pub size: u64,
    pub flags: Vec<String>,
}

/// What a re-baselining folder holds already: for each (Message-ID, size), how many stored
/// copies still carry an old id. Implemented by the sync engine over the store.
#[async_trait]
pub trait StoredCopies: Send + Sync {
    async fn count(
        &self,
        keys: &[(String, u64)],
    ) -> Result<std::collections::HashMap<(String, u64), u32>, ProviderError>;
}

/// One step of a folder's sync: what changed, and the cursor to store with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeBatch {
    pub new_messages: Vec<FetchedMessage>,
    /// Re-baseline only: messages whose stored copies take these new ids (no body fetched).
    pub identified: Vec<IdentifiedMessage>,
    pub flag_updates: Vec<FlagUpdate>,
    pub removed: Removed,
    pub next_cursor: FolderCursor,
    /// More batches follow for this folder in this sync.
    pub more: bool,
}

impl ChangeBatch {
    /// Nothing changed; store `cursor`.
    pub fn unchanged(cursor: FolderCursor) -> Self {
        Self {
            new_messages: Vec::new(),
            identified: Vec::new(),
            flag_updates: Vec::new(),
            removed: Removed::Nothing,
            next_cursor: cursor,
            more: false,
        }
    }
}

/// What the sync may fetch: nothing received before `since`, at most `max_messages` and
/// about `max_bytes` per batch (a batch is committed as one transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    pub since: DateTime<Utc>,
    pub max_messages: usize,
    pub max_bytes: usize,
}

/// A flag the CRM sets or clears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagChange {
    /// Read (`\Seen`) or unread.
    Seen(bool),
    /// Flagged (`\Flagged`, Gmail's star, Graph's follow-up flag) or not.
    Flagged(bool),
}

impl FlagChange {
    /// The IMAP flag it is about (how flags are stored, whatever the provider).
    pub fn flag(self) -> &'static str {
        match self {
            FlagChange::Seen(_) => "\\Seen",
            FlagChange::Flagged(_) => "\\Flagged",
        }
    }

    pub fn set(self) -> bool {
        match self {
            FlagChange::Seen(on) | FlagChange::Flagged(on) => on,
        }
    }
}

/// A message to move, as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveItem {
    /// Its id in the source folder.
    pub remote_id: String,
    /// Its Message-ID (without angle brackets), to find it in the target after an
    /// interruption.
    pub message_id: Option<String>,
    /// An earlier attempt may have moved (or copied) it already: look in the target first,
    /// so that it is never moved or copied twice.
    pub retry: bool,
}

/// What became of one message of an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionOutcome {
    /// Applied.
    Done,
    /// Moved; its id in the target folder where the provider tells it (IMAP COPYUID, a found
    /// copy; Gmail keeps the id; Graph answers the moved message).
    Moved { remote_id: Option<String> },
    /// Changed on the server since the CRM last saw it (IMAP `UNCHANGEDSINCE` answered
    /// `MODIFIED`): not overwritten.
    Conflict(String),
    /// Not on the server (any more): nothing was done.
    Gone,
}

/// An authenticated session with one account's mail service.
#[async_trait]
pub trait MailSession: Send {
    /// Every folder the account has, selectable or not.
    async fn list_folders(&mut self) -> Result<Vec<RemoteFolder>, ProviderError>;

    /// The folder's position now, without fetching anything: a cursor from which a later sync
    /// sees only newer mail (how the first sync skips Trash and Junk).
    async fn current_cursor(
        &mut self,
        folder: &RemoteFolder,
    ) -> Result<FolderCursor, ProviderError>;

    /// The next batch of changes in `folder` after `cursor`. Calling again with the returned
    /// cursor continues; a batch with `more == false` ends the folder's sync. When the
    /// folder's ids turned void (`Removed::All`), a provider may consult `stored` to report
    /// messages it holds a copy of as `identified` instead of downloading them again.
    async fn next_changes(
        &mut self,
        folder: &RemoteFolder,
        cursor: &FolderCursor,
        limits: FetchLimits,
        stored: &dyn StoredCopies,
    ) -> Result<ChangeBatch, ProviderError>;

    /// The remote id of the message with this Message-ID (without angle brackets) in
    /// `folder`, if it is there. How a sent message's copy is found before filing it twice.
    async fn find_message(
        &mut self,
        folder: &str,
        message_id: &str,
    ) -> Result<Option<String>, ProviderError>;

    /// Files `raw` in `folder` as read (`\Seen`): the copy of a message sent by SMTP.
    async fn append_seen(&mut self, folder: &str, raw: &[u8]) -> Result<(), ProviderError>;

    /// Creates a folder (e.g. Sent, on a server that has none).
    async fn create_folder(&mut self, name: &str) -> Result<(), ProviderError>;

    /// Sets or clears a flag on messages of `folder` (by remote id), one outcome per message
    /// in the order given. `unchanged_since` is the folder's modification sequence when the
    /// CRM last synced it: a message changed on the server after it is left alone and
    /// reported as `Conflict` (IMAP CONDSTORE `UNCHANGEDSINCE`; ignored where the provider
    /// has no such thing).
    async fn set_flag(
        &mut self,
        folder: &RemoteFolder,
        remote_ids: &[String],
        change: FlagChange,
        unchanged_since: Option<u64>,
    ) -> Result<Vec<ActionOutcome>, ProviderError>;

    /// Moves messages from `folder` to `target`, one outcome per message in the order given
    /// (`Moved` with the id in `target` when known, or `Gone`). Never moves or copies a
    /// message twice, even when called again after an interruption (`MoveItem::retry`).
    async fn move_messages(
        &mut self,
        folder: &RemoteFolder,
        target: &RemoteFolder,
        messages: &[MoveItem],
    ) -> Result<Vec<ActionOutcome>, ProviderError>;

    /// Ends the session politely (IMAP LOGOUT); errors are of no interest at that point.
    async fn close(self: Box<Self>);
}

/// Why a message was not handed over.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    /// The server refused it with this reply; `transient` for 4xx (try again later).
    #[error("the server refused the message: {reply}")]
    Refused { transient: bool, reply: String },
    /// The connection failed while the message was on its way: it may have been accepted.
    #[error("the connection failed during the transfer: {0}")]
    Interrupted(String),
    /// Nothing was handed over (connection, TLS or authentication trouble).
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

/// Hands outgoing mail to a provider in two steps, so that the caller can record the point
/// after which an interrupted send may have been delivered (and must not be repeated).
#[async_trait]
pub trait MailSubmission: Send {
    /// Opens the envelope (SMTP `MAIL FROM`, `RCPT TO`). Nothing is delivered yet.
    async fn begin(&mut self, from: &str, recipients: &[String]) -> Result<(), SubmitError>;

    /// Transfers the message; `Ok` carries the server's acceptance reply.
    async fn transmit(&mut self, raw: &[u8]) -> Result<String, SubmitError>;

    /// Whether the provider files a copy of sent mail by itself (Gmail, Graph): then no
    /// copy is appended to Sent.
    fn files_sent_copy(&self) -> bool {
        false
    }

    async fn close(self: Box<Self>);
}
