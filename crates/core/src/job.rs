//! The JSON envelope of every job on RabbitMQ. It names what a job acts on, never credentials.
//!
//! ```json
//! {"schema_version":1,"job_id":"…uuid…","kind":"sync_account","account_id":42,
//!  "published_at":"2026-11-26T10:00:00Z"}
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The envelope version this build writes and reads.
pub const JOB_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Fetch what changed in the account's active folders.
    SyncAccount { account_id: i64 },
    /// Reconcile the account's folder list with the server.
    RefreshFolders { account_id: i64 },
    /// Send one message from the outbox.
    SendMessage { outgoing_id: i64 },
    /// Check the settings stored in `connection_tests` and answer to the delivery's
    /// `reply_to` (RPC). The credentials stay in Postgres, sealed.
    TestConnection { test_id: i64 },
}

impl Job {
    /// The account the job acts on, when it names one.
    pub fn account_id(&self) -> Option<i64> {
        match self {
            Job::SyncAccount { account_id } | Job::RefreshFolders { account_id } => {
                Some(*account_id)
            }
            Job::SendMessage { .. } | Job::TestConnection { .. } => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Job::SyncAccount { .. } => "sync_account",
            Job::RefreshFolders { .. } => "refresh_folders",
            Job::SendMessage { .. } => "send_message",
            Job::TestConnection { .. } => "test_connection",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEnvelope {
    pub schema_version: u32,
    pub job_id: Uuid,
    #[serde(flatten)]
    pub job: Job,
    pub published_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("job is not valid JSON or lacks a field: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("job schema version {found} is not supported (this build reads {JOB_SCHEMA_VERSION})")]
    UnsupportedVersion { found: u32 },
}

impl JobEnvelope {
    pub fn new(job: Job) -> Self {
        Self {
            schema_version: JOB_SCHEMA_VERSION,
            job_id: Uuid::new_v4(),
            job,
            published_at: Utc::now(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a job envelope always serialises")
    }

    /// Parses a delivery body. The version is checked before the kind, so a future envelope
    /// is reported as such rather than as an unknown kind.
    pub fn from_bytes(body: &[u8]) -> Result<Self, JobError> {
        #[derive(Deserialize)]
        struct Version {
            schema_version: u32,
        }
        let v: Version = serde_json::from_slice(body)?;
        if v.schema_version != JOB_SCHEMA_VERSION {
            return Err(JobError::UnsupportedVersion {
                found: v.schema_version,
            });
        }
        Ok(serde_json::from_slice(body)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_wire_form_is_flat_and_round_trips() {
        let env = JobEnvelope::new(Job::SyncAccount { account_id: 42 });
        let v: serde_json::Value = serde_json::from_slice(&env.to_bytes()).unwrap();
        assert_eq!(v["kind"], "sync_account");
        assert_eq!(v["account_id"], 42);
        assert_eq!(v["schema_version"], 1);
        assert_eq!(JobEnvelope::from_bytes(&env.to_bytes()).unwrap(), env);
    }

    #[test]
    fn a_crm_written_envelope_parses() {
        let raw = br#"{"schema_version":1,"job_id":"7d7f6a52-4bd2-4e4b-9d1e-0d4f3c1a2b3c",
            "kind":"sync_account","account_id":7,"published_at":"2026-11-26T10:00:00Z"}"#;
        let env = JobEnvelope::from_bytes(raw).unwrap();
        assert_eq!(env.job, Job::SyncAccount { account_id: 7 });
    }

    #[test]
    fn rejects_unknown_version_kind_and_garbage() {
        let future = br#"{"schema_version":2,"kind":"sync_account","account_id":1}"#;
        assert!(matches!(
            JobEnvelope::from_bytes(future),
            Err(JobError::UnsupportedVersion { found: 2 })
        ));
        let unknown = br#"{"schema_version":1,"job_id":"7d7f6a52-4bd2-4e4b-9d1e-0d4f3c1a2b3c",
            "kind":"format_disk","account_id":1,"published_at":"2026-11-26T10:00:00Z"}"#;
        assert!(matches!(
            JobEnvelope::from_bytes(unknown),
            Err(JobError::Malformed(_))
        ));
        assert!(JobEnvelope::from_bytes(b"\xff not json").is_err());
    }

    #[test]
    fn envelopes_agree_with_the_published_json_schema() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../../docs/jobs.schema.json")).unwrap();
        let kinds: Vec<&str> = schema["properties"]["kind"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        for job in [
            Job::SyncAccount { account_id: 1 },
            Job::RefreshFolders { account_id: 1 },
            Job::SendMessage { outgoing_id: 1 },
            Job::TestConnection { test_id: 1 },
        ] {
            assert!(
                kinds.contains(&job.kind()),
                "{} missing from the schema",
                job.kind()
            );
            let v: serde_json::Value =
                serde_json::from_slice(&JobEnvelope::new(job).to_bytes()).unwrap();
            for required in schema["required"].as_array().unwrap() {
                assert!(
                    v.get(required.as_str().unwrap()).is_some(),
                    "{required} missing"
                );
            }
            for key in v.as_object().unwrap().keys() {
                assert!(
                    schema["properties"].get(key).is_some(),
                    "{key} is not in the schema"
                );
            }
        }
        assert_eq!(
            schema["properties"]["schema_version"]["const"],
            JOB_SCHEMA_VERSION
        );
    }
}
