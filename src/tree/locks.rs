//! Lock semantics over ordinary znodes, shared by the state machine (`CheckFence`) and the
//! Locks/Elections services.
//!
//! A contender is an ephemeral-sequential child `lock-NNNNNNNNNN` of the lock path. Its data
//! starts with one tag byte saying how it holds the lock — `X` exclusive, `S` shared, or `P`
//! followed by a big-endian `u32` permit count (semaphore) — then the contender's own data.
//! Contenders are ordered by their sequence suffix (creation order). Contender `i` holds the
//! lock when no exclusive contender precedes it and:
//! - exclusive: it is first;
//! - shared: always (given no exclusive before it);
//! - semaphore with `n` permits: fewer than `n` contenders precede it.
//!
//! Holders therefore always form a prefix of the queue, so when the queue changes only the
//! first waiters can become holders: waking stops at the first waiter still blocked.
//!
//! The fencing token of a contender is `czxid << 20 | (sequence & 0xFFFFF)`: czxid orders
//! contenders created in different log entries, the sequence suffix orders those created in
//! the same entry (group commit can put several creates in one entry). Holders are granted in
//! creation order, so tokens strictly increase across holders of a path, across failovers and
//! restarts (zxids are durable), and even if the lock path is deleted and created again.

use bytes::{BufMut, Bytes, BytesMut};

use super::path;
use super::state::State;
use super::types::{SessionId, Stat};

/// Prefix of contender node names.
pub const CONTENDER_PREFIX: &str = "lock-";

/// How a contender holds the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    /// Alone.
    Exclusive,
    /// With other shared holders.
    Shared,
    /// Counting semaphore with this many permits.
    Semaphore(u32),
}

/// Encodes a contender node's data.
pub fn encode_data(kind: LockKind, data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + data.len());
    match kind {
        LockKind::Exclusive => b.put_u8(b'X'),
        LockKind::Shared => b.put_u8(b'S'),
        LockKind::Semaphore(n) => {
            b.put_u8(b'P');
            b.put_u32(n);
        }
    }
    b.put_slice(data);
    b.freeze()
}

/// Decodes a contender node's data into its kind and the contender's own data. `None` if
/// the node is not a contender.
pub fn decode_data(data: &[u8]) -> Option<(LockKind, &[u8])> {
    match data.first()? {
        b'X' => Some((LockKind::Exclusive, &data[1..])),
        b'S' => Some((LockKind::Shared, &data[1..])),
        b'P' if data.len() >= 5 => {
            let n = u32::from_be_bytes([data[1], data[2], data[3], data[4]]);
            Some((LockKind::Semaphore(n), &data[5..]))
        }
        _ => None,
    }
}

/// The sequence number in a contender's name.
pub fn sequence(name: &str) -> Option<i64> {
    name.strip_prefix(CONTENDER_PREFIX)?.parse().ok()
}

/// The fencing token of a contender node.
pub fn token(stat: &Stat, name: &str) -> u64 {
    let seq = sequence(name).unwrap_or(0) as u64;
    (stat.czxid << 20) | (seq & 0xF_FFFF)
}

/// One contender of a lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contender {
    /// Full path of its node.
    pub node: String,
    /// How it holds the lock.
    pub kind: LockKind,
    /// Owning session.
    pub session: SessionId,
    /// Fencing token.
    pub token: u64,
    /// Its own data.
    pub data: Bytes,
    /// Whether it holds the lock now.
    pub holder: bool,
}

/// The contenders of the lock at `lock_path`, in queue order, with who holds it. Children
/// that are not contenders are ignored.
pub fn contenders(state: &State, lock_path: &str) -> Vec<Contender> {
    let Some(parent) = state.get(lock_path) else {
        return Vec::new();
    };
    let mut out: Vec<(i64, Contender)> = Vec::new();
    for name in &parent.children {
        let Some(seq) = sequence(name) else { continue };
        let full = path::join(lock_path, name);
        let Some(node) = state.get(&full) else {
            continue;
        };
        let Some((kind, data)) = decode_data(&node.data) else {
            continue;
        };
        out.push((
            seq,
            Contender {
                node: full,
                kind,
                session: node.stat.ephemeral_owner,
                token: token(&node.stat, name),
                data: node.data.slice(node.data.len() - data.len()..),
                holder: false,
            },
        ));
    }
    out.sort_by_key(|(seq, _)| *seq);
    let mut list: Vec<Contender> = out.into_iter().map(|(_, c)| c).collect();
    let mut exclusive_before = false;
    for (i, c) in list.iter_mut().enumerate() {
        c.holder = !exclusive_before
            && match c.kind {
                LockKind::Exclusive => i == 0,
                LockKind::Shared => true,
                LockKind::Semaphore(n) => (i as u64) < u64::from(n),
            };
        if c.kind == LockKind::Exclusive {
            exclusive_before = true;
        }
        if !c.holder {
            // Holders are a prefix: everyone after a blocked contender is blocked too.
            exclusive_before = true;
        }
    }
    list
}

/// Whether `lock_node` holds its lock now with fencing token `token`.
pub fn holds(state: &State, lock_node: &str, token: u64) -> bool {
    let Some(parent) = path::parent(lock_node) else {
        return false;
    };
    contenders(state, parent)
        .iter()
        .any(|c| c.node == lock_node && c.holder && c.token == token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{Command, CreateMode, Op, Request};

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
    fn data_round_trips() {
        for k in [
            LockKind::Exclusive,
            LockKind::Shared,
            LockKind::Semaphore(3),
        ] {
            let d = encode_data(k, b"abc");
            assert_eq!(decode_data(&d), Some((k, &b"abc"[..])));
        }
        assert_eq!(decode_data(b""), None);
        assert_eq!(decode_data(b"P\0"), None);
        assert_eq!(decode_data(b"?x"), None);
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
