//! What an acquire asks for: [`LockOptions`] (mode, semaphore permits, how long to wait,
//! the contender's data), the `Acquire` request they make, and the longest wait the server
//! grants ([`MAX_LOCK_WAIT`]).

use std::time::Duration;

use crate::proto::v1::{self as pb, LockMode};

/// Longest wait the server grants an Acquire or a Campaign (its `wait_timeout_ms` 0).
pub const MAX_LOCK_WAIT: Duration = Duration::from_secs(300);

/// How to ask for a lock: mode, semaphore permits, how long to wait, and data stored in the
/// contender's node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LockOptions {
    /// `EXCLUSIVE` (a mutex, the default) or `SHARED` (read lock).
    pub mode: LockMode,
    /// If > 0, a counting semaphore with this many permits (`mode` is then ignored).
    pub permits: u32,
    /// How long [`Client::lock`] waits in the queue; `None` = the server's maximum
    /// ([`MAX_LOCK_WAIT`]). Ignored by [`Client::try_lock`].
    ///
    /// [`Client::lock`]: crate::client::Client::lock
    /// [`Client::try_lock`]: crate::client::Client::try_lock
    pub wait: Option<Duration>,
    /// Data stored in the contender's node (e.g. who holds it), shown by
    /// [`Client::inspect`].
    ///
    /// [`Client::inspect`]: crate::client::Client::inspect
    pub data: Vec<u8>,
}

impl LockOptions {
    /// An exclusive lock (mutex).
    pub fn exclusive() -> Self {
        Self::default()
    }

    /// A shared lock: held together with other shared holders, never with an exclusive one.
    pub fn shared() -> Self {
        LockOptions {
            mode: LockMode::Shared,
            ..Self::default()
        }
    }

    /// A counting semaphore with `permits` permits.
    pub fn semaphore(permits: u32) -> Self {
        LockOptions {
            permits,
            ..Self::default()
        }
    }

    /// The same options, waiting at most `wait` in the queue.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }

    /// The same options, with `data` stored in the contender's node.
    pub fn data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.data = data.into();
        self
    }

    pub(super) fn request(&self, path: &str, session_id: u64) -> pb::AcquireRequest {
        pb::AcquireRequest {
            path: path.to_string(),
            session_id,
            wait_timeout_ms: self.wait.map_or(0, wait_ms),
            mode: self.mode as i32,
            permits: self.permits,
            data: self.data.clone(),
        }
    }
}

/// Milliseconds of a wait, at least 1 (0 means "the server's maximum" on the wire).
pub(super) fn wait_ms(wait: Duration) -> i64 {
    i64::try_from(wait.as_millis()).unwrap_or(i64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_build_requests() {
        let r = LockOptions::shared()
            .wait(Duration::from_millis(1500))
            .data("me")
            .request("/l", 7);
        assert_eq!(r.mode, LockMode::Shared as i32);
        assert_eq!(r.wait_timeout_ms, 1500);
        assert_eq!(r.data, b"me");
        assert_eq!(r.session_id, 7);
        let r = LockOptions::semaphore(3).request("/s", 1);
        assert_eq!((r.permits, r.wait_timeout_ms), (3, 0));
        assert_eq!(
            LockOptions::exclusive()
                .wait(Duration::from_micros(10))
                .request("/l", 1)
                .wait_timeout_ms,
            1,
            "a sub-millisecond wait is not 'the server's maximum'"
        );
    }
}
