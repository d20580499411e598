//! The deterministic state machine (znode tree, sessions) and the domain types it works on.

pub mod acl;
pub mod clients;
pub mod lock_queue;
pub mod locks;
pub mod path;
pub mod state;
pub mod types;

#[cfg(test)]
mod clients_tests;
#[cfg(test)]
mod tests;

pub use clients::{ClientRecord, ClientTable};
pub use state::{Applied, Loader, Node, SessionEntry, State};
pub use types::*;
