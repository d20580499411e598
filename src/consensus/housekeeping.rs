//! Leader-only duties: expire sessions whose keepalives stopped, and delete TTL nodes whose
//! time ran out. Both are decided here, on the leader, and carried out by proposing one log
//! entry, so every member applies the same deletions at the same zxid.
//!
//! Liveness is kept in memory on the leader only. Followers collect the sessions they received
//! keepalives for and pass them to the leader in one `Liveness` RPC per tick. When a member
//! becomes leader it gives every session a fresh full timeout before expiring any, so a
//! failover never mass-expires sessions.
//!
//! Every second every member also makes sure the replicated membership records its addresses
//! ([`super::membership::ensure_recorded`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::forward::{self, Call, Forwarder, Leader};
use super::membership;
use super::peers::Peers;
use super::proposer::{now_ms, Proposer};
use super::state_machine::SmShared;
use super::{MemberNode, Raft};
use crate::proto::raft as pb;
use crate::shutdown::Shutdown;
use crate::tree::{Request, SessionId};

/// Session deadlines as seen by this member while it leads.
#[derive(Default)]
pub struct Liveness {
    deadlines: Mutex<HashMap<SessionId, Instant>>,
    /// Sessions refreshed since the last report to the leader (used while following).
    pending: Mutex<HashSet<SessionId>>,
}

impl Liveness {
    /// Records a keepalive: the session lives for another `timeout`.
    pub fn touch(&self, id: SessionId, timeout: Duration) {
        let mut d = self.deadlines.lock().unwrap_or_else(|e| e.into_inner());
        d.insert(id, Instant::now() + timeout);
        drop(d);
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
    }

    fn take_pending(&self) -> Vec<SessionId> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.drain().collect()
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<SessionId, Instant>) -> R) -> R {
        let mut d = self.deadlines.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut d)
    }
}

/// What the housekeeping loop needs.
pub struct Housekeeping {
    /// Raft handle.
    pub raft: Raft,
    /// This member's id.
    pub my_id: u64,
    /// This member's advertised addresses.
    pub me: MemberNode,
    /// State machine.
    pub shared: Arc<SmShared>,
    /// Write path.
    pub proposer: Proposer,
    /// Session deadlines.
    pub liveness: Arc<Liveness>,
    /// Peer connections.
    pub peers: Arc<Peers>,
    /// TTL reaper period (request ids of idle clients are checked at the same pace).
    pub ttl_check: Duration,
    /// How long an idle client's request ids are remembered.
    pub client_ttl: Duration,
    /// Most clients whose request ids are remembered.
    pub max_clients: usize,
}

/// Runs the housekeeping loop until shutdown.
pub async fn run(hk: Housekeeping, mut shutdown: Shutdown) {
    let Housekeeping {
        raft,
        my_id,
        me,
        shared,
        proposer,
        liveness,
        peers,
        ttl_check,
        client_ttl,
        max_clients,
    } = hk;
    let to_leader = Forwarder::new(raft.clone(), peers);
    let mut last_member_check = Instant::now() - Duration::from_secs(10);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_leader = false;
    let mut last_ttl_check = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
        let leading = forward::is_leader(&raft, my_id);
        if now_member_check_due(&mut last_member_check) {
            membership::ensure_recorded(&to_leader, &me).await;
        }
        if !leading {
            was_leader = false;
            report_liveness(&to_leader, &liveness).await;
            continue;
        }
        liveness.take_pending();
        let now = Instant::now();
        let mut expired = Vec::new();
        {
            let tree = shared.tree.read().unwrap_or_else(|e| e.into_inner());
            liveness.with(|d| {
                if !was_leader {
                    info!(
                        sessions = tree.session_count(),
                        "leading: every session gets a fresh timeout"
                    );
                    d.clear();
                }
                for entry in tree.sessions() {
                    let s = &entry.session;
                    let timeout = Duration::from_millis(s.timeout_ms.max(0) as u64);
                    match d.get(&s.id) {
                        None => {
                            d.insert(s.id, now + timeout);
                        }
                        Some(deadline) if *deadline <= now => expired.push(s.id),
                        Some(_) => {}
                    }
                }
                if d.len() > tree.session_count() {
                    d.retain(|id, _| tree.session(*id).is_some());
                }
            });
        }
        was_leader = true;
        if !expired.is_empty() {
            info!(sessions = ?expired, "expiring sessions");
            // Decided from this leader's view of liveness: proposed only while it still leads,
            // never handed to another leader (a deposed leader whose entry is truncated would
            // otherwise have a new leader expire sessions kept alive through it).
            if let Err(e) = proposer
                .propose_here(Request::ExpireSessions(expired))
                .await
            {
                warn!(error = %e, "could not expire sessions");
            }
        }
        if now.duration_since(last_ttl_check) >= ttl_check {
            last_ttl_check = now;
            let paths = {
                let tree = shared.tree.read().unwrap_or_else(|e| e.into_inner());
                tree.expired_ttl_nodes(now_ms(), 1000)
            };
            if !paths.is_empty() {
                debug!(count = paths.len(), "deleting expired TTL nodes");
                if let Err(e) = proposer.propose_here(Request::ExpireTtl(paths)).await {
                    warn!(error = %e, "could not delete expired TTL nodes");
                }
            }
            let expirable = {
                let tree = shared.tree.read().unwrap_or_else(|e| e.into_inner());
                tree.clients().expirable(
                    now_ms(),
                    i64::try_from(client_ttl.as_millis()).unwrap_or(i64::MAX),
                    max_clients,
                    10_000,
                )
            };
            if let Some((client_ids, before_ms)) = expirable {
                debug!(
                    count = client_ids.len(),
                    "forgetting the request ids of idle clients"
                );
                let req = Request::ExpireClients {
                    client_ids,
                    before_ms,
                };
                if let Err(e) = proposer.propose_here(req).await {
                    warn!(error = %e, "could not forget the request ids of idle clients");
                }
            }
        }
    }
}

fn now_member_check_due(last: &mut Instant) -> bool {
    if last.elapsed() >= Duration::from_secs(1) {
        *last = Instant::now();
        true
    } else {
        false
    }
}

/// The sessions refreshed on a follower, passed to the leader once per tick.
const REPORT_LIVENESS: Call = Call {
    what: "passing keepalives to the leader",
    timeout: Duration::from_millis(500),
    may_apply: false,
    until_deposed: false,
};

/// Passes the sessions refreshed on this follower to the leader.
async fn report_liveness(to_leader: &Forwarder, liveness: &Liveness) {
    let ids = liveness.take_pending();
    if ids.is_empty() {
        return;
    }
    // No leader now: a new leader gives every session a full timeout anyway.
    let Ok(Leader::There(to)) = to_leader.leader() else {
        return;
    };
    let req = pb::LivenessRequest { session_ids: ids };
    let sent = to_leader
        .call(&to, &REPORT_LIVENESS, req, |mut c, r| async move {
            c.liveness(r).await
        })
        .await;
    if let Err(e) = sent {
        debug!(leader = to.id, error = %e, "could not pass keepalives to the leader");
    }
}
