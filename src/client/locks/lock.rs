//! The lock calls of [`Client`]: queue for a lock and wait ([`Client::lock`]) or take it
//! only if free ([`Client::try_lock`]), release a node by name ([`Client::release`]), and
//! list a lock's holders and waiters ([`Client::inspect`]).

use super::contender::Queue;
use super::registry::{lock_path_of, Registry};
use super::stubs::locks;
use super::{InspectResponse, LockGuard, LockOptions};
use crate::client::{Client, ClientError, Retry, Session};
use crate::proto::v1::{self as pb};

impl Client {
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
        Ok(LockGuard::new(self, path, session, resp.0, resp.1))
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
        Ok(LockGuard::new(self, path, session, resp.0, resp.1))
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
        if let Some(path) = lock_path_of(lock_node) {
            Registry::global().forget(session_id, path, lock_node);
        }
        self.release_node(lock_node, session_id).await
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
}
