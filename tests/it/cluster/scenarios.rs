//! Failure scenarios of a replicated cluster, one test each, written as specifications.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use baton::client::{
    ChildrenOptions, Client, ClientError, ClientOptions, CreateOptions, EventType, MultiOps,
    ReadOptions, WatchEvent, WatchKind, Watcher,
};
use openraft::ServerState;

use crate::common::harness::{client_options, poll_until, retry, ClusterOptions, TestCluster};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Creates `path` with `data` through `client`, retrying while the cluster settles (no leader
/// yet). A retry that finds the node with the same data counts as success.
async fn create_settled(client: &Client, path: &str, data: &[u8]) {
    let r = retry(SECS(15), 300, || async {
        match client.create(path, data, CreateOptions::persistent()).await {
            Ok(_) => Ok(()),
            Err(e) if e.is(baton::client::Reason::NodeExists) => {
                let (d, _) = client.get_data(path).await.map_err(|e| e.to_string())?;
                if d == data {
                    Ok(())
                } else {
                    Err(format!("{path} exists with other data {d:?}"))
                }
            }
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    if let Err(e) = r {
        panic!("create {path}: {e}");
    }
}

/// Linearizable read of `path`'s data through `client`, retried while the cluster settles.
async fn read_settled(client: &Client, path: &str) -> Option<Vec<u8>> {
    let r = retry(SECS(15), 300, || async {
        match client.get_data(path).await {
            Ok((d, _)) => Ok(Some(d)),
            Err(e) if e.is(baton::client::Reason::NoNode) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    r.unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// Runs an administration call, sending it again (bounded) only while it is refused with
/// UNAVAILABLE, which promises that nothing was changed (e.g. a leader change).
async fn unless_unavailable<T, F, Fut>(mut call: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let deadline = Instant::now() + SECS(15);
    for _ in 0..100 {
        match call().await {
            Err(e) if e.is(baton::client::Reason::Unavailable) && Instant::now() < deadline => {
                tracing::info!(error = %e, "admin call refused; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            r => return r,
        }
    }
    call().await
}

/// The next event of `w`, which must come within `bound` on a healthy, open stream.
async fn next_event(w: &mut Watcher, bound: Duration) -> WatchEvent {
    tokio::time::timeout(bound, w.next_event())
        .await
        .expect("event in time")
        .expect("stream healthy")
        .expect("stream open")
        .1
}

fn followers(c: &TestCluster, leader: u64) -> Vec<u64> {
    c.running().into_iter().filter(|&id| id != leader).collect()
}

/// Waits until member `id` has purged its log past `index` + 1 (so a member whose log ends at
/// `index` can only catch up by snapshot); returns the purged index.
async fn purged_past(c: &TestCluster, id: u64, index: u64) -> u64 {
    poll_until(
        SECS(20),
        || {
            let m = c.handle(id).raft.metrics().borrow().clone();
            m.purged.map(|l| l.index).filter(|&p| p > index + 1)
        },
        || format!("member {id} did not purge past {index}:\n{}", c.describe()),
    )
    .await
}

fn reason(e: &ClientError) -> String {
    e.reason()
        .map_or_else(|| format!("{:?}", e.code()), |r| r.to_string())
}

// ---------------------------------------------------------------------------------------------

/// Any member serves any request: a write through one member is seen by linearizable reads
/// through every other member at once, with identical data and Stat, and conditional updates
/// and multis work through followers as through the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_member_serves_any_request_with_the_same_answers() {
    let c = TestCluster::start(3).await;
    let ids = c.ids();
    let mut clients = BTreeMap::new();
    for &id in &ids {
        clients.insert(id, c.client(id).await);
    }
    create_settled(&clients[&1], "/any", b"root").await;

    for &writer in &ids {
        let path = format!("/any/by-{writer}");
        let (_, stat) = clients[&writer]
            .create(&path, format!("v{writer}"), CreateOptions::persistent())
            .await
            .unwrap_or_else(|e| panic!("create through member {writer}: {e}"));
        for &reader in &ids {
            let (data, s) = clients[&reader]
                .get_data(&path)
                .await
                .unwrap_or_else(|e| panic!("read through member {reader}: {e}"));
            assert_eq!(data, format!("v{writer}").into_bytes(), "member {reader}");
            assert_eq!(s, stat, "member {reader} reports another Stat for {path}");
        }
    }

    // Conditional update through one follower with the version read through another member.
    let path = "/any/by-1";
    let (_, s) = clients[&3].get_data(path).await.unwrap();
    let new = clients[&2].set_data(path, "cas", s.version).await.unwrap();
    assert_eq!(new.version, s.version + 1);
    let stale = clients[&1].set_data(path, "lost", s.version).await;
    assert!(
        matches!(&stale, Err(e) if e.is(baton::client::Reason::BadVersion)),
        "a CAS with a stale version must fail: {stale:?}"
    );
    for &reader in &ids {
        let (d, st) = clients[&reader].get_data(path).await.unwrap();
        assert_eq!((d.as_slice(), st.version), (&b"cas"[..], new.version));
    }

    // A multi through a follower, then children and existence everywhere.
    let m = clients[&3]
        .multi(
            MultiOps::new()
                .create("/any/m1", "1", CreateOptions::persistent())
                .create("/any/m2", "2", CreateOptions::persistent())
                .delete("/any/by-2", -1),
        )
        .await
        .unwrap();
    assert!(m.succeeded, "{m:?}");
    let mut listings = BTreeMap::new();
    for &reader in &ids {
        let mut names = clients[&reader].get_all_children("/any").await.unwrap();
        names.sort();
        assert!(clients[&reader]
            .exists("/any/by-2")
            .await
            .unwrap()
            .is_none());
        listings.insert(reader, names);
    }
    let first = listings[&1].clone();
    assert_eq!(first, vec!["by-1", "by-3", "m1", "m2"]);
    assert!(listings.values().all(|l| *l == first), "{listings:?}");

    // Every member syncs to at least the last write and reports the same state.
    let last = m.header.map(|h| h.zxid).unwrap_or(0);
    for &id in &ids {
        let h = clients[&id].sync("/").await.unwrap();
        assert!(h.zxid >= last, "member {id} synced to {} < {last}", h.zxid);
    }
    c.wait_converged(SECS(10)).await;
}

/// When the leader stops, the others elect a new leader; writes through a surviving member
/// succeed, and no acknowledged write is lost — on the survivors nor on the old leader once it
/// is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_stopped_new_leader_takes_over_without_losing_acknowledged_writes() {
    let mut c = TestCluster::start(3).await;
    let old = c.wait_for_leader(SECS(10)).await;
    let all = c.client_all().await;
    create_settled(&all, "/kill", b"").await;
    let mut acked = Vec::new();
    for i in 0..20 {
        let via = c.ids()[i % 3];
        let path = format!("/kill/a{i}");
        c.client(via)
            .await
            .create(&path, format!("{i}"), CreateOptions::persistent())
            .await
            .unwrap_or_else(|e| panic!("healthy cluster refused a write via {via}: {e}"));
        acked.push((path, format!("{i}")));
    }

    c.stop(old).await;
    let new = c.wait_for_new_leader(old, SECS(10)).await;
    let survivor = followers(&c, new)[0];
    let via = c.client(survivor).await;
    // The first write may race the end of the election; after one success, every write
    // through the surviving follower must succeed.
    create_settled(&via, "/kill/after-0", b"first").await;
    acked.push(("/kill/after-0".into(), "first".into()));
    for i in 1..20 {
        let path = format!("/kill/after-{i}");
        via.create(&path, format!("{i}"), CreateOptions::persistent())
            .await
            .unwrap_or_else(|e| panic!("write via surviving member {survivor} failed: {e}"));
        acked.push((path, format!("{i}")));
    }
    for id in c.running() {
        let cl = c.client(id).await;
        for (path, data) in &acked {
            let (d, _) = cl
                .get_data(path)
                .await
                .unwrap_or_else(|e| panic!("acknowledged {path} unreadable on {id}: {e}"));
            assert_eq!(d, data.as_bytes(), "{path} on member {id}");
        }
    }

    c.restart(old).await;
    c.wait_converged(SECS(20)).await;
    let back = c.client(old).await;
    for (path, data) in &acked {
        let (d, _) = back
            .get_data_with(path, ReadOptions::serializable())
            .await
            .unwrap_or_else(|e| panic!("{path} missing on the restarted old leader: {e}"));
        assert_eq!(d, data.as_bytes());
    }
}

/// When a follower stops, the leader keeps a quorum: writes through the leader and through
/// the other follower go on without a single failure, and the follower catches up when back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follower_stopped_writes_continue() {
    let mut c = TestCluster::start(3).await;
    let leader = c.wait_for_leader(SECS(10)).await;
    let f = followers(&c, leader);
    let (stopped, other) = (f[0], f[1]);
    create_settled(&c.client(leader).await, "/fol", b"").await;

    c.stop(stopped).await;
    let via_leader = c.client(leader).await;
    let via_other = c.client(other).await;
    for i in 0..30 {
        let (cl, who) = if i % 2 == 0 {
            (&via_leader, leader)
        } else {
            (&via_other, other)
        };
        cl.create(
            &format!("/fol/n{i}"),
            format!("{i}"),
            CreateOptions::persistent(),
        )
        .await
        .unwrap_or_else(|e| panic!("write {i} via {who} with one follower down: {e}"));
    }
    assert_eq!(c.leader(), Some(leader), "the leader must not change");

    c.restart(stopped).await;
    c.wait_converged(SECS(20)).await;
    let back = c.client(stopped).await;
    let names = back
        .get_all_children_with("/fol", ChildrenOptions::default())
        .await
        .unwrap();
    assert_eq!(names.len(), 30);
}

/// A member cut off in a minority: the majority keeps serving reads and writes; the minority
/// member refuses (or times out) writes and linearizable reads — never acknowledging or
/// answering them — but still serves SERIALIZABLE reads from its local, possibly stale, state.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn minority_partition_majority_serves_minority_refuses_but_serves_serializable_reads() {
    let c = TestCluster::start(3).await;
    let leader = c.wait_for_leader(SECS(10)).await;
    let f = followers(&c, leader);
    let (minority, other) = (f[0], f[1]);
    let via_leader = c.client(leader).await;
    create_settled(&via_leader, "/min", b"v1").await;
    let z = via_leader.sync("/").await.unwrap().zxid;
    let m = c.client_timeout(minority, SECS(5)).await;
    // The minority member has applied v1 before the partition.
    m.get_data_with("/min", ReadOptions::serializable().at_least(z))
        .await
        .unwrap();

    c.isolate(minority);

    // The majority serves.
    let via_other = c.client(other).await;
    via_other.set_data("/min", "v2", -1).await.unwrap();
    via_leader
        .create("/min/majority", "m", CreateOptions::persistent())
        .await
        .unwrap();
    assert_eq!(via_other.get_data("/min").await.unwrap().0, b"v2");

    // The minority refuses writes and linearizable reads.
    let w = m
        .create("/min/minority", "x", CreateOptions::persistent())
        .await;
    let w_err = match w {
        Ok(r) => panic!("a member cut off from the majority acknowledged a write: {r:?}"),
        Err(e) => e,
    };
    let s = m.set_data("/min", "v3", -1).await;
    assert!(s.is_err(), "minority acknowledged a SetData: {s:?}");
    for _ in 0..3 {
        match m.get_data("/min").await {
            Ok((d, _)) => panic!(
                "the minority member served a linearizable read: {:?}",
                String::from_utf8_lossy(&d)
            ),
            Err(e) => assert!(
                matches!(reason(&e).as_str(), "UNAVAILABLE" | "DEADLINE_EXCEEDED")
                    || e.code() == tonic::Code::DeadlineExceeded,
                "unexpected error for a linearizable read on the minority: {e}"
            ),
        }
    }
    // ... but serves its local state on request.
    let (d, _) = m
        .get_data_with("/min", ReadOptions::serializable())
        .await
        .expect("SERIALIZABLE reads are served by a minority member");
    assert_eq!(d, b"v1", "the minority member has not seen v2");

    c.heal();
    c.wait_converged(SECS(20)).await;
    assert_eq!(read_settled(&m, "/min").await.as_deref(), Some(&b"v2"[..]));
    if w_err.is(baton::client::Reason::Unavailable) {
        // UNAVAILABLE promises the write was not applied.
        assert_eq!(
            read_settled(&m, "/min/minority").await,
            None,
            "a write refused with UNAVAILABLE was applied after all"
        );
    }
    assert_eq!(
        read_settled(&m, "/min/majority").await.as_deref(),
        Some(&b"m"[..])
    );
}

/// The leader is isolated: the majority elects a new leader and moves on. The old leader must
/// not acknowledge writes nor serve linearizable reads (attempts fail or time out — they never
/// succeed with stale data). After the heal it steps down and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn isolated_leader_neither_acknowledges_writes_nor_serves_stale_reads_then_steps_down() {
    let c = TestCluster::start(3).await;
    let old = c.wait_for_leader(SECS(10)).await;
    let old_term = c.handle(old).raft.metrics().borrow().current_term;
    let via_old = c.client_timeout(old, Duration::from_millis(1500)).await;
    create_settled(&via_old, "/iso", b"before").await;

    c.isolate(old);
    let new = c.wait_for_new_leader(old, SECS(10)).await;
    let via_new = c.client(new).await;
    let r = retry(SECS(10), 200, || async {
        via_new
            .set_data("/iso", "after", -1)
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    r.expect("the new leader accepts writes");

    // The old leader still believes it leads, but cannot confirm it.
    let mut write_errors = Vec::new();
    for i in 0..3 {
        match via_old
            .create(&format!("/iso/stale-{i}"), "x", CreateOptions::persistent())
            .await
        {
            Ok(r) => panic!("the isolated old leader acknowledged a write: {r:?}"),
            Err(e) => write_errors.push(reason(&e)),
        }
        match via_old.get_data("/iso").await {
            Ok((d, _)) => panic!(
                "the isolated old leader served a linearizable read ({:?})",
                String::from_utf8_lossy(&d)
            ),
            Err(e) => tracing::info!(error = %e, "linearizable read refused on the old leader"),
        }
        match via_old.sync("/").await {
            Ok(h) => panic!("the isolated old leader completed a sync: {h:?}"),
            Err(e) => tracing::info!(error = %e, "sync refused on the old leader"),
        }
    }
    println!("isolated leader: write errors {write_errors:?}");

    c.heal();
    // It steps down: a newer term, and no longer leader.
    poll_until(
        SECS(15),
        || {
            let m = c.handle(old).raft.metrics().borrow().clone();
            (m.current_term > old_term && m.state != ServerState::Leader).then_some(())
        },
        || {
            format!(
                "old leader did not step down after the heal:\n{}",
                c.describe()
            )
        },
    )
    .await;
    c.wait_converged(SECS(20)).await;
    assert_eq!(
        read_settled(&via_old, "/iso").await.as_deref(),
        Some(&b"after"[..])
    );
    // The writes sent to the isolated leader timed out (indeterminate): each may have been
    // applied once after the heal, never twice and never with other data.
    let all = c.client(new).await;
    for i in 0..3 {
        let p = format!("/iso/stale-{i}");
        if let Some(d) = read_settled(&all, &p).await {
            assert_eq!(d, b"x");
            println!("isolated leader: indeterminate write {p} was applied after the heal");
        }
    }
}

/// A member that misses more of the log than the leader keeps catches up by installing a
/// snapshot, and ends with the same state as the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lagging_member_catches_up_by_snapshot() {
    let mut c = TestCluster::start_with(ClusterOptions {
        snapshot_every: 50,
        keep_logs: 10,
        ..ClusterOptions::default()
    })
    .await;
    let leader = c.wait_for_leader(SECS(10)).await;
    let lagging = followers(&c, leader)[0];
    let via = c.client(leader).await;
    create_settled(&via, "/snap", b"").await;
    c.wait_converged(SECS(10)).await;
    let lag_last = c
        .handle(lagging)
        .raft
        .metrics()
        .borrow()
        .last_log_index
        .unwrap_or(0);

    c.stop(lagging).await;
    const N: usize = 300;
    for i in 0..N {
        via.create(
            &format!("/snap/n{i:04}"),
            format!("{i}"),
            CreateOptions::persistent(),
        )
        .await
        .unwrap_or_else(|e| panic!("write {i}: {e}"));
    }
    // Precondition: the leader has purged the log the lagging member would need.
    let purged = purged_past(&c, leader, lag_last).await;

    c.restart(lagging).await;
    c.wait_converged(SECS(30)).await;
    let snap = c
        .handle(lagging)
        .raft
        .metrics()
        .borrow()
        .snapshot
        .map(|l| l.index)
        .unwrap_or(0);
    assert!(
        snap >= purged,
        "member {lagging} must have installed a snapshot covering the purged log \
         (its snapshot index {snap}, leader purged up to {purged})"
    );
    let st = c.synced_status(lagging).await.unwrap();
    assert!(st.snapshot_index > 0);
    let back = c.client(lagging).await;
    let names = back.get_all_children("/snap").await.unwrap();
    assert_eq!(names.len(), N);
    let (d, _) = back.get_data("/snap/n0123").await.unwrap();
    assert_eq!(d, b"123");

    // The snapshot carried the leader's recent events: a watch resumed on the member that
    // installed it, from before everything it missed, replays every create in order.
    let stat = back.exists("/snap/n0000").await.unwrap().expect("exists");
    let mut w = back.watcher().await.expect("watcher");
    w.add(
        "/snap",
        WatchKind::PersistentRecursive,
        Some(stat.czxid - 1),
    )
    .await
    .expect("the installed snapshot brought the history before it");
    for i in 0..N {
        let ev = next_event(&mut w, SECS(5)).await;
        assert_eq!(
            (ev.r#type(), ev.path.as_str()),
            (EventType::Created, format!("/snap/n{i:04}").as_str())
        );
    }
}

/// A leader cut off with writes pending on it, while the others elect a new leader and move
/// on far enough that it must catch up by snapshot: once it is back, its pending writes are
/// answered (OUTCOME_UNKNOWN: none of them was committed) instead of waiting forever, none of
/// them is applied, and writes through it work again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deposed_leader_that_installs_a_snapshot_answers_its_pending_writes() {
    const PENDING: usize = 4;
    let c = TestCluster::start_with(ClusterOptions {
        snapshot_every: 50,
        keep_logs: 10,
        ..ClusterOptions::default()
    })
    .await;
    let old = c.wait_for_leader(SECS(10)).await;
    // Without request ids the client reports each pending write's answer as the member gave
    // it (with them it would send an OUTCOME_UNKNOWN write again and settle it): this test is
    // about what the deposed member answers.
    let pinned = Client::connect_with(
        [c.endpoint(old)],
        ClientOptions {
            request_ids: false,
            ..client_options(SECS(40))
        },
    )
    .await
    .expect("connect");
    create_settled(&pinned, "/dep", b"").await;
    c.wait_converged(SECS(10)).await;

    c.isolate(old);
    let mut pending = Vec::new();
    for i in 0..PENDING {
        let client = pinned.clone();
        pending.push(tokio::spawn(async move {
            let r = client
                .create(
                    &format!("/dep/pending{i}"),
                    "x",
                    CreateOptions::persistent(),
                )
                .await;
            (r, Instant::now())
        }));
    }
    let new = c.wait_for_new_leader(old, SECS(20)).await;
    let via = c.client(new).await;
    for i in 0..300 {
        via.create(&format!("/dep/n{i:03}"), "", CreateOptions::persistent())
            .await
            .unwrap_or_else(|e| panic!("write {i} through the new leader: {e}"));
    }
    let old_last = c
        .handle(old)
        .raft
        .metrics()
        .borrow()
        .last_log_index
        .unwrap_or(0);
    purged_past(&c, new, old_last).await;

    c.heal();
    let healed = Instant::now();
    let (mut queued_ok, mut unknown) = (Vec::new(), Vec::new());
    for (i, p) in pending.into_iter().enumerate() {
        let (r, at) = tokio::time::timeout(SECS(20), p)
            .await
            .unwrap_or_else(|_| panic!("pending write {i} still unanswered 20 s after the heal"))
            .expect("task");
        // A write still queued when the member stepped down is passed to the new leader
        // and succeeds; one appended to the cut-off log never commits.
        match &r {
            Ok(_) => queued_ok.push(i),
            Err(e)
                if e.is(baton::client::Reason::OutcomeUnknown)
                    || e.is(baton::client::Reason::Unavailable) =>
            {
                unknown.push(i)
            }
            Err(e) => panic!("pending write {i}: {e}"),
        }
        assert!(
            at.saturating_duration_since(healed) < SECS(10),
            "pending write {i} answered {:?} after the heal",
            at.saturating_duration_since(healed)
        );
    }
    let snap = c
        .handle(old)
        .raft
        .metrics()
        .borrow()
        .snapshot
        .map(|l| l.index)
        .unwrap_or(0);
    assert!(
        snap > old_last,
        "precondition: member {old} caught up by installing a snapshot (its snapshot {snap}, \
         its log ended at {old_last})"
    );
    let again = retry(SECS(10), 100, || async {
        pinned
            .set_data("/dep", "after", -1)
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    assert!(
        again.is_ok(),
        "a write through member {old} after the heal: {again:?}"
    );
    assert!(
        !unknown.is_empty(),
        "precondition: some write was appended on the cut-off leader (succeeded after the \
         heal: {queued_ok:?})"
    );
    for i in 0..PENDING {
        let found = read_settled(&via, &format!("/dep/pending{i}")).await;
        assert_eq!(
            found.is_some(),
            queued_ok.contains(&i),
            "pending write {i}: applied exactly if it was acknowledged (unknown: {unknown:?})"
        );
    }
    c.wait_converged(SECS(30)).await;
}

/// A member keeps its watch history across a restart: a watch resumed on it from before the
/// restart replays the events in order. A member whose (shorter) history no longer reaches
/// the resume point answers `COMPACTED`, and a client that lists every member is then served
/// by one that has the events.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_resumed_from_before_a_restart_replays_and_a_short_history_hands_over() {
    // Member 3 keeps only two events.
    let mut c = TestCluster::start_with(ClusterOptions {
        tweak: |cfg| {
            if cfg.id == 3 {
                cfg.watch_history = 2;
            }
        },
        ..ClusterOptions::default()
    })
    .await;
    let leader = c.wait_for_leader(SECS(10)).await;
    let via = c.client(leader).await;
    create_settled(&via, "/wr", b"").await;
    let mut zxids = Vec::new();
    for name in ["a", "b", "c"] {
        let (_, stat) = via
            .create(&format!("/wr/{name}"), name, CreateOptions::persistent())
            .await
            .expect("create");
        zxids.push(stat.czxid);
    }
    c.wait_converged(SECS(10)).await;
    let expect_created = |ev: &WatchEvent, name: &str, zxid: u64| {
        assert_eq!(
            (ev.r#type(), ev.path.as_str(), ev.zxid),
            (EventType::Created, format!("/wr/{name}").as_str(), zxid)
        );
    };

    let restarted = followers(&c, leader)
        .into_iter()
        .find(|&id| id != 3)
        .expect("a follower other than member 3");
    c.stop(restarted).await;
    c.restart(restarted).await;
    c.wait_converged(SECS(20)).await;
    let pinned = c.client(restarted).await;
    let mut w = pinned.watcher().await.expect("watcher");
    w.add("/wr", WatchKind::PersistentRecursive, Some(zxids[0] - 1))
        .await
        .expect("the restarted member still has the events");
    for (name, zxid) in ["a", "b", "c"].iter().zip(&zxids) {
        let ev = next_event(&mut w, SECS(5)).await;
        expect_created(&ev, name, *zxid);
    }

    let short = c.client(3).await;
    let mut w = short.watcher().await.expect("watcher");
    let err = w
        .add("/wr", WatchKind::PersistentRecursive, Some(zxids[0] - 1))
        .await
        .expect_err("precondition: member 3 no longer has the events");
    assert!(err.is(baton::client::Reason::Compacted), "{err}");
    let all = c.client_from(3, SECS(3)).await;
    let (mut w, _, _) = all
        .watch_from("/wr", WatchKind::PersistentRecursive, Some(zxids[0] - 1))
        .await
        .expect("resumed on another member");
    let short_ep = c.endpoint(3);
    let short_ep = short_ep.trim_start_matches("http://");
    assert!(
        !w.endpoint().ends_with(short_ep),
        "served by {} (member 3 is {short_ep})",
        w.endpoint()
    );
    for (name, zxid) in ["a", "b", "c"].iter().zip(&zxids) {
        let ev = next_event(&mut w, SECS(5)).await;
        expect_created(&ev, name, *zxid);
    }
}

/// Membership changes: a new member joins as a learner and catches up, is promoted and then
/// votes; a member is removed; the cluster serves throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn add_promote_and_remove_members_while_serving() {
    let mut c = TestCluster::start(3).await;
    let leader = c.wait_for_leader(SECS(10)).await;
    let writer = c.client_all().await;
    create_settled(&writer, "/mem", b"").await;
    for i in 0..50 {
        writer
            .create(&format!("/mem/a{i}"), "a", CreateOptions::persistent())
            .await
            .unwrap();
    }

    // A fourth member starts, knows the cluster, and waits to be added (it must not form a
    // cluster of its own).
    c.spawn_joiner(4).await;
    assert!(
        c.handle(4).raft.metrics().borrow().current_leader.is_none(),
        "a joiner must not initialise a cluster"
    );
    let follower = followers(&c, leader)[0];
    let members = unless_unavailable(|| c.add_member(follower, 4))
        .await
        .expect("AddMember through a follower");
    let m4 = members.iter().find(|m| m.id == 4).expect("member 4 listed");
    assert!(!m4.voter, "a new member is a learner");
    c.wait_converged(SECS(20)).await;
    assert_eq!(
        c.handle(4).raft.metrics().borrow().state,
        ServerState::Learner
    );
    let via4 = c.client(4).await;
    assert_eq!(via4.get_all_children("/mem").await.unwrap().len(), 50);

    let members = unless_unavailable(|| c.promote(leader, 4))
        .await
        .expect("PromoteMember");
    assert!(members.iter().any(|m| m.id == 4 && m.voter), "{members:?}");
    via4.create("/mem/by4", "4", CreateOptions::persistent())
        .await
        .expect("write through the promoted member");

    // Remove one original follower (not the leader, not 4).
    let victim = c
        .running()
        .into_iter()
        .find(|&id| id != 4 && Some(id) != c.leader())
        .expect("a follower to remove");
    let members = unless_unavailable(|| c.remove(4, victim))
        .await
        .expect("RemoveMember through the new member");
    assert!(members.iter().all(|m| m.id != victim), "{members:?}");
    c.forget(victim).await;
    for i in 0..10 {
        writer
            .create(&format!("/mem/b{i}"), "b", CreateOptions::persistent())
            .await
            .unwrap_or_else(|e| panic!("write after the removal: {e}"));
    }

    // Member 4 votes: stop one of the two other voters (the leader, if it is not 4); the
    // remaining two — one of them member 4 — must keep a leader and accept writes.
    let current = c.wait_for_leader(SECS(10)).await;
    let to_stop = if current != 4 {
        current
    } else {
        c.running().into_iter().find(|&id| id != 4).unwrap()
    };
    c.stop(to_stop).await;
    let now = c.wait_for_leader(SECS(15)).await;
    assert_ne!(now, to_stop);
    create_settled(&via4, "/mem/quorum-with-4", b"ok").await;
    assert_eq!(via4.get_all_children("/mem").await.unwrap().len(), 62);

    c.restart(to_stop).await;
    c.wait_converged(SECS(20)).await;
    let members = c.client(to_stop).await.members().await.unwrap();
    let ids: Vec<(u64, bool)> = members.iter().map(|m| (m.id, m.voter)).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(
        ids.iter().all(|&(id, voter)| voter && id != victim),
        "{ids:?}"
    );
}

/// A session opened through a follower survives the leader's failure: the client keeps it
/// alive through a surviving member, the new leader gives it a fresh timeout instead of
/// expiring it, and its ephemeral node stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_survives_leader_failover() {
    let mut c = TestCluster::start(3).await;
    let leader = c.wait_for_leader(SECS(10)).await;
    let follower = followers(&c, leader)[0];
    let client = c.client_from(follower, SECS(3)).await;
    create_settled(&client, "/sess", b"").await;
    let timeout = Duration::from_millis(1500);
    let session = client.open_session(timeout).await.unwrap();
    assert_eq!(session.timeout(), timeout);
    client
        .create("/sess/eph", "me", CreateOptions::ephemeral(session.id()))
        .await
        .unwrap();

    c.stop(leader).await;
    let new = c.wait_for_new_leader(leader, SECS(10)).await;

    // For three session timeouts, the session stays alive and its ephemeral stays, as seen
    // through every surviving member.
    let until = Instant::now() + timeout * 3;
    let mut checks = 0;
    while Instant::now() < until && checks < 1000 {
        assert!(session.is_alive(), "session lost: {:?}", session.state());
        for id in c.running() {
            let cl = c.client(id).await;
            let st = retry(SECS(5), 100, || async {
                cl.exists("/sess/eph").await.map_err(|e| e.to_string())
            })
            .await
            .unwrap();
            assert!(
                st.is_some(),
                "ephemeral gone on member {id} (new leader {new})"
            );
            assert_eq!(st.unwrap().ephemeral_owner, session.id());
        }
        checks += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let info = c.client(new).await.get_session(session.id()).await.unwrap();
    assert_eq!(info.ephemerals, vec!["/sess/eph".to_string()]);

    // The old leader comes back and agrees; closing the session deletes the ephemeral.
    c.restart(leader).await;
    c.wait_converged(SECS(20)).await;
    assert!(session.is_alive());
    session.close().await.unwrap();
    let back = c.client(leader).await;
    assert!(back.exists("/sess/eph").await.unwrap().is_none());
}

/// A watch resumed on another member with `start_zxid` = the last zxid seen gets every later
/// event exactly once, in order, with no gap — including events that happened while no
/// watcher was connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_resumes_on_another_member_without_gap_or_duplicate() {
    let mut c = TestCluster::start(3).await;
    let leader = c.wait_for_leader(SECS(10)).await;
    let f = followers(&c, leader);
    let (a, b) = (f[0], f[1]);
    let writer = c.client(leader).await;
    create_settled(&writer, "/w", b"").await;

    // Expected events under /w, in order: (zxid, type, path).
    let mut expected: Vec<(u64, EventType, String)> = Vec::new();
    let mut step = 0u32;
    async fn write(writer: &Client, step: &mut u32, expected: &mut Vec<(u64, EventType, String)>) {
        let i = *step;
        *step += 1;
        let p = format!("/w/c{}", i / 3);
        match i % 3 {
            0 => {
                let (_, s) = writer
                    .create(&p, "0", CreateOptions::persistent())
                    .await
                    .unwrap();
                expected.push((s.czxid, EventType::Created, p));
            }
            1 => {
                let s = writer.set_data(&p, "1", -1).await.unwrap();
                expected.push((s.mzxid, EventType::DataChanged, p));
            }
            _ => {
                let h = writer.delete(&p, -1).await.unwrap();
                expected.push((h.zxid, EventType::Deleted, p));
            }
        }
    }

    let via_a = c.client(a).await;
    // Member A has applied the creation of /w, so the watch starts after it.
    via_a.sync("/").await.unwrap();
    let mut wa = via_a.watcher().await.unwrap();
    let (_, added) = wa
        .add("/w", WatchKind::PersistentRecursive, None)
        .await
        .unwrap();
    for _ in 0..10 {
        write(&writer, &mut step, &mut expected).await;
    }
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let ev = tokio::time::timeout(SECS(10), wa.next_event())
            .await
            .expect("event on member A in time")
            .expect("stream healthy")
            .expect("stream open");
        assert!(ev.1.zxid > added.zxid);
        seen.push((ev.1.zxid, ev.1.r#type(), ev.1.path.clone()));
    }
    assert_eq!(seen, expected[..6].to_vec(), "member A's events");
    let last_seen = seen.last().unwrap().0;

    drop(wa);
    c.stop(a).await;
    for _ in 0..12 {
        write(&writer, &mut step, &mut expected).await;
    }

    let via_b = c.client(b).await;
    let mut wb = via_b.watcher().await.unwrap();
    wb.add("/w", WatchKind::PersistentRecursive, Some(last_seen))
        .await
        .unwrap();
    for _ in 0..6 {
        write(&writer, &mut step, &mut expected).await;
    }
    // A sentinel closes the sequence: everything before it must be exactly the expected tail.
    let (_, s) = writer
        .create("/w/sentinel", "", CreateOptions::persistent())
        .await
        .unwrap();
    expected.push((s.czxid, EventType::Created, "/w/sentinel".into()));
    let want: Vec<_> = expected
        .iter()
        .filter(|e| e.0 > last_seen)
        .cloned()
        .collect();
    let mut got = Vec::new();
    for _ in 0..want.len() + 10 {
        let ev = tokio::time::timeout(SECS(10), wb.next_event())
            .await
            .unwrap_or_else(|_| panic!("member B stopped delivering; got {got:?}"))
            .expect("stream healthy")
            .expect("stream open");
        let done = ev.1.path == "/w/sentinel";
        got.push((ev.1.zxid, ev.1.r#type(), ev.1.path.clone()));
        if done {
            break;
        }
    }
    assert_eq!(
        got, want,
        "resumed events on member B (after zxid {last_seen})"
    );
    c.restart(a).await;
}

/// A watch stream that stays connected to a member while that member falls behind and
/// installs a snapshot must not silently skip the events the snapshot covers: the stream
/// either delivers every event or ends with an error, and a watch resumed elsewhere from the
/// last zxid seen then delivers the rest, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn continuous_watch_on_a_member_that_installs_a_snapshot_never_skips_events() {
    let c = TestCluster::start_with(ClusterOptions {
        snapshot_every: 50,
        keep_logs: 10,
        ..ClusterOptions::default()
    })
    .await;
    let leader = c.wait_for_leader(SECS(10)).await;
    let f = followers(&c, leader);
    let (lagging, other) = (f[0], f[1]);
    let writer = c.client(leader).await;
    create_settled(&writer, "/gap", b"").await;
    let via_lagging = c.client(lagging).await;
    via_lagging.sync("/").await.unwrap();
    let mut w = via_lagging.watcher().await.unwrap();
    w.add("/gap", WatchKind::PersistentRecursive, None)
        .await
        .unwrap();

    let mut expected: Vec<(u64, String)> = Vec::new();
    let mut got: Vec<(u64, String)> = Vec::new();
    for i in 0..3 {
        let p = format!("/gap/pre{i}");
        let (_, s) = writer
            .create(&p, "", CreateOptions::persistent())
            .await
            .unwrap();
        expected.push((s.czxid, p));
    }
    while got.len() < 3 {
        let ev = next_event(&mut w, SECS(10)).await;
        got.push((ev.zxid, ev.path));
    }
    assert_eq!(got, expected);
    let lag_last = c
        .handle(lagging)
        .raft
        .metrics()
        .borrow()
        .last_log_index
        .unwrap_or(0);

    // The member falls behind the leader's purged log (the leader purges in batches of 256).
    c.isolate(lagging);
    for i in 0..320 {
        let p = format!("/gap/n{i:03}");
        let (_, s) = writer
            .create(&p, "", CreateOptions::persistent())
            .await
            .unwrap_or_else(|e| panic!("write {p}: {e}"));
        expected.push((s.czxid, p));
    }
    poll_until(
        SECS(20),
        || {
            let purged = c.handle(leader).raft.metrics().borrow().purged;
            purged.is_some_and(|p| p.index > lag_last + 1).then_some(())
        },
        || format!("leader did not purge past {lag_last}:\n{}", c.describe()),
    )
    .await;
    c.heal();
    c.wait_converged(SECS(30)).await;
    assert!(
        c.handle(lagging)
            .raft
            .metrics()
            .borrow()
            .snapshot
            .is_some_and(|s| s.index > lag_last),
        "precondition: member {lagging} caught up by installing a snapshot"
    );
    let (_, s) = writer
        .create("/gap/sentinel", "", CreateOptions::persistent())
        .await
        .unwrap();
    expected.push((s.czxid, "/gap/sentinel".into()));

    // Read the continuous stream until the sentinel or until it ends.
    let mut ended = None;
    for _ in 0..expected.len() + 10 {
        match tokio::time::timeout(SECS(10), w.next_event()).await {
            Err(_) => panic!(
                "the stream neither delivered nor ended; got {} events",
                got.len()
            ),
            Ok(Ok(Some((_, ev)))) => {
                let done = ev.path == "/gap/sentinel";
                got.push((ev.zxid, ev.path));
                if done {
                    break;
                }
            }
            Ok(Ok(None)) => {
                ended = Some("ended without a status".to_string());
                break;
            }
            Ok(Err(e)) => {
                ended = Some(e.to_string());
                break;
            }
        }
    }
    let n = got.len();
    assert_eq!(
        got,
        expected[..n].to_vec(),
        "member {lagging}'s continuous watch skipped or reordered events \
         (it installed a snapshot; stream end: {ended:?})"
    );
    if let Some(why) = ended {
        // The stream ended: resume elsewhere from the last zxid seen.
        println!("watch on member {lagging} ended after {n} events: {why}");
        let last = got.last().map(|e| e.0).unwrap_or(0);
        let via_other = c.client(other).await;
        let mut w2 = via_other.watcher().await.unwrap();
        w2.add("/gap", WatchKind::PersistentRecursive, Some(last))
            .await
            .unwrap();
        while got.len() < expected.len() {
            let ev = tokio::time::timeout(SECS(10), w2.next_event())
                .await
                .expect("resumed events in time")
                .expect("stream healthy")
                .expect("stream open");
            got.push((ev.1.zxid, ev.1.path));
        }
        assert_eq!(got, expected, "resumed watch");
    }
}

/// A write that the leader appended and replicated but could not commit before it was stopped
/// has an unknown outcome. It must take effect at most once: the stopping leader must not call
/// it "not applied" (UNAVAILABLE, which lets the write be sent again) while the member that
/// holds a copy goes on to commit that copy as the new leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_pending_on_a_stopped_leader_takes_effect_at_most_once() {
    let mut c = TestCluster::start(5).await;
    let leader = c.wait_for_leader(SECS(10)).await;
    let f = followers(&c, leader);
    let (f1, rest) = (f[0], f[1..].to_vec());
    let via_f1 = c.client_timeout(f1, SECS(20)).await;
    create_settled(&via_f1, "/dup", b"").await;
    c.wait_converged(SECS(10)).await;
    let before = c
        .handle(f1)
        .raft
        .metrics()
        .borrow()
        .last_log_index
        .unwrap_or(0);

    // The leader reaches only f1; the three others reach nobody (their replies still flow).
    c.node(leader).faults.block(leader, rest.iter().copied());
    for &r in &rest {
        c.node(r).faults.block(r, c.ids());
    }
    // A sequential create through f1: forwarded to the leader, appended there and on f1,
    // not committed (2 of 5).
    let writer = tokio::spawn(async move {
        via_f1
            .create("/dup/n-", "x", CreateOptions::persistent().sequential())
            .await
    });
    poll_until(
        SECS(10),
        || {
            let last = c.handle(f1).raft.metrics().borrow().last_log_index;
            (last.unwrap_or(0) > before).then_some(())
        },
        || format!("entry not replicated to f1:\n{}", c.describe()),
    )
    .await;
    assert!(!writer.is_finished(), "the write cannot have committed yet");

    // The leader stops; f1, holding the entry, can win an election and commit it.
    c.stop(leader).await;
    let result = writer.await.expect("writer task");
    println!("write pending on the stopped leader: {result:?}");
    c.heal();
    c.wait_for_leader(SECS(15)).await;
    c.wait_converged(SECS(20)).await;
    let names = c.client_all().await.get_all_children("/dup").await.unwrap();
    assert!(
        names.len() <= 1,
        "one sequential create took effect {} times: {names:?} (the client saw {result:?})",
        names.len()
    );
    match &result {
        Ok(_) => assert_eq!(names.len(), 1, "an acknowledged create is missing"),
        Err(e) if e.is(baton::client::Reason::Unavailable) => assert!(
            names.is_empty(),
            "the client was told UNAVAILABLE (not applied, safe to retry) but the create took \
             effect: {names:?} ({e})"
        ),
        Err(_) => {}
    }
}

/// Only the current leader expires sessions. A leader cut off from the cluster stops hearing
/// the keepalives (they now reach the new leader) and may decide that a session expired; that
/// decision must never take effect — not while it is cut off, and not after the heal.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deposed_leader_does_not_expire_sessions_kept_alive_through_the_new_leader() {
    let c = TestCluster::start(3).await;
    let old = c.wait_for_leader(SECS(10)).await;
    let f = followers(&c, old);
    let client =
        crate::common::harness::connect_retry(&[c.endpoint(f[0]), c.endpoint(f[1])], SECS(3)).await;
    create_settled(&client, "/exp", b"").await;
    let timeout = Duration::from_millis(1000);
    let session = client.open_session(timeout).await.unwrap();
    client
        .create("/exp/eph", "me", CreateOptions::ephemeral(session.id()))
        .await
        .unwrap();

    c.isolate(old);
    let new = c.wait_for_new_leader(old, SECS(10)).await;
    let via_new = c.client(new).await;

    // Keep checking while the old leader sits cut off long past the session timeout, and
    // after the heal, while it steps down and catches up.
    let check = |phase: &'static str| {
        let via_new = via_new.clone();
        let session = &session;
        async move {
            assert!(
                session.is_alive(),
                "{phase}: session lost: {:?}",
                session.state()
            );
            let st = retry(SECS(5), 100, || async {
                via_new.exists("/exp/eph").await.map_err(|e| e.to_string())
            })
            .await
            .unwrap();
            assert!(
                st.is_some(),
                "{phase}: the ephemeral of a live session was deleted (old leader {old})"
            );
        }
    };
    let until = Instant::now() + timeout * 3;
    for _ in 0..1000 {
        if Instant::now() >= until {
            break;
        }
        check("while the old leader is cut off").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.heal();
    let until = Instant::now() + timeout * 4;
    for _ in 0..1000 {
        if Instant::now() >= until {
            break;
        }
        check("after the heal").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.wait_converged(SECS(20)).await;
    check("after convergence").await;
    session.close().await.unwrap();
}

/// Resuming a watch on a member that has not yet applied the zxid the client already saw
/// elsewhere: that member must deliver only the later events — not again the ones the client
/// saw, even though it applies them after the watch was registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_resumed_on_a_lagging_member_delivers_no_event_twice() {
    let c = TestCluster::start(3).await;
    let leader = c.wait_for_leader(SECS(10)).await;
    let lagging = followers(&c, leader)[0];
    let writer = c.client(leader).await;
    create_settled(&writer, "/lag", b"").await;
    let via_lagging = c.client(lagging).await;
    via_lagging.sync("/").await.unwrap();

    // The client watches through the leader while the other member falls behind.
    c.isolate(lagging);
    let mut first = writer.watcher().await.unwrap();
    first
        .add("/lag", WatchKind::PersistentRecursive, None)
        .await
        .unwrap();
    let mut expected = Vec::new();
    for i in 0..5 {
        let p = format!("/lag/a{i}");
        let (_, s) = writer
            .create(&p, "", CreateOptions::persistent())
            .await
            .unwrap();
        expected.push((s.czxid, p));
    }
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let (_, ev) = tokio::time::timeout(SECS(10), first.next_event())
            .await
            .expect("event in time")
            .expect("stream healthy")
            .expect("stream open");
        seen.push((ev.zxid, ev.path));
    }
    assert_eq!(seen, expected);
    let last_seen = seen.last().unwrap().0;
    drop(first);

    // Resume on the lagging member, which has not applied `last_seen` yet.
    let applied = c
        .handle(lagging)
        .raft
        .metrics()
        .borrow()
        .last_applied
        .map(|l| l.index)
        .unwrap_or(0);
    assert!(applied < last_seen, "precondition: member {lagging} lags");
    let mut resumed = via_lagging.watcher().await.unwrap();
    let add = {
        let add = resumed.add("/lag", WatchKind::PersistentRecursive, Some(last_seen));
        let heal = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            c.heal();
        };
        let (add, ()) = tokio::join!(add, heal);
        add
    };
    c.heal();
    add.expect("resume on the lagging member");
    for i in 0..3 {
        let p = format!("/lag/b{i}");
        let (_, s) = writer
            .create(&p, "", CreateOptions::persistent())
            .await
            .unwrap();
        expected.push((s.czxid, p));
    }
    let (_, s) = writer
        .create("/lag/sentinel", "", CreateOptions::persistent())
        .await
        .unwrap();
    expected.push((s.czxid, "/lag/sentinel".into()));
    let want: Vec<_> = expected.into_iter().filter(|e| e.0 > last_seen).collect();
    let mut got = Vec::new();
    for _ in 0..want.len() + 10 {
        let (_, ev) = tokio::time::timeout(SECS(10), resumed.next_event())
            .await
            .unwrap_or_else(|_| panic!("no sentinel; got {got:?}"))
            .expect("stream healthy")
            .expect("stream open");
        let done = ev.path == "/lag/sentinel";
        got.push((ev.zxid, ev.path));
        if done {
            break;
        }
    }
    assert_eq!(
        got, want,
        "events delivered by member {lagging} after resuming from zxid {last_seen}"
    );
}

/// Removing the leader itself: the remaining members elect a leader among themselves and keep
/// serving; the removed member is no longer listed, and no acknowledged write is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removing_the_leader_hands_over_to_the_remaining_members() {
    let mut c = TestCluster::start(3).await;
    let leader = c.wait_for_leader(SECS(10)).await;
    let f = followers(&c, leader);
    let via =
        crate::common::harness::connect_retry(&[c.endpoint(f[0]), c.endpoint(f[1])], SECS(5)).await;
    create_settled(&via, "/rm", b"").await;
    for i in 0..10 {
        via.create(&format!("/rm/a{i}"), "a", CreateOptions::persistent())
            .await
            .unwrap();
    }
    let members = unless_unavailable(|| c.remove(f[0], leader))
        .await
        .expect("RemoveMember of the leader through a follower");
    assert!(members.iter().all(|m| m.id != leader), "{members:?}");
    c.forget(leader).await;
    let new = c.wait_for_leader(SECS(15)).await;
    assert_ne!(new, leader);
    create_settled(&via, "/rm/after", b"x").await;
    for i in 0..10 {
        via.create(&format!("/rm/b{i}"), "b", CreateOptions::persistent())
            .await
            .unwrap_or_else(|e| panic!("write after removing the leader: {e}"));
    }
    c.wait_converged(SECS(20)).await;
    for id in c.running() {
        let cl = c.client(id).await;
        assert_eq!(cl.get_all_children("/rm").await.unwrap().len(), 21);
        let ids: Vec<u64> = cl.members().await.unwrap().iter().map(|m| m.id).collect();
        assert_eq!(ids, f, "members as seen by {id}");
    }
}

/// A follower over its storage quota raises the replicated NOSPACE alarm: the leader refuses
/// writes that add data (through any member), reads and deletes go on, `status` shows the
/// alarm; once the follower is back under its quota it clears the alarm and writes resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_over_its_quota_stops_the_clusters_writes_until_it_has_room() {
    let mut c = TestCluster::start(3).await;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await;
    let follower = *c
        .ids()
        .iter()
        .find(|&&id| id != leader)
        .expect("a follower");
    let client = c.client_all().await;
    create_settled(&client, "/keep", b"v").await;

    c.stop(follower).await;
    c.node_mut(follower).cfg.quota_bytes = 1024; // any data directory is over this
    c.restart(follower).await;
    let refused = retry(Duration::from_secs(20), 400, || async {
        match client
            .create("/new", b"x", CreateOptions::persistent())
            .await
        {
            Err(e) if e.is(baton::client::Reason::NoSpace) => Ok(e),
            Ok(_) => {
                let _ = client.delete("/new", -1).await;
                Err("accepted".to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .expect("writes refused with NOSPACE");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(
        refused.to_string().contains(&format!("member {follower}")),
        "{refused}"
    );
    for id in c.ids() {
        let e = c
            .client(id)
            .await
            .set_data("/keep", b"w", -1)
            .await
            .expect_err("refused through every member");
        assert!(
            e.is(baton::client::Reason::NoSpace),
            "through member {id}: {e}"
        );
    }
    let status = c.synced_status(leader).await.expect("status");
    assert_eq!(status.alarms.len(), 1, "{:?}", status.alarms);
    assert_eq!(status.alarms[0].member_id, follower);
    assert_eq!(status.alarms[0].kind, "NOSPACE");
    // The alarm degrades, it does not kill: every member stays live and ready, /health
    // reports the alarm, and the metric shows it.
    for id in c.ids() {
        let addr = c.handle(id).metrics_addr.expect("metrics port").to_string();
        let get = |path: &'static str| {
            let addr = addr.clone();
            async move {
                baton::ops::http::get(&addr, path, Duration::from_secs(10))
                    .await
                    .expect("metrics port")
            }
        };
        assert_eq!(get("/livez").await.0, 200, "member {id} live");
        assert_eq!(get("/readyz").await.0, 200, "member {id} ready");
        let (code, body) = get("/health").await;
        assert_eq!(code, 503, "member {id}: {body}");
        assert!(body.contains("NOSPACE"), "{body}");
        let metrics = get("/metrics").await.1;
        assert!(
            metrics.contains("baton_alarm_active{alarm=\"NOSPACE\"} 1"),
            "member {id} shows the alarm"
        );
    }
    assert_eq!(client.get_data("/keep").await.expect("read").0, b"v");
    client
        .create("/gone", b"", CreateOptions::persistent())
        .await
        .expect_err("refused");

    c.stop(follower).await;
    c.node_mut(follower).cfg.quota_bytes = 0;
    c.restart(follower).await;
    retry(Duration::from_secs(20), 400, || async {
        client
            .create("/new", b"x", CreateOptions::persistent())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await
    .expect("writes resume once the alarm clears");
    client.delete("/keep", -1).await.expect("delete");
    let status = c.synced_status(leader).await.expect("status");
    assert!(status.alarms.is_empty(), "{:?}", status.alarms);
}

/// Snapshots taken every few entries while four writers fill a tree never cost the leader
/// its leadership nor a client an error; then a follower whose data directory is wiped
/// rejoins by installing a snapshot streamed from the leader's file, and serves the whole
/// tree (the small CI size of `scripts/bench-scale.sh`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshots_under_writes_keep_the_leader_and_a_wiped_follower_rejoins() {
    const WRITERS: usize = 4;
    const BATCHES: usize = 40;
    const PER_BATCH: usize = 25;
    let mut c = TestCluster::start_with(ClusterOptions {
        snapshot_every: 40,
        keep_logs: 10,
        ..ClusterOptions::default()
    })
    .await;
    let leader = c.wait_for_leader(SECS(10)).await;
    let via = c.client(leader).await;
    create_settled(&via, "/big", b"").await;
    let term = c.handle(leader).raft.metrics().borrow().current_term;

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let client = c.client(leader).await;
        writers.push(tokio::spawn(async move {
            for b in 0..BATCHES {
                let mut ops = MultiOps::new();
                for i in 0..PER_BATCH {
                    ops = ops.create(
                        &format!("/big/w{w}-{b:03}-{i:02}"),
                        vec![b'x'; 256],
                        CreateOptions::persistent(),
                    );
                }
                let r = client
                    .multi(ops.into_ops())
                    .await
                    .unwrap_or_else(|e| panic!("writer {w} batch {b}: {e}"));
                assert!(r.succeeded, "writer {w} batch {b} failed: {r:?}");
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    c.wait_converged(SECS(30)).await;
    let m = c.handle(leader).raft.metrics().borrow().clone();
    assert!(
        m.snapshot.map_or(0, |l| l.index) > 40,
        "precondition: the leader took snapshots during the load: {:?}",
        m.snapshot
    );
    for id in c.running() {
        let mm = c.handle(id).raft.metrics().borrow().clone();
        assert_eq!(
            (mm.current_term, mm.current_leader),
            (term, Some(leader)),
            "member {id}: the term or the leader changed while snapshots were taken"
        );
    }

    // Precondition of the rejoin by snapshot: the leader has purged the start of its log
    // (openraft purges in batches of 256 entries; the writers' entries may be fewer).
    for i in 0..2_000 {
        if c.handle(leader).raft.metrics().borrow().purged.is_some() {
            break;
        }
        via.set_data("/big", format!("{i}"), -1)
            .await
            .unwrap_or_else(|e| panic!("filler write {i}: {e}"));
    }
    assert!(
        c.handle(leader).raft.metrics().borrow().purged.is_some(),
        "precondition: the leader purged its log:\n{}",
        c.describe()
    );

    // Wipe a follower (not the lowest id, which would found a new cluster) and bring it back.
    let wiped = *followers(&c, leader).iter().max().expect("a follower");
    c.stop(wiped).await;
    let dir = c.node(wiped).dir.clone();
    std::fs::remove_dir_all(&dir).expect("wipe");
    std::fs::create_dir_all(&dir).expect("mkdir");
    c.restart(wiped).await;
    c.wait_converged(SECS(60)).await;
    let snap = c
        .handle(wiped)
        .raft
        .metrics()
        .borrow()
        .snapshot
        .map_or(0, |l| l.index);
    assert!(snap > 0, "member {wiped} rejoined by installing a snapshot");
    let back = c.client(wiped).await;
    let names = back.get_all_children("/big").await.expect("children");
    assert_eq!(names.len(), WRITERS * BATCHES * PER_BATCH);
    let (d, _) = back.get_data("/big/w3-039-24").await.expect("read");
    assert_eq!(d, vec![b'x'; 256]);
}

/// A member that lost its data must not help elect a member that lacks an acknowledged
/// write: with the write on the leader and one follower only, that follower wiped and back,
/// and the leader stopped, the two others elect no one (the wiped member holds its vote
/// until it has caught up); once the leader is back it leads again and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_member_does_not_help_elect_a_member_that_lacks_acknowledged_writes() {
    let mut c = TestCluster::start(3).await;
    let leader = c.wait_for_leader(SECS(10)).await;
    let via = c.client(leader).await;
    create_settled(&via, "/held", b"").await;
    c.wait_converged(SECS(10)).await;
    let ids = followers(&c, leader);
    // The wiped member must not be the lowest id (which would found a new cluster).
    let (behind, wiped) = (ids[0].min(ids[1]), ids[0].max(ids[1]));

    c.isolate(behind);
    let (_, acked) = via
        .create("/held/acked", "on two members", CreateOptions::persistent())
        .await
        .expect("acknowledged by the leader and the member about to be wiped");
    c.stop(wiped).await;
    let dir = c.node(wiped).dir.clone();
    std::fs::remove_dir_all(&dir).expect("wipe");
    std::fs::create_dir_all(&dir).expect("mkdir");
    c.restart(wiped).await;
    c.stop(leader).await;
    c.heal();

    // `behind` lacks the write; `wiped` has nothing. Neither may lead.
    let deadline = Instant::now() + SECS(3);
    while Instant::now() < deadline {
        for id in [behind, wiped] {
            let m = c.handle(id).raft.metrics().borrow().clone();
            assert!(
                m.state != ServerState::Leader,
                "member {id} was elected without the acknowledged write:\n{}",
                c.describe()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    c.restart(leader).await;
    c.wait_for_leader(SECS(20)).await;
    c.wait_converged(SECS(30)).await;
    for id in c.ids() {
        let client = c.client(id).await;
        let (d, s) = client.get_data("/held/acked").await.expect("read");
        assert_eq!(
            (d.as_slice(), s.czxid),
            (&b"on two members"[..], acked.czxid)
        );
    }
}
