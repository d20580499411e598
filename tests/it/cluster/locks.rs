//! Locks and elections on a 3-member cluster: mutual exclusion of fenced writes under
//! contention from every member, also while members are stopped and restarted and the leader
//! changes, and elections whose Observe stream sees every term while the cluster fails over.
//!
//! The fenced-counter tests check the outcome against an independent record: a recursive
//! watch on the test's subtree records every contender creation and deletion and every
//! committed write in log order; replaying it gives the holder of the lock at each write,
//! which must be the writer (a stale holder's write never commits), and the committed writes'
//! tokens must increase with the counter.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton::client::{Client, LeaderResponse, LockOptions};

use crate::common::fenced::{self, Board, EventLog, Figures, Outcomes, Paths, WorkerSpec};
use crate::common::harness::TestCluster;
use crate::common::poll;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Creates `path` (persistent) through `client`, tolerating NODE_EXISTS, retrying while the
/// cluster settles.
async fn ensure(client: &Client, path: &str, data: &[u8]) {
    fenced::ensure(client, path, data)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

// ----- the fenced counter (tests/it/common/fenced.rs) -----

/// Starts `per_member` workers per member (the first of them pauses now and then), each
/// with a client that starts at its member and fails over to the others.
async fn start_workers(
    c: &TestCluster,
    paths: &Paths,
    board: &Arc<Board>,
    per_member: usize,
    deadline: Instant,
) -> Vec<tokio::task::JoinHandle<Outcomes>> {
    start_workers_with(c, paths, board, per_member, deadline, false).await
}

async fn start_workers_with(
    c: &TestCluster,
    paths: &Paths,
    board: &Arc<Board>,
    per_member: usize,
    deadline: Instant,
    unfenced_stale_writes: bool,
) -> Vec<tokio::task::JoinHandle<Outcomes>> {
    let mut tasks = Vec::new();
    let mut i = 0;
    for id in c.ids() {
        for _ in 0..per_member {
            let client = c.client_from(id, SECS(3)).await;
            let pauser = i == 0;
            let spec = WorkerSpec {
                id: i,
                session_timeout: if pauser {
                    Duration::from_millis(1500)
                } else {
                    SECS(4)
                },
                pauser,
                unfenced_stale_writes,
                deadline,
            };
            tasks.push(tokio::spawn(fenced::worker(
                client,
                paths.clone(),
                board.clone(),
                spec,
            )));
            i += 1;
        }
    }
    tasks
}

/// Sets up a fenced-counter run under `root` with its event log read through member `via`.
async fn setup(c: &TestCluster, root: &str, via: u64) -> (Paths, EventLog, Arc<Board>) {
    let paths = Paths::new(root);
    let client = c.client_all().await;
    ensure(&client, &paths.root, b"").await;
    let log = EventLog::start(c.client_from(via, SECS(3)).await, &paths.root)
        .await
        .expect("event log");
    paths.create(&client).await.expect("paths");
    (paths, log, Arc::new(Board::default()))
}

/// Joins the workers and checks everything against the cluster's final state and the event
/// log; panics on any problem.
async fn verify(
    c: &TestCluster,
    paths: &Paths,
    log: &EventLog,
    board: &Board,
    tasks: Vec<tokio::task::JoinHandle<Outcomes>>,
) -> (Figures, Vec<Outcomes>) {
    let all = fenced::join(tasks, SECS(60)).await.expect("workers finish");
    let client = c.client_all().await;
    let (fig, problems) = fenced::check(&client, paths, log, &all, board).await;
    assert!(
        problems.is_empty(),
        "fenced counter: {} problem(s):\n  {}\n{fig}",
        problems.len(),
        problems.join("\n  ")
    );
    (fig, all)
}

/// Six clients, two on each member, increment a counter under the lock with fenced writes;
/// one of them freezes now and then while holding until its session expires, then writes with
/// its old token. Nothing fails: no two grants overlap in this process, every stale write is
/// refused by the fence, the counter equals the acknowledged increments.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fenced_counter_is_mutually_exclusive_under_contention_from_every_member() {
    let c = TestCluster::start(3).await;
    let (paths, log, board) = setup(&c, "/fence1", 2).await;
    let deadline = Instant::now() + SECS(60);
    let tasks = start_workers(&c, &paths, &board, 2, deadline).await;
    poll(SECS(40), "150 fenced increments", || async {
        (board.progress.load(Ordering::SeqCst) >= 150).then_some(())
    })
    .await;
    board.stop.store(true, Ordering::SeqCst);
    let (fig, all) = verify(&c, &paths, &log, &board, tasks).await;
    eprintln!("{fig}");
    assert_eq!(fig.overlaps, 0, "{fig}");
    assert_eq!(fig.unknown, 0, "no faults, no unknown outcomes: {fig}");
    assert!(
        fig.refused.is_empty(),
        "a holder's fenced write commits: {fig}"
    );
    assert!(
        fig.stale >= 2,
        "the paused holder tried stale writes: {fig}"
    );
    assert_eq!(
        fig.stale_refused, fig.stale,
        "every stale write is refused by the fence: {fig}"
    );
    assert!(
        all.iter().all(|o| o.committed.len() > 1),
        "every worker got the lock: {fig}"
    );
}

/// Self-check: the same run, but the frozen holder, once thawed, writes without the fence
/// (as a client that trusts its expired lock would). The check must find the run wrong,
/// through the stale write that committed and the event log showing another holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fenced_counter_check_catches_unfenced_writes_of_an_expired_holder() {
    let c = TestCluster::start(3).await;
    let (paths, log, board) = setup(&c, "/fence0", 2).await;
    let deadline = Instant::now() + SECS(60);
    let tasks = start_workers_with(&c, &paths, &board, 1, deadline, true).await;
    poll(SECS(40), "40 fenced increments", || async {
        (board.progress.load(Ordering::SeqCst) >= 40).then_some(())
    })
    .await;
    board.stop.store(true, Ordering::SeqCst);
    let all = fenced::join(tasks, SECS(60)).await.expect("workers finish");
    let stale: usize = all.iter().map(|o| o.stale.len()).sum();
    assert!(stale >= 2, "the frozen holder wrote: {stale} stale writes");
    let client = c.client_all().await;
    let (fig, problems) = fenced::check(&client, &paths, &log, &all, &board).await;
    eprintln!("{fig}\n  {}", problems.join("\n  "));
    assert!(
        problems.iter().any(|p| p.contains("while the holder was")),
        "the event log shows a write by a non-holder: {problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("must be refused with BAD_FENCE")),
        "a stale write committed: {problems:?}"
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
    let (paths, log, board) = setup(&c, "/fence2", 1).await;
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
    let (fig, _) = verify(&c, &paths, &log, &board, tasks).await;
    eprintln!("leaders {leaders:?}; {fig}");
    assert!(fig.total >= 110, "{fig}");
    // A holder whose session was lost in a failover is fenced off: BAD_FENCE. A BAD_VERSION
    // would mean another writer got in while this one held the lock.
    assert!(
        fig.refused.keys().all(|r| r == "BAD_FENCE"),
        "fenced writes refused for other reasons than BAD_FENCE: {fig}"
    );
    assert_eq!(
        fig.stale_refused, fig.stale,
        "every stale write is refused by the fence: {fig}"
    );
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
                            Err(e) if e.is(baton::client::Reason::BadFence) => {
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
