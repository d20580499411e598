//! Sessions kept alive by a background task over the `Sessions.KeepAlive` stream.
//!
//! The task sends a keepalive every third of the session timeout and moves the session's
//! local deadline to *send time + ttl* on each reply, which is never later than the server's
//! own deadline. When the stream breaks or stops answering it is reopened, on the next
//! endpoint if the current one is unavailable. The session is declared lost when the server
//! says it expired (or rejects the secret), or when the local deadline passes without a
//! refresh: from then on its ephemeral nodes may be gone.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::Streaming;

use super::{sessions, Client, ClientError, Reason};
use crate::proto::v1::{KeepAliveRequest, KeepAliveResponse};

/// Where a session stands, as far as this client knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Refreshed within its timeout.
    Alive,
    /// Expired on the server, or not refreshed in time; ephemerals may be gone.
    Lost {
        /// Why, in one line.
        reason: String,
    },
    /// Closed by [`Session::close`].
    Closed,
}

impl SessionState {
    /// Whether the session is still alive.
    pub fn is_alive(&self) -> bool {
        matches!(self, SessionState::Alive)
    }
}

/// A session with a background keepalive.
///
/// Dropping a `Session` stops the keepalive but does not close the session: the server expires
/// it after its timeout (call [`Session::close`] to delete its ephemerals at once).
pub struct Session {
    client: Client,
    id: u64,
    secret: Vec<u8>,
    timeout: Duration,
    state: Arc<watch::Sender<SessionState>>,
    task: JoinHandle<()>,
}

impl Session {
    pub(crate) fn start(
        client: Client,
        id: u64,
        secret: Vec<u8>,
        timeout: Duration,
        stream: Option<KeepAliveStream>,
    ) -> Session {
        let (state, _) = watch::channel(SessionState::Alive);
        let state = Arc::new(state);
        let keeper = Keeper {
            client: client.clone(),
            id,
            secret: secret.clone(),
            timeout,
            state: Arc::clone(&state),
        };
        let task = tokio::spawn(keeper.run(stream));
        Session {
            client,
            id,
            secret,
            timeout,
            state,
            task,
        }
    }

    pub(crate) async fn resume(
        client: Client,
        id: u64,
        secret: Vec<u8>,
        timeout: Duration,
    ) -> Result<Session, ClientError> {
        let sent = Instant::now();
        let deadline = sent + client.timeout();
        let (index, mut stream) = KeepAliveStream::open(&client, deadline).await?;
        let request = KeepAliveRequest {
            session_id: id,
            secret: secret.clone(),
        };
        if stream.tx.send(request).await.is_err() {
            client.fail_over(index);
            return Err(ClientError::Status(tonic::Status::unavailable(
                "keepalive stream closed",
            )));
        }
        let reply = match tokio::time::timeout_at(deadline, stream.rx.message()).await {
            Err(_) => return Err(ClientError::Timeout(client.timeout())),
            Ok(Err(status)) => return Err(status.into()),
            Ok(Ok(None)) => {
                return Err(ClientError::Status(tonic::Status::unavailable(
                    "keepalive stream ended",
                )))
            }
            Ok(Ok(Some(reply))) => reply,
        };
        if reply.ttl_ms <= 0 {
            return Err(ClientError::Status(
                crate::error::BatonError::SessionExpired(id).to_status(),
            ));
        }
        // The server's reply states the negotiated timeout; `timeout` is only a fallback.
        let timeout = if reply.ttl_ms > 0 {
            ttl(&reply)
        } else {
            timeout
        };
        Ok(Session::start(client, id, secret, timeout, Some(stream)))
    }

    /// The session id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The secret that proves ownership (for resuming elsewhere and for closing).
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// The negotiated timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The current state.
    pub fn state(&self) -> SessionState {
        self.state.borrow().clone()
    }

    /// Whether the session is still alive.
    pub fn is_alive(&self) -> bool {
        self.state.borrow().is_alive()
    }

    /// Marks the session lost at once when a call made with it says the server no longer
    /// knows it (instead of waiting for the keepalive to find out).
    pub(crate) fn note_error(&self, err: &ClientError) {
        if is_fatal(err) {
            self.task.abort();
            self.state.send_if_modified(|s| {
                if s.is_alive() {
                    *s = SessionState::Lost {
                        reason: err.to_string(),
                    };
                    true
                } else {
                    false
                }
            });
        }
    }

    /// A receiver that sees every state change.
    pub fn state_receiver(&self) -> watch::Receiver<SessionState> {
        self.state.subscribe()
    }

    /// Waits until the session is no longer alive and returns why.
    pub async fn lost(&self) -> SessionState {
        let mut rx = self.state.subscribe();
        let state = match rx.wait_for(|s| !s.is_alive()).await {
            Ok(s) => s.clone(),
            Err(_) => self.state(),
        };
        state
    }

    /// Stops the keepalive and closes the session on the server, deleting its ephemeral
    /// nodes. The state becomes [`SessionState::Closed`] on success.
    ///
    /// # Errors
    /// `SESSION_EXPIRED` if the server no longer knows the session (the state becomes
    /// `Lost`), transport errors (the keepalive stays stopped; the server expires the session
    /// after its timeout).
    pub async fn close(&self) -> Result<(), ClientError> {
        self.task.abort();
        match self.client.close_session(self.id, &self.secret).await {
            Ok(_) => {
                self.state.send_replace(SessionState::Closed);
                Ok(())
            }
            Err(e) => {
                if e.is(Reason::SessionExpired) {
                    self.state.send_replace(SessionState::Lost {
                        reason: e.to_string(),
                    });
                }
                Err(e)
            }
        }
    }
}

impl std::fmt::Debug for Session {
    /// Leaves the secret out, so logging a session does not leak it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &format_args!("{:#x}", self.id))
            .field("timeout", &self.timeout)
            .field("state", &*self.state.borrow())
            .finish_non_exhaustive()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One open KeepAlive stream.
pub(crate) struct KeepAliveStream {
    tx: mpsc::Sender<KeepAliveRequest>,
    rx: Streaming<KeepAliveResponse>,
}

impl KeepAliveStream {
    /// Opens a stream on the current endpoint; returns the endpoint's index with it.
    async fn open(client: &Client, deadline: Instant) -> Result<(usize, Self), ClientError> {
        let (index, channel) = client.current();
        let (tx, rx) = mpsc::channel(16);
        let mut stub = sessions(channel, client.max_message_size());
        let call = stub.keep_alive(client.request(ReceiverStream::new(rx)));
        match tokio::time::timeout_at(deadline, call).await {
            Err(_) => {
                client.fail_over(index);
                Err(ClientError::Timeout(client.timeout()))
            }
            Ok(Err(status)) => {
                if status.code() == tonic::Code::Unavailable {
                    client.fail_over(index);
                }
                Err(status.into())
            }
            Ok(Ok(resp)) => Ok((
                index,
                KeepAliveStream {
                    tx,
                    rx: resp.into_inner(),
                },
            )),
        }
    }
}

fn ttl(reply: &KeepAliveResponse) -> Duration {
    Duration::from_millis(u64::try_from(reply.ttl_ms).unwrap_or(0))
}

/// Whether an error means the session itself is gone (as opposed to the connection).
fn is_fatal(err: &ClientError) -> bool {
    err.is(Reason::SessionExpired) || err.is(Reason::AuthFailed)
}

/// How one stream ended.
enum StreamEnd {
    /// The session is gone.
    Lost(String),
    /// The stream broke; reopen it (on the next endpoint if `fail_over`).
    Broken { fail_over: bool },
}

/// The background task's state.
struct Keeper {
    client: Client,
    id: u64,
    secret: Vec<u8>,
    timeout: Duration,
    state: Arc<watch::Sender<SessionState>>,
}

impl Keeper {
    fn period(&self) -> Duration {
        (self.timeout / 3).max(Duration::from_millis(10))
    }

    async fn run(self, mut stream: Option<KeepAliveStream>) {
        let mut deadline = Instant::now() + self.timeout;
        let mut backoff = Duration::from_millis(50);
        loop {
            if Instant::now() >= deadline {
                return self.lose("not refreshed within its timeout".to_string());
            }
            let (index, current) = match stream.take() {
                Some(s) => (None, s),
                None => match KeepAliveStream::open(&self.client, deadline).await {
                    Ok((index, s)) => (Some(index), s),
                    Err(e) if is_fatal(&e) => return self.lose(e.to_string()),
                    Err(_) => {
                        let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
                        tokio::time::sleep(pause).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                },
            };
            match self.drive(current, &mut deadline, &mut backoff).await {
                StreamEnd::Lost(reason) => return self.lose(reason),
                StreamEnd::Broken { fail_over } => {
                    if fail_over {
                        if let Some(index) = index {
                            self.client.fail_over(index);
                        } else {
                            let (index, _) = self.client.current();
                            self.client.fail_over(index);
                        }
                    }
                    let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
                    tokio::time::sleep(pause).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Sends keepalives on one stream until it breaks or the session is lost.
    async fn drive(
        &self,
        mut stream: KeepAliveStream,
        deadline: &mut Instant,
        backoff: &mut Duration,
    ) -> StreamEnd {
        let period = self.period();
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Send times of the keepalives not yet answered, oldest first.
        let mut pending: VecDeque<Instant> = VecDeque::new();
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let now = Instant::now();
                    if pending.front().is_some_and(|&sent| now.duration_since(sent) >= period) {
                        return StreamEnd::Broken { fail_over: true };
                    }
                    let request = KeepAliveRequest {
                        session_id: self.id,
                        secret: self.secret.clone(),
                    };
                    match stream.tx.try_send(request) {
                        Ok(()) => pending.push_back(now),
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            return StreamEnd::Broken { fail_over: true };
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => {
                            return StreamEnd::Broken { fail_over: false };
                        }
                    }
                }
                message = stream.rx.message() => match message {
                    Ok(Some(reply)) => {
                        let sent = pending.pop_front().unwrap_or_else(Instant::now);
                        if reply.ttl_ms <= 0 {
                            return StreamEnd::Lost(format!(
                                "SESSION_EXPIRED: session {:#x} expired", self.id
                            ));
                        }
                        *deadline = (*deadline).max(sent + ttl(&reply));
                        *backoff = Duration::from_millis(50);
                    }
                    Ok(None) => return StreamEnd::Broken { fail_over: false },
                    Err(status) => {
                        let fail_over = status.code() == tonic::Code::Unavailable;
                        let err = ClientError::from(status);
                        if is_fatal(&err) {
                            return StreamEnd::Lost(err.to_string());
                        }
                        return StreamEnd::Broken { fail_over };
                    }
                },
                _ = tokio::time::sleep_until(*deadline) => {
                    return StreamEnd::Lost("not refreshed within its timeout".to_string());
                }
            }
        }
    }

    fn lose(&self, reason: String) {
        self.state.send_if_modified(|s| {
            if s.is_alive() {
                *s = SessionState::Lost { reason };
                true
            } else {
                false
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states() {
        assert!(SessionState::Alive.is_alive());
        assert!(!SessionState::Closed.is_alive());
        assert!(!SessionState::Lost { reason: "x".into() }.is_alive());
    }

    /// A client that never dials (no server is needed).
    fn offline_client() -> Client {
        let endpoint = tonic::transport::Endpoint::from_static("http://127.0.0.1:1");
        Client {
            shared: Arc::new(super::super::Shared {
                endpoints: vec!["http://127.0.0.1:1".into()],
                channels: vec![endpoint.connect_lazy()],
                current: std::sync::atomic::AtomicUsize::new(0),
                options: Default::default(),
                ids: super::super::Sequencer::new(),
            }),
            timeout: Duration::from_secs(1),
            credentials: None,
        }
    }

    #[tokio::test]
    async fn debug_output_hides_the_secret() {
        let session = Session::start(
            offline_client(),
            0x2a,
            b"hunter2".to_vec(),
            Duration::from_secs(9),
            None,
        );
        let shown = format!("{session:?}");
        assert!(shown.contains("0x2a"), "{shown}");
        assert!(!shown.contains("104"), "{shown}"); // 'h' of the secret
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[tokio::test]
    async fn a_call_that_finds_the_session_expired_marks_it_lost_at_once() {
        let session = Session::start(
            offline_client(),
            7,
            b"s".to_vec(),
            Duration::from_secs(60),
            None,
        );
        session.note_error(&ClientError::from(tonic::Status::unavailable("down")));
        assert!(
            session.is_alive(),
            "a transport error says nothing of the session"
        );
        let expired = ClientError::from(crate::error::BatonError::SessionExpired(7).to_status());
        session.note_error(&expired);
        assert!(
            matches!(session.state(), SessionState::Lost { .. }),
            "{:?}",
            session.state()
        );
    }

    #[test]
    fn fatal_errors() {
        let expired = ClientError::from(crate::error::BatonError::SessionExpired(1).to_status());
        assert!(is_fatal(&expired));
        let unavailable = ClientError::from(tonic::Status::unavailable("down"));
        assert!(!is_fatal(&unavailable));
    }
}
