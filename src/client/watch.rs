//! One `Watches.Watch` stream carrying many watches.
//!
//! The stream is read only when the caller asks for something ([`Watcher::add`] or
//! [`Watcher::next_event`]), never by a background task: a caller that stops reading pushes
//! back on the server, which may then end the stream with `RESOURCE_EXHAUSTED`, and that status
//! is what the next read returns. Events that arrive while `add` waits for its reply are kept
//! and handed out by `next_event` in order.

use std::collections::{HashSet, VecDeque};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::Streaming;

use super::{Client, ClientError, WatchKind};
use crate::proto::v1::watches_client::WatchesClient;
use crate::proto::v1::{
    watch_request, watch_response, AddWatch, Added, RemoveWatch, WatchEvent, WatchRequest,
    WatchResponse,
};

/// A watch stream on one member. Add watches with [`Watcher::add`], read their events with
/// [`Watcher::next_event`] (or turn it into a [`Stream`] with [`Watcher::into_stream`]).
///
/// Events of every watch on the stream come in zxid order; one-shot watches (`DATA`,
/// `CHILDREN`, `EXISTS`) deliver at most one event. Dropping the watcher ends the stream and
/// every watch on it.
pub struct Watcher {
    tx: mpsc::Sender<WatchRequest>,
    rx: Streaming<WatchResponse>,
    /// Events received but not yet handed out.
    buffered: VecDeque<(u64, WatchEvent)>,
    /// Watches removed by the caller; their late events are dropped.
    removed: HashSet<u64>,
    next_request_id: u64,
    /// Deadline of `add` replies.
    timeout: std::time::Duration,
    /// The stream has ended (with or without an error already returned).
    finished: bool,
    endpoint: String,
    /// Index of the endpoint among the client's.
    index: usize,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("endpoint", &self.endpoint)
            .field("buffered", &self.buffered.len())
            .field("finished", &self.finished)
            .finish()
    }
}

impl Watcher {
    pub(crate) async fn open(client: &Client) -> Result<Watcher, ClientError> {
        let deadline = Instant::now() + client.timeout();
        let mut last = None;
        for _ in 0..client.shared.channels.len() {
            let (index, channel) = client.current();
            let (tx, rx) = mpsc::channel(64);
            let max = client.max_message_size();
            let mut stub = WatchesClient::new(channel)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max);
            let call = stub.watch(client.request(ReceiverStream::new(rx)));
            match tokio::time::timeout_at(deadline, call).await {
                Err(_) => {
                    client.fail_over(index);
                    return Err(ClientError::Timeout(client.timeout()));
                }
                Ok(Ok(resp)) => {
                    return Ok(Watcher {
                        tx,
                        rx: resp.into_inner(),
                        buffered: VecDeque::new(),
                        removed: HashSet::new(),
                        next_request_id: 1,
                        timeout: client.timeout(),
                        finished: false,
                        endpoint: client.shared.endpoints[index].clone(),
                        index,
                    });
                }
                Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                    client.fail_over(index);
                    last = Some(status);
                }
                Ok(Err(status)) => return Err(status.into()),
            }
        }
        Err(match last {
            Some(status) => status.into(),
            None => ClientError::Timeout(client.timeout()),
        })
    }

    /// The endpoint (member) this stream is served by.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub(crate) fn endpoint_index(&self) -> usize {
        self.index
    }

    /// Adds a watch and waits for the server's confirmation. With `start_zxid`, the server
    /// first replays every matching event after that zxid (gapless resume). Returns the watch
    /// id, which tags its events, and the `Added` reply (registration zxid, whether the node
    /// existed, its Stat).
    ///
    /// # Errors
    /// [`ClientError::Watch`] if the server refused the watch (`NO_NODE` for a `DATA` or
    /// `CHILDREN` watch on a missing node, `INVALID_PATH`, ...); [`ClientError::Compacted`] if
    /// the member's history no longer reaches `start_zxid`; [`ClientError::Timeout`] if no
    /// reply came within the client's timeout; the stream's final status if it ended.
    pub async fn add(
        &mut self,
        path: &str,
        kind: WatchKind,
        start_zxid: Option<u64>,
    ) -> Result<(u64, Added), ClientError> {
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        self.send(watch_request::Request::Add(AddWatch {
            path: path.to_string(),
            kind: kind as i32,
            start_zxid,
            request_id,
        }))
        .await?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let message = match tokio::time::timeout_at(deadline, self.rx.message()).await {
                Err(_) => return Err(ClientError::Timeout(self.timeout)),
                Ok(m) => m,
            };
            let response = match message {
                Ok(Some(r)) => r,
                Ok(None) => {
                    self.finished = true;
                    return Err(ClientError::WatchClosed);
                }
                Err(status) => {
                    self.finished = true;
                    return Err(status.into());
                }
            };
            match response.response {
                Some(watch_response::Response::Added(added)) if added.request_id == request_id => {
                    return Ok((response.watch_id, added));
                }
                Some(watch_response::Response::Compacted(c)) if c.request_id == request_id => {
                    return Err(ClientError::Compacted {
                        oldest_zxid: c.oldest_zxid,
                    });
                }
                Some(watch_response::Response::Error(e)) if e.request_id == request_id => {
                    return Err(ClientError::Watch {
                        reason: e.reason,
                        message: e.message,
                    });
                }
                other => self.absorb(response.watch_id, other),
            }
        }
    }

    /// Removes a watch. Returns once the request is sent; events the server sent before it
    /// saw the removal are dropped rather than handed out.
    ///
    /// # Errors
    /// The stream's final status if it has ended.
    pub async fn remove(&mut self, watch_id: u64) -> Result<(), ClientError> {
        self.removed.insert(watch_id);
        self.buffered.retain(|(id, _)| *id != watch_id);
        self.send(watch_request::Request::Remove(RemoveWatch { watch_id }))
            .await
    }

    /// The next event of any watch on the stream, with its watch id. Returns `Ok(None)` once
    /// the stream has ended cleanly (or after an error was returned).
    ///
    /// Cancel-safe: it can be used in `tokio::select!` without losing events.
    ///
    /// # Errors
    /// The status the server ended the stream with, e.g. `RESOURCE_EXHAUSTED` when this
    /// watcher fell too far behind.
    pub async fn next_event(&mut self) -> Result<Option<(u64, WatchEvent)>, ClientError> {
        loop {
            if let Some(event) = self.buffered.pop_front() {
                return Ok(Some(event));
            }
            if self.finished {
                return Ok(None);
            }
            match self.rx.message().await {
                Ok(Some(response)) => self.absorb(response.watch_id, response.response),
                Ok(None) => self.finished = true,
                Err(status) => {
                    self.finished = true;
                    return Err(status.into());
                }
            }
        }
    }

    /// The events as a [`Stream`]; it ends after the stream's final error, if any.
    pub fn into_stream(self) -> WatcherStream {
        let stream = futures::stream::unfold(Some(self), |watcher| async move {
            let mut watcher = watcher?;
            match watcher.next_event().await {
                Ok(Some(event)) => Some((Ok(event), Some(watcher))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        });
        WatcherStream {
            inner: stream.boxed(),
        }
    }

    /// Keeps the events of a response; other replies (late `Added` of a timed-out add,
    /// `Removed`) need no action.
    fn absorb(&mut self, watch_id: u64, response: Option<watch_response::Response>) {
        if let Some(watch_response::Response::Events(events)) = response {
            if self.removed.contains(&watch_id) {
                return;
            }
            self.buffered
                .extend(events.events.into_iter().map(|e| (watch_id, e)));
        }
    }

    pub(super) async fn send(
        &mut self,
        request: watch_request::Request,
    ) -> Result<(), ClientError> {
        if self.finished {
            return Err(ClientError::WatchClosed);
        }
        let request = WatchRequest {
            request: Some(request),
        };
        if self.tx.send(request).await.is_ok() {
            return Ok(());
        }
        // The call is over: report how it ended.
        self.finished = true;
        let deadline = Instant::now() + self.timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.message()).await {
                Ok(Ok(Some(response))) => self.absorb(response.watch_id, response.response),
                Ok(Ok(None)) | Err(_) => return Err(ClientError::WatchClosed),
                Ok(Err(status)) => return Err(status.into()),
            }
        }
    }
}

/// One item of a [`WatcherStream`].
type WatcherItem = Result<(u64, WatchEvent), ClientError>;

/// The events of a [`Watcher`] as a `Stream` of `(watch_id, event)`.
pub struct WatcherStream {
    inner: futures::stream::BoxStream<'static, WatcherItem>,
}

impl std::fmt::Debug for WatcherStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatcherStream").finish_non_exhaustive()
    }
}

impl Stream for WatcherStream {
    type Item = Result<(u64, WatchEvent), ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}
