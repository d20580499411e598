//! Fenced lock counter workload (the shared one in `tests/it/common/fenced.rs`): a few workers,
//! each with its own session and a client that starts at a different member, take the lock
//! `/df/lock/lock`, read `/df/lock/counter` and write `counter + 1` in a Multi guarded by
//! `CheckFence` with their fencing token, under the same nemesis as the other workloads. One
//! worker now and then freezes while holding until its fence no longer holds, then writes with
//! its old token, which must be refused with `BAD_FENCE`.
//!
//! Checked after healing: the counter equals the acknowledged increments plus the committed
//! ones among those of unknown outcome, every acknowledged increment is there, tokens increase
//! along the counter, no refused or stale write committed, and a recursive watch that follows
//! failovers confirms that the writer of every committed increment held the lock at that
//! point of the log. Grants that overlapped as the clients saw them (a holder whose session
//! ended without its knowing still believes it holds) are counted, not failed: that is the
//! hazard fencing exists for.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton::client::Client;

use super::cluster::Cluster;
use crate::common::fenced::{self, Board, EventLog, Figures, Outcomes, Paths, WorkerSpec};

pub const ROOT: &str = "/df/lock";
pub const WORKERS: usize = 3;
/// The freezing worker's session timeout (the smallest the server accepts); the others'.
const PAUSER_SESSION: Duration = Duration::from_secs(2);
const SESSION: Duration = Duration::from_secs(4);

/// A running lock workload.
pub struct Workload {
    paths: Paths,
    log: EventLog,
    board: Arc<Board>,
    tasks: Vec<tokio::task::JoinHandle<Outcomes>>,
}

/// What the workload found.
pub struct Report {
    pub figures: Figures,
    pub problems: Vec<String>,
}

impl Workload {
    /// Creates the paths, starts the event log and the workers (client `first_client` onward
    /// picks the first member of each).
    pub async fn start(
        cluster: &Cluster,
        setup: &Client,
        first_client: usize,
    ) -> Result<Workload, String> {
        let paths = Paths::new(ROOT);
        fenced::ensure(setup, &paths.root, b"").await?;
        let log_client = cluster.workload_client(first_client).await?;
        let log = EventLog::start(log_client, &paths.root).await?;
        paths.create(setup).await?;
        let board = Arc::new(Board::default());
        let mut tasks = Vec::new();
        for i in 0..WORKERS {
            let client = cluster.workload_client(first_client + 1 + i).await?;
            let pauser = i == 0;
            let spec = WorkerSpec {
                id: i,
                session_timeout: if pauser { PAUSER_SESSION } else { SESSION },
                pauser,
                unfenced_stale_writes: false,
                // The run ends by `board.stop`; this only bounds a run that goes wrong.
                deadline: Instant::now() + Duration::from_secs(24 * 3600),
            };
            tasks.push(tokio::spawn(fenced::worker(
                client,
                paths.clone(),
                board.clone(),
                spec,
            )));
        }
        Ok(Workload {
            paths,
            log,
            board,
            tasks,
        })
    }

    /// Stops the workers (each operation is bounded, so they end quickly) and checks.
    pub async fn finish(self, checker: &Client) -> Report {
        self.board.stop.store(true, Ordering::SeqCst);
        let all = match fenced::join(self.tasks, Duration::from_secs(60)).await {
            Ok(all) => all,
            Err(e) => {
                return Report {
                    figures: Figures::default(),
                    problems: vec![e],
                }
            }
        };
        let (figures, mut problems) =
            fenced::check(checker, &self.paths, &self.log, &all, &self.board).await;
        if figures.acknowledged < 20 {
            problems.push(format!(
                "too few acknowledged fenced increments to check the lock: {}",
                figures.acknowledged
            ));
        }
        if figures.stale_refused == 0 {
            problems.push(
                "the freezing holder's stale write was never refused by the fence (no \
                 stale write was checked)"
                    .into(),
            );
        }
        Report { figures, problems }
    }
}
