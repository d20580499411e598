//! Stat fields: what a create, a child change and a set each move (zxids, times, versions,
//! counts), times taken from the command and never going backwards, version wrap-around.

use bytes::Bytes;

use super::helpers::*;
use crate::tree::state::State;
use crate::tree::types::*;

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
