//! Register workload (linearizability) of the Docker suite: the shared workload
//! ([`shared`], also run in-process by `tests/it/cluster`) on keys that rotate every
//! [`GENERATION`] of run time (`/df/reg/gNNN-kI`), so each key's history, and the checker's
//! search, stay small however long the run. Reads are linearizable; data nobody wrote is
//! recorded as a value no write produces, so the checker reports the history as illegal and
//! the suite still writes its summary.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton::check::{RegisterOp, RegisterOut};
use baton::client::{Client, ReadOptions};
use rand::rngs::StdRng;
use rand::Rng;

use crate::common::registers as shared;

pub use shared::{error_label, write_not_applied, Counts, Rec, Stats, CALL_TIMEOUT};

/// Keys per generation.
pub const KEYS: usize = 4;
/// How long one generation of keys is used.
pub const GENERATION: Duration = Duration::from_secs(20);

pub fn key(generation: u64, i: usize) -> String {
    format!("/df/reg/g{generation:03}-k{i}")
}

fn reads() -> shared::Reads {
    shared::Reads {
        options: ReadOptions::linearizable(),
        // u64::MAX is never written.
        unwritten: |_| u64::MAX,
    }
}

/// Records one linearizable operation; returns whether it was determinate and its output if
/// it completed.
pub async fn run_op(
    rec: &Rec,
    stats: &Mutex<Stats>,
    client: &Client,
    process: u64,
    key: &str,
    op: RegisterOp<u64>,
) -> (bool, Option<RegisterOut<u64>>) {
    shared::run_op(rec, stats, client, reads(), process, key, op).await
}

/// One client's loop until `stop` (bounded to 10 million operations); raises
/// `max_generation` to every generation it uses.
pub async fn client_loop(
    index: usize,
    client: Client,
    rec: Rec,
    stats: Arc<Mutex<Stats>>,
    stop: Arc<AtomicBool>,
    max_generation: Arc<AtomicU64>,
    seed: u64,
) -> u64 {
    let clock = rec.clone();
    let keys = move |rng: &mut StdRng| {
        let generation = clock.now_ns() / GENERATION.as_nanos() as u64;
        max_generation.fetch_max(generation, Ordering::Relaxed);
        key(generation, rng.gen_range(0..KEYS))
    };
    let plan = shared::Plan {
        keys,
        reads: reads(),
        max_ops: 10_000_000,
        pause_ms: 10,
    };
    shared::client_loop(index, client, rec, stats, stop, seed, plan).await
}
