//! `baton.v1.Sessions`: open, keep alive, close, describe.
//!
//! A session is a log entry (so every member knows it and a client may move between
//! members); its liveness is not: keepalives only refresh the leader's in-memory deadline.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use rand::RngCore;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::Ctx;
use crate::error::BatonError;
use crate::proto::v1::{self, sessions_server::Sessions};
use crate::tree::{self as t, RequestResult, SessionEntry};

/// The Sessions service.
pub struct SessionsService {
    ctx: Arc<Ctx>,
}

impl SessionsService {
    /// A service over the member's core.
    pub fn new(ctx: Arc<Ctx>) -> Self {
        SessionsService { ctx }
    }
}

fn info(e: &SessionEntry) -> v1::SessionInfo {
    v1::SessionInfo {
        session_id: e.session.id,
        timeout_ms: e.session.timeout_ms,
        ephemerals: e.ephemerals.iter().cloned().collect(),
        created_zxid: e.session.created_zxid,
        created_ms: e.session.created_ms,
    }
}

/// Checks a keepalive against the state: the session exists and the secret matches.
fn verify(ctx: &Ctx, id: u64, secret: &[u8]) -> Result<Duration, BatonError> {
    ctx.read_tree(|s| match s.session(id) {
        None => Err(BatonError::SessionExpired(id)),
        Some(e) if e.session.secret.as_ref() != secret => Err(BatonError::AuthFailed(id)),
        Some(e) => Ok(Duration::from_millis(e.session.timeout_ms.max(0) as u64)),
    })
}

/// Like [`verify`], but an unknown session is looked up again after catching up with the
/// leader: a member may not have applied a session opened through another member yet.
async fn verify_fresh(ctx: &Ctx, id: u64, secret: &[u8]) -> Result<Duration, BatonError> {
    match verify(ctx, id, secret) {
        Err(BatonError::SessionExpired(_)) => {
            ctx.member().linearizable().await?;
            verify(ctx, id, secret)
        }
        other => other,
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<v1::KeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Sessions for SessionsService {
    async fn open(
        &self,
        req: Request<v1::OpenSessionRequest>,
    ) -> Result<Response<v1::OpenSessionResponse>, Status> {
        let r = req.into_inner();
        let min = self.ctx.config().session_timeout_min.as_millis() as i64;
        let max = self.ctx.config().session_timeout_max.as_millis() as i64;
        let requested = if r.timeout_ms <= 0 {
            10_000
        } else {
            r.timeout_ms
        };
        let timeout_ms = requested.clamp(min, max);
        let (session_id, secret) = {
            let mut rng = rand::thread_rng();
            let mut id = 0;
            while id == 0 {
                id = rng.next_u64();
            }
            let mut secret = vec![0u8; 16];
            rng.fill_bytes(&mut secret);
            (id, secret)
        };
        let (result, zxid) = self
            .ctx
            .write(t::Request::OpenSession {
                session_id,
                secret: secret.clone().into(),
                timeout_ms,
            })
            .await?;
        match result {
            RequestResult::Done(Ok(())) => {}
            RequestResult::Done(Err(e)) => return Err(e.to_status()),
            other => return Err(Status::internal(format!("unexpected result {other:?}"))),
        }
        self.ctx
            .member()
            .touch_session(session_id, Duration::from_millis(timeout_ms as u64));
        Ok(Response::new(v1::OpenSessionResponse {
            header: self.ctx.header_at(zxid),
            session_id,
            secret,
            timeout_ms,
        }))
    }

    type KeepAliveStream = KeepAliveStream;

    async fn keep_alive(
        &self,
        req: Request<Streaming<v1::KeepAliveRequest>>,
    ) -> Result<Response<Self::KeepAliveStream>, Status> {
        let mut inbound = req.into_inner();
        let ctx = self.ctx.clone();
        let (tx, rx) = mpsc::channel(16);
        let mut shutdown = ctx.member().shutdown_signal();
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    m = inbound.next() => match m {
                        Some(m) => m,
                        None => break,
                    },
                    _ = shutdown.wait() => {
                        let _ = tx
                            .send(Err(Status::unavailable(
                                "member is shutting down; send keepalives to another member",
                            )))
                            .await;
                        break;
                    }
                };
                let reply = match msg {
                    Ok(k) => match verify_fresh(&ctx, k.session_id, &k.secret).await {
                        Ok(timeout) => {
                            ctx.member().touch_session(k.session_id, timeout);
                            Ok(v1::KeepAliveResponse {
                                session_id: k.session_id,
                                ttl_ms: timeout.as_millis() as i64,
                            })
                        }
                        Err(e) => Err(e.to_status()),
                    },
                    Err(status) => Err(status),
                };
                let stop = reply.is_err();
                if tx.send(reply).await.is_err() || stop {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn close(
        &self,
        req: Request<v1::CloseSessionRequest>,
    ) -> Result<Response<v1::CloseSessionResponse>, Status> {
        let r = req.into_inner();
        verify_fresh(&self.ctx, r.session_id, &r.secret).await?;
        let (result, zxid) = self
            .ctx
            .write(t::Request::CloseSession {
                session_id: r.session_id,
                secret: r.secret.into(),
            })
            .await?;
        match result {
            RequestResult::Done(Ok(())) => Ok(Response::new(v1::CloseSessionResponse {
                header: self.ctx.header_at(zxid),
            })),
            RequestResult::Done(Err(e)) => Err(e.to_status()),
            other => Err(Status::internal(format!("unexpected result {other:?}"))),
        }
    }

    async fn get(
        &self,
        req: Request<v1::GetSessionRequest>,
    ) -> Result<Response<v1::GetSessionResponse>, Status> {
        let id = req.into_inner().session_id;
        self.ctx.member().linearizable().await?;
        let (found, zxid) = self
            .ctx
            .read_tree(|s| (s.session(id).map(info), s.applied_index));
        let session = found.ok_or_else(|| BatonError::SessionExpired(id).to_status())?;
        Ok(Response::new(v1::GetSessionResponse {
            header: self.ctx.header_at(zxid),
            session: Some(session),
        }))
    }

    async fn list(
        &self,
        _req: Request<v1::ListSessionsRequest>,
    ) -> Result<Response<v1::ListSessionsResponse>, Status> {
        self.ctx.member().linearizable().await?;
        let (sessions, zxid) = self
            .ctx
            .read_tree(|s| (s.sessions().map(info).collect(), s.applied_index));
        Ok(Response::new(v1::ListSessionsResponse {
            header: self.ctx.header_at(zxid),
            sessions,
        }))
    }
}
