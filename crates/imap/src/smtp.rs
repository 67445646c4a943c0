//! The SMTP side of an IMAP account (lettre): for now the connection check; sending comes
//! with the outbox.

use crate::tls::TlsTrust;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use mailfleet_core::{Encryption, Secret};
use mailfleet_provider::ProviderError;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub encryption: Encryption,
    pub login: String,
    pub password: Secret<String>,
    pub allow_insecure_cert: bool,
    pub timeout: Duration,
}

fn transport(
    s: &SmtpSettings,
    trust: &TlsTrust,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, ProviderError> {
    let tls = if s.encryption == Encryption::None {
        Tls::None
    } else {
        let mut b = TlsParameters::builder(s.host.clone())
            .dangerous_accept_invalid_certs(s.allow_insecure_cert);
        if let Some(pem) = trust.extra_ca_pem() {
            for block in pem_blocks(pem) {
                let cert = Certificate::from_pem(block.as_bytes())
                    .map_err(|e| ProviderError::Permanent(format!("extra CA: {e}")))?;
                b = b.add_root_certificate(cert);
            }
        }
        let params = b
            .build_rustls()
            .map_err(|e| ProviderError::Tls(e.to_string()))?;
        match s.encryption {
            // Required, never opportunistic: a server that does not offer STARTTLS is refused.
            Encryption::Starttls => Tls::Required(params),
            _ => Tls::Wrapper(params),
        }
    };
    Ok(
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.clone())
            .port(s.port)
            .tls(tls)
            .timeout(Some(s.timeout))
            .credentials(Credentials::new(
                s.login.clone(),
                s.password.expose().clone(),
            ))
            .build(),
    )
}

/// Connects, secures the connection and authenticates.
pub async fn check(s: &SmtpSettings, trust: &TlsTrust) -> Result<(), ProviderError> {
    let t = transport(s, trust)?;
    match t.test_connection().await {
        Ok(true) => Ok(()),
        Ok(false) => Err(ProviderError::Disconnected(
            "the SMTP server closed the connection".into(),
        )),
        Err(e) => Err(classify(&e, s)),
    }
}

/// SMTP reply codes are the source of truth: 535 means refused credentials; 4xx is the
/// server's passing trouble.
fn classify(e: &lettre::transport::smtp::Error, s: &SmtpSettings) -> ProviderError {
    let code = e.status().map(u16::from);
    if code == Some(535) {
        return ProviderError::AuthFailed(
            "the SMTP server refused the user name or password".into(),
        );
    }
    if e.is_tls() {
        let text = e.to_string();
        return ProviderError::Tls(
            if text.contains("certificate") || text.contains("Certificate") {
                format!(
                    "the SMTP server's certificate is not trusted ({text}); if it uses a self-signed or \
                 private certificate, allow a non-secure certificate for the account"
                )
            } else {
                format!("SMTP TLS failed: {text}")
            },
        );
    }
    if e.is_timeout() {
        return ProviderError::Timeout(format!("SMTP {}:{}", s.host, s.port));
    }
    if let Some(c) = code {
        return if e.is_transient() {
            ProviderError::Disconnected(format!("SMTP server replied {c}: {e}"))
        } else {
            ProviderError::Protocol(format!("SMTP server replied {c}: {e}"))
        };
    }
    ProviderError::Unreachable(format!("SMTP {}:{}: {e}", s.host, s.port))
}

/// Splits a PEM bundle into its certificates (lettre takes one at a time).
fn pem_blocks(pem: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line.starts_with("-----BEGIN CERTIFICATE-----") {
            current.clear();
        }
        current.push_str(line);
        current.push('\n');
        if line.starts_with("-----END CERTIFICATE-----") {
            out.push(std::mem::take(&mut current));
        }
    }
    out
}
