//! Request ids: a write retried after its outcome became unknown is applied at most once, and
//! the retry gets the original answer, whichever member it is sent to.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use baton::api::{CLIENT_ID_HEADER, FIRST_INCOMPLETE_HEADER, SEQ_HEADER};
use baton::client::{Client, ClientOptions, CreateOptions};
use baton::proto::v1::{self as pb, z_nodes_client::ZNodesClient};
use tonic::transport::Channel;

use crate::common::harness::{client_options, TestCluster};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A raw request carrying a request id in its metadata.
fn with_id<T>(
    msg: T,
    client_id: u64,
    seq: u64,
    first_incomplete: Option<u64>,
) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    let md = r.metadata_mut();
    md.insert(
        CLIENT_ID_HEADER,
        client_id.to_string().parse().expect("ascii"),
    );
    md.insert(SEQ_HEADER, seq.to_string().parse().expect("ascii"));
    if let Some(f) = first_incomplete {
        md.insert(
            FIRST_INCOMPLETE_HEADER,
            f.to_string().parse().expect("ascii"),
        );
    }
    r
}

async fn stub(c: &TestCluster, id: u64) -> ZNodesClient<Channel> {
    let ep = baton::client::normalize_endpoint(&c.endpoint(id)).expect("endpoint");
    ZNodesClient::connect(ep).await.expect("connect")
}

fn reason(s: &tonic::Status) -> String {
    baton::error::status_reason_name(s).unwrap_or_default()
}

/// The same request id sent to two members (as a client does after losing the first answer)
/// is applied once: the copy gets the original path, Stat and zxid, an error is answered
/// again as the same error, a copy below the acknowledged mark is `STALE_REQUEST`, and
/// malformed ids are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_copy_sent_to_another_member_gets_the_original_answer() {
    let c = TestCluster::start(3).await;
    let leader = c.wait_for_leader(SECS(10)).await;
    let follower = c
        .ids()
        .into_iter()
        .find(|&id| id != leader)
        .expect("follower");
    let mut via_leader = stub(&c, leader).await;
    let mut via_follower = stub(&c, follower).await;
    let client_id = 0x0123_4567_89ab_cdef;

    via_leader
        .create(pb::CreateRequest {
            path: "/q".into(),
            ..Default::default()
        })
        .await
        .expect("create /q");
    let seq_create = || pb::CreateRequest {
        path: "/q/item-".into(),
        data: b"one".to_vec(),
        mode: pb::CreateMode::PersistentSequential as i32,
        ..Default::default()
    };
    let first = via_follower
        .create(with_id(seq_create(), client_id, 1, None))
        .await
        .expect("first")
        .into_inner();
    let copy = via_leader
        .create(with_id(seq_create(), client_id, 1, None))
        .await
        .expect("copy")
        .into_inner();
    assert_eq!(copy.path, first.path);
    assert_eq!(copy.stat, first.stat);
    assert_eq!(
        copy.header.map(|h| h.zxid),
        first.header.map(|h| h.zxid),
        "the copy reports the zxid of the entry that applied the write"
    );
    let kids = via_leader
        .get_children(pb::GetChildrenRequest {
            path: "/q".into(),
            ..Default::default()
        })
        .await
        .expect("children")
        .into_inner()
        .children;
    assert_eq!(kids, vec!["item-0000000000".to_string()]);

    // An error is remembered as such: NODE_EXISTS again, even once the node is gone.
    let dup_create = || pb::CreateRequest {
        path: "/q".into(),
        ..Default::default()
    };
    let e = via_leader
        .create(with_id(dup_create(), client_id, 2, Some(2)))
        .await
        .expect_err("exists");
    assert_eq!(reason(&e), "NODE_EXISTS");
    via_leader
        .delete(pb::DeleteRequest {
            path: "/q/item-0000000000".into(),
            version: -1,
        })
        .await
        .expect("delete child");
    via_leader
        .delete(pb::DeleteRequest {
            path: "/q".into(),
            version: -1,
        })
        .await
        .expect("delete /q");
    let e = via_follower
        .create(with_id(dup_create(), client_id, 2, Some(2)))
        .await
        .expect_err("still the original answer");
    assert_eq!(reason(&e), "NODE_EXISTS");

    // Write 3 acknowledges everything before it: a late copy of 1 is stale, not applied.
    via_leader
        .create(with_id(
            pb::CreateRequest {
                path: "/r".into(),
                ..Default::default()
            },
            client_id,
            3,
            Some(3),
        ))
        .await
        .expect("write 3");
    let e = via_follower
        .create(with_id(seq_create(), client_id, 1, None))
        .await
        .expect_err("stale");
    assert_eq!(reason(&e), "STALE_REQUEST", "{e:?}");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(
        via_leader
            .exists(pb::ExistsRequest {
                path: "/q".into(),
                ..Default::default()
            })
            .await
            .expect("exists")
            .into_inner()
            .stat
            .is_none(),
        "the stale copy created nothing"
    );

    // Malformed ids are refused before anything is proposed.
    for (client, seq, first) in [(0, 1, None), (1, 0, None), (1, 2, Some(3))] {
        let e = via_leader
            .create(with_id(dup_create(), client, seq, first))
            .await
            .expect_err("malformed");
        assert_eq!(reason(&e), "BAD_ARGUMENTS", "{client} {seq} {first:?}");
    }
    let mut only_seq = tonic::Request::new(dup_create());
    only_seq
        .metadata_mut()
        .insert(SEQ_HEADER, "1".parse().expect("ascii"));
    let e = via_leader.create(only_seq).await.expect_err("half an id");
    assert_eq!(reason(&e), "BAD_ARGUMENTS");
    c.wait_converged(SECS(10)).await;
}

#[derive(Default, Debug)]
struct Tally {
    /// Increments the client saw succeed.
    acked: u64,
    /// Increments whose outcome stayed unknown past the client's deadline.
    unknown: u64,
    /// Increments refused because another writer got there first (nothing applied).
    conflicts: u64,
    /// Data of the sequential creates the client saw succeed.
    created: Vec<String>,
    /// Data of the sequential creates whose outcome stayed unknown.
    created_unknown: Vec<String>,
}

/// One writer: alternately increments `/once/counter` with a versioned set (read, then
/// `set_data(v + 1, version)`) and makes a sequential create with unique data, until `stop`.
async fn writer(client: Client, name: String, stop: Arc<AtomicBool>) -> Tally {
    let mut t = Tally::default();
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        k += 1;
        let read = client.get_data("/once/counter").await;
        let Ok((data, stat)) = read else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let v: u64 = String::from_utf8_lossy(&data).parse().unwrap_or(0);
        match client
            .set_data("/once/counter", (v + 1).to_string(), stat.version)
            .await
        {
            Ok(_) => t.acked += 1,
            Err(e) if e.is(baton::client::Reason::BadVersion) => t.conflicts += 1,
            Err(e) => {
                tracing::info!(%name, error = %e, "increment outcome unknown");
                t.unknown += 1;
            }
        }
        let data = format!("{name}-{k}");
        match client
            .create(
                "/once/seq/n-",
                data.clone(),
                CreateOptions::persistent().sequential(),
            )
            .await
        {
            Ok(_) => t.created.push(data),
            Err(e) => {
                tracing::info!(%name, error = %e, "create outcome unknown");
                t.created_unknown.push(data);
            }
        }
    }
    t
}

/// Writers go on through slow links (attempts time out and are sent again while the first
/// copy is still on its way), a leader stopped mid-write and an isolated leader. Every
/// increment acknowledged is applied once and no other: the counter equals the acknowledged
/// increments (plus at most the few whose outcome stayed unknown); every acknowledged create
/// exists exactly once and no create exists twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retried_writes_are_applied_exactly_once_through_leader_loss() {
    let mut c = TestCluster::start(3).await;
    c.wait_for_leader(SECS(10)).await;
    let setup = c.client_all().await;
    for p in ["/once", "/once/seq"] {
        setup
            .create(p, "", CreateOptions::persistent())
            .await
            .expect("setup");
    }
    setup
        .create("/once/counter", "0", CreateOptions::persistent())
        .await
        .expect("counter");

    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for (i, id) in c.ids().into_iter().cycle().take(4).enumerate() {
        // Short attempts: on slow links an attempt times out while its write is still on its
        // way, and the copy sent to the next member races it.
        let mut endpoints = vec![c.endpoint(id)];
        endpoints.extend(
            c.ids()
                .into_iter()
                .filter(|&o| o != id)
                .map(|o| c.endpoint(o)),
        );
        let options = ClientOptions {
            write_attempt_timeout: Duration::from_millis(250),
            ..client_options(SECS(20))
        };
        let client = Client::connect_with(&endpoints, options)
            .await
            .expect("connect");
        writers.push(tokio::spawn(writer(client, format!("w{i}"), stop.clone())));
    }

    tokio::time::sleep(Duration::from_millis(500)).await;
    // 1. Slow links: commits take longer than an attempt.
    c.delay(Duration::from_millis(60), Duration::from_millis(200));
    tokio::time::sleep(SECS(6)).await;
    c.heal();
    tokio::time::sleep(SECS(1)).await;
    // 2. The leader stops while writes are pending on it and forwarded to it.
    let leader = c.wait_for_leader(SECS(10)).await;
    c.delay(Duration::from_millis(60), Duration::from_millis(200));
    tokio::time::sleep(Duration::from_millis(800)).await;
    c.stop(leader).await;
    c.wait_for_new_leader(leader, SECS(15)).await;
    c.heal();
    c.restart(leader).await;
    tokio::time::sleep(SECS(2)).await;
    // 3. The leader is cut off: writes forwarded to it have unknown outcomes.
    let leader = c.wait_for_leader(SECS(10)).await;
    c.isolate(leader);
    c.wait_for_new_leader(leader, SECS(15)).await;
    tokio::time::sleep(SECS(1)).await;
    c.heal();
    tokio::time::sleep(SECS(2)).await;
    stop.store(true, Ordering::Relaxed);

    let mut total = Tally::default();
    for w in writers {
        let t = w.await.expect("writer");
        total.acked += t.acked;
        total.unknown += t.unknown;
        total.conflicts += t.conflicts;
        total.created.extend(t.created);
        total.created_unknown.extend(t.created_unknown);
    }
    c.wait_for_leader(SECS(15)).await;
    c.wait_converged(SECS(20)).await;
    let check = c.client_all().await;
    let (data, _) = check.get_data("/once/counter").await.expect("counter");
    let counter: u64 = String::from_utf8_lossy(&data).parse().expect("a number");
    println!(
        "counter {counter}: {} acknowledged, {} unknown, {} conflicts; {} creates acknowledged, {} unknown",
        total.acked,
        total.unknown,
        total.conflicts,
        total.created.len(),
        total.created_unknown.len()
    );
    assert!(total.acked > 20, "the workload made progress: {total:?}");
    assert!(
        counter >= total.acked && counter <= total.acked + total.unknown,
        "the counter is {counter} but {} increments were acknowledged and {} unknown: \
         a retried increment was applied twice (or an acknowledged one lost)",
        total.acked,
        total.unknown
    );

    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for child in check
        .get_all_children_with(
            "/once/seq",
            baton::client::ChildrenOptions {
                include_stats: false,
                ..Default::default()
            },
        )
        .await
        .expect("children")
    {
        let (d, _) = check
            .get_data(&format!("/once/seq/{}", child.name))
            .await
            .expect("read child");
        *seen
            .entry(String::from_utf8_lossy(&d).into_owned())
            .or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "creates applied more than once: {twice:?}"
    );
    for d in &total.created {
        assert_eq!(seen.get(d), Some(&1), "acknowledged create {d} is missing");
    }
    for d in seen.keys() {
        assert!(
            total.created.contains(d) || total.created_unknown.contains(d),
            "{d} was created but never requested"
        );
    }
}
