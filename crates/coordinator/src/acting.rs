//! The acting user: who a request is made for. The CRM names them in `X-Mailfleet-User`
//! next to its bearer token; what they may do comes from the users table, never from the
//! request.

use crate::error::ApiError;
use crate::state::ApiState;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use mailfleet_store::models::{Account, User};
use mailfleet_store::{StoreError, accounts, users, viewer};

pub const ACTING_USER_HEADER: &str = "x-mailfleet-user";

pub struct ActingUser(pub User);

impl FromRequestParts<ApiState> for ActingUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &ApiState) -> Result<Self, ApiError> {
        let raw = parts
            .headers
            .get(ACTING_USER_HEADER)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "acting_user_required",
                    "name the acting user in the X-Mailfleet-User header",
                )
            })?
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .ok_or_else(|| ApiError::invalid("X-Mailfleet-User must be a user id"))?;
        let mut conn = s.store.conn().await?;
        match users::get(&mut conn, raw).await {
            Ok(u) => Ok(ActingUser(u)),
            Err(StoreError::NotFound { .. }) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "unknown_user",
                format!("user {raw} does not exist"),
            )),
            Err(e) => Err(e.into()),
        }
    }
}

/// What a request wants to do with an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Read its mail and send from it: the owner of a personal account; administrators and
    /// granted users for a shared inbox.
    Use,
    /// Change or delete it: the owner of a personal account; administrators for a shared one.
    Manage,
}

impl ActingUser {
    pub fn id(&self) -> i64 {
        self.0.id
    }

    /// The account, if the user may do `need` with it. An account the user may not even
    /// read is "not found": its existence is not theirs to learn.
    pub async fn account(&self, s: &ApiState, id: i64, need: Need) -> Result<Account, ApiError> {
        let mut conn = s.store.conn().await?;
        let account = accounts::get(&mut conn, id).await?;
        if !viewer::may_read_account(&mut conn, id, self.0.id).await? {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("account {id} not found"),
            ));
        }
        if need == Need::Manage && !self.may_manage(&account) {
            return Err(forbidden(if account.kind == "shared" {
                "only an administrator may change a shared account"
            } else {
                "only its owner may change a personal account"
            }));
        }
        Ok(account)
    }

    fn may_manage(&self, account: &Account) -> bool {
        match account.kind.as_str() {
            "personal" => account.owner_user_id == Some(self.0.id),
            _ => self.0.is_admin,
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.0.is_admin {
            Ok(())
        } else {
            Err(forbidden("only an administrator may do this"))
        }
    }
}

/// 409 `account_disabled` unless the account is active (it needs a re-connect first).
pub fn require_active(account: &Account) -> Result<(), ApiError> {
    if account.state != "active" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "account_disabled",
            format!(
                "account {} is disabled ({}); re-connect it first",
                account.id,
                account
                    .disabled_reason
                    .as_deref()
                    .unwrap_or("no reason recorded")
            ),
        ));
    }
    Ok(())
}

pub fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}
