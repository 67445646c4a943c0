//! Mailbox actions: what a CRM user does to mail (mark read, flag, move, trash, spam). An
//! action is written once per idempotency key with one item per message; the account's next
//! sync applies its pending items over the provider and records each outcome. Until then the
//! CRM shows the change with a `pending` marker (`mailfleet_shown_flags`,
//! `mailfleet_shown_folders`), while the stored flags and memberships stay the server's — so a
//! sync that runs before the action is applied can't flip the CRM's change back.

use crate::leases::Fence;
use crate::schema::{mailbox_action_items as mi, mailbox_actions as ma, message_folders};
use crate::{Conn, StoreError};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

/// An action as requested.
#[derive(Debug, Clone)]
pub struct NewAction {
    pub requested_by: i64,
    pub idempotency_key: String,
    pub request_sha256: Vec<u8>,
    pub action: String,
    pub folder: Option<String>,
}

/// One message of a new action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    pub message_id: i64,
    pub account_id: i64,
    /// Moves: the folder it leaves and the one it goes to.
    pub source_folder_id: Option<i64>,
    pub target_folder_id: Option<i64>,
}

/// What `create` did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New(i64),
    /// The same key and the same request: the action recorded the first time.
    Existing(i64),
    /// The key was used before for another request.
    KeyReused(i64),
}

/// Records an action and its items, once per (user, idempotency key).
pub async fn create(
    conn: &mut Conn,
    new: &NewAction,
    items: &[NewItem],
) -> Result<Created, StoreError> {
    let conn: &mut AsyncPgConnection = conn;
    conn.transaction(async |tx| {
        let inserted: Option<i64> = diesel::insert_into(ma::table)
            .values((
                ma::requested_by.eq(new.requested_by),
                ma::idempotency_key.eq(&new.idempotency_key),
                ma::request_sha256.eq(&new.request_sha256),
                ma::action.eq(&new.action),
                ma::folder.eq(&new.folder),
            ))
            .on_conflict((ma::requested_by, ma::idempotency_key))
            .do_nothing()
            .returning(ma::id)
            .get_result(tx)
            .await
            .optional()?;
        let Some(id) = inserted else {
            let (id, sha): (i64, Vec<u8>) = ma::table
                .filter(ma::requested_by.eq(new.requested_by))
                .filter(ma::idempotency_key.eq(&new.idempotency_key))
                .select((ma::id, ma::request_sha256))
                .first(tx)
                .await?;
            return Ok(if sha == new.request_sha256 {
                Created::Existing(id)
            } else {
                Created::KeyReused(id)
            });
        };
        let rows: Vec<_> = items
            .iter()
            .enumerate()
            .map(|(position, i)| {
                (
                    mi::action_id.eq(id),
                    mi::message_id.eq(i.message_id),
                    mi::account_id.eq(i.account_id),
                    mi::position.eq(position as i32),
                    mi::source_folder_id.eq(i.source_folder_id),
                    mi::target_folder_id.eq(i.target_folder_id),
                )
            })
            .collect();
        diesel::insert_into(mi::table)
            .values(&rows)
            .execute(tx)
            .await?;
        Ok(Created::New(id))
    })
    .await
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = ma, check_for_backend(diesel::pg::Pg))]
pub struct Action {
    pub id: i64,
    pub requested_by: Option<i64>,
    pub action: String,
    pub folder: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = mi, check_for_backend(diesel::pg::Pg))]
pub struct Item {
    pub message_id: i64,
    pub account_id: i64,
    pub state: String,
    pub error: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The action's state from its items': `pending` while any is; `done` when all are;
/// `conflict` or `failed` when none is done and all are that (failed wins a mix of the two);
/// `partial` when some are done and some are not.
pub fn state_of(items: &[Item]) -> &'static str {
    let count = |s: &str| items.iter().filter(|i| i.state == s).count();
    let (pending, done, conflict) = (count("pending"), count("done"), count("conflict"));
    if pending > 0 {
        "pending"
    } else if done == items.len() {
        "done"
    } else if done > 0 {
        "partial"
    } else if conflict == items.len() {
        "conflict"
    } else {
        "failed"
    }
}

/// The action and its items (in the request's order).
pub async fn get(conn: &mut Conn, id: i64) -> Result<(Action, Vec<Item>), StoreError> {
    let action: Action = ma::table
        .find(id)
        .select(Action::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(StoreError::NotFound { what: "action", id })?;
    let items = mi::table
        .filter(mi::action_id.eq(id))
        .order(mi::position)
        .select(Item::as_select())
        .load(conn)
        .await?;
    Ok((action, items))
}

/// A pending item as the worker applies it: the message's membership it acts on.
#[derive(Debug, Clone, QueryableByName)]
pub struct Pending {
    #[diesel(sql_type = BigInt)]
    pub action_id: i64,
    #[diesel(sql_type = BigInt)]
    pub message_id: i64,
    #[diesel(sql_type = Text)]
    pub action: String,
    /// The folder acted in: a move's source; for a flag change, each folder holding it.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub folder_id: Option<i64>,
    /// The message's id in that folder; `None`: the folder holds it no more.
    #[diesel(sql_type = Nullable<Text>)]
    pub remote_id: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub target_folder_id: Option<i64>,
    /// Its Message-ID header (a move's retry looks for it in the target).
    #[diesel(sql_type = Nullable<Text>)]
    pub header_message_id: Option<String>,
    /// An earlier attempt asked the provider already.
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
}

/// The account's pending items in the order they were asked for. A flag change comes once per
/// folder holding the message; a move once, from its source.
pub async fn pending(conn: &mut Conn, account_id: i64) -> Result<Vec<Pending>, StoreError> {
    Ok(diesel::sql_query(
        "SELECT i.action_id, i.message_id, a.action, i.target_folder_id, i.attempts,
                m.message_id AS header_message_id,
                COALESCE(i.source_folder_id, mf.folder_id) AS folder_id, mf.remote_id
         FROM mailbox_action_items i
         JOIN mailbox_actions a ON a.id = i.action_id
         LEFT JOIN messages m ON m.id = i.message_id
         LEFT JOIN message_folders mf ON mf.message_id = i.message_id
              AND (i.source_folder_id IS NULL OR mf.folder_id = i.source_folder_id)
         WHERE i.account_id = $1 AND i.state = 'pending'
         ORDER BY i.action_id, i.position, mf.folder_id",
    )
    .bind::<BigInt, _>(account_id)
    .load(conn)
    .await?)
}

/// Notes that the provider is about to be asked for these items: should the worker die
/// before their outcome is recorded, the next attempt looks before it moves again.
pub async fn mark_attempted(
    conn: &mut Conn,
    keys: &[(i64, i64)],
    fence: Option<Fence>,
) -> Result<(), StoreError> {
    let (actions, messages): (Vec<i64>, Vec<i64>) = keys.iter().copied().unzip();
    let conn: &mut AsyncPgConnection = conn;
    conn.transaction(async |tx| {
        crate::leases::check(tx, fence).await?;
        diesel::sql_query(
            "UPDATE mailbox_action_items i SET attempted_at = now(), attempts = attempts + 1
             FROM unnest($1::bigint[], $2::bigint[]) AS k(a, m)
             WHERE i.action_id = k.a AND i.message_id = k.m AND i.state = 'pending'",
        )
        .bind::<Array<BigInt>, _>(&actions)
        .bind::<Array<BigInt>, _>(&messages)
        .execute(tx)
        .await?;
        Ok(())
    })
    .await
}

/// How one item ended, and what it changes in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// A flag was set or cleared on the server: the stored flags follow.
    Flagged {
        flag: String,
        set: bool,
    },
    /// Moved: the membership leaves `from`; it joins `to` under `remote_id` when the target
    /// is active and its id is known (else the target's sync finds it, or, inactive, it
    /// leaves the CRM).
    Moved {
        from: i64,
        to: i64,
        remote_id: Option<String>,
    },
    /// Nothing to do (a move to the folder it is in).
    Unchanged,
    Conflict(String),
    Failed(String),
}

/// Records an item's outcome, with what it changes, under the account's lease.
pub async fn finish(
    conn: &mut Conn,
    action_id: i64,
    message_id: i64,
    outcome: &Finished,
    fence: Option<Fence>,
) -> Result<(), StoreError> {
    let conn: &mut AsyncPgConnection = conn;
    conn.transaction(async |tx| {
        crate::leases::check(tx, fence).await?;
        let (state, error) = match outcome {
            Finished::Flagged { flag, set } => {
                let sql = if *set {
                    "UPDATE messages SET flags = ARRAY(SELECT DISTINCT f FROM
                         unnest(array_append(flags, $2)) AS f ORDER BY f) WHERE id = $1"
                } else {
                    "UPDATE messages SET flags = array_remove(flags, $2) WHERE id = $1"
                };
                diesel::sql_query(sql)
                    .bind::<BigInt, _>(message_id)
                    .bind::<Text, _>(flag)
                    .execute(tx)
                    .await?;
                ("done", None)
            }
            Finished::Moved {
                from,
                to,
                remote_id,
            } => {
                let target_active: bool = crate::schema::folders::table
                    .find(*to)
                    .select(crate::schema::folders::active)
                    .first(tx)
                    .await
                    .optional()?
                    .unwrap_or(false);
                if let (true, Some(remote_id)) = (target_active, remote_id) {
                    diesel::insert_into(message_folders::table)
                        .values((
                            message_folders::message_id.eq(message_id),
                            message_folders::folder_id.eq(*to),
                            message_folders::remote_id.eq(remote_id),
                        ))
                        .on_conflict_do_nothing()
                        .execute(tx)
                        .await?;
                }
                // Left in no folder (an inactive target, an unknown id), it is an orphan:
                // found in the target by its sync, or deleted after the next complete one.
                diesel::delete(
                    message_folders::table
                        .filter(message_folders::message_id.eq(message_id))
                        .filter(message_folders::folder_id.eq(*from)),
                )
                .execute(tx)
                .await?;
                ("done", None)
            }
            Finished::Unchanged => ("done", None),
            Finished::Conflict(why) => ("conflict", Some(why.as_str())),
            Finished::Failed(why) => ("failed", Some(why.as_str())),
        };
        diesel::update(mi::table.find((action_id, message_id)))
            .set((
                mi::state.eq(state),
                mi::error.eq(error),
                mi::finished_at.eq(diesel::dsl::now),
            ))
            .execute(tx)
            .await?;
        Ok(())
    })
    .await
}
