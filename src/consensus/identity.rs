//! Which cluster a member belongs to, so that members of two clusters never take each other's
//! votes or entries: a restored cluster must not be joined, or disturbed, by a member of the
//! cluster its backup came from, nor two clusters that share addresses by accident.
//!
//! Each data directory records two things in `raft_meta`:
//! - the member record (`baton_cluster`): the id and the initial member list the directory was
//!   created with, checked at every start (a member started with other flags stops at once);
//! - the cluster id (`baton_cluster_id`, a random or derived non-zero 64-bit number): chosen by
//!   the member that initialises a new cluster, derived from the backup and the new member
//!   list by a restore (so every restored member records the same one), and *adopted* by a
//!   member that joins: a member that has never voted nor logged anything takes the id of the
//!   first peer that contacts it. Data directories created before cluster ids existed have
//!   none, and keep working with peers that send none.
//!
//! Every peer RPC carries the sender's cluster id in the `baton-cluster-id` header
//! ([`ClusterStamp`], on the outgoing channels). [`ClusterCheck`] wraps the peer service and
//! refuses, with `FAILED_PRECONDITION` / `CLUSTER_MISMATCH`, a request whose id differs from
//! the member's, or that carries none when the member has one, or that carries one when the
//! member has none but has already voted or logged (a member of a cluster without ids).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tonic::body::Body;
use tonic::codegen::http;
use tonic::metadata::MetadataValue;
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::Service;

use super::Raft;
use crate::error::BatonError;
use crate::store::{Store, StoreError};
use crate::tls::PeerMember;

/// Key in `raft_meta` of the member record: `id=<id>;members=<initial member list>`.
pub const MEMBER_RECORD_KEY: &[u8] = b"baton_cluster";
/// Key in `raft_meta` of the cluster id (8 bytes, big-endian).
pub const CLUSTER_ID_KEY: &[u8] = b"baton_cluster_id";
/// The request header that carries the sender's cluster id (16 lower-case hex digits).
pub const CLUSTER_ID_HEADER: &str = "baton-cluster-id";

/// The initial member list as recorded and logged: `id=addr,...` in id order, or
/// `<id> (single member)` when there is none.
pub fn member_list(id: u64, initial_members: &BTreeMap<u64, String>) -> String {
    if initial_members.is_empty() {
        format!("{id} (single member)")
    } else {
        initial_members
            .iter()
            .map(|(id, addr)| format!("{id}={addr}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The member record of member `id` created with `member_list` (see [`member_list`]).
pub fn member_record(id: u64, member_list: &str) -> String {
    format!("id={id};members={member_list}")
}

/// A cluster id as written in headers and shown to operators.
pub fn format_id(id: u64) -> String {
    format!("{id:016x}")
}

fn parse_id(s: &str) -> Option<u64> {
    (s.len() == 16)
        .then(|| u64::from_str_radix(s, 16).ok())
        .flatten()
        .filter(|&id| id != 0)
}

/// A fresh random cluster id (never 0, which stands for "none").
pub fn random_id() -> u64 {
    loop {
        let id = rand::random::<u64>();
        if id != 0 {
            return id;
        }
    }
}

/// A cluster id derived from `parts` (FNV-1a, 64 bits; stable across builds and platforms),
/// never 0: every member restored from the same backup with the same member list and token
/// derives the same id without talking to the others.
pub fn derived_id(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in (part.len() as u64).to_be_bytes().iter().chain(part.iter()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h.max(1)
}

/// Reads the cluster id recorded in a store (`None` for a directory that has none yet).
///
/// # Errors
/// sled errors; [`StoreError::Corrupt`] for a record that is not 8 bytes or is 0.
pub fn read_id(store: &Store) -> Result<Option<u64>, StoreError> {
    match store.raft_meta().get(CLUSTER_ID_KEY)? {
        None => Ok(None),
        Some(v) => {
            let b: [u8; 8] = v.as_ref().try_into().map_err(|_| {
                StoreError::Corrupt(format!("the cluster id record has {} bytes", v.len()))
            })?;
            match u64::from_be_bytes(b) {
                0 => Err(StoreError::Corrupt("the cluster id record is 0".into())),
                id => Ok(Some(id)),
            }
        }
    }
}

/// Records a cluster id in a store and flushes it durably.
///
/// # Errors
/// sled or I/O errors.
pub fn write_id(store: &Store, id: u64) -> Result<(), StoreError> {
    store
        .raft_meta()
        .insert(CLUSTER_ID_KEY, &id.to_be_bytes())?;
    store.durable_flush()
}

/// The cluster id of a running member, shared by its outgoing channels ([`ClusterStamp`]) and
/// its peer service ([`ClusterCheck`]).
pub struct ClusterIdentity {
    /// The id, 0 while the member has none.
    id: AtomicU64,
    /// Serialises adopting an id (the first contact wins).
    adopt: tokio::sync::Mutex<()>,
    /// Where the id is recorded (`None`: kept in memory only).
    store: Option<Store>,
    /// When a refusal was last logged (refusals repeat at the heartbeat rate).
    last_warned: Mutex<Option<Instant>>,
}

impl ClusterIdentity {
    /// The identity recorded in `store`.
    ///
    /// # Errors
    /// As [`read_id`].
    pub fn load(store: &Store) -> Result<Arc<ClusterIdentity>, StoreError> {
        Ok(Arc::new(ClusterIdentity {
            id: AtomicU64::new(read_id(store)?.unwrap_or(0)),
            adopt: tokio::sync::Mutex::new(()),
            store: Some(store.clone()),
            last_warned: Mutex::new(None),
        }))
    }

    /// An identity kept in memory only, never recorded (tools and tests).
    pub fn detached(id: Option<u64>) -> Arc<ClusterIdentity> {
        Arc::new(ClusterIdentity {
            id: AtomicU64::new(id.unwrap_or(0)),
            adopt: tokio::sync::Mutex::new(()),
            store: None,
            last_warned: Mutex::new(None),
        })
    }

    fn record(&self, id: u64) -> Result<(), StoreError> {
        match &self.store {
            Some(store) => write_id(store, id),
            None => Ok(()),
        }
    }

    /// The cluster id, if the member has one.
    pub fn id(&self) -> Option<u64> {
        match self.id.load(Ordering::SeqCst) {
            0 => None,
            id => Some(id),
        }
    }

    /// Gives a member that is about to initialise a new cluster a fresh random id (kept if it
    /// already has one), recorded durably before it returns. Blocking (a flush).
    ///
    /// # Errors
    /// sled or I/O errors.
    pub fn create(&self) -> Result<u64, StoreError> {
        if let Some(id) = self.id() {
            return Ok(id);
        }
        let id = random_id();
        self.record(id)?;
        self.id.store(id, Ordering::SeqCst);
        Ok(id)
    }

    /// Decides whether a peer request carrying `theirs` may be served by this member. A member
    /// without an id that has never voted nor logged anything adopts `theirs` (recorded
    /// durably first).
    ///
    /// # Errors
    /// `CLUSTER_MISMATCH` when it may not; `INTERNAL` if an adopted id cannot be recorded.
    pub async fn admit(&self, theirs: Option<u64>, raft: &Raft) -> Result<(), BatonError> {
        let mine = self.id();
        match (mine, theirs) {
            (Some(m), Some(t)) if m == t => Ok(()),
            (None, None) => Ok(()),
            (None, Some(t)) => self.adopt(t, raft).await,
            (Some(_), _) => Err(self.refuse(theirs)),
        }
    }

    async fn adopt(&self, theirs: u64, raft: &Raft) -> Result<(), BatonError> {
        let _one = self.adopt.lock().await;
        match self.id() {
            Some(m) if m == theirs => return Ok(()),
            Some(_) => return Err(self.refuse(Some(theirs))),
            None => {}
        }
        let pristine = {
            let m = raft.metrics();
            let m = m.borrow();
            m.last_log_index.is_none() && m.vote == openraft::Vote::default()
        };
        if !pristine {
            return Err(self.refuse(Some(theirs)));
        }
        if let Some(store) = self.store.clone() {
            tokio::task::spawn_blocking(move || write_id(&store, theirs))
                .await
                .map_err(|e| BatonError::Internal(format!("recording the cluster id: {e}")))?
                .map_err(|e| BatonError::Internal(format!("recording the cluster id: {e}")))?;
        }
        self.id.store(theirs, Ordering::SeqCst);
        tracing::info!(
            cluster_id = %format_id(theirs),
            "joined a cluster: recorded its id"
        );
        Ok(())
    }

    /// Logs a refused sender (rate-limited like refusals of other clusters).
    fn refuse_sender(&self, status: &tonic::Status) {
        let mut last = self
            .last_warned
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            *last = Some(Instant::now());
            tracing::warn!(error = %status.message(), "refused a peer request");
        }
    }

    fn refuse(&self, theirs: Option<u64>) -> BatonError {
        let err = BatonError::ClusterMismatch {
            mine: self.id().map_or_else(|| "none".to_string(), format_id),
            theirs: theirs.map_or_else(|| "none".to_string(), format_id),
        };
        let mut last = self
            .last_warned
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            *last = Some(Instant::now());
            tracing::warn!(error = %err, "refused a peer request from another cluster");
        }
        err
    }
}

/// The request header that carries the id of the member that sends a peer request; on a TLS
/// peer port it must be the member named by the sender's certificate.
pub const MEMBER_ID_HEADER: &str = "baton-member-id";

/// Puts the member's cluster id (none while it has none) and its member id on every outgoing
/// peer request.
#[derive(Clone)]
pub struct ClusterStamp {
    identity: Arc<ClusterIdentity>,
    member: MetadataValue<tonic::metadata::Ascii>,
}

impl ClusterStamp {
    /// Stamps the requests of member `my_id` of the cluster `identity`.
    pub fn new(identity: Arc<ClusterIdentity>, my_id: u64) -> Self {
        ClusterStamp {
            identity,
            member: MetadataValue::from(my_id),
        }
    }
}

impl tonic::service::Interceptor for ClusterStamp {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut()
            .insert(MEMBER_ID_HEADER, self.member.clone());
        if let Some(id) = self.identity.id() {
            if let Ok(v) = MetadataValue::try_from(format_id(id)) {
                req.metadata_mut().insert(CLUSTER_ID_HEADER, v);
            }
        }
        Ok(req)
    }
}

/// The peer service behind the cluster check: every request is admitted by
/// [`ClusterIdentity::admit`] before it reaches `inner`. On a TLS peer port it first checks
/// the sender: its certificate must name a member ([`crate::tls::member_id`]) and that member
/// must be the one the `baton-member-id` header claims; the proven id goes to `inner` as a
/// [`PeerMember`] request extension, which the peer service compares with the sender ids in
/// request bodies.
#[derive(Clone)]
pub struct ClusterCheck<S> {
    inner: S,
    identity: Arc<ClusterIdentity>,
    raft: Raft,
    member_certs: bool,
}

/// The member proven by the certificate of the connection `req` came on, or why there is none.
fn proven_member(req: &http::Request<Body>) -> Result<u64, tonic::Status> {
    let certs = req
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.peer_certs());
    let leaf = certs.as_ref().and_then(|c| c.first()).ok_or_else(|| {
        tonic::Status::unauthenticated("the peer port needs a member certificate")
    })?;
    let proven = crate::tls::member_id(leaf).ok_or_else(|| {
        tonic::Status::permission_denied(format!(
            "the peer certificate names no member (SAN URI {}<id>)",
            crate::tls::MEMBER_URI_PREFIX
        ))
    })?;
    let claimed = req
        .headers()
        .get(MEMBER_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match claimed {
        Some(c) if c == proven => Ok(proven),
        Some(c) => Err(tonic::Status::permission_denied(format!(
            "member {proven}'s certificate used for a request from member {c}"
        ))),
        None => Err(tonic::Status::permission_denied(format!(
            "a peer request without a readable {MEMBER_ID_HEADER} header"
        ))),
    }
}

impl<S> ClusterCheck<S> {
    /// Wraps the peer service `inner` of a member with `identity`.
    pub fn new(inner: S, identity: Arc<ClusterIdentity>, raft: Raft) -> Self {
        ClusterCheck {
            inner,
            identity,
            raft,
            member_certs: false,
        }
    }

    /// Requires (`true`) member certificates on every request (the peer port over TLS).
    pub fn require_member_certs(mut self, required: bool) -> Self {
        self.member_certs = required;
        self
    }
}

impl<S: NamedService> NamedService for ClusterCheck<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for ClusterCheck<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        // The ready service must be the one called (tower's contract); keep a fresh clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if self.member_certs {
            match proven_member(&req) {
                Ok(id) => {
                    req.extensions_mut().insert(PeerMember(id));
                }
                Err(status) => {
                    self.identity.refuse_sender(&status);
                    return Box::pin(async move { Ok(status.into_http()) });
                }
            }
        }
        let identity = self.identity.clone();
        let raft = self.raft.clone();
        let theirs = req
            .headers()
            .get(CLUSTER_ID_HEADER)
            .map(|v| v.to_str().ok().and_then(parse_id));
        Box::pin(async move {
            let admitted = match theirs {
                // Present but unreadable: never equal to any id.
                Some(None) => Err(BatonError::ClusterMismatch {
                    mine: identity.id().map_or_else(|| "none".to_string(), format_id),
                    theirs: "unreadable".to_string(),
                }),
                Some(Some(id)) => identity.admit(Some(id), &raft).await,
                None => identity.admit(None, &raft).await,
            };
            match admitted {
                Ok(()) => inner.call(req).await,
                Err(e) => Ok(e.to_status().into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_the_header_form() {
        for id in [1, 0xdead_beef, u64::MAX] {
            assert_eq!(parse_id(&format_id(id)), Some(id));
        }
        assert_eq!(parse_id("0000000000000000"), None);
        assert_eq!(parse_id("xyz"), None);
        assert_eq!(parse_id("1"), None);
    }

    #[test]
    fn derived_ids_depend_on_every_part_and_its_boundaries() {
        let a = derived_id(&[b"backup", b"1=a:1,2=b:2"]);
        assert_eq!(a, derived_id(&[b"backup", b"1=a:1,2=b:2"]));
        assert_ne!(a, derived_id(&[b"backup", b"1=a:1,2=b:3"]));
        assert_ne!(a, derived_id(&[b"backu", b"p1=a:1,2=b:2"]));
        assert_ne!(derived_id(&[]), 0);
    }

    #[test]
    fn member_records_match_the_flags() {
        let mut m = BTreeMap::new();
        assert_eq!(member_list(3, &m), "3 (single member)");
        m.insert(2, "h:2".to_string());
        m.insert(1, "h:1".to_string());
        assert_eq!(
            member_record(1, &member_list(1, &m)),
            "id=1;members=1=h:1,2=h:2"
        );
    }
}
