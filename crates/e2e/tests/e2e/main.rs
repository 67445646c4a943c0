//! One test binary (linking is the slow part on two cores); one module per area.

mod actions;
mod api;
mod app;
mod conformance;
mod connection;
mod credentials;
mod errors;
mod fleet;
mod folders;
mod identity;
mod incremental;
mod jobs;
mod mailbox_actions;
mod migrate;
mod openapi;
mod people;
mod robustness;
mod schema;
mod send;
mod sync;
mod tls;
