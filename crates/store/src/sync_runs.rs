use crate::schema::sync_runs;
use crate::{Conn, StoreError};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

pub async fn start(
    conn: &mut Conn,
    account_id: i64,
    job_id: uuid::Uuid,
) -> Result<i64, StoreError> {
    Ok(diesel::insert_into(sync_runs::table)
        .values((
            sync_runs::account_id.eq(account_id),
            sync_runs::job_id.eq(job_id),
        ))
        .returning(sync_runs::id)
        .get_result(conn)
        .await?)
}

pub struct RunEnd<'a> {
    pub outcome: &'a str,
    pub messages_added: i64,
    pub bytes_fetched: i64,
    pub error: Option<&'a str>,
}

pub async fn finish(conn: &mut Conn, run_id: i64, end: RunEnd<'_>) -> Result<(), StoreError> {
    diesel::update(sync_runs::table.find(run_id))
        .set((
            sync_runs::finished_at.eq(diesel::dsl::now),
            sync_runs::outcome.eq(end.outcome),
            sync_runs::messages_added.eq(end.messages_added),
            sync_runs::bytes_fetched.eq(end.bytes_fetched),
            sync_runs::error.eq(end.error),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Messages added and bytes fetched by all of an account's sync runs.
pub async fn totals(conn: &mut Conn, account_id: i64) -> Result<(i64, i64), StoreError> {
    use diesel::sql_types::BigInt;
    #[derive(QueryableByName)]
    struct Totals {
        #[diesel(sql_type = BigInt)]
        messages: i64,
        #[diesel(sql_type = BigInt)]
        bytes: i64,
    }
    let t: Totals = diesel::sql_query(
        "SELECT COALESCE(SUM(messages_added), 0)::bigint AS messages,
                COALESCE(SUM(bytes_fetched), 0)::bigint AS bytes
         FROM sync_runs WHERE account_id = $1",
    )
    .bind::<BigInt, _>(account_id)
    .get_result(conn)
    .await?;
    Ok((t.messages, t.bytes))
}
