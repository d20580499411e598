//! `baton.v1.Watches`: one bidirectional stream per client carrying many watches.
//!
//! A watch is registered under the tree's read lock, so the `Added` reply's zxid and `stat`
//! describe exactly the state after which events are delivered. Replies and events for a
//! stream are sent by one task, so `Added` always precedes that watch's events.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::Ctx;
use crate::error::BatonError;
use crate::proto::v1::{self, watches_server::Watches};
use crate::tree::acl::{self, Caller};
use crate::watch::{AddOutcome, Delivery, WatchKind};

/// The Watches service.
pub struct WatchesService {
    ctx: Arc<Ctx>,
}

impl WatchesService {
    /// A service over the member's core.
    pub fn new(ctx: Arc<Ctx>) -> Self {
        WatchesService { ctx }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<v1::WatchResponse, Status>> + Send>>;
type Out = mpsc::Sender<Result<v1::WatchResponse, Status>>;

fn watch_error(request_id: u64, e: &BatonError) -> v1::WatchResponse {
    v1::WatchResponse {
        watch_id: 0,
        response: Some(v1::watch_response::Response::Error(
            crate::proto::client::watch_error(request_id, e),
        )),
    }
}

/// Handles one add request; returns the replies to send (in order).
fn add(ctx: &Ctx, stream: u64, a: v1::AddWatch, caller: &Caller) -> v1::WatchResponse {
    if let Err(e) = ctx.check_path(&a.path) {
        return watch_error(a.request_id, &e);
    }
    let kind = match v1::add_watch::Kind::try_from(a.kind) {
        Ok(k) => WatchKind::from(k),
        Err(_) => {
            return watch_error(
                a.request_id,
                &BatonError::BadArguments(format!("unknown watch kind {}", a.kind)),
            )
        }
    };
    let hub = ctx.member().watches().clone();
    ctx.read_tree(|s| {
        let node = s.get(&a.path);
        if node.is_none() && matches!(kind, WatchKind::Data | WatchKind::Children) {
            return watch_error(a.request_id, &BatonError::NoNode(a.path.clone()));
        }
        // Registering needs READ on the node (a missing node needs nothing, as in ZooKeeper);
        // each event is checked again, at delivery, against the node it happened to.
        if let Some(n) = node {
            if let Err(e) = acl::require(n.acl.as_slice(), caller, acl::READ, &a.path) {
                return watch_error(a.request_id, &e);
            }
        }
        match hub.add(stream, &a.path, kind, a.start_zxid) {
            AddOutcome::Added { watch_id } => v1::WatchResponse {
                watch_id,
                response: Some(v1::watch_response::Response::Added(v1::Added {
                    request_id: a.request_id,
                    zxid: s.applied_index,
                    exists: node.is_some(),
                    stat: node.map(|n| (&n.stat).into()),
                })),
            },
            AddOutcome::Limit { what, limit } => watch_error(
                a.request_id,
                &BatonError::TooMany {
                    what,
                    limit: limit as u64,
                },
            ),
            AddOutcome::Compacted { oldest_zxid } => v1::WatchResponse {
                watch_id: 0,
                response: Some(v1::watch_response::Response::Compacted(v1::Compacted {
                    request_id: a.request_id,
                    oldest_zxid,
                })),
            },
        }
    })
}

/// How long a resumed watch waits for this member to apply its `start_zxid`.
const RESUME_WAIT: Duration = Duration::from_secs(10);

/// A watch resumed from a zxid this member has not applied yet (the client saw it through a
/// member further ahead) is registered only once it has: registered earlier, it would be sent
/// again the events up to `start_zxid` as this member applies them.
async fn resume_point_applied(ctx: &Ctx, a: &v1::AddWatch) -> Result<(), BatonError> {
    match a.start_zxid {
        Some(start) if start > ctx.member().applied() => ctx
            .member()
            .wait_applied(start, RESUME_WAIT)
            .await
            .map(|_| ()),
        _ => Ok(()),
    }
}

fn delivery(d: Delivery) -> Vec<v1::WatchResponse> {
    let mut out = vec![v1::WatchResponse {
        watch_id: d.watch_id,
        response: Some(v1::watch_response::Response::Events(v1::Events {
            events: d.events.iter().map(Into::into).collect(),
        })),
    }];
    if d.fired {
        out.push(v1::WatchResponse {
            watch_id: d.watch_id,
            response: Some(v1::watch_response::Response::Removed(v1::Removed {
                fired: true,
            })),
        });
    }
    out
}

async fn serve(
    ctx: Arc<Ctx>,
    mut inbound: Streaming<v1::WatchRequest>,
    out: Out,
    owner: String,
    caller: Caller,
) {
    let hub = ctx.member().watches().clone();
    let mut handle = hub.open_stream_as(&owner, Some(caller.clone()));
    let id = handle.id;
    let mut shutdown = ctx.member().shutdown_signal();
    // Checked before deliveries: once this member has installed a snapshot, the events it
    // covers will never be delivered, so the stream must end before any later event.
    let mut installs = ctx.member().installs();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait() => {
                let _ = out
                    .send(Err(Status::unavailable(
                        "member is shutting down; resume the watch on another member",
                    )))
                    .await;
                break;
            }
            Ok(()) = installs.changed() => {
                let e = BatonError::Unavailable(format!(
                    "member {} caught up by installing a snapshot, so this stream missed the \
                     events it covers; resume the watch from the last zxid seen",
                    ctx.config().id
                ));
                let _ = out.send(Err(e.to_status())).await;
                break;
            }
            d = handle.rx.recv() => match d {
                Some(d) => {
                    for m in delivery(d) {
                        if out.send(Ok(m)).await.is_err() {
                            hub.close_stream(id);
                            return;
                        }
                    }
                }
                None => {
                    if handle.overflowed.load(Ordering::SeqCst) {
                        let e = BatonError::TooLarge {
                            what: "watch stream backlog",
                            size: ctx.config().watch_buffer as u64 + 1,
                            limit: ctx.config().watch_buffer as u64,
                        };
                        let _ = out
                            .send(Err(Status::resource_exhausted(format!(
                                "watch stream closed: the client did not keep up ({e})"
                            ))))
                            .await;
                    }
                    return;
                }
            },
            msg = inbound.next() => match msg {
                Some(Ok(req)) => {
                    let reply = match req.request {
                        Some(v1::watch_request::Request::Add(a)) => {
                            match resume_point_applied(&ctx, &a).await {
                                Ok(()) => add(&ctx, id, a, &caller),
                                Err(e) => watch_error(a.request_id, &e),
                            }
                        }
                        Some(v1::watch_request::Request::Remove(r)) => {
                            if hub.remove(id, r.watch_id) {
                                v1::WatchResponse {
                                    watch_id: r.watch_id,
                                    response: Some(v1::watch_response::Response::Removed(
                                        v1::Removed { fired: false },
                                    )),
                                }
                            } else {
                                watch_error(0, &BatonError::BadArguments(format!(
                                    "no watch {} on this stream", r.watch_id
                                )))
                            }
                        }
                        None => watch_error(0, &BatonError::BadArguments("empty request".into())),
                    };
                    if out.send(Ok(reply)).await.is_err() {
                        break;
                    }
                }
                Some(Err(_)) | None => break,
            },
        }
    }
    hub.close_stream(id);
}

#[tonic::async_trait]
impl Watches for WatchesService {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<Streaming<v1::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (tx, rx) = mpsc::channel(256);
        let caller = crate::auth::caller(&req);
        let owner = req
            .remote_addr()
            .map_or_else(|| "unknown".to_string(), |a| a.to_string());
        tokio::spawn(serve(self.ctx.clone(), req.into_inner(), tx, owner, caller));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
