//! The failover fast path (`src/consensus/failover.rs`): a leader whose process is gone is
//! replaced on the evidence of its closed connections, not by the election timers; a leader
//! that is only cut off gives no such evidence, so the timers (and only they) replace it.

use std::time::Duration;

use baton::client::CreateOptions;

use crate::common::harness::{retry, TestCluster};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Sum of a status counter over the running members.
async fn counters(c: &TestCluster) -> Vec<(u64, u64, u64, u64)> {
    let mut out = Vec::new();
    for id in c.running() {
        let s = c
            .client_timeout(id, SECS(3))
            .await
            .status()
            .await
            .unwrap_or_else(|e| panic!("status of member {id}: {e}"));
        out.push((id, s.leaders_found_gone, s.fast_elections, s.term_changes));
    }
    out
}

/// A leader that stops (its peer port closes, as when its process dies) is found gone by both
/// survivors, and its successor is elected by the fast path; writes then go on through every
/// survivor.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_leader_is_found_gone_and_replaced_by_the_fast_path() {
    let mut c = TestCluster::start(3).await;
    let old = c.wait_for_leader(SECS(10)).await;
    let all = c.client_all().await;
    retry(SECS(15), 300, || async {
        match all.create("/fo", "", CreateOptions::persistent()).await {
            Ok(_) => Ok(()),
            Err(e) if e.is(baton::client::Reason::NodeExists) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .expect("create /fo");
    // Let both followers follow the leader.
    tokio::time::sleep(Duration::from_millis(300)).await;

    c.stop(old).await;
    let new = c.wait_for_new_leader(old, SECS(10)).await;
    let seen = counters(&c).await;
    for (id, gone, _, _) in &seen {
        assert!(
            *gone >= 1,
            "member {id} did not find the stopped leader gone: {seen:?}"
        );
    }
    let fast: u64 = seen.iter().map(|s| s.2).sum();
    assert_eq!(fast, 1, "one fast-path election expected: {seen:?}");
    let winner = seen.iter().find(|s| s.2 == 1).map(|s| s.0);
    assert_eq!(winner, Some(new), "the fast-path winner leads: {seen:?}");
    for id in c.running() {
        let via = c.client(id).await;
        retry(SECS(10), 200, || async {
            via.create(&format!("/fo/after-{id}"), "x", CreateOptions::persistent())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| panic!("write through member {id} after the failover: {e}"));
    }
    c.restart(old).await;
    c.wait_converged(SECS(20)).await;
}

/// A leader cut off from the others (its process alive, its connections silent) gives no
/// evidence: nobody finds it gone, the timers elect a successor, and after the heal the
/// cluster converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_off_leader_gives_no_evidence_and_the_timers_replace_it() {
    let c = TestCluster::start(3).await;
    let old = c.wait_for_leader(SECS(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.isolate(old);
    let new = c.wait_for_new_leader(old, SECS(10)).await;
    assert_ne!(new, old);
    c.heal();
    let seen = counters(&c).await;
    for (id, gone, fast, _) in &seen {
        assert_eq!(
            (*gone, *fast),
            (0, 0),
            "member {id} acted on a leader that was only cut off: {seen:?}"
        );
    }
    c.wait_converged(SECS(20)).await;
}

/// A follower cut off from the others cannot win an election, so it must not campaign: without
/// pre-vote its term would climb at every election timeout, and on healing the inflated term
/// would depose the healthy leader for nothing. After 4 s cut off (several election timeouts)
/// and the heal, every member is still in the term it started in and the leader is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_off_follower_does_not_raise_its_term_or_depose_the_leader() {
    let c = TestCluster::start(3).await;
    let leader = c.wait_for_leader(SECS(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let term_of = |id: u64| c.handle(id).raft.metrics().borrow().current_term;
    let term = term_of(leader);
    let follower = *c
        .ids()
        .iter()
        .find(|&&id| id != leader)
        .expect("a follower");
    c.isolate(follower);
    tokio::time::sleep(SECS(4)).await;
    assert_eq!(
        term_of(follower),
        term,
        "the cut-off follower campaigned while it could not reach a majority"
    );
    c.heal();
    let client = c.client(follower).await;
    retry(SECS(10), 200, || async {
        client
            .create("/after-heal", b"x", CreateOptions::persistent())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await
    .expect("a write through the healed follower");
    for id in c.ids() {
        assert_eq!(term_of(id), term, "member {id} is in another term");
    }
    assert_eq!(c.leader(), Some(leader), "the leader was deposed");
    c.wait_converged(SECS(20)).await;
}

/// A leadership transfer asked through a follower moves the leadership to the chosen voter
/// while writers keep writing: no acknowledged write is lost, every write after it lands,
/// and asking for a member that is not a voter is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leadership_is_handed_over_to_a_chosen_voter_under_writes() {
    let c = TestCluster::start(3).await;
    let old = c.wait_for_leader(SECS(10)).await;
    let followers: Vec<u64> = c.ids().into_iter().filter(|&i| i != old).collect();
    let (via, target) = (followers[0], followers[1]);
    let all = c.client_all().await;
    all.create("/handover", "", CreateOptions::persistent())
        .await
        .expect("setup");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (client, stop) = (all.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 10_000 {
                let path = format!("/handover/{w}-{i}");
                if client
                    .create(&path, "", CreateOptions::persistent())
                    .await
                    .is_ok()
                {
                    acked.push(path);
                }
                i += 1;
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (leader, term) = c
        .client(via)
        .await
        .transfer_leader(target)
        .await
        .expect("handover");
    assert_eq!(leader, target, "the chosen voter leads");
    assert_eq!(c.wait_for_leader(SECS(5)).await, target);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.expect("writer"));
    }
    assert!(acked.len() > 20, "writes went on: {}", acked.len());
    for path in &acked {
        all.exists(path)
            .await
            .expect("read")
            .unwrap_or_else(|| panic!("acknowledged {path} lost"));
    }
    // Asking the leader for itself is answered at once; a non-voter is refused.
    let (again, same_term) = c
        .client(target)
        .await
        .transfer_leader(target)
        .await
        .expect("no-op");
    assert_eq!((again, same_term), (target, term));
    let e = all.transfer_leader(42).await.expect_err("not a voter");
    assert!(e.is(baton::client::Reason::BadArguments), "{e}");
    // And back to the first leader, with the CLI.
    let ep = c.endpoint(via);
    let (code, out, err) = crate::common::harness::baton(&[
        "--endpoints",
        &ep,
        "-o",
        "json",
        "cluster",
        "transfer-leader",
        &old.to_string(),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let v = crate::common::harness::json(&out);
    assert_eq!(v["leader_id"], old, "{out}");
    assert!(v["term"].as_u64().expect("term") > term, "{out}");
    assert_eq!(c.wait_for_leader(SECS(5)).await, old);
}
