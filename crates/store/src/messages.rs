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
    pub imap_uid: Option<i64>,
    pub message_id: String,
    pub size: i64,
    pub flags: Vec<String>,
}

/// Stores a batch of fetched messages and moves the folder's cursor past them, in one
/// transaction: either both happen or neither, so a crash re-fetches the batch and the unique
/// (folder_id, remote_id) key drops what is already there.
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
        let (ids, contacts_created, contact_links) = insert_linked(tx, owner, batch).await?;

        if let (true, true, Some(prefix)) = (
            rebaselining,
            changes.folder_complete,
            changes.current_prefix.as_deref(),
        ) {
            removed += finish_rebaseline(tx, owner.folder_id, prefix).await?;
        }
        save_cursor(tx, owner.folder_id, cursor).await?;
        Ok::<_, StoreError>(BatchOutcome {
            inserted: ids.len(),
            rematched,
            flags_updated,
            removed,
            contacts_created,
            contact_links,
        })
    })
    .await
}

/// Inserts messages with their addresses (rows already there are skipped) and links them to
/// contacts. Returns the new row ids, contacts created and links made.
pub(crate) async fn insert_linked(
    tx: &mut AsyncPgConnection,
    owner: &BatchOwner,
    batch: Vec<(NewMessage, Vec<AddressEntry>)>,
) -> Result<(Vec<i64>, usize, usize), StoreError> {
    let mut addresses_by_remote: HashMap<String, Vec<AddressEntry>> = HashMap::new();
    let mut rows = Vec::with_capacity(batch.len());
    for (msg, addrs) in batch {
        addresses_by_remote.insert(msg.remote_id.clone(), addrs);
        rows.push(msg);
    }
    let inserted = insert_messages(tx, &rows).await?;
    // The new messages' addresses, as columns: one unnest() beats thousands of parameters.
    let mut addresses = AddressColumns::default();
    for (id, remote) in &inserted {
        for a in addresses_by_remote.get(remote).into_iter().flatten() {
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
    let ids: Vec<i64> = inserted.iter().map(|(id, _)| *id).collect();
    let (created, links) = link_contacts(tx, owner, &addresses).await?;
    Ok((ids, created, links))
}

/// Inserts the rows (those already there are skipped); returns the new ids with their remote
/// ids. The rows go as twenty arrays through one unnest(): a multi-row VALUES would make
/// Postgres parse and bind twenty parameters per message.
async fn insert_messages(
    tx: &mut AsyncPgConnection,
    rows: &[NewMessage],
) -> Result<Vec<(i64, String)>, StoreError> {
    #[derive(QueryableByName)]
    struct Inserted {
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = Text)]
        remote_id: String,
    }
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // Text arrays can't nest in an array of rows: one line per element (Message-IDs and
    // flags never hold a line break), split again by string_to_array.
    let lines = |v: &[String]| v.join("\n");
    let inserted: Vec<Inserted> = diesel::sql_query(
        "INSERT INTO messages (account_id, folder_id, remote_id, imap_uid, message_id,
             in_reply_to, reference_ids, thread_key, subject, from_name, from_email, sent_at,
             received_at, size_bytes, flags, text_body, html_body, attachments, content_hash,
             parse_problem)
         SELECT a, f, r, u, mid, irt, string_to_array(refs, E'\\n'), tk, subj, fname, femail,
                sent, recv, size, string_to_array(fl, E'\\n'), tb, hb, att, h, pp
         FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::text[],
                     $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
                     $12::timestamptz[], $13::timestamptz[], $14::bigint[], $15::text[],
                     $16::text[], $17::text[], $18::jsonb[], $19::bytea[], $20::text[])
             AS n(a, f, r, u, mid, irt, refs, tk, subj, fname, femail, sent, recv, size, fl,
                  tb, hb, att, h, pp)
         ON CONFLICT (folder_id, remote_id) DO NOTHING
         RETURNING id, remote_id",
    )
    .bind::<Array<BigInt>, _>(col(rows, |m| m.account_id))
    .bind::<Array<BigInt>, _>(col(rows, |m| m.folder_id))
    .bind::<Array<Text>, _>(col(rows, |m| m.remote_id.as_str()))
    .bind::<Array<Nullable<BigInt>>, _>(col(rows, |m| m.imap_uid))
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
    .load(tx)
    .await?;
    Ok(inserted.into_iter().map(|i| (i.id, i.remote_id)).collect())
}

/// One column of the rows.
fn col<'a, T>(rows: &'a [NewMessage], f: impl Fn(&'a NewMessage) -> T) -> Vec<T> {
    rows.iter().map(f).collect()
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
        Removal::These(ids) => {
            diesel::sql_query("DELETE FROM messages WHERE folder_id = $1 AND remote_id = ANY($2)")
                .bind::<BigInt, _>(folder_id)
                .bind::<Array<Text>, _>(ids)
                .execute(tx)
                .await?
        }
        Removal::AllBut(ids) => {
            diesel::sql_query("DELETE FROM messages WHERE folder_id = $1 AND remote_id <> ALL($2)")
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
    let uids: Vec<Option<i64>> = identified.iter().map(|m| m.imap_uid).collect();
    let mids: Vec<&str> = identified.iter().map(|m| m.message_id.as_str()).collect();
    let sizes: Vec<i64> = identified.iter().map(|m| m.size).collect();
    let flags: Vec<String> = identified.iter().map(|m| m.flags.join(" ")).collect();
    Ok(diesel::sql_query(
        "WITH n AS (
             SELECT *, row_number() OVER (PARTITION BY mid, size ORDER BY rid) AS k
             FROM unnest($2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::text[])
                 AS n(rid, uid, mid, size, f)),
         s AS (
             SELECT m.id, m.message_id, m.size_bytes,
                    row_number() OVER (PARTITION BY m.message_id, m.size_bytes ORDER BY m.id) AS k
             FROM messages m
             WHERE m.folder_id = $1 AND NOT starts_with(m.remote_id, $7)
               AND m.message_id = ANY($4))
         UPDATE messages SET remote_id = n.rid, imap_uid = n.uid, flags = string_to_array(n.f, ' ')
         FROM n JOIN s ON s.message_id = n.mid AND s.size_bytes = n.size AND s.k = n.k
         WHERE messages.id = s.id",
    )
    .bind::<BigInt, _>(folder_id)
    .bind::<Array<Text>, _>(&rids)
    .bind::<Array<diesel::sql_types::Nullable<BigInt>>, _>(&uids)
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
         FROM messages m JOIN unnest($2::text[], $3::bigint[]) AS k(mid, size)
           ON m.message_id = k.mid AND m.size_bytes = k.size
         WHERE m.folder_id = $1
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
    let uids: Vec<Option<i64>> = batch.iter().map(|(m, _)| m.imap_uid).collect();
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
                 SELECT * FROM unnest($2::text[], $3::bigint[], $4::text[], $5::bytea[], $6::text[])
                     AS n(rid, uid, f, hash, mid)
                 WHERE NOT EXISTS (SELECT 1 FROM messages x WHERE x.folder_id = $1 AND x.remote_id = n.rid)),
             pairs AS (
                 SELECT DISTINCT ON (m.id) m.id AS row_id, n.rid, n.uid, n.f
                 FROM n JOIN messages m ON m.folder_id = $1 AND NOT starts_with(m.remote_id, $7)
                                       AND {key}
                 ORDER BY m.id, n.rid),
             one_each AS (SELECT DISTINCT ON (rid) * FROM pairs ORDER BY rid, row_id)
             UPDATE messages SET remote_id = o.rid, imap_uid = o.uid, flags = string_to_array(o.f, ' ')
             FROM one_each o WHERE messages.id = o.row_id"
        ))
        .bind::<BigInt, _>(folder_id)
        .bind::<Array<Text>, _>(&rids)
        .bind::<Array<diesel::sql_types::Nullable<BigInt>>, _>(&uids)
        .bind::<Array<Text>, _>(&flags)
        .bind::<Array<diesel::sql_types::Bytea>, _>(&hashes)
        .bind::<Array<diesel::sql_types::Nullable<Text>>, _>(&mids)
        .bind::<Text, _>(prefix)
        .execute(tx)
        .await?;
    }
    Ok(total)
}

/// Ends a re-baseline: stored rows still carrying old ids are gone from the server.
async fn finish_rebaseline(
    tx: &mut AsyncPgConnection,
    folder_id: i64,
    prefix: &str,
) -> Result<usize, StoreError> {
    let gone = diesel::sql_query(
        "DELETE FROM messages WHERE folder_id = $1 AND NOT starts_with(remote_id, $2)",
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
         FROM unnest($2::text[], $3::text[]) AS u(rid, f)
         WHERE m.folder_id = $1 AND m.remote_id = u.rid
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
