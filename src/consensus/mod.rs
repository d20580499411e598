//! openraft glue: the state-machine adaptor, the proposer that packs client requests into log
//! entries (group commit), linearizable reads, the way to the leader ([`forward`]) and changes
//! to the membership ([`membership`]), snapshot files ([`snapshot`]) and the vote hold of a
//! member that starts without data ([`rejoin`]). The type configuration is
//! [`crate::types`]'s, re-exported here.

pub(crate) mod failover;
pub mod faults;
pub(crate) mod forward;
pub(crate) mod housekeeping;
pub mod identity;
pub(crate) mod membership;
pub(crate) mod network;
pub(crate) mod peer_service;
pub(crate) mod peers;
pub(crate) mod proposer;
pub(crate) mod reads;
pub(crate) mod rejoin;
pub(crate) mod snapshot;
pub(crate) mod space;
pub(crate) mod space_guard;
pub mod state_machine;

pub use crate::types::{CommandResult, LogId, MemberNode, StoredMembership, TypeConfig};

/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
