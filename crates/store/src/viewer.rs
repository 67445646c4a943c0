//! Messages as one user may see them. Every read here runs as the database role
//! `mailfleet_viewer` with the acting user (and, on a contact's profile, the contact) set
//! for the transaction, so Postgres' row-level security decides what is visible — not a
//! WHERE clause that a new query could forget (see the migration that creates the policies).

use crate::{Conn, StoreError};
use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

/// Who is looking, and from where.
#[derive(Debug, Clone, Copy)]
pub struct Viewer {
    pub user_id: i64,
    /// Set on a contact's profile: messages linked to this contact are visible too, from
    /// anyone's account.
    pub profile_contact: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub account_id: Option<i64>,
    /// One message (`GET /v1/messages/{id}`).
    pub id: Option<i64>,
    pub folder: Option<String>,
    pub contact_id: Option<i64>,
    pub thread_key: Option<String>,
    /// Keyset: continue after this (sort time, id).
    pub after: Option<(DateTime<Utc>, i64)>,
    pub limit: i64,
}

#[derive(Debug, Clone, diesel::QueryableByName, serde::Serialize)]
pub struct MessageSummary {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub account_id: i64,
    /// Its first folder (by name); `None` when the folders are in an account the viewer
    /// can't read (a message seen on a contact's profile).
    #[diesel(sql_type = Nullable<Text>)]
    pub folder: Option<String>,
    /// Every folder that holds it (a Gmail message with three labels is in three).
    #[diesel(sql_type = Array<Text>)]
    pub folders: Vec<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub message_id: Option<String>,
    #[diesel(sql_type = Text)]
    pub thread_key: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub subject: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub from_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub from_email: Option<String>,
    #[diesel(sql_type = Array<Text>)]
    pub to: Vec<String>,
    #[diesel(sql_type = Array<Text>)]
    pub cc: Vec<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub sent_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub received_at: Option<DateTime<Utc>>,
    /// As the CRM shows them: with pending actions applied.
    #[diesel(sql_type = Array<Text>)]
    pub flags: Vec<String>,
    /// A mailbox action on it is not confirmed by the server yet.
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub pending: bool,
    #[diesel(sql_type = Nullable<Text>)]
    pub snippet: Option<String>,
    #[diesel(sql_type = Jsonb)]
    pub attachments: serde_json::Value,
    #[diesel(sql_type = Timestamptz)]
    #[serde(skip)]
    pub sort_at: DateTime<Utc>,
}

/// Inside a transaction: from here on, read as `viewer` (role `mailfleet_viewer`, the
/// settings the policies read). Both are `LOCAL`: they end with the transaction and never
/// leak into the pool.
async fn become_viewer(tx: &mut AsyncPgConnection, viewer: Viewer) -> Result<(), StoreError> {
    diesel::sql_query(
        "SELECT set_config('mailfleet.viewer_id', $1, true),
                set_config('mailfleet.contact_id', $2, true)",
    )
    .bind::<Text, _>(viewer.user_id.to_string())
    .bind::<Text, _>(
        viewer
            .profile_contact
            .map(|c| c.to_string())
            .unwrap_or_default(),
    )
    .execute(tx)
    .await?;
    diesel::sql_query("SET LOCAL ROLE mailfleet_viewer")
        .execute(tx)
        .await?;
    Ok(())
}

const SORT_AT: &str = "COALESCE(m.received_at, m.sent_at, m.created_at)";

/// Newest first, at most `filter.limit`.
pub async fn list_messages(
    conn: &mut Conn,
    viewer: Viewer,
    filter: &MessageFilter,
) -> Result<Vec<MessageSummary>, StoreError> {
    let conn: &mut AsyncPgConnection = conn;
    conn.transaction(async |tx| {
        become_viewer(tx, viewer).await?;
        let (after_at, after_id) = match filter.after {
            Some((at, id)) => (Some(at), Some(id)),
            None => (None, None),
        };
        let rows = diesel::sql_query(format!(
            "SELECT m.id, m.account_id, fs.names[1] AS folder, fs.names AS folders,
                    m.message_id, m.thread_key, m.subject,
                    m.from_name, m.from_email,
                    ARRAY(SELECT a.email FROM message_addresses a
                          WHERE a.message_id = m.id AND a.field = 'to' ORDER BY a.position) AS to,
                    ARRAY(SELECT a.email FROM message_addresses a
                          WHERE a.message_id = m.id AND a.field = 'cc' ORDER BY a.position) AS cc,
                    m.sent_at, m.received_at, mailfleet_shown_flags(m.flags, m.id) AS flags,
                    mailfleet_action_pending(m.id) AS pending, left(m.text_body, 200) AS snippet,
                    m.attachments, {SORT_AT} AS sort_at
             FROM messages m
             CROSS JOIN LATERAL (
                 SELECT ARRAY(SELECT f.name FROM folders f
                              WHERE f.id = ANY(mailfleet_shown_folders(m.id))
                              ORDER BY f.name) AS names) fs
             WHERE ($1::bigint IS NULL OR m.account_id = $1)
               AND ($2::text IS NULL OR $2 = ANY(fs.names))
               AND ($3::bigint IS NULL OR EXISTS (SELECT 1 FROM message_contacts mc
                                                  WHERE mc.message_id = m.id AND mc.contact_id = $3))
               AND ($4::text IS NULL OR m.thread_key = $4)
               AND ($5::timestamptz IS NULL OR ({SORT_AT}, m.id) < ($5, $6))
               AND ($8::bigint IS NULL OR m.id = $8)
             ORDER BY {SORT_AT} DESC, m.id DESC
             LIMIT $7"
        ))
        .bind::<Nullable<BigInt>, _>(filter.account_id)
        .bind::<Nullable<Text>, _>(filter.folder.as_deref())
        .bind::<Nullable<BigInt>, _>(filter.contact_id)
        .bind::<Nullable<Text>, _>(filter.thread_key.as_deref())
        .bind::<Nullable<Timestamptz>, _>(after_at)
        .bind::<Nullable<BigInt>, _>(after_id)
        .bind::<BigInt, _>(filter.limit)
        .bind::<Nullable<BigInt>, _>(filter.id)
        .load::<MessageSummary>(tx)
        .await?;
        Ok(rows)
    })
    .await
}

/// One message as `viewer` may see it; `None` when they may not (or it is gone).
pub async fn get_message(
    conn: &mut Conn,
    viewer: Viewer,
    id: i64,
) -> Result<Option<MessageSummary>, StoreError> {
    let filter = MessageFilter {
        id: Some(id),
        limit: 1,
        ..MessageFilter::default()
    };
    Ok(list_messages(conn, viewer, &filter).await?.pop())
}

/// Of `ids`, the messages `viewer` may see in their own accounts (not through a contact's
/// profile), with their account and the first folder (id) the CRM shows them in.
pub async fn acted_on(
    conn: &mut Conn,
    viewer: i64,
    ids: &[i64],
) -> Result<Vec<(i64, i64, Option<i64>)>, StoreError> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = BigInt)]
        account_id: i64,
        #[diesel(sql_type = Nullable<BigInt>)]
        folder_id: Option<i64>,
    }
    let conn: &mut AsyncPgConnection = conn;
    let ids = ids.to_vec();
    conn.transaction(async |tx| {
        become_viewer(
            tx,
            Viewer {
                user_id: viewer,
                profile_contact: None,
            },
        )
        .await?;
        let rows: Vec<Row> = diesel::sql_query(
            "SELECT m.id, m.account_id,
                    (SELECT f.id FROM folders f WHERE f.id = ANY(mailfleet_shown_folders(m.id))
                     ORDER BY f.role = 'inbox' DESC, f.name LIMIT 1) AS folder_id
             FROM messages m WHERE m.id = ANY($1)",
        )
        .bind::<Array<BigInt>, _>(&ids)
        .load(tx)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.id, r.account_id, r.folder_id))
            .collect())
    })
    .await
}

/// Whether `viewer` may read the account's mail (owner; shared: administrators and granted
/// users) — the same rule the policies apply.
pub async fn may_read_account(
    conn: &mut Conn,
    account_id: i64,
    user_id: i64,
) -> Result<bool, StoreError> {
    #[derive(diesel::QueryableByName)]
    struct B {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        ok: bool,
    }
    let r: B = diesel::sql_query("SELECT mailfleet_may_read_account($1, $2) AS ok")
        .bind::<BigInt, _>(account_id)
        .bind::<BigInt, _>(user_id)
        .get_result(conn)
        .await?;
    Ok(r.ok)
}
