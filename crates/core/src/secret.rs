//! Secrets: a wrapper that never prints, and the AES-256-GCM box that seals account
//! credentials at rest. The account id is the associated data, so a ciphertext copied to
//! another account's row does not open.

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A value that must never reach a log, an error string or a job message.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }
    /// The one way to read the value; grep for it when auditing.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

const NONCE_LEN: usize = 12;
/// Format byte in front of every sealed value, so the scheme can change later.
const FORMAT_V1: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error(
        "MAILFLEET_SECRET_KEY must be 32 bytes, base64-encoded (e.g. `openssl rand -base64 32`)"
    )]
    BadKey,
    #[error("sealed credentials do not open with this key for this account")]
    DoesNotOpen,
}

/// The key that seals account credentials (`MAILFLEET_SECRET_KEY`).
#[derive(Clone)]
pub struct SecretKey(Aes256Gcm);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

impl SecretKey {
    /// Parses 32 bytes given as base64.
    pub fn from_base64(encoded: &str) -> Result<Self, SecretError> {
        let bytes = STANDARD
            .decode(encoded.trim())
            .map_err(|_| SecretError::BadKey)?;
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| SecretError::BadKey)?;
        Ok(Self(cipher))
    }

    /// Encrypts `plaintext` bound to `account_id`: `[version][nonce][ciphertext+tag]`.
    pub fn seal(&self, account_id: i64, plaintext: &[u8]) -> Vec<u8> {
        self.seal_bound(Binding::Account, account_id, plaintext)
    }

    pub fn open(&self, account_id: i64, sealed: &[u8]) -> Result<Vec<u8>, SecretError> {
        self.open_bound(Binding::Account, account_id, sealed)
    }

    /// Encrypts `plaintext` bound to the row `id` of the kind `binding`.
    pub fn seal_bound(&self, binding: Binding, id: i64, plaintext: &[u8]) -> Vec<u8> {
        let nonce = Nonce::generate();
        let aad = aad(binding, id);
        let ct = self
            .0
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of a bounded buffer cannot fail");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    pub fn open_bound(
        &self,
        binding: Binding,
        id: i64,
        sealed: &[u8],
    ) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != FORMAT_V1 {
            return Err(SecretError::DoesNotOpen);
        }
        let nonce =
            Nonce::try_from(&sealed[1..1 + NONCE_LEN]).map_err(|_| SecretError::DoesNotOpen)?;
        let aad = aad(binding, id);
        self.0
            .decrypt(
                &nonce,
                Payload {
                    msg: &sealed[1 + NONCE_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::DoesNotOpen)
    }
}

/// What a sealed value belongs to; part of the associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// `accounts.credentials`.
    Account,
    /// `connection_tests.credentials`.
    ConnectionTest,
}

fn aad(binding: Binding, id: i64) -> Vec<u8> {
    let kind = match binding {
        Binding::Account => "account",
        Binding::ConnectionTest => "connection_test",
    };
    format!("mailfleet:{kind}:{id}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 ASCII bytes

    #[test]
    fn seal_then_open_round_trips() {
        let key = SecretKey::from_base64(KEY).unwrap();
        let sealed = key.seal(42, b"hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(key.open(42, &sealed).unwrap(), b"hunter2");
    }

    #[test]
    fn ciphertext_moved_to_another_account_does_not_open() {
        let key = SecretKey::from_base64(KEY).unwrap();
        let sealed = key.seal(42, b"hunter2");
        assert_eq!(key.open(43, &sealed), Err(SecretError::DoesNotOpen));
    }

    #[test]
    fn a_value_sealed_for_a_connection_test_does_not_open_as_an_account() {
        let key = SecretKey::from_base64(KEY).unwrap();
        let sealed = key.seal_bound(Binding::ConnectionTest, 5, b"pw");
        assert_eq!(key.open(5, &sealed), Err(SecretError::DoesNotOpen));
        assert_eq!(
            key.open_bound(Binding::ConnectionTest, 5, &sealed).unwrap(),
            b"pw"
        );
    }

    #[test]
    fn another_key_or_tampering_does_not_open() {
        let key = SecretKey::from_base64(KEY).unwrap();
        let other = SecretKey::from_base64("ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=").unwrap();
        let mut sealed = key.seal(1, b"pw");
        assert_eq!(other.open(1, &sealed), Err(SecretError::DoesNotOpen));
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(key.open(1, &sealed), Err(SecretError::DoesNotOpen));
    }

    #[test]
    fn rejects_short_or_non_base64_keys() {
        assert_eq!(
            SecretKey::from_base64("c2hvcnQ=").unwrap_err(),
            SecretError::BadKey
        );
        assert_eq!(
            SecretKey::from_base64("not base64!").unwrap_err(),
            SecretError::BadKey
        );
    }

    #[test]
    fn secret_debug_never_prints_the_value() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }
}
