//! The cluster under test, as scripts/docker-faults.sh describes it in the environment, and
//! the docker CLI calls the nemesis makes. Every docker call is bounded in time.

use std::time::{Duration, Instant};

use baton::client::{Client, ClientError, ClientOptions, StatusResponse};
use baton::proto::v1::Role;
use tokio::process::Command;

// How the workloads classify a failed call, shared with the in-process suite.
pub use super::registers::{error_label, write_not_applied};

/// One member: its container, its client port published on 127.0.0.1, its peer address.
#[derive(Clone, Debug)]
pub struct Member {
    pub id: u64,
    pub container: String,
    pub port: u16,
    pub peer_ip: String,
}

impl Member {
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// The run's parameters, from `BATON_DF_*`.
#[derive(Clone, Debug)]
pub struct Config {
    pub members: Vec<Member>,
    pub peer_network: String,
    pub duration: Duration,
    pub seed: u64,
    pub out_dir: std::path::PathBuf,
    pub keep: bool,
}

impl Config {
    /// `None` if the suite was not started by scripts/docker-faults.sh.
    pub fn from_env() -> Option<Result<Config, String>> {
        let members = std::env::var("BATON_DF_MEMBERS").ok()?;
        Some(Self::parse(&members))
    }

    fn parse(members: &str) -> Result<Config, String> {
        let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
        let mut list = Vec::new();
        // id=container:port:peer_ip,...
        for item in members.split(',').filter(|s| !s.is_empty()) {
            let (id, rest) = item
                .split_once('=')
                .ok_or_else(|| format!("BATON_DF_MEMBERS item {item:?}: expected id=..."))?;
            let parts: Vec<&str> = rest.split(':').collect();
            let [container, port, peer_ip] = parts[..] else {
                return Err(format!(
                    "BATON_DF_MEMBERS item {item:?}: expected id=container:port:peer_ip"
                ));
            };
            list.push(Member {
                id: id
                    .parse()
                    .map_err(|_| format!("bad member id in {item:?}"))?,
                container: container.to_string(),
                port: port.parse().map_err(|_| format!("bad port in {item:?}"))?,
                peer_ip: peer_ip.to_string(),
            });
        }
        if list.len() != 3 {
            return Err(format!("expected 3 members, got {}", list.len()));
        }
        let secs: u64 = var("BATON_DF_DURATION")?
            .parse()
            .map_err(|_| "BATON_DF_DURATION is not a number".to_string())?;
        Ok(Config {
            members: list,
            peer_network: var("BATON_DF_PEER_NETWORK")?,
            duration: Duration::from_secs(secs),
            seed: var("BATON_DF_SEED")?
                .parse()
                .map_err(|_| "BATON_DF_SEED is not a number".to_string())?,
            out_dir: var("BATON_DF_OUT")?.into(),
            keep: std::env::var("BATON_DF_KEEP").is_ok_and(|v| v == "1"),
        })
    }
}

/// Runs `docker ARGS...` (bounded to 60 s); returns stdout, or stderr as the error.
pub async fn docker(args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new("docker");
    cmd.args(args).kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(60), cmd.output()).await {
        Err(_) => Err(format!("docker {} timed out after 60 s", args.join(" "))),
        Ok(Err(e)) => Err(format!("docker {}: {e}", args.join(" "))),
        Ok(Ok(out)) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into()),
        Ok(Ok(out)) => Err(format!(
            "docker {} exited with {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// Like [`docker`], retried (up to 5 attempts, 1 s apart) for healing commands, which must
/// not be lost to a transient engine hiccup.
pub async fn docker_retry(args: &[&str]) -> Result<String, String> {
    let mut last = String::new();
    for _ in 0..5 {
        match docker(args).await {
            Ok(out) => return Ok(out),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(last)
}

/// Client options of the workload: short deadlines so faults show up as timeouts quickly.
pub fn client_options(timeout: Duration) -> ClientOptions {
    ClientOptions {
        timeout,
        connect_timeout: Duration::from_secs(1),
        ..ClientOptions::default()
    }
}

/// Connects to `endpoints` (tried in order), retrying for up to `bound`.
pub async fn connect(
    endpoints: &[String],
    timeout: Duration,
    bound: Duration,
) -> Result<Client, String> {
    let deadline = Instant::now() + bound;
    let mut last = String::new();
    for _ in 0..1000 {
        match Client::connect_with(endpoints, client_options(timeout)).await {
            Ok(c) => return Ok(c),
            Err(e) => last = e.to_string(),
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("cannot connect to {endpoints:?}: {last}"))
}

pub struct Cluster {
    pub cfg: Config,
    /// One client per member, pinned to that member's endpoint.
    pub pinned: Vec<Client>,
}

impl Cluster {
    pub async fn connect(cfg: Config) -> Result<Cluster, String> {
        let mut pinned = Vec::new();
        for m in &cfg.members {
            pinned.push(
                connect(
                    &[m.endpoint()],
                    Duration::from_secs(2),
                    Duration::from_secs(60),
                )
                .await?,
            );
        }
        Ok(Cluster { cfg, pinned })
    }

    pub fn members(&self) -> &[Member] {
        &self.cfg.members
    }

    pub fn member(&self, id: u64) -> &Member {
        self.cfg
            .members
            .iter()
            .find(|m| m.id == id)
            .expect("known member id")
    }

    /// Every endpoint, starting with member `first` (index), so clients spread their load.
    pub fn endpoints_from(&self, first: usize) -> Vec<String> {
        let n = self.cfg.members.len();
        (0..n)
            .map(|i| self.cfg.members[(first + i) % n].endpoint())
            .collect()
    }

    /// A workload client: it starts at member `first` (modulo their number) and fails over to
    /// the others, with the workloads' per-call timeout.
    pub async fn workload_client(&self, first: usize) -> Result<Client, String> {
        connect(
            &self.endpoints_from(first),
            super::registers::CALL_TIMEOUT,
            Duration::from_secs(30),
        )
        .await
    }

    /// Status of every member (bounded per member by the pinned client's timeout).
    pub async fn statuses(&self) -> Vec<(u64, Result<StatusResponse, ClientError>)> {
        let asks = self
            .cfg
            .members
            .iter()
            .zip(&self.pinned)
            .map(|(m, c)| async move { (m.id, c.status().await) });
        futures::future::join_all(asks).await
    }

    /// The leader as reported by a member that is itself the leader, highest term first.
    pub async fn leader(&self) -> Option<u64> {
        self.statuses()
            .await
            .into_iter()
            .filter_map(|(id, s)| s.ok().map(|s| (id, s)))
            .filter(|(_, s)| s.role == Role::Leader as i32)
            .max_by_key(|(_, s)| s.term)
            .map(|(id, _)| id)
    }

    /// Waits (bounded) until every member answers Status and one of them leads.
    pub async fn wait_all_up(&self, bound: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let mut last = String::new();
        for _ in 0..10_000 {
            let st = self.statuses().await;
            let down: Vec<String> = st
                .iter()
                .filter_map(|(id, s)| s.as_ref().err().map(|e| format!("m{id}: {e}")))
                .collect();
            let leader = st
                .iter()
                .any(|(_, s)| s.as_ref().is_ok_and(|s| s.role == Role::Leader as i32));
            if down.is_empty() && leader {
                return Ok(start.elapsed());
            }
            last = if down.is_empty() {
                "no member is leader".to_string()
            } else {
                down.join("; ")
            };
            if start.elapsed() >= bound {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(format!(
            "members not all up with a leader within {} s: {last}",
            bound.as_secs()
        ))
    }

    /// Waits (bounded) until every member reports the same state hash at the same applied
    /// index (after a Sync on each). Equal indexes with different hashes fail at once.
    pub async fn wait_converged(&self, bound: Duration) -> Result<(u64, u64, Duration), String> {
        let start = Instant::now();
        let mut last = String::new();
        for _ in 0..10_000 {
            for c in &self.pinned {
                let _ = c.sync("/").await;
            }
            let st = self.statuses().await;
            let mut seen = Vec::new();
            for (id, s) in &st {
                match s {
                    Ok(s) => seen.push((*id, s.state_hash_index, s.state_hash)),
                    Err(e) => last = format!("m{id}: {e}"),
                }
            }
            if seen.len() == st.len() {
                let index = seen[0].1;
                if seen.iter().all(|(_, i, _)| *i == index) {
                    let hash = seen[0].2;
                    if seen.iter().all(|(_, _, h)| *h == hash) {
                        return Ok((index, hash, start.elapsed()));
                    }
                    return Err(format!(
                        "members DIVERGE: same applied index {index}, different state hashes: {}",
                        seen.iter()
                            .map(|(id, _, h)| format!("m{id}={h:#018x}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                last = format!(
                    "applied indexes differ: {}",
                    seen.iter()
                        .map(|(id, i, _)| format!("m{id}@{i}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            if start.elapsed() >= bound {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(format!(
            "members did not converge within {} s: {last}",
            bound.as_secs()
        ))
    }
}
