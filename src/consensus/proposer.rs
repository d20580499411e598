//! The proposer: packs concurrent client requests into one log entry (group commit).
//!
//! openraft 0.9 appends and flushes each `client_write` on its own, so one entry per client
//! request costs one fsync each. Instead, requests queue here; a loop takes everything queued
//! (up to `max_batch` requests or `MAX_BATCH_BYTES`), stamps the batch with the proposer's
//! clock, and proposes it as one entry. While a batch is in flight the next one fills up, so
//! batches grow with load and a lone request waits for no timer.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::warn;

use super::Raft;
use crate::error::BatonError;
use crate::tree::{Command, Request, RequestResult, Zxid};

/// Upper bound on the payload of one proposed entry.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Proposals in flight at once: one appending while the previous one is being applied.
const MAX_IN_FLIGHT: usize = 2;

type Reply = oneshot::Sender<Result<(RequestResult, Zxid), BatonError>>;

/// Handle to the proposer loop.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<(Request, Reply)>,
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Proposer {
    /// Starts the loop on the current runtime.
    pub fn start(raft: Raft, max_batch: usize) -> Proposer {
        let (tx, rx) = mpsc::channel(max_batch.max(1) * 4);
        tokio::spawn(run(raft, rx, max_batch.max(1)));
        Proposer { tx }
    }

    /// Proposes one request and waits for its result and the zxid of its entry.
    ///
    /// # Errors
    /// `UNAVAILABLE` if this member cannot propose (not the leader, shutting down);
    /// `OUTCOME_UNKNOWN` if the proposal was made but its fate is not known.
    pub async fn propose(&self, req: Request) -> Result<(RequestResult, Zxid), BatonError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((req, tx))
            .await
            .map_err(|_| BatonError::Unavailable("shutting down".into()))?;
        rx.await
            .map_err(|_| BatonError::OutcomeUnknown("proposal dropped".into()))?
    }
}

async fn run(raft: Raft, mut rx: mpsc::Receiver<(Request, Reply)>, max_batch: usize) {
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut bytes = first.0.size();
        let mut batch = vec![first];
        while batch.len() < max_batch && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(item) => {
                    bytes += item.0.size();
                    batch.push(item);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let (requests, replies): (Vec<Request>, Vec<Reply>) = batch.into_iter().unzip();
            let cmd = Command {
                time_ms: now_ms(),
                requests,
            };
            match raft.client_write(cmd).await {
                Ok(resp) => {
                    let zxid = resp.log_id.index;
                    let mut results = resp.data.into_iter();
                    for reply in replies {
                        let r = results.next().ok_or_else(|| {
                            BatonError::Internal("state machine returned too few results".into())
                        });
                        let _ = reply.send(r.map(|r| (r, zxid)));
                    }
                }
                Err(e) => {
                    let err = map_write_error(e);
                    for reply in replies {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
            drop(permit);
        });
    }
}

fn map_write_error(e: RaftError<u64, ClientWriteError<u64, super::MemberNode>>) -> BatonError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            BatonError::Unavailable(match f.leader_id {
                Some(id) => format!("not the leader; the leader is member {id}"),
                None => "no leader".into(),
            })
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            BatonError::Internal(e.to_string())
        }
        RaftError::Fatal(f) => {
            warn!(error = %f, "raft stopped");
            BatonError::Unavailable(format!("consensus stopped: {f}"))
        }
    }
}
