//! TTL nodes: the TTL argument a create accepts, which nodes have expired (counted from
//! mtime), and `ExpireTtl` deleting them, re-checking with the entry's time.

use super::helpers::*;
use crate::error::Reason;
use crate::tree::state::MAX_TTL_MS;
use crate::tree::types::*;

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
