//! Account settings as the product spec names them.

use chrono::{DateTime, Months, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! string_enum {
    ($(#[doc = $doc:literal])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $( #[serde(rename = $text)] $variant ),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue { what: stringify!($name), value: s.to_owned() }),
                }
            }
        }

        // By hand: utoipa's derive does not see a `serde(rename)` made by a macro, and
        // described the variants by their Rust names.
        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::Type::String)
                    .description(Some(concat!($($doc, "\n"),*).trim()))
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}
    };
}

/// A stored or received value that names no known variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what}: {value:?}")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

string_enum!(
    /// How mailfleet talks to the account's mail service.
    Provider { Imap => "imap", Gmail => "gmail", Outlook => "outlook" }
);

string_enum!(
    /// Personal accounts belong to one user; shared ones (sales@) to whoever is granted access.
    AccountKind { Personal => "personal", Shared => "shared" }
);

string_enum!(
    /// Transport security of an IMAP or SMTP connection.
    Encryption { Ssl => "ssl", Starttls => "starttls", None => "none" }
);

string_enum!(
    /// `disabled` accounts are touched by no job until re-connected.
    AccountState { Active => "active", Disabled => "disabled" }
);

string_enum!(
    /// How far back the first sync reaches. Fixed when the account is created.
    SyncWindow { Now => "now", OneMonth => "1_month", ThreeMonths => "3_months", SixMonths => "6_months" }
);

impl ServerEndpoint {
    /// The longest host name taken (DNS's 253 characters).
    pub const MAX_HOST: usize = 253;

    /// Whether `host` is a host name or an IP address as far as its characters go: ASCII
    /// letters, digits, `.`, `-`, `_`, and `:`, `[`, `]` for IPv6; what the OpenAPI document's
    /// pattern says.
    pub fn host_is_valid(host: &str) -> bool {
        !host.is_empty()
            && host.len() <= Self::MAX_HOST
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-:[]".contains(&b))
    }
}

impl SyncWindow {
    /// The earliest INTERNALDATE that is synced, for an account created at `created`.
    pub fn start(self, created: DateTime<Utc>) -> DateTime<Utc> {
        let months = match self {
            SyncWindow::Now => 0,
            SyncWindow::OneMonth => 1,
            SyncWindow::ThreeMonths => 3,
            SyncWindow::SixMonths => 6,
        };
        created
            .checked_sub_months(Months::new(months))
            .unwrap_or(created)
    }
}

/// Host, port and transport security of a mail server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerEndpoint {
    /// A host name or an IP address (IPv6 in brackets or not).
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9._:\[\]-]+$", max_length = 253)
    )]
    pub host: String,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 65535))]
    pub port: u16,
    pub encryption: Encryption,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn sync_window_names_round_trip() {
        for w in SyncWindow::ALL {
            assert_eq!(w.as_str().parse::<SyncWindow>().unwrap(), *w);
            let json = serde_json::to_string(w).unwrap();
            assert_eq!(json, format!("\"{}\"", w.as_str()));
        }
        assert!("2_months".parse::<SyncWindow>().is_err());
    }

    #[cfg(feature = "openapi")]
    #[test]
    fn the_openapi_schema_names_the_values_on_the_wire() {
        let schema = serde_json::to_value(<SyncWindow as utoipa::PartialSchema>::schema()).unwrap();
        let wire: Vec<_> = SyncWindow::ALL.iter().map(|w| w.as_str()).collect();
        assert_eq!(schema["enum"], serde_json::json!(wire));
        assert_eq!(schema["type"], "string");
        assert!(
            schema["description"]
                .as_str()
                .unwrap()
                .starts_with("How far back")
        );
    }

    #[test]
    fn hosts_are_names_or_addresses() {
        for ok in [
            "mail.example.test",
            "127.0.0.1",
            "::1",
            "[::1]",
            "a_b-c",
            "0",
        ] {
            assert!(ServerEndpoint::host_is_valid(ok), "{ok}");
        }
        let long = "a".repeat(ServerEndpoint::MAX_HOST + 1);
        for bad in [
            "",
            " ",
            "mail example",
            "mail\0",
            "mäil.test",
            "a/b",
            long.as_str(),
        ] {
            assert!(!ServerEndpoint::host_is_valid(bad), "{bad}");
        }
    }

    #[test]
    fn sync_window_start_counts_calendar_months() {
        let created = Utc.with_ymd_and_hms(2026, 5, 31, 12, 0, 0).unwrap();
        assert_eq!(SyncWindow::Now.start(created), created);
        assert_eq!(
            SyncWindow::ThreeMonths.start(created),
            Utc.with_ymd_and_hms(2026, 2, 28, 12, 0, 0).unwrap()
        );
    }
}
