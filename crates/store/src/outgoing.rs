//! The outbox. A row is both the message to send and its job record, and moves
//! `queued → sending → sent | failed | unknown`. Every change a sender makes after its claim
//! is fenced by the claim's token (`attempts`): a worker that lost its claim changes nothing.

use crate::models::{AddressEntry, NewMessage, NewOutgoing, Outgoing};
use crate::schema::outgoing_messages as om;
use crate::{Conn, StoreError};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Int4, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

/// What `enqueue` did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    New(i64),
    /// The same idempotency key and the same request: the message queued the first time.
    Existing(i64),
    /// The key was used before for a different request.
    KeyReused(i64),
}

/// Writes a message to the outbox, once per (account, idempotency key).
pub async fn enqueue(conn: &mut Conn, new: &NewOutgoing) -> Result<Enqueued, StoreError> {
    let inserted: Option<i64> = diesel::insert_into(om::table)
        .values(new)
        .on_conflict((om::account_id, om::idempotency_key))
        .do_nothing()
        .returning(om::id)
        .get_result(conn)
        .await
        .optional()?;
    if let Some(id) = inserted {
        return Ok(Enqueued::New(id));
    }
    let (id, sha): (i64, Option<Vec<u8>>) = om::table
        .filter(om::account_id.eq(new.account_id))
        .filter(om::idempotency_key.eq(&new.idempotency_key))
        .select((om::id, om::request_sha256))
        .first(conn)
        .await?;
    Ok(if sha == new.request_sha256 {
        Enqueued::Existing(id)
    } else {
        Enqueued::KeyReused(id)
    })
}

pub async fn get(conn: &mut Conn, id: i64) -> Result<Outgoing, StoreError> {
    om::table
        .find(id)
        .select(Outgoing::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(StoreError::NotFound {
            what: "outgoing message",
            id,
        })
}

/// Rows with no job in flight that are due: queued (first send or a retry), a send whose
/// worker vanished (to resolve it), a sent message whose Sent copy is not filed yet.
const RELAY_DUE: &str = "published_at IS NULL
    AND (next_attempt_at IS NULL OR next_attempt_at <= now())
    AND (status IN ('queued', 'sending')
         OR (status = 'sent' AND sent_copy_filed_at IS NULL AND error_code IS NULL))";

/// Marks up to `limit` due rows as published and returns their ids; the caller publishes
/// them and calls `unpublish` for any it could not. `SKIP LOCKED` lets several relays run.
pub async fn claim_for_relay(conn: &mut Conn, limit: i64) -> Result<Vec<i64>, StoreError> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let rows: Vec<Id> = diesel::sql_query(format!(
        "UPDATE outgoing_messages SET published_at = now()
         WHERE id IN (SELECT id FROM outgoing_messages WHERE {RELAY_DUE}
                      ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING id"
    ))
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// The same, for one row (the API publishes a new message at once).
pub async fn claim_one_for_relay(conn: &mut Conn, id: i64) -> Result<bool, StoreError> {
    Ok(diesel::sql_query(format!(
        "UPDATE outgoing_messages SET published_at = now() WHERE id = $1 AND {RELAY_DUE}"
    ))
    .bind::<BigInt, _>(id)
    .execute(conn)
    .await?
        == 1)
}

/// A publish failed: the next relay pass tries again.
pub async fn unpublish(conn: &mut Conn, id: i64) -> Result<(), StoreError> {
    diesel::update(om::table.find(id))
        .set(om::published_at.eq(None::<DateTime<Utc>>))
        .execute(conn)
        .await?;
    Ok(())
}

/// What a `send_message` job may do with its row.
#[derive(Debug)]
pub enum SendClaim {
    Missing,
    /// Queued and due: this worker sends it. `attempts` is the claim's token.
    Send(Outgoing),
    /// A send was started by a worker whose claim ran out: what happened must be found out,
    /// never guessed by sending again.
    Resolve(Outgoing),
    /// Sent, but the copy in the Sent folder is not filed yet: this worker files it.
    FileCopy(Outgoing),
    /// Another worker holds the claim until then; the relay republishes the job after it.
    Busy(DateTime<Utc>),
    /// A retry is scheduled later (this delivery is an early duplicate).
    NotDue,
    /// Nothing left to do.
    Settled(String),
}

/// Takes the row for one worker for `claim_secs`.
pub async fn claim_send(
    conn: &mut Conn,
    id: i64,
    claim_secs: i64,
) -> Result<SendClaim, StoreError> {
    let conn: &mut AsyncPgConnection = conn;
    conn.transaction(async |tx| {
        let row: Option<Outgoing> = om::table
            .find(id)
            .select(Outgoing::as_select())
            .for_update()
            .first(tx)
            .await
            .optional()?;
        let Some(row) = row else {
            return Ok(SendClaim::Missing);
        };
        let now = Utc::now();
        let held = row.claimed_until.filter(|until| *until > now);
        let until = now + chrono::Duration::seconds(claim_secs);
        match row.status.as_str() {
            "queued" if row.next_attempt_at.is_some_and(|t| t > now) => Ok(SendClaim::NotDue),
            "queued" => Ok(SendClaim::Send(take_claim(tx, id, "sending", until).await?)),
            "sending" | "sent" if held.is_some() => {
                // Its holder may be dead (this is the broker's redelivery): ask the relay
                // for a new job once the claim has run out.
                let until = held.expect("checked");
                diesel::update(om::table.find(id))
                    .set((
                        om::published_at.eq(None::<DateTime<Utc>>),
                        om::next_attempt_at.eq(until),
                    ))
                    .execute(tx)
                    .await?;
                Ok(SendClaim::Busy(until))
            }
            "sending" => Ok(SendClaim::Resolve(
                take_claim(tx, id, "sending", until).await?,
            )),
            "sent" if row.sent_copy_filed_at.is_none() && row.error_code.is_none() => Ok(
                SendClaim::FileCopy(take_claim(tx, id, "sent", until).await?),
            ),
            other => Ok(SendClaim::Settled(other.to_owned())),
        }
    })
    .await
}

async fn take_claim(
    tx: &mut AsyncPgConnection,
    id: i64,
    status: &str,
    until: DateTime<Utc>,
) -> Result<Outgoing, StoreError> {
    Ok(diesel::update(om::table.find(id))
        .set((
            om::status.eq(status),
            om::attempts.eq(om::attempts + 1),
            om::claimed_until.eq(until),
            om::updated_at.eq(Utc::now()),
        ))
        .returning(Outgoing::as_returning())
        .get_result::<Outgoing>(tx)
        .await?)
}

/// Fences an update to the claim `token` (the `attempts` value the claim returned).
fn fenced(
    id: i64,
    token: i32,
) -> diesel::dsl::Filter<diesel::dsl::Find<om::table, i64>, diesel::dsl::Eq<om::attempts, i32>> {
    om::table.find(id).filter(om::attempts.eq(token))
}

/// Recorded just before the message's bytes go to the server: from here on, a send that
/// is interrupted can not be repeated safely.
pub async fn mark_data_started(conn: &mut Conn, id: i64, token: i32) -> Result<bool, StoreError> {
    Ok(
        diesel::update(fenced(id, token).filter(om::status.eq("sending")))
            .set((
                om::data_started_at.eq(Utc::now()),
                om::updated_at.eq(Utc::now()),
            ))
            .execute(conn)
            .await?
            == 1,
    )
}

/// The server accepted the message. Also turns an `unknown` (a resolver gave up on this
/// worker while it was still talking to the server) into `sent`. Takes a fresh claim for
/// filing the Sent copy and returns its token; `None` when another worker finished the
/// message meanwhile.
pub async fn mark_sent(
    conn: &mut Conn,
    id: i64,
    token: i32,
    reply: &str,
    claim_secs: i64,
) -> Result<Option<i32>, StoreError> {
    #[derive(QueryableByName)]
    struct Token {
        #[diesel(sql_type = Int4)]
        attempts: i32,
    }
    let rows: Vec<Token> = diesel::sql_query(
        "UPDATE outgoing_messages
         SET status = 'sent', sent_at = now(), server_reply = $3, error_code = NULL,
             attempts = attempts + 1, claimed_until = now() + $4 * interval '1 second',
             updated_at = now()
         WHERE id = $1 AND ((attempts = $2 AND status = 'sending') OR status = 'unknown')
         RETURNING attempts",
    )
    .bind::<BigInt, _>(id)
    .bind::<Int4, _>(token)
    .bind::<Text, _>(reply)
    .bind::<BigInt, _>(claim_secs)
    .load(conn)
    .await?;
    Ok(rows.into_iter().next().map(|t| t.attempts))
}

/// Puts a message whose send never reached DATA back in the queue (status `queued`) to be
/// tried again after `delay_secs`.
pub async fn requeue(
    conn: &mut Conn,
    id: i64,
    token: i32,
    delay_secs: i64,
    why: &str,
) -> Result<bool, StoreError> {
    let conn: &mut AsyncPgConnection = conn;
    conn.transaction(async |tx| {
        diesel::update(fenced(id, token).filter(om::status.eq("sending")))
            .set((
                om::status.eq("queued"),
                om::data_started_at.eq(None::<DateTime<Utc>>),
            ))
            .execute(tx)
            .await?;
        retry_later(tx, id, token, delay_secs, why).await
    })
    .await
}

/// Lets go of the claim and asks the relay for a new job after `delay_secs`, the status
/// unchanged: a send to resolve, or a Sent copy to file, when the server was unreachable.
/// (`data_started_at` stays: a send that may have been transmitted is never retried.)
pub async fn retry_later(
    conn: &mut AsyncPgConnection,
    id: i64,
    token: i32,
    delay_secs: i64,
    why: &str,
) -> Result<bool, StoreError> {
    let at = Utc::now() + chrono::Duration::seconds(delay_secs);
    Ok(
        diesel::update(fenced(id, token).filter(om::status.eq_any(["queued", "sending", "sent"])))
            .set((
                om::next_attempt_at.eq(at),
                om::published_at.eq(None::<DateTime<Utc>>),
                om::claimed_until.eq(None::<DateTime<Utc>>),
                om::server_reply.eq(why),
                om::updated_at.eq(Utc::now()),
            ))
            .execute(conn)
            .await?
            == 1,
    )
}

/// A final outcome other than `sent`: `failed` (with the server's reply) or `unknown`.
pub async fn finish(
    conn: &mut Conn,
    id: i64,
    token: i32,
    status: &str,
    code: &str,
    reply: &str,
) -> Result<bool, StoreError> {
    Ok(
        diesel::update(fenced(id, token).filter(om::status.eq("sending")))
            .set((
                om::status.eq(status),
                om::error_code.eq(code),
                om::server_reply.eq(reply),
                om::claimed_until.eq(None::<DateTime<Utc>>),
                om::updated_at.eq(Utc::now()),
            ))
            .execute(conn)
            .await?
            == 1,
    )
}

/// Gives up filing the Sent copy of a sent message (the message itself went out).
pub async fn abandon_copy(
    conn: &mut Conn,
    id: i64,
    token: i32,
    why: &str,
) -> Result<bool, StoreError> {
    Ok(
        diesel::update(fenced(id, token).filter(om::status.eq("sent")))
            .set((
                om::error_code.eq("sent_copy_failed"),
                om::server_reply.eq(why),
                om::claimed_until.eq(None::<DateTime<Utc>>),
                om::updated_at.eq(Utc::now()),
            ))
            .execute(conn)
            .await?
            == 1,
    )
}

/// Where the copy goes locally.
#[derive(Debug, Clone)]
pub struct SentCopy {
    pub folder_id: i64,
    pub own_addresses: Vec<String>,
    pub create_contacts: bool,
}

/// Stores the Sent copy (the server's copy, under its remote id), its Bcc recipients (not
/// in the sent bytes), its contact links, and marks the copy filed: one transaction. When
/// a sync stored the same remote message first, that row is the copy.
pub async fn store_sent_copy(
    conn: &mut Conn,
    id: i64,
    token: i32,
    copy: &SentCopy,
    message: NewMessage,
    mut addresses: Vec<AddressEntry>,
    bcc: &[String],
) -> Result<i64, StoreError> {
    let conn: &mut AsyncPgConnection = conn;
    conn.transaction(async |tx| {
        let still_mine = om::table
            .find(id)
            .filter(om::attempts.eq(token))
            .filter(om::status.eq("sent"))
            .select(om::id)
            .for_update()
            .first::<i64>(tx)
            .await
            .optional()?;
        if still_mine.is_none() {
            return Err(StoreError::Conflict(format!(
                "outgoing message {id} was claimed by another worker"
            )));
        }
        for (i, email) in bcc.iter().enumerate() {
            addresses.push(AddressEntry {
                field: "bcc",
                position: i as i32,
                name: None,
                email: email.clone(),
            });
        }
        let remote_id = message.remote_id.clone();
        let owner = crate::messages::BatchOwner {
            account_id: message.account_id,
            folder_id: copy.folder_id,
            own_addresses: copy.own_addresses.clone(),
            create_contacts: copy.create_contacts,
            fence: None,
        };
        crate::messages::insert_linked(tx, &owner, vec![(message, addresses)]).await?;
        let local: i64 = crate::schema::message_folders::table
            .filter(crate::schema::message_folders::folder_id.eq(copy.folder_id))
            .filter(crate::schema::message_folders::remote_id.eq(&remote_id))
            .select(crate::schema::message_folders::message_id)
            .first(tx)
            .await?;
        diesel::update(om::table.find(id))
            .set((
                om::sent_copy_filed_at.eq(Utc::now()),
                om::sent_copy_message_id.eq(local),
                om::claimed_until.eq(None::<DateTime<Utc>>),
                om::updated_at.eq(Utc::now()),
            ))
            .execute(tx)
            .await?;
        Ok(local)
    })
    .await
}

/// Marks the copy filed when the provider files sent mail itself (the sync brings it in).
pub async fn copy_filed_by_provider(
    conn: &mut Conn,
    id: i64,
    token: i32,
) -> Result<bool, StoreError> {
    Ok(
        diesel::update(fenced(id, token).filter(om::status.eq("sent")))
            .set((
                om::sent_copy_filed_at.eq(Utc::now()),
                om::claimed_until.eq(None::<DateTime<Utc>>),
            ))
            .execute(conn)
            .await?
            == 1,
    )
}
