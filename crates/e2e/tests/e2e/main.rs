//! One test binary (linking is the slow part on two cores); one module per area.

mod api;
mod app;
mod connection;
mod errors;
mod fleet;
mod folders;
mod incremental;
mod jobs;
mod openapi;
mod people;
mod robustness;
mod schema;
mod send;
mod sync;
mod tls;
