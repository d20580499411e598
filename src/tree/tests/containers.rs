//! Containers: deleted when their last child goes (by delete, Multi, session or TTL expiry),
//! cascading to parent containers, kept if they never had a child or a Multi fails.

use super::helpers::*;
use crate::tree::types::*;

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
