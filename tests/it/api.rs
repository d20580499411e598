//! gRPC integration tests against a real member started in-process on 127.0.0.1:0, through
//! the `baton::client` library: every request goes client → gRPC → proposer → openraft log on
//! sled → state machine → response and watch events.

use std::time::{Duration, Instant};

use baton::client::{ChildrenOptions, ClientError, CreateOptions, MultiOps, ReadOptions};
use baton::config::Config;
use baton::proto::v1::{self, add_watch::Kind as WatchKind, EventType};
use baton::server;

use crate::common::member::{start, start_with};

fn reason(e: &ClientError) -> String {
    e.reason()
        .map_or_else(|| format!("<no reason: {e}>"), |r| r.to_string())
}

async fn expect_err<T: std::fmt::Debug>(
    r: Result<T, ClientError>,
    want_reason: &str,
    want_code: tonic::Code,
) {
    match r {
        Ok(v) => panic!("expected {want_reason}, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(reason(&e), want_reason, "{e}");
            assert_eq!(e.code(), want_code, "{e}");
        }
    }
}

#[tokio::test]
async fn crud_round_trip_with_stat() {
    let m = start().await;
    let c = &m.client;
    let (p, st) = c
        .create("/app", b"v0".to_vec(), CreateOptions::persistent())
        .await
        .unwrap();
    assert_eq!(p, "/app");
    assert_eq!(st.version, 0);
    assert_eq!(st.data_length, 2);
    assert!(st.czxid > 0);
    assert_eq!(st.czxid, st.mzxid);
    assert_eq!(st.czxid, st.pzxid);
    assert!(
        st.ctime > 1_600_000_000_000,
        "ctime is Unix ms: {}",
        st.ctime
    );

    let (data, got) = c.get_data("/app").await.unwrap();
    assert_eq!(data, b"v0");
    assert_eq!(got, st);

    let st2 = c.set_data("/app", b"v1".to_vec(), 0).await.unwrap();
    assert_eq!(st2.version, 1);
    assert!(st2.mzxid > st.mzxid);
    assert_eq!(st2.czxid, st.czxid);
    expect_err(
        c.set_data("/app", b"v2".to_vec(), 0).await,
        "BAD_VERSION",
        tonic::Code::FailedPrecondition,
    )
    .await;

    c.create("/app/a", Vec::new(), CreateOptions::persistent())
        .await
        .unwrap();
    c.create("/app/b", Vec::new(), CreateOptions::persistent())
        .await
        .unwrap();
    let parent = c.exists("/app").await.unwrap().unwrap();
    assert_eq!(parent.num_children, 2);
    assert_eq!(parent.cversion, 2);
    assert_eq!(
        parent.mzxid, st2.mzxid,
        "child creation does not change mzxid"
    );
    assert!(parent.pzxid > st2.mzxid);

    expect_err(
        c.delete("/app", -1).await,
        "NOT_EMPTY",
        tonic::Code::FailedPrecondition,
    )
    .await;
    expect_err(
        c.delete("/app", 7).await,
        "BAD_VERSION",
        tonic::Code::FailedPrecondition,
    )
    .await;
    c.delete("/app/a", -1).await.unwrap();
    c.delete("/app/b", 0).await.unwrap();
    c.delete("/app", 1).await.unwrap();
    assert!(c.exists("/app").await.unwrap().is_none());
    expect_err(c.get_data("/app").await, "NO_NODE", tonic::Code::NotFound).await;
    expect_err(
        c.create("/missing/child", Vec::new(), CreateOptions::persistent())
            .await,
        "NO_NODE",
        tonic::Code::NotFound,
    )
    .await;
}

#[tokio::test]
async fn sequential_names_and_children_pagination() {
    let m = start().await;
    let c = &m.client;
    c.create("/q", Vec::new(), CreateOptions::persistent())
        .await
        .unwrap();
    let mut names = Vec::new();
    for _ in 0..3 {
        let (p, _) = c
            .create(
                "/q/item-",
                Vec::new(),
                CreateOptions::persistent().sequential(),
            )
            .await
            .unwrap();
        names.push(p);
    }
    assert_eq!(
        names,
        vec![
            "/q/item-0000000000",
            "/q/item-0000000001",
            "/q/item-0000000002"
        ]
    );
    c.delete("/q/item-0000000002", -1).await.unwrap();
    let (p, _) = c
        .create(
            "/q/item-",
            Vec::new(),
            CreateOptions::persistent().sequential(),
        )
        .await
        .unwrap();
    assert_eq!(p, "/q/item-0000000003", "deletions do not reuse suffixes");

    for i in 0..25 {
        c.create(
            &format!("/q/n{i:02}"),
            Vec::new(),
            CreateOptions::persistent(),
        )
        .await
        .unwrap();
    }
    let page = c
        .get_children(
            "/q",
            ChildrenOptions {
                limit: 10,
                include_stats: true,
                ..ChildrenOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.children.len(), 10);
    assert_eq!(page.stats.len(), 10);
    assert!(!page.next.is_empty());
    let all = c.get_all_children("/q").await.unwrap();
    assert_eq!(all.len(), 28);
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "children come back in byte order");
}

#[tokio::test]
async fn ephemerals_live_and_die_with_their_session() {
    let m = start().await;
    let c = &m.client;
    let s = c.open_session(Duration::from_secs(5)).await.unwrap();
    let (p, st) = c
        .create("/lock", Vec::new(), CreateOptions::ephemeral(s.id()))
        .await
        .unwrap();
    assert_eq!(st.ephemeral_owner, s.id());
    expect_err(
        c.create("/lock/child", Vec::new(), CreateOptions::persistent())
            .await,
        "NO_CHILDREN_FOR_EPHEMERALS",
        tonic::Code::FailedPrecondition,
    )
    .await;
    let info = c.get_session(s.id()).await.unwrap();
    assert_eq!(info.ephemerals, vec![p.clone()]);
    s.close().await.unwrap();
    assert!(c.exists(&p).await.unwrap().is_none());
    expect_err(
        c.create("/again", Vec::new(), CreateOptions::ephemeral(s.id()))
            .await,
        "SESSION_EXPIRED",
        tonic::Code::FailedPrecondition,
    )
    .await;
    expect_err(
        c.create("/x", Vec::new(), CreateOptions::ephemeral(12345))
            .await,
        "SESSION_EXPIRED",
        tonic::Code::FailedPrecondition,
    )
    .await;
}

#[tokio::test]
async fn session_expires_when_keepalives_stop() {
    let m = start().await;
    let c = &m.client;
    let s = c.open_session(Duration::from_millis(300)).await.unwrap();
    assert_eq!(s.timeout(), Duration::from_millis(300));
    let id = s.id();
    c.create("/eph", Vec::new(), CreateOptions::ephemeral(id))
        .await
        .unwrap();
    // While keepalives flow, the session outlives its timeout several times over.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(c.exists("/eph").await.unwrap().is_some());
    drop(s); // stops the keepalive task without closing
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.exists("/eph").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "session never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    expect_err(
        c.get_session(id).await,
        "SESSION_EXPIRED",
        tonic::Code::FailedPrecondition,
    )
    .await;
}

#[tokio::test]
async fn session_timeout_is_clamped_into_bounds() {
    let m = start_with(tempfile::tempdir().unwrap(), |c| {
        c.session_timeout_min = Duration::from_millis(2000);
        c.session_timeout_max = Duration::from_millis(5000);
    })
    .await;
    let s = m
        .client
        .open_session(Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(s.timeout(), Duration::from_millis(2000));
    let s2 = m
        .client
        .open_session(Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(s2.timeout(), Duration::from_millis(5000));
    assert_eq!(m.client.list_sessions().await.unwrap().len(), 2);
}

#[tokio::test]
async fn multi_is_atomic_and_reports_the_failing_op() {
    let m = start().await;
    let c = &m.client;
    let ok = c
        .multi(
            MultiOps::new()
                .create("/m", b"p".to_vec(), CreateOptions::persistent())
                .create("/m/c", b"c".to_vec(), CreateOptions::persistent())
                .set_data("/m/c", b"c2".to_vec(), 0)
                .check("/m/c", 1)
                .into_ops(),
        )
        .await
        .unwrap();
    assert!(ok.succeeded);
    assert_eq!(ok.results.len(), 4);
    let zxid = ok.header.unwrap().zxid;
    let (_, st) = c.get_data("/m/c").await.unwrap();
    assert_eq!(st.czxid, zxid, "one Multi is one zxid");
    assert_eq!(st.mzxid, zxid);

    let before = c.exists("/m").await.unwrap().unwrap();
    let failed = c
        .multi(
            MultiOps::new()
                .create("/m/d", Vec::new(), CreateOptions::persistent())
                .delete("/m/c", 5)
                .create("/m/e", Vec::new(), CreateOptions::persistent())
                .into_ops(),
        )
        .await
        .unwrap();
    assert!(!failed.succeeded);
    assert_eq!(failed.failed_op_index, 1);
    let reasons: Vec<String> = failed
        .results
        .iter()
        .map(|r| match &r.result {
            Some(v1::op_result::Result::Error(e)) => e.reason.clone(),
            Some(_) => "OK".into(),
            None => "NONE".into(),
        })
        .collect();
    assert_eq!(reasons, vec!["OK", "BAD_VERSION", "RUNTIME_INCONSISTENCY"]);
    assert!(c.exists("/m/d").await.unwrap().is_none(), "nothing applied");
    assert_eq!(c.exists("/m").await.unwrap().unwrap(), before);

    // Malformed: an empty op is rejected before anything is proposed.
    let e = c
        .multi(vec![v1::Op { op: None }])
        .await
        .expect_err("empty op is malformed");
    assert_eq!(reason(&e), "BAD_ARGUMENTS");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = c
        .multi(
            MultiOps::new()
                .create("/ok", Vec::new(), CreateOptions::persistent())
                .create("bad", Vec::new(), CreateOptions::persistent())
                .into_ops(),
        )
        .await
        .expect_err("invalid path in op 1");
    assert_eq!(reason(&e), "INVALID_PATH");
    assert!(c.exists("/ok").await.unwrap().is_none());
}

#[tokio::test]
async fn bad_input_gets_precise_statuses_and_the_server_keeps_serving() {
    let m = start_with(tempfile::tempdir().unwrap(), |c| c.max_data_bytes = 1024).await;
    let c = &m.client;
    for bad in ["", "rel", "/a/..", "/a/./b", "/a\0b", "/trailing/", "//x"] {
        expect_err(
            c.create(bad, Vec::new(), CreateOptions::persistent()).await,
            "INVALID_PATH",
            tonic::Code::InvalidArgument,
        )
        .await;
        expect_err(
            c.get_data(bad).await,
            "INVALID_PATH",
            tonic::Code::InvalidArgument,
        )
        .await;
    }
    let e = c
        .create("/big", vec![0u8; 1025], CreateOptions::persistent())
        .await
        .expect_err("too large");
    assert_eq!(reason(&e), "TOO_LARGE");
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    assert!(e.to_string().contains("1024"), "names the limit: {e}");
    c.create("/fits", vec![0u8; 1024], CreateOptions::persistent())
        .await
        .unwrap();
    expect_err(
        c.create("/baton/x", Vec::new(), CreateOptions::persistent())
            .await,
        "NO_AUTH",
        tonic::Code::PermissionDenied,
    )
    .await;
    expect_err(
        c.create("/t", Vec::new(), CreateOptions::ttl(0)).await,
        "BAD_ARGUMENTS",
        tonic::Code::InvalidArgument,
    )
    .await;
    expect_err(
        c.create("/t", Vec::new(), CreateOptions::ttl(1 << 40))
            .await,
        "BAD_ARGUMENTS",
        tonic::Code::InvalidArgument,
    )
    .await;
    expect_err(
        c.set_data("/fits", Vec::new(), -2).await,
        "BAD_ARGUMENTS",
        tonic::Code::InvalidArgument,
    )
    .await;
    expect_err(
        c.create("/dup", Vec::new(), CreateOptions::persistent())
            .await
            .and(
                c.create("/dup", Vec::new(), CreateOptions::persistent())
                    .await,
            ),
        "NODE_EXISTS",
        tonic::Code::AlreadyExists,
    )
    .await;
    // Still serving.
    assert!(c.exists("/fits").await.unwrap().is_some());
}

#[tokio::test]
async fn reads_linearizable_serializable_and_min_zxid() {
    let m = start().await;
    let c = &m.client;
    let (_, st) = c
        .create("/r", b"1".to_vec(), CreateOptions::persistent())
        .await
        .unwrap();
    let (d, _) = c
        .get_data_with("/r", ReadOptions::serializable())
        .await
        .unwrap();
    assert_eq!(d, b"1");
    let (d, _) = c
        .get_data_with("/r", ReadOptions::serializable().at_least(st.czxid))
        .await
        .unwrap();
    assert_eq!(d, b"1");
    let e = c
        .with_timeout(Duration::from_secs(30))
        .get_data_with(
            "/r",
            ReadOptions::serializable().at_least(st.czxid + 1_000_000),
        )
        .await
        .expect_err("never applied");
    assert_eq!(e.code(), tonic::Code::DeadlineExceeded);
    let h = c.sync("/").await.unwrap();
    assert!(h.zxid >= st.czxid);
    assert_eq!(h.member_id, 1);
    assert_eq!(h.leader_id, 1);
}

#[tokio::test]
async fn one_shot_watches_follow_zookeeper_trigger_rules() {
    let m = start().await;
    let c = &m.client;
    c.create("/w", b"0".to_vec(), CreateOptions::persistent())
        .await
        .unwrap();
    let mut w = c.watcher().await.unwrap();
    let (data_id, added) = w.add("/w", WatchKind::Data, None).await.unwrap();
    assert!(added.exists);
    let (child_id, _) = w.add("/w", WatchKind::Children, None).await.unwrap();
    let (exists_id, added) = w.add("/w/new", WatchKind::Exists, None).await.unwrap();
    assert!(!added.exists);
    let e = w
        .add("/nope", WatchKind::Data, None)
        .await
        .expect_err("DATA watch needs the node");
    assert_eq!(reason(&e), "NO_NODE");

    let (_, st) = c
        .create("/w/new", Vec::new(), CreateOptions::persistent())
        .await
        .unwrap();
    c.set_data("/w", b"1".to_vec(), -1).await.unwrap();
    c.set_data("/w", b"2".to_vec(), -1).await.unwrap();

    let mut got = Vec::new();
    for _ in 0..3 {
        let ev = tokio::time::timeout(Duration::from_secs(5), w.next_event())
            .await
            .expect("event in time")
            .unwrap()
            .unwrap();
        got.push(ev);
    }
    let find = |id: u64| got.iter().find(|(w, _)| *w == id).map(|(_, e)| e.clone());
    let ex = find(exists_id).expect("exists watch fired");
    assert_eq!(ex.r#type, EventType::Created as i32);
    assert_eq!(ex.zxid, st.czxid);
    let ch = find(child_id).expect("children watch fired");
    assert_eq!(ch.r#type, EventType::ChildrenChanged as i32);
    assert_eq!(ch.path, "/w");
    let da = find(data_id).expect("data watch fired");
    assert_eq!(da.r#type, EventType::DataChanged as i32);
    // One-shot: the second set_data fired nothing more.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), w.next_event())
            .await
            .is_err(),
        "one-shot watches fire once"
    );
}

#[tokio::test]
async fn recursive_watch_sees_the_subtree_in_zxid_order_and_resumes_without_gaps() {
    let m = start().await;
    let c = &m.client;
    c.create("/cfg", Vec::new(), CreateOptions::persistent())
        .await
        .unwrap();
    let mut w = c.watcher().await.unwrap();
    let (id, added) = w
        .add("/cfg", WatchKind::PersistentRecursive, None)
        .await
        .unwrap();
    let start_zxid = added.zxid;
    c.create("/cfg/a", Vec::new(), CreateOptions::persistent())
        .await
        .unwrap();
    c.create("/cfg/a/b", Vec::new(), CreateOptions::persistent())
        .await
        .unwrap();
    c.set_data("/cfg/a/b", b"x".to_vec(), -1).await.unwrap();
    c.create("/other", Vec::new(), CreateOptions::persistent())
        .await
        .unwrap();
    c.delete("/cfg/a/b", -1).await.unwrap();
    let mut live = Vec::new();
    while live.len() < 4 {
        let (wid, ev) = tokio::time::timeout(Duration::from_secs(5), w.next_event())
            .await
            .expect("event in time")
            .unwrap()
            .unwrap();
        assert_eq!(wid, id);
        live.push(ev);
    }
    let kinds: Vec<(i32, &str)> = live.iter().map(|e| (e.r#type, e.path.as_str())).collect();
    assert_eq!(
        kinds,
        vec![
            (EventType::Created as i32, "/cfg/a"),
            (EventType::Created as i32, "/cfg/a/b"),
            (EventType::DataChanged as i32, "/cfg/a/b"),
            (EventType::Deleted as i32, "/cfg/a/b"),
        ],
        "no CHILDREN_CHANGED on recursive watches, nothing outside the subtree"
    );
    assert!(live.windows(2).all(|p| p[0].zxid < p[1].zxid));

    // A second stream resumes from the registration zxid and sees the same events.
    let mut w2 = c.watcher().await.unwrap();
    w2.add("/cfg", WatchKind::PersistentRecursive, Some(start_zxid))
        .await
        .unwrap();
    let mut replayed = Vec::new();
    while replayed.len() < 4 {
        let (_, ev) = tokio::time::timeout(Duration::from_secs(5), w2.next_event())
            .await
            .expect("replayed event")
            .unwrap()
            .unwrap();
        replayed.push(ev);
    }
    assert_eq!(replayed, live);
}

#[tokio::test]
async fn resume_from_before_the_history_reports_compaction() {
    let m = start_with(tempfile::tempdir().unwrap(), |c| c.watch_history = 4).await;
    let c = &m.client;
    for i in 0..10 {
        c.create(&format!("/h{i}"), Vec::new(), CreateOptions::persistent())
            .await
            .unwrap();
    }
    let mut w = c.watcher().await.unwrap();
    match w.add("/", WatchKind::PersistentRecursive, Some(1)).await {
        Err(ClientError::Compacted { oldest_zxid }) => assert!(oldest_zxid > 1),
        other => panic!("expected Compacted, got {other:?}"),
    }
}

#[tokio::test]
async fn containers_and_ttl_nodes_are_removed_by_the_server() {
    let m = start_with(tempfile::tempdir().unwrap(), |c| {
        c.ttl_check = Duration::from_millis(50)
    })
    .await;
    let c = &m.client;
    let (_, st) = c
        .create("/box", Vec::new(), CreateOptions::container())
        .await
        .unwrap();
    assert_eq!(st.ephemeral_owner, 0);
    c.create("/box/item", Vec::new(), CreateOptions::persistent())
        .await
        .unwrap();
    c.delete("/box/item", -1).await.unwrap();
    assert!(
        c.exists("/box").await.unwrap().is_none(),
        "emptied container goes"
    );

    let (_, st) = c
        .create("/ttl", Vec::new(), CreateOptions::ttl(300))
        .await
        .unwrap();
    assert_eq!(st.ttl_ms, 300);
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.exists("/ttl").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "TTL node never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn restart_keeps_every_acknowledged_write() {
    let m = start().await;
    let s = m
        .client
        .open_session(Duration::from_secs(30))
        .await
        .unwrap();
    m.client
        .create("/persist", b"1".to_vec(), CreateOptions::persistent())
        .await
        .unwrap();
    m.client
        .create("/persist/e", Vec::new(), CreateOptions::ephemeral(s.id()))
        .await
        .unwrap();
    for i in 0..50 {
        m.client
            .create(
                "/persist/s-",
                format!("{i}").into_bytes(),
                CreateOptions::persistent().sequential(),
            )
            .await
            .unwrap();
    }
    let before = m.client.get_all_children("/persist").await.unwrap();
    let m = m.restart().await;
    let after = m.client.get_all_children("/persist").await.unwrap();
    assert_eq!(before, after);
    let info = m.client.get_session(s.id()).await.unwrap();
    assert_eq!(info.ephemerals, vec!["/persist/e".to_string()]);
    let (p, _) = m
        .client
        .create(
            "/persist/s-",
            Vec::new(),
            CreateOptions::persistent().sequential(),
        )
        .await
        .unwrap();
    // `/persist/e` took suffix 0, the 50 sequential creates 1..=50.
    assert_eq!(
        p, "/persist/s-0000000051",
        "sequence counter survives restart"
    );
}

#[tokio::test]
async fn cluster_status_describes_the_member() {
    let m = start().await;
    let st = m.client.status().await.unwrap();
    assert_eq!(st.member_id, 1);
    assert_eq!(st.leader_id, 1);
    assert_eq!(st.role, v1::Role::Leader as i32);
    assert!(st.applied_index > 0);
    assert!(st.db_size_bytes > 0);
    assert_eq!(st.members.len(), 1);
    assert!(st.members[0].voter);
}

#[tokio::test]
async fn a_second_member_on_the_same_data_dir_is_refused() {
    let m = start().await;
    let cfg = Config::for_test(m.dir.as_ref().unwrap().path());
    let err = server::start(cfg).await.err().expect("data dir is locked");
    assert!(err.to_string().contains("storage"), "{err}");
}

#[tokio::test]
async fn a_busy_client_port_is_a_clear_error() {
    let m = start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::for_test(dir.path());
    cfg.listen_client = m.handle.as_ref().unwrap().client_addr;
    let err = server::start(cfg).await.err().expect("port is taken");
    assert!(err.to_string().contains("cannot listen"), "{err}");
}
