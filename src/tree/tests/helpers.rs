//! Helpers shared by the state machine tests: fixed sessions and times, request builders, one-op
//! wrappers that apply at a zxid, state readers, and the invariant check every test can call.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::error::{BatonError, Reason};
use crate::tree::path;
use crate::tree::state::{Applied, Node, State, MAX_TTL_MS};
use crate::tree::types::*;

pub(super) const ALL_MODES: [CreateMode; 7] = [
    CreateMode::Persistent,
    CreateMode::Ephemeral,
    CreateMode::PersistentSequential,
    CreateMode::EphemeralSequential,
    CreateMode::Container,
    CreateMode::PersistentWithTtl,
    CreateMode::PersistentSequentialWithTtl,
];

/// Session every test opens first (see [`fresh`]).
pub(super) const S1: SessionId = 0x51;
/// A second session.
pub(super) const S2: SessionId = 0x52;
/// A session that is never opened.
pub(super) const UNKNOWN_SESSION: SessionId = 0xdead;
/// TTL used by TTL nodes unless a test says otherwise.
pub(super) const TTL: i64 = 5_000;

/// Proposer time of the entry at `zxid` in these tests.
pub(super) fn time_of(zxid: Zxid) -> i64 {
    1_000_000 + 1_000 * zxid as i64
}

pub(super) fn secret_of(id: SessionId) -> Bytes {
    Bytes::from(format!("secret-{id}"))
}

pub(super) fn cmd(time_ms: i64, requests: Vec<Request>) -> Command {
    Command { time_ms, requests }
}

/// Applies `requests` as one entry at `zxid`, time `time_of(zxid)`.
pub(super) fn apply(st: &mut State, zxid: Zxid, requests: Vec<Request>) -> Applied {
    st.apply(zxid, &cmd(time_of(zxid), requests))
}

pub(super) fn single(op: Op) -> Request {
    Request::Multi {
        ops: vec![op],
        single: true,
        caller: None,
    }
}

pub(super) fn multi(ops: Vec<Op>) -> Request {
    Request::Multi {
        ops,
        single: false,
        caller: None,
    }
}

/// A create op with the session and TTL a mode needs (`S1` for ephemerals, `TTL` for TTLs).
pub(super) fn create_op(path: &str, mode: CreateMode) -> Op {
    create_op_full(
        path,
        b"",
        mode,
        if mode.is_ephemeral() { S1 } else { 0 },
        if mode.is_ttl() { TTL } else { 0 },
    )
}

pub(super) fn create_op_full(
    path: &str,
    data: &[u8],
    mode: CreateMode,
    session_id: SessionId,
    ttl_ms: i64,
) -> Op {
    Op::Create {
        path: path.to_string(),
        data: Bytes::copy_from_slice(data),
        mode,
        session_id,
        ttl_ms,
        acl: Vec::new(),
    }
}

pub(super) fn delete_op(path: &str, version: i32) -> Op {
    Op::Delete {
        path: path.to_string(),
        version,
    }
}

pub(super) fn set_op(path: &str, data: &[u8], version: i32) -> Op {
    Op::SetData {
        path: path.to_string(),
        data: Bytes::copy_from_slice(data),
        version,
    }
}

pub(super) fn check_op(path: &str, version: i32) -> Op {
    Op::Check {
        path: path.to_string(),
        version,
    }
}

/// The result of a request that is a `Multi`.
pub(super) fn multi_result(r: &RequestResult) -> Result<Vec<OpOutcome>, MultiFailure> {
    match r {
        RequestResult::Multi(r) => r.clone(),
        other => panic!("expected a Multi result, got {other:?}"),
    }
}

/// The result of a session request or barrier.
pub(super) fn done_result(r: &RequestResult) -> Result<(), BatonError> {
    match r {
        RequestResult::Done(r) => r.clone(),
        other => panic!("expected a Done result, got {other:?}"),
    }
}

/// Applies a Multi of `ops` alone at `zxid`.
pub(super) fn run_multi(
    st: &mut State,
    zxid: Zxid,
    ops: Vec<Op>,
) -> Result<Vec<OpOutcome>, MultiFailure> {
    let applied = apply(st, zxid, vec![multi(ops)]);
    assert_eq!(applied.results.len(), 1);
    multi_result(&applied.results[0])
}

/// Applies one op alone at `zxid`; a failure is reported as the op's error.
pub(super) fn run_op(st: &mut State, zxid: Zxid, op: Op) -> Result<OpOutcome, BatonError> {
    let applied = apply(st, zxid, vec![single(op)]);
    match multi_result(&applied.results[0]) {
        Ok(mut outcomes) => {
            assert_eq!(outcomes.len(), 1);
            Ok(outcomes.remove(0))
        }
        Err(f) => {
            assert_eq!(f.index, 0);
            assert!(f.before.is_empty());
            Err(f.error)
        }
    }
}

/// Creates a node (empty data, `S1` for ephemerals, `TTL` for TTLs); returns its final path.
pub(super) fn create(
    st: &mut State,
    zxid: Zxid,
    path: &str,
    mode: CreateMode,
) -> Result<String, BatonError> {
    run_op(st, zxid, create_op(path, mode)).map(|o| match o {
        OpOutcome::Create { path, .. } => path,
        other => panic!("expected a Create outcome, got {other:?}"),
    })
}

pub(super) fn create_full(
    st: &mut State,
    zxid: Zxid,
    path: &str,
    data: &[u8],
    mode: CreateMode,
    session_id: SessionId,
    ttl_ms: i64,
) -> Result<(String, Stat), BatonError> {
    run_op(
        st,
        zxid,
        create_op_full(path, data, mode, session_id, ttl_ms),
    )
    .map(|o| match o {
        OpOutcome::Create { path, stat } => (path, stat),
        other => panic!("expected a Create outcome, got {other:?}"),
    })
}

pub(super) fn set(
    st: &mut State,
    zxid: Zxid,
    path: &str,
    data: &[u8],
    version: i32,
) -> Result<Stat, BatonError> {
    run_op(st, zxid, set_op(path, data, version)).map(|o| match o {
        OpOutcome::SetData { stat } => stat,
        other => panic!("expected a SetData outcome, got {other:?}"),
    })
}

pub(super) fn delete(
    st: &mut State,
    zxid: Zxid,
    path: &str,
    version: i32,
) -> Result<(), BatonError> {
    run_op(st, zxid, delete_op(path, version)).map(|o| assert_eq!(o, OpOutcome::Delete))
}

pub(super) fn check(
    st: &mut State,
    zxid: Zxid,
    path: &str,
    version: i32,
) -> Result<(), BatonError> {
    run_op(st, zxid, check_op(path, version)).map(|o| assert_eq!(o, OpOutcome::Check))
}

pub(super) fn open_session(st: &mut State, zxid: Zxid, id: SessionId) -> Result<(), BatonError> {
    let a = apply(
        st,
        zxid,
        vec![Request::OpenSession {
            session_id: id,
            secret: secret_of(id),
            timeout_ms: 10_000,
        }],
    );
    done_result(&a.results[0])
}

pub(super) fn close_session(
    st: &mut State,
    zxid: Zxid,
    id: SessionId,
    secret: Bytes,
) -> (Result<(), BatonError>, Applied) {
    let a = apply(
        st,
        zxid,
        vec![Request::CloseSession {
            session_id: id,
            secret,
        }],
    );
    (done_result(&a.results[0]), a)
}

/// A state with session `S1` opened at zxid 1. Tests continue from zxid 2.
pub(super) fn fresh() -> State {
    let mut st = State::new();
    open_session(&mut st, 1, S1).unwrap();
    st
}

pub(super) fn stat(st: &State, path: &str) -> Stat {
    st.get(path)
        .unwrap_or_else(|| panic!("{path} should exist"))
        .stat
        .clone()
}

pub(super) fn node(st: &State, path: &str) -> Node {
    st.get(path)
        .unwrap_or_else(|| panic!("{path} should exist"))
        .clone()
}

pub(super) fn exists(st: &State, path: &str) -> bool {
    st.get(path).is_some()
}

pub(super) fn children(st: &State, path: &str) -> Vec<String> {
    st.get(path)
        .unwrap_or_else(|| panic!("{path} should exist"))
        .children
        .iter()
        .cloned()
        .collect()
}

pub(super) fn ev(zxid: Zxid, kind: EventType, path: &str) -> Event {
    Event {
        zxid,
        kind,
        path: path.to_string(),
        acl: Default::default(),
    }
}

pub(super) fn reason<T: std::fmt::Debug>(r: Result<T, BatonError>) -> Reason {
    r.expect_err("expected an error").reason()
}

/// Asserts that `st` equals `before` in everything but the clock and the applied index (every
/// entry moves those, even one whose requests all failed).
pub(super) fn assert_unchanged(st: &State, before: &State) {
    let mut expected = before.clone();
    expected.last_time_ms = st.last_time_ms;
    expected.applied_index = st.applied_index;
    assert_eq!(st, &expected, "the state changed");
}

pub(super) fn ephemerals_of(st: &State, id: SessionId) -> Vec<String> {
    st.session(id)
        .unwrap_or_else(|| panic!("session {id:#x} should exist"))
        .ephemerals
        .iter()
        .cloned()
        .collect()
}

/// Checks the invariants that tie the indexes of a state together.
pub(super) fn assert_consistent(st: &State) {
    let nodes: BTreeMap<&String, &Node> = st.nodes().collect();
    assert!(
        nodes.contains_key(&"/".to_string()),
        "the root always exists"
    );
    for (p, n) in &nodes {
        assert_eq!(
            n.stat.num_children as usize,
            n.children.len(),
            "num_children of {p}"
        );
        assert_eq!(
            n.stat.data_length as usize,
            n.data.len(),
            "data_length of {p}"
        );
        assert_eq!(n.stat.aversion, 0, "aversion of {p}");
        for c in &n.children {
            assert!(
                nodes.contains_key(&path::join(p, c)),
                "child {c} of {p} exists"
            );
        }
        if let Some(parent) = path::parent(p) {
            let pn = nodes
                .get(&parent.to_string())
                .unwrap_or_else(|| panic!("parent of {p}"));
            assert!(
                pn.children.contains(path::name(p)),
                "{p} is listed in its parent"
            );
            assert_eq!(pn.stat.ephemeral_owner, 0, "{p} has an ephemeral parent");
        }
        if n.stat.mode.is_ephemeral() {
            assert!(n.children.is_empty(), "ephemeral {p} has children");
            let s = st
                .session(n.stat.ephemeral_owner)
                .unwrap_or_else(|| panic!("owner of ephemeral {p} is live"));
            assert!(s.ephemerals.contains(*p), "{p} indexed under its session");
        } else {
            assert_eq!(n.stat.ephemeral_owner, 0, "non-ephemeral {p} has no owner");
        }
        if n.stat.mode.is_ttl() {
            assert!((1..MAX_TTL_MS).contains(&n.stat.ttl_ms), "ttl of {p}");
        } else {
            assert_eq!(n.stat.ttl_ms, 0, "non-TTL {p} has ttl 0");
        }
        // cversion = creations + deletions = 2 × creations − children.
        assert_eq!(
            n.stat.cversion,
            2 * n.seq - n.stat.num_children,
            "cversion of {p} is creations + deletions"
        );
    }
    for s in st.sessions() {
        for p in &s.ephemerals {
            let n = nodes
                .get(p)
                .unwrap_or_else(|| panic!("indexed ephemeral {p} exists"));
            assert_eq!(n.stat.ephemeral_owner, s.session.id);
        }
    }
}

/// A state with some history: nodes, data, a sequence counter, an ephemeral, a TTL node.
pub(super) fn busy_state() -> State {
    let mut st = fresh();
    create(&mut st, 2, "/a", CreateMode::Persistent).unwrap();
    create(&mut st, 3, "/a/x-", CreateMode::PersistentSequential).unwrap();
    create(&mut st, 4, "/a/b", CreateMode::Persistent).unwrap();
    set(&mut st, 5, "/a/b", b"old", -1).unwrap();
    create(&mut st, 6, "/a/e", CreateMode::Ephemeral).unwrap();
    create(&mut st, 7, "/a/t", CreateMode::PersistentWithTtl).unwrap();
    create(&mut st, 8, "/c", CreateMode::Container).unwrap();
    create(&mut st, 9, "/c/only", CreateMode::Persistent).unwrap();
    assert_consistent(&st);
    st
}

pub(super) fn export(st: &State) -> (Vec<(String, Node)>, Vec<Session>) {
    (
        st.nodes().map(|(p, n)| (p.clone(), n.clone())).collect(),
        st.sessions().map(|s| s.session.clone()).collect(),
    )
}
