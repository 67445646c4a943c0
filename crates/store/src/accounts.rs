use crate::models::{Account, NewAccount};
use crate::schema::accounts;
use crate::{Conn, StoreError};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// Reserves an id first, because the sealed credentials are bound to it.
pub async fn next_id(conn: &mut Conn) -> Result<i64, StoreError> {
    let row: IdRow = diesel::sql_query("SELECT nextval('accounts_id_seq') AS id")
        .get_result(conn)
        .await?;
    Ok(row.id)
}

pub async fn get(conn: &mut Conn, id: i64) -> Result<Account, StoreError> {
    accounts::table
        .find(id)
        .select(Account::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(StoreError::NotFound {
            what: "account",
            id,
        })
}

/// A sync job whose worker never reported back within this long is treated as lost. Sooner
/// than that, a claim whose lease expired unreleased is lost too: its worker died mid-sync.
pub const STALE_CLAIM_SECS: i64 = 15 * 60;

/// Marks due accounts as queued and returns them, in one statement, so that concurrent
/// coordinators never publish the same account twice and an account whose job is still queued
/// or running is skipped. Due = active, no live claim, and either a sync was requested or the
/// last attempt is older than `interval_secs`.
pub async fn claim_due(
    conn: &mut Conn,
    interval_secs: i64,
    limit: i64,
) -> Result<Vec<i64>, StoreError> {
    let rows: Vec<IdRow> = diesel::sql_query(
        "UPDATE accounts SET sync_queued_at = now(), sync_requested = FALSE
         WHERE id IN (
             SELECT id FROM accounts
             WHERE state = 'active'
               AND (sync_queued_at IS NULL OR sync_queued_at < now() - $3 * interval '1 second'
                    OR (lease_expires_at IS NOT NULL AND lease_expires_at < now()))
               AND (sync_requested
                    OR (next_attempt_at IS NOT NULL AND next_attempt_at <= now())
                    OR (next_attempt_at IS NULL
                        AND (last_sync_attempt_at IS NULL
                             OR last_sync_attempt_at <= now() - $1 * interval '1 second')))
             ORDER BY sync_requested DESC, last_sync_attempt_at NULLS FIRST
             LIMIT $2
             FOR UPDATE SKIP LOCKED)
         RETURNING id",
    )
    .bind::<BigInt, _>(interval_secs)
    .bind::<BigInt, _>(limit)
    .bind::<BigInt, _>(STALE_CLAIM_SECS)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// Claims one account now (an API "sync now" or a new account); false when its job is already
/// queued or running, or the account is disabled. A request that finds a live claim is kept
/// (`sync_requested`), so the scheduler runs one more sync after the current one.
pub async fn claim_now(conn: &mut Conn, id: i64) -> Result<bool, StoreError> {
    let claimed: Vec<IdRow> = diesel::sql_query(
        "UPDATE accounts SET sync_queued_at = now(), sync_requested = FALSE
         WHERE id = $1 AND state = 'active'
           AND (sync_queued_at IS NULL OR sync_queued_at < now() - $2 * interval '1 second'
                OR (lease_expires_at IS NOT NULL AND lease_expires_at < now()))
         RETURNING id",
    )
    .bind::<BigInt, _>(id)
    .bind::<BigInt, _>(STALE_CLAIM_SECS)
    .load(conn)
    .await?;
    if claimed.is_empty() {
        diesel::update(accounts::table.find(id))
            .filter(accounts::state.eq("active"))
            .set(accounts::sync_requested.eq(true))
            .execute(conn)
            .await?;
    }
    Ok(!claimed.is_empty())
}

/// Undoes a claim whose job could not be published (a new sync, or the follow-up of an
/// unfinished one), keeping the request: the scheduler's next tick publishes it. Nothing is
/// recorded as synced.
pub async fn release_claim(conn: &mut Conn, id: i64) -> Result<(), StoreError> {
    diesel::update(accounts::table.find(id))
        .set((
            accounts::sync_queued_at.eq(None::<chrono::DateTime<chrono::Utc>>),
            accounts::sync_requested.eq(true),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Records a successful sync and frees the account for the scheduler. `warning` keeps a
/// partial problem (a folder that failed) visible on the account.
pub async fn finish_sync(
    conn: &mut Conn,
    id: i64,
    warning: Option<&str>,
) -> Result<(), StoreError> {
    let now = diesel::dsl::now;
    diesel::update(accounts::table.find(id))
        .set((
            accounts::sync_queued_at.eq(None::<chrono::DateTime<chrono::Utc>>),
            accounts::last_sync_attempt_at.eq(now),
            accounts::last_synced_at.eq(now),
            accounts::last_error.eq(warning),
            accounts::consecutive_failures.eq(0),
            accounts::next_attempt_at.eq(None::<chrono::DateTime<chrono::Utc>>),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Records a failed sync and schedules the retry: after `retry_after` when the provider gave
/// one, else after a delay that doubles with each consecutive failure (30 s, 1 min, 2 min, …)
/// up to `max_delay_secs`, with up to 20 % jitter so a server's accounts don't return at once.
pub async fn fail_sync(
    conn: &mut Conn,
    id: i64,
    error: &str,
    retry_after_secs: Option<i64>,
    max_delay_secs: i64,
) -> Result<(), StoreError> {
    diesel::sql_query(
        "UPDATE accounts SET
            sync_queued_at = NULL,
            last_sync_attempt_at = now(),
            last_error = $2,
            consecutive_failures = consecutive_failures + 1,
            next_attempt_at = now() + make_interval(secs =>
                COALESCE($3::double precision,
                         LEAST($4::double precision, 30 * power(2, LEAST(consecutive_failures, 20)))
                         * (1 + random() * 0.2)))
         WHERE id = $1",
    )
    .bind::<BigInt, _>(id)
    .bind::<Text, _>(error)
    .bind::<diesel::sql_types::Nullable<BigInt>, _>(retry_after_secs)
    .bind::<BigInt, _>(max_delay_secs)
    .execute(conn)
    .await?;
    Ok(())
}

/// Disables an account (e.g. its credentials were refused); no job touches it afterwards.
pub async fn disable(
    conn: &mut Conn,
    id: i64,
    reason: &str,
    message: &str,
) -> Result<(), StoreError> {
    diesel::sql_query(
        "UPDATE accounts SET state = 'disabled', disabled_reason = $2, last_error = $3,
                sync_queued_at = NULL, last_sync_attempt_at = now()
         WHERE id = $1",
    )
    .bind::<BigInt, _>(id)
    .bind::<Text, _>(reason)
    .bind::<Text, _>(message)
    .execute(conn)
    .await?;
    Ok(())
}

/// Inserts an account and its folders as a connection test listed them (`active_if_new`: the
/// user chose it), in one transaction. With no folders, the first sync lists them and picks.
pub async fn create(
    conn: &mut Conn,
    new: &NewAccount,
    folders: &[crate::folders::ListedFolder],
) -> Result<Account, StoreError> {
    use diesel_async::AsyncConnection;
    let conn: &mut diesel_async::AsyncPgConnection = conn;
    conn.transaction(async |tx| {
        let account: Account = diesel::insert_into(accounts::table)
            .values(new)
            .returning(Account::as_returning())
            .get_result(tx)
            .await?;
        crate::folders::upsert_rows(tx, account.id, folders).await?;
        Ok::<_, StoreError>(account)
    })
    .await
}

/// Moves the last sync attempt `secs` into the past (tests and operators' "sync soon").
pub async fn backdate_last_attempt(conn: &mut Conn, id: i64, secs: i64) -> Result<(), StoreError> {
    diesel::sql_query(
        "UPDATE accounts SET last_sync_attempt_at = now() - $2 * interval '1 second' WHERE id = $1",
    )
    .bind::<BigInt, _>(id)
    .bind::<BigInt, _>(secs)
    .execute(conn)
    .await?;
    Ok(())
}

/// Turns contact creation for unknown senders on or off.
pub async fn set_create_contacts(conn: &mut Conn, id: i64, on: bool) -> Result<(), StoreError> {
    diesel::update(accounts::table.find(id))
        .set(accounts::create_contacts.eq(on))
        .execute(conn)
        .await?;
    Ok(())
}

/// Enables a disabled account after a passed connection test, with new credentials if given,
/// and asks for a sync.
pub async fn reconnect(
    conn: &mut Conn,
    id: i64,
    credentials: Option<&[u8]>,
) -> Result<(), StoreError> {
    let enable = (
        accounts::state.eq("active"),
        accounts::disabled_reason.eq(None::<String>),
        accounts::last_error.eq(None::<String>),
        accounts::sync_requested.eq(true),
    );
    let q = diesel::update(accounts::table.find(id));
    match credentials {
        Some(c) => {
            q.set((accounts::credentials.eq(c), enable))
                .execute(conn)
                .await?
        }
        None => q.set(enable).execute(conn).await?,
    };
    Ok(())
}

/// Replaces the account's sealed credentials (an OAuth access token its provider renewed),
/// under the job's lease when it holds one: a worker that lost the account writes nothing.
pub async fn save_credentials(
    conn: &mut Conn,
    id: i64,
    sealed: &[u8],
    fence: Option<crate::leases::Fence>,
) -> Result<(), StoreError> {
    use diesel_async::AsyncConnection;
    let conn: &mut diesel_async::AsyncPgConnection = conn;
    conn.transaction(async |tx| {
        crate::leases::check(tx, fence).await?;
        diesel::update(accounts::table.find(id))
            .set(accounts::credentials.eq(sealed))
            .execute(tx)
            .await?;
        Ok(())
    })
    .await
}

/// Claims accounts whose folder list is older than `interval_secs` (see `claim_due`).
pub async fn claim_due_refresh(
    conn: &mut Conn,
    interval_secs: i64,
    limit: i64,
) -> Result<Vec<i64>, StoreError> {
    let rows: Vec<IdRow> = diesel::sql_query(
        "UPDATE accounts SET refresh_queued_at = now()
         WHERE id IN (
             SELECT id FROM accounts
             WHERE state = 'active'
               AND (refresh_queued_at IS NULL OR refresh_queued_at < now() - $3 * interval '1 second')
               AND folders_refreshed_at <= now() - $1 * interval '1 second'
             ORDER BY folders_refreshed_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED)
         RETURNING id",
    )
    .bind::<BigInt, _>(interval_secs)
    .bind::<BigInt, _>(limit)
    .bind::<BigInt, _>(STALE_CLAIM_SECS)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// Undoes a refresh claim whose job could not be published.
pub async fn release_refresh_claim(conn: &mut Conn, id: i64) -> Result<(), StoreError> {
    diesel::update(accounts::table.find(id))
        .set(accounts::refresh_queued_at.eq(None::<chrono::DateTime<chrono::Utc>>))
        .execute(conn)
        .await?;
    Ok(())
}

/// Records a folder refresh attempt (successful or not: the next one is an interval away).
/// A sync job that arrived while the refresh held the lease was dropped as a duplicate and
/// asked for a sync (`sync_requested`): its claim is released here so the scheduler queues it
/// again.
pub async fn finish_refresh(conn: &mut Conn, id: i64) -> Result<(), StoreError> {
    diesel::sql_query(
        "UPDATE accounts SET refresh_queued_at = NULL, folders_refreshed_at = now(),
                sync_queued_at = CASE WHEN sync_requested THEN NULL ELSE sync_queued_at END
         WHERE id = $1",
    )
    .bind::<BigInt, _>(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Makes the account's folder refresh due now (tests, operators).
pub async fn backdate_folder_refresh(
    conn: &mut Conn,
    id: i64,
    secs: i64,
) -> Result<(), StoreError> {
    diesel::sql_query(
        "UPDATE accounts SET folders_refreshed_at = now() - $2 * interval '1 second' WHERE id = $1",
    )
    .bind::<BigInt, _>(id)
    .bind::<BigInt, _>(secs)
    .execute(conn)
    .await?;
    Ok(())
}

/// Keeps a sync claim fresh while a long sync continues in follow-up jobs.
pub async fn renew_claim(conn: &mut Conn, id: i64) -> Result<(), StoreError> {
    diesel::update(accounts::table.find(id))
        .set(accounts::sync_queued_at.eq(diesel::dsl::now))
        .execute(conn)
        .await?;
    Ok(())
}

/// Asks for one more sync after the running one (a job found the account busy).
pub async fn request_sync(conn: &mut Conn, id: i64) -> Result<(), StoreError> {
    diesel::update(accounts::table.find(id))
        .set(accounts::sync_requested.eq(true))
        .execute(conn)
        .await?;
    Ok(())
}

/// The accounts a user reaches: their primary first, their other personal accounts, then the
/// shared inboxes they may read (all of them for an administrator).
pub async fn list_for_user(conn: &mut Conn, user_id: i64) -> Result<Vec<Account>, StoreError> {
    use diesel::dsl::sql;
    use diesel::sql_types::{BigInt, Bool};
    let own = accounts::kind
        .eq("personal")
        .and(accounts::owner_user_id.eq(user_id));
    let shared = accounts::kind.eq("shared").and(
        sql::<Bool>("mailfleet_may_read_account(accounts.id, ")
            .bind::<BigInt, _>(user_id)
            .sql(")"),
    );
    Ok(accounts::table
        .filter(own.or(shared))
        .select(Account::as_select())
        .order((
            accounts::is_primary.desc(),
            accounts::kind.asc(), // personal before shared
            accounts::id,
        ))
        .load(conn)
        .await?)
}

/// Makes the account its owner's primary one (and no other).
pub async fn set_primary(conn: &mut Conn, id: i64, owner_user_id: i64) -> Result<(), StoreError> {
    use diesel_async::AsyncConnection;
    let conn: &mut diesel_async::AsyncPgConnection = conn;
    conn.transaction(async |tx| {
        diesel::update(
            accounts::table
                .filter(accounts::owner_user_id.eq(owner_user_id))
                .filter(accounts::is_primary),
        )
        .set(accounts::is_primary.eq(false))
        .execute(tx)
        .await?;
        diesel::update(accounts::table.find(id))
            .set(accounts::is_primary.eq(true))
            .execute(tx)
            .await?;
        Ok::<_, StoreError>(())
    })
    .await
}

/// How many accounts are in each state (`active`, `disabled`).
pub async fn count_by_state(conn: &mut Conn) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(accounts::table
        .group_by(accounts::state)
        .select((accounts::state, diesel::dsl::count_star()))
        .load(conn)
        .await?)
}
