//! The HTTP client of the coordinator's API: bearer token, acting user, JSON in and out, and
//! the API's `{code, message}` errors as a type of their own.

use anyhow::Context;
use mailfleet_core::Secret;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::fmt;
use std::time::Duration;

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiFailure {}

impl ApiFailure {
    /// 2 when the request was refused (4xx), 1 when the server failed.
    pub fn exit_code(&self) -> i32 {
        if self.status.is_client_error() { 2 } else { 1 }
    }

    fn from_answer(status: StatusCode, body: &[u8]) -> Self {
        #[derive(serde::Deserialize)]
        struct Body {
            code: String,
            message: String,
        }
        match serde_json::from_slice::<Body>(body) {
            Ok(b) => Self {
                status,
                code: b.code,
                message: b.message,
            },
            // Not the API's JSON error (a proxy, an unknown route, a body refused early).
            Err(_) => {
                let text = String::from_utf8_lossy(body).trim().to_owned();
                Self {
                    status,
                    code: format!("http_{}", status.as_u16()),
                    message: if text.is_empty() {
                        status.canonical_reason().unwrap_or("no message").to_owned()
                    } else {
                        text.chars().take(500).collect()
                    },
                }
            }
        }
    }
}

pub struct Api {
    http: reqwest::Client,
    base: String,
    token: Secret<String>,
    user: i64,
}

impl Api {
    pub fn new(base: &str, token: Secret<String>, user: i64) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // A connection test waits for a worker (MAILFLEET_RPC_TIMEOUT_SECS, 30 s by default).
            .timeout(Duration::from_secs(120))
            .user_agent(concat!("mailfleet-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
            user,
        })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::DELETE, path, None).await
    }

    /// One request; a non-2xx answer is an [`ApiFailure`]. Bodies are never logged: some
    /// carry a password.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(self.token.expose())
            .header("X-Mailfleet-User", self.user.to_string());
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {url}: the API did not answer"))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .with_context(|| format!("{method} {url}: reading the answer"))?;
        if !status.is_success() {
            return Err(ApiFailure::from_answer(status, &bytes).into());
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{method} {url}: the answer is not JSON"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_api_errors_keep_code_and_message() {
        let f = ApiFailure::from_answer(
            StatusCode::FORBIDDEN,
            br#"{"code":"unknown_user","message":"user 9 does not exist"}"#,
        );
        assert_eq!(f.to_string(), "unknown_user: user 9 does not exist");
        assert_eq!(f.exit_code(), 2);
        let f = ApiFailure::from_answer(StatusCode::BAD_GATEWAY, b"");
        assert_eq!(f.to_string(), "http_502: Bad Gateway");
        assert_eq!(f.exit_code(), 1);
    }
}
