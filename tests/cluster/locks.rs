//! Locks and elections on a 3-member cluster: mutual exclusion of fenced writes under
//! contention from every member, also while members are stopped and restarted and the leader
//! changes, and elections whose Observe stream sees every term while the cluster fails over.
//!
//! The fenced-counter tests check the outcome against an independent record: a recursive
//! watch on the test's subtree records every contender creation and deletion and every
//! committed write in log order; replaying it gives the holder of the lock at each write,
//! which must be the writer (a stale holder's write never commits), and the committed writes'
//! tokens must increase with the counter.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton::client::{
    Client, ClientError, CreateOptions, EventType, LeaderResponse, LockOptions, MultiOps, Session,
    WatchKind,
};
use baton::proto::v1::op_result;

use crate::harness::{retry, TestCluster};

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn kind(e: &ClientError) -> String {
    e.reason()
        .unwrap_or_else(|| baton::client::code_name(e.code()).to_string())
}

/// Polls `f` every 20 ms until it returns `Some`, or panics with `what` after `timeout`.
async fn poll<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    for _ in 0..100_000 {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "timed out after {} ms waiting for {what}",
        timeout.as_millis()
    );
}

/// Creates `path` (persistent) through `client`, tolerating NODE_EXISTS, retrying while the
/// cluster settles.
async fn ensure(client: &Client, path: &str, data: &[u8]) {
    retry(SECS(15), 300, || async {
        match client.create(path, data, CreateOptions::persistent()).await {
            Ok(_) => Ok(()),
            Err(e) if e.is("NODE_EXISTS") => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("create {path}: {e}"));
}

// ----- the event recorder -----

/// One recorded event: (zxid, type, path).
type Ev = (u64, EventType, String);

/// A recursive watch on a subtree that follows failures: when its stream breaks it adds the
/// watch again on the next member, from just before the last zxid seen, and skips the events
/// it already has, so the record is every event of the subtree, in order, exactly once.
struct Recorder {
    events: Arc<Mutex<Vec<Ev>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start(client: Client, root: &str) -> Recorder {
        let events: Arc<Mutex<Vec<Ev>>> = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(Self::run(
            client,
            root.to_string(),
            events.clone(),
            ready_tx,
        ));
        tokio::time::timeout(SECS(15), ready_rx)
            .await
            .expect("recorder starts in time")
            .expect("recorder starts");
        Recorder { events, task }
    }

    async fn run(
        client: Client,
        root: String,
        events: Arc<Mutex<Vec<Ev>>>,
        ready: tokio::sync::oneshot::Sender<()>,
    ) {
        let mut ready = Some(ready);
        // Last zxid seen and how many of its events were recorded.
        let mut last: Option<(u64, usize)> = None;
        for _ in 0..10_000 {
            let result: Result<(), ClientError> = async {
                let mut w = client.watcher().await?;
                let from = last.map(|(z, _)| z - 1);
                w.add(&root, WatchKind::PersistentRecursive, from).await?;
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
                let mut skip = last.map_or(0, |(_, n)| n);
                for _ in 0..10_000_000 {
                    let Some((_, ev)) = w.next_event().await? else {
                        return Err(ClientError::WatchClosed);
                    };
                    if let Some((z, _)) = last {
                        if ev.zxid < z {
                            continue;
                        }
                        if ev.zxid == z && skip > 0 {
                            skip -= 1;
                            continue;
                        }
                    }
                    last = match last {
                        Some((z, n)) if z == ev.zxid => Some((z, n + 1)),
                        _ => Some((ev.zxid, 1)),
                    };
                    skip = 0;
                    let t = ev.r#type();
                    events
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((ev.zxid, t, ev.path));
                }
                Ok(())
            }
            .await;
            if let Err(e) = result {
                assert!(
                    !e.is("COMPACTED"),
                    "the recorder cannot resume without a gap: {e}"
                );
                tracing::info!(error = %e, "recorder stream broke; resuming");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn events(&self) -> Vec<Ev> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until the record contains the creation of `path`.
    async fn wait_for(&self, path: &str) {
        poll(SECS(30), &format!("the recorder to see {path}"), || async {
            assert!(
                !self.task.is_finished(),
                "the recorder stopped (see its panic above)"
            );
            self.events()
                .iter()
                .any(|(_, t, p)| *t == EventType::Created && p == path)
                .then_some(())
        })
        .await
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ----- the fenced counter -----

/// Paths of one fenced-counter run.
#[derive(Clone)]
struct Paths {
    root: String,
    lock: String,
    counter: String,
    hist: String,
}

impl Paths {
    fn new(root: &str) -> Paths {
        Paths {
            root: root.to_string(),
            lock: format!("{root}/lock"),
            counter: format!("{root}/counter"),
            hist: format!("{root}/hist"),
        }
    }

    fn hist_entry(&self, n: u64) -> String {
        format!("{}/{n:010}", self.hist)
    }
}

/// What one worker did.
#[derive(Debug, Default)]
struct Outcomes {
    /// Fenced increments acknowledged as committed: (n, token, attempt id).
    committed: Vec<(u64, u64, String)>,
    /// Fenced increments whose outcome is unknown (the call failed): attempt ids.
    unknown: Vec<String>,
    /// Fenced increments refused (not succeeded): (attempt id, reason).
    refused: Vec<(String, String)>,
    /// Writes attempted by a paused holder after its session expired: (attempt id, reason);
    /// each must be refused with BAD_FENCE.
    stale: Vec<(String, Option<String>)>,
    /// Failed acquires by kind.
    acquire_errors: BTreeMap<String, u64>,
    grants: u64,
}

/// What the workers share.
struct Board {
    stop: AtomicBool,
    /// Workers holding the lock right now in this process.
    inside: AtomicU64,
    /// Grants made while another worker of this process was inside.
    overlaps: AtomicU64,
    /// Acknowledged fenced increments, all workers.
    progress: AtomicU64,
}

/// The reason of the failed op of a Multi that did not succeed.
fn failed_reason(r: &baton::client::MultiResponse) -> String {
    r.results
        .get(r.failed_op_index as usize)
        .and_then(|o| match &o.result {
            Some(op_result::Result::Error(e)) => Some(e.reason.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "?".into())
}

/// One contender: loops acquire → read → fenced increment → release. Worker `pauser`
/// sometimes "freezes" while holding: its keepalives stop until the session expired, then it
/// tries its write with the old token.
async fn worker(
    i: usize,
    client: Client,
    paths: Paths,
    board: Arc<Board>,
    session_timeout: Duration,
    pauser: bool,
    deadline: Instant,
) -> Outcomes {
    let mut out = Outcomes::default();
    let mut session: Option<Session> = None;
    for k in 0..100_000u64 {
        if board.stop.load(Ordering::SeqCst) || Instant::now() >= deadline {
            break;
        }
        let id = format!("w{i}-{k}");
        if !session.as_ref().is_some_and(|s| s.is_alive()) {
            match client.open_session(session_timeout).await {
                Ok(s) => session = Some(s),
                Err(e) => {
                    *out.acquire_errors
                        .entry(format!("SESSION_{}", kind(&e)))
                        .or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let Some(s) = session.as_ref() else { continue };
        let guard = match client
            .lock(
                &paths.lock,
                s,
                LockOptions::exclusive().wait(SECS(5)).data(id.clone()),
            )
            .await
        {
            Ok(g) => g,
            Err(e) => {
                *out.acquire_errors.entry(kind(&e)).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        out.grants += 1;
        if board.inside.fetch_add(1, Ordering::SeqCst) != 0 {
            board.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        let (node, token) = (guard.lock_node().to_string(), guard.fencing_token());
        let read = client.get_data(&paths.counter).await;
        let Ok((data, stat)) = read else {
            board.inside.fetch_sub(1, Ordering::SeqCst);
            let _ = guard.release().await;
            continue;
        };
        let n: u64 = String::from_utf8_lossy(&data).parse().unwrap_or(u64::MAX);
        assert_ne!(n, u64::MAX, "counter holds {data:?}");
        let ops = MultiOps::new()
            .check_fence(&node, token)
            .set_data(&paths.counter, (n + 1).to_string(), stat.version)
            .create(
                &paths.hist_entry(n + 1),
                format!("{token} {id}"),
                CreateOptions::persistent(),
            );

        if pauser && k % 4 == 3 {
            // Frozen while holding: the keepalives stop (the node stays: it is not
            // released, only the session's end can remove it).
            board.inside.fetch_sub(1, Ordering::SeqCst);
            let _ = guard.leak();
            session = None;
            poll(
                SECS(30),
                "the paused holder's fence to become invalid",
                || async {
                    matches!(client.validate_fence(&node, token).await, Ok(false)).then_some(())
                },
            )
            .await;
            // Thawed: writes with the token it still has, at the version it read.
            let outcome = retry(SECS(20), 200, || async {
                client.multi(ops.clone()).await.map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| panic!("stale write attempt: {e}"));
            let reason = (!outcome.succeeded).then(|| failed_reason(&outcome));
            if reason.as_deref() == Some("BAD_FENCE") {
                assert_eq!(outcome.failed_op_index, 0);
            }
            out.stale.push((id, reason));
            continue;
        }

        match client.multi(ops).await {
            Ok(r) if r.succeeded => {
                out.committed.push((n + 1, token, id));
                board.progress.fetch_add(1, Ordering::SeqCst);
            }
            Ok(r) => out.refused.push((id, failed_reason(&r))),
            Err(_) => out.unknown.push(id),
        }
        board.inside.fetch_sub(1, Ordering::SeqCst);
        let _ = guard.release().await;
    }
    if let Some(s) = session {
        let _ = s.close().await;
    }
    out
}

/// The sequence suffix of a contender node name.
fn contender_seq(path: &str, lock: &str) -> Option<u64> {
    let name = path.strip_prefix(lock)?.strip_prefix("/lock-")?;
    name.parse().ok()
}

/// Starts `per_member` workers per member (the first of them pauses now and then), each
/// with a client that starts at its member and fails over to the others.
async fn start_workers(
    c: &TestCluster,
    paths: &Paths,
    board: &Arc<Board>,
    per_member: usize,
    deadline: Instant,
) -> Vec<tokio::task::JoinHandle<Outcomes>> {
    let mut tasks = Vec::new();
    let mut i = 0;
    for id in c.ids() {
        for _ in 0..per_member {
            let client = c.client_from(id, SECS(3)).await;
            let (paths, board) = (paths.clone(), board.clone());
            let pauser = i == 0;
            let timeout = if pauser {
                Duration::from_millis(1500)
            } else {
                SECS(4)
            };
            tasks.push(tokio::spawn(worker(
                i, client, paths, board, timeout, pauser, deadline,
            )));
            i += 1;
        }
    }
    tasks
}

/// Joins the workers and checks everything against the cluster's final state and the
/// recorder. Returns the number of committed increments.
async fn verify(
    c: &TestCluster,
    paths: &Paths,
    recorder: &Recorder,
    tasks: Vec<tokio::task::JoinHandle<Outcomes>>,
) -> (u64, Vec<Outcomes>) {
    let mut all = Vec::new();
    for t in tasks {
        all.push(
            tokio::time::timeout(SECS(60), t)
                .await
                .expect("workers finish")
                .expect("worker task"),
        );
    }
    let client = c.client_all().await;
    // Everything the recorder must see is before this sentinel.
    let sentinel = format!("{}/sentinel", paths.root);
    ensure(&client, &sentinel, b"").await;
    recorder.wait_for(&sentinel).await;

    let data = retry(SECS(15), 300, || async {
        client
            .get_data(&paths.counter)
            .await
            .map(|(d, _)| d)
            .map_err(|e| e.to_string())
    })
    .await
    .expect("read counter");
    let total: u64 = String::from_utf8_lossy(&data).parse().expect("a number");
    let names = client.get_all_children(&paths.hist).await.expect("history");
    let want: Vec<String> = (1..=total).map(|n| format!("{n:010}")).collect();
    let mut names_sorted = names.clone();
    names_sorted.sort();
    assert_eq!(
        names_sorted, want,
        "one history entry per increment, 1..={total}"
    );
    // n → (token, attempt id)
    let mut hist: BTreeMap<u64, (u64, String)> = BTreeMap::new();
    for n in 1..=total {
        let (d, _) = client.get_data(&paths.hist_entry(n)).await.expect("entry");
        let s = String::from_utf8_lossy(&d).to_string();
        let (token, id) = s.split_once(' ').expect("token and id");
        hist.insert(n, (token.parse().expect("token"), id.to_string()));
    }

    // Tokens increase along the counter: no write of an older holder after a newer one.
    let mut prev = 0u64;
    for (n, (token, id)) in &hist {
        assert!(
            *token > prev,
            "increment {n} by {id} has token {token} after {prev}"
        );
        prev = *token;
    }
    // Every acknowledged increment is in the history as acknowledged; every history entry is
    // an acknowledged or unknown-outcome attempt, never a refused or stale one.
    let mut unknown: HashSet<String> = HashSet::new();
    let mut refused: HashSet<String> = HashSet::new();
    let mut acknowledged = 0u64;
    for o in &all {
        for (n, token, id) in &o.committed {
            assert_eq!(
                hist.get(n),
                Some(&(*token, id.clone())),
                "acknowledged {id}"
            );
            acknowledged += 1;
        }
        unknown.extend(o.unknown.iter().cloned());
        refused.extend(o.refused.iter().map(|(id, _)| id.clone()));
        for (id, reason) in &o.stale {
            assert_eq!(
                reason.as_deref(),
                Some("BAD_FENCE"),
                "a paused holder's write with its old token ({id}) must be refused by the fence"
            );
            refused.insert(id.clone());
        }
    }
    let by_id: HashMap<&str, u64> = hist.iter().map(|(n, (_, id))| (id.as_str(), *n)).collect();
    let mut unknown_committed = 0u64;
    for (id, n) in &by_id {
        assert!(
            !refused.contains(*id),
            "refused attempt {id} committed as increment {n}"
        );
        if unknown.contains(*id) {
            unknown_committed += 1;
        }
    }
    assert_eq!(
        total,
        acknowledged + unknown_committed,
        "the counter equals the successful fenced increments"
    );

    // Replay the record: at each committed increment, the writer held the lock.
    let events = recorder.events();
    let mut live: BTreeMap<u64, String> = BTreeMap::new(); // token → node
    let mut checked = 0u64;
    for (zxid, t, p) in &events {
        if let Some(seq) = contender_seq(p, &paths.lock) {
            match t {
                EventType::Created => {
                    live.insert((zxid << 20) | (seq & 0xF_FFFF), p.clone());
                }
                EventType::Deleted => live.retain(|_, node| node != p),
                _ => {}
            }
        } else if *t == EventType::Created && p.starts_with(&format!("{}/", paths.hist)) {
            let n: u64 = p
                .rsplit('/')
                .next()
                .and_then(|s| s.parse().ok())
                .expect("entry");
            let (token, id) = &hist[&n];
            let holder = live.keys().next().copied();
            assert_eq!(
                holder,
                Some(*token),
                "increment {n} by {id} (token {token}) committed at zxid {zxid} while the \
                 holder was {holder:?} ({:?})",
                live.values().next()
            );
            checked += 1;
        }
    }
    assert_eq!(checked, total, "the record has every increment");
    (total, all)
}

fn summary(total: u64, all: &[Outcomes], board: &Board) -> String {
    let grants: u64 = all.iter().map(|o| o.grants).sum();
    let unknown: usize = all.iter().map(|o| o.unknown.len()).sum();
    let refused: Vec<&(String, String)> = all.iter().flat_map(|o| o.refused.iter()).collect();
    let stale: usize = all.iter().map(|o| o.stale.len()).sum();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for o in all {
        for (k, v) in &o.acquire_errors {
            *errors.entry(k.clone()).or_default() += v;
        }
    }
    format!(
        "increments {total}, grants {grants}, unknown outcomes {unknown}, refused {refused:?}, \
         stale writes refused {stale}, acquire errors {errors:?}, local overlaps {}",
        board.overlaps.load(Ordering::SeqCst)
    )
}

/// Six clients, two on each member, increment a counter under the lock with fenced writes;
/// one of them freezes now and then while holding until its session expires, then writes with
/// its old token. Nothing fails: no two grants overlap in this process, every stale write is
/// refused by the fence, the counter equals the acknowledged increments.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fenced_counter_is_mutually_exclusive_under_contention_from_every_member() {
    let c = TestCluster::start(3).await;
    let paths = Paths::new("/fence1");
    let client = c.client_all().await;
    ensure(&client, &paths.root, b"").await;
    let recorder = Recorder::start(c.client_from(2, SECS(3)).await, &paths.root).await;
    ensure(&client, &paths.counter, b"0").await;
    ensure(&client, &paths.hist, b"").await;
    let board = Arc::new(Board {
        stop: AtomicBool::new(false),
        inside: AtomicU64::new(0),
        overlaps: AtomicU64::new(0),
        progress: AtomicU64::new(0),
    });
    let deadline = Instant::now() + SECS(60);
    let tasks = start_workers(&c, &paths, &board, 2, deadline).await;
    poll(SECS(40), "150 fenced increments", || async {
        (board.progress.load(Ordering::SeqCst) >= 150).then_some(())
    })
    .await;
    board.stop.store(true, Ordering::SeqCst);
    let (total, all) = verify(&c, &paths, &recorder, tasks).await;
    let s = summary(total, &all, &board);
    eprintln!("{s}");
    assert_eq!(board.overlaps.load(Ordering::SeqCst), 0, "{s}");
    assert!(
        all.iter().all(|o| o.unknown.is_empty()),
        "no faults, no unknown outcomes: {s}"
    );
    assert!(
        all.iter().all(|o| o.refused.is_empty()),
        "a holder's fenced write commits: {s}"
    );
    assert!(
        all.iter().map(|o| o.stale.len()).sum::<usize>() >= 2,
        "the paused holder tried stale writes: {s}"
    );
    assert!(
        all.iter().all(|o| o.committed.len() > 1),
        "every worker got the lock: {s}"
    );
}

/// The same contention while members are stopped and restarted and the leader changes: the
/// leader is stopped, then a follower, then the (new) leader, each restarted after the others
/// made progress without it. Grants may overlap in this process when a session is lost in a
/// failover, but no stale write commits: the record shows the writer held the lock at every
/// committed increment, and the counter equals the successful fenced increments.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fenced_counter_stays_exclusive_while_members_stop_restart_and_the_leader_changes() {
    let mut c = TestCluster::start(3).await;
    let paths = Paths::new("/fence2");
    let client = c.client_all().await;
    ensure(&client, &paths.root, b"").await;
    let recorder = Recorder::start(c.client_from(1, SECS(3)).await, &paths.root).await;
    ensure(&client, &paths.counter, b"0").await;
    ensure(&client, &paths.hist, b"").await;
    let board = Arc::new(Board {
        stop: AtomicBool::new(false),
        inside: AtomicU64::new(0),
        overlaps: AtomicU64::new(0),
        progress: AtomicU64::new(0),
    });
    let deadline = Instant::now() + SECS(150);
    let tasks = start_workers(&c, &paths, &board, 2, deadline).await;
    let progress_by = |more: u64| {
        let board = board.clone();
        async move {
            let from = board.progress.load(Ordering::SeqCst);
            poll(
                SECS(30),
                &format!("{more} more fenced increments"),
                || async { (board.progress.load(Ordering::SeqCst) >= from + more).then_some(()) },
            )
            .await
        }
    };
    progress_by(20).await;
    let mut leaders = Vec::new();
    for round in 0..3 {
        let leader = c.wait_for_leader(SECS(20)).await;
        leaders.push(leader);
        let victim = if round == 1 {
            c.running()
                .into_iter()
                .find(|&id| id != leader)
                .expect("a follower")
        } else {
            leader
        };
        tracing::info!(round, victim, leader, "stopping a member");
        c.stop(victim).await;
        if victim == leader {
            c.wait_for_new_leader(leader, SECS(20)).await;
        }
        progress_by(15).await;
        c.restart(victim).await;
        progress_by(15).await;
    }
    board.stop.store(true, Ordering::SeqCst);
    let (total, all) = verify(&c, &paths, &recorder, tasks).await;
    let s = summary(total, &all, &board);
    eprintln!("leaders {leaders:?}; {s}");
    assert!(total >= 110, "{s}");
    for o in &all {
        for (id, reason) in &o.refused {
            // A holder whose session was lost in a failover is fenced off: BAD_FENCE. A
            // BAD_VERSION would mean another writer got in while this one held the lock.
            assert_eq!(reason, "BAD_FENCE", "{id} refused: {s}");
        }
    }
    c.wait_converged(SECS(30)).await;
}

// ----- elections -----

/// Candidates campaign through every member (each a session; on winning they resign, or
/// proclaim and close, or crash and let the session expire) while the cluster's own leader
/// is failed over twice. An Observe stream on one member reports terms that only increase
/// (a repeated term is a new value) and include every term a Campaign won; each term is won
/// once; Proclaim with a term that no longer leads is BAD_FENCE.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn election_terms_are_observed_in_order_across_leader_failover() {
    const CANDIDATES: usize = 3;
    let mut c = TestCluster::start(3).await;
    let leader = c.wait_for_leader(SECS(10)).await;
    let observer_member = c
        .running()
        .into_iter()
        .find(|&id| id != leader)
        .expect("a follower");
    let oc = c.client(observer_member).await;
    ensure(&oc, "/el", b"").await;
    let mut stream = oc.observe("/el/leader").await.expect("observe");
    let seen: Arc<Mutex<Vec<LeaderResponse>>> = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let observer = tokio::spawn(async move {
        for _ in 0..100_000 {
            match stream.next_leader().await {
                Ok(Some(l)) => seen2.lock().unwrap_or_else(|e| e.into_inner()).push(l),
                Ok(None) => return Some("stream ended".to_string()),
                Err(e) => return Some(e.to_string()),
            }
        }
        None
    });

    let stop = Arc::new(AtomicBool::new(false));
    let won: Arc<Mutex<Vec<(u64, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let bad_fence_checks = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let deadline = Instant::now() + SECS(120);
    for (i, id) in c.ids().into_iter().enumerate().take(CANDIDATES) {
        let client = c.client_from(id, SECS(3)).await;
        let (stop, won, bad_fence_checks) = (stop.clone(), won.clone(), bad_fence_checks.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..10_000u64 {
                if stop.load(Ordering::SeqCst) || Instant::now() >= deadline {
                    break;
                }
                let s = match client.open_session(Duration::from_millis(2500)).await {
                    Ok(s) => s,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let value = format!("c{i}r{round}");
                let l = match client
                    .campaign("/el/leader", &s, value.clone(), Some(SECS(10)))
                    .await
                {
                    Ok(l) => l,
                    Err(_) => {
                        let _ = s.close().await;
                        continue;
                    }
                };
                won.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((l.term, value));
                match round % 3 {
                    0 => {
                        let _ = client.resign(&l).await;
                        let _ = s.close().await;
                        // The old term no longer leads.
                        match client.proclaim(&l, "late").await {
                            Err(e) if e.is("BAD_FENCE") => {
                                bad_fence_checks.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(e)
                                if e.is_retryable()
                                    || e.code() == tonic::Code::DeadlineExceeded => {}
                            other => panic!("proclaim after resigning: {other:?}"),
                        }
                    }
                    1 => {
                        let _ = client.proclaim(&l, format!("{i}-proclaimed-{round}")).await;
                        let _ = s.close().await;
                    }
                    _ => drop(s), // crash: the session expires
                }
            }
        }));
    }
    let wins = |n: usize| {
        let won = won.clone();
        async move {
            let from = won.lock().unwrap_or_else(|e| e.into_inner()).len();
            poll(SECS(40), &format!("{n} more elections won"), || async {
                (won.lock().unwrap_or_else(|e| e.into_inner()).len() >= from + n).then_some(())
            })
            .await
        }
    };
    wins(4).await;
    for round in 0..2 {
        let leader = c.wait_for_leader(SECS(20)).await;
        if leader != observer_member {
            tracing::info!(round, leader, "stopping the leader");
            c.stop(leader).await;
            c.wait_for_new_leader(leader, SECS(20)).await;
            wins(3).await;
            c.restart(leader).await;
        } else {
            // Keep the observer's stream: cut its member off instead of stopping it.
            tracing::info!(
                round,
                leader,
                "isolating the leader (the observer's member)"
            );
            c.isolate(leader);
            c.wait_for_new_leader(leader, SECS(20)).await;
            wins(3).await;
            c.heal();
        }
        wins(3).await;
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        tokio::time::timeout(SECS(60), t)
            .await
            .expect("candidates finish")
            .expect("candidate task");
    }
    let won = won.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let terms: Vec<u64> = won.iter().map(|(t, _)| *t).collect();
    let distinct: HashSet<u64> = terms.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        terms.len(),
        "each term is won once: {terms:?}"
    );
    let max = terms.iter().copied().max().expect("elections were won");
    let seen = poll(SECS(30), "Observe to report the last term won", || async {
        if observer.is_finished() {
            panic!(
                "the observe stream ended: {:?}",
                seen.lock().map(|s| s.len())
            );
        }
        let s = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        s.iter().any(|l| l.term == max).then_some(s)
    })
    .await;
    let mut prev: Option<&LeaderResponse> = None;
    for l in seen.iter().filter(|l| l.has_leader) {
        if let Some(p) = prev {
            assert!(
                l.term > p.term || (l.term == p.term && l.value != p.value),
                "observed term {} {:?} after {} {:?}",
                l.term,
                String::from_utf8_lossy(&l.value),
                p.term,
                String::from_utf8_lossy(&p.value)
            );
        }
        prev = Some(l);
    }
    let observed: HashSet<u64> = seen
        .iter()
        .filter(|l| l.has_leader)
        .map(|l| l.term)
        .collect();
    for (t, value) in &won {
        assert!(
            observed.contains(t),
            "term {t} won by {value} was not observed"
        );
    }
    let checks = bad_fence_checks.load(Ordering::SeqCst);
    eprintln!(
        "elections won {}, observed {} messages, BAD_FENCE checks {checks}",
        won.len(),
        seen.len()
    );
    assert!(
        checks >= 1,
        "Proclaim with a resigned term was refused at least once"
    );
    observer.abort();
}

/// A waiter parked on a member that shuts down is answered promptly (UNAVAILABLE, so the
/// client may queue again elsewhere), not after its whole wait, and the member withdraws its
/// queue place before it stops: the lock does not stay blocked by a contender nobody waits
/// for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waiter_on_a_stopping_member_is_answered_and_withdrawn() {
    let mut c = TestCluster::start(3).await;
    let leader = c.wait_for_leader(SECS(10)).await;
    let other = c
        .running()
        .into_iter()
        .find(|&id| id != leader)
        .expect("a follower");
    let holder_client = c.client(leader).await;
    let hs = holder_client.open_session(SECS(10)).await.expect("session");
    let held = holder_client
        .lock("/stopq", &hs, LockOptions::exclusive())
        .await
        .expect("lock");
    // The waiter talks to `other` only (no failover), with a session kept alive through
    // the leader, so only the member's shutdown ends its wait.
    let waiter_client = c.client_timeout(other, SECS(3)).await;
    let ws = holder_client.open_session(SECS(10)).await.expect("session");
    let ws_id = ws.id();
    let waiting = tokio::spawn(async move {
        let began = Instant::now();
        let r = waiter_client
            .lock("/stopq", &ws, LockOptions::exclusive().wait(SECS(30)))
            .await;
        (r.map(|g| g.leak()), began.elapsed(), ws)
    });
    poll(SECS(10), "the waiter to be queued", || async {
        let q = holder_client.inspect("/stopq").await.ok()?;
        (q.waiters.len() == 1).then_some(())
    })
    .await;
    c.stop(other).await;
    let (result, waited, _ws) = tokio::time::timeout(SECS(20), waiting)
        .await
        .expect("the waiter is answered well before its 30 s wait")
        .expect("task");
    let err = result.expect_err("not granted");
    assert!(err.is_retryable(), "{err}");
    assert!(waited < SECS(10), "answered after {waited:?}: {err}");
    eprintln!("waiter answered after {waited:?}: {err}");
    poll(
        SECS(10),
        "the stopped member's waiter to leave the queue",
        || async {
            let q = holder_client.inspect("/stopq").await.ok()?;
            q.waiters
                .iter()
                .all(|w| w.session_id != ws_id)
                .then_some(())
        },
    )
    .await;
    held.release().await.expect("release");
    c.restart(other).await;
}
