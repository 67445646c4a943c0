use crate::error::ApiError;
use crate::state::ApiState;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;

/// Requires `Authorization: Bearer $MAILFLEET_API_TOKEN`.
pub async fn require_token(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(t) if same_token(t.as_bytes(), state.api_token.expose().as_bytes()) => {
            Ok(next.run(request).await)
        }
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )),
    }
}

/// In constant time (`subtle`): how long the comparison takes says nothing of the token.
fn same_token(presented: &[u8], expected: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    presented.ct_eq(expected).into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn compares_tokens_exactly() {
        assert!(super::same_token(b"abc", b"abc"));
        assert!(!super::same_token(b"abc", b"abd"));
        assert!(!super::same_token(b"abc", b"abcd"));
        assert!(!super::same_token(b"", b"abc"));
    }
}
