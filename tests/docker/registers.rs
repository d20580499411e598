//! Register workload (linearizability): concurrent clients do reads, blind writes, CAS
//! (versioned SetData with a version the client saw), creates and deletes on a few keys; every
//! written value is unique. Keys rotate every [`GENERATION`] of run time (`/df/reg/gNNN-kI`), so
//! each key's history, and the checker's search, stay small however long the run.
//!
//! Outcomes, as the checker's recording contract wants them: `ok` = the service answered
//! (including `BAD_VERSION`, `NO_NODE`, `NODE_EXISTS`, which are outputs of the model);
//! `fail` = definitely not applied (a failed read; a write refused with reason `UNAVAILABLE`
//! or whose connection was never made); `info` = indeterminate (timeout, connection lost after
//! sending, `OUTCOME_UNKNOWN`): the process is retired and the client goes on as a new one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton::check::{Recorder, RegisterOp, RegisterOut};
use baton::client::{Client, ClientError, CreateOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::cluster::{error_label, write_not_applied};

pub type Rec = Recorder<RegisterOp<u64>, RegisterOut<u64>>;

/// Keys per generation.
pub const KEYS: usize = 4;
/// How long one generation of keys is used.
pub const GENERATION: Duration = Duration::from_secs(20);
/// Per-call deadline of the workload's clients.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(2000);
/// Outer bound on one operation (the client's own deadline fires first).
const OP_TIMEOUT: Duration = Duration::from_millis(3000);

pub fn key(generation: u64, i: usize) -> String {
    format!("/df/reg/g{generation:03}-k{i}")
}

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

fn kind(op: &RegisterOp<u64>) -> &'static str {
    match op {
        RegisterOp::Read => "read",
        RegisterOp::Write(_) => "write",
        RegisterOp::Cas { .. } => "cas",
        RegisterOp::Create(_) => "create",
        RegisterOp::Delete => "delete",
    }
}

enum Outcome {
    Ok(RegisterOut<u64>),
    Fail,
    Info,
}

/// Parses a register's data; `None` if it is not a value this workload wrote.
fn parse(data: &[u8]) -> Option<u64> {
    std::str::from_utf8(data).ok()?.parse().ok()
}

async fn execute(client: &Client, key: &str, op: &RegisterOp<u64>) -> (Outcome, Option<String>) {
    let res: Result<RegisterOut<u64>, ClientError> = match op {
        RegisterOp::Read => match client.get_data(key).await {
            Ok((d, s)) => match parse(&d) {
                Some(v) => Ok(RegisterOut::Read(Some((v, s.version)))),
                // Data nobody wrote: record it as a value no write produced (u64::MAX is never
                // written), so the checker reports the history as illegal.
                None => Ok(RegisterOut::Read(Some((u64::MAX, s.version)))),
            },
            Err(e) if e.is("NO_NODE") => Ok(RegisterOut::Read(None)),
            Err(e) => Err(e),
        },
        RegisterOp::Write(v) => match client.set_data(key, v.to_string(), -1).await {
            Ok(s) => Ok(RegisterOut::Written(s.version)),
            Err(e) if e.is("NO_NODE") => Ok(RegisterOut::NoNode),
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
            Err(e) if e.is("NO_NODE") => Ok(RegisterOut::NoNode),
            Err(e) if e.is("BAD_VERSION") => Ok(RegisterOut::BadVersion),
            Err(e) => Err(e),
        },
        RegisterOp::Create(v) => match client
            .create(key, v.to_string(), CreateOptions::persistent())
            .await
        {
            Ok(_) => Ok(RegisterOut::Created),
            Err(e) if e.is("NODE_EXISTS") => Ok(RegisterOut::NodeExists),
            Err(e) => Err(e),
        },
        RegisterOp::Delete => match client.delete(key, -1).await {
            Ok(_) => Ok(RegisterOut::Deleted),
            Err(e) if e.is("NO_NODE") => Ok(RegisterOut::NoNode),
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

/// Records one operation; returns whether it was determinate and its output if it completed.
pub async fn run_op(
    rec: &Rec,
    stats: &Mutex<Stats>,
    client: &Client,
    process: u64,
    key: &str,
    op: RegisterOp<u64>,
) -> (bool, Option<RegisterOut<u64>>) {
    let k = kind(&op);
    let id = rec.invoke(process, key, op.clone());
    let (outcome, err) = match tokio::time::timeout(OP_TIMEOUT, execute(client, key, &op)).await {
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

/// One client's loop until `stop` (bounded to 10 million operations).
pub async fn client_loop(
    index: usize,
    client: Client,
    rec: Rec,
    stats: Arc<Mutex<Stats>>,
    stop: Arc<AtomicBool>,
    max_generation: Arc<std::sync::atomic::AtomicU64>,
    seed: u64,
) -> u64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut process = rec.new_process();
    let mut counter: u64 = 0;
    let mut versions: BTreeMap<String, i32> = BTreeMap::new();
    let base = (index as u64 + 1) * 1_000_000_000;
    let mut ops = 0u64;
    while !stop.load(Ordering::Relaxed) && ops < 10_000_000 {
        ops += 1;
        let generation = rec.now_ns() / GENERATION.as_nanos() as u64;
        max_generation.fetch_max(generation, Ordering::Relaxed);
        let key = key(generation, rng.gen_range(0..KEYS));
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
        let (determinate, out) = run_op(&rec, &stats, &client, process, &key, op).await;
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
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..10))).await;
    }
    ops
}
