//! Multi: all-or-nothing (a failed Multi leaves no trace, TTL index included), later ops see
//! earlier ones, outcomes and failure reports, one zxid; requests of one command independent.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::helpers::*;
use crate::error::BatonError;
use crate::tree::types::*;

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
