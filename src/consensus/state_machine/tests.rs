//! The state machine against a real store: apply and reopen, snapshots built, sent and
//! installed, backups and restores, corrupt snapshots, interrupted installs.

use bytes::Bytes;
use openraft::{CommittedLeaderId, EntryPayload, Membership};

use std::io::SeekFrom;
use std::path::Path;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use openraft::RaftSnapshotBuilder;
use prost::Message;

use super::records::{node_key, META_KEY};
use super::snapshots::{build_snapshot_blocking, view};
use super::*;
use crate::proto::raft as pb;
use crate::proto::stored;
use crate::tree::{Command, CreateMode, Event, EventType, Op, Request};
use crate::watch::WatchKind;

async fn read_all(mut f: Box<tokio::fs::File>) -> Vec<u8> {
    f.seek(SeekFrom::Start(0)).await.expect("seek");
    let mut v = Vec::new();
    f.read_to_end(&mut v).await.expect("read");
    v
}

async fn file_with(bytes: Vec<u8>) -> Box<tokio::fs::File> {
    let mut f = tokio::fs::File::from_std(tempfile::tempfile().expect("tempfile"));
    f.write_all(&bytes).await.expect("write");
    f.flush().await.expect("flush");
    Box::new(f)
}

fn lid(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn open(dir: &Path) -> (Store, StateMachineStore, Arc<SmShared>) {
    open_with_history(dir, 1000)
}

/// Opens with a watch hub that keeps at most `history` events.
fn open_with_history(dir: &Path, history: usize) -> (Store, StateMachineStore, Arc<SmShared>) {
    let store = Store::open(dir, crate::store::DEFAULT_CACHE_CAPACITY).expect("store");
    let hub = Arc::new(WatchHub::new(history, 64, 0));
    let (sm, shared) = StateMachineStore::open(&store, hub).expect("sm");
    (store, sm, shared)
}

/// Every event the hub holds, and its floor.
fn hub_history(shared: &SmShared) -> crate::tree::History {
    shared.hub.history_upto(u64::MAX)
}

fn create(path: &str, mode: CreateMode, session_id: u64, ttl_ms: i64) -> Request {
    Request::Multi {
        ops: vec![Op::Create {
            path: path.into(),
            data: Bytes::from(format!("data of {path}")),
            mode,
            session_id,
            ttl_ms,
            acl: Vec::new(),
        }],
        single: true,
        caller: None,
    }
}

fn tagged(client_id: u64, seq: u64, first_incomplete: u64, request: Request) -> Request {
    Request::Tagged {
        id: crate::tree::RequestId {
            client_id,
            seq,
            first_incomplete,
        },
        request: Box::new(request),
    }
}

fn cmd(time_ms: i64, requests: Vec<Request>) -> EntryPayload<TypeConfig> {
    EntryPayload::Normal(Command { time_ms, requests }.into())
}

fn entry(term: u64, index: u64, payload: EntryPayload<TypeConfig>) -> Entry {
    Entry {
        log_id: lid(term, index),
        payload,
    }
}

/// A history exercising every kind of record: sessions, ephemerals, sequentials, TTL
/// nodes, containers (one reaped), data changes, deletes, blank and membership entries.
fn history() -> Vec<Entry> {
    vec![
        entry(1, 1, EntryPayload::Blank),
        entry(
            1,
            2,
            EntryPayload::Membership(Membership::new(vec![[1, 2, 3].into()], ())),
        ),
        entry(
            1,
            3,
            cmd(
                1_000,
                vec![
                    Request::OpenSession {
                        session_id: 7,
                        secret: Bytes::from_static(b"seven"),
                        timeout_ms: 10_000,
                    },
                    Request::OpenSession {
                        session_id: 8,
                        secret: Bytes::from_static(b"eight"),
                        timeout_ms: 10_000,
                    },
                    create("/app", CreateMode::Persistent, 0, 0),
                    create("/app/locks", CreateMode::Container, 0, 0),
                    create("/app/locks/", CreateMode::EphemeralSequential, 7, 0),
                    create("/app/locks/", CreateMode::EphemeralSequential, 8, 0),
                    create("/ttl", CreateMode::PersistentWithTtl, 0, 60_000),
                    create("/gone", CreateMode::Container, 0, 0),
                    create("/gone/x", CreateMode::Persistent, 0, 0),
                ],
            ),
        ),
        entry(
            2,
            4,
            cmd(
                2_000,
                vec![
                    Request::Multi {
                        ops: vec![
                            Op::SetData {
                                path: "/app".into(),
                                data: Bytes::from_static(b"v2"),
                                version: 0,
                            },
                            Op::Delete {
                                path: "/gone/x".into(),
                                version: -1,
                            },
                        ],
                        single: false,
                        caller: None,
                    },
                    Request::CloseSession {
                        session_id: 8,
                        secret: Bytes::from_static(b"eight"),
                    },
                    // Fails: results recorded, nothing changes.
                    create("/missing/child", CreateMode::Persistent, 0, 0),
                    // Writes with request ids: one applied, a copy of it, one that fails
                    // (its error is remembered too), one of another client.
                    tagged(0xc1, 1, 1, create("/once", CreateMode::Persistent, 0, 0)),
                    tagged(0xc1, 1, 1, create("/once", CreateMode::Persistent, 0, 0)),
                    tagged(0xc1, 2, 1, create("/app", CreateMode::Persistent, 0, 0)),
                    tagged(
                        0xc2,
                        9,
                        9,
                        create("/app/", CreateMode::PersistentSequential, 0, 0),
                    ),
                ],
            ),
        ),
        entry(2, 5, EntryPayload::Blank),
    ]
}

#[tokio::test]
async fn apply_persists_and_reopen_restores_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (want_state, want_applied, want_history) = {
        let (store, mut sm, shared) = open(dir.path());
        let stream = shared.hub.open_stream();
        let mut rx = stream.rx;
        {
            let _read = shared.tree.read().expect("lock");
            shared.hub.add(stream.id, "/app", WatchKind::Data, None);
        }
        let results = sm.apply(history()).await.expect("apply");
        assert_eq!(results.len(), 5);
        assert!(results[0].is_empty() && results[1].is_empty() && results[4].is_empty());
        assert_eq!(results[2].len(), 9);
        assert_eq!(results[3].len(), 7);
        assert!(
            matches!(&results[3][4], crate::tree::RequestResult::Duplicate { zxid: 4, result }
                if **result == results[3][3]),
            "{:?}",
            results[3][4]
        );
        assert_eq!(*shared.applied.borrow(), 5);
        let delivery = rx.try_recv().expect("watch fired");
        assert_eq!(
            delivery.events,
            vec![Event {
                zxid: 4,
                kind: EventType::DataChanged,
                path: "/app".into(),
                acl: Default::default(),
            }]
        );
        {
            let st = shared.tree.read().expect("lock");
            assert!(st.get("/gone").is_none(), "emptied container is reaped");
            assert_eq!(st.get("/app/locks").map(|n| n.children.len()), Some(1));
            assert_eq!(st.applied_index, 5);
        }
        let applied = sm.applied_state().await.expect("applied");
        assert_eq!(applied.0, Some(lid(2, 5)));
        assert_eq!(applied.1.log_id(), &Some(lid(1, 2)));
        // apply does not flush; a clean shutdown does.
        store.durable_flush().expect("flush");
        let st = shared.tree.read().expect("lock").clone();
        let c1 = st.clients().get(0xc1).expect("client 0xc1 remembered");
        assert_eq!(c1.results.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(st.clients().len(), 2);
        let h = hub_history(&shared);
        assert_eq!(h.floor, 0);
        assert!(h.events.len() > 5, "{h:?}");
        (st, applied, h)
    };
    let (_store, mut sm, shared) = open(dir.path());
    assert_eq!(*shared.tree.read().expect("lock"), want_state);
    assert_eq!(sm.applied_state().await.expect("applied"), want_applied);
    assert_eq!(*shared.applied.borrow(), 5);
    assert_eq!(
        hub_history(&shared),
        want_history,
        "the watch history survives the restart"
    );
    assert_eq!(shared.hub.oldest_zxid(), 1);
    // A watch resumed from before the restart gets the events it missed.
    let stream = shared.hub.open_stream();
    let mut rx = stream.rx;
    {
        let _read = shared.tree.read().expect("lock");
        shared
            .hub
            .add(stream.id, "/app", WatchKind::PersistentRecursive, Some(3));
    }
    let replayed = rx.try_recv().expect("replayed");
    assert!(
        replayed
            .events
            .iter()
            .any(|e| e.zxid == 4 && e.kind == EventType::DataChanged && e.path == "/app"),
        "{:?}",
        replayed.events
    );
}

#[tokio::test]
async fn the_kept_history_is_trimmed_to_the_hub_capacity_on_disk_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let set = |v: &str| Request::Multi {
        ops: vec![Op::SetData {
            path: "/app".into(),
            data: Bytes::from(v.to_string()),
            version: -1,
        }],
        single: true,
        caller: None,
    };
    let want = {
        let (store, mut sm, shared) = open_with_history(dir.path(), 3);
        sm.apply(history()).await.expect("apply");
        // One event per batch from here: the newest three are at three zxids.
        for i in 6..=9 {
            sm.apply(vec![entry(2, i, cmd(9_000, vec![set("v")]))])
                .await
                .expect("apply");
        }
        store.durable_flush().expect("flush");
        let h = hub_history(&shared);
        assert_eq!(h.floor, 6);
        assert_eq!(
            h.events.iter().map(|e| e.zxid).collect::<Vec<_>>(),
            vec![7, 8, 9]
        );
        let held = sm.sm.scan_prefix(b"e").count();
        assert_eq!(
            held, 3,
            "the records of trimmed batches are removed from the store"
        );
        h
    };
    let (_store, _sm, shared) = open_with_history(dir.path(), 3);
    assert_eq!(hub_history(&shared), want);
    assert_eq!(shared.hub.oldest_zxid(), 7);
    // Resuming from below the floor is refused; from the floor on, it replays.
    let stream = shared.hub.open_stream();
    let _read = shared.tree.read().expect("lock");
    assert!(matches!(
        shared
            .hub
            .add(stream.id, "/app", WatchKind::PersistentRecursive, Some(5)),
        crate::watch::AddOutcome::Compacted { oldest_zxid: 7 }
    ));
    assert!(matches!(
        shared
            .hub
            .add(stream.id, "/app", WatchKind::PersistentRecursive, Some(6)),
        crate::watch::AddOutcome::Added { .. }
    ));
}

#[tokio::test]
async fn snapshot_installs_into_a_fresh_store_as_an_equal_state() {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let follower_dir = tempfile::tempdir().expect("tempdir");
    let (_ls, mut leader, leader_shared) = open(leader_dir.path());
    leader.apply(history()).await.expect("apply");
    let built = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    assert_eq!(built.meta.last_log_id, Some(lid(2, 5)));
    assert_eq!(leader_shared.snapshot_index.load(Ordering::SeqCst), 5);
    let current = leader
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("some");
    assert_eq!(current.meta, built.meta);

    let (fstore, mut follower, fshared) = open(follower_dir.path());
    // Some state of its own, which the snapshot must replace entirely.
    follower
        .apply(vec![entry(
            1,
            1,
            cmd(5, vec![create("/stale", CreateMode::Persistent, 0, 0)]),
        )])
        .await
        .expect("apply");
    let mut rx = fshared.applied.subscribe();
    let mut data = follower.begin_receiving_snapshot().await.expect("begin");
    data.write_all(&read_all(current.snapshot).await)
        .await
        .expect("write");
    data.shutdown().await.expect("flush");
    follower
        .install_snapshot(&current.meta, data)
        .await
        .expect("install");

    let want = leader_shared.tree.read().expect("lock").clone();
    assert_eq!(want.clients().len(), 2, "the snapshot carries request ids");
    assert_eq!(*fshared.tree.read().expect("lock"), want);
    assert_eq!(fshared.tree.read().expect("lock").digest(), want.digest());
    assert_eq!(
        follower.applied_state().await.expect("applied"),
        leader.applied_state().await.expect("applied")
    );
    assert!(rx.has_changed().expect("sender alive"));
    assert_eq!(*rx.borrow_and_update(), 5);
    assert_eq!(fstore.sm_gen().expect("gen"), 1);
    let after = follower
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("some");
    assert_eq!(after.meta, current.meta);
    let leader_history = hub_history(&leader_shared);
    assert!(!leader_history.events.is_empty());
    assert_eq!(
        hub_history(&fshared),
        leader_history,
        "the snapshot carries the builder's recent events"
    );
    assert_eq!(fshared.hub.oldest_zxid(), 1);

    // The installed state is what a restart loads, from the new generation only.
    drop((follower, fshared, fstore));
    let (fstore, _follower, fshared) = open(follower_dir.path());
    assert_eq!(*fshared.tree.read().expect("lock"), want);
    assert_eq!(hub_history(&fshared), leader_history);
    let names: Vec<String> = fstore
        .raft_meta()
        .iter()
        .keys()
        .filter_map(|k| k.ok().map(|k| String::from_utf8_lossy(&k).into_owned()))
        .collect();
    assert!(names.contains(&"sm_gen".to_string()));
    assert!(fstore.drop_stale_sm_trees(1).expect("trees").is_empty());
}

#[tokio::test]
async fn a_backup_restores_as_an_equal_state_with_the_new_membership() {
    let src_dir = tempfile::tempdir().expect("tempdir");
    let dst_dir = tempfile::tempdir().expect("tempdir");
    let (_s, mut sm, shared) = open(src_dir.path());
    sm.apply(history()).await.expect("apply");
    let mut bytes = Vec::new();
    let (summary, size) = encode_backup(&shared, &mut bytes).expect("backup");
    assert_eq!(size, bytes.len() as u64);
    assert_eq!(summary.last_log_id, Some(lid(2, 5)));
    let want = shared.tree.read().expect("lock").clone();
    assert_eq!(
        (summary.znodes, summary.sessions),
        (want.node_count() as u64, 1)
    );
    assert_eq!(
        shared.snapshot_index.load(Ordering::SeqCst),
        0,
        "no snapshot file"
    );
    let (inspected, hash) = inspect_snapshot(&bytes).expect("inspect");
    assert_eq!(inspected, summary);
    assert_eq!(hash, want.digest());

    let membership =
        StoredMembership::new(Some(lid(2, 5)), Membership::new(vec![[7, 8].into()], ()));
    {
        let store =
            Store::open(dst_dir.path(), crate::store::DEFAULT_CACHE_CAPACITY).expect("store");
        let restored = restore_snapshot(&store, &bytes, membership.clone()).expect("restore");
        assert_eq!(restored.membership, membership);
        assert_eq!(restored.last_zxid, summary.last_zxid);
        store.durable_flush().expect("flush");
    }
    let (_d, mut dst, dshared) = open(dst_dir.path());
    assert_eq!(*dshared.tree.read().expect("lock"), want);
    assert_eq!(
        dst.applied_state().await.expect("applied"),
        (Some(lid(2, 5)), membership.clone())
    );
    let cur = dst
        .get_current_snapshot()
        .await
        .expect("cur")
        .expect("some");
    assert_eq!(cur.meta.last_log_id, Some(lid(2, 5)));
    assert_eq!(cur.meta.last_membership, membership);
    assert_eq!(dshared.hub.oldest_zxid(), 6);

    let mut cut = bytes.clone();
    cut.truncate(bytes.len() / 2);
    assert!(inspect_snapshot(&cut).is_err());
}

#[tokio::test]
async fn a_build_keeps_one_file_and_a_transfer_of_the_old_one_reads_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, mut sm, _shared) = open(dir.path());
    let mut sending = None;
    for i in 1..=3 {
        sm.apply(vec![entry(1, i, EntryPayload::Blank)])
            .await
            .expect("apply");
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build");
        if i == 2 {
            // Being sent to a member when the next build replaces it.
            sending = sm.get_current_snapshot().await.expect("current");
        }
    }
    let files = snapshot::list(&store.snapshot_dir()).expect("list");
    let indexes: Vec<u64> = files.iter().map(|(i, _, _)| *i).collect();
    assert_eq!(indexes, vec![3]);
    let sending = sending.expect("a snapshot at index 2");
    let d = snapshot::read_snapshot(read_all(sending.snapshot).await.as_slice())
        .expect("the replaced file reads on");
    assert_eq!(d.meta.last_log_id, Some(lid(1, 2)));
    drop(sm);
    drop(_shared);
    drop(store);
    let (_store, mut sm, shared) = open(dir.path());
    assert_eq!(shared.snapshot_index.load(Ordering::SeqCst), 3);
    let cur = sm.get_current_snapshot().await.expect("cur").expect("some");
    assert_eq!(cur.meta.last_log_id, Some(lid(1, 3)));
}

#[tokio::test]
async fn a_snapshot_holds_the_state_of_the_moment_it_was_taken() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, mut sm, shared) = open(dir.path());
    sm.apply(history()).await.expect("apply");
    let want = shared.tree.read().expect("lock").clone();
    let (state, applied) = view(&shared).expect("view");
    // Applies go on after the view is taken (while its file would be written) ...
    sm.apply(vec![entry(
        2,
        6,
        cmd(3_000, vec![create("/later", CreateMode::Persistent, 0, 0)]),
    )])
    .await
    .expect("apply");
    assert!(shared.tree.read().expect("lock").get("/later").is_some());
    // ... and the snapshot is still the state of that moment.
    let (meta, file, size) = build_snapshot_blocking(&shared, state, applied).expect("build");
    assert_eq!(meta.last_log_id, Some(lid(2, 5)));
    assert_eq!(file.metadata().expect("stat").len(), size);
    let d = snapshot::read_snapshot(file).expect("read");
    assert!(d.state.get("/later").is_none());
    assert_eq!(d.state.digest(), want.digest());
    assert_eq!(d.state, want);
}

#[tokio::test]
async fn a_corrupt_snapshot_is_rejected_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, mut sm, shared) = open(dir.path());
    sm.apply(history()).await.expect("apply");
    let before = shared.tree.read().expect("lock").clone();
    let snap = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    let snap_bytes = read_all(snap.snapshot).await;
    let mut bytes = snap_bytes.clone();
    bytes.truncate(bytes.len() - 3);
    let res = sm
        .install_snapshot(&snap.meta, file_with(bytes).await)
        .await;
    assert!(res.is_err());
    let res = sm
        .install_snapshot(&snap.meta, file_with(b"garbage".to_vec()).await)
        .await;
    assert!(res.is_err());
    // A flipped bit: refused by the checksum.
    let mut flipped = snap_bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x10;
    let res = sm
        .install_snapshot(&snap.meta, file_with(flipped).await)
        .await;
    assert!(res.is_err());
    // Decodes, but is not a tree: refused before any file or tree changes (format 2
    // has no checksum, so the tree check is what refuses it).
    let mut orphan = Vec::new();
    let header = pb::SnapshotHeader {
        format: 2,
        meta: Some(stored::meta_to_pb(
            &AppliedMeta {
                last_applied: snap.meta.last_log_id,
                membership: snap.meta.last_membership.clone(),
            },
            0,
            0,
            true,
        )),
        snapshot_id: snap.meta.snapshot_id.clone(),
        nodes: 1,
        sessions: 0,
        clients: 0,
        events: 0,
        events_floor: 0,
    };
    header.encode_length_delimited(&mut orphan).expect("encode");
    let rec = pb::SnapshotNode {
        path: "/no/parent".into(),
        node: Some(pb::StoredNode::default()),
    };
    rec.encode_length_delimited(&mut orphan).expect("encode");
    let res = sm
        .install_snapshot(&snap.meta, file_with(orphan).await)
        .await;
    assert!(res.is_err());
    assert_eq!(*shared.tree.read().expect("lock"), before);
    assert_eq!(store.sm_gen().expect("gen"), 0);
    let cur = sm.get_current_snapshot().await.expect("cur").expect("some");
    assert_eq!(read_all(cur.snapshot).await, snap_bytes);
}

#[tokio::test]
async fn a_tree_cut_off_mid_write_is_rebuilt_from_the_newest_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let want = {
        let (store, mut sm, shared) = open(dir.path());
        sm.apply(history()).await.expect("apply");
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build");
        let want = shared.tree.read().expect("lock").clone();
        sm.apply(vec![entry(
            2,
            6,
            cmd(3_000, vec![create("/later", CreateMode::Persistent, 0, 0)]),
        )])
        .await
        .expect("apply");
        store.durable_flush().expect("flush");
        // What a crash in the middle of a group of writes leaves: the marker, and some
        // but not all of the group's changes.
        let tree = store.sm_tree(store.sm_gen().expect("gen")).expect("tree");
        tree.insert(WRITING_KEY, &[]).expect("insert");
        tree.insert(node_key("/half"), b"x".to_vec())
            .expect("insert");
        store.durable_flush().expect("flush");
        want
    };
    let (store, mut sm, shared) = open(dir.path());
    // The snapshot's state: openraft re-applies the log after it (entry 6 here).
    assert_eq!(*shared.tree.read().expect("lock"), want);
    assert_eq!(
        sm.applied_state().await.expect("applied").0,
        Some(lid(2, 5))
    );
    assert_eq!(store.sm_gen().expect("gen"), 1);
    assert!(store
        .sm_tree(1)
        .expect("tree")
        .get(WRITING_KEY)
        .expect("get")
        .is_none());
    drop((store, sm, shared));
    // And it stays rebuilt.
    let (_store, _sm, shared) = open(dir.path());
    assert_eq!(*shared.tree.read().expect("lock"), want);
}

#[tokio::test]
async fn a_membership_kept_in_the_meta_record_by_format_1_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let membership = StoredMembership::new(
        Some(lid(1, 2)),
        openraft::Membership::new(vec![[1, 2, 3].into()], ()),
    );
    {
        let store = Store::open(dir.path(), crate::store::DEFAULT_CACHE_CAPACITY).expect("store");
        let old = AppliedMeta {
            last_applied: Some(lid(1, 2)),
            membership: membership.clone(),
        };
        store
            .sm_tree(0)
            .expect("tree")
            .insert(
                META_KEY,
                stored::meta_to_pb(&old, 0, 0, true).encode_to_vec(),
            )
            .expect("insert");
        store.durable_flush().expect("flush");
    }
    {
        let (store, mut sm, _shared) = open(dir.path());
        assert_eq!(sm.applied_state().await.expect("applied").1, membership);
        sm.apply(vec![entry(1, 3, EntryPayload::Blank)])
            .await
            .expect("apply");
        store.durable_flush().expect("flush");
    }
    let (_store, mut sm, _shared) = open(dir.path());
    let (applied, m) = sm.applied_state().await.expect("applied");
    assert_eq!((applied, m), (Some(lid(1, 3)), membership));
}

#[tokio::test]
async fn leftovers_of_an_interrupted_install_are_dropped_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (store, mut sm, _shared) = open(dir.path());
        sm.apply(history()).await.expect("apply");
        // A crash after loading sm.1 but before flipping sm_gen.
        store
            .sm_tree(1)
            .expect("tree")
            .insert(node_key("/half"), b"x".to_vec())
            .expect("insert");
        fs::write(store.snapshot_dir().join("9-9.snap.tmp"), b"partial").expect("write");
        store.durable_flush().expect("flush");
    }
    let (store, _sm, shared) = open(dir.path());
    assert!(shared.tree.read().expect("lock").get("/half").is_none());
    assert!(shared.tree.read().expect("lock").get("/app").is_some());
    assert!(store.drop_stale_sm_trees(0).expect("trees").is_empty());
    assert!(snapshot::list_dir(&store.snapshot_dir())
        .expect("list")
        .is_empty());
}
