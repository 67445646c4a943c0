//! The coordinator: a scheduler that publishes due sync jobs, and the HTTP API the CRM uses.
//! It never talks to mail servers; workers do.

mod accounts;
mod acting;
mod actions;
mod auth;
mod compose;
mod error;
mod extract;
mod idempotency;
mod openapi;
mod people;
mod routes;
mod scheduler;
mod sending;
mod state;
mod views;

pub use acting::ACTING_USER_HEADER;
pub use openapi::{ApiDoc, document as openapi_document};
pub use routes::router;
pub use scheduler::Scheduler;
pub use sending::relay_one;
pub use state::ApiState;
