use crate::schema::connection_tests;
use crate::{Conn, StoreError};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;

/// Rows older than this are leftovers of callers that went away.
const FORGET_AFTER_SECS: i64 = 600;

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// Reserves an id (the sealed credentials are bound to it).
pub async fn next_id(conn: &mut Conn) -> Result<i64, StoreError> {
    let row: IdRow = diesel::sql_query("SELECT nextval('connection_tests_id_seq') AS id")
        .get_result(conn)
        .await?;
    Ok(row.id)
}

pub async fn insert(
    conn: &mut Conn,
    id: i64,
    settings: &serde_json::Value,
    credentials: &[u8],
) -> Result<(), StoreError> {
    diesel::sql_query(format!(
        "DELETE FROM connection_tests WHERE created_at < now() - interval '{FORGET_AFTER_SECS} seconds'"
    ))
    .execute(conn)
    .await?;
    diesel::insert_into(connection_tests::table)
        .values((
            connection_tests::id.eq(id),
            connection_tests::settings.eq(settings),
            connection_tests::credentials.eq(credentials),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The settings and sealed credentials of a test, if it is still wanted.
pub async fn get(conn: &mut Conn, id: i64) -> Result<(serde_json::Value, Vec<u8>), StoreError> {
    connection_tests::table
        .find(id)
        .select((connection_tests::settings, connection_tests::credentials))
        .first(conn)
        .await
        .optional()?
        .ok_or(StoreError::NotFound {
            what: "connection test",
            id,
        })
}

pub async fn delete(conn: &mut Conn, id: i64) -> Result<(), StoreError> {
    diesel::delete(connection_tests::table.find(id))
        .execute(conn)
        .await?;
    Ok(())
}
