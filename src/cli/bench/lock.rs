//! The `lock` workload: contenders with their own sessions loop acquire → hold → release on
//! one exclusive lock; grants, acquire and hand-off latency, and local safety counts.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Map};
use tokio::time::Instant;

use super::args::BenchArgs;
use super::pool::{connect_pool, ensure_path, pause_after_error, timed};
use super::report::{micros, new_histogram, percentiles, Report, Tally, Window};
use crate::cli::CliError;
use crate::client::{ClientOptions, LockOptions, Session};

/// What the lock contenders share: who holds the lock in this process, and when the last
/// holder decided to release it.
#[derive(Default)]
struct LockBoard {
    /// Contenders of this process holding the lock now (more than one is a violation).
    holders: std::sync::atomic::AtomicU64,
    /// Grants made while another contender of this process still held the lock.
    violations: std::sync::atomic::AtomicU64,
    /// Grants whose fencing token was not above the previous grant's.
    token_regressions: std::sync::atomic::AtomicU64,
    /// (time the last holder decided to release, highest token granted so far).
    last: std::sync::Mutex<(Option<Instant>, u64)>,
}

/// What one lock contender measured.
struct LockTally {
    acquire: Tally,
    handoff: Histogram<u64>,
    release: Histogram<u64>,
}

const LOCK_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// The lock workload.
pub(super) async fn lock(
    endpoints: &[String],
    base: &ClientOptions,
    args: &BenchArgs,
) -> Result<Report, CliError> {
    use std::sync::atomic::Ordering::SeqCst;
    let op_timeout = Duration::from_millis(args.op_timeout);
    let conns = args.conns();
    let pool = connect_pool(endpoints, base, conns, args).await?;
    ensure_path(&pool[0], "/bench/lock").await?;
    let run_id: u32 = rand::random();
    let path = format!("/bench/lock/{run_id:08x}");
    let opens = (0..args.clients).map(|i| {
        let client = pool[(i % conns) as usize].clone();
        async move { client.open_session(LOCK_SESSION_TIMEOUT).await }
    });
    let sessions: Vec<Session> = futures::future::join_all(opens)
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let board = std::sync::Arc::new(LockBoard::default());
    let hold = Duration::from_millis(args.hold_ms);
    let start = Instant::now();
    let record_start = start + Duration::from_secs_f64(args.warmup);
    let window = Window {
        record_start,
        end: record_start + Duration::from_secs_f64(args.seconds()),
    };
    let mut tasks = Vec::new();
    for (i, session) in sessions.into_iter().enumerate() {
        let client = pool[i % pool.len()].clone();
        let board = board.clone();
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let mut t = LockTally {
                acquire: Tally::new(),
                handoff: new_histogram(),
                release: new_histogram(),
            };
            let options = LockOptions::exclusive()
                .wait(op_timeout)
                .data(format!("bench contender {i}"));
            // The server answers DEADLINE_EXCEEDED after the wait; allow for the round trip.
            let acquire_timeout = op_timeout + Duration::from_secs(5);
            while Instant::now() < window.end {
                let began = Instant::now();
                let guard = match timed(
                    acquire_timeout,
                    client.lock(&path, &session, options.clone()),
                )
                .await
                {
                    Ok(g) => g,
                    Err(kind) => {
                        t.acquire.record(&window, began, &Err(kind));
                        pause_after_error(&window).await;
                        continue;
                    }
                };
                let granted = Instant::now();
                if board.holders.fetch_add(1, SeqCst) != 0 {
                    board.violations.fetch_add(1, SeqCst);
                }
                let handoff = {
                    let mut last = board.last.lock().unwrap_or_else(|e| e.into_inner());
                    if guard.fencing_token() <= last.1 {
                        board.token_regressions.fetch_add(1, SeqCst);
                    }
                    last.1 = last.1.max(guard.fencing_token());
                    last.0
                        .take()
                        .map(|at| granted.saturating_duration_since(at))
                };
                t.acquire.record(&window, began, &Ok(()));
                if let Some(h) = handoff {
                    if began >= window.record_start && granted <= window.end {
                        t.handoff.saturating_record(micros(h));
                    }
                }
                if !hold.is_zero() {
                    tokio::time::sleep(hold).await;
                }
                board.holders.fetch_sub(1, SeqCst);
                let releasing = Instant::now();
                board.last.lock().unwrap_or_else(|e| e.into_inner()).0 = Some(releasing);
                match timed(op_timeout, guard.release()).await {
                    Ok(()) => {
                        if releasing >= window.record_start && Instant::now() <= window.end {
                            t.release.saturating_record(micros(releasing.elapsed()));
                        }
                    }
                    Err(kind) => {
                        if releasing >= window.record_start {
                            t.acquire.error(&format!("RELEASE_{kind}"));
                        }
                    }
                }
            }
            let _ = timed(op_timeout, session.close()).await;
            t
        }));
    }
    let mut total = Tally::new();
    let mut handoff = new_histogram();
    let mut release = new_histogram();
    for task in tasks {
        match task.await {
            Ok(t) => {
                total.merge(t.acquire);
                let _ = handoff.add(&t.handoff);
                let _ = release.add(&t.release);
            }
            Err(e) => total.error(&format!("CLIENT_TASK_FAILED: {e}")),
        }
    }
    let [h50, h99, h999, hmax] = percentiles(&handoff);
    let [r50, r99, _, rmax] = percentiles(&release);
    let mut extras = Map::new();
    extras.insert("lock_path".into(), json!(path));
    extras.insert("latency".into(), json!("acquire_sent_to_granted"));
    extras.insert("grants".into(), json!(total.ops));
    extras.insert(
        "grants_per_sec".into(),
        json!((total.ops as f64 / args.seconds() * 10.0).round() / 10.0),
    );
    extras.insert("hold_ms".into(), json!(args.hold_ms));
    extras.insert("handoffs".into(), json!(handoff.len()));
    extras.insert("handoff_p50_ms".into(), json!(h50));
    extras.insert("handoff_p99_ms".into(), json!(h99));
    extras.insert("handoff_p999_ms".into(), json!(h999));
    extras.insert("handoff_max_ms".into(), json!(hmax));
    extras.insert("release_p50_ms".into(), json!(r50));
    extras.insert("release_p99_ms".into(), json!(r99));
    extras.insert("release_max_ms".into(), json!(rmax));
    extras.insert(
        "mutex_violations".into(),
        json!(board.violations.load(SeqCst)),
    );
    extras.insert(
        "token_regressions".into(),
        json!(board.token_regressions.load(SeqCst)),
    );
    extras.insert("endpoints".into(), json!(endpoints.len()));
    extras.insert("warmup_seconds".into(), json!(args.warmup));
    extras.insert("op_timeout_ms".into(), json!(args.op_timeout));
    Ok(Report {
        workload: args.workload.name(),
        clients: args.clients,
        conns,
        seconds: args.seconds(),
        ops: total.ops,
        errors: total.errors,
        hist: total.hist,
        error_kinds: total.error_kinds,
        extras,
    })
}
