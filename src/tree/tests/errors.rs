//! Errors: `NO_NODE`, `NODE_EXISTS`, `BAD_VERSION`, `NOT_EMPTY`, ephemeral parents, unknown
//! sessions, the root, invalid paths, each from the op that raises it.

use bytes::Bytes;

use super::helpers::*;
use crate::error::{BatonError, Reason};
use crate::tree::types::*;

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
