//! Wing & Gong / Lowe linearizability checker with memoisation (porcupine-style), run per key.
//!
//! See the [module documentation](super) for the algorithm and the meaning of the verdicts.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::history::{History, Operation};
use super::model::Model;

/// Limits of one check.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Wall-clock budget of the whole check (all keys). Keys not decided in time are
    /// [`Verdict::Unknown`].
    pub time_limit: Duration,
    /// Worker threads checking keys in parallel (at least 1).
    pub threads: usize,
}

impl Default for CheckOptions {
    /// 30 s, one thread per available core.
    fn default() -> Self {
        Self {
            time_limit: Duration::from_secs(30),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

impl CheckOptions {
    /// Default options with another time limit.
    pub fn with_time_limit(time_limit: Duration) -> Self {
        Self {
            time_limit,
            ..Self::default()
        }
    }
}

/// The outcome of a check.
///
/// **Only [`Verdict::Ok`] is a pass.** [`Verdict::Unknown`] means the checker could not decide
/// within its budget; callers must treat it as a failure ("inconclusive"), never as a pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's history is linearizable.
    Ok,
    /// The history of `key` is not linearizable.
    Illegal {
        /// The offending key.
        key: String,
        /// The longest linearizable prefix found and the operations that could not be placed.
        explanation: String,
    },
    /// The checker gave up on `key` (time limit). Counts as a failure.
    Unknown {
        /// The undecided key.
        key: String,
        /// Why, e.g. "timed out after 30s …".
        reason: String,
    },
}

impl Verdict {
    /// True only for [`Verdict::Ok`]; `Unknown` is not a pass.
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Ok)
    }

    /// True for [`Verdict::Illegal`].
    pub fn is_illegal(&self) -> bool {
        matches!(self, Verdict::Illegal { .. })
    }

    /// True for [`Verdict::Unknown`].
    pub fn is_unknown(&self) -> bool {
        matches!(self, Verdict::Unknown { .. })
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Ok => f.write_str("linearizable"),
            Verdict::Illegal { key, explanation } => {
                write!(f, "NOT linearizable (key {key:?}):\n{explanation}")
            }
            Verdict::Unknown { key, reason } => {
                write!(
                    f,
                    "inconclusive (key {key:?}), counts as a failure: {reason}"
                )
            }
        }
    }
}

/// Per-key figures of a check.
#[derive(Clone, Debug)]
pub struct KeyReport {
    /// The key.
    pub key: String,
    /// Operations checked (indeterminate read-only operations excluded).
    pub ops: usize,
    /// Indeterminate operations among them.
    pub indeterminate: usize,
    /// The verdict for this key alone.
    pub verdict: Verdict,
    /// Search steps (candidate placements tried).
    pub steps: u64,
    /// Time spent on this key.
    pub elapsed: Duration,
}

/// The verdict of a check with per-key figures.
#[derive(Clone, Debug)]
pub struct Report {
    /// The overall verdict: the first illegal key (in key order) if any, otherwise the first
    /// undecided key if any, otherwise `Ok`.
    pub verdict: Verdict,
    /// One entry per key, in key order.
    pub keys: Vec<KeyReport>,
    /// Wall-clock time of the whole check.
    pub elapsed: Duration,
}

/// Checks `history` against `model`, key by key. See [`check_report`] for figures.
pub fn check<M>(model: &M, history: &History<M::Op, M::Out>, options: &CheckOptions) -> Verdict
where
    M: Model + Sync,
    M::Op: Sync,
    M::Out: Sync,
{
    check_report(model, history, options).verdict
}

/// Checks `history` against `model`, key by key (in parallel on `options.threads` threads),
/// and reports the verdict with per-key figures. Once a key is found illegal the remaining
/// keys are abandoned (reported `Unknown`, "not checked").
pub fn check_report<M>(
    model: &M,
    history: &History<M::Op, M::Out>,
    options: &CheckOptions,
) -> Report
where
    M: Model + Sync,
    M::Op: Sync,
    M::Out: Sync,
{
    let start = Instant::now();
    let deadline = start.checked_add(options.time_limit);
    let partitions: Vec<(&str, Vec<usize>)> = history.partition_by_key().into_iter().collect();
    // Largest keys first, for a better balance between workers.
    let mut order: Vec<usize> = (0..partitions.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(partitions[i].1.len()));

    let stop = AtomicBool::new(false);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<KeyReport>>> = Mutex::new(vec![None; partitions.len()]);
    let ctx = Ctx {
        time_limit: options.time_limit,
        deadline,
        stop: &stop,
    };
    let worker = || {
        while let Some(&part) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
            let (key, indices) = &partitions[part];
            let report = check_key(model, key, history.ops(), indices, &ctx);
            if report.verdict.is_illegal() {
                stop.store(true, Ordering::Relaxed);
            }
            let mut results = results.lock().unwrap_or_else(|p| p.into_inner());
            results[part] = Some(report);
        }
    };
    let threads = options.threads.clamp(1, partitions.len().max(1));
    if threads == 1 {
        worker();
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|_| s.spawn(worker)).collect();
            for handle in handles {
                if let Err(panic) = handle.join() {
                    // A panicking model is a bug in the caller's test code: propagate it.
                    std::panic::resume_unwind(panic);
                }
            }
        });
    }

    let keys: Vec<KeyReport> = results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .flatten()
        .collect();
    let verdict = keys
        .iter()
        .find(|k| k.verdict.is_illegal())
        .or_else(|| keys.iter().find(|k| k.verdict.is_unknown()))
        .map_or(Verdict::Ok, |k| k.verdict.clone());
    Report {
        verdict,
        keys,
        elapsed: start.elapsed(),
    }
}

struct Ctx<'a> {
    time_limit: Duration,
    deadline: Option<Instant>,
    stop: &'a AtomicBool,
}

/// A fixed-size set of operation indices, used as half of the memoisation key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BitSet(Vec<u64>);

impl BitSet {
    fn new(len: usize) -> Self {
        Self(vec![0; len.div_ceil(64)])
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// Sentinels of the entry list.
const HEAD: usize = 0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Call,
    Return,
}

/// One call or return event in the doubly linked list.
#[derive(Clone, Copy, Debug)]
struct Entry {
    kind: Kind,
    /// Index into the key's operation list.
    op: usize,
    /// For a call entry: its return entry (`None` for an indeterminate operation).
    ret: Option<usize>,
}

enum Outcome {
    Linearizable,
    Illegal,
    TimedOut,
    Cancelled,
}

struct Search<'a, M: Model> {
    model: &'a M,
    ops: Vec<&'a Operation<M::Op, M::Out>>,
    entries: Vec<Entry>,
    next: Vec<usize>,
    prev: Vec<usize>,
    completed: usize,
    steps: u64,
    /// The linearized sequence (indices into `ops`) that first reached the most completed
    /// operations, and that number. Ranking by completed operations keeps indeterminate ones
    /// that merely could be appended out of the explanation.
    best: Vec<usize>,
    best_completed: usize,
}

impl<'a, M: Model> Search<'a, M> {
    /// Builds the event list. Events are sorted by time; at equal times calls come before
    /// returns, so `a` precedes `b` in real time only if `a.return < b.call` strictly (equal
    /// timestamps are treated as concurrent, which can only make a history *more*
    /// permissive). Indeterminate operations have no return event: their return is at +∞,
    /// after every other event, so nothing ever forces them to be linearized.
    fn new(model: &'a M, ops: Vec<&'a Operation<M::Op, M::Out>>) -> Self {
        let mut events: Vec<(u64, Kind, usize)> = Vec::with_capacity(2 * ops.len());
        for (i, op) in ops.iter().enumerate() {
            events.push((op.call_ns, Kind::Call, i));
            if let Some(ret) = op.return_ns {
                events.push((ret.max(op.call_ns), Kind::Return, i));
            }
        }
        events.sort_by_key(|&(time, kind, op)| (time, kind == Kind::Return, op));

        // Entry 0 is the head sentinel, the last one the tail sentinel.
        let n = events.len();
        let tail = n + 1;
        let mut entries = Vec::with_capacity(n + 2);
        entries.push(Entry {
            kind: Kind::Return,
            op: usize::MAX,
            ret: None,
        });
        let mut return_entry = vec![None; ops.len()];
        for (pos, &(_, kind, op)) in events.iter().enumerate() {
            if kind == Kind::Return {
                return_entry[op] = Some(pos + 1);
            }
            entries.push(Entry {
                kind,
                op,
                ret: None,
            });
        }
        entries.push(Entry {
            kind: Kind::Return,
            op: usize::MAX,
            ret: None,
        });
        for entry in entries.iter_mut().take(tail).skip(1) {
            if entry.kind == Kind::Call {
                entry.ret = return_entry[entry.op];
            }
        }
        let next = (0..n + 2).map(|i| (i + 1).min(tail)).collect();
        let prev = (0..n + 2).map(|i| i.saturating_sub(1)).collect();
        let completed = ops.iter().filter(|op| !op.is_indeterminate()).count();
        Self {
            model,
            ops,
            entries,
            next,
            prev,
            completed,
            steps: 0,
            best: Vec::new(),
            best_completed: 0,
        }
    }

    fn unlink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn relink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = e;
        self.prev[n] = e;
    }

    /// Removes a call entry and its return entry (dancing links: their own pointers are kept).
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        if let Some(ret) = self.entries[call].ret {
            self.unlink(ret);
        }
    }

    /// Undoes [`Self::lift`] (in reverse order).
    fn unlift(&mut self, call: usize) {
        if let Some(ret) = self.entries[call].ret {
            self.relink(ret);
        }
        self.relink(call);
    }

    fn try_step(&self, state: &M::State, op: usize) -> Option<M::State> {
        let op = self.ops[op];
        match &op.output {
            Some(out) => self.model.step(state, &op.input, out),
            None => self.model.step_indeterminate(state, &op.input),
        }
    }

    /// Lowe's just-in-time linearization: walk the events in time order; at a call, try to
    /// linearize that operation now (if the model accepts its output and the resulting
    /// configuration is new), lifting it out of the list and restarting from the head; at a
    /// return (of an operation not yet linearized), backtrack: undo the last linearization and
    /// try the next candidate after it.
    fn run(&mut self, ctx: &Ctx<'_>) -> Outcome {
        if self.completed == 0 {
            return Outcome::Linearizable;
        }
        let tail = self.entries.len() - 1;
        let mut state = self.model.init();
        let mut linearized = BitSet::new(self.ops.len());
        let mut done = 0usize;
        // (call entry, state before it) for each linearized operation, in order.
        let mut stack: Vec<(usize, M::State)> = Vec::new();
        // Configurations (set of linearized ops, state) already explored without success.
        let mut cache: HashMap<BitSet, Vec<M::State>> = HashMap::new();
        let mut entry = self.next[HEAD];
        loop {
            self.steps += 1;
            if self.steps.is_multiple_of(1024) {
                if ctx.stop.load(Ordering::Relaxed) {
                    return Outcome::Cancelled;
                }
                if ctx.deadline.is_some_and(|d| Instant::now() >= d) {
                    return Outcome::TimedOut;
                }
            }
            if entry == tail || self.entries[entry].kind == Kind::Return {
                // An operation must have been linearized before this return: backtrack.
                let Some((call, previous)) = stack.pop() else {
                    return Outcome::Illegal;
                };
                let op = self.entries[call].op;
                linearized.clear(op);
                if !self.ops[op].is_indeterminate() {
                    done -= 1;
                }
                state = previous;
                self.unlift(call);
                entry = self.next[call];
                continue;
            }
            let op = self.entries[entry].op;
            if let Some(next_state) = self.try_step(&state, op) {
                linearized.set(op);
                let seen = cache
                    .get(&linearized)
                    .is_some_and(|s| s.contains(&next_state));
                if !seen {
                    cache
                        .entry(linearized.clone())
                        .or_default()
                        .push(next_state.clone());
                    stack.push((entry, std::mem::replace(&mut state, next_state)));
                    self.lift(entry);
                    if !self.ops[op].is_indeterminate() {
                        done += 1;
                        if done == self.completed {
                            return Outcome::Linearizable;
                        }
                    }
                    if done > self.best_completed {
                        self.best_completed = done;
                        self.best = stack.iter().map(|&(e, _)| self.entries[e].op).collect();
                    }
                    entry = self.next[HEAD];
                    continue;
                }
                linearized.clear(op);
            }
            entry = self.next[entry];
        }
    }
}

/// How many operations of the prefix and of the unplaced candidates an explanation shows.
const SHOW_PREFIX: usize = 8;
const SHOW_UNPLACED: usize = 8;

fn describe<I: fmt::Debug, O: fmt::Debug>(index: usize, op: &Operation<I, O>) -> String {
    match (&op.output, op.return_ns) {
        (Some(out), Some(ret)) => format!(
            "#{index} p{} {:?} -> {:?} [{}..{}]",
            op.process, op.input, out, op.call_ns, ret
        ),
        _ => format!(
            "#{index} p{} {:?} -> ? (indeterminate) [{}..∞)",
            op.process, op.input, op.call_ns
        ),
    }
}

/// Text of an illegal verdict: the longest linearizable prefix found, the state after it, and
/// the operations that could not be placed next.
fn explain<M: Model>(search: &Search<'_, M>, indices: &[usize]) -> String {
    let ops = &search.ops;
    let mut text = String::new();
    let indeterminate = ops.iter().filter(|op| op.is_indeterminate()).count();
    let _ = writeln!(
        text,
        "no linearization of the {} operations ({} completed, {} indeterminate) exists",
        ops.len(),
        ops.len() - indeterminate,
        indeterminate
    );
    let best = &search.best;
    let mut placed = vec![false; ops.len()];
    let mut state = search.model.init();
    for &op in best {
        placed[op] = true;
        if let Some(next) = search.try_step(&state, op) {
            state = next;
        }
    }
    let _ = writeln!(
        text,
        "longest linearizable prefix: {} operations",
        best.len()
    );
    let skip = best.len().saturating_sub(SHOW_PREFIX);
    if skip > 0 {
        let _ = writeln!(text, "  … {skip} earlier operations");
    }
    for &op in &best[skip..] {
        let _ = writeln!(text, "  {}", describe(indices[op], ops[op]));
    }
    let _ = writeln!(text, "state after the prefix: {state:?}");

    // The first completed operation (by return time) left out of the prefix must come next,
    // or after something that overlaps it.
    let blocking = (0..ops.len())
        .filter(|&i| !placed[i])
        .filter_map(|i| ops[i].return_ns.map(|ret| (ret, i)))
        .min();
    let Some((deadline, blocking)) = blocking else {
        return text;
    };
    let _ = writeln!(
        text,
        "could not be placed next (must precede or overlap #{}, which returned at {deadline}):",
        indices[blocking]
    );
    let mut candidates: Vec<usize> = (0..ops.len())
        .filter(|&i| !placed[i] && ops[i].call_ns <= deadline)
        .collect();
    candidates.sort_by_key(|&i| (ops[i].call_ns, i));
    for &i in candidates.iter().take(SHOW_UNPLACED) {
        let why = match (search.try_step(&state, i), ops[i].is_indeterminate()) {
            (None, false) => "output impossible in this state",
            (None, true) => "cannot take effect in this state",
            (Some(_), _) => "possible here, but no linearization of the rest follows",
        };
        let _ = writeln!(text, "  {}: {why}", describe(indices[i], ops[i]));
    }
    if candidates.len() > SHOW_UNPLACED {
        let _ = writeln!(text, "  … {} more", candidates.len() - SHOW_UNPLACED);
    }
    text
}

fn check_key<M: Model>(
    model: &M,
    key: &str,
    all: &[Operation<M::Op, M::Out>],
    indices: &[usize],
    ctx: &Ctx<'_>,
) -> KeyReport {
    let started = Instant::now();
    // Indeterminate read-only operations constrain nothing.
    let indices: Vec<usize> = indices
        .iter()
        .copied()
        .filter(|&i| !(all[i].is_indeterminate() && model.is_read_only(&all[i].input)))
        .collect();
    let ops: Vec<&Operation<M::Op, M::Out>> = indices.iter().map(|&i| &all[i]).collect();
    let indeterminate = ops.iter().filter(|op| op.is_indeterminate()).count();
    let mut search = Search::new(model, ops);
    let outcome = if ctx.stop.load(Ordering::Relaxed) {
        Outcome::Cancelled
    } else if ctx.deadline.is_some_and(|d| Instant::now() >= d) {
        Outcome::TimedOut
    } else {
        search.run(ctx)
    };
    let verdict = match outcome {
        Outcome::Linearizable => Verdict::Ok,
        Outcome::Illegal => Verdict::Illegal {
            key: key.to_owned(),
            explanation: explain(&search, &indices),
        },
        Outcome::TimedOut => Verdict::Unknown {
            key: key.to_owned(),
            reason: format!(
                "timed out after {:?} (the check's time limit; {:.1?} spent on this key): {} \
                 search steps, at best {} of {} completed operations linearized",
                ctx.time_limit,
                started.elapsed(),
                search.steps,
                search.best_completed,
                search.completed
            ),
        },
        Outcome::Cancelled => Verdict::Unknown {
            key: key.to_owned(),
            reason: "not checked: another key is not linearizable".to_owned(),
        },
    };
    KeyReport {
        key: key.to_owned(),
        ops: search.ops.len(),
        indeterminate,
        verdict,
        steps: search.steps,
        elapsed: started.elapsed(),
    }
}
