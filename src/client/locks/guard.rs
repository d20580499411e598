//! [`LockGuard`], a granted lock: its node and fencing token, whether the session that holds
//! it is still alive (the lock may be granted to someone else once it is not), and its
//! release: explicit, on drop, or never (leaked).

use std::future::Future;

use tokio::sync::watch;

use super::registry::Registry;
use crate::client::{Client, ClientError, Reason, Session, SessionState};

/// A granted lock. It is released by [`LockGuard::release`], or — without waiting for the
/// answer — when the guard is dropped (inside a Tokio runtime), or by the server when the
/// owning session ends.
///
/// Holding a guard does not prove the lock is still held: the session may have expired (see
/// [`LockGuard::lost`]). Make writes conditional on the lock with
/// [`MultiOps::check_fence`].
///
/// [`MultiOps::check_fence`]: crate::client::MultiOps::check_fence
pub struct LockGuard {
    client: Client,
    lock_path: String,
    lock_node: String,
    token: u64,
    session_id: u64,
    state: watch::Receiver<SessionState>,
    /// Set once released (by `release`), so `Drop` does nothing.
    done: bool,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("lock_node", &self.lock_node)
            .field("fencing_token", &self.token)
            .field("session_id", &format_args!("{:#x}", self.session_id))
            .finish_non_exhaustive()
    }
}

impl LockGuard {
    /// The guard of `lock_node`, granted at `path` to `session` with fencing token `token`.
    pub(super) fn new(
        client: &Client,
        path: &str,
        session: &Session,
        lock_node: String,
        token: u64,
    ) -> LockGuard {
        LockGuard {
            client: client.clone(),
            lock_path: path.to_string(),
            lock_node,
            token,
            session_id: session.id(),
            state: session.state_receiver(),
            done: false,
        }
    }

    /// The contender node that holds the lock (`<path>/lock-NNNNNNNNNN`).
    pub fn lock_node(&self) -> &str {
        &self.lock_node
    }

    /// The lock path.
    pub fn lock_path(&self) -> &str {
        &self.lock_path
    }

    /// The fencing token: strictly increasing across the holders of this lock path.
    pub fn fencing_token(&self) -> u64 {
        self.token
    }

    /// The owning session's id.
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// Resolves when the owning session is no longer alive (lost, closed, or its
    /// [`Session`] dropped, which stops its keepalives), with the session's last state: from
    /// then on the lock may be granted to someone else. Resolves at once if that already
    /// happened. The future does not borrow the guard.
    pub fn lost(&self) -> impl Future<Output = SessionState> + Send + 'static {
        let mut rx = self.state.clone();
        async move {
            let seen = rx.wait_for(|s| !s.is_alive()).await.map(|s| s.clone());
            match seen {
                Ok(s) => s,
                Err(_) => match rx.borrow().clone() {
                    SessionState::Alive => SessionState::Lost {
                        reason: "the session was dropped; its keepalives stopped".to_string(),
                    },
                    other => other,
                },
            }
        }
    }

    /// Whether the owning session is still alive as far as this client knows.
    pub fn is_session_alive(&self) -> bool {
        self.state.borrow().is_alive() && self.state.has_changed().is_ok()
    }

    /// Releases the lock (deletes the contender node) and waits for the answer.
    ///
    /// # Errors
    /// `NO_NODE` if the node is already gone (the session ended, so the lock was lost
    /// earlier), `NOT_OWNER`, transport errors.
    pub async fn release(mut self) -> Result<(), ClientError> {
        self.done = true;
        Registry::global().forget(self.session_id, &self.lock_path, &self.lock_node);
        self.client
            .release_node(&self.lock_node, self.session_id)
            .await
            .map(drop)
    }

    /// Gives up the guard without releasing the lock: it stays held until
    /// [`Client::release`] is called with the returned node and session id, or the session
    /// ends. Returns `(lock_node, fencing_token)`.
    pub fn leak(mut self) -> (String, u64) {
        // The node stays registered as held, so no stray cleanup of this process removes it.
        self.done = true;
        (std::mem::take(&mut self.lock_node), self.token)
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        Registry::global().forget(self.session_id, &self.lock_path, &self.lock_node);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return; // No runtime: the lock goes when the session ends.
        };
        let client = self.client.clone();
        let node = std::mem::take(&mut self.lock_node);
        let session_id = self.session_id;
        rt.spawn(async move {
            if let Err(e) = client.release_node(&node, session_id).await {
                if !e.is(Reason::NoNode) {
                    tracing::warn!(node, error = %e, "releasing a dropped lock guard failed");
                }
            }
        });
    }
}
