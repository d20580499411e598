//! Watching an election: [`Client::observe`] opens a [`LeaderStream`] of the changes of
//! leader, served by one member.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::time::Instant;
use tonic::codec::Streaming;
use tonic::Code;

use super::stubs::elections;
use super::LeaderResponse;
use crate::client::{Client, ClientError};
use crate::proto::v1::{self as pb};

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

impl Client {
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
}
