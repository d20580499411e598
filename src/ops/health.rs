//! Health checks, as `/livez` ("restart me if this fails") and `/readyz` ("send me traffic")
//! report them, and as the gRPC health service mirrors them.
//!
//! Live: the consensus core runs, the state machine can still be written, and a local read
//! completes. Ready: live, and a leader is known, a linearizable read completes in time, the
//! apply is not far behind the log, and the member votes (a learner is not ready). A NOSPACE
//! alarm makes neither fail (reads, deletes and keep-alives still work); `/health` reports
//! it, as etcd's does.

use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;

use super::metrics::{CheckLabels, Metrics};
use crate::consensus::space;
use crate::member::Member;
use crate::store::Store;
use crate::tree::State;

/// How long a read check may take.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Entries the apply may lag behind the log before the member is not ready.
pub const APPLY_BACKLOG: u64 = 1000;

/// Which endpoint a check belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// `/livez`.
    Live,
    /// `/readyz`.
    Ready,
}

impl Probe {
    fn name(self) -> &'static str {
        match self {
            Probe::Live => "livez",
            Probe::Ready => "readyz",
        }
    }
}

/// The checks of `/livez`, in order.
pub const LIVE_CHECKS: [&str; 3] = ["raft_running", "storage", "serializable_read"];
/// The checks `/readyz` adds to the live ones, in order.
pub const READY_CHECKS: [&str; 4] = [
    "has_leader",
    "linearizable_read",
    "apply_backlog",
    "non_learner",
];

/// One check's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The check.
    pub name: &'static str,
    /// Why it failed (`None`: passed).
    pub failure: Option<String>,
}

/// Runs the checks of one member.
#[derive(Clone)]
pub struct Health {
    member: Arc<Member>,
    store: Store,
    metrics: Arc<Metrics>,
}

impl Health {
    /// Checks over a member's core and store, counted in `metrics`.
    pub fn new(member: Arc<Member>, store: Store, metrics: Arc<Metrics>) -> Self {
        Health {
            member,
            store,
            metrics,
        }
    }

    /// The names of a probe's checks.
    pub fn names(probe: Probe) -> Vec<&'static str> {
        let mut v = LIVE_CHECKS.to_vec();
        if probe == Probe::Ready {
            v.extend(READY_CHECKS);
        }
        v
    }

    /// Runs a probe's checks, except those in `exclude`, in order.
    pub async fn run(&self, probe: Probe, exclude: &[String]) -> Vec<Outcome> {
        let mut out = Vec::new();
        for name in Self::names(probe) {
            if exclude.iter().any(|e| e == name) {
                continue;
            }
            out.push(self.one(probe, name).await);
        }
        out
    }

    /// Runs one check (`None`: no such check in this probe).
    pub async fn check(&self, probe: Probe, name: &str) -> Option<Outcome> {
        let name = Self::names(probe).into_iter().find(|n| *n == name)?;
        Some(self.one(probe, name).await)
    }

    async fn one(&self, probe: Probe, name: &'static str) -> Outcome {
        let failure = self.evaluate(name).await;
        self.metrics
            .health_checks
            .get_or_create(&CheckLabels {
                endpoint: probe.name(),
                check: name,
                result: if failure.is_none() { "ok" } else { "failed" },
            })
            .inc();
        Outcome { name, failure }
    }

    async fn evaluate(&self, name: &str) -> Option<String> {
        let member = &self.member;
        let m = member.raft_metrics();
        match name {
            "raft_running" => match &m.running_state {
                Ok(()) if m.state != ServerState::Shutdown => None,
                Ok(()) => Some("the consensus core is shutting down".into()),
                Err(e) => Some(format!("the consensus core stopped: {e}")),
            },
            "storage" => self
                .store
                .failed()
                .map(|why| format!("the state machine cannot be written: {why}")),
            "serializable_read" => {
                let member = member.clone();
                let read = tokio::task::spawn_blocking(move || member.read_tree(State::node_count));
                match tokio::time::timeout(READ_TIMEOUT, read).await {
                    Ok(Ok(_)) => None,
                    Ok(Err(e)) => Some(format!("local read failed: {e}")),
                    Err(_) => Some(format!("a local read took more than {READ_TIMEOUT:?}")),
                }
            }
            "has_leader" => match m.current_leader {
                Some(_) => None,
                None => Some("no leader known".into()),
            },
            "linearizable_read" => {
                match tokio::time::timeout(READ_TIMEOUT, member.linearizable()).await {
                    Ok(Ok(_)) => None,
                    Ok(Err(e)) => Some(format!("linearizable read failed: {e}")),
                    Err(_) => Some(format!(
                        "a linearizable read took more than {READ_TIMEOUT:?}"
                    )),
                }
            }
            "apply_backlog" => {
                let last = m.last_log_index.unwrap_or(0);
                let applied = m.last_applied.map_or(0, |l| l.index);
                let behind = last.saturating_sub(applied);
                (behind > APPLY_BACKLOG).then(|| {
                    format!("apply is {behind} entries behind the log (limit {APPLY_BACKLOG})")
                })
            }
            "non_learner" => {
                (m.state == ServerState::Learner).then(|| "this member is a learner".to_string())
            }
            _ => Some(format!("unknown check {name}")),
        }
    }

    /// etcd's `/health`: ready, and no alarm raised.
    pub async fn health(&self) -> (bool, String) {
        let failed: Vec<String> = self
            .run(Probe::Ready, &[])
            .await
            .into_iter()
            .filter_map(|o| o.failure.map(|f| format!("{}: {f}", o.name)))
            .collect();
        if let Some(f) = failed.first() {
            return (false, f.clone());
        }
        let alarms = self.member.read_tree(space::raised);
        if let Some((member, why)) = alarms.first() {
            return (false, format!("NOSPACE alarm of member {member}: {why}"));
        }
        (true, String::new())
    }
}
