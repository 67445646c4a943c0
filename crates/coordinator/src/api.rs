use crate::auth::require_token;
use crate::error::ApiError;
use crate::scheduler::Scheduler;
use crate::views::{AccountView, UserView};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router, middleware};
use chrono::Utc;
use mailfleet_core::{
    AccountKind, Credentials, EmailAddress, Provider, Secret, SecretKey, ServerEndpoint, SyncWindow,
};
use mailfleet_queue::Broker;
use mailfleet_store::models::{NewAccount, NewUser};
use mailfleet_store::{Store, accounts, folders, users};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub broker: Arc<Broker>,
    pub scheduler: Scheduler,
    pub key: SecretKey,
    pub api_token: Arc<Secret<String>>,
}

pub fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .route("/users", post(create_user))
        .route("/accounts", post(create_account).get(list_accounts))
        .route("/accounts/{id}", get(get_account).patch(update_account))
        .route("/accounts/{id}/folders", put(set_active_folders))
        .route("/accounts/{id}/sync", post(sync_account_now))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .nest("/v1", v1)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn readyz(State(s): State<ApiState>) -> Result<&'static str, ApiError> {
    if !s.broker.is_connected() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "RabbitMQ is not connected",
        ));
    }
    s.store.ping().await?;
    Ok("ready")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    email: String,
    name: Option<String>,
    #[serde(default)]
    is_admin: bool,
}

async fn create_user(
    State(s): State<ApiState>,
    body: Result<Json<CreateUser>, JsonRejection>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let Json(req) = body?;
    let email =
        EmailAddress::parse(&req.email).map_err(|e| ApiError::invalid(format!("email: {e}")))?;
    let mut conn = s.store.conn().await?;
    let user = users::create(
        &mut conn,
        NewUser {
            email: email.as_str(),
            name: req.name.as_deref(),
            is_admin: req.is_admin,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAccount {
    provider: Provider,
    kind: AccountKind,
    owner_user_id: Option<i64>,
    email: String,
    username: Option<String>,
    password: Option<Secret<String>>,
    imap: Option<ServerEndpoint>,
    smtp: Option<ServerEndpoint>,
    #[serde(default)]
    allow_insecure_cert: bool,
    sync_from: SyncWindow,
    #[serde(default)]
    create_contacts: bool,
    active_folders: Option<Vec<String>>,
}

fn check_endpoint(what: &str, e: &ServerEndpoint) -> Result<(), ApiError> {
    if e.host.trim().is_empty() || e.host.chars().any(char::is_whitespace) {
        return Err(ApiError::invalid(format!(
            "{what}.host must be a host name or address"
        )));
    }
    if e.port == 0 {
        return Err(ApiError::invalid(format!(
            "{what}.port must be between 1 and 65535"
        )));
    }
    Ok(())
}

async fn create_account(
    State(s): State<ApiState>,
    body: Result<Json<CreateAccount>, JsonRejection>,
) -> Result<(StatusCode, Json<AccountView>), ApiError> {
    let Json(req) = body?;
    if req.provider != Provider::Imap {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_provider",
            format!("provider {} is not supported yet", req.provider),
        ));
    }
    let email =
        EmailAddress::parse(&req.email).map_err(|e| ApiError::invalid(format!("email: {e}")))?;
    let password = req
        .password
        .filter(|p| !p.expose().is_empty())
        .ok_or_else(|| ApiError::invalid("password is required for an IMAP account"))?;
    let imap = req
        .imap
        .ok_or_else(|| ApiError::invalid("imap settings are required"))?;
    let smtp = req
        .smtp
        .ok_or_else(|| ApiError::invalid("smtp settings are required"))?;
    check_endpoint("imap", &imap)?;
    check_endpoint("smtp", &smtp)?;
    let username = req
        .username
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty());
    let active_folders: Vec<String> = req.active_folders.unwrap_or_default();
    if active_folders.iter().any(|f| f.trim().is_empty()) {
        return Err(ApiError::invalid(
            "active_folders must not contain empty names",
        ));
    }

    let mut conn = s.store.conn().await?;
    match (req.kind, req.owner_user_id) {
        (AccountKind::Personal, None) => {
            return Err(ApiError::invalid("a personal account needs owner_user_id"));
        }
        (_, Some(owner)) => {
            users::get(&mut conn, owner).await.map_err(|e| match e {
                mailfleet_store::StoreError::NotFound { .. } => {
                    ApiError::invalid(format!("owner_user_id {owner}: no such user"))
                }
                e => e.into(),
            })?;
        }
        (AccountKind::Shared, None) => {}
    }
    let id = accounts::next_id(&mut conn).await?;
    let credentials = Credentials::Password { password }.seal(&s.key, id);
    let now = Utc::now();
    let new = NewAccount {
        id,
        provider: req.provider.as_str().into(),
        kind: req.kind.as_str().into(),
        owner_user_id: req.owner_user_id,
        email: email.to_string(),
        username,
        credentials,
        imap_host: Some(imap.host),
        imap_port: Some(i32::from(imap.port)),
        imap_encryption: Some(imap.encryption.as_str().into()),
        smtp_host: Some(smtp.host),
        smtp_port: Some(i32::from(smtp.port)),
        smtp_encryption: Some(smtp.encryption.as_str().into()),
        allow_insecure_cert: req.allow_insecure_cert,
        sync_from: req.sync_from.as_str().into(),
        sync_window_start: req.sync_from.start(now),
        create_contacts: req.create_contacts,
        sync_requested: true,
    };
    accounts::create(&mut conn, &new, &active_folders).await?;
    drop(conn);
    // The first sync starts now; if publishing fails the request stays and the scheduler
    // publishes it on its next pass.
    if let Err(e) = s.scheduler.sync_now(id).await {
        tracing::warn!(account_id = id, error = %e, "First sync not queued yet.");
    }
    tracing::info!(account_id = id, provider = "imap", "Account connected.");
    Ok((StatusCode::CREATED, Json(account_view(&s, id).await?)))
}

async fn account_view(s: &ApiState, id: i64) -> Result<AccountView, ApiError> {
    let mut conn = s.store.conn().await?;
    let account = accounts::get(&mut conn, id).await?;
    let fs = folders::list(&mut conn, id).await?;
    let counts = folders::message_counts(&mut conn, id).await?;
    Ok(AccountView::new(account, fs, &counts))
}

async fn get_account(
    State(s): State<ApiState>,
    Path(id): Path<i64>,
) -> Result<Json<AccountView>, ApiError> {
    Ok(Json(account_view(&s, id).await?))
}

#[derive(Deserialize)]
struct ListQuery {
    owner_user_id: Option<i64>,
}

async fn list_accounts(
    State(s): State<ApiState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<AccountView>>, ApiError> {
    let mut conn = s.store.conn().await?;
    let list = accounts::list(&mut conn, q.owner_user_id).await?;
    let mut out = Vec::with_capacity(list.len());
    for a in list {
        let fs = folders::list(&mut conn, a.id).await?;
        let counts = folders::message_counts(&mut conn, a.id).await?;
        out.push(AccountView::new(a, fs, &counts));
    }
    Ok(Json(out))
}

async fn sync_account_now(
    State(s): State<ApiState>,
    Path(id): Path<i64>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let mut conn = s.store.conn().await?;
    let account = accounts::get(&mut conn, id).await?;
    drop(conn);
    if account.state != "active" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "account_disabled",
            format!(
                "account {id} is disabled ({}); re-connect it first",
                account
                    .disabled_reason
                    .as_deref()
                    .unwrap_or("no reason recorded")
            ),
        ));
    }
    let published = s.scheduler.sync_now(id).await.map_err(|e| match e {
        crate::scheduler::ScheduleError::Store(e) => ApiError::from(e),
    })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "account_id": id, "queued": true, "new_job": published })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateAccount {
    create_contacts: Option<bool>,
    sync_from: Option<SyncWindow>,
}

async fn update_account(
    State(s): State<ApiState>,
    Path(id): Path<i64>,
    body: Result<Json<UpdateAccount>, JsonRejection>,
) -> Result<Json<AccountView>, ApiError> {
    let Json(req) = body?;
    let mut conn = s.store.conn().await?;
    let account = accounts::get(&mut conn, id).await?;
    if let Some(window) = req.sync_from
        && window.as_str() != account.sync_from
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "sync_window_fixed",
            format!(
                "sync_from is fixed when an account is connected (this one syncs from {}); \
                 connect the mailbox as a new account to use another window",
                account.sync_from
            ),
        ));
    }
    if let Some(on) = req.create_contacts {
        accounts::set_create_contacts(&mut conn, id, on).await?;
    }
    drop(conn);
    Ok(Json(account_view(&s, id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActiveFolders {
    active: Vec<String>,
}

/// Chooses the synced folders. Folders no longer active lose their stored messages; newly
/// active ones are synced at once.
async fn set_active_folders(
    State(s): State<ApiState>,
    Path(id): Path<i64>,
    body: Result<Json<ActiveFolders>, JsonRejection>,
) -> Result<Json<AccountView>, ApiError> {
    let Json(req) = body?;
    let mut conn = s.store.conn().await?;
    accounts::get(&mut conn, id).await?;
    folders::set_active(&mut conn, id, &req.active).await?;
    drop(conn);
    if let Err(e) = s.scheduler.sync_now(id).await {
        tracing::warn!(account_id = id, error = %e, "Sync after a folder change not queued yet.");
    }
    Ok(Json(account_view(&s, id).await?))
}
