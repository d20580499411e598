//! Specification tests for request ids (`tree::clients`): a copy of an applied write gets the
//! original result and changes nothing, a forgotten one gets `STALE_REQUEST`, pipelined
//! writes may be applied in any order, and the table is bounded, expired and hashed.

use bytes::Bytes;

use super::clients::MAX_REMEMBERED;
use super::state::State;
use super::types::*;
use crate::error::{BatonError, Reason};

const C: u64 = 0xc11e;

fn time_of(zxid: Zxid) -> i64 {
    1_000_000 + 1_000 * zxid as i64
}

fn id(seq: u64, first_incomplete: u64) -> RequestId {
    RequestId {
        client_id: C,
        seq,
        first_incomplete,
    }
}

fn tagged(id: RequestId, request: Request) -> Request {
    Request::Tagged {
        id,
        request: Box::new(request),
    }
}

fn create(path: &str, mode: CreateMode) -> Request {
    Request::Multi {
        ops: vec![Op::Create {
            path: path.into(),
            data: Bytes::from_static(b"d"),
            mode,
            session_id: 0,
            ttl_ms: 0,
            acl: Vec::new(),
        }],
        single: true,
        caller: None,
    }
}

fn set(path: &str, data: &'static [u8], version: i32) -> Request {
    Request::Multi {
        ops: vec![Op::SetData {
            path: path.into(),
            data: Bytes::from_static(data),
            version,
        }],
        single: true,
        caller: None,
    }
}

fn delete(path: &str) -> Request {
    Request::Multi {
        ops: vec![Op::Delete {
            path: path.into(),
            version: -1,
        }],
        single: true,
        caller: None,
    }
}

/// Applies one request as the entry at `zxid` and returns its result.
fn apply1(st: &mut State, zxid: Zxid, req: Request) -> RequestResult {
    let mut a = st.apply(
        zxid,
        &Command {
            time_ms: time_of(zxid),
            requests: vec![req],
        },
    );
    assert_eq!(a.results.len(), 1);
    a.results.remove(0)
}

fn created_path(r: &RequestResult) -> String {
    match r {
        RequestResult::Multi(Ok(outs)) => match outs.as_slice() {
            [OpOutcome::Create { path, .. }] => path.clone(),
            other => panic!("not a create: {other:?}"),
        },
        other => panic!("not a successful create: {other:?}"),
    }
}

/// The tree and sessions only (the request-id table aside).
fn tree_digest(st: &State) -> u64 {
    let mut copy = st.clone();
    copy.set_clients(Default::default());
    copy.digest()
}

#[test]
fn a_copy_of_an_applied_write_gets_its_result_and_zxid_and_changes_nothing() {
    let mut st = State::new();
    apply1(&mut st, 1, create("/q", CreateMode::Persistent));
    let first = apply1(
        &mut st,
        2,
        tagged(
            id(1, 1),
            create("/q/item-", CreateMode::PersistentSequential),
        ),
    );
    assert_eq!(created_path(&first), "/q/item-0000000000");
    let before = tree_digest(&st);
    let last_zxid = st.last_zxid;

    let copy = apply1(
        &mut st,
        3,
        tagged(
            id(1, 1),
            create("/q/item-", CreateMode::PersistentSequential),
        ),
    );
    assert_eq!(
        copy,
        RequestResult::Duplicate {
            zxid: 2,
            result: Box::new(first.clone())
        }
    );
    assert_eq!(copy.settle(3), Ok((first, 2)), "answered as the original");
    assert_eq!(
        tree_digest(&st),
        before,
        "a copy changes nothing in the tree"
    );
    assert_eq!(st.last_zxid, last_zxid);
    assert_eq!(st.get("/q").map(|n| n.children.len()), Some(1));
}

#[test]
fn a_copy_of_a_write_that_failed_gets_the_same_error_even_when_it_would_now_succeed() {
    let mut st = State::new();
    apply1(&mut st, 1, create("/a", CreateMode::Persistent));
    let first = apply1(
        &mut st,
        2,
        tagged(id(1, 1), create("/a", CreateMode::Persistent)),
    );
    let RequestResult::Multi(Err(f)) = &first else {
        panic!("{first:?}")
    };
    assert_eq!(f.error, BatonError::NodeExists("/a".into()));
    apply1(&mut st, 3, delete("/a"));

    let copy = apply1(
        &mut st,
        4,
        tagged(id(1, 1), create("/a", CreateMode::Persistent)),
    );
    assert_eq!(copy.settle(4), Ok((first, 2)));
    assert!(st.get("/a").is_none(), "the copy was not applied");
}

#[test]
fn versioned_increments_retried_apply_once() {
    let mut st = State::new();
    apply1(&mut st, 1, create("/counter", CreateMode::Persistent));
    let mut zxid = 2;
    for seq in 1..=5u64 {
        let version = (seq - 1) as i32;
        let req = || tagged(id(seq, seq), set("/counter", b"x", version));
        let first_zxid = zxid;
        let first = apply1(&mut st, zxid, req());
        assert!(first.is_ok(), "{first:?}");
        zxid += 1;
        // Every write is retried twice (its first answer was lost).
        for _ in 0..2 {
            let again = apply1(&mut st, zxid, req());
            assert_eq!(again.settle(zxid), first.clone().settle(first_zxid));
            zxid += 1;
        }
    }
    assert_eq!(st.get("/counter").map(|n| n.stat.version), Some(5));
}

#[test]
fn a_copy_older_than_the_acknowledged_mark_is_stale_and_changes_nothing() {
    let mut st = State::new();
    apply1(
        &mut st,
        1,
        tagged(id(1, 1), create("/a", CreateMode::Persistent)),
    );
    // The client received the answer to 1: write 2 says so.
    apply1(
        &mut st,
        2,
        tagged(id(2, 2), create("/b", CreateMode::Persistent)),
    );
    apply1(&mut st, 3, delete("/a"));
    let before = tree_digest(&st);

    let late = apply1(
        &mut st,
        4,
        tagged(id(1, 1), create("/a", CreateMode::Persistent)),
    );
    let want = BatonError::StaleRequest {
        client_id: C,
        seq: 1,
        oldest: 2,
    };
    assert_eq!(late, RequestResult::Stale(want.clone()));
    assert_eq!(late.settle(4), Err(want.clone()));
    assert_eq!(want.reason(), Reason::StaleRequest);
    assert_eq!(want.code(), tonic::Code::FailedPrecondition);
    assert!(!want.is_retryable());
    assert!(st.get("/a").is_none());
    assert_eq!(tree_digest(&st), before);
    let rec = st.clients().get(C).expect("record");
    assert_eq!(rec.results.keys().copied().collect::<Vec<_>>(), vec![2]);
}

#[test]
fn pipelined_writes_apply_in_any_order_and_each_copy_finds_its_own_result() {
    let mut st = State::new();
    // Writes 1..=3 in flight at once; 3 and 2 reach the log before 1.
    let r3 = apply1(
        &mut st,
        1,
        tagged(id(3, 1), create("/c", CreateMode::Persistent)),
    );
    let r2 = apply1(
        &mut st,
        2,
        tagged(id(2, 1), create("/b", CreateMode::Persistent)),
    );
    let r1 = apply1(
        &mut st,
        3,
        tagged(id(1, 1), create("/a", CreateMode::Persistent)),
    );
    for r in [&r1, &r2, &r3] {
        assert!(r.is_ok(), "{r:?}");
    }
    for (seq, want, zxid) in [(1, &r1, 3), (2, &r2, 2), (3, &r3, 1)] {
        let path = ["/a", "/b", "/c"][seq as usize - 1];
        let copy = apply1(
            &mut st,
            10 + seq,
            tagged(id(seq, 1), create(path, CreateMode::Persistent)),
        );
        assert_eq!(copy.settle(0), Ok((want.clone(), zxid)));
    }
    // Write 4 arrives before its predecessors were acknowledged; then an ack of all.
    apply1(
        &mut st,
        20,
        tagged(id(4, 4), create("/d", CreateMode::Persistent)),
    );
    assert_eq!(
        st.clients().get(C).map(|c| (c.oldest, c.results.len())),
        Some((4, 1))
    );
}

#[test]
fn a_client_keeps_at_most_a_window_of_results_and_older_copies_are_stale() {
    let mut st = State::new();
    apply1(&mut st, 1, create("/w", CreateMode::Persistent));
    let n = MAX_REMEMBERED as u64 + 1;
    // Nothing acknowledged: all n in flight.
    let requests: Vec<Request> = (1..=n)
        .map(|seq| {
            tagged(
                id(seq, 1),
                create(&format!("/w/{seq}"), CreateMode::Persistent),
            )
        })
        .collect();
    st.apply(
        2,
        &Command {
            time_ms: time_of(2),
            requests,
        },
    );
    let rec = st.clients().get(C).expect("record");
    assert_eq!(rec.results.len(), MAX_REMEMBERED);
    assert_eq!(rec.oldest, 2);
    let stale = apply1(
        &mut st,
        3,
        tagged(id(1, 1), create("/w/1", CreateMode::Persistent)),
    );
    assert!(matches!(stale, RequestResult::Stale(_)), "{stale:?}");
    let dup = apply1(
        &mut st,
        4,
        tagged(id(2, 1), create("/w/2", CreateMode::Persistent)),
    );
    assert!(
        matches!(dup, RequestResult::Duplicate { zxid: 2, .. }),
        "{dup:?}"
    );
}

#[test]
fn idle_clients_expire_but_one_active_since_is_kept() {
    let mut st = State::new();
    let other = RequestId {
        client_id: 0xbeef,
        seq: 1,
        first_incomplete: 1,
    };
    apply1(
        &mut st,
        1,
        tagged(id(1, 1), create("/a", CreateMode::Persistent)),
    );
    apply1(
        &mut st,
        2,
        tagged(other, create("/b", CreateMode::Persistent)),
    );
    assert_eq!(st.clients().len(), 2);

    // The leader picks clients idle before time_of(2) + 1 (C only), then C writes again
    // before the expiry is applied: C is kept.
    let (ids, before_ms) = st
        .clients()
        .expirable(time_of(2) + 1 + 60_000, 60_000, 100, 10)
        .expect("something to expire");
    assert_eq!(ids, vec![0xbeef, C]);
    apply1(
        &mut st,
        3,
        tagged(id(2, 2), create("/c", CreateMode::Persistent)),
    );
    let a = st.apply(
        4,
        &Command {
            time_ms: time_of(4),
            requests: vec![Request::ExpireClients {
                client_ids: ids,
                before_ms,
            }],
        },
    );
    assert_eq!(
        a.touched_clients.into_iter().collect::<Vec<_>>(),
        vec![0xbeef]
    );
    assert_eq!(st.clients().len(), 1);
    assert!(st.clients().get(C).is_some());

    // Over capacity: the least recently active go first, whatever the TTL.
    let (ids, _) = st
        .clients()
        .expirable(time_of(4), 600_000, 0, 10)
        .expect("over capacity");
    assert_eq!(ids, vec![C]);
    assert!(st.clients().expirable(time_of(4), 600_000, 1, 10).is_none());
}

#[test]
fn the_digest_covers_the_request_id_table() {
    let mut a = State::new();
    let mut b = State::new();
    apply1(
        &mut a,
        1,
        tagged(id(1, 1), create("/x", CreateMode::Persistent)),
    );
    apply1(&mut b, 1, create("/x", CreateMode::Persistent));
    assert_eq!(tree_digest(&a), tree_digest(&b), "same tree");
    assert_ne!(
        a.digest(),
        b.digest(),
        "a remembered result is part of the state"
    );

    // Two members that applied the same log agree, copies and stale requests included.
    let mut c = State::new();
    let log = [
        tagged(id(1, 1), create("/x", CreateMode::Persistent)),
        tagged(id(1, 1), create("/x", CreateMode::Persistent)),
        tagged(id(2, 2), create("/x", CreateMode::Persistent)),
        tagged(id(1, 1), create("/x", CreateMode::Persistent)),
    ];
    let mut d = State::new();
    for (z, r) in log.iter().enumerate() {
        apply1(&mut c, z as u64 + 1, r.clone());
        apply1(&mut d, z as u64 + 1, r.clone());
    }
    assert_eq!(c.digest(), d.digest());
    assert_eq!(c, d);
}

#[test]
fn requests_without_an_id_behave_as_before() {
    let mut st = State::new();
    assert!(apply1(&mut st, 1, create("/a", CreateMode::Persistent)).is_ok());
    let again = apply1(&mut st, 2, create("/a", CreateMode::Persistent));
    assert!(
        matches!(again, RequestResult::Multi(Err(ref f)) if f.error == BatonError::NodeExists("/a".into()))
    );
    assert!(st.clients().is_empty());
}

#[test]
fn a_nested_request_id_is_refused_not_applied() {
    let mut st = State::new();
    let nested = tagged(
        id(1, 1),
        tagged(id(2, 1), create("/n", CreateMode::Persistent)),
    );
    let r = apply1(&mut st, 1, nested);
    assert!(
        matches!(r, RequestResult::Done(Err(BatonError::BadArguments(_)))),
        "{r:?}"
    );
    assert!(st.get("/n").is_none());
}
