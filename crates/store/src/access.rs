//! Access to shared inboxes, granted by administrators.

use crate::schema::account_access as aa;
use crate::{Conn, StoreError};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

pub async fn grant(conn: &mut Conn, account_id: i64, user_id: i64) -> Result<(), StoreError> {
    diesel::insert_into(aa::table)
        .values((aa::account_id.eq(account_id), aa::user_id.eq(user_id)))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether a grant was there to revoke.
pub async fn revoke(conn: &mut Conn, account_id: i64, user_id: i64) -> Result<bool, StoreError> {
    Ok(diesel::delete(aa::table.find((account_id, user_id)))
        .execute(conn)
        .await?
        == 1)
}

/// Users granted access to the account.
pub async fn granted(conn: &mut Conn, account_id: i64) -> Result<Vec<i64>, StoreError> {
    Ok(aa::table
        .filter(aa::account_id.eq(account_id))
        .select(aa::user_id)
        .order(aa::user_id)
        .load(conn)
        .await?)
}
