//! The one place that picks a provider by the account's type, and that turns an account row
//! (or a connection test's settings) into what its connector needs.

use crate::handler::Worker;
use async_trait::async_trait;
use mailfleet_core::connection_test::ConnectionSettings;
use mailfleet_core::{Credentials, Encryption, Provider, SecretKey, ServerEndpoint};
use mailfleet_provider::{AccountAccess, Connector, ProviderError, ServiceSettings, TokenStore};
use mailfleet_store::leases::Fence;
use mailfleet_store::models::Account;
use mailfleet_store::{Store, accounts};
use std::sync::Arc;

impl Worker {
    /// The connector for `provider`.
    pub(crate) fn connector(&self, provider: Provider) -> Result<&dyn Connector, ProviderError> {
        match provider {
            Provider::Imap => Ok(&self.imap),
            other => Err(ProviderError::Permanent(format!(
                "provider {other} is not supported yet"
            ))),
        }
    }

    /// The account's provider and what its connector needs: settings and opened credentials.
    /// Credentials a provider renews are written back under `fence` when the job holds one.
    pub(crate) fn access(
        &self,
        account: &Account,
        fence: Option<Fence>,
    ) -> Result<(Provider, AccountAccess), ProviderError> {
        let provider: Provider = account
            .provider
            .parse()
            .map_err(|e| ProviderError::Permanent(format!("{e}")))?;
        let credentials = Credentials::open(&self.key, account.id, &account.credentials)
            .map_err(|e| ProviderError::Permanent(format!("account credentials: {e}")))?;
        let settings = match provider {
            Provider::Imap => ServiceSettings::Imap {
                imap: endpoint(account, Server::Imap)?,
                smtp: endpoint(account, Server::Smtp)?,
                login: account
                    .username
                    .clone()
                    .unwrap_or_else(|| account.email.clone()),
                allow_insecure_cert: account.allow_insecure_cert,
            },
            other => {
                return Err(ProviderError::Permanent(format!(
                    "provider {other} is not supported yet"
                )));
            }
        };
        let tokens: Arc<dyn TokenStore> = Arc::new(AccountTokens {
            store: self.store.clone(),
            key: self.key.clone(),
            account_id: account.id,
            fence,
        });
        Ok((
            provider,
            AccountAccess {
                email: account.email.clone(),
                settings,
                credentials,
                tokens: Some(tokens),
            },
        ))
    }

    /// A connection test's access (nothing is stored from it).
    pub(crate) fn test_access(
        settings: &ConnectionSettings,
        credentials: Credentials,
    ) -> AccountAccess {
        AccountAccess {
            email: settings.email.clone(),
            settings: ServiceSettings::Imap {
                imap: settings.imap.clone(),
                smtp: settings.smtp.clone(),
                login: settings.login().to_owned(),
                allow_insecure_cert: settings.allow_insecure_cert,
            },
            credentials,
            tokens: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Imap,
    Smtp,
}

/// Host, port and encryption of the account's IMAP or SMTP server.
fn endpoint(account: &Account, which: Server) -> Result<ServerEndpoint, ProviderError> {
    let (host, port, encryption, name, default_encryption) = match which {
        Server::Imap => (
            &account.imap_host,
            account.imap_port,
            &account.imap_encryption,
            "IMAP",
            "ssl",
        ),
        Server::Smtp => (
            &account.smtp_host,
            account.smtp_port,
            &account.smtp_encryption,
            "SMTP",
            "starttls",
        ),
    };
    let missing = |what: String| ProviderError::Permanent(format!("account has no {what}"));
    Ok(ServerEndpoint {
        host: host
            .clone()
            .ok_or_else(|| missing(format!("{name} host")))?,
        port: port
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| missing(format!("valid {name} port")))?,
        encryption: encryption
            .as_deref()
            .unwrap_or(default_encryption)
            .parse::<Encryption>()
            .map_err(|e| ProviderError::Permanent(e.to_string()))?,
    })
}

/// Writes renewed credentials back to the account, sealed, under the job's lease.
struct AccountTokens {
    store: Store,
    key: SecretKey,
    account_id: i64,
    fence: Option<Fence>,
}

#[async_trait]
impl TokenStore for AccountTokens {
    async fn save(&self, credentials: &Credentials) -> Result<(), ProviderError> {
        let sealed = credentials.seal(&self.key, self.account_id);
        let unavailable = |e: mailfleet_store::StoreError| {
            ProviderError::Disconnected(format!("saving renewed credentials: {e}"))
        };
        let mut conn = self.store.conn().await.map_err(unavailable)?;
        accounts::save_credentials(&mut conn, self.account_id, &sealed, self.fence)
            .await
            .map_err(unavailable)
    }
}
