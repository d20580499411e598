//! The domain error type and its single mapping to gRPC statuses.
//!
//! Every error has a machine-readable reason (ZooKeeper's upper-snake error name) that is
//! carried to clients as a `google.rpc.ErrorInfo` with domain `baton`.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The machine-readable reason of an error: ZooKeeper's error name where one exists, carried
/// as the `ErrorInfo` reason of a status (and in `OpError`, `WatchError` and peer messages).
/// Server and client share it; the strings on the wire are [`Reason::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// `NO_NODE`: the node does not exist.
    NoNode,
    /// `NODE_EXISTS`: the node already exists.
    NodeExists,
    /// `BAD_VERSION`: the expected version did not match.
    BadVersion,
    /// `NOT_EMPTY`: the node has children.
    NotEmpty,
    /// `NO_CHILDREN_FOR_EPHEMERALS`: ephemeral nodes cannot have children.
    NoChildrenForEphemerals,
    /// `INVALID_PATH`: the path is not valid.
    InvalidPath,
    /// `SESSION_EXPIRED`: the session does not exist (never opened, closed, or expired).
    SessionExpired,
    /// `AUTH_FAILED`: the session secret is wrong.
    AuthFailed,
    /// `TOO_LARGE`: a size limit was exceeded.
    TooLarge,
    /// `TOO_MANY`: a count limit was reached.
    TooMany,
    /// `OVERLOADED`: the member shed the request; retry after a pause.
    Overloaded,
    /// `BAD_ARGUMENTS`: the request is malformed.
    BadArguments,
    /// `NO_AUTH`: the caller lacks a permission on a node.
    NoAuth,
    /// `INVALID_ACL`: an ACL is malformed.
    InvalidAcl,
    /// `UNAUTHENTICATED`: the member requires authentication and the request carried none.
    Unauthenticated,
    /// `BAD_CREDENTIALS`: credentials were malformed, wrong or refused.
    BadCredentials,
    /// `RUNTIME_INCONSISTENCY`: an op of a Multi was not applied because another op failed.
    RuntimeInconsistency,
    /// `BAD_FENCE`: a fencing check failed.
    BadFence,
    /// `LOCK_HELD`: tryAcquire found the lock held.
    LockHeld,
    /// `NOT_OWNER`: a lock node is owned by another session.
    NotOwner,
    /// `UNAVAILABLE`: no leader, no quorum, or the member is shutting down: the request was not applied.
    Unavailable,
    /// `NOSPACE`: the cluster's NOSPACE alarm is raised.
    NoSpace,
    /// `OUTCOME_UNKNOWN`: the request was proposed but its outcome is unknown.
    OutcomeUnknown,
    /// `DEADLINE_EXCEEDED`: a wait did not finish in time.
    DeadlineExceeded,
    /// `INTERNAL`: a server-side failure.
    Internal,
    /// `BACKUP_IN_PROGRESS`: a backup of this member is already being taken.
    BackupInProgress,
    /// `STALE_REQUEST`: a write carried a request id the cluster no longer remembers.
    StaleRequest,
    /// `CLUSTER_MISMATCH`: a peer request came from a member of another cluster.
    ClusterMismatch,
    /// `COMPACTED`: a watch asked to resume from a zxid older than the member's event history (a refused watch; never a request's error).
    Compacted,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 29] = [
        Reason::NoNode,
        Reason::NodeExists,
        Reason::BadVersion,
        Reason::NotEmpty,
        Reason::NoChildrenForEphemerals,
        Reason::InvalidPath,
        Reason::SessionExpired,
        Reason::AuthFailed,
        Reason::TooLarge,
        Reason::TooMany,
        Reason::Overloaded,
        Reason::BadArguments,
        Reason::NoAuth,
        Reason::InvalidAcl,
        Reason::Unauthenticated,
        Reason::BadCredentials,
        Reason::RuntimeInconsistency,
        Reason::BadFence,
        Reason::LockHeld,
        Reason::NotOwner,
        Reason::Unavailable,
        Reason::NoSpace,
        Reason::OutcomeUnknown,
        Reason::DeadlineExceeded,
        Reason::Internal,
        Reason::BackupInProgress,
        Reason::StaleRequest,
        Reason::ClusterMismatch,
        Reason::Compacted,
    ];

    /// Its name on the wire, e.g. `NO_NODE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoNode => "NO_NODE",
            Reason::NodeExists => "NODE_EXISTS",
            Reason::BadVersion => "BAD_VERSION",
            Reason::NotEmpty => "NOT_EMPTY",
            Reason::NoChildrenForEphemerals => "NO_CHILDREN_FOR_EPHEMERALS",
            Reason::InvalidPath => "INVALID_PATH",
            Reason::SessionExpired => "SESSION_EXPIRED",
            Reason::AuthFailed => "AUTH_FAILED",
            Reason::TooLarge => "TOO_LARGE",
            Reason::TooMany => "TOO_MANY",
            Reason::Overloaded => "OVERLOADED",
            Reason::BadArguments => "BAD_ARGUMENTS",
            Reason::NoAuth => "NO_AUTH",
            Reason::InvalidAcl => "INVALID_ACL",
            Reason::Unauthenticated => "UNAUTHENTICATED",
            Reason::BadCredentials => "BAD_CREDENTIALS",
            Reason::RuntimeInconsistency => "RUNTIME_INCONSISTENCY",
            Reason::BadFence => "BAD_FENCE",
            Reason::LockHeld => "LOCK_HELD",
            Reason::NotOwner => "NOT_OWNER",
            Reason::Unavailable => "UNAVAILABLE",
            Reason::NoSpace => "NOSPACE",
            Reason::OutcomeUnknown => "OUTCOME_UNKNOWN",
            Reason::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Reason::Internal => "INTERNAL",
            Reason::BackupInProgress => "BACKUP_IN_PROGRESS",
            Reason::StaleRequest => "STALE_REQUEST",
            Reason::ClusterMismatch => "CLUSTER_MISMATCH",
            Reason::Compacted => "COMPACTED",
        }
    }

    /// The reason a wire name stands for; `None` for a name this build does not know.
    pub fn parse(name: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// The gRPC status code errors of this reason carry.
    pub fn code(self) -> Code {
        match self {
            Reason::NoNode => Code::NotFound,
            Reason::NodeExists => Code::AlreadyExists,
            Reason::BadVersion
            | Reason::NotEmpty
            | Reason::NoChildrenForEphemerals
            | Reason::SessionExpired
            | Reason::RuntimeInconsistency
            | Reason::BadFence
            | Reason::LockHeld
            | Reason::StaleRequest
            | Reason::ClusterMismatch => Code::FailedPrecondition,
            Reason::InvalidPath | Reason::BadArguments | Reason::InvalidAcl => {
                Code::InvalidArgument
            }
            Reason::AuthFailed | Reason::Unauthenticated | Reason::BadCredentials => {
                Code::Unauthenticated
            }
            Reason::TooLarge
            | Reason::TooMany
            | Reason::Overloaded
            | Reason::NoSpace
            | Reason::BackupInProgress => Code::ResourceExhausted,
            Reason::NoAuth | Reason::NotOwner => Code::PermissionDenied,
            Reason::Unavailable => Code::Unavailable,
            Reason::OutcomeUnknown | Reason::DeadlineExceeded => Code::DeadlineExceeded,
            Reason::Internal => Code::Internal,
            Reason::Compacted => Code::OutOfRange,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reason name this build does not know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown reason {0:?}")]
pub struct UnknownReason(pub String);

impl FromStr for Reason {
    type Err = UnknownReason;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reason::parse(s).ok_or_else(|| UnknownReason(s.to_string()))
    }
}

/// Errors a request can end with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatonError {
    /// The node does not exist (or its parent, for creates).
    #[error("no node: {0}")]
    NoNode(String),
    /// The node already exists.
    #[error("node exists: {0}")]
    NodeExists(String),
    /// The expected version did not match.
    #[error("bad version for {path}: expected {expected}, actual {actual}")]
    BadVersion {
        /// Path.
        path: String,
        /// Version the request expected.
        expected: i32,
        /// Version the node has.
        actual: i32,
    },
    /// The node has children.
    #[error("node not empty: {0}")]
    NotEmpty(String),
    /// Ephemeral nodes cannot have children.
    #[error("ephemeral nodes may not have children: {0}")]
    NoChildrenForEphemerals(String),
    /// The path is not valid.
    #[error("invalid path {path:?}: {why}")]
    InvalidPath {
        /// Path as given.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// The session does not exist (never opened, closed, or expired).
    #[error("session expired or unknown: {0:#x}")]
    SessionExpired(u64),
    /// The session secret is wrong.
    #[error("wrong secret for session {0:#x}")]
    AuthFailed(u64),
    /// A size limit was exceeded.
    #[error("{what} is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A count limit was reached (watches per stream or member, connections).
    #[error("too many {what}: the limit is {limit}")]
    TooMany {
        /// What there are too many of.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// The member has too many requests in flight and sheds this one; retry after a pause.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// The request is malformed.
    #[error("bad arguments: {0}")]
    BadArguments(String),
    /// The caller lacks a permission on a node (its ACL), or the path is reserved.
    #[error("not authorized: {need} permission on {path} is not granted to the caller")]
    NoAuth {
        /// The node.
        path: String,
        /// The permission needed (`READ`, `WRITE`, `CREATE`, `DELETE`, `ADMIN`, or
        /// `SYSTEM` for the reserved subtree).
        need: &'static str,
    },
    /// An ACL is malformed (unknown scheme, bad id, no permissions, `auth` without ids).
    #[error("invalid ACL: {0}")]
    InvalidAcl(String),
    /// The member requires authentication and the request carried none.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// Credentials were malformed, wrong for a super principal, sent where they are not
    /// accepted, or from an address with too many failed logins.
    #[error("bad credentials: {0}")]
    BadCredentials(String),
    /// A fencing check failed: the lock node does not hold its lock with that token.
    #[error("fence check failed: {lock_node} does not hold its lock with token {token}")]
    BadFence {
        /// The lock node.
        lock_node: String,
        /// The token presented.
        token: u64,
    },
    /// TryAcquire found the lock held.
    #[error("lock {0} is held")]
    LockHeld(String),
    /// A lock node is owned by another session.
    #[error("{path} is owned by session {owner:#x}, not {session:#x}")]
    NotOwner {
        /// The node.
        path: String,
        /// Its owner.
        owner: u64,
        /// The session that asked.
        session: u64,
    },
    /// An op of a Multi was not applied because another op failed.
    #[error("not applied: another op of the multi failed")]
    RuntimeInconsistency,
    /// No leader, no quorum, or the member is shutting down.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The cluster's NOSPACE alarm is raised (a member is short of disk space or over its
    /// quota): writes that add data are refused until it clears; reads, deletes and session
    /// close go on.
    #[error("no space: {0}")]
    NoSpace(String),
    /// The request was proposed but its outcome is unknown (timeout, leader change).
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// A wait (min_zxid, sync) did not finish in time.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// A server-side failure (storage, encoding).
    #[error("internal error: {0}")]
    Internal(String),
    /// A write carried a request id whose sequence number the cluster no longer remembers:
    /// the client acknowledged it (a delayed copy of a write already answered), or it fell
    /// out of the client's window of remembered results. Nothing was applied for this copy.
    #[error(
        "stale request: client {client_id:#x} sequence {seq} is older than the oldest it remembers ({oldest})"
    )]
    StaleRequest {
        /// The client id the request carried.
        client_id: u64,
        /// The request's sequence number.
        seq: u64,
        /// The oldest sequence number still remembered for that client.
        oldest: u64,
    },
    /// A backup of this member is already being taken (one at a time per member).
    #[error("a backup of this member is already in progress; try again when it is done")]
    BackupInProgress,
    /// A peer request came from a member of another cluster (see
    /// [`crate::consensus::identity`]).
    #[error(
        "cluster mismatch: this member belongs to cluster {mine}, the request to cluster {theirs}"
    )]
    ClusterMismatch {
        /// This member's cluster id (or "none").
        mine: String,
        /// The id the request carried (or "none").
        theirs: String,
    },
}

impl BatonError {
    /// The machine-readable reason (ZooKeeper's error name where one exists).
    pub fn reason(&self) -> Reason {
        match self {
            BatonError::NoNode(_) => Reason::NoNode,
            BatonError::NodeExists(_) => Reason::NodeExists,
            BatonError::BadVersion { .. } => Reason::BadVersion,
            BatonError::NotEmpty(_) => Reason::NotEmpty,
            BatonError::NoChildrenForEphemerals(_) => Reason::NoChildrenForEphemerals,
            BatonError::InvalidPath { .. } => Reason::InvalidPath,
            BatonError::SessionExpired(_) => Reason::SessionExpired,
            BatonError::AuthFailed(_) => Reason::AuthFailed,
            BatonError::TooLarge { .. } => Reason::TooLarge,
            BatonError::TooMany { .. } => Reason::TooMany,
            BatonError::Overloaded(_) => Reason::Overloaded,
            BatonError::BadArguments(_) => Reason::BadArguments,
            BatonError::NoAuth { .. } => Reason::NoAuth,
            BatonError::InvalidAcl(_) => Reason::InvalidAcl,
            BatonError::Unauthenticated(_) => Reason::Unauthenticated,
            BatonError::BadCredentials(_) => Reason::BadCredentials,
            BatonError::RuntimeInconsistency => Reason::RuntimeInconsistency,
            BatonError::BadFence { .. } => Reason::BadFence,
            BatonError::LockHeld(_) => Reason::LockHeld,
            BatonError::NotOwner { .. } => Reason::NotOwner,
            BatonError::Unavailable(_) => Reason::Unavailable,
            BatonError::NoSpace(_) => Reason::NoSpace,
            BatonError::OutcomeUnknown(_) => Reason::OutcomeUnknown,
            BatonError::DeadlineExceeded(_) => Reason::DeadlineExceeded,
            BatonError::Internal(_) => Reason::Internal,
            BatonError::BackupInProgress => Reason::BackupInProgress,
            BatonError::StaleRequest { .. } => Reason::StaleRequest,
            BatonError::ClusterMismatch { .. } => Reason::ClusterMismatch,
        }
    }

    /// The gRPC status code (its reason's).
    pub fn code(&self) -> Code {
        self.reason().code()
    }

    /// Whether retrying the same request may succeed (the request was not applied, or is
    /// idempotent to retry after `Unavailable`).
    pub fn is_retryable(&self) -> bool {
        matches!(self, BatonError::Unavailable(_) | BatonError::Overloaded(_))
    }

    fn metadata(&self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        match self {
            BatonError::NoNode(p)
            | BatonError::NodeExists(p)
            | BatonError::NotEmpty(p)
            | BatonError::NoChildrenForEphemerals(p)
            | BatonError::LockHeld(p) => {
                m.insert("path".into(), p.clone());
            }
            BatonError::NoAuth { path, need } => {
                m.insert("path".into(), path.clone());
                m.insert("permission".into(), (*need).to_string());
            }
            BatonError::BadFence { lock_node, token } => {
                m.insert("lock_node".into(), lock_node.clone());
                m.insert("token".into(), token.to_string());
            }
            BatonError::NotOwner {
                path,
                owner,
                session,
            } => {
                m.insert("path".into(), path.clone());
                m.insert("owner".into(), owner.to_string());
                m.insert("session_id".into(), session.to_string());
            }
            BatonError::InvalidPath { path, .. } => {
                m.insert("path".into(), path.clone());
            }
            BatonError::BadVersion {
                path,
                expected,
                actual,
            } => {
                m.insert("path".into(), path.clone());
                m.insert("expected_version".into(), expected.to_string());
                m.insert("actual_version".into(), actual.to_string());
            }
            BatonError::StaleRequest {
                client_id,
                seq,
                oldest,
            } => {
                m.insert("client_id".into(), client_id.to_string());
                m.insert("seq".into(), seq.to_string());
                m.insert("oldest_seq".into(), oldest.to_string());
            }
            BatonError::ClusterMismatch { mine, theirs } => {
                m.insert("cluster_id".into(), mine.clone());
                m.insert("request_cluster_id".into(), theirs.clone());
            }
            BatonError::SessionExpired(id) | BatonError::AuthFailed(id) => {
                m.insert("session_id".into(), id.to_string());
            }
            BatonError::TooLarge { what, size, limit } => {
                m.insert("limit_name".into(), (*what).to_string());
                m.insert("limit".into(), limit.to_string());
                m.insert("size".into(), size.to_string());
            }
            BatonError::TooMany { what, limit } => {
                m.insert("limit_name".into(), (*what).to_string());
                m.insert("limit".into(), limit.to_string());
            }
            _ => {}
        }
        m
    }

    /// The gRPC status, with an `ErrorInfo` detail (reason, domain `baton`, metadata).
    pub fn to_status(&self) -> Status {
        self.to_status_with(HashMap::new())
    }

    /// Like [`BatonError::to_status`], with extra metadata entries.
    pub fn to_status_with(&self, extra: HashMap<String, String>) -> Status {
        let mut meta = self.metadata();
        meta.extend(extra);
        let details = ErrorDetails::with_error_info(self.reason().as_str(), "baton", meta);
        Status::with_error_details(self.code(), self.to_string(), details)
    }
}

impl From<BatonError> for Status {
    fn from(e: BatonError) -> Status {
        e.to_status()
    }
}

/// The `ErrorInfo` reason carried by a status, as sent.
pub fn status_reason_name(status: &Status) -> Option<String> {
    status.get_details_error_info().map(|i| i.reason)
}

/// The reason carried by a status; `None` if it carries none or one this build does not know.
pub fn status_reason(status: &Status) -> Option<Reason> {
    status_reason_name(status).and_then(|r| Reason::parse(&r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_their_names() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
            assert_eq!(r.as_str().parse::<Reason>(), Ok(r));
            assert_eq!(r.to_string(), r.as_str());
        }
        assert_eq!(Reason::parse("NO_SUCH_REASON"), None);
        assert!("no_node".parse::<Reason>().is_err());
        let status = BatonError::NoNode("/a".into()).to_status();
        assert_eq!(status_reason(&status), Some(Reason::NoNode));
        assert_eq!(status.code(), Code::NotFound);
    }
}
