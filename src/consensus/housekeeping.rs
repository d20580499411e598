//! Leader-only duties: expire sessions whose keepalives stopped, and delete TTL nodes whose
//! time ran out. Both are decided here, on the leader, and carried out by proposing one log
//! entry, so every member applies the same deletions at the same zxid.
//!
//! Liveness is kept in memory on the leader only. When a member becomes leader it gives every
//! session a fresh full timeout before expiring any, so a failover never mass-expires sessions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::ServerState;
use tracing::{debug, info, warn};

use super::proposer::{now_ms, Proposer};
use super::state_machine::SmShared;
use super::Raft;
use crate::shutdown::Shutdown;
use crate::tree::{Request, SessionId};

/// Session deadlines as seen by this member while it leads.
#[derive(Default)]
pub struct Liveness {
    deadlines: Mutex<HashMap<SessionId, Instant>>,
}

impl Liveness {
    /// Records a keepalive: the session lives for another `timeout`.
    pub fn touch(&self, id: SessionId, timeout: Duration) {
        let mut d = self.deadlines.lock().unwrap_or_else(|e| e.into_inner());
        d.insert(id, Instant::now() + timeout);
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<SessionId, Instant>) -> R) -> R {
        let mut d = self.deadlines.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut d)
    }
}

/// Runs the housekeeping loop until shutdown.
pub async fn run(
    raft: Raft,
    my_id: u64,
    shared: Arc<SmShared>,
    proposer: Proposer,
    liveness: Arc<Liveness>,
    ttl_check: Duration,
    mut shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_leader = false;
    let mut last_ttl_check = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
        let leading = {
            let m = raft.metrics();
            let m = m.borrow();
            m.state == ServerState::Leader && m.current_leader == Some(my_id)
        };
        if !leading {
            was_leader = false;
            continue;
        }
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
            if let Err(e) = proposer.propose(Request::ExpireSessions(expired)).await {
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
                if let Err(e) = proposer.propose(Request::ExpireTtl(paths)).await {
                    warn!(error = %e, "could not delete expired TTL nodes");
                }
            }
        }
    }
}
