//! async-imap and socket errors → `ProviderError`, classified where they arise.

use mailfleet_provider::ProviderError;
use std::io;

/// An I/O error while connecting: a TLS failure names the certificate problem; everything
/// else is the network.
pub fn connect_io(host: &str, port: u16, e: io::Error) -> ProviderError {
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return tls_error(tls);
    }
    match e.kind() {
        io::ErrorKind::TimedOut => ProviderError::Timeout(format!("connecting to {host}:{port}")),
        _ => ProviderError::Unreachable(format!("{host}:{port}: {e}")),
    }
}

pub fn tls_error(e: &rustls::Error) -> ProviderError {
    match e {
        rustls::Error::InvalidCertificate(reason) => ProviderError::Tls(format!(
            "the server's certificate is not trusted ({reason:?}); if this server uses a \
             self-signed or private certificate, allow a non-secure certificate for the account"
        )),
        other => ProviderError::Tls(other.to_string()),
    }
}

/// The server says it is limiting this client: RFC 5530's `[LIMIT]` ("too many connections",
/// a rate), or Gmail's `[THROTTLED]`. Retried later, never taken for bad credentials. IMAP
/// gives no time to wait: the growing delay decides.
fn rate_limited(text: &str) -> Option<ProviderError> {
    let upper = text.to_ascii_uppercase();
    (upper.contains("[LIMIT]") || upper.contains("[THROTTLED]"))
        .then_some(ProviderError::RateLimited { retry_after: None })
}

/// An error from LOGIN. `NO` means the credentials were refused, except for RFC 5530's
/// `[UNAVAILABLE]`, which is the server's trouble and is retried, and a rate limit.
pub fn login(e: async_imap::error::Error) -> ProviderError {
    match e {
        async_imap::error::Error::No(text) => {
            if let Some(limited) = rate_limited(&text) {
                limited
            } else if text.to_ascii_uppercase().contains("UNAVAILABLE") {
                ProviderError::Disconnected(format!("server unavailable at login: {text}"))
            } else {
                ProviderError::AuthFailed(
                    "the server refused the user name or password".to_string(),
                )
            }
        }
        other => command(other),
    }
}

/// An error during a command in an authenticated session.
pub fn command(e: async_imap::error::Error) -> ProviderError {
    use async_imap::error::Error;
    match e {
        Error::Io(io) => match io.kind() {
            io::ErrorKind::TimedOut => ProviderError::Timeout(io.to_string()),
            _ => ProviderError::Disconnected(io.to_string()),
        },
        Error::ConnectionLost => ProviderError::Disconnected("connection lost".into()),
        Error::No(t) => rate_limited(&t)
            .unwrap_or_else(|| ProviderError::Permanent(format!("server said NO: {t}"))),
        Error::Bad(t) => ProviderError::Protocol(format!("server said BAD: {t}")),
        Error::Parse(p) => ProviderError::Protocol(format!("unparseable response: {p}")),
        Error::Validate(v) => ProviderError::Permanent(v.to_string()),
        Error::Append => ProviderError::Permanent("APPEND refused".into()),
        other => ProviderError::Protocol(other.to_string()),
    }
}

/// A tagged NO or BAD to a raw command (`text`: the response text, with any response code
/// imap-proto did not parse). RFC 5530's `[UNAVAILABLE]` and `[INUSE]` are the server's
/// passing trouble and retried; any other NO (`[TRYCREATE]`, `[OVERQUOTA]`, no such message
/// set, …) will not change by retrying; BAD is a command the server does not understand.
pub fn refused(what: &str, bad: bool, text: &str) -> ProviderError {
    let upper = text.trim_start().to_ascii_uppercase();
    if bad {
        ProviderError::Protocol(format!("{what}: server said BAD: {text}"))
    } else if let Some(limited) = rate_limited(text) {
        limited
    } else if upper.starts_with("[UNAVAILABLE]") || upper.starts_with("[INUSE]") {
        ProviderError::Disconnected(format!("{what}: server unavailable: {text}"))
    } else {
        ProviderError::Permanent(format!("{what}: server said NO: {text}"))
    }
}

/// An I/O error while reading a command's responses.
pub fn read(what: &str, e: io::Error) -> ProviderError {
    match e.kind() {
        io::ErrorKind::TimedOut => ProviderError::Timeout(format!("{what}: {e}")),
        _ => ProviderError::Disconnected(format!("reading the {what} response: {e}")),
    }
}

pub fn timeout(what: &str) -> ProviderError {
    ProviderError::Timeout(what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_imap::error::Error;
    use mailfleet_provider::ErrorClass;

    #[test]
    fn login_refusals_are_classified_by_their_response_code() {
        let class = |text: &str| login(Error::No(text.into())).class();
        assert_eq!(
            class("[AUTHENTICATIONFAILED] Invalid credentials"),
            ErrorClass::AuthFailed
        );
        assert_eq!(class("Login failed."), ErrorClass::AuthFailed);
        assert_eq!(class("[UNAVAILABLE] Try later"), ErrorClass::Transient);
        assert_eq!(
            class("[LIMIT] Too many connections"),
            ErrorClass::RateLimited
        );
        assert_eq!(class("[THROTTLED] Slow down"), ErrorClass::RateLimited);
        assert_eq!(
            command(Error::No("[LIMIT] too many commands".into())).class(),
            ErrorClass::RateLimited
        );
        assert_eq!(
            refused("UID STORE", false, "[LIMIT] rate").class(),
            ErrorClass::RateLimited
        );
        assert_eq!(
            refused("UID STORE", false, "[TRYCREATE] no such folder").class(),
            ErrorClass::Permanent
        );
    }
}
