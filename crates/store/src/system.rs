//! Settings of the installation as a whole: which account sends system mail.

use crate::schema::system_settings as ss;
use crate::{Conn, StoreError};
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

pub async fn system_account(conn: &mut Conn) -> Result<Option<i64>, StoreError> {
    Ok(ss::table
        .select(ss::system_account_id)
        .first::<Option<i64>>(conn)
        .await
        .optional()?
        .flatten())
}

pub async fn set_system_account(
    conn: &mut Conn,
    account_id: Option<i64>,
) -> Result<(), StoreError> {
    diesel::update(ss::table)
        .set((
            ss::system_account_id.eq(account_id),
            ss::updated_at.eq(Utc::now()),
        ))
        .execute(conn)
        .await?;
    Ok(())
}
