//! `TestCluster`: N Baton members in this process, on 127.0.0.1 with OS-assigned ports, each
//! with its own data directory and its own fault controller for its outgoing peer links.
//!
//! * Listeners are bound first (port 0), so every member's peer address is known before any
//!   member starts; `initial_members` lists them all and the lowest id initialises the cluster.
//! * `stop` is the graceful in-process shutdown; `restart` starts the member again on the same
//!   data directory and the same ports (re-binding them, with retries).
//! * Network faults go through each member's [`Faults`]: a member's controller governs *its
//!   outgoing* peer RPCs, so cutting A↔B blocks A→B in A's controller and B→A in B's.
//! * Every wait is bounded by a deadline and panics with a description of the cluster.
//!
//! Dropping the cluster asks every member to shut down.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton::client::{Client, ClientError, ClientOptions, StatusResponse};
use baton::config::Config;
use baton::consensus::faults::Faults;
use baton::proto::v1;
use baton::server::{self, ServerHandle, StartOptions};
use openraft::ServerState;
use tokio::net::TcpListener;

/// Timing and sizing of a test cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Number of members started (ids 1..=size).
    pub size: u64,
    /// Raft heartbeat.
    pub heartbeat: Duration,
    /// Election timeout bounds.
    pub election_min: Duration,
    /// Election timeout bounds.
    pub election_max: Duration,
    /// Log entries between snapshots.
    pub snapshot_every: u64,
    /// Log entries kept behind a snapshot.
    pub keep_logs: u64,
    /// Smallest session timeout the members accept.
    pub session_timeout_min: Duration,
    /// Bound on a member's graceful shutdown.
    pub shutdown_timeout: Duration,
    /// Seed of the fault controllers (member `i` uses `seed + i`).
    pub seed: u64,
    /// Default per-call timeout of the clients the harness hands out.
    pub call_timeout: Duration,
    /// Last changes to each member's configuration.
    pub tweak: fn(&mut Config),
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            size: 3,
            heartbeat: Duration::from_millis(100),
            election_min: Duration::from_millis(300),
            election_max: Duration::from_millis(600),
            snapshot_every: 20_000,
            keep_logs: 5_000,
            session_timeout_min: Duration::from_millis(200),
            shutdown_timeout: Duration::from_millis(3000),
            seed: 42,
            call_timeout: Duration::from_secs(5),
            tweak: |_| {},
        }
    }
}

/// One member slot: its fixed identity (id, ports, data dir, fault controller) and, while it
/// runs, its server handle.
pub struct Node {
    /// Member id.
    pub id: u64,
    /// Client address (fixed across restarts).
    pub client_addr: SocketAddr,
    /// Peer address (fixed across restarts).
    pub peer_addr: SocketAddr,
    /// Data directory (kept across restarts).
    pub dir: PathBuf,
    /// Fault controller of this member's outgoing peer links (kept across restarts).
    pub faults: Arc<Faults>,
    /// The configuration it is (re)started with.
    pub cfg: Config,
    /// The running server, if any.
    pub handle: Option<ServerHandle>,
    /// Listeners bound before the first start.
    pre_bound: Option<(TcpListener, TcpListener)>,
}

/// An in-process cluster. See the module documentation.
pub struct TestCluster {
    nodes: BTreeMap<u64, Node>,
    opts: ClusterOptions,
    // Last field: dropped after the members were asked to stop.
    root: tempfile::TempDir,
}

/// Installs a tracing subscriber when `RUST_LOG` is set (quiet otherwise).
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

async fn bind_any() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0")
}

/// Binds `addr` again, retrying for a while (the previous incarnation may still hold it).
async fn rebind(addr: SocketAddr) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) if Instant::now() < deadline && attempts < 200 => {
                tracing::debug!(%addr, error = %e, "address busy; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot re-bind {addr} after {attempts} attempts: {e}"),
        }
    }
}

fn role_name(s: ServerState) -> &'static str {
    match s {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

/// Client options for tests: the given per-call timeout, short connection attempts.
pub fn client_options(timeout: Duration) -> ClientOptions {
    ClientOptions {
        timeout,
        connect_timeout: Duration::from_millis(500),
        ..ClientOptions::default()
    }
}

impl TestCluster {
    /// Starts a 3-member cluster with the default test timings and waits for a leader.
    pub async fn start(size: u64) -> TestCluster {
        TestCluster::start_with(ClusterOptions {
            size,
            ..ClusterOptions::default()
        })
        .await
    }

    /// Starts `opts.size` members and waits for a leader.
    pub async fn start_with(opts: ClusterOptions) -> TestCluster {
        TestCluster::start_prepared(opts, |_, _, _| async {}).await
    }

    /// Starts `opts.size` members whose data directories `prepare` writes first (it is called
    /// with each member's id, data directory and the initial-members map, e.g. to restore a
    /// backup into it), and waits for a leader.
    pub async fn start_prepared<F, Fut>(opts: ClusterOptions, mut prepare: F) -> TestCluster
    where
        F: FnMut(u64, PathBuf, BTreeMap<u64, String>) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        init_tracing();
        let root = tempfile::Builder::new()
            .prefix("baton-cluster-")
            .tempdir()
            .expect("temp dir");
        let mut listeners = BTreeMap::new();
        for id in 1..=opts.size {
            listeners.insert(id, (bind_any().await, bind_any().await));
        }
        let initial: BTreeMap<u64, String> = listeners
            .iter()
            .map(|(id, (_, p))| (*id, p.local_addr().expect("peer addr").to_string()))
            .collect();
        let mut cluster = TestCluster {
            nodes: BTreeMap::new(),
            opts,
            root,
        };
        for (id, (client_l, peer_l)) in listeners {
            cluster.insert_node(id, client_l, peer_l, initial.clone());
        }
        for id in cluster.ids() {
            let dir = cluster.node(id).dir.clone();
            prepare(id, dir, initial.clone()).await;
        }
        let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
        for id in ids {
            cluster.launch(id).await;
        }
        cluster.wait_for_leader(Duration::from_secs(20)).await;
        cluster
    }

    fn insert_node(
        &mut self,
        id: u64,
        client_l: TcpListener,
        peer_l: TcpListener,
        initial: BTreeMap<u64, String>,
    ) {
        let client_addr = client_l.local_addr().expect("client addr");
        let peer_addr = peer_l.local_addr().expect("peer addr");
        let dir = self.root.path().join(format!("member-{id}"));
        let mut cfg = Config::for_test(&dir);
        cfg.id = id;
        cfg.listen_client = client_addr;
        cfg.listen_peer = peer_addr;
        cfg.initial_members = initial;
        cfg.heartbeat = self.opts.heartbeat;
        cfg.election_timeout_min = self.opts.election_min;
        cfg.election_timeout_max = self.opts.election_max;
        cfg.snapshot_every = self.opts.snapshot_every;
        cfg.keep_logs = self.opts.keep_logs;
        cfg.session_timeout_min = self.opts.session_timeout_min;
        cfg.shutdown_timeout = self.opts.shutdown_timeout;
        (self.opts.tweak)(&mut cfg);
        cfg.validate().expect("valid test config");
        let node = Node {
            id,
            client_addr,
            peer_addr,
            dir,
            faults: Faults::new(self.opts.seed.wrapping_add(id)),
            cfg,
            handle: None,
            pre_bound: Some((client_l, peer_l)),
        };
        self.nodes.insert(id, node);
    }

    /// Starts member `id`: with its pre-bound listeners the first time, re-binding its
    /// addresses afterwards. Retries a failed start (data dir still locked, port busy).
    async fn launch(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("known member");
        let mut pre = node.pre_bound.take();
        assert!(node.handle.is_none(), "member {id} is already running");
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let (client_l, peer_l) = match pre.take() {
                Some(l) => l,
                None => (rebind(node.client_addr).await, rebind(node.peer_addr).await),
            };
            let opts = StartOptions {
                client_listener: Some(client_l),
                peer_listener: Some(peer_l),
                faults: Some(node.faults.clone()),
                metrics_listener: None,
            };
            match server::start_with(node.cfg.clone(), opts).await {
                Ok(h) => {
                    assert_eq!(h.client_addr, node.client_addr);
                    assert_eq!(h.peer_addr, node.peer_addr);
                    node.handle = Some(h);
                    return;
                }
                Err(e) if Instant::now() < deadline && attempts < 40 => {
                    tracing::warn!(id, error = %e, "member did not start; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => panic!("member {id} does not start after {attempts} attempts: {e}"),
            }
        }
    }

    // ----- membership of the harness -----

    /// Every member id the harness knows (running or not).
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// The ids of the running members.
    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .values()
            .filter(|n| n.handle.is_some())
            .map(|n| n.id)
            .collect()
    }

    /// Whether member `id` runs.
    pub fn is_running(&self, id: u64) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.handle.is_some())
    }

    /// The member slot `id`.
    pub fn node(&self, id: u64) -> &Node {
        self.nodes
            .get(&id)
            .unwrap_or_else(|| panic!("no member {id}"))
    }

    /// The member slot `id`, to change its configuration before a restart.
    pub fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no member {id}"))
    }

    /// The running member `id`'s server handle.
    pub fn handle(&self, id: u64) -> &ServerHandle {
        self.node(id)
            .handle
            .as_ref()
            .unwrap_or_else(|| panic!("member {id} is not running"))
    }

    /// Member `id`'s client address as `host:port`.
    pub fn endpoint(&self, id: u64) -> String {
        self.node(id).client_addr.to_string()
    }

    /// The options the cluster was started with.
    pub fn options(&self) -> &ClusterOptions {
        &self.opts
    }

    // ----- clients -----

    /// A client bound to member `id` only (no failover), with the default call timeout.
    pub async fn client(&self, id: u64) -> Client {
        self.client_timeout(id, self.opts.call_timeout).await
    }

    /// A client bound to member `id` only, with the given per-call timeout.
    pub async fn client_timeout(&self, id: u64, timeout: Duration) -> Client {
        let ep = self.endpoint(id);
        connect_retry(&[ep], timeout).await
    }

    /// A client for every member, starting with member `first` and failing over to the
    /// others in id order.
    pub async fn client_from(&self, first: u64, timeout: Duration) -> Client {
        let mut eps = vec![self.endpoint(first)];
        eps.extend(
            self.nodes
                .keys()
                .filter(|&&id| id != first)
                .map(|&id| self.endpoint(id)),
        );
        connect_retry(&eps, timeout).await
    }

    /// A client for every member, starting with the first running one.
    pub async fn client_all(&self) -> Client {
        let first = self.running().first().copied().expect("a running member");
        self.client_from(first, self.opts.call_timeout).await
    }

    // ----- leadership -----

    /// The leader: a running member that is in the leader state and is recognised as leader
    /// by a majority of the members the harness knows (so an isolated old leader is not
    /// reported). `None` if there is none right now.
    pub fn leader(&self) -> Option<u64> {
        let total = self.nodes.len();
        let mut best: Option<(u64, u64)> = None; // (term, id)
        for n in self.nodes.values() {
            let Some(h) = &n.handle else { continue };
            let m = h.raft.metrics().borrow().clone();
            if m.state != ServerState::Leader || m.current_leader != Some(n.id) {
                continue;
            }
            let followers = self
                .nodes
                .values()
                .filter_map(|o| o.handle.as_ref())
                .filter(|oh| {
                    let om = oh.raft.metrics().borrow().clone();
                    om.current_leader == Some(n.id) && om.current_term == m.current_term
                })
                .count();
            if followers * 2 > total && best.is_none_or(|(t, _)| m.current_term > t) {
                best = Some((m.current_term, n.id));
            }
        }
        best.map(|(_, id)| id)
    }

    /// Waits until [`TestCluster::leader`] names a leader; panics (describing every member)
    /// after `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        for _ in 0..100_000 {
            if let Some(id) = self.leader() {
                return id;
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "no leader within {} ms:\n{}",
            timeout.as_millis(),
            self.describe()
        );
    }

    /// Waits for a leader other than `old`.
    pub async fn wait_for_new_leader(&self, old: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        for _ in 0..100_000 {
            if let Some(id) = self.leader().filter(|&id| id != old) {
                return id;
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "no leader other than {old} within {} ms:\n{}",
            timeout.as_millis(),
            self.describe()
        );
    }

    /// One line per member: role, term, leader, indexes.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for n in self.nodes.values() {
            match &n.handle {
                None => out.push_str(&format!("  member {}: stopped\n", n.id)),
                Some(h) => {
                    let m = h.raft.metrics().borrow().clone();
                    out.push_str(&format!(
                        "  member {}: {} term={} leader={:?} last_log={:?} applied={:?} \
                         snapshot={:?} purged={:?} blocked_drops={}\n",
                        n.id,
                        role_name(m.state),
                        m.current_term,
                        m.current_leader,
                        m.last_log_index,
                        m.last_applied.map(|l| l.index),
                        m.snapshot.map(|l| l.index),
                        m.purged.map(|l| l.index),
                        n.faults.dropped(),
                    ));
                }
            }
        }
        out
    }

    // ----- faults -----

    /// Cuts the network into `groups`: members talk only within their group. Members not
    /// listed form one more group. Replaces every earlier link cut, drop and delay rule.
    pub fn partition(&self, groups: &[&[u64]]) {
        self.heal();
        let all = self.ids();
        let listed: Vec<u64> = groups.iter().flat_map(|g| g.iter().copied()).collect();
        let rest: Vec<u64> = all
            .iter()
            .copied()
            .filter(|id| !listed.contains(id))
            .collect();
        let mut groups: Vec<Vec<u64>> = groups.iter().map(|g| g.to_vec()).collect();
        if !rest.is_empty() {
            groups.push(rest);
        }
        for g in &groups {
            for &a in g {
                let others: Vec<u64> = all.iter().copied().filter(|b| !g.contains(b)).collect();
                self.node(a).faults.block(a, others);
            }
        }
        tracing::info!(?groups, "partitioned");
    }

    /// Cuts member `id` off from every other member (both directions).
    pub fn isolate(&self, id: u64) {
        self.partition(&[&[id]]);
    }

    /// Restores every link and removes drop and delay rules.
    pub fn heal(&self) {
        for n in self.nodes.values() {
            n.faults.heal();
        }
    }

    /// Every member drops each outgoing peer RPC with probability `rate`.
    pub fn drop_rate(&self, rate: f64) {
        for n in self.nodes.values() {
            n.faults.set_drop_rate(rate);
        }
    }

    /// Every member delays each outgoing peer RPC by a uniform time in `[min, max]`.
    pub fn delay(&self, min: Duration, max: Duration) {
        for n in self.nodes.values() {
            n.faults.set_delay(min, max);
        }
    }

    // ----- process faults -----

    /// Stops member `id` gracefully and waits until it has stopped.
    pub async fn stop(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("known member");
        let h = node
            .handle
            .take()
            .unwrap_or_else(|| panic!("member {id} is not running"));
        let bound = self.opts.shutdown_timeout * 3;
        match tokio::time::timeout(bound, h.stop()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(id, error = %e, "member stopped with an error"),
            Err(_) => panic!("member {id} did not stop within {} ms", bound.as_millis()),
        }
    }

    /// Starts member `id` again on its data directory and its ports.
    pub async fn restart(&mut self, id: u64) {
        self.launch(id).await;
    }

    // ----- membership changes -----

    /// Starts a new member `id` that is not part of the cluster yet: its initial-members list
    /// holds the current members and itself, and its id is not the lowest, so it does not
    /// initialise a cluster; it waits to be contacted by the leader. Returns its peer and
    /// client addresses.
    pub async fn spawn_joiner(&mut self, id: u64) -> (SocketAddr, SocketAddr) {
        assert!(!self.nodes.contains_key(&id), "member {id} exists");
        let client_l = bind_any().await;
        let peer_l = bind_any().await;
        let mut initial: BTreeMap<u64, String> = self
            .nodes
            .values()
            .map(|n| (n.id, n.peer_addr.to_string()))
            .collect();
        initial.insert(id, peer_l.local_addr().expect("addr").to_string());
        assert!(
            initial.keys().next() != Some(&id),
            "a joiner must not have the lowest id"
        );
        self.insert_node(id, client_l, peer_l, initial);
        self.launch(id).await;
        let n = self.node(id);
        (n.peer_addr, n.client_addr)
    }

    /// A client for administration calls through member `via` only (40 s timeout: a call
    /// may wait for a membership change in progress and for the change to be applied).
    async fn admin_client(&self, via: u64) -> Client {
        self.client_timeout(via, Duration::from_secs(40)).await
    }

    /// `AddMember` (as a learner) through member `via`, with the new member's addresses.
    pub async fn add_member(&self, via: u64, id: u64) -> Result<Vec<v1::Member>, ClientError> {
        let n = self.node(id);
        let (peer, client) = (n.peer_addr.to_string(), n.client_addr.to_string());
        self.admin_client(via)
            .await
            .add_member(id, &peer, &client)
            .await
    }

    /// `PromoteMember` through member `via`.
    pub async fn promote(&self, via: u64, id: u64) -> Result<Vec<v1::Member>, ClientError> {
        self.admin_client(via).await.promote_member(id).await
    }

    /// `RemoveMember` through member `via`.
    pub async fn remove(&self, via: u64, id: u64) -> Result<Vec<v1::Member>, ClientError> {
        self.admin_client(via).await.remove_member(id).await
    }

    /// Forgets member `id` (after it was removed from the cluster): stops it if it runs.
    pub async fn forget(&mut self, id: u64) {
        if self.is_running(id) {
            self.stop(id).await;
        }
        self.nodes.remove(&id);
    }

    // ----- convergence -----

    /// Status of member `id` after a `sync` (so it applied everything committed before).
    pub async fn synced_status(&self, id: u64) -> Result<StatusResponse, ClientError> {
        let c = self.client_timeout(id, Duration::from_secs(3)).await;
        c.sync("/").await?;
        c.status().await
    }

    /// Waits until every running member reports the same `state_hash` at the same
    /// `state_hash_index` (each after a `sync`); returns that (index, hash). Panics with the
    /// last statuses after `timeout`.
    pub async fn wait_converged(&self, timeout: Duration) -> (u64, u64) {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        for _ in 0..10_000 {
            let mut seen = BTreeMap::new();
            let mut ok = true;
            for id in self.running() {
                match self.synced_status(id).await {
                    Ok(s) => {
                        seen.insert(id, (s.state_hash_index, s.state_hash));
                    }
                    Err(e) => {
                        ok = false;
                        last = format!("member {id}: {e}");
                    }
                }
            }
            if ok {
                let mut values = seen.values();
                if let Some(first) = values.next() {
                    if values.all(|v| v == first) {
                        return *first;
                    }
                }
                last = format!("(index, hash) per member: {seen:?}");
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "members did not converge within {} ms; last: {last}\n{}",
            timeout.as_millis(),
            self.describe()
        );
    }
}

/// Connects a client to `endpoints`, retrying briefly (a member that just started may not
/// accept connections yet).
pub async fn connect_retry(endpoints: &[String], timeout: Duration) -> Client {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = None;
    for _ in 0..100 {
        match Client::connect_with(endpoints, client_options(timeout)).await {
            Ok(c) => return c,
            Err(e) => last = Some(e),
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot connect to {endpoints:?}: {last:?}");
}

/// Polls `cond` (every 20 ms, at most `timeout` and 10 000 times) until it returns `Some`;
/// panics with `what()` otherwise.
pub async fn poll_until<T>(
    timeout: Duration,
    mut cond: impl FnMut() -> Option<T>,
    what: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    for _ in 0..10_000 {
        if let Some(v) = cond() {
            return v;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not within {} ms: {}", timeout.as_millis(), what());
}

/// Retries `f` until it succeeds or `timeout` passes (at most `max_attempts` tries); returns
/// the last error on failure.
pub async fn retry<T, F, Fut>(timeout: Duration, max_attempts: u32, mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::from("not attempted");
    for _ in 0..max_attempts {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => last = e,
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(last)
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for n in self.nodes.values_mut() {
            if let Some(h) = n.handle.take() {
                h.shutdown();
            }
        }
    }
}

/// Runs the `baton` binary; returns (exit code, stdout, stderr).
pub async fn baton(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(args)
        .output()
        .await
        .expect("run baton");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("{e}: {s:?}"))
}
