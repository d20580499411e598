//! Locks as the Locks/Elections services read them from a [`State`]: the contenders of a lock
//! path and whether a node holds its lock with a fencing token. The rules themselves (the
//! contender data, fencing tokens, queue order) are in [`super::lock_queue`], re-exported here.

pub use super::lock_queue::{
    decode_data, encode_data, sequence, token, Contender, LockKind, CONTENDER_PREFIX,
};
use super::state::State;

/// The contenders of the lock at `lock_path`, in queue order, with who holds it. Children
/// that are not contenders are ignored.
pub fn contenders(state: &State, lock_path: &str) -> Vec<Contender> {
    state.lock_contenders(lock_path)
}

/// Whether `lock_node` holds its lock now with fencing token `token`.
pub fn holds(state: &State, lock_node: &str, token: u64) -> bool {
    state.holds_lock(lock_node, token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{Command, CreateMode, Op, Request};
    use bytes::Bytes;

    fn setup(kinds: &[LockKind]) -> (State, Vec<String>) {
        let mut st = State::new();
        let mut z = 1;
        st.apply(
            z,
            &Command {
                time_ms: 1,
                requests: vec![
                    Request::OpenSession {
                        session_id: 7,
                        secret: Bytes::from_static(b"s"),
                        timeout_ms: 1000,
                    },
                    Request::Multi {
                        ops: vec![Op::Create {
                            path: "/l".into(),
                            data: Bytes::new(),
                            mode: CreateMode::Container,
                            session_id: 0,
                            ttl_ms: 0,
                            acl: Vec::new(),
                        }],
                        single: true,
                        caller: None,
                    },
                ],
            },
        );
        let mut nodes = Vec::new();
        for k in kinds {
            z += 1;
            let out = st.apply(
                z,
                &Command {
                    time_ms: 1,
                    requests: vec![Request::Multi {
                        ops: vec![Op::Create {
                            path: "/l/lock-".into(),
                            data: encode_data(*k, b"me"),
                            mode: CreateMode::EphemeralSequential,
                            session_id: 7,
                            ttl_ms: 0,
                            acl: Vec::new(),
                        }],
                        single: true,
                        caller: None,
                    }],
                },
            );
            match &out.results[0] {
                crate::tree::RequestResult::Multi(Ok(o)) => match &o[0] {
                    crate::tree::OpOutcome::Create { path, .. } => nodes.push(path.clone()),
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            }
        }
        (st, nodes)
    }

    fn holders(st: &State) -> Vec<bool> {
        contenders(st, "/l").iter().map(|c| c.holder).collect()
    }

    #[test]
    fn exclusive_lock_is_fifo() {
        use LockKind::*;
        let (st, _) = setup(&[Exclusive, Exclusive, Exclusive]);
        assert_eq!(holders(&st), vec![true, false, false]);
    }

    #[test]
    fn shared_holders_run_together_until_a_writer() {
        use LockKind::*;
        let (st, _) = setup(&[Shared, Shared, Exclusive, Shared]);
        assert_eq!(holders(&st), vec![true, true, false, false]);
        let (st, _) = setup(&[Exclusive, Shared, Shared]);
        assert_eq!(holders(&st), vec![true, false, false]);
    }

    #[test]
    fn semaphore_admits_n() {
        let (st, _) = setup(&[LockKind::Semaphore(2); 4]);
        assert_eq!(holders(&st), vec![true, true, false, false]);
    }

    #[test]
    fn tokens_increase_and_holds_checks_them() {
        let (st, nodes) = setup(&[LockKind::Exclusive, LockKind::Exclusive]);
        let cs = contenders(&st, "/l");
        assert!(cs[0].token < cs[1].token);
        assert_eq!(cs[0].data.as_ref(), b"me");
        assert_eq!(cs[0].session, 7);
        assert!(holds(&st, &nodes[0], cs[0].token));
        assert!(!holds(&st, &nodes[0], cs[0].token + 1));
        assert!(
            !holds(&st, &nodes[1], cs[1].token),
            "a waiter does not hold"
        );
        assert!(!holds(&st, "/l/lock-9999999999", 1));
    }
}
