//! The worker: takes jobs off RabbitMQ, runs them against the providers and the store, and
//! acks each delivery only after its outcome is committed.

mod connectors;
mod handler;
mod send_job;
mod sync_job;
mod test_job;

pub use handler::{Outcome, Readiness, Worker, WorkerConfig};
pub use send_job::{Failpoint, SendOutcome};
