//! The nemesis: one fault at a time, through the docker CLI, on a seeded schedule. Kinds are
//! drawn from a shuffled bag, so every kind occurs once per four faults.
//!
//! * `partition` — disconnect one member (any) from the peer network: it keeps serving its
//!   clients (the client network and its published port are untouched) but cannot reach the
//!   other members; heal = reconnect with its fixed address;
//! * `isolate-leader` — the same for the current leader;
//! * `kill` — `docker kill -s KILL` (the leader half of the time), heal = `docker start` on the
//!   same volume;
//! * `pause` — `docker pause` (cgroup freezer; the leader half of the time), heal =
//!   `docker unpause`.
//!
//! After each heal the nemesis measures the **recovery time**: from the end of the healing
//! command until a write (SetData of `/df/probe` through a client that knows every member)
//! succeeds; then it waits until every member answers again, and pauses before the next fault.

use std::time::{Duration, Instant};

use baton::client::Client;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;

use super::cluster::{docker, docker_retry, Cluster};
use super::registers::Rec;

pub const PROBE: &str = "/df/probe";
/// How long a heal may take to make writes succeed again before the run fails.
const RECOVERY_BOUND: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum FaultKind {
    Partition,
    IsolateLeader,
    Kill,
    Pause,
}

impl FaultKind {
    pub const ALL: [FaultKind; 4] = [
        FaultKind::Partition,
        FaultKind::IsolateLeader,
        FaultKind::Kill,
        FaultKind::Pause,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Partition => "partition",
            FaultKind::IsolateLeader => "isolate-leader",
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct FaultRecord {
    pub kind: FaultKind,
    pub target: u64,
    pub target_was_leader: bool,
    /// Run-clock times (ns) when the fault was injected and when it was healed.
    pub start_ns: u64,
    pub heal_ns: u64,
    /// From heal until the first successful write; `None` if none within the bound.
    pub recovery_ms: Option<u64>,
    /// From heal until every member answered Status again.
    pub all_up_ms: Option<u64>,
}

pub struct Nemesis<'a> {
    pub cluster: &'a Cluster,
    pub probe: Client,
    pub clock: Rec,
    pub rng: StdRng,
    pub probe_counter: u64,
    pub records: Vec<FaultRecord>,
    /// Harness or liveness failures (a docker command failed, no recovery in time).
    pub problems: Vec<String>,
}

impl Nemesis<'_> {
    /// Tries a probe write until one succeeds; returns the time it took.
    pub async fn recovery(&mut self) -> Option<Duration> {
        let start = Instant::now();
        for _ in 0..100_000 {
            self.probe_counter += 1;
            let res = tokio::time::timeout(
                Duration::from_millis(1500),
                self.probe
                    .set_data(PROBE, self.probe_counter.to_string(), -1),
            )
            .await;
            if let Ok(Ok(_)) = res {
                return Some(start.elapsed());
            }
            if start.elapsed() >= RECOVERY_BOUND {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// Runs faults until `until` (a fault started before it always completes its heal).
    pub async fn run(&mut self, until: Instant) {
        let mut bag: Vec<FaultKind> = Vec::new();
        for round in 0..100_000 {
            if Instant::now() >= until || !self.problems.is_empty() {
                break;
            }
            if bag.is_empty() {
                bag = FaultKind::ALL.to_vec();
                bag.shuffle(&mut self.rng);
            }
            let kind = bag.pop().expect("non-empty bag");
            let leader = self.cluster.leader().await;
            let ids: Vec<u64> = self.cluster.members().iter().map(|m| m.id).collect();
            let random = *ids.choose(&mut self.rng).expect("members");
            let target = match kind {
                FaultKind::Partition => random,
                FaultKind::IsolateLeader => leader.unwrap_or(random),
                FaultKind::Kill | FaultKind::Pause => {
                    if self.rng.gen_bool(0.5) {
                        leader.unwrap_or(random)
                    } else {
                        let followers: Vec<u64> =
                            ids.iter().copied().filter(|i| Some(*i) != leader).collect();
                        *followers.choose(&mut self.rng).unwrap_or(&random)
                    }
                }
            };
            let hold = Duration::from_millis(self.rng.gen_range(2000..6000));
            let member = self.cluster.member(target).clone();
            let c = member.container.as_str();
            let net = self.cluster.cfg.peer_network.as_str();
            let start_ns = self.clock.now_ns();
            let is_leader = leader == Some(target);
            println!(
                "nemesis #{round} at {:.1} s: {} m{target}{} for {} ms",
                start_ns as f64 / 1e9,
                kind.name(),
                if is_leader { " (leader)" } else { "" },
                hold.as_millis()
            );
            let injected = match kind {
                FaultKind::Partition | FaultKind::IsolateLeader => {
                    docker(&["network", "disconnect", "-f", net, c]).await
                }
                FaultKind::Kill => docker(&["kill", "-s", "KILL", c]).await,
                FaultKind::Pause => docker(&["pause", c]).await,
            };
            if let Err(e) = injected {
                self.problems
                    .push(format!("injecting {}: {e}", kind.name()));
                // Heal below anyway, in case the command half-worked.
            }
            tokio::time::sleep(hold).await;
            let ip = member.peer_ip.clone();
            let healed = match kind {
                FaultKind::Partition | FaultKind::IsolateLeader => {
                    docker_retry(&["network", "connect", "--ip", &ip, net, c]).await
                }
                FaultKind::Kill => docker_retry(&["start", c]).await,
                FaultKind::Pause => docker_retry(&["unpause", c]).await,
            };
            let heal_ns = self.clock.now_ns();
            if let Err(e) = healed {
                self.problems
                    .push(format!("healing {} of m{target}: {e}", kind.name()));
            }
            let recovery = self.recovery().await;
            if recovery.is_none() {
                self.problems.push(format!(
                    "no write succeeded within {} s after healing {} of m{target}",
                    RECOVERY_BOUND.as_secs(),
                    kind.name()
                ));
            }
            let all_up = self.cluster.wait_all_up(Duration::from_secs(60)).await;
            if let Err(e) = &all_up {
                self.problems
                    .push(format!("after healing {} of m{target}: {e}", kind.name()));
            }
            // all_up is measured from its own start; count it from the heal.
            let all_up_ms = all_up
                .ok()
                .map(|_| (self.clock.now_ns().saturating_sub(heal_ns)) / 1_000_000);
            println!(
                "nemesis #{round}: healed; write ok after {} ms, all members up after {} ms",
                recovery.map_or("-".into(), |d| d.as_millis().to_string()),
                all_up_ms.map_or("-".into(), |d| d.to_string())
            );
            self.records.push(FaultRecord {
                kind,
                target,
                target_was_leader: is_leader,
                start_ns,
                heal_ns,
                recovery_ms: recovery.map(|d| d.as_millis() as u64),
                all_up_ms,
            });
            tokio::time::sleep(Duration::from_millis(self.rng.gen_range(1000..3000))).await;
        }
    }

    /// Undoes any fault that may be left (safety net before the final checks): reconnects,
    /// unpauses and starts every member. Errors for no-ops ("already connected", "not
    /// paused", "already started") are ignored.
    pub async fn heal_all(&mut self) {
        let net = self.cluster.cfg.peer_network.clone();
        for m in self.cluster.members().to_vec() {
            let c = m.container.as_str();
            let _ = docker(&["unpause", c]).await;
            let _ = docker(&["start", c]).await;
            if let Ok(out) = docker(&[
                "inspect",
                "--format",
                &format!("{{{{with index .NetworkSettings.Networks \"{net}\"}}}}yes{{{{end}}}}"),
                c,
            ])
            .await
            {
                if out.trim() != "yes" {
                    if let Err(e) =
                        docker_retry(&["network", "connect", "--ip", &m.peer_ip, &net, c]).await
                    {
                        self.problems.push(format!("final heal of m{}: {e}", m.id));
                    }
                }
            }
        }
    }
}
