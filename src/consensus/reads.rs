//! Linearizable reads: the leader confirms it still leads (a heartbeat round to a quorum)
//! and the member waits until it has applied up to the confirmed index. On a follower the
//! confirmed index comes from the leader (`ReadIndex` RPC) and the follower waits until it
//! has applied that far itself. Concurrent readers share one confirmation: a loop takes every
//! waiting reader, confirms once, and answers them all. Every reader in a batch arrived
//! before the confirmation started, so the confirmed index covers every write acknowledged
//! before any of them began.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::forward::{Call, Forwarder, Leader, LEADER_WAIT};
use super::peers::Peers;
use super::Raft;
use crate::error::BatonError;
use crate::proto::raft::ReadIndexRequest;

type Waiter = oneshot::Sender<Result<u64, BatonError>>;

/// Handle to the read-barrier loop.
#[derive(Clone)]
pub struct ReadBarrier {
    tx: mpsc::Sender<Waiter>,
    applied: watch::Receiver<u64>,
}

impl ReadBarrier {
    /// Starts the loop. `applied` follows the state machine's applied index.
    pub fn start(raft: Raft, peers: Arc<Peers>, applied: watch::Receiver<u64>) -> ReadBarrier {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run(Forwarder::new(raft, peers), rx));
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

async fn run(to_leader: Forwarder, mut rx: mpsc::Receiver<Waiter>) {
    while let Some(first) = rx.recv().await {
        let mut waiters = vec![first];
        while let Ok(w) = rx.try_recv() {
            waiters.push(w);
        }
        let r = confirm(&to_leader).await;
        for w in waiters {
            let _ = w.send(r.clone());
        }
    }
}

/// How long a read waits for the next leader after the known one could not be reached (the
/// failover fast path elects one within milliseconds of a leader's death).
const NEXT_LEADER_WAIT: Duration = Duration::from_secs(1);

/// The read index asked of the leader. It changes nothing, so it is given up as soon as
/// another leader is known: a frozen leader does not hold every read on this member for the
/// whole timeout (a read is safe to retry).
const READ_INDEX: Call = Call {
    what: "read index from the leader",
    timeout: Duration::from_secs(5),
    may_apply: false,
    until_deposed: true,
};

/// One leader-confirmed read index. When the leader cannot be reached (it died), the read
/// waits (bounded) for the next leader and asks it instead of failing at once.
async fn confirm(to_leader: &Forwarder) -> Result<u64, BatonError> {
    let leader = to_leader.find_leader(LEADER_WAIT).await?;
    let r = confirm_at(to_leader, &leader).await;
    match (&leader, &r) {
        (Leader::There(old), Err(BatonError::Unavailable(_))) => {
            match to_leader.next_leader(old.id, NEXT_LEADER_WAIT).await {
                Ok(next) => confirm_at(to_leader, &next).await,
                Err(_) => r,
            }
        }
        _ => r,
    }
}

async fn confirm_at(to_leader: &Forwarder, leader: &Leader) -> Result<u64, BatonError> {
    match leader {
        Leader::Here => match to_leader.raft().ensure_linearizable().await {
            Ok(Some(log_id)) => Ok(log_id.index),
            Ok(None) => Ok(0),
            Err(e) => Err(BatonError::Unavailable(format!(
                "cannot confirm leadership for a linearizable read: {e}"
            ))),
        },
        Leader::There(to) => to_leader
            .call(
                to,
                &READ_INDEX,
                ReadIndexRequest {},
                |mut c, r| async move { c.read_index(r).await },
            )
            .await
            .map(|r| r.index),
    }
}
