//! The register workload (Jepsen-style, checked for linearizability) that both multi-member
//! suites run: the in-process cluster (`tests/it/cluster/linearizability.rs`) and the Docker
//! fault suite (`tests/it/docker/registers.rs`). Each says, through [`Plan`] and [`Reads`],
//! what it does differently: which keys, how it reads, what a value nobody wrote does, how
//! many operations and how fast.
//!
//! Concurrent clients do reads, blind writes, CAS (versioned SetData with a version the client
//! saw), creates and deletes; every written value is unique. Each operation is recorded with
//! [`Rec`] following the checker's recording contract:
//!
//! * `ok` — the service answered, including the definite failures `BAD_VERSION`, `NO_NODE`,
//!   `NODE_EXISTS`, which are outputs of the register model;
//! * `fail` — definitely not applied: any failed read, a write refused with reason
//!   `UNAVAILABLE` (the server promises it did not apply it), a write whose connection could
//!   not be made ([`write_not_applied`]);
//! * `info` — indeterminate (timeout, cancelled, `OUTCOME_UNKNOWN`, a transport error after
//!   sending): the process is retired and the client goes on under a new process id.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton::check::{Recorder, RegisterOp, RegisterOut};
use baton::client::{Client, ClientError, CreateOptions, ReadOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

pub type Rec = Recorder<RegisterOp<u64>, RegisterOut<u64>>;

/// Per-call deadline of the workload's clients.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(2000);
/// Outer bound on one operation (the client's own deadline fires first).
const OP_TIMEOUT: Duration = Duration::from_millis(3000);

/// Operation counts by outcome.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Counts {
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.ok + self.fail + self.info
    }

    pub fn add(&mut self, o: &Counts) {
        self.ok += o.ok;
        self.fail += o.fail;
        self.info += o.info;
    }
}

/// The workload's figures: outcomes per operation kind, errors per `kind: label`.
#[derive(Default, Debug, Serialize)]
pub struct Stats {
    pub by_kind: BTreeMap<&'static str, Counts>,
    pub errors: BTreeMap<String, u64>,
}

impl Stats {
    pub fn total(&self) -> Counts {
        let mut t = Counts::default();
        for c in self.by_kind.values() {
            t.add(c);
        }
        t
    }
}

/// How the workload's reads are made and what they make of the data they find.
#[derive(Clone, Copy)]
pub struct Reads {
    /// Consistency of the reads.
    pub options: ReadOptions,
    /// What a read of data no write of this workload produced records: a suite either panics
    /// or returns a value no write produces, so that the checker finds the history illegal.
    pub unwritten: fn(&[u8]) -> u64,
}

/// How one client of a suite runs the workload.
pub struct Plan<K> {
    /// Picks the key of the next operation, drawing from the client's generator.
    pub keys: K,
    pub reads: Reads,
    /// Bound on the operations of one client, whatever `stop` says.
    pub max_ops: u64,
    /// Pause between operations: a random whole number of milliseconds below this.
    pub pause_ms: u64,
}

/// Whether a failed call certainly never reached a server that could apply it (the
/// connection could not be made), following tonic's error sources.
pub fn never_sent(e: &ClientError) -> bool {
    if matches!(e, ClientError::Connect { .. }) {
        return true;
    }
    let Some(status) = e.status() else {
        return false;
    };
    if status.code() != tonic::Code::Unavailable {
        return false;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(err) = source {
        if err.is::<tonic::ConnectError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Whether a failed *write* definitely did not take effect: the server said `UNAVAILABLE`
/// (it promises not to have applied it) or the connection was never made. Anything else
/// (timeout, connection lost after sending, `OUTCOME_UNKNOWN`) is indeterminate.
pub fn write_not_applied(e: &ClientError) -> bool {
    e.is(baton::client::Reason::Unavailable) || never_sent(e)
}

/// A short label for error statistics: the reason, or the gRPC code.
pub fn error_label(e: &ClientError) -> String {
    e.reason().map_or_else(
        || baton::client::code_name(e.code()).to_string(),
        |r| r.to_string(),
    )
}

fn kind(op: &RegisterOp<u64>) -> &'static str {
    match op {
        RegisterOp::Read => "read",
        RegisterOp::Write(_) => "write",
        RegisterOp::Cas { .. } => "cas",
        RegisterOp::Create(_) => "create",
        RegisterOp::Delete => "delete",
    }
}

/// How one operation ended, as the recorder needs it.
enum Outcome {
    Ok(RegisterOut<u64>),
    Fail,
    Info,
}

/// A register's data as a value this workload wrote, or [`Reads::unwritten`]'s verdict.
fn parse(data: &[u8], reads: Reads) -> u64 {
    std::str::from_utf8(data)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| (reads.unwritten)(data))
}

/// Runs one operation and classifies its outcome; the error label if it failed.
async fn execute(
    client: &Client,
    reads: Reads,
    key: &str,
    op: &RegisterOp<u64>,
) -> (Outcome, Option<String>) {
    let res: Result<RegisterOut<u64>, ClientError> = match op {
        RegisterOp::Read => match client.get_data_with(key, reads.options).await {
            Ok((d, s)) => Ok(RegisterOut::Read(Some((parse(&d, reads), s.version)))),
            Err(e) if e.is(baton::client::Reason::NoNode) => Ok(RegisterOut::Read(None)),
            Err(e) => Err(e),
        },
        RegisterOp::Write(v) => match client.set_data(key, v.to_string(), -1).await {
            Ok(s) => Ok(RegisterOut::Written(s.version)),
            Err(e) if e.is(baton::client::Reason::NoNode) => Ok(RegisterOut::NoNode),
            Err(e) => Err(e),
        },
        RegisterOp::Cas {
            expected_version,
            value,
        } => match client
            .set_data(key, value.to_string(), *expected_version)
            .await
        {
            Ok(s) => Ok(RegisterOut::Written(s.version)),
            Err(e) if e.is(baton::client::Reason::NoNode) => Ok(RegisterOut::NoNode),
            Err(e) if e.is(baton::client::Reason::BadVersion) => Ok(RegisterOut::BadVersion),
            Err(e) => Err(e),
        },
        RegisterOp::Create(v) => match client
            .create(key, v.to_string(), CreateOptions::persistent())
            .await
        {
            Ok(_) => Ok(RegisterOut::Created),
            Err(e) if e.is(baton::client::Reason::NodeExists) => Ok(RegisterOut::NodeExists),
            Err(e) => Err(e),
        },
        RegisterOp::Delete => match client.delete(key, -1).await {
            Ok(_) => Ok(RegisterOut::Deleted),
            Err(e) if e.is(baton::client::Reason::NoNode) => Ok(RegisterOut::NoNode),
            Err(e) => Err(e),
        },
    };
    match res {
        Ok(out) => (Outcome::Ok(out), None),
        Err(e) => {
            let outcome = if matches!(op, RegisterOp::Read) || write_not_applied(&e) {
                Outcome::Fail
            } else {
                Outcome::Info
            };
            (outcome, Some(error_label(&e)))
        }
    }
}

/// Records one operation on `key` by `process`; returns whether it was determinate (if not,
/// the process must be retired) and its output if it completed.
pub async fn run_op(
    rec: &Rec,
    stats: &Mutex<Stats>,
    client: &Client,
    reads: Reads,
    process: u64,
    key: &str,
    op: RegisterOp<u64>,
) -> (bool, Option<RegisterOut<u64>>) {
    let k = kind(&op);
    let id = rec.invoke(process, key, op.clone());
    let (outcome, err) =
        match tokio::time::timeout(OP_TIMEOUT, execute(client, reads, key, &op)).await {
            Ok(r) => r,
            Err(_) => (Outcome::Info, Some("OUTER_TIMEOUT".to_string())),
        };
    let mut st = stats.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(e) = err {
        *st.errors.entry(format!("{k}: {e}")).or_default() += 1;
    }
    let counts = st.by_kind.entry(k).or_default();
    match outcome {
        Outcome::Ok(out) => {
            counts.ok += 1;
            rec.ok(id, out.clone());
            (true, Some(out))
        }
        Outcome::Fail => {
            counts.fail += 1;
            rec.fail(id);
            (true, None)
        }
        Outcome::Info => {
            counts.info += 1;
            rec.info(id);
            (false, None)
        }
    }
}

/// Client `index`'s loop until `stop` or `plan.max_ops`; returns its operation count. Values
/// are unique across clients (`(index + 1) * 10⁹ + n`); CAS uses the last version this client
/// saw of the key, or a guess.
pub async fn client_loop<K>(
    index: usize,
    client: Client,
    rec: Rec,
    stats: Arc<Mutex<Stats>>,
    stop: Arc<AtomicBool>,
    seed: u64,
    mut plan: Plan<K>,
) -> u64
where
    K: FnMut(&mut StdRng) -> String,
{
    let mut rng = StdRng::seed_from_u64(seed);
    let mut process = rec.new_process();
    let mut counter: u64 = 0;
    let mut versions: BTreeMap<String, i32> = BTreeMap::new();
    let base = (index as u64 + 1) * 1_000_000_000;
    let mut ops = 0u64;
    while !stop.load(Ordering::Relaxed) && ops < plan.max_ops {
        ops += 1;
        let key = (plan.keys)(&mut rng);
        counter += 1;
        let value = base + counter;
        let op = match rng.gen_range(0..100) {
            0..=44 => RegisterOp::Read,
            45..=62 => RegisterOp::Write(value),
            63..=86 => RegisterOp::Cas {
                expected_version: versions
                    .get(&key)
                    .copied()
                    .unwrap_or_else(|| rng.gen_range(0..3)),
                value,
            },
            87..=95 => RegisterOp::Create(value),
            _ => RegisterOp::Delete,
        };
        let (determinate, out) = run_op(&rec, &stats, &client, plan.reads, process, &key, op).await;
        if !determinate {
            process = rec.new_process();
        }
        match out {
            Some(RegisterOut::Read(Some((_, v)))) | Some(RegisterOut::Written(v)) => {
                versions.insert(key, v);
            }
            Some(RegisterOut::Created) => {
                versions.insert(key, 0);
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..plan.pause_ms))).await;
    }
    ops
}
