//! Linearizable reads: the leader confirms it still leads (a heartbeat round to a quorum)
//! and the member waits until it has applied up to the confirmed index. Concurrent readers
//! share one confirmation: a loop takes every waiting reader, confirms once, and answers
//! them all. Every reader in a batch arrived before the confirmation started, so the
//! confirmed index covers every write acknowledged before any of them began.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::Raft;
use crate::error::BatonError;

type Waiter = oneshot::Sender<Result<u64, BatonError>>;

/// Handle to the read-barrier loop.
#[derive(Clone)]
pub struct ReadBarrier {
    tx: mpsc::Sender<Waiter>,
    applied: watch::Receiver<u64>,
}

impl ReadBarrier {
    /// Starts the loop. `applied` follows the state machine's applied index.
    pub fn start(raft: Raft, applied: watch::Receiver<u64>) -> ReadBarrier {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run(raft, rx));
        ReadBarrier { tx, applied }
    }

    /// Waits until this member's state reflects every write acknowledged before the call;
    /// returns the applied index it then had.
    ///
    /// # Errors
    /// `UNAVAILABLE` without a leader or quorum.
    pub async fn linearizable(&self) -> Result<u64, BatonError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(tx)
            .await
            .map_err(|_| BatonError::Unavailable("shutting down".into()))?;
        let index = rx
            .await
            .map_err(|_| BatonError::Unavailable("shutting down".into()))??;
        self.wait_applied(index, Duration::from_secs(10)).await
    }

    /// Waits until the applied index reaches `index` (read-your-writes with `min_zxid`).
    ///
    /// # Errors
    /// `DEADLINE_EXCEEDED` if it does not within `timeout`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<u64, BatonError> {
        let mut rx = self.applied.clone();
        let r = tokio::time::timeout(timeout, rx.wait_for(|a| *a >= index)).await;
        match r {
            Ok(Ok(v)) => Ok(*v),
            Ok(Err(_)) => Err(BatonError::Unavailable("shutting down".into())),
            Err(_) => Err(BatonError::DeadlineExceeded(format!(
                "zxid {index} not applied within {} ms (applied: {})",
                timeout.as_millis(),
                *self.applied.borrow()
            ))),
        }
    }

    /// The applied index now.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }
}

async fn run(raft: Raft, mut rx: mpsc::Receiver<Waiter>) {
    while let Some(first) = rx.recv().await {
        let mut waiters = vec![first];
        while let Ok(w) = rx.try_recv() {
            waiters.push(w);
        }
        let r = match raft.ensure_linearizable().await {
            Ok(Some(log_id)) => Ok(log_id.index),
            Ok(None) => Ok(0),
            Err(e) => Err(BatonError::Unavailable(format!(
                "cannot confirm leadership for a linearizable read: {e}"
            ))),
        };
        for w in waiters {
            let _ = w.send(r.clone());
        }
    }
}
