//! Operating a member: the metrics port (OpenMetrics text, one registry per member), the
//! health probes and the gRPC health service, and the client port's limits (requests in
//! flight, connections, watches, a watcher that does not read).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use baton::client::{Client, CreateOptions, WatchKind};
use baton::config::Config;
use baton::error::status_reason;
use baton::proto::v1;
use baton::server::{self, ServerHandle};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::common::harness::{client_options, TestCluster};

/// Polls `f` every 50 ms until it gives a value or `timeout` passes.
async fn poll_until<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A GET on the metrics port: status code and body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    baton::ops::http::get(&addr.to_string(), path, Duration::from_secs(10))
        .await
        .expect("the metrics port answers")
}

/// A parsed scrape: sample values by `name{labels}`, and metric types by family name.
struct Scrape {
    samples: BTreeMap<String, f64>,
    types: HashMap<String, String>,
    text: String,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let mut samples = BTreeMap::new();
        let mut types = HashMap::new();
        for line in text.lines() {
            if let Some(t) = line.strip_prefix("# TYPE ") {
                let (name, ty) = t.split_once(' ').expect("TYPE name type");
                types.insert(name.to_string(), ty.to_string());
            } else if !line.starts_with('#') && !line.is_empty() {
                let (key, value) = line.rsplit_once(' ').expect("sample value");
                samples.insert(key.to_string(), value.parse().expect("numeric value"));
            }
        }
        Scrape {
            samples,
            types,
            text,
        }
    }

    /// The value of an exact sample key.
    fn get(&self, key: &str) -> f64 {
        match self.samples.get(key) {
            Some(v) => *v,
            None => panic!("no sample {key} in:\n{}", self.text),
        }
    }

    /// The value of a sample key if present (0 otherwise: a family member not created yet).
    fn get_or_zero(&self, key: &str) -> f64 {
        self.samples.get(key).copied().unwrap_or(0.0)
    }
}

async fn scrape(addr: SocketAddr) -> Scrape {
    let (code, body) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200, "{body}");
    Scrape::parse(body)
}

fn metrics_addr(h: &ServerHandle) -> SocketAddr {
    h.metrics_addr.expect("the metrics port is on")
}

/// Every metric operators alert on, with its type.
const EXPECTED: &[(&str, &str)] = &[
    ("grpc_server_started", "counter"),
    ("grpc_server_handled", "counter"),
    ("grpc_server_handling_seconds", "histogram"),
    ("baton_server_has_leader", "gauge"),
    ("baton_server_is_leader", "gauge"),
    ("baton_server_leader_changes_seen", "counter"),
    ("baton_raft_term", "gauge"),
    ("baton_raft_last_log_index", "gauge"),
    ("baton_raft_applied_index", "gauge"),
    ("baton_raft_snapshot_index", "gauge"),
    ("baton_raft_purged_index", "gauge"),
    ("baton_raft_members", "gauge"),
    ("baton_proposals_committed", "counter"),
    ("baton_proposals_failed", "counter"),
    ("baton_proposer_batch_requests", "histogram"),
    ("baton_disk_log_append_duration_seconds", "histogram"),
    ("baton_disk_wal_fsync_duration_seconds", "histogram"),
    ("baton_apply_duration_seconds", "histogram"),
    ("baton_forward_duration_seconds", "histogram"),
    ("baton_snapshot_build_duration_seconds", "histogram"),
    ("baton_snapshot_size_bytes", "gauge"),
    ("baton_znodes", "gauge"),
    ("baton_ephemerals", "gauge"),
    ("baton_sessions", "gauge"),
    ("baton_watches", "gauge"),
    ("baton_watch_events_sent", "counter"),
    ("baton_watch_slow_streams_closed", "counter"),
    ("baton_auth_failed_logins", "counter"),
    ("baton_auth_throttled", "counter"),
    ("baton_auth_unauthenticated", "counter"),
    ("baton_auth_admin_denied", "counter"),
    ("baton_db_size_bytes", "gauge"),
    ("baton_alarm_active", "gauge"),
    ("baton_requests_in_flight", "gauge"),
    ("baton_requests_shed", "counter"),
    ("baton_connections", "gauge"),
    ("baton_connections_rejected", "counter"),
    ("baton_slow_requests", "counter"),
    ("baton_slow_applies", "counter"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_open_fds", "gauge"),
    ("process_cpu_seconds", "counter"),
    ("baton_build", "info"),
];

const NOT_FOUND_GETS: &str = "grpc_server_handled_total{grpc_service=\"baton.v1.ZNodes\",grpc_method=\"GetData\",grpc_type=\"unary\",grpc_code=\"NotFound\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_member_serves_its_own_metrics_in_openmetrics_text() {
    let c = TestCluster::start(3).await;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await;
    let follower = c.ids().into_iter().find(|&i| i != leader).unwrap();
    let client = c.client(follower).await;
    client
        .create("/m", b"x".to_vec(), CreateOptions::persistent())
        .await
        .unwrap();
    let session = client.open_session(Duration::from_secs(5)).await.unwrap();
    client
        .create("/m/eph", Vec::new(), CreateOptions::ephemeral(session.id()))
        .await
        .unwrap();
    let before = scrape(metrics_addr(c.handle(follower))).await;
    for _ in 0..3 {
        assert!(client.get_data("/m/missing").await.is_err());
    }
    let s = scrape(metrics_addr(c.handle(follower))).await;

    assert!(
        s.text.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    assert!(!s.text.contains("_total_total"), "no doubled suffix");
    for (name, ty) in EXPECTED {
        assert_eq!(
            s.types.get(*name).map(String::as_str),
            Some(*ty),
            "{name} is a {ty}"
        );
    }
    // Error codes are counted per method, on the member that answered.
    assert_eq!(
        s.get(NOT_FOUND_GETS) - before.get_or_zero(NOT_FOUND_GETS),
        3.0,
        "three NotFound answers counted"
    );
    // Values read from this member's state, not another's.
    assert_eq!(s.get("baton_server_id"), follower as f64);
    assert_eq!(s.get("baton_server_is_leader"), 0.0);
    assert_eq!(s.get("baton_server_has_leader"), 1.0);
    assert_eq!(s.get("baton_sessions"), 1.0);
    assert_eq!(s.get("baton_ephemerals"), 1.0);
    let status = client.status().await.unwrap();
    assert_eq!(s.get("baton_znodes"), status.znodes as f64);
    assert_eq!(s.get("baton_raft_members{role=\"voter\"}"), 3.0);
    assert!(
        s.get("baton_forward_duration_seconds_count") >= 3.0,
        "forwarded writes timed"
    );

    let l = scrape(metrics_addr(c.handle(leader))).await;
    assert_eq!(l.get("baton_server_id"), leader as f64);
    assert_eq!(l.get("baton_server_is_leader"), 1.0);
    assert_eq!(
        l.get_or_zero(NOT_FOUND_GETS),
        0.0,
        "the leader answered none of the follower's reads"
    );
    assert!(
        l.get("baton_proposer_batch_requests_count") >= 3.0,
        "the leader proposed the writes"
    );
    for peer in c.ids().into_iter().filter(|&i| i != leader) {
        let key = format!("baton_raft_follower_lag_entries{{peer=\"{peer}\"}}");
        assert!(
            l.samples.contains_key(&key),
            "leader reports the lag of {peer}"
        );
    }

    client
        .close_session(session.id(), session.secret())
        .await
        .unwrap();
    let after = poll_until(Duration::from_secs(5), || async {
        let s = scrape(metrics_addr(c.handle(follower))).await;
        (s.get("baton_ephemerals") == 0.0 && s.get("baton_sessions") == 0.0).then_some(())
    })
    .await;
    assert!(after.is_some(), "closing the session lowers the gauges");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_metrics_follow_a_leader_kill() {
    let mut c = TestCluster::start(3).await;
    let old = c.wait_for_leader(Duration::from_secs(10)).await;
    let survivors: Vec<u64> = c.ids().into_iter().filter(|&i| i != old).collect();
    let mut seen = BTreeMap::new();
    for &id in &survivors {
        let addr = metrics_addr(c.handle(id));
        let s = poll_until(Duration::from_secs(5), || async {
            let s = scrape(addr).await;
            (s.get("baton_raft_leader_id") == old as f64).then_some(s)
        })
        .await
        .expect("every member knows the leader");
        assert_eq!(s.get("baton_server_has_leader"), 1.0);
        seen.insert(id, s.get("baton_server_leader_changes_seen_total"));
    }
    c.stop(old).await;
    let new = c.wait_for_new_leader(old, Duration::from_secs(10)).await;
    for &id in &survivors {
        let addr = metrics_addr(c.handle(id));
        let s = poll_until(Duration::from_secs(5), || async {
            let s = scrape(addr).await;
            (s.get("baton_raft_leader_id") == new as f64).then_some(s)
        })
        .await
        .expect("the survivor reports the new leader");
        assert_eq!(s.get("baton_server_has_leader"), 1.0);
        assert!(
            s.get("baton_server_leader_changes_seen_total") >= seen[&id] + 1.0,
            "member {id} counted the leader change"
        );
        assert_eq!(
            s.get("baton_server_is_leader"),
            if id == new { 1.0 } else { 0.0 }
        );
    }
}

async fn grpc_health(endpoint: SocketAddr) -> ServingStatus {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut h = HealthClient::new(channel);
    let r = h
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health check");
    ServingStatus::try_from(r.into_inner().status).unwrap_or(ServingStatus::Unknown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_fails_on_a_member_cut_off_from_the_majority_and_returns() {
    let c = TestCluster::start(3).await;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await;
    let cut = c.ids().into_iter().find(|&i| i != leader).unwrap();
    let (maddr, caddr) = (metrics_addr(c.handle(cut)), c.handle(cut).client_addr);
    assert_eq!(http_get(maddr, "/readyz").await, (200, "ok\n".to_string()));
    assert_eq!(http_get(maddr, "/livez").await.0, 200);
    let serving = poll_until(Duration::from_secs(10), || async {
        (grpc_health(caddr).await == ServingStatus::Serving).then_some(())
    })
    .await;
    assert!(serving.is_some(), "SERVING once ready");

    c.isolate(cut);
    let (code, body) = http_get(maddr, "/readyz?verbose").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("[-]linearizable_read failed"), "{body}");
    assert!(body.contains("[+]raft_running ok"), "{body}");
    // Excluding the failing checks leaves the member ready by the others.
    let (code, body) = http_get(
        maddr,
        "/readyz?exclude=linearizable_read&exclude=has_leader",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        http_get(maddr, "/livez").await.0,
        200,
        "alive while cut off"
    );
    assert_eq!(http_get(maddr, "/readyz/linearizable_read").await.0, 503);
    assert_eq!(http_get(maddr, "/readyz/no_such_check").await.0, 404);
    let (code, body) = http_get(maddr, "/health").await;
    assert_eq!(code, 503);
    assert!(body.contains("\"health\":\"false\""), "{body}");
    let not_serving = poll_until(Duration::from_secs(10), || async {
        (grpc_health(caddr).await == ServingStatus::NotServing).then_some(())
    })
    .await;
    assert!(not_serving.is_some(), "gRPC health follows readiness");
    // The other members stay ready.
    for id in c.ids().into_iter().filter(|&i| i != cut) {
        assert_eq!(http_get(metrics_addr(c.handle(id)), "/readyz").await.0, 200);
    }

    c.heal();
    let ready = poll_until(Duration::from_secs(15), || async {
        (http_get(maddr, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    assert!(ready.is_some(), "ready again once healed");
    let serving = poll_until(Duration::from_secs(10), || async {
        (grpc_health(caddr).await == ServingStatus::Serving).then_some(())
    })
    .await;
    assert!(serving.is_some(), "gRPC health SERVING again");
    let s = scrape(maddr).await;
    assert!(
        s.get_or_zero(
            "baton_health_checks_total{endpoint=\"readyz\",check=\"linearizable_read\",result=\"failed\"}"
        ) >= 1.0
    );
}

/// One member with the given changes to the test configuration.
async fn single(dir: &std::path::Path, change: impl FnOnce(&mut Config)) -> ServerHandle {
    let mut cfg = Config::for_test(dir);
    change(&mut cfg);
    cfg.validate().unwrap();
    let h = server::start(cfg).await.unwrap();
    let client = Client::connect_with(
        [h.client_addr.to_string()],
        client_options(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    poll_until(Duration::from_secs(10), || async {
        client.sync("/").await.ok().map(|_| ())
    })
    .await
    .expect("the member serves");
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_over_the_in_flight_bound_are_shed_counted_and_retried_by_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let h = single(dir.path(), |c| c.max_in_flight = 2).await;
    let maddr = metrics_addr(&h);
    poll_until(Duration::from_secs(10), || async {
        (grpc_health(h.client_addr).await == ServingStatus::Serving).then_some(())
    })
    .await
    .expect("ready");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", h.client_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    // Raw calls, which do not retry: some are refused at once with OVERLOADED.
    let mut calls = Vec::new();
    for i in 0..200 {
        let mut z = v1::z_nodes_client::ZNodesClient::new(channel.clone());
        calls.push(tokio::spawn(async move {
            z.create(v1::CreateRequest {
                path: format!("/shed-{i}"),
                data: vec![0; 64],
                mode: v1::CreateMode::Persistent as i32,
                ..Default::default()
            })
            .await
        }));
    }
    // A health check during the flood is answered (it is never behind the bound).
    assert_eq!(grpc_health(h.client_addr).await, ServingStatus::Serving);
    let (mut ok, mut shed) = (0, 0);
    for c in calls {
        match c.await.unwrap() {
            Ok(_) => ok += 1,
            Err(s) => {
                assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
                assert_eq!(
                    status_reason(&s),
                    Some(baton::error::Reason::Overloaded),
                    "{s:?}"
                );
                shed += 1;
            }
        }
    }
    assert!(
        shed > 0,
        "200 concurrent writes against a bound of 2 shed some"
    );
    assert!(ok >= 2, "writes within the bound succeed");
    // The health probe on the metrics port is not behind the bound.
    assert_eq!(http_get(maddr, "/readyz").await.0, 200);
    let s = scrape(maddr).await;
    assert_eq!(s.get("baton_requests_shed_total"), shed as f64);
    assert_eq!(
        s.get("grpc_server_handled_total{grpc_service=\"baton.v1.ZNodes\",grpc_method=\"Create\",grpc_type=\"unary\",grpc_code=\"ResourceExhausted\"}"),
        shed as f64
    );
    assert_eq!(
        s.get("baton_requests_in_flight"),
        0.0,
        "every permit returned"
    );

    // The client library pauses and sends a shed request again: every write lands.
    let client = Client::connect_with(
        [h.client_addr.to_string()],
        client_options(Duration::from_secs(20)),
    )
    .await
    .unwrap();
    let mut writes = Vec::new();
    for i in 0..100 {
        let client = client.clone();
        writes.push(tokio::spawn(async move {
            client
                .create(
                    &format!("/retried-{i}"),
                    Vec::new(),
                    CreateOptions::persistent(),
                )
                .await
        }));
    }
    for w in writes {
        w.await
            .unwrap()
            .expect("a shed write is retried until it lands");
    }
    assert!(scrape(maddr).await.get("baton_requests_shed_total") > shed as f64);
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_over_the_per_ip_limit_are_closed_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let h = single(dir.path(), |c| c.max_connections_per_ip = 2).await;
    let maddr = metrics_addr(&h);
    poll_until(Duration::from_secs(5), || async {
        (scrape(maddr).await.get("baton_connections") == 0.0).then_some(())
    })
    .await
    .expect("the start-up client is gone");
    let a = TcpStream::connect(h.client_addr).await.unwrap();
    let b = TcpStream::connect(h.client_addr).await.unwrap();
    poll_until(Duration::from_secs(5), || async {
        (scrape(maddr).await.get("baton_connections") == 2.0).then_some(())
    })
    .await
    .expect("two connections admitted");
    // The third is accepted by the kernel, then closed by the member.
    let mut third = TcpStream::connect(h.client_addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("closed at once");
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "the connection over the limit is closed"
    );
    let s = scrape(maddr).await;
    assert_eq!(
        s.get("baton_connections_rejected_total{reason=\"per_ip\"}"),
        1.0
    );
    assert_eq!(s.get("baton_connections"), 2.0);
    drop((a, b));
    // Room again once they close: a client gets through.
    let client = Client::connect_with(
        [h.client_addr.to_string()],
        client_options(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    let served = poll_until(Duration::from_secs(5), || async {
        client.sync("/").await.ok().map(|_| ())
    })
    .await;
    assert!(served.is_some());
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watches_over_the_per_stream_limit_are_refused_with_too_many() {
    let dir = tempfile::tempdir().unwrap();
    let h = single(dir.path(), |c| c.max_watches_per_stream = 3).await;
    let client = Client::connect_with(
        [h.client_addr.to_string()],
        client_options(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    let mut w = client.watcher().await.unwrap();
    for i in 0..3 {
        w.add(&format!("/w{i}"), WatchKind::Exists, None)
            .await
            .unwrap();
    }
    match w.add("/w3", WatchKind::Exists, None).await {
        Err(baton::client::ClientError::Watch { reason, message }) => {
            assert_eq!(reason, "TOO_MANY", "{message}");
            assert!(message.contains("watches per stream"), "{message}");
        }
        other => panic!("expected TOO_MANY, got {other:?}"),
    }
    // The stream still serves its watches; another stream has its own allowance.
    let mut other = client.watcher().await.unwrap();
    other.add("/w3", WatchKind::Exists, None).await.unwrap();
    client
        .create("/w0", Vec::new(), CreateOptions::persistent())
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), w.next_event())
        .await
        .unwrap()
        .unwrap();
    assert!(ev.is_some());
    let s = scrape(metrics_addr(&h)).await;
    assert_eq!(s.get("baton_watches_refused_total"), 1.0);
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watcher_that_never_reads_is_closed_while_others_get_every_event() {
    const EVENTS: usize = 100_000;
    const PER_MULTI: usize = 250;
    // Long names make each event weigh about 200 bytes: 20 MB in all, more than the
    // transport's flow-control windows and buffers hold for the stalled stream.
    let node = |i: usize| format!("/n{i:04}-{}", "x".repeat(190));
    let dir = tempfile::tempdir().unwrap();
    let h = single(dir.path(), |c| c.watch_buffer = 8).await;
    let maddr = metrics_addr(&h);
    let base = scrape(maddr).await.get("baton_watch_streams");
    let client = Client::connect_with(
        [h.client_addr.to_string()],
        client_options(Duration::from_secs(20)),
    )
    .await
    .unwrap();
    for i in 0..PER_MULTI {
        client
            .create(&node(i), Vec::new(), CreateOptions::persistent())
            .await
            .unwrap();
    }
    // A raw watch stream whose responses are never read.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", h.client_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut wc = v1::watches_client::WatchesClient::new(channel);
    tx.send(v1::WatchRequest {
        request: Some(v1::watch_request::Request::Add(v1::AddWatch {
            path: "/".into(),
            kind: WatchKind::PersistentRecursive as i32,
            start_zxid: None,
            request_id: 1,
        })),
    })
    .await
    .unwrap();
    let stalled = wc
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap();
    // A reader that keeps up.
    let mut reader = client.watcher().await.unwrap();
    reader
        .add("/", WatchKind::PersistentRecursive, None)
        .await
        .unwrap();
    let counting = tokio::spawn(async move {
        let mut n = 0usize;
        let mut last = 0u64;
        while n < EVENTS {
            match tokio::time::timeout(Duration::from_secs(60), reader.next_event()).await {
                Ok(Ok(Some((_, ev)))) => {
                    assert!(ev.zxid >= last, "events in zxid order");
                    last = ev.zxid;
                    n += 1;
                }
                other => panic!("the reading watcher stopped after {n} events: {other:?}"),
            }
        }
        n
    });
    for round in 0..EVENTS / PER_MULTI {
        let ops: Vec<v1::Op> = (0..PER_MULTI)
            .map(|i| v1::Op {
                op: Some(v1::op::Op::SetData(v1::SetDataRequest {
                    path: node(i),
                    data: round.to_le_bytes().to_vec(),
                    version: -1,
                })),
            })
            .collect();
        client.multi(ops).await.unwrap();
    }
    assert_eq!(
        counting.await.unwrap(),
        EVENTS,
        "the reader got every event"
    );
    let s = scrape(maddr).await;
    assert!(
        s.get("baton_watch_slow_streams_closed_total") >= 1.0,
        "the stalled stream was closed"
    );
    // The stalled stream left the hub (the reader's closed when its task ended).
    let gone = poll_until(Duration::from_secs(5), || async {
        (scrape(maddr).await.get("baton_watch_streams") == base).then_some(())
    })
    .await;
    assert!(gone.is_some(), "no watch stream left behind");
    drop(stalled);
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_listings_are_paged_filtered_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let h = single(dir.path(), |_| {}).await;
    let client = Client::connect_with(
        [h.client_addr.to_string()],
        client_options(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    let mut a = client.watcher().await.unwrap();
    for i in 0..5 {
        a.add(&format!("/apps/{i}"), WatchKind::Exists, None)
            .await
            .unwrap();
    }
    let mut b = client.watcher().await.unwrap();
    b.add("/other", WatchKind::PersistentRecursive, None)
        .await
        .unwrap();

    // Pages of two, in watch-id order, filtered by prefix.
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = client.watches("/apps/", 2, after).await.unwrap();
        assert!(page.watches.len() <= 2);
        assert_eq!(page.total, 6, "the total counts every path");
        assert_eq!(page.by_kind.get("exists"), Some(&5));
        assert_eq!(page.by_kind.get("recursive"), Some(&1));
        for w in &page.watches {
            assert!(w.path.starts_with("/apps/"));
            assert_eq!(w.kind, "exists");
            assert!(w.client.starts_with("127.0.0.1:"), "{}", w.client);
            assert!(w.watch_id > after, "ids increase");
            after = w.watch_id;
            seen.push(w.path.clone());
        }
        if !page.more {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    seen.sort();
    assert_eq!(
        seen,
        (0..5).map(|i| format!("/apps/{i}")).collect::<Vec<_>>()
    );

    // A burst of listings beyond the bound is refused at once, retryably.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", h.client_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut raw = v1::cluster_client::ClusterClient::new(channel);
    let mut refused = 0;
    for _ in 0..20 {
        match raw.watches(v1::WatchesRequest::default()).await {
            Ok(_) => {}
            Err(s) => {
                assert_eq!(s.code(), tonic::Code::ResourceExhausted);
                assert_eq!(status_reason(&s), Some(baton::error::Reason::Overloaded));
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "20 listings at once exceed the bound");
    // The client library waits and gets its page.
    let page = client.watches("", 0, 0).await.expect("retried");
    assert_eq!(page.watches.len(), 6);
    drop((a, b));
    h.stop().await.unwrap();
}
