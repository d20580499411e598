//! TLS on the client and peer ports, with certificates made by the tests (rcgen): clients over
//! TLS, client certificates required by a client CA, mutual TLS between members with the
//! member id named in each certificate, a handshake flood, plaintext against a TLS port, bad
//! files at start, and (a real `batond` process) reload on SIGHUP.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use baton::client::{Client, ClientOptions, ClientTls, CreateOptions};
use baton::config::Config;
use baton::proto::raft as pb;
use baton::server::{ServerHandle, StartOptions};
use baton::tls::{member_uri, TlsFiles};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, SanType,
};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::common::batond::{free_port, Batond, Signal};

/// A certificate authority made for one test.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, in PEM.
#[derive(Clone)]
struct Pair {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        Ca {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `names` (DNS names or IP addresses), naming `member` if given.
    fn issue(&self, cn: &str, names: &[&str], member: Option<u64>) -> Pair {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if let Some(id) = member {
            p.subject_alt_names
                .push(SanType::URI(member_uri(id).try_into().unwrap()));
        }
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Pair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A member's certificate: served on both ports of 127.0.0.1, naming member `id`.
    fn member(&self, id: u64) -> Pair {
        self.issue(
            &format!("member-{id}"),
            &["127.0.0.1", "localhost"],
            Some(id),
        )
    }

    /// A client's certificate (names no member).
    fn client(&self) -> Pair {
        self.issue("client", &["client"], None)
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Writes a member's files and returns them as the server's TLS settings.
fn member_files(dir: &Path, ca: &Ca, id: u64, client_ca: Option<&Ca>) -> TlsFiles {
    let pair = ca.member(id);
    TlsFiles {
        cert: write(dir, &format!("m{id}.crt"), &pair.cert),
        key: write(dir, &format!("m{id}.key"), &pair.key),
        peer_ca: write(dir, "ca.crt", &ca.pem()),
        client_ca: client_ca.map(|c| write(dir, "client-ca.crt", &c.pem())),
        handshake_timeout: Duration::from_secs(2),
    }
}

fn tls_options(ca: &Ca, identity: Option<&Pair>) -> ClientOptions {
    let mut tls = ClientTls::new(ca.pem());
    if let Some(p) = identity {
        tls = tls.identity(p.cert.clone(), p.key.clone());
    }
    ClientOptions {
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        tls: Some(tls),
        ..ClientOptions::default()
    }
}

/// Members started in this process on 127.0.0.1.
struct Members {
    handles: Vec<ServerHandle>,
    _dir: tempfile::TempDir,
}

impl Members {
    /// Starts `n` members over TLS (all certificates from `ca`; client certificates required
    /// from `client_ca` if given) and waits for a leader.
    async fn start(n: u64, ca: &Ca, client_ca: Option<&Ca>) -> Members {
        Members::start_with(n, ca, client_ca, |_| {}).await
    }

    /// As [`Members::start`], with last changes to each member's configuration.
    async fn start_with(
        n: u64,
        ca: &Ca,
        client_ca: Option<&Ca>,
        tweak: fn(&mut Config),
    ) -> Members {
        let dir = tempfile::tempdir().unwrap();
        let mut listeners = Vec::new();
        for _ in 0..n {
            let c = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let p = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listeners.push((c, p));
        }
        let initial: BTreeMap<u64, String> = listeners
            .iter()
            .enumerate()
            .map(|(i, (_, p))| (i as u64 + 1, p.local_addr().unwrap().to_string()))
            .collect();
        let mut handles = Vec::new();
        for (i, (c, p)) in listeners.into_iter().enumerate() {
            let id = i as u64 + 1;
            let mut cfg = Config::for_test(dir.path().join(format!("d{id}")));
            cfg.id = id;
            cfg.initial_members = if n > 1 {
                initial.clone()
            } else {
                BTreeMap::new()
            };
            cfg.metrics_addr = None;
            cfg.tls = Some(member_files(dir.path(), ca, id, client_ca));
            tweak(&mut cfg);
            let h = baton::server::start_with(
                cfg,
                StartOptions {
                    client_listener: Some(c),
                    peer_listener: Some(p),
                    ..StartOptions::default()
                },
            )
            .await
            .unwrap();
            handles.push(h);
        }
        let m = Members { handles, _dir: dir };
        m.wait_for_leader().await;
        m
    }

    async fn wait_for_leader(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let leaders: Vec<_> = self
                .handles
                .iter()
                .map(|h| h.raft.metrics().borrow().current_leader)
                .collect();
            if leaders[0].is_some() && leaders.iter().all(|l| *l == leaders[0]) {
                return;
            }
            assert!(Instant::now() < deadline, "no leader over TLS: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn client_addr(&self, i: usize) -> SocketAddr {
        self.handles[i].client_addr
    }

    fn peer_addr(&self, i: usize) -> SocketAddr {
        self.handles[i].peer_addr
    }

    async fn stop(self) {
        for h in self.handles {
            let _ = h.stop().await;
        }
    }
}

/// A raw peer-port client presenting `identity` and claiming to be `claimed` in the
/// `baton-member-id` header.
async fn peer_client(
    addr: SocketAddr,
    ca: &Ca,
    identity: &Pair,
) -> pb::raft_client::RaftClient<tonic::transport::Channel> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .identity(Identity::from_pem(&identity.cert, &identity.key));
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    pb::raft_client::RaftClient::new(channel)
}

fn claiming<T>(msg: T, claimed: u64) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("baton-member-id", claimed.to_string().parse().unwrap());
    r
}

fn update_member(id: u64, peer_addr: &str) -> pb::UpdateMemberRequest {
    pb::UpdateMemberRequest {
        member: Some(pb::MemberNode {
            id,
            peer_addr: peer_addr.to_string(),
            client_addr: String::new(),
        }),
    }
}

fn vote_from(id: u64) -> pb::VoteRequest {
    pb::VoteRequest {
        vote: Some(pb::Vote {
            leader_id: Some(pb::LeaderId {
                term: 0,
                node_id: id,
            }),
            committed: false,
        }),
        last_log_id: None,
    }
}

fn denied(r: Result<impl std::fmt::Debug, tonic::Status>, what: &str) -> tonic::Status {
    match r {
        Err(s) if s.code() == tonic::Code::PermissionDenied => s,
        other => panic!("{what}: expected PERMISSION_DENIED, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_cluster_replicates_and_serves_clients_with_certificates() {
    let ca = Ca::new("baton test CA");
    let m = Members::start(3, &ca, Some(&ca)).await;
    let me = ca.client();
    let a = Client::connect_with([m.client_addr(0).to_string()], tls_options(&ca, Some(&me)))
        .await
        .expect("client over TLS with a certificate");
    a.create("/tls", "over tls", CreateOptions::default())
        .await
        .unwrap();
    // Written through member 1, read through member 3: replicated over mutual TLS.
    let c = Client::connect_with(
        [format!("https://{}", m.client_addr(2))],
        tls_options(&ca, Some(&me)),
    )
    .await
    .unwrap();
    assert_eq!(c.get_data("/tls").await.unwrap().0, b"over tls");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_without_certificate_is_refused_when_a_client_ca_is_set() {
    let ca = Ca::new("baton test CA");
    let m = Members::start(1, &ca, Some(&ca)).await;
    let r = Client::connect_with([m.client_addr(0).to_string()], tls_options(&ca, None)).await;
    let err = match r {
        Ok(c) => c
            .create("/x", "", CreateOptions::default())
            .await
            .expect_err("a client without a certificate was served"),
        Err(e) => e,
    };
    assert!(!err.to_string().is_empty());
    // The same member serves a client that has one.
    let ok = Client::connect_with(
        [m.client_addr(0).to_string()],
        tls_options(&ca, Some(&ca.client())),
    )
    .await
    .unwrap();
    ok.create("/x", "", CreateOptions::default()).await.unwrap();
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_certificate_from_another_ca_is_refused() {
    let ca = Ca::new("baton test CA");
    let other = Ca::new("another CA");
    let m = Members::start(1, &ca, Some(&ca)).await;
    let r = Client::connect_with(
        [m.client_addr(0).to_string()],
        tls_options(&ca, Some(&other.client())),
    )
    .await;
    let refused = match r {
        Ok(c) => c.create("/x", "", CreateOptions::default()).await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "a certificate from an unknown CA was accepted");
    // A client that trusts another CA refuses the member's certificate.
    let r = Client::connect_with(
        [m.client_addr(0).to_string()],
        tls_options(&other, Some(&ca.client())),
    )
    .await;
    let err = r.expect_err("the client trusted a member certificate from an unknown CA");
    assert!(err.to_string().contains("UNAVAILABLE"), "{err}");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peer_impersonation_member_certificate_naming_another_member_is_refused() {
    let ca = Ca::new("baton test CA");
    let m = Members::start(3, &ca, None).await;
    // Member 3's (valid) certificate, used to speak for member 1.
    let three = ca.member(3);
    let mut c = peer_client(m.peer_addr(0), &ca, &three).await;
    // The cluster id (not a secret: a member names its own when it refuses a request without
    // it), so that requests get past the cluster check to the checks of their bodies.
    let mismatch = c
        .vote(claiming(vote_from(3), 3))
        .await
        .expect_err("a vote without the cluster id was served");
    let cluster_id = mismatch
        .message()
        .split("belongs to cluster ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no cluster id in {mismatch:?}"))
        .to_string();
    fn stamped<T>(msg: T, claimed: u64, cluster_id: &str) -> tonic::Request<T> {
        let mut r = claiming(msg, claimed);
        r.metadata_mut()
            .insert("baton-cluster-id", cluster_id.parse().unwrap());
        r
    }
    let claiming = |msg, claimed| stamped(msg, claimed, &cluster_id);
    let voting = |msg, claimed| stamped(msg, claimed, &cluster_id);
    let s = denied(
        c.update_member(claiming(update_member(1, "10.9.9.9:1"), 1))
            .await,
        "header claims member 1",
    );
    assert!(s.message().contains("member 3"), "{}", s.message());
    // The header tells the truth, the body names member 1: UpdateMember would move member
    // 1's address, a Vote would be counted as member 1's.
    denied(
        c.update_member(claiming(update_member(1, "10.9.9.9:1"), 3))
            .await,
        "UpdateMember body names member 1",
    );
    denied(
        c.vote(voting(vote_from(1), 3)).await,
        "Vote body names member 1",
    );
    // Control: the same certificate speaking for itself is served (a vote of term 0, which
    // changes nothing).
    let own = c
        .vote(voting(vote_from(3), 3))
        .await
        .expect("member 3 speaking for itself was refused");
    assert!(!own.into_inner().vote_granted);
    // The cluster still works and member 1's address was not moved.
    let client = Client::connect_with([m.client_addr(1).to_string()], tls_options(&ca, None))
        .await
        .unwrap();
    client
        .create("/still", "ok", CreateOptions::default())
        .await
        .unwrap();
    let members = client.members().await.unwrap();
    assert!(
        !format!("{members:?}").contains("10.9.9.9"),
        "member 1's address was changed: {members:?}"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_cert_cannot_join_as_member() {
    let ca = Ca::new("baton test CA");
    let m = Members::start(1, &ca, Some(&ca)).await;
    // Signed by the very CA that signs member certificates, but naming no member.
    let client = ca.client();
    let mut c = peer_client(m.peer_addr(0), &ca, &client).await;
    let s = denied(
        c.vote(claiming(vote_from(7), 7)).await,
        "client certificate",
    );
    assert!(s.message().contains("names no member"), "{}", s.message());
    denied(
        c.update_member(claiming(update_member(1, "10.9.9.9:1"), 1))
            .await,
        "client certificate",
    );
    // No certificate at all: the handshake itself is refused.
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca.pem()));
    let r = async {
        let ch = Endpoint::from_shared(format!("https://{}", m.peer_addr(0)))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        pb::raft_client::RaftClient::new(ch)
            .vote(claiming(vote_from(7), 7))
            .await
    }
    .await;
    assert!(r.is_err(), "a peer without a certificate was served: {r:?}");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_handshake_flood_does_not_stop_clients() {
    let ca = Ca::new("baton test CA");
    let m = Members::start(1, &ca, None).await;
    let addr = m.client_addr(0);
    // 300 connections that never send a byte, and 50 that send half a ClientHello.
    let mut flood = Vec::new();
    for i in 0..350 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if i >= 300 {
            use tokio::io::AsyncWriteExt;
            s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
                .await
                .unwrap();
        }
        flood.push(s);
    }
    let started = Instant::now();
    let c = Client::connect_with([addr.to_string()], tls_options(&ca, None))
        .await
        .expect("a real client connects during the flood");
    for i in 0..20 {
        c.create(&format!("/flood-{i}"), "", CreateOptions::default())
            .await
            .unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a client during the flood took {:?}",
        started.elapsed()
    );
    // The silent connections are closed once the handshake timeout (2 s here) has passed.
    let mut closed = 0;
    for s in flood.iter_mut().take(20) {
        let mut b = [0u8; 16];
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            Ok(Ok(n)) => panic!("the server sent {n} bytes to a silent connection"),
            Err(_) => {}
        }
    }
    assert_eq!(
        closed, 20,
        "silent connections were held past the handshake timeout"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plaintext_client_against_a_tls_port_fails_clearly() {
    let ca = Ca::new("baton test CA");
    let m = Members::start(1, &ca, None).await;
    let options = ClientOptions {
        timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(2),
        ..ClientOptions::default()
    };
    let r = Client::connect_with([m.client_addr(0).to_string()], options).await;
    let err = match r {
        Ok(c) => c
            .create("/x", "", CreateOptions::default())
            .await
            .expect_err("plaintext was served on a TLS port"),
        Err(e) => e,
    };
    let text = err.to_string();
    assert!(
        text.contains("requires TLS") || text.to_lowercase().contains("inadequate security"),
        "the error does not say TLS is required: {text}"
    );
    // And an https:// endpoint without a CA is refused before connecting.
    let r = Client::connect_with(
        [format!("https://{}", m.client_addr(0))],
        ClientOptions::default(),
    )
    .await;
    assert!(r.unwrap_err().to_string().contains("CA certificate"));
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_certificate_files_are_refused_at_start_with_a_clear_error() {
    let ca = Ca::new("baton test CA");
    let dir = tempfile::tempdir().unwrap();
    let start = |tls: TlsFiles, name: &str| {
        let mut cfg = Config::for_test(dir.path().join(name));
        cfg.metrics_addr = None;
        cfg.tls = Some(tls);
        baton::server::start(cfg)
    };
    // A certificate for member 2 given to member 1.
    let mut files = member_files(dir.path(), &ca, 1, None);
    let two = ca.member(2);
    files.cert = write(dir.path(), "two.crt", &two.cert);
    files.key = write(dir.path(), "two.key", &two.key);
    let err = start(files, "a").await.err().expect("started");
    assert!(err.to_string().contains("names member 2"), "{err}");
    // A certificate naming no member.
    let mut files = member_files(dir.path(), &ca, 1, None);
    let c = ca.client();
    files.cert = write(dir.path(), "c.crt", &c.cert);
    files.key = write(dir.path(), "c.key", &c.key);
    let err = start(files, "b").await.err().expect("started");
    assert!(err.to_string().contains("names no member"), "{err}");
    // A key that is not PEM, a missing CA file, a key of another certificate.
    let mut files = member_files(dir.path(), &ca, 1, None);
    files.key = write(dir.path(), "junk.key", "junk");
    let err = start(files, "c").await.err().expect("started");
    assert!(err.to_string().contains("not a PEM private key"), "{err}");
    let mut files = member_files(dir.path(), &ca, 1, None);
    files.peer_ca = dir.path().join("missing.crt");
    let err = start(files, "d").await.err().expect("started");
    assert!(err.to_string().contains("missing.crt"), "{err}");
    let mut files = member_files(dir.path(), &ca, 1, None);
    files.key = write(dir.path(), "other.key", &ca.member(1).key);
    assert!(
        start(files, "e").await.is_err(),
        "a mismatched key was accepted"
    );
}

async fn wait_log(log: &Path, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = std::fs::read_to_string(log).unwrap_or_default();
        if s.contains(text) {
            return;
        }
        assert!(Instant::now() < deadline, "{text:?} not in the log:\n{s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificates_reload_on_sighup_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = Ca::new("old CA");
    let new_ca = Ca::new("new CA");
    let files = member_files(dir.path(), &old_ca, 1, None);
    let port = free_port();
    let log = dir.path().join("batond.log");
    let mut proc = Batond::new(1, port, free_port(), dir.path().join("data"), log.clone());
    proc.metrics_addr = "off".into();
    for (flag, file) in [
        ("--cert", &files.cert),
        ("--key", &files.key),
        ("--peer-ca", &files.peer_ca),
    ] {
        proc.args.push(flag.into());
        proc.args.push(file.into());
    }
    proc.spawn();
    wait_log(&log, "serving").await;
    let endpoint = [format!("127.0.0.1:{port}")];
    let deadline = Instant::now() + Duration::from_secs(15);
    let old = loop {
        match Client::connect_with(endpoint.clone(), tls_options(&old_ca, None)).await {
            Ok(c)
                if c.create("/before", "", CreateOptions::default())
                    .await
                    .is_ok() =>
            {
                break c
            }
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            r => panic!("no TLS client before the reload: {:?}", r.err()),
        }
    };

    // A bad file: logged, the certificate in use kept.
    std::fs::write(&files.cert, "not a certificate").unwrap();
    proc.signal(Signal::HUP);
    wait_log(&log, "certificates not reloaded").await;
    let c = Client::connect_with(endpoint.clone(), tls_options(&old_ca, None))
        .await
        .expect("the old certificate was dropped after a failed reload");
    c.create("/after-bad", "", CreateOptions::default())
        .await
        .unwrap();

    // New files from another CA.
    let pair = new_ca.member(1);
    std::fs::write(&files.cert, &pair.cert).unwrap();
    std::fs::write(&files.key, &pair.key).unwrap();
    std::fs::write(&files.peer_ca, new_ca.pem()).unwrap();
    proc.signal(Signal::HUP);
    wait_log(&log, "certificates reloaded").await;
    // The connection made before the reload goes on.
    old.create("/old-connection", "", CreateOptions::default())
        .await
        .expect("an established connection was dropped by the reload");
    // New handshakes see the new certificate: refused by a client of the old CA only.
    let r = Client::connect_with(endpoint.clone(), tls_options(&old_ca, None)).await;
    assert!(r.is_err(), "a new handshake still got the old certificate");
    let c = Client::connect_with(endpoint.clone(), tls_options(&new_ca, None))
        .await
        .expect("a new handshake did not get the new certificate");
    assert_eq!(c.get_data("/old-connection").await.unwrap().0, b"");
    // The CLI over TLS: --cacert with an https:// endpoint.
    let cli = |ca: &Path| {
        Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["--endpoints", &format!("https://127.0.0.1:{port}")])
            .arg("--cacert")
            .arg(ca)
            .args(["stat", "/old-connection"])
            .env_remove("BATON_ENDPOINTS")
            .env_remove("BATON_CERT")
            .env_remove("BATON_KEY")
            .output()
            .unwrap()
    };
    let new_ca_file = write(dir.path(), "new-ca.crt", &new_ca.pem());
    let old_ca_file = write(dir.path(), "old-ca.crt", &old_ca.pem());
    let ok = cli(&new_ca_file);
    assert!(ok.status.success(), "baton --cacert: {ok:?}");
    let refused = cli(&old_ca_file);
    assert!(
        !refused.status.success(),
        "baton trusted an old certificate: {refused:?}"
    );
    drop(proc);
}

/// Identity from the client certificate (ZooKeeper's x509 scheme) and digest credentials over
/// TLS: a certificate's subject is its x509 id, ACLs naming it admit that client only, a
/// configured super certificate passes every check, and digest credentials are accepted over
/// TLS without the plaintext flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn x509_identity_and_digest_over_tls_authorize_by_acl() {
    let ca = Ca::new("baton test CA");
    let m = Members::start_with(1, &ca, Some(&ca), |cfg| {
        cfg.super_x509 = vec!["CN=admin".into()];
    })
    .await;
    let connect = |cn: &str| {
        let options = tls_options(&ca, Some(&ca.issue(cn, &[cn], None)));
        let addr = m.client_addr(0).to_string();
        async move { Client::connect_with([addr], options).await.unwrap() }
    };
    let app1 = connect("app-1").await;
    let app2 = connect("app-2").await;
    let admin = connect("admin").await;
    let me = app1.who_am_i().await.unwrap();
    assert_eq!(me.ids, vec!["x509:CN=app-1".to_string()]);
    assert!(me.secure && !me.superuser);
    assert!(admin.who_am_i().await.unwrap().superuser);
    let only_app1 = vec![baton::client::Acl {
        perms: baton::tree::acl::ALL,
        id: baton::client::AclId::new("x509", "CN=app-1"),
    }];
    app1.create(
        "/x509",
        "mine",
        CreateOptions::default().with_acl(only_app1.clone()),
    )
    .await
    .unwrap();
    assert_eq!(app1.get_data("/x509").await.unwrap().0, b"mine");
    let e = app2
        .get_data("/x509")
        .await
        .expect_err("another certificate");
    assert!(e.is(baton::client::Reason::NoAuth), "{e}");
    assert_eq!(admin.get_data("/x509").await.unwrap().0, b"mine");
    // Digest credentials over TLS, added to the certificate's id.
    let bob = app2.with_digest("bob", "pw").unwrap();
    let ids = bob.who_am_i().await.unwrap().ids;
    assert_eq!(
        ids,
        vec![
            "x509:CN=app-2".to_string(),
            format!("digest:{}", baton::tree::acl::digest_id("bob", "pw")),
        ]
    );
    let (acl, _) = admin.get_acl("/x509").await.unwrap();
    assert_eq!(acl, only_app1);
    m.stop().await;
}
