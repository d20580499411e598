//! Locks and elections against one member started in-process on 127.0.0.1:0, through the
//! client library (and the `baton` binary for the CLI): FIFO grants, shared/exclusive and
//! semaphore rules, TryAcquire, timeouts, ownership, session expiry, fencing, elections and
//! Observe.
//!
//! Every wait is a poll with a deadline; every loop is bounded by a count and a time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton::client::{
    Client, ClientError, CreateOptions, InspectResponse, LeaderResponse, LockGuard, LockMode,
    LockOptions, MultiOps, Session,
};
use futures::StreamExt;

use crate::common::member::{start, Member};
use crate::common::poll;

fn reason(e: &ClientError) -> String {
    e.reason()
        .map_or_else(|| format!("<no reason: {e}>"), |r| r.to_string())
}

async fn inspect(c: &Client, path: &str) -> InspectResponse {
    c.inspect(path).await.expect("inspect")
}

fn nodes(list: &[baton::client::Contender]) -> Vec<String> {
    list.iter().map(|c| c.lock_node.clone()).collect()
}

/// Waits until the lock at `path` has `holders` holders and `waiters` waiters.
async fn wait_queue(c: &Client, path: &str, holders: usize, waiters: usize) -> InspectResponse {
    poll(
        Duration::from_secs(10),
        &format!("{path} to have {holders} holders and {waiters} waiters"),
        || async {
            let s = inspect(c, path).await;
            (s.holders.len() == holders && s.waiters.len() == waiters).then_some(s)
        },
    )
    .await
}

/// Starts `lock()` in a task and waits until its contender is queued as waiter number
/// `waiters` (so the queue order is known).
async fn enqueue_waiter(
    m: &Member,
    path: &str,
    session: Arc<Session>,
    options: LockOptions,
    holders: usize,
    waiters: usize,
) -> tokio::task::JoinHandle<Result<LockGuard, ClientError>> {
    let c = m.client.clone();
    let p = path.to_string();
    let task = tokio::spawn(async move { c.lock(&p, &session, options).await });
    wait_queue(&m.client, path, holders, waiters).await;
    task
}

async fn granted(
    task: tokio::task::JoinHandle<Result<LockGuard, ClientError>>,
    what: &str,
) -> LockGuard {
    match tokio::time::timeout(Duration::from_secs(10), task).await {
        Ok(Ok(Ok(g))) => g,
        Ok(Ok(Err(e))) => panic!("{what}: acquire failed: {e}"),
        Ok(Err(e)) => panic!("{what}: task failed: {e}"),
        Err(_) => panic!("{what}: not granted within 10 s"),
    }
}

#[tokio::test]
async fn waiters_are_granted_in_fifo_order() {
    let m = start().await;
    let c = &m.client;
    let s0 = m.session().await;
    let holder = c
        .lock("/fifo", &s0, LockOptions::exclusive())
        .await
        .expect("first acquire is granted at once");
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    const WAITERS: usize = 6;
    for i in 0..WAITERS {
        let session = Arc::new(m.session().await);
        let c2 = c.clone();
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            let g = c2
                .lock(
                    "/fifo",
                    &session,
                    LockOptions::exclusive().data(format!("w{i}")),
                )
                .await?;
            // Exclusive: the next waiter cannot be granted before this release.
            order
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((i, g.fencing_token()));
            g.release().await?;
            Ok::<_, ClientError>(())
        }));
        // Enqueue in a known order: wait until waiter i is queued before starting i + 1.
        let q = wait_queue(c, "/fifo", 1, i + 1).await;
        assert_eq!(q.waiters[i].data, format!("w{i}").into_bytes());
    }
    let q = inspect(c, "/fifo").await;
    assert_eq!(nodes(&q.holders), [holder.lock_node().to_string()]);
    assert!(
        q.waiters
            .windows(2)
            .all(|w| w[0].lock_node < w[1].lock_node),
        "queue order is creation order: {:?}",
        nodes(&q.waiters)
    );
    let first_token = holder.fencing_token();
    holder.release().await.expect("release");
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(15), t).await {
            Ok(Ok(Ok(()))) => {}
            other => panic!("waiter failed: {other:?}"),
        }
    }
    let order = order.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let indexes: Vec<usize> = order.iter().map(|(i, _)| *i).collect();
    assert_eq!(
        indexes,
        (0..WAITERS).collect::<Vec<_>>(),
        "grants in FIFO order"
    );
    let mut last = first_token;
    for (i, token) in &order {
        assert!(*token > last, "waiter {i}'s token {token} after {last}");
        last = *token;
    }
    let q = inspect(c, "/fifo").await;
    assert!(q.holders.is_empty() && q.waiters.is_empty());
}

#[tokio::test]
async fn shared_and_exclusive_rules() {
    let m = start().await;
    let c = &m.client;
    let (s1, s2, sx, s3) = (
        Arc::new(m.session().await),
        Arc::new(m.session().await),
        Arc::new(m.session().await),
        Arc::new(m.session().await),
    );
    let r1 = c
        .lock("/rw", &s1, LockOptions::shared())
        .await
        .expect("reader 1");
    let r2 = c
        .lock("/rw", &s2, LockOptions::shared())
        .await
        .expect("readers share the lock");
    let q = wait_queue(c, "/rw", 2, 0).await;
    assert!(q
        .holders
        .iter()
        .all(|h| h.mode == LockMode::Shared as i32 && h.permits == 0));
    assert!(c
        .validate_fence(r1.lock_node(), r1.fencing_token())
        .await
        .unwrap());
    assert!(c
        .validate_fence(r2.lock_node(), r2.fencing_token())
        .await
        .unwrap());

    let err = c
        .try_lock("/rw", &sx, LockOptions::exclusive())
        .await
        .expect_err("a writer cannot join readers");
    assert_eq!(reason(&err), "LOCK_HELD", "{err}");
    wait_queue(c, "/rw", 2, 0).await;

    let writer = enqueue_waiter(&m, "/rw", sx.clone(), LockOptions::exclusive(), 2, 1).await;
    // A reader arriving after a waiting writer queues behind it (no writer starvation).
    let reader3 = enqueue_waiter(&m, "/rw", s3.clone(), LockOptions::shared(), 2, 2).await;
    let q = inspect(c, "/rw").await;
    assert_eq!(q.waiters[0].mode, LockMode::Exclusive as i32);
    assert_eq!(q.waiters[1].mode, LockMode::Shared as i32);

    r1.release().await.expect("release reader 1");
    wait_queue(c, "/rw", 1, 2).await;
    assert!(!writer.is_finished(), "the writer waits for every reader");
    r2.release().await.expect("release reader 2");
    let w = granted(writer, "writer").await;
    let q = wait_queue(c, "/rw", 1, 1).await;
    assert_eq!(q.holders[0].lock_node, w.lock_node());
    assert!(!reader3.is_finished(), "a reader waits for the writer");
    w.release().await.expect("release writer");
    let r3 = granted(reader3, "reader 3").await;
    wait_queue(c, "/rw", 1, 0).await;
    r3.release().await.expect("release reader 3");
    wait_queue(c, "/rw", 0, 0).await;
}

#[tokio::test]
async fn semaphore_never_exceeds_its_permits() {
    const PERMITS: u32 = 3;
    const CLIENTS: usize = 12;
    const ROUNDS: usize = 6;
    let m = start().await;
    let c = &m.client;
    let path = "/sem";

    // Deterministic part: three holders at once, the fourth is refused.
    let mut first = Vec::new();
    let mut sessions = Vec::new();
    for _ in 0..CLIENTS {
        sessions.push(Arc::new(m.session().await));
    }
    for s in sessions.iter().take(PERMITS as usize) {
        first.push(
            c.lock(path, s, LockOptions::semaphore(PERMITS))
                .await
                .expect("a free permit is granted at once"),
        );
    }
    let q = wait_queue(c, path, PERMITS as usize, 0).await;
    assert!(q.holders.iter().all(|h| h.permits == PERMITS));
    let err = c
        .try_lock(
            path,
            &sessions[PERMITS as usize],
            LockOptions::semaphore(PERMITS),
        )
        .await
        .expect_err("no permit left");
    assert_eq!(reason(&err), "LOCK_HELD");
    for g in first {
        g.release().await.expect("release");
    }

    // Contention: many clients, each on its own connection and session; a process-local
    // counter and Inspect both check the bound.
    let inside = Arc::new(AtomicU64::new(0));
    let max_inside = Arc::new(AtomicU64::new(0));
    let max_holders = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (i, session) in sessions.into_iter().enumerate() {
        let client = Client::connect([m.endpoint()]).await.expect("connect");
        let (inside, max_inside, max_holders) =
            (inside.clone(), max_inside.clone(), max_holders.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                let g = client
                    .lock(path, &session, LockOptions::semaphore(PERMITS))
                    .await
                    .unwrap_or_else(|e| panic!("client {i} round {round}: {e}"));
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                max_inside.fetch_max(now, Ordering::SeqCst);
                let q = client.inspect(path).await.expect("inspect");
                max_holders.fetch_max(q.holders.len() as u64, Ordering::SeqCst);
                assert!(
                    q.holders.len() <= PERMITS as usize,
                    "{} holders of a {PERMITS}-permit semaphore",
                    q.holders.len()
                );
                assert!(
                    q.holders.iter().any(|h| h.lock_node == g.lock_node()),
                    "a granted contender is among the holders"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                g.release().await.expect("release");
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("clients finish")
            .expect("client task");
    }
    let max_inside = max_inside.load(Ordering::SeqCst);
    let max_holders = max_holders.load(Ordering::SeqCst);
    assert!(
        max_inside <= u64::from(PERMITS),
        "{max_inside} inside at once"
    );
    assert!(max_holders <= u64::from(PERMITS));
    assert!(max_inside >= 2, "the semaphore admitted several at once");
    wait_queue(c, path, 0, 0).await;
}

#[tokio::test]
async fn try_acquire_on_a_held_lock_is_lock_held_and_leaves_no_node() {
    let m = start().await;
    let c = &m.client;
    let (sa, sb) = (m.session().await, m.session().await);
    let a = c
        .try_lock("/t", &sa, LockOptions::exclusive())
        .await
        .expect("free lock");
    let err = c
        .try_lock("/t", &sb, LockOptions::exclusive())
        .await
        .expect_err("held");
    assert_eq!(reason(&err), "LOCK_HELD", "{err}");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    let q = wait_queue(c, "/t", 1, 0).await;
    assert_eq!(q.holders[0].lock_node, a.lock_node());
    a.release().await.expect("release");
    let b = c
        .try_lock("/t", &sb, LockOptions::exclusive())
        .await
        .expect("free again");
    assert!(b.fencing_token() > 0);
}

#[tokio::test]
async fn acquire_timeout_is_deadline_exceeded_and_gives_up_the_queue_place() {
    let m = start().await;
    let c = &m.client;
    let (sa, sb) = (m.session().await, m.session().await);
    let a = c
        .lock("/to", &sa, LockOptions::exclusive())
        .await
        .expect("free lock");
    let began = Instant::now();
    let err = c
        .lock(
            "/to",
            &sb,
            LockOptions::exclusive().wait(Duration::from_millis(300)),
        )
        .await
        .expect_err("not granted in time");
    assert_eq!(reason(&err), "DEADLINE_EXCEEDED", "{err}");
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded);
    assert!(began.elapsed() >= Duration::from_millis(300));
    let q = wait_queue(c, "/to", 1, 0).await;
    assert_eq!(q.holders[0].lock_node, a.lock_node());
    let children = c.get_all_children("/to").await.expect("children");
    assert_eq!(children.len(), 1, "the waiter's node is gone: {children:?}");
}

#[tokio::test]
async fn release_by_another_session_is_not_owner() {
    let m = start().await;
    let c = &m.client;
    let (sa, sb) = (m.session().await, m.session().await);
    let a = c
        .lock("/own", &sa, LockOptions::exclusive())
        .await
        .expect("lock");
    let err = c
        .release(a.lock_node(), sb.id())
        .await
        .expect_err("not the owner");
    assert_eq!(reason(&err), "NOT_OWNER", "{err}");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(c
        .validate_fence(a.lock_node(), a.fencing_token())
        .await
        .unwrap());
    let node = a.lock_node().to_string();
    a.release().await.expect("the owner releases");
    let err = c
        .release(&node, sa.id())
        .await
        .expect_err("already released");
    assert_eq!(reason(&err), "NO_NODE");
}

#[tokio::test]
async fn dropping_a_guard_releases_the_lock() {
    let m = start().await;
    let c = &m.client;
    let (sa, sb) = (m.session().await, Arc::new(m.session().await));
    let a = c
        .lock("/drop", &sa, LockOptions::exclusive())
        .await
        .expect("lock");
    let b = enqueue_waiter(&m, "/drop", sb, LockOptions::exclusive(), 1, 1).await;
    drop(a);
    let b = granted(b, "waiter after the holder's guard was dropped").await;
    assert!(c
        .validate_fence(b.lock_node(), b.fencing_token())
        .await
        .unwrap());
}

/// A waiter whose queue place another client deletes is told NO_NODE, and its session stays
/// alive (only SESSION_EXPIRED marks a session lost).
#[tokio::test]
async fn a_waiter_whose_queue_place_is_deleted_gets_no_node_and_keeps_its_session() {
    let m = start().await;
    let c = &m.client;
    let sa = m.session().await;
    let sb = Arc::new(m.session().await);
    let _a = c
        .lock("/del", &sa, LockOptions::exclusive())
        .await
        .expect("lock");
    let b = enqueue_waiter(
        &m,
        "/del",
        sb.clone(),
        LockOptions::exclusive().wait(Duration::from_secs(20)),
        1,
        1,
    )
    .await;
    let q = inspect(c, "/del").await;
    c.delete(&q.waiters[0].lock_node, -1)
        .await
        .expect("delete the waiter's node");
    let err = match tokio::time::timeout(Duration::from_secs(10), b).await {
        Ok(Ok(Err(e))) => e,
        other => panic!(
            "the waiter must fail at once: {:?}",
            other.map(|r| r.map(|g| g.map(|g| g.fencing_token())))
        ),
    };
    assert_eq!(reason(&err), "NO_NODE", "{err}");
    assert!(sb.is_alive(), "the waiter's session is still alive");
}

#[tokio::test]
async fn session_expiry_releases_the_lock_and_promotes_the_next_waiter() {
    let m = start().await;
    let c = &m.client;
    let sa = m.short_session(Duration::from_millis(1000)).await;
    let sb = Arc::new(m.session().await);
    let a = c
        .lock("/exp", &sa, LockOptions::exclusive())
        .await
        .expect("lock");
    let b = enqueue_waiter(&m, "/exp", sb.clone(), LockOptions::exclusive(), 1, 1).await;
    let lost = a.lost();
    let (a_node, a_token) = a.leak(); // keep the node: only the session's end may release it
                                      // The client stops its keepalives without closing the session.
    drop(sa);
    tokio::time::timeout(Duration::from_secs(5), lost)
        .await
        .expect("lost() resolves once the keepalives stop");
    let b = granted(b, "waiter after the holder's session expired").await;
    assert!(b.fencing_token() > a_token);
    assert!(c.exists(&a_node).await.expect("exists").is_none());
    let q = wait_queue(c, "/exp", 1, 0).await;
    assert_eq!(q.holders[0].session_id, sb.id());
}

#[tokio::test]
async fn a_paused_holder_whose_session_expired_cannot_write_with_its_old_token() {
    let m = start().await;
    let c = &m.client;
    c.create("/fenced", b"0".to_vec(), CreateOptions::persistent())
        .await
        .expect("counter");
    let sa = m.short_session(Duration::from_millis(1000)).await;
    let sb = Arc::new(m.session().await);
    let a = c
        .lock("/fl", &sa, LockOptions::exclusive())
        .await
        .expect("lock");
    let (a_node, a_token) = (a.lock_node().to_string(), a.fencing_token());
    // A writes once while it holds the lock.
    let (_, st) = c.get_data("/fenced").await.expect("read");
    let ok = c
        .multi(MultiOps::new().check_fence(&a_node, a_token).set_data(
            "/fenced",
            b"1".to_vec(),
            st.version,
        ))
        .await
        .expect("multi");
    assert!(ok.succeeded, "the holder's fenced write commits");
    let (_, st) = c.get_data("/fenced").await.expect("read");

    let b = enqueue_waiter(&m, "/fl", sb.clone(), LockOptions::exclusive(), 1, 1).await;
    // A "pauses": its keepalives stop (the process is frozen), the session expires.
    let _ = a.leak();
    drop(sa);
    let b = granted(b, "B after A's session expired").await;
    assert!(!c.validate_fence(&a_node, a_token).await.expect("validate"));
    assert!(c
        .validate_fence(b.lock_node(), b.fencing_token())
        .await
        .expect("validate"));

    // A wakes up and writes with its old token, at the version it last saw: refused.
    let stale = c
        .multi(MultiOps::new().check_fence(&a_node, a_token).set_data(
            "/fenced",
            b"stale".to_vec(),
            st.version,
        ))
        .await
        .expect("multi");
    assert!(!stale.succeeded, "a stale holder's write does not commit");
    assert_eq!(stale.failed_op_index, 0);
    match &stale.results[0].result {
        Some(baton::proto::v1::op_result::Result::Error(e)) => assert_eq!(e.reason, "BAD_FENCE"),
        other => panic!("expected BAD_FENCE, got {other:?}"),
    }
    // Even with B's node but A's token.
    let mixed = c
        .multi(
            MultiOps::new()
                .check_fence(b.lock_node(), a_token)
                .set_data("/fenced", b"stale".to_vec(), st.version),
        )
        .await
        .expect("multi");
    assert!(!mixed.succeeded);
    let (data, _) = c.get_data("/fenced").await.expect("read");
    assert_eq!(data, b"1");
    // B's write with its own token commits.
    let ok = c
        .multi(
            MultiOps::new()
                .check_fence(b.lock_node(), b.fencing_token())
                .set_data("/fenced", b"2".to_vec(), st.version),
        )
        .await
        .expect("multi");
    assert!(ok.succeeded);
}

#[tokio::test]
async fn validate_fence_only_for_the_current_holder_and_its_token() {
    let m = start().await;
    let c = &m.client;
    let (sa, sb) = (m.session().await, Arc::new(m.session().await));
    let a = c
        .lock("/vf", &sa, LockOptions::exclusive())
        .await
        .expect("lock");
    assert!(c
        .validate_fence(a.lock_node(), a.fencing_token())
        .await
        .unwrap());
    assert!(!c
        .validate_fence(a.lock_node(), a.fencing_token() + 1)
        .await
        .unwrap());
    assert!(!c
        .validate_fence(a.lock_node(), a.fencing_token() - 1)
        .await
        .unwrap());
    assert!(!c.validate_fence("/vf/lock-9999999999", 1).await.unwrap());
    assert!(!c.validate_fence("/nope/lock-0000000000", 1).await.unwrap());
    let err = c
        .validate_fence("not-a-path", 1)
        .await
        .expect_err("invalid");
    assert_eq!(reason(&err), "INVALID_PATH");
    let b = enqueue_waiter(&m, "/vf", sb, LockOptions::exclusive(), 1, 1).await;
    let q = inspect(c, "/vf").await;
    let waiter = &q.waiters[0];
    assert!(
        !c.validate_fence(&waiter.lock_node, waiter.fencing_token)
            .await
            .unwrap(),
        "a waiter's token is not valid"
    );
    let (a_node, a_token) = (a.lock_node().to_string(), a.fencing_token());
    a.release().await.expect("release");
    let b = granted(b, "B").await;
    assert_eq!(
        b.fencing_token(),
        waiter.fencing_token,
        "Inspect shows the token"
    );
    assert!(!c.validate_fence(&a_node, a_token).await.unwrap());
    assert!(c
        .validate_fence(b.lock_node(), b.fencing_token())
        .await
        .unwrap());
}

#[tokio::test]
async fn bad_requests_are_rejected() {
    let m = start().await;
    let c = &m.client;
    let s = m.session().await;
    let err = c
        .lock("/", &s, LockOptions::exclusive())
        .await
        .expect_err("root");
    assert_eq!(reason(&err), "BAD_ARGUMENTS");
    let err = c
        .lock("/baton/x", &s, LockOptions::exclusive())
        .await
        .expect_err("reserved");
    assert_eq!(reason(&err), "NO_AUTH");
    let err = c.inspect("bad").await.expect_err("invalid path");
    assert_eq!(reason(&err), "INVALID_PATH");
    s.close().await.expect("close");
    let err = c
        .lock("/gone", &s, LockOptions::exclusive())
        .await
        .expect_err("closed session");
    assert_eq!(reason(&err), "SESSION_EXPIRED", "{err}");
}

// ----- elections -----

/// Collects what an Observe stream reports, in a task.
fn record_observe(
    mut stream: baton::client::LeaderStream,
) -> (
    Arc<Mutex<Vec<LeaderResponse>>>,
    tokio::task::JoinHandle<Option<ClientError>>,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let task = tokio::spawn(async move {
        for _ in 0..100_000 {
            match stream.next().await {
                Some(Ok(l)) => seen2.lock().unwrap_or_else(|e| e.into_inner()).push(l),
                Some(Err(e)) => return Some(e),
                None => return None,
            }
        }
        None
    });
    (seen, task)
}

fn snapshot(seen: &Arc<Mutex<Vec<LeaderResponse>>>) -> Vec<LeaderResponse> {
    seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Checks an Observe record: terms never go back, a repeated term is a value change, and
/// every term in `won` appears.
fn check_observed(seen: &[LeaderResponse], won: &[u64]) {
    let mut prev: Option<&LeaderResponse> = None;
    for l in seen.iter().filter(|l| l.has_leader) {
        if let Some(p) = prev {
            assert!(
                l.term > p.term || (l.term == p.term && l.value != p.value),
                "observed term {} ({:?}) after {} ({:?})",
                l.term,
                String::from_utf8_lossy(&l.value),
                p.term,
                String::from_utf8_lossy(&p.value)
            );
        }
        prev = Some(l);
    }
    let observed: std::collections::HashSet<u64> = seen
        .iter()
        .filter(|l| l.has_leader)
        .map(|l| l.term)
        .collect();
    for t in won {
        assert!(
            observed.contains(t),
            "term {t} won by Campaign was not observed"
        );
    }
}

#[tokio::test]
async fn election_one_leader_per_term_proclaim_and_observe() {
    let m = start().await;
    let c = &m.client;
    let stream = c.observe("/elect").await.expect("observe");
    let (seen, _task) = record_observe(stream);
    poll(
        Duration::from_secs(5),
        "the initial (empty) leader",
        || async { snapshot(&seen).first().map(|l| assert!(!l.has_leader)) },
    )
    .await;

    let (sa, sb) = (m.session().await, Arc::new(m.session().await));
    let a = c
        .campaign("/elect", &sa, "a:1", None)
        .await
        .expect("A wins an empty election");
    let l = c.leader("/elect").await.expect("leader");
    assert!(l.has_leader);
    assert_eq!(
        (l.leader_node.as_str(), l.term),
        (a.leader_node.as_str(), a.term)
    );
    assert_eq!((l.value.as_slice(), l.session_id), (&b"a:1"[..], sa.id()));
    // Observe is asynchronous: let it report each step before the next one.
    let observed = |term: u64, value: &'static str| {
        let seen = seen.clone();
        async move {
            poll(
                Duration::from_secs(5),
                &format!("Observe to report {term} {value}"),
                || {
                    let s = snapshot(&seen);
                    async move {
                        s.iter()
                            .any(|l| l.term == term && l.value == value.as_bytes())
                            .then_some(())
                    }
                },
            )
            .await
        }
    };
    observed(a.term, "a:1").await;
    c.proclaim(&a, "a:2").await.expect("the leader proclaims");
    assert_eq!(c.leader("/elect").await.unwrap().value, b"a:2");
    observed(a.term, "a:2").await;

    let c2 = c.clone();
    let sb2 = sb.clone();
    let b_task = tokio::spawn(async move { c2.campaign("/elect", &sb2, "b:1", None).await });
    let q = wait_queue(c, "/elect", 1, 1).await;
    assert_eq!(c.leader("/elect").await.unwrap().term, a.term, "one leader");
    // A candidate that does not lead yet cannot proclaim, even with its own node and term.
    let waiting = baton::client::Leadership {
        path: "/elect".into(),
        leader_node: q.waiters[0].lock_node.clone(),
        term: q.waiters[0].fencing_token,
        session_id: sb.id(),
    };
    let err = c
        .proclaim(&waiting, "b:0")
        .await
        .expect_err("B does not lead yet");
    assert_eq!(reason(&err), "BAD_FENCE", "{err}");
    c.resign(&a).await.expect("resign");
    let b = match tokio::time::timeout(Duration::from_secs(10), b_task).await {
        Ok(Ok(Ok(b))) => b,
        other => panic!("B does not lead: {other:?}"),
    };
    assert!(b.term > a.term, "terms increase");
    let err = c.proclaim(&a, "a:3").await.expect_err("A no longer leads");
    assert_eq!(reason(&err), "BAD_FENCE", "{err}");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    let wrong_term = baton::client::Leadership {
        term: b.term + 1,
        ..b.clone()
    };
    let err = c.proclaim(&wrong_term, "x").await.expect_err("wrong term");
    assert_eq!(reason(&err), "BAD_FENCE");
    observed(b.term, "b:1").await;
    c.proclaim(&b, "b:2").await.expect("B proclaims");
    observed(b.term, "b:2").await;
    let l = c.leader("/elect").await.unwrap();
    assert_eq!((l.term, l.value.as_slice()), (b.term, &b"b:2"[..]));

    // Campaign timeout withdraws the candidacy.
    let sc = m.session().await;
    let err = c
        .campaign("/elect", &sc, "c", Some(Duration::from_millis(200)))
        .await
        .expect_err("B leads");
    assert_eq!(reason(&err), "DEADLINE_EXCEEDED");
    wait_queue(c, "/elect", 1, 0).await;

    c.resign(&b).await.expect("resign");
    let l = poll(Duration::from_secs(5), "no leader", || async {
        let l = c.leader("/elect").await.expect("leader");
        (!l.has_leader).then_some(l)
    })
    .await;
    assert_eq!(l.term, 0);
    let want = [a.term, b.term];
    let seen = poll(
        Duration::from_secs(5),
        "Observe to report both terms and the end",
        || async {
            let s = snapshot(&seen);
            (s.last().is_some_and(|l| !l.has_leader) && s.len() >= 6).then_some(s)
        },
    )
    .await;
    check_observed(&seen, &want);
    let values: Vec<(u64, String)> = seen
        .iter()
        .filter(|l| l.has_leader)
        .map(|l| (l.term, String::from_utf8_lossy(&l.value).to_string()))
        .collect();
    assert_eq!(
        values,
        [
            (a.term, "a:1".to_string()),
            (a.term, "a:2".to_string()),
            (b.term, "b:1".to_string()),
            (b.term, "b:2".to_string())
        ]
    );
}

#[tokio::test]
async fn observe_sees_every_term_while_candidates_come_and_go() {
    const CANDIDATES: usize = 4;
    const ROUNDS: usize = 5;
    let m = start().await;
    let c = &m.client;
    let (seen, _task) = record_observe(c.observe("/churn").await.expect("observe"));
    let won = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..CANDIDATES {
        let client = Client::connect([m.endpoint()]).await.expect("connect");
        let won = won.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                // Short sessions, so a candidate that "crashes" goes away quickly.
                let s = client
                    .open_session(Duration::from_millis(1000))
                    .await
                    .expect("session");
                let l = client
                    .campaign(
                        "/churn",
                        &s,
                        format!("c{i}r{round}"),
                        Some(Duration::from_secs(20)),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("candidate {i} round {round}: {e}"));
                won.lock().unwrap_or_else(|e| e.into_inner()).push(l.term);
                let leader = client.leader("/churn").await.expect("leader");
                assert_eq!(leader.term, l.term, "the winner is the only leader");
                match (i + round) % 3 {
                    0 => {
                        client.resign(&l).await.expect("resign");
                        s.close().await.expect("close");
                    }
                    1 => {
                        client.proclaim(&l, "proclaimed").await.expect("proclaim");
                        s.close().await.expect("close");
                    }
                    // Crash: keepalives stop; the session expires.
                    _ => drop(s),
                }
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(90), t)
            .await
            .expect("candidates finish")
            .expect("candidate task");
    }
    let won = won.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(won.len(), CANDIDATES * ROUNDS);
    let max = *won.iter().max().expect("terms");
    let seen = poll(Duration::from_secs(10), "Observe to catch up", || async {
        let s = snapshot(&seen);
        s.iter().any(|l| l.term == max).then_some(s)
    })
    .await;
    check_observed(&seen, &won);
}

// ----- CLI -----

fn baton_cmd(m: &Member) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_baton"));
    for (k, _) in std::env::vars() {
        if k.starts_with("BATON_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("--endpoints").arg(m.endpoint());
    cmd
}

#[tokio::test]
async fn cli_lock_runs_the_command_under_the_lock() {
    let m = start().await;
    let out = tokio::task::spawn_blocking({
        let mut cmd = baton_cmd(&m);
        cmd.args([
            "lock",
            "/cli",
            "--",
            "sh",
            "-c",
            "echo \"$BATON_LOCK_NODE $BATON_FENCING_TOKEN\"; exit 3",
        ]);
        move || cmd.output()
    })
    .await
    .expect("join")
    .expect("run baton");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut words = stdout.split_whitespace();
    let node = words.next().unwrap_or_default();
    let token: u64 = words.next().and_then(|t| t.parse().ok()).unwrap_or(0);
    assert!(node.starts_with("/cli/lock-"), "{stdout}");
    assert!(token > 0, "{stdout}");
    // Released when the command exited.
    let q = inspect(&m.client, "/cli").await;
    assert!(q.holders.is_empty() && q.waiters.is_empty());

    // While another session holds it, --wait 0 fails with LOCK_HELD.
    let s = m.session().await;
    let g = m
        .client
        .lock("/cli", &s, LockOptions::exclusive().data("held by test"))
        .await
        .unwrap();
    let out = tokio::task::spawn_blocking({
        let mut cmd = baton_cmd(&m);
        cmd.args(["lock", "--wait", "0", "/cli", "--", "true"]);
        move || cmd.output()
    })
    .await
    .expect("join")
    .expect("run baton");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("LOCK_HELD"),
        "{out:?}"
    );
    let out = tokio::task::spawn_blocking({
        let mut cmd = baton_cmd(&m);
        cmd.args(["lock", "--inspect", "/cli", "-o", "json"]);
        move || cmd.output()
    })
    .await
    .expect("join")
    .expect("run baton");
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["holders"][0]["lock_node"], g.lock_node());
    assert_eq!(v["holders"][0]["fencing_token"], g.fencing_token());
    assert_eq!(v["holders"][0]["data"], "held by test");
    assert_eq!(v["waiters"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn cli_lock_stops_the_command_when_the_session_is_lost() {
    let mut m = start().await;
    let child = tokio::process::Command::from({
        let mut cmd = baton_cmd(&m);
        cmd.args([
            "lock",
            "--session-timeout",
            "1000",
            "/lost",
            "--",
            "sleep",
            "60",
        ]);
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        cmd
    })
    .kill_on_drop(true)
    .spawn()
    .expect("spawn baton lock");
    wait_queue(&m.client, "/lost", 1, 0).await;
    let began = Instant::now();
    // The member goes away: keepalives fail and the session is lost after its timeout.
    if let Some(h) = m.handle.take() {
        h.stop().await.expect("stop");
    }
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("baton lock exits long before the command would")
        .expect("wait");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(began.elapsed() < Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("session") && stderr.contains("SIGTERM"),
        "{stderr}"
    );
}

async fn next_json(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) -> serde_json::Value {
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("observer prints in time")
        .expect("read")
        .expect("a line");
    serde_json::from_str(&line).expect("json line")
}

#[tokio::test]
async fn cli_elect_leads_until_sigterm_and_observe_prints_changes() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let m = start().await;
    let mut observer = tokio::process::Command::from({
        let mut cmd = baton_cmd(&m);
        cmd.args(["elect", "--observe", "/cli-e", "-o", "json"]);
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        cmd
    })
    .kill_on_drop(true)
    .spawn()
    .expect("spawn observer");
    let mut obs_lines = BufReader::new(observer.stdout.take().expect("stdout")).lines();
    let first = next_json(&mut obs_lines).await;
    assert_eq!(first["has_leader"], false);

    let mut leader = tokio::process::Command::from({
        let mut cmd = baton_cmd(&m);
        cmd.args(["elect", "/cli-e", "me:1"]);
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        cmd
    })
    .kill_on_drop(true)
    .spawn()
    .expect("spawn elect");
    let mut lines = BufReader::new(leader.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("elect prints its term")
        .expect("read")
        .expect("a line");
    assert!(line.starts_with("leader of /cli-e with term "), "{line}");
    let l = m.client.leader("/cli-e").await.expect("leader");
    assert!(l.has_leader && l.value == b"me:1");
    assert!(line.contains(&format!("term {} ", l.term)), "{line}");
    let seen = next_json(&mut obs_lines).await;
    assert_eq!(seen["term"], l.term);
    assert_eq!(seen["value"], "me:1");

    let pid = leader.id().expect("pid");
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let st = tokio::time::timeout(Duration::from_secs(10), leader.wait())
        .await
        .expect("elect exits after SIGTERM")
        .expect("wait");
    assert!(st.success(), "{st:?}");
    let gone = next_json(&mut obs_lines).await;
    assert_eq!(gone["has_leader"], false, "resigned: {gone}");
    assert!(!m.client.leader("/cli-e").await.unwrap().has_leader);
    let _ = observer.start_kill();
}
