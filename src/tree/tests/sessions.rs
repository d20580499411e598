//! Sessions: open, close (secret checked), expiry deleting every ephemeral in one zxid, and
//! the session's index of its ephemerals.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::helpers::*;
use crate::error::{BatonError, Reason};
use crate::tree::path;
use crate::tree::state::State;
use crate::tree::types::*;

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
