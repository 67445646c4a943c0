//! The IMAP provider: async-imap over TCP, STARTTLS or implicit TLS (rustls, verified unless
//! the account allows a non-secure certificate).

mod actions;
mod connect;
mod connector;
mod errors;
mod examine;
pub mod mailbox_name;
mod session;
pub mod smtp;
mod stream;
pub mod tls;
mod uidset;

pub use connect::{ImapSettings, connect};
pub use connector::ImapConnector;
pub use session::ImapSession;
pub use tls::TlsTrust;
