//! The fenced lock counter, shared by the in-process cluster tests (`tests/it/cluster/locks.rs`)
//! and the Docker fault suite (`tests/it/docker/locks.rs`).
//!
//! Workers loop: acquire the lock `ROOT/lock` (exclusive, each with its own session) → read
//! the counter `ROOT/counter` → one `Multi [CheckFence(node, token), SetData(counter, n + 1,
//! version), Create(ROOT/hist/n+1 = "token id")]` → release. One worker, the *pauser*, now and
//! then freezes while holding: its keepalives stop until its fence no longer holds, then it
//! writes with the token it still has, which must be refused with `BAD_FENCE`.
//!
//! [`check`] compares the outcome with two independent records: the history entries (one per
//! committed increment, naming the token and the attempt) and an [`EventLog`], a recursive
//! watch on the subtree that follows failovers and records every event exactly once, in log
//! order. Replaying the event log gives the lock's holder at every committed increment (the
//! live contender with the lowest token), which must be the writer. It also checks that
//! tokens increase along the counter, that every acknowledged increment is there, that no
//! refused or stale attempt committed, and that the counter equals the acknowledged
//! increments plus the committed ones among those whose outcome is unknown.
//!
//! Nothing here panics on a finding: problems are returned as text, so a suite can report
//! them with its other figures.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton::client::{
    Client, ClientError, CreateOptions, EventType, LockOptions, MultiOps, MultiResponse, Session,
    WatchKind,
};
use baton::proto::v1::op_result;

/// How long one worker waits in the lock queue per attempt.
const ACQUIRE_WAIT: Duration = Duration::from_secs(5);
/// How long a frozen holder waits for its fence to become invalid.
const FREEZE_BOUND: Duration = Duration::from_secs(30);
/// How long the final reads and the stale write keep retrying.
const RETRY_BOUND: Duration = Duration::from_secs(30);

/// The reason, or the status code's name, of a client error.
pub fn error_kind(e: &ClientError) -> String {
    e.reason().map_or_else(
        || baton::client::code_name(e.code()).to_string(),
        |r| r.to_string(),
    )
}

/// Retries `f` every 100 ms until it succeeds or `bound` passes (at most 1000 attempts).
async fn retry<T, F, Fut>(bound: Duration, mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + bound;
    let mut last = String::from("not attempted");
    for _ in 0..1000 {
        match tokio::time::timeout(Duration::from_secs(10), f()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => last = e,
            Err(_) => last = "timed out".into(),
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last)
}

/// Creates `path` (persistent) unless it exists, retrying while the cluster settles.
pub async fn ensure(client: &Client, path: &str, data: &[u8]) -> Result<(), String> {
    retry(RETRY_BOUND, || async {
        match client.create(path, data, CreateOptions::persistent()).await {
            Ok(_) => Ok(()),
            Err(e) if e.is(baton::client::Reason::NodeExists) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .map_err(|e| format!("create {path}: {e}"))
}

// ----- the event log -----

/// One recorded event: (zxid, type, path).
pub type Ev = (u64, EventType, String);

/// A recursive watch on a subtree that follows failures: when its stream breaks it adds the
/// watch again through the client (on whichever member still holds the events), from just
/// before the last zxid seen, and skips the events it already has, so the record is every
/// event of the subtree, in order, exactly once. A gap no member can close (`COMPACTED`)
/// ends it with a failure.
pub struct EventLog {
    events: Arc<Mutex<Vec<Ev>>>,
    failure: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl EventLog {
    /// Starts the watch; returns once it is registered.
    pub async fn start(client: Client, root: &str) -> Result<EventLog, String> {
        let events: Arc<Mutex<Vec<Ev>>> = Arc::default();
        let failure: Arc<Mutex<Option<String>>> = Arc::default();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(Self::run(
            client,
            root.to_string(),
            events.clone(),
            failure.clone(),
            ready_tx,
        ));
        match tokio::time::timeout(Duration::from_secs(30), ready_rx).await {
            Ok(Ok(())) => Ok(EventLog {
                events,
                failure,
                task,
            }),
            _ => {
                task.abort();
                Err(format!("the event log on {root} did not start within 30 s"))
            }
        }
    }

    async fn run(
        client: Client,
        root: String,
        events: Arc<Mutex<Vec<Ev>>>,
        failure: Arc<Mutex<Option<String>>>,
        ready: tokio::sync::oneshot::Sender<()>,
    ) {
        let mut ready = Some(ready);
        // Last zxid seen and how many of its events were recorded.
        let mut last: Option<(u64, usize)> = None;
        for _ in 0..100_000 {
            let result: Result<(), ClientError> = async {
                // Resumes on whichever member still holds the events after `from` (a member
                // that restarted keeps only the events since).
                let from = last.map(|(z, _)| z - 1);
                let (mut w, _, _) = client
                    .watch_from(&root, WatchKind::PersistentRecursive, from)
                    .await?;
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
                let mut skip = last.map_or(0, |(_, n)| n);
                for _ in 0..100_000_000u64 {
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
                if e.is(baton::client::Reason::Compacted) {
                    *failure.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(format!("the event log cannot resume without a gap: {e}"));
                    return;
                }
                tracing::info!(error = %e, "event log stream broke; resuming");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn events(&self) -> Vec<Ev> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn failure(&self) -> Option<String> {
        if let Some(f) = self
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Some(f);
        }
        self.task
            .is_finished()
            .then(|| "the event log stopped".to_string())
    }

    /// Waits until the record contains the creation of `path`.
    pub async fn wait_for(&self, path: &str, bound: Duration) -> Result<(), String> {
        let deadline = Instant::now() + bound;
        for _ in 0..1_000_000 {
            if let Some(f) = self.failure() {
                return Err(f);
            }
            if self
                .events()
                .iter()
                .any(|(_, t, p)| *t == EventType::Created && p == path)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(format!(
            "the event log did not see {path} within {} s",
            bound.as_secs()
        ))
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ----- the workers -----

/// Paths of one fenced-counter run.
#[derive(Clone, Debug)]
pub struct Paths {
    pub root: String,
    pub lock: String,
    pub counter: String,
    pub hist: String,
}

impl Paths {
    pub fn new(root: &str) -> Paths {
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

    /// Creates the root, the counter (at 0) and the history parent.
    pub async fn create(&self, client: &Client) -> Result<(), String> {
        ensure(client, &self.root, b"").await?;
        ensure(client, &self.counter, b"0").await?;
        ensure(client, &self.hist, b"").await
    }
}

/// What a frozen holder's write with its old token came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stale {
    /// Refused, with this reason (`BAD_FENCE` is the only right one).
    Refused(String),
    /// Committed: a violation.
    Committed,
    /// No answer within the retry bound (it must then not be in the history).
    Unknown(String),
    /// The fence never became invalid within the bound; nothing was written.
    NeverInvalid,
}

/// What one worker did.
#[derive(Debug, Default)]
pub struct Outcomes {
    /// Fenced increments acknowledged as committed: (n, token, attempt id).
    pub committed: Vec<(u64, u64, String)>,
    /// Fenced increments whose outcome is unknown (the call failed): attempt ids.
    pub unknown: Vec<String>,
    /// Fenced increments refused (not succeeded): (attempt id, reason).
    pub refused: Vec<(String, String)>,
    /// Writes attempted by a frozen holder after its fence became invalid.
    pub stale: Vec<(String, Stale)>,
    /// Failed acquires (and session opens) by kind.
    pub acquire_errors: BTreeMap<String, u64>,
    /// Counter reads that did not return a number.
    pub bad_reads: Vec<String>,
    pub grants: u64,
}

/// What the workers share.
#[derive(Default)]
pub struct Board {
    pub stop: AtomicBool,
    /// Workers holding the lock right now in this process.
    pub inside: AtomicU64,
    /// Grants made while another worker of this process held the lock (as the clients saw
    /// it: a holder whose session ended without its knowing still believes it holds).
    pub overlaps: AtomicU64,
    /// Acknowledged fenced increments, all workers.
    pub progress: AtomicU64,
}

/// The reason of the failed op of a Multi that did not succeed.
fn failed_reason(r: &MultiResponse) -> String {
    r.results
        .get(r.failed_op_index as usize)
        .and_then(|o| match &o.result {
            Some(op_result::Result::Error(e)) => Some(e.reason.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "?".into())
}

/// One worker's settings.
#[derive(Clone, Debug)]
pub struct WorkerSpec {
    pub id: usize,
    pub session_timeout: Duration,
    /// Freezes while holding on every fourth grant.
    pub pauser: bool,
    /// Self-check of [`check`]: the frozen holder, once thawed, reads the counter again and
    /// writes *without* the fence, as a client that trusts its lock would. Such a run must be
    /// found wrong.
    pub unfenced_stale_writes: bool,
    pub deadline: Instant,
}

/// One contender: loops acquire → read → fenced increment → release until `board.stop` or
/// the deadline.
pub async fn worker(client: Client, paths: Paths, board: Arc<Board>, spec: WorkerSpec) -> Outcomes {
    let mut out = Outcomes::default();
    let mut session: Option<Session> = None;
    for k in 0..1_000_000u64 {
        if board.stop.load(Ordering::SeqCst) || Instant::now() >= spec.deadline {
            break;
        }
        let id = format!("w{}-{k}", spec.id);
        if !session.as_ref().is_some_and(|s| s.is_alive()) {
            match client.open_session(spec.session_timeout).await {
                Ok(s) => session = Some(s),
                Err(e) => {
                    *out.acquire_errors
                        .entry(format!("SESSION_{}", error_kind(&e)))
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
                LockOptions::exclusive().wait(ACQUIRE_WAIT).data(id.clone()),
            )
            .await
        {
            Ok(g) => g,
            Err(e) => {
                *out.acquire_errors.entry(error_kind(&e)).or_default() += 1;
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
        let Ok(n) = String::from_utf8_lossy(&data).parse::<u64>() else {
            out.bad_reads.push(format!("{id}: counter holds {data:?}"));
            board.inside.fetch_sub(1, Ordering::SeqCst);
            let _ = guard.release().await;
            continue;
        };
        let ops = MultiOps::new()
            .check_fence(&node, token)
            .set_data(&paths.counter, (n + 1).to_string(), stat.version)
            .create(
                &paths.hist_entry(n + 1),
                format!("{token} {id}"),
                CreateOptions::persistent(),
            );

        if spec.pauser && k % 4 == 3 {
            // Frozen while holding: the keepalives stop (the node stays: it is not
            // released, only the session's end can remove it).
            board.inside.fetch_sub(1, Ordering::SeqCst);
            let _ = guard.leak();
            session = None;
            let invalid = retry(FREEZE_BOUND, || async {
                match client.validate_fence(&node, token).await {
                    Ok(false) => Ok(()),
                    Ok(true) => Err("still valid".to_string()),
                    Err(e) => Err(e.to_string()),
                }
            })
            .await;
            if invalid.is_err() {
                out.stale.push((id, Stale::NeverInvalid));
                continue;
            }
            // Thawed: writes with the token it still has, at the version it read. It can
            // never commit, so retrying after an unknown outcome is safe.
            let outcome = if spec.unfenced_stale_writes {
                unfenced_increment(&client, &paths, token, &id, &ops).await
            } else {
                retry(RETRY_BOUND, || async {
                    client.multi(ops.clone()).await.map_err(|e| e.to_string())
                })
                .await
            };
            let stale = match outcome {
                Ok(r) if r.succeeded => Stale::Committed,
                Ok(r) if failed_reason(&r) == "BAD_FENCE" && r.failed_op_index != 0 => {
                    Stale::Refused(format!("BAD_FENCE at op {}", r.failed_op_index))
                }
                Ok(r) => Stale::Refused(failed_reason(&r)),
                Err(e) => Stale::Unknown(e),
            };
            out.stale.push((id, stale));
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

/// What a client that trusts its expired lock does: increments the counter without the fence,
/// reading it again and retrying (bounded) when another holder's increment got in between
/// (`BAD_VERSION`, `NODE_EXISTS`), as it would after any lost compare-and-set.
async fn unfenced_increment(
    client: &Client,
    paths: &Paths,
    token: u64,
    id: &str,
    fenced: &MultiOps,
) -> Result<MultiResponse, String> {
    let mut last = Err("not attempted".to_string());
    for _ in 0..20 {
        let ops = unfenced(client, paths, token, id)
            .await
            .unwrap_or_else(|| fenced.clone());
        last = retry(RETRY_BOUND, || async {
            client.multi(ops.clone()).await.map_err(|e| e.to_string())
        })
        .await;
        match &last {
            Ok(r)
                if !r.succeeded
                    && matches!(failed_reason(r).as_str(), "BAD_VERSION" | "NODE_EXISTS") => {}
            _ => break,
        }
    }
    last
}

/// The increment a client that trusts its expired lock would make: the current counter plus
/// one, with no fence.
async fn unfenced(client: &Client, paths: &Paths, token: u64, id: &str) -> Option<MultiOps> {
    let (data, stat) = client.get_data(&paths.counter).await.ok()?;
    let n: u64 = String::from_utf8_lossy(&data).parse().ok()?;
    Some(
        MultiOps::new()
            .set_data(&paths.counter, (n + 1).to_string(), stat.version)
            .create(
                &paths.hist_entry(n + 1),
                format!("{token} {id}"),
                CreateOptions::persistent(),
            ),
    )
}

// ----- the check -----

/// The sequence suffix of a contender node name.
fn contender_seq(path: &str, lock: &str) -> Option<u64> {
    let name = path.strip_prefix(lock)?.strip_prefix("/lock-")?;
    name.parse().ok()
}

/// Figures of one run.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Figures {
    /// The counter's final value (= committed increments).
    pub total: u64,
    pub acknowledged: u64,
    pub unknown: u64,
    /// Unknown-outcome increments that turned out committed.
    pub unknown_committed: u64,
    /// Refused fenced increments by reason.
    pub refused: BTreeMap<String, u64>,
    /// Frozen holders' writes refused with BAD_FENCE / all of them.
    pub stale_refused: u64,
    pub stale: u64,
    pub grants: u64,
    pub acquire_errors: BTreeMap<String, u64>,
    /// Grants that overlapped another in this process, as the clients saw them.
    pub overlaps: u64,
    /// Committed increments whose holder the event log confirmed.
    pub holder_checked: u64,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "counter {} = {} acknowledged + {} of {} unknown-outcome increments; grants {}; \
             refused {:?}; frozen holders' stale writes refused {}/{}; acquire errors {:?}; \
             overlapping holds as clients saw them {}; holder confirmed by the event log for {}",
            self.total,
            self.acknowledged,
            self.unknown_committed,
            self.unknown,
            self.grants,
            self.refused,
            self.stale_refused,
            self.stale,
            self.acquire_errors,
            self.overlaps,
            self.holder_checked
        )
    }
}

/// Checks a finished run (the workers have stopped) against the cluster's final state and the
/// event log. Returns the figures and the problems found (empty = the run is right).
pub async fn check(
    client: &Client,
    paths: &Paths,
    log: &EventLog,
    all: &[Outcomes],
    board: &Board,
) -> (Figures, Vec<String>) {
    let mut problems = Vec::new();
    let mut fig = Figures {
        overlaps: board.overlaps.load(Ordering::SeqCst),
        ..Figures::default()
    };
    for o in all {
        fig.grants += o.grants;
        fig.unknown += o.unknown.len() as u64;
        fig.stale += o.stale.len() as u64;
        for (k, v) in &o.acquire_errors {
            *fig.acquire_errors.entry(k.clone()).or_default() += v;
        }
        for (_, reason) in &o.refused {
            *fig.refused.entry(reason.clone()).or_default() += 1;
        }
        problems.extend(o.bad_reads.iter().cloned());
    }

    // Everything the event log must see is before this sentinel.
    let sentinel = format!("{}/sentinel", paths.root);
    if let Err(e) = ensure(client, &sentinel, b"").await {
        problems.push(e);
        return (fig, problems);
    }
    if let Err(e) = log.wait_for(&sentinel, RETRY_BOUND).await {
        problems.push(e);
    }

    let total = retry(RETRY_BOUND, || async {
        let (d, _) = client
            .get_data(&paths.counter)
            .await
            .map_err(|e| e.to_string())?;
        String::from_utf8_lossy(&d)
            .parse::<u64>()
            .map_err(|_| format!("the counter holds {d:?}"))
    })
    .await;
    let total = match total {
        Ok(t) => t,
        Err(e) => {
            problems.push(format!("reading {}: {e}", paths.counter));
            return (fig, problems);
        }
    };
    fig.total = total;
    let names = match retry(RETRY_BOUND, || async {
        client
            .get_all_children(&paths.hist)
            .await
            .map_err(|e| e.to_string())
    })
    .await
    {
        Ok(n) => n,
        Err(e) => {
            problems.push(format!("listing {}: {e}", paths.hist));
            return (fig, problems);
        }
    };
    let mut names_sorted = names;
    names_sorted.sort();
    let want: Vec<String> = (1..=total).map(|n| format!("{n:010}")).collect();
    if names_sorted != want {
        problems.push(format!(
            "the counter is {total} but the history has {} entries (want one per increment, \
             1..={total}): first {:?}",
            names_sorted.len(),
            names_sorted.iter().take(5).collect::<Vec<_>>()
        ));
        return (fig, problems);
    }
    // n → (token, attempt id)
    let mut hist: BTreeMap<u64, (u64, String)> = BTreeMap::new();
    for n in 1..=total {
        let entry = paths.hist_entry(n);
        let read = retry(RETRY_BOUND, || async {
            client
                .get_data(&entry)
                .await
                .map(|(d, _)| d)
                .map_err(|e| e.to_string())
        })
        .await;
        let parsed = read.and_then(|d| {
            let s = String::from_utf8_lossy(&d).to_string();
            let (token, id) = s
                .split_once(' ')
                .ok_or_else(|| format!("entry holds {s:?}"))?;
            let token = token
                .parse::<u64>()
                .map_err(|_| format!("entry holds {s:?}"))?;
            Ok((token, id.to_string()))
        });
        match parsed {
            Ok(v) => {
                hist.insert(n, v);
            }
            Err(e) => {
                problems.push(format!("reading {entry}: {e}"));
                return (fig, problems);
            }
        }
    }

    // Tokens increase along the counter: no write of an older holder after a newer one.
    let mut prev = 0u64;
    for (n, (token, id)) in &hist {
        if *token <= prev {
            problems.push(format!(
                "increment {n} by {id} has token {token}, not above the previous {prev}"
            ));
        }
        prev = *token;
    }
    // Every acknowledged increment is in the history as acknowledged; every history entry is
    // an acknowledged or unknown-outcome attempt, never a refused or stale one.
    let mut unknown: HashSet<&str> = HashSet::new();
    let mut refused: HashSet<&str> = HashSet::new();
    let mut acknowledged: HashSet<&str> = HashSet::new();
    for o in all {
        for (n, token, id) in &o.committed {
            if hist.get(n) != Some(&(*token, id.clone())) {
                problems.push(format!(
                    "acknowledged increment {n} by {id} (token {token}) is not in the history \
                     (entry {n}: {:?})",
                    hist.get(n)
                ));
            }
            acknowledged.insert(id);
        }
        unknown.extend(o.unknown.iter().map(String::as_str));
        refused.extend(o.refused.iter().map(|(id, _)| id.as_str()));
        for (id, stale) in &o.stale {
            match stale {
                Stale::Refused(r) if r == "BAD_FENCE" => fig.stale_refused += 1,
                Stale::Unknown(_) | Stale::NeverInvalid => {}
                other => problems.push(format!(
                    "a frozen holder's write with its old token ({id}) must be refused with \
                     BAD_FENCE on the fence check, was {other:?}"
                )),
            }
            refused.insert(id);
        }
    }
    fig.acknowledged = acknowledged.len() as u64;
    for (n, (_, id)) in &hist {
        if refused.contains(id.as_str()) {
            problems.push(format!("refused attempt {id} committed as increment {n}"));
        } else if unknown.contains(id.as_str()) {
            fig.unknown_committed += 1;
        } else if !acknowledged.contains(id.as_str()) {
            problems.push(format!(
                "increment {n} was made by {id}, which no worker attempted"
            ));
        }
    }
    if total != fig.acknowledged + fig.unknown_committed {
        problems.push(format!(
            "the counter is {total}, but {} increments were acknowledged and {} of unknown \
             outcome committed",
            fig.acknowledged, fig.unknown_committed
        ));
    }

    // Replay the event log: at each committed increment, the writer held the lock.
    let mut live: BTreeMap<u64, String> = BTreeMap::new(); // token → node
    let hist_prefix = format!("{}/", paths.hist);
    for (zxid, t, p) in &log.events() {
        if let Some(seq) = contender_seq(p, &paths.lock) {
            match t {
                EventType::Created => {
                    live.insert((zxid << 20) | (seq & 0xF_FFFF), p.clone());
                }
                EventType::Deleted => live.retain(|_, node| node != p),
                _ => {}
            }
        } else if *t == EventType::Created && p.starts_with(&hist_prefix) {
            let Some((token, id)) = p
                .rsplit('/')
                .next()
                .and_then(|s| s.parse::<u64>().ok())
                .and_then(|n| hist.get(&n))
            else {
                problems.push(format!(
                    "the event log has {p}, which is not in the history"
                ));
                continue;
            };
            let holder = live.keys().next().copied();
            if holder == Some(*token) {
                fig.holder_checked += 1;
            } else {
                problems.push(format!(
                    "{p} by {id} (token {token}) committed at zxid {zxid} while the holder \
                     was {holder:?} ({:?})",
                    live.values().next()
                ));
            }
        }
    }
    if fig.holder_checked != total && problems.is_empty() {
        problems.push(format!(
            "the event log confirms the holder of {} of {total} increments",
            fig.holder_checked
        ));
    }
    (fig, problems)
}

/// Joins the workers (each must stop within `bound` of being told to).
pub async fn join(
    tasks: Vec<tokio::task::JoinHandle<Outcomes>>,
    bound: Duration,
) -> Result<Vec<Outcomes>, String> {
    let mut all = Vec::new();
    for t in tasks {
        match tokio::time::timeout(bound, t).await {
            Ok(Ok(o)) => all.push(o),
            Ok(Err(e)) => return Err(format!("a lock worker failed: {e}")),
            Err(_) => {
                return Err(format!(
                    "a lock worker did not stop within {} s",
                    bound.as_secs()
                ))
            }
        }
    }
    Ok(all)
}
