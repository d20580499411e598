//! Leader failover without waiting for timers, when a leader's process is gone.
//!
//! openraft 0.9 replaces a leader only when a follower's election timer fires, and a follower
//! whose vote for the leader is committed first waits out the leader's lease (the largest
//! election timeout) and refuses every vote until then: about 0.8 s on the default timers. Yet
//! when a leader's process dies the kernel closes its connections at once. This module turns
//! that into an election within milliseconds, using openraft's public API only:
//!
//! 1. **Evidence.** Each follower keeps a `Follow` stream open to its leader. When it breaks or
//!    ends, the follower probes the leader's peer port with a fresh connection: *refused*
//!    means nothing listens there, so the process is gone. A connection reset followed by a
//!    probe that cannot reach the host (a container killed with its network) counts too. A
//!    partition or a paused process produces neither (no reset arrives, connections still
//!    open), so those are left to the timers.
//! 2. **Agreement.** A member with evidence reports it to the other voters (`LeaderGone`, with
//!    its last log id), and probes at once when another member reports first. Once reports
//!    from a majority of the voters name the same leader and term, each reporter computes the
//!    same successor: the one with the most complete log (highest last log id, then lowest
//!    id), whose election the others can grant.
//! 3. **Election**, with ordinary Raft votes. The others step aside: each starts an election
//!    of its own (`trigger().elect()`), which cannot win but moves its vote off the dead
//!    leader's term and so drops the lease, then says so. The successor then campaigns twice
//!    (the first campaign shares the others' term and is refused; the second is one term
//!    above it) and is granted the votes.
//!
//! Every step is guarded by the member's own state (still in the dead leader's term, still
//! a follower), each member acts only on its own evidence, and nothing here changes how
//! votes are granted: at worst a step comes too late and the timers elect as before. Safety
//! rests on Raft's votes alone. Linearizable reads never use leases, so dropping a lease
//! early cannot serve a stale read.

use std::collections::{BTreeMap, BTreeSet};
use std::net::ToSocketAddrs;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use openraft::ServerState;
use tracing::{debug, info, warn};

use super::faults::Fault;
use super::peers::Peers;
use super::rejoin::VoteHold;
use super::{LogId, Raft};
use crate::error::BatonError;
use crate::proto::raft as pb;
use crate::proto::stored;
use crate::shutdown::Shutdown;
use crate::stages::Stages;
use crate::store::log::LogStore;

/// How long a probe connection may take before the leader counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_millis(150);
/// First pause before following the same leader again after its stream ended while it was
/// alive; it doubles while streams keep ending quickly, up to [`REFOLLOW_PAUSE_MAX`].
const REFOLLOW_PAUSE: Duration = Duration::from_millis(10);
/// Longest pause between follow attempts.
const REFOLLOW_PAUSE_MAX: Duration = Duration::from_millis(500);
/// Probes after a reset while the leader's port still accepts connections.
const RESET_REPROBES: usize = 10;
/// Pause between those probes.
const RESET_REPROBE_PAUSE: Duration = Duration::from_millis(2);
/// A stream open at least this long resets the pause.
const STREAM_SETTLED: Duration = Duration::from_secs(2);
/// Longest the target of a leadership transfer may take to have the whole log.
const TRANSFER_CATCH_UP: Duration = Duration::from_secs(3);
/// Longest a leadership transfer waits for the new leader to be known.
const TRANSFER_SETTLE: Duration = Duration::from_secs(3);
/// Added to a lease when waiting one out, for the clocks' and tasks' slack.
const LEASE_MARGIN: Duration = Duration::from_millis(50);

/// Longest a report or a step-aside message may take.
const REPORT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a round (one leader and term) may take before it is forgotten.
const ROUND_LIFETIME: Duration = Duration::from_secs(3);
/// How long each election step waits to see its effect in the member's state.
const STEP_WAIT: Duration = Duration::from_millis(300);
/// How often a follower checks which voters it can reach (see [`Failover::guard_elections`]).
const REACH_EVERY: Duration = Duration::from_millis(50);
/// Checks in a row that found a minority reachable before this member stops campaigning.
const CUT_OFF_AFTER: u32 = 2;

/// Why a follow stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamEnd {
    /// The connection was reset or closed under the stream (no orderly shutdown).
    Reset,
    /// It ended in an orderly way (the leader shut down) or with another error.
    Other,
}

/// What a probe of the leader's peer port found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    /// Connection refused: nothing listens.
    Refused,
    /// Connected: a process listens.
    Alive,
    /// No answer in time, or no route: the host is unreachable (or the link is cut).
    Unreachable,
}

/// One leader's disappearance as this member sees it.
struct Round {
    leader: u64,
    term: u64,
    started: Instant,
    /// When this member found its own evidence.
    evidence: Option<Instant>,
    /// Last log ids reported by members with evidence (this one included).
    reports: BTreeMap<u64, Option<LogId>>,
    /// Members that stepped aside.
    stepped: BTreeSet<u64>,
    /// This member already took its step.
    acted: bool,
    /// A leadership won after the step was counted.
    counted: bool,
}

/// Counters shown by `baton cluster status`.
#[derive(Debug, Default)]
pub struct FailoverStats {
    /// Times this member saw the term change.
    pub term_changes: AtomicU64,
    /// Elections this member won through the fast path.
    pub fast_elections: AtomicU64,
    /// Leaders this member found gone (its own evidence).
    pub leaders_found_gone: AtomicU64,
}

/// The failover fast path of one member.
pub struct Failover {
    my_id: u64,
    raft: Raft,
    peers: Arc<Peers>,
    log: LogStore,
    round: Mutex<Option<Round>>,
    /// Counters.
    pub stats: FailoverStats,
    /// The member's recorder: leader changes and the current term are noted there.
    stages: Arc<Stages>,
    /// While on, this member starts no election of any kind (see `consensus::rejoin`).
    vote_hold: Arc<VoteHold>,
    /// The term this member last led and when it was first seen leading it.
    leading: Mutex<Option<(u64, Instant)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether an error (or one of its sources) says the connection was reset or closed under
/// the stream.
fn is_reset(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            ) {
                return true;
            }
        }
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            if h2.is_io() {
                if let Some(io) = h2.get_io() {
                    return matches!(
                        io.kind(),
                        std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::ConnectionAborted
                            | std::io::ErrorKind::BrokenPipe
                            | std::io::ErrorKind::UnexpectedEof
                    );
                }
            }
        }
        cur = err.source();
    }
    false
}

impl Failover {
    /// The fast path of member `my_id`; start it with [`Failover::run`].
    pub fn new(
        my_id: u64,
        raft: Raft,
        peers: Arc<Peers>,
        log: LogStore,
        stages: Arc<Stages>,
        vote_hold: Arc<VoteHold>,
    ) -> Arc<Failover> {
        Arc::new(Failover {
            my_id,
            stages,
            vote_hold,
            raft,
            peers,
            log,
            round: Mutex::new(None),
            stats: FailoverStats::default(),
            leading: Mutex::new(None),
        })
    }

    /// Follows the current leader until `shutdown`, acting when it is found gone; also counts
    /// term changes.
    pub async fn run(self: Arc<Self>, mut shutdown: Shutdown) {
        let mut rx = self.raft.server_metrics();
        let mut term = rx.borrow().vote.leader_id().term;
        let mut seen_leader = None;
        loop {
            let (state, leader, t) = {
                let m = rx.borrow_and_update();
                (m.state, m.current_leader, m.vote.leader_id().term)
            };
            if t != term {
                term = t;
                self.stats.term_changes.fetch_add(1, Ordering::Relaxed);
            }
            self.stages.set_term(t);
            if leader.is_some() && leader != seen_leader {
                self.stages
                    .counters
                    .leader_changes
                    .fetch_add(1, Ordering::Relaxed);
            }
            if leader.is_some() {
                seen_leader = leader;
            }
            if state == ServerState::Leader && leader == Some(self.my_id) {
                self.note_leadership(t);
                let mut leading = lock(&self.leading);
                if leading.is_none_or(|(lt, _)| lt != t) {
                    *leading = Some((t, Instant::now()));
                }
            }
            match leader {
                Some(l) if l != self.my_id && state == ServerState::Follower => {
                    let this = self.clone();
                    let follow = this.follow(l, t);
                    tokio::pin!(follow);
                    tokio::select! {
                        () = &mut follow => {}
                        r = rx.changed() => if r.is_err() { return },
                        () = shutdown.wait() => return,
                    }
                }
                _ => {
                    tokio::select! {
                        r = rx.changed() => if r.is_err() { return },
                        () = shutdown.wait() => return,
                    }
                }
            }
        }
    }

    /// Counts a leadership this member won after taking its step in a round (campaigning or
    /// stepping aside: within one term openraft grants the higher id, so either may win).
    fn note_leadership(&self, term: u64) {
        let mut slot = lock(&self.round);
        if let Some(r) = slot.as_mut() {
            if r.acted && term > r.term && !r.counted {
                r.counted = true;
                self.stats.fast_elections.fetch_add(1, Ordering::Relaxed);
                info!(
                    previous = r.leader,
                    term,
                    after_evidence_ms = r
                        .evidence
                        .map_or(0.0, |e| e.elapsed().as_secs_f64() * 1000.0),
                    "elected by the failover fast path"
                );
            }
        }
    }

    fn leader_addr(&self, leader: u64) -> Option<String> {
        let m = self.raft.server_metrics();
        let m = m.borrow();
        m.membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.peer_addr.clone())
    }

    /// Follows `leader` (of `term`): holds a follow stream to it, and each time the stream ends
    /// probes the leader. Returns never: on evidence it reports and waits for the member's
    /// state to move on (the caller stops following then); while the leader lives it follows
    /// again, after a pause that grows while streams keep ending quickly.
    async fn follow(self: Arc<Self>, leader: u64, term: u64) {
        let mut pause = REFOLLOW_PAUSE;
        loop {
            let Some(addr) = self.leader_addr(leader) else {
                return std::future::pending().await;
            };
            let opened = Instant::now();
            let end = self.stream_until_end(leader, term, &addr).await;
            let broke = Instant::now();
            let mut probe = self.probe(leader, &addr).await;
            // A process being killed resets its connections a moment before the kernel closes
            // its listening socket: after a reset, look again for a few milliseconds.
            for _ in 0..RESET_REPROBES {
                if end != StreamEnd::Reset || probe != Probe::Alive {
                    break;
                }
                tokio::time::sleep(RESET_REPROBE_PAUSE).await;
                probe = self.probe(leader, &addr).await;
            }
            debug!(
                leader,
                term,
                ?end,
                ?probe,
                "follow stream to the leader ended"
            );
            let gone =
                probe == Probe::Refused || (end == StreamEnd::Reset && probe == Probe::Unreachable);
            if gone {
                info!(
                    leader,
                    term,
                    evidence = match probe {
                        Probe::Refused => "connection refused",
                        _ => "connection reset, host unreachable",
                    },
                    probe_ms = broke.elapsed().as_secs_f64() * 1000.0,
                    "the leader is gone"
                );
                self.stats
                    .leaders_found_gone
                    .fetch_add(1, Ordering::Relaxed);
                self.evidence(leader, term).await;
                return std::future::pending().await;
            }
            pause = if opened.elapsed() >= STREAM_SETTLED {
                REFOLLOW_PAUSE
            } else {
                (pause * 2).min(REFOLLOW_PAUSE_MAX)
            };
            tokio::time::sleep(pause).await;
        }
    }

    /// Opens a follow stream to `leader` and waits for its end.
    async fn stream_until_end(&self, leader: u64, term: u64, addr: &str) -> StreamEnd {
        let Ok(mut client) = self.peers.client(leader, addr) else {
            return StreamEnd::Other;
        };
        let req = pb::FollowRequest {
            follower: self.my_id,
            term,
        };
        match client.follow(req).await {
            Ok(resp) => {
                let mut stream = resp.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(_)) => continue,
                        Ok(None) => return StreamEnd::Other,
                        Err(s) if is_reset(&s) => return StreamEnd::Reset,
                        Err(_) => return StreamEnd::Other,
                    }
                }
            }
            Err(s) if is_reset(&s) => StreamEnd::Reset,
            Err(_) => StreamEnd::Other,
        }
    }

    /// Connects to `addr` afresh: refused, alive or unreachable. A link cut by fault injection
    /// is unreachable.
    async fn probe(&self, leader: u64, addr: &str) -> Probe {
        if self.peers.faults().check(self.my_id, leader) == Fault::Drop {
            return Probe::Unreachable;
        }
        let addr = addr
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .to_string();
        // An address given as ip:port needs no lookup (the cut-off guard probes every 50 ms).
        let resolved = match addr.parse::<std::net::SocketAddr>() {
            Ok(sa) => Some(sa),
            Err(_) => tokio::task::spawn_blocking(move || {
                addr.to_socket_addrs().ok().and_then(|mut a| a.next())
            })
            .await
            .ok()
            .flatten(),
        };
        let Some(sa) = resolved else {
            return Probe::Unreachable;
        };
        match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(sa)).await {
            Ok(Ok(_)) => Probe::Alive,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Probe::Refused,
            Ok(Err(_)) | Err(_) => Probe::Unreachable,
        }
    }

    /// Keeps this member from campaigning while it cannot reach a majority of the voters (a
    /// partition cut it off): openraft 0.9 has no pre-vote, so such a member would raise its
    /// term at every election timeout, and on healing its inflated term would depose the
    /// healthy leader for nothing. Every `REACH_EVERY` a follower connects afresh to each
    /// other voter's peer port; after `CUT_OFF_AFTER` checks in a row that found a minority
    /// reachable (this member included), its election timer is turned off, and back on at the
    /// first check that finds a majority. Only connections that cannot be made count against
    /// a peer: a process that is merely slow still answers a connect. It never stops the
    /// failover fast path (explicit elections) and never affects votes for others.
    pub async fn guard_elections(self: Arc<Self>, mut shutdown: Shutdown) {
        let mut minority_checks = 0u32;
        let mut enabled = true;
        loop {
            tokio::select! {
                () = shutdown.wait() => break,
                () = tokio::time::sleep(REACH_EVERY) => {}
            }
            let (state, others) = {
                let m = self.raft.server_metrics();
                let m = m.borrow();
                let mem = m.membership_config.membership();
                let voters: Vec<u64> = mem.voter_ids().collect();
                let others: Vec<(u64, String)> = voters
                    .iter()
                    .filter(|id| **id != self.my_id)
                    .filter_map(|id| mem.get_node(id).map(|n| (*id, n.peer_addr.clone())))
                    .collect();
                let is_voter = voters.contains(&self.my_id);
                (m.state, is_voter.then_some((voters.len(), others)))
            };
            let Some((voters, others)) = others else {
                continue;
            };
            if state == ServerState::Leader || others.is_empty() {
                minority_checks = 0;
                if !enabled {
                    self.raft.runtime_config().elect(true);
                    enabled = true;
                }
                continue;
            }
            let probes = others.iter().map(|(id, addr)| self.probe(*id, addr));
            let reachable = 1 + futures::future::join_all(probes)
                .await
                .into_iter()
                .filter(|p| *p == Probe::Alive)
                .count();
            if reachable * 2 > voters {
                minority_checks = 0;
                if !enabled {
                    // Heard from no leader for a while, this member's election deadline has
                    // long passed: give the leader's heartbeats (which reset it) the largest
                    // election timeout to arrive before campaigning is allowed again.
                    let grace = Duration::from_millis(self.raft.config().election_timeout_max);
                    tokio::select! {
                        () = shutdown.wait() => break,
                        () = tokio::time::sleep(grace) => {}
                    }
                    info!(
                        reachable,
                        voters, "a majority of the voters is reachable again; elections resume"
                    );
                    self.raft.runtime_config().elect(true);
                    enabled = true;
                }
            } else {
                minority_checks += 1;
                if enabled && minority_checks >= CUT_OFF_AFTER {
                    warn!(
                        reachable,
                        voters,
                        "cut off from the majority of the voters: no elections of this member until it can reach them (its term stays)"
                    );
                    self.raft.runtime_config().elect(false);
                    enabled = false;
                }
            }
        }
        if !enabled {
            self.raft.runtime_config().elect(true);
        }
    }

    /// Whether this member still follows `leader` in `term` (nothing has moved on).
    fn still_following(&self, leader: u64, term: u64) -> bool {
        let m = self.raft.server_metrics();
        let m = m.borrow();
        m.vote.leader_id().term == term
            && m.vote.leader_id().voted_for() == Some(leader)
            && m.state == ServerState::Follower
    }

    fn round_for(slot: &mut Option<Round>, leader: u64, term: u64) -> &mut Round {
        let fresh = !matches!(slot, Some(r) if r.leader == leader && r.term == term
            && r.started.elapsed() < ROUND_LIFETIME);
        if fresh {
            *slot = Some(Round {
                leader,
                term,
                started: Instant::now(),
                evidence: None,
                reports: BTreeMap::new(),
                stepped: BTreeSet::new(),
                acted: false,
                counted: false,
            });
        }
        match slot {
            Some(r) => r,
            None => unreachable!("the round was just set"),
        }
    }

    /// Records this member's own evidence and reports it to the other voters.
    async fn evidence(self: &Arc<Self>, leader: u64, term: u64) {
        if !self.still_following(leader, term) {
            return;
        }
        let last = self.log.last_log_id();
        let first = {
            let mut slot = lock(&self.round);
            let r = Self::round_for(&mut slot, leader, term);
            let first = r.evidence.is_none();
            if first {
                r.evidence = Some(Instant::now());
                r.reports.insert(self.my_id, last);
            }
            first
        };
        if first {
            self.broadcast(leader, term, last, false);
        }
        self.clone().evaluate(leader, term).await;
    }

    /// Sends a report to every other voter except the leader (in the background).
    fn broadcast(&self, leader: u64, term: u64, last: Option<LogId>, stepped_aside: bool) {
        let m = self.raft.server_metrics();
        let membership = m.borrow().membership_config.clone();
        let req = pb::LeaderGoneRequest {
            reporter: self.my_id,
            leader,
            term,
            last_log_id: last.as_ref().map(stored::log_id_to_pb),
            stepped_aside,
        };
        for id in membership.membership().voter_ids() {
            if id == self.my_id || id == leader {
                continue;
            }
            let Some(node) = membership.membership().get_node(&id) else {
                continue;
            };
            let Ok(mut client) = self.peers.client(id, &node.peer_addr) else {
                continue;
            };
            let mut r = tonic::Request::new(req);
            r.set_timeout(REPORT_TIMEOUT);
            tokio::spawn(async move {
                if let Err(e) = client.leader_gone(r).await {
                    debug!(to = id, error = %e.message(), "a leader-gone report was not delivered");
                }
            });
        }
    }

    /// Handles another member's report.
    pub async fn on_report(self: Arc<Self>, req: pb::LeaderGoneRequest) {
        let last = match req.last_log_id.map(stored::log_id_from_pb).transpose() {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "malformed leader-gone report");
                return;
            }
        };
        let need_probe = {
            let mut slot = lock(&self.round);
            let r = Self::round_for(&mut slot, req.leader, req.term);
            r.reports.insert(req.reporter, last);
            if req.stepped_aside {
                r.stepped.insert(req.reporter);
            }
            r.evidence.is_none()
        };
        if need_probe && self.still_following(req.leader, req.term) {
            // Another member saw the leader go: look for evidence of our own right away.
            if let Some(addr) = self.leader_addr(req.leader) {
                if self.probe(req.leader, &addr).await == Probe::Refused {
                    let fresh = lock(&self.round)
                        .as_ref()
                        .is_some_and(|r| r.evidence.is_none());
                    if fresh {
                        info!(
                            leader = req.leader,
                            term = req.term,
                            reporter = req.reporter,
                            "the leader is gone (connection refused, probed on another member's report)"
                        );
                        self.stats
                            .leaders_found_gone
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    self.evidence(req.leader, req.term).await;
                    return;
                }
            }
        }
        self.evaluate(req.leader, req.term).await;
    }

    /// Takes this member's step once a majority reported: the successor campaigns once the
    /// others stepped aside; the others step aside.
    async fn evaluate(self: Arc<Self>, leader: u64, term: u64) {
        let voters: Vec<u64> = {
            let m = self.raft.server_metrics();
            let m = m.borrow();
            m.membership_config.membership().voter_ids().collect()
        };
        let quorum = voters.len() / 2 + 1;
        let (winner, stepped, reporters) = {
            let slot = lock(&self.round);
            let Some(r) = slot
                .as_ref()
                .filter(|r| r.leader == leader && r.term == term)
            else {
                return;
            };
            if r.evidence.is_none() || r.acted {
                return;
            }
            let reports: Vec<(u64, Option<LogId>)> = r
                .reports
                .iter()
                .filter(|(id, _)| **id != leader && voters.contains(id))
                .map(|(id, l)| (*id, *l))
                .collect();
            if reports.len() < quorum {
                debug!(
                    leader,
                    term,
                    reports = reports.len(),
                    quorum,
                    "waiting for more leader-gone reports"
                );
                return;
            }
            // The most complete log wins; among equals, the lowest id.
            let winner = reports
                .iter()
                .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
                .map(|(id, _)| *id);
            let stepped = r.stepped.iter().filter(|id| voters.contains(id)).count();
            (winner, stepped, reports.len())
        };
        let Some(winner) = winner else { return };
        if winner == self.my_id {
            if stepped + 1 < quorum {
                debug!(
                    leader,
                    term, stepped, quorum, "successor waits for the others to step aside"
                );
                return;
            }
            if !self.mark_acted(leader, term) {
                return;
            }
            self.campaign(leader, term, reporters).await;
        } else {
            if !self.mark_acted(leader, term) {
                return;
            }
            self.step_aside(leader, term, winner).await;
        }
    }

    fn mark_acted(&self, leader: u64, term: u64) -> bool {
        let mut slot = lock(&self.round);
        match slot.as_mut() {
            Some(r) if r.leader == leader && r.term == term && !r.acted => {
                r.acted = true;
                true
            }
            _ => false,
        }
    }

    /// Waits (bounded) until this member's state satisfies `f`.
    async fn wait_state(
        &self,
        f: impl Fn(&openraft::metrics::RaftServerMetrics<u64, super::MemberNode>) -> bool,
    ) -> bool {
        let mut rx = self.raft.server_metrics();
        let r = tokio::time::timeout(STEP_WAIT, rx.wait_for(|m| f(m))).await;
        matches!(r, Ok(Ok(_)))
    }

    /// Leaves `term` with an election this member cannot win (its vote moves off the leader,
    /// so it no longer keeps the leader's lease); true once its vote has moved.
    async fn leave_term(&self, term: u64) -> bool {
        if self.vote_hold.holding() {
            return false;
        }
        if let Err(e) = self.raft.trigger().elect().await {
            warn!(error = %e, "could not step aside");
            return false;
        }
        let me = self.my_id;
        self.wait_state(|m| {
            m.vote.leader_id().term > term && m.vote.leader_id().voted_for() == Some(me)
        })
        .await
    }

    /// Steps aside for `winner`: an election that cannot win, to leave the dead leader's term.
    async fn step_aside(&self, leader: u64, term: u64, winner: u64) {
        if !self.still_following(leader, term) {
            debug!(
                leader,
                term, "no longer following the gone leader; not stepping aside"
            );
            return;
        }
        let moved = self.leave_term(term).await;
        if moved {
            info!(
                leader,
                term,
                successor = winner,
                "stepped aside for the successor"
            );
            self.broadcast(leader, term, self.log.last_log_id(), true);
        } else {
            info!(
                leader,
                term,
                successor = winner,
                "could not step aside in time; the timers decide"
            );
        }
    }

    /// Campaigns as the successor: once into the others' term (refused), then one above it.
    async fn campaign(&self, leader: u64, term: u64, reporters: usize) {
        let started = Instant::now();
        if !self.still_following(leader, term) {
            debug!(
                leader,
                term, "no longer following the gone leader; not campaigning"
            );
            return;
        }
        if self.vote_hold.holding() {
            info!(
                leader,
                term,
                "this member has not caught up since it started without data; not campaigning"
            );
            return;
        }
        let me = self.my_id;
        for step in 1..=2u64 {
            if let Err(e) = self.raft.trigger().elect().await {
                warn!(error = %e, "fast failover campaign failed");
                return;
            }
            let target = term + step;
            // Either this member campaigns at the target term, or another member already won a
            // later term (within one term, openraft grants the candidate with the higher id, so
            // a member that stepped aside may win: its log is as complete, or it could not win).
            let reached = self
                .wait_state(|m| {
                    (m.vote.leader_id().term >= target
                        && m.vote.leader_id().voted_for() == Some(me))
                        || (m.vote.is_committed() && m.vote.leader_id().term > term)
                })
                .await;
            if !reached {
                info!(
                    leader,
                    term, step, "a fast failover campaign did not start in time; the timers decide"
                );
                return;
            }
            let (committed, by) = {
                let m = self.raft.server_metrics();
                let m = m.borrow();
                (m.vote.is_committed(), m.vote.leader_id().voted_for())
            };
            if committed && by != Some(me) {
                info!(previous = leader, new_leader = ?by, "another member was elected first");
                return;
            }
            // Done early if the first campaign already won (nobody else had moved yet).
            if self.raft.server_metrics().borrow().state == ServerState::Leader {
                break;
            }
        }
        let won = self
            .wait_state(|m| m.state == ServerState::Leader && m.current_leader == Some(me))
            .await;
        if won {
            debug!(
                previous = leader,
                reporters,
                campaign_ms = started.elapsed().as_secs_f64() * 1000.0,
                "fast failover campaign won"
            );
        } else {
            info!(
                leader,
                term, "the fast failover campaign was not won in time; the timers decide"
            );
        }
    }

    /// Hands the leadership over to voter `to` (run on the leader). New batches are held
    /// back until `to` has the whole log; then this member and as few other voters as the
    /// target needs step aside, and `to` campaigns as a fast-failover successor does. Returns the leader and
    /// term after the transfer.
    ///
    /// # Errors
    /// `UNAVAILABLE` if this member does not lead, `to` does not catch up or is not elected
    /// in time (the cluster then elects as usual); `BAD_ARGUMENTS` if `to` is not a voter.
    pub async fn transfer(
        self: &Arc<Self>,
        to: u64,
        proposer: &super::proposer::Proposer,
    ) -> Result<(u64, u64), BatonError> {
        let me = self.my_id;
        let m = self.raft.server_metrics().borrow().clone();
        if m.state != ServerState::Leader || m.current_leader != Some(me) {
            return Err(BatonError::Unavailable(format!(
                "member {me} does not lead; ask the leader"
            )));
        }
        let term = m.vote.leader_id().term;
        if to == me {
            return Ok((me, term));
        }
        let membership = m.membership_config.membership().clone();
        let voters: Vec<u64> = membership.voter_ids().collect();
        if !voters.contains(&to) {
            return Err(BatonError::BadArguments(format!(
                "member {to} is not a voter of the cluster"
            )));
        }
        // This member's vote grants the target's campaign, and openraft refuses any vote
        // while the leader's own vote is younger than a lease: a leader elected moments ago
        // first waits that out (writes go on meanwhile), or the campaign would fail and the
        // election after it would most likely re-elect this member, just as young.
        let lease = Duration::from_millis(self.raft.config().election_timeout_max) + LEASE_MARGIN;
        let since = match *lock(&self.leading) {
            Some((t, at)) if t == term => at,
            _ => Instant::now(),
        };
        if let Some(rest) = lease.checked_sub(since.elapsed()) {
            debug!(
                to,
                wait_ms = rest.as_millis() as u64,
                "waiting out this leader's own lease"
            );
            tokio::time::sleep(rest).await;
        }
        info!(to, term, "handing the leadership over");
        let _pause = proposer.pause();
        let mut rx = self.raft.metrics();
        let caught_up = tokio::time::timeout(
            TRANSFER_CATCH_UP,
            rx.wait_for(|m| {
                let last = m.last_log_index.unwrap_or(0);
                let applied = m.last_applied.map_or(0, |l| l.index);
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(&to).copied().flatten())
                    .is_some_and(|l| l.index >= last && applied >= last)
            }),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        drop(rx);
        if !caught_up {
            return Err(BatonError::Unavailable(format!(
                "member {to} did not catch up with the log within {TRANSFER_CATCH_UP:?}"
            )));
        }
        // Who may grant votes decides who can win. A voter still following this leader
        // refuses every vote until its lease runs out, so only the members not bound by a
        // lease can elect anybody: this one (openraft does not refresh a leader's own vote
        // while it leads, so once it has led for a lease it grants a vote of a higher term;
        // it ignores an election trigger, so it cannot step aside itself), and as many
        // others as the target needs besides (a majority minus the two of them), freed by
        // stepping aside. Those are one short of a majority, so none of them can win; the
        // target's campaign, one term above theirs, wins with all of them. (This member's
        // own lease was waited out above; should the campaign fail all the same, the
        // handover is asked again, see `api::cluster`.)
        let majority = voters.len() / 2 + 1;
        let freed: Vec<u64> = voters
            .iter()
            .copied()
            .filter(|id| *id != me && *id != to)
            .take(majority.saturating_sub(2))
            .collect();
        let steps = freed
            .iter()
            .map(|&id| self.send_step(&membership, id, term, to));
        futures::future::join_all(steps).await;
        let elected = self.send_step(&membership, to, term, to).await;
        let mut rx = self.raft.server_metrics();
        let settled = tokio::time::timeout(
            TRANSFER_SETTLE,
            rx.wait_for(|m| m.current_leader.is_some() && m.vote.leader_id().term > term),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        let (leader, new_term) = {
            let m = self.raft.server_metrics();
            let m = m.borrow();
            (m.current_leader, m.vote.leader_id().term)
        };
        match (settled, leader) {
            (true, Some(l)) if l == to => {
                info!(to, term = new_term, "leadership handed over");
                Ok((l, new_term))
            }
            (_, l) => Err(BatonError::Unavailable(format!(
                "the handover to member {to} did not complete (its campaign {}); \
                 the leader is now {}",
                if elected { "won" } else { "did not win" },
                l.map_or("not known yet".to_string(), |l| l.to_string()),
            ))),
        }
    }

    /// Asks member `id` to take its transfer step; true if it did.
    async fn send_step(
        &self,
        membership: &openraft::Membership<u64, super::MemberNode>,
        id: u64,
        term: u64,
        target: u64,
    ) -> bool {
        let Some(node) = membership.get_node(&id) else {
            return false;
        };
        let Ok(mut client) = self.peers.client(id, &node.peer_addr) else {
            return false;
        };
        let mut r = tonic::Request::new(pb::TransferStepRequest {
            leader: self.my_id,
            term,
            target,
        });
        r.set_timeout(STEP_WAIT * 3);
        match client.transfer_step(r).await {
            Ok(resp) => resp.into_inner().done,
            Err(e) => {
                debug!(to = id, error = %e.message(), "a transfer step was not taken");
                false
            }
        }
    }

    /// Takes this member's step of a transfer from `req.leader`: the target campaigns, the
    /// others step aside. Only while following that leader in that term.
    pub async fn on_transfer_step(&self, req: pb::TransferStepRequest) -> bool {
        if !self.still_following(req.leader, req.term) {
            debug!(
                leader = req.leader,
                term = req.term,
                "not following the transferring leader in its term; no step taken"
            );
            return false;
        }
        if req.target == self.my_id {
            self.campaign(req.leader, req.term, 0).await;
            let m = self.raft.server_metrics();
            let m = m.borrow();
            m.state == ServerState::Leader && m.current_leader == Some(self.my_id)
        } else {
            self.leave_term(req.term).await
        }
    }
}
