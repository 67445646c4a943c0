use crate::models::{NewUser, User};
use crate::schema::users;
use crate::{Conn, StoreError};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

pub async fn create(conn: &mut Conn, new: NewUser<'_>) -> Result<User, StoreError> {
    diesel::insert_into(users::table)
        .values(&new)
        .returning(User::as_returning())
        .get_result(conn)
        .await
        .map_err(|e| match e {
            diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            ) => StoreError::Conflict(format!("a user with e-mail {} exists", new.email)),
            e => e.into(),
        })
}

pub async fn get(conn: &mut Conn, id: i64) -> Result<User, StoreError> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(StoreError::NotFound { what: "user", id })
}

/// Sets (or clears, with `None`) the signature appended to what the user sends.
pub async fn set_signature(
    conn: &mut Conn,
    id: i64,
    text: Option<&str>,
    html: Option<&str>,
) -> Result<User, StoreError> {
    diesel::update(users::table.find(id))
        .set((
            users::signature_text.eq(text),
            users::signature_html.eq(html),
        ))
        .returning(User::as_returning())
        .get_result(conn)
        .await
        .optional()?
        .ok_or(StoreError::NotFound { what: "user", id })
}
