//! `test_connection`: log in and list the folders, check that mail can be sent, answer.

use crate::handler::Worker;
use mailfleet_core::connection_test::{ConnectionSettings, ConnectionTestResult, TestedFolder};
use mailfleet_core::{Binding, Credentials, Provider};
use mailfleet_provider::{ProviderError, TestFailed};
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
        let Ok(credentials) =
            Credentials::open_bound(&self.key, Binding::ConnectionTest, test_id, &sealed)
        else {
            return Ok(Some(ConnectionTestResult::failed(
                "imap",
                "protocol_error",
                "the test's credentials do not open with this worker's key",
            )));
        };
        let access = Worker::test_access(&settings, credentials);
        let tested = match self.connector(Provider::Imap) {
            Ok(c) => c.test(&access).await,
            Err(error) => Err(TestFailed {
                service: "imap",
                error,
            }),
        };
        Ok(Some(match tested {
            Ok(folders) => ConnectionTestResult::passed(
                folders
                    .into_iter()
                    .map(|f| TestedFolder {
                        name: f.name,
                        delimiter: f.delimiter,
                        selectable: f.selectable,
                        role: f.role.map(|r| r.as_str().to_owned()),
                    })
                    .collect(),
            ),
            Err(TestFailed { service, error }) => failure(service, &error),
        }))
    }
}

fn failure(server: &str, e: &ProviderError) -> ConnectionTestResult {
    ConnectionTestResult::failed(server, e.code(), e.to_string())
}
