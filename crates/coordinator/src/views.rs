//! JSON shapes of the API. Never includes credentials.

use chrono::{DateTime, Utc};
use mailfleet_store::folders::MessageCounts;
use mailfleet_store::models::{Account, Folder, User};
use serde::Serialize;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: i64,
    pub email: String,
    pub name: Option<String>,
    pub is_admin: bool,
    pub created_at: DateTime<Utc>,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            email: u.email,
            name: u.name,
            is_admin: u.is_admin,
            created_at: u.created_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointView {
    pub host: Option<String>,
    pub port: Option<i32>,
    pub encryption: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FolderView {
    pub name: String,
    pub role: Option<String>,
    pub active: bool,
    pub selectable: bool,
    pub message_count: i64,
    pub last_synced_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountView {
    pub id: i64,
    pub provider: String,
    pub kind: String,
    pub owner_user_id: Option<i64>,
    pub email: String,
    pub username: Option<String>,
    pub imap: EndpointView,
    pub smtp: EndpointView,
    pub allow_insecure_cert: bool,
    pub sync_from: String,
    pub sync_window_start: DateTime<Utc>,
    pub create_contacts: bool,
    pub is_primary: bool,
    pub state: String,
    pub disabled_reason: Option<String>,
    pub last_error: Option<String>,
    /// `syncing` while a worker holds the account, `queued` while its job waits, else `idle`.
    pub sync_status: &'static str,
    pub last_synced_at: Option<DateTime<Utc>>,
    pub message_count: i64,
    pub folders: Vec<FolderView>,
    pub created_at: DateTime<Utc>,
}

impl AccountView {
    pub fn new(a: Account, folders: Vec<Folder>, counts: &MessageCounts) -> Self {
        let folders: Vec<FolderView> = folders
            .into_iter()
            .map(|f| FolderView {
                message_count: counts.per_folder.get(&f.id).copied().unwrap_or(0),
                name: f.name,
                role: f.role,
                active: f.active,
                selectable: f.selectable,
                last_synced_at: f.last_synced_at,
            })
            .collect();
        Self {
            id: a.id,
            provider: a.provider,
            kind: a.kind,
            owner_user_id: a.owner_user_id,
            email: a.email,
            username: a.username,
            imap: EndpointView {
                host: a.imap_host,
                port: a.imap_port,
                encryption: a.imap_encryption,
            },
            smtp: EndpointView {
                host: a.smtp_host,
                port: a.smtp_port,
                encryption: a.smtp_encryption,
            },
            allow_insecure_cert: a.allow_insecure_cert,
            sync_from: a.sync_from,
            sync_window_start: a.sync_window_start,
            create_contacts: a.create_contacts,
            is_primary: a.is_primary,
            state: a.state,
            disabled_reason: a.disabled_reason,
            last_error: a.last_error,
            sync_status: if a.lease_expires_at.is_some_and(|t| t > Utc::now()) {
                "syncing"
            } else if a.sync_queued_at.is_some() {
                "queued"
            } else {
                "idle"
            },
            last_synced_at: a.last_synced_at,
            message_count: counts.total,
            folders,
            created_at: a.created_at,
        }
    }
}

/// A message in a list, as the acting user may see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessageView {
    pub id: i64,
    pub account_id: i64,
    /// Its first folder by name; `null` when its folders are in an account the user can't
    /// read (a message seen on a contact's profile).
    pub folder: Option<String>,
    /// Every folder that holds it: one message row, several folders (a Gmail message with
    /// several labels; a copy found in another folder).
    pub folders: Vec<String>,
    /// The Message-ID without angle brackets.
    pub message_id: Option<String>,
    pub thread_key: String,
    pub subject: Option<String>,
    pub from_name: Option<String>,
    pub from_email: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub received_at: Option<DateTime<Utc>>,
    /// As the CRM shows them: pending mailbox actions applied.
    pub flags: Vec<String>,
    /// A mailbox action on the message waits for the server's confirmation; `flags` and
    /// `folders` already show it.
    pub pending: bool,
    /// The first 200 characters of the text body.
    pub snippet: Option<String>,
    /// `[{"filename", "content_type", "size", "content_id", "inline"}]`
    pub attachments: serde_json::Value,
}

impl From<mailfleet_store::viewer::MessageSummary> for MessageView {
    fn from(m: mailfleet_store::viewer::MessageSummary) -> Self {
        Self {
            id: m.id,
            account_id: m.account_id,
            folder: m.folder,
            folders: m.folders,
            message_id: m.message_id,
            thread_key: m.thread_key,
            subject: m.subject,
            from_name: m.from_name,
            from_email: m.from_email,
            to: m.to,
            cc: m.cc,
            sent_at: m.sent_at,
            received_at: m.received_at,
            flags: m.flags,
            pending: m.pending,
            snippet: m.snippet,
            attachments: m.attachments,
        }
    }
}
