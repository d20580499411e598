//! Locks, read/write locks, semaphores and leader elections served by the cluster
//! (`baton.v1.Locks` and `baton.v1.Elections`).
//!
//! A lock is held by a [`Session`]: the grant lasts until it is released or the session ends
//! (closed, or expired because its keepalives stopped). Every grant carries a *fencing token*
//! that strictly increases across holders of a lock path; pass it with
//! [`MultiOps::check_fence`] so that a write commits only while the lock is still held:
//!
//! ```no_run
//! use std::time::Duration;
//! use baton::client::{Client, LockOptions, MultiOps};
//!
//! # async fn example() -> Result<(), baton::client::ClientError> {
//! let client = Client::connect(["127.0.0.1:7420"]).await?;
//! let session = client.open_session(Duration::from_secs(10)).await?;
//! let guard = client.lock("/locks/db", &session, LockOptions::exclusive()).await?;
//! let (data, stat) = client.get_data("/counter").await?;
//! let ops = MultiOps::new()
//!     .check_fence(guard.lock_node(), guard.fencing_token())
//!     .set_data("/counter", b"42".to_vec(), stat.version);
//! let outcome = client.multi(ops).await?;
//! assert!(outcome.succeeded, "not applied: the lock was lost meanwhile");
//! guard.release().await?;
//! # Ok(())
//! # }
//! ```
//!
//! A call that fails after it may have queued a contender (connection lost, member stopped,
//! reply timed out) leaves no stray queue place behind for long: the library removes the
//! contenders of that session on that path that no live [`LockGuard`] or [`Leadership`] of
//! this process owns, once no other acquire of the same session on the same path is under
//! way. Contenders of other processes sharing the session are not known to it.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::codec::Streaming;
use tonic::transport::Channel;
use tonic::{Code, Request};

use super::{error, Client, ClientError, MultiOps, Reason, Retry, Session, SessionState};
use crate::proto::v1::elections_client::ElectionsClient;
use crate::proto::v1::locks_client::LocksClient;
use crate::proto::v1::{self as pb};

pub use crate::proto::v1::{Contender, InspectResponse, LeaderResponse, LockMode};

/// Longest wait the server grants an Acquire or a Campaign (its `wait_timeout_ms` 0).
pub const MAX_LOCK_WAIT: Duration = Duration::from_secs(300);

/// How to ask for a lock: mode, semaphore permits, how long to wait, and data stored in the
/// contender's node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LockOptions {
    /// `EXCLUSIVE` (a mutex, the default) or `SHARED` (read lock).
    pub mode: LockMode,
    /// If > 0, a counting semaphore with this many permits (`mode` is then ignored).
    pub permits: u32,
    /// How long [`Client::lock`] waits in the queue; `None` = the server's maximum
    /// ([`MAX_LOCK_WAIT`]). Ignored by [`Client::try_lock`].
    pub wait: Option<Duration>,
    /// Data stored in the contender's node (e.g. who holds it), shown by
    /// [`Client::inspect`].
    pub data: Vec<u8>,
}

impl LockOptions {
    /// An exclusive lock (mutex).
    pub fn exclusive() -> Self {
        Self::default()
    }

    /// A shared lock: held together with other shared holders, never with an exclusive one.
    pub fn shared() -> Self {
        LockOptions {
            mode: LockMode::Shared,
            ..Self::default()
        }
    }

    /// A counting semaphore with `permits` permits.
    pub fn semaphore(permits: u32) -> Self {
        LockOptions {
            permits,
            ..Self::default()
        }
    }

    /// The same options, waiting at most `wait` in the queue.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }

    /// The same options, with `data` stored in the contender's node.
    pub fn data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.data = data.into();
        self
    }

    fn request(&self, path: &str, session_id: u64) -> pb::AcquireRequest {
        pb::AcquireRequest {
            path: path.to_string(),
            session_id,
            wait_timeout_ms: self.wait.map_or(0, wait_ms),
            mode: self.mode as i32,
            permits: self.permits,
            data: self.data.clone(),
        }
    }
}

/// Milliseconds of a wait, at least 1 (0 means "the server's maximum" on the wire).
fn wait_ms(wait: Duration) -> i64 {
    i64::try_from(wait.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// A granted lock. It is released by [`LockGuard::release`], or — without waiting for the
/// answer — when the guard is dropped (inside a Tokio runtime), or by the server when the
/// owning session ends.
///
/// Holding a guard does not prove the lock is still held: the session may have expired (see
/// [`LockGuard::lost`]). Make writes conditional on the lock with
/// [`MultiOps::check_fence`].
pub struct LockGuard {
    client: Client,
    lock_path: String,
    lock_node: String,
    token: u64,
    session_id: u64,
    state: watch::Receiver<SessionState>,
    /// Set once released (by `release`), so `Drop` does nothing.
    done: bool,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("lock_node", &self.lock_node)
            .field("fencing_token", &self.token)
            .field("session_id", &format_args!("{:#x}", self.session_id))
            .finish_non_exhaustive()
    }
}

impl LockGuard {
    /// The contender node that holds the lock (`<path>/lock-NNNNNNNNNN`).
    pub fn lock_node(&self) -> &str {
        &self.lock_node
    }

    /// The lock path.
    pub fn lock_path(&self) -> &str {
        &self.lock_path
    }

    /// The fencing token: strictly increasing across the holders of this lock path.
    pub fn fencing_token(&self) -> u64 {
        self.token
    }

    /// The owning session's id.
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// Resolves when the owning session is no longer alive (lost, closed, or its
    /// [`Session`] dropped, which stops its keepalives), with the session's last state: from
    /// then on the lock may be granted to someone else. Resolves at once if that already
    /// happened. The future does not borrow the guard.
    pub fn lost(&self) -> impl Future<Output = SessionState> + Send + 'static {
        let mut rx = self.state.clone();
        async move {
            let seen = rx.wait_for(|s| !s.is_alive()).await.map(|s| s.clone());
            match seen {
                Ok(s) => s,
                Err(_) => match rx.borrow().clone() {
                    SessionState::Alive => SessionState::Lost {
                        reason: "the session was dropped; its keepalives stopped".to_string(),
                    },
                    other => other,
                },
            }
        }
    }

    /// Whether the owning session is still alive as far as this client knows.
    pub fn is_session_alive(&self) -> bool {
        self.state.borrow().is_alive() && self.state.has_changed().is_ok()
    }

    /// Releases the lock (deletes the contender node) and waits for the answer.
    ///
    /// # Errors
    /// `NO_NODE` if the node is already gone (the session ended, so the lock was lost
    /// earlier), `NOT_OWNER`, transport errors.
    pub async fn release(mut self) -> Result<(), ClientError> {
        self.done = true;
        registry_forget(self.session_id, &self.lock_path, &self.lock_node);
        self.client
            .release_node(&self.lock_node, self.session_id)
            .await
            .map(drop)
    }

    /// Gives up the guard without releasing the lock: it stays held until
    /// [`Client::release`] is called with the returned node and session id, or the session
    /// ends. Returns `(lock_node, fencing_token)`.
    pub fn leak(mut self) -> (String, u64) {
        // The node stays registered as held, so no stray cleanup of this process removes it.
        self.done = true;
        (std::mem::take(&mut self.lock_node), self.token)
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        registry_forget(self.session_id, &self.lock_path, &self.lock_node);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return; // No runtime: the lock goes when the session ends.
        };
        let client = self.client.clone();
        let node = std::mem::take(&mut self.lock_node);
        let session_id = self.session_id;
        rt.spawn(async move {
            if let Err(e) = client.release_node(&node, session_id).await {
                if !e.is(Reason::NoNode) {
                    tracing::warn!(node, error = %e, "releasing a dropped lock guard failed");
                }
            }
        });
    }
}

/// A won election: this candidate leads with `term`, a fencing token for
/// [`MultiOps::check_fence`]. Leadership lasts until [`Client::resign`] or the end of the
/// session; dropping this value does not resign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leadership {
    /// The election path.
    pub path: String,
    /// The leader's candidate node.
    pub leader_node: String,
    /// The term: strictly increasing across the leaders of this election.
    pub term: u64,
    /// The owning session's id.
    pub session_id: u64,
}

/// The changes of leader of an election, from [`Client::observe`]: first the current
/// leader (or none: `has_leader == false`), then every change in order. It ends after an
/// error (member down, observer too slow); observing again starts from the then-current
/// leader, so changes in between are not seen.
pub struct LeaderStream {
    inner: Streaming<LeaderResponse>,
    endpoint: String,
    failed: bool,
}

impl std::fmt::Debug for LeaderStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderStream")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl LeaderStream {
    /// The endpoint serving the stream.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The next leader change; `Ok(None)` when the server ended the stream.
    ///
    /// # Errors
    /// The status that ended the stream (`UNAVAILABLE` when the member shuts down,
    /// `RESOURCE_EXHAUSTED` when the observer fell behind), transport errors.
    pub async fn next_leader(&mut self) -> Result<Option<LeaderResponse>, ClientError> {
        if self.failed {
            return Ok(None);
        }
        match self.inner.message().await {
            Ok(m) => Ok(m),
            Err(s) => {
                self.failed = true;
                Err(s.into())
            }
        }
    }
}

impl Stream for LeaderStream {
    type Item = Result<LeaderResponse, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Err(s))) => {
                self.failed = true;
                Poll::Ready(Some(Err(s.into())))
            }
            Poll::Ready(Some(Ok(m))) => Poll::Ready(Some(Ok(m))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl MultiOps {
    /// Fails the Multi with `BAD_FENCE` unless `lock_node` holds its lock now with fencing
    /// token `token` ([`LockGuard::lock_node`] and [`LockGuard::fencing_token`], or a
    /// [`Leadership`]'s `leader_node` and `term`).
    pub fn check_fence(self, lock_node: &str, token: u64) -> Self {
        self.op(pb::Op {
            op: Some(pb::op::Op::CheckFence(pb::CheckFenceOp {
                lock_node: lock_node.to_string(),
                token,
            })),
        })
    }
}

impl Client {
    // ----- locks -----

    /// Queues for the lock at `path` for `session` and waits until it is granted, or
    /// `options.wait` passes. The lock path is created as a container node if missing.
    ///
    /// The call's own deadline is the wait plus the client's timeout. If the call is dropped
    /// while waiting, the server gives the queue place up.
    ///
    /// # Errors
    /// `DEADLINE_EXCEEDED` if not granted within the wait (the queue place is given up);
    /// `SESSION_EXPIRED` if the session is gone (or ends while waiting; the session is then
    /// marked lost at once); `NO_NODE` if another client deleted the queue place while it
    /// waited; `INVALID_PATH`,
    /// `BAD_ARGUMENTS` (root path, no session, unknown mode), `NO_AUTH` (under `/baton`),
    /// `TOO_LARGE` (data), transport errors.
    pub async fn lock(
        &self,
        path: &str,
        session: &Session,
        options: LockOptions,
    ) -> Result<LockGuard, ClientError> {
        let req = options.request(path, session.id());
        let resp = self
            .enqueue(path, session.id(), Queue::Lock { wait: true }, req)
            .await
            .inspect_err(|e| session.note_error(e))?;
        Ok(self.guard(path, session, resp.0, resp.1))
    }

    /// Takes the lock at `path` for `session` only if it can be granted at once.
    ///
    /// # Errors
    /// `LOCK_HELD` (code `FAILED_PRECONDITION`) if someone else holds it or waits before us
    /// (no queue place is kept); otherwise as [`Client::lock`].
    pub async fn try_lock(
        &self,
        path: &str,
        session: &Session,
        options: LockOptions,
    ) -> Result<LockGuard, ClientError> {
        let mut req = options.request(path, session.id());
        req.wait_timeout_ms = 0;
        let resp = self
            .enqueue(path, session.id(), Queue::Lock { wait: false }, req)
            .await
            .inspect_err(|e| session.note_error(e))?;
        Ok(self.guard(path, session, resp.0, resp.1))
    }

    fn guard(&self, path: &str, session: &Session, lock_node: String, token: u64) -> LockGuard {
        LockGuard {
            client: self.clone(),
            lock_path: path.to_string(),
            lock_node,
            token,
            session_id: session.id(),
            state: session.state_receiver(),
            done: false,
        }
    }

    /// Releases a grant or leaves the queue: deletes `lock_node` if `session_id` owns it.
    /// Prefer [`LockGuard::release`]; this is for nodes whose guard was
    /// [leaked](LockGuard::leak) or that another process acquired.
    ///
    /// # Errors
    /// `NO_NODE`, `NOT_OWNER` (code `PERMISSION_DENIED`) if another session owns the node,
    /// `INVALID_PATH`, `NO_AUTH`, transport errors.
    pub async fn release(
        &self,
        lock_node: &str,
        session_id: u64,
    ) -> Result<pb::ResponseHeader, ClientError> {
        if let Some((path, _)) = lock_node.rsplit_once('/') {
            registry_forget(
                session_id,
                if path.is_empty() { "/" } else { path },
                lock_node,
            );
        }
        self.release_node(lock_node, session_id).await
    }

    async fn release_node(
        &self,
        lock_node: &str,
        session_id: u64,
    ) -> Result<pb::ResponseHeader, ClientError> {
        self.delete_contender(lock_node, session_id, false).await
    }

    /// Release (or Resign, if `resign`): deletes a contender node.
    ///
    /// Transient failures (no leader during an election, member down) are retried on the
    /// next endpoints with a short backoff until the client's timeout: a contender left
    /// behind would hold or block the lock for as long as its session lives. Retrying is
    /// safe because contender names are never reused, and a `NO_NODE` after an attempt that
    /// may have been applied means it was. If the outcome stays unknown, the node is
    /// remembered as a possible stray, removed before or after the next acquire of the
    /// session on its path.
    async fn delete_contender(
        &self,
        lock_node: &str,
        session_id: u64,
        resign: bool,
    ) -> Result<pb::ResponseHeader, ClientError> {
        let max = self.max_message_size();
        let maybe_applied = AtomicBool::new(false);
        let flag = &maybe_applied;
        let deadline = Instant::now() + self.timeout;
        let result = retry_transient(
            deadline,
            |client| async move {
                if resign {
                    let req = pb::ResignRequest {
                        leader_node: lock_node.to_string(),
                        session_id,
                    };
                    client
                        .unary(Retry::Idempotent, req, move |ch, r| async move {
                            let res = elections(ch, max).resign(r).await;
                            note_maybe_applied(flag, &res);
                            res
                        })
                        .await
                        .map(|r| r.header)
                } else {
                    let req = pb::ReleaseRequest {
                        lock_node: lock_node.to_string(),
                        session_id,
                    };
                    client
                        .unary(Retry::Idempotent, req, move |ch, r| async move {
                            let res = locks(ch, max).release(r).await;
                            note_maybe_applied(flag, &res);
                            res
                        })
                        .await
                        .map(|r| r.header)
                }
            },
            self,
        )
        .await;
        match result {
            Ok(header) => Ok(header.unwrap_or_default()),
            Err(e) if e.is(Reason::NoNode) && maybe_applied.load(Ordering::Relaxed) => {
                Ok(pb::ResponseHeader::default())
            }
            Err(e) => {
                let definite = matches!(
                    e.reason(),
                    Some(
                        Reason::NoNode
                            | Reason::NotOwner
                            | Reason::InvalidPath
                            | Reason::NoAuth
                            | Reason::BadArguments
                    )
                );
                if !definite {
                    if let Some((path, _)) = lock_node.rsplit_once('/') {
                        let path = if path.is_empty() { "/" } else { path };
                        registry_mark_dirty(session_id, path);
                    }
                }
                Err(e)
            }
        }
    }

    /// The holders and the waiters of the lock at `path`, each in queue order
    /// (linearizable). A path that is not a lock has neither.
    ///
    /// # Errors
    /// `INVALID_PATH`, transport errors.
    pub async fn inspect(&self, path: &str) -> Result<InspectResponse, ClientError> {
        let req = pb::InspectRequest {
            path: path.to_string(),
        };
        let max = self.max_message_size();
        self.unary(Retry::Idempotent, req, move |ch, r| async move {
            locks(ch, max).inspect(r).await
        })
        .await
    }

    /// Whether `lock_node` holds its lock now with fencing token `token` (linearizable).
    ///
    /// # Errors
    /// `INVALID_PATH`, transport errors.
    pub async fn validate_fence(&self, lock_node: &str, token: u64) -> Result<bool, ClientError> {
        let req = pb::ValidateFenceRequest {
            lock_node: lock_node.to_string(),
            fencing_token: token,
        };
        let max = self.max_message_size();
        let resp = self
            .unary(Retry::Idempotent, req, move |ch, r| async move {
                locks(ch, max).validate_fence(r).await
            })
            .await?;
        Ok(resp.valid)
    }

    // ----- elections -----

    /// Joins the election at `path` as a candidate of `session` with `value` (published
    /// while it leads, e.g. its address) and waits until it leads, or `wait` passes (`None`
    /// = the server's maximum, [`MAX_LOCK_WAIT`]).
    ///
    /// # Errors
    /// `DEADLINE_EXCEEDED` if it does not lead within the wait (the candidacy is withdrawn);
    /// `SESSION_EXPIRED`; `INVALID_PATH`, `BAD_ARGUMENTS`, `NO_AUTH`, `TOO_LARGE`; transport
    /// errors.
    pub async fn campaign(
        &self,
        path: &str,
        session: &Session,
        value: impl Into<Vec<u8>>,
        wait: Option<Duration>,
    ) -> Result<Leadership, ClientError> {
        let req = pb::CampaignRequest {
            path: path.to_string(),
            session_id: session.id(),
            value: value.into(),
            wait_timeout_ms: wait.map_or(0, wait_ms),
        };
        let (leader_node, term) = self
            .enqueue(path, session.id(), Queue::Campaign, req)
            .await
            .inspect_err(|e| session.note_error(e))?;
        Ok(Leadership {
            path: path.to_string(),
            leader_node,
            term,
            session_id: session.id(),
        })
    }

    /// Replaces the leader's value, only while `leadership` still leads.
    ///
    /// # Errors
    /// `BAD_FENCE` (code `FAILED_PRECONDITION`) if it no longer leads with that term;
    /// `TOO_LARGE`, `INVALID_PATH`, transport errors.
    pub async fn proclaim(
        &self,
        leadership: &Leadership,
        value: impl Into<Vec<u8>>,
    ) -> Result<pb::ResponseHeader, ClientError> {
        let req = pb::ProclaimRequest {
            leader_node: leadership.leader_node.clone(),
            term: leadership.term,
            value: value.into(),
        };
        let max = self.max_message_size();
        let resp = self
            .unary(Retry::IfNotApplied, req, move |ch, r| async move {
                elections(ch, max).proclaim(r).await
            })
            .await?;
        Ok(resp.header.unwrap_or_default())
    }

    /// The current leader of the election at `path` (linearizable); `has_leader` is false
    /// if there is none.
    ///
    /// # Errors
    /// `INVALID_PATH`, transport errors.
    pub async fn leader(&self, path: &str) -> Result<LeaderResponse, ClientError> {
        let req = pb::LeaderRequest {
            path: path.to_string(),
        };
        let max = self.max_message_size();
        self.unary(Retry::Idempotent, req, move |ch, r| async move {
            elections(ch, max).leader(r).await
        })
        .await
    }

    /// Streams the leaders of the election at `path`: the current one first, then every
    /// change in order, never skipping a term; see [`LeaderStream`]. The stream is served by
    /// the current endpoint (the next ones are tried if it is unavailable).
    ///
    /// # Errors
    /// `INVALID_PATH`, transport errors (opening the stream).
    pub async fn observe(&self, path: &str) -> Result<LeaderStream, ClientError> {
        let req = pb::ObserveRequest {
            path: path.to_string(),
        };
        let max = self.max_message_size();
        let deadline = Instant::now() + self.timeout;
        let mut last = None;
        for _ in 0..self.shared.channels.len() {
            let (index, channel) = self.current();
            let mut stub = elections(channel, max);
            let call = stub.observe(self.request(req.clone()));
            match tokio::time::timeout_at(deadline, call).await {
                Err(_) => {
                    self.fail_over(index);
                    return Err(ClientError::Timeout(self.timeout));
                }
                Ok(Ok(resp)) => {
                    return Ok(LeaderStream {
                        inner: resp.into_inner(),
                        endpoint: self.shared.endpoints[index].clone(),
                        failed: false,
                    })
                }
                Ok(Err(status)) => {
                    if status.code() != Code::Unavailable {
                        return Err(status.into());
                    }
                    self.fail_over(index);
                    last = Some(status);
                }
            }
        }
        Err(match last {
            Some(s) => s.into(),
            None => ClientError::Timeout(self.timeout),
        })
    }

    /// Gives up leadership (or a candidacy): deletes the candidate node.
    ///
    /// # Errors
    /// `NO_NODE` if it is already gone (the session ended), `NOT_OWNER`, transport errors.
    pub async fn resign(&self, leadership: &Leadership) -> Result<pb::ResponseHeader, ClientError> {
        registry_forget(
            leadership.session_id,
            &leadership.path,
            &leadership.leader_node,
        );
        self.delete_contender(&leadership.leader_node, leadership.session_id, true)
            .await
    }

    // ----- shared by locks and elections -----

    /// Sends an Acquire, TryAcquire or Campaign (`req` is the matching request) and returns
    /// the granted node and token.
    ///
    /// Like [`Client::unary`] it fails over to the next endpoint when one is unavailable,
    /// and sends the request again only if the server did not apply it. A member that shuts
    /// down while the call waits answers `UNAVAILABLE` after it queued the contender, so
    /// before each retry, and after a failure that may have left a contender behind, the
    /// session's stray contenders on the path are removed (see the module documentation).
    async fn enqueue<R>(
        &self,
        path: &str,
        session_id: u64,
        queue: Queue,
        req: R,
    ) -> Result<(String, u64), ClientError>
    where
        R: Clone + Send + 'static + WaitOf,
        Queue: Caller<R>,
    {
        let wait = match queue {
            Queue::Lock { wait: false } => Duration::ZERO,
            _ => req.wait().unwrap_or(MAX_LOCK_WAIT).min(MAX_LOCK_WAIT),
        };
        // The server answers DEADLINE_EXCEEDED after `wait`; give it the usual time on top.
        let timeout = self.timeout.saturating_add(wait);
        let deadline = Instant::now() + timeout;
        let max = self.max_message_size();
        let (mut inflight, dirty) = Inflight::begin(session_id, path);
        // A stray of an earlier call (e.g. a release whose outcome is unknown) would be
        // queued before this one: remove it first.
        let mut stray = dirty;
        let mut last: Option<tonic::Status> = None;
        let mut result: Option<Result<(String, u64), ClientError>> = None;
        for _ in 0..self.shared.channels.len() {
            if stray {
                // Mid-call: only if no other acquire of this session and path is under way.
                if let Some(held) = inflight.held_if_alone() {
                    self.remove_strays(session_id, path, &held).await;
                }
                stray = false;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            let (index, channel) = self.current();
            let mut request = self.request(req.clone());
            request.set_timeout(remaining);
            match tokio::time::timeout_at(deadline, queue.call(channel, max, request)).await {
                Err(_) => {
                    self.fail_over(index);
                    stray = true;
                    result = Some(Err(ClientError::Timeout(timeout)));
                    break;
                }
                Ok(Ok(resp)) => {
                    result = Some(Ok(resp.into_inner()));
                    break;
                }
                Ok(Err(status)) => {
                    if status.code() != Code::Unavailable {
                        let err = ClientError::from(status);
                        stray = may_have_queued(&err);
                        result = Some(Err(err));
                        break;
                    }
                    self.fail_over(index);
                    stray = true;
                    if !error::not_applied(&status) {
                        result = Some(Err(status.into()));
                        break;
                    }
                    last = Some(status);
                }
            }
        }
        let result = result.unwrap_or_else(|| {
            Err(match last {
                Some(status) => status.into(),
                None => ClientError::Timeout(timeout),
            })
        });
        let granted = result.as_ref().ok().map(|(node, _)| node.as_str());
        if let Some(generation) = inflight.finish(granted, stray) {
            if let Some(held) = registry_held_if_quiet(session_id, path, generation, 0) {
                self.remove_strays(session_id, path, &held).await;
            }
        }
        result
    }

    /// Deletes the contenders of `session_id` at `path` that are not in `held` (the nodes
    /// of this process's live guards and leaderships). On failure, the key stays dirty so
    /// the next acquire tries again.
    async fn remove_strays(&self, session_id: u64, path: &str, held: &HashSet<String>) {
        let deadline = Instant::now() + self.timeout;
        let state = match retry_transient(deadline, |c| async move { c.inspect(path).await }, self)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(path, error = %e, "cannot list lock contenders to remove strays");
                registry_mark_dirty(session_id, path);
                return;
            }
        };
        for c in state.holders.iter().chain(state.waiters.iter()) {
            if c.session_id != session_id || held.contains(&c.lock_node) {
                continue;
            }
            match self.release_node(&c.lock_node, session_id).await {
                Ok(_) => tracing::debug!(node = c.lock_node, "removed a stray lock contender"),
                Err(e) if e.is(Reason::NoNode) => {}
                Err(e) => {
                    tracing::warn!(node = c.lock_node, error = %e, "cannot remove a stray lock contender");
                    registry_mark_dirty(session_id, path);
                }
            }
        }
    }
}

/// Runs `call` with a client whose timeout is the time left until `deadline`, again after
/// transient failures (see [`ClientError::is_retryable`]) with a backoff of 50 ms doubling
/// to 500 ms, until it succeeds, fails otherwise, or the deadline passes (at most 50 tries).
async fn retry_transient<T, F, Fut>(
    deadline: Instant,
    call: F,
    client: &Client,
) -> Result<T, ClientError>
where
    F: Fn(Client) -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut backoff = Duration::from_millis(50);
    let mut last = None;
    for _ in 0..50 {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        match call(client.with_timeout(remaining)).await {
            Err(e) if e.is_retryable() => last = Some(e),
            other => return other,
        }
        let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
    Err(last.unwrap_or(ClientError::Timeout(client.timeout)))
}

/// Notes a failed attempt whose request may have been applied (the server or the
/// connection failed after it was sent).
fn note_maybe_applied<T>(flag: &AtomicBool, res: &Result<T, tonic::Status>) {
    if let Err(s) = res {
        if s.code() == Code::Unavailable && !error::not_applied(s) {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

/// Whether a failed acquire may have left its contender node behind. The server withdraws
/// the contender itself after `LOCK_HELD` and `DEADLINE_EXCEEDED`, but only as well as it
/// can still write (a member cut off from the leader cannot), so those count too; only
/// refusals before anything was queued do not.
fn may_have_queued(e: &ClientError) -> bool {
    match e.reason() {
        Some(
            Reason::BadArguments
            | Reason::InvalidPath
            | Reason::NoAuth
            | Reason::TooLarge
            | Reason::SessionExpired
            | Reason::NoNode
            | Reason::NodeExists
            | Reason::NoChildrenForEphemerals,
        ) => false,
        _ => !matches!(e, ClientError::InvalidArgument(_)),
    }
}

/// Which RPC queues the contender.
#[derive(Clone, Copy, Debug)]
enum Queue {
    /// Acquire (`wait`) or TryAcquire.
    Lock { wait: bool },
    /// Campaign.
    Campaign,
}

/// The wait a request asks for.
trait WaitOf {
    fn wait(&self) -> Option<Duration>;
}

fn wait_of(ms: i64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

impl WaitOf for pb::AcquireRequest {
    fn wait(&self) -> Option<Duration> {
        wait_of(self.wait_timeout_ms)
    }
}

impl WaitOf for pb::CampaignRequest {
    fn wait(&self) -> Option<Duration> {
        wait_of(self.wait_timeout_ms)
    }
}

type QueueFuture =
    Pin<Box<dyn Future<Output = Result<tonic::Response<(String, u64)>, tonic::Status>> + Send>>;

/// Sends a queueing request and returns (node, token).
trait Caller<R> {
    fn call(self, ch: Channel, max: usize, r: Request<R>) -> QueueFuture;
}

impl Caller<pb::AcquireRequest> for Queue {
    fn call(self, ch: Channel, max: usize, r: Request<pb::AcquireRequest>) -> QueueFuture {
        Box::pin(async move {
            let mut stub = locks(ch, max);
            let resp = match self {
                Queue::Lock { wait: false } => stub.try_acquire(r).await?,
                _ => stub.acquire(r).await?,
            };
            Ok(resp.map(|a| (a.lock_node, a.fencing_token)))
        })
    }
}

impl Caller<pb::CampaignRequest> for Queue {
    fn call(self, ch: Channel, max: usize, r: Request<pb::CampaignRequest>) -> QueueFuture {
        Box::pin(async move {
            let resp = elections(ch, max).campaign(r).await?;
            Ok(resp.map(|c| (c.leader_node, c.term)))
        })
    }
}

fn locks(channel: Channel, max: usize) -> LocksClient<Channel> {
    LocksClient::new(channel)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max)
}

fn elections(channel: Channel, max: usize) -> ElectionsClient<Channel> {
    ElectionsClient::new(channel)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max)
}

// ----- the process-wide registry of contenders -----

/// What this process knows about one (session, lock path).
#[derive(Debug, Default)]
struct Entry {
    /// Acquires under way.
    inflight: usize,
    /// Incremented by each acquire that begins.
    generation: u64,
    /// Nodes granted to live guards and leaderships.
    held: HashSet<String>,
    /// A stray contender may exist: clean up when no acquire is under way.
    dirty: bool,
}

static REGISTRY: LazyLock<Mutex<HashMap<(u64, String), Entry>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn registry() -> MutexGuard<'static, HashMap<(u64, String), Entry>> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

fn drop_if_idle(map: &mut HashMap<(u64, String), Entry>, key: &(u64, String)) {
    if map
        .get(key)
        .is_some_and(|e| e.inflight == 0 && e.held.is_empty() && !e.dirty)
    {
        map.remove(key);
    }
}

fn registry_forget(session_id: u64, path: &str, node: &str) {
    let mut map = registry();
    let key = (session_id, path.to_string());
    if let Some(e) = map.get_mut(&key) {
        e.held.remove(node);
    }
    drop_if_idle(&mut map, &key);
}

fn registry_mark_dirty(session_id: u64, path: &str) {
    registry()
        .entry((session_id, path.to_string()))
        .or_default()
        .dirty = true;
}

/// The held nodes, if no acquire began since `generation` and at most `inflight` are under
/// way (the caller's own); otherwise marks the key dirty for a later cleanup.
fn registry_held_if_quiet(
    session_id: u64,
    path: &str,
    generation: u64,
    inflight: usize,
) -> Option<HashSet<String>> {
    let mut map = registry();
    let key = (session_id, path.to_string());
    let e = map.entry(key.clone()).or_default();
    if e.generation != generation || e.inflight > inflight {
        e.dirty = true;
        return None;
    }
    // The caller cleans up now; a failure marks the key dirty again.
    e.dirty = false;
    let held = e.held.clone();
    drop_if_idle(&mut map, &key);
    Some(held)
}

/// One acquire under way; counted until finished or dropped.
struct Inflight {
    key: (u64, String),
    /// The generation this acquire began at.
    generation: u64,
    finished: bool,
}

impl Inflight {
    /// Counts an acquire; also says whether a stray contender may exist from earlier calls.
    fn begin(session_id: u64, path: &str) -> (Inflight, bool) {
        let key = (session_id, path.to_string());
        let mut map = registry();
        let e = map.entry(key.clone()).or_default();
        e.inflight += 1;
        e.generation += 1;
        let generation = e.generation;
        let dirty = e.dirty;
        (
            Inflight {
                key,
                generation,
                finished: false,
            },
            dirty,
        )
    }

    /// The held nodes, if this is the only acquire of its key under way and none began
    /// after it.
    fn held_if_alone(&self) -> Option<HashSet<String>> {
        registry_held_if_quiet(self.key.0, &self.key.1, self.generation, 1)
    }

    /// Ends the acquire; returns the generation to clean up at if a stray contender may
    /// exist and this was the last acquire under way.
    fn finish(&mut self, granted: Option<&str>, maybe_stray: bool) -> Option<u64> {
        self.finished = true;
        let mut map = registry();
        let e = map.entry(self.key.clone()).or_default();
        e.inflight = e.inflight.saturating_sub(1);
        if let Some(node) = granted {
            e.held.insert(node.to_string());
        }
        e.dirty |= maybe_stray;
        if e.inflight == 0 && e.dirty {
            // The entry stays until the cleanup has read `held` (registry_held_if_quiet).
            e.dirty = false;
            return Some(e.generation);
        }
        drop_if_idle(&mut map, &self.key);
        None
    }
}

impl Drop for Inflight {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Cancelled mid-call: the server normally withdraws the contender, but the reply
        // may have been a grant; let the next acquire on this key check.
        let mut map = registry();
        let e = map.entry(self.key.clone()).or_default();
        e.inflight = e.inflight.saturating_sub(1);
        e.dirty = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_build_requests() {
        let r = LockOptions::shared()
            .wait(Duration::from_millis(1500))
            .data("me")
            .request("/l", 7);
        assert_eq!(r.mode, LockMode::Shared as i32);
        assert_eq!(r.wait_timeout_ms, 1500);
        assert_eq!(r.data, b"me");
        assert_eq!(r.session_id, 7);
        let r = LockOptions::semaphore(3).request("/s", 1);
        assert_eq!((r.permits, r.wait_timeout_ms), (3, 0));
        assert_eq!(
            LockOptions::exclusive()
                .wait(Duration::from_micros(10))
                .request("/l", 1)
                .wait_timeout_ms,
            1,
            "a sub-millisecond wait is not 'the server's maximum'"
        );
    }

    #[test]
    fn check_fence_op() {
        let ops = MultiOps::new()
            .check_fence("/l/lock-0000000001", 99)
            .into_ops();
        assert!(matches!(&ops[0].op, Some(pb::op::Op::CheckFence(c))
            if c.lock_node == "/l/lock-0000000001" && c.token == 99));
    }

    #[test]
    fn which_errors_may_leave_a_contender() {
        use crate::error::BatonError;
        let status = |e: BatonError| ClientError::from(e.to_status());
        assert!(!may_have_queued(&status(BatonError::SessionExpired(1))));
        assert!(!may_have_queued(&status(BatonError::BadArguments(
            "x".into()
        ))));
        // The server withdraws these itself, but only if it can still write.
        assert!(may_have_queued(&status(BatonError::LockHeld("/l".into()))));
        assert!(may_have_queued(&status(BatonError::DeadlineExceeded(
            "w".into()
        ))));
        assert!(may_have_queued(&ClientError::Timeout(Duration::from_secs(
            1
        ))));
        assert!(may_have_queued(&ClientError::from(
            tonic::Status::unavailable("connection reset")
        )));
    }

    #[test]
    fn registry_cleans_up_only_when_quiet() {
        let (s, p) = (0xfeed_0001, "/registry-test");
        let (mut a, _) = Inflight::begin(s, p);
        let (mut b, _) = Inflight::begin(s, p);
        assert_eq!(a.finish(None, true), None, "b is still under way");
        let g = b.finish(Some("/registry-test/lock-0000000002"), false);
        let g = g.expect("last one cleans up");
        let held = registry_held_if_quiet(s, p, g, 0).expect("quiet");
        assert!(held.contains("/registry-test/lock-0000000002"));
        // A new acquire makes an older cleanup step aside.
        let (c, _) = Inflight::begin(s, p);
        assert_eq!(registry_held_if_quiet(s, p, g, 0), None);
        assert!(c.held_if_alone().is_some(), "c is alone");
        drop(c);
        registry_forget(s, p, "/registry-test/lock-0000000002");
        let (mut d, dirty) = Inflight::begin(s, p);
        assert!(dirty, "dropped c left it dirty");
        let g = d.finish(None, false).expect("dropped c left it dirty");
        assert!(registry_held_if_quiet(s, p, g, 0).is_some_and(|h| h.is_empty()));
        assert!(!registry().contains_key(&(s, p.to_string())));
    }
}
