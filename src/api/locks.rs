//! `baton.v1.Locks`: fair FIFO locks, read/write locks and semaphores served by the member,
//! with fencing tokens. Lock state is ordinary znodes (see `tree::locks` for the rules).
//!
//! A waiting `Acquire` is parked in [`LockWaiters`]: one internal watch per lock path with
//! waiters tells the registry when the queue changed, and it wakes exactly the waiters that
//! became holders — holders are a prefix of the queue, so waking stops at the first waiter
//! still blocked (no herd). Waiting happens on the member the client called, as it applies
//! the log; the contender node itself is written through the leader like any create.

use std::collections::HashMap;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};
use tracing::warn;

use super::Ctx;
use crate::consensus::state_machine::SmShared;
use crate::error::BatonError;
use crate::proto::client::contender_to_wire;
use crate::proto::v1::{self, locks_server::Locks};
use crate::tree::acl::{self, Caller};
use crate::tree::locks::{self as rules, Contender, LockKind};
use crate::tree::{self as t, path, CreateMode, OpOutcome, RequestResult};
use crate::watch::{AddOutcome, WatchKind};

/// Longest an Acquire or Campaign may wait.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// What a parked waiter learns.
#[derive(Debug)]
pub enum Wake {
    /// Its contender now holds the lock, with this token.
    Granted(u64),
    /// Its contender node is gone (session expired or closed, or deleted).
    Gone,
}

/// Waiters of one lock path: contender node → wake-up, in arrival order.
type Waiters = Vec<(String, oneshot::Sender<Wake>)>;

struct Inner {
    stream: u64,
    /// Lock path → (internal watch id, its waiters).
    paths: HashMap<String, (u64, Waiters)>,
}

/// The member's parked lock waiters.
pub struct LockWaiters {
    shared: Arc<SmShared>,
    inner: Mutex<Inner>,
}

impl LockWaiters {
    /// Starts the registry and its dispatcher task.
    pub fn start(shared: Arc<SmShared>) -> Arc<LockWaiters> {
        let handle = shared.hub.open_stream();
        let lw = Arc::new(LockWaiters {
            shared: shared.clone(),
            inner: Mutex::new(Inner {
                stream: handle.id,
                paths: HashMap::new(),
            }),
        });
        tokio::spawn(dispatch(Arc::downgrade(&lw), handle));
        lw
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Parks a waiter for `node` in the queue at `lock_path`; the receiver fires when it is
    /// granted or gone (at once if it already is).
    pub fn park(&self, lock_path: &str, node: &str) -> oneshot::Receiver<Wake> {
        let (tx, rx) = oneshot::channel();
        {
            let mut g = self.lock();
            let stream = g.stream;
            let entry = g
                .paths
                .entry(lock_path.to_string())
                .or_insert((0, Vec::new()));
            if entry.0 == 0 {
                if let AddOutcome::Added { watch_id } =
                    self.shared
                        .hub
                        .add(stream, lock_path, WatchKind::Persistent, None)
                {
                    entry.0 = watch_id;
                }
            }
            entry.1.push((node.to_string(), tx));
        }
        self.evaluate(lock_path);
        rx
    }

    /// Forgets a waiter (timed out or cancelled).
    pub fn unpark(&self, lock_path: &str, node: &str) {
        let mut g = self.lock();
        let stream = g.stream;
        if let Some((watch, waiters)) = g.paths.get_mut(lock_path) {
            waiters.retain(|(n, _)| n != node);
            if waiters.is_empty() {
                let w = *watch;
                g.paths.remove(lock_path);
                self.shared.hub.remove(stream, w);
            }
        }
    }

    /// Wakes the waiters of `lock_path` that now hold the lock or lost their node.
    fn evaluate(&self, lock_path: &str) {
        let contenders = {
            let tree = self.shared.tree.read().unwrap_or_else(|e| e.into_inner());
            rules::contenders(&tree, lock_path)
        };
        let by_node: HashMap<&str, &Contender> =
            contenders.iter().map(|c| (c.node.as_str(), c)).collect();
        let mut g = self.lock();
        let stream = g.stream;
        let Some((watch, waiters)) = g.paths.get_mut(lock_path) else {
            return;
        };
        let mut keep = Vec::with_capacity(waiters.len());
        for (node, tx) in waiters.drain(..) {
            match by_node.get(node.as_str()) {
                None => {
                    let _ = tx.send(Wake::Gone);
                }
                Some(c) if c.holder => {
                    let _ = tx.send(Wake::Granted(c.token));
                }
                Some(_) => keep.push((node, tx)),
            }
        }
        if keep.is_empty() {
            let w = *watch;
            g.paths.remove(lock_path);
            self.shared.hub.remove(stream, w);
        } else {
            *waiters = keep;
        }
    }
}

async fn dispatch(lw: std::sync::Weak<LockWaiters>, mut handle: crate::watch::StreamHandle) {
    loop {
        match handle.rx.recv().await {
            Some(d) => {
                let Some(lw) = lw.upgrade() else { return };
                let mut paths: Vec<String> = Vec::new();
                for e in &d.events {
                    if !paths.contains(&e.path) {
                        paths.push(e.path.clone());
                    }
                }
                for p in paths {
                    lw.evaluate(&p);
                }
            }
            None => {
                // Cut off (or the hub dropped us): open a new stream, re-register, re-check.
                let Some(lw) = lw.upgrade() else { return };
                warn!("lock waiter stream was cut off; re-registering");
                let new = lw.shared.hub.open_stream();
                let stream = new.id;
                let paths: Vec<String> = {
                    let mut g = lw.lock();
                    g.stream = stream;
                    let paths: Vec<String> = g.paths.keys().cloned().collect();
                    for p in &paths {
                        if let AddOutcome::Added { watch_id } =
                            lw.shared.hub.add(stream, p, WatchKind::Persistent, None)
                        {
                            if let Some(e) = g.paths.get_mut(p) {
                                e.0 = watch_id;
                            }
                        }
                    }
                    paths
                };
                for p in paths {
                    lw.evaluate(&p);
                }
                handle = new;
            }
        }
    }
}

/// Longest a waiter answered at shutdown waits for its queue place to be withdrawn.
const SHUTDOWN_WITHDRAW: Duration = Duration::from_secs(3);

/// A contender created for a caller; its node is deleted if the caller goes away before it
/// was granted (cancelled RPC, timeout), so an abandoned queue place never blocks others.
struct Candidacy {
    ctx: Arc<Ctx>,
    lock_path: String,
    node: String,
    armed: bool,
}

impl Candidacy {
    fn disarm(mut self) -> String {
        self.armed = false;
        std::mem::take(&mut self.node)
    }
}

impl Drop for Candidacy {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.ctx.lock_waiters().unpark(&self.lock_path, &self.node);
        let ctx = self.ctx.clone();
        let node = std::mem::take(&mut self.node);
        tokio::spawn(async move { withdraw(&ctx, &node).await });
    }
}

/// Deletes a queue place whose caller left. Retried (bounded) while it may not have been
/// applied: a queue place left behind would block the lock until its session ends. A delete
/// of this node is safe to repeat, so an unknown outcome is retried too; so is a refusal while
/// this member shuts down (a member that stops withdraws its waiters' places, and its forward
/// to the leader may meet a passing failure).
async fn withdraw(ctx: &Ctx, node: &str) {
    for attempt in 0..20u64 {
        let r = ctx
            .write(t::Request::Multi {
                ops: vec![t::Op::Delete {
                    path: node.to_string(),
                    version: -1,
                }],
                single: true,
                // Withdrawing the member's own placeholder for a caller that left.
                caller: None,
            })
            .await;
        match r {
            Err(BatonError::Unavailable(_) | BatonError::OutcomeUnknown(_)) => {
                tokio::time::sleep(Duration::from_millis(100 * (attempt + 1).min(5))).await
            }
            _ => break,
        }
    }
}

/// Joins the queue at `lock_path` (creating it as a container if needed).
async fn enqueue(
    ctx: &Arc<Ctx>,
    lock_path: &str,
    session_id: u64,
    kind: LockKind,
    data: &[u8],
    caller: &Caller,
) -> Result<(Candidacy, u64), BatonError> {
    ctx.check_write_path(lock_path, false)?;
    if lock_path == "/" {
        return Err(BatonError::BadArguments("the root cannot be a lock".into()));
    }
    if session_id == 0 {
        return Err(BatonError::BadArguments("a lock needs a session_id".into()));
    }
    ctx.check_data(data)?;
    let prefix = path::join(lock_path, rules::CONTENDER_PREFIX);
    for _ in 0..5 {
        if ctx.read_tree(|s| s.get(lock_path).is_none()) {
            let (r, _) = ctx
                .write(t::Request::Multi {
                    ops: vec![t::Op::Create {
                        path: lock_path.to_string(),
                        data: Bytes::new(),
                        mode: CreateMode::Container,
                        session_id: 0,
                        ttl_ms: 0,
                        acl: Vec::new(),
                    }],
                    single: true,
                    caller: Some(caller.clone()),
                })
                .await?;
            match r {
                RequestResult::Multi(Ok(_)) => {}
                RequestResult::Multi(Err(f)) if matches!(f.error, BatonError::NodeExists(_)) => {}
                RequestResult::Multi(Err(f)) => return Err(f.error),
                other => return Err(BatonError::Internal(format!("unexpected {other:?}"))),
            }
        }
        let (r, _) = ctx
            .write(t::Request::Multi {
                ops: vec![t::Op::Create {
                    path: prefix.clone(),
                    data: rules::encode_data(kind, data),
                    mode: CreateMode::EphemeralSequential,
                    session_id,
                    ttl_ms: 0,
                    acl: Vec::new(),
                }],
                single: true,
                caller: Some(caller.clone()),
            })
            .await?;
        match r {
            RequestResult::Multi(Ok(mut outs)) => {
                if let Some(OpOutcome::Create { path, stat }) = outs.pop() {
                    let token = rules::token(&stat, path::name(&path));
                    return Ok((
                        Candidacy {
                            ctx: ctx.clone(),
                            lock_path: lock_path.to_string(),
                            node: path,
                            armed: true,
                        },
                        token,
                    ));
                }
                return Err(BatonError::Internal("create returned no outcome".into()));
            }
            // The container vanished between the two writes (its last contender left).
            RequestResult::Multi(Err(f)) if matches!(&f.error, BatonError::NoNode(p) if p == lock_path) => {
                continue
            }
            RequestResult::Multi(Err(f)) => return Err(f.error),
            other => return Err(BatonError::Internal(format!("unexpected {other:?}"))),
        }
    }
    Err(BatonError::Unavailable(format!(
        "lock path {lock_path} kept disappearing; retry"
    )))
}

/// Waits until the candidacy holds the lock (returns its node and token).
pub(crate) async fn acquire(
    ctx: &Arc<Ctx>,
    lock_path: &str,
    session_id: u64,
    kind: LockKind,
    data: &[u8],
    wait: Option<Duration>,
    caller: &Caller,
) -> Result<(String, u64), BatonError> {
    let (cand, token) = enqueue(ctx, lock_path, session_id, kind, data, caller).await?;
    let Some(wait) = wait else {
        // TryAcquire: the queue as of our own create decides; a contender that does not
        // hold the lock leaves the queue at once (dropping the candidacy deletes its node).
        let holder = ctx.read_tree(|s| {
            rules::contenders(s, lock_path)
                .iter()
                .any(|c| c.node == cand.node && c.holder)
        });
        return if holder {
            Ok((cand.disarm(), token))
        } else {
            Err(BatonError::LockHeld(lock_path.to_string()))
        };
    };
    let rx = ctx.lock_waiters().park(lock_path, &cand.node);
    // A member that shuts down answers its parked waiters at once (UNAVAILABLE: the client
    // may queue again elsewhere); dropping the candidacy withdraws the queue place while the
    // member can still write.
    let mut shutdown = ctx.member().shutdown_signal();
    let waited = tokio::select! {
        r = tokio::time::timeout(wait, rx) => r,
        _ = shutdown.wait() => {
            // Withdrawn before answering, while the member can still write: the member's
            // drain waits for this request, so the place is gone before consensus stops
            // (bounded, as the drain is).
            ctx.lock_waiters().unpark(lock_path, &cand.node);
            let node = cand.disarm();
            let _ = tokio::time::timeout(SHUTDOWN_WITHDRAW, withdraw(ctx, &node)).await;
            return Err(BatonError::Unavailable(format!(
                "member is shutting down; the queue place at {lock_path} was given up"
            )));
        }
    };
    match waited {
        Ok(Ok(Wake::Granted(granted))) => {
            debug_assert_eq!(granted, token);
            Ok((cand.disarm(), granted))
        }
        Ok(Ok(Wake::Gone)) => {
            let node = cand.disarm();
            // Its session ended (the usual case), or someone deleted the node.
            if ctx.read_tree(|s| s.session(session_id).is_some()) {
                warn!(node, "contender node deleted while waiting");
                Err(BatonError::NoNode(format!(
                    "the queue place {node} was deleted while waiting"
                )))
            } else {
                Err(BatonError::SessionExpired(session_id))
            }
        }
        Ok(Err(_)) => Err(BatonError::Unavailable("member is shutting down".into())),
        Err(_) => Err(BatonError::DeadlineExceeded(format!(
            "lock {lock_path} not granted within {} ms; the queue place was given up",
            wait.as_millis()
        ))),
    }
}

/// Deletes a contender node owned by `session_id`.
pub(crate) async fn release(
    ctx: &Ctx,
    node: &str,
    session_id: u64,
    caller: &Caller,
) -> Result<u64, BatonError> {
    ctx.check_write_path(node, false)?;
    // A contender's owner never changes and its name is never reused, so a node this member
    // already has answers the ownership question without a read-index round trip; only a
    // node not (yet) seen here needs the member to catch up first.
    let mut owner = ctx.read_tree(|s| s.get(node).map(|n| n.stat.ephemeral_owner));
    if owner.is_none() {
        ctx.member().linearizable().await?;
        owner = ctx.read_tree(|s| s.get(node).map(|n| n.stat.ephemeral_owner));
    }
    match owner {
        None => return Err(BatonError::NoNode(node.to_string())),
        Some(o) if o != session_id => {
            return Err(BatonError::NotOwner {
                path: node.to_string(),
                owner: o,
                session: session_id,
            })
        }
        Some(_) => {}
    }
    let (r, zxid) = ctx
        .write(t::Request::Multi {
            ops: vec![t::Op::Delete {
                path: node.to_string(),
                version: -1,
            }],
            single: true,
            caller: Some(caller.clone()),
        })
        .await?;
    match r {
        RequestResult::Multi(Ok(_)) => Ok(zxid),
        RequestResult::Multi(Err(f)) => Err(f.error),
        other => Err(BatonError::Internal(format!("unexpected {other:?}"))),
    }
}

/// The wait of an Acquire or Campaign: 0 = the maximum, negative is refused.
pub(crate) fn wait_time(ms: i64) -> Result<Duration, BatonError> {
    if ms < 0 {
        return Err(BatonError::BadArguments(format!(
            "wait_timeout_ms must be >= 0, got {ms}"
        )));
    }
    Ok(if ms == 0 {
        MAX_WAIT
    } else {
        Duration::from_millis(ms as u64).min(MAX_WAIT)
    })
}

fn kind_of(r: &v1::AcquireRequest) -> Result<LockKind, BatonError> {
    if r.permits > 0 {
        return Ok(LockKind::Semaphore(r.permits));
    }
    match v1::LockMode::try_from(r.mode) {
        Ok(v1::LockMode::Exclusive) => Ok(LockKind::Exclusive),
        Ok(v1::LockMode::Shared) => Ok(LockKind::Shared),
        Err(_) => Err(BatonError::BadArguments(format!(
            "unknown lock mode {}",
            r.mode
        ))),
    }
}

/// The Locks service.
pub struct LocksService {
    ctx: Arc<Ctx>,
}

impl LocksService {
    /// A service over the member's core.
    pub fn new(ctx: Arc<Ctx>) -> Self {
        LocksService { ctx }
    }

    async fn do_acquire(
        &self,
        r: v1::AcquireRequest,
        wait: Option<Duration>,
        caller: &Caller,
    ) -> Result<Response<v1::AcquireResponse>, Status> {
        let kind = kind_of(&r)?;
        let (lock_node, fencing_token) = acquire(
            &self.ctx,
            &r.path,
            r.session_id,
            kind,
            &r.data,
            wait,
            caller,
        )
        .await?;
        Ok(Response::new(v1::AcquireResponse {
            header: self.ctx.header_at(self.ctx.member().applied()),
            lock_node,
            fencing_token,
        }))
    }
}

#[tonic::async_trait]
impl Locks for LocksService {
    async fn acquire(
        &self,
        req: Request<v1::AcquireRequest>,
    ) -> Result<Response<v1::AcquireResponse>, Status> {
        let caller = crate::auth::caller(&req);
        let r = req.into_inner();
        let wait = wait_time(r.wait_timeout_ms)?;
        self.do_acquire(r, Some(wait), &caller).await
    }

    async fn try_acquire(
        &self,
        req: Request<v1::AcquireRequest>,
    ) -> Result<Response<v1::AcquireResponse>, Status> {
        let caller = crate::auth::caller(&req);
        self.do_acquire(req.into_inner(), None, &caller).await
    }

    async fn release(
        &self,
        req: Request<v1::ReleaseRequest>,
    ) -> Result<Response<v1::ReleaseResponse>, Status> {
        let caller = crate::auth::caller(&req);
        let r = req.into_inner();
        let zxid = release(&self.ctx, &r.lock_node, r.session_id, &caller).await?;
        Ok(Response::new(v1::ReleaseResponse {
            header: self.ctx.header_at(zxid),
        }))
    }

    async fn inspect(
        &self,
        req: Request<v1::InspectRequest>,
    ) -> Result<Response<v1::InspectResponse>, Status> {
        let caller = crate::auth::caller(&req);
        let r = req.into_inner();
        self.ctx.check_path(&r.path)?;
        self.ctx.member().linearizable().await?;
        self.ctx.authorize(&r.path, &caller, acl::READ)?;
        let (list, zxid) = self
            .ctx
            .read_tree(|s| (rules::contenders(s, &r.path), s.applied_index));
        let (holders, waiters): (Vec<&Contender>, Vec<&Contender>) =
            list.iter().partition(|c| c.holder);
        Ok(Response::new(v1::InspectResponse {
            header: self.ctx.header_at(zxid),
            holders: holders.into_iter().map(contender_to_wire).collect(),
            waiters: waiters.into_iter().map(contender_to_wire).collect(),
        }))
    }

    async fn validate_fence(
        &self,
        req: Request<v1::ValidateFenceRequest>,
    ) -> Result<Response<v1::ValidateFenceResponse>, Status> {
        let caller = crate::auth::caller(&req);
        let r = req.into_inner();
        self.ctx.check_path(&r.lock_node)?;
        self.ctx.member().linearizable().await?;
        self.ctx.authorize(&r.lock_node, &caller, acl::READ)?;
        let (valid, zxid) = self.ctx.read_tree(|s| {
            (
                rules::holds(s, &r.lock_node, r.fencing_token),
                s.applied_index,
            )
        });
        Ok(Response::new(v1::ValidateFenceResponse {
            header: self.ctx.header_at(zxid),
            valid,
        }))
    }
}
