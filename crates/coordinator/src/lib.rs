//! The coordinator: a scheduler that publishes due sync jobs, and the HTTP API the CRM uses.
//! It never talks to mail servers; workers do.

mod acting;
mod api;
mod auth;
mod compose;
mod error;
mod extract;
mod openapi;
mod people;
mod scheduler;
mod sending;
mod views;

pub use acting::ACTING_USER_HEADER;
pub use api::{ApiState, router};
pub use openapi::{ApiDoc, document as openapi_document};
pub use scheduler::Scheduler;
pub use sending::relay_one;
