//! Authentication and the method gate on the client port.
//!
//! Every request passes through [`AuthLayer`] before its handler runs:
//! 1. **Who**: the caller's ids come from an `authorization: digest user:password` metadata
//!    entry (ZooKeeper's digest scheme; accepted only over TLS unless the member allows
//!    plaintext) and from the client certificate (x509). A digest naming a configured super
//!    principal's user with another password is a failed login. The resulting
//!    [`Caller`] (ids and the super flag, never the password) is put in the request's
//!    extensions for the handler, which checks node ACLs with it or carries it into the
//!    log entry for the apply-time check.
//! 2. **Gate**: one table ([`GATES`]) says what each method needs: nothing (health checks,
//!    `WhoAmI`), an authenticated caller when `--require-auth` is on (data methods, whose
//!    nodes' ACLs are checked by the handler or at apply), or ADMIN on `/` (or a super
//!    principal) for cluster administration. A method missing from the table needs ADMIN.
//! 3. **Throttle**: failed logins are counted per client address: malformed credentials,
//!    credentials over plaintext where refused, a wrong super password, and a request
//!    refused `NO_AUTH` on a node whose ACL names the caller's digest user with another
//!    password (how a guessed password shows; an ordinary denial, for a user the ACL does
//!    not name, is not a failed login). Past [`MAX_FAILURES_PER_SECOND`] in a second,
//!    requests with credentials from that address are refused until the second ends.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;
use tonic::body::Body;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};

use crate::error::BatonError;
use crate::tree::acl::{self, Caller, Id};
use crate::tree::NodeAcl;

/// What a method needs before its handler runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Nothing, even under `--require-auth`.
    Open,
    /// An authenticated caller under `--require-auth`; node ACLs are checked by the handler
    /// or at apply.
    Data,
    /// ADMIN on `/`, or a super principal.
    Admin,
}

/// Every method the client port serves and its gate. A test checks this table against the
/// services found by reflection, so a new method cannot be added without a gate.
pub const GATES: &[(&str, Gate)] = &[
    ("/grpc.health.v1.Health/Check", Gate::Open),
    ("/grpc.health.v1.Health/Watch", Gate::Open),
    ("/baton.v1.Auth/WhoAmI", Gate::Open),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        Gate::Data,
    ),
    (
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        Gate::Data,
    ),
    ("/baton.v1.ZNodes/Create", Gate::Data),
    ("/baton.v1.ZNodes/Delete", Gate::Data),
    ("/baton.v1.ZNodes/Exists", Gate::Data),
    ("/baton.v1.ZNodes/GetData", Gate::Data),
    ("/baton.v1.ZNodes/SetData", Gate::Data),
    ("/baton.v1.ZNodes/GetChildren", Gate::Data),
    ("/baton.v1.ZNodes/Multi", Gate::Data),
    ("/baton.v1.ZNodes/Sync", Gate::Data),
    ("/baton.v1.ZNodes/GetAcl", Gate::Data),
    ("/baton.v1.ZNodes/SetAcl", Gate::Data),
    ("/baton.v1.Watches/Watch", Gate::Data),
    ("/baton.v1.Sessions/Open", Gate::Data),
    ("/baton.v1.Sessions/KeepAlive", Gate::Data),
    ("/baton.v1.Sessions/Close", Gate::Data),
    ("/baton.v1.Sessions/Get", Gate::Admin),
    ("/baton.v1.Sessions/List", Gate::Admin),
    ("/baton.v1.Locks/Acquire", Gate::Data),
    ("/baton.v1.Locks/TryAcquire", Gate::Data),
    ("/baton.v1.Locks/Release", Gate::Data),
    ("/baton.v1.Locks/Inspect", Gate::Data),
    ("/baton.v1.Locks/ValidateFence", Gate::Data),
    ("/baton.v1.Elections/Campaign", Gate::Data),
    ("/baton.v1.Elections/Proclaim", Gate::Data),
    ("/baton.v1.Elections/Leader", Gate::Data),
    ("/baton.v1.Elections/Observe", Gate::Data),
    ("/baton.v1.Elections/Resign", Gate::Data),
    ("/baton.v1.Cluster/Status", Gate::Admin),
    ("/baton.v1.Cluster/Members", Gate::Admin),
    ("/baton.v1.Cluster/AddMember", Gate::Admin),
    ("/baton.v1.Cluster/PromoteMember", Gate::Admin),
    ("/baton.v1.Cluster/RemoveMember", Gate::Admin),
    ("/baton.v1.Cluster/Snapshot", Gate::Admin),
    ("/baton.v1.Cluster/Stages", Gate::Admin),
    ("/baton.v1.Cluster/Watches", Gate::Admin),
    ("/baton.v1.Cluster/SetLogLevel", Gate::Admin),
    ("/baton.v1.Cluster/TransferLeader", Gate::Admin),
    ("/baton.v1.Maintenance/Backup", Gate::Admin),
];

/// The gate of a method path; a method not in [`GATES`] needs ADMIN.
pub fn gate(method: &str) -> Gate {
    GATES
        .iter()
        .find(|(m, _)| *m == method)
        .map_or(Gate::Admin, |(_, g)| *g)
}

/// Failed logins from one address allowed per second.
pub const MAX_FAILURES_PER_SECOND: u32 = 10;
/// Addresses tracked for failed logins, and client certificates whose ids are kept, at most.
const MAX_TRACKED: usize = 10_000;

/// The metadata key credentials travel in.
pub const AUTHORIZATION: &str = "authorization";

/// Authentication settings of the client port.
#[derive(Clone, Debug, Default)]
pub struct AuthConfig {
    /// Refuse anonymous callers.
    pub require_auth: bool,
    /// Accept digest credentials without TLS.
    pub allow_plaintext_credentials: bool,
    /// The client port speaks TLS.
    pub secure: bool,
    /// Super principals' digest ids (`user:hash`).
    pub super_digests: Vec<String>,
    /// Super principals' certificate identities.
    pub super_x509: Vec<String>,
    /// Which part of a client certificate is its x509 id.
    pub x509_identity: X509Identity,
}

/// Which part of a client certificate names the caller (its `x509` id).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum X509Identity {
    /// The subject distinguished name, most specific first, comma-separated
    /// (`CN=app,O=Example`): ZooKeeper's x509 id.
    #[default]
    Dn,
    /// The subject's common name.
    Cn,
    /// The first URI subject alternative name, else the first DNS name.
    San,
}

/// The x509 id of a client certificate (DER), or `None` if it has none of that kind.
pub fn cert_identity(cert_der: &[u8], kind: X509Identity) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let id = match kind {
        X509Identity::Dn => {
            let subject = cert.subject();
            let parts: Vec<String> = subject
                .iter_rdn()
                .map(|rdn| {
                    rdn.iter()
                        .map(|attr| {
                            let key = x509_parser::objects::oid2abbrev(
                                attr.attr_type(),
                                x509_parser::objects::oid_registry(),
                            )
                            .map_or_else(|_| attr.attr_type().to_id_string(), str::to_string);
                            let value = attr.as_str().unwrap_or("");
                            format!("{key}={value}")
                        })
                        .collect::<Vec<_>>()
                        .join("+")
                })
                .collect();
            parts.into_iter().rev().collect::<Vec<_>>().join(",")
        }
        X509Identity::Cn => cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())?
            .to_string(),
        X509Identity::San => {
            let san = cert.subject_alternative_name().ok()??;
            let names = &san.value.general_names;
            let uri = names.iter().find_map(|n| match n {
                x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
                _ => None,
            });
            uri.or_else(|| {
                names.iter().find_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
            })?
        }
    };
    (!id.is_empty()).then_some(id)
}

/// Counts kept for the metrics.
#[derive(Debug, Default)]
pub struct AuthCounters {
    /// Failed logins (each kind in [`AuthService`]'s docs).
    pub failed_logins: AtomicU64,
    /// Requests refused because their address had too many failed logins.
    pub throttled: AtomicU64,
    /// Anonymous requests refused under `--require-auth`.
    pub unauthenticated: AtomicU64,
    /// Requests refused by the admin gate.
    pub admin_denied: AtomicU64,
}

/// Reads the current ACL of a node, if it exists.
type AclReader = Box<dyn Fn(&str) -> Option<NodeAcl> + Send + Sync>;

/// Decides who a request comes from. Shared by every connection of the client port.
pub struct Authenticator {
    cfg: AuthConfig,
    acl_of: AclReader,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    /// Client certificates (DER) already parsed, and the x509 id each gave: a connection's
    /// certificate is parsed once, not on each of its requests.
    cert_ids: Mutex<HashMap<Vec<u8>, Option<String>>>,
    /// Counts for the metrics.
    pub counters: AuthCounters,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator; `acl_of` reads the current ACL of a node (the admin gate reads
    /// `/`'s).
    pub fn new(
        cfg: AuthConfig,
        acl_of: impl Fn(&str) -> Option<NodeAcl> + Send + Sync + 'static,
    ) -> Self {
        Authenticator {
            cfg,
            acl_of: Box::new(acl_of),
            failures: Mutex::new(HashMap::new()),
            cert_ids: Mutex::new(HashMap::new()),
            counters: AuthCounters::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &AuthConfig {
        &self.cfg
    }

    /// The caller of a request with these headers and certificate identities.
    ///
    /// # Errors
    /// `BAD_CREDENTIALS`: malformed credentials, credentials over plaintext without the
    /// flag, a wrong password for a super principal, or too many failed logins from `ip`.
    pub fn authenticate(
        &self,
        headers: &http::HeaderMap,
        certs: &[String],
        ip: Option<IpAddr>,
    ) -> Result<Caller, BatonError> {
        let mut caller = Caller::default();
        for c in certs {
            caller.ids.push(Id::new("x509", c));
            if self.cfg.super_x509.iter().any(|s| s == c) {
                caller.superuser = true;
            }
        }
        let Some(value) = headers.get(AUTHORIZATION) else {
            return Ok(caller);
        };
        if let Some(ip) = ip {
            if self.throttled(ip) {
                self.counters.throttled.fetch_add(1, Ordering::Relaxed);
                return Err(BatonError::BadCredentials(format!(
                    "more than {MAX_FAILURES_PER_SECOND} failed logins from this address in \
                     the last second; retry later"
                )));
            }
        }
        let fail = |why: &str| {
            if let Some(ip) = ip {
                self.note_failure(ip);
            }
            Err(BatonError::BadCredentials(why.to_string()))
        };
        if !self.cfg.secure && !self.cfg.allow_plaintext_credentials {
            return fail(
                "credentials are accepted only over TLS (or on a member started with \
                 --allow-plaintext-credentials)",
            );
        }
        let Some((user, password)) = parse_digest(value) else {
            return fail("expected `authorization: digest user:password`");
        };
        let id = acl::digest_id(user, password);
        for s in &self.cfg.super_digests {
            let same_user = s.split_once(':').is_some_and(|(u, _)| u == user);
            if bool::from(s.as_bytes().ct_eq(id.as_bytes())) {
                caller.superuser = true;
            } else if same_user {
                return fail("wrong password for a super principal");
            }
        }
        caller.ids.push(Id::new("digest", &id));
        Ok(caller)
    }

    /// Applies the gate of `method` to `caller`.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` for an anonymous caller under `--require-auth`; `NO_AUTH` for an
    /// admin method without ADMIN on `/`.
    pub fn admit(&self, method: &str, caller: &Caller) -> Result<(), BatonError> {
        let g = gate(method);
        if g == Gate::Open {
            return Ok(());
        }
        if self.cfg.require_auth && caller.is_anonymous() {
            self.counters
                .unauthenticated
                .fetch_add(1, Ordering::Relaxed);
            return Err(BatonError::Unauthenticated(
                "this member requires authentication: send `authorization: digest \
                 user:password` or a client certificate"
                    .into(),
            ));
        }
        if g == Gate::Admin {
            let root = (self.acl_of)("/").unwrap_or_default();
            if let Err(e) = acl::require(root.as_slice(), caller, acl::ADMIN, "/") {
                self.counters.admin_denied.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(())
    }

    /// The x509 id of a client certificate (DER), parsed once per certificate.
    fn cert_id(&self, der: &[u8]) -> Option<String> {
        let mut g = self.cert_ids.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(id) = g.get(der) {
            return id.clone();
        }
        let id = cert_identity(der, self.cfg.x509_identity);
        if g.len() >= MAX_TRACKED {
            g.clear();
        }
        g.insert(der.to_vec(), id.clone());
        id
    }

    fn throttled(&self, ip: IpAddr) -> bool {
        let g = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        g.get(&ip).is_some_and(|(since, n)| {
            since.elapsed() < Duration::from_secs(1) && *n >= MAX_FAILURES_PER_SECOND
        })
    }

    /// After a `NO_AUTH` answer on `path` to a caller with digest id `id`: a failed login if
    /// the node's ACL names the same user with another password.
    fn note_denial(&self, ip: IpAddr, id: &str, path: &str) {
        let Some((user, _)) = id.split_once(':') else {
            return;
        };
        let Some(node_acl) = (self.acl_of)(path) else {
            return;
        };
        let guessed = node_acl.as_slice().iter().any(|a| {
            a.id.scheme == "digest"
                && a.id.id != id
                && a.id.id.split_once(':').is_some_and(|(u, _)| u == user)
        });
        if guessed {
            self.note_failure(ip);
        }
    }

    /// Counts a failed login from `ip`.
    pub fn note_failure(&self, ip: IpAddr) {
        self.counters.failed_logins.fetch_add(1, Ordering::Relaxed);
        let mut g = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if g.len() >= MAX_TRACKED && !g.contains_key(&ip) {
            g.retain(|_, (since, _)| now.duration_since(*since) < Duration::from_secs(1));
            if g.len() >= MAX_TRACKED {
                return;
            }
        }
        let e = g.entry(ip).or_insert((now, 0));
        if now.duration_since(e.0) >= Duration::from_secs(1) {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
    }
}

/// `digest user:password` → (user, password); `None` if malformed.
fn parse_digest(v: &http::HeaderValue) -> Option<(&str, &str)> {
    let s = v.to_str().ok()?;
    let (scheme, rest) = s.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let (user, password) = rest.split_once(':')?;
    (!user.is_empty() && !user.contains(char::is_whitespace)).then_some((user, password))
}

/// The caller a handler runs for: what [`AuthLayer`] found (anonymous if the request did
/// not pass through it, as in tests that call handlers directly).
pub fn caller<T>(req: &tonic::Request<T>) -> Caller {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_default()
}

/// Whether the request came over TLS.
pub fn secure<T>(req: &tonic::Request<T>) -> bool {
    req.extensions().get::<Secure>().is_some()
}

/// Marks a request that came over TLS.
#[derive(Clone, Copy, Debug)]
pub struct Secure;

/// The layer.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    /// A layer deciding with `auth`.
    pub fn new(auth: Arc<Authenticator>) -> Self {
        AuthLayer { auth }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The layer's service.
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S> Service<http::Request<Body>> for AuthService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        let tls = req.extensions().get::<TlsConnectInfo<TcpConnectInfo>>();
        let ip = tls
            .map(TlsConnectInfo::get_ref)
            .or_else(|| req.extensions().get::<TcpConnectInfo>())
            .and_then(TcpConnectInfo::remote_addr)
            .map(|a| a.ip());
        // The leaf certificate's identity, when the client presented one.
        let certs: Vec<String> = tls
            .and_then(TlsConnectInfo::peer_certs)
            .and_then(|c| c.first().and_then(|leaf| auth.cert_id(leaf)))
            .into_iter()
            .collect();
        let method = req.uri().path().to_string();
        let decided = auth
            .authenticate(req.headers(), &certs, ip)
            .and_then(|caller| auth.admit(&method, &caller).map(|()| caller));
        // The credentials go no further than this layer.
        req.headers_mut().remove(AUTHORIZATION);
        let caller = match decided {
            Ok(c) => c,
            Err(e) => {
                let status = e.to_status();
                return Box::pin(async move { Ok(status.into_http()) });
            }
        };
        let digest = caller
            .ids
            .iter()
            .find(|i| i.scheme == "digest")
            .map(|i| i.id.clone());
        if auth.cfg.secure {
            req.extensions_mut().insert(Secure);
        }
        req.extensions_mut().insert(caller);
        Box::pin(async move {
            let resp = inner.call(req).await?;
            if let (Some(id), Some(ip)) = (digest, ip) {
                let denied = tonic::Status::from_header_map(resp.headers())
                    .filter(|s| s.code() == tonic::Code::PermissionDenied);
                if let Some(path) = denied
                    .as_ref()
                    .and_then(tonic_types::StatusExt::get_details_error_info)
                    .and_then(|i| i.metadata.get("path").cloned())
                {
                    auth.note_denial(ip, &id, &path);
                }
            }
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(AUTHORIZATION, v.parse().expect("header"));
        h
    }

    fn open(_: &str) -> Option<NodeAcl> {
        Some(NodeAcl::default())
    }

    #[test]
    fn digest_credentials_give_zookeeper_ids_and_super() {
        let a = Authenticator::new(
            AuthConfig {
                allow_plaintext_credentials: true,
                super_digests: vec![acl::digest_id("super", "test")],
                ..Default::default()
            },
            open,
        );
        let c = a
            .authenticate(&headers("digest alice:pw"), &[], None)
            .expect("alice");
        assert_eq!(
            c.ids,
            vec![Id::new("digest", &acl::digest_id("alice", "pw"))]
        );
        assert!(!c.superuser);
        let s = a
            .authenticate(&headers("Digest super:test"), &[], None)
            .expect("super");
        assert!(s.superuser);
        let e = a
            .authenticate(&headers("digest super:guess"), &[], None)
            .expect_err("wrong super password");
        assert!(matches!(e, BatonError::BadCredentials(_)));
        for bad in ["basic alice:pw", "digest alice", "digest :pw", "digest"] {
            assert!(
                a.authenticate(&headers(bad), &[], None).is_err(),
                "{bad} is malformed"
            );
        }
        let none = a
            .authenticate(&http::HeaderMap::new(), &[], None)
            .expect("anonymous");
        assert!(none.is_anonymous());
    }

    #[test]
    fn credentials_over_plaintext_are_refused_by_default() {
        let a = Authenticator::new(AuthConfig::default(), open);
        assert!(matches!(
            a.authenticate(&headers("digest alice:pw"), &[], None),
            Err(BatonError::BadCredentials(_))
        ));
        let tls = Authenticator::new(
            AuthConfig {
                secure: true,
                ..Default::default()
            },
            open,
        );
        assert!(tls
            .authenticate(&headers("digest alice:pw"), &[], None)
            .is_ok());
    }

    #[test]
    fn brute_force_from_one_address_is_throttled() {
        let a = Authenticator::new(
            AuthConfig {
                allow_plaintext_credentials: true,
                super_digests: vec![acl::digest_id("super", "test")],
                ..Default::default()
            },
            open,
        );
        let ip: IpAddr = "10.0.0.7".parse().expect("ip");
        let other: IpAddr = "10.0.0.8".parse().expect("ip");
        for i in 0..MAX_FAILURES_PER_SECOND {
            let h = headers(&format!("digest super:guess{i}"));
            assert!(a.authenticate(&h, &[], Some(ip)).is_err());
        }
        // Even the right password is refused for the rest of the second...
        assert!(a
            .authenticate(&headers("digest super:test"), &[], Some(ip))
            .is_err());
        assert_eq!(a.counters.throttled.load(Ordering::Relaxed), 1);
        // ...from that address only; anonymous requests go on.
        assert!(a
            .authenticate(&headers("digest super:test"), &[], Some(other))
            .is_ok());
        assert!(a
            .authenticate(&http::HeaderMap::new(), &[], Some(ip))
            .is_ok());
        std::thread::sleep(Duration::from_millis(1100));
        assert!(
            a.authenticate(&headers("digest super:test"), &[], Some(ip))
                .expect("after the window")
                .superuser
        );
    }

    #[test]
    fn certificates_give_x509_ids() {
        let a = Authenticator::new(
            AuthConfig {
                super_x509: vec!["CN=root".into()],
                ..Default::default()
            },
            open,
        );
        let c = a
            .authenticate(&http::HeaderMap::new(), &["CN=app".into()], None)
            .expect("cert");
        assert_eq!(c.ids, vec![Id::new("x509", "CN=app")]);
        assert!(!c.superuser);
        let r = a
            .authenticate(&http::HeaderMap::new(), &["CN=root".into()], None)
            .expect("cert");
        assert!(r.superuser);
    }

    #[test]
    fn the_gate_requires_auth_and_admin() {
        let locked = NodeAcl::new(vec![acl::Acl {
            perms: acl::ADMIN,
            id: Id::new("digest", &acl::digest_id("admin", "pw")),
        }]);
        let a = Authenticator::new(
            AuthConfig {
                require_auth: true,
                ..Default::default()
            },
            move |_: &str| Some(locked.clone()),
        );
        let anon = Caller::default();
        let alice = Caller {
            ids: vec![Id::new("digest", &acl::digest_id("alice", "pw"))],
            superuser: false,
        };
        let admin = Caller {
            ids: vec![Id::new("digest", &acl::digest_id("admin", "pw"))],
            superuser: false,
        };
        assert!(a.admit("/grpc.health.v1.Health/Check", &anon).is_ok());
        assert!(a.admit("/baton.v1.Auth/WhoAmI", &anon).is_ok());
        assert!(matches!(
            a.admit("/baton.v1.ZNodes/GetData", &anon),
            Err(BatonError::Unauthenticated(_))
        ));
        assert!(a.admit("/baton.v1.ZNodes/GetData", &alice).is_ok());
        assert!(matches!(
            a.admit("/baton.v1.Cluster/Status", &alice),
            Err(BatonError::NoAuth { need: "ADMIN", .. })
        ));
        assert!(a.admit("/baton.v1.Cluster/Status", &admin).is_ok());
        assert_eq!(gate("/baton.v1.Cluster/SomethingNew"), Gate::Admin);
    }
}
