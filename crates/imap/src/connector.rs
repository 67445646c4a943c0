//! IMAP + SMTP behind the provider seam: the settings of an `imap` account become an
//! [`ImapSettings`] and an [`SmtpSettings`] here and nowhere else.

use crate::smtp::{self, SmtpSettings, SmtpSubmission};
use crate::{ImapSettings, TlsTrust, connect};
use async_trait::async_trait;
use mailfleet_core::{Credentials, Secret};
use mailfleet_provider::{
    AccountAccess, Connector, MailSession, MailSubmission, ProviderError, RemoteFolder,
    ServiceSettings, TestFailed,
};
use std::time::Duration;

/// Opens IMAP sessions and SMTP submissions.
#[derive(Clone)]
pub struct ImapConnector {
    pub trust: TlsTrust,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// Use CONDSTORE / QRESYNC where servers offer them (tests turn them off).
    pub use_condstore: bool,
    pub use_qresync: bool,
}

impl ImapConnector {
    /// The IMAP and SMTP settings of `access`, with its password.
    fn settings(
        &self,
        access: &AccountAccess,
    ) -> Result<(ImapSettings, SmtpSettings), ProviderError> {
        let ServiceSettings::Imap {
            imap,
            smtp,
            login,
            allow_insecure_cert,
        } = &access.settings;
        let password = password(&access.credentials)?;
        Ok((
            ImapSettings {
                allow_insecure_cert: *allow_insecure_cert,
                connect_timeout: self.connect_timeout,
                command_timeout: self.command_timeout,
                use_condstore: self.use_condstore,
                use_qresync: self.use_qresync,
                ..ImapSettings::new(
                    imap.host.clone(),
                    imap.port,
                    imap.encryption,
                    login.clone(),
                    password.clone(),
                )
            },
            SmtpSettings {
                host: smtp.host.clone(),
                port: smtp.port,
                encryption: smtp.encryption,
                login: login.clone(),
                password,
                allow_insecure_cert: *allow_insecure_cert,
                timeout: self.connect_timeout,
            },
        ))
    }
}

/// IMAP and SMTP log in with a password (XOAUTH2 is for the Gmail and Graph providers).
fn password(credentials: &Credentials) -> Result<Secret<String>, ProviderError> {
    match credentials {
        Credentials::Password { password } => Ok(password.clone()),
        Credentials::OAuth { .. } => Err(ProviderError::Permanent(
            "an IMAP account's credentials must be a password".into(),
        )),
    }
}

#[async_trait]
impl Connector for ImapConnector {
    async fn session(&self, access: &AccountAccess) -> Result<Box<dyn MailSession>, ProviderError> {
        let (imap, _) = self.settings(access)?;
        Ok(Box::new(connect(&imap, &self.trust).await?))
    }

    async fn submission(
        &self,
        access: &AccountAccess,
    ) -> Result<Box<dyn MailSubmission>, ProviderError> {
        let (_, smtp) = self.settings(access)?;
        Ok(Box::new(SmtpSubmission::open(&smtp, &self.trust).await?))
    }

    async fn test(&self, access: &AccountAccess) -> Result<Vec<RemoteFolder>, TestFailed> {
        let imap_failed = |error| TestFailed {
            service: "imap",
            error,
        };
        let (mut imap, smtp) = self.settings(access).map_err(imap_failed)?;
        // A person is waiting: every command gets the connect timeout.
        imap.command_timeout = self.connect_timeout;
        let mut session = connect(&imap, &self.trust).await.map_err(imap_failed)?;
        let listed = session.list_folders().await;
        Box::new(session).close().await;
        let folders = listed.map_err(imap_failed)?;
        smtp::check(&smtp, &self.trust)
            .await
            .map_err(|error| TestFailed {
                service: "smtp",
                error,
            })?;
        Ok(folders)
    }
}
