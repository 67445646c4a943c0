use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mailfleet_store::StoreError;
use serde::Serialize;

/// An API error: a stable `code` for programs and a `message` for people.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

/// Every error answer: a stable `code` for programs, a `message` for people.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct Body<'a> {
    /// Stable, for programs (docs/api.md lists them): `invalid_path`, `invalid_query`,
    /// `invalid_request`, `unauthorized`, `acting_user_required`, `unknown_user`, `forbidden`,
    /// `not_found`, `method_not_allowed`, `conflict`, `too_large`, `unavailable`, `timeout`,
    /// `internal`, and each operation's own.
    code: &'a str,
    /// For people; its wording may change.
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 422 `invalid_request`: a body (or header) the operation can't take.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
    }

    /// 400 `invalid_query`: a query parameter the operation can't take.
    pub fn invalid_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_query", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(Body {
                code: self.code,
                message: &self.message,
            }),
        )
            .into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what, id } => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{what} {id} not found"),
            ),
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::Invalid(m) => ApiError::invalid(m),
            StoreError::Unavailable(_) => {
                tracing::error!(error = %e, "Database unavailable.");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database is unavailable",
                )
            }
            other => {
                tracing::error!(error = %other, "Database error.");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }
}

/// A body that could not be read: 413 `too_large` over the route's size limit (before it
/// is read), else 422 `invalid_request`.
impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the request is over the size limit",
            ),
            s if s.is_server_error() => internal(&r),
            _ => ApiError::invalid(r.body_text()),
        }
    }
}

/// A path parameter that is not what the route takes (`/v1/accounts/abc`, an id over
/// 2^63): 400 `invalid_path`.
impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        if r.status().is_server_error() {
            return internal(&r);
        }
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", r.body_text())
    }
}

/// A query string that does not parse, or names a parameter the operation does not take:
/// 400 `invalid_query`.
impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::invalid_query(r.body_text())
    }
}

/// A rejection that is the handler's fault (a route whose parameters don't fit its
/// extractor): logged, and 500 `internal`.
fn internal(r: &dyn std::fmt::Display) -> ApiError {
    tracing::error!(error = %r, "Extractor misconfigured.");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error",
    )
}
