//! axum's extractors with the API's own rejections: whatever a request gets wrong — its
//! path, its query, its body, its route or its method — the answer is the JSON error
//! `{"code", "message"}` ([`ApiError`]), never axum's plain-text one.
//!
//! | what | status | code |
//! |---|---|---|
//! | a path parameter that does not parse ([`Path`]) | 400 | `invalid_path` |
//! | a query that does not parse or names an unknown parameter ([`Query`]) | 400 | `invalid_query` |
//! | a body that is not JSON, not `application/json` or not the right shape ([`JsonBody`]) | 422 | `invalid_request` |
//! | a U+0000 (which Postgres can't store) in the query | 400 | `invalid_query` |
//! | … in a string of the body | 422 | `invalid_request` |
//! | a body over the route's size limit | 413 | `too_large` |
//! | no such route ([`not_found`]) | 404 | `not_found` |
//! | a method the route does not take ([`method_not_allowed`], with `Allow`) | 405 | `method_not_allowed` |

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// [`axum::extract::Path`], rejected with 400 `invalid_path`.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(v) = axum::extract::Path::from_request_parts(parts, state).await?;
        Ok(Self(v))
    }
}

/// [`axum::extract::Query`], rejected with 400 `invalid_query`; so is a U+0000 (`%00`),
/// which Postgres can't compare with `text`.
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        if query.contains("%00") {
            return Err(ApiError::invalid_query(
                "query parameters must not contain the character U+0000",
            ));
        }
        let axum::extract::Query(v) =
            axum::extract::Query::from_request_parts(parts, state).await?;
        Ok(Self(v))
    }
}

/// A JSON request body ([`axum::Json`]), rejected with 422 `invalid_request` (413
/// `too_large` over the size limit). `Option<JsonBody<T>>` is `None` when the request has
/// no `Content-Type`, i.e. no body.
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !json_content_type(req.headers()) {
            return Err(ApiError::invalid(
                "Expected request with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await?;
        Ok(Self(from_json(&bytes)?.0))
    }
}

impl<T, S> OptionalFromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, ApiError> {
        if req.headers().get(header::CONTENT_TYPE).is_none() {
            return Ok(None);
        }
        <Self as FromRequest<S>>::from_request(req, state)
            .await
            .map(Some)
    }
}

/// The request `T` in a JSON text, and the JSON value it was read from: 422
/// `invalid_request` for a text that is not JSON, has a U+0000 in a string, or is not a `T`
/// (the message names where). A whole number written as a float (`2.0`) is that integer, as
/// JSON Schema has it.
pub fn from_json<T: DeserializeOwned>(json: &[u8]) -> Result<(T, Value), ApiError> {
    refuse_nul(json)?;
    let mut value: Value = serde_json::from_slice(json)
        .map_err(|e| ApiError::invalid(format!("Failed to parse the request body as JSON: {e}")))?;
    whole_numbers(&mut value);
    if value.is_array() {
        // serde would read an array as a struct's fields in order; no body here is an array.
        return Err(ApiError::invalid("the body must be a JSON object"));
    }
    let t = serde_path_to_error::deserialize(&value).map_err(|e| {
        ApiError::invalid(format!(
            "Failed to deserialize the JSON body into the target type: {e}"
        ))
    })?;
    Ok((t, value))
}

/// For a field holding a struct: a JSON object, not the array serde would also read as the
/// struct's fields in order (`["host", 993, "ssl"]`).
pub fn object<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: DeserializeOwned,
{
    from_object(Value::deserialize(d)?)
}

/// [`object`] or `null`.
pub fn object_or_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: DeserializeOwned,
{
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v => from_object(v).map(Some),
    }
}

/// An array of [`object`]s.
pub fn objects<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: DeserializeOwned,
{
    Vec::<Value>::deserialize(d)?
        .into_iter()
        .map(from_object)
        .collect()
}

fn from_object<E: serde::de::Error, T: DeserializeOwned>(v: Value) -> Result<T, E> {
    if !v.is_object() {
        return Err(E::invalid_type(unexpected(&v), &"a JSON object"));
    }
    T::deserialize(v).map_err(E::custom)
}

fn unexpected(v: &Value) -> serde::de::Unexpected<'_> {
    use serde::de::Unexpected;
    match v {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(_) => Unexpected::Other("number"),
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    }
}

/// Turns every float without a fraction that fits an `i64` into that integer.
fn whole_numbers(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && (i64::MIN as f64..i64::MAX as f64).contains(&f)
            {
                *value = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        Value::Object(map) => map.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

/// `application/json` or `application/<anything>+json`, as axum's `Json` takes.
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    matches!(essence.split_once('/'), Some(("application", sub)) if sub == "json" || sub.ends_with("+json"))
}

/// Refuses a JSON text with a U+0000 in a string (`\u0000`; JSON has no other way to write
/// one): Postgres can't store it in `text`, and no name, address, subject or body needs it.
fn refuse_nul(json: &[u8]) -> Result<(), ApiError> {
    let mut i = 0;
    while i < json.len() {
        if json[i] == b'\\' {
            if json[i + 1..].starts_with(b"u0000") {
                return Err(ApiError::invalid(
                    "strings must not contain the character U+0000",
                ));
            }
            // An escape is two bytes at least (`\\`, `\"`, `\u…`): its second can't start one.
            i += 2;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// The router's fallback: 404 `not_found` for a path that is no route.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such route: {}", uri.path()),
    )
}

/// A route's fallback for methods it does not take: 405 `method_not_allowed` (axum adds
/// the `Allow` header).
pub async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this route does not take {method}"),
    )
}
