//! `baton.v1.Elections`: leader election on a path, built on the exclusive lock: candidates
//! are contender nodes, the holder leads, and its fencing token is its term.
//!
//! `Observe` follows the candidates from the member's event stream (a recursive watch
//! registered atomically with a snapshot of the candidates), so it sees every change of
//! leader in log order: it never skips a term and never reports a candidate that did not
//! lead at some zxid.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::locks::{acquire, release, wait_time};
use super::Ctx;
use crate::proto::v1::{self, elections_server::Elections};
use crate::tree::acl;
use crate::tree::locks::{self as rules, LockKind};
use crate::tree::{self as t, path, EventType, RequestResult};
use crate::watch::{AddOutcome, WatchKind};

/// The Elections service.
pub struct ElectionsService {
    ctx: Arc<Ctx>,
}

impl ElectionsService {
    /// A service over the member's core.
    pub fn new(ctx: Arc<Ctx>) -> Self {
        ElectionsService { ctx }
    }
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<v1::LeaderResponse, Status>> + Send>>;

/// The leader of `election` in `state`.
fn leader_of(ctx: &Ctx, s: &t::State, election: &str, zxid: u64) -> v1::LeaderResponse {
    let first = rules::contenders(s, election)
        .into_iter()
        .find(|c| c.holder);
    match first {
        Some(c) => v1::LeaderResponse {
            header: ctx.header_at(zxid),
            has_leader: true,
            leader_node: c.node,
            term: c.token,
            value: c.data.to_vec(),
            session_id: c.session,
        },
        None => v1::LeaderResponse {
            header: ctx.header_at(zxid),
            ..Default::default()
        },
    }
}

/// A candidate as the observer tracks it.
#[derive(Clone)]
struct Candidate {
    node: String,
    term: u64,
}

fn current_value(ctx: &Ctx, node: &str) -> (Vec<u8>, u64) {
    ctx.read_tree(|s| match s.get(node) {
        Some(n) => (
            rules::decode_data(&n.data)
                .map(|(_, d)| d.to_vec())
                .unwrap_or_default(),
            n.stat.ephemeral_owner,
        ),
        None => (Vec::new(), 0),
    })
}

async fn observe(
    ctx: Arc<Ctx>,
    election: String,
    out: mpsc::Sender<Result<v1::LeaderResponse, Status>>,
) {
    let hub = ctx.member().watches().clone();
    let mut handle = hub.open_stream();
    // Snapshot of the candidates and the watch, taken atomically under the tree's lock.
    let (mut candidates, first) = ctx.read_tree(|s| {
        let list: BTreeMap<i64, Candidate> = rules::contenders(s, &election)
            .into_iter()
            .filter_map(|c| {
                let seq = rules::sequence(path::name(&c.node))?;
                Some((
                    seq,
                    Candidate {
                        node: c.node,
                        term: c.token,
                    },
                ))
            })
            .collect();
        let added = hub.add(handle.id, &election, WatchKind::PersistentRecursive, None);
        (
            list,
            (added, leader_of(&ctx, s, &election, s.applied_index)),
        )
    });
    let (added, initial) = first;
    if !matches!(added, AddOutcome::Added { .. }) {
        let _ = out
            .send(Err(Status::unavailable("could not register the observer")))
            .await;
        return;
    }
    let mut last: Option<(String, u64, Vec<u8>)> = initial.has_leader.then(|| {
        (
            initial.leader_node.clone(),
            initial.term,
            initial.value.clone(),
        )
    });
    if out.send(Ok(initial)).await.is_err() {
        hub.close_stream(handle.id);
        return;
    }
    let mut shutdown = ctx.member().shutdown_signal();
    loop {
        let delivery = tokio::select! {
            d = handle.rx.recv() => d,
            _ = shutdown.wait() => {
                let _ = out.send(Err(Status::unavailable("member is shutting down"))).await;
                break;
            }
            _ = out.closed() => break,
        };
        let Some(d) = delivery else {
            let _ = out
                .send(Err(Status::resource_exhausted(
                    "observer fell behind the event stream; observe again",
                )))
                .await;
            break;
        };
        for ev in d.events {
            let is_child = path::parent(&ev.path) == Some(election.as_str());
            let seq = if is_child {
                rules::sequence(path::name(&ev.path))
            } else {
                None
            };
            match (ev.kind, seq) {
                (EventType::Created, Some(seq)) => {
                    candidates.insert(
                        seq,
                        Candidate {
                            node: ev.path.clone(),
                            // The event's zxid is the node's czxid.
                            term: (ev.zxid << 20) | (seq as u64 & 0xF_FFFF),
                        },
                    );
                }
                (EventType::Deleted, Some(seq)) => {
                    candidates.remove(&seq);
                }
                (EventType::Deleted, None) if ev.path == election => candidates.clear(),
                _ => {}
            }
            let now = candidates.values().next().cloned();
            let changed_value = ev.kind == EventType::DataChanged
                && last.as_ref().is_some_and(|(n, _, _)| *n == ev.path);
            let msg = match (&now, &last) {
                (Some(c), Some((n, term, _)))
                    if c.node == *n && c.term == *term && !changed_value =>
                {
                    None
                }
                (None, None) => None,
                (Some(c), _) => {
                    // The value is read now, not as of the event: when the observer is
                    // behind, a value change may already have been reported with the new
                    // leader. Report nothing that is not a change.
                    let (value, session) = current_value(&ctx, &c.node);
                    let same = last
                        .as_ref()
                        .is_some_and(|(n, term, v)| *n == c.node && *term == c.term && *v == value);
                    last = Some((c.node.clone(), c.term, value.clone()));
                    (!same).then(|| v1::LeaderResponse {
                        header: ctx.header_at(ev.zxid),
                        has_leader: true,
                        leader_node: c.node.clone(),
                        term: c.term,
                        value,
                        session_id: session,
                    })
                }
                (None, Some(_)) => {
                    last = None;
                    Some(v1::LeaderResponse {
                        header: ctx.header_at(ev.zxid),
                        ..Default::default()
                    })
                }
            };
            if let Some(m) = msg {
                if out.send(Ok(m)).await.is_err() {
                    hub.close_stream(handle.id);
                    return;
                }
            }
        }
    }
    hub.close_stream(handle.id);
    handle.rx.close();
}

#[tonic::async_trait]
impl Elections for ElectionsService {
    async fn campaign(
        &self,
        req: Request<v1::CampaignRequest>,
    ) -> Result<Response<v1::CampaignResponse>, Status> {
        let caller = crate::auth::caller(&req);
        let r = req.into_inner();
        let wait = wait_time(r.wait_timeout_ms)?;
        let (leader_node, term) = acquire(
            &self.ctx,
            &r.path,
            r.session_id,
            LockKind::Exclusive,
            &r.value,
            Some(wait),
            &caller,
        )
        .await?;
        Ok(Response::new(v1::CampaignResponse {
            header: self.ctx.header_at(self.ctx.member().applied()),
            leader_node,
            term,
        }))
    }

    async fn proclaim(
        &self,
        req: Request<v1::ProclaimRequest>,
    ) -> Result<Response<v1::ProclaimResponse>, Status> {
        let caller = crate::auth::caller(&req);
        let r = req.into_inner();
        self.ctx.check_write_path(&r.leader_node, false)?;
        self.ctx.check_data(&r.value)?;
        let (result, zxid) = self
            .ctx
            .write(t::Request::Multi {
                ops: vec![
                    t::Op::CheckFence {
                        lock_node: r.leader_node.clone(),
                        token: r.term,
                    },
                    t::Op::SetData {
                        path: r.leader_node,
                        data: rules::encode_data(LockKind::Exclusive, &r.value),
                        version: -1,
                    },
                ],
                single: false,
                caller: Some(caller),
            })
            .await?;
        match result {
            RequestResult::Multi(Ok(_)) => Ok(Response::new(v1::ProclaimResponse {
                header: self.ctx.header_at(zxid),
            })),
            RequestResult::Multi(Err(f)) => Err(f.error.to_status()),
            other => Err(Status::internal(format!("unexpected result {other:?}"))),
        }
    }

    async fn leader(
        &self,
        req: Request<v1::LeaderRequest>,
    ) -> Result<Response<v1::LeaderResponse>, Status> {
        let caller = crate::auth::caller(&req);
        let r = req.into_inner();
        self.ctx.check_path(&r.path)?;
        self.ctx.member().linearizable().await?;
        self.ctx.authorize(&r.path, &caller, acl::READ)?;
        Ok(Response::new(self.ctx.read_tree(|s| {
            leader_of(&self.ctx, s, &r.path, s.applied_index)
        })))
    }

    type ObserveStream = ObserveStream;

    async fn observe(
        &self,
        req: Request<v1::ObserveRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let caller = crate::auth::caller(&req);
        let r = req.into_inner();
        self.ctx.check_path(&r.path)?;
        // Start from state at least as new as every write acknowledged before the call.
        self.ctx.member().linearizable().await?;
        self.ctx.authorize(&r.path, &caller, acl::READ)?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(observe(self.ctx.clone(), r.path, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resign(
        &self,
        req: Request<v1::ResignRequest>,
    ) -> Result<Response<v1::ResignResponse>, Status> {
        let caller = crate::auth::caller(&req);
        let r = req.into_inner();
        let zxid = release(&self.ctx, &r.leader_node, r.session_id, &caller).await?;
        Ok(Response::new(v1::ResignResponse {
            header: self.ctx.header_at(zxid),
        }))
    }
}
