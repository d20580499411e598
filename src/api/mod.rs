//! The client-facing gRPC services, one file per service. Each handler validates its input,
//! calls the core (proposer for writes, read barrier + local state for reads) and maps
//! domain errors to statuses in one place (`BatonError::to_status`).

use std::sync::Arc;
use std::time::Duration;

use tonic::Status;

use crate::config::Config;
use crate::consensus::housekeeping::Liveness;
use crate::consensus::proposer::Proposer;
use crate::consensus::reads::ReadBarrier;
use crate::consensus::state_machine::SmShared;
use crate::consensus::Raft;
use crate::error::BatonError;
use crate::proto::v1;
use crate::tree::acl::{self, Caller};
use crate::tree::path::{self, PathLimits};
use crate::tree::{RequestResult, State, Zxid};

pub mod auth;
pub mod cluster;
pub mod elections;
pub mod locks;
pub mod maintenance;
pub mod sessions;
pub mod watches;
pub mod znodes;

/// Longest a read waits for `min_zxid` to be applied.
const MIN_ZXID_WAIT: Duration = Duration::from_secs(10);

/// What every service needs: the member's core handles and limits.
pub struct Ctx {
    /// Validated configuration.
    pub cfg: Arc<Config>,
    /// The Raft handle.
    pub raft: Raft,
    /// State machine shared state (tree, watch hub, applied index).
    pub shared: Arc<SmShared>,
    /// Write path.
    pub proposer: Proposer,
    /// Linearizable reads.
    pub reads: ReadBarrier,
    /// Session deadlines (used while leading).
    pub liveness: Arc<Liveness>,
    /// Connections to the other members.
    pub peers: Arc<crate::consensus::peers::Peers>,
    /// Fires when the member shuts down; long-lived streams end then.
    pub shutdown: crate::shutdown::Shutdown,
    /// Parked lock and election waiters.
    pub lock_waiters: Arc<locks::LockWaiters>,
    /// The failover fast path (its counters are part of the status).
    pub failover: Arc<crate::consensus::failover::Failover>,
    /// Disk-space measurements and limits.
    pub space: Arc<crate::consensus::space::SpaceAlarm>,
    /// Who callers are, and the method gate (its counters are exported).
    pub auth: Arc<crate::auth::Authenticator>,
}

impl Ctx {
    /// Path bounds from the configuration.
    pub fn path_limits(&self) -> PathLimits {
        PathLimits {
            max_len: self.cfg.max_path_bytes,
            max_depth: self.cfg.max_path_depth,
        }
    }

    /// The response header, with `zxid` given.
    pub fn header_at(&self, zxid: Zxid) -> Option<v1::ResponseHeader> {
        let m = self.raft.metrics();
        let m = m.borrow();
        Some(v1::ResponseHeader {
            member_id: self.cfg.id,
            leader_id: m.current_leader.unwrap_or(0),
            term: m.current_term,
            zxid,
        })
    }

    /// Runs `f` on the tree under the read lock.
    pub fn read_tree<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        let g = self.shared.tree.read().unwrap_or_else(|e| e.into_inner());
        f(&g)
    }

    /// Waits as the read's consistency requires: a leader-confirmed read index for
    /// LINEARIZABLE, nothing for SERIALIZABLE; then until `min_zxid` is applied.
    ///
    /// # Errors
    /// `UNAVAILABLE` without quorum; `DEADLINE_EXCEEDED` if `min_zxid` is not reached.
    pub async fn before_read(&self, consistency: i32, min_zxid: u64) -> Result<(), BatonError> {
        match v1::Consistency::try_from(consistency) {
            Ok(v1::Consistency::Linearizable) => {
                self.reads.linearizable().await?;
            }
            Ok(v1::Consistency::Serializable) => {}
            Err(_) => {
                return Err(BatonError::BadArguments(format!(
                    "unknown consistency {consistency}"
                )))
            }
        }
        if min_zxid > 0 {
            self.reads.wait_applied(min_zxid, MIN_ZXID_WAIT).await?;
        }
        Ok(())
    }

    /// Checks a path for reading.
    ///
    /// # Errors
    /// `INVALID_PATH`.
    pub fn check_path(&self, p: &str) -> Result<(), BatonError> {
        crate::ops::grpc::note_path(p);
        path::validate(p, false, &self.path_limits())
    }

    /// Checks a path for writing: valid, and outside the reserved subtree.
    ///
    /// # Errors
    /// `INVALID_PATH`, or `NO_AUTH` under `/baton`.
    pub fn check_write_path(&self, p: &str, sequential: bool) -> Result<(), BatonError> {
        crate::ops::grpc::note_path(p);
        path::validate(p, sequential, &self.path_limits())?;
        if path::is_reserved(p) {
            return Err(BatonError::NoAuth {
                path: p.to_string(),
                need: "SYSTEM",
            });
        }
        Ok(())
    }

    /// Checks `perm` on the node at `p` for `caller`; a missing node passes (the operation
    /// then reports it, or applies its own check).
    ///
    /// # Errors
    /// `NO_AUTH`.
    pub fn authorize(&self, p: &str, caller: &Caller, perm: u32) -> Result<(), BatonError> {
        self.read_tree(|s| match s.get(p) {
            Some(n) => acl::require(n.acl.as_slice(), caller, perm, p),
            None => Ok(()),
        })
    }

    /// Checks a data size against the limit.
    ///
    /// # Errors
    /// `TOO_LARGE` naming the limit.
    pub fn check_data(&self, data: &[u8]) -> Result<(), BatonError> {
        if data.len() > self.cfg.max_data_bytes {
            return Err(BatonError::TooLarge {
                what: "data",
                size: data.len() as u64,
                limit: self.cfg.max_data_bytes as u64,
            });
        }
        Ok(())
    }

    /// Proposes a request and waits for its result.
    ///
    /// # Errors
    /// As [`Proposer::propose`].
    pub async fn write(&self, req: crate::tree::Request) -> Result<(RequestResult, Zxid), Status> {
        let started = std::time::Instant::now();
        let r = self.proposer.propose(req).await.map_err(Status::from);
        self.shared
            .stages
            .since(crate::stages::Stage::ApiWrite, started);
        r
    }
}
