//! Backup and restore: a backup taken while writes go on covers every acknowledged write up to
//! its index and nothing after; restored into three fresh data directories it starts a new
//! cluster with the same state (same hash), zxids that continue after the backup's, watch
//! history that starts at the backup, the backup's sessions, and a cluster id of its own that
//! the old cluster's members cannot get past. The `baton` binary saves, verifies and restores,
//! and refuses a corrupted file and a non-empty data directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton::backup::{self, RestoreOptions};
use baton::client::{ClientError, CreateOptions, WatchKind};
use baton::consensus::identity;
use baton::proto::raft as pb;
use baton::proto::v1::backup_chunk::Part;
use baton::store::Store;

use crate::common::harness::{baton, json, ClusterOptions, TestCluster};

/// A write acknowledged to a client: path, data, and the zxid that made it.
type Acked = (String, Vec<u8>, u64);

/// Writers creating `/app/w<k>-<i>` through members 1..=3 until `stop`.
fn spawn_writers(
    cluster: &TestCluster,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Acked>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (1..=3u64)
        .map(|k| {
            let eps: Vec<String> = (1..=3u64)
                .map(|i| cluster.endpoint(((k + i) % 3) + 1))
                .collect();
            let (stop, acked) = (stop.clone(), acked.clone());
            tokio::spawn(async move {
                let c = crate::common::harness::connect_retry(&eps, Duration::from_secs(5)).await;
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let path = format!("/app/w{k}-{i}");
                    let data = format!("value {k} {i}").into_bytes();
                    if let Ok((p, stat)) = c
                        .create(&path, data.clone(), CreateOptions::persistent())
                        .await
                    {
                        acked.lock().unwrap().push((p, data, stat.czxid));
                    }
                    i += 1;
                }
            })
        })
        .collect()
}

/// A Vote with a term far ahead, sent straight to a peer port with `cluster_id` (or none).
async fn foreign_vote(
    peer: std::net::SocketAddr,
    cluster_id: Option<u64>,
    term: u64,
) -> Result<pb::VoteResponse, tonic::Status> {
    let mut c = pb::raft_client::RaftClient::connect(format!("http://{peer}"))
        .await
        .expect("connect to the peer port");
    let mut req = tonic::Request::new(pb::VoteRequest {
        vote: Some(pb::Vote {
            leader_id: Some(pb::LeaderId { term, node_id: 99 }),
            committed: false,
        }),
        last_log_id: Some(pb::LogId {
            leader_id: Some(pb::LeaderId { term, node_id: 99 }),
            index: 1_000_000,
        }),
    });
    if let Some(id) = cluster_id {
        req.metadata_mut().insert(
            identity::CLUSTER_ID_HEADER,
            identity::format_id(id).parse().expect("ascii"),
        );
    }
    c.vote(req).await.map(|r| r.into_inner())
}

fn assert_cluster_mismatch(r: Result<pb::VoteResponse, tonic::Status>, what: &str) {
    match r {
        Err(s) => {
            assert_eq!(s.code(), tonic::Code::FailedPrecondition, "{what}: {s:?}");
            assert_eq!(
                baton::error::status_reason(&s),
                Some(baton::error::Reason::ClusterMismatch),
                "{what}: {s:?}"
            );
        }
        Ok(v) => panic!("{what}: the vote was handled: {v:?}"),
    }
}

fn term_of(cluster: &TestCluster, id: u64) -> u64 {
    cluster.handle(id).raft.metrics().borrow().current_term
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_under_writes_restores_into_a_new_cluster_with_the_same_state() {
    let mut old = TestCluster::start(3).await;
    let c = old.client_all().await;
    c.create("/app", b"root".to_vec(), CreateOptions::persistent())
        .await
        .expect("create /app");
    let session = c
        .open_session(Duration::from_secs(60))
        .await
        .expect("session");
    c.create(
        "/app/owned",
        b"eph".to_vec(),
        CreateOptions::ephemeral(session.id()),
    )
    .await
    .expect("ephemeral");

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writers = spawn_writers(&old, stop.clone(), acked.clone());
    tokio::time::sleep(Duration::from_millis(400)).await;

    // Through a follower: the read barrier comes from the leader.
    let leader = old.wait_for_leader(Duration::from_secs(10)).await;
    let via = old
        .ids()
        .into_iter()
        .find(|&id| id != leader)
        .expect("a follower");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("cluster.backup");
    let before: Vec<Acked> = acked.lock().unwrap().clone();
    let saved = backup::save(&old.client(via).await, &file)
        .await
        .expect("backup");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.expect("writer");
    }
    let acked: Vec<Acked> = acked.lock().unwrap().clone();
    assert!(
        before.len() >= 10,
        "writes went on before the backup: {}",
        before.len()
    );
    assert!(
        acked.iter().any(|(_, _, z)| *z > saved.index),
        "writes went on during and after the backup"
    );
    assert!(!Path::new(&format!("{}.part", file.display())).exists());

    // The file: what the stream announced, every write acknowledged before the backup.
    let info = backup::inspect(&file).expect("inspect");
    assert_eq!(info.index(), saved.index);
    assert_eq!(info.summary.last_zxid, saved.last_zxid);
    assert_eq!((info.size, info.crc32), (saved.size, saved.crc32));
    assert!(saved.read_index <= saved.index && saved.last_zxid <= saved.index);
    for (p, _, z) in &before {
        assert!(
            *z <= saved.read_index,
            "{p} (zxid {z}) acknowledged before the barrier"
        );
    }
    assert_eq!(info.summary.sessions, 1);

    // A resume from just before the backup works on the old cluster (its history reaches)...
    let resume_from = saved.index - 1;
    old.client(via)
        .await
        .watch_from("/app", WatchKind::PersistentRecursive, Some(resume_from))
        .await
        .expect("the old cluster still holds the history");

    // Restore into three fresh directories and start a new cluster from them.
    let restored = Arc::new(Mutex::new(Vec::new()));
    let new = {
        let (file, restored) = (file.clone(), restored.clone());
        TestCluster::start_prepared(ClusterOptions::default(), move |id, data_dir, members| {
            let (file, restored) = (file.clone(), restored.clone());
            async move {
                let r = backup::restore(RestoreOptions {
                    file,
                    data_dir,
                    id,
                    initial_members: members,
                    cluster_token: String::new(),
                })
                .await
                .expect("restore");
                restored.lock().unwrap().push(r);
            }
        })
        .await
    };
    let restored = restored.lock().unwrap().clone();
    assert_eq!(restored.len(), 3);
    let new_cluster_id = restored[0].cluster_id;
    assert!(restored.iter().all(|r| r.cluster_id == new_cluster_id));

    // Same state: the hash every member reports is the backup's.
    let (_, hash) = new.wait_converged(Duration::from_secs(20)).await;
    assert_eq!(hash, info.state_hash, "restored state hash");

    // Every acknowledged write up to the backup's index, with its data; none after it.
    let nc = new.client_all().await;
    for (p, data, z) in &acked {
        let got = nc.get_data(p).await;
        if *z <= saved.index {
            let (d, stat) = got.unwrap_or_else(|e| panic!("{p} (zxid {z}) lost: {e}"));
            assert_eq!(&d, data, "{p}");
            assert_eq!(stat.czxid, *z, "{p}");
        } else {
            assert!(
                matches!(&got, Err(e) if e.reason() == Some(baton::client::Reason::NoNode)),
                "{p} (zxid {z}) is after the backup's index {}: {got:?}",
                saved.index
            );
        }
    }

    // Sessions are kept (and the ephemeral they own); their clients can come back.
    nc.get_data("/app/owned").await.expect("ephemeral kept");
    nc.get_session(session.id()).await.expect("session kept");
    let back = nc
        .resume_session(
            session.id(),
            session.secret().to_vec(),
            Duration::from_secs(60),
        )
        .await
        .expect("resume the session on the new cluster");
    drop(back);

    // zxids go on after the backup's.
    let (_, stat) = nc
        .create("/after", b"new".to_vec(), CreateOptions::persistent())
        .await
        .expect("new write");
    assert!(
        stat.czxid > saved.index && stat.czxid > saved.last_zxid,
        "new zxid {} after the backup's index {}",
        stat.czxid,
        saved.index
    );

    // Watch history starts at the backup: an older resume point is compacted everywhere.
    match nc
        .watch_from("/app", WatchKind::PersistentRecursive, Some(resume_from))
        .await
    {
        Err(ClientError::Compacted { oldest_zxid }) => assert!(oldest_zxid > saved.index),
        Err(e) => panic!("expected COMPACTED, got {e}"),
        Ok(_) => panic!("a watch resumed before the restored state was accepted"),
    }

    // The clusters cannot talk to each other. The old cluster's id, from a stopped member's
    // data directory:
    old.stop(3).await;
    let old_cluster_id = {
        let store = Store::open(&old.node(3).dir, 1 << 20).expect("open old member 3");
        identity::read_id(&store)
            .expect("read")
            .expect("the old cluster has an id")
    };
    assert_ne!(old_cluster_id, new_cluster_id);
    let old_terms: Vec<u64> = [1, 2].iter().map(|&id| term_of(&old, id)).collect();
    let new_terms: Vec<u64> = new.ids().iter().map(|&id| term_of(&new, id)).collect();
    for id in new.ids() {
        let peer = new.node(id).peer_addr;
        assert_cluster_mismatch(
            foreign_vote(peer, Some(old_cluster_id), 10_000).await,
            "old cluster -> new member",
        );
        assert_cluster_mismatch(
            foreign_vote(peer, None, 10_000).await,
            "no cluster id -> new member",
        );
    }
    for id in [1, 2] {
        assert_cluster_mismatch(
            foreign_vote(old.node(id).peer_addr, Some(new_cluster_id), 10_000).await,
            "new cluster -> old member",
        );
    }
    // The check lets the cluster's own id through (a stale vote is handled and refused).
    let own = foreign_vote(new.node(1).peer_addr, Some(new_cluster_id), 0)
        .await
        .expect("a vote with the cluster's own id is handled");
    assert!(!own.vote_granted);
    let new_terms_after: Vec<u64> = new.ids().iter().map(|&id| term_of(&new, id)).collect();
    assert_eq!(new_terms_after, new_terms, "no foreign vote raised a term");
    let old_terms_after: Vec<u64> = [1, 2].iter().map(|&id| term_of(&old, id)).collect();
    assert_eq!(old_terms_after, old_terms);
    // And a data directory of the old cluster does not start as a member of the new one.
    let mut cfg = new.node(3).cfg.clone();
    cfg.data_dir = old.node(3).dir.clone();
    cfg.listen_client = "127.0.0.1:0".parse().expect("addr");
    cfg.listen_peer = "127.0.0.1:0".parse().expect("addr");
    let e = baton::server::start(cfg)
        .await
        .err()
        .expect("an old data dir is refused");
    assert!(e.to_string().contains("created as"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_concurrent_backup_is_refused_with_resource_exhausted() {
    let cluster = TestCluster::start(1).await;
    let c = cluster.client(1).await;
    // Several MiB, more than the transport buffers: the first stream, left unread, stays in
    // progress on the member.
    for i in 0..8 {
        c.create(
            &format!("/x{i}"),
            vec![b'x'; 900 * 1024],
            CreateOptions::persistent(),
        )
        .await
        .expect("create");
    }
    let mut first = c.backup().await.expect("first backup");
    let head = first.message().await.expect("message").expect("info");
    assert!(matches!(head.part, Some(Part::Info(_))));
    let e = c.backup().await.expect_err("second backup");
    match &e {
        ClientError::Status(s) => assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}"),
        other => panic!("{other}"),
    }
    assert_eq!(e.reason(), Some(baton::client::Reason::BackupInProgress));
    // Once the first stream is gone, backups are served again.
    drop(first);
    let r = crate::common::harness::retry(Duration::from_secs(5), 100, || async {
        c.backup().await.map(|_| ()).map_err(|e| e.to_string())
    })
    .await;
    r.expect("a backup after the first ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_saves_verifies_and_restores_and_refuses_corruption_and_non_empty_dirs() {
    let cluster = TestCluster::start(1).await;
    let c = cluster.client(1).await;
    for i in 0..20 {
        c.create(
            &format!("/k{i}"),
            vec![b'v'; 100],
            CreateOptions::persistent(),
        )
        .await
        .expect("create");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| -> PathBuf { dir.path().join(name) };
    let file = path("b.backup");
    let f = file.to_str().expect("utf-8");
    let ep = cluster.endpoint(1);

    let (code, out, err) = baton(&["--endpoints", &ep, "-o", "json", "snapshot", "save", f]).await;
    assert_eq!(code, 0, "save: {err}");
    let saved = json(&out);
    assert!(saved["index"].as_u64().expect("index") >= 21);

    let (code, out, err) = baton(&["-o", "json", "snapshot", "status", f]).await;
    assert_eq!(code, 0, "status: {err}");
    let status = json(&out);
    assert_eq!(status["index"], saved["index"]);
    assert_eq!(status["last_zxid"], saved["last_zxid"]);
    assert_eq!(status["checksum_ok"], true);
    let live = c.status().await.expect("status");
    assert_eq!(status["znodes"].as_u64(), Some(live.znodes));
    let (code, out, _) = baton(&["snapshot", "status", f]).await;
    assert_eq!(code, 0);
    assert!(out.contains("crc32") && out.contains("ok"), "{out}");

    // One flipped byte: refused by status and by restore, which leaves no directory behind.
    let mut bytes = std::fs::read(&file).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    let bad = path("bad.backup");
    std::fs::write(&bad, &bytes).expect("write");
    let b = bad.to_str().expect("utf-8");
    let (code, _, err) = baton(&["snapshot", "status", b]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("CORRUPT") && err.contains("checksum mismatch"),
        "{err}"
    );
    let members = "1=127.0.0.1:1,2=127.0.0.1:2,3=127.0.0.1:3";
    let target = path("restored");
    let t = target.to_str().expect("utf-8");
    let restore = |file: &str| {
        let file = file.to_string();
        let target = t.to_string();
        async move {
            baton(&[
                "snapshot",
                "restore",
                &file,
                "--data-dir",
                &target,
                "--id",
                "2",
                "--initial-members",
                members,
            ])
            .await
        }
    };
    let (code, _, err) = restore(b).await;
    assert_eq!(code, 1);
    assert!(err.contains("CORRUPT"), "{err}");
    assert!(!target.exists(), "a refused restore leaves no directory");

    // A good file restores into an absent directory, then refuses it (no longer empty).
    let (code, out, err) = restore(f).await;
    assert_eq!(code, 0, "restore: {err}");
    assert!(
        out.contains("new cluster") && out.contains("--initial-members"),
        "{out}"
    );
    let (code, _, err) = restore(f).await;
    assert_eq!(code, 1);
    assert!(err.contains("NOT_EMPTY"), "{err}");

    // Bad arguments are refused before anything is written.
    let (code, _, err) = baton(&[
        "snapshot",
        "restore",
        f,
        "--data-dir",
        path("other").to_str().expect("utf-8"),
        "--id",
        "4",
        "--initial-members",
        members,
    ])
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("BAD_ARGUMENTS"), "{err}");
    assert!(!path("other").exists());

    // An unreachable member: a clear error, no file.
    let gone = path("gone.backup");
    let (code, _, err) = baton(&[
        "--endpoints",
        "127.0.0.1:1",
        "--call-timeout",
        "2000",
        "snapshot",
        "save",
        gone.to_str().expect("utf-8"),
    ])
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("UNAVAILABLE"), "{err}");
    assert!(!gone.exists());
}
