//! What every handler shares: the store, the broker, the scheduler, the keys. Handlers
//! import it from here, and the router (`routes.rs`) imports the handlers: one way in.

use crate::scheduler::Scheduler;
use mailfleet_core::{Secret, SecretKey};
use mailfleet_queue::Broker;
use mailfleet_store::Store;
use std::sync::Arc;

#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub broker: Arc<Broker>,
    pub scheduler: Scheduler,
    pub key: SecretKey,
    pub api_token: Arc<Secret<String>>,
    /// How long a connection test waits for a worker's answer.
    pub rpc_timeout: std::time::Duration,
}
