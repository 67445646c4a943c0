//! The seam between the worker and a provider: the worker picks a [`Connector`] by the
//! account's provider in one place and hands it an [`AccountAccess`]; the connector opens
//! what the job needs — a mail session, a submission, a connection test.

use crate::{MailSession, MailSubmission, ProviderError, RemoteFolder};
use async_trait::async_trait;
use mailfleet_core::{Credentials, ServerEndpoint};
use std::fmt;
use std::sync::Arc;

/// Where an account's mail service is and how it is reached, tagged by provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceSettings {
    /// IMAP for reading, SMTP for sending, one login for both.
    Imap {
        imap: ServerEndpoint,
        smtp: ServerEndpoint,
        /// The account's user name where it has one, else its address.
        login: String,
        /// Accept a certificate no trusted CA signed (the account's explicit choice).
        allow_insecure_cert: bool,
    },
}

/// Stores credentials a provider renewed (an OAuth access token it refreshed), sealed, on the
/// account's row and under its lease where the job holds one.
#[async_trait]
pub trait TokenStore: Send + Sync {
    async fn save(&self, credentials: &Credentials) -> Result<(), ProviderError>;
}

/// What a connector is given for one account, or for a connection test.
#[derive(Clone)]
pub struct AccountAccess {
    pub email: String,
    pub settings: ServiceSettings,
    pub credentials: Credentials,
    /// Where renewed credentials go; `None` for a connection test (nothing is stored).
    pub tokens: Option<Arc<dyn TokenStore>>,
}

impl fmt::Debug for AccountAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountAccess")
            .field("email", &self.email)
            .field("settings", &self.settings)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// Which part of a connection test failed: `imap`, `smtp`, `gmail`, `graph`, …
#[derive(Debug)]
pub struct TestFailed {
    pub service: &'static str,
    pub error: ProviderError,
}

/// Opens sessions with one kind of mail service.
#[async_trait]
pub trait Connector: Send + Sync {
    /// An authenticated session for reading (and changing) the mailbox.
    async fn session(&self, access: &AccountAccess) -> Result<Box<dyn MailSession>, ProviderError>;

    /// A channel for sending mail as the account.
    async fn submission(
        &self,
        access: &AccountAccess,
    ) -> Result<Box<dyn MailSubmission>, ProviderError>;

    /// Logs in, checks that mail can be sent, and lists the folders (the connection test).
    async fn test(&self, access: &AccountAccess) -> Result<Vec<RemoteFolder>, TestFailed>;
}
