//! `POST /v1/mailbox-actions`: what a user does to mail in the CRM (mark read or unread, flag,
//! move, trash, spam) reaches the mailbox. The action is recorded once per Idempotency-Key,
//! shown at once (with a `pending` marker) and applied by each account's next sync, which is
//! queued now.

use crate::acting::{ActingUser, Need, require_active};
use crate::error::ApiError;
use crate::extract::Path;
use crate::state::ApiState;
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use mailfleet_store::actions::{self, Created, NewAction, NewItem};
use mailfleet_store::models::Folder;
use mailfleet_store::{folders, viewer};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// Messages one action may name, at most.
const MAX_MESSAGES: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ActionKind {
    MarkRead,
    MarkUnread,
    Flag,
    Unflag,
    /// To `folder`, an active folder of the message's account.
    Move,
    /// To the account's Trash folder.
    Trash,
    /// To the account's Junk (Spam) folder.
    MarkSpam,
}

impl ActionKind {
    fn as_str(self) -> &'static str {
        match self {
            ActionKind::MarkRead => "mark_read",
            ActionKind::MarkUnread => "mark_unread",
            ActionKind::Flag => "flag",
            ActionKind::Unflag => "unflag",
            ActionKind::Move => "move",
            ActionKind::Trash => "trash",
            ActionKind::MarkSpam => "mark_spam",
        }
    }
}

/// A message's `id` (as the message lists give it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(transparent)]
pub(crate) struct MessageRef(i64);

impl utoipa::PartialSchema for MessageRef {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::Integer)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Int64,
            )))
            .minimum(Some(1))
            .into()
    }
}

impl utoipa::ToSchema for MessageRef {}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActionRequest {
    /// The messages, of one account or several.
    #[schema(min_items = 1, max_items = 500)]
    message_ids: Vec<MessageRef>,
    action: ActionKind,
    /// The target folder's name: `move` only.
    #[schema(min_length = 1, max_length = 1000)]
    folder: Option<String>,
}

/// One message of an action.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ActionMessageView {
    /// The message's `id`.
    id: i64,
    /// `pending`, `done`, `conflict` (changed or gone on the server: not applied) or `failed`.
    state: String,
    error: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ActionView {
    id: i64,
    action: String,
    /// `move`: the target folder the request named.
    folder: Option<String>,
    /// `pending` until every message is settled; then `done`, `partial` (some done),
    /// `conflict` or `failed`.
    state: &'static str,
    created_at: DateTime<Utc>,
    messages: Vec<ActionMessageView>,
}

async fn view(s: &ApiState, id: i64) -> Result<ActionView, ApiError> {
    let mut conn = s.store.conn().await?;
    let (action, items) = actions::get(&mut conn, id).await?;
    Ok(ActionView {
        id: action.id,
        action: action.action,
        folder: action.folder,
        state: actions::state_of(&items),
        created_at: action.created_at,
        messages: items
            .into_iter()
            .map(|i| ActionMessageView {
                id: i.message_id,
                state: i.state,
                error: i.error,
            })
            .collect(),
    })
}

fn not_found(what: &str, id: i64) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("{what} {id} not found"),
    )
}

/// Where each account's messages go: `None` for flag changes.
fn target(
    kind: ActionKind,
    folder: Option<&str>,
    account_id: i64,
    account_folders: &[Folder],
) -> Result<Option<i64>, ApiError> {
    let by_role = |role: &str, what: &str| {
        account_folders
            .iter()
            .find(|f| f.role.as_deref() == Some(role) && f.selectable)
            .map(|f| Some(f.id))
            .ok_or_else(|| ApiError::invalid(format!("account {account_id} has no {what} folder")))
    };
    match kind {
        ActionKind::Move => {
            let name = folder.expect("checked: move names a folder");
            account_folders
                .iter()
                .find(|f| f.name == name && f.active && f.selectable)
                .map(|f| Some(f.id))
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "account {account_id} has no active folder named {name:?}"
                    ))
                })
        }
        ActionKind::Trash => by_role("trash", "Trash"),
        ActionKind::MarkSpam => by_role("junk", "Junk"),
        _ => Ok(None),
    }
}

#[utoipa::path(post, path = "/v1/mailbox-actions", tag = "messages", params(("Idempotency-Key" = Option<String>, Header, description = "one action per user and key", min_length = 1, max_length = 255, pattern = r"^[!-~](?:[ -~]*[!-~])?$")), request_body = ActionRequest, responses((status = 202, body = ActionView), (status = 404, description = "a message the user may not act on (or no such message)", body = crate::error::Body), (status = 409, description = "account_disabled or idempotency_key_reused", body = crate::error::Body), (status = 422, description = "invalid_request: no or too many messages, a folder with an action other than move, an unknown or inactive target folder", body = crate::error::Body)))]
pub(crate) async fn create_action(
    State(s): State<ApiState>,
    user: ActingUser,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    let (req, sha) = crate::idempotency::parse_hashed::<ActionRequest>(&body)?;
    let key = crate::idempotency::key(&headers)?;
    if req.message_ids.is_empty() || req.message_ids.len() > MAX_MESSAGES {
        return Err(ApiError::invalid(format!(
            "message_ids must name 1 to {MAX_MESSAGES} messages"
        )));
    }
    if let Some(bad) = req.message_ids.iter().find(|id| id.0 < 1) {
        return Err(ApiError::invalid(format!(
            "message_ids: {} is not a message id",
            bad.0
        )));
    }
    let folder = req.folder.as_deref();
    match (req.action, folder) {
        (ActionKind::Move, None) => return Err(ApiError::invalid("move needs a folder")),
        (ActionKind::Move, Some(f)) if f.trim().is_empty() => {
            return Err(ApiError::invalid("folder must not be empty"));
        }
        (ActionKind::Move, Some(_)) => {}
        (other, Some(_)) => {
            return Err(ApiError::invalid(format!(
                "folder goes with move only, not {}",
                other.as_str()
            )));
        }
        (_, None) => {}
    }
    let mut seen = HashSet::new();
    let ids: Vec<i64> = req
        .message_ids
        .iter()
        .map(|id| id.0)
        .filter(|id| seen.insert(*id))
        .collect();

    // Only messages of the user's own accounts and the inboxes they reach (row-level
    // security decides); one seen only on a contact's profile is "not found".
    let mut conn = s.store.conn().await?;
    let visible = viewer::acted_on(&mut conn, user.id(), &ids).await?;
    drop(conn);
    if let Some(missing) = ids.iter().find(|id| !visible.iter().any(|v| v.0 == **id)) {
        return Err(not_found("message", *missing));
    }
    let mut by_account: BTreeMap<i64, Vec<Folder>> = BTreeMap::new();
    for (_, account_id, _) in &visible {
        if by_account.contains_key(account_id) {
            continue;
        }
        let account = user.account(&s, *account_id, Need::Use).await?;
        require_active(&account)?;
        let mut conn = s.store.conn().await?;
        by_account.insert(*account_id, folders::list(&mut conn, *account_id).await?);
    }
    let mut targets = BTreeMap::new();
    for (account_id, account_folders) in &by_account {
        targets.insert(
            *account_id,
            target(req.action, folder, *account_id, account_folders)?,
        );
    }
    let items: Vec<NewItem> = ids
        .iter()
        .map(|id| {
            let (_, account_id, shown_in) = visible
                .iter()
                .find(|v| v.0 == *id)
                .copied()
                .expect("checked above");
            let target_folder_id = targets[&account_id];
            NewItem {
                message_id: *id,
                account_id,
                source_folder_id: target_folder_id.and(shown_in),
                target_folder_id,
            }
        })
        .collect();
    let new = NewAction {
        requested_by: user.id(),
        idempotency_key: key,
        request_sha256: sha,
        action: req.action.as_str().to_owned(),
        folder: req.folder.clone(),
    };
    let mut conn = s.store.conn().await?;
    let id = match actions::create(&mut conn, &new, &items).await? {
        Created::New(id) => {
            drop(conn);
            // The sync applies pending actions first; if it can't be queued now, the
            // scheduler's next pass does.
            for account_id in by_account.keys() {
                if let Err(e) = s.scheduler.sync_now(*account_id).await {
                    tracing::warn!(account_id, error = %e, "Sync for a mailbox action not queued yet.");
                }
            }
            tracing::info!(
                action_id = id,
                action = req.action.as_str(),
                messages = items.len(),
                "Mailbox action recorded."
            );
            id
        }
        Created::Existing(id) => id,
        Created::KeyReused(id) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_key_reused",
                format!("this Idempotency-Key was used for another request (action {id})"),
            ));
        }
    };
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/v1/mailbox-actions/{id}"))],
        Json(view(&s, id).await?),
    )
        .into_response())
}

/// `GET /v1/mailbox-actions/{id}`: its state and each message's, for whoever asked for it
/// or may use every account it touches.
#[utoipa::path(get, path = "/v1/mailbox-actions/{id}", tag = "messages", params(("id" = i64, Path, minimum = 1)), responses((status = 200, body = ActionView), (status = 404, description = "no such action, or not the user's", body = crate::error::Body)))]
pub(crate) async fn get_action(
    State(s): State<ApiState>,
    user: ActingUser,
    Path(id): Path<i64>,
) -> Result<Json<ActionView>, ApiError> {
    let mut conn = s.store.conn().await?;
    let (action, items) = actions::get(&mut conn, id)
        .await
        .map_err(|_| not_found("action", id))?;
    drop(conn);
    if action.requested_by != Some(user.id()) {
        let accounts: HashSet<i64> = items.iter().map(|i| i.account_id).collect();
        for account_id in accounts {
            user.account(&s, account_id, Need::Use)
                .await
                .map_err(|_| not_found("action", id))?;
        }
    }
    Ok(Json(view(&s, id).await?))
}
