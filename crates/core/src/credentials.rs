//! What is sealed in `accounts.credentials`.

use crate::secret::{Binding, Secret, SecretError, SecretKey};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Credentials {
    /// IMAP/SMTP password (the same for both).
    Password { password: Secret<String> },
    /// OAuth 2 tokens (Gmail, Outlook): the access token until `expires_at`, and the refresh
    /// token that renews it. A renewed access token is sealed and written back.
    #[serde(rename = "oauth")]
    OAuth {
        access_token: Secret<String>,
        refresh_token: Secret<String>,
        expires_at: chrono::DateTime<chrono::Utc>,
    },
}

impl Credentials {
    pub fn seal(&self, key: &SecretKey, account_id: i64) -> Vec<u8> {
        self.seal_bound(key, Binding::Account, account_id)
    }

    pub fn open(key: &SecretKey, account_id: i64, sealed: &[u8]) -> Result<Self, SecretError> {
        Self::open_bound(key, Binding::Account, account_id, sealed)
    }

    pub fn seal_bound(&self, key: &SecretKey, binding: Binding, id: i64) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("credentials always serialise");
        key.seal_bound(binding, id, &json)
    }

    pub fn open_bound(
        key: &SecretKey,
        binding: Binding,
        id: i64,
        sealed: &[u8],
    ) -> Result<Self, SecretError> {
        let json = key.open_bound(binding, id, sealed)?;
        serde_json::from_slice(&json).map_err(|_| SecretError::DoesNotOpen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_round_trip_sealed_and_bound_to_the_account() {
        let key = SecretKey::from_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
        let c = Credentials::Password {
            password: Secret::new("s3cret".into()),
        };
        let sealed = c.seal(&key, 9);
        assert_eq!(Credentials::open(&key, 9, &sealed).unwrap(), c);
        assert!(Credentials::open(&key, 10, &sealed).is_err());
    }

    #[test]
    fn oauth_tokens_are_sealed_like_passwords_and_never_printed() {
        let key = SecretKey::from_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
        let c = Credentials::OAuth {
            access_token: Secret::new("ya29.access".into()),
            refresh_token: Secret::new("1//refresh".into()),
            expires_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        };
        let sealed = c.seal(&key, 4);
        assert_eq!(Credentials::open(&key, 4, &sealed).unwrap(), c);
        let printed = format!("{c:?}");
        assert!(
            !printed.contains("ya29") && !printed.contains("1//"),
            "{printed}"
        );
        let plain = String::from_utf8_lossy(&sealed);
        assert!(!plain.contains("ya29") && !plain.contains("refresh"));
    }
}
