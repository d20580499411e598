//! The member: what the client services, the health checks and the metrics ask of this
//! member, behind one handle. It owns the core's handles (the Raft handle, the state machine's
//! shared state, the proposer, the read barrier, session liveness, the failover fast path,
//! the disk-space alarm, the peer connections) and offers operations in Baton's own terms —
//! write, read at a consistency, wait for a zxid, the tree, sessions, watches, leadership —
//! returning [`BatonError`]. Nothing here knows gRPC: the services in [`crate::api`] turn
//! requests into these calls and errors into statuses (`BatonError::to_status`).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::RaftMetrics;
use tokio::sync::watch;

use crate::config::Config;
use crate::consensus::failover::Failover;
use crate::consensus::forward::Forwarder;
use crate::consensus::housekeeping::Liveness;
use crate::consensus::peers::Peers;
use crate::consensus::proposer::Proposer;
use crate::consensus::reads::ReadBarrier;
use crate::consensus::space::{Limits, SpaceAlarm};
use crate::consensus::state_machine::{self, SmShared};
use crate::consensus::{membership, MemberNode, Raft};
use crate::error::BatonError;
use crate::proto::raft::admin_request::Request as AdminChange;
use crate::shutdown::Shutdown;
use crate::stages::{Stage, Stages};
use crate::tree::{Request, RequestId, RequestResult, SessionId, State, Zxid};
use crate::watch::WatchHub;

/// How long a read waits for its `min_zxid` to be applied on this member.
pub const MIN_ZXID_WAIT: Duration = Duration::from_secs(10);

/// How a read is ordered against writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Sees every write acknowledged before it started (a leader-confirmed read index).
    Linearizable,
    /// Served from this member's state as it is: possibly behind the leader, never ahead of
    /// what the caller saw when it passes its last zxid as `min_zxid`.
    Serializable,
}

/// Who this member is and whom it follows, for response headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// This member's id.
    pub member_id: u64,
    /// The leader this member knows of (0 if none).
    pub leader_id: u64,
    /// The current term.
    pub term: u64,
}

/// Leadership counters, as `baton cluster status` and the metrics show them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeadershipCounters {
    /// Times this member saw the term change.
    pub term_changes: u64,
    /// Elections this member won through the fast path.
    pub fast_elections: u64,
    /// Leaders this member found gone.
    pub leaders_found_gone: u64,
}

/// The core handles of one running member; see the module docs.
pub struct Member {
    cfg: Arc<Config>,
    raft: Raft,
    shared: Arc<SmShared>,
    proposer: Proposer,
    reads: ReadBarrier,
    liveness: Arc<Liveness>,
    peers: Arc<Peers>,
    failover: Arc<Failover>,
    space: Arc<SpaceAlarm>,
    shutdown: Shutdown,
}

/// What a [`Member`] is made of; the server builds these as it starts.
pub struct Parts {
    /// Validated configuration.
    pub cfg: Arc<Config>,
    /// The Raft handle.
    pub raft: Raft,
    /// The state machine's shared state (tree, watch hub, applied index).
    pub shared: Arc<SmShared>,
    /// The write path.
    pub proposer: Proposer,
    /// Linearizable reads.
    pub reads: ReadBarrier,
    /// Session deadlines (used while leading).
    pub liveness: Arc<Liveness>,
    /// Connections to the other members.
    pub peers: Arc<Peers>,
    /// The failover fast path and leadership transfer.
    pub failover: Arc<Failover>,
    /// Disk-space measurements and limits.
    pub space: Arc<SpaceAlarm>,
    /// Fires when the member shuts down.
    pub shutdown: Shutdown,
}

impl Member {
    /// A member of these parts.
    pub fn new(p: Parts) -> Member {
        Member {
            cfg: p.cfg,
            raft: p.raft,
            shared: p.shared,
            proposer: p.proposer,
            reads: p.reads,
            liveness: p.liveness,
            peers: p.peers,
            failover: p.failover,
            space: p.space,
            shutdown: p.shutdown,
        }
    }

    /// This member's id.
    pub fn id(&self) -> u64 {
        self.cfg.id
    }

    /// The member's configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Fires when the member shuts down: long-lived streams and parked waiters end then.
    pub fn shutdown_signal(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Proposes a write and waits for its result and zxid. With a request id, a copy of a
    /// write already applied gets that write's result and zxid, and nothing is applied again.
    ///
    /// # Errors
    /// As [`Proposer::propose`]: `UNAVAILABLE` (not applied, safe to retry), `OUTCOME_UNKNOWN`,
    /// `NOSPACE`, the tree's own errors; `STALE_REQUEST` for a copy whose result is forgotten.
    pub async fn write(
        &self,
        req: Request,
        id: Option<RequestId>,
    ) -> Result<(RequestResult, Zxid), BatonError> {
        let req = match id {
            Some(id) => Request::Tagged {
                id,
                request: Box::new(req),
            },
            None => req,
        };
        let started = Instant::now();
        let r = self.proposer.propose(req).await;
        self.shared.stages.since(Stage::ApiWrite, started);
        r
    }

    /// Waits as a read at `consistency` requires, then until `min_zxid` (if not 0) is applied
    /// here. Returns the zxid applied here once the read may go ahead.
    ///
    /// # Errors
    /// `UNAVAILABLE` without a leader or quorum (linearizable); `DEADLINE_EXCEEDED` if
    /// `min_zxid` is not applied within [`MIN_ZXID_WAIT`].
    pub async fn ready_to_read(
        &self,
        consistency: Consistency,
        min_zxid: Zxid,
    ) -> Result<Zxid, BatonError> {
        if consistency == Consistency::Linearizable {
            self.reads.linearizable().await?;
        }
        if min_zxid > 0 {
            self.reads.wait_applied(min_zxid, MIN_ZXID_WAIT).await?;
        }
        Ok(self.applied())
    }

    /// Confirms with the leader that this member has applied every write acknowledged before
    /// the call; returns the read index.
    ///
    /// # Errors
    /// `UNAVAILABLE` without a leader or quorum.
    pub async fn linearizable(&self) -> Result<Zxid, BatonError> {
        self.reads.linearizable().await
    }

    /// The log index of the last entry applied here.
    pub fn applied(&self) -> Zxid {
        self.reads.applied()
    }

    /// Waits until `zxid` is applied here; returns the index applied then.
    ///
    /// # Errors
    /// `DEADLINE_EXCEEDED` after `timeout`.
    pub async fn wait_applied(&self, zxid: Zxid, timeout: Duration) -> Result<Zxid, BatonError> {
        self.reads.wait_applied(zxid, timeout).await
    }

    /// Runs `f` on the tree under its read lock. Keep `f` short: applies wait for it.
    pub fn read_tree<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        let g = self
            .shared
            .tree
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&g)
    }

    /// A point-in-time view of the tree (constant time: the tree's maps are persistent), for
    /// work that walks all of it off the lock.
    pub fn view(&self) -> State {
        self.read_tree(State::clone)
    }

    /// Encodes a backup of the tree as it is now into an unnamed file (see
    /// [`state_machine::encode_backup_file`]). Blocking: run it off the async threads.
    ///
    /// # Errors
    /// The store's, for a file that cannot be made or written.
    pub fn encode_backup_file(
        &self,
    ) -> Result<state_machine::BackupFile, crate::store::StoreError> {
        state_machine::encode_backup_file(&self.shared)
    }

    /// Who this member is and whom it follows.
    pub fn position(&self) -> Position {
        let m = self.raft.server_metrics();
        let m = m.borrow();
        Position {
            member_id: self.cfg.id,
            leader_id: m.current_leader.unwrap_or(0),
            term: m.vote.leader_id().term,
        }
    }

    /// openraft's view of this member as it is now.
    pub fn raft_metrics(&self) -> RaftMetrics<u64, MemberNode> {
        self.raft.metrics().borrow().clone()
    }

    /// openraft's metrics as they change, to wait for a state.
    pub fn watch_raft(&self) -> watch::Receiver<RaftMetrics<u64, MemberNode>> {
        self.raft.metrics()
    }

    /// The way to the leader, for requests only it serves.
    pub fn to_leader(&self) -> Forwarder {
        Forwarder::new(self.raft.clone(), self.peers.clone())
    }

    /// Runs a membership change or a leadership transfer here, on the leader; returns its log
    /// index (a term for a transfer).
    ///
    /// # Errors
    /// `UNAVAILABLE` if this member does not lead or the change does not commit;
    /// `BAD_ARGUMENTS` for a change that cannot be made.
    pub async fn admin_here(&self, change: AdminChange) -> Result<u64, BatonError> {
        match change {
            AdminChange::TransferLeader(to) => {
                Ok(self.failover.transfer(to, &self.proposer).await?.1)
            }
            change => membership::change(&self.raft, change).await,
        }
    }

    /// Leadership counters of this member.
    pub fn leadership_counters(&self) -> LeadershipCounters {
        let s = &self.failover.stats;
        LeadershipCounters {
            term_changes: s.term_changes.load(Relaxed),
            fast_elections: s.fast_elections.load(Relaxed),
            leaders_found_gone: s.leaders_found_gone.load(Relaxed),
        }
    }

    /// Notes that session `id` is alive (a keepalive reached this member), for `timeout`.
    pub fn touch_session(&self, id: SessionId, timeout: Duration) {
        self.liveness.touch(id, timeout);
    }

    /// The watch registry.
    pub fn watches(&self) -> &Arc<WatchHub> {
        &self.shared.hub
    }

    /// Bumped by each snapshot install: a watch stream open here must end then, since the
    /// install skipped the events of the entries it covers.
    pub fn installs(&self) -> watch::Receiver<u64> {
        self.shared.installs.subscribe()
    }

    /// The write-path stage recorder.
    pub fn stages(&self) -> &Arc<Stages> {
        &self.shared.stages
    }

    /// Size of the newest snapshot built or installed since the member started.
    pub fn snapshot_bytes(&self) -> u64 {
        self.shared.snapshot_bytes.load(Relaxed)
    }

    /// The disk-space limits, and the last measurement if there is one.
    pub fn space(&self) -> (Limits, Option<crate::consensus::space::Space>) {
        (self.space.limits(), self.space.last_measured())
    }

    /// Asks the consensus core to build a snapshot now (it is built in the background).
    ///
    /// # Errors
    /// `UNAVAILABLE` if the core has stopped.
    pub async fn trigger_snapshot(&self) -> Result<(), BatonError> {
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| BatonError::Unavailable(e.to_string()))
    }

    /// Stops the consensus core (the last step of a graceful stop).
    ///
    /// # Errors
    /// openraft's, as text.
    pub async fn stop_consensus(&self) -> Result<(), String> {
        self.raft.shutdown().await.map_err(|e| e.to_string())
    }
}
