//! Domain types shared by every mailfleet crate: ids, parsed input (`EmailAddress`,
//! `SyncWindow`, …), the job envelope that crosses RabbitMQ and the sealed-secret box that
//! keeps account credentials encrypted at rest. Nothing here does I/O.

pub mod account;
pub mod connection_test;
pub mod credentials;
pub mod email;
pub mod job;
pub mod secret;

pub use account::{AccountKind, AccountState, Encryption, Provider, ServerEndpoint, SyncWindow};
pub use credentials::Credentials;
pub use email::{EmailAddress, InvalidEmail};
pub use job::{JOB_SCHEMA_VERSION, Job, JobEnvelope, JobError};
pub use secret::{Binding, Secret, SecretError, SecretKey};
