//! Authentication, the method gate and ZooKeeper-style ACLs, end to end. Each regression
//! test is named after the class of vulnerability it guards.

use std::time::Duration;

use baton::auth::{Gate, GATES};
use baton::client::{Acl, AclId, Client, ClientError, CreateOptions, MultiOps, WatchKind};
use baton::config::Config;
use baton::tree::acl::{self, digest_id};

use crate::common::harness::{ClusterOptions, TestCluster};

const SUPER: (&str, &str) = ("root", "s3cret-root");

fn open_auth(cfg: &mut Config) {
    cfg.allow_plaintext_credentials = true;
    cfg.super_digests = vec![digest_id(SUPER.0, SUPER.1)];
}

fn require_auth(cfg: &mut Config) {
    open_auth(cfg);
    cfg.require_auth = true;
}

async fn start(size: u64, tweak: fn(&mut Config)) -> TestCluster {
    TestCluster::start_with(ClusterOptions {
        size,
        tweak,
        ..ClusterOptions::default()
    })
    .await
}

fn entry(perms: u32, user: &str) -> Acl {
    Acl {
        perms,
        id: AclId::new("digest", &digest_id(user, "pw")),
    }
}

fn denied(r: Result<impl std::fmt::Debug, ClientError>, what: &str) {
    match r {
        Err(e) if e.is(baton::client::Reason::NoAuth) => {}
        other => panic!("{what}: expected NO_AUTH, got {other:?}"),
    }
}

/// The ACL matrix (ZooKeeper's semantics, CVE-2019-0201, and nested-op bypasses such as
/// etcd's CVE-2026-33343): each operation against a node whose ACL lacks only the needed
/// permission is refused, and allowed with only that permission; every Multi sub-op is
/// checked on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acl_matrix_missing_permission_bypass() {
    let c = start(1, open_auth).await;
    let base = c.client(1).await;
    let root = base.with_digest(SUPER.0, SUPER.1).expect("root");
    let alice = base.with_digest("alice", "pw").expect("alice");
    // The node under test, `/m/n`, and its parent `/m`: the parent's ACL governs children.
    let set = |path: &'static str, perms: u32| {
        let root = root.clone();
        async move {
            root.set_acl(path, &[entry(perms, "alice")], -1)
                .await
                .expect("set acl");
        }
    };
    let reset = || async {
        let _ = root.delete("/m/n/child", -1).await;
        let _ = root.delete("/m/new", -1).await;
        let _ = root
            .create("/m/n/child", "", CreateOptions::persistent())
            .await;
    };
    root.create("/m", "", CreateOptions::persistent())
        .await
        .expect("m");
    root.create("/m/n", "data", CreateOptions::persistent())
        .await
        .expect("n");
    root.set_acl("/m/n", &acl::open_acl(), -1)
        .await
        .expect("open n");
    reset().await;
    for (bit, name) in [
        (acl::READ, "READ"),
        (acl::WRITE, "WRITE"),
        (acl::CREATE, "CREATE"),
        (acl::DELETE, "DELETE"),
        (acl::ADMIN, "ADMIN"),
    ] {
        // Everything but `bit`, then only `bit`.
        for (perms, has) in [(acl::ALL & !bit, false), (bit, true)] {
            let what = |op: &str| format!("{op} with {} ({name} {has})", acl::perms_letters(perms));
            set("/m/n", perms).await;
            set("/m", perms).await;
            reset().await;
            let check = |r: Result<(), String>, needs: u32, op: &str| {
                if needs != bit {
                    return;
                }
                match (has, r) {
                    (true, Ok(())) => {}
                    (false, Err(reason)) if reason == "NO_AUTH" => {}
                    (_, r) => panic!("{}: got {r:?}", what(op)),
                }
            };
            let reason = |r: Result<(), ClientError>| {
                r.map_err(|e| e.reason().map_or_else(|| e.to_string(), |r| r.to_string()))
            };
            check(
                reason(alice.get_data("/m/n").await.map(|_| ())),
                acl::READ,
                "get_data",
            );
            check(
                reason(
                    alice
                        .get_children("/m/n", Default::default())
                        .await
                        .map(|_| ()),
                ),
                acl::READ,
                "get_children",
            );
            check(
                reason(alice.exists("/m/n").await.map(|_| ())),
                acl::READ,
                "exists",
            );
            check(
                reason(alice.set_data("/m/n", "x", -1).await.map(|_| ())),
                acl::WRITE,
                "set_data",
            );
            check(
                reason(
                    alice
                        .create("/m/new", "", CreateOptions::persistent())
                        .await
                        .map(|_| ()),
                ),
                acl::CREATE,
                "create (parent)",
            );
            check(
                reason(alice.delete("/m/n/child", -1).await.map(|_| ())),
                acl::DELETE,
                "delete (parent of /m/n/child is /m/n)",
            );
            check(
                reason(
                    alice
                        .set_acl("/m/n", &[entry(perms, "alice")], -1)
                        .await
                        .map(|_| ()),
                ),
                acl::ADMIN,
                "set_acl",
            );
            // Multi: each sub-op alone.
            reset().await;
            let multi = |ops: MultiOps| {
                let alice = alice.clone();
                async move {
                    let r = alice
                        .multi(ops.into_ops())
                        .await
                        .map_err(|e| e.to_string())?;
                    if r.succeeded {
                        return Ok(());
                    }
                    let failed = &r.results[r.failed_op_index as usize];
                    match &failed.result {
                        Some(baton::proto::v1::op_result::Result::Error(e)) => {
                            Err(e.reason.clone())
                        }
                        other => panic!("failed without an error: {other:?}"),
                    }
                }
            };
            check(
                multi(MultiOps::new().check("/m/n", -1)).await,
                acl::READ,
                "multi check",
            );
            check(
                multi(MultiOps::new().set_data("/m/n", "y", -1)).await,
                acl::WRITE,
                "multi set_data",
            );
            check(
                multi(MultiOps::new().create("/m/new", "", CreateOptions::persistent())).await,
                acl::CREATE,
                "multi create",
            );
            check(
                multi(MultiOps::new().delete("/m/n/child", -1)).await,
                acl::DELETE,
                "multi delete",
            );
            // Watch registration needs READ.
            let mut w = alice.watcher().await.expect("watcher");
            check(
                reason(w.add("/m/n", WatchKind::Data, None).await.map(|_| ())),
                acl::READ,
                "watch",
            );
        }
    }
    // exists on a missing node needs nothing; get_acl needs READ or ADMIN, and only ADMIN
    // sees digest hashes.
    root.set_acl("/m/n", &[entry(acl::READ, "alice")], -1)
        .await
        .expect("read only");
    assert!(alice.exists("/m/n/none").await.expect("missing").is_none());
    let (shown, _) = alice.get_acl("/m/n").await.expect("READ may get the ACL");
    assert_eq!(shown[0].id.id, "alice:x", "masked without ADMIN: {shown:?}");
    root.set_acl("/m/n", &[entry(acl::ADMIN, "alice")], -1)
        .await
        .expect("admin only");
    let (shown, stat) = alice.get_acl("/m/n").await.expect("ADMIN may get the ACL");
    assert_eq!(
        shown,
        vec![entry(acl::ADMIN, "alice")],
        "unmasked with ADMIN"
    );
    let e = alice
        .set_acl("/m/n", &[entry(acl::ALL, "alice")], stat.aversion + 5)
        .await
        .expect_err("aversion");
    assert!(e.is(baton::client::Reason::BadVersion), "{e}");
    root.set_acl("/m/n", &[entry(acl::WRITE, "bob")], -1)
        .await
        .expect("neither");
    denied(alice.get_acl("/m/n").await, "get_acl without READ or ADMIN");
    // The auth scheme stands for the caller's ids; with none it is invalid.
    let auth_entry = Acl {
        perms: acl::ALL,
        id: AclId::new("auth", ""),
    };
    alice
        .create(
            "/m/mine",
            "",
            CreateOptions::persistent().with_acl(vec![auth_entry.clone()]),
        )
        .await
        .map(|_| ())
        .or_else(|e| {
            if e.is(baton::client::Reason::NoAuth) {
                Ok(())
            } else {
                Err(e)
            }
        })
        .expect("create with auth");
    let e = base
        .create(
            "/open-auth",
            "",
            CreateOptions::persistent().with_acl(vec![auth_entry]),
        )
        .await
        .expect_err("anonymous auth entry");
    assert!(e.is(baton::client::Reason::InvalidAcl), "{e}");
    // ACLs are not inherited: a world-readable child of a closed parent is readable.
    root.create(
        "/closed",
        "",
        CreateOptions::persistent().with_acl(vec![entry(acl::ALL, "nobody")]),
    )
    .await
    .expect("closed");
    root.create("/closed/public", "p", CreateOptions::persistent())
        .await
        .expect("public child");
    assert_eq!(
        base.get_data("/closed/public").await.expect("readable").0,
        b"p"
    );
    denied(base.get_data("/closed").await, "closed parent");
    // Listing with stats shows each child's metadata: READ on every child listed.
    root.create(
        "/closed-kids",
        "",
        CreateOptions::persistent().with_acl(vec![Acl {
            perms: acl::READ,
            id: AclId::new("world", "anyone"),
        }]),
    )
    .await
    .expect("kids");
    root.create(
        "/closed-kids/secret",
        "",
        CreateOptions::persistent().with_acl(vec![entry(acl::ALL, "nobody")]),
    )
    .await
    .expect("secret kid");
    assert_eq!(
        base.get_all_children("/closed-kids").await.expect("names"),
        vec!["secret".to_string()]
    );
    let with_stats = baton::client::ChildrenOptions {
        include_stats: true,
        ..Default::default()
    };
    denied(
        base.get_children("/closed-kids", with_stats).await,
        "child stats without READ on the child",
    );
    // Paths are checked before any ACL (etcd's GHSA-xg4h-6gfc-h4m8 class: authorise the form
    // executed): non-canonical spellings of a readable path are refused as paths.
    for bad in [
        "/closed/../closed/public",
        "//closed/public",
        "/closed/public/",
        "/closed/./public",
    ] {
        let e = base.get_data(bad).await.expect_err(bad);
        assert!(e.is(baton::client::Reason::InvalidPath), "{bad}: {e}");
    }
    c.wait_converged(Duration::from_secs(20)).await;
}

/// Unauthenticated or unauthorised access to a forgotten method (etcd's CVE-2026-33413):
/// every method the client port serves, found by reflection, has a gate in the table; under
/// `--require-auth` each is refused to an anonymous caller except health checks and WhoAmI;
/// each admin method is refused to an authenticated caller without ADMIN on `/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unauthenticated_method_gate_bypass() {
    let c = start(1, require_auth).await;
    let endpoint = c.endpoint(1);
    let base = c.client(1).await;
    let root = base.with_digest(SUPER.0, SUPER.1).expect("root");
    let alice = base.with_digest("alice", "pw").expect("alice");
    let methods = reflected_methods(&root).await;
    assert!(
        methods.len() > 30,
        "reflection lists the methods: {methods:?}"
    );
    for m in &methods {
        assert!(
            GATES.iter().any(|(g, _)| g == m),
            "{m} is served but has no gate in baton::auth::GATES"
        );
    }
    for (m, _) in GATES {
        assert!(
            methods.contains(&m.to_string())
                || m.starts_with("/grpc.health")
                || m.starts_with("/grpc.reflection"),
            "{m} is gated but not served"
        );
    }
    // Lock the root: only the super principal administers.
    root.set_acl("/", &[entry(acl::READ | acl::CREATE, "alice")], -1)
        .await
        .expect("lock the root");
    for (m, gate) in GATES {
        let anon = raw_call(&endpoint, m, None).await;
        let as_alice = raw_call(&endpoint, m, Some("digest alice:pw")).await;
        match gate {
            Gate::Open => {
                assert_ne!(anon, tonic::Code::Unauthenticated, "{m} is open");
            }
            Gate::Data => {
                assert_eq!(anon, tonic::Code::Unauthenticated, "{m} anonymous");
                assert_ne!(as_alice, tonic::Code::Unauthenticated, "{m} as alice");
                assert_ne!(as_alice, tonic::Code::PermissionDenied, "{m} as alice");
            }
            Gate::Admin => {
                assert_eq!(anon, tonic::Code::Unauthenticated, "{m} anonymous");
                assert_eq!(as_alice, tonic::Code::PermissionDenied, "{m} as non-admin");
                let as_root = raw_call(&endpoint, m, Some("digest root:s3cret-root")).await;
                assert_ne!(as_root, tonic::Code::PermissionDenied, "{m} as root");
            }
        }
    }
    let me = alice.who_am_i().await.expect("whoami");
    assert_eq!(me.ids, vec![format!("digest:{}", digest_id("alice", "pw"))]);
    assert!(!me.superuser);
    assert!(root.who_am_i().await.expect("whoami").superuser);
    let anon_me = base.who_am_i().await.expect("whoami is open");
    assert!(anon_me.ids.is_empty());
    // Wrong super password: refused, not downgraded to an ordinary id.
    let e = base
        .with_digest("root", "guess")
        .expect("client")
        .get_data("/")
        .await
        .expect_err("wrong super password");
    assert!(e.is(baton::client::Reason::BadCredentials), "{e}");
}

/// Every method path of the services reflection lists.
async fn reflected_methods(client: &Client) -> Vec<String> {
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut services = Vec::new();
    for r in reflect(client, MessageRequest::ListServices(String::new())).await {
        if let MessageResponse::ListServicesResponse(l) = r {
            services.extend(l.service.into_iter().map(|s| s.name));
        }
    }
    let mut methods = Vec::new();
    for svc in services {
        for r in reflect(client, MessageRequest::FileContainingSymbol(svc.clone())).await {
            let MessageResponse::FileDescriptorResponse(f) = r else {
                continue;
            };
            for bytes in f.file_descriptor_proto {
                let fd: prost_types::FileDescriptorProto =
                    prost::Message::decode(bytes.as_slice()).expect("descriptor");
                let package = fd.package().to_string();
                for sd in fd.service {
                    let full = format!("{package}.{}", sd.name());
                    if full == svc {
                        methods.extend(sd.method.iter().map(|m| format!("/{full}/{}", m.name())));
                    }
                }
            }
        }
    }
    methods.sort();
    methods.dedup();
    methods
}

/// One reflection request as the super principal; the responses.
async fn reflect(
    client: &Client,
    ask: tonic_reflection::pb::v1::server_reflection_request::MessageRequest,
) -> Vec<tonic_reflection::pb::v1::server_reflection_response::MessageResponse> {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut req = tonic::Request::new(futures::stream::iter(vec![ServerReflectionRequest {
        host: String::new(),
        message_request: Some(ask),
    }]));
    req.metadata_mut().insert(
        "authorization",
        "digest root:s3cret-root".parse().expect("h"),
    );
    let mut s = ServerReflectionClient::new(client.channel())
        .server_reflection_info(req)
        .await
        .expect("reflection")
        .into_inner();
    let mut out = Vec::new();
    while let Some(r) = s.message().await.expect("reflection message") {
        out.extend(r.message_response);
    }
    out
}

/// Calls `method` with an empty message and returns the status code (OK if it answered).
async fn raw_call(endpoint: &str, method: &str, auth: Option<&str>) -> tonic::Code {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let mut req = tonic::Request::new(());
    req.set_timeout(Duration::from_secs(2));
    if let Some(a) = auth {
        req.metadata_mut()
            .insert("authorization", a.parse().expect("header"));
    }
    let path =
        http::uri::PathAndQuery::from_maybe_shared(method.to_owned().into_bytes()).expect("path");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    // Streams (watch, keep-alive, health watch) need not end: a call still open after its
    // deadline passed every gate.
    match tokio::time::timeout(Duration::from_secs(2), grpc.unary(req, path, codec)).await {
        Ok(Ok(_)) => tonic::Code::Ok,
        Ok(Err(s)) => s.code(),
        Err(_) => tonic::Code::DeadlineExceeded,
    }
}

/// Recursive watches leaking unreadable children (ZooKeeper's CVE-2024-23944): a recursive
/// watch on `/w` with READ on `/w` receives no event of `/w/secret`, which it may not read,
/// and every event of `/w/public`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recursive_watch_event_leak() {
    let c = start(1, open_auth).await;
    let base = c.client(1).await;
    let root = base.with_digest(SUPER.0, SUPER.1).expect("root");
    let alice = base.with_digest("alice", "pw").expect("alice");
    root.create(
        "/w",
        "",
        CreateOptions::persistent().with_acl(vec![entry(acl::READ, "alice")]),
    )
    .await
    .expect("w");
    let mut w = alice.watcher().await.expect("watcher");
    w.add("/w", WatchKind::PersistentRecursive, None)
        .await
        .expect("alice may watch /w");
    let secret = vec![entry(acl::ALL, "bob")];
    root.create(
        "/w/secret",
        "s",
        CreateOptions::persistent().with_acl(secret),
    )
    .await
    .expect("secret");
    root.set_data("/w/secret", "s2", -1)
        .await
        .expect("set secret");
    root.create("/w/public", "p", CreateOptions::persistent())
        .await
        .expect("public");
    root.set_data("/w/public", "p2", -1)
        .await
        .expect("set public");
    root.delete("/w/secret", -1).await.expect("delete secret");
    root.delete("/w/public", -1).await.expect("delete public");
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let ev = tokio::time::timeout(Duration::from_secs(5), w.next_event())
            .await
            .expect("events in time")
            .expect("stream")
            .expect("open");
        seen.push(ev.1.path.clone());
    }
    // Nothing more arrives (the secret's three events were held back).
    let more = tokio::time::timeout(Duration::from_millis(500), w.next_event()).await;
    assert!(more.is_err(), "unexpected event: {more:?}");
    assert!(seen.iter().all(|p| p == "/w/public"), "{seen:?}");
}

/// Time-of-check to time-of-use on a revoke (what etcd's apply-time permission check
/// prevents): while one member revokes alice's WRITE, alice writes through another member;
/// no write ordered after the revoke succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoke_race_toctou() {
    let c = start(3, open_auth).await;
    let ids = c.ids();
    let root = c
        .client(ids[0])
        .await
        .with_digest(SUPER.0, SUPER.1)
        .expect("root");
    let alice = c
        .client(ids[1])
        .await
        .with_digest("alice", "pw")
        .expect("alice");
    root.create("/r", "", CreateOptions::persistent())
        .await
        .expect("r");
    let root_channel = c.client(ids[0]).await.channel();
    let mut after_revoke = 0;
    let mut writes = 0;
    for round in 0..60u64 {
        root.set_acl("/r", &[entry(acl::ALL, "alice")], -1)
            .await
            .expect("grant");
        let writer = {
            let alice = alice.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..20 {
                    match alice.set_data("/r", format!("{round}-{i}"), -1).await {
                        Ok(stat) => acked.push(stat.mzxid),
                        Err(e) if e.is(baton::client::Reason::NoAuth) => break,
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
                acked
            })
        };
        tokio::time::sleep(Duration::from_millis(round % 5)).await;
        let revoke_zxid = revoke(&root_channel, "/r", entry(acl::READ, "alice")).await;
        let acked = writer.await.expect("writer");
        writes += acked.len();
        after_revoke += acked.iter().filter(|z| **z > revoke_zxid).count();
        // The node's last change is the last acknowledged write (none was lost either).
        let (_, stat) = root.get_data("/r").await.expect("read");
        if let Some(last) = acked.last() {
            assert_eq!(stat.mzxid, *last, "round {round}");
        }
    }
    assert_eq!(after_revoke, 0);
    assert!(writes > 0, "some writes were acknowledged");
    c.wait_converged(Duration::from_secs(20)).await;
}

/// Sets `/r`'s ACL to `to` as the super principal; returns the zxid of the change.
async fn revoke(channel: &tonic::transport::Channel, path: &str, to: Acl) -> u64 {
    let mut zn = baton::proto::v1::z_nodes_client::ZNodesClient::new(channel.clone());
    let mut req = tonic::Request::new(baton::proto::v1::SetAclRequest {
        path: path.to_string(),
        acl: baton::proto::acl_to_wire(&[to]),
        version: -1,
    });
    req.metadata_mut().insert(
        "authorization",
        "digest root:s3cret-root".parse().expect("h"),
    );
    let resp = zn.set_acl(req).await.expect("revoke").into_inner();
    resp.header.expect("header").zxid
}

/// Request-id hijacking: the exactly-once table is keyed by client id, so a caller who sends
/// another caller's client id must neither make that caller's writes stale nor be answered
/// with its remembered results. Ids are bound to the caller's credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_id_hijack_across_callers() {
    let c = start(1, open_auth).await;
    let channel = c.client(1).await.channel();
    let create = |path: &str, who: &str, seq: u64| {
        let mut zn = baton::proto::v1::z_nodes_client::ZNodesClient::new(channel.clone());
        let mut req = tonic::Request::new(baton::proto::v1::CreateRequest {
            path: path.to_string(),
            ..Default::default()
        });
        let md = req.metadata_mut();
        md.insert(
            "authorization",
            format!("digest {who}:pw").parse().expect("h"),
        );
        md.insert(baton::api::CLIENT_ID_HEADER, "777".parse().expect("h"));
        md.insert(baton::api::SEQ_HEADER, seq.to_string().parse().expect("h"));
        md.insert(
            baton::api::FIRST_INCOMPLETE_HEADER,
            seq.to_string().parse().expect("h"),
        );
        async move { zn.create(req).await.map(|r| r.into_inner().path) }
    };
    // Bob claims alice's client id with a high sequence number...
    create("/hijack-b", "bob", 1000)
        .await
        .expect("bob's own write");
    // ...which does not make alice's first write stale.
    let alice = create("/hijack-a", "alice", 1)
        .await
        .expect("alice's write applies");
    assert_eq!(alice, "/hijack-a");
    // Bob replaying alice's request id gets no remembered answer of hers.
    let replay = create("/hijack-a", "alice-replayed-by-bob", 1).await;
    match replay {
        Err(s) => assert!(
            s.code() == tonic::Code::FailedPrecondition || s.code() == tonic::Code::AlreadyExists,
            "{s:?}"
        ),
        Ok(p) => panic!("a replay by another caller was answered with {p}"),
    }
    let root = c.client(1).await;
    assert!(root.exists("/hijack-a").await.expect("read").is_some());
}
