//! Randomized histories: random ops and Multis keep the state's invariants, a failed Multi
//! changes nothing, and replicas applying the same log agree.

use bytes::Bytes;

use super::helpers::*;
use crate::tree::state::State;
use crate::tree::types::*;

/// A small deterministic generator (no external randomness: failures reproduce).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

#[test]
fn random_histories_keep_invariants_and_failed_multis_change_nothing() {
    const PATHS: [&str; 9] = [
        "/a", "/b", "/a/x", "/a/y", "/b/x", "/a/x/z", "/c", "/c/q", "/a/",
    ];
    for seed in 1..=20u64 {
        let mut rng = Lcg(seed);
        let mut st = State::new();
        let mut replica = State::new();
        let mut time = 1_000;
        for zxid in 1..=300u64 {
            time += rng.below(3_000) as i64 - 500; // sometimes goes backwards
            let mut requests = Vec::new();
            for _ in 0..=rng.below(3) {
                let req = match rng.below(12) {
                    0 => Request::OpenSession {
                        session_id: 1 + rng.below(3) as u64,
                        secret: Bytes::from_static(b"s"),
                        timeout_ms: 1,
                    },
                    1 => Request::CloseSession {
                        session_id: 1 + rng.below(3) as u64,
                        secret: Bytes::from_static(if rng.below(4) == 0 { b"x" } else { b"s" }),
                    },
                    2 => Request::ExpireSessions(vec![1 + rng.below(3) as u64]),
                    3 => Request::ExpireTtl(st.expired_ttl_nodes(time, 3)),
                    _ => {
                        let n = 1 + rng.below(4);
                        let ops = (0..n)
                            .map(|_| {
                                let p = rng.pick(&PATHS).to_string();
                                let p = if p.ends_with('/') && rng.below(2) == 0 {
                                    "/a/s-".into()
                                } else {
                                    p
                                };
                                let v = rng.below(3) as i32 - 1;
                                match rng.below(6) {
                                    0 | 1 => {
                                        let mode = *rng.pick(&ALL_MODES);
                                        let mode = if p.ends_with('/') || p.ends_with('-') {
                                            *rng.pick(&[
                                                CreateMode::PersistentSequential,
                                                CreateMode::EphemeralSequential,
                                                CreateMode::PersistentSequentialWithTtl,
                                            ])
                                        } else {
                                            mode
                                        };
                                        create_op_full(
                                            &p,
                                            b"d",
                                            mode,
                                            if mode.is_ephemeral() {
                                                1 + rng.below(3) as u64
                                            } else {
                                                0
                                            },
                                            if mode.is_ttl() {
                                                1 + rng.below(4_000) as i64
                                            } else {
                                                0
                                            },
                                        )
                                    }
                                    2 => delete_op(p.trim_end_matches('/'), v),
                                    3 => set_op(p.trim_end_matches('/'), b"xyz", v),
                                    _ => check_op(p.trim_end_matches('/'), v),
                                }
                            })
                            .collect();
                        multi(ops)
                    }
                };
                requests.push(req);
            }
            // Apply each request alone on a copy to know which ones fail, and check that a
            // failure leaves the copy exactly as it was (but for the clock).
            let mut probe = st.clone();
            for (i, req) in requests.iter().enumerate() {
                let before = probe.clone();
                let a = probe.apply(zxid, &cmd(time, vec![req.clone()]));
                let failed = match &a.results[0] {
                    RequestResult::Multi(r) => r.is_err(),
                    RequestResult::Done(r) => r.is_err(),
                    other => panic!("no request id was sent: {other:?}"),
                };
                if failed {
                    let mut expected = before;
                    expected.last_time_ms = probe.last_time_ms;
                    expected.applied_index = probe.applied_index;
                    assert_eq!(
                        probe, expected,
                        "seed {seed} zxid {zxid} request {i}: {req:?}"
                    );
                    assert!(a.events.is_empty());
                    assert!(a.touched_nodes.is_empty() && a.touched_sessions.is_empty());
                }
            }
            let c = cmd(time, requests);
            let a = st.apply(zxid, &c);
            let b = replica.apply(zxid, &c);
            assert_eq!(a.results, b.results);
            assert_eq!(a.events, b.events);
            assert!(a.events.iter().all(|e| e.zxid == zxid));
            assert_eq!(
                st, probe,
                "seed {seed} zxid {zxid}: one command = its requests in order"
            );
            assert_consistent(&st);
        }
        assert_eq!(st, replica);
        let (nodes, sessions) = export(&st);
        let (mut back, orphans) =
            State::from_records(nodes, sessions, st.last_time_ms, st.last_zxid);
        assert_eq!(orphans, 0);
        back.applied_index = st.applied_index;
        assert_eq!(back, st, "seed {seed}: from_records round trip");
    }
}
