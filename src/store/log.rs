//! The Raft log and vote on sled: openraft's `RaftLogStorage` and `RaftLogReader`.
//!
//! Entries live in `raft_log` under their index as a u64 big-endian key (so key order is log
//! order); the vote, the committed log id and the last purged log id live in `raft_meta`.
//!
//! Crash ordering (every rule leans on "a successful [`Store::durable_flush`] makes every
//! earlier write durable"):
//! - `append`: one `apply_batch` (readable at once), one durable flush, then the callback.
//! - `save_vote`: insert, durable flush, return.
//! - `save_committed`: insert, no flush. A lost `committed` only means openraft re-applies
//!   less at start-up and waits for the leader instead.
//! - `truncate`: one batch, durable flush.
//! - `purge`: write `last_purged`, durable flush, *then* delete the entries, in bounded
//!   batches. A crash in between leaves entries at or below `last_purged`; opening the store
//!   deletes them, and [`LogStore::get_log_state`](openraft::storage::RaftLogStorage) never
//!   reports them.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogState, RaftLogReader, StorageError};

use super::codec::{self, Entry, Vote};
use super::{keys, Store, StoreError};
use crate::consensus::{LogId, TypeConfig};

/// Entries deleted per sled batch when purging, bounding the memory a purge takes.
const PURGE_BATCH: usize = 1024;

/// Soft cap on the bytes one replication read returns (`limited_get_log_entries`), so an
/// AppendEntries request stays well under tonic's default 4 MiB message limit. At least one
/// entry is always returned.
pub const MAX_REPLICATION_READ_BYTES: usize = 1 << 20;

/// The log store. Clones share the trees; a clone serves as the log reader of the
/// replication tasks.
#[derive(Clone, Debug)]
pub struct LogStore {
    store: Store,
    log: sled::Tree,
    meta: sled::Tree,
}

fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn read_logs(e: StoreError) -> StorageError<u64> {
    e.into_storage(ErrorSubject::Logs, ErrorVerb::Read)
}

fn write_logs(e: StoreError) -> StorageError<u64> {
    e.into_storage(ErrorSubject::Logs, ErrorVerb::Write)
}

impl LogStore {
    /// Opens the log on `store`, finishing a purge a crash interrupted.
    ///
    /// # Errors
    /// sled errors, or an undecodable `last_purged`.
    pub fn open(store: &Store) -> Result<LogStore, StoreError> {
        let ls = LogStore {
            store: store.clone(),
            log: store.raft_log().clone(),
            meta: store.raft_meta().clone(),
        };
        if let Some(purged) = ls.last_purged()? {
            ls.delete_upto(purged.index)?;
        }
        Ok(ls)
    }

    /// The last purged log id.
    fn last_purged(&self) -> Result<Option<LogId>, StoreError> {
        self.read_log_id(keys::LAST_PURGED)
    }

    fn read_log_id(&self, key: &[u8]) -> Result<Option<LogId>, StoreError> {
        match self.meta.get(key)? {
            None => Ok(None),
            Some(v) => Ok(Some(codec::decode_log_id(&v)?)),
        }
    }

    fn decode_at(k: &[u8], v: &[u8]) -> Result<Entry, StoreError> {
        let e = codec::decode_entry(v)?;
        if k != key(e.log_id.index) {
            return Err(StoreError::Corrupt(format!(
                "log entry {} stored under key {k:02x?}",
                e.log_id
            )));
        }
        Ok(e)
    }

    /// Reads the entries in `[start, end)` (`end` None = to the last), stopping once
    /// `max_bytes` of encoded entries are read (always returning at least one).
    fn read(
        &self,
        start: u64,
        end: Option<u64>,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let iter = match end {
            Some(end) if end <= start => return Ok(Vec::new()),
            Some(end) => self.log.range(key(start)..key(end)),
            None => self.log.range(key(start)..),
        };
        let mut out = Vec::new();
        let mut bytes = 0;
        for kv in iter {
            let (k, v) = kv?;
            bytes += v.len();
            out.push(Self::decode_at(&k, &v)?);
            if bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// Deletes every entry at or below `index`, in batches of [`PURGE_BATCH`]. Not flushed:
    /// `last_purged` already covers them.
    fn delete_upto(&self, index: u64) -> Result<(), StoreError> {
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for kv in self.log.range(..=key(index)).keys().take(PURGE_BATCH) {
                batch.remove(kv?);
                n += 1;
            }
            if n == 0 {
                return Ok(());
            }
            self.log.apply_batch(batch)?;
        }
    }
}

/// `[start, end)` of a range of indexes; `end` None = unbounded.
fn bounds(range: &impl RangeBounds<u64>) -> Option<(u64, Option<u64>)> {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.checked_add(1),
        Bound::Excluded(e) => Some(*e),
        Bound::Unbounded => None,
    };
    Some((start, end))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<u64>> {
        let Some((start, end)) = bounds(&range) else {
            return Ok(Vec::new());
        };
        self.read(start, end, usize::MAX).map_err(read_logs)
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError<u64>> {
        self.read(start, Some(end), MAX_REPLICATION_READ_BYTES)
            .map_err(read_logs)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let last_purged = self.last_purged().map_err(read_logs)?;
        let last_entry = match self.log.last().map_err(|e| read_logs(e.into()))? {
            Some((k, v)) => Some(Self::decode_at(&k, &v).map_err(read_logs)?.log_id),
            None => None,
        };
        // Entries at or below `last_purged` may survive a crash mid-purge: ignore them.
        let last_log_id = match (last_entry, last_purged) {
            (Some(e), Some(p)) if e.index <= p.index => Some(p),
            (Some(e), _) => Some(e),
            (None, p) => p,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError<u64>> {
        let write_vote = |e: StoreError| e.into_storage(ErrorSubject::Vote, ErrorVerb::Write);
        self.meta
            .insert(keys::VOTE, codec::encode_vote(vote))
            .map_err(|e| write_vote(e.into()))?;
        self.store.spawn_durable_flush().await.map_err(write_vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError<u64>> {
        let read_vote = |e: StoreError| e.into_storage(ErrorSubject::Vote, ErrorVerb::Read);
        match self.meta.get(keys::VOTE).map_err(|e| read_vote(e.into()))? {
            None => Ok(None),
            Some(v) => Ok(Some(
                codec::decode_vote(&v).map_err(|e| read_vote(e.into()))?,
            )),
        }
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError<u64>> {
        let r = match committed {
            Some(c) => self.meta.insert(keys::COMMITTED, codec::encode_log_id(&c)),
            None => self.meta.remove(keys::COMMITTED),
        };
        r.map_err(|e| write_logs(e.into()))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError<u64>> {
        self.read_log_id(keys::COMMITTED).map_err(read_logs)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut batch = sled::Batch::default();
        let mut any = false;
        for e in entries {
            batch.insert(&key(e.log_id.index), codec::encode_entry(&e));
            any = true;
        }
        if !any {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        if let Err(e) = self.log.apply_batch(batch) {
            let e = StoreError::from(e);
            callback.log_io_completed(Err(e.to_io()));
            return Err(write_logs(e));
        }
        match self.store.spawn_durable_flush().await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(e.to_io()));
                Err(write_logs(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<u64>> {
        let mut batch = sled::Batch::default();
        for k in self.log.range(key(log_id.index)..).keys() {
            batch.remove(k.map_err(|e| write_logs(e.into()))?);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| write_logs(e.into()))?;
        self.store.spawn_durable_flush().await.map_err(write_logs)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<u64>> {
        let purge_err = |e: StoreError| e.into_storage(ErrorSubject::Logs, ErrorVerb::Delete);
        // Never move last_purged backwards (openraft does not ask, but a replay might).
        if let Some(prev) = self.last_purged().map_err(purge_err)? {
            if prev.index >= log_id.index {
                return Ok(());
            }
        }
        self.meta
            .insert(keys::LAST_PURGED, codec::encode_log_id(&log_id))
            .map_err(|e| purge_err(e.into()))?;
        self.store.spawn_durable_flush().await.map_err(purge_err)?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.delete_upto(log_id.index))
            .await
            .map_err(|e| purge_err(e.into()))?
            .map_err(purge_err)
    }
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftLogStorageExt;
    use openraft::{CommittedLeaderId, EntryPayload, Membership};

    use super::*;
    use crate::tree::{Command, Request};

    fn lid(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn blank(term: u64, index: u64) -> Entry {
        Entry {
            log_id: lid(term, index),
            payload: EntryPayload::Blank,
        }
    }

    fn normal(term: u64, index: u64) -> Entry {
        Entry {
            log_id: lid(term, index),
            payload: EntryPayload::Normal(Command {
                time_ms: index as i64,
                requests: vec![Request::Noop],
            }),
        }
    }

    /// Appends and waits for the flush callback.
    async fn append(ls: &mut LogStore, entries: Vec<Entry>) {
        ls.blocking_append(entries).await.expect("append");
    }

    #[tokio::test]
    async fn everything_comes_back_after_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let membership = Membership::new(vec![[1, 2, 3].into()], ());
        {
            let store =
                Store::open(dir.path(), crate::store::DEFAULT_CACHE_CAPACITY).expect("open");
            let mut ls = LogStore::open(&store).expect("log");
            append(&mut ls, vec![blank(1, 1), normal(1, 2)]).await;
            append(
                &mut ls,
                vec![
                    Entry {
                        log_id: lid(2, 3),
                        payload: EntryPayload::Membership(membership.clone()),
                    },
                    normal(2, 4),
                ],
            )
            .await;
            ls.save_vote(&Vote::new_committed(2, 1))
                .await
                .expect("vote");
            ls.save_committed(Some(lid(2, 3))).await.expect("committed");
            // save_committed is not flushed by itself; the next durable flush covers it.
            store.spawn_durable_flush().await.expect("flush");
        }
        let store = Store::open(dir.path(), crate::store::DEFAULT_CACHE_CAPACITY).expect("reopen");
        let mut ls = LogStore::open(&store).expect("log");
        let entries = ls.try_get_log_entries(..).await.expect("read");
        let ids: Vec<LogId> = entries.iter().map(|e| e.log_id).collect();
        assert_eq!(ids, vec![lid(1, 1), lid(1, 2), lid(2, 3), lid(2, 4)]);
        match &entries[2].payload {
            EntryPayload::Membership(m) => assert_eq!(m, &membership),
            p => panic!("unexpected payload {p:?}"),
        }
        match &entries[3].payload {
            EntryPayload::Normal(c) => assert_eq!(c.time_ms, 4),
            p => panic!("unexpected payload {p:?}"),
        }
        assert_eq!(
            ls.read_vote().await.expect("vote"),
            Some(Vote::new_committed(2, 1))
        );
        assert_eq!(
            ls.read_committed().await.expect("committed"),
            Some(lid(2, 3))
        );
        let st = ls.get_log_state().await.expect("state");
        assert_eq!(st.last_log_id, Some(lid(2, 4)));
        assert_eq!(st.last_purged_log_id, None);
    }

    #[tokio::test]
    async fn purge_survives_a_crash_between_flush_and_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store =
                Store::open(dir.path(), crate::store::DEFAULT_CACHE_CAPACITY).expect("open");
            let mut ls = LogStore::open(&store).expect("log");
            append(&mut ls, (1..=10).map(|i| normal(1, i)).collect()).await;
            // What purge(5) does up to its flush, then "crash" before deleting.
            store
                .raft_meta()
                .insert(keys::LAST_PURGED, codec::encode_log_id(&lid(1, 5)))
                .expect("insert");
            store.spawn_durable_flush().await.expect("flush");
            // Before reopening, get_log_state must not see the leftovers either.
            let st = ls.get_log_state().await.expect("state");
            assert_eq!(st.last_purged_log_id, Some(lid(1, 5)));
            assert_eq!(st.last_log_id, Some(lid(1, 10)));
        }
        let store = Store::open(dir.path(), crate::store::DEFAULT_CACHE_CAPACITY).expect("reopen");
        let mut ls = LogStore::open(&store).expect("log");
        let first = ls.try_get_log_entries(..).await.expect("read");
        assert_eq!(first.first().map(|e| e.log_id), Some(lid(1, 6)));
        assert_eq!(first.len(), 5);
        let st = ls.get_log_state().await.expect("state");
        assert_eq!(st.last_purged_log_id, Some(lid(1, 5)));
        assert_eq!(st.last_log_id, Some(lid(1, 10)));
    }

    #[tokio::test]
    async fn purge_of_everything_keeps_the_last_log_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store =
                Store::open(dir.path(), crate::store::DEFAULT_CACHE_CAPACITY).expect("open");
            let mut ls = LogStore::open(&store).expect("log");
            append(&mut ls, (1..=3000).map(|i| blank(1, i)).collect()).await;
            ls.purge(lid(1, 2500)).await.expect("purge");
            assert_eq!(ls.try_get_log_entries(..).await.expect("read").len(), 500);
            ls.purge(lid(1, 3000)).await.expect("purge all");
            // A stale, lower purge is ignored.
            ls.purge(lid(1, 10)).await.expect("purge lower");
        }
        // purge() flushed last_purged before deleting, so it is on disk.
        let store = Store::open(dir.path(), crate::store::DEFAULT_CACHE_CAPACITY).expect("reopen");
        let mut ls = LogStore::open(&store).expect("log");
        assert!(ls.try_get_log_entries(..).await.expect("read").is_empty());
        let st = ls.get_log_state().await.expect("state");
        assert_eq!(st.last_purged_log_id, Some(lid(1, 3000)));
        assert_eq!(st.last_log_id, Some(lid(1, 3000)));
    }

    #[tokio::test]
    async fn truncate_and_limited_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), crate::store::DEFAULT_CACHE_CAPACITY).expect("open");
        let mut ls = LogStore::open(&store).expect("log");
        append(&mut ls, (1..=10).map(|i| normal(1, i)).collect()).await;
        ls.truncate(lid(1, 8)).await.expect("truncate");
        let st = ls.get_log_state().await.expect("state");
        assert_eq!(st.last_log_id, Some(lid(1, 7)));
        assert_eq!(ls.try_get_log_entries(3..=4).await.expect("read").len(), 2);
        assert!(ls.try_get_log_entries(5..5).await.expect("read").is_empty());
        assert_eq!(
            ls.limited_get_log_entries(1, 8).await.expect("read").len(),
            7
        );
        // Big entries: the byte cap cuts the read short but returns at least one.
        let big = |i| Entry {
            log_id: lid(2, i),
            payload: EntryPayload::Normal(Command {
                time_ms: 0,
                requests: vec![Request::ExpireTtl(vec!["x".repeat(400 * 1024)])],
            }),
        };
        append(&mut ls, (8..=12).map(big).collect()).await;
        let got = ls.limited_get_log_entries(8, 13).await.expect("read");
        assert!(!got.is_empty() && got.len() < 5, "got {}", got.len());
        assert_eq!(got[0].log_id, lid(2, 8));
    }
}
