use crate::leases::Fence;
use crate::models::Folder;
use crate::schema::{folders, message_folders};
use crate::{Conn, StoreError};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;
use std::collections::HashMap;

/// A folder as the server lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFolder {
    pub name: String,
    /// The server's stable id of the folder, when it has one.
    pub remote_id: Option<String>,
    pub delimiter: Option<String>,
    pub role: Option<String>,
    pub selectable: bool,
    /// Whether a folder seen for the first time starts active.
    pub active_if_new: bool,
}

#[derive(Insertable)]
#[diesel(table_name = folders)]
struct NewFolder<'a> {
    account_id: i64,
    name: &'a str,
    remote_id: Option<&'a str>,
    delimiter: Option<&'a str>,
    role: Option<&'a str>,
    active: bool,
    selectable: bool,
}

/// Inserts folders seen for the first time and refreshes what the server says of known ones;
/// the user's choice of active folders is kept.
pub async fn upsert_listed(
    conn: &mut Conn,
    account_id: i64,
    listed: &[ListedFolder],
    fence: Option<Fence>,
) -> Result<Vec<Folder>, StoreError> {
    use diesel_async::AsyncConnection;
    let conn: &mut diesel_async::AsyncPgConnection = conn;
    conn.transaction(async |tx| {
        crate::leases::check(tx, fence).await?;
        apply_renames(tx, account_id, listed).await?;
        upsert_rows(tx, account_id, listed).await
    })
    .await?;
    list(conn, account_id).await
}

/// Stores a folder's position outside a batch (e.g. Trash and Junk at the first sync).
pub async fn save_position(
    conn: &mut Conn,
    folder_id: i64,
    cursor: &CursorUpdate,
    fence: Option<Fence>,
) -> Result<(), StoreError> {
    use diesel_async::AsyncConnection;
    let conn: &mut diesel_async::AsyncPgConnection = conn;
    conn.transaction(async |tx| {
        crate::leases::check(tx, fence).await?;
        save_cursor(tx, folder_id, cursor).await
    })
    .await
}

/// Renames stored folders the server renamed, told by their stable id (servers with folder
/// ids only): the row keeps its messages and cursor. Returns (old, new) names.
async fn apply_renames(
    tx: &mut diesel_async::AsyncPgConnection,
    account_id: i64,
    listed: &[ListedFolder],
) -> Result<Vec<(String, String)>, StoreError> {
    if listed.iter().all(|l| l.remote_id.is_none()) {
        return Ok(Vec::new());
    }
    let stored: Vec<(i64, String, Option<String>)> = folders::table
        .filter(folders::account_id.eq(account_id))
        .select((folders::id, folders::name, folders::remote_id))
        .for_update()
        .load(tx)
        .await?;
    let mut renamed = Vec::new();
    for (id, name, remote) in &stored {
        let Some(remote) = remote else { continue };
        if listed.iter().any(|l| &l.name == name) {
            continue;
        }
        let target = listed.iter().find(|l| {
            l.remote_id.as_ref() == Some(remote) && !stored.iter().any(|(_, n, _)| n == &l.name)
        });
        if let Some(l) = target {
            diesel::update(folders::table.find(*id))
                .set(folders::name.eq(&l.name))
                .execute(tx)
                .await?;
            renamed.push((name.clone(), l.name.clone()));
        }
    }
    Ok(renamed)
}

/// Inserts listed folders (`active_if_new` and selectable: active) and refreshes what the
/// server says of stored ones.
pub(crate) async fn upsert_rows(
    conn: &mut diesel_async::AsyncPgConnection,
    account_id: i64,
    listed: &[ListedFolder],
) -> Result<(), StoreError> {
    let rows: Vec<NewFolder<'_>> = listed
        .iter()
        .map(|f| NewFolder {
            account_id,
            name: &f.name,
            remote_id: f.remote_id.as_deref(),
            delimiter: f.delimiter.as_deref(),
            role: f.role.as_deref(),
            active: f.active_if_new && f.selectable,
            selectable: f.selectable,
        })
        .collect();
    if !rows.is_empty() {
        diesel::insert_into(folders::table)
            .values(&rows)
            .on_conflict((folders::account_id, folders::name))
            .do_update()
            .set((
                folders::delimiter.eq(excluded(folders::delimiter)),
                folders::role.eq(excluded(folders::role)),
                folders::selectable.eq(excluded(folders::selectable)),
                folders::remote_id.eq(excluded(folders::remote_id)),
            ))
            .execute(conn)
            .await?;
    }
    Ok(())
}

pub async fn list(
    conn: &mut diesel_async::AsyncPgConnection,
    account_id: i64,
) -> Result<Vec<Folder>, StoreError> {
    Ok(folders::table
        .filter(folders::account_id.eq(account_id))
        .select(Folder::as_select())
        .order(folders::name)
        .load(conn)
        .await?)
}

/// What an account stores: messages per folder id, and messages in all (a message in several
/// folders counts once).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageCounts {
    pub per_folder: HashMap<i64, i64>,
    pub total: i64,
}

pub async fn message_counts(conn: &mut Conn, account_id: i64) -> Result<MessageCounts, StoreError> {
    let rows: Vec<(i64, i64)> = message_folders::table
        .inner_join(folders::table)
        .filter(folders::account_id.eq(account_id))
        .group_by(message_folders::folder_id)
        .select((message_folders::folder_id, diesel::dsl::count_star()))
        .load(conn)
        .await?;
    let total: i64 = crate::schema::messages::table
        .filter(crate::schema::messages::account_id.eq(account_id))
        .filter(crate::schema::messages::orphaned_at.is_null())
        .count()
        .get_result(conn)
        .await?;
    Ok(MessageCounts {
        per_folder: rows.into_iter().collect(),
        total,
    })
}

/// The stored sync position of a folder; every field is written as given.
#[derive(Debug, Clone, Default, PartialEq, Eq, AsChangeset)]
#[diesel(table_name = folders, treat_none_as_null = true)]
pub struct CursorUpdate {
    pub uidvalidity: Option<i64>,
    pub uidnext: Option<i64>,
    pub highestmodseq: Option<i64>,
    pub history_id: Option<String>,
    pub delta_link: Option<String>,
}

pub async fn save_cursor(
    conn: &mut diesel_async::AsyncPgConnection,
    folder_id: i64,
    cursor: &CursorUpdate,
) -> Result<(), StoreError> {
    diesel::update(folders::table.find(folder_id))
        .set((cursor, folders::last_synced_at.eq(diesel::dsl::now)))
        .execute(conn)
        .await?;
    Ok(())
}

/// Refuses active folders that are not among `folders` (name, selectable) or hold no
/// messages: for `PUT …/folders` and for an account connected with chosen folders alike.
pub fn check_choice<'a>(
    folders: impl Iterator<Item = (&'a str, bool)> + Clone,
    chosen: &[String],
) -> Result<(), StoreError> {
    let unknown: Vec<&String> = chosen
        .iter()
        .filter(|c| !folders.clone().any(|(name, _)| name == c.as_str()))
        .collect();
    if !unknown.is_empty() {
        return Err(StoreError::Invalid(format!(
            "the mailbox has no folder named {unknown:?} (a connection test lists its folders)"
        )));
    }
    let unselectable: Vec<&str> = folders
        .filter(|(name, selectable)| !selectable && chosen.iter().any(|c| c == name))
        .map(|(name, _)| name)
        .collect();
    if !unselectable.is_empty() {
        return Err(StoreError::Invalid(format!(
            "folders {unselectable:?} hold no messages and cannot be active"
        )));
    }
    Ok(())
}

/// Makes exactly `names` the account's active folders. A folder that stops being active loses
/// its stored messages and its cursor (the product shows only active folders; activated again,
/// it syncs anew from the account's window). Fails, changing nothing, on a name the account
/// does not have or a folder that cannot be selected.
pub async fn set_active(
    conn: &mut Conn,
    account_id: i64,
    names: &[String],
) -> Result<Vec<Folder>, StoreError> {
    use diesel_async::AsyncConnection;
    let conn: &mut diesel_async::AsyncPgConnection = conn;
    conn.transaction(async |tx| {
        let all: Vec<Folder> = folders::table
            .filter(folders::account_id.eq(account_id))
            .select(Folder::as_select())
            .for_update()
            .load(tx)
            .await?;
        check_choice(all.iter().map(|f| (f.name.as_str(), f.selectable)), names)?;
        for f in &all {
            let active = names.contains(&f.name);
            if f.active && !active {
                // Its messages go, but for those another folder still holds (memberships).
                diesel::sql_query(
                    "DELETE FROM messages m
                     WHERE m.id IN (SELECT message_id FROM message_folders WHERE folder_id = $1)
                       AND NOT EXISTS (SELECT 1 FROM message_folders o
                                       WHERE o.message_id = m.id AND o.folder_id <> $1)",
                )
                .bind::<diesel::sql_types::BigInt, _>(f.id)
                .execute(tx)
                .await?;
                diesel::delete(message_folders::table.filter(message_folders::folder_id.eq(f.id)))
                    .execute(tx)
                    .await?;
                diesel::update(folders::table.find(f.id))
                    .set((folders::active.eq(false), &CursorUpdate::default()))
                    .execute(tx)
                    .await?;
            } else if !f.active && active {
                diesel::update(folders::table.find(f.id))
                    .set(folders::active.eq(true))
                    .execute(tx)
                    .await?;
            }
        }
        Ok::<_, StoreError>(())
    })
    .await?;
    list(conn, account_id).await
}

/// What a folder refresh changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// (old name, new name) of folders the server renamed, kept with their messages.
    pub renamed: Vec<(String, String)>,
}

/// Makes the stored folder list the server's: folders new on the server are added inactive;
/// folders gone from it are deleted with their messages. Without stable folder ids a renamed
/// folder is both (the product spec: dropped and created anew).
pub async fn reconcile(
    conn: &mut Conn,
    account_id: i64,
    listed: &[ListedFolder],
    fence: Option<Fence>,
) -> Result<Reconciled, StoreError> {
    use diesel_async::AsyncConnection;
    let conn: &mut diesel_async::AsyncPgConnection = conn;
    conn.transaction(async |tx| {
        crate::leases::check(tx, fence).await?;
        let renamed = apply_renames(tx, account_id, listed).await?;
        let before: Vec<String> = folders::table
            .filter(folders::account_id.eq(account_id))
            .select(folders::name)
            .load(tx)
            .await?;
        let removed: Vec<String> = before
            .iter()
            .filter(|n| !listed.iter().any(|l| &l.name == *n))
            .cloned()
            .collect();
        let added: Vec<String> = listed
            .iter()
            .filter(|l| !before.contains(&l.name))
            .map(|l| l.name.clone())
            .collect();
        if !removed.is_empty() {
            // Messages go with their folder (ON DELETE CASCADE).
            diesel::delete(
                folders::table
                    .filter(folders::account_id.eq(account_id))
                    .filter(folders::name.eq_any(&removed)),
            )
            .execute(tx)
            .await?;
        }
        let new_inactive: Vec<ListedFolder> = listed
            .iter()
            .map(|l| ListedFolder {
                active_if_new: false,
                ..l.clone()
            })
            .collect();
        upsert_rows(tx, account_id, &new_inactive).await?;
        Ok::<_, StoreError>(Reconciled {
            added,
            removed,
            renamed,
        })
    })
    .await
}

/// Names servers without SPECIAL-USE give their Sent folder.
const SENT_NAMES: [&str; 4] = ["Sent", "Sent Items", "Sent Messages", "INBOX.Sent"];

/// The account's Sent folder: the one with the `sent` role, else the first usual name.
pub async fn sent_folder(conn: &mut Conn, account_id: i64) -> Result<Option<Folder>, StoreError> {
    let all = list(conn, account_id).await?;
    if let Some(f) = all.iter().find(|f| f.role.as_deref() == Some("sent")) {
        return Ok(Some(f.clone()));
    }
    Ok(SENT_NAMES
        .iter()
        .find_map(|n| all.iter().find(|f| f.name.eq_ignore_ascii_case(n)))
        .cloned())
}

/// Records a folder found or created outside a folder refresh (inactive: the user did not
/// choose it).
pub async fn insert_created(
    conn: &mut Conn,
    account_id: i64,
    name: &str,
    role: Option<&str>,
) -> Result<Folder, StoreError> {
    diesel::insert_into(folders::table)
        .values(NewFolder {
            account_id,
            name,
            remote_id: None,
            delimiter: None,
            role,
            active: false,
            selectable: true,
        })
        .on_conflict((folders::account_id, folders::name))
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(folders::table
        .filter(folders::account_id.eq(account_id))
        .filter(folders::name.eq(name))
        .select(Folder::as_select())
        .first(conn)
        .await?)
}
