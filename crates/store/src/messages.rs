use crate::folders::{CursorUpdate, save_cursor};
use crate::models::{AddressEntry, NewMessage};
use crate::schema::messages;
use crate::{Conn, StoreError};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bytea, Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use std::collections::HashMap;

/// What the batch belongs to, for contact creation.
#[derive(Debug, Clone)]
pub struct BatchOwner {
    pub account_id: i64,
    pub folder_id: i64,
    /// The account's own addresses: never made into contacts.
    pub own_addresses: Vec<String>,
    pub create_contacts: bool,
    /// The sync's lease, checked in the batch's transaction.
    pub fence: Option<crate::leases::Fence>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub inserted: usize,
    /// Stored messages found in this folder (moved or copied here): a membership was added
    /// and the row kept its id and links.
    pub attached: usize,
    /// Stored rows re-matched to new remote ids after a UIDVALIDITY change.
    pub rematched: usize,
    pub flags_updated: usize,
    pub removed: usize,
    pub contacts_created: usize,
    pub contact_links: usize,
}

/// Stored messages of the folder that are gone on the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Removal {
    #[default]
    Nothing,
    These(Vec<String>),
    AllBut(Vec<String>),
    /// The folder's remote ids are void (IMAP UIDVALIDITY changed): the stored rows are
    /// re-matched to the new ids batch by batch; counted on the folder.
    All,
}

/// What changed among the folder's stored messages, applied with the batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderChanges {
    /// (remote id, new flags).
    pub flags: Vec<(String, Vec<String>)>,
    pub removal: Removal,
    /// Every current remote id of the folder starts with this (IMAP: "uidvalidity:"); rows
    /// that don't are from before a UIDVALIDITY change.
    pub current_prefix: Option<String>,
    /// This batch ends the folder's sync: a re-baseline in progress can be completed.
    pub folder_complete: bool,
    /// Re-baseline: stored copies that take these new ids, matched by Message-ID and size
    /// (their bodies were not downloaded again).
    pub identified: Vec<IdentifiedCopy>,
}

/// A message identified on the server by Message-ID and size during a re-baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifiedCopy {
    pub remote_id: String,
    pub message_id: String,
    pub size: i64,
    pub flags: Vec<String>,
}

/// Stores a batch of fetched messages and moves the folder's cursor past them, in one
/// transaction: either both happen or neither, so a crash re-fetches the batch and what the
/// folder already holds (by its remote id) is skipped.
#[tracing::instrument(name = "db.store_batch", skip_all, fields(folder_id = owner.folder_id, messages = batch.len()))]
pub async fn store_batch(
    conn: &mut Conn,
    owner: &BatchOwner,
    batch: Vec<(NewMessage, Vec<AddressEntry>)>,
    changes: &FolderChanges,
    cursor: &CursorUpdate,
) -> Result<BatchOutcome, StoreError> {
    let conn: &mut AsyncPgConnection = conn;
    conn.transaction(async |tx| {
        crate::leases::check(tx, owner.fence).await?;
        // Removals first: after a UIDVALIDITY change the same messages come back under new
        // ids in this very batch.
        let mut removed = apply_removal(tx, owner.folder_id, &changes.removal).await?;
        let flags_updated = apply_flags(tx, owner.folder_id, &changes.flags).await?;
        let rebaselining: bool = crate::schema::folders::table
            .find(owner.folder_id)
            .select(crate::schema::folders::rebaselining)
            .first(tx)
            .await?;
        let mut rematched = 0;
        if let (true, Some(prefix)) = (rebaselining, changes.current_prefix.as_deref()) {
            rematched =
                rematch_identified(tx, owner.folder_id, prefix, &changes.identified).await?;
            if rematched < changes.identified.len() {
                // The provider counted stored copies that are not there (any more): roll the
                // batch back; the next attempt downloads what it can't match.
                return Err(StoreError::Invalid(format!(
                    "re-baseline: {} of {} identified messages had no stored copy",
                    changes.identified.len() - rematched,
                    changes.identified.len()
                )));
            }
            rematched += rematch(tx, owner.folder_id, prefix, &batch).await?;
        } else if !changes.identified.is_empty() {
            return Err(StoreError::Invalid(
                "identified messages outside a re-baseline".into(),
            ));
        }
        let stored = insert_linked(tx, owner, batch).await?;

        if let (true, true, Some(prefix)) = (
            rebaselining,
            changes.folder_complete,
            changes.current_prefix.as_deref(),
        ) {
            removed += finish_rebaseline(tx, owner.folder_id, prefix).await?;
        }
        save_cursor(tx, owner.folder_id, cursor).await?;
        Ok::<_, StoreError>(BatchOutcome {
            inserted: stored.new_ids.len(),
            attached: stored.attached,
            rematched,
            flags_updated,
            removed,
            contacts_created: stored.contacts_created,
            contact_links: stored.contact_links,
        })
    })
    .await
}

/// What `insert_linked` did.
#[derive(Debug, Default)]
pub(crate) struct Stored {
    /// Rows created, in batch order.
    pub new_ids: Vec<i64>,
    /// Stored messages that gained a membership instead of a new row.
    pub attached: usize,
    pub contacts_created: usize,
    pub contact_links: usize,
}

/// Stores messages found in a folder. One the folder holds already (its remote id) is
/// skipped; one the account holds elsewhere — the same provider id, or without one the same
/// Message-ID and size, an orphan first — gains a membership and keeps its row, links and
/// id (a move in another client, a copy, a Gmail label); the rest become new rows with their
/// addresses and contact links.
pub(crate) async fn insert_linked(
    tx: &mut AsyncPgConnection,
    owner: &BatchOwner,
    batch: Vec<(NewMessage, Vec<AddressEntry>)>,
) -> Result<Stored, StoreError> {
    let mut stored = Stored::default();
    let batch = not_in_folder_yet(tx, batch).await?;
    if batch.is_empty() {
        return Ok(stored);
    }
    let (attach, fresh) = match_stored(tx, owner.account_id, batch).await?;
    stored.attached = attach_memberships(tx, &attach).await?;
    if fresh.is_empty() {
        return Ok(stored);
    }
    let ids = allocate_ids(tx, fresh.len()).await?;
    let rows: Vec<&NewMessage> = fresh.iter().map(|(m, _)| m).collect();
    insert_messages(tx, &ids, &rows).await?;
    let memberships: Vec<(i64, i64, &str)> = ids
        .iter()
        .zip(&rows)
        .map(|(id, m)| (*id, m.folder_id, m.remote_id.as_str()))
        .collect();
    insert_memberships(tx, &memberships).await?;
    // The new messages' addresses, as columns: one unnest() beats thousands of parameters.
    let mut addresses = AddressColumns::default();
    for (id, (_, addrs)) in ids.iter().zip(&fresh) {
        for a in addrs {
            addresses.push(*id, a);
        }
    }
    if !addresses.message_ids.is_empty() {
        diesel::sql_query(
            "INSERT INTO message_addresses (message_id, field, position, name, email)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::text[])
             ON CONFLICT DO NOTHING",
        )
        .bind::<Array<BigInt>, _>(&addresses.message_ids)
        .bind::<Array<Text>, _>(&addresses.fields)
        .bind::<Array<Integer>, _>(&addresses.positions)
        .bind::<Array<Nullable<Text>>, _>(&addresses.names)
        .bind::<Array<Text>, _>(&addresses.emails)
        .execute(tx)
        .await?;
    }
    let (created, links) = link_contacts(tx, owner, &addresses).await?;
    stored.new_ids = ids;
    stored.contacts_created = created;
    stored.contact_links = links;
    Ok(stored)
}

/// The batch less what its folders hold already (and less repeats within the batch).
async fn not_in_folder_yet(
    tx: &mut AsyncPgConnection,
    batch: Vec<(NewMessage, Vec<AddressEntry>)>,
) -> Result<Vec<(NewMessage, Vec<AddressEntry>)>, StoreError> {
    #[derive(QueryableByName)]
    struct Held {
        #[diesel(sql_type = BigInt)]
        folder_id: i64,
        #[diesel(sql_type = Text)]
        remote_id: String,
    }
    if batch.is_empty() {
        return Ok(batch);
    }
    let folders: Vec<i64> = batch.iter().map(|(m, _)| m.folder_id).collect();
    let remotes: Vec<&str> = batch.iter().map(|(m, _)| m.remote_id.as_str()).collect();
    let held: Vec<Held> = diesel::sql_query(
        "SELECT mf.folder_id, mf.remote_id
         FROM unnest($1::bigint[], $2::text[]) AS n(f, r)
         JOIN message_folders mf ON mf.folder_id = n.f AND mf.remote_id = n.r",
    )
    .bind::<Array<BigInt>, _>(&folders)
    .bind::<Array<Text>, _>(&remotes)
    .load(tx)
    .await?;
    let mut seen: std::collections::HashSet<(i64, String)> = held
        .into_iter()
        .map(|h| (h.folder_id, h.remote_id))
        .collect();
    Ok(batch
        .into_iter()
        .filter(|(m, _)| seen.insert((m.folder_id, m.remote_id.clone())))
        .collect())
}

/// A stored message that a row of the batch turned out to be.
struct Attach {
    message_id: i64,
    folder_id: i64,
    remote_id: String,
    flags: Vec<String>,
}

/// Splits the batch into rows that are messages the account stores already (by provider id;
/// without one, by Message-ID and size among rows without one, orphans first, one row per
/// stored copy) and rows that are new.
async fn match_stored(
    tx: &mut AsyncPgConnection,
    account_id: i64,
    batch: Vec<(NewMessage, Vec<AddressEntry>)>,
) -> Result<(Vec<Attach>, Vec<(NewMessage, Vec<AddressEntry>)>), StoreError> {
    #[derive(QueryableByName)]
    struct Candidate {
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = Nullable<Text>)]
        provider_id: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        message_id: Option<String>,
        #[diesel(sql_type = BigInt)]
        size_bytes: i64,
        #[diesel(sql_type = diesel::sql_types::Array<BigInt>)]
        folders: Vec<i64>,
    }
    let provider_ids: Vec<&str> = batch
        .iter()
        .filter_map(|(m, _)| m.provider_id.as_deref())
        .collect();
    let message_ids: Vec<&str> = batch
        .iter()
        .filter(|(m, _)| m.provider_id.is_none())
        .filter_map(|(m, _)| m.message_id.as_deref())
        .collect();
    if provider_ids.is_empty() && message_ids.is_empty() {
        return Ok((Vec::new(), batch));
    }
    let candidates: Vec<Candidate> = diesel::sql_query(
        "SELECT m.id, m.provider_id, m.message_id, m.size_bytes,
                ARRAY(SELECT mf.folder_id FROM message_folders mf WHERE mf.message_id = m.id)
                    AS folders
         FROM messages m
         WHERE m.account_id = $1
           AND (m.provider_id = ANY($2)
                OR (m.provider_id IS NULL AND m.message_id = ANY($3)))
         ORDER BY m.orphaned_at IS NULL, m.id",
    )
    .bind::<BigInt, _>(account_id)
    .bind::<Array<Text>, _>(&provider_ids)
    .bind::<Array<Text>, _>(&message_ids)
    .load(tx)
    .await?;
    let mut by_provider: HashMap<String, Candidate> = HashMap::new();
    let mut by_key: HashMap<(String, i64), std::collections::VecDeque<Candidate>> = HashMap::new();
    for c in candidates {
        match (&c.provider_id, &c.message_id) {
            (Some(p), _) => {
                by_provider.insert(p.clone(), c);
            }
            (None, Some(mid)) => by_key
                .entry((mid.clone(), c.size_bytes))
                .or_default()
                .push_back(c),
            (None, None) => {}
        }
    }
    let (mut attach, mut fresh) = (Vec::new(), Vec::new());
    for (m, addrs) in batch {
        let found = match (&m.provider_id, &m.message_id) {
            (Some(p), _) => by_provider
                .get(p)
                .filter(|c| !c.folders.contains(&m.folder_id))
                .map(|c| c.id),
            (None, Some(mid)) => by_key
                .get_mut(&(mid.clone(), m.size_bytes))
                .and_then(|q| {
                    let at = q.iter().position(|c| !c.folders.contains(&m.folder_id))?;
                    q.remove(at)
                })
                .map(|c| c.id),
            (None, None) => None,
        };
        match found {
            Some(message_id) => attach.push(Attach {
                message_id,
                folder_id: m.folder_id,
                remote_id: m.remote_id,
                flags: m.flags,
            }),
            None => fresh.push((m, addrs)),
        }
    }
    Ok((attach, fresh))
}

/// Adds the memberships of stored messages found in another folder; they are no longer
/// orphans, and take the flags of the copy just seen.
async fn attach_memberships(
    tx: &mut AsyncPgConnection,
    attach: &[Attach],
) -> Result<usize, StoreError> {
    if attach.is_empty() {
        return Ok(0);
    }
    let rows: Vec<(i64, i64, &str)> = attach
        .iter()
        .map(|a| (a.message_id, a.folder_id, a.remote_id.as_str()))
        .collect();
    let added = insert_memberships(tx, &rows).await?;
    let ids: Vec<i64> = attach.iter().map(|a| a.message_id).collect();
    let flags: Vec<String> = attach.iter().map(|a| a.flags.join(" ")).collect();
    diesel::sql_query(
        "UPDATE messages m SET orphaned_at = NULL, flags = string_to_array(u.f, ' ')
         FROM unnest($1::bigint[], $2::text[]) AS u(id, f)
         WHERE m.id = u.id",
    )
    .bind::<Array<BigInt>, _>(&ids)
    .bind::<Array<Text>, _>(&flags)
    .execute(tx)
    .await?;
    Ok(added)
}

/// (message id, folder id, remote id) memberships; returns how many were added.
async fn insert_memberships(
    tx: &mut AsyncPgConnection,
    rows: &[(i64, i64, &str)],
) -> Result<usize, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let message_ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let folder_ids: Vec<i64> = rows.iter().map(|r| r.1).collect();
    let remote_ids: Vec<&str> = rows.iter().map(|r| r.2).collect();
    Ok(diesel::sql_query(
        "INSERT INTO message_folders (message_id, folder_id, remote_id)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[])",
    )
    .bind::<Array<BigInt>, _>(&message_ids)
    .bind::<Array<BigInt>, _>(&folder_ids)
    .bind::<Array<Text>, _>(&remote_ids)
    .execute(tx)
    .await?)
}

/// Row ids for `n` new messages, so that their memberships and addresses can be written
/// without reading the rows back.
async fn allocate_ids(tx: &mut AsyncPgConnection, n: usize) -> Result<Vec<i64>, StoreError> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let ids: Vec<Id> = diesel::sql_query(
        "SELECT nextval(pg_get_serial_sequence('messages', 'id')) AS id
         FROM generate_series(1, $1)",
    )
    .bind::<BigInt, _>(n as i64)
    .load(tx)
    .await?;
    Ok(ids.into_iter().map(|i| i.id).collect())
}

/// Inserts the rows under the given ids. The rows go as arrays through one unnest(): a
/// multi-row VALUES would make Postgres parse and bind twenty parameters per message.
async fn insert_messages(
    tx: &mut AsyncPgConnection,
    ids: &[i64],
    rows: &[&NewMessage],
) -> Result<(), StoreError> {
    // Text arrays can't nest in an array of rows: one line per element (Message-IDs and
    // flags never hold a line break), split again by string_to_array.
    let lines = |v: &[String]| v.join("\n");
    diesel::sql_query(
        "INSERT INTO messages (id, account_id, provider_id, message_id,
             in_reply_to, reference_ids, thread_key, subject, from_name, from_email, sent_at,
             received_at, size_bytes, flags, text_body, html_body, attachments, content_hash,
             parse_problem)
         SELECT id, a, p, mid, irt, string_to_array(refs, E'\\n'), tk, subj, fname, femail,
                sent, recv, size, string_to_array(fl, E'\\n'), tb, hb, att, h, pp
         FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[],
                     $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                     $11::timestamptz[], $12::timestamptz[], $13::bigint[], $14::text[],
                     $15::text[], $16::text[], $17::jsonb[], $18::bytea[], $19::text[])
             AS n(id, a, p, mid, irt, refs, tk, subj, fname, femail, sent, recv, size, fl,
                  tb, hb, att, h, pp)",
    )
    .bind::<Array<BigInt>, _>(ids)
    .bind::<Array<BigInt>, _>(col(rows, |m| m.account_id))
    .bind::<Array<Nullable<Text>>, _>(col(rows, |m| m.provider_id.as_deref()))
    .bind::<Array<Nullable<Text>>, _>(col(rows, |m| m.message_id.as_deref()))
    .bind::<Array<Nullable<Text>>, _>(col(rows, |m| m.in_reply_to.as_deref()))
    .bind::<Array<Text>, _>(col(rows, |m| lines(&m.reference_ids)))
    .bind::<Array<Text>, _>(col(rows, |m| m.thread_key.as_str()))
    .bind::<Array<Nullable<Text>>, _>(col(rows, |m| m.subject.as_deref()))
    .bind::<Array<Nullable<Text>>, _>(col(rows, |m| m.from_name.as_deref()))
    .bind::<Array<Nullable<Text>>, _>(col(rows, |m| m.from_email.as_deref()))
    .bind::<Array<Nullable<Timestamptz>>, _>(col(rows, |m| m.sent_at))
    .bind::<Array<Nullable<Timestamptz>>, _>(col(rows, |m| m.received_at))
    .bind::<Array<BigInt>, _>(col(rows, |m| m.size_bytes))
    .bind::<Array<Text>, _>(col(rows, |m| lines(&m.flags)))
    .bind::<Array<Nullable<Text>>, _>(col(rows, |m| m.text_body.as_deref()))
    .bind::<Array<Nullable<Text>>, _>(col(rows, |m| m.html_body.as_deref()))
    .bind::<Array<Jsonb>, _>(col(rows, |m| &m.attachments))
    .bind::<Array<Bytea>, _>(col(rows, |m| m.content_hash.as_slice()))
    .bind::<Array<Nullable<Text>>, _>(col(rows, |m| m.parse_problem.as_deref()))
    .execute(tx)
    .await?;
    Ok(())
}

/// One column of the rows.
fn col<'a, T>(rows: &[&'a NewMessage], f: impl Fn(&'a NewMessage) -> T) -> Vec<T> {
    rows.iter().map(|m| f(m)).collect()
}

/// Addresses of stored messages, column by column.
#[derive(Default)]
struct AddressColumns<'a> {
    message_ids: Vec<i64>,
    fields: Vec<&'static str>,
    positions: Vec<i32>,
    names: Vec<Option<&'a str>>,
    emails: Vec<&'a str>,
}

impl<'a> AddressColumns<'a> {
    fn push(&mut self, message_id: i64, a: &'a AddressEntry) {
        self.message_ids.push(message_id);
        self.fields.push(a.field);
        self.positions.push(a.position);
        self.names.push(a.name.as_deref());
        self.emails.push(&a.email);
    }
}

async fn apply_removal(
    tx: &mut AsyncPgConnection,
    folder_id: i64,
    removal: &Removal,
) -> Result<usize, StoreError> {
    Ok(match removal {
        Removal::Nothing => 0,
        Removal::These(ids) if ids.is_empty() => 0,
        // A message left in no folder becomes an orphan (a trigger marks it): found in
        // another folder it is taken back, else deleted after the next complete sync.
        Removal::These(ids) => {
            diesel::sql_query(
                "DELETE FROM message_folders WHERE folder_id = $1 AND remote_id = ANY($2)",
            )
            .bind::<BigInt, _>(folder_id)
            .bind::<Array<Text>, _>(ids)
            .execute(tx)
            .await?
        }
        Removal::AllBut(ids) => {
            diesel::sql_query(
                "DELETE FROM message_folders WHERE folder_id = $1 AND remote_id <> ALL($2)",
            )
            .bind::<BigInt, _>(folder_id)
            .bind::<Array<Text>, _>(ids)
            .execute(tx)
            .await?
        }
        Removal::All => {
            diesel::sql_query(
                "UPDATE folders SET uidvalidity_changes = uidvalidity_changes + 1,
                        rebaselining = TRUE
                 WHERE id = $1",
            )
            .bind::<BigInt, _>(folder_id)
            .execute(tx)
            .await?;
            0
        }
    })
}

/// Gives stale rows the new ids of messages identified by Message-ID and size, one stale row
/// per identified message (the n-th copy of a key takes the n-th stale row).
async fn rematch_identified(
    tx: &mut AsyncPgConnection,
    folder_id: i64,
    prefix: &str,
    identified: &[IdentifiedCopy],
) -> Result<usize, StoreError> {
    if identified.is_empty() {
        return Ok(0);
    }
    let rids: Vec<&str> = identified.iter().map(|m| m.remote_id.as_str()).collect();
    let mids: Vec<&str> = identified.iter().map(|m| m.message_id.as_str()).collect();
    let sizes: Vec<i64> = identified.iter().map(|m| m.size).collect();
    let flags: Vec<String> = identified.iter().map(|m| m.flags.join(" ")).collect();
    Ok(diesel::sql_query(
        "WITH n AS (
             SELECT *, row_number() OVER (PARTITION BY mid, size ORDER BY rid) AS k
             FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[])
                 AS n(rid, mid, size, f)),
         s AS (
             SELECT m.id, m.message_id, m.size_bytes,
                    row_number() OVER (PARTITION BY m.message_id, m.size_bytes ORDER BY m.id) AS k
             FROM message_folders mf JOIN messages m ON m.id = mf.message_id
             WHERE mf.folder_id = $1 AND NOT starts_with(mf.remote_id, $6)
               AND m.message_id = ANY($3)),
         pairs AS (
             SELECT s.id, n.rid, n.f FROM n
             JOIN s ON s.message_id = n.mid AND s.size_bytes = n.size AND s.k = n.k),
         rekeyed AS (
             UPDATE message_folders mf SET remote_id = pairs.rid FROM pairs
             WHERE mf.folder_id = $1 AND mf.message_id = pairs.id)
         UPDATE messages SET flags = string_to_array(pairs.f, ' ')
         FROM pairs WHERE messages.id = pairs.id",
    )
    .bind::<BigInt, _>(folder_id)
    .bind::<Array<Text>, _>(&rids)
    .bind::<Array<Text>, _>(&mids)
    .bind::<Array<BigInt>, _>(&sizes)
    .bind::<Array<Text>, _>(&flags)
    .bind::<Text, _>(prefix)
    .execute(tx)
    .await?)
}

/// Stored copies in the folder per (Message-ID, size), for a provider identifying messages.
pub async fn count_copies(
    conn: &mut Conn,
    folder_id: i64,
    keys: &[(String, i64)],
) -> Result<Vec<(String, i64, i64)>, StoreError> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        message_id: String,
        #[diesel(sql_type = BigInt)]
        size_bytes: i64,
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mids: Vec<&str> = keys.iter().map(|(m, _)| m.as_str()).collect();
    let sizes: Vec<i64> = keys.iter().map(|(_, s)| *s).collect();
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT m.message_id, m.size_bytes, count(*) AS n
         FROM message_folders mf JOIN messages m ON m.id = mf.message_id
         JOIN unnest($2::text[], $3::bigint[]) AS k(mid, size)
           ON m.message_id = k.mid AND m.size_bytes = k.size
         WHERE mf.folder_id = $1
         GROUP BY m.message_id, m.size_bytes",
    )
    .bind::<BigInt, _>(folder_id)
    .bind::<Array<Text>, _>(&mids)
    .bind::<Array<BigInt>, _>(&sizes)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.message_id, r.size_bytes, r.n))
        .collect())
}

/// Gives stale rows (ids from before a UIDVALIDITY change) the new ids of the same messages in
/// this batch: first by identical bytes, then by Message-ID, one stale row per new id. The
/// batch's INSERT then skips them (the remote id exists), so row ids and links are kept.
async fn rematch(
    tx: &mut AsyncPgConnection,
    folder_id: i64,
    prefix: &str,
    batch: &[(NewMessage, Vec<AddressEntry>)],
) -> Result<usize, StoreError> {
    if batch.is_empty() {
        return Ok(0);
    }
    let rids: Vec<&str> = batch.iter().map(|(m, _)| m.remote_id.as_str()).collect();
    let flags: Vec<String> = batch.iter().map(|(m, _)| m.flags.join(" ")).collect();
    let hashes: Vec<&[u8]> = batch
        .iter()
        .map(|(m, _)| m.content_hash.as_slice())
        .collect();
    let mids: Vec<Option<&str>> = batch.iter().map(|(m, _)| m.message_id.as_deref()).collect();
    let mut total = 0;
    for key in ["m.content_hash = n.hash", "m.message_id = n.mid"] {
        total += diesel::sql_query(format!(
            "WITH n AS (
                 SELECT * FROM unnest($2::text[], $3::text[], $4::bytea[], $5::text[])
                     AS n(rid, f, hash, mid)
                 WHERE NOT EXISTS (SELECT 1 FROM message_folders x
                                   WHERE x.folder_id = $1 AND x.remote_id = n.rid)),
             pairs AS (
                 SELECT DISTINCT ON (m.id) m.id AS row_id, n.rid, n.f
                 FROM n JOIN message_folders mf
                        ON mf.folder_id = $1 AND NOT starts_with(mf.remote_id, $6)
                      JOIN messages m ON m.id = mf.message_id AND {key}
                 ORDER BY m.id, n.rid),
             one_each AS (SELECT DISTINCT ON (rid) * FROM pairs ORDER BY rid, row_id),
             rekeyed AS (
                 UPDATE message_folders mf SET remote_id = o.rid FROM one_each o
                 WHERE mf.folder_id = $1 AND mf.message_id = o.row_id)
             UPDATE messages SET flags = string_to_array(o.f, ' ')
             FROM one_each o WHERE messages.id = o.row_id"
        ))
        .bind::<BigInt, _>(folder_id)
        .bind::<Array<Text>, _>(&rids)
        .bind::<Array<Text>, _>(&flags)
        .bind::<Array<diesel::sql_types::Bytea>, _>(&hashes)
        .bind::<Array<diesel::sql_types::Nullable<Text>>, _>(&mids)
        .bind::<Text, _>(prefix)
        .execute(tx)
        .await?;
    }
    Ok(total)
}

/// Ends a re-baseline: stored messages still carrying old ids are gone from the folder.
async fn finish_rebaseline(
    tx: &mut AsyncPgConnection,
    folder_id: i64,
    prefix: &str,
) -> Result<usize, StoreError> {
    let gone = diesel::sql_query(
        "DELETE FROM message_folders WHERE folder_id = $1 AND NOT starts_with(remote_id, $2)",
    )
    .bind::<BigInt, _>(folder_id)
    .bind::<Text, _>(prefix)
    .execute(tx)
    .await?;
    diesel::sql_query("UPDATE folders SET rebaselining = FALSE WHERE id = $1")
        .bind::<BigInt, _>(folder_id)
        .execute(tx)
        .await?;
    Ok(gone)
}

/// Sets new flags where they differ. IMAP flags hold no spaces, so they travel as one
/// space-separated string per message.
async fn apply_flags(
    tx: &mut AsyncPgConnection,
    folder_id: i64,
    flags: &[(String, Vec<String>)],
) -> Result<usize, StoreError> {
    if flags.is_empty() {
        return Ok(0);
    }
    let ids: Vec<&str> = flags.iter().map(|(id, _)| id.as_str()).collect();
    let joined: Vec<String> = flags.iter().map(|(_, f)| f.join(" ")).collect();
    Ok(diesel::sql_query(
        "UPDATE messages m SET flags = string_to_array(u.f, ' ')
         FROM message_folders mf, unnest($2::text[], $3::text[]) AS u(rid, f)
         WHERE mf.folder_id = $1 AND mf.remote_id = u.rid AND m.id = mf.message_id
           AND m.flags IS DISTINCT FROM string_to_array(u.f, ' ')",
    )
    .bind::<BigInt, _>(folder_id)
    .bind::<Array<Text>, _>(&ids)
    .bind::<Array<Text>, _>(&joined)
    .execute(tx)
    .await?)
}

/// Creates contacts for unknown senders (when the account asks for it, never for the
/// account's own addresses) and links the messages to every contact named in from, to, cc or
/// bcc. `ON CONFLICT` makes two workers racing on one new address create a single contact.
async fn link_contacts(
    tx: &mut AsyncPgConnection,
    owner: &BatchOwner,
    addresses: &AddressColumns<'_>,
) -> Result<(usize, usize), StoreError> {
    if addresses.message_ids.is_empty() {
        return Ok((0, 0));
    }
    let mut created = 0;
    if owner.create_contacts {
        // Senders become contacts; the account's own addresses never do.
        let (mut emails, mut names) = (Vec::new(), Vec::new());
        for i in 0..addresses.emails.len() {
            let email = addresses.emails[i];
            if addresses.fields[i] == "from" && !owner.own_addresses.iter().any(|o| o == email) {
                emails.push(email);
                names.push(addresses.names[i]);
            }
        }
        if !emails.is_empty() {
            created = diesel::sql_query(
                "INSERT INTO contacts (email, name, created_by_account_id)
                 SELECT DISTINCT ON (s.email) s.email, NULLIF(btrim(s.name), ''), $3
                 FROM unnest($1::text[], $2::text[]) AS s(email, name)
                 ORDER BY s.email, s.name NULLS LAST
                 ON CONFLICT (email) DO NOTHING",
            )
            .bind::<Array<Text>, _>(&emails)
            .bind::<Array<Nullable<Text>>, _>(&names)
            .bind::<BigInt, _>(owner.account_id)
            .execute(tx)
            .await?;
        }
    }
    // Every message is linked to the contacts among its from, to, cc and bcc.
    let (mut message_ids, mut emails) = (Vec::new(), Vec::new());
    for i in 0..addresses.emails.len() {
        if addresses.fields[i] != "reply_to" {
            message_ids.push(addresses.message_ids[i]);
            emails.push(addresses.emails[i]);
        }
    }
    let links = diesel::sql_query(
        "INSERT INTO message_contacts (message_id, contact_id)
         SELECT DISTINCT s.message_id, c.id
         FROM unnest($1::bigint[], $2::text[]) AS s(message_id, email)
         JOIN contacts c ON c.email = s.email
         ON CONFLICT DO NOTHING",
    )
    .bind::<Array<BigInt>, _>(&message_ids)
    .bind::<Array<Text>, _>(&emails)
    .execute(tx)
    .await?;
    Ok((created, links))
}

/// The database's clock now: when a sync pass starts, for `drop_orphans` at its end.
pub async fn database_now(conn: &mut Conn) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
    #[derive(QueryableByName)]
    struct Now {
        #[diesel(sql_type = Timestamptz)]
        now: chrono::DateTime<chrono::Utc>,
    }
    let row: Now = diesel::sql_query("SELECT clock_timestamp() AS now")
        .get_result(conn)
        .await?;
    Ok(row.now)
}

/// Deletes the account's messages that were orphaned (in no folder) before `before`: a
/// complete sync that started then found them in no active folder, so they are gone from the
/// server or moved where the account does not sync.
pub async fn drop_orphans(
    conn: &mut Conn,
    account_id: i64,
    before: chrono::DateTime<chrono::Utc>,
    fence: Option<crate::leases::Fence>,
) -> Result<usize, StoreError> {
    let conn: &mut AsyncPgConnection = conn;
    conn.transaction(async |tx| {
        crate::leases::check(tx, fence).await?;
        Ok(diesel::sql_query(
            "DELETE FROM messages
             WHERE account_id = $1 AND orphaned_at < $2
               AND NOT EXISTS (SELECT 1 FROM message_folders mf WHERE mf.message_id = messages.id)",
        )
        .bind::<BigInt, _>(account_id)
        .bind::<Timestamptz, _>(before)
        .execute(tx)
        .await?)
    })
    .await
}

/// What a reply needs of the message it answers.
#[derive(Debug, Clone, Queryable)]
pub struct ReplyParent {
    pub account_id: i64,
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub reference_ids: Vec<String>,
    pub subject: Option<String>,
}

pub async fn reply_parent(conn: &mut Conn, id: i64) -> Result<ReplyParent, StoreError> {
    messages::table
        .find(id)
        .select((
            messages::account_id,
            messages::message_id,
            messages::in_reply_to,
            messages::reference_ids,
            messages::subject,
        ))
        .first(conn)
        .await
        .optional()?
        .ok_or(StoreError::NotFound {
            what: "message",
            id,
        })
}
