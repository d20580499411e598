//! Crash durability of a single `batond` process, driven as a child process.
//!
//! * `kill9_durability_loop`: several concurrent writers create nodes and set data with unique
//!   values while the server is killed with SIGKILL at a random moment; after every restart on
//!   the same data directory, every acknowledged write must be there (its value or a later one
//!   from the same writer), nothing that was never requested or that definitely failed may
//!   appear, and whatever a restart revealed must survive the next crash.
//! * `restart_after_snapshot_and_log_purge`: with frequent snapshots and a short log, ~1000
//!   nodes survive SIGKILL (recovery from snapshot + log tail), then SIGTERM exits 0 and the
//!   data is still there after one more restart.
//!
//! Knobs (env): `DURABILITY_ROUNDS` (default 12), `DURABILITY_MAX_SECS` (default 240),
//! `DURABILITY_WRITERS` (default 8), `DURABILITY_SEED` (default: from the clock; printed).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton::proto::v1;
use baton::proto::v1::cluster_client::ClusterClient;
use baton::proto::v1::z_nodes_client::ZNodesClient;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;
use tonic::Code;

use crate::common::batond::{free_port, Batond};

// ---------------------------------------------------------------------------------------------
// The server as a child process.

/// The `batond` under test: one member on its data directory, on new free ports at every start
/// (the process itself is [`Batond`]: spawn, SIGKILL, SIGTERM, log tail when a test fails).
struct Server(Batond);

impl std::ops::Deref for Server {
    type Target = Batond;
    fn deref(&self) -> &Batond {
        &self.0
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Batond {
        &mut self.0
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

impl Server {
    /// Starts `batond` on a fresh free port and waits until it serves.
    async fn start(data_dir: &Path, extra: &[&str]) -> Server {
        let proc = Batond::new(
            1,
            0,
            0,
            data_dir.to_path_buf(),
            data_dir.with_extension("log"),
        )
        .with_args(extra);
        let mut s = Server(proc);
        s.launch().await;
        s
    }

    /// Spawns the process and waits until it serves. A port taken between choosing and
    /// binding it is retried with another port.
    async fn launch(&mut self) {
        let mut last_err = String::new();
        for _attempt in 0..5 {
            self.client_port = free_port();
            self.peer_port = free_port();
            self.spawn();
            match self.wait_serving(Duration::from_secs(60)).await {
                Ok(()) => return,
                Err(e) => {
                    self.kill9();
                    let bind_failure = e.contains("exited early") && e.contains("cannot listen");
                    last_err = e;
                    if !bind_failure {
                        panic!("batond did not start: {last_err}");
                    }
                }
            }
        }
        panic!("batond did not start after 5 port choices: {last_err}");
    }

    fn uri(&self) -> String {
        format!("http://{}", self.client_addr())
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(self.uri())
            .expect("endpoint")
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .connect_lazy()
    }

    /// Polls Cluster.Status until this member leads, then a linearizable read must work.
    async fn wait_serving(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let mut last = String::from("not polled");
        while Instant::now() < deadline {
            if let Some(st) = self.exited() {
                return Err(format!(
                    "batond exited early with {st}; log tail:\n{}",
                    self.log_tail(4096)
                ));
            }
            let ch = self.channel().await;
            let mut cluster = ClusterClient::new(ch.clone());
            match cluster.status(v1::StatusRequest {}).await {
                Ok(r) => {
                    let r = r.into_inner();
                    if r.role == v1::Role::Leader as i32 && r.leader_id == r.member_id {
                        let mut zn = ZNodesClient::new(ch);
                        match zn.exists(exists_req("/")).await {
                            Ok(_) => return Ok(()),
                            Err(e) => last = format!("read failed: {e}"),
                        }
                    } else {
                        last = format!("role {} leader {}", r.role, r.leader_id);
                    }
                }
                Err(e) => last = format!("status: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("not serving within {limit:?}: {last}"))
    }

    /// Starts the process again on the same data directory and waits until it serves.
    async fn restart(&mut self) {
        self.kill9();
        self.launch().await;
    }
}

/// Prints a figures line and keeps it in `<target>/tmp/figures/<name>.txt`, so that a run
/// whose output cargo captured (passing tests) can still show it (scripts/test-all.sh does).
fn figures(name: &str, line: &str) {
    eprintln!("{line}");
    if let Some(dir) = option_env!("CARGO_TARGET_TMPDIR") {
        let dir = Path::new(dir).join("figures");
        if std::fs::create_dir_all(&dir).is_ok() {
            let _ = std::fs::write(dir.join(format!("{name}.txt")), format!("{line}\n"));
        }
    }
}

fn exists_req(path: &str) -> v1::ExistsRequest {
    v1::ExistsRequest {
        path: path.into(),
        consistency: v1::Consistency::Linearizable as i32,
        min_zxid: 0,
    }
}

fn get_req(path: &str) -> v1::GetDataRequest {
    v1::GetDataRequest {
        path: path.into(),
        consistency: v1::Consistency::Linearizable as i32,
        min_zxid: 0,
    }
}

fn create_req(path: &str, data: Vec<u8>) -> v1::CreateRequest {
    v1::CreateRequest {
        path: path.into(),
        data,
        mode: v1::CreateMode::Persistent as i32,
        session_id: 0,
        ttl_ms: 0,
        acl: Default::default(),
    }
}

/// Every child name of `path`, following pagination.
async fn all_children(zn: &mut ZNodesClient<Channel>, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start_after = String::new();
    for _page in 0..10_000 {
        let r = zn
            .get_children(v1::GetChildrenRequest {
                path: path.into(),
                start_after: start_after.clone(),
                limit: 500,
                include_stats: false,
                consistency: v1::Consistency::Linearizable as i32,
                min_zxid: 0,
            })
            .await
            .unwrap_or_else(|e| panic!("GetChildren {path}: {e}"))
            .into_inner();
        out.extend(r.children);
        if r.next.is_empty() {
            return out;
        }
        start_after = r.next;
    }
    panic!("GetChildren {path}: too many pages");
}

/// Whether an error leaves the write's outcome unknown (the request may have been applied).
fn indeterminate(code: Code) -> bool {
    !matches!(
        code,
        Code::NotFound
            | Code::AlreadyExists
            | Code::FailedPrecondition
            | Code::InvalidArgument
            | Code::PermissionDenied
            | Code::ResourceExhausted
            | Code::Unauthenticated
    )
}

// ---------------------------------------------------------------------------------------------
// The model of what may be on disk.

#[derive(Default, Debug)]
struct NodeModel {
    /// An acknowledged create or set, or an observation after a restart, proves the node exists.
    must_exist: bool,
    /// The create was definitely not applied (failed, or absent after a restart that followed
    /// it): the node must never appear.
    never: bool,
    /// The present value must have a sequence number at least this (last ack or observation).
    min_seq: u64,
    /// Sequence numbers of values that must never be present (definite failures, or
    /// indeterminate writes that a later observation showed were not applied).
    forbidden: BTreeSet<u64>,
    /// Every sequence number attempted on this node (create and sets), in order.
    attempted: Vec<u64>,
    /// Acknowledged sets and the sets that may still have been applied (for Stat.version).
    acked_sets: i32,
    possible_sets: i32,
}

#[derive(Default, Debug, Clone, Copy)]
struct Counts {
    attempted: u64,
    acked: u64,
    failed: u64,
    indeterminate: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.attempted += o.attempted;
        self.acked += o.acked;
        self.failed += o.failed;
        self.indeterminate += o.indeterminate;
    }
}

/// One writer: owns `/d/w<id>`, issues one request at a time, values `w<id>:<seq>`.
struct Writer {
    id: usize,
    seq: u64,
    next_node: u64,
    nodes: BTreeMap<String, NodeModel>,
    counts: Counts,
    failure_reasons: BTreeMap<String, u64>,
    rng: StdRng,
}

fn value(w: usize, seq: u64) -> Vec<u8> {
    format!("w{w}:{seq}").into_bytes()
}

fn parse_value(v: &[u8]) -> Option<(usize, u64)> {
    let s = std::str::from_utf8(v).ok()?;
    let (w, seq) = s.strip_prefix('w')?.split_once(':')?;
    Some((w.parse().ok()?, seq.parse().ok()?))
}

enum Outcome {
    Ok,
    Failed(String),
    Indeterminate,
}

impl Writer {
    fn dir(&self) -> String {
        format!("/d/w{}", self.id)
    }

    /// Writes until `stop` is set or an indeterminate outcome (the server is gone).
    async fn run_round(&mut self, ch: Channel, stop: Arc<AtomicBool>, max_ops: u64) {
        let mut zn = ZNodesClient::new(ch);
        for _ in 0..max_ops {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            self.seq += 1;
            let seq = self.seq;
            let data = value(self.id, seq);
            let candidates: Vec<String> = self
                .nodes
                .iter()
                .filter(|(_, n)| !n.never)
                .map(|(p, _)| p.clone())
                .collect();
            let create = candidates.is_empty() || self.rng.gen_bool(0.4);
            let path = if create {
                self.next_node += 1;
                format!("{}/n{:06}", self.dir(), self.next_node)
            } else {
                candidates[self.rng.gen_range(0..candidates.len())].clone()
            };
            self.counts.attempted += 1;
            {
                let n = self.nodes.entry(path.clone()).or_default();
                n.attempted.push(seq);
                if !create {
                    n.possible_sets += 1;
                }
            }
            let res = if create {
                zn.create(create_req(&path, data)).await.map(|_| ())
            } else {
                zn.set_data(v1::SetDataRequest {
                    path: path.clone(),
                    data,
                    version: -1,
                })
                .await
                .map(|_| ())
            };
            let outcome = match res {
                Ok(()) => Outcome::Ok,
                Err(s) if indeterminate(s.code()) => Outcome::Indeterminate,
                Err(s) => Outcome::Failed(format!("{:?}", s.code())),
            };
            let n = self.nodes.get_mut(&path).expect("node model");
            match outcome {
                Outcome::Ok => {
                    self.counts.acked += 1;
                    n.must_exist = true;
                    n.min_seq = seq;
                    if !create {
                        n.acked_sets += 1;
                    }
                }
                Outcome::Failed(reason) => {
                    self.counts.failed += 1;
                    n.forbidden.insert(seq);
                    if create {
                        n.never = true;
                    } else {
                        n.possible_sets -= 1;
                    }
                    *self
                        .failure_reasons
                        .entry(format!(
                            "{}:{reason}",
                            if create { "create" } else { "set" }
                        ))
                        .or_default() += 1;
                }
                Outcome::Indeterminate => {
                    self.counts.indeterminate += 1;
                    return;
                }
            }
        }
    }

    /// Checks the server's state of `/d/w<id>` against the model, then tightens the model with
    /// what was observed (observed state is committed, so it must survive later crashes).
    /// Returns the number of nodes checked.
    async fn verify(&mut self, ch: Channel, round: usize) -> Result<u64, String> {
        let mut zn = ZNodesClient::new(ch);
        let dir = self.dir();
        let listed: BTreeSet<String> = all_children(&mut zn, &dir)
            .await
            .into_iter()
            .map(|c| format!("{dir}/{c}"))
            .collect();
        let mut errors = Vec::new();
        for p in &listed {
            match self.nodes.get(p) {
                None => errors.push(format!("{p}: listed but never requested")),
                Some(n) if n.never => {
                    errors.push(format!("{p}: listed but its create definitely failed"))
                }
                Some(_) => {}
            }
        }
        let mut checked = 0;
        for (path, n) in self.nodes.iter_mut() {
            if n.never && !listed.contains(path) {
                continue;
            }
            checked += 1;
            let got = zn.get_data(get_req(path)).await;
            match got {
                Err(s) if s.code() == Code::NotFound => {
                    if n.must_exist {
                        errors.push(format!(
                            "{path}: LOST: acknowledged (min seq {}) but absent",
                            n.min_seq
                        ));
                    }
                    if listed.contains(path) {
                        errors.push(format!("{path}: listed but GetData says NO_NODE"));
                    }
                    // The create was not applied and never will be.
                    n.never = true;
                    for s in &n.attempted {
                        n.forbidden.insert(*s);
                    }
                }
                Err(s) => return Err(format!("round {round}: GetData {path}: {s}")),
                Ok(r) => {
                    let r = r.into_inner();
                    if !listed.contains(path) {
                        errors.push(format!("{path}: readable but not listed by its parent"));
                    }
                    let Some((w, seq)) = parse_value(&r.data) else {
                        errors.push(format!(
                            "{path}: value {:?} was never written by anyone",
                            String::from_utf8_lossy(&r.data)
                        ));
                        continue;
                    };
                    if w != self.id || !n.attempted.contains(&seq) {
                        errors.push(format!(
                            "{path}: value w{w}:{seq} was never written to this node"
                        ));
                        continue;
                    }
                    if seq < n.min_seq {
                        errors.push(format!(
                            "{path}: LOST UPDATE: value seq {seq} older than acknowledged/observed seq {}",
                            n.min_seq
                        ));
                    }
                    if n.forbidden.contains(&seq) {
                        errors.push(format!(
                            "{path}: value seq {seq} is from a write that failed or was shown not applied"
                        ));
                    }
                    let version = r.stat.map(|s| s.version).unwrap_or(-1);
                    if version < n.acked_sets || version > n.possible_sets {
                        errors.push(format!(
                            "{path}: version {version} outside [acked sets {}, possible sets {}]",
                            n.acked_sets, n.possible_sets
                        ));
                    }
                    n.must_exist = true;
                    n.min_seq = n.min_seq.max(seq);
                    // Indeterminate writes after the observed one were not applied.
                    for s in n.attempted.iter().filter(|s| **s > seq) {
                        n.forbidden.insert(*s);
                    }
                    // What was observed is now the baseline for the version bounds.
                    n.acked_sets = version;
                    n.possible_sets = version;
                }
            }
        }
        if errors.is_empty() {
            Ok(checked)
        } else {
            errors.truncate(20);
            Err(format!(
                "round {round}, writer {}:\n  {}",
                self.id,
                errors.join("\n  ")
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_durability_loop() {
    let rounds = env_num("DURABILITY_ROUNDS", 12) as usize;
    let max_time = Duration::from_secs(env_num("DURABILITY_MAX_SECS", 240));
    let writers_n = env_num("DURABILITY_WRITERS", 8).clamp(1, 64) as usize;
    let seed = env_num(
        "DURABILITY_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    );
    eprintln!("durability: seed {seed} (DURABILITY_SEED={seed} to replay the kill times)");
    let mut rng = StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir = tmp.path().join("member1");
    let started = Instant::now();
    let mut server = Server::start(&data_dir, &[]).await;

    // Setup: one directory per writer (acknowledged before the first crash).
    {
        let mut zn = ZNodesClient::new(server.channel().await);
        zn.create(create_req("/d", Vec::new()))
            .await
            .expect("create /d");
        for w in 0..writers_n {
            zn.create(create_req(&format!("/d/w{w}"), Vec::new()))
                .await
                .expect("create writer dir");
        }
    }
    let mut writers: Vec<Writer> = (0..writers_n)
        .map(|id| Writer {
            id,
            seq: 0,
            next_node: 0,
            nodes: BTreeMap::new(),
            counts: Counts::default(),
            failure_reasons: BTreeMap::new(),
            rng: StdRng::seed_from_u64(seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        })
        .collect();

    let mut done_rounds = 0;
    let mut checked_total = 0u64;
    let mut restart_times = Vec::new();
    let mut per_round_acked = Vec::new();
    while done_rounds < rounds && started.elapsed() < max_time {
        let round = done_rounds + 1;
        let before: u64 = writers.iter().map(|w| w.counts.acked).sum();
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for mut w in writers.drain(..) {
            let ch = server.channel().await;
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                w.run_round(ch, stop, 100_000).await;
                w
            }));
        }
        let kill_after = Duration::from_millis(rng.gen_range(100..=800));
        tokio::time::sleep(kill_after).await;
        server.kill9();
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            let w = tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("a writer did not stop within 30 s of the kill")
                .expect("writer task panicked");
            writers.push(w);
        }
        writers.sort_by_key(|w| w.id);
        let t0 = Instant::now();
        server.restart().await;
        restart_times.push(t0.elapsed());

        // Global checks: nothing unexpected at the top of the tree.
        let ch = server.channel().await;
        let mut zn = ZNodesClient::new(ch.clone());
        let root: BTreeSet<String> = all_children(&mut zn, "/").await.into_iter().collect();
        assert!(
            root.iter().all(|c| c == "d" || c == "baton"),
            "round {round}: unexpected children of /: {root:?}"
        );
        let d: BTreeSet<String> = all_children(&mut zn, "/d").await.into_iter().collect();
        let expect_d: BTreeSet<String> = (0..writers_n).map(|w| format!("w{w}")).collect();
        assert_eq!(d, expect_d, "round {round}: children of /d");

        let mut checks = Vec::new();
        for mut w in writers.drain(..) {
            let ch = ch.clone();
            checks.push(tokio::spawn(async move {
                let r = w.verify(ch, round).await;
                (w, r)
            }));
        }
        let mut failures = Vec::new();
        for c in checks {
            let (w, r) = c.await.expect("verify task panicked");
            match r {
                Ok(n) => checked_total += n,
                Err(e) => failures.push(e),
            }
            writers.push(w);
        }
        writers.sort_by_key(|w| w.id);
        assert!(
            failures.is_empty(),
            "durability violated:\n{}",
            failures.join("\n")
        );
        let after: u64 = writers.iter().map(|w| w.counts.acked).sum();
        per_round_acked.push(after - before);
        eprintln!(
            "durability: round {round}: killed after {kill_after:?}, {} acked, restart+serve {:?}, ok",
            after - before,
            restart_times.last().unwrap()
        );
        done_rounds += 1;
    }

    let mut total = Counts::default();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for w in &writers {
        total += w.counts;
        for (k, v) in &w.failure_reasons {
            *reasons.entry(k.clone()).or_default() += v;
        }
    }
    let nodes: usize = writers.iter().map(|w| w.nodes.len()).sum();
    let max_restart = restart_times.iter().max().copied().unwrap_or_default();
    figures(
        "durability",
        &format!(
        "durability: {done_rounds} rounds in {:?} with {writers_n} writers: {} writes attempted, \
         {} acknowledged, {} failed {:?}, {} indeterminate; {} node checks over {nodes} nodes; \
         acked per round {:?}; max restart-to-serving {:?}",
        started.elapsed(),
        total.attempted,
        total.acked,
        total.failed,
        reasons,
        total.indeterminate,
        checked_total,
        per_round_acked,
        max_restart,
        ),
    );
    assert!(done_rounds >= 1, "no round completed within {max_time:?}");
    if done_rounds < rounds {
        eprintln!("durability: WARNING: time bound reached after {done_rounds}/{rounds} rounds");
    }
    assert!(
        total.acked > 0,
        "no write was ever acknowledged: the test checked nothing"
    );
    server.kill9();
}

/// Creates `count` nodes `/snap/n<i>` with 8 concurrent tasks; returns when all are acked.
async fn fill(ch: Channel, prefix: &str, count: usize) {
    let mut tasks = Vec::new();
    for t in 0..8 {
        let mut zn = ZNodesClient::new(ch.clone());
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            for i in (t..count).step_by(8) {
                let path = format!("{prefix}/n{i:05}");
                zn.create(create_req(&path, format!("value-{i}").into_bytes()))
                    .await
                    .unwrap_or_else(|e| panic!("create {path}: {e}"));
            }
        }));
    }
    for t in tasks {
        t.await.expect("fill task");
    }
}

/// Every `/snap/n<i>` for i < count must hold `value-<i>`, and nothing else may be listed.
async fn check_all(ch: Channel, prefix: &str, count: usize, what: &str) {
    let mut zn = ZNodesClient::new(ch.clone());
    let children = all_children(&mut zn, prefix).await;
    let expect: Vec<String> = (0..count).map(|i| format!("n{i:05}")).collect();
    assert_eq!(
        children.len(),
        count,
        "{what}: number of children of {prefix}"
    );
    assert_eq!(children, expect, "{what}: children of {prefix}");
    let mut tasks = Vec::new();
    for t in 0..8 {
        let mut zn = ZNodesClient::new(ch.clone());
        let prefix = prefix.to_string();
        let what = what.to_string();
        tasks.push(tokio::spawn(async move {
            for i in (t..count).step_by(8) {
                let path = format!("{prefix}/n{i:05}");
                let r = zn
                    .get_data(get_req(&path))
                    .await
                    .unwrap_or_else(|e| panic!("{what}: GetData {path}: {e}"))
                    .into_inner();
                assert_eq!(
                    r.data,
                    format!("value-{i}").into_bytes(),
                    "{what}: data of {path}"
                );
            }
        }));
    }
    for t in tasks {
        t.await.expect("check task");
    }
}

async fn status(ch: Channel) -> v1::StatusResponse {
    ClusterClient::new(ch)
        .status(v1::StatusRequest {})
        .await
        .expect("Cluster.Status")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_after_snapshot_and_log_purge() {
    const N: usize = 1000;
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir = tmp.path().join("member1");
    let flags = ["--snapshot-every", "100", "--keep-logs", "10"];
    let mut server = Server::start(&data_dir, &flags).await;
    let ch = server.channel().await;
    ZNodesClient::new(ch.clone())
        .create(create_req("/snap", Vec::new()))
        .await
        .expect("create /snap");
    let t_fill = Instant::now();
    fill(ch.clone(), "/snap", N).await;
    let fill_time = t_fill.elapsed();

    // A snapshot is built in the background: poll for it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut st = status(ch.clone()).await;
    while st.snapshot_index == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        st = status(ch.clone()).await;
    }
    assert!(
        st.snapshot_index > 0,
        "no snapshot after {N} writes with --snapshot-every 100: {st:?}"
    );
    eprintln!(
        "snapshot: {N} creates in {fill_time:?}; snapshot_index {} applied {} last_log {}",
        st.snapshot_index, st.applied_index, st.last_log_index
    );

    // Crash and recover from snapshot + log tail.
    server.kill9();
    server.restart().await;
    let ch = server.channel().await;
    let st2 = status(ch.clone()).await;
    assert!(
        st2.snapshot_index > 0,
        "snapshot lost across SIGKILL: {st2:?}"
    );
    assert!(
        st2.applied_index >= st.applied_index,
        "applied index went back: {} -> {}",
        st.applied_index,
        st2.applied_index
    );
    check_all(ch.clone(), "/snap", N, "after SIGKILL").await;
    // The log continues after recovery: one more write, acknowledged.
    ZNodesClient::new(ch.clone())
        .create(create_req("/snap-after", b"after".to_vec()))
        .await
        .expect("write after recovery");

    // Graceful stop: exit 0, and the data is still there after another start.
    let t_term = Instant::now();
    let exit = server.terminate(Duration::from_secs(30)).await;
    let term_time = t_term.elapsed();
    assert_eq!(
        exit.code(),
        Some(0),
        "batond exit after SIGTERM: {exit}; log tail:\n{}",
        server.log_tail(4096)
    );
    server.restart().await;
    let ch = server.channel().await;
    check_all(ch.clone(), "/snap", N, "after SIGTERM").await;
    let r = ZNodesClient::new(ch.clone())
        .get_data(get_req("/snap-after"))
        .await
        .expect("/snap-after after SIGTERM restart")
        .into_inner();
    assert_eq!(r.data, b"after");
    let st3 = status(ch).await;
    figures(
        "snapshot-restart",
        &format!(
            "snapshot: {N} creates in {fill_time:?}, snapshot_index {} after them; recovered from \
             SIGKILL and SIGTERM ({term_time:?} to exit 0); final snapshot_index {} applied {} \
             last_log {}; total {:?}",
            st.snapshot_index,
            st3.snapshot_index,
            st3.applied_index,
            st3.last_log_index,
            started.elapsed()
        ),
    );
    server.kill9();
}

/// SIGKILL while a snapshot file is being written (its `.tmp` is seen in the snapshot
/// directory), three times, with a writer going on: after each restart every acknowledged
/// create is there, and the member recovers from whichever snapshot file was complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_during_a_snapshot_build_loses_nothing() {
    const BASE: usize = 3000;
    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir = tmp.path().join("member1");
    let snap_dir = data_dir.join("snapshots");
    let flags = ["--snapshot-every", "60", "--keep-logs", "10"];
    let mut server = Server::start(&data_dir, &flags).await;
    let ch = server.channel().await;
    for p in ["/kb", "/kw"] {
        ZNodesClient::new(ch.clone())
            .create(create_req(p, Vec::new()))
            .await
            .expect("create parent");
    }
    // A tree large enough that writing a snapshot takes a moment.
    fill(ch.clone(), "/kb", BASE).await;

    let acked = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let mut next = 0usize;
    for round in 0..3 {
        let ch = server.channel().await;
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (stop, acked) = (stop.clone(), acked.clone());
            let mut zn = ZNodesClient::new(ch.clone());
            let first = next;
            tokio::spawn(async move {
                let mut i = first;
                while !stop.load(Ordering::SeqCst) {
                    let path = format!("/kw/n{i:06}");
                    if zn
                        .create(create_req(&path, format!("w-{i}").into_bytes()))
                        .await
                        .is_ok()
                    {
                        acked.lock().expect("lock").insert(i);
                    }
                    i += 1;
                }
                i
            })
        };
        // Kill as soon as a snapshot file is being written.
        let snap_dir2 = snap_dir.clone();
        let seen = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(entries) = std::fs::read_dir(&snap_dir2) {
                    if entries
                        .flatten()
                        .any(|e| e.file_name().to_string_lossy().ends_with(".snap.tmp"))
                    {
                        return true;
                    }
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            false
        })
        .await
        .expect("poll");
        server.kill9();
        stop.store(true, Ordering::SeqCst);
        next = writer.await.expect("writer") + 1;
        assert!(
            seen,
            "round {round}: no snapshot file was being written within 30 s"
        );

        server.restart().await;
        let ch = server.channel().await;
        let mut zn = ZNodesClient::new(ch.clone());
        let listed: BTreeSet<usize> = all_children(&mut zn, "/kw")
            .await
            .iter()
            .filter_map(|n| n.strip_prefix('n').and_then(|i| i.parse().ok()))
            .collect();
        let acked_now = acked.lock().expect("lock").clone();
        let lost: Vec<&usize> = acked_now.difference(&listed).collect();
        assert!(
            lost.is_empty(),
            "round {round}: {} acknowledged creates lost across SIGKILL during a snapshot \
             build, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
        eprintln!(
            "round {round}: killed while a snapshot was written; {} acknowledged creates all there",
            acked_now.len()
        );
    }
    check_all(
        server.channel().await,
        "/kb",
        BASE,
        "after the last SIGKILL",
    )
    .await;
}
