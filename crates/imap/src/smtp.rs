//! The SMTP side of an IMAP account (lettre): the connection check, and submission of
//! outgoing mail in two steps (envelope, then data) for the outbox.

use crate::tls::TlsTrust;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, Tls, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailParameter};
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use mailfleet_core::{Encryption, Secret};
use mailfleet_provider::{MailSubmission, ProviderError, SubmitError};
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

/// The TLS parameters for the account, `None` for `encryption: none`.
fn tls_parameters(
    s: &SmtpSettings,
    trust: &TlsTrust,
) -> Result<Option<TlsParameters>, ProviderError> {
    if s.encryption == Encryption::None {
        return Ok(None);
    }
    let mut b = TlsParameters::builder(s.host.clone())
        .dangerous_accept_invalid_certs(s.allow_insecure_cert);
    if let Some(pem) = trust.extra_ca_pem() {
        for block in pem_blocks(pem) {
            let cert = Certificate::from_pem(block.as_bytes())
                .map_err(|e| ProviderError::Permanent(format!("extra CA: {e}")))?;
            b = b.add_root_certificate(cert);
        }
    }
    b.build_rustls()
        .map(Some)
        .map_err(|e| ProviderError::Tls(e.to_string()))
}

fn transport(
    s: &SmtpSettings,
    trust: &TlsTrust,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, ProviderError> {
    let tls = match tls_parameters(s, trust)? {
        None => Tls::None,
        // Required, never opportunistic: a server that does not offer STARTTLS is refused.
        Some(params) if s.encryption == Encryption::Starttls => Tls::Required(params),
        Some(params) => Tls::Wrapper(params),
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

/// An authenticated SMTP connection that submits one message at a time.
pub struct SmtpSubmission {
    conn: AsyncSmtpConnection,
    timeout: Duration,
}

impl SmtpSubmission {
    /// Connects, secures the connection as configured (STARTTLS required, never
    /// opportunistic) and authenticates.
    #[tracing::instrument(name = "smtp.connect", skip_all, fields(host = %s.host, port = s.port))]
    pub async fn open(s: &SmtpSettings, trust: &TlsTrust) -> Result<Self, ProviderError> {
        let hello = ClientId::default();
        let tls = tls_parameters(s, trust)?;
        let wrapped = match s.encryption {
            Encryption::Ssl => tls.clone(),
            _ => None,
        };
        let step = async {
            let mut conn = AsyncSmtpConnection::connect_tokio1(
                (s.host.as_str(), s.port),
                Some(s.timeout),
                &hello,
                wrapped,
                None,
            )
            .await?;
            if s.encryption == Encryption::Starttls {
                if !conn.can_starttls() {
                    return Ok(Err(ProviderError::Tls(
                        "the SMTP server does not offer STARTTLS; refusing to send in plain text"
                            .into(),
                    )));
                }
                conn.starttls(tls.expect("TLS parameters for STARTTLS"), &hello)
                    .await?;
            }
            conn.auth(
                DEFAULT_MECHANISMS,
                &Credentials::new(s.login.clone(), s.password.expose().clone()),
            )
            .await?;
            Ok(Ok(conn))
        };
        let conn = tokio::time::timeout(s.timeout * 2, step)
            .await
            .map_err(|_| ProviderError::Timeout(format!("SMTP {}:{}", s.host, s.port)))?
            .map_err(|e| classify(&e, s))??;
        Ok(Self {
            conn,
            timeout: s.timeout,
        })
    }

    async fn command(
        &mut self,
        command: impl std::fmt::Display,
    ) -> Result<lettre::transport::smtp::response::Response, SubmitError> {
        match tokio::time::timeout(self.timeout, self.conn.command(command)).await {
            Err(_) => Err(ProviderError::Timeout("SMTP command".into()).into()),
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(refused_or(e, |e| {
                ProviderError::Disconnected(format!("SMTP connection failed: {e}")).into()
            })),
        }
    }
}

/// A reply from the server is a refusal (4xx transient, 5xx not); anything else is
/// `otherwise`.
fn refused_or(
    e: lettre::transport::smtp::Error,
    otherwise: impl FnOnce(&lettre::transport::smtp::Error) -> SubmitError,
) -> SubmitError {
    match e.status() {
        Some(code) => SubmitError::Refused {
            transient: e.is_transient(),
            reply: format!("{code} {}", e.to_string().trim()),
        },
        None => otherwise(&e),
    }
}

fn address(a: &str) -> Result<lettre::Address, SubmitError> {
    a.parse().map_err(|e| SubmitError::Refused {
        transient: false,
        reply: format!("not a valid address {a:?}: {e}"),
    })
}

#[async_trait::async_trait]
impl MailSubmission for SmtpSubmission {
    async fn begin(&mut self, from: &str, recipients: &[String]) -> Result<(), SubmitError> {
        let mut params = Vec::new();
        let non_ascii = !from.is_ascii() || recipients.iter().any(|r| !r.is_ascii());
        if non_ascii {
            if !self
                .conn
                .server_info()
                .supports_feature(Extension::SmtpUtfEight)
            {
                return Err(SubmitError::Refused {
                    transient: false,
                    reply: "the server does not accept internationalised addresses (SMTPUTF8)"
                        .into(),
                });
            }
            params.push(MailParameter::SmtpUtfEight);
        }
        self.command(Mail::new(Some(address(from)?), params))
            .await?;
        for r in recipients {
            self.command(Rcpt::new(address(r)?, vec![])).await?;
        }
        Ok(())
    }

    #[tracing::instrument(name = "smtp.transmit", skip_all, fields(bytes = raw.len()))]
    async fn transmit(&mut self, raw: &[u8]) -> Result<String, SubmitError> {
        // Until the server answers DATA with 354 nothing of the message has left.
        self.command(Data).await?;
        let sent = tokio::time::timeout(self.timeout * 4, self.conn.message(raw)).await;
        match sent {
            Err(_) => Err(SubmitError::Interrupted(
                "no answer to the end of the message in time".into(),
            )),
            Ok(Ok(reply)) => Ok(format!(
                "{} {}",
                reply.code(),
                reply.message().collect::<Vec<_>>().join(" ")
            )),
            Ok(Err(e)) => Err(refused_or(e, |e| SubmitError::Interrupted(e.to_string()))),
        }
    }

    async fn close(mut self: Box<Self>) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.conn.quit()).await;
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
