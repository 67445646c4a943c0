//! The sync engine: asks a provider session for what changed, parses it off the I/O path and
//! writes it to the store batch by batch, each batch committed together with the folder's
//! cursor. Contacts are linked in the same transaction.

pub mod actions;
mod cursor;
mod engine;
pub mod parse;
mod skim;

pub use engine::{SyncError, SyncOptions, SyncReport, refresh_folders, sync_account};
