//! Linearizability checking of recorded client histories (Jepsen/porcupine style).
//!
//! Test workloads record what concurrent clients did with a [`Recorder`]; afterwards
//! [`check`] decides whether the resulting [`History`] can be explained by a sequential
//! [`Model`] — here [`Register`], one ZooKeeper-style znode (data + version) per key.
//!
//! ```
//! use std::time::Duration;
//! use baton::check::{check, CheckOptions, Recorder, Register, RegisterOp, RegisterOut};
//!
//! let h = Recorder::new();
//! let p = h.new_process();
//! let id = h.invoke(p, "/a", RegisterOp::Create(1u64));
//! h.ok(id, RegisterOut::Created);
//! let id = h.invoke(p, "/a", RegisterOp::Read);
//! h.ok(id, RegisterOut::Read(Some((1, 0))));
//! let verdict = check(&Register::absent(), &h.finish(), &CheckOptions::default());
//! assert!(verdict.is_ok(), "{verdict}");
//! ```
//!
//! # Histories and indeterminate operations
//!
//! An operation is an interval `[call, return]` on a monotonic clock shared by all clients,
//! with its input and output. Operations that definitely did not take effect (`fail`) are
//! dropped. **Indeterminate** operations (`info`: timeout, lost connection) have no output and
//! return at +∞: the checker may linearize them anywhere after their call, or never; a history
//! is linearizable if all *completed* operations can be linearized. The process that issued an
//! indeterminate operation is retired and the workload continues with a fresh process id (see
//! the [`history`] module for the full recording contract). Indeterminate reads constrain
//! nothing and are dropped up front.
//!
//! Real-time order: `a` must precede `b` iff `a` returned strictly before `b` was called
//! (`a.return < b.call`). Equal timestamps count as concurrent.
//!
//! # Algorithm
//!
//! 1. **Partition by key** (P-compositionality: linearizability is local, so a history is
//!    linearizable iff each object's sub-history is). Keys are checked independently, in
//!    parallel on [`CheckOptions::threads`] threads, largest first.
//! 2. Per key, **Wing & Gong's search with Lowe's just-in-time linearization and memoisation**
//!    (as in porcupine): call and return events are sorted by time (calls before returns at
//!    equal times) in a doubly linked list. Walking it from the head, at a call the operation
//!    is tentatively linearized if the model accepts its recorded output (or, for an
//!    indeterminate operation, can apply it) and the configuration `(set of linearized
//!    operations, model state)` has not been explored before; the call and its return are
//!    lifted out of the list and the walk restarts from the head. Reaching a return means that
//!    operation should already have been linearized, so the search backtracks: it restores
//!    the last lifted operation and tries the next candidate after it. The history is
//!    linearizable once every completed operation is linearized; it is not if backtracking
//!    empties the stack. The memo (a hash set of configurations, keyed by a bit set) prunes
//!    permutations that reach the same state with the same operations, which makes typical
//!    histories with unique written values close to linear.
//! 3. **Verdict.** [`Verdict::Illegal`] names the key and explains the longest linearizable
//!    prefix found, the state after it and the operations that could not be placed next.
//!    [`Verdict::Unknown`] means the time limit ([`CheckOptions::time_limit`], for the whole
//!    check) ran out first. **`Unknown` must be treated as a failure** (inconclusive), never
//!    as a pass: [`Verdict::is_ok`] is true only for [`Verdict::Ok`].
//!
//! Write workloads so that the search stays small: give every write a unique value, keep the
//! number of concurrent clients per key modest, and keep indeterminate operations rare (each
//! one stays a candidate until the end of its key's history).

pub mod history;
pub mod model;
pub mod wgl;

#[cfg(test)]
mod tests;

pub use history::{History, HistoryError, OpId, Operation, ProcessId, Recorder};
pub use model::{Model, Register, RegisterOp, RegisterOut, Version};
pub use wgl::{check, check_report, CheckOptions, KeyReport, Report, Verdict};

/// A recorder of register operations.
pub type RegisterRecorder<V> = Recorder<RegisterOp<V>, RegisterOut<V>>;

/// A history of register operations.
pub type RegisterHistory<V> = History<RegisterOp<V>, RegisterOut<V>>;
