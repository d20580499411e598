//! Domain types of the state machine: commands carried in log entries, their results, znode
//! metadata and change events. Wire types are converted to and from these in `src/proto/`.

use std::sync::Arc;

use bytes::Bytes;

use super::acl::{Acl, Caller};
use crate::error::BatonError;

/// A node's ACL as held in memory: `None` for the open ACL (the common case, free), else a
/// shared list that events and snapshots reference without copying.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct NodeAcl(Option<Arc<[Acl]>>);

impl NodeAcl {
    /// From a stored-form list (see [`super::acl::canonical`]); empty = open.
    pub fn new(acl: Vec<Acl>) -> Self {
        if acl.is_empty() {
            NodeAcl(None)
        } else {
            NodeAcl(Some(acl.into()))
        }
    }

    /// The entries; empty for the open ACL.
    pub fn as_slice(&self) -> &[Acl] {
        self.0.as_deref().unwrap_or(&[])
    }
}

/// A zxid: the log index of the entry that made a change.
pub type Zxid = u64;
/// A session id (never 0).
pub type SessionId = u64;

/// How a znode was created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum CreateMode {
    /// Lives until deleted.
    #[default]
    Persistent,
    /// Owned by a session; deleted with it; no children.
    Ephemeral,
    /// Persistent with a sequential suffix.
    PersistentSequential,
    /// Ephemeral with a sequential suffix.
    EphemeralSequential,
    /// Deleted once it has had a child and has none left.
    Container,
    /// Deleted when unmodified for its TTL and childless.
    PersistentWithTtl,
    /// Sequential TTL node.
    PersistentSequentialWithTtl,
}

impl CreateMode {
    /// Decodes the wire number (same numbering as `baton.v1.CreateMode`).
    pub fn from_i32(v: i32) -> Option<Self> {
        Some(match v {
            0 => Self::Persistent,
            1 => Self::Ephemeral,
            2 => Self::PersistentSequential,
            3 => Self::EphemeralSequential,
            4 => Self::Container,
            5 => Self::PersistentWithTtl,
            6 => Self::PersistentSequentialWithTtl,
            _ => return None,
        })
    }

    /// The wire number.
    pub fn as_i32(self) -> i32 {
        match self {
            Self::Persistent => 0,
            Self::Ephemeral => 1,
            Self::PersistentSequential => 2,
            Self::EphemeralSequential => 3,
            Self::Container => 4,
            Self::PersistentWithTtl => 5,
            Self::PersistentSequentialWithTtl => 6,
        }
    }

    /// Owned by a session.
    pub fn is_ephemeral(self) -> bool {
        matches!(self, Self::Ephemeral | Self::EphemeralSequential)
    }

    /// Gets a sequential suffix.
    pub fn is_sequential(self) -> bool {
        matches!(
            self,
            Self::PersistentSequential
                | Self::EphemeralSequential
                | Self::PersistentSequentialWithTtl
        )
    }

    /// Has a TTL.
    pub fn is_ttl(self) -> bool {
        matches!(
            self,
            Self::PersistentWithTtl | Self::PersistentSequentialWithTtl
        )
    }

    /// Is a container.
    pub fn is_container(self) -> bool {
        matches!(self, Self::Container)
    }
}

/// ZooKeeper's znode metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    /// zxid of the creating change.
    pub czxid: Zxid,
    /// zxid of the last data change.
    pub mzxid: Zxid,
    /// zxid of the last child creation or deletion.
    pub pzxid: Zxid,
    /// Creation time, Unix ms.
    pub ctime: i64,
    /// Last modification time, Unix ms.
    pub mtime: i64,
    /// Number of data changes.
    pub version: i32,
    /// Number of child changes (creations + deletions).
    pub cversion: i32,
    /// Number of ACL changes.
    pub aversion: i32,
    /// Owning session of an ephemeral node, else 0.
    pub ephemeral_owner: SessionId,
    /// Data length.
    pub data_length: i32,
    /// Number of children.
    pub num_children: i32,
    /// Creation mode.
    pub mode: CreateMode,
    /// TTL in ms for TTL nodes, else 0.
    pub ttl_ms: i64,
}

/// One znode operation (alone or inside a `Multi`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create a node.
    Create {
        /// Path, or prefix for sequential modes.
        path: String,
        /// Data.
        data: Bytes,
        /// Mode.
        mode: CreateMode,
        /// Owning session for ephemerals, else 0.
        session_id: SessionId,
        /// TTL for TTL modes, else 0.
        ttl_ms: i64,
        /// The new node's ACL in stored form (empty = open).
        acl: Vec<Acl>,
    },
    /// Replace a node's ACL.
    SetAcl {
        /// Path.
        path: String,
        /// The ACL in stored form (empty = open).
        acl: Vec<Acl>,
        /// Expected ACL version (`aversion`), -1 = any.
        version: i32,
    },
    /// Delete a node.
    Delete {
        /// Path.
        path: String,
        /// Expected version, -1 = any.
        version: i32,
    },
    /// Replace a node's data.
    SetData {
        /// Path.
        path: String,
        /// Data.
        data: Bytes,
        /// Expected version, -1 = any.
        version: i32,
    },
    /// Check a node's version.
    Check {
        /// Path.
        path: String,
        /// Expected version, -1 = existence only.
        version: i32,
    },
    /// Check that a lock node holds its lock with this fencing token.
    CheckFence {
        /// The contender node.
        lock_node: String,
        /// Its fencing token.
        token: u64,
    },
}

impl Op {
    /// The path the op names.
    pub fn path(&self) -> &str {
        match self {
            Op::Create { path, .. }
            | Op::Delete { path, .. }
            | Op::SetData { path, .. }
            | Op::SetAcl { path, .. }
            | Op::Check { path, .. } => path,
            Op::CheckFence { lock_node, .. } => lock_node,
        }
    }

    /// Bytes of payload the op carries (for batch sizing).
    pub fn size(&self) -> usize {
        match self {
            Op::Create { path, data, .. } | Op::SetData { path, data, .. } => {
                path.len() + data.len()
            }
            Op::Delete { path, .. } | Op::Check { path, .. } => path.len(),
            Op::SetAcl { path, acl, .. } => {
                path.len() + acl.iter().map(|a| a.id.id.len() + 16).sum::<usize>()
            }
            Op::CheckFence { lock_node, .. } => lock_node.len() + 8,
        }
    }
}

/// The id a client gives one of its writes so that a retry of it is applied at most once
/// (see [`super::clients`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestId {
    /// The client's id (never 0), chosen at random by the client.
    pub client_id: u64,
    /// The write's sequence number among the client's writes (from 1).
    pub seq: u64,
    /// The client's lowest sequence number still waiting for an answer (at most `seq`):
    /// every result before it has been received and may be forgotten.
    pub first_incomplete: u64,
}

/// One request carried in a log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// A client write with its request id: applied once; a copy whose id was already
    /// applied gets the remembered result.
    Tagged {
        /// The id.
        id: RequestId,
        /// The write.
        request: Box<Request>,
    },
    /// Forget the request ids of clients idle since before `before_ms` (entry time), decided
    /// by the leader; a client active since is kept.
    ExpireClients {
        /// The clients.
        client_ids: Vec<u64>,
        /// Only records whose last write is older than this (Unix ms) are removed.
        before_ms: i64,
    },
    /// Atomic list of ops; `single` marks a lone client op (Create, Delete, SetData).
    Multi {
        /// The ops.
        ops: Vec<Op>,
        /// A lone op rather than a client Multi.
        single: bool,
        /// Who asked; each op is checked against the ACLs at apply. `None` for the
        /// member's own requests and entries written before ACLs existed (not checked).
        caller: Option<Caller>,
    },
    /// Open a session (id and secret chosen by the proposer).
    OpenSession {
        /// Id.
        session_id: SessionId,
        /// Secret.
        secret: Bytes,
        /// Negotiated timeout.
        timeout_ms: i64,
    },
    /// Close a session, deleting its ephemerals.
    CloseSession {
        /// Id.
        session_id: SessionId,
        /// Secret presented by the client.
        secret: Bytes,
    },
    /// Expire sessions the leader found dead, deleting their ephemerals.
    ExpireSessions(Vec<SessionId>),
    /// Delete TTL nodes whose TTL ran out (re-checked at apply with the entry's time).
    ExpireTtl(Vec<String>),
    /// Barrier.
    Noop,
}

impl Request {
    /// Approximate encoded size, for batch sizing.
    pub fn size(&self) -> usize {
        match self {
            Request::Multi { ops, .. } => ops.iter().map(|o| o.size() + 16).sum(),
            Request::ExpireTtl(p) => p.iter().map(|p| p.len() + 4).sum(),
            Request::ExpireSessions(s) => s.len() * 10,
            Request::Tagged { request, .. } => request.size() + 24,
            Request::ExpireClients { client_ids, .. } => client_ids.len() * 10 + 8,
            _ => 32,
        }
    }
}

/// A log entry's application payload: requests batched by the proposer, with its clock.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Command {
    /// Proposer's Unix time in ms.
    pub time_ms: i64,
    /// The requests, applied in order.
    pub requests: Vec<Request>,
}

/// Result of one successful op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpOutcome {
    /// Created `path` (final name) with `stat`.
    Create {
        /// Final path.
        path: String,
        /// Stat of the new node.
        stat: Stat,
    },
    /// Deleted.
    Delete,
    /// Data set; the new stat.
    SetData {
        /// Stat after the change.
        stat: Stat,
    },
    /// Check passed.
    Check,
    /// ACL set; the new stat.
    SetAcl {
        /// Stat after the change.
        stat: Stat,
    },
}

/// Why a `Multi` failed: the failing op's index, its error, and the outcomes of the ops
/// before it (as they would have been had the Multi committed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiFailure {
    /// Index of the failing op.
    pub index: usize,
    /// Its error.
    pub error: BatonError,
    /// Outcomes of ops `0..index`.
    pub before: Vec<OpOutcome>,
}

/// Result of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestResult {
    /// Outcome of a Multi (or a single op).
    Multi(Result<Vec<OpOutcome>, MultiFailure>),
    /// Outcome of a session request or barrier.
    Done(Result<(), BatonError>),
    /// A copy of a write already applied: its result then and the zxid of the entry that
    /// applied it. Nothing was applied this time.
    Duplicate {
        /// zxid of the entry that applied the write.
        zxid: Zxid,
        /// The result it had.
        result: Box<RequestResult>,
    },
    /// A copy of a write whose result is no longer remembered; nothing was applied.
    Stale(BatonError),
}

impl RequestResult {
    /// Whether the request took effect (a duplicate or stale copy changes nothing itself).
    pub fn is_ok(&self) -> bool {
        match self {
            RequestResult::Multi(r) => r.is_ok(),
            RequestResult::Done(r) => r.is_ok(),
            RequestResult::Duplicate { .. } | RequestResult::Stale(_) => false,
        }
    }

    /// The result and zxid to answer with, for a request applied in the entry at `zxid`: a
    /// duplicate answers as its original did, a stale copy with its error.
    ///
    /// # Errors
    /// [`BatonError::StaleRequest`] for a stale copy.
    pub fn settle(self, zxid: Zxid) -> Result<(RequestResult, Zxid), BatonError> {
        match self {
            RequestResult::Duplicate { zxid, result } => Ok((*result, zxid)),
            RequestResult::Stale(e) => Err(e),
            r => Ok((r, zxid)),
        }
    }
}

/// What happened to a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Created.
    Created,
    /// Deleted.
    Deleted,
    /// Data set.
    DataChanged,
    /// A child was created or deleted.
    ChildrenChanged,
}

/// A change to the tree, as delivered to watchers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// zxid of the change.
    pub zxid: Zxid,
    /// What happened.
    pub kind: EventType,
    /// The node it happened to.
    pub path: String,
    /// That node's ACL when it happened: a watcher receives the event only if it may read
    /// the node.
    pub acl: NodeAcl,
}

/// A member's window of recent events, kept so that a watch can resume from a zxid: every
/// event with a zxid above `floor` is in `events`, in zxid order. It survives a restart (kept
/// in the state machine's store) and travels with snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// Events at or below this zxid are not held.
    pub floor: Zxid,
    /// The events above the floor, oldest first.
    pub events: Vec<Event>,
}

impl History {
    /// No events, none held at or below `floor`.
    pub fn empty_at(floor: Zxid) -> Self {
        History {
            floor,
            events: Vec::new(),
        }
    }
}

/// A live session as held in the state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Id.
    pub id: SessionId,
    /// Secret.
    pub secret: Bytes,
    /// Negotiated timeout in ms.
    pub timeout_ms: i64,
    /// zxid that opened it.
    pub created_zxid: Zxid,
    /// Time it was opened (proposer clock).
    pub created_ms: i64,
}
