//! The `watch` workload: watchers on their own connections hold a persistent watch, one
//! writer sets the data and waits until every watcher saw the event.

use std::time::Duration;

use serde_json::{json, Map};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::args::BenchArgs;
use super::fill::value_of;
use super::pool::{connect_pool, ensure_path, error_kind, pause_after_error, timed};
use super::report::{micros, new_histogram, percentiles, Report, Tally, Window};
use crate::cli::CliError;
use crate::client::{ClientOptions, WatchKind};

/// What a watcher task reports.
enum Seen {
    /// Watcher `idx` received the event of `zxid` at `at`.
    Event { idx: usize, zxid: u64, at: Instant },
    /// Watcher `idx` lost its stream.
    Failed { idx: usize, kind: String },
}

const WATCH_PATH: &str = "/bench/watch";

/// The watch workload.
pub(super) async fn watch(
    endpoints: &[String],
    base: &ClientOptions,
    args: &BenchArgs,
) -> Result<Report, CliError> {
    let op_timeout = Duration::from_millis(args.op_timeout);
    let count = usize::try_from(args.watchers).unwrap_or(1).max(1);
    let writer = connect_pool(&endpoints[..1], base, 1, args)
        .await?
        .remove(0);
    ensure_path(&writer, WATCH_PATH).await?;
    let watcher_clients = connect_pool(endpoints, base, args.watchers, args).await?;

    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    let mut ready = Vec::new();
    for (idx, client) in watcher_clients.into_iter().enumerate() {
        let seen = seen_tx.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        ready.push(ready_rx);
        tasks.push(tokio::spawn(async move {
            let mut watcher = match client.watcher().await {
                Ok(w) => w,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            if let Err(e) = watcher.add(WATCH_PATH, WatchKind::Persistent, None).await {
                let _ = ready_tx.send(Err(e));
                return;
            }
            let _ = ready_tx.send(Ok(()));
            loop {
                match watcher.next_event().await {
                    Ok(Some((_, event))) => {
                        let at = Instant::now();
                        if seen
                            .send(Seen::Event {
                                idx,
                                zxid: event.zxid,
                                at,
                            })
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(None) => {
                        let _ = seen.send(Seen::Failed {
                            idx,
                            kind: "WATCH_CLOSED".into(),
                        });
                        return;
                    }
                    Err(e) => {
                        let _ = seen.send(Seen::Failed {
                            idx,
                            kind: error_kind(&e),
                        });
                        return;
                    }
                }
            }
        }));
    }
    drop(seen_tx);
    let abort_all = |tasks: &[tokio::task::JoinHandle<()>]| tasks.iter().for_each(|t| t.abort());
    for r in ready {
        match tokio::time::timeout(op_timeout, r).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                abort_all(&tasks);
                return Err(e.into());
            }
            _ => {
                abort_all(&tasks);
                return Err(CliError::Other(
                    "DEADLINE_EXCEEDED: a watcher did not start in time".to_string(),
                ));
            }
        }
    }

    let start = Instant::now();
    let record_start = start + Duration::from_secs_f64(args.warmup);
    let window = Window {
        record_start,
        end: record_start + Duration::from_secs_f64(args.seconds()),
    };
    let mut tally = Tally::new(); // write-sent → event, one sample per watcher per write
    let mut ack_hist = new_histogram(); // write-ack → event
    let mut write_hist = new_histogram(); // write-sent → ack
    let mut alive = vec![true; count];
    let mut watcher_failures = 0u64;
    let mut seq = 0u64;
    while Instant::now() < window.end && alive.iter().any(|a| *a) {
        seq += 1;
        let value = value_of(args.value_size, seq);
        let sent = Instant::now();
        let recording = sent >= window.record_start;
        let stat = match timed(op_timeout, writer.set_data(WATCH_PATH, value, -1)).await {
            Ok(stat) => stat,
            Err(kind) => {
                if recording {
                    tally.error(&kind);
                }
                pause_after_error(&window).await;
                continue;
            }
        };
        let ack = Instant::now();
        let zxid = stat.mzxid;
        let mut got = vec![false; count];
        let mut samples = Vec::with_capacity(count);
        let wait_until = sent + op_timeout;
        let complete = loop {
            if (0..count).all(|i| got[i] || !alive[i]) {
                break true;
            }
            match tokio::time::timeout_at(wait_until, seen_rx.recv()).await {
                Ok(Some(Seen::Event { idx, zxid: z, at })) => {
                    // Events of earlier writes that timed out are stale.
                    if z >= zxid && !got[idx] {
                        got[idx] = true;
                        samples.push(at);
                    }
                }
                Ok(Some(Seen::Failed { idx, kind })) => {
                    alive[idx] = false;
                    watcher_failures += 1;
                    tally.error(&format!("WATCHER_{kind}"));
                }
                Ok(None) => break false,
                Err(_) => {
                    if recording {
                        tally.error("TIMEOUT");
                    }
                    break false;
                }
            }
        };
        if complete && recording && Instant::now() <= window.end {
            tally.ops += 1;
            write_hist.saturating_record(micros(ack - sent));
            for at in samples {
                tally
                    .hist
                    .saturating_record(micros(at.saturating_duration_since(sent)));
                ack_hist.saturating_record(micros(at.saturating_duration_since(ack)));
            }
        }
    }
    abort_all(&tasks);
    if !alive.iter().any(|a| *a) {
        return Err(CliError::Other(format!(
            "UNAVAILABLE: every watcher lost its stream ({:?})",
            tally.error_kinds
        )));
    }

    let mut extras = Map::new();
    let [a50, a99, a999, amax] = percentiles(&ack_hist);
    let [w50, w99, _, wmax] = percentiles(&write_hist);
    extras.insert("watchers".into(), json!(count));
    extras.insert("events".into(), json!(tally.hist.len()));
    extras.insert("latency".into(), json!("write_sent_to_event"));
    extras.insert("ack_to_event_p50_ms".into(), json!(a50));
    extras.insert("ack_to_event_p99_ms".into(), json!(a99));
    extras.insert("ack_to_event_p999_ms".into(), json!(a999));
    extras.insert("ack_to_event_max_ms".into(), json!(amax));
    extras.insert("write_p50_ms".into(), json!(w50));
    extras.insert("write_p99_ms".into(), json!(w99));
    extras.insert("write_max_ms".into(), json!(wmax));
    extras.insert("watcher_failures".into(), json!(watcher_failures));
    extras.insert("value_size".into(), json!(args.value_size));
    extras.insert("endpoints".into(), json!(endpoints.len()));
    extras.insert("warmup_seconds".into(), json!(args.warmup));
    extras.insert("op_timeout_ms".into(), json!(args.op_timeout));
    Ok(Report {
        workload: args.workload.name(),
        clients: 1,
        conns: args.watchers + 1,
        seconds: args.seconds(),
        ops: tally.ops,
        errors: tally.errors,
        hist: tally.hist,
        error_kinds: tally.error_kinds,
        extras,
    })
}
