//! A normalised e-mail address, parsed once at the edge.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An address as the CRM matches it: trimmed and lower-cased (RFC 5321 allows a
/// case-sensitive local part, but no mail system a CRM meets uses one, and contacts must match
/// `Ann@Example.test` to `ann@example.test`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an e-mail address: {reason}")]
pub struct InvalidEmail {
    pub reason: &'static str,
}

impl EmailAddress {
    /// The longest address taken (RFC 5321's 254 octets, counted in characters).
    pub const MAX_CHARS: usize = 254;

    pub fn parse(input: &str) -> Result<Self, InvalidEmail> {
        let s = input.trim();
        if s.is_empty() {
            return Err(InvalidEmail { reason: "empty" });
        }
        if s.chars().count() > Self::MAX_CHARS {
            return Err(InvalidEmail {
                reason: "longer than 254 characters",
            });
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InvalidEmail {
                reason: "contains white space or control characters",
            });
        }
        if s.contains(['<', '>', ',', ';', '"']) {
            return Err(InvalidEmail {
                reason: "contains a character not allowed in a bare address",
            });
        }
        let (local, domain) = s.rsplit_once('@').ok_or(InvalidEmail { reason: "no @" })?;
        if local.is_empty() {
            return Err(InvalidEmail {
                reason: "empty local part",
            });
        }
        if domain.is_empty() || domain.starts_with('.') || domain.ends_with('.') {
            return Err(InvalidEmail {
                reason: "invalid domain",
            });
        }
        Ok(Self(s.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }
}

/// In the OpenAPI document: `format: email`, at most [`EmailAddress::MAX_CHARS`] characters.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for EmailAddress {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Email,
            )))
            .max_length(Some(Self::MAX_CHARS))
            .description(Some(
                "An e-mail address (`local@domain`; surrounding space is trimmed and the \
                 address lower-cased)",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for EmailAddress {}

impl TryFrom<String> for EmailAddress {
    type Error = InvalidEmail;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<EmailAddress> for String {
    fn from(value: EmailAddress) -> Self {
        value.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_surrounding_space() {
        let a = EmailAddress::parse("  Ann.Lee@Example.TEST ").unwrap();
        assert_eq!(a.as_str(), "ann.lee@example.test");
        assert_eq!(a.domain(), "example.test");
    }

    #[test]
    fn rejects_what_is_not_an_address() {
        for bad in [
            "",
            "   ",
            "ann",
            "@example.test",
            "ann@",
            "ann@.test",
            "ann lee@example.test",
            "Ann <ann@example.test>",
            "a@b@",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn deserialising_validates() {
        let ok: EmailAddress = serde_json::from_str("\"X@Y.Z\"").unwrap();
        assert_eq!(ok.as_str(), "x@y.z");
        assert!(serde_json::from_str::<EmailAddress>("\"nope\"").is_err());
    }
}
