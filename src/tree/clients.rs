//! Request ids: the table that makes a retried write apply at most once.
//!
//! A client that numbers its writes (`RequestId { client_id, seq, first_incomplete }`) may
//! send one again after its outcome became unknown (a timeout, a leader killed while the write
//! was pending, a broken connection). The table remembers, per client id, the result and zxid
//! of every write applied whose answer the client may not have received yet: a copy of such a
//! write is answered with the remembered result (errors included) and changes nothing.
//!
//! The table is part of the replicated state: it changes only by applying log entries (the
//! entry's time, never the applying member's clock), so every member holds the same table;
//! it is stored with the tree, carried in snapshots and hashed into [`super::State::digest`].
//!
//! Memory stays bounded three ways:
//! - **Acknowledgements.** Every request carries the client's lowest sequence number still
//!   waiting for an answer; every result before it is dropped. A client that waits for each
//!   write before the next keeps one result.
//! - **A window per client.** At most [`MAX_REMEMBERED`] results per client: a client with
//!   more writes in flight than that loses the oldest ones, whose copies then get
//!   `STALE_REQUEST` (never a second application).
//! - **Expiry.** The leader proposes [`super::Request::ExpireClients`] for clients idle longer
//!   than `--client-ttl-ms`, and for the least recently active ones when there are more than
//!   `--max-clients`; a copy that arrives after its client was forgotten is applied as new,
//!   so the TTL must exceed the time a client keeps retrying one write.
//!
//! Sequence numbers of one client may be applied out of order (pipelined writes through
//! different members): whether a number was applied is decided by the set of remembered
//! numbers, not by the highest one. Every applied number at or above `oldest` is in that set,
//! so a number at or above `oldest` that is not in it was never applied.

use imbl::OrdMap;

use super::types::{RequestId, RequestResult, Zxid};
use crate::error::BatonError;

/// Most results remembered per client (its writes answered by the cluster whose answer it
/// has not yet acknowledged). Part of the replicated state machine's rules: changing it
/// changes what apply does, so it is a constant, not a setting.
pub const MAX_REMEMBERED: usize = 1024;

/// What the state machine remembers of one client.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ClientRecord {
    /// Every sequence number below this one is forgotten: a copy of it is stale.
    pub oldest: u64,
    /// Entry time (Unix ms) of the client's last write: what expiry goes by.
    pub last_ms: i64,
    /// Results of the applied writes at or above `oldest`, by sequence number, with the zxid
    /// of the entry that applied each.
    pub results: OrdMap<u64, (Zxid, RequestResult)>,
}

/// Every client's record.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ClientTable {
    clients: OrdMap<u64, ClientRecord>,
}

impl ClientTable {
    /// Number of clients remembered.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether no client is remembered.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Number of results remembered, over all clients.
    pub fn result_count(&self) -> usize {
        self.clients.values().map(|c| c.results.len()).sum()
    }

    /// One client's record.
    pub fn get(&self, client_id: u64) -> Option<&ClientRecord> {
        self.clients.get(&client_id)
    }

    /// Every record, by client id.
    pub fn iter(&self) -> impl Iterator<Item = (&u64, &ClientRecord)> {
        self.clients.iter()
    }

    /// Puts a stored record back (loading a snapshot or the stored tree).
    pub fn insert(&mut self, client_id: u64, record: ClientRecord) {
        self.clients.insert(client_id, record);
    }

    /// Decides what to do with a write carrying `id`, applied at entry time `time_ms`: `None`
    /// to apply it, or the answer for a copy (the remembered result, or `STALE_REQUEST`).
    /// Takes the acknowledgement the request carries in any case.
    pub fn admit(&mut self, id: &RequestId, time_ms: i64) -> Option<RequestResult> {
        let rec = self.clients.entry(id.client_id).or_default();
        rec.last_ms = rec.last_ms.max(time_ms);
        if id.first_incomplete > rec.oldest {
            rec.oldest = id.first_incomplete;
            let kept = rec.results.get(&id.first_incomplete).cloned();
            let (_, mut above) = rec.results.split(&id.first_incomplete);
            if let Some(r) = kept {
                above.insert(id.first_incomplete, r);
            }
            rec.results = above;
        }
        if let Some((zxid, result)) = rec.results.get(&id.seq) {
            return Some(RequestResult::Duplicate {
                zxid: *zxid,
                result: Box::new(result.clone()),
            });
        }
        if id.seq < rec.oldest {
            return Some(RequestResult::Stale(BatonError::StaleRequest {
                client_id: id.client_id,
                seq: id.seq,
                oldest: rec.oldest,
            }));
        }
        None
    }

    /// Remembers the result of a write admitted by [`ClientTable::admit`] and applied in the
    /// entry at `zxid`, dropping the client's oldest results beyond [`MAX_REMEMBERED`].
    pub fn record(&mut self, id: &RequestId, zxid: Zxid, result: &RequestResult) {
        let rec = self.clients.entry(id.client_id).or_default();
        rec.results.insert(id.seq, (zxid, result.clone()));
        while rec.results.len() > MAX_REMEMBERED {
            if let Some(seq) = rec.results.get_min().map(|(seq, _)| *seq) {
                rec.results.remove(&seq);
                rec.oldest = rec.oldest.max(seq.saturating_add(1));
            }
        }
    }

    /// Forgets the listed clients whose last write is older than `before_ms`; returns the ids
    /// removed.
    pub fn expire(&mut self, client_ids: &[u64], before_ms: i64) -> Vec<u64> {
        let mut removed = Vec::new();
        for id in client_ids {
            if self.clients.get(id).is_some_and(|c| c.last_ms < before_ms) {
                self.clients.remove(id);
                removed.push(*id);
            }
        }
        removed
    }

    /// What the leader proposes to expire at `now_ms`: clients idle for more than `ttl_ms`,
    /// and, while more than `max_clients` are remembered, the least recently active ones; at
    /// most `limit` ids. Returns the ids and the `before_ms` to propose with them (`None` if
    /// there is nothing to expire).
    pub fn expirable(
        &self,
        now_ms: i64,
        ttl_ms: i64,
        max_clients: usize,
        limit: usize,
    ) -> Option<(Vec<u64>, i64)> {
        let cutoff = now_ms.saturating_sub(ttl_ms);
        let excess = self.clients.len().saturating_sub(max_clients);
        if excess == 0 {
            let ids: Vec<u64> = self
                .clients
                .iter()
                .filter(|(_, c)| c.last_ms < cutoff)
                .map(|(id, _)| *id)
                .take(limit)
                .collect();
            return (!ids.is_empty()).then_some((ids, cutoff));
        }
        let mut by_age: Vec<(i64, u64)> = self
            .clients
            .iter()
            .map(|(id, c)| (c.last_ms, *id))
            .collect();
        by_age.sort_unstable();
        let picked: Vec<(i64, u64)> = by_age
            .into_iter()
            .enumerate()
            .take_while(|(i, (ms, _))| *i < excess || *ms < cutoff)
            .map(|(_, p)| p)
            .take(limit)
            .collect();
        let newest = picked.last().map(|(ms, _)| *ms)?;
        // Apply removes a listed client only if it has not written since it was picked.
        let before_ms = cutoff.max(newest.saturating_add(1));
        Some((picked.into_iter().map(|(_, id)| id).collect(), before_ms))
    }

    /// Feeds the table into a digest, in client-id order.
    pub fn hash_into(&self, h: &mut impl std::hash::Hasher) {
        use std::hash::Hash;
        self.clients.len().hash(h);
        for (id, c) in &self.clients {
            (id, c.oldest, c.last_ms, c.results.len()).hash(h);
            for (seq, (zxid, result)) in &c.results {
                (seq, zxid).hash(h);
                // The result's fields, through its derived Debug form: deterministic, and every
                // field (paths, stats, errors) takes part.
                format!("{result:?}").hash(h);
            }
        }
    }
}
