//! People and what they reach: deleting users and accounts, the primary account, access to
//! shared inboxes, and messages as the acting user may see them (row-level security in
//! Postgres decides; see `mailfleet_store::viewer`).

use crate::acting::{ActingUser, Need, forbidden};
use crate::error::ApiError;
use crate::extract::{JsonBody, Path, Query};
use crate::state::ApiState;
use crate::views::MessageView;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use chrono::{DateTime, Utc};
use mailfleet_store::viewer::{MessageFilter, MessageSummary, Viewer};
use mailfleet_store::{StoreError, access, accounts, deletion, users, viewer};
use serde::{Deserialize, Serialize};

/// Messages deleted per statement when a mailbox goes.
const DELETE_BATCH: i64 = 5_000;

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DeletedView {
    deleted_accounts: usize,
    deleted_messages: usize,
}

/// `DELETE /v1/users/{id}` (administrators): the user, their personal accounts and all of
/// those accounts' mail and outgoing messages. Shared accounts and contacts stay.
#[utoipa::path(delete, path = "/v1/users/{id}", tag = "users", params(("id" = i64, Path, minimum = 1)), responses((status = 200, body = DeletedView), (status = 403, description = "administrators only", body = crate::error::Body), (status = 404, description = "no such user", body = crate::error::Body)))]
pub(crate) async fn delete_user(
    State(s): State<ApiState>,
    user: ActingUser,
    Path(id): Path<i64>,
) -> Result<Json<DeletedView>, ApiError> {
    user.require_admin()?;
    let mut conn = s.store.conn().await?;
    let d = deletion::delete_user(&mut conn, id, DELETE_BATCH).await?;
    tracing::info!(
        user_id = id,
        accounts = d.accounts,
        messages = d.messages,
        "User deleted."
    );
    Ok(Json(DeletedView {
        deleted_accounts: d.accounts,
        deleted_messages: d.messages,
    }))
}

/// `DELETE /v1/accounts/{id}`: its owner (personal) or an administrator (shared).
#[utoipa::path(delete, path = "/v1/accounts/{id}", tag = "accounts", params(("id" = i64, Path, minimum = 1)), responses((status = 200, body = DeletedView), (status = 403, description = "not the user's to delete", body = crate::error::Body), (status = 404, description = "not found", body = crate::error::Body)))]
pub(crate) async fn delete_account(
    State(s): State<ApiState>,
    user: ActingUser,
    Path(id): Path<i64>,
) -> Result<Json<DeletedView>, ApiError> {
    user.account(&s, id, Need::Manage).await?;
    let mut conn = s.store.conn().await?;
    let d = deletion::delete_account(&mut conn, id, DELETE_BATCH).await?;
    tracing::info!(account_id = id, messages = d.messages, "Account deleted.");
    Ok(Json(DeletedView {
        deleted_accounts: d.accounts,
        deleted_messages: d.messages,
    }))
}

/// `POST /v1/accounts/{id}/primary`: one of the user's own (personal) accounts.
#[utoipa::path(post, path = "/v1/accounts/{id}/primary", tag = "accounts", params(("id" = i64, Path, minimum = 1)), responses((status = 200, body = PrimaryView), (status = 404, description = "not found", body = crate::error::Body), (status = 422, description = "not_personal", body = crate::error::Body)))]
pub(crate) async fn set_primary(
    State(s): State<ApiState>,
    user: ActingUser,
    Path(id): Path<i64>,
) -> Result<Json<PrimaryView>, ApiError> {
    let account = user.account(&s, id, Need::Use).await?;
    if account.kind != "personal" || account.owner_user_id != Some(user.id()) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_personal",
            "only one of your own personal accounts can be your primary account",
        ));
    }
    let mut conn = s.store.conn().await?;
    accounts::set_primary(&mut conn, id, user.id()).await?;
    Ok(Json(PrimaryView {
        account_id: id,
        is_primary: true,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct PrimaryView {
    account_id: i64,
    is_primary: bool,
}

async fn shared_for_admin(s: &ApiState, user: &ActingUser, id: i64) -> Result<(), ApiError> {
    user.require_admin()?;
    let account = user.account(s, id, Need::Manage).await?;
    if account.kind != "shared" {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_shared",
            "access is granted to shared inboxes only; a personal account is its owner's",
        ));
    }
    Ok(())
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AccessView {
    account_id: i64,
    user_ids: Vec<i64>,
}

#[utoipa::path(get, path = "/v1/accounts/{id}/access", tag = "accounts", params(("id" = i64, Path, minimum = 1)), responses((status = 200, body = AccessView), (status = 403, description = "administrators only", body = crate::error::Body), (status = 404, description = "no such account", body = crate::error::Body), (status = 422, description = "not_shared", body = crate::error::Body)))]
pub(crate) async fn list_access(
    State(s): State<ApiState>,
    user: ActingUser,
    Path(id): Path<i64>,
) -> Result<Json<AccessView>, ApiError> {
    shared_for_admin(&s, &user, id).await?;
    let mut conn = s.store.conn().await?;
    Ok(Json(AccessView {
        account_id: id,
        user_ids: access::granted(&mut conn, id).await?,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantRequest {
    #[schema(minimum = 1)]
    user_id: i64,
}

/// `POST /v1/accounts/{id}/access` (administrators): lets a user read and send from a
/// shared inbox.
#[utoipa::path(post, path = "/v1/accounts/{id}/access", tag = "accounts", params(("id" = i64, Path, minimum = 1)), request_body = GrantRequest, responses((status = 200, body = AccessView), (status = 403, description = "administrators only", body = crate::error::Body), (status = 404, description = "no such account", body = crate::error::Body), (status = 422, description = "not_shared or no such user", body = crate::error::Body)))]
pub(crate) async fn grant_access(
    State(s): State<ApiState>,
    user: ActingUser,
    Path(id): Path<i64>,
    body: Result<JsonBody<GrantRequest>, ApiError>,
) -> Result<Json<AccessView>, ApiError> {
    let JsonBody(req) = body?;
    shared_for_admin(&s, &user, id).await?;
    let mut conn = s.store.conn().await?;
    users::get(&mut conn, req.user_id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound { .. } => {
                ApiError::invalid(format!("user_id {}: no such user", req.user_id))
            }
            e => e.into(),
        })?;
    access::grant(&mut conn, id, req.user_id).await?;
    Ok(Json(AccessView {
        account_id: id,
        user_ids: access::granted(&mut conn, id).await?,
    }))
}

#[utoipa::path(delete, path = "/v1/accounts/{id}/access/{user_id}", tag = "accounts", params(("id" = i64, Path, minimum = 1), ("user_id" = i64, Path, minimum = 1)), responses((status = 200, body = AccessView), (status = 403, description = "administrators only", body = crate::error::Body), (status = 404, description = "no such account or grant", body = crate::error::Body), (status = 422, description = "not_shared", body = crate::error::Body)))]
pub(crate) async fn revoke_access(
    State(s): State<ApiState>,
    user: ActingUser,
    Path((id, user_id)): Path<(i64, i64)>,
) -> Result<Json<AccessView>, ApiError> {
    shared_for_admin(&s, &user, id).await?;
    let mut conn = s.store.conn().await?;
    if !access::revoke(&mut conn, id, user_id).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("user {user_id} has no access to account {id}"),
        ));
    }
    Ok(Json(AccessView {
        account_id: id,
        user_ids: access::granted(&mut conn, id).await?,
    }))
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct MessagesQuery {
    /// Only this account's messages.
    #[param(minimum = 1)]
    account_id: Option<i64>,
    /// Only this folder's (by name).
    folder: Option<String>,
    /// Only messages linked to this contact.
    #[param(minimum = 1)]
    contact_id: Option<i64>,
    /// Only this thread (a message's `thread_key`).
    thread: Option<String>,
    /// `next_cursor` of the previous page (one this API did not give is 400 `invalid_query`).
    cursor: Option<String>,
    /// Messages on a page.
    #[param(minimum = 1, maximum = 200, default = 50)]
    limit: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct MessagePage {
    messages: Vec<MessageView>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    next_cursor: Option<String>,
}

const MAX_PAGE: i64 = 200;

fn encode_cursor(m: &MessageSummary) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        "{}:{}",
        m.sort_at.timestamp_micros(),
        m.id
    ))
}

fn decode_cursor(c: &str) -> Result<(DateTime<Utc>, i64), ApiError> {
    let bad = || ApiError::invalid_query("cursor is not one this API gave out");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (at, id) = text.split_once(':').ok_or_else(bad)?;
    let at = DateTime::from_timestamp_micros(at.parse().map_err(|_| bad())?).ok_or_else(bad)?;
    Ok((at, id.parse().map_err(|_| bad())?))
}

async fn page(
    s: &ApiState,
    viewer: Viewer,
    q: MessagesQuery,
) -> Result<Json<MessagePage>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid_query(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let filter = MessageFilter {
        account_id: q.account_id,
        folder: q.folder,
        contact_id: q.contact_id,
        thread_key: q.thread,
        after: q.cursor.as_deref().map(decode_cursor).transpose()?,
        limit: limit + 1,
        id: None,
    };
    let mut conn = s.store.conn().await?;
    let mut messages = viewer::list_messages(&mut conn, viewer, &filter).await?;
    let next_cursor = if messages.len() as i64 > limit {
        messages.truncate(limit as usize);
        messages.last().map(encode_cursor)
    } else {
        None
    };
    Ok(Json(MessagePage {
        messages: messages.into_iter().map(MessageView::from).collect(),
        next_cursor,
    }))
}

/// `GET /v1/messages/{id}`: one message the acting user may read (in their accounts or, linked
/// to a contact, on the contact's profile is not enough: that is `contact_messages`), with its
/// folders and flags as the CRM shows them — pending mailbox actions applied, `pending` set.
#[utoipa::path(get, path = "/v1/messages/{id}", tag = "messages", params(("id" = i64, Path, minimum = 1)), responses((status = 200, body = MessageView), (status = 404, description = "no such message, or not one the user may read", body = crate::error::Body)))]
pub(crate) async fn get_message(
    State(s): State<ApiState>,
    user: ActingUser,
    Path(id): Path<i64>,
) -> Result<Json<MessageView>, ApiError> {
    let mut conn = s.store.conn().await?;
    let viewer = Viewer {
        user_id: user.id(),
        profile_contact: None,
    };
    match viewer::get_message(&mut conn, viewer, id).await? {
        Some(m) => Ok(Json(MessageView::from(m))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("message {id} not found"),
        )),
    }
}

/// `GET /v1/messages`: the acting user's own mail and the shared inboxes they reach,
/// filtered by account, folder, contact or thread, newest first.
#[utoipa::path(get, path = "/v1/messages", tag = "messages", params(MessagesQuery), responses((status = 200, body = MessagePage)))]
pub(crate) async fn list_messages(
    State(s): State<ApiState>,
    user: ActingUser,
    Query(q): Query<MessagesQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    page(
        &s,
        Viewer {
            user_id: user.id(),
            profile_contact: None,
        },
        q,
    )
    .await
}

/// `GET /v1/contacts/{id}/messages`: on a contact's profile, every message linked to the
/// contact — from anyone's account — besides what the user sees anyway.
#[utoipa::path(get, path = "/v1/contacts/{id}/messages", tag = "messages", params(("id" = i64, Path, minimum = 1), MessagesQuery), responses((status = 200, body = MessagePage), (status = 403, description = "`forbidden`: `contact_id` is not the profile's contact", body = crate::error::Body), (status = 404, description = "no such contact", body = crate::error::Body)))]
pub(crate) async fn contact_messages(
    State(s): State<ApiState>,
    user: ActingUser,
    Path(contact_id): Path<i64>,
    Query(mut q): Query<MessagesQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    if q.contact_id.is_some_and(|c| c != contact_id) {
        return Err(forbidden("contact_id must be the profile's contact"));
    }
    let mut conn = s.store.conn().await?;
    mailfleet_store::contacts::get(&mut conn, contact_id).await?;
    drop(conn);
    q.contact_id = Some(contact_id);
    page(
        &s,
        Viewer {
            user_id: user.id(),
            profile_contact: Some(contact_id),
        },
        q,
    )
    .await
}
