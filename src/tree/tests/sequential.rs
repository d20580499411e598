//! Sequential names: the parent's counter, suffixes, prefixes ending in `/`, collisions, and
//! what a failed create advances (nothing).

use super::helpers::*;
use crate::error::{BatonError, Reason};
use crate::tree::types::*;

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
