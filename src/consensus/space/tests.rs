//! The NOSPACE alarm's decisions: thresholds, what a raised alarm lets through, and reading
//! the alarms back from the tree.

use super::*;
use bytes::Bytes;

use crate::tree::{Command, CreateMode};

const MB: u64 = 1024 * 1024;

fn create(path: &str, data: &str) -> Request {
    Request::Multi {
        ops: vec![Op::Create {
            path: path.into(),
            data: Bytes::from(data.to_string()),
            mode: CreateMode::Persistent,
            session_id: 0,
            ttl_ms: 0,
            acl: Vec::new(),
        }],
        single: true,
        caller: None,
    }
}

#[test]
fn short_below_the_reserve_or_over_the_quota_and_recovered_only_with_a_margin() {
    let l = Limits {
        reserve: 64 * MB,
        quota: 0,
    };
    assert!(l
        .short(&Space {
            free: 63 * MB,
            used: 0
        })
        .is_some());
    assert!(l
        .short(&Space {
            free: 64 * MB,
            used: 0
        })
        .is_none());
    assert!(
        !l.recovered(&Space {
            free: 64 * MB,
            used: 0
        }),
        "no margin yet"
    );
    assert!(l.recovered(&Space {
        free: 72 * MB,
        used: 0
    }));

    let q = Limits {
        reserve: 0,
        quota: 16 * MB,
    };
    let why = q
        .short(&Space {
            free: 0,
            used: 17 * MB,
        })
        .expect("over the quota");
    assert!(why.contains("quota"), "{why}");
    assert!(q
        .short(&Space {
            free: 0,
            used: 16 * MB
        })
        .is_none());
    assert!(!q.recovered(&Space {
        free: 0,
        used: 16 * MB
    }));
    assert!(q.recovered(&Space {
        free: 0,
        used: 14 * MB
    }));

    let off = Limits {
        reserve: 0,
        quota: 0,
    };
    assert!(off
        .short(&Space {
            free: 0,
            used: u64::MAX
        })
        .is_none());
    assert!(off.recovered(&Space {
        free: 0,
        used: u64::MAX
    }));
}

#[test]
fn a_raised_alarm_lets_through_only_what_adds_no_data() {
    let delete = Request::Multi {
        ops: vec![
            Op::Check {
                path: "/a".into(),
                version: 1,
            },
            Op::Delete {
                path: "/a".into(),
                version: -1,
            },
        ],
        single: false,
        caller: None,
    };
    assert!(allowed_during_alarm(&delete));
    assert!(allowed_during_alarm(&Request::Noop));
    assert!(allowed_during_alarm(&Request::ExpireSessions(vec![1])));
    assert!(allowed_during_alarm(&Request::ExpireTtl(vec!["/t".into()])));
    assert!(allowed_during_alarm(&Request::CloseSession {
        session_id: 1,
        secret: Bytes::new(),
    }));
    assert!(allowed_during_alarm(&create("/baton", "")));
    assert!(allowed_during_alarm(&create(ALARMS, "")));
    assert!(allowed_during_alarm(&create(&alarm_path(3), "short")));

    assert!(!allowed_during_alarm(&create("/a", "x")));
    assert!(!allowed_during_alarm(&create("/baton/other", "x")));
    assert!(!allowed_during_alarm(&Request::OpenSession {
        session_id: 1,
        secret: Bytes::new(),
        timeout_ms: 1000,
    }));
    let set = Request::Multi {
        ops: vec![Op::SetData {
            path: "/a".into(),
            data: Bytes::new(),
            version: -1,
        }],
        single: true,
        caller: None,
    };
    assert!(
        !allowed_during_alarm(&set),
        "even a shrinking set adds a version"
    );
    // One op that adds data refuses the whole multi.
    let mixed = Request::Multi {
        ops: vec![
            Op::Delete {
                path: "/a".into(),
                version: -1,
            },
            Op::Create {
                path: "/b".into(),
                data: Bytes::new(),
                mode: CreateMode::Persistent,
                session_id: 0,
                ttl_ms: 0,
                acl: Vec::new(),
            },
        ],
        single: false,
        caller: None,
    };
    assert!(!allowed_during_alarm(&mixed));
}

#[test]
fn alarms_are_read_back_from_the_tree() {
    let mut st = State::new();
    assert!(raised(&st).is_empty());
    st.apply(
        1,
        &Command {
            time_ms: 1,
            requests: vec![
                create("/baton", ""),
                create(ALARMS, ""),
                create(&alarm_path(2), "2 MiB free"),
                create(&format!("{ALARMS}/unrelated"), ""),
            ],
        },
    );
    assert_eq!(raised(&st), vec![(2, "2 MiB free".to_string())]);
}

#[test]
fn measuring_counts_the_files_under_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/f"), vec![1u8; 3 * MB as usize]).unwrap();
    let s = measure(dir.path()).unwrap();
    assert!(s.used >= 3 * MB, "{s:?}");
    assert!(s.free > 0, "{s:?}");
}
