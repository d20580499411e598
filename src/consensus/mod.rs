//! openraft glue: the state-machine adaptor, the proposer that packs client requests into log
//! entries (group commit), linearizable reads, the way to the leader ([`forward`]) and changes
//! to the membership ([`membership`]), snapshot files ([`snapshot`]) and the vote hold of a
//! member that starts without data ([`rejoin`]). The type configuration is
//! [`crate::types`]'s, re-exported here.

pub mod failover;
pub mod faults;
pub mod forward;
pub mod housekeeping;
pub mod identity;
pub mod membership;
pub mod network;
pub mod peer_service;
pub mod peers;
pub mod proposer;
pub mod reads;
pub mod rejoin;
pub mod snapshot;
pub mod space;
pub mod space_guard;
pub mod state_machine;

pub use crate::types::{CommandResult, LogId, MemberNode, StoredMembership, TypeConfig};

/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
