//! Specification tests for the deterministic state machine (`State::apply` and friends).
//!
//! Each test states one rule of the data model (DESIGN.md §2; ZooKeeper 3.9 is the reference).
//! Unless a test says otherwise, the entry at zxid `z` is applied with the proposer time
//! `time_of(z)`, so times and zxids can be predicted from each other.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::path::{self, PathLimits};
use super::state::{Applied, Node, State, MAX_TTL_MS};
use super::types::*;
use crate::error::{BatonError, Reason};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const ALL_MODES: [CreateMode; 7] = [
    CreateMode::Persistent,
    CreateMode::Ephemeral,
    CreateMode::PersistentSequential,
    CreateMode::EphemeralSequential,
    CreateMode::Container,
    CreateMode::PersistentWithTtl,
    CreateMode::PersistentSequentialWithTtl,
];

/// Session every test opens first (see [`fresh`]).
const S1: SessionId = 0x51;
/// A second session.
const S2: SessionId = 0x52;
/// A session that is never opened.
const UNKNOWN_SESSION: SessionId = 0xdead;
/// TTL used by TTL nodes unless a test says otherwise.
const TTL: i64 = 5_000;

/// Proposer time of the entry at `zxid` in these tests.
fn time_of(zxid: Zxid) -> i64 {
    1_000_000 + 1_000 * zxid as i64
}

fn secret_of(id: SessionId) -> Bytes {
    Bytes::from(format!("secret-{id}"))
}

fn cmd(time_ms: i64, requests: Vec<Request>) -> Command {
    Command { time_ms, requests }
}

/// Applies `requests` as one entry at `zxid`, time `time_of(zxid)`.
fn apply(st: &mut State, zxid: Zxid, requests: Vec<Request>) -> Applied {
    st.apply(zxid, &cmd(time_of(zxid), requests))
}

fn single(op: Op) -> Request {
    Request::Multi {
        ops: vec![op],
        single: true,
        caller: None,
    }
}

fn multi(ops: Vec<Op>) -> Request {
    Request::Multi {
        ops,
        single: false,
        caller: None,
    }
}

/// A create op with the session and TTL a mode needs (`S1` for ephemerals, `TTL` for TTLs).
fn create_op(path: &str, mode: CreateMode) -> Op {
    create_op_full(
        path,
        b"",
        mode,
        if mode.is_ephemeral() { S1 } else { 0 },
        if mode.is_ttl() { TTL } else { 0 },
    )
}

fn create_op_full(
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

fn delete_op(path: &str, version: i32) -> Op {
    Op::Delete {
        path: path.to_string(),
        version,
    }
}

fn set_op(path: &str, data: &[u8], version: i32) -> Op {
    Op::SetData {
        path: path.to_string(),
        data: Bytes::copy_from_slice(data),
        version,
    }
}

fn check_op(path: &str, version: i32) -> Op {
    Op::Check {
        path: path.to_string(),
        version,
    }
}

/// The result of a request that is a `Multi`.
fn multi_result(r: &RequestResult) -> Result<Vec<OpOutcome>, MultiFailure> {
    match r {
        RequestResult::Multi(r) => r.clone(),
        other => panic!("expected a Multi result, got {other:?}"),
    }
}

/// The result of a session request or barrier.
fn done_result(r: &RequestResult) -> Result<(), BatonError> {
    match r {
        RequestResult::Done(r) => r.clone(),
        other => panic!("expected a Done result, got {other:?}"),
    }
}

/// Applies a Multi of `ops` alone at `zxid`.
fn run_multi(st: &mut State, zxid: Zxid, ops: Vec<Op>) -> Result<Vec<OpOutcome>, MultiFailure> {
    let applied = apply(st, zxid, vec![multi(ops)]);
    assert_eq!(applied.results.len(), 1);
    multi_result(&applied.results[0])
}

/// Applies one op alone at `zxid`; a failure is reported as the op's error.
fn run_op(st: &mut State, zxid: Zxid, op: Op) -> Result<OpOutcome, BatonError> {
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
fn create(st: &mut State, zxid: Zxid, path: &str, mode: CreateMode) -> Result<String, BatonError> {
    run_op(st, zxid, create_op(path, mode)).map(|o| match o {
        OpOutcome::Create { path, .. } => path,
        other => panic!("expected a Create outcome, got {other:?}"),
    })
}

fn create_full(
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

fn set(
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

fn delete(st: &mut State, zxid: Zxid, path: &str, version: i32) -> Result<(), BatonError> {
    run_op(st, zxid, delete_op(path, version)).map(|o| assert_eq!(o, OpOutcome::Delete))
}

fn check(st: &mut State, zxid: Zxid, path: &str, version: i32) -> Result<(), BatonError> {
    run_op(st, zxid, check_op(path, version)).map(|o| assert_eq!(o, OpOutcome::Check))
}

fn open_session(st: &mut State, zxid: Zxid, id: SessionId) -> Result<(), BatonError> {
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

fn close_session(
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
fn fresh() -> State {
    let mut st = State::new();
    open_session(&mut st, 1, S1).unwrap();
    st
}

fn stat(st: &State, path: &str) -> Stat {
    st.get(path)
        .unwrap_or_else(|| panic!("{path} should exist"))
        .stat
        .clone()
}

fn node(st: &State, path: &str) -> Node {
    st.get(path)
        .unwrap_or_else(|| panic!("{path} should exist"))
        .clone()
}

fn exists(st: &State, path: &str) -> bool {
    st.get(path).is_some()
}

fn children(st: &State, path: &str) -> Vec<String> {
    st.get(path)
        .unwrap_or_else(|| panic!("{path} should exist"))
        .children
        .iter()
        .cloned()
        .collect()
}

fn ev(zxid: Zxid, kind: EventType, path: &str) -> Event {
    Event {
        zxid,
        kind,
        path: path.to_string(),
        acl: Default::default(),
    }
}

fn reason<T: std::fmt::Debug>(r: Result<T, BatonError>) -> Reason {
    r.expect_err("expected an error").reason()
}

/// Asserts that `st` equals `before` in everything but the clock and the applied index (every
/// entry moves those, even one whose requests all failed).
fn assert_unchanged(st: &State, before: &State) {
    let mut expected = before.clone();
    expected.last_time_ms = st.last_time_ms;
    expected.applied_index = st.applied_index;
    assert_eq!(st, &expected, "the state changed");
}

fn ephemerals_of(st: &State, id: SessionId) -> Vec<String> {
    st.session(id)
        .unwrap_or_else(|| panic!("session {id:#x} should exist"))
        .ephemerals
        .iter()
        .cloned()
        .collect()
}

/// Checks the invariants that tie the indexes of a state together.
fn assert_consistent(st: &State) {
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

// ---------------------------------------------------------------------------------------------
// Create modes
// ---------------------------------------------------------------------------------------------

#[test]
fn new_state_is_just_the_root() {
    let st = State::new();
    assert_eq!(st.node_count(), 1);
    assert_eq!(stat(&st, "/"), Stat::default());
    assert!(children(&st, "/").is_empty());
    assert_eq!(st.session_count(), 0);
    assert_eq!(st.last_zxid, 0);
}

#[test]
fn create_mode_wire_numbers_and_predicates() {
    for (i, m) in ALL_MODES.iter().enumerate() {
        assert_eq!(m.as_i32(), i as i32);
        assert_eq!(CreateMode::from_i32(i as i32), Some(*m));
    }
    assert_eq!(CreateMode::from_i32(7), None);
    assert_eq!(CreateMode::from_i32(-1), None);
    let eph: Vec<_> = ALL_MODES.iter().filter(|m| m.is_ephemeral()).collect();
    let seq: Vec<_> = ALL_MODES.iter().filter(|m| m.is_sequential()).collect();
    let ttl: Vec<_> = ALL_MODES.iter().filter(|m| m.is_ttl()).collect();
    let con: Vec<_> = ALL_MODES.iter().filter(|m| m.is_container()).collect();
    assert_eq!(
        eph,
        [&CreateMode::Ephemeral, &CreateMode::EphemeralSequential]
    );
    assert_eq!(
        seq,
        [
            &CreateMode::PersistentSequential,
            &CreateMode::EphemeralSequential,
            &CreateMode::PersistentSequentialWithTtl
        ]
    );
    assert_eq!(
        ttl,
        [
            &CreateMode::PersistentWithTtl,
            &CreateMode::PersistentSequentialWithTtl
        ]
    );
    assert_eq!(con, [&CreateMode::Container]);
}

#[test]
fn every_mode_creates_a_node_with_its_mode_and_data() {
    for mode in ALL_MODES {
        let mut st = fresh();
        let session = if mode.is_ephemeral() { S1 } else { 0 };
        let ttl = if mode.is_ttl() { TTL } else { 0 };
        let (p, s) = create_full(&mut st, 2, "/n", b"hello", mode, session, ttl).unwrap();
        let expected = if mode.is_sequential() {
            "/n0000000000"
        } else {
            "/n"
        };
        assert_eq!(p, expected, "{mode:?}");
        let n = node(&st, &p);
        assert_eq!(n.data, Bytes::from_static(b"hello"), "{mode:?}");
        assert_eq!(n.stat, s, "{mode:?}: the outcome carries the stored stat");
        assert_eq!(s.mode, mode);
        assert_eq!(s.ttl_ms, ttl, "{mode:?}");
        assert_eq!(children(&st, "/"), [p.trim_start_matches('/')], "{mode:?}");
        assert_consistent(&st);
    }
}

#[test]
fn ephemeral_nodes_are_owned_by_their_session() {
    let mut st = fresh();
    open_session(&mut st, 2, S2).unwrap();
    let (p1, s1) = create_full(&mut st, 3, "/e", b"", CreateMode::Ephemeral, S1, 0).unwrap();
    let (p2, s2) = create_full(
        &mut st,
        4,
        "/q-",
        b"",
        CreateMode::EphemeralSequential,
        S2,
        0,
    )
    .unwrap();
    assert_eq!(s1.ephemeral_owner, S1);
    assert_eq!(s2.ephemeral_owner, S2);
    assert_eq!(p2, "/q-0000000001");
    assert_eq!(ephemerals_of(&st, S1), [p1]);
    assert_eq!(ephemerals_of(&st, S2), [p2]);
}

#[test]
fn non_ephemeral_modes_have_no_owner_even_if_a_session_is_given() {
    for mode in ALL_MODES.into_iter().filter(|m| !m.is_ephemeral()) {
        let mut st = fresh();
        let ttl = if mode.is_ttl() { TTL } else { 0 };
        let (p, s) = create_full(&mut st, 2, "/n", b"", mode, S1, ttl).unwrap();
        assert_eq!(s.ephemeral_owner, 0, "{mode:?}");
        assert_eq!(stat(&st, &p).ephemeral_owner, 0, "{mode:?}");
        assert!(ephemerals_of(&st, S1).is_empty(), "{mode:?}");
    }
}

#[test]
fn container_and_ttl_nodes_have_ephemeral_owner_zero() {
    let mut st = fresh();
    for (i, mode) in [
        CreateMode::Container,
        CreateMode::PersistentWithTtl,
        CreateMode::PersistentSequentialWithTtl,
    ]
    .into_iter()
    .enumerate()
    {
        let p = create(&mut st, 2 + i as u64, &format!("/n{i}"), mode).unwrap();
        assert_eq!(stat(&st, &p).ephemeral_owner, 0, "{mode:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Sequential names
// ---------------------------------------------------------------------------------------------

#[test]
fn first_sequential_child_gets_suffix_zero() {
    let mut st = fresh();
    create(&mut st, 2, "/a", CreateMode::Persistent).unwrap();
    assert_eq!(
        create(&mut st, 3, "/a/x-", CreateMode::PersistentSequential).unwrap(),
        "/a/x-0000000000"
    );
    assert_eq!(
        create(&mut st, 4, "/a/x-", CreateMode::PersistentSequential).unwrap(),
        "/a/x-0000000001"
    );
    assert_eq!(
        create(&mut st, 5, "/a/y-", CreateMode::EphemeralSequential).unwrap(),
        "/a/y-0000000002"
    );
    assert_eq!(
        create(&mut st, 6, "/a/z-", CreateMode::PersistentSequentialWithTtl).unwrap(),
        "/a/z-0000000003"
    );
    assert_eq!(node(&st, "/a").seq, 4);
}

#[test]
fn sequential_suffix_counts_every_child_creation_of_the_parent() {
    let mut st = fresh();
    create(&mut st, 2, "/a", CreateMode::Persistent).unwrap();
    create(&mut st, 3, "/a/p", CreateMode::Persistent).unwrap();
    create(&mut st, 4, "/a/c", CreateMode::Container).unwrap();
    assert_eq!(
        create(&mut st, 5, "/a/s-", CreateMode::PersistentSequential).unwrap(),
        "/a/s-0000000002"
    );
}

#[test]
fn sequential_suffix_is_not_advanced_by_deletions() {
    let mut st = fresh();
    create(&mut st, 2, "/a", CreateMode::Persistent).unwrap();
    let first = create(&mut st, 3, "/a/x-", CreateMode::PersistentSequential).unwrap();
    delete(&mut st, 4, &first, -1).unwrap();
    create(&mut st, 5, "/a/p", CreateMode::Persistent).unwrap();
    delete(&mut st, 6, "/a/p", -1).unwrap();
    assert_eq!(
        create(&mut st, 7, "/a/x-", CreateMode::PersistentSequential).unwrap(),
        "/a/x-0000000002"
    );
    // ... while cversion counts the deletions too.
    assert_eq!(stat(&st, "/a").cversion, 5);
}

#[test]
fn sequential_counters_are_per_parent() {
    let mut st = fresh();
    create(&mut st, 2, "/a", CreateMode::Persistent).unwrap();
    create(&mut st, 3, "/b", CreateMode::Persistent).unwrap();
    create(&mut st, 4, "/a/x-", CreateMode::PersistentSequential).unwrap();
    create(&mut st, 5, "/a/x-", CreateMode::PersistentSequential).unwrap();
    assert_eq!(
        create(&mut st, 6, "/b/x-", CreateMode::PersistentSequential).unwrap(),
        "/b/x-0000000000"
    );
    // The root has had two creations (/a and /b).
    assert_eq!(
        create(&mut st, 7, "/r-", CreateMode::PersistentSequential).unwrap(),
        "/r-0000000002"
    );
}

#[test]
fn sequential_prefix_ending_in_slash_names_the_child_by_its_number_alone() {
    let mut st = fresh();
    create(&mut st, 2, "/a", CreateMode::Persistent).unwrap();
    assert_eq!(
        create(&mut st, 3, "/a/", CreateMode::PersistentSequential).unwrap(),
        "/a/0000000000"
    );
    assert_eq!(
        create(&mut st, 4, "/a/", CreateMode::EphemeralSequential).unwrap(),
        "/a/0000000001"
    );
    assert_eq!(children(&st, "/a"), ["0000000000", "0000000001"]);
    assert_eq!(stat(&st, "/a").num_children, 2);
    // Under the root, the prefix is "/" itself.
    assert_eq!(
        create(&mut st, 5, "/", CreateMode::PersistentSequential).unwrap(),
        "/0000000001"
    );
    assert_consistent(&st);
}

#[test]
fn sequential_prefix_ending_in_slash_needs_an_existing_parent() {
    let mut st = fresh();
    let before = st.clone();
    assert_eq!(
        create(&mut st, 2, "/missing/", CreateMode::PersistentSequential),
        Err(BatonError::NoNode("/missing".into()))
    );
    assert_unchanged(&st, &before);
}

#[test]
fn sequential_prefix_is_validated_as_the_final_name() {
    // ZooKeeper validates `prefix + digits`, so a last component of "." or ".." is fine (it
    // becomes ".0000000000"), but an empty component before the suffix is not.
    let mut st = fresh();
    create(&mut st, 2, "/a", CreateMode::Persistent).unwrap();
    assert_eq!(
        create(&mut st, 3, "/a/.", CreateMode::PersistentSequential).unwrap(),
        "/a/.0000000000"
    );
    assert_eq!(
        create(&mut st, 4, "/a/..", CreateMode::PersistentSequential).unwrap(),
        "/a/..0000000001"
    );
    let before = st.clone();
    for bad in ["/a//", "//", "/a/./", "/a/../x-", "a/x-", "", "/a//x-"] {
        assert_eq!(
            reason(create(&mut st, 5, bad, CreateMode::PersistentSequential)),
            Reason::InvalidPath,
            "{bad:?}"
        );
    }
    assert_unchanged(&st, &before);
}

#[test]
fn sequential_create_colliding_with_an_existing_name_is_node_exists_and_advances_nothing() {
    let mut st = fresh();
    create(&mut st, 2, "/a", CreateMode::Persistent).unwrap();
    // /a's counter is 1 after this, so the next sequential name is x-0000000001: taken.
    create(&mut st, 3, "/a/x-0000000001", CreateMode::Persistent).unwrap();
    let before = st.clone();
    assert_eq!(
        create(&mut st, 4, "/a/x-", CreateMode::PersistentSequential),
        Err(BatonError::NodeExists("/a/x-0000000001".into()))
    );
    assert_unchanged(&st, &before);
    assert_eq!(node(&st, "/a").seq, 1);
}

#[test]
fn failed_create_advances_nothing() {
    let mut st = fresh();
    create(&mut st, 2, "/a", CreateMode::Persistent).unwrap();
    create(&mut st, 3, "/a/b", CreateMode::Persistent).unwrap();
    create(&mut st, 4, "/e", CreateMode::Ephemeral).unwrap();
    let before = st.clone();
    let failures = [
        create_op("/a/b", CreateMode::Persistent), // NODE_EXISTS
        create_op("/a/b/c/d", CreateMode::PersistentSequential), // NO_NODE
        create_op("/e/x", CreateMode::Persistent), // NO_CHILDREN_FOR_EPHEMERALS
        create_op_full("/a/t", b"", CreateMode::PersistentWithTtl, 0, 0), // BAD_ARGUMENTS
        create_op_full(
            "/a/e",
            b"",
            CreateMode::EphemeralSequential,
            UNKNOWN_SESSION,
            0,
        ), // SESSION_EXPIRED
        create_op("/a/", CreateMode::Persistent),  // INVALID_PATH
    ];
    for (i, op) in failures.into_iter().enumerate() {
        let a = apply(&mut st, 5 + i as u64, vec![single(op.clone())]);
        assert!(multi_result(&a.results[0]).is_err(), "{op:?} should fail");
        assert!(a.events.is_empty(), "{op:?}");
        assert!(a.touched_nodes.is_empty(), "{op:?}");
        assert_unchanged(&st, &before);
    }
    assert_eq!(
        create(&mut st, 20, "/a/x-", CreateMode::PersistentSequential).unwrap(),
        "/a/x-0000000001"
    );
}

// ---------------------------------------------------------------------------------------------
// TTL arguments
// ---------------------------------------------------------------------------------------------

#[test]
fn ttl_must_be_at_least_one_ms_and_below_two_to_the_forty() {
    for mode in [
        CreateMode::PersistentWithTtl,
        CreateMode::PersistentSequentialWithTtl,
    ] {
        let mut st = fresh();
        for bad in [0, -1, MAX_TTL_MS, MAX_TTL_MS + 1, i64::MIN, i64::MAX] {
            let before = st.clone();
            assert_eq!(
                reason(create_full(&mut st, 2, "/t", b"", mode, 0, bad)),
                Reason::BadArguments,
                "{mode:?} ttl {bad}"
            );
            assert_eq!(st.get("/"), before.get("/"));
            assert_eq!(st.node_count(), 1);
        }
        let (p, s) = create_full(&mut st, 3, "/t1-", b"", mode, 0, 1).unwrap();
        assert_eq!(s.ttl_ms, 1);
        assert_eq!(stat(&st, &p).ttl_ms, 1);
        let (p, s) = create_full(&mut st, 4, "/t2-", b"", mode, 0, MAX_TTL_MS - 1).unwrap();
        assert_eq!(s.ttl_ms, (1 << 40) - 1);
        assert_eq!(stat(&st, &p).ttl_ms, (1 << 40) - 1);
    }
}

#[test]
fn ttl_given_for_a_non_ttl_mode_is_bad_arguments() {
    for mode in ALL_MODES.into_iter().filter(|m| !m.is_ttl()) {
        let mut st = fresh();
        let session = if mode.is_ephemeral() { S1 } else { 0 };
        let before = st.clone();
        assert_eq!(
            reason(create_full(&mut st, 2, "/n", b"", mode, session, 1000)),
            Reason::BadArguments,
            "{mode:?}"
        );
        assert_eq!(
            reason(create_full(&mut st, 3, "/n", b"", mode, session, -1)),
            Reason::BadArguments,
            "{mode:?}"
        );
        assert_unchanged(&st, &before);
    }
}

// ---------------------------------------------------------------------------------------------
// Stat
// ---------------------------------------------------------------------------------------------

#[test]
fn stat_of_a_new_node() {
    let mut st = fresh();
    let (_, s) = create_full(&mut st, 7, "/n", b"abc", CreateMode::Persistent, 0, 0).unwrap();
    assert_eq!(
        s,
        Stat {
            czxid: 7,
            mzxid: 7,
            pzxid: 7,
            ctime: time_of(7),
            mtime: time_of(7),
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: 0,
            data_length: 3,
            num_children: 0,
            mode: CreateMode::Persistent,
            ttl_ms: 0,
        }
    );
    assert_eq!(stat(&st, "/n"), s);
}

#[test]
fn child_creation_updates_parent_pzxid_cversion_and_num_children_only() {
    let mut st = fresh();
    create_full(&mut st, 2, "/p", b"data", CreateMode::Persistent, 0, 0).unwrap();
    let before = stat(&st, "/p");
    create(&mut st, 5, "/p/c", CreateMode::Persistent).unwrap();
    let after = stat(&st, "/p");
    assert_eq!(
        after,
        Stat {
            pzxid: 5,
            cversion: 1,
            num_children: 1,
            ..before.clone()
        }
    );
    // mzxid, mtime and version are data properties: unchanged.
    assert_eq!(after.mzxid, 2);
    assert_eq!(after.mtime, time_of(2));
    assert_eq!(after.version, 0);
}

#[test]
fn child_deletion_updates_parent_pzxid_cversion_and_num_children_only() {
    let mut st = fresh();
    create(&mut st, 2, "/p", CreateMode::Persistent).unwrap();
    create(&mut st, 3, "/p/a", CreateMode::Persistent).unwrap();
    create(&mut st, 4, "/p/b", CreateMode::Persistent).unwrap();
    let before = stat(&st, "/p");
    delete(&mut st, 9, "/p/a", -1).unwrap();
    assert_eq!(
        stat(&st, "/p"),
        Stat {
            pzxid: 9,
            cversion: 3,
            num_children: 1,
            ..before
        }
    );
}

#[test]
fn child_data_change_does_not_touch_the_parent() {
    let mut st = fresh();
    create(&mut st, 2, "/p", CreateMode::Persistent).unwrap();
    create(&mut st, 3, "/p/c", CreateMode::Persistent).unwrap();
    let parent = stat(&st, "/p");
    set(&mut st, 4, "/p/c", b"new", -1).unwrap();
    assert_eq!(stat(&st, "/p"), parent);
    assert_eq!(stat(&st, "/p").pzxid, 3);
}

#[test]
fn set_data_updates_mzxid_mtime_version_and_data_length_only() {
    let mut st = fresh();
    create_full(&mut st, 2, "/n", b"abc", CreateMode::Persistent, 0, 0).unwrap();
    create(&mut st, 3, "/n/c", CreateMode::Persistent).unwrap();
    let before = stat(&st, "/n");
    let returned = set(&mut st, 6, "/n", b"hello world", 0).unwrap();
    let after = stat(&st, "/n");
    assert_eq!(returned, after, "SetData returns the new stat");
    assert_eq!(
        after,
        Stat {
            mzxid: 6,
            mtime: time_of(6),
            version: 1,
            data_length: 11,
            ..before
        }
    );
    assert_eq!(node(&st, "/n").data, Bytes::from_static(b"hello world"));
    set(&mut st, 7, "/n", b"", 1).unwrap();
    assert_eq!(stat(&st, "/n").version, 2);
    assert_eq!(stat(&st, "/n").data_length, 0);
    assert!(node(&st, "/n").data.is_empty());
}

#[test]
fn set_data_with_the_same_bytes_is_still_a_change() {
    let mut st = fresh();
    create_full(&mut st, 2, "/n", b"x", CreateMode::Persistent, 0, 0).unwrap();
    let s = set(&mut st, 3, "/n", b"x", -1).unwrap();
    assert_eq!((s.version, s.mzxid), (1, 3));
}

#[test]
fn cversion_counts_child_creations_plus_deletions() {
    let mut st = fresh();
    create(&mut st, 2, "/p", CreateMode::Persistent).unwrap();
    for (i, c) in ["a", "b", "c"].iter().enumerate() {
        create(
            &mut st,
            3 + i as u64,
            &format!("/p/{c}"),
            CreateMode::Persistent,
        )
        .unwrap();
    }
    delete(&mut st, 6, "/p/a", -1).unwrap();
    delete(&mut st, 7, "/p/b", -1).unwrap();
    let s = stat(&st, "/p");
    assert_eq!(s.cversion, 5);
    assert_eq!(s.num_children, 1);
    assert_eq!(s.cversion, 2 * node(&st, "/p").seq - s.num_children);
}

#[test]
fn aversion_is_always_zero() {
    let mut st = fresh();
    let (_, s) = create_full(&mut st, 2, "/n", b"", CreateMode::Persistent, 0, 0).unwrap();
    assert_eq!(s.aversion, 0);
    let s = set(&mut st, 3, "/n", b"x", -1).unwrap();
    assert_eq!(s.aversion, 0);
    create(&mut st, 4, "/n/c", CreateMode::Persistent).unwrap();
    assert_eq!(stat(&st, "/n").aversion, 0);
}

#[test]
fn times_come_from_the_command() {
    let mut st = fresh();
    st.apply(
        2,
        &cmd(
            5_000_000,
            vec![single(create_op("/n", CreateMode::Persistent))],
        ),
    );
    assert_eq!(
        (stat(&st, "/n").ctime, stat(&st, "/n").mtime),
        (5_000_000, 5_000_000)
    );
    st.apply(3, &cmd(5_000_123, vec![single(set_op("/n", b"x", -1))]));
    assert_eq!(
        (stat(&st, "/n").ctime, stat(&st, "/n").mtime),
        (5_000_000, 5_000_123)
    );
    assert_eq!(st.last_time_ms, 5_000_123);
}

#[test]
fn times_never_go_backwards_in_log_order() {
    let mut st = fresh();
    st.apply(
        2,
        &cmd(
            9_000_000,
            vec![single(create_op("/a", CreateMode::Persistent))],
        ),
    );
    // A later entry proposed with an older clock uses the previous time.
    st.apply(
        3,
        &cmd(
            8_000_000,
            vec![single(create_op("/b", CreateMode::Persistent))],
        ),
    );
    assert_eq!(stat(&st, "/b").ctime, 9_000_000);
    assert_eq!(stat(&st, "/b").mtime, 9_000_000);
    st.apply(4, &cmd(1, vec![single(set_op("/a", b"x", -1))]));
    assert_eq!(stat(&st, "/a").mtime, 9_000_000);
    assert_eq!(st.last_time_ms, 9_000_000);
    // An entry with nothing to change still moves the clock forward.
    st.apply(5, &cmd(9_500_000, vec![Request::Noop]));
    st.apply(
        6,
        &cmd(
            9_100_000,
            vec![single(create_op("/c", CreateMode::Persistent))],
        ),
    );
    assert_eq!(stat(&st, "/c").ctime, 9_500_000);
}

#[test]
fn version_wraps_like_a_java_int() {
    // ZooKeeper's version is an int that overflows; it must never panic.
    let mut st = fresh();
    create(&mut st, 2, "/n", CreateMode::Persistent).unwrap();
    let mut n = node(&st, "/n");
    n.stat.version = i32::MAX;
    let (mut st, _) = State::from_records(
        st.nodes()
            .map(|(p, x)| (p.clone(), if p == "/n" { n.clone() } else { x.clone() })),
        st.sessions().map(|s| s.session.clone()),
        st.last_time_ms,
        st.last_zxid,
    );
    assert_eq!(
        set(&mut st, 3, "/n", b"", i32::MAX).unwrap().version,
        i32::MIN
    );
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[test]
fn create_under_a_missing_parent_is_no_node() {
    let mut st = fresh();
    for mode in ALL_MODES {
        assert_eq!(
            create(&mut st, 2, "/a/b", mode),
            Err(BatonError::NoNode("/a".into())),
            "{mode:?}"
        );
    }
    assert_eq!(
        create(&mut st, 3, "/a/b/c", CreateMode::Persistent),
        Err(BatonError::NoNode("/a/b".into()))
    );
}

#[test]
fn set_delete_and_check_of_a_missing_node_are_no_node() {
    let mut st = fresh();
    assert_eq!(
        set(&mut st, 2, "/x", b"", -1),
        Err(BatonError::NoNode("/x".into()))
    );
    assert_eq!(
        delete(&mut st, 3, "/x", -1),
        Err(BatonError::NoNode("/x".into()))
    );
    assert_eq!(
        check(&mut st, 4, "/x", -1),
        Err(BatonError::NoNode("/x".into()))
    );
    assert_eq!(
        delete(&mut st, 5, "/x", 0),
        Err(BatonError::NoNode("/x".into()))
    );
}

#[test]
fn creating_an_existing_node_is_node_exists() {
    let mut st = fresh();
    create(&mut st, 2, "/a", CreateMode::Persistent).unwrap();
    for mode in ALL_MODES.into_iter().filter(|m| !m.is_sequential()) {
        assert_eq!(
            create(&mut st, 3, "/a", mode),
            Err(BatonError::NodeExists("/a".into())),
            "{mode:?}"
        );
    }
    assert_eq!(stat(&st, "/").cversion, 1);
}

#[test]
fn creating_the_root_is_node_exists() {
    let mut st = fresh();
    assert_eq!(
        create(&mut st, 2, "/", CreateMode::Persistent),
        Err(BatonError::NodeExists("/".into()))
    );
}

#[test]
fn versioned_writes_need_the_current_version() {
    let mut st = fresh();
    create(&mut st, 2, "/n", CreateMode::Persistent).unwrap();
    set(&mut st, 3, "/n", b"1", 0).unwrap();
    let bad = |path: &str, expected| BatonError::BadVersion {
        path: path.into(),
        expected,
        actual: 1,
    };
    assert_eq!(set(&mut st, 4, "/n", b"2", 0), Err(bad("/n", 0)));
    assert_eq!(set(&mut st, 4, "/n", b"2", 2), Err(bad("/n", 2)));
    assert_eq!(check(&mut st, 4, "/n", 0), Err(bad("/n", 0)));
    assert_eq!(delete(&mut st, 4, "/n", 5), Err(bad("/n", 5)));
    assert_eq!(stat(&st, "/n").version, 1);
    assert_eq!(node(&st, "/n").data, Bytes::from_static(b"1"));
    check(&mut st, 5, "/n", 1).unwrap();
    set(&mut st, 6, "/n", b"2", 1).unwrap();
    delete(&mut st, 7, "/n", 2).unwrap();
    assert!(!exists(&st, "/n"));
}

#[test]
fn version_minus_one_matches_any_version() {
    let mut st = fresh();
    create(&mut st, 2, "/n", CreateMode::Persistent).unwrap();
    for z in 3..6 {
        set(&mut st, z, "/n", b"x", -1).unwrap();
    }
    check(&mut st, 6, "/n", -1).unwrap();
    delete(&mut st, 7, "/n", -1).unwrap();
}

#[test]
fn only_minus_one_means_any_version() {
    let mut st = fresh();
    create(&mut st, 2, "/n", CreateMode::Persistent).unwrap();
    for v in [-2, i32::MIN] {
        assert_eq!(reason(set(&mut st, 3, "/n", b"", v)), Reason::BadVersion);
        assert_eq!(reason(check(&mut st, 3, "/n", v)), Reason::BadVersion);
        assert_eq!(reason(delete(&mut st, 3, "/n", v)), Reason::BadVersion);
    }
}

#[test]
fn deleting_a_node_with_children_is_not_empty() {
    let mut st = fresh();
    create(&mut st, 2, "/p", CreateMode::Persistent).unwrap();
    create(&mut st, 3, "/p/c", CreateMode::Persistent).unwrap();
    let before = st.clone();
    assert_eq!(
        delete(&mut st, 4, "/p", -1),
        Err(BatonError::NotEmpty("/p".into()))
    );
    assert_eq!(
        delete(&mut st, 5, "/p", 0),
        Err(BatonError::NotEmpty("/p".into()))
    );
    assert_unchanged(&st, &before);
}

#[test]
fn deleting_a_non_empty_node_with_a_wrong_version_is_bad_version() {
    let mut st = fresh();
    create(&mut st, 2, "/p", CreateMode::Persistent).unwrap();
    create(&mut st, 3, "/p/c", CreateMode::Persistent).unwrap();
    assert_eq!(
        delete(&mut st, 4, "/p", 3),
        Err(BatonError::BadVersion {
            path: "/p".into(),
            expected: 3,
            actual: 0
        })
    );
}

#[test]
fn ephemeral_nodes_cannot_have_children() {
    let mut st = fresh();
    create(&mut st, 2, "/e", CreateMode::Ephemeral).unwrap();
    let before = st.clone();
    for mode in ALL_MODES {
        assert_eq!(
            reason(create(&mut st, 3, "/e/c", mode)),
            Reason::NoChildrenForEphemerals,
            "{mode:?}"
        );
    }
    assert_eq!(
        reason(create(&mut st, 3, "/e/", CreateMode::PersistentSequential)),
        Reason::NoChildrenForEphemerals
    );
    assert_unchanged(&st, &before);
}

#[test]
fn ephemeral_create_with_an_unknown_session_is_session_expired() {
    let mut st = fresh();
    for mode in [CreateMode::Ephemeral, CreateMode::EphemeralSequential] {
        assert_eq!(
            create_full(&mut st, 2, "/e", b"", mode, UNKNOWN_SESSION, 0),
            Err(BatonError::SessionExpired(UNKNOWN_SESSION)),
            "{mode:?}"
        );
        assert_eq!(
            create_full(&mut st, 2, "/e", b"", mode, 0, 0),
            Err(BatonError::SessionExpired(0)),
            "{mode:?}: session 0 is never a session"
        );
    }
    assert_eq!(st.node_count(), 1);
}

#[test]
fn the_root_cannot_be_deleted() {
    let mut st = fresh();
    for v in [-1, 0, 7] {
        assert_eq!(reason(delete(&mut st, 2, "/", v)), Reason::BadArguments);
    }
    assert!(exists(&st, "/"));
    // Even when it is empty: nothing about the root changed.
    assert_eq!(stat(&st, "/"), Stat::default());
}

#[test]
fn the_root_data_can_be_set() {
    let mut st = fresh();
    let s = set(&mut st, 2, "/", b"root", 0).unwrap();
    assert_eq!((s.version, s.mzxid, s.data_length), (1, 2, 4));
}

#[test]
fn invalid_paths_are_refused_by_create() {
    let mut st = fresh();
    for bad in [
        "", "a", "a/b", "/a/", "//", "/a//b", "/./b", "/..", "/a/..", "/a\0b", "/a\u{1}",
    ] {
        for mode in [CreateMode::Persistent, CreateMode::Container] {
            assert!(
                matches!(
                    create(&mut st, 2, bad, mode),
                    Err(BatonError::InvalidPath { .. })
                ),
                "{bad:?} {mode:?}"
            );
        }
    }
    assert_eq!(st.node_count(), 1);
    assert_eq!(stat(&st, "/"), Stat::default());
}

// ---------------------------------------------------------------------------------------------
// Multi
// ---------------------------------------------------------------------------------------------

/// A state with some history: nodes, data, a sequence counter, an ephemeral, a TTL node.
fn busy_state() -> State {
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

#[test]
fn a_failed_multi_changes_nothing() {
    let mut st = busy_state();
    let before = st.clone();
    let a = apply(
        &mut st,
        20,
        vec![multi(vec![
            create_op("/a/new", CreateMode::Persistent),
            create_op("/a/new/deep", CreateMode::Persistent),
            create_op("/a/x-", CreateMode::PersistentSequential),
            create_op("/a/eph-", CreateMode::EphemeralSequential),
            create_op("/a/ttl", CreateMode::PersistentWithTtl),
            set_op("/a/b", b"new", -1),
            delete_op("/a/e", -1),
            delete_op("/a/t", -1),
            delete_op("/c/only", -1), // would reap the container
            set_op("/a", b"parent", 0),
            check_op("/a/b", 99), // fails
        ])],
    );
    let f = multi_result(&a.results[0]).unwrap_err();
    assert_eq!(f.index, 10);
    assert!(a.events.is_empty());
    assert!(a.touched_nodes.is_empty());
    assert!(a.touched_sessions.is_empty());
    assert_unchanged(&st, &before);
    assert_eq!(st.last_zxid, 9);
    // In particular the sequence counter and the TTL and ephemeral indexes are as before.
    assert_eq!(
        create(&mut st, 21, "/a/x-", CreateMode::PersistentSequential).unwrap(),
        "/a/x-0000000004"
    );
    assert_eq!(ephemerals_of(&st, S1), ["/a/e"]);
    assert!(exists(&st, "/c"));
    assert_consistent(&st);
}

#[test]
fn a_failed_multi_leaves_the_ttl_index_as_it_was() {
    let mut st = busy_state();
    let f = run_multi(
        &mut st,
        20,
        vec![
            delete_op("/a/t", -1),
            create_op("/a/t2", CreateMode::PersistentWithTtl),
            check_op("/nope", -1),
        ],
    )
    .unwrap_err();
    assert_eq!(f.index, 2);
    let later = time_of(20) + 10 * TTL;
    assert_eq!(st.expired_ttl_nodes(later, 100), ["/a/t"]);
}

#[test]
fn ops_in_a_multi_see_the_ops_before_them() {
    let mut st = fresh();
    let out = run_multi(
        &mut st,
        2,
        vec![
            create_op("/p", CreateMode::Persistent),
            create_op("/p/c", CreateMode::Persistent),
            set_op("/p/c", b"v1", 0),
            check_op("/p/c", 1),
            set_op("/p/c", b"v2", 1),
            create_op("/p/s-", CreateMode::PersistentSequential),
            create_op("/p/s-", CreateMode::PersistentSequential),
            delete_op("/p/s-0000000001", -1),
            check_op("/p", -1),
        ],
    )
    .unwrap();
    assert_eq!(out.len(), 9);
    assert!(matches!(&out[5], OpOutcome::Create { path, .. } if path == "/p/s-0000000001"));
    assert!(matches!(&out[6], OpOutcome::Create { path, .. } if path == "/p/s-0000000002"));
    let c = stat(&st, "/p/c");
    assert_eq!((c.version, c.czxid, c.mzxid), (2, 2, 2));
    assert_eq!(node(&st, "/p/c").data, Bytes::from_static(b"v2"));
    assert_eq!(children(&st, "/p"), ["c", "s-0000000002"]);
    let p = stat(&st, "/p");
    assert_eq!((p.cversion, p.num_children, p.pzxid), (4, 2, 2));
    assert_consistent(&st);
}

#[test]
fn a_multi_can_delete_and_recreate_a_node() {
    let mut st = fresh();
    create_full(&mut st, 2, "/n", b"old", CreateMode::Persistent, 0, 0).unwrap();
    set(&mut st, 3, "/n", b"older", -1).unwrap();
    run_multi(
        &mut st,
        4,
        vec![
            delete_op("/n", 1),
            create_op_full("/n", b"new", CreateMode::Persistent, 0, 0),
            check_op("/n", 0),
        ],
    )
    .unwrap();
    let s = stat(&st, "/n");
    assert_eq!((s.czxid, s.version, s.data_length), (4, 0, 3));
    assert_eq!(stat(&st, "/").cversion, 3);
}

#[test]
fn a_multi_outcomes_carry_each_ops_result() {
    let mut st = fresh();
    create(&mut st, 2, "/d", CreateMode::Persistent).unwrap();
    let out = run_multi(
        &mut st,
        3,
        vec![
            create_op_full("/n", b"ab", CreateMode::Persistent, 0, 0),
            set_op("/n", b"abc", 0),
            delete_op("/d", 0),
            check_op("/n", 1),
        ],
    )
    .unwrap();
    let created = Stat {
        czxid: 3,
        mzxid: 3,
        pzxid: 3,
        ctime: time_of(3),
        mtime: time_of(3),
        data_length: 2,
        ..Stat::default()
    };
    assert_eq!(
        out,
        [
            OpOutcome::Create {
                path: "/n".into(),
                stat: created.clone()
            },
            OpOutcome::SetData {
                stat: Stat {
                    version: 1,
                    data_length: 3,
                    ..created
                }
            },
            OpOutcome::Delete,
            OpOutcome::Check,
        ]
    );
}

#[test]
fn a_failed_multi_reports_the_failing_index_its_error_and_the_outcomes_before_it() {
    let mut st = fresh();
    let f = run_multi(
        &mut st,
        2,
        vec![
            create_op("/a", CreateMode::Persistent),
            create_op("/a/s-", CreateMode::PersistentSequential),
            check_op("/a", 0),
            create_op("/a", CreateMode::Persistent),
            create_op("/b", CreateMode::Persistent),
        ],
    )
    .unwrap_err();
    assert_eq!(f.index, 3);
    assert_eq!(f.error, BatonError::NodeExists("/a".into()));
    assert_eq!(f.before.len(), 3);
    assert!(matches!(&f.before[0], OpOutcome::Create { path, .. } if path == "/a"));
    // As it would have been had the Multi committed.
    assert!(
        matches!(&f.before[1], OpOutcome::Create { path, stat } if path == "/a/s-0000000000" && stat.czxid == 2)
    );
    assert_eq!(f.before[2], OpOutcome::Check);
    assert!(!exists(&st, "/a"));
    assert!(!exists(&st, "/b"));
}

#[test]
fn a_multi_failing_at_its_first_op_reports_nothing_before() {
    let mut st = fresh();
    let f = run_multi(
        &mut st,
        2,
        vec![delete_op("/x", -1), create_op("/y", CreateMode::Persistent)],
    )
    .unwrap_err();
    assert_eq!(
        f,
        MultiFailure {
            index: 0,
            error: BatonError::NoNode("/x".into()),
            before: vec![],
        }
    );
    assert!(!exists(&st, "/y"));
}

#[test]
fn an_empty_multi_succeeds_and_changes_nothing() {
    let mut st = fresh();
    let before = st.clone();
    assert_eq!(run_multi(&mut st, 2, vec![]), Ok(vec![]));
    assert_unchanged(&st, &before);
}

#[test]
fn a_multi_is_one_zxid() {
    let mut st = fresh();
    let a = apply(
        &mut st,
        42,
        vec![multi(vec![
            create_op("/a", CreateMode::Persistent),
            create_op("/a/b", CreateMode::Persistent),
            set_op("/a", b"x", -1),
        ])],
    );
    assert!(a.events.iter().all(|e| e.zxid == 42));
    assert_eq!(stat(&st, "/a").czxid, 42);
    assert_eq!(stat(&st, "/a").mzxid, 42);
    assert_eq!(stat(&st, "/a/b").czxid, 42);
    assert_eq!(st.last_zxid, 42);
}

#[test]
fn requests_in_one_command_succeed_or_fail_independently() {
    let mut st = fresh();
    let a = apply(
        &mut st,
        2,
        vec![
            single(create_op("/a", CreateMode::Persistent)),
            multi(vec![
                create_op("/b", CreateMode::Persistent),
                delete_op("/nope", -1),
            ]),
            single(create_op("/a", CreateMode::Persistent)),
            single(create_op("/a/c", CreateMode::Persistent)),
            Request::CloseSession {
                session_id: S1,
                secret: Bytes::from_static(b"wrong"),
            },
            Request::Noop,
        ],
    );
    assert_eq!(a.results.len(), 6);
    assert!(multi_result(&a.results[0]).is_ok());
    assert_eq!(multi_result(&a.results[1]).unwrap_err().index, 1);
    assert_eq!(
        multi_result(&a.results[2]).unwrap_err().error,
        BatonError::NodeExists("/a".into())
    );
    assert!(multi_result(&a.results[3]).is_ok());
    assert_eq!(done_result(&a.results[4]), Err(BatonError::AuthFailed(S1)));
    assert_eq!(done_result(&a.results[5]), Ok(()));
    assert!(exists(&st, "/a/c"));
    assert!(!exists(&st, "/b"));
    assert!(st.session(S1).is_some());
    assert_eq!(
        a.events,
        [
            ev(2, EventType::Created, "/a"),
            ev(2, EventType::ChildrenChanged, "/"),
            ev(2, EventType::Created, "/a/c"),
            ev(2, EventType::ChildrenChanged, "/a"),
        ]
    );
    assert_eq!(
        a.touched_nodes,
        BTreeSet::from(["/".to_string(), "/a".into(), "/a/c".into()])
    );
    // Later requests see the effects of earlier ones in the same command.
    assert_eq!(stat(&st, "/").cversion, 1);
}

// ---------------------------------------------------------------------------------------------
// Containers
// ---------------------------------------------------------------------------------------------

#[test]
fn a_container_that_never_had_a_child_stays() {
    let mut st = fresh();
    create(&mut st, 2, "/c", CreateMode::Container).unwrap();
    set(&mut st, 3, "/c", b"x", -1).unwrap();
    apply(&mut st, 4, vec![Request::Noop]);
    assert!(exists(&st, "/c"));
}

#[test]
fn a_container_is_deleted_when_its_last_child_goes() {
    let mut st = fresh();
    create(&mut st, 2, "/c", CreateMode::Container).unwrap();
    create(&mut st, 3, "/c/a", CreateMode::Persistent).unwrap();
    create(&mut st, 4, "/c/b", CreateMode::Persistent).unwrap();
    delete(&mut st, 5, "/c/a", -1).unwrap();
    assert!(exists(&st, "/c"), "a child remains");
    let a = apply(&mut st, 6, vec![single(delete_op("/c/b", -1))]);
    assert!(multi_result(&a.results[0]).is_ok());
    assert!(!exists(&st, "/c"));
    assert_eq!(
        a.events,
        [
            ev(6, EventType::Deleted, "/c/b"),
            ev(6, EventType::ChildrenChanged, "/c"),
            ev(6, EventType::Deleted, "/c"),
            ev(6, EventType::ChildrenChanged, "/"),
        ]
    );
    assert!(a.touched_nodes.contains("/c"));
    assert!(a.touched_nodes.contains("/"));
    let root = stat(&st, "/");
    assert_eq!((root.pzxid, root.cversion, root.num_children), (6, 2, 0));
    assert_consistent(&st);
}

#[test]
fn container_deletion_cascades_to_a_parent_container() {
    let mut st = fresh();
    create(&mut st, 2, "/p", CreateMode::Persistent).unwrap();
    create(&mut st, 3, "/p/c1", CreateMode::Container).unwrap();
    create(&mut st, 4, "/p/c1/c2", CreateMode::Container).unwrap();
    create(&mut st, 5, "/p/c1/c2/leaf", CreateMode::Persistent).unwrap();
    let a = apply(&mut st, 6, vec![single(delete_op("/p/c1/c2/leaf", -1))]);
    assert!(!exists(&st, "/p/c1/c2"));
    assert!(!exists(&st, "/p/c1"));
    assert!(exists(&st, "/p"), "a persistent parent stops the cascade");
    assert_eq!(
        a.events,
        [
            ev(6, EventType::Deleted, "/p/c1/c2/leaf"),
            ev(6, EventType::ChildrenChanged, "/p/c1/c2"),
            ev(6, EventType::Deleted, "/p/c1/c2"),
            ev(6, EventType::ChildrenChanged, "/p/c1"),
            ev(6, EventType::Deleted, "/p/c1"),
            ev(6, EventType::ChildrenChanged, "/p"),
        ]
    );
    assert_eq!(stat(&st, "/p").pzxid, 6);
    assert_consistent(&st);
}

#[test]
fn container_cascade_stops_at_a_container_with_other_children() {
    let mut st = fresh();
    create(&mut st, 2, "/c1", CreateMode::Container).unwrap();
    create(&mut st, 3, "/c1/c2", CreateMode::Container).unwrap();
    create(&mut st, 4, "/c1/other", CreateMode::Persistent).unwrap();
    create(&mut st, 5, "/c1/c2/leaf", CreateMode::Persistent).unwrap();
    delete(&mut st, 6, "/c1/c2/leaf", -1).unwrap();
    assert!(!exists(&st, "/c1/c2"));
    assert!(exists(&st, "/c1"));
    assert_eq!(children(&st, "/c1"), ["other"]);
}

#[test]
fn a_multi_that_deletes_the_last_child_then_creates_one_keeps_the_container() {
    let mut st = fresh();
    create(&mut st, 2, "/c", CreateMode::Container).unwrap();
    create(&mut st, 3, "/c/old", CreateMode::Persistent).unwrap();
    run_multi(
        &mut st,
        4,
        vec![
            delete_op("/c/old", -1),
            check_op("/c", -1), // the container is still there for later ops
            create_op("/c/new", CreateMode::Persistent),
        ],
    )
    .unwrap();
    assert!(exists(&st, "/c"));
    assert_eq!(children(&st, "/c"), ["new"]);
}

#[test]
fn a_container_emptied_within_a_multi_is_deleted_when_the_multi_commits() {
    let mut st = fresh();
    create(&mut st, 2, "/c", CreateMode::Container).unwrap();
    let a = apply(
        &mut st,
        3,
        vec![multi(vec![
            create_op("/c/tmp", CreateMode::Persistent),
            delete_op("/c/tmp", -1),
            set_op("/c", b"still here", -1),
        ])],
    );
    assert!(multi_result(&a.results[0]).is_ok());
    assert!(!exists(&st, "/c"));
    assert_eq!(
        a.events.last(),
        Some(&ev(3, EventType::ChildrenChanged, "/"))
    );
    assert!(a.events.contains(&ev(3, EventType::Deleted, "/c")));
}

#[test]
fn a_failed_multi_that_would_empty_a_container_keeps_it() {
    let mut st = fresh();
    create(&mut st, 2, "/c", CreateMode::Container).unwrap();
    create(&mut st, 3, "/c/x", CreateMode::Persistent).unwrap();
    run_multi(&mut st, 4, vec![delete_op("/c/x", -1), check_op("/c", 5)]).unwrap_err();
    assert_eq!(children(&st, "/c"), ["x"]);
}

#[test]
fn a_container_may_be_deleted_explicitly_with_its_last_child() {
    let mut st = fresh();
    create(&mut st, 2, "/c", CreateMode::Container).unwrap();
    create(&mut st, 3, "/c/x", CreateMode::Persistent).unwrap();
    let a = apply(
        &mut st,
        4,
        vec![multi(vec![delete_op("/c/x", -1), delete_op("/c", -1)])],
    );
    assert!(multi_result(&a.results[0]).is_ok());
    assert!(!exists(&st, "/c"));
    let deleted: Vec<_> = a
        .events
        .iter()
        .filter(|e| e.kind == EventType::Deleted)
        .collect();
    assert_eq!(
        deleted.len(),
        2,
        "the container is deleted once: {:?}",
        a.events
    );
    assert_eq!(stat(&st, "/").cversion, 2);
}

#[test]
fn a_container_emptied_by_session_expiry_is_deleted() {
    let mut st = fresh();
    create(&mut st, 2, "/locks", CreateMode::Container).unwrap();
    create(&mut st, 3, "/locks/l-", CreateMode::EphemeralSequential).unwrap();
    let a = apply(&mut st, 4, vec![Request::ExpireSessions(vec![S1])]);
    assert!(!exists(&st, "/locks"));
    assert_eq!(
        a.events,
        [
            ev(4, EventType::Deleted, "/locks/l-0000000000"),
            ev(4, EventType::ChildrenChanged, "/locks"),
            ev(4, EventType::Deleted, "/locks"),
            ev(4, EventType::ChildrenChanged, "/"),
        ]
    );
}

#[test]
fn a_container_emptied_by_ttl_expiry_is_deleted() {
    let mut st = fresh();
    create(&mut st, 2, "/c", CreateMode::Container).unwrap();
    create(&mut st, 3, "/c/t", CreateMode::PersistentWithTtl).unwrap();
    let a = st.apply(
        4,
        &cmd(
            time_of(3) + TTL + 1,
            vec![Request::ExpireTtl(vec!["/c/t".into()])],
        ),
    );
    assert!(!exists(&st, "/c/t"));
    assert!(!exists(&st, "/c"));
    assert_eq!(a.events.len(), 4);
}

// ---------------------------------------------------------------------------------------------
// TTL
// ---------------------------------------------------------------------------------------------

#[test]
fn expired_ttl_nodes_lists_only_expired_childless_ttl_nodes() {
    let mut st = fresh();
    create_full(
        &mut st,
        2,
        "/short",
        b"",
        CreateMode::PersistentWithTtl,
        0,
        1_000,
    )
    .unwrap();
    create_full(
        &mut st,
        2,
        "/long",
        b"",
        CreateMode::PersistentWithTtl,
        0,
        1_000_000,
    )
    .unwrap();
    create_full(
        &mut st,
        2,
        "/parent",
        b"",
        CreateMode::PersistentWithTtl,
        0,
        1_000,
    )
    .unwrap();
    create(&mut st, 3, "/parent/kid", CreateMode::Persistent).unwrap();
    create_full(
        &mut st,
        2,
        "/seq-",
        b"",
        CreateMode::PersistentSequentialWithTtl,
        0,
        1_000,
    )
    .unwrap();
    create(&mut st, 2, "/plain", CreateMode::Persistent).unwrap();
    create(&mut st, 2, "/container", CreateMode::Container).unwrap();
    create(&mut st, 2, "/eph", CreateMode::Ephemeral).unwrap();
    let t = time_of(2);
    assert!(st.expired_ttl_nodes(t + 999, 100).is_empty());
    assert_eq!(
        st.expired_ttl_nodes(t + 10_000, 100),
        ["/seq-0000000003", "/short"]
    );
    assert_eq!(st.expired_ttl_nodes(t + 10_000, 1).len(), 1);
    assert!(st.expired_ttl_nodes(t + 10_000, 0).is_empty());
    // Once the child is gone, the parent is expired too.
    delete(&mut st, 4, "/parent/kid", -1).unwrap();
    assert_eq!(
        st.expired_ttl_nodes(t + 10_000, 100),
        ["/parent", "/seq-0000000003", "/short"]
    );
}

#[test]
fn ttl_counts_from_mtime() {
    let mut st = fresh();
    create(&mut st, 2, "/t", CreateMode::PersistentWithTtl).unwrap();
    let created = time_of(2);
    assert!(st.expired_ttl_nodes(created + TTL - 1, 10).is_empty());
    assert_eq!(st.expired_ttl_nodes(created + TTL + 1, 10), ["/t"]);
    // A write at a later time extends the life.
    st.apply(
        3,
        &cmd(created + 4_000, vec![single(set_op("/t", b"x", -1))]),
    );
    assert!(st.expired_ttl_nodes(created + TTL + 1, 10).is_empty());
    assert!(st
        .expired_ttl_nodes(created + 4_000 + TTL - 1, 10)
        .is_empty());
    assert_eq!(st.expired_ttl_nodes(created + 4_000 + TTL + 1, 10), ["/t"]);
}

#[test]
fn child_changes_do_not_extend_a_ttl() {
    // mtime is a data property: creating and deleting a child does not reset the TTL.
    let mut st = fresh();
    create(&mut st, 2, "/t", CreateMode::PersistentWithTtl).unwrap();
    st.apply(
        3,
        &cmd(
            time_of(2) + 3_000,
            vec![single(create_op("/t/c", CreateMode::Persistent))],
        ),
    );
    st.apply(
        4,
        &cmd(time_of(2) + 4_000, vec![single(delete_op("/t/c", -1))]),
    );
    assert_eq!(st.expired_ttl_nodes(time_of(2) + TTL + 1, 10), ["/t"]);
}

#[test]
fn expire_ttl_deletes_an_expired_node_with_events() {
    let mut st = fresh();
    create(&mut st, 2, "/p", CreateMode::Persistent).unwrap();
    create(&mut st, 3, "/p/t", CreateMode::PersistentWithTtl).unwrap();
    let now = time_of(3) + TTL + 1;
    let expired = st.expired_ttl_nodes(now, 10);
    assert_eq!(expired, ["/p/t"]);
    let a = st.apply(4, &cmd(now, vec![Request::ExpireTtl(expired)]));
    assert_eq!(done_result(&a.results[0]), Ok(()));
    assert!(!exists(&st, "/p/t"));
    assert_eq!(
        a.events,
        [
            ev(4, EventType::Deleted, "/p/t"),
            ev(4, EventType::ChildrenChanged, "/p")
        ]
    );
    let p = stat(&st, "/p");
    assert_eq!((p.pzxid, p.cversion, p.num_children), (4, 2, 0));
    assert_eq!(st.last_zxid, 4);
    assert!(st.expired_ttl_nodes(now, 10).is_empty());
}

#[test]
fn expire_ttl_rechecks_with_the_entry_time() {
    let mut st = fresh();
    create(&mut st, 2, "/t", CreateMode::PersistentWithTtl).unwrap();
    let now = time_of(2) + TTL + 1;
    let expired = st.expired_ttl_nodes(now, 10);
    assert_eq!(expired, ["/t"]);
    // The node is written before the expiry entry is applied: it lives on.
    st.apply(3, &cmd(now, vec![single(set_op("/t", b"touched", -1))]));
    let a = st.apply(4, &cmd(now + 1, vec![Request::ExpireTtl(expired.clone())]));
    assert_eq!(done_result(&a.results[0]), Ok(()));
    assert!(a.events.is_empty());
    assert!(exists(&st, "/t"));
    // An expiry proposed on a stale clock is judged by the entry time, not the leader's
    // earlier scan.
    let mut st2 = fresh();
    create(&mut st2, 2, "/t", CreateMode::PersistentWithTtl).unwrap();
    st2.apply(
        3,
        &cmd(
            time_of(2) + TTL - 1,
            vec![Request::ExpireTtl(vec!["/t".into()])],
        ),
    );
    assert!(exists(&st2, "/t"));
}

#[test]
fn expire_ttl_keeps_a_node_with_children() {
    let mut st = fresh();
    create(&mut st, 2, "/t", CreateMode::PersistentWithTtl).unwrap();
    create(&mut st, 3, "/t/c", CreateMode::Persistent).unwrap();
    let a = st.apply(
        4,
        &cmd(
            time_of(3) + 100 * TTL,
            vec![Request::ExpireTtl(vec!["/t".into()])],
        ),
    );
    assert!(a.events.is_empty());
    assert!(exists(&st, "/t/c"));
}

#[test]
fn expire_ttl_ignores_non_ttl_and_missing_nodes() {
    let mut st = fresh();
    create(&mut st, 2, "/p", CreateMode::Persistent).unwrap();
    create(&mut st, 3, "/c", CreateMode::Container).unwrap();
    create(&mut st, 4, "/e", CreateMode::Ephemeral).unwrap();
    let before = st.clone();
    let a = st.apply(
        5,
        &cmd(
            i64::MAX / 2,
            vec![Request::ExpireTtl(vec![
                "/p".into(),
                "/c".into(),
                "/e".into(),
                "/gone".into(),
                "/".into(),
            ])],
        ),
    );
    assert_eq!(done_result(&a.results[0]), Ok(()));
    assert_unchanged(&st, &before);
}

#[test]
fn expire_ttl_uses_the_monotonic_clock() {
    let mut st = fresh();
    create(&mut st, 2, "/t", CreateMode::PersistentWithTtl).unwrap();
    st.apply(3, &cmd(time_of(2) + TTL + 1, vec![Request::Noop]));
    // Proposed with an older clock: the entry's time is still the latest applied one.
    st.apply(4, &cmd(0, vec![Request::ExpireTtl(vec!["/t".into()])]));
    assert!(!exists(&st, "/t"));
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

#[test]
fn open_session_registers_the_session() {
    let mut st = State::new();
    let a = st.apply(
        3,
        &cmd(
            77,
            vec![Request::OpenSession {
                session_id: S1,
                secret: secret_of(S1),
                timeout_ms: 4_000,
            }],
        ),
    );
    assert_eq!(done_result(&a.results[0]), Ok(()));
    assert_eq!(a.touched_sessions, BTreeSet::from([S1]));
    assert!(a.events.is_empty());
    let s = &st.session(S1).unwrap().session;
    assert_eq!(
        s,
        &Session {
            id: S1,
            secret: secret_of(S1),
            timeout_ms: 4_000,
            created_zxid: 3,
            created_ms: 77,
        }
    );
    assert_eq!(st.session_count(), 1);
    assert_eq!(st.last_zxid, 3);
}

#[test]
fn open_session_with_a_taken_or_zero_id_is_bad_arguments() {
    let mut st = fresh();
    let before = st.clone();
    assert_eq!(reason(open_session(&mut st, 2, S1)), Reason::BadArguments);
    assert_eq!(reason(open_session(&mut st, 3, 0)), Reason::BadArguments);
    assert_unchanged(&st, &before);
}

#[test]
fn close_session_with_the_wrong_secret_is_auth_failed() {
    let mut st = fresh();
    create(&mut st, 2, "/e", CreateMode::Ephemeral).unwrap();
    let (r, a) = close_session(&mut st, 3, S1, Bytes::from_static(b"guess"));
    assert_eq!(r, Err(BatonError::AuthFailed(S1)));
    assert!(a.events.is_empty());
    assert!(a.touched_sessions.is_empty());
    assert!(st.session(S1).is_some());
    assert!(exists(&st, "/e"));
}

#[test]
fn close_of_an_unknown_session_is_session_expired() {
    let mut st = fresh();
    let (r, _) = close_session(&mut st, 2, UNKNOWN_SESSION, secret_of(UNKNOWN_SESSION));
    assert_eq!(r, Err(BatonError::SessionExpired(UNKNOWN_SESSION)));
    let (r, _) = close_session(&mut st, 3, S1, secret_of(S1));
    assert_eq!(r, Ok(()));
    let (r, _) = close_session(&mut st, 4, S1, secret_of(S1));
    assert_eq!(r, Err(BatonError::SessionExpired(S1)), "closing twice");
}

#[test]
fn close_session_deletes_its_ephemerals_with_events() {
    let mut st = fresh();
    open_session(&mut st, 2, S2).unwrap();
    create(&mut st, 3, "/p", CreateMode::Persistent).unwrap();
    create(&mut st, 4, "/p/e1", CreateMode::Ephemeral).unwrap();
    create(&mut st, 5, "/e2", CreateMode::Ephemeral).unwrap();
    create_full(&mut st, 6, "/other", b"", CreateMode::Ephemeral, S2, 0).unwrap();
    let (r, a) = close_session(&mut st, 7, S1, secret_of(S1));
    assert_eq!(r, Ok(()));
    assert!(st.session(S1).is_none());
    assert!(!exists(&st, "/p/e1"));
    assert!(!exists(&st, "/e2"));
    assert!(exists(&st, "/other"), "other sessions' ephemerals stay");
    assert!(exists(&st, "/p"));
    assert_eq!(a.touched_sessions, BTreeSet::from([S1]));
    let got: BTreeSet<_> = a
        .events
        .iter()
        .cloned()
        .map(|e| (e.zxid, e.path, e.kind as u8))
        .collect();
    let want: BTreeSet<_> = [
        ev(7, EventType::Deleted, "/p/e1"),
        ev(7, EventType::ChildrenChanged, "/p"),
        ev(7, EventType::Deleted, "/e2"),
        ev(7, EventType::ChildrenChanged, "/"),
    ]
    .into_iter()
    .map(|e| (e.zxid, e.path, e.kind as u8))
    .collect();
    assert_eq!(got, want);
    assert_eq!(a.events.len(), 4);
    assert_eq!(st.last_zxid, 7);
    assert_consistent(&st);
}

#[test]
fn expire_sessions_deletes_all_their_ephemerals_in_one_zxid() {
    let mut st = fresh();
    open_session(&mut st, 2, S2).unwrap();
    create(&mut st, 3, "/a", CreateMode::Persistent).unwrap();
    create(&mut st, 4, "/a/x", CreateMode::Ephemeral).unwrap();
    create(&mut st, 5, "/a/q-", CreateMode::EphemeralSequential).unwrap();
    create(&mut st, 6, "/a/persist", CreateMode::Persistent).unwrap();
    create_full(&mut st, 7, "/a/s2", b"", CreateMode::Ephemeral, S2, 0).unwrap();
    create_full(&mut st, 8, "/s2", b"", CreateMode::Ephemeral, S2, 0).unwrap();
    let a = apply(
        &mut st,
        9,
        vec![Request::ExpireSessions(vec![S1, S2, UNKNOWN_SESSION])],
    );
    assert_eq!(done_result(&a.results[0]), Ok(()));
    assert_eq!(a.touched_sessions, BTreeSet::from([S1, S2]));
    assert_eq!(st.session_count(), 0);
    assert_eq!(children(&st, "/a"), ["persist"]);
    assert_eq!(children(&st, "/"), ["a"]);
    let deleted: BTreeSet<_> = a
        .events
        .iter()
        .filter(|e| e.kind == EventType::Deleted)
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(
        deleted,
        BTreeSet::from(["/a/x", "/a/q-0000000001", "/a/s2", "/s2"])
    );
    assert_eq!(
        a.events.len(),
        8,
        "DELETED + CHILDREN_CHANGED per node: {:?}",
        a.events
    );
    assert!(a.events.iter().all(|e| e.zxid == 9));
    // Each DELETED is followed by its parent's CHILDREN_CHANGED.
    for pair in a.events.chunks(2) {
        assert_eq!(pair[0].kind, EventType::Deleted);
        assert_eq!(
            pair[1],
            ev(
                9,
                EventType::ChildrenChanged,
                path::parent(&pair[0].path).unwrap()
            )
        );
    }
    let a_stat = stat(&st, "/a");
    assert_eq!(
        (a_stat.pzxid, a_stat.num_children, a_stat.cversion),
        (9, 1, 7)
    );
    for p in ["/a/x", "/a/q-0000000001", "/a/s2", "/s2"] {
        assert!(a.touched_nodes.contains(p), "{p}");
    }
    assert_consistent(&st);
}

#[test]
fn an_expired_session_cannot_create_ephemerals() {
    let mut st = fresh();
    apply(&mut st, 2, vec![Request::ExpireSessions(vec![S1])]);
    for mode in [CreateMode::Ephemeral, CreateMode::EphemeralSequential] {
        assert_eq!(
            create(&mut st, 3, "/e", mode),
            Err(BatonError::SessionExpired(S1))
        );
    }
    let (r, _) = close_session(&mut st, 4, S1, secret_of(S1));
    assert_eq!(r, Err(BatonError::SessionExpired(S1)));
    assert_eq!(st.node_count(), 1);
}

#[test]
fn expire_sessions_of_unknown_ids_changes_nothing() {
    let mut st = fresh();
    let before = st.clone();
    let a = apply(
        &mut st,
        2,
        vec![Request::ExpireSessions(vec![UNKNOWN_SESSION])],
    );
    assert_eq!(done_result(&a.results[0]), Ok(()));
    assert!(a.touched_sessions.is_empty());
    assert_unchanged(&st, &before);
}

#[test]
fn deleting_an_ephemeral_removes_it_from_its_session() {
    let mut st = fresh();
    create(&mut st, 2, "/e", CreateMode::Ephemeral).unwrap();
    delete(&mut st, 3, "/e", -1).unwrap();
    assert!(ephemerals_of(&st, S1).is_empty());
    let (r, a) = close_session(&mut st, 4, S1, secret_of(S1));
    assert_eq!(r, Ok(()));
    assert!(a.events.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Events and bookkeeping
// ---------------------------------------------------------------------------------------------

#[test]
fn create_emits_created_then_children_changed_of_the_parent() {
    let mut st = fresh();
    create(&mut st, 2, "/a", CreateMode::Persistent).unwrap();
    let a = apply(
        &mut st,
        3,
        vec![single(create_op("/a/s-", CreateMode::PersistentSequential))],
    );
    assert_eq!(
        a.events,
        [
            ev(3, EventType::Created, "/a/s-0000000000"),
            ev(3, EventType::ChildrenChanged, "/a"),
        ]
    );
    assert_eq!(
        a.touched_nodes,
        BTreeSet::from(["/a".to_string(), "/a/s-0000000000".into()])
    );
}

#[test]
fn set_data_emits_data_changed_only() {
    let mut st = fresh();
    create(&mut st, 2, "/a", CreateMode::Persistent).unwrap();
    create(&mut st, 3, "/a/b", CreateMode::Persistent).unwrap();
    let a = apply(&mut st, 4, vec![single(set_op("/a/b", b"x", -1))]);
    assert_eq!(a.events, [ev(4, EventType::DataChanged, "/a/b")]);
    assert_eq!(a.touched_nodes, BTreeSet::from(["/a/b".to_string()]));
}

#[test]
fn delete_emits_deleted_then_children_changed_of_the_parent() {
    let mut st = fresh();
    create(&mut st, 2, "/a", CreateMode::Persistent).unwrap();
    create(&mut st, 3, "/a/b", CreateMode::Persistent).unwrap();
    let a = apply(&mut st, 4, vec![single(delete_op("/a/b", -1))]);
    assert_eq!(
        a.events,
        [
            ev(4, EventType::Deleted, "/a/b"),
            ev(4, EventType::ChildrenChanged, "/a")
        ]
    );
    assert_eq!(
        a.touched_nodes,
        BTreeSet::from(["/a".to_string(), "/a/b".into()])
    );
}

#[test]
fn check_emits_nothing() {
    let mut st = fresh();
    create(&mut st, 2, "/a", CreateMode::Persistent).unwrap();
    let a = apply(&mut st, 3, vec![single(check_op("/a", 0))]);
    assert!(a.events.is_empty());
    assert!(a.touched_nodes.is_empty());
}

#[test]
fn multi_events_come_in_op_order_with_the_entry_zxid() {
    let mut st = fresh();
    create(&mut st, 2, "/old", CreateMode::Persistent).unwrap();
    let a = apply(
        &mut st,
        3,
        vec![multi(vec![
            create_op("/a", CreateMode::Persistent),
            set_op("/old", b"x", -1),
            create_op("/a/b", CreateMode::Persistent),
            check_op("/a/b", 0),
            delete_op("/old", -1),
        ])],
    );
    assert_eq!(
        a.events,
        [
            ev(3, EventType::Created, "/a"),
            ev(3, EventType::ChildrenChanged, "/"),
            ev(3, EventType::DataChanged, "/old"),
            ev(3, EventType::Created, "/a/b"),
            ev(3, EventType::ChildrenChanged, "/a"),
            ev(3, EventType::Deleted, "/old"),
            ev(3, EventType::ChildrenChanged, "/"),
        ]
    );
}

#[test]
fn failed_requests_emit_no_events() {
    let mut st = fresh();
    create(&mut st, 2, "/a", CreateMode::Persistent).unwrap();
    let a = apply(
        &mut st,
        3,
        vec![
            single(create_op("/a", CreateMode::Persistent)),
            single(set_op("/a", b"", 9)),
            single(delete_op("/nope", -1)),
            multi(vec![
                create_op("/b", CreateMode::Persistent),
                set_op("/a", b"x", -1),
                check_op("/a", 0),
            ]),
            Request::CloseSession {
                session_id: S1,
                secret: Bytes::new(),
            },
            Request::OpenSession {
                session_id: S1,
                secret: Bytes::new(),
                timeout_ms: 1,
            },
        ],
    );
    assert!(a.results.iter().all(|r| match r {
        RequestResult::Multi(r) => r.is_err(),
        RequestResult::Done(r) => r.is_err(),
        other => panic!("no request id was sent: {other:?}"),
    }));
    assert!(a.events.is_empty());
    assert!(a.touched_nodes.is_empty());
    assert!(a.touched_sessions.is_empty());
    assert_eq!(st.last_zxid, 2);
}

#[test]
fn last_zxid_is_the_last_entry_that_changed_something() {
    let mut st = fresh();
    assert_eq!(st.last_zxid, 1);
    create(&mut st, 2, "/a", CreateMode::Persistent).unwrap();
    assert_eq!(st.last_zxid, 2);
    apply(&mut st, 3, vec![Request::Noop]);
    check(&mut st, 4, "/a", 0).unwrap();
    assert_eq!(st.last_zxid, 2);
    set(&mut st, 5, "/a", b"", -1).unwrap();
    assert_eq!(st.last_zxid, 5);
}

#[test]
fn applied_index_is_the_last_entry_applied_changed_or_not() {
    let mut st = fresh();
    assert_eq!(st.applied_index, 1);
    apply(&mut st, 2, vec![Request::Noop]);
    assert_eq!(st.applied_index, 2);
    assert_eq!(
        delete(&mut st, 3, "/missing", -1),
        Err(BatonError::NoNode("/missing".into()))
    );
    assert_eq!(st.applied_index, 3);
    assert_eq!(st.last_zxid, 1);
}

#[test]
fn applying_the_same_log_gives_the_same_state() {
    let log: Vec<Command> = vec![
        cmd(
            10,
            vec![Request::OpenSession {
                session_id: S1,
                secret: secret_of(S1),
                timeout_ms: 5,
            }],
        ),
        cmd(
            20,
            vec![
                single(create_op("/a", CreateMode::Container)),
                single(create_op("/a/", CreateMode::EphemeralSequential)),
            ],
        ),
        cmd(
            15,
            vec![multi(vec![
                create_op("/t", CreateMode::PersistentWithTtl),
                set_op("/t", b"z", 0),
            ])],
        ),
        cmd(
            30,
            vec![
                Request::ExpireSessions(vec![S1]),
                Request::ExpireTtl(vec!["/t".into()]),
            ],
        ),
    ];
    let mut a = State::new();
    let mut b = State::new();
    for (i, c) in log.iter().enumerate() {
        let ra = a.apply(i as u64 + 1, c);
        let rb = b.apply(i as u64 + 1, c);
        assert_eq!(ra.results, rb.results);
        assert_eq!(ra.events, rb.events);
    }
    assert_eq!(a, b);
    assert!(!exists(&a, "/a"));
    assert!(exists(&a, "/t"));
}

// ---------------------------------------------------------------------------------------------
// children_page
// ---------------------------------------------------------------------------------------------

#[test]
fn children_page_lists_children_in_name_order_in_pages() {
    let mut st = fresh();
    for (i, c) in ["d", "b", "a", "c", "e"].iter().enumerate() {
        create(
            &mut st,
            2 + i as u64,
            &format!("/{c}"),
            CreateMode::Persistent,
        )
        .unwrap();
    }
    let names =
        |(v, more): (Vec<&String>, bool)| (v.into_iter().cloned().collect::<Vec<_>>(), more);
    assert_eq!(
        names(st.children_page("/", "", 100).unwrap()),
        (
            vec!["a".into(), "b".into(), "c".into(), "d".into(), "e".into()],
            false
        )
    );
    assert_eq!(
        names(st.children_page("/", "", 2).unwrap()),
        (vec!["a".into(), "b".into()], true)
    );
    assert_eq!(
        names(st.children_page("/", "b", 2).unwrap()),
        (vec!["c".into(), "d".into()], true)
    );
    assert_eq!(
        names(st.children_page("/", "d", 2).unwrap()),
        (vec!["e".into()], false)
    );
    assert_eq!(
        names(st.children_page("/", "bb", 1).unwrap()),
        (vec!["c".into()], true)
    );
    assert_eq!(
        names(st.children_page("/", "e", 2).unwrap()),
        (vec![], false)
    );
    assert_eq!(
        names(st.children_page("/a", "", 2).unwrap()),
        (vec![], false)
    );
    assert!(st.children_page("/missing", "", 2).is_none());
}

// ---------------------------------------------------------------------------------------------
// from_records
// ---------------------------------------------------------------------------------------------

fn export(st: &State) -> (Vec<(String, Node)>, Vec<Session>) {
    (
        st.nodes().map(|(p, n)| (p.clone(), n.clone())).collect(),
        st.sessions().map(|s| s.session.clone()).collect(),
    )
}

#[test]
fn from_records_round_trips_a_state() {
    let mut st = busy_state();
    open_session(&mut st, 10, S2).unwrap();
    create_full(
        &mut st,
        11,
        "/a/s2-",
        b"",
        CreateMode::EphemeralSequential,
        S2,
        0,
    )
    .unwrap();
    delete(&mut st, 12, "/a/x-0000000000", -1).unwrap();
    create(&mut st, 13, "/z", CreateMode::PersistentSequentialWithTtl).unwrap();
    set(&mut st, 14, "/", b"root data", -1).unwrap();
    let (nodes, sessions) = export(&st);
    let (mut back, orphans) = State::from_records(nodes, sessions, st.last_time_ms, st.last_zxid);
    assert_eq!(orphans, 0);
    assert_eq!(
        back.applied_index, 0,
        "the applied index is the caller's to restore"
    );
    back.applied_index = st.applied_index;
    for (p, n) in st.nodes() {
        let m = back.get(p).unwrap_or_else(|| panic!("{p} restored"));
        assert_eq!(m.children, n.children, "children of {p}");
        assert_eq!(m.stat, n.stat, "stat of {p}");
        assert_eq!(m.seq, n.seq, "sequence counter of {p}");
        assert_eq!(m.data, n.data, "data of {p}");
    }
    assert_eq!(back.node_count(), st.node_count());
    for s in st.sessions() {
        assert_eq!(
            back.session(s.session.id),
            Some(s),
            "session {:#x} and its ephemerals",
            s.session.id
        );
    }
    assert_eq!(back.last_time_ms, st.last_time_ms);
    assert_eq!(back.last_zxid, st.last_zxid);
    assert_eq!(back, st);
    assert_consistent(&back);
    // The rebuilt state behaves the same: sequential names, TTL scan, session expiry.
    let far = st.last_time_ms + 100 * TTL;
    assert_eq!(
        back.expired_ttl_nodes(far, 100),
        st.expired_ttl_nodes(far, 100)
    );
    let next = vec![
        single(create_op("/a/x-", CreateMode::PersistentSequential)),
        Request::ExpireSessions(vec![S1, S2]),
        Request::ExpireTtl(st.expired_ttl_nodes(far, 100)),
    ];
    let ra = st.apply(20, &cmd(far, next.clone()));
    let rb = back.apply(20, &cmd(far, next));
    assert_eq!(ra.results, rb.results);
    assert_eq!(ra.events, rb.events);
    assert_eq!(back, st);
}

#[test]
fn from_records_derives_children_from_paths() {
    let mut st = fresh();
    create(&mut st, 2, "/a", CreateMode::Persistent).unwrap();
    create(&mut st, 3, "/a/b", CreateMode::Persistent).unwrap();
    let (mut nodes, sessions) = export(&st);
    for (_, n) in &mut nodes {
        n.children = imbl::OrdSet::unit("bogus".to_string());
    }
    nodes.reverse();
    let (mut back, orphans) = State::from_records(nodes, sessions, st.last_time_ms, st.last_zxid);
    assert_eq!(orphans, 0);
    back.applied_index = st.applied_index;
    assert_eq!(children(&back, "/"), ["a"]);
    assert_eq!(children(&back, "/a"), ["b"]);
    assert!(children(&back, "/a/b").is_empty());
    assert_eq!(back, st);
}

#[test]
fn from_records_drops_and_counts_orphans() {
    let mut st = fresh();
    create(&mut st, 2, "/a", CreateMode::Persistent).unwrap();
    create(&mut st, 3, "/a/b", CreateMode::Persistent).unwrap();
    create(&mut st, 4, "/a/b/c", CreateMode::Persistent).unwrap();
    create(&mut st, 5, "/k", CreateMode::Persistent).unwrap();
    let (nodes, sessions) = export(&st);
    let nodes: Vec<_> = nodes.into_iter().filter(|(p, _)| p != "/a").collect();
    let (back, orphans) = State::from_records(nodes, sessions, 0, 0);
    assert_eq!(orphans, 2, "/a/b and, below it, /a/b/c");
    assert_eq!(back.node_count(), 2);
    assert!(exists(&back, "/k"));
}

#[test]
fn from_records_with_nothing_is_a_new_state() {
    let (st, orphans) = State::from_records(Vec::new(), Vec::new(), 0, 0);
    assert_eq!(orphans, 0);
    assert_eq!(st, State::new());
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

fn path_ok(p: &str) -> bool {
    path::validate(p, false, &PathLimits::default()).is_ok()
}

fn path_why(p: &str) -> String {
    match path::validate(p, false, &PathLimits::default()) {
        Err(BatonError::InvalidPath { path, why }) => {
            assert_eq!(path, p);
            why
        }
        other => panic!("{p:?} should be INVALID_PATH, got {other:?}"),
    }
}

#[test]
fn path_must_not_be_empty() {
    assert!(path_why("").contains("empty"));
}

#[test]
fn path_must_be_absolute() {
    for p in ["a", "a/b", ".", "..", "a/"] {
        assert!(!path_ok(p), "{p:?}");
    }
}

#[test]
fn path_must_not_have_dot_or_dot_dot_components() {
    for p in [
        "/.", "/..", "/a/.", "/a/..", "/./a", "/../a", "/a/./b", "/a/../b",
    ] {
        assert!(!path_ok(p), "{p:?}");
    }
    for p in ["/...", "/.a", "/a.", "/..a", "/a/b..", "/a/.b/c"] {
        assert!(path_ok(p), "{p:?}: dots are fine inside a name");
    }
}

#[test]
fn path_must_not_contain_nul_or_control_characters() {
    for p in [
        "/\0", "/a\0", "/a\0/b", "/a/\0b", "/\u{1f}", "/a\u{7f}", "/a\u{9f}", "/a\tb", "/a\nb",
    ] {
        assert!(!path_ok(p), "{p:?}");
    }
    assert!(path_ok("/a\u{a0}b"), "U+00A0 is not a control character");
}

#[test]
fn path_must_not_contain_zookeepers_disallowed_characters() {
    // ZooKeeper disallows \uD800-\uF8FF (Rust strings cannot hold surrogates, so U+E000-U+F8FF)
    // and \uFFF0-\uFFFF.
    for c in [
        '\u{e000}', '\u{efff}', '\u{f000}', '\u{f8ff}', '\u{fff0}', '\u{ffff}',
    ] {
        let p = format!("/a{c}");
        assert!(!path_ok(&p), "U+{:04X}", c as u32);
    }
    for c in ['\u{d7ff}', '\u{f900}', '\u{ffef}'] {
        let p = format!("/a{c}");
        assert!(path_ok(&p), "U+{:04X}", c as u32);
    }
}

#[test]
fn path_must_not_end_with_a_slash_unless_it_is_the_root() {
    assert!(path_ok("/"));
    for p in ["/a/", "/a/b/", "//"] {
        assert!(path_why(p).contains("end"), "{p:?}");
    }
}

#[test]
fn path_must_not_have_empty_components() {
    for p in ["//a", "/a//b", "/a///"] {
        assert!(!path_ok(p), "{p:?}");
    }
}

#[test]
fn sequential_prefix_may_end_with_a_slash_or_a_partial_name() {
    let l = PathLimits::default();
    for p in ["/", "/a/", "/a/x-", "/a/.", "/a/.."] {
        assert!(path::validate(p, true, &l).is_ok(), "{p:?}");
    }
    for p in [
        "",
        "a/",
        "/a//",
        "//",
        "//x-",
        "/./",
        "/../x",
        "/a/./",
        "/a\0/",
        "/a\u{e000}/",
    ] {
        assert!(path::validate(p, true, &l).is_err(), "{p:?}");
    }
}

#[test]
fn sequential_prefix_depth_is_the_depth_of_the_final_node() {
    let l = PathLimits {
        max_len: 100,
        max_depth: 2,
    };
    assert!(path::validate("/a/", true, &l).is_ok());
    assert!(path::validate("/a/x-", true, &l).is_ok());
    // "/a/b/" names "/a/b/0000000000": three components.
    assert!(path::validate("/a/b/", true, &l).is_err());
    assert!(path::validate("/a/b/x-", true, &l).is_err());
}

#[test]
fn path_errors_are_invalid_path() {
    let e = path::validate("/a/", false, &PathLimits::default()).unwrap_err();
    assert_eq!(e.reason(), Reason::InvalidPath);
}

// ---------------------------------------------------------------------------------------------
// A randomized check of the invariants and of Multi atomicity
// ---------------------------------------------------------------------------------------------

/// A small deterministic generator (no external randomness: failures reproduce).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

#[test]
fn random_histories_keep_invariants_and_failed_multis_change_nothing() {
    const PATHS: [&str; 9] = [
        "/a", "/b", "/a/x", "/a/y", "/b/x", "/a/x/z", "/c", "/c/q", "/a/",
    ];
    for seed in 1..=20u64 {
        let mut rng = Lcg(seed);
        let mut st = State::new();
        let mut replica = State::new();
        let mut time = 1_000;
        for zxid in 1..=300u64 {
            time += rng.below(3_000) as i64 - 500; // sometimes goes backwards
            let mut requests = Vec::new();
            for _ in 0..=rng.below(3) {
                let req = match rng.below(12) {
                    0 => Request::OpenSession {
                        session_id: 1 + rng.below(3) as u64,
                        secret: Bytes::from_static(b"s"),
                        timeout_ms: 1,
                    },
                    1 => Request::CloseSession {
                        session_id: 1 + rng.below(3) as u64,
                        secret: Bytes::from_static(if rng.below(4) == 0 { b"x" } else { b"s" }),
                    },
                    2 => Request::ExpireSessions(vec![1 + rng.below(3) as u64]),
                    3 => Request::ExpireTtl(st.expired_ttl_nodes(time, 3)),
                    _ => {
                        let n = 1 + rng.below(4);
                        let ops = (0..n)
                            .map(|_| {
                                let p = rng.pick(&PATHS).to_string();
                                let p = if p.ends_with('/') && rng.below(2) == 0 {
                                    "/a/s-".into()
                                } else {
                                    p
                                };
                                let v = rng.below(3) as i32 - 1;
                                match rng.below(6) {
                                    0 | 1 => {
                                        let mode = *rng.pick(&ALL_MODES);
                                        let mode = if p.ends_with('/') || p.ends_with('-') {
                                            *rng.pick(&[
                                                CreateMode::PersistentSequential,
                                                CreateMode::EphemeralSequential,
                                                CreateMode::PersistentSequentialWithTtl,
                                            ])
                                        } else {
                                            mode
                                        };
                                        create_op_full(
                                            &p,
                                            b"d",
                                            mode,
                                            if mode.is_ephemeral() {
                                                1 + rng.below(3) as u64
                                            } else {
                                                0
                                            },
                                            if mode.is_ttl() {
                                                1 + rng.below(4_000) as i64
                                            } else {
                                                0
                                            },
                                        )
                                    }
                                    2 => delete_op(p.trim_end_matches('/'), v),
                                    3 => set_op(p.trim_end_matches('/'), b"xyz", v),
                                    _ => check_op(p.trim_end_matches('/'), v),
                                }
                            })
                            .collect();
                        multi(ops)
                    }
                };
                requests.push(req);
            }
            // Apply each request alone on a copy to know which ones fail, and check that a
            // failure leaves the copy exactly as it was (but for the clock).
            let mut probe = st.clone();
            for (i, req) in requests.iter().enumerate() {
                let before = probe.clone();
                let a = probe.apply(zxid, &cmd(time, vec![req.clone()]));
                let failed = match &a.results[0] {
                    RequestResult::Multi(r) => r.is_err(),
                    RequestResult::Done(r) => r.is_err(),
                    other => panic!("no request id was sent: {other:?}"),
                };
                if failed {
                    let mut expected = before;
                    expected.last_time_ms = probe.last_time_ms;
                    expected.applied_index = probe.applied_index;
                    assert_eq!(
                        probe, expected,
                        "seed {seed} zxid {zxid} request {i}: {req:?}"
                    );
                    assert!(a.events.is_empty());
                    assert!(a.touched_nodes.is_empty() && a.touched_sessions.is_empty());
                }
            }
            let c = cmd(time, requests);
            let a = st.apply(zxid, &c);
            let b = replica.apply(zxid, &c);
            assert_eq!(a.results, b.results);
            assert_eq!(a.events, b.events);
            assert!(a.events.iter().all(|e| e.zxid == zxid));
            assert_eq!(
                st, probe,
                "seed {seed} zxid {zxid}: one command = its requests in order"
            );
            assert_consistent(&st);
        }
        assert_eq!(st, replica);
        let (nodes, sessions) = export(&st);
        let (mut back, orphans) =
            State::from_records(nodes, sessions, st.last_time_ms, st.last_zxid);
        assert_eq!(orphans, 0);
        back.applied_index = st.applied_index;
        assert_eq!(back, st, "seed {seed}: from_records round trip");
    }
}
