//! The bottom layer of shared types: Baton's openraft type configuration and the aliases of
//! openraft's generic types that the store, the conversions and consensus all name (log ids,
//! votes, entries, memberships), the member address record and the log entry's command.
//!
//! It depends only on openraft and the domain tree ([`crate::tree`]); `store`, `proto` and
//! `consensus` depend on it, never the other way round. The command's encoding lives with the
//! other stored formats, in [`crate::proto::stored`].

use std::fmt;
use std::sync::Arc;

use crate::tree::{Command, RequestResult};

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

/// A log id.
pub type LogId = openraft::LogId<u64>;
/// A vote.
pub type Vote = openraft::Vote<u64>;
/// A log entry of Baton's type configuration.
pub type Entry = openraft::Entry<TypeConfig>;
/// A membership (voter sets and every member's addresses).
pub type Membership = openraft::Membership<u64, MemberNode>;
/// A stored membership.
pub type StoredMembership = openraft::StoredMembership<u64, MemberNode>;
/// Snapshot meta of Baton's type configuration.
pub type SnapshotMeta = openraft::SnapshotMeta<u64, MemberNode>;

/// What openraft asks of the state machine besides its contents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppliedMeta {
    /// Last applied log id.
    pub last_applied: Option<LogId>,
    /// Membership of the last applied membership entry.
    pub membership: StoredMembership,
}

/// A log entry's command, shared (a clone is a reference count) and held both decoded and
/// encoded: the proposer encodes it once; the log, replication and apply use that encoding
/// and that decoded form, and a follower decodes what it receives once.
///
/// Made by `LogCommand::new` and `LogCommand::decode` ([`crate::proto::stored`]).
#[derive(Clone)]
pub struct LogCommand(Arc<CommandForms>);

struct CommandForms {
    command: Command,
    bytes: bytes::Bytes,
}

impl LogCommand {
    /// A command with its encoding (a `Command` message); the caller vouches they agree.
    pub(crate) fn from_parts(command: Command, bytes: bytes::Bytes) -> Self {
        LogCommand(Arc::new(CommandForms { command, bytes }))
    }

    /// The command.
    pub fn command(&self) -> &Command {
        &self.0.command
    }

    /// Its encoding (a `Command` message).
    pub fn bytes(&self) -> &bytes::Bytes {
        &self.0.bytes
    }
}

impl std::ops::Deref for LogCommand {
    type Target = Command;

    fn deref(&self) -> &Command {
        &self.0.command
    }
}

impl fmt::Debug for LogCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.command.fmt(f)
    }
}

impl PartialEq for LogCommand {
    fn eq(&self, other: &Self) -> bool {
        self.0.command == other.0.command
    }
}

impl Eq for LogCommand {}
