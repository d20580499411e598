//! The Rust client library for Baton: znode CRUD, multi, sync, sessions kept alive in the
//! background, watch streams, locks and elections with fencing tokens ([`Client::lock`],
//! [`LockGuard`], [`Client::campaign`], [`MultiOps::check_fence`]), and cluster status.
//!
//! A [`Client`] holds one gRPC channel per endpoint and sends each call to its *current*
//! endpoint. When that endpoint is unavailable (connection refused, member down or without a
//! quorum) the client moves on to the next one; reads are retried there at once. Every call
//! has a timeout (10 s by default, see [`Client::with_timeout`]).
//!
//! Znode writes (`create`, `set_data`, `delete`, `multi`) are **applied at most once** and
//! retried until their deadline: each [`Client`] draws a random client id when it connects
//! and numbers its writes; a write whose outcome is unknown (`OUTCOME_UNKNOWN`, a broken
//! connection, no reply within a share of the deadline) is sent again with the same id, and
//! the cluster answers a copy of a write it already applied with that write's original result
//! (zxid, Stat, created path, or error such as `NODE_EXISTS`) instead of applying it again
//! (see `baton::tree::clients`). Only when the deadline passes is the outcome unknown.
//! An attempt that gets no answer within [`ClientOptions::write_attempt_timeout`] is sent
//! again to the next endpoint.
//! Other writes (sessions, membership) are sent again only when they are known not to have
//! been applied (the connection was never made, or the server answered `UNAVAILABLE`).
//!
//! Returned values are the generated protobuf types ([`Stat`], [`MultiResponse`], ...): the
//! client is the edge of the system, and those types are the public API.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use baton::client::{Client, CreateOptions, WatchKind};
//!
//! # async fn example() -> Result<(), baton::client::ClientError> {
//! let client = Client::connect(["127.0.0.1:7420"]).await?;
//! let (path, stat) = client.create("/app", b"hello", CreateOptions::persistent()).await?;
//! let (data, stat) = client.get_data(&path).await?;
//! client.set_data("/app", b"world", stat.version).await?;
//!
//! // Ephemeral nodes live as long as a session that the library keeps alive.
//! let session = client.open_session(Duration::from_secs(10)).await?;
//! client.create("/app/me", b"", CreateOptions::ephemeral(session.id())).await?;
//!
//! // Watch the subtree.
//! let mut watcher = client.watcher().await?;
//! let (watch_id, added) = watcher.add("/app", WatchKind::PersistentRecursive, None).await?;
//! while let Some((id, event)) = watcher.next_event().await? {
//!     println!("{id}: {} at zxid {}", event.path, event.zxid);
//! }
//! session.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//!
//! Every call returns [`ClientError`]. Server errors carry ZooKeeper's error name as
//! [`ClientError::reason`] (`NO_NODE`, `NODE_EXISTS`, `BAD_VERSION`, `NOT_EMPTY`,
//! `SESSION_EXPIRED`, ...); [`ClientError::is_retryable`] tells transient failures apart.

mod endpoint;
mod error;
mod locks;
mod ops;
mod session;
mod watch;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Response, Status};

use crate::proto::v1::auth_client::AuthClient;
use crate::proto::v1::cluster_client::ClusterClient;
use crate::proto::v1::maintenance_client::MaintenanceClient;
use crate::proto::v1::sessions_client::SessionsClient;
use crate::proto::v1::z_nodes_client::ZNodesClient;
use crate::proto::v1::{self as pb};

pub use endpoint::{normalize_endpoint, split_endpoints, without_scheme, DEFAULT_PORT};
pub use error::{code_name, ClientError, Reason};
pub use locks::*;
pub use ops::{Child, ChildrenOptions, CreateOptions, MultiOps, ReadOptions};
pub use session::{Session, SessionState};
pub use watch::{Watcher, WatcherStream};

pub use crate::proto::v1::add_watch::Kind as WatchKind;
pub use crate::proto::v1::{
    Added, Alarm, Consistency, CreateMode, EventType, GetChildrenResponse, Member, MultiResponse,
    Op, ResponseHeader, SessionInfo, StageStats, StagesResponse, Stat, StatusResponse, WatchEvent,
    WatchInfo, WatchesResponse,
};
pub use crate::tree::acl::{Acl, Id as AclId};

/// Connection settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Deadline of each call, retries included (default 10 s).
    pub timeout: Duration,
    /// Deadline of each TCP + HTTP/2 connection attempt (default 3 s).
    pub connect_timeout: Duration,
    /// Largest message the client accepts (default 64 MiB: a page of 10 000 children with
    /// stats, or a 1 MiB value, fits easily).
    pub max_message_size: usize,
    /// Authenticate as `user:password` with ZooKeeper's digest scheme (see
    /// [`Client::with_digest`]); `None`: anonymous.
    pub digest: Option<Secret>,
    /// TLS (default none). When set, every endpoint is connected over TLS, whatever its
    /// scheme; an `https://` endpoint without it is refused.
    pub tls: Option<ClientTls>,
    /// How long one attempt of a znode write may go unanswered before it is sent again, with
    /// the same request id, to the next endpoint (default 2 s; always within `timeout`). A
    /// member that holds a write without answering (a leader cut off from the others does not
    /// know yet that it was replaced) then costs this, not the whole deadline.
    pub write_attempt_timeout: Duration,
    /// Whether znode writes carry request ids and are retried when their outcome is unknown
    /// (default true). Without, such a write is reported as it is (`OUTCOME_UNKNOWN`, a
    /// broken connection), never sent again.
    pub request_ids: bool,
}

/// A `user:password` pair that never prints its password.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let user = self.0.split_once(':').map_or("", |(u, _)| u);
        write!(f, "Secret({user}:<redacted>)")
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            max_message_size: 64 * 1024 * 1024,
            digest: None,
            tls: None,
            write_attempt_timeout: Duration::from_secs(2),
            request_ids: true,
        }
    }
}

/// How a client connects over TLS: the CA that signs the members' certificates and, for
/// members that require client certificates (`batond --client-ca`), the client's own.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientTls {
    ca_pem: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    domain: Option<String>,
}

impl std::fmt::Debug for ClientTls {
    // Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("client_certificate", &self.identity.is_some())
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trusts the CA certificate(s) in `ca_pem` (PEM).
    pub fn new(ca_pem: impl Into<Vec<u8>>) -> ClientTls {
        ClientTls {
            ca_pem: ca_pem.into(),
            identity: None,
            domain: None,
        }
    }

    /// Presents the certificate chain `cert_pem` with its key `key_pem` (both PEM).
    pub fn identity(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.identity = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Expects `domain` in the members' certificates instead of each endpoint's host.
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Reads the CA file and, if both are given, the client certificate and key files.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for a file that cannot be read, or a certificate
    /// without a key (or the reverse).
    pub fn from_files(
        ca: &std::path::Path,
        cert: Option<&std::path::Path>,
        key: Option<&std::path::Path>,
    ) -> Result<ClientTls, ClientError> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| {
                ClientError::InvalidArgument(format!("cannot read {}: {e}", p.display()))
            })
        };
        let tls = ClientTls::new(read(ca)?);
        match (cert, key) {
            (None, None) => Ok(tls),
            (Some(c), Some(k)) => Ok(tls.identity(read(c)?, read(k)?)),
            _ => Err(ClientError::InvalidArgument(
                "a client certificate needs its key, and a key its certificate".into(),
            )),
        }
    }

    fn config(&self) -> ClientTlsConfig {
        let mut c = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        if let Some((cert, key)) = &self.identity {
            c = c.identity(Identity::from_pem(cert, key));
        }
        if let Some(d) = &self.domain {
            c = c.domain_name(d.clone());
        }
        c
    }
}

/// Whether a call may be sent again after it may have reached a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retry {
    /// Reads: retried on the next endpoint after any `UNAVAILABLE` or broken connection.
    Idempotent,
    /// Writes: retried only when known not to have been applied.
    IfNotApplied,
    /// Znode writes with a request id: retried, with the same id, whenever the outcome is
    /// unknown, until the deadline (the cluster applies the id at most once).
    Once,
}

/// The client's request ids: its id and the sequence numbers of its writes in flight.
struct Sequencer {
    /// Random, never 0; one per [`Client::connect`] (clones share it).
    client_id: u64,
    state: std::sync::Mutex<SeqState>,
}

struct SeqState {
    /// The next sequence number to hand out.
    next: u64,
    /// Sequence numbers of writes not yet answered (or given up).
    in_flight: std::collections::BTreeSet<u64>,
}

impl Sequencer {
    fn new() -> Sequencer {
        let mut client_id = 0;
        while client_id == 0 {
            client_id = rand::random::<u64>();
        }
        Sequencer {
            client_id,
            state: std::sync::Mutex::new(SeqState {
                next: 1,
                in_flight: std::collections::BTreeSet::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SeqState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new sequence number, in flight until the returned guard is dropped.
    fn start(&self) -> InFlight<'_> {
        let mut st = self.lock();
        let seq = st.next;
        st.next += 1;
        st.in_flight.insert(seq);
        InFlight { seq, owner: self }
    }

    /// The lowest sequence number still in flight (every one below was answered).
    fn first_incomplete(&self, seq: u64) -> u64 {
        self.lock()
            .in_flight
            .first()
            .copied()
            .unwrap_or(seq)
            .min(seq)
    }
}

/// A write's sequence number while it is in flight.
struct InFlight<'a> {
    seq: u64,
    owner: &'a Sequencer,
}

impl InFlight<'_> {
    /// Puts the request id into a request's metadata.
    fn stamp<T>(&self, request: &mut Request<T>) {
        let md = request.metadata_mut();
        let first = self.owner.first_incomplete(self.seq);
        for (key, value) in [
            (crate::api::CLIENT_ID_HEADER, self.owner.client_id),
            (crate::api::SEQ_HEADER, self.seq),
            (crate::api::FIRST_INCOMPLETE_HEADER, first),
        ] {
            if let Ok(v) = value.to_string().parse() {
                md.insert(key, v);
            }
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.owner.lock().in_flight.remove(&self.seq);
    }
}

/// A handle on a Baton cluster. Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    timeout: Duration,
    credentials: Option<Credentials>,
}

/// An `authorization: digest user:password` entry sent with every call. Marked sensitive
/// (never indexed by HPACK) and never printed.
#[derive(Clone)]
struct Credentials(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

struct Shared {
    /// Normalised URIs, in the order given.
    endpoints: Vec<String>,
    /// One channel per endpoint. tonic channels reconnect by themselves; a channel whose
    /// member is down fails fast with `UNAVAILABLE`.
    channels: Vec<Channel>,
    /// Index of the endpoint calls go to; advanced when it turns out unavailable.
    current: AtomicUsize,
    options: ClientOptions,
    /// Request ids of znode writes.
    ids: Sequencer,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.shared.endpoints)
            .field("current", &self.current_endpoint())
            .field("timeout", &self.timeout)
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl Client {
    /// Connects to a cluster with default options. See [`Client::connect_with`].
    ///
    /// # Errors
    /// As [`Client::connect_with`].
    pub async fn connect<I, S>(endpoints: I) -> Result<Client, ClientError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::connect_with(endpoints, ClientOptions::default()).await
    }

    /// Connects to a cluster. Endpoints are `host:port` or `http://host:port` (any list of
    /// strings: `&[String]`, `["127.0.0.1:7420"]`, `[&addr]`); they are tried in order and
    /// the first that accepts a connection becomes the current one. The others are connected
    /// lazily, when a call fails over to them.
    ///
    /// # Errors
    /// [`ClientError::InvalidEndpoint`] if an endpoint cannot be parsed or the list is empty;
    /// [`ClientError::Connect`] if no endpoint accepts a connection.
    pub async fn connect_with<I, S>(
        endpoints: I,
        options: ClientOptions,
    ) -> Result<Client, ClientError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let endpoints: Vec<String> = endpoints
            .into_iter()
            .map(|e| e.as_ref().to_string())
            .collect();
        if endpoints.is_empty() {
            return Err(ClientError::InvalidEndpoint {
                endpoint: String::new(),
                why: "no endpoints given".to_string(),
            });
        }
        let uris = endpoints
            .iter()
            .map(|e| {
                let uri = normalize_endpoint(e)?;
                match (&options.tls, uri.strip_prefix("http://")) {
                    (Some(_), Some(rest)) => Ok(format!("https://{rest}")),
                    (None, None) => Err(ClientError::InvalidEndpoint {
                        endpoint: e.to_string(),
                        why: "an https:// endpoint needs the CA certificate that signs the \
                              members' certificates (ClientOptions::tls; baton --cacert)"
                            .to_string(),
                    }),
                    _ => Ok(uri),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let tls = options.tls.as_ref().map(ClientTls::config);
        let configured = uris
            .iter()
            .map(|uri| {
                let invalid = |e: &dyn std::fmt::Display| ClientError::InvalidEndpoint {
                    endpoint: uri.clone(),
                    why: e.to_string(),
                };
                let mut endpoint = Endpoint::from_shared(uri.clone()).map_err(|e| invalid(&e))?;
                if let Some(tls) = &tls {
                    endpoint = endpoint.tls_config(tls.clone()).map_err(|e| invalid(&e))?;
                }
                Ok(configure(endpoint, &options))
            })
            .collect::<Result<Vec<_>, ClientError>>()?;

        let mut channels: Vec<Option<Channel>> = vec![None; configured.len()];
        let mut current = None;
        let mut last_error = String::new();
        for (i, endpoint) in configured.iter().enumerate() {
            match endpoint.connect().await {
                Ok(channel) => {
                    channels[i] = Some(channel);
                    current = Some(i);
                    break;
                }
                Err(e) => last_error = error_chain(&e),
            }
        }
        let Some(current) = current else {
            return Err(ClientError::Connect {
                endpoints: uris
                    .iter()
                    .map(|u| without_scheme(u))
                    .collect::<Vec<_>>()
                    .join(","),
                message: last_error,
            });
        };
        let channels = channels
            .into_iter()
            .zip(&configured)
            .map(|(c, e)| c.unwrap_or_else(|| e.connect_lazy()))
            .collect();
        let digest = options.digest.clone();
        let client = Client {
            timeout: options.timeout,
            shared: Arc::new(Shared {
                endpoints: uris,
                channels,
                current: AtomicUsize::new(current),
                options,
                ids: Sequencer::new(),
            }),
            credentials: None,
        };
        match digest {
            Some(Secret(pair)) => {
                let (user, password) = pair.split_once(':').ok_or_else(|| {
                    ClientError::InvalidArgument("credentials are user:password".into())
                })?;
                client.with_digest(user, password)
            }
            None => Ok(client),
        }
    }

    /// A handle on the same connections whose calls use `timeout` instead.
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        Client {
            shared: Arc::clone(&self.shared),
            timeout,
            credentials: self.credentials.clone(),
        }
    }

    /// A handle on the same connections whose calls authenticate as `user` with ZooKeeper's
    /// digest scheme (the member takes the caller to be `digest:user:base64(sha1(user:password))`).
    /// Members accept credentials only over TLS unless started with
    /// `--allow-plaintext-credentials`.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] if `user` is empty or holds whitespace, or either
    /// holds characters that cannot travel in a header.
    pub fn with_digest(&self, user: &str, password: &str) -> Result<Client, ClientError> {
        if user.is_empty() || user.contains(char::is_whitespace) || user.contains(':') {
            return Err(ClientError::InvalidArgument(
                "a digest user is a non-empty name without spaces or ':'".into(),
            ));
        }
        let mut value: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
            format!("digest {user}:{password}").parse().map_err(|_| {
                ClientError::InvalidArgument(
                    "credentials must be printable ASCII to travel in a header".into(),
                )
            })?;
        value.set_sensitive(true);
        Ok(Client {
            shared: Arc::clone(&self.shared),
            timeout: self.timeout,
            credentials: Some(Credentials(value)),
        })
    }

    /// A request carrying this handle's credentials.
    pub(crate) fn request<T>(&self, message: T) -> Request<T> {
        let mut r = Request::new(message);
        if let Some(c) = &self.credentials {
            r.metadata_mut()
                .insert(crate::auth::AUTHORIZATION, c.0.clone());
        }
        r
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The endpoints, normalised (`http://host:port`), in the order given.
    pub fn endpoints(&self) -> &[String] {
        &self.shared.endpoints
    }

    /// The random id this client's znode writes carry (with a sequence number each) so that
    /// a retried write is applied at most once. Clones share it.
    pub fn client_id(&self) -> u64 {
        self.shared.ids.client_id
    }

    /// The endpoint calls currently go to.
    pub fn current_endpoint(&self) -> &str {
        let (i, _) = self.current();
        &self.shared.endpoints[i]
    }

    /// The channel to the current endpoint, for calling generated stubs directly (e.g.
    /// `ZNodesClient::new(client.channel())`). Such calls get no timeout or failover.
    pub fn channel(&self) -> Channel {
        self.current().1
    }

    // ----- znodes -----

    /// Creates a node and returns the path actually created (with the sequential suffix, if
    /// any) and its Stat.
    ///
    /// # Errors
    /// `NODE_EXISTS`, `NO_NODE` (missing parent), `NO_CHILDREN_FOR_EPHEMERALS`,
    /// `INVALID_PATH`, `SESSION_EXPIRED` (ephemeral with a dead session), `BAD_ARGUMENTS`
    /// (e.g. TTL out of range), `TOO_LARGE`, `NO_AUTH` (under `/baton`), transport errors.
    pub async fn create(
        &self,
        path: &str,
        data: impl Into<Vec<u8>>,
        options: CreateOptions,
    ) -> Result<(String, Stat), ClientError> {
        let req = options.request(path, data.into());
        let max = self.max_message_size();
        let resp = self
            .unary(Retry::Once, req, move |ch, r| async move {
                znodes(ch, max).create(r).await
            })
            .await?;
        Ok((resp.path, resp.stat.unwrap_or_default()))
    }

    /// Reads a node's data and Stat (linearizable).
    ///
    /// # Errors
    /// `NO_NODE`, `INVALID_PATH`, transport errors.
    pub async fn get_data(&self, path: &str) -> Result<(Vec<u8>, Stat), ClientError> {
        self.get_data_with(path, ReadOptions::default()).await
    }

    /// Reads a node's data and Stat with the given consistency.
    ///
    /// # Errors
    /// As [`Client::get_data`]; `DEADLINE_EXCEEDED` if `min_zxid` is not reached in time.
    pub async fn get_data_with(
        &self,
        path: &str,
        options: ReadOptions,
    ) -> Result<(Vec<u8>, Stat), ClientError> {
        let req = pb::GetDataRequest {
            path: path.to_string(),
            consistency: options.consistency as i32,
            min_zxid: options.min_zxid,
        };
        let max = self.max_message_size();
        let resp = self
            .unary(Retry::Idempotent, req, move |ch, r| async move {
                znodes(ch, max).get_data(r).await
            })
            .await?;
        Ok((resp.data, resp.stat.unwrap_or_default()))
    }

    /// The node's Stat, or `None` if it does not exist (linearizable).
    ///
    /// # Errors
    /// `INVALID_PATH`, transport errors.
    pub async fn exists(&self, path: &str) -> Result<Option<Stat>, ClientError> {
        self.exists_with(path, ReadOptions::default()).await
    }

    /// Like [`Client::exists`] with the given consistency.
    ///
    /// # Errors
    /// As [`Client::exists`].
    pub async fn exists_with(
        &self,
        path: &str,
        options: ReadOptions,
    ) -> Result<Option<Stat>, ClientError> {
        let req = pb::ExistsRequest {
            path: path.to_string(),
            consistency: options.consistency as i32,
            min_zxid: options.min_zxid,
        };
        let max = self.max_message_size();
        let resp = self
            .unary(Retry::Idempotent, req, move |ch, r| async move {
                znodes(ch, max).exists(r).await
            })
            .await?;
        Ok(resp.exists.then(|| resp.stat.unwrap_or_default()))
    }

    /// Replaces a node's data if its version is `version` (-1 = any); returns the new Stat.
    ///
    /// # Errors
    /// `NO_NODE`, `BAD_VERSION`, `TOO_LARGE`, `INVALID_PATH`, `NO_AUTH`, transport errors.
    pub async fn set_data(
        &self,
        path: &str,
        data: impl Into<Vec<u8>>,
        version: i32,
    ) -> Result<Stat, ClientError> {
        let req = pb::SetDataRequest {
            path: path.to_string(),
            data: data.into(),
            version,
        };
        let max = self.max_message_size();
        let resp = self
            .unary(Retry::Once, req, move |ch, r| async move {
                znodes(ch, max).set_data(r).await
            })
            .await?;
        Ok(resp.stat.unwrap_or_default())
    }

    /// A node's ACL and Stat (`aversion` counts ACL changes). Needs READ or ADMIN on the
    /// node; without ADMIN, digest ids come back masked (`digest:user:x`).
    ///
    /// # Errors
    /// `NO_NODE`, `NO_AUTH`, `INVALID_PATH`, transport errors.
    pub async fn get_acl(&self, path: &str) -> Result<(Vec<Acl>, Stat), ClientError> {
        let req = pb::GetAclRequest {
            path: path.to_string(),
            ..Default::default()
        };
        let max = self.max_message_size();
        let resp = self
            .unary(Retry::Idempotent, req, move |ch, r| async move {
                znodes(ch, max).get_acl(r).await
            })
            .await?;
        Ok((
            crate::proto::acl_from_wire(resp.acl),
            resp.stat.unwrap_or_default(),
        ))
    }

    /// Replaces a node's ACL if its `aversion` is `version` (-1 = any); returns the new Stat.
    /// Needs ADMIN on the node. `auth` entries stand for this handle's own ids.
    ///
    /// # Errors
    /// `NO_NODE`, `NO_AUTH`, `BAD_VERSION`, `INVALID_ACL`, `INVALID_PATH`, transport errors.
    pub async fn set_acl(
        &self,
        path: &str,
        acl: &[Acl],
        version: i32,
    ) -> Result<Stat, ClientError> {
        let req = pb::SetAclRequest {
            path: path.to_string(),
            acl: crate::proto::acl_to_wire(acl),
            version,
        };
        let max = self.max_message_size();
        let resp = self
            .unary(Retry::Once, req, move |ch, r| async move {
                znodes(ch, max).set_acl(r).await
            })
            .await?;
        Ok(resp.stat.unwrap_or_default())
    }

    /// Who the member takes this handle to be: its ids (`scheme:id`) and whether it is a
    /// super principal.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn who_am_i(&self) -> Result<pb::WhoAmIResponse, ClientError> {
        let max = self.max_message_size();
        self.unary(
            Retry::Idempotent,
            pb::WhoAmIRequest {},
            move |ch, r| async move {
                AuthClient::new(ch)
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max)
                    .who_am_i(r)
                    .await
            },
        )
        .await
    }

    /// Deletes a node if its version is `version` (-1 = any). The header's zxid is the index
    /// of the deleting change.
    ///
    /// # Errors
    /// `NO_NODE`, `BAD_VERSION`, `NOT_EMPTY`, `INVALID_PATH`, `NO_AUTH`, transport errors.
    pub async fn delete(&self, path: &str, version: i32) -> Result<ResponseHeader, ClientError> {
        let req = pb::DeleteRequest {
            path: path.to_string(),
            version,
        };
        let max = self.max_message_size();
        let resp = self
            .unary(Retry::Once, req, move |ch, r| async move {
                znodes(ch, max).delete(r).await
            })
            .await?;
        Ok(resp.header.unwrap_or_default())
    }

    /// One page of a node's children (names in byte order, optional stats, the parent's Stat,
    /// and `next`, the `start_after` of the following page, empty on the last page).
    ///
    /// # Errors
    /// `NO_NODE`, `INVALID_PATH`, transport errors.
    pub async fn get_children(
        &self,
        path: &str,
        options: ChildrenOptions,
    ) -> Result<GetChildrenResponse, ClientError> {
        let req = options.request(path);
        let max = self.max_message_size();
        self.unary(Retry::Idempotent, req, move |ch, r| async move {
            znodes(ch, max).get_children(r).await
        })
        .await
    }

    /// Every child name of a node, following pages until the last.
    ///
    /// # Errors
    /// As [`Client::get_children`].
    pub async fn get_all_children(&self, path: &str) -> Result<Vec<String>, ClientError> {
        let children = self
            .get_all_children_with(path, ChildrenOptions::default())
            .await?;
        Ok(children.into_iter().map(|c| c.name).collect())
    }

    /// Every child of a node (with stats if `options.include_stats`), following pages from
    /// `options.start_after` until the last. Later pages wait for the zxid the first page was
    /// read at, so the listing never goes back in time; it is not one atomic snapshot.
    ///
    /// # Errors
    /// As [`Client::get_children`].
    pub async fn get_all_children_with(
        &self,
        path: &str,
        mut options: ChildrenOptions,
    ) -> Result<Vec<Child>, ClientError> {
        let mut out = Vec::new();
        loop {
            let page = self.get_children(path, options.clone()).await?;
            let mut stats = page.stats.into_iter();
            for name in page.children {
                let stat = if options.include_stats {
                    stats.next()
                } else {
                    None
                };
                out.push(Child { name, stat });
            }
            if page.next.is_empty() || page.next == options.start_after {
                return Ok(out);
            }
            options.start_after = page.next;
            if let Some(h) = page.header {
                options.min_zxid = options.min_zxid.max(h.zxid);
            }
        }
    }

    /// Applies operations atomically. A failed Multi is *not* an `Err`: the response has
    /// `succeeded == false`, `failed_op_index`, and a per-op error for each op.
    ///
    /// # Errors
    /// Errors of the request as a whole (e.g. `BAD_ARGUMENTS` for an empty op), transport
    /// errors.
    pub async fn multi(
        &self,
        ops: impl IntoIterator<Item = Op>,
    ) -> Result<MultiResponse, ClientError> {
        let req = pb::MultiRequest {
            ops: ops.into_iter().collect(),
        };
        let max = self.max_message_size();
        self.unary(Retry::Once, req, move |ch, r| async move {
            znodes(ch, max).multi(r).await
        })
        .await
    }

    /// Waits until the current member has applied every write committed before the call;
    /// the header's zxid is its applied index afterwards.
    ///
    /// # Errors
    /// `INVALID_PATH`, `DEADLINE_EXCEEDED`, transport errors.
    pub async fn sync(&self, path: &str) -> Result<ResponseHeader, ClientError> {
        let req = pb::SyncRequest {
            path: path.to_string(),
        };
        let max = self.max_message_size();
        let resp = self
            .unary(Retry::Idempotent, req, move |ch, r| async move {
                znodes(ch, max).sync(r).await
            })
            .await?;
        Ok(resp.header.unwrap_or_default())
    }

    // ----- sessions -----

    /// Opens a session and keeps it alive in the background; see [`Session`]. The server
    /// clamps `timeout` into its bounds; [`Session::timeout`] is the negotiated value.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn open_session(&self, timeout: Duration) -> Result<Session, ClientError> {
        let req = pb::OpenSessionRequest {
            timeout_ms: i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX),
        };
        let max = self.max_message_size();
        let resp = self
            .unary(Retry::IfNotApplied, req, move |ch, r| async move {
                sessions(ch, max).open(r).await
            })
            .await?;
        let negotiated = Duration::from_millis(u64::try_from(resp.timeout_ms).unwrap_or(0));
        let negotiated = if negotiated.is_zero() {
            timeout
        } else {
            negotiated
        };
        Ok(Session::start(
            self.clone(),
            resp.session_id,
            resp.secret,
            negotiated,
            None,
        ))
    }

    /// Keeps alive a session opened elsewhere (e.g. by another process), proving ownership
    /// with its secret. One keepalive round trip is made before returning.
    ///
    /// # Errors
    /// `SESSION_EXPIRED` if the session is unknown, `AUTH_FAILED` for a wrong secret,
    /// transport errors.
    pub async fn resume_session(
        &self,
        id: u64,
        secret: Vec<u8>,
        timeout: Duration,
    ) -> Result<Session, ClientError> {
        Session::resume(self.clone(), id, secret, timeout).await
    }

    /// Closes a session by id and secret, deleting its ephemeral nodes.
    ///
    /// # Errors
    /// `SESSION_EXPIRED`, `AUTH_FAILED`, transport errors.
    pub async fn close_session(
        &self,
        id: u64,
        secret: &[u8],
    ) -> Result<ResponseHeader, ClientError> {
        let req = pb::CloseSessionRequest {
            session_id: id,
            secret: secret.to_vec(),
        };
        let max = self.max_message_size();
        let resp = self
            .unary(Retry::IfNotApplied, req, move |ch, r| async move {
                sessions(ch, max).close(r).await
            })
            .await?;
        Ok(resp.header.unwrap_or_default())
    }

    /// Describes one live session.
    ///
    /// # Errors
    /// `SESSION_EXPIRED` if it does not exist, transport errors.
    pub async fn get_session(&self, id: u64) -> Result<SessionInfo, ClientError> {
        let req = pb::GetSessionRequest { session_id: id };
        let max = self.max_message_size();
        let resp = self
            .unary(Retry::Idempotent, req, move |ch, r| async move {
                sessions(ch, max).get(r).await
            })
            .await?;
        resp.session.ok_or_else(|| {
            ClientError::Status(Status::internal("GetSession reply without a session"))
        })
    }

    /// Every live session, ordered by id.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn list_sessions(&self) -> Result<Vec<SessionInfo>, ClientError> {
        let max = self.max_message_size();
        let resp = self
            .unary(
                Retry::Idempotent,
                pb::ListSessionsRequest {},
                move |ch, r| async move { sessions(ch, max).list(r).await },
            )
            .await?;
        Ok(resp.sessions)
    }

    // ----- watches -----

    /// Opens a watch stream on the current endpoint; see [`Watcher`]. Events are served by
    /// that member as it applies the log.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn watcher(&self) -> Result<Watcher, ClientError> {
        Watcher::open(self).await
    }

    /// Opens a watch stream and adds one watch on it; with `start_zxid`, the member first
    /// replays every matching event after that zxid (see [`Watcher::add`]). Each member keeps
    /// its own window of recent events (kept across restarts and carried by snapshots); if
    /// the current member's window no longer reaches `start_zxid`, the other endpoints are
    /// tried in turn. Returns the watcher, the watch id and the `Added` reply.
    ///
    /// # Errors
    /// [`ClientError::Compacted`] if no member still holds the events after `start_zxid`;
    /// otherwise as [`Client::watcher`] and [`Watcher::add`].
    pub async fn watch_from(
        &self,
        path: &str,
        kind: WatchKind,
        start_zxid: Option<u64>,
    ) -> Result<(Watcher, u64, pb::Added), ClientError> {
        let mut compacted = None;
        for _ in 0..self.shared.channels.len() {
            let mut w = self.watcher().await?;
            match w.add(path, kind, start_zxid).await {
                Ok((id, added)) => return Ok((w, id, added)),
                Err(e @ ClientError::Compacted { .. }) => {
                    self.fail_over(w.endpoint_index());
                    compacted = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(compacted.unwrap_or(ClientError::WatchClosed))
    }

    // ----- cluster -----

    /// The current member's status.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn status(&self) -> Result<StatusResponse, ClientError> {
        let max = self.max_message_size();
        self.unary(
            Retry::Idempotent,
            pb::StatusRequest {},
            move |ch, r| async move { cluster(ch, max).status(r).await },
        )
        .await
    }

    /// The cluster's members, voters and learners, ordered by id.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn members(&self) -> Result<Vec<Member>, ClientError> {
        let max = self.max_message_size();
        let resp = self
            .unary(
                Retry::Idempotent,
                pb::MembersRequest {},
                move |ch, r| async move { cluster(ch, max).members(r).await },
            )
            .await?;
        Ok(resp.members)
    }

    /// Adds a member as a learner (it receives the log but does not vote until promoted);
    /// returns the members after the change. Not retried after it may have been applied.
    ///
    /// # Errors
    /// `BAD_ARGUMENTS` (id in use, bad address), `UNAVAILABLE`, transport errors.
    pub async fn add_member(
        &self,
        id: u64,
        peer_addr: &str,
        client_addr: &str,
    ) -> Result<Vec<Member>, ClientError> {
        let req = pb::AddMemberRequest {
            id,
            peer_addr: peer_addr.to_string(),
            client_addr: client_addr.to_string(),
        };
        let max = self.max_message_size();
        let resp = self
            .unary(Retry::IfNotApplied, req, move |ch, r| async move {
                cluster(ch, max).add_member(r).await
            })
            .await?;
        Ok(resp.members)
    }

    /// Promotes a learner that has caught up to a voter; returns the members after the change.
    ///
    /// # Errors
    /// `BAD_ARGUMENTS` (unknown id), `UNAVAILABLE`, transport errors.
    pub async fn promote_member(&self, id: u64) -> Result<Vec<Member>, ClientError> {
        let req = pb::PromoteMemberRequest { id };
        let max = self.max_message_size();
        let resp = self
            .unary(Retry::IfNotApplied, req, move |ch, r| async move {
                cluster(ch, max).promote_member(r).await
            })
            .await?;
        Ok(resp.members)
    }

    /// Removes a member (voter or learner); returns the members after the change.
    ///
    /// # Errors
    /// `BAD_ARGUMENTS` (unknown id), `UNAVAILABLE`, transport errors.
    pub async fn remove_member(&self, id: u64) -> Result<Vec<Member>, ClientError> {
        let req = pb::RemoveMemberRequest { id };
        let max = self.max_message_size();
        let resp = self
            .unary(Retry::IfNotApplied, req, move |ch, r| async move {
                cluster(ch, max).remove_member(r).await
            })
            .await?;
        Ok(resp.members)
    }

    /// Makes the current member take a snapshot now; returns the log index it covers.
    ///
    /// # Errors
    /// Transport errors, server-side failures.
    pub async fn snapshot(&self) -> Result<u64, ClientError> {
        let max = self.max_message_size();
        let resp = self
            .unary(
                Retry::IfNotApplied,
                pb::SnapshotRequest {},
                move |ch, r| async move { cluster(ch, max).snapshot(r).await },
            )
            .await?;
        Ok(resp.snapshot_index)
    }

    /// Opens a backup stream on the member this client is connected to (see
    /// `Maintenance.Backup`; [`crate::backup::save`] writes one to a file). The call returns
    /// once the member has encoded the backup, within the client's timeout; the stream then
    /// has no deadline of its own.
    ///
    /// # Errors
    /// `RESOURCE_EXHAUSTED` / `BACKUP_IN_PROGRESS` while another backup of that member runs;
    /// `UNAVAILABLE` without quorum; transport errors.
    pub async fn backup(&self) -> Result<tonic::Streaming<pb::BackupChunk>, ClientError> {
        let max = self.max_message_size();
        self.unary(
            Retry::Idempotent,
            pb::BackupRequest {},
            move |ch, r| async move {
                MaintenanceClient::new(ch)
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max)
                    .backup(r)
                    .await
            },
        )
        .await
    }

    /// The write path's stage timings of the member this client is connected to (see
    /// `Cluster.Stages`); `reset` empties them after reading.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn stages(&self, reset: bool) -> Result<StagesResponse, ClientError> {
        let max = self.max_message_size();
        self.unary(
            Retry::Idempotent,
            pb::StagesRequest { reset },
            move |ch, r| async move { cluster(ch, max).stages(r).await },
        )
        .await
    }

    /// A page of the watches registered on the member this client is connected to (see
    /// `Cluster.Watches`): paths starting with `prefix`, after watch id `after` (0: first).
    ///
    /// # Errors
    /// `RESOURCE_EXHAUSTED` / `OVERLOADED` beyond a few listings a second (the client waits
    /// and asks again within its deadline), transport errors.
    pub async fn watches(
        &self,
        prefix: &str,
        page_size: u32,
        after: u64,
    ) -> Result<WatchesResponse, ClientError> {
        let max = self.max_message_size();
        let req = pb::WatchesRequest {
            prefix: prefix.to_string(),
            page_size,
            after_watch_id: after,
        };
        self.unary(Retry::Idempotent, req, move |ch, r| async move {
            cluster(ch, max).watches(r).await
        })
        .await
    }

    /// Changes the log filter of the member this client is connected to (`RUST_LOG` syntax)
    /// and returns the previous one.
    ///
    /// # Errors
    /// `BAD_ARGUMENTS` for an invalid filter, `UNAVAILABLE` for a member whose process does
    /// not use Baton's logger, transport errors.
    pub async fn set_log_level(&self, filter: &str) -> Result<String, ClientError> {
        let max = self.max_message_size();
        let req = pb::SetLogLevelRequest {
            filter: filter.to_string(),
        };
        let r = self
            .unary(Retry::Idempotent, req, move |ch, r| async move {
                cluster(ch, max).set_log_level(r).await
            })
            .await?;
        Ok(r.previous)
    }

    /// Hands the cluster's leadership over to voter `to` (the leader runs it, whichever
    /// member the client uses); returns the leader and term afterwards.
    ///
    /// # Errors
    /// `BAD_ARGUMENTS` if `to` is not a voter; `UNAVAILABLE` if the target did not catch up
    /// or win in time (the cluster then elects as usual); transport errors.
    pub async fn transfer_leader(&self, to: u64) -> Result<(u64, u64), ClientError> {
        let max = self.max_message_size();
        let r = self
            .unary(
                Retry::Idempotent,
                pb::TransferLeaderRequest { to },
                move |ch, r| async move { cluster(ch, max).transfer_leader(r).await },
            )
            .await?;
        Ok((r.leader_id, r.term))
    }

    // ----- plumbing -----

    fn max_message_size(&self) -> usize {
        self.shared.options.max_message_size
    }

    /// The current endpoint's index and channel.
    fn current(&self) -> (usize, Channel) {
        let n = self.shared.channels.len();
        let i = self.shared.current.load(Ordering::Relaxed) % n;
        (i, self.shared.channels[i].clone())
    }

    /// Moves the current endpoint past `failed`, unless another call already moved it.
    fn fail_over(&self, failed: usize) {
        let n = self.shared.channels.len();
        let _ = self.shared.current.compare_exchange(
            failed,
            (failed + 1) % n,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Sends a unary call with the client's deadline, failing over to the next endpoint on
    /// `UNAVAILABLE` (and on a timeout, without retrying) as `retry` allows. Each endpoint is
    /// tried at most once, except with [`Retry::Once`] (see [`Client::unary_once`]).
    async fn unary<Req, Resp, F, Fut>(
        &self,
        retry: Retry,
        req: Req,
        call: F,
    ) -> Result<Resp, ClientError>
    where
        Req: Clone,
        F: Fn(Channel, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let retry = match retry {
            Retry::Once if self.shared.options.request_ids => {
                return self.unary_once(req, call).await
            }
            Retry::Once => Retry::IfNotApplied,
            r => r,
        };
        let deadline = Instant::now() + self.timeout;
        let attempts = self.shared.channels.len();
        let mut last = None;
        let mut tried = 0;
        let mut pause = OVERLOAD_PAUSE;
        while tried < attempts {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            let (index, channel) = self.current();
            let mut request = self.request(req.clone());
            request.set_timeout(remaining);
            match tokio::time::timeout_at(deadline, call(channel, request)).await {
                Err(_) => {
                    self.fail_over(index);
                    return Err(ClientError::Timeout(self.timeout));
                }
                Ok(Ok(resp)) => return Ok(resp.into_inner()),
                Ok(Err(status))
                    if crate::error::status_reason(&status) == Some(Reason::Overloaded) =>
                {
                    // Shed before it was looked at: safe to send again, after a pause that
                    // grows while the member stays overloaded.
                    let jitter = rand::random::<f64>() * 0.5 + 0.75;
                    tokio::time::sleep(pause.mul_f64(jitter).min(remaining)).await;
                    pause = (pause * 2).min(OVERLOAD_PAUSE_MAX);
                    last = Some(status);
                }
                Ok(Err(status)) => {
                    tried += 1;
                    // A connection reset or closed under the call (the member died) moves the
                    // client to the next endpoint like UNAVAILABLE does; a write whose call
                    // broke that way is not sent again (it may have been applied), it is
                    // reported as it is.
                    if status.code() != Code::Unavailable && !error::is_connection_error(&status) {
                        return Err(status.into());
                    }
                    self.fail_over(index);
                    if retry == Retry::IfNotApplied && !error::not_applied(&status) {
                        return Err(status.into());
                    }
                    last = Some(status);
                }
            }
        }
        Err(match last {
            Some(status) => status.into(),
            None => ClientError::Timeout(self.timeout),
        })
    }

    /// Sends a znode write with a request id (one sequence number for all its attempts) until
    /// it is answered or the deadline passes. An attempt whose outcome is unknown is sent
    /// again with the same id: `OUTCOME_UNKNOWN` (on the same member, which finds the new
    /// leader), a broken connection, `UNAVAILABLE` or no reply within
    /// [`ClientOptions::write_attempt_timeout`] (on the next member). The cluster applies the id at most once and answers a copy with
    /// the original result, so every answer is the write's own.
    async fn unary_once<Req, Resp, F, Fut>(&self, req: Req, call: F) -> Result<Resp, ClientError>
    where
        Req: Clone,
        F: Fn(Channel, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let deadline = Instant::now() + self.timeout;
        let per_attempt = self.shared.options.write_attempt_timeout.max(ATTEMPT_MIN);
        let id = self.shared.ids.start();
        let mut last: Option<ClientError> = None;
        // Whether an attempt may have been applied: then a later "not applied" answer
        // (UNAVAILABLE, a refused connection) speaks only for its own copy.
        let mut maybe_applied = false;
        let mut pause = OVERLOAD_PAUSE;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            let attempt = per_attempt.min(remaining);
            let (index, channel) = self.current();
            let mut request = self.request(req.clone());
            request.set_timeout(attempt);
            id.stamp(&mut request);
            let outcome =
                tokio::time::timeout_at(Instant::now() + attempt, call(channel, request)).await;
            let move_on = match outcome {
                Ok(Ok(resp)) => return Ok(resp.into_inner()),
                Err(_) => {
                    maybe_applied = true;
                    last = Some(ClientError::Timeout(self.timeout));
                    true
                }
                Ok(Err(status)) => {
                    let reason = crate::error::status_reason(&status);
                    let unknown = matches!(
                        reason,
                        Some(Reason::OutcomeUnknown | Reason::Overloaded | Reason::Unavailable)
                    ) || (reason.is_none()
                        && matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled));
                    let broken =
                        status.code() == Code::Unavailable || error::is_connection_error(&status);
                    if !unknown && !broken {
                        return Err(status.into());
                    }
                    let same_member =
                        matches!(reason, Some(Reason::OutcomeUnknown | Reason::Overloaded));
                    if !error::not_applied(&status) && reason != Some(Reason::Overloaded) {
                        maybe_applied = true;
                    }
                    last = Some(status.into());
                    !same_member
                }
            };
            if move_on {
                self.fail_over(index);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let jitter = rand::random::<f64>() * 0.5 + 0.75;
            tokio::time::sleep(pause.mul_f64(jitter).min(remaining)).await;
            pause = (pause * 2).min(OVERLOAD_PAUSE_MAX);
        }
        Err(match last {
            // Every attempt was refused before it was applied: so was the write.
            Some(e) if !maybe_applied => e,
            // The last attempt's outcome is itself unknown: report it as it is.
            Some(ClientError::Status(s)) if !error::not_applied(&s) => ClientError::Status(s),
            // An earlier attempt may have been applied: the outcome is unknown.
            _ => ClientError::Timeout(self.timeout),
        })
    }
}

/// Shortest wait for one attempt of a write with a request id.
const ATTEMPT_MIN: Duration = Duration::from_millis(50);
/// First pause before a request shed by an overloaded member is sent again.
const OVERLOAD_PAUSE: Duration = Duration::from_millis(10);
/// Longest pause between resends of a shed request.
const OVERLOAD_PAUSE_MAX: Duration = Duration::from_millis(500);

fn configure(endpoint: Endpoint, options: &ClientOptions) -> Endpoint {
    endpoint
        .connect_timeout(options.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
}

fn znodes(channel: Channel, max: usize) -> ZNodesClient<Channel> {
    ZNodesClient::new(channel)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max)
}

fn sessions(channel: Channel, max: usize) -> SessionsClient<Channel> {
    SessionsClient::new(channel)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max)
}

fn cluster(channel: Channel, max: usize) -> ClusterClient<Channel> {
    ClusterClient::new(channel)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max)
}

/// An error and its sources on one line (`transport error: tcp connect error: refused`).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        source = e.source();
    }
    out
}
