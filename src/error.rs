//! The domain error type and its single mapping to gRPC statuses.
//!
//! Every error has a machine-readable reason (ZooKeeper's upper-snake error name) that is
//! carried to clients as a `google.rpc.ErrorInfo` with domain `baton`.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

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
    pub fn reason(&self) -> &'static str {
        match self {
            BatonError::NoNode(_) => "NO_NODE",
            BatonError::NodeExists(_) => "NODE_EXISTS",
            BatonError::BadVersion { .. } => "BAD_VERSION",
            BatonError::NotEmpty(_) => "NOT_EMPTY",
            BatonError::NoChildrenForEphemerals(_) => "NO_CHILDREN_FOR_EPHEMERALS",
            BatonError::InvalidPath { .. } => "INVALID_PATH",
            BatonError::SessionExpired(_) => "SESSION_EXPIRED",
            BatonError::AuthFailed(_) => "AUTH_FAILED",
            BatonError::TooLarge { .. } => "TOO_LARGE",
            BatonError::TooMany { .. } => "TOO_MANY",
            BatonError::Overloaded(_) => "OVERLOADED",
            BatonError::BadArguments(_) => "BAD_ARGUMENTS",
            BatonError::NoAuth { .. } => "NO_AUTH",
            BatonError::InvalidAcl(_) => "INVALID_ACL",
            BatonError::Unauthenticated(_) => "UNAUTHENTICATED",
            BatonError::BadCredentials(_) => "BAD_CREDENTIALS",
            BatonError::RuntimeInconsistency => "RUNTIME_INCONSISTENCY",
            BatonError::BadFence { .. } => "BAD_FENCE",
            BatonError::LockHeld(_) => "LOCK_HELD",
            BatonError::NotOwner { .. } => "NOT_OWNER",
            BatonError::Unavailable(_) => "UNAVAILABLE",
            BatonError::NoSpace(_) => "NOSPACE",
            BatonError::OutcomeUnknown(_) => "OUTCOME_UNKNOWN",
            BatonError::DeadlineExceeded(_) => "DEADLINE_EXCEEDED",
            BatonError::Internal(_) => "INTERNAL",
            BatonError::BackupInProgress => "BACKUP_IN_PROGRESS",
            BatonError::StaleRequest { .. } => "STALE_REQUEST",
            BatonError::ClusterMismatch { .. } => "CLUSTER_MISMATCH",
        }
    }

    /// The gRPC status code.
    pub fn code(&self) -> Code {
        match self {
            BatonError::NoNode(_) => Code::NotFound,
            BatonError::NodeExists(_) => Code::AlreadyExists,
            BatonError::BadVersion { .. }
            | BatonError::NotEmpty(_)
            | BatonError::NoChildrenForEphemerals(_)
            | BatonError::SessionExpired(_)
            | BatonError::RuntimeInconsistency
            | BatonError::BadFence { .. }
            | BatonError::LockHeld(_)
            | BatonError::StaleRequest { .. }
            | BatonError::ClusterMismatch { .. } => Code::FailedPrecondition,
            BatonError::NotOwner { .. } => Code::PermissionDenied,
            BatonError::InvalidPath { .. } | BatonError::BadArguments(_) => Code::InvalidArgument,
            BatonError::AuthFailed(_) => Code::Unauthenticated,
            BatonError::TooLarge { .. }
            | BatonError::TooMany { .. }
            | BatonError::Overloaded(_)
            | BatonError::NoSpace(_)
            | BatonError::BackupInProgress => Code::ResourceExhausted,
            BatonError::NoAuth { .. } => Code::PermissionDenied,
            BatonError::InvalidAcl(_) => Code::InvalidArgument,
            BatonError::Unauthenticated(_) | BatonError::BadCredentials(_) => Code::Unauthenticated,
            BatonError::Unavailable(_) => Code::Unavailable,
            BatonError::OutcomeUnknown(_) | BatonError::DeadlineExceeded(_) => {
                Code::DeadlineExceeded
            }
            BatonError::Internal(_) => Code::Internal,
        }
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
        let details = ErrorDetails::with_error_info(self.reason(), "baton", meta);
        Status::with_error_details(self.code(), self.to_string(), details)
    }
}

impl From<BatonError> for Status {
    fn from(e: BatonError) -> Status {
        e.to_status()
    }
}

/// The ErrorInfo reason carried by a status, if any.
pub fn status_reason(status: &Status) -> Option<String> {
    status.get_details_error_info().map(|i| i.reason)
}
