//! The deterministic state machine (znode tree, sessions) and the domain types it works on.

pub mod acl;
pub mod locks;
pub mod path;
pub mod state;
pub mod types;

#[cfg(test)]
mod tests;

pub use state::{Applied, Node, SessionEntry, State};
pub use types::*;
