use std::time::Duration;

/// What the caller should do about an error. Classified where the error arose (an IMAP
/// response code, an SMTP reply, an OAuth error body), never guessed later from a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The credentials were refused: disable the account until it is re-connected.
    AuthFailed,
    /// Network trouble, a timeout, a server restart: retry later; the account stays enabled.
    Transient,
    /// The provider asks us to slow down.
    RateLimited,
    /// Retrying will not help (a protocol violation, a missing folder).
    Permanent,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("authentication failed: {0}")]
    AuthFailed(String),
    #[error("TLS failed: {0}")]
    Tls(String),
    #[error("server unreachable: {0}")]
    Unreachable(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("connection lost: {0}")]
    Disconnected(String),
    #[error("rate limited{}", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("{0}")]
    Permanent(String),
}

impl ProviderError {
    pub fn class(&self) -> ErrorClass {
        match self {
            ProviderError::AuthFailed(_) => ErrorClass::AuthFailed,
            ProviderError::RateLimited { .. } => ErrorClass::RateLimited,
            ProviderError::Unreachable(_)
            | ProviderError::Timeout(_)
            | ProviderError::Disconnected(_) => ErrorClass::Transient,
            // A certificate problem is the account's settings, not the network: retrying
            // without a change cannot help.
            ProviderError::Tls(_) | ProviderError::Protocol(_) | ProviderError::Permanent(_) => {
                ErrorClass::Permanent
            }
        }
    }

    /// The provider's own Retry-After, when it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// The stable code the API reports (`auth_failed`, `tls_error`, …).
    pub fn code(&self) -> &'static str {
        match self {
            ProviderError::AuthFailed(_) => "auth_failed",
            ProviderError::Tls(_) => "tls_error",
            ProviderError::Unreachable(_) => "unreachable",
            ProviderError::Timeout(_) => "timeout",
            ProviderError::Disconnected(_) => "disconnected",
            ProviderError::RateLimited { .. } => "rate_limited",
            ProviderError::Protocol(_) => "protocol_error",
            ProviderError::Permanent(_) => "permanent_error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_trouble_is_never_an_auth_failure() {
        for e in [
            ProviderError::Unreachable("connection refused".into()),
            ProviderError::Timeout("read".into()),
            ProviderError::Disconnected("EOF".into()),
        ] {
            assert_eq!(e.class(), ErrorClass::Transient, "{e}");
        }
        assert_eq!(
            ProviderError::AuthFailed("NO [AUTHENTICATIONFAILED]".into()).class(),
            ErrorClass::AuthFailed
        );
    }

    #[test]
    fn rate_limit_keeps_the_providers_delay() {
        let e = ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(30)),
        };
        assert_eq!(e.class(), ErrorClass::RateLimited);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
        assert_eq!(e.to_string(), "rate limited, retry after 30s");
    }
}
