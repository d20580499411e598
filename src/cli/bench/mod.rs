//! `baton bench`: closed-loop load generators with latency histograms.
//!
//! Each client runs one request at a time for a fixed time. Requests that start during the
//! warm-up, or finish after the end, are not recorded; every request has a timeout, counted as
//! an error. Latencies are recorded in microseconds with hdrhistogram. A human summary goes to
//! stderr and one JSON object to stdout.
//!
//! Workloads:
//! - `put`: SetData of random keys `/bench/kv/k<i>` (created before timing).
//! - `fill`: only creates the keys put and get use, `--key-space` of them, with `--clients`
//!   Multi batches in flight; ops are keys created, latencies those of the batches, and a
//!   failed batch is counted as an error and sent again. `--seconds` bounds the whole fill
//!   (default: none); a fill cut short by it reports what it did and fails.
//! - `get`: GetData of random keys (linearizable unless `--serializable`).
//! - `create-delete`: create a fresh node under `/bench/cd/` and delete it; one latency for
//!   the pair.
//! - `watch`: W watchers, each on its own connection, hold a PERSISTENT watch on
//!   `/bench/watch`; one writer sets its data, one write at a time, and waits until every
//!   watcher saw the event. Latency is write-sent→event (and, as extras, write-ack→event).
//! - `lock`: C contenders on one exclusive lock `/bench/lock/<run>`, each with its own
//!   session, loop acquire → hold `--hold-ms` → release. Ops are grants; the latency is the
//!   acquire latency (Acquire sent → granted, queueing behind the others included); the
//!   extras give the hand-off time (a holder decides to release → the next holder is
//!   granted, measured in this process), and a process-local count of mutual-exclusion
//!   violations (a grant while another contender of this process still held the lock) and
//!   of fencing tokens that did not increase.
//!
//! Files: `args` (the flags), `closed_loop` (put, get, create-delete), `fill` (the keys and the
//! fill workload), `watch`, `lock`, `pool` (connections and timed requests), `report`
//! (recording, summary, JSON), `breakdown` (`--breakdown`).

mod args;
mod breakdown;
mod closed_loop;
mod fill;
mod lock;
mod pool;
mod report;
mod watch;

use serde_json::Value;

use crate::cli::output::Printer;
use crate::cli::CliError;
use crate::client::ClientOptions;

pub use args::{BenchArgs, Workload};

/// `bench`.
pub async fn run(
    endpoints: &[String],
    base: &ClientOptions,
    args: BenchArgs,
    out: &mut Printer,
) -> Result<(), CliError> {
    if endpoints.is_empty() {
        return Err(CliError::Other("BAD_ARGUMENTS: no endpoints".to_string()));
    }
    if args.breakdown {
        breakdown::reset(endpoints, base).await?;
    }
    let report = match args.workload {
        Workload::Put | Workload::Get | Workload::CreateDelete => {
            closed_loop::closed_loop(endpoints, base, &args).await?
        }
        Workload::Fill => fill::fill(endpoints, base, &args).await?,
        Workload::Watch => watch::watch(endpoints, base, &args).await?,
        Workload::Lock => lock::lock(endpoints, base, &args).await?,
    };
    if args.breakdown {
        breakdown::print(endpoints, base, out).await?;
    }
    eprintln!("{}", report.summary());
    if args.workload == Workload::Lock {
        let x = &report.extras;
        eprintln!(
            "  grants   {} ({} grants/s)\n  handoff  p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms\n  mutual-exclusion violations {}, token regressions {}",
            x["grants"], x["grants_per_sec"], x["handoff_p50_ms"].as_f64().unwrap_or(0.0),
            x["handoff_p99_ms"].as_f64().unwrap_or(0.0), x["handoff_max_ms"].as_f64().unwrap_or(0.0),
            x["mutex_violations"], x["token_regressions"]
        );
    }
    out.value(&report.json())?;
    if let Some(left) = report.extras.get("keys_missing").and_then(Value::as_u64) {
        if left > 0 {
            return Err(CliError::Other(format!(
                "DEADLINE_EXCEEDED: the fill stopped at --seconds with {left} keys not created"
            )));
        }
    }
    Ok(())
}
