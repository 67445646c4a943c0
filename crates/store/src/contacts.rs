use crate::schema::{contacts, message_contacts, messages};
use crate::{Conn, StoreError};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

/// Adds a CRM contact (normalised address), or leaves the existing one; returns its id.
pub async fn upsert(
    conn: &mut Conn,
    email: &mailfleet_core::EmailAddress,
    name: Option<&str>,
) -> Result<i64, StoreError> {
    diesel::insert_into(contacts::table)
        .values((contacts::email.eq(email.as_str()), contacts::name.eq(name)))
        .on_conflict(contacts::email)
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(contacts::table
        .filter(contacts::email.eq(email.as_str()))
        .select(contacts::id)
        .first(conn)
        .await?)
}

/// Contacts the account's sync created, and distinct contacts its messages are linked to.
pub async fn account_stats(conn: &mut Conn, account_id: i64) -> Result<(i64, i64), StoreError> {
    let created: i64 = contacts::table
        .filter(contacts::created_by_account_id.eq(account_id))
        .count()
        .get_result(conn)
        .await?;
    let linked: i64 = message_contacts::table
        .inner_join(messages::table)
        .filter(messages::account_id.eq(account_id))
        .select(diesel::dsl::count(message_contacts::contact_id).aggregate_distinct())
        .get_result(conn)
        .await?;
    Ok((created, linked))
}

/// Fails with `NotFound` unless the contact exists.
pub async fn get(conn: &mut Conn, id: i64) -> Result<(i64, String), StoreError> {
    contacts::table
        .find(id)
        .select((contacts::id, contacts::email))
        .first(conn)
        .await
        .optional()?
        .ok_or(StoreError::NotFound {
            what: "contact",
            id,
        })
}
