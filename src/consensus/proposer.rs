//! The proposer: packs concurrent client requests into one log entry (group commit), and on
//! a follower passes them to the leader.
//!
//! openraft 0.9 appends and flushes each `client_write` on its own, so one entry per client
//! request would cost one fsync each. Instead, requests queue here; a loop takes everything
//! queued (up to `max_batch` requests or [`MAX_BATCH_BYTES`]), stamps the batch with the
//! proposer's clock and proposes it as one entry. While a batch is in flight the next one
//! fills up, so batches grow with load and a lone request waits for no timer.
//!
//! On a follower the same batch goes to the leader in one `Forward` RPC ([`super::forward`];
//! one hop: the leader never forwards again). The follower then waits until it has applied
//! the batch's entry, so a client reading from the member it wrote through sees its own write.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use super::forward::{self, Call, Forwarder, Leader, Remote, LEADER_WAIT};
use super::peers::Peers;
use super::space::{self, SpaceAlarm};
use super::Raft;
use crate::error::BatonError;
use crate::proto::raft as pb;
use crate::proto::{peer, stored};
use crate::stages::{Stage as Timing, Stages};
use crate::tree::{Command, Request, RequestResult, Zxid};

/// Upper bound on the payload of one proposed entry.
pub const MAX_BATCH_BYTES: usize = 2 * 1024 * 1024;
/// Proposals in flight at once: one appending while the previous one is being applied.
const MAX_IN_FLIGHT: usize = 2;
/// A batch of writes forwarded to the leader. A leader that stops answering (paused, cut
/// off) must not hold this member's writes for the whole timeout: once another leader is
/// known, the forward is given up as "outcome unknown" (the old leader may have proposed it).
/// A grace for a late reply was measured: it only delayed the answer after a silent failure
/// by its length (a paused leader sends nothing), and a refused connection fails the call at
/// once.
const FORWARD: Call = Call {
    what: "forwarding to the leader",
    timeout: Duration::from_secs(15),
    may_apply: true,
    until_deposed: true,
};
/// How long a write submitted here may still be answered by consensus after this member
/// stopped leading the term it was submitted in (an entry committed just before the change is
/// then still reported as done); after that its outcome is reported as unknown. The write
/// gives up its in-flight place at once.
const DEPOSED_GRACE: Duration = Duration::from_millis(500);
/// A batch still in progress after this long is reported (and again each time it passes).
const SLOW_BATCH: Duration = Duration::from_secs(10);

/// Where a batch is, for the slow-batch warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Stage {
    FindingLeader = 0,
    Submitted = 1,
    Forwarding = 2,
    AwaitingNewLeader = 3,
    AwaitingApply = 4,
}

/// One batch's in-flight slot: its stage (for the slow-batch warning) and its permit.
struct Slot {
    stage: AtomicU8,
    permit: std::sync::Mutex<Option<OwnedSemaphorePermit>>,
}

impl Slot {
    fn set(&self, stage: Stage) {
        self.stage.store(stage as u8, Ordering::Relaxed);
    }

    /// Frees the in-flight place before the batch is done (it no longer occupies consensus).
    fn release(&self) {
        self.permit.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

impl Stage {
    fn name(v: u8) -> &'static str {
        match v {
            0 => "finding the leader",
            1 => "submitted to consensus here, awaiting commit and apply",
            2 => "forwarded to the leader, awaiting its answer",
            3 => "awaiting a new leader after a failed forward",
            _ => "awaiting the local apply of a forwarded write",
        }
    }
}

type Outcome = Result<(RequestResult, Zxid), BatonError>;
type Reply = oneshot::Sender<Outcome>;

struct Item {
    req: Request,
    reply: Reply,
    queued: Instant,
    /// Client requests may be forwarded; requests forwarded to us may not.
    forwardable: bool,
}

/// Handle to the proposer loop.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<Item>,
    stages: Arc<Stages>,
    paused: Arc<watch::Sender<bool>>,
}

/// Holds the proposer's batches back while it lives (see [`Proposer::pause`]).
pub struct PauseGuard {
    paused: Arc<watch::Sender<bool>>,
}

impl Drop for PauseGuard {
    fn drop(&mut self) {
        self.paused.send_replace(false);
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct Loop {
    raft: Raft,
    my_id: u64,
    to_leader: Forwarder,
    applied: watch::Receiver<u64>,
    stages: Arc<Stages>,
    space: Arc<SpaceAlarm>,
}

impl Proposer {
    /// Starts the loop on the current runtime.
    pub fn start(
        raft: Raft,
        my_id: u64,
        peers: Arc<Peers>,
        applied: watch::Receiver<u64>,
        stages: Arc<Stages>,
        space: Arc<SpaceAlarm>,
        max_batch: usize,
    ) -> Proposer {
        let (tx, rx) = mpsc::channel(max_batch.max(1) * 4);
        let lp = Arc::new(Loop {
            to_leader: Forwarder::new(raft.clone(), peers),
            raft,
            my_id,
            applied,
            stages,
            space,
        });
        let stages = lp.stages.clone();
        let paused = Arc::new(watch::channel(false).0);
        tokio::spawn(run(lp, rx, max_batch.max(1), paused.subscribe()));
        Proposer { tx, stages, paused }
    }

    /// Holds new batches back until the guard is dropped (batches already proposed go on):
    /// requests wait in the queue, then are proposed here or forwarded to whoever leads.
    /// Used while leadership is handed over, so that the log stops growing.
    pub fn pause(&self) -> PauseGuard {
        self.paused.send_replace(true);
        PauseGuard {
            paused: self.paused.clone(),
        }
    }

    async fn submit(&self, req: Request, forwardable: bool) -> Outcome {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Item {
                req,
                reply,
                queued: Instant::now(),
                forwardable,
            })
            .await
            .map_err(|_| BatonError::Unavailable("shutting down".into()))?;
        let outcome = rx
            .await
            .map_err(|_| BatonError::OutcomeUnknown("proposal dropped".into()))?;
        let counter = match &outcome {
            Ok(_) => &self.stages.counters.proposals_committed,
            Err(_) => &self.stages.counters.proposals_failed,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        outcome
    }

    /// Proposes one request (through the leader if this member follows) and waits for its
    /// result and the zxid of its entry.
    ///
    /// # Errors
    /// `UNAVAILABLE` if it was not proposed (no leader, shutting down): safe to retry;
    /// `OUTCOME_UNKNOWN` if it was sent but its fate is not known.
    pub async fn propose(&self, req: Request) -> Outcome {
        self.submit(req, true).await
    }

    /// Proposes one request only if this member leads (for requests forwarded to it).
    ///
    /// # Errors
    /// As [`Proposer::propose`].
    pub async fn propose_here(&self, req: Request) -> Outcome {
        self.submit(req, false).await
    }
}

async fn run(
    lp: Arc<Loop>,
    mut rx: mpsc::Receiver<Item>,
    max_batch: usize,
    mut paused: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        let mut bytes = first.req.size();
        let mut batch = vec![first];
        while batch.len() < max_batch && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(item) => {
                    bytes += item.req.size();
                    batch.push(item);
                }
                Err(_) => break,
            }
        }
        for it in &batch {
            lp.stages.since(Timing::ProposerQueue, it.queued);
        }
        lp.stages.count(Timing::BatchRequests, batch.len() as u64);
        let lp = lp.clone();
        tokio::spawn(async move {
            let n = batch.len();
            let slot = Slot {
                stage: AtomicU8::new(Stage::FindingLeader as u8),
                permit: std::sync::Mutex::new(Some(permit)),
            };
            let work = lp.process(batch, &slot);
            tokio::pin!(work);
            let started = Instant::now();
            for _ in 0..u64::MAX {
                tokio::select! {
                    () = &mut work => break,
                    () = tokio::time::sleep(SLOW_BATCH) => warn!(
                        requests = n,
                        secs = started.elapsed().as_secs(),
                        stage = Stage::name(slot.stage.load(Ordering::Relaxed)),
                        "a write batch is taking long"
                    ),
                }
            }
            slot.release();
        });
    }
}

fn answer(items: Vec<Item>, err: &BatonError) {
    for it in items {
        let _ = it.reply.send(Err(err.clone()));
    }
}

impl Loop {
    async fn process(&self, batch: Vec<Item>, slot: &Slot) {
        match self.to_leader.find_leader(LEADER_WAIT).await {
            Ok(Leader::There(to)) => self.forward_or_refuse(batch, to, slot).await,
            // Submitted locally only while this member really leads (a member between roles
            // is refused): a write refused after submission cannot be told apart from one
            // lost with leadership (see below).
            Ok(Leader::Here) => self.write_locally(batch, slot).await,
            Err(e) => answer(batch, &e),
        }
    }

    async fn write_locally(&self, batch: Vec<Item>, slot: &Slot) {
        // While the NOSPACE alarm is raised, only what frees space (or adds none) is proposed.
        let batch = match self.space.refusal() {
            None => batch,
            Some(e) => {
                let (go, refused): (Vec<Item>, Vec<Item>) = batch
                    .into_iter()
                    .partition(|it| space::allowed_during_alarm(&it.req));
                answer(refused, &e);
                if go.is_empty() {
                    return;
                }
                go
            }
        };
        self.space
            .admitted(batch.iter().map(|it| it.req.size() as u64).sum());
        slot.set(Stage::Submitted);
        let (requests, items): (Vec<Request>, Vec<Item>) = batch
            .into_iter()
            .map(|mut it| {
                let req = std::mem::replace(&mut it.req, Request::Noop);
                (req, it)
            })
            .unzip();
        let cmd = Command {
            time_ms: now_ms(),
            requests,
        };
        let Some(term) = forward::leading_term(&self.raft, self.my_id) else {
            return answer(
                items,
                &BatonError::Unavailable("this member stopped leading; retry".into()),
            );
        };
        // openraft 0.9 answers a pending write when its entry is applied or truncated, but not
        // when a deposed leader installs a snapshot that replaces its log: such a write would
        // wait forever (and hold one of the proposer's in-flight places). So once this member
        // no longer leads the term the write was submitted in, the write frees its place and
        // gets a short grace (an entry committed just before is still answered when applied);
        // after that its outcome is reported as unknown.
        let submitted = Instant::now();
        self.stages.submitting();
        let write = self.raft.client_write(cmd.into());
        tokio::pin!(write);
        let written = tokio::select! {
            r = &mut write => r,
            () = forward::until_not_leading(&self.raft, self.my_id, term) => {
                slot.release();
                match tokio::time::timeout(DEPOSED_GRACE, &mut write).await {
                    Ok(r) => r,
                    Err(_) => {
                        return answer(
                            items,
                            &BatonError::OutcomeUnknown(format!(
                                "this member stopped leading term {term} while the write was \
                                 pending; it may or may not be applied"
                            )),
                        )
                    }
                }
            }
        };
        match written {
            // The response is for the entry applied at the index this write was appended at.
            // It is this write's only if that entry was appended by this member in the term
            // the write was submitted in; anything else means the write's entry was replaced.
            Ok(resp)
                if resp.log_id.leader_id.node_id != self.my_id
                    || resp.log_id.leader_id.term != term =>
            {
                warn!(
                    term,
                    log_id = %resp.log_id,
                    "a write was answered with another leader's entry; reporting it as unknown"
                );
                answer(
                    items,
                    &BatonError::OutcomeUnknown(format!(
                        "the write's entry was replaced by {} after leadership changed",
                        resp.log_id
                    )),
                )
            }
            Ok(resp) => {
                let zxid = resp.log_id.index;
                self.stages.since(Timing::RaftWrite, submitted);
                if let Some(t) = self.stages.applied_at(zxid) {
                    self.stages.since(Timing::ApplyToReply, t);
                }
                let mut results = resp.data.into_iter();
                for it in items {
                    let r = results.next().ok_or_else(|| {
                        BatonError::Internal("state machine returned too few results".into())
                    });
                    // A copy of a write already applied answers as the original did.
                    let _ = it.reply.send(r.and_then(|r| r.settle(zxid)));
                }
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                // openraft answers the same whether this member refused the entry at once or
                // appended (and possibly replicated) it and then lost leadership: a member
                // holding a copy may still commit it. Handing the batch to the new leader could
                // apply it twice, so the outcome is reported as unknown.
                answer(
                    items,
                    &BatonError::OutcomeUnknown(format!(
                        "leadership moved (to {:?}) while the write was pending; it may or may not be applied",
                        f.leader_id
                    )),
                )
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                answer(items, &BatonError::Internal(e.to_string()))
            }
            Err(RaftError::Fatal(f)) => {
                // Raft stopped (shutdown) while the entry may already be appended and
                // replicated: a member holding a copy can still commit it as the next leader,
                // so this is not "not applied" (UNAVAILABLE would let the write be sent again
                // and take effect twice).
                warn!(error = %f, "raft stopped");
                answer(
                    items,
                    &BatonError::OutcomeUnknown(format!("consensus stopped: {f}")),
                )
            }
        }
    }

    async fn forward_or_refuse(&self, batch: Vec<Item>, to: Remote, slot: &Slot) {
        let (forward, refuse): (Vec<Item>, Vec<Item>) =
            batch.into_iter().partition(|it| it.forwardable);
        answer(
            refuse,
            &BatonError::Unavailable(format!(
                "member {} is not the leader (member {} is)",
                self.my_id, to.id
            )),
        );
        if forward.is_empty() {
            return;
        }
        slot.set(Stage::Forwarding);
        let started = Instant::now();
        let mut outcomes = self.forward(&forward, &to).await;
        self.stages.since(Timing::Forward, started);
        let undelivered = outcomes
            .iter()
            .all(|o| matches!(o, Err(BatonError::Unavailable(_))));
        if undelivered {
            // The leader is gone or unreachable and nothing was applied: once another leader
            // is known, hand the batch to it (or write it here if this member now leads).
            slot.set(Stage::AwaitingNewLeader);
            match self.to_leader.next_leader(to.id, LEADER_WAIT).await {
                Ok(Leader::Here) => return Box::pin(self.write_locally(forward, slot)).await,
                Ok(Leader::There(next)) => {
                    slot.set(Stage::Forwarding);
                    outcomes = self.forward(&forward, &next).await;
                }
                // Still undelivered: the first leader's answer stands.
                Err(_) => {}
            }
        }
        let max_zxid = outcomes
            .iter()
            .filter_map(|o| o.as_ref().ok().map(|(_, z)| *z))
            .max()
            .unwrap_or(0);
        if max_zxid > 0 {
            // Read-your-writes on this member: wait (bounded) until it applied the entry.
            slot.set(Stage::AwaitingApply);
            let started = Instant::now();
            let mut applied = self.applied.clone();
            let _ =
                tokio::time::timeout(Duration::from_secs(2), applied.wait_for(|a| *a >= max_zxid))
                    .await;
            self.stages.since(Timing::ApplyWait, started);
        }
        for (it, o) in forward.into_iter().zip(outcomes) {
            let _ = it.reply.send(o);
        }
    }

    async fn forward(&self, items: &[Item], to: &Remote) -> Vec<Outcome> {
        let n = items.len();
        let all = |e: BatonError| (0..n).map(|_| Err(e.clone())).collect::<Vec<Outcome>>();
        let req = pb::ForwardRequest {
            requests: items
                .iter()
                .map(|it| stored::request_to_pb(&it.req))
                .collect(),
            hops: 1,
        };
        debug!(
            leader = to.id,
            requests = n,
            "forwarding writes to the leader"
        );
        let reply = self
            .to_leader
            .call(
                to,
                &FORWARD,
                req,
                |mut c, r| async move { c.forward(r).await },
            )
            .await;
        let resp = match reply {
            Ok(r) => r,
            Err(e) => return all(e),
        };
        if let Some(e) = resp.error {
            return all(stored::error_from_pb(e));
        }
        if resp.results.len() != n {
            return all(BatonError::OutcomeUnknown(format!(
                "leader answered {} results for {n} requests",
                resp.results.len()
            )));
        }
        resp.results
            .into_iter()
            .map(|r| match peer::forwarded_from_pb(r) {
                Ok(o) => o,
                Err(e) => Err(BatonError::OutcomeUnknown(format!(
                    "undecodable reply from the leader: {e}"
                ))),
            })
            .collect()
    }
}
