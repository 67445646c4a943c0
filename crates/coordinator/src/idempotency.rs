//! Requests made once per `Idempotency-Key` (sending, mailbox actions): the key, and the hash
//! of the request it was first used with, so that the same key with another body is refused.

use crate::error::ApiError;
use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

/// The request's `Idempotency-Key`, or a fresh one when it has none (then every request is
/// new).
pub fn key(headers: &HeaderMap) -> Result<String, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(uuid::Uuid::new_v4().to_string()),
        Some(v) => Ok(v
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|k| {
                !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| (0x20..=0x7e).contains(&b))
            })
            .ok_or_else(|| {
                ApiError::invalid("Idempotency-Key must be 1 to 255 visible ASCII characters")
            })?
            .to_owned()),
    }
}

/// The body as `T`, with the SHA-256 of its JSON value (serde_json's maps are sorted: the
/// same request hashes the same whatever its layout).
pub fn parse_hashed<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<(T, Vec<u8>), ApiError> {
    let (req, value) = crate::extract::from_json(body)?;
    let sha = Sha256::digest(serde_json::to_vec(&value).expect("a value serialises")).to_vec();
    Ok((req, sha))
}
