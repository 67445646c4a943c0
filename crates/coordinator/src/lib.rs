//! The coordinator: a scheduler that publishes due sync jobs, and the HTTP API the CRM uses.
//! It never talks to mail servers; workers do.

mod api;
mod auth;
mod error;
mod scheduler;
mod views;

pub use api::{ApiState, router};
pub use scheduler::Scheduler;
