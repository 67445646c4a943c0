//! Rows as read from and written to the tables.

use crate::schema::*;
use chrono::{DateTime, Utc};
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct User {
    pub id: i64,
    pub email: String,
    pub name: Option<String>,
    pub is_admin: bool,
    pub signature_text: Option<String>,
    pub signature_html: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub email: &'a str,
    pub name: Option<&'a str>,
    pub is_admin: bool,
}

/// An account row. `credentials` stays sealed here; only the worker opens it.
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = accounts, check_for_backend(diesel::pg::Pg))]
pub struct Account {
    pub id: i64,
    pub provider: String,
    pub kind: String,
    pub owner_user_id: Option<i64>,
    pub email: String,
    pub username: Option<String>,
    pub credentials: Vec<u8>,
    pub imap_host: Option<String>,
    pub imap_port: Option<i32>,
    pub imap_encryption: Option<String>,
    pub smtp_host: Option<String>,
    pub smtp_port: Option<i32>,
    pub smtp_encryption: Option<String>,
    pub allow_insecure_cert: bool,
    pub sync_from: String,
    pub sync_window_start: DateTime<Utc>,
    pub create_contacts: bool,
    pub is_primary: bool,
    pub state: String,
    pub disabled_reason: Option<String>,
    pub last_error: Option<String>,
    pub last_synced_at: Option<DateTime<Utc>>,
    pub last_sync_attempt_at: Option<DateTime<Utc>>,
    pub sync_queued_at: Option<DateTime<Utc>>,
    pub sync_requested: bool,
    pub created_at: DateTime<Utc>,
    pub folders_refreshed_at: DateTime<Utc>,
    pub refresh_queued_at: Option<DateTime<Utc>>,
    pub lease_token: i64,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub consecutive_failures: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("id", &self.id)
            .field("provider", &self.provider)
            .field("email", &self.email)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = accounts)]
pub struct NewAccount {
    pub id: i64,
    pub provider: String,
    pub kind: String,
    pub owner_user_id: Option<i64>,
    pub email: String,
    pub username: Option<String>,
    pub credentials: Vec<u8>,
    pub imap_host: Option<String>,
    pub imap_port: Option<i32>,
    pub imap_encryption: Option<String>,
    pub smtp_host: Option<String>,
    pub smtp_port: Option<i32>,
    pub smtp_encryption: Option<String>,
    pub allow_insecure_cert: bool,
    pub sync_from: String,
    pub sync_window_start: DateTime<Utc>,
    pub create_contacts: bool,
    pub sync_requested: bool,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = folders, check_for_backend(diesel::pg::Pg))]
pub struct Folder {
    pub id: i64,
    pub account_id: i64,
    pub name: String,
    pub delimiter: Option<String>,
    pub role: Option<String>,
    pub active: bool,
    pub selectable: bool,
    pub uidvalidity: Option<i64>,
    pub uidnext: Option<i64>,
    pub highestmodseq: Option<i64>,
    pub history_id: Option<String>,
    pub delta_link: Option<String>,
    pub last_synced_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub uidvalidity_changes: i32,
    pub rebaselining: bool,
    pub remote_id: Option<String>,
}

/// A message to store, as parsed, with the folder it was found in.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub account_id: i64,
    /// Where it was found: the membership stored with it.
    pub folder_id: i64,
    /// Its id within that folder (IMAP "uidvalidity:uid").
    pub remote_id: String,
    /// The provider's id of the message itself, where one survives moves (EMAILID, Gmail
    /// id, Graph immutable id).
    pub provider_id: Option<String>,
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub reference_ids: Vec<String>,
    pub thread_key: String,
    pub subject: Option<String>,
    pub from_name: Option<String>,
    pub from_email: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub received_at: Option<DateTime<Utc>>,
    pub size_bytes: i64,
    pub flags: Vec<String>,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
    pub attachments: serde_json::Value,
    /// BLAKE3 of the raw message.
    pub content_hash: Vec<u8>,
    pub parse_problem: Option<String>,
}

/// One address of a message, before the message has its row id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressEntry {
    pub field: &'static str,
    pub position: i32,
    pub name: Option<String>,
    pub email: String,
}

/// A message in the outbox.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = outgoing_messages, check_for_backend(diesel::pg::Pg))]
pub struct Outgoing {
    pub id: i64,
    pub account_id: i64,
    pub kind: String,
    pub sender_user_id: Option<i64>,
    pub idempotency_key: String,
    pub status: String,
    pub message_id: String,
    pub to_addrs: serde_json::Value,
    pub cc_addrs: serde_json::Value,
    pub bcc_addrs: serde_json::Value,
    pub subject: Option<String>,
    pub in_reply_to_message: Option<i64>,
    pub raw_message: Vec<u8>,
    pub envelope_from: String,
    pub envelope_to: Vec<String>,
    pub attachments: serde_json::Value,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub claimed_until: Option<DateTime<Utc>>,
    pub data_started_at: Option<DateTime<Utc>>,
    pub server_reply: Option<String>,
    pub error_code: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub sent_copy_filed_at: Option<DateTime<Utc>>,
    pub sent_copy_message_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = outgoing_messages)]
pub struct NewOutgoing {
    pub account_id: i64,
    pub kind: String,
    pub sender_user_id: Option<i64>,
    pub idempotency_key: String,
    pub request_sha256: Option<Vec<u8>>,
    pub message_id: String,
    pub to_addrs: serde_json::Value,
    pub cc_addrs: serde_json::Value,
    pub bcc_addrs: serde_json::Value,
    pub subject: Option<String>,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
    pub in_reply_to_message: Option<i64>,
    pub raw_message: Vec<u8>,
    pub envelope_from: String,
    pub envelope_to: Vec<String>,
    pub attachments: serde_json::Value,
}
