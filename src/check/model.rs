//! Sequential specifications ("models") that histories are checked against.

use std::fmt::Debug;
use std::hash::Hash;

use serde::{Deserialize, Serialize};

/// A sequential specification of one key's object.
///
/// The checker explores orders of operations and asks the model, for each candidate, whether
/// the recorded output is possible in the current state. States are memoised together with the
/// set of operations already placed, so they must be cheap to clone, hash and compare.
///
/// Deterministic models are easiest to write as a single `apply(state, op) -> (state, out)`
/// function, with [`Model::step`] comparing the computed output against the recorded one and
/// [`Model::step_indeterminate`] keeping only the state (this is what [`Register`] does). A
/// model whose operations may have several outcomes can be lifted to a deterministic one over
/// *sets* of states (porcupine's `NondeterministicModel`), with `State = BTreeSet<S>`.
pub trait Model {
    /// The object's state.
    type State: Clone + Eq + Hash + Debug;
    /// An operation with its arguments.
    type Op: Debug;
    /// An operation's output as observed by the client.
    type Out: Debug;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// The state after `op` returned `out` in `state`, or `None` if `out` is impossible there.
    fn step(&self, state: &Self::State, op: &Self::Op, out: &Self::Out) -> Option<Self::State>;

    /// The state after `op` took effect in `state` when its output is unknown (an
    /// indeterminate operation), or `None` if it cannot take effect there. The checker also
    /// considers the operation never taking effect, so this only describes the case where it
    /// did.
    fn step_indeterminate(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;

    /// True if `op` never changes the state (a read). Indeterminate read-only operations
    /// constrain nothing and are dropped before the search.
    fn is_read_only(&self, _op: &Self::Op) -> bool {
        false
    }
}

/// A znode version, as in ZooKeeper (`-1` in an expected version means "any").
pub type Version = i32;

/// An operation on a ZooKeeper-style register: one znode's data and data version.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RegisterOp<V> {
    /// GetData. Outputs [`RegisterOut::Read`].
    Read,
    /// SetData with version -1. Outputs [`RegisterOut::Written`] or [`RegisterOut::NoNode`].
    Write(V),
    /// SetData with an expected version (`-1` = any, like [`RegisterOp::Write`]). Outputs
    /// [`RegisterOut::Written`], [`RegisterOut::BadVersion`] or [`RegisterOut::NoNode`].
    Cas {
        /// The version the node must have.
        expected_version: Version,
        /// The new data.
        value: V,
    },
    /// Create (persistent, non-sequential); the new node has version 0. Outputs
    /// [`RegisterOut::Created`] or [`RegisterOut::NodeExists`].
    Create(V),
    /// Delete with version -1. Outputs [`RegisterOut::Deleted`] or [`RegisterOut::NoNode`].
    Delete,
}

/// The output of a [`RegisterOp`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RegisterOut<V> {
    /// Data and version read; `None` if the node does not exist.
    Read(Option<(V, Version)>),
    /// The data was set; the node's new version.
    Written(Version),
    /// A versioned SetData found another version.
    BadVersion,
    /// The node does not exist.
    NoNode,
    /// The node already exists.
    NodeExists,
    /// The node was created (with version 0).
    Created,
    /// The node was deleted.
    Deleted,
}

/// A ZooKeeper-style register per key: the state is the node's `(data, version)`, or `None`
/// while the node is absent. Versions start at 0 on create and increase by one (wrapping, as
/// in the tree) on every successful SetData; a re-created node starts again at 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Register<V> {
    initial: Option<(V, Version)>,
}

impl<V> Default for Register<V> {
    fn default() -> Self {
        Self::absent()
    }
}

impl<V> Register<V> {
    /// Every key starts absent.
    pub fn absent() -> Self {
        Self { initial: None }
    }

    /// Every key starts with `value` at `version` (e.g. nodes created before the workload).
    pub fn with_initial(value: V, version: Version) -> Self {
        Self {
            initial: Some((value, version)),
        }
    }
}

impl<V: Clone + Eq + Hash + Debug> Register<V> {
    /// The sequential specification: the next state and the output of `op` in `state`.
    pub fn apply(
        state: &Option<(V, Version)>,
        op: &RegisterOp<V>,
    ) -> (Option<(V, Version)>, RegisterOut<V>) {
        match (op, state) {
            (RegisterOp::Read, _) => (state.clone(), RegisterOut::Read(state.clone())),
            (RegisterOp::Write(value), Some((_, version))) => {
                let version = version.wrapping_add(1);
                (
                    Some((value.clone(), version)),
                    RegisterOut::Written(version),
                )
            }
            (
                RegisterOp::Cas {
                    expected_version,
                    value,
                },
                Some((_, version)),
            ) => {
                if *expected_version == -1 || expected_version == version {
                    let version = version.wrapping_add(1);
                    (
                        Some((value.clone(), version)),
                        RegisterOut::Written(version),
                    )
                } else {
                    (state.clone(), RegisterOut::BadVersion)
                }
            }
            (RegisterOp::Write(_) | RegisterOp::Cas { .. } | RegisterOp::Delete, None) => {
                (None, RegisterOut::NoNode)
            }
            (RegisterOp::Create(value), None) => (Some((value.clone(), 0)), RegisterOut::Created),
            (RegisterOp::Create(_), Some(_)) => (state.clone(), RegisterOut::NodeExists),
            (RegisterOp::Delete, Some(_)) => (None, RegisterOut::Deleted),
        }
    }
}

impl<V: Clone + Eq + Hash + Debug> Model for Register<V> {
    type State = Option<(V, Version)>;
    type Op = RegisterOp<V>;
    type Out = RegisterOut<V>;

    fn init(&self) -> Self::State {
        self.initial.clone()
    }

    fn step(&self, state: &Self::State, op: &Self::Op, out: &Self::Out) -> Option<Self::State> {
        // Reads are the most frequent step; avoid building the output.
        if let (RegisterOp::Read, RegisterOut::Read(seen)) = (op, out) {
            return (seen == state).then(|| state.clone());
        }
        let (next, expected) = Self::apply(state, op);
        (expected == *out).then_some(next)
    }

    fn step_indeterminate(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State> {
        Some(Self::apply(state, op).0)
    }

    fn is_read_only(&self, op: &Self::Op) -> bool {
        matches!(op, RegisterOp::Read)
    }
}
