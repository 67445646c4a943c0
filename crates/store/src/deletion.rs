//! Deleting accounts and users. A large mailbox goes in batches, each its own short
//! statement, so no table is locked for long; the account is fenced off first, so a sync in
//! flight stops at its next write and no new job touches it.

use crate::schema::{accounts, deleted_accounts, users};
use crate::{Conn, StoreError};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

/// What a deletion removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    pub accounts: usize,
    pub messages: usize,
}

/// Deletes an account, its messages (in batches of `batch`), folders and outgoing mail, and
/// leaves a tombstone so that jobs still queued for it are dropped quietly.
pub async fn delete_account(conn: &mut Conn, id: i64, batch: i64) -> Result<Deleted, StoreError> {
    // Fence: a new lease token makes every write of a running sync fail its check; the
    // lease never expires, so no worker takes the account again; disabled, so none tries.
    let found = diesel::sql_query(
        "UPDATE accounts SET state = 'disabled', disabled_reason = 'deleting',
                last_error = 'the account is being deleted',
                lease_token = lease_token + 1, lease_expires_at = 'infinity'
         WHERE id = $1",
    )
    .bind::<BigInt, _>(id)
    .execute(conn)
    .await?;
    if found == 0 {
        return Err(StoreError::NotFound {
            what: "account",
            id,
        });
    }
    let mut messages = 0;
    loop {
        let n = diesel::sql_query(
            "DELETE FROM messages WHERE id IN
                 (SELECT id FROM messages WHERE account_id = $1 LIMIT $2)",
        )
        .bind::<BigInt, _>(id)
        .bind::<BigInt, _>(batch.max(1))
        .execute(conn)
        .await?;
        messages += n;
        if n == 0 {
            break;
        }
    }
    let conn: &mut AsyncPgConnection = conn;
    conn.transaction(async |tx| {
        diesel::insert_into(deleted_accounts::table)
            .values(deleted_accounts::account_id.eq(id))
            .on_conflict_do_nothing()
            .execute(tx)
            .await?;
        diesel::delete(accounts::table.find(id)).execute(tx).await?;
        Ok::<_, StoreError>(())
    })
    .await?;
    Ok(Deleted {
        accounts: 1,
        messages,
    })
}

/// Deletes a user with their personal accounts and all of those accounts' mail. Shared
/// accounts they happened to own and contacts stay.
pub async fn delete_user(conn: &mut Conn, user_id: i64, batch: i64) -> Result<Deleted, StoreError> {
    users::table
        .find(user_id)
        .select(users::id)
        .first::<i64>(conn)
        .await
        .optional()?
        .ok_or(StoreError::NotFound {
            what: "user",
            id: user_id,
        })?;
    diesel::update(
        accounts::table
            .filter(accounts::owner_user_id.eq(user_id))
            .filter(accounts::kind.eq("shared")),
    )
    .set(accounts::owner_user_id.eq(None::<i64>))
    .execute(conn)
    .await?;
    let personal: Vec<i64> = accounts::table
        .filter(accounts::owner_user_id.eq(user_id))
        .select(accounts::id)
        .load(conn)
        .await?;
    let mut total = Deleted::default();
    for id in personal {
        let d = delete_account(conn, id, batch).await?;
        total.accounts += d.accounts;
        total.messages += d.messages;
    }
    diesel::delete(users::table.find(user_id))
        .execute(conn)
        .await?;
    Ok(total)
}

/// Whether the account existed and was deleted (its jobs are void, not poison).
pub async fn was_deleted(conn: &mut Conn, account_id: i64) -> Result<bool, StoreError> {
    Ok(deleted_accounts::table
        .find(account_id)
        .select(deleted_accounts::account_id)
        .first::<i64>(conn)
        .await
        .optional()?
        .is_some())
}
