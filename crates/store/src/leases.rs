//! One worker per mailbox. A worker takes an account's lease before it talks to the server,
//! renews it while it works, and every write of its sync checks the lease's fencing token in
//! the same transaction: a worker that was frozen past its lease (GC pause, SIGSTOP, a lost
//! network) and wakes up after another took over commits nothing.

use crate::{Conn, StoreError};
use diesel::sql_types::BigInt;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// Proof of holding an account's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    pub account_id: i64,
    pub token: i64,
}

#[derive(diesel::QueryableByName)]
struct TokenRow {
    #[diesel(sql_type = BigInt)]
    lease_token: i64,
}

/// Takes the lease when it is free or expired; `None` when another worker holds it. `owner`
/// names the worker in the log line that records a takeover.
pub async fn acquire(
    conn: &mut Conn,
    account_id: i64,
    owner: &str,
    ttl_secs: i64,
) -> Result<Option<Fence>, StoreError> {
    let rows: Vec<TokenRow> = diesel::sql_query(
        "UPDATE accounts
            SET lease_token = lease_token + 1,
                lease_expires_at = now() + $2 * interval '1 second'
          WHERE id = $1 AND (lease_expires_at IS NULL OR lease_expires_at < now())
          RETURNING lease_token",
    )
    .bind::<BigInt, _>(account_id)
    .bind::<BigInt, _>(ttl_secs)
    .load(conn)
    .await?;
    if let Some(r) = rows.as_slice().first() {
        tracing::debug!(account_id, owner, token = r.lease_token, "Lease taken.");
    }
    Ok(rows.into_iter().next().map(|r| Fence {
        account_id,
        token: r.lease_token,
    }))
}

/// Extends the lease; false when it was lost (expired and taken by another worker).
pub async fn renew(conn: &mut Conn, fence: Fence, ttl_secs: i64) -> Result<bool, StoreError> {
    let n = diesel::sql_query(
        "UPDATE accounts SET lease_expires_at = now() + $3 * interval '1 second'
          WHERE id = $1 AND lease_token = $2",
    )
    .bind::<BigInt, _>(fence.account_id)
    .bind::<BigInt, _>(fence.token)
    .bind::<BigInt, _>(ttl_secs)
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// Gives the lease back (if still held), so the next job needn't wait for the expiry.
pub async fn release(conn: &mut Conn, fence: Fence) -> Result<(), StoreError> {
    diesel::sql_query(
        "UPDATE accounts SET lease_expires_at = NULL WHERE id = $1 AND lease_token = $2",
    )
    .bind::<BigInt, _>(fence.account_id)
    .bind::<BigInt, _>(fence.token)
    .execute(conn)
    .await?;
    Ok(())
}

/// Inside a transaction: fails with `LeaseLost` unless the lease is still `fence`'s. The row
/// lock (FOR SHARE) holds a takeover back until this transaction ends, so a write that passes
/// the check commits before any newer holder starts.
pub async fn check(tx: &mut AsyncPgConnection, fence: Option<Fence>) -> Result<(), StoreError> {
    let Some(fence) = fence else { return Ok(()) };
    let rows: Vec<TokenRow> =
        diesel::sql_query("SELECT lease_token FROM accounts WHERE id = $1 FOR SHARE")
            .bind::<BigInt, _>(fence.account_id)
            .load(tx)
            .await?;
    match rows.into_iter().next() {
        Some(r) if r.lease_token == fence.token => Ok(()),
        _ => Err(StoreError::LeaseLost {
            account_id: fence.account_id,
        }),
    }
}
