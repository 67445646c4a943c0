//! What a connection test checks and what it answers: shared by the coordinator, which asks,
//! and the worker, which checks. The password is not here; it is sealed in Postgres.

use crate::account::ServerEndpoint;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionSettings {
    pub email: String,
    pub username: Option<String>,
    pub imap: ServerEndpoint,
    pub smtp: ServerEndpoint,
    pub allow_insecure_cert: bool,
}

impl ConnectionSettings {
    /// The login name: the user name when given, else the address.
    pub fn login(&self) -> &str {
        self.username.as_deref().unwrap_or(&self.email)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TestedFolder {
    pub name: String,
    pub delimiter: Option<String>,
    pub selectable: bool,
    pub role: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TestFailure {
    /// `auth_failed`, `tls_error`, `unreachable`, `timeout`, `protocol_error`, …
    pub code: String,
    pub message: String,
    /// `imap` or `smtp`.
    pub server: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum ConnectionTestResult {
    Passed {
        #[cfg_attr(feature = "openapi", schema(value_type = bool))]
        ok: True,
        folders: Vec<TestedFolder>,
    },
    Failed {
        #[cfg_attr(feature = "openapi", schema(value_type = bool))]
        ok: False,
        error: TestFailure,
    },
}

/// `true` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "bool", into = "bool")]
pub struct True;

/// `false` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "bool", into = "bool")]
pub struct False;

impl TryFrom<bool> for True {
    type Error = &'static str;
    fn try_from(b: bool) -> Result<Self, Self::Error> {
        if b { Ok(True) } else { Err("expected true") }
    }
}
impl From<True> for bool {
    fn from(_: True) -> bool {
        true
    }
}
impl TryFrom<bool> for False {
    type Error = &'static str;
    fn try_from(b: bool) -> Result<Self, Self::Error> {
        if b { Err("expected false") } else { Ok(False) }
    }
}
impl From<False> for bool {
    fn from(_: False) -> bool {
        false
    }
}

impl ConnectionTestResult {
    pub fn passed(folders: Vec<TestedFolder>) -> Self {
        Self::Passed { ok: True, folders }
    }

    pub fn failed(server: &str, code: &str, message: impl Into<String>) -> Self {
        Self::Failed {
            ok: False,
            error: TestFailure {
                code: code.into(),
                message: message.into(),
                server: server.into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_have_a_plain_wire_form() {
        let p = ConnectionTestResult::passed(vec![]);
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({"ok": true, "folders": []})
        );
        let f = ConnectionTestResult::failed("imap", "auth_failed", "no");
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["ok"], false);
        assert_eq!(v["error"]["code"], "auth_failed");
        assert_eq!(
            serde_json::from_value::<ConnectionTestResult>(v).unwrap(),
            f
        );
    }
}
