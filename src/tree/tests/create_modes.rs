//! Create modes: what each mode makes (its mode, data, owner), and the wire numbers and
//! predicates of the modes.

use bytes::Bytes;

use super::helpers::*;
use crate::tree::state::State;
use crate::tree::types::*;

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
