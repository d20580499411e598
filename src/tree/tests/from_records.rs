//! `State::from_records`: a state rebuilt from its nodes and sessions, children derived from
//! paths, orphans dropped and counted.

use super::helpers::*;
use crate::tree::state::State;
use crate::tree::types::*;

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
