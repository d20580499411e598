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

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::output::Printer;
use super::CliError;
use crate::client::{
    ChildrenOptions, Client, ClientError, ClientOptions, CreateOptions, LockOptions, MultiOps,
    ReadOptions, Reason, Session, WatchKind,
};

/// The workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// SetData of random existing keys.
    Put,
    /// Only create the keys of put and get (`--key-space` of them), timed.
    Fill,
    /// GetData of random existing keys.
    Get,
    /// Create a fresh node, then delete it.
    CreateDelete,
    /// Write-to-watch-event latency with many watchers.
    Watch,
    /// Contended exclusive lock: grants/s, acquire and hand-off latency.
    Lock,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Fill => "fill",
            Workload::Get => "get",
            Workload::CreateDelete => "create-delete",
            Workload::Watch => "watch",
            Workload::Lock => "lock",
        }
    }
}

/// Arguments of `bench`.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// The workload.
    #[arg(value_enum)]
    pub workload: Workload,
    /// Concurrent closed-loop clients.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..10_001))]
    pub clients: u64,
    /// Connections shared by the clients (client i uses connection i % K; connection j goes to
    /// endpoint j % endpoints). Default: min(clients, 8).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..1_001))]
    pub conns: Option<u64>,
    /// Measured duration in seconds [default: 10]. For fill, the most time the fill may take
    /// (default: no limit).
    #[arg(long, value_parser = parse_positive_seconds)]
    pub seconds: Option<f64>,
    /// Warm-up in seconds before measuring (its requests are not recorded).
    #[arg(long, default_value_t = 1.0, value_parser = parse_seconds)]
    pub warmup: f64,
    /// Size of each written value in bytes.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Number of distinct keys for put and get; the keys fill creates.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..10_000_001))]
    pub key_space: u64,
    /// Serializable reads for get (default: linearizable).
    #[arg(long)]
    pub serializable: bool,
    /// Number of watchers for the watch workload.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..10_001))]
    pub watchers: u64,
    /// Timeout of each request in milliseconds; a request that times out is an error. For
    /// lock, also the longest wait in the queue.
    #[arg(long, value_name = "MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub op_timeout: u64,
    /// For lock: how long each holder holds the lock before releasing it, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub hold_ms: u64,
    /// Also report where the writes spent their time on each member: the members' write-path
    /// stages are reset before the run and printed after it (as `baton cluster stages`).
    #[arg(long)]
    pub breakdown: bool,
    /// ACL entry SCHEME:ID:PERMS (repeatable) for the keys put and get create; open if none
    /// (measures the ACL checks with `--user`).
    #[arg(long = "acl", value_name = "ENTRY")]
    pub acl: Vec<String>,
    /// Send writes without request ids (as clients before them did: no retry of a write whose
    /// outcome is unknown), to measure what the ids cost.
    #[arg(long)]
    pub no_request_ids: bool,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=86_400.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds in 0..=86400")),
    }
}

fn parse_positive_seconds(s: &str) -> Result<f64, String> {
    match parse_seconds(s)? {
        v if v > 0.0 => Ok(v),
        _ => Err("must be more than 0".to_string()),
    }
}

/// The measured duration when `--seconds` is not given.
const DEFAULT_SECONDS: f64 = 10.0;

impl BenchArgs {
    fn conns(&self) -> u64 {
        self.conns.unwrap_or_else(|| self.clients.min(8))
    }

    fn seconds(&self) -> f64 {
        self.seconds.unwrap_or(DEFAULT_SECONDS)
    }
}

/// When recording starts and when everything stops.
#[derive(Clone, Copy, Debug)]
struct Window {
    record_start: Instant,
    end: Instant,
}

/// What one client measured.
#[derive(Debug)]
struct Tally {
    hist: Histogram<u64>,
    ops: u64,
    errors: u64,
    error_kinds: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            hist: new_histogram(),
            ops: 0,
            errors: 0,
            error_kinds: BTreeMap::new(),
        }
    }

    /// Records a request that started at `start` and just ended with `result`.
    fn record(&mut self, window: &Window, start: Instant, result: &Result<(), String>) {
        if start < window.record_start {
            return;
        }
        match result {
            Ok(()) => {
                let done = Instant::now();
                if done <= window.end {
                    self.hist.saturating_record(micros(done - start));
                    self.ops += 1;
                }
            }
            Err(kind) => self.error(kind),
        }
    }

    fn error(&mut self, kind: &str) {
        self.errors += 1;
        *self.error_kinds.entry(kind.to_string()).or_insert(0) += 1;
    }

    fn merge(&mut self, other: Tally) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
        self.ops += other.ops;
        self.errors += other.errors;
        for (k, v) in other.error_kinds {
            *self.error_kinds.entry(k).or_insert(0) += v;
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 1 h at 3 significant digits: constant, valid bounds.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// The error kind of a failed request: its reason, or its code's name.
fn error_kind(e: &ClientError) -> String {
    e.reason().map_or_else(
        || crate::client::code_name(e.code()).to_string(),
        |r| r.to_string(),
    )
}

/// Runs `fut` with a timeout; errors become their kind.
async fn timed<T>(
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error_kind(&e)),
        Err(_) => Err("TIMEOUT".to_string()),
    }
}

/// After an error, pause a little so a dead cluster does not turn the loop into a spin.
async fn pause_after_error(window: &Window) {
    let until = (Instant::now() + Duration::from_millis(10)).min(window.end);
    tokio::time::sleep_until(until).await;
}

/// The result of a run.
#[derive(Debug)]
struct Report {
    workload: &'static str,
    clients: u64,
    conns: u64,
    seconds: f64,
    ops: u64,
    errors: u64,
    hist: Histogram<u64>,
    error_kinds: BTreeMap<String, u64>,
    extras: Map<String, Value>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// p50, p99, p99.9 and max of a histogram, in milliseconds (0 if empty).
fn percentiles(h: &Histogram<u64>) -> [f64; 4] {
    if h.is_empty() {
        return [0.0; 4];
    }
    [
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
    ]
}

impl Report {
    fn ops_per_sec(&self) -> f64 {
        if self.seconds > 0.0 {
            (self.ops as f64 / self.seconds * 10.0).round() / 10.0
        } else {
            0.0
        }
    }

    fn json(&self) -> Value {
        let [p50, p99, p999, max] = percentiles(&self.hist);
        let mut v = json!({
            "workload": self.workload,
            "clients": self.clients,
            "conns": self.conns,
            "ops": self.ops,
            "seconds": self.seconds,
            "ops_per_sec": self.ops_per_sec(),
            "p50_ms": p50,
            "p99_ms": p99,
            "p999_ms": p999,
            "max_ms": max,
            "errors": self.errors,
            "error_kinds": self.error_kinds,
        });
        if let Some(obj) = v.as_object_mut() {
            for (k, val) in &self.extras {
                obj.insert(k.clone(), val.clone());
            }
        }
        v
    }

    fn summary(&self) -> String {
        let [p50, p99, p999, max] = percentiles(&self.hist);
        let mut s = format!(
            "bench {}: {} clients over {} connections, {:.1} s measured\n  ops      {} ({:.1} ops/s)\n  errors   {}",
            self.workload,
            self.clients,
            self.conns,
            self.seconds,
            self.ops,
            self.ops_per_sec(),
            self.errors
        );
        if !self.error_kinds.is_empty() {
            let kinds: Vec<String> = self
                .error_kinds
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            s.push_str(&format!(" ({})", kinds.join(", ")));
        }
        s.push_str(&format!(
            "\n  latency  p50 {p50:.3} ms  p99 {p99:.3} ms  p99.9 {p999:.3} ms  max {max:.3} ms"
        ));
        s
    }
}

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
    let stage_options = ClientOptions {
        timeout: Duration::from_secs(5),
        ..base.clone()
    };
    if args.breakdown {
        let mut quiet = Printer::sink();
        super::commands::stages(endpoints, stage_options.clone(), true, &mut quiet).await?;
    }
    let report = match args.workload {
        Workload::Put | Workload::Get | Workload::CreateDelete => {
            closed_loop(endpoints, base, &args).await?
        }
        Workload::Fill => fill(endpoints, base, &args).await?,
        Workload::Watch => watch(endpoints, base, &args).await?,
        Workload::Lock => lock(endpoints, base, &args).await?,
    };
    if args.breakdown {
        super::commands::stages(endpoints, stage_options.clone(), false, out).await?;
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

/// Opens `count` connections, connection j to endpoint j % endpoints (the other endpoints
/// follow in its list, so it fails over if its own is down).
async fn connect_pool(
    endpoints: &[String],
    base: &ClientOptions,
    count: u64,
    args: &BenchArgs,
) -> Result<Vec<Client>, CliError> {
    let options = ClientOptions {
        timeout: Duration::from_millis(args.op_timeout),
        request_ids: !args.no_request_ids,
        ..base.clone()
    };
    let connects = (0..count).map(|j| {
        let list = rotated(endpoints, j);
        let options = options.clone();
        async move { Client::connect_with(list, options).await }
    });
    let clients = futures::future::join_all(connects).await;
    Ok(clients.into_iter().collect::<Result<Vec<_>, _>>()?)
}

/// The endpoints starting at j % len.
fn rotated(endpoints: &[String], j: u64) -> Vec<String> {
    let mut list = endpoints.to_vec();
    if !list.is_empty() {
        let by = usize::try_from(j % list.len() as u64).unwrap_or(0);
        list.rotate_left(by);
    }
    list
}

/// Creates `path` and any missing ancestors as persistent nodes.
async fn ensure_path(client: &Client, path: &str) -> Result<(), CliError> {
    let mut prefix = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        prefix.push('/');
        prefix.push_str(part);
        match client
            .create(&prefix, Vec::new(), CreateOptions::persistent())
            .await
        {
            Ok(_) => {}
            Err(e) if e.is(Reason::NodeExists) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn key_path(i: u64) -> String {
    format!("/bench/kv/k{i}")
}

fn value_of(size: usize, seed: u64) -> Vec<u8> {
    let tag = seed.to_string().into_bytes();
    (0..size)
        .map(|i| tag.get(i).copied().unwrap_or(b'x'))
        .collect()
}

/// The keys of `/bench/kv/k0..k{key_space}` that do not exist yet (creating `/bench/kv`).
async fn missing_keys(client: &Client, key_space: u64) -> Result<Vec<u64>, CliError> {
    let setup = client.with_timeout(Duration::from_secs(60));
    ensure_path(&setup, "/bench/kv").await?;
    let existing: std::collections::HashSet<String> = setup
        .get_all_children_with("/bench/kv", ChildrenOptions::default())
        .await?
        .into_iter()
        .map(|c| c.name)
        .collect();
    Ok((0..key_space)
        .filter(|i| !existing.contains(&format!("k{i}")))
        .collect())
}

/// Creates per Multi batch: about 512 KiB of values, at most 100.
fn keys_per_batch(value_size: usize) -> usize {
    (512 * 1024 / value_size.max(1)).clamp(1, 100)
}

/// The Multi that creates `keys`.
fn create_batch(keys: &[u64], value: &[u8], create: &CreateOptions) -> MultiOps {
    keys.iter().fold(MultiOps::new(), |ops, &i| {
        ops.create(&key_path(i), value.to_vec(), create.clone())
    })
}

/// Creates the missing keys `/bench/kv/k0..k{key_space}`, in Multi batches, several at once.
async fn create_keys(pool: &[Client], args: &BenchArgs) -> Result<(), CliError> {
    let missing = missing_keys(&pool[0], args.key_space).await?;
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("creating {} keys under /bench/kv ...", missing.len());
    let value = value_of(args.value_size, 0);
    let create = CreateOptions::persistent().with_acl(super::commands::parse_acl(&args.acl)?);
    let batches: Vec<&[u64]> = missing.chunks(keys_per_batch(args.value_size)).collect();
    let concurrency = usize::try_from(args.clients).unwrap_or(16).clamp(1, 64);
    let mut results = futures::stream::iter(batches.into_iter().enumerate())
        .map(|(n, keys)| {
            let client = pool[n % pool.len()].with_timeout(Duration::from_secs(60));
            let value = value.clone();
            let create = create.clone();
            async move {
                if client
                    .multi(create_batch(keys, &value, &create))
                    .await?
                    .succeeded
                {
                    return Ok::<(), ClientError>(());
                }
                // Someone created some of them meanwhile: one at a time, tolerating those.
                for &i in keys {
                    match client
                        .create(&key_path(i), value.clone(), create.clone())
                        .await
                    {
                        Ok(_) => {}
                        Err(e) if e.is(Reason::NodeExists) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
        })
        .buffer_unordered(concurrency);
    while let Some(result) = results.next().await {
        result?;
    }
    Ok(())
}

/// fill: creates the missing keys with `--clients` batches in flight, each sent again after
/// an error until it succeeds or the deadline (`--seconds`) passes.
async fn fill(
    endpoints: &[String],
    base: &ClientOptions,
    args: &BenchArgs,
) -> Result<Report, CliError> {
    let op_timeout = Duration::from_millis(args.op_timeout);
    let conns = args.conns();
    let pool = connect_pool(endpoints, base, conns, args).await?;
    let missing = missing_keys(&pool[0], args.key_space).await?;
    let per_batch = keys_per_batch(args.value_size);
    let value = value_of(args.value_size, 0);
    let create = CreateOptions::persistent().with_acl(super::commands::parse_acl(&args.acl)?);
    let start = Instant::now();
    // Without --seconds, a deadline that never comes (a year).
    let limit = args.seconds.unwrap_or(365.0 * 86_400.0);
    let window = Window {
        record_start: start,
        end: start + Duration::from_secs_f64(limit),
    };
    let concurrency = usize::try_from(args.clients).unwrap_or(16).max(1);
    let mut results = futures::stream::iter(missing.chunks(per_batch).enumerate())
        .map(|(n, keys)| {
            let client = pool[n % pool.len()].clone();
            let (value, create) = (&value, &create);
            async move { fill_batch(&client, keys, value, create, op_timeout, &window).await }
        })
        .buffer_unordered(concurrency);
    let mut total = Tally::new();
    let mut created = 0u64;
    while let Some((tally, done)) = results.next().await {
        total.merge(tally);
        created += done;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut extras = Map::new();
    extras.insert("value_size".into(), json!(args.value_size));
    extras.insert("endpoints".into(), json!(endpoints.len()));
    extras.insert("op_timeout_ms".into(), json!(args.op_timeout));
    extras.insert("key_space".into(), json!(args.key_space));
    extras.insert(
        "keys_existing_before".into(),
        json!(args.key_space - missing.len() as u64),
    );
    extras.insert("keys_per_batch".into(), json!(per_batch));
    extras.insert("batches".into(), json!(total.hist.len()));
    extras.insert("keys_missing".into(), json!(missing.len() as u64 - created));
    Ok(Report {
        workload: args.workload.name(),
        clients: args.clients,
        conns,
        seconds: (elapsed * 1000.0).round() / 1000.0,
        ops: created,
        errors: total.errors,
        hist: total.hist,
        error_kinds: total.error_kinds,
        extras,
    })
}

/// One batch of the fill: its Multi, sent until it succeeds or `window.end` passes. A Multi
/// that fails because some keys exist (an earlier attempt whose answer was lost) is followed
/// by one create per key, tolerating those that exist. Returns the batch's tally and the keys
/// it put in place (all of them, or none if the deadline passed).
async fn fill_batch(
    client: &Client,
    keys: &[u64],
    value: &[u8],
    create: &CreateOptions,
    op_timeout: Duration,
    window: &Window,
) -> (Tally, u64) {
    let mut tally = Tally::new();
    let mut one_by_one = false;
    while Instant::now() < window.end {
        let began = Instant::now();
        let result = if one_by_one {
            create_each(client, keys, value, create, op_timeout).await
        } else {
            match timed(op_timeout, client.multi(create_batch(keys, value, create))).await {
                Ok(r) if r.succeeded => Ok(()),
                Ok(_) => {
                    one_by_one = true;
                    continue;
                }
                Err(kind) => Err(kind),
            }
        };
        let failed = result.is_err();
        tally.record(window, began, &result);
        if !failed {
            return (tally, keys.len() as u64);
        }
        pause_after_error(window).await;
    }
    (tally, 0)
}

/// Creates each key, tolerating those that exist; the first error ends it.
async fn create_each(
    client: &Client,
    keys: &[u64],
    value: &[u8],
    create: &CreateOptions,
    op_timeout: Duration,
) -> Result<(), String> {
    for &i in keys {
        match timed(
            op_timeout,
            client.create(&key_path(i), value.to_vec(), create.clone()),
        )
        .await
        {
            Ok(_) => {}
            Err(kind) if kind == Reason::NodeExists.as_str() => {}
            Err(kind) => return Err(kind),
        }
    }
    Ok(())
}

/// put, get and create-delete.
async fn closed_loop(
    endpoints: &[String],
    base: &ClientOptions,
    args: &BenchArgs,
) -> Result<Report, CliError> {
    let op_timeout = Duration::from_millis(args.op_timeout);
    let conns = args.conns();
    let pool = connect_pool(endpoints, base, conns, args).await?;
    match args.workload {
        Workload::Put | Workload::Get => create_keys(&pool, args).await?,
        _ => ensure_path(&pool[0], "/bench/cd").await?,
    }
    let run_id: u32 = rand::random();
    let start = Instant::now();
    let record_start = start + Duration::from_secs_f64(args.warmup);
    let window = Window {
        record_start,
        end: record_start + Duration::from_secs_f64(args.seconds()),
    };
    let mut tasks = Vec::new();
    for i in 0..args.clients {
        let client = pool[(i % conns) as usize].clone();
        let args = args.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            let mut rng = StdRng::from_entropy();
            let value = value_of(args.value_size, i);
            let read = if args.serializable {
                ReadOptions::serializable()
            } else {
                ReadOptions::linearizable()
            };
            let mut seq = 0u64;
            while Instant::now() < window.end {
                let began = Instant::now();
                let result = match args.workload {
                    Workload::Put => {
                        let key = key_path(rng.gen_range(0..args.key_space));
                        timed(op_timeout, client.set_data(&key, value.clone(), -1))
                            .await
                            .map(drop)
                    }
                    Workload::Get => {
                        let key = key_path(rng.gen_range(0..args.key_space));
                        timed(op_timeout, client.get_data_with(&key, read))
                            .await
                            .map(drop)
                    }
                    _ => {
                        seq += 1;
                        let path = format!("/bench/cd/{run_id:08x}-{i}-{seq}");
                        match timed(
                            op_timeout,
                            client.create(&path, value.clone(), CreateOptions::persistent()),
                        )
                        .await
                        {
                            Ok(_) => timed(op_timeout, client.delete(&path, -1)).await.map(drop),
                            Err(e) => Err(e),
                        }
                    }
                };
                let failed = result.is_err();
                tally.record(&window, began, &result);
                if failed {
                    pause_after_error(&window).await;
                }
            }
            tally
        }));
    }
    let mut total = Tally::new();
    for task in tasks {
        match task.await {
            Ok(tally) => total.merge(tally),
            Err(e) => total.error(&format!("CLIENT_TASK_FAILED: {e}")),
        }
    }
    let mut extras = Map::new();
    extras.insert("value_size".into(), json!(args.value_size));
    extras.insert("endpoints".into(), json!(endpoints.len()));
    extras.insert("warmup_seconds".into(), json!(args.warmup));
    extras.insert("op_timeout_ms".into(), json!(args.op_timeout));
    if args.workload != Workload::CreateDelete {
        extras.insert("key_space".into(), json!(args.key_space));
    }
    if args.workload == Workload::Get {
        let consistency = if args.serializable {
            "serializable"
        } else {
            "linearizable"
        };
        extras.insert("consistency".into(), json!(consistency));
    }
    if !total.hist.is_empty() {
        extras.insert(
            "mean_ms".into(),
            json!(ms(total.hist.mean().round() as u64)),
        );
    }
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

/// What a watcher task reports.
enum Seen {
    /// Watcher `idx` received the event of `zxid` at `at`.
    Event { idx: usize, zxid: u64, at: Instant },
    /// Watcher `idx` lost its stream.
    Failed { idx: usize, kind: String },
}

const WATCH_PATH: &str = "/bench/watch";

/// The watch workload.
async fn watch(
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
async fn lock(
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        Wrapper::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .map(|w| w.bench)
    }

    #[test]
    fn defaults() {
        let a = parse(&["put"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.workload, Workload::Put);
        assert_eq!(a.clients, 16);
        assert_eq!(a.conns(), 8);
        assert_eq!(a.seconds(), 10.0);
        assert_eq!(a.warmup, 1.0);
        assert_eq!(a.value_size, 256);
        assert_eq!(a.key_space, 10_000);
        assert_eq!(a.watchers, 10);
        assert!(!a.serializable);
        let a =
            parse(&["get", "--clients", "3", "--serializable"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.conns(), 3);
        assert!(a.serializable);
        let a = parse(&[
            "create-delete",
            "--conns",
            "2",
            "--seconds",
            "0.5",
            "--warmup",
            "0",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.workload, Workload::CreateDelete);
        assert_eq!(a.conns(), 2);
        assert_eq!(a.seconds(), 0.5);
    }

    #[test]
    fn fill_takes_the_key_space_and_an_optional_deadline() {
        let a = parse(&["fill", "--key-space", "1000000", "--clients", "64"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.workload, Workload::Fill);
        assert_eq!((a.key_space, a.clients, a.conns()), (1_000_000, 64, 8));
        assert_eq!(a.value_size, 256);
        assert_eq!(a.seconds, None, "no deadline unless given");
        let a = parse(&[
            "fill",
            "--key-space",
            "10",
            "--seconds",
            "600",
            "--value-size",
            "1",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((a.seconds, a.value_size), (Some(600.0), 1));
        assert!(parse(&["fill", "--seconds", "0"]).is_err());
        assert!(parse(&["fill", "--key-space", "0"]).is_err());
    }

    #[test]
    fn fill_batches_hold_about_half_a_mebibyte_of_values() {
        assert_eq!(keys_per_batch(256), 100);
        assert_eq!(keys_per_batch(0), 100);
        assert_eq!(keys_per_batch(65_536), 8);
        assert_eq!(keys_per_batch(2 << 20), 1);
    }

    #[test]
    fn lock_workload_flags() {
        let a = parse(&["lock", "--clients", "8", "--hold-ms", "5", "--seconds", "2"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.workload, Workload::Lock);
        assert_eq!((a.clients, a.hold_ms, a.seconds()), (8, 5, 2.0));
        assert_eq!(parse(&["lock"]).map(|a| a.hold_ms).ok(), Some(0));
        assert!(parse(&["lock", "--hold-ms", "-1"]).is_err());
    }

    #[test]
    fn rejects_bad_values() {
        for bad in [
            &["put", "--clients", "0"][..],
            &["put", "--seconds", "0"][..],
            &["put", "--seconds", "nan"][..],
            &["put", "--warmup", "-1"][..],
            &["put", "--key-space", "0"][..],
            &["fly"][..],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tally_respects_the_window() {
        let now = Instant::now();
        let window = Window {
            record_start: now,
            end: now + Duration::from_secs(60),
        };
        let mut t = Tally::new();
        t.record(&window, now - Duration::from_millis(1), &Ok(()));
        t.record(&window, now - Duration::from_millis(1), &Err("X".into()));
        assert_eq!(
            (t.ops, t.errors),
            (0, 0),
            "warm-up requests are not recorded"
        );
        t.record(&window, now, &Ok(()));
        t.record(&window, now, &Err("TIMEOUT".into()));
        t.record(&window, now, &Err("TIMEOUT".into()));
        assert_eq!((t.ops, t.errors), (1, 2));
        assert_eq!(t.error_kinds.get("TIMEOUT"), Some(&2));
        let past = Window {
            record_start: now - Duration::from_secs(2),
            end: now - Duration::from_secs(1),
        };
        let mut late = Tally::new();
        late.record(&past, now - Duration::from_millis(1500), &Ok(()));
        assert_eq!(
            late.ops, 0,
            "requests finishing after the end are not recorded"
        );
        t.merge(late);
        assert_eq!(t.ops, 1);
    }

    #[test]
    fn report_json_has_the_contract_fields() {
        let mut hist = new_histogram();
        for us in [1000u64, 2000, 3000, 4000, 100_000] {
            hist.saturating_record(us);
        }
        let mut extras = Map::new();
        extras.insert("value_size".into(), json!(256));
        let report = Report {
            workload: "put",
            clients: 4,
            conns: 2,
            seconds: 2.0,
            ops: 5,
            errors: 1,
            hist,
            error_kinds: BTreeMap::from([("TIMEOUT".to_string(), 1)]),
            extras,
        };
        let line = report.json().to_string();
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        for field in [
            "workload",
            "clients",
            "conns",
            "ops",
            "seconds",
            "ops_per_sec",
            "p50_ms",
            "p99_ms",
            "p999_ms",
            "max_ms",
            "errors",
        ] {
            assert!(v.get(field).is_some(), "missing {field}");
        }
        assert_eq!(v["workload"], "put");
        assert_eq!(v["ops_per_sec"], 2.5);
        assert_eq!(v["value_size"], 256);
        assert_eq!(v["error_kinds"]["TIMEOUT"], 1);
        let p50 = v["p50_ms"].as_f64().unwrap_or(-1.0);
        assert!((2.9..=3.1).contains(&p50), "p50 {p50}");
        let max = v["max_ms"].as_f64().unwrap_or(-1.0);
        assert!((99.0..=101.0).contains(&max), "max {max}");
        let summary = report.summary();
        assert!(summary.contains("2.5 ops/s"));
        assert!(summary.contains("TIMEOUT 1"));
    }

    #[test]
    fn empty_histogram_reports_zeros() {
        assert_eq!(percentiles(&new_histogram()), [0.0; 4]);
    }

    #[test]
    fn connection_j_prefers_endpoint_j_mod_n() {
        let e: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(rotated(&e, 0), ["a", "b", "c"]);
        assert_eq!(rotated(&e, 1), ["b", "c", "a"]);
        assert_eq!(rotated(&e, 5), ["c", "a", "b"]);
        assert!(rotated(&[], 3).is_empty());
    }

    #[test]
    fn values_have_the_requested_size() {
        assert_eq!(value_of(0, 5).len(), 0);
        assert_eq!(value_of(3, 12345), b"123".to_vec());
        assert_eq!(value_of(5, 7), b"7xxxx".to_vec());
    }
}
