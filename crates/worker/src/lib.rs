//! The worker: takes jobs off RabbitMQ, runs them against the providers and the store, and
//! acks each delivery only after its outcome is committed.

mod handler;
mod sync_job;
mod test_job;

pub use handler::{Outcome, Readiness, Worker, WorkerConfig};
