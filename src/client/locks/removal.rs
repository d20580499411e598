//! Deleting contender nodes: Release and Resign retried through transient failures (a
//! contender left behind would hold or block its lock for as long as its session lives),
//! and the removal of the session's stray contenders on a path, those that no live guard or
//! leadership of this process owns.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tonic::Code;

use super::registry::{lock_path_of, Registry};
use super::stubs::{elections, locks};
use crate::client::{error, Client, ClientError, Reason, Retry};
use crate::proto::v1::{self as pb};

impl Client {
    /// Release: deletes `lock_node` (see [`Client::delete_contender`]).
    pub(super) async fn release_node(
        &self,
        lock_node: &str,
        session_id: u64,
    ) -> Result<pb::ResponseHeader, ClientError> {
        self.delete_contender(lock_node, session_id, false).await
    }

    /// Release (or Resign, if `resign`): deletes a contender node.
    ///
    /// Transient failures (no leader during an election, member down) are retried on the
    /// next endpoints with a short backoff until the client's timeout: a contender left
    /// behind would hold or block the lock for as long as its session lives. Retrying is
    /// safe because contender names are never reused, and a `NO_NODE` after an attempt that
    /// may have been applied means it was. If the outcome stays unknown, the node is
    /// remembered as a possible stray, removed before or after the next acquire of the
    /// session on its path.
    pub(super) async fn delete_contender(
        &self,
        lock_node: &str,
        session_id: u64,
        resign: bool,
    ) -> Result<pb::ResponseHeader, ClientError> {
        let max = self.max_message_size();
        let maybe_applied = AtomicBool::new(false);
        let flag = &maybe_applied;
        let deadline = Instant::now() + self.timeout;
        let result = retry_transient(
            deadline,
            |client| async move {
                if resign {
                    let req = pb::ResignRequest {
                        leader_node: lock_node.to_string(),
                        session_id,
                    };
                    client
                        .unary(Retry::Idempotent, req, move |ch, r| async move {
                            let res = elections(ch, max).resign(r).await;
                            note_maybe_applied(flag, &res);
                            res
                        })
                        .await
                        .map(|r| r.header)
                } else {
                    let req = pb::ReleaseRequest {
                        lock_node: lock_node.to_string(),
                        session_id,
                    };
                    client
                        .unary(Retry::Idempotent, req, move |ch, r| async move {
                            let res = locks(ch, max).release(r).await;
                            note_maybe_applied(flag, &res);
                            res
                        })
                        .await
                        .map(|r| r.header)
                }
            },
            self,
        )
        .await;
        match result {
            Ok(header) => Ok(header.unwrap_or_default()),
            Err(e) if e.is(Reason::NoNode) && maybe_applied.load(Ordering::Relaxed) => {
                Ok(pb::ResponseHeader::default())
            }
            Err(e) => {
                let definite = matches!(
                    e.reason(),
                    Some(
                        Reason::NoNode
                            | Reason::NotOwner
                            | Reason::InvalidPath
                            | Reason::NoAuth
                            | Reason::BadArguments
                    )
                );
                if !definite {
                    if let Some(path) = lock_path_of(lock_node) {
                        Registry::global().mark_dirty(session_id, path);
                    }
                }
                Err(e)
            }
        }
    }

    /// Deletes the contenders of `session_id` at `path` that are not in `held` (the nodes
    /// of this process's live guards and leaderships). On failure, the key stays dirty so
    /// the next acquire tries again.
    pub(super) async fn remove_strays(&self, session_id: u64, path: &str, held: &HashSet<String>) {
        let deadline = Instant::now() + self.timeout;
        let state = match retry_transient(deadline, |c| async move { c.inspect(path).await }, self)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(path, error = %e, "cannot list lock contenders to remove strays");
                Registry::global().mark_dirty(session_id, path);
                return;
            }
        };
        for c in state.holders.iter().chain(state.waiters.iter()) {
            if c.session_id != session_id || held.contains(&c.lock_node) {
                continue;
            }
            match self.release_node(&c.lock_node, session_id).await {
                Ok(_) => tracing::debug!(node = c.lock_node, "removed a stray lock contender"),
                Err(e) if e.is(Reason::NoNode) => {}
                Err(e) => {
                    tracing::warn!(node = c.lock_node, error = %e, "cannot remove a stray lock contender");
                    Registry::global().mark_dirty(session_id, path);
                }
            }
        }
    }
}

/// Runs `call` with a client whose timeout is the time left until `deadline`, again after
/// transient failures (see [`ClientError::is_retryable`]) with a backoff of 50 ms doubling
/// to 500 ms, until it succeeds, fails otherwise, or the deadline passes (at most 50 tries).
async fn retry_transient<T, F, Fut>(
    deadline: Instant,
    call: F,
    client: &Client,
) -> Result<T, ClientError>
where
    F: Fn(Client) -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut backoff = Duration::from_millis(50);
    let mut last = None;
    for _ in 0..50 {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        match call(client.with_timeout(remaining)).await {
            Err(e) if e.is_retryable() => last = Some(e),
            other => return other,
        }
        let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
    Err(last.unwrap_or(ClientError::Timeout(client.timeout)))
}

/// Notes a failed attempt whose request may have been applied (the server or the
/// connection failed after it was sent).
fn note_maybe_applied<T>(flag: &AtomicBool, res: &Result<T, tonic::Status>) {
    if let Err(s) = res {
        if s.code() == Code::Unavailable && !error::not_applied(s) {
            flag.store(true, Ordering::Relaxed);
        }
    }
}
