//! openraft glue: the type configuration, the state-machine adaptor, the proposer that packs
//! client requests into log entries (group commit), linearizable reads, the way to the leader
//! ([`forward`]) and changes to the membership ([`membership`]), snapshot files
//! ([`snapshot`]) and the vote hold of a member that starts without data ([`rejoin`]).

use std::fmt;

use crate::store::codec::LogCommand;
use crate::tree::RequestResult;

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
pub mod state_machine;
pub mod wire;

/// A member's addresses, carried in the replicated membership (the cluster's address book).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberNode {
    /// Address other members use for replication RPCs.
    pub peer_addr: String,
    /// Address clients use.
    pub client_addr: String,
}

impl fmt::Display for MemberNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer={} client={}", self.peer_addr, self.client_addr)
    }
}

/// Results of the requests of one log entry, in order.
pub type CommandResult = Vec<RequestResult>;

openraft::declare_raft_types!(
    /// Baton's openraft type configuration.
    pub TypeConfig:
        D = LogCommand,
        R = CommandResult,
        NodeId = u64,
        Node = MemberNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log id.
pub type LogId = openraft::LogId<u64>;
/// A stored membership.
pub type StoredMembership = openraft::StoredMembership<u64, MemberNode>;
