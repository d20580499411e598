//! Recorded histories of concurrent operations, and the [`Recorder`] that test workloads
//! use to build them.
//!
//! # The recording contract
//!
//! Every client of a test workload is a *logical process* with a numeric id. A process has at
//! most one operation in flight: it calls [`Recorder::invoke`] just **before** sending the
//! request and then completes the returned [`OpId`] exactly once, just **after** the response
//! arrived:
//!
//! * [`Recorder::ok`] — the service answered; the answer (including an error answer such as
//!   `BadVersion` or `NoNode`, which is a legitimate output of the operation) is the output.
//! * [`Recorder::fail`] — the operation **definitely did not take effect** (e.g. the request
//!   was rejected before it was proposed, or the connection could not be established). Failed
//!   operations are dropped from the history.
//! * [`Recorder::info`] — **indeterminate**: a timeout, a lost connection, a leader change
//!   while the request was in flight… The operation may or may not have taken effect, now or
//!   at any later time. It stays in the history with no output and a return time of +∞, so the
//!   checker may place it anywhere after its call, or nowhere.
//!
//! After an indeterminate outcome the process must be **retired**: the workload continues with
//! a fresh process id (see [`Recorder::new_process`]), because the old one still has an
//! operation "in flight" forever. The checker itself only looks at the call/return intervals
//! (process ids are labels for explanations), so reusing the id would not make the check
//! unsound, but it breaks the one-operation-per-process invariant that reports and other
//! checkers rely on.
//!
//! Operations whose [`OpId`] is dropped without being completed, or still pending when
//! [`Recorder::finish`] is called, are recorded as indeterminate.
//!
//! All timestamps come from one monotonic clock (an [`Instant`] taken when the recorder was
//! created), shared by all clones of the recorder, so intervals recorded by different tokio
//! tasks or threads are comparable.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Identifier of a logical client process.
pub type ProcessId = u64;

/// One recorded operation: who called what, what came back, and when.
///
/// Invariants (checked by [`History::from_ops`] and [`History::push`]): `output` is present
/// exactly when `return_ns` is, and `return_ns >= call_ns`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation<I, O> {
    /// The logical process (client) that issued the operation.
    pub process: ProcessId,
    /// The independent object the operation works on (a znode path). Operations on different
    /// keys are checked independently.
    pub key: String,
    /// The operation and its arguments.
    pub input: I,
    /// What the service answered; `None` for an indeterminate operation.
    pub output: Option<O>,
    /// When the request was about to be sent (ns on the shared monotonic clock).
    pub call_ns: u64,
    /// When the response was received; `None` = indeterminate (return at +∞).
    pub return_ns: Option<u64>,
}

impl<I, O> Operation<I, O> {
    /// A completed operation.
    pub fn completed(
        process: ProcessId,
        key: impl Into<String>,
        input: I,
        output: O,
        call_ns: u64,
        return_ns: u64,
    ) -> Self {
        Self {
            process,
            key: key.into(),
            input,
            output: Some(output),
            call_ns,
            return_ns: Some(return_ns),
        }
    }

    /// An indeterminate operation (timeout, lost connection): it may or may not have taken
    /// effect, at any time after `call_ns`.
    pub fn indeterminate(
        process: ProcessId,
        key: impl Into<String>,
        input: I,
        call_ns: u64,
    ) -> Self {
        Self {
            process,
            key: key.into(),
            input,
            output: None,
            call_ns,
            return_ns: None,
        }
    }

    /// True if the operation's outcome is unknown.
    pub fn is_indeterminate(&self) -> bool {
        self.return_ns.is_none()
    }

    fn validate(&self, index: usize) -> Result<(), HistoryError> {
        match (&self.output, self.return_ns) {
            (Some(_), Some(ret)) if ret < self.call_ns => Err(HistoryError::ReturnBeforeCall {
                index,
                call_ns: self.call_ns,
                return_ns: ret,
            }),
            (Some(_), Some(_)) | (None, None) => Ok(()),
            (Some(_), None) => Err(HistoryError::OutputWithoutReturn { index }),
            (None, Some(_)) => Err(HistoryError::ReturnWithoutOutput { index }),
        }
    }
}

/// Why a list of operations is not a well-formed history.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// An operation returned before it was called.
    #[error("operation #{index} returns at {return_ns} ns, before its call at {call_ns} ns")]
    ReturnBeforeCall {
        /// Position in the history.
        index: usize,
        /// Call time.
        call_ns: u64,
        /// Return time.
        return_ns: u64,
    },
    /// An operation has an output but no return time.
    #[error("operation #{index} has an output but no return time")]
    OutputWithoutReturn {
        /// Position in the history.
        index: usize,
    },
    /// An operation has a return time but no output.
    #[error("operation #{index} has a return time but no output")]
    ReturnWithoutOutput {
        /// Position in the history.
        index: usize,
    },
}

/// A well-formed history: completed and indeterminate operations (failed ones are never
/// part of it), in recording order. Operation indices (`#i` in explanations) are positions
/// in [`History::ops`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Operation<I, O>>", into = "Vec<Operation<I, O>>")]
#[serde(bound(
    serialize = "I: Serialize + Clone, O: Serialize + Clone",
    deserialize = "I: Deserialize<'de>, O: Deserialize<'de>"
))]
pub struct History<I, O> {
    ops: Vec<Operation<I, O>>,
}

impl<I, O> Default for History<I, O> {
    fn default() -> Self {
        Self { ops: Vec::new() }
    }
}

impl<I, O> History<I, O> {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a history from operations, checking that each one is well formed.
    pub fn from_ops(ops: Vec<Operation<I, O>>) -> Result<Self, HistoryError> {
        for (index, op) in ops.iter().enumerate() {
            op.validate(index)?;
        }
        Ok(Self { ops })
    }

    /// Appends an operation; returns its index.
    pub fn push(&mut self, op: Operation<I, O>) -> Result<usize, HistoryError> {
        let index = self.ops.len();
        op.validate(index)?;
        self.ops.push(op);
        Ok(index)
    }

    /// The operations, in recording order.
    pub fn ops(&self) -> &[Operation<I, O>] {
        &self.ops
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True if there are no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Number of indeterminate operations.
    pub fn indeterminate_count(&self) -> usize {
        self.ops.iter().filter(|op| op.is_indeterminate()).count()
    }

    /// Indices of the operations of each key, keys in order.
    pub fn partition_by_key(&self) -> BTreeMap<&str, Vec<usize>> {
        let mut keys: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (index, op) in self.ops.iter().enumerate() {
            keys.entry(op.key.as_str()).or_default().push(index);
        }
        keys
    }

    /// The operations, consuming the history.
    pub fn into_ops(self) -> Vec<Operation<I, O>> {
        self.ops
    }
}

impl<I, O> TryFrom<Vec<Operation<I, O>>> for History<I, O> {
    type Error = HistoryError;

    fn try_from(ops: Vec<Operation<I, O>>) -> Result<Self, Self::Error> {
        Self::from_ops(ops)
    }
}

impl<I, O> From<History<I, O>> for Vec<Operation<I, O>> {
    fn from(history: History<I, O>) -> Self {
        history.ops
    }
}

/// Handle of an operation in flight, returned by [`Recorder::invoke`]. It is consumed by
/// exactly one of [`Recorder::ok`], [`Recorder::fail`] or [`Recorder::info`]; dropping it
/// without completing it leaves the operation indeterminate.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "complete the operation with Recorder::ok, fail or info"]
pub struct OpId {
    generation: u64,
    index: usize,
}

enum Outcome<O> {
    Pending,
    Returned(O, u64),
    Failed,
    Indeterminate,
}

struct Slot<I, O> {
    process: ProcessId,
    key: String,
    input: I,
    call_ns: u64,
    outcome: Outcome<O>,
}

struct Inner<I, O> {
    generation: u64,
    slots: Vec<Slot<I, O>>,
}

/// Thread-safe recorder of a concurrent history, shared (by cloning) between the tasks of a
/// test workload. See the [module documentation](self) for the contract.
///
/// ```
/// use baton::check::{Recorder, RegisterOp, RegisterOut};
///
/// let h: Recorder<RegisterOp<u64>, RegisterOut<u64>> = Recorder::new();
/// let p = h.new_process();
/// let id = h.invoke(p, "/r", RegisterOp::Create(1));
/// h.ok(id, RegisterOut::Created);
/// let id = h.invoke(p, "/r", RegisterOp::Write(2));
/// h.info(id); // timed out: retire `p`
/// let p = h.new_process();
/// let id = h.invoke(p, "/r", RegisterOp::Read);
/// h.ok(id, RegisterOut::Read(Some((2, 1))));
/// let history = h.finish();
/// assert_eq!(history.len(), 3);
/// ```
pub struct Recorder<I, O> {
    epoch: Instant,
    inner: Arc<Mutex<Inner<I, O>>>,
    next_process: Arc<AtomicU64>,
}

impl<I, O> Clone for Recorder<I, O> {
    fn clone(&self) -> Self {
        Self {
            epoch: self.epoch,
            inner: Arc::clone(&self.inner),
            next_process: Arc::clone(&self.next_process),
        }
    }
}

impl<I, O> Default for Recorder<I, O> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I, O> Recorder<I, O> {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            inner: Arc::new(Mutex::new(Inner {
                generation: 0,
                slots: Vec::new(),
            })),
            next_process: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Nanoseconds elapsed on the shared monotonic clock.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A process id never handed out before by this recorder (or its clones). Use it for
    /// each new client and to replace a process retired after an indeterminate operation.
    /// Ids chosen by hand must not collide with these (they start at 0).
    pub fn new_process(&self) -> ProcessId {
        self.next_process.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Inner<I, O>> {
        // A panic in another task while holding the lock cannot leave the slots inconsistent
        // (every critical section is a single push or assignment), so poisoning is ignored.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the call of `input` on `key` by `process`; call it just before sending the
    /// request.
    pub fn invoke(&self, process: ProcessId, key: impl Into<String>, input: I) -> OpId {
        let key = key.into();
        let mut inner = self.lock();
        // Read the clock under the lock so that the slots are in call-time order.
        let call_ns = self.now_ns();
        let index = inner.slots.len();
        inner.slots.push(Slot {
            process,
            key,
            input,
            call_ns,
            outcome: Outcome::Pending,
        });
        OpId {
            generation: inner.generation,
            index,
        }
    }

    fn complete(&self, id: OpId, outcome: impl FnOnce(u64) -> Outcome<O>) {
        let mut inner = self.lock();
        let now = self.now_ns();
        if inner.generation != id.generation {
            // Completed after `finish`: the operation was already recorded as indeterminate.
            return;
        }
        if let Some(slot) = inner.slots.get_mut(id.index) {
            if matches!(slot.outcome, Outcome::Pending) {
                slot.outcome = outcome(now);
            }
        }
    }

    /// The operation completed with `output` (which may be an error answer of the service,
    /// such as `BadVersion`); call it just after receiving the response.
    pub fn ok(&self, id: OpId, output: O) {
        self.complete(id, |now| Outcome::Returned(output, now));
    }

    /// The operation definitely did not take effect; it is dropped from the history.
    pub fn fail(&self, id: OpId) {
        self.complete(id, |_| Outcome::Failed);
    }

    /// The outcome is unknown (timeout, connection lost): the operation stays in the history
    /// with return time +∞. The process must be retired afterwards.
    pub fn info(&self, id: OpId) {
        self.complete(id, |_| Outcome::Indeterminate);
    }

    /// Takes the history recorded so far. Operations still pending become indeterminate;
    /// completing them later has no effect. The recorder can be reused for a new history.
    pub fn finish(&self) -> History<I, O> {
        let slots = {
            let mut inner = self.lock();
            inner.generation = inner.generation.wrapping_add(1);
            std::mem::take(&mut inner.slots)
        };
        let ops = slots
            .into_iter()
            .filter_map(|slot| {
                let (output, return_ns) = match slot.outcome {
                    Outcome::Failed => return None,
                    Outcome::Returned(output, ret) => (Some(output), Some(ret.max(slot.call_ns))),
                    Outcome::Pending | Outcome::Indeterminate => (None, None),
                };
                Some(Operation {
                    process: slot.process,
                    key: slot.key,
                    input: slot.input,
                    output,
                    call_ns: slot.call_ns,
                    return_ns,
                })
            })
            .collect();
        // Every operation is well formed by construction (return >= call, output iff return).
        History { ops }
    }
}
