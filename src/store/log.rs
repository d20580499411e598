//! The Raft log and vote: openraft's `RaftLogStorage` and `RaftLogReader` over the write-ahead
//! log ([`super::wal`]) in `<data_dir>/wal/`.
//!
//! Every live entry has a slot in memory: its log id, where its record is, and (for the most
//! recent [`CACHE_BYTES`] of entries) the entry itself, so replication and apply read what was
//! just appended without touching the disk or decoding it again. Older entries are read back
//! from their segment (one `pread`, checksum checked).
//!
//! Crash ordering:
//! - `append`: the entries are readable at once; the callback runs once their records are
//!   durable (one `fdatasync` for the whole group).
//! - `save_vote`, `truncate`: written and synced before returning.
//! - `save_committed`: written with the next write, never synced on its own: a lost one only
//!   means openraft re-applies less at start-up and waits for the leader instead.
//! - `purge`: the entries leave memory at once; in the background the state machine is made
//!   durable (a sled flush: at start-up it must be at or past every purged entry, because the
//!   log no longer holds them), then a purge record is written and synced, and only then are
//!   whole segments at or below the purge point deleted. A crash before that leaves the entries
//!   on disk, which openraft then sees again and purges anew.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogState, RaftLogReader, StorageError};
use prost::Message;
use tokio::sync::oneshot;

use super::wal::{self, Found, Kind, Loc, Rec, Wal, WalOptions};
use super::{keys, Store, StoreError};
use crate::proto::raft as pb;
use crate::proto::stored;
use crate::stages::{Stage, Stages};
use crate::types::{Entry, LogId, TypeConfig, Vote};

/// Soft cap on the bytes one replication read returns (`limited_get_log_entries`), so an
/// AppendEntries request stays well under the peer message limit. At least one entry is
/// always returned.
pub const MAX_REPLICATION_READ_BYTES: usize = 1 << 20;

/// Encoded bytes of the most recent entries kept decoded in memory. About 0.4 s of writes at
/// 64 clients, enough for apply and replication to find what was just appended. Measured with
/// put 1/16/64 on three members: 8 MiB held 130-150 MB of RSS per member, 1 MiB 70-82 MB, at
/// the same throughput (a cached entry costs several times its encoded size).
pub const CACHE_BYTES: usize = 1 << 20;

/// How long opening waits for the log's lock (held by a store of this process still closing,
/// or by another process).
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// One live entry.
struct Slot {
    log_id: LogId,
    loc: Loc,
    entry: Option<Entry>,
}

/// The in-memory view of the log.
#[derive(Default)]
struct Mem {
    /// Index of `slots[0]`.
    first: u64,
    slots: VecDeque<Slot>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    purged: Option<LogId>,
    /// Encoded bytes of the cached entries.
    cached_bytes: usize,
    /// Slots before this position hold no cached entry.
    cache_floor: usize,
}

impl Mem {
    fn last_log_id(&self) -> Option<LogId> {
        self.slots.back().map(|s| s.log_id).or(self.purged)
    }

    /// Removes the slots of `index` and after.
    fn truncate(&mut self, index: u64) {
        let keep = index.saturating_sub(self.first) as usize;
        while self.slots.len() > keep {
            if let Some(s) = self.slots.pop_back() {
                if s.entry.is_some() {
                    self.cached_bytes -= s.loc.len as usize;
                }
            }
        }
        self.cache_floor = self.cache_floor.min(self.slots.len());
        if self.slots.is_empty() {
            self.first = index.max(self.purged.map_or(0, |p| p.index + 1));
        }
    }

    /// Removes the slots up to and including `index`.
    fn purge(&mut self, index: u64) {
        while self.first <= index {
            match self.slots.pop_front() {
                Some(s) => {
                    if s.entry.is_some() {
                        self.cached_bytes -= s.loc.len as usize;
                    }
                    self.cache_floor = self.cache_floor.saturating_sub(1);
                }
                None => {
                    self.first = index + 1;
                    return;
                }
            }
            self.first += 1;
        }
    }

    fn push(&mut self, log_id: LogId, loc: Loc, entry: Option<Entry>) {
        if !self.slots.is_empty() && log_id.index != self.first + self.slots.len() as u64 {
            // Not the next index: nothing before it can be used (openraft truncates before it
            // overwrites, and never leaves a hole; a replayed log may start after a gap that a
            // purge record covers).
            self.slots.clear();
            self.cached_bytes = 0;
            self.cache_floor = 0;
        }
        if self.slots.is_empty() {
            self.first = log_id.index;
        }
        if entry.is_some() {
            self.cached_bytes += loc.len as usize;
        }
        self.slots.push_back(Slot { log_id, loc, entry });
    }

    /// Drops cached entries, oldest first, until the cache fits its budget; only entries whose
    /// record is already written can be dropped (they can be read back).
    fn evict(&mut self, wal: &Wal) {
        while self.cached_bytes > CACHE_BYTES && self.cache_floor < self.slots.len() {
            let s = &mut self.slots[self.cache_floor];
            if s.entry.is_some() {
                if !wal.is_written(s.loc) {
                    return;
                }
                s.entry = None;
                self.cached_bytes -= s.loc.len as usize;
            }
            self.cache_floor += 1;
        }
    }
}

struct Inner {
    wal: Wal,
    /// The sled store: flushed before a purge is recorded.
    store: Store,
    mem: Mutex<Mem>,
    /// Highest purge point recorded durably so far.
    purge_recorded: tokio::sync::watch::Sender<u64>,
    stages: Arc<Stages>,
    /// Held while the log is open.
    _lock: std::fs::File,
}

/// The log store. Clones share the log; a clone serves as the log reader of the replication
/// tasks.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("wal", &self.inner.wal)
            .finish_non_exhaustive()
    }
}

fn read_logs(e: StoreError) -> StorageError<u64> {
    e.into_storage(ErrorSubject::Logs, ErrorVerb::Read)
}

fn write_logs(e: StoreError) -> StorageError<u64> {
    e.into_storage(ErrorSubject::Logs, ErrorVerb::Write)
}

fn decode_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Size of the fixed prefix of an entry record: index, term, leader node.
const ENTRY_PREFIX: usize = 24;

fn entry_log_id(payload: &[u8]) -> Result<LogId, StoreError> {
    if payload.len() < ENTRY_PREFIX {
        return Err(StoreError::Corrupt(format!(
            "an entry record of {} bytes",
            payload.len()
        )));
    }
    Ok(LogId::new(
        openraft::CommittedLeaderId::new(decode_u64(&payload[8..]), decode_u64(&payload[16..])),
        decode_u64(payload),
    ))
}

fn decode_entry_record(payload: Vec<u8>) -> Result<Entry, StoreError> {
    let id = entry_log_id(&payload)?;
    let e = stored::decode_entry_raw(bytes::Bytes::from(payload).slice(ENTRY_PREFIX..))?;
    if e.log_id != id {
        return Err(StoreError::Corrupt(format!(
            "entry record for {id} holds entry {}",
            e.log_id
        )));
    }
    Ok(e)
}

/// Holds `<dir>/LOCK`, waiting up to [`LOCK_WAIT`] for a holder that may be closing.
fn lock_dir(dir: &Path) -> Result<std::fs::File, StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io("create", dir, e))?;
    let path = dir.join("LOCK");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io("open", &path, e))?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: dir.to_path_buf(),
                    detail: "the write-ahead log is in use".into(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(StoreError::io("lock", &path, e)),
        }
    }
}

impl LogStore {
    /// Opens the log in `<data_dir>/wal`, recovering a torn tail, and moves a log that an
    /// earlier version kept in sled into it. Blocking.
    ///
    /// # Errors
    /// The log is locked, damaged (see [`super::wal`]), or unreadable.
    pub fn open(store: &Store, opts: WalOptions) -> Result<LogStore, StoreError> {
        let dir = store.data_dir().join("wal");
        let lock = lock_dir(&dir)?;
        let mut mem = Mem::default();
        let mut err = None;
        let stages = opts.stages.clone();
        let (wal, opened) = Wal::open(&dir, opts, |f: Found<'_>| {
            replay(&mut mem, &f).inspect_err(|e| err = Some(e.to_string()))
        })?;
        if let Some(e) = err {
            return Err(StoreError::Corrupt(e));
        }
        if let Some(p) = mem.purged {
            mem.purge(p.index);
        }
        check_contiguous(&mem)?;
        if opened.torn_bytes > 0 {
            tracing::warn!(
                bytes = opened.torn_bytes,
                "the write-ahead log ended in a torn write (never acknowledged); it was cut off"
            );
        }
        let ls = LogStore {
            inner: Arc::new(Inner {
                wal,
                store: store.clone(),
                mem: Mutex::new(mem),
                purge_recorded: tokio::sync::watch::channel(0).0,
                stages,
                _lock: lock,
            }),
        };
        ls.import_from_sled()?;
        Ok(ls)
    }

    /// Writes `recs` to the WAL and blocks until they are durable (see
    /// [`LogStore::write_synced`] for async callers).
    fn write_synced_blocking(&self, recs: &[Rec<'_>]) -> Result<Vec<Loc>, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let locs = self.inner.wal.write(
            recs,
            true,
            Some(Box::new(move |r| {
                let _ = tx.send(r);
            })),
        )?;
        rx.recv()
            .map_err(|_| StoreError::Task("the log writer stopped".into()))?
            .map_err(|e| StoreError::io("write and sync", self.inner.wal.dir(), e))?;
        Ok(locs)
    }

    fn mem(&self) -> std::sync::MutexGuard<'_, Mem> {
        self.inner
            .mem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes what is pending and stops the log's writer; later writes fail.
    pub fn close(&self) {
        self.inner.wal.close();
    }

    /// The id of the last entry in the log (or of the last purged one).
    pub fn last_log_id(&self) -> Option<LogId> {
        self.mem().last_log_id()
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.inner.wal.segment_count()
    }

    /// Moves the log of a data directory written before the log had a file of its own (it was
    /// kept in sled's `raft_log` tree and `raft_meta`) into the write-ahead log, then removes
    /// it from sled. Repeating it after a crash is harmless: a non-empty write-ahead log is
    /// never overwritten, only the sled copy is removed again.
    fn import_from_sled(&self) -> Result<(), StoreError> {
        let log = self.inner.store.raft_log();
        let meta = self.inner.store.raft_meta();
        let has_old = !log.is_empty() || meta.get(keys::VOTE)?.is_some();
        if !has_old {
            return self.inner.store.set_current_format();
        }
        let empty = {
            let m = self.mem();
            m.slots.is_empty() && m.vote.is_none() && m.purged.is_none()
        };
        if empty {
            tracing::info!("moving the Raft log from sled into the write-ahead log");
            let vote = meta
                .get(keys::VOTE)?
                .map(|v| stored::decode_vote(&v))
                .transpose()?;
            let committed = meta
                .get(keys::COMMITTED)?
                .map(|v| stored::decode_log_id(&v))
                .transpose()?;
            let purged = meta
                .get(keys::LAST_PURGED)?
                .map(|v| stored::decode_log_id(&v))
                .transpose()?;
            let mut entries = Vec::new();
            for kv in log.iter() {
                let (_, v) = kv?;
                let e = stored::decode_entry(&v)?;
                if purged.is_none_or(|p| e.log_id.index > p.index) {
                    entries.push(e);
                }
            }
            let vote_pb = vote.as_ref().map(stored::vote_to_pb);
            let purged_pb = purged.as_ref().map(stored::log_id_to_pb);
            let pbs: Vec<pb::EntryRaw> = entries.iter().map(stored::entry_to_raw).collect();
            let mut recs = Vec::new();
            if let Some(v) = &vote_pb {
                recs.push(Rec::Vote(v));
            }
            if let Some(p) = &purged_pb {
                recs.push(Rec::Purge(p));
            }
            for (e, p) in entries.iter().zip(&pbs) {
                recs.push(entry_rec(e, p));
            }
            self.inner
                .wal
                .set_committed(committed.as_ref().map(stored::log_id_to_pb));
            let locs = self.write_synced_blocking(&recs)?;
            let mut m = self.mem();
            m.vote = vote;
            m.committed = committed;
            m.purged = purged;
            let skip = recs.len() - entries.len();
            for (e, loc) in entries.into_iter().zip(locs.into_iter().skip(skip)) {
                m.push(e.log_id, loc, None);
            }
            if m.slots.is_empty() {
                m.first = purged.map_or(0, |p| p.index + 1);
            }
        }
        let mut batch = sled::Batch::default();
        for k in log.iter().keys() {
            batch.remove(k?);
        }
        log.apply_batch(batch)?;
        for k in [keys::VOTE, keys::COMMITTED, keys::LAST_PURGED] {
            meta.remove(k)?;
        }
        self.inner.store.set_current_format()?;
        self.inner.store.durable_flush()
    }

    /// Reads `[start, end)` (None = from the first / to the last), stopping after `max_bytes` of records
    /// (always returning at least one entry if there is one) or at the first entry that is
    /// gone (purged meanwhile).
    fn read(
        &self,
        start: Option<u64>,
        end: Option<u64>,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut out: Vec<Result<Entry, Loc>> = Vec::new();
        {
            let m = self.mem();
            let last = m.first + m.slots.len() as u64;
            let end = end.map_or(last, |e| e.min(last));
            // Entries before the first live one were purged: the read returns those present.
            let start = start.map_or(m.first, |s| s.max(m.first));
            let mut bytes = 0usize;
            for i in start..end {
                let s = &m.slots[(i - m.first) as usize];
                bytes += s.loc.len as usize;
                out.push(match &s.entry {
                    Some(e) => Ok(e.clone()),
                    None => Err(s.loc),
                });
                if bytes >= max_bytes {
                    break;
                }
            }
        }
        let mut entries = Vec::with_capacity(out.len());
        for o in out {
            match o {
                Ok(e) => entries.push(e),
                Err(loc) => match self.inner.wal.read(loc) {
                    Ok(payload) => entries.push(decode_entry_record(payload)?),
                    // Its segment was deleted by a purge meanwhile: the entry is gone.
                    Err(StoreError::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        break
                    }
                    Err(e) => return Err(e),
                },
            }
        }
        Ok(entries)
    }

    /// Writes records, waits until they are durable.
    async fn write_synced(&self, recs: &[Rec<'_>]) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.inner.wal.write(
            recs,
            true,
            Some(Box::new(move |r| {
                let _ = tx.send(r);
            })),
        )?;
        rx.await
            .map_err(|_| StoreError::Task("the log writer stopped".into()))?
            .map_err(|e| StoreError::io("sync", self.inner.wal.dir(), e))
    }

    /// Records a purge durably, after making the state machine durable, then lets the writer
    /// delete the segments it covers. Blocking.
    fn record_purge(&self, log_id: LogId) -> Result<(), StoreError> {
        self.inner.store.durable_flush()?;
        let p = stored::log_id_to_pb(&log_id);
        self.write_synced_blocking(&[Rec::Purge(&p)])?;
        self.inner
            .purge_recorded
            .send_modify(|v| *v = (*v).max(log_id.index));
        Ok(())
    }

    /// Waits until a purge up to `index` (or further) is recorded durably (its segments are
    /// then being deleted).
    pub async fn wait_purge_recorded(&self, index: u64) {
        let mut rx = self.inner.purge_recorded.subscribe();
        let _ = rx.wait_for(|v| *v >= index).await;
    }
}

fn entry_rec<'a>(e: &Entry, p: &'a pb::EntryRaw) -> Rec<'a> {
    Rec::Entry {
        index: e.log_id.index,
        term: e.log_id.leader_id.term,
        node: e.log_id.leader_id.node_id,
        entry: p,
    }
}

/// Applies one record found at open to the in-memory view.
fn replay(m: &mut Mem, f: &Found<'_>) -> Result<(), StoreError> {
    match f.kind {
        Kind::SegmentHeader => {
            let h = pb::WalSegmentHeader::decode(f.payload)
                .map_err(|e| StoreError::Corrupt(format!("segment header: {e}")))?;
            if let Some(v) = h.vote {
                m.vote = Some(stored::vote_from_pb(v)?);
            }
            if let Some(c) = h.committed {
                m.committed = Some(stored::log_id_from_pb(c)?);
            }
            if let Some(p) = h.purged {
                let p = stored::log_id_from_pb(p)?;
                if m.purged.is_none_or(|q| q.index < p.index) {
                    m.purged = Some(p);
                }
            }
        }
        Kind::Entry => {
            let id = entry_log_id(f.payload)?;
            // An entry at an index already present replaces it and everything after it.
            // Entries of deleted segments may leave a gap before the first remaining one; a
            // purge record covers it (checked once everything is read).
            if !m.slots.is_empty() && id.index < m.first + m.slots.len() as u64 {
                m.truncate(id.index);
            }
            m.push(id, f.loc, None);
        }
        Kind::Vote => m.vote = Some(stored::decode_vote(f.payload)?),
        Kind::Committed => {
            m.committed = if f.payload.is_empty() {
                None
            } else {
                Some(stored::decode_log_id(f.payload)?)
            };
        }
        Kind::Truncate => {
            if f.payload.len() < 8 {
                return Err(StoreError::Corrupt("a short truncate record".into()));
            }
            m.truncate(decode_u64(f.payload));
        }
        Kind::Purge => {
            let p = stored::decode_log_id(f.payload)?;
            if m.purged.is_none_or(|q| q.index < p.index) {
                m.purged = Some(p);
            }
        }
    }
    Ok(())
}

/// The recovered log must run without a hole from the purge point to its end.
fn check_contiguous(m: &Mem) -> Result<(), StoreError> {
    if let (Some(first), Some(p)) = (m.slots.front(), m.purged) {
        if first.log_id.index != p.index + 1 {
            return Err(StoreError::Corrupt(format!(
                "the write-ahead log starts at index {} but was purged only up to {}",
                first.log_id.index, p.index
            )));
        }
    }
    Ok(())
}

/// `[start, end)` of a range of indexes; None = unbounded.
fn bounds(range: &impl RangeBounds<u64>) -> Option<(Option<u64>, Option<u64>)> {
    let start = match range.start_bound() {
        Bound::Included(s) => Some(*s),
        Bound::Excluded(s) => Some(s.checked_add(1)?),
        Bound::Unbounded => None,
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
        self.read(Some(start), Some(end), MAX_REPLICATION_READ_BYTES)
            .map_err(read_logs)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let m = self.mem();
        Ok(LogState {
            last_purged_log_id: m.purged,
            last_log_id: m.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError<u64>> {
        let write_vote = |e: StoreError| e.into_storage(ErrorSubject::Vote, ErrorVerb::Write);
        let v = stored::vote_to_pb(vote);
        self.write_synced(&[Rec::Vote(&v)])
            .await
            .map_err(write_vote)?;
        self.mem().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError<u64>> {
        Ok(self.mem().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError<u64>> {
        self.mem().committed = committed;
        self.inner
            .wal
            .set_committed(committed.as_ref().map(stored::log_id_to_pb));
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError<u64>> {
        Ok(self.mem().committed)
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
        let entries: Vec<Entry> = entries.into_iter().collect();
        if entries.is_empty() {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        let stages = self.inner.stages.clone();
        stages.appending();
        stages.count(Stage::AppendEntries, entries.len() as u64);
        let started = Instant::now();
        let last = entries.last().map_or(0, |e| e.log_id.index);
        let pbs: Vec<pb::EntryRaw> = entries.iter().map(stored::entry_to_raw).collect();
        let recs: Vec<Rec<'_>> = entries
            .iter()
            .zip(&pbs)
            .map(|(e, p)| entry_rec(e, p))
            .collect();
        let mut m = self.mem();
        let locs = self
            .inner
            .wal
            .write(
                &recs,
                true,
                Some(Box::new(move |r| {
                    if r.is_ok() {
                        stages.since(Stage::AppendFlush, started);
                        stages.flushed(last);
                    }
                    callback.log_io_completed(r)
                })),
            )
            .map_err(write_logs)?;
        for (e, loc) in entries.into_iter().zip(locs) {
            if !m.slots.is_empty() && e.log_id.index < m.first + m.slots.len() as u64 {
                m.truncate(e.log_id.index);
            }
            m.push(e.log_id, loc, Some(e));
        }
        m.evict(&self.inner.wal);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<u64>> {
        self.mem().truncate(log_id.index);
        self.write_synced(&[Rec::Truncate(log_id.index)])
            .await
            .map_err(write_logs)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<u64>> {
        let advanced = {
            let mut m = self.mem();
            m.purge(log_id.index);
            // Never move the purge point backwards.
            let advanced = m.purged.is_none_or(|p| p.index < log_id.index);
            if advanced {
                m.purged = Some(log_id);
            }
            advanced
        };
        if advanced {
            // The durable half runs outside the Raft core, on a thread of its own: it needs a
            // flush of the state machine and a sync of the log, and nothing waits for it (a
            // purge lost in a crash is redone).
            let this = self.clone();
            let spawned = std::thread::Builder::new()
                .name("baton-purge".into())
                .spawn(move || {
                    if let Err(e) = this.record_purge(log_id) {
                        tracing::warn!(error = %e, purged = %log_id, "could not record a log purge; it is redone with the next one");
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "could not start recording a log purge; it is redone with the next one");
            }
        }
        Ok(())
    }
}

/// Options of the log from the configuration's segment size (stages recorded nowhere).
pub fn wal_options(segment_bytes: u64) -> WalOptions {
    WalOptions {
        segment_bytes: segment_bytes.max(wal::MIN_SEGMENT_BYTES),
        stages: Arc::default(),
    }
}

#[cfg(test)]
mod tests;
