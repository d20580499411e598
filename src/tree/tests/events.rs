//! Events and bookkeeping: the events each write emits and their order, none for failures,
//! `last_zxid` and `applied_index`, and the same log giving the same state.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::helpers::*;
use crate::error::BatonError;
use crate::tree::state::State;
use crate::tree::types::*;

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
