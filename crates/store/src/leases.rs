//! One worker per mailbox. A worker takes an account's lease before it talks to the server,
//! renews it while it works, and every write of its sync checks the lease's fencing token in
//! the same transaction: a worker that was frozen past its lease (GC pause, SIGSTOP, a lost
//! network) and wakes up after another took over commits nothing.
//!
//! A lease taken with `acquire_live` also holds a session-level advisory lock on a connection
//! of its own. Postgres drops that lock the moment the holder's connection dies — a killed
//! worker's sockets are closed by the kernel — so the next worker takes the account at once
//! instead of waiting for the lease to expire. A frozen holder keeps its connection and its
//! lock: then only the expiry hands the account over, as before.

use crate::{Conn, Store, StoreError};
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

/// Advisory lock keys of leases: the account id in a namespace of its own.
fn lock_key(account_id: i64) -> i64 {
    (0x6d66_i64 << 40) ^ account_id
}

#[derive(diesel::QueryableByName)]
struct Locked {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    locked: bool,
}

async fn try_lock(conn: &mut Conn, account_id: i64) -> Result<bool, StoreError> {
    let r: Locked = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
        .bind::<BigInt, _>(lock_key(account_id))
        .get_result(conn)
        .await?;
    Ok(r.locked)
}

/// Proof that a lease holder is alive: its advisory lock, on a connection kept out of the
/// pool. Dropped, the connection closes and the lock goes with it.
pub struct Liveness {
    account_id: i64,
    conn: Option<Conn>,
}

impl Liveness {
    /// Whether this holder has the lock (it has not when it took the lease from a frozen
    /// holder that still holds it).
    pub fn held(&self) -> bool {
        self.conn.is_some()
    }

    /// Takes the lock if this holder lacks it and it is free now (the frozen holder it took
    /// over from has died): from then on, this holder's own death frees the account at once.
    pub async fn try_hold(&mut self, store: &Store) -> Result<bool, StoreError> {
        if self.conn.is_none() {
            let mut conn = store.conn().await?;
            if try_lock(&mut conn, self.account_id).await? {
                self.conn = Some(conn);
            }
        }
        Ok(self.held())
    }
}

impl Drop for Liveness {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Out of the pool and closed: the session ends and the lock with it.
            drop(Conn::take(conn));
        }
    }
}

/// A lease and the proof that its holder is alive.
pub struct Lease {
    pub fence: Fence,
    pub liveness: Liveness,
}

/// Takes the lease when it is free, expired, or held by a worker that died (its advisory lock
/// is free); `None` when a live (or frozen) worker holds it.
pub async fn acquire_live(
    store: &Store,
    account_id: i64,
    owner: &str,
    ttl_secs: i64,
) -> Result<Option<Lease>, StoreError> {
    let mut conn = store.conn().await?;
    let locked = try_lock(&mut conn, account_id).await?;
    let rows: Vec<TokenRow> = diesel::sql_query(
        "UPDATE accounts
            SET lease_token = lease_token + 1,
                lease_expires_at = now() + $2 * interval '1 second'
          WHERE id = $1 AND (lease_expires_at IS NULL OR lease_expires_at < now() OR $3)
          RETURNING lease_token",
    )
    .bind::<BigInt, _>(account_id)
    .bind::<BigInt, _>(ttl_secs)
    .bind::<diesel::sql_types::Bool, _>(locked)
    .load(&mut conn)
    .await?;
    let liveness = Liveness {
        account_id,
        // Without the lock the connection goes back to the pool as it is.
        conn: locked.then_some(conn),
    };
    Ok(rows.into_iter().next().map(|r| {
        tracing::debug!(
            account_id,
            owner,
            token = r.lease_token,
            live = liveness.held(),
            "Lease taken."
        );
        Lease {
            fence: Fence {
                account_id,
                token: r.lease_token,
            },
            liveness,
        }
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
