//! Sequential creates: clients create `PERSISTENT_SEQUENTIAL` children under two parents.
//! Each create's name prefix is a unique token (`c<client>-<n>-`), so the final listing alone
//! says which create produced which node and sequence number.
//!
//! Checks (per parent):
//! * no two acknowledged creates got the same name or the same sequence number;
//! * real-time order: if create A was acknowledged before create B was invoked, A's sequence
//!   number is smaller than B's;
//! * after healing, every acknowledged create is present under the name it was acknowledged
//!   with (no acknowledged write lost), on every member;
//! * no node carries a token that was never invoked or whose create definitely failed, no
//!   token appears twice (an indeterminate create applied twice), and no sequence number
//!   appears twice among all children.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton::client::{Client, CreateOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::cluster::{error_label, write_not_applied};
use super::registers::{Counts, Rec};

pub const PARENTS: [&str; 2] = ["/df/seq/p0", "/df/seq/p1"];

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SeqOutcome {
    /// Acknowledged with this name (the last path component).
    Ok { name: String },
    /// Definitely not applied.
    Fail { error: String },
    /// Unknown.
    Info { error: String },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SeqOp {
    pub client: usize,
    pub parent: String,
    pub token: String,
    pub call_ns: u64,
    pub return_ns: u64,
    pub outcome: SeqOutcome,
}

pub type SeqLog = Arc<Mutex<Vec<SeqOp>>>;

/// The sequence number of a name `<token>NNNNNNNNNN`.
fn seq_of(name: &str) -> Option<u64> {
    if name.len() < 10 {
        return None;
    }
    name[name.len() - 10..].parse().ok()
}

/// The token (prefix without the trailing `-`) of a name.
fn token_of(name: &str) -> &str {
    &name[..name.len().saturating_sub(10)]
}

pub async fn client_loop(
    index: usize,
    client: Client,
    clock: Rec,
    log: SeqLog,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> u64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) && n < 10_000_000 {
        n += 1;
        let parent = PARENTS[rng.gen_range(0..PARENTS.len())];
        let token = format!("c{index}-{n}-");
        let call_ns = clock.now_ns();
        let res = tokio::time::timeout(
            Duration::from_millis(3000),
            client.create(
                &format!("{parent}/{token}"),
                token.clone(),
                CreateOptions::persistent().sequential(),
            ),
        )
        .await;
        let return_ns = clock.now_ns();
        let outcome = match res {
            Err(_) => SeqOutcome::Info {
                error: "OUTER_TIMEOUT".into(),
            },
            Ok(Ok((path, _))) => SeqOutcome::Ok {
                name: path.rsplit('/').next().unwrap_or_default().to_string(),
            },
            Ok(Err(e)) if write_not_applied(&e) => SeqOutcome::Fail {
                error: error_label(&e),
            },
            Ok(Err(e)) => SeqOutcome::Info {
                error: error_label(&e),
            },
        };
        log.lock().unwrap_or_else(|p| p.into_inner()).push(SeqOp {
            client: index,
            parent: parent.to_string(),
            token,
            call_ns,
            return_ns,
            outcome,
        });
        tokio::time::sleep(Duration::from_millis(rng.gen_range(10..40))).await;
    }
    n
}

pub fn counts(ops: &[SeqOp]) -> Counts {
    let mut c = Counts::default();
    for op in ops {
        match op.outcome {
            SeqOutcome::Ok { .. } => c.ok += 1,
            SeqOutcome::Fail { .. } => c.fail += 1,
            SeqOutcome::Info { .. } => c.info += 1,
        }
    }
    c
}

/// Checks the acknowledged creates among themselves (uniqueness, real-time order). Returns
/// the problems found (at most a few per kind).
pub fn check_acks(ops: &[SeqOp]) -> Vec<String> {
    let mut problems = Vec::new();
    for parent in PARENTS {
        // (seq, call, return, token, name)
        let mut acked: Vec<(u64, u64, u64, &str, &str)> = Vec::new();
        for op in ops.iter().filter(|o| o.parent == parent) {
            if let SeqOutcome::Ok { name } = &op.outcome {
                match seq_of(name) {
                    Some(seq) if token_of(name) == op.token => {
                        acked.push((seq, op.call_ns, op.return_ns, &op.token, name))
                    }
                    _ => problems.push(format!(
                        "{parent}: create of token {} was acknowledged with name {name:?}",
                        op.token
                    )),
                }
            }
        }
        let mut by_seq: BTreeMap<u64, &str> = BTreeMap::new();
        let mut dups = 0;
        for (seq, _, _, token, _) in &acked {
            if let Some(other) = by_seq.insert(*seq, token) {
                dups += 1;
                if dups <= 5 {
                    problems.push(format!(
                        "{parent}: DUPLICATE sequence number {seq} acknowledged to {other} and {token}"
                    ));
                }
            }
        }
        // Real-time order: sweep B by call time, with the largest sequence number among the
        // creates acknowledged before B's call.
        let mut by_return: Vec<_> = acked.clone();
        by_return.sort_by_key(|a| a.2);
        let mut by_call = acked;
        by_call.sort_by_key(|a| a.1);
        let mut j = 0;
        let mut best: Option<(u64, &str, u64)> = None; // (seq, token, return_ns)
        let mut bad = 0;
        for b in &by_call {
            while j < by_return.len() && by_return[j].2 < b.1 {
                let a = &by_return[j];
                if best.is_none_or(|(s, _, _)| a.0 > s) {
                    best = Some((a.0, a.3, a.2));
                }
                j += 1;
            }
            if let Some((s, token, ret)) = best {
                if s >= b.0 {
                    bad += 1;
                    if bad <= 5 {
                        problems.push(format!(
                            "{parent}: NON-MONOTONIC sequence: {token} got {s} (acknowledged at \
                             {:.3} s) but the later create {} (invoked at {:.3} s) got {}",
                            ret as f64 / 1e9,
                            b.3,
                            b.1 as f64 / 1e9,
                            b.0
                        ));
                    }
                }
            }
        }
    }
    problems
}

/// Checks a parent's final children (names, as listed by one member) against the log.
pub fn check_final(ops: &[SeqOp], parent: &str, children: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut by_token: BTreeMap<&str, &SeqOp> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.parent == parent) {
        by_token.insert(op.token.trim_end_matches('-'), op);
    }
    let present: BTreeSet<&str> = children.iter().map(String::as_str).collect();
    let mut seen_tokens: BTreeMap<&str, &str> = BTreeMap::new();
    let mut seen_seqs: BTreeMap<u64, &str> = BTreeMap::new();
    let push = |problems: &mut Vec<String>, msg: String| {
        if problems.len() < 20 {
            problems.push(msg);
        }
    };
    for name in children {
        let (Some(seq), token) = (seq_of(name), token_of(name).trim_end_matches('-')) else {
            push(
                &mut problems,
                format!("{parent}: unexpected child {name:?}"),
            );
            continue;
        };
        if let Some(other) = seen_seqs.insert(seq, name) {
            push(
                &mut problems,
                format!("{parent}: DUPLICATE sequence number {seq}: {other} and {name}"),
            );
        }
        if let Some(other) = seen_tokens.insert(token, name) {
            push(
                &mut problems,
                format!("{parent}: create {token} APPLIED TWICE: {other} and {name}"),
            );
        }
        match by_token.get(token).map(|op| &op.outcome) {
            None => push(
                &mut problems,
                format!("{parent}: PHANTOM node {name}: no such create was invoked"),
            ),
            Some(SeqOutcome::Fail { error }) => push(
                &mut problems,
                format!(
                    "{parent}: node {name} exists although its create FAILED definitely ({error})"
                ),
            ),
            Some(SeqOutcome::Ok { name: acked }) if acked != name => push(
                &mut problems,
                format!("{parent}: node {name} exists but its create was acknowledged as {acked}"),
            ),
            _ => {}
        }
    }
    let mut lost = 0;
    for op in ops.iter().filter(|o| o.parent == parent) {
        if let SeqOutcome::Ok { name } = &op.outcome {
            if !present.contains(name.as_str()) {
                lost += 1;
                if lost <= 5 {
                    push(
                        &mut problems,
                        format!("{parent}: acknowledged create {name} is LOST"),
                    );
                }
            }
        }
    }
    if lost > 5 {
        problems.push(format!("{parent}: {lost} acknowledged creates lost in all"));
    }
    problems
}
