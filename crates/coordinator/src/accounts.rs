//! Users and accounts: connect, list, change, sync now, re-connect; connection tests.

use crate::acting::{ActingUser, Need, forbidden};
use crate::error::ApiError;
use crate::extract::{JsonBody, Path};
use crate::state::ApiState;
use crate::views::{AccountView, UserView};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use mailfleet_core::connection_test::{
    ConnectionSettings, ConnectionTestResult, TestFailure, TestedFolder,
};
use mailfleet_core::{
    AccountKind, Binding, Credentials, EmailAddress, Job, JobEnvelope, Provider, Secret,
    ServerEndpoint, SyncWindow,
};
use mailfleet_queue::QueueError;
use mailfleet_store::folders::ListedFolder;
use mailfleet_store::models::{NewAccount, NewUser};
use mailfleet_store::{accounts, connection_tests, folders, users};
use serde::Deserialize;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUser {
    #[schema(value_type = EmailAddress)]
    email: String,
    name: Option<String>,
    #[serde(default)]
    is_admin: bool,
}

#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = CreateUser, responses((status = 201, body = UserView), (status = 409, description = "a user with that e-mail exists", body = crate::error::Body), (status = 422, description = "invalid input", body = crate::error::Body)))]
pub(crate) async fn create_user(
    State(s): State<ApiState>,
    body: Result<JsonBody<CreateUser>, ApiError>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let JsonBody(req) = body?;
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateAccount {
    /// Only `imap` is supported yet (else 422 `unsupported_provider`).
    #[schema(value_type = crate::openapi::SupportedProvider)]
    provider: Provider,
    kind: AccountKind,
    /// A personal account's owner is the acting user (the default); a shared one's is optional.
    #[schema(minimum = 1)]
    owner_user_id: Option<i64>,
    #[schema(value_type = EmailAddress)]
    email: String,
    /// The login name when it is not the address (Exchange).
    username: Option<String>,
    // Optional here for the OAuth providers to come; an IMAP account needs all three.
    #[schema(value_type = String, format = Password, min_length = 1)]
    password: Option<Secret<String>>,
    #[serde(default, deserialize_with = "crate::extract::object_or_null")]
    #[schema(value_type = ServerEndpoint)]
    imap: Option<ServerEndpoint>,
    #[serde(default, deserialize_with = "crate::extract::object_or_null")]
    #[schema(value_type = ServerEndpoint)]
    smtp: Option<ServerEndpoint>,
    #[serde(default)]
    allow_insecure_cert: bool,
    sync_from: SyncWindow,
    #[serde(default)]
    create_contacts: bool,
    /// The folders synced; without it, every selectable folder but Trash, Junk and Drafts.
    #[schema(value_type = Option<Vec<crate::openapi::FolderName>>)]
    active_folders: Option<Vec<String>>,
}

fn check_endpoint(what: &str, e: &ServerEndpoint) -> Result<(), ApiError> {
    if !ServerEndpoint::host_is_valid(&e.host) {
        return Err(ApiError::invalid(format!(
            "{what}.host must be a host name or address (letters, digits, `.`, `-`, `_`, `:`, `[`, `]`; at most {} characters)",
            ServerEndpoint::MAX_HOST
        )));
    }
    if e.port == 0 {
        return Err(ApiError::invalid(format!(
            "{what}.port must be between 1 and 65535"
        )));
    }
    Ok(())
}

#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", request_body = CreateAccount, responses((status = 201, body = AccountView), (status = 403, description = "a personal account for someone else, or a shared one by a non-administrator", body = crate::error::Body), (status = 422, description = "invalid input; with active_folders, a folder the server does not list or the connection test's code (auth_failed, tls_error, unreachable, timeout, protocol_error)", body = crate::error::Body), (status = 503, description = "with active_folders: RabbitMQ unavailable", body = crate::error::Body), (status = 504, description = "with active_folders: no worker listed the folders in time", body = crate::error::Body)))]
pub(crate) async fn create_account(
    State(s): State<ApiState>,
    user: ActingUser,
    body: Result<JsonBody<CreateAccount>, ApiError>,
) -> Result<(StatusCode, Json<AccountView>), ApiError> {
    let JsonBody(mut req) = body?;
    // A personal account is connected by its owner; a shared one by an administrator.
    match req.kind {
        AccountKind::Personal => match req.owner_user_id {
            None => req.owner_user_id = Some(user.id()),
            Some(owner) if owner == user.id() => {}
            Some(_) => {
                return Err(forbidden(
                    "a personal account is connected by its owner (owner_user_id must be the acting user)",
                ));
            }
        },
        AccountKind::Shared => user.require_admin()?,
    }
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
    if active_folders.iter().any(|f| crate::openapi::is_blank(f)) {
        return Err(ApiError::invalid(
            "active_folders must not contain empty names",
        ));
    }
    // Chosen folders must be the mailbox's own: the server lists them (through a worker)
    // before anything is stored, and the listing gives every folder its role at once.
    let listed = if active_folders.is_empty() {
        Vec::new()
    } else {
        let settings = ConnectionSettings {
            email: email.to_string(),
            username: username.clone(),
            imap: imap.clone(),
            smtp: smtp.clone(),
            allow_insecure_cert: req.allow_insecure_cert,
        };
        let credentials = Credentials::Password {
            password: password.clone(),
        };
        match run_test(&s, &settings, credentials).await? {
            ConnectionTestResult::Passed { folders, .. } => {
                chosen_folders(&folders, &active_folders)?
            }
            ConnectionTestResult::Failed { error, .. } => return Err(test_failed(&error)),
        }
    };

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
    accounts::create(&mut conn, &new, &listed).await?;
    drop(conn);
    // The first sync starts now; if publishing fails the request stays and the scheduler
    // publishes it on its next pass.
    if let Err(e) = s.scheduler.sync_now(id).await {
        tracing::warn!(account_id = id, error = %e, "First sync not queued yet.");
    }
    tracing::info!(account_id = id, provider = "imap", "Account connected.");
    Ok((StatusCode::CREATED, Json(account_view(&s, id).await?)))
}

/// The listed folders as rows to store, the chosen ones active. Refuses a chosen name the
/// server does not list, or one that holds no messages.
fn chosen_folders(
    listed: &[TestedFolder],
    chosen: &[String],
) -> Result<Vec<ListedFolder>, ApiError> {
    folders::check_choice(
        listed.iter().map(|f| (f.name.as_str(), f.selectable)),
        chosen,
    )?;
    Ok(listed
        .iter()
        .map(|f| ListedFolder {
            name: f.name.clone(),
            remote_id: None,
            delimiter: f.delimiter.clone(),
            role: f.role.clone(),
            selectable: f.selectable,
            active_if_new: chosen.contains(&f.name),
        })
        .collect())
}

/// A failed connection test as the API's answer: 422 with the test's code.
fn test_failed(error: &TestFailure) -> ApiError {
    let code = match error.code.as_str() {
        "auth_failed" => "auth_failed",
        "tls_error" => "tls_error",
        "unreachable" => "unreachable",
        "timeout" => "timeout",
        _ => "protocol_error",
    };
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        code,
        format!("{}: {}", error.server.to_uppercase(), error.message),
    )
}

async fn account_view(s: &ApiState, id: i64) -> Result<AccountView, ApiError> {
    let mut conn = s.store.conn().await?;
    let account = accounts::get(&mut conn, id).await?;
    let fs = folders::list(&mut conn, id).await?;
    let counts = folders::message_counts(&mut conn, id).await?;
    Ok(AccountView::new(account, fs, &counts))
}

#[utoipa::path(get, path = "/v1/accounts/{id}", tag = "accounts", params(("id" = i64, Path, minimum = 1)), responses((status = 200, body = AccountView), (status = 404, description = "no such account, or not one the user may read", body = crate::error::Body)))]
pub(crate) async fn get_account(
    State(s): State<ApiState>,
    user: ActingUser,
    Path(id): Path<i64>,
) -> Result<Json<AccountView>, ApiError> {
    user.account(&s, id, Need::Use).await?;
    Ok(Json(account_view(&s, id).await?))
}

/// The acting user's accounts: primary first, their other personal accounts, then the
/// shared inboxes they reach.
#[utoipa::path(get, path = "/v1/accounts", tag = "accounts", responses((status = 200, description = "primary first, then the user's other accounts, then shared inboxes they reach", body = Vec<AccountView>)))]
pub(crate) async fn list_accounts(
    State(s): State<ApiState>,
    user: ActingUser,
) -> Result<Json<Vec<AccountView>>, ApiError> {
    let mut conn = s.store.conn().await?;
    let list = accounts::list_for_user(&mut conn, user.id()).await?;
    let mut out = Vec::with_capacity(list.len());
    for a in list {
        let fs = folders::list(&mut conn, a.id).await?;
        let counts = folders::message_counts(&mut conn, a.id).await?;
        out.push(AccountView::new(a, fs, &counts));
    }
    Ok(Json(out))
}

#[utoipa::path(post, path = "/v1/accounts/{id}/sync", tag = "accounts", params(("id" = i64, Path, minimum = 1)), responses((status = 202, body = SyncQueued), (status = 404, description = "not found", body = crate::error::Body), (status = 409, description = "account_disabled", body = crate::error::Body)))]
pub(crate) async fn sync_account_now(
    State(s): State<ApiState>,
    user: ActingUser,
    Path(id): Path<i64>,
) -> Result<(StatusCode, Json<SyncQueued>), ApiError> {
    let account = user.account(&s, id, Need::Use).await?;
    crate::acting::require_active(&account)?;
    let published = s.scheduler.sync_now(id).await.map_err(|e| match e {
        crate::scheduler::ScheduleError::Store(e) => ApiError::from(e),
    })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(SyncQueued {
            account_id: id,
            queued: true,
            new_job: published,
        }),
    ))
}

/// A sync is queued (or one already queued or running takes the request).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct SyncQueued {
    account_id: i64,
    queued: bool,
    /// False when a queued or running sync takes this request.
    new_job: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateAccount {
    create_contacts: Option<bool>,
    sync_from: Option<SyncWindow>,
}

#[utoipa::path(patch, path = "/v1/accounts/{id}", tag = "accounts", params(("id" = i64, Path, minimum = 1)), request_body = UpdateAccount, responses((status = 200, body = AccountView), (status = 403, description = "not the user's to change", body = crate::error::Body), (status = 404, description = "not found", body = crate::error::Body), (status = 422, description = "sync_window_fixed or invalid input", body = crate::error::Body)))]
pub(crate) async fn update_account(
    State(s): State<ApiState>,
    user: ActingUser,
    Path(id): Path<i64>,
    body: Result<JsonBody<UpdateAccount>, ApiError>,
) -> Result<Json<AccountView>, ApiError> {
    let JsonBody(req) = body?;
    let account = user.account(&s, id, Need::Manage).await?;
    let mut conn = s.store.conn().await?;
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActiveFolders {
    active: Vec<String>,
}

/// Chooses the synced folders. Folders no longer active lose their stored messages; newly
/// active ones are synced at once.
#[utoipa::path(put, path = "/v1/accounts/{id}/folders", tag = "accounts", params(("id" = i64, Path, minimum = 1)), request_body = ActiveFolders, responses((status = 200, body = AccountView), (status = 403, description = "not the user's to change", body = crate::error::Body), (status = 404, description = "not found", body = crate::error::Body), (status = 422, description = "unknown folder", body = crate::error::Body)))]
pub(crate) async fn set_active_folders(
    State(s): State<ApiState>,
    user: ActingUser,
    Path(id): Path<i64>,
    body: Result<JsonBody<ActiveFolders>, ApiError>,
) -> Result<Json<AccountView>, ApiError> {
    let JsonBody(req) = body?;
    user.account(&s, id, Need::Manage).await?;
    let mut conn = s.store.conn().await?;
    folders::set_active(&mut conn, id, &req.active).await?;
    drop(conn);
    if let Err(e) = s.scheduler.sync_now(id).await {
        tracing::warn!(account_id = id, error = %e, "Sync after a folder change not queued yet.");
    }
    Ok(Json(account_view(&s, id).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConnectionTestRequest {
    /// Only `imap` is supported yet (else 422 `unsupported_provider`).
    #[serde(default = "imap_provider")]
    #[schema(value_type = crate::openapi::SupportedProvider)]
    provider: Provider,
    #[schema(value_type = EmailAddress)]
    email: String,
    /// The login name when it is not the address (Exchange).
    username: Option<String>,
    #[schema(value_type = String, format = Password, min_length = 1)]
    password: Option<Secret<String>>,
    #[serde(deserialize_with = "crate::extract::object")]
    imap: ServerEndpoint,
    #[serde(deserialize_with = "crate::extract::object")]
    smtp: ServerEndpoint,
    #[serde(default)]
    allow_insecure_cert: bool,
}

fn imap_provider() -> Provider {
    Provider::Imap
}

/// Checks IMAP login (and SMTP authentication) through a worker and returns the mailbox's
/// folders, or a typed error. The coordinator never talks to mail servers itself.
#[utoipa::path(post, path = "/v1/connection-tests", tag = "accounts", request_body = ConnectionTestRequest, responses((status = 200, description = "passed with the folders, or failed with a typed error", body = mailfleet_core::connection_test::ConnectionTestResult), (status = 422, description = "invalid input", body = crate::error::Body), (status = 503, description = "RabbitMQ unavailable", body = crate::error::Body), (status = 504, description = "no worker answered in time", body = crate::error::Body)))]
pub(crate) async fn connection_test(
    State(s): State<ApiState>,
    _user: ActingUser,
    body: Result<JsonBody<ConnectionTestRequest>, ApiError>,
) -> Result<Json<ConnectionTestResult>, ApiError> {
    let JsonBody(req) = body?;
    if req.provider != Provider::Imap {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_provider",
            format!(
                "connection tests for {} are not supported yet",
                req.provider
            ),
        ));
    }
    let email =
        EmailAddress::parse(&req.email).map_err(|e| ApiError::invalid(format!("email: {e}")))?;
    let password = req
        .password
        .filter(|p| !p.expose().is_empty())
        .ok_or_else(|| ApiError::invalid("password is required"))?;
    check_endpoint("imap", &req.imap)?;
    check_endpoint("smtp", &req.smtp)?;
    let settings = ConnectionSettings {
        email: email.to_string(),
        username: req
            .username
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty()),
        imap: req.imap,
        smtp: req.smtp,
        allow_insecure_cert: req.allow_insecure_cert,
    };
    Ok(Json(
        run_test(&s, &settings, Credentials::Password { password }).await?,
    ))
}

async fn run_test(
    s: &ApiState,
    settings: &ConnectionSettings,
    credentials: Credentials,
) -> Result<ConnectionTestResult, ApiError> {
    let mut conn = s.store.conn().await?;
    let test_id = connection_tests::next_id(&mut conn).await?;
    let sealed = credentials.seal_bound(&s.key, Binding::ConnectionTest, test_id);
    let json = serde_json::to_value(settings).expect("settings serialise");
    connection_tests::insert(&mut conn, test_id, &json, &sealed).await?;
    drop(conn);
    let env = JobEnvelope::new(Job::TestConnection { test_id });
    let answer = s.broker.call(&env, s.rpc_timeout).await;
    if let Ok(mut conn) = s.store.conn().await {
        let _ = connection_tests::delete(&mut conn, test_id).await;
    }
    match answer {
        Ok(body) => serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "internal",
                format!("unreadable answer from a worker: {e}"),
            )
        }),
        Err(QueueError::NoAnswer(_)) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!("no worker answered within {} s", s.rpc_timeout.as_secs()),
        )),
        Err(e) => {
            tracing::warn!(error = %e, "Connection test not sent.");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "RabbitMQ is unavailable",
            ))
        }
    }
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReconnectRequest {
    #[schema(value_type = Option<String>, format = Password)]
    password: Option<Secret<String>>,
}

/// Re-enables an account after a connection test with its settings (and a new password, if
/// given) passes. A failed test answers with the test's error code; the account stays as it
/// was.
#[utoipa::path(post, path = "/v1/accounts/{id}/reconnect", tag = "accounts", params(("id" = i64, Path, minimum = 1)), request_body(content = Option<ReconnectRequest>), responses((status = 200, body = AccountView), (status = 403, description = "not the user's to change", body = crate::error::Body), (status = 404, description = "not found", body = crate::error::Body), (status = 422, description = "the connection test failed (its code)", body = crate::error::Body), (status = 503, description = "RabbitMQ unavailable", body = crate::error::Body), (status = 504, description = "no worker answered in time", body = crate::error::Body)))]
pub(crate) async fn reconnect_account(
    State(s): State<ApiState>,
    user: ActingUser,
    Path(id): Path<i64>,
    body: Option<JsonBody<Option<ReconnectRequest>>>,
) -> Result<Json<AccountView>, ApiError> {
    // No body, `null` and `{}` all mean: the stored password.
    let req = body.and_then(|JsonBody(r)| r).unwrap_or_default();
    let account = user.account(&s, id, Need::Manage).await?;
    let endpoint = |host: &Option<String>, port: Option<i32>, enc: &Option<String>| {
        Some(ServerEndpoint {
            host: host.clone()?,
            port: u16::try_from(port?).ok()?,
            encryption: enc.as_deref()?.parse().ok()?,
        })
    };
    let (Some(imap), Some(smtp)) = (
        endpoint(
            &account.imap_host,
            account.imap_port,
            &account.imap_encryption,
        ),
        endpoint(
            &account.smtp_host,
            account.smtp_port,
            &account.smtp_encryption,
        ),
    ) else {
        return Err(ApiError::invalid(
            "the account has no complete IMAP/SMTP settings",
        ));
    };
    let new_password = req.password.filter(|p| !p.expose().is_empty());
    let credentials = match &new_password {
        Some(p) => Credentials::Password {
            password: p.clone(),
        },
        None => Credentials::open(&s.key, id, &account.credentials).map_err(|_| {
            ApiError::invalid("the stored credentials do not open: give the password again")
        })?,
    };
    let settings = ConnectionSettings {
        email: account.email.clone(),
        username: account.username.clone(),
        imap,
        smtp,
        allow_insecure_cert: account.allow_insecure_cert,
    };
    match run_test(&s, &settings, credentials.clone()).await? {
        ConnectionTestResult::Passed { .. } => {}
        ConnectionTestResult::Failed { error, .. } => return Err(test_failed(&error)),
    }
    let sealed = new_password.map(|_| credentials.seal(&s.key, id));
    let mut conn = s.store.conn().await?;
    accounts::reconnect(&mut conn, id, sealed.as_deref()).await?;
    drop(conn);
    if let Err(e) = s.scheduler.sync_now(id).await {
        tracing::warn!(account_id = id, error = %e, "Sync after reconnect not queued yet.");
    }
    tracing::info!(account_id = id, "Account re-connected.");
    Ok(Json(account_view(&s, id).await?))
}
