//! Queueing a contender: Acquire, TryAcquire and Campaign sent with failover and a deadline
//! of the wait plus the client's timeout. The server creates the contender node, orders the
//! queue and answers when it is granted; this side keeps the call alive across members that
//! fail and removes the session's contenders that a failed attempt may have left queued.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Code, Request};

use super::registry::Registry;
use super::stubs::{elections, locks};
use super::MAX_LOCK_WAIT;
use crate::client::{error, Client, ClientError, Reason};
use crate::proto::v1::{self as pb};

impl Client {
    /// Sends an Acquire, TryAcquire or Campaign (`req` is the matching request) and returns
    /// the granted node and token.
    ///
    /// Like [`Client::unary`] it fails over to the next endpoint when one is unavailable,
    /// and sends the request again only if the server did not apply it. A member that shuts
    /// down while the call waits answers `UNAVAILABLE` after it queued the contender, so
    /// before each retry, and after a failure that may have left a contender behind, the
    /// session's stray contenders on the path are removed (see the documentation of
    /// [`locks`](super)).
    pub(super) async fn enqueue<R>(
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
        let (mut inflight, dirty) = Registry::global().begin(session_id, path);
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
            if let Some(held) = Registry::global().held_if_quiet(session_id, path, generation, 0) {
                self.remove_strays(session_id, path, &held).await;
            }
        }
        result
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
pub(super) enum Queue {
    /// Acquire (`wait`) or TryAcquire.
    Lock { wait: bool },
    /// Campaign.
    Campaign,
}

/// The wait a request asks for.
pub(super) trait WaitOf {
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

pub(super) type QueueFuture =
    Pin<Box<dyn Future<Output = Result<tonic::Response<(String, u64)>, tonic::Status>> + Send>>;

/// Sends a queueing request and returns (node, token).
pub(super) trait Caller<R> {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::may_have_queued;
    use crate::client::ClientError;

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
}
