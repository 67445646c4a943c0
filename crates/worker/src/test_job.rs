//! `test_connection`: log in to IMAP and list the folders, authenticate to SMTP, answer.

use crate::handler::Worker;
use mailfleet_core::connection_test::{ConnectionSettings, ConnectionTestResult, TestedFolder};
use mailfleet_core::{Binding, Credentials};
use mailfleet_imap::ImapSettings;
use mailfleet_imap::smtp::{self, SmtpSettings};
use mailfleet_provider::{MailSession, ProviderError};
use mailfleet_store::{StoreError, connection_tests};

impl Worker {
    /// Runs the test stored as `test_id`. `Ok(None)` when the row is gone (its caller gave up).
    pub(crate) async fn run_connection_test(
        &self,
        test_id: i64,
    ) -> Result<Option<ConnectionTestResult>, StoreError> {
        let mut conn = self.store.conn().await?;
        let (settings, sealed) = match connection_tests::get(&mut conn, test_id).await {
            Ok(row) => row,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        drop(conn);
        let settings: ConnectionSettings = match serde_json::from_value(settings) {
            Ok(s) => s,
            Err(e) => {
                return Ok(Some(ConnectionTestResult::failed(
                    "imap",
                    "protocol_error",
                    format!("stored test settings unreadable: {e}"),
                )));
            }
        };
        let Ok(Credentials::Password { password }) =
            Credentials::open_bound(&self.key, Binding::ConnectionTest, test_id, &sealed)
        else {
            return Ok(Some(ConnectionTestResult::failed(
                "imap",
                "protocol_error",
                "the test's credentials do not open with this worker's key",
            )));
        };
        let imap = ImapSettings {
            allow_insecure_cert: settings.allow_insecure_cert,
            connect_timeout: self.config.connect_timeout,
            command_timeout: self.config.connect_timeout,
            ..ImapSettings::new(
                settings.imap.host.clone(),
                settings.imap.port,
                settings.imap.encryption,
                settings.login(),
                password.clone(),
            )
        };
        let folders = match mailfleet_imap::connect(&imap, &self.trust).await {
            Ok(mut session) => {
                let listed = session.list_folders().await;
                Box::new(session).close().await;
                match listed {
                    Ok(f) => f,
                    Err(e) => return Ok(Some(failure("imap", &e))),
                }
            }
            Err(e) => return Ok(Some(failure("imap", &e))),
        };
        let smtp = SmtpSettings {
            host: settings.smtp.host.clone(),
            port: settings.smtp.port,
            encryption: settings.smtp.encryption,
            login: settings.login().to_owned(),
            password,
            allow_insecure_cert: settings.allow_insecure_cert,
            timeout: self.config.connect_timeout,
        };
        if let Err(e) = smtp::check(&smtp, &self.trust).await {
            return Ok(Some(failure("smtp", &e)));
        }
        Ok(Some(ConnectionTestResult::passed(
            folders
                .into_iter()
                .map(|f| TestedFolder {
                    name: f.name,
                    delimiter: f.delimiter,
                    selectable: f.selectable,
                    role: f.role.map(|r| r.as_str().to_owned()),
                })
                .collect(),
        )))
    }
}

fn failure(server: &str, e: &ProviderError) -> ConnectionTestResult {
    ConnectionTestResult::failed(server, e.code(), e.to_string())
}
