//! Client behaviour against small fake services on loopback: failover, watch replies and
//! stream errors, session keepalive and loss.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

use super::*;
use crate::error::BatonError;
use crate::proto::v1::sessions_server::{Sessions, SessionsServer};
use crate::proto::v1::watches_server::{Watches, WatchesServer};
use crate::proto::v1::*;

/// A fake member: lists one session whose id is the member's id (so a test can tell who
/// answered), serves scripted watch replies and keepalives. (It does not implement Cluster,
/// whose RPC list grows, so these tests do not break when it does.)
#[derive(Clone)]
struct Fake {
    id: u64,
    keepalives: Arc<AtomicU64>,
    /// Keepalives after this many are answered with SESSION_EXPIRED.
    expire_after: u64,
    /// Keepalives after this many get no answer at all (the stream stays open).
    mute_after: u64,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Watches for Fake {
    type WatchStream = BoxStream<WatchResponse>;

    async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut next_id = 100;
            while let Some(Ok(req)) = inbound.next().await {
                let Some(watch_request::Request::Add(add)) = req.request else {
                    continue;
                };
                let rid = add.request_id;
                let replies: Vec<Result<WatchResponse, Status>> = match add.path.as_str() {
                    "/missing" => vec![Ok(WatchResponse {
                        watch_id: 0,
                        response: Some(watch_response::Response::Error(WatchError {
                            reason: Reason::NoNode.to_string(),
                            message: "no node: /missing".into(),
                            request_id: rid,
                        })),
                    })],
                    "/old" => vec![Ok(WatchResponse {
                        watch_id: 0,
                        response: Some(watch_response::Response::Compacted(Compacted {
                            request_id: rid,
                            oldest_zxid: 30,
                        })),
                    })],
                    "/slow" => vec![Err(Status::resource_exhausted("did not keep up"))],
                    path => {
                        next_id += 1;
                        let event = |zxid| WatchEvent {
                            r#type: EventType::DataChanged as i32,
                            path: path.to_string(),
                            zxid,
                        };
                        vec![
                            // An event of an earlier watch arriving before this add's reply.
                            Ok(WatchResponse {
                                watch_id: 1,
                                response: Some(watch_response::Response::Events(Events {
                                    events: vec![event(4)],
                                })),
                            }),
                            Ok(WatchResponse {
                                watch_id: next_id,
                                response: Some(watch_response::Response::Added(Added {
                                    request_id: rid,
                                    zxid: 5,
                                    exists: true,
                                    stat: None,
                                })),
                            }),
                            Ok(WatchResponse {
                                watch_id: next_id,
                                response: Some(watch_response::Response::Events(Events {
                                    events: vec![event(6), event(7)],
                                })),
                            }),
                        ]
                    }
                };
                for r in replies {
                    let stop = r.is_err();
                    if tx.send(r).await.is_err() || stop {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[tonic::async_trait]
impl Sessions for Fake {
    type KeepAliveStream = BoxStream<KeepAliveResponse>;

    async fn open(
        &self,
        req: Request<OpenSessionRequest>,
    ) -> Result<Response<OpenSessionResponse>, Status> {
        Ok(Response::new(OpenSessionResponse {
            header: None,
            session_id: 7,
            secret: vec![1, 2, 3],
            timeout_ms: req.into_inner().timeout_ms,
        }))
    }

    async fn keep_alive(
        &self,
        req: Request<Streaming<KeepAliveRequest>>,
    ) -> Result<Response<Self::KeepAliveStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let count = Arc::clone(&self.keepalives);
        let expire_after = self.expire_after;
        let mute_after = self.mute_after;
        tokio::spawn(async move {
            while let Some(Ok(k)) = inbound.next().await {
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                if n > mute_after {
                    continue;
                }
                let reply = if n > expire_after {
                    Err(BatonError::SessionExpired(k.session_id).to_status())
                } else {
                    Ok(KeepAliveResponse {
                        session_id: k.session_id,
                        ttl_ms: 300,
                    })
                };
                let stop = reply.is_err();
                if tx.send(reply).await.is_err() || stop {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn close(
        &self,
        _: Request<CloseSessionRequest>,
    ) -> Result<Response<CloseSessionResponse>, Status> {
        Ok(Response::new(CloseSessionResponse::default()))
    }

    async fn get(
        &self,
        req: Request<GetSessionRequest>,
    ) -> Result<Response<GetSessionResponse>, Status> {
        Err(BatonError::SessionExpired(req.into_inner().session_id).to_status())
    }

    async fn list(
        &self,
        _: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        Ok(Response::new(ListSessionsResponse {
            header: None,
            sessions: vec![SessionInfo {
                session_id: self.id,
                ..SessionInfo::default()
            }],
        }))
    }
}

/// A running fake; dropping `stop` shuts it down.
struct Running {
    addr: String,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Graceful shutdown waits for open streams (a keepalive, a watch) to end, which they
    /// never do here: give it a moment, then stop serving.
    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(Duration::from_millis(200), &mut self.done)
            .await
            .is_err()
        {
            self.done.abort();
        }
    }
}

async fn serve(fake: Fake) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local_addr: {e}"))
        .to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(WatchesServer::new(fake.clone()))
            .add_service(SessionsServer::new(fake))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            })
            .await;
    });
    Running {
        addr,
        stop: Some(stop),
        done,
    }
}

fn fake(id: u64) -> Fake {
    Fake {
        id,
        keepalives: Arc::new(AtomicU64::new(0)),
        expire_after: u64::MAX,
        mute_after: u64::MAX,
    }
}

/// The id of the fake member that answers the client's next call.
async fn answered_by(client: &Client) -> Result<u64, ClientError> {
    let sessions = client.list_sessions().await?;
    Ok(sessions.first().map_or(0, |s| s.session_id))
}

/// A loopback address nothing listens on.
async fn dead_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local_addr: {e}"))
        .to_string();
    drop(listener);
    addr
}

#[tokio::test]
async fn connect_skips_dead_endpoints_and_fails_when_none_answers() {
    let dead = dead_addr().await;
    let live = serve(fake(2)).await;
    let client = Client::connect([&dead, &live.addr])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(client.current_endpoint(), format!("http://{}", live.addr));
    assert_eq!(answered_by(&client).await.ok(), Some(2));

    let err = Client::connect([&dead]).await.err();
    assert!(matches!(err, Some(ClientError::Connect { .. })), "{err:?}");
    assert!(err.is_some_and(|e| e.is_retryable()));
    let err = Client::connect(Vec::<String>::new()).await.err();
    assert!(matches!(err, Some(ClientError::InvalidEndpoint { .. })));
    live.shutdown().await;
}

#[tokio::test]
async fn calls_fail_over_when_the_current_member_goes_away() {
    let a = serve(fake(1)).await;
    let b = serve(fake(2)).await;
    let client = Client::connect([&a.addr, &b.addr])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answered_by(&client).await.ok(), Some(1));
    a.shutdown().await;
    // The next call finds member 1 gone and is retried on member 2.
    let mut answered = None;
    for _ in 0..20 {
        match answered_by(&client).await {
            Ok(id) => {
                answered = Some(id);
                break;
            }
            Err(e) => assert!(e.is_retryable(), "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(answered, Some(2));
    assert_eq!(client.current_endpoint(), format!("http://{}", b.addr));
    b.shutdown().await;
}

#[tokio::test]
async fn writes_to_a_refused_connection_are_known_not_applied() {
    let dead = dead_addr().await;
    let live = serve(fake(1)).await;
    let client = Client::connect([&live.addr, &dead])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Talk to the dead endpoint directly: the status carries the connect error.
    let channel = client.shared.channels[1].clone();
    let err = sessions(channel, 1 << 20)
        .list(ListSessionsRequest {})
        .await
        .err()
        .unwrap_or_else(|| panic!("a dead endpoint answered"));
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(error::not_applied(&err), "{err:?}");
    let err = ClientError::from(err);
    assert!(err.is_connection_error() && err.is_retryable());
    // A status the server sent is not a connection error.
    assert!(!ClientError::from(tonic::Status::unknown("boom")).is_connection_error());
    live.shutdown().await;
}

#[tokio::test]
async fn watcher_matches_replies_and_flattens_events() {
    let live = serve(fake(1)).await;
    let client = Client::connect([&live.addr])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut watcher = client.watcher().await.unwrap_or_else(|e| panic!("{e}"));
    let (id, added) = watcher
        .add("/a", WatchKind::Persistent, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(id, 101);
    assert_eq!(added.zxid, 5);
    // The event that arrived before the reply is kept, in order.
    let mut seen = Vec::new();
    for _ in 0..3 {
        match watcher.next_event().await {
            Ok(Some((id, e))) => seen.push((id, e.zxid)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seen, vec![(1, 4), (101, 6), (101, 7)]);

    let err = watcher.add("/missing", WatchKind::Data, None).await.err();
    assert!(
        matches!(&err, Some(e @ ClientError::Watch { .. }) if e.is(Reason::NoNode)),
        "{err:?}"
    );
    let err = watcher
        .add("/old", WatchKind::Persistent, Some(1))
        .await
        .err();
    assert!(
        matches!(err, Some(ClientError::Compacted { oldest_zxid: 30 })),
        "{err:?}"
    );

    // Events of a removed watch are dropped.
    let (id, _) = watcher
        .add("/b", WatchKind::Persistent, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    watcher.remove(id).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(watcher.next_event().await, Ok(Some((1, _)))));

    // The server ends the stream with a status: next_event surfaces it, then None.
    let err = watcher
        .add("/slow", WatchKind::Persistent, None)
        .await
        .err();
    assert_eq!(err.map(|e| e.code()), Some(tonic::Code::ResourceExhausted));
    assert!(matches!(watcher.next_event().await, Ok(None)));
    live.shutdown().await;
}

#[tokio::test]
async fn watcher_stream_surfaces_the_final_status() {
    let live = serve(fake(1)).await;
    let client = Client::connect([&live.addr])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut watcher = client.watcher().await.unwrap_or_else(|e| panic!("{e}"));
    watcher
        .add("/a", WatchKind::Persistent, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Ask for /slow without waiting for its reply, via the raw sender.
    watcher
        .send(watch_request::Request::Add(AddWatch {
            path: "/slow".into(),
            kind: WatchKind::Persistent as i32,
            start_zxid: None,
            request_id: 99,
        }))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let items: Vec<_> = watcher.into_stream().collect().await;
    let zxids: Vec<u64> = items
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|(_, e)| e.zxid))
        .collect();
    assert_eq!(zxids, vec![4, 6, 7]);
    assert!(matches!(
        items.last(),
        Some(Err(e)) if e.code() == tonic::Code::ResourceExhausted
    ));
    live.shutdown().await;
}

#[tokio::test]
async fn session_is_kept_alive_then_lost_when_the_server_expires_it() {
    let mut f = fake(1);
    f.expire_after = 4;
    let keepalives = Arc::clone(&f.keepalives);
    let live = serve(f).await;
    let client = Client::connect([&live.addr])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let session = client
        .open_session(Duration::from_millis(300))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(session.id(), 7);
    assert_eq!(session.secret(), &[1, 2, 3]);
    assert_eq!(session.timeout(), Duration::from_millis(300));
    assert!(session.is_alive());
    let state = tokio::time::timeout(Duration::from_secs(5), session.lost())
        .await
        .unwrap_or_else(|_| panic!("session never lost"));
    match state {
        SessionState::Lost { reason } => assert!(reason.starts_with("SESSION_EXPIRED"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(keepalives.load(Ordering::SeqCst) >= 5);
    live.shutdown().await;
}

#[tokio::test]
async fn session_is_lost_when_it_cannot_be_refreshed_in_time() {
    let mut f = fake(1);
    f.mute_after = 3;
    let live = serve(f).await;
    let client = Client::connect([&live.addr])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let session = client
        .open_session(Duration::from_millis(300))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let state = tokio::time::timeout(Duration::from_secs(5), session.lost())
        .await
        .unwrap_or_else(|_| panic!("session never lost"));
    match state {
        SessionState::Lost { reason } => assert!(reason.contains("not refreshed"), "{reason}"),
        other => panic!("{other:?}"),
    }
    live.shutdown().await;
}

#[tokio::test]
async fn session_stays_alive_and_close_marks_it_closed() {
    let live = serve(fake(1)).await;
    let client = Client::connect([&live.addr])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let session = client
        .open_session(Duration::from_millis(300))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut states = session.state_receiver();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(session.is_alive(), "{:?}", session.state());
    session.close().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(session.state(), SessionState::Closed);
    assert!(states.has_changed().unwrap_or(false));
    assert_eq!(*states.borrow_and_update(), SessionState::Closed);
    live.shutdown().await;
}

#[tokio::test]
async fn resume_checks_the_session_first() {
    let mut f = fake(1);
    f.expire_after = 0;
    let live = serve(f).await;
    let client = Client::connect([&live.addr])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = client
        .resume_session(5, vec![9], Duration::from_secs(1))
        .await
        .err();
    assert!(err.is_some_and(|e| e.is(Reason::SessionExpired)));
    let err = client.get_session(5).await.err();
    assert!(err.is_some_and(|e| e.is(Reason::SessionExpired)));
    live.shutdown().await;
}
