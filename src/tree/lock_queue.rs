//! The lock queue rules: how a contender's node says how it holds the lock, its fencing
//! token, and which contenders hold. Pure functions over a lock's children; the state machine
//! (`CheckFence`, through [`State::holds_lock`](super::State::holds_lock)) and the
//! Locks/Elections services (through [`super::locks`]) both use them.
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

/// The contenders of the lock at `lock_path`, in queue order, with who holds it, from the
/// lock's children as `(name, data, stat)`. Children that are not contenders are ignored.
pub fn contenders<'a>(
    lock_path: &str,
    children: impl IntoIterator<Item = (&'a str, &'a Bytes, &'a Stat)>,
) -> Vec<Contender> {
    let mut out: Vec<(i64, Contender)> = Vec::new();
    for (name, node_data, stat) in children {
        let Some(seq) = sequence(name) else { continue };
        let Some((kind, data)) = decode_data(node_data) else {
            continue;
        };
        out.push((
            seq,
            Contender {
                node: path::join(lock_path, name),
                kind,
                session: stat.ephemeral_owner,
                token: token(stat, name),
                data: node_data.slice(node_data.len() - data.len()..),
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

/// Whether `lock_node`, one of `contenders`, holds its lock now with fencing token `token`.
pub fn holds(contenders: &[Contender], lock_node: &str, token: u64) -> bool {
    contenders
        .iter()
        .any(|c| c.node == lock_node && c.holder && c.token == token)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
