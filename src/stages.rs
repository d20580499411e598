//! Where a write's time goes: histograms of the write path's stages, one set per member.
//!
//! Each stage is recorded where it happens (the API handler, the proposer, the log, the state
//! machine, the peer service), cheaply enough to stay on in production (one uncontended lock
//! and a histogram increment). `baton cluster stages` and `baton bench --breakdown` read them
//! through `Cluster.Stages`.
//!
//! On the leader, the stages of one write follow each other as:
//! `proposer.queue` → `raft.submit_to_append` → `log.append_flush` →
//! `raft.flush_to_apply` (replication to a quorum, commit) → `sm.apply` → `raft.apply_to_reply`.
//! A write that arrives on a follower adds `proposer.forward` (the round trip to the leader,
//! which spans the leader's stages above) and `proposer.apply_wait` (until the follower applied
//! it too); the follower's own share of replication is `peer.append_entries`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram as PromHistogram};
use tracing::warn;

/// A stage of the write path, or a size measured on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Stage {
    /// A client write, from the handler's start to its reply (on the member the client uses).
    ApiWrite,
    /// A request waiting in the proposer's queue for its batch to start.
    ProposerQueue,
    /// Requests per batch (a count).
    BatchRequests,
    /// Leader: from submitting a batch to openraft until the log store is asked to append it.
    SubmitToAppend,
    /// Leader: `client_write`, from submission to its answer.
    RaftWrite,
    /// Any member: appending entries to the log, until they are durable.
    AppendFlush,
    /// Entries per append (a count).
    AppendEntries,
    /// The log writer's `fdatasync` alone.
    Fsync,
    /// Writes in one group of the log writer, sharing one `fdatasync` (a count).
    GroupWrites,
    /// From an entry being durable here to its apply starting: on the leader, replication to
    /// a quorum and commit; on a follower, the commit notice.
    FlushToApply,
    /// Applying a batch of entries to the state machine.
    Apply,
    /// Entries per apply (a count).
    ApplyEntries,
    /// Leader: from the end of the apply to the proposer getting the answer.
    ApplyToReply,
    /// Follower: the forward of a batch to the leader, until its answer.
    Forward,
    /// Follower: after the leader's answer, waiting to apply the write here too.
    ApplyWait,
    /// Follower: an AppendEntries call from the leader, received to answered.
    PeerAppendEntries,
    /// Leader: a Forward call from a follower, received to answered.
    PeerForward,
    /// Building a snapshot of the state machine (not on the write path; listed last).
    SnapshotBuild,
    /// Installing a snapshot received from the leader (not on the write path; listed last).
    SnapshotInstall,
}

const ALL: [Stage; 19] = [
    Stage::ApiWrite,
    Stage::ProposerQueue,
    Stage::BatchRequests,
    Stage::SubmitToAppend,
    Stage::RaftWrite,
    Stage::AppendFlush,
    Stage::AppendEntries,
    Stage::Fsync,
    Stage::GroupWrites,
    Stage::FlushToApply,
    Stage::Apply,
    Stage::ApplyEntries,
    Stage::ApplyToReply,
    Stage::Forward,
    Stage::ApplyWait,
    Stage::PeerAppendEntries,
    Stage::PeerForward,
    Stage::SnapshotBuild,
    Stage::SnapshotInstall,
];

impl Stage {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Stage::ApiWrite => "api.write",
            Stage::ProposerQueue => "proposer.queue",
            Stage::BatchRequests => "proposer.batch_requests",
            Stage::SubmitToAppend => "raft.submit_to_append",
            Stage::RaftWrite => "raft.write",
            Stage::AppendFlush => "log.append_flush",
            Stage::AppendEntries => "log.append_entries",
            Stage::Fsync => "log.fsync",
            Stage::GroupWrites => "log.group_writes",
            Stage::FlushToApply => "raft.flush_to_apply",
            Stage::Apply => "sm.apply",
            Stage::ApplyEntries => "sm.apply_entries",
            Stage::ApplyToReply => "raft.apply_to_reply",
            Stage::Forward => "proposer.forward",
            Stage::ApplyWait => "proposer.apply_wait",
            Stage::PeerAppendEntries => "peer.append_entries",
            Stage::PeerForward => "peer.forward",
            Stage::SnapshotBuild => "snapshot.build",
            Stage::SnapshotInstall => "snapshot.install",
        }
    }

    /// Its Prometheus histogram: name (without the `baton_` prefix) and help.
    pub fn metric(self) -> (&'static str, &'static str) {
        match self {
            Stage::ApiWrite => (
                "write_duration_seconds",
                "Client writes on this member, from the handler's start to its reply.",
            ),
            Stage::ProposerQueue => (
                "proposer_queue_duration_seconds",
                "Time a write waits in the proposer's queue for its batch.",
            ),
            Stage::BatchRequests => ("proposer_batch_requests", "Requests per proposed batch."),
            Stage::SubmitToAppend => (
                "raft_submit_to_append_duration_seconds",
                "Leader: from handing a batch to the consensus core to its log append.",
            ),
            Stage::RaftWrite => (
                "proposal_duration_seconds",
                "Leader: a batch from its proposal to its commit and apply.",
            ),
            Stage::AppendFlush => (
                "disk_log_append_duration_seconds",
                "Appending entries to the log until they are durable.",
            ),
            Stage::AppendEntries => ("disk_log_append_entries", "Entries per log append."),
            Stage::Fsync => (
                "disk_wal_fsync_duration_seconds",
                "The log's fdatasync calls.",
            ),
            Stage::GroupWrites => ("disk_wal_group_writes", "Log writes sharing one fdatasync."),
            Stage::FlushToApply => (
                "raft_commit_duration_seconds",
                "From an entry being durable here to its apply: replication and commit.",
            ),
            Stage::Apply => (
                "apply_duration_seconds",
                "Applying a batch of entries to the state machine.",
            ),
            Stage::ApplyEntries => ("apply_entries", "Entries per apply."),
            Stage::ApplyToReply => (
                "raft_apply_to_reply_duration_seconds",
                "Leader: from the end of an apply to the proposer's answer.",
            ),
            Stage::Forward => (
                "forward_duration_seconds",
                "Follower: writes forwarded to the leader, until its answer.",
            ),
            Stage::ApplyWait => (
                "forward_apply_wait_duration_seconds",
                "Follower: after the leader's answer, waiting to apply the write here.",
            ),
            Stage::PeerAppendEntries => (
                "peer_append_entries_duration_seconds",
                "Follower: an append call from the leader, received to answered.",
            ),
            Stage::PeerForward => (
                "peer_forward_duration_seconds",
                "Leader: a forwarded batch from a follower, received to answered.",
            ),
            Stage::SnapshotBuild => (
                "snapshot_build_duration_seconds",
                "Building a snapshot of the state machine.",
            ),
            Stage::SnapshotInstall => (
                "snapshot_install_duration_seconds",
                "Installing a snapshot received from the leader.",
            ),
        }
    }

    /// Whether it measures a count rather than a time.
    pub fn is_count(self) -> bool {
        matches!(
            self,
            Stage::BatchRequests | Stage::AppendEntries | Stage::GroupWrites | Stage::ApplyEntries
        )
    }
}

/// Summary of one stage. Times are in microseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct StageSummary {
    /// The stage.
    pub stage: Stage,
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

/// Entries remembered for [`Stages::flushed`]/[`Stages::applying`] matching.
const RECENT: usize = 4096;

/// Events of one member counted for its metrics (read at each scrape).
#[derive(Debug, Default)]
pub struct Counters {
    /// Client requests proposed by this member's proposer that were committed.
    pub proposals_committed: AtomicU64,
    /// Client requests proposed by this member that failed (no leader, lost leadership,
    /// refused, timed out).
    pub proposals_failed: AtomicU64,
    /// Times this member saw a new leader.
    pub leader_changes: AtomicU64,
    /// Applies slower than the slow-apply threshold.
    pub slow_applies: AtomicU64,
    /// Log syncs slower than the slow-flush threshold.
    pub slow_flushes: AtomicU64,
    /// Snapshot builds or installs slower than the slow-snapshot threshold.
    pub slow_snapshots: AtomicU64,
    /// Client requests slower than the slow-request threshold.
    pub slow_requests: AtomicU64,
}

/// When an operation counts as slow and is logged, and who logs it.
#[derive(Clone, Debug)]
pub struct SlowThresholds {
    /// This member's id (in every slow-operation line).
    pub member_id: u64,
    /// Applying one batch of entries.
    pub apply: Duration,
    /// One sync of the log.
    pub flush: Duration,
    /// Building or installing a snapshot.
    pub snapshot: Duration,
    /// A client request, received to answered.
    pub request: Duration,
}

impl Default for SlowThresholds {
    fn default() -> Self {
        SlowThresholds {
            member_id: 0,
            apply: Duration::from_millis(100),
            flush: Duration::from_secs(1),
            snapshot: Duration::from_secs(10),
            request: Duration::from_millis(300),
        }
    }
}

/// One member's stage histograms.
pub struct Stages {
    hists: Vec<Mutex<Histogram<u64>>>,
    /// The same stages as Prometheus histograms (never reset).
    prom: Vec<PromHistogram>,
    /// Counted events.
    pub counters: Counters,
    /// Thresholds of the slow-operation log (defaults until [`Stages::set_slow`]).
    slow: OnceLock<SlowThresholds>,
    /// The term this member is in, for slow-operation lines.
    term: AtomicU64,
    /// Whether the Prometheus histograms are fed (off when the member serves no metrics).
    export: std::sync::atomic::AtomicBool,
    /// When recent entries became durable here: (index, instant), oldest first.
    flushed: Mutex<VecDeque<(u64, Instant)>>,
    /// When recent entries were applied here: (index, instant), oldest first.
    applied: Mutex<VecDeque<(u64, Instant)>>,
    /// When the proposer last handed a batch to openraft.
    submitted: Mutex<Option<Instant>>,
    since: Mutex<Instant>,
}

impl std::fmt::Debug for Stages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stages").finish_non_exhaustive()
    }
}

impl Default for Stages {
    fn default() -> Self {
        Stages {
            hists: ALL
                .iter()
                .map(|_| {
                    // 1 µs .. 100 s (or counts up to 10^8), 2 significant digits: constant
                    // bounds that hdrhistogram accepts.
                    Mutex::new(
                        Histogram::new_with_bounds(1, 100_000_000, 2)
                            .expect("constant histogram bounds are valid"),
                    )
                })
                .collect(),
            prom: ALL
                .iter()
                .map(|stage| {
                    if stage.is_count() {
                        PromHistogram::new(exponential_buckets(1.0, 2.0, 12))
                    } else {
                        // 50 µs .. 13 s.
                        PromHistogram::new(exponential_buckets(0.000_05, 2.0, 19))
                    }
                })
                .collect(),
            counters: Counters::default(),
            slow: OnceLock::new(),
            term: AtomicU64::new(0),
            export: std::sync::atomic::AtomicBool::new(true),
            flushed: Mutex::new(VecDeque::with_capacity(RECENT)),
            applied: Mutex::new(VecDeque::with_capacity(RECENT)),
            submitted: Mutex::new(None),
            since: Mutex::new(Instant::now()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn remember(q: &Mutex<VecDeque<(u64, Instant)>>, index: u64, at: Instant) {
    let mut q = lock(q);
    if q.len() == RECENT {
        q.pop_front();
    }
    q.push_back((index, at));
}

fn find(q: &Mutex<VecDeque<(u64, Instant)>>, index: u64) -> Option<Instant> {
    let q = lock(q);
    q.iter().rev().find(|(i, _)| *i == index).map(|(_, t)| *t)
}

impl Stages {
    /// Records a duration, and logs it if the stage has a slow-operation threshold that it
    /// exceeds.
    pub fn time(&self, stage: Stage, d: Duration) {
        let us = (d.as_micros() as u64).max(1);
        let _ = lock(&self.hists[stage as usize]).record(us);
        if self.export.load(Relaxed) {
            self.prom[stage as usize].observe(d.as_secs_f64());
        }
        let slow = self.slow();
        let (limit, counter, what) = match stage {
            Stage::Apply => (slow.apply, &self.counters.slow_applies, "apply"),
            Stage::Fsync => (slow.flush, &self.counters.slow_flushes, "log sync"),
            Stage::SnapshotBuild => (
                slow.snapshot,
                &self.counters.slow_snapshots,
                "snapshot build",
            ),
            Stage::SnapshotInstall => (
                slow.snapshot,
                &self.counters.slow_snapshots,
                "snapshot install",
            ),
            _ => return,
        };
        if d > limit {
            counter.fetch_add(1, Relaxed);
            warn!(
                member = slow.member_id,
                term = self.term(),
                op = what,
                took_ms = d.as_millis() as u64,
                expected_ms = limit.as_millis() as u64,
                "operation took too long"
            );
        }
    }

    /// Sets the slow-operation thresholds (once; later calls are ignored).
    pub fn set_slow(&self, thresholds: SlowThresholds) {
        let _ = self.slow.set(thresholds);
    }

    /// The slow-operation thresholds.
    pub fn slow(&self) -> &SlowThresholds {
        static DEFAULT: OnceLock<SlowThresholds> = OnceLock::new();
        self.slow
            .get()
            .unwrap_or_else(|| DEFAULT.get_or_init(SlowThresholds::default))
    }

    /// Stops (or resumes) feeding the Prometheus histograms.
    pub fn set_export(&self, on: bool) {
        self.export.store(on, Relaxed);
    }

    /// Notes the term this member is in.
    pub fn set_term(&self, term: u64) {
        self.term.store(term, Relaxed);
    }

    /// The term this member was last seen in.
    pub fn term(&self) -> u64 {
        self.term.load(Relaxed)
    }

    /// Every stage's Prometheus histogram with its name and help.
    pub fn histograms(&self) -> impl Iterator<Item = (&'static str, &'static str, &PromHistogram)> {
        ALL.iter().map(|&s| {
            let (name, help) = s.metric();
            (name, help, &self.prom[s as usize])
        })
    }

    /// Records the time since `start`.
    pub fn since(&self, stage: Stage, start: Instant) {
        self.time(stage, start.elapsed());
    }

    /// Records a count.
    pub fn count(&self, stage: Stage, n: u64) {
        let _ = lock(&self.hists[stage as usize]).record(n.max(1));
        if self.export.load(Relaxed) {
            self.prom[stage as usize].observe(n as f64);
        }
    }

    /// Notes that entries up to `last` became durable here now.
    pub fn flushed(&self, last: u64) {
        remember(&self.flushed, last, Instant::now());
    }

    /// Notes that the proposer hands a batch to openraft now.
    pub fn submitting(&self) {
        *lock(&self.submitted) = Some(Instant::now());
    }

    /// Records the time from the last submission to this append (leader side only: followers
    /// submit nothing).
    pub fn appending(&self) {
        if let Some(t) = lock(&self.submitted).take() {
            self.since(Stage::SubmitToAppend, t);
        }
    }

    /// Notes that the apply of entries from `first` on starts now, recording how long after
    /// their flush that is.
    pub fn applying(&self, first: u64) {
        let now = Instant::now();
        let q = lock(&self.flushed);
        // The append that made `first` durable is the first one that ended at or after it.
        let at = q.partition_point(|(x, _)| *x < first);
        if let Some(&(_, t)) = q.get(at) {
            drop(q);
            self.time(Stage::FlushToApply, now.saturating_duration_since(t));
        }
    }

    /// Notes that entries up to `last` finished applying now.
    pub fn applied(&self, last: u64) {
        remember(&self.applied, last, Instant::now());
    }

    /// When the entry at `index` (or the batch that held it) finished applying here.
    pub fn applied_at(&self, index: u64) -> Option<Instant> {
        find(&self.applied, index)
    }

    /// Every stage's summary, in write-path order (stages without samples included).
    pub fn summary(&self) -> Vec<StageSummary> {
        ALL.iter()
            .map(|&stage| {
                let h = lock(&self.hists[stage as usize]);
                StageSummary {
                    stage,
                    count: h.len(),
                    mean: if h.is_empty() { 0.0 } else { h.mean() },
                    p50: h.value_at_quantile(0.5),
                    p99: h.value_at_quantile(0.99),
                    max: h.max(),
                }
            })
            .collect()
    }

    /// Time since the histograms were last reset (or created).
    pub fn window(&self) -> Duration {
        lock(&self.since).elapsed()
    }

    /// Empties every histogram.
    pub fn reset(&self) {
        for h in &self.hists {
            lock(h).reset();
        }
        *lock(&self.since) = Instant::now();
    }
}
