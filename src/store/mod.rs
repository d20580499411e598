//! The on-disk store: one process-wide sled `Db`, its trees, and how a write becomes durable.
//!
//! # Layout
//!
//! Everything lives under `<data_dir>`:
//!
//! ```text
//! <data_dir>/db/            the sled database (sled 0.34.7 creates these itself):
//!     conf                  sled's storage parameters (segment size, compression, version)
//!     db                    sled's single data file: the log-structured segments of every tree
//!     blobs/<lsn>           values too large for a segment (over ~128 KiB), one file each
//!     snap.<lsn hex>        sled's own page-table snapshot (a recovery cache, fsynced by sled)
//! <data_dir>/snapshots/     Raft snapshots, `<index>-<term>.snap` (see `consensus::state_machine`)
//! ```
//!
//! Trees of the `Db`:
//!
//! | tree        | key                              | value (prost, `proto/baton/raft/v1`) |
//! |-------------|----------------------------------|--------------------------------------|
//! | `raft_meta` | `vote`, `committed`, `last_purged` | `Vote`, `LogId`, `LogId`            |
//! |             | `sm_gen`                         | u64 big-endian: the live `sm.<gen>`  |
//! |             | `data_version`                   | `baton-store` + u32 big-endian       |
//! | `raft_log`  | log index, u64 big-endian        | `Entry`                              |
//! | `sm.<gen>`  | `n`+path / `s`+id BE / `m`+name  | `StoredNode` / `StoredSession` / `StateMeta` |
//!
//! A data directory records [`FORMAT_VERSION`] when it is created; opening a directory of
//! another version, or a sled database that is not Baton's, is refused with a clear error
//! rather than misread.
//!
//! # Durability
//!
//! Nothing written to sled is durable until it is flushed, and sled's own `Db::flush()` is not
//! enough on Linux: it ends with `sync_file_range(2)`, which writes the dirty pages but neither
//! flushes the drive's volatile write cache nor makes file-size metadata durable, and large
//! values written to `blobs/` are never synced at all (sled 0.34.7, `iobuf.rs`,
//! `blob_io.rs`). [`Store::durable_flush`] is therefore the one flush used everywhere (async code runs it
//! through [`Store::spawn_durable_flush`], i.e. in `spawn_blocking`):
//!
//! 1. `Db::flush()`: every write made so far, in every tree, reaches the data file;
//! 2. `fsync` each blob file not synced before, then the `blobs/` directory;
//! 3. `fdatasync` (`File::sync_data`) on our own handle of the data file `<data_dir>/db/db`,
//!    which flushes the drive cache (a FLUSH/FUA on devices that have one).
//!
//! Calls are serialized by a mutex. Because one flush covers
//! every tree, a successful `durable_flush` makes *every earlier write in the Db* durable; the
//! crash-ordering rules of the log store and the state machine rely on exactly that.
//!
//! sled still runs its background flusher (every 500 ms), without the `fdatasync`: data it
//! writes in between is merely *likely* durable, which is all the state machine needs (its
//! writes are never flushed before acknowledging; the log is).
//!
//! # Memory
//!
//! sled's page cache defaults to 1 GiB; we cap it at [`DEFAULT_CACHE_CAPACITY`] (32 MiB,
//! configurable) because a member should run in about 40 MB of RSS. The cap is a target,
//! not a hard limit.

pub mod log;
pub(crate) mod wal;

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};

pub use crate::proto::CodecError;

/// Version of the on-disk format this build writes. Version 1 kept the Raft log in sled;
/// version 2 keeps it in the write-ahead log (`<data_dir>/wal`). A version-1 directory is
/// upgraded when it is opened: its log moves into the write-ahead log.
pub const FORMAT_VERSION: u32 = 2;
/// Oldest on-disk format this build reads (and upgrades).
pub const OLDEST_FORMAT_VERSION: u32 = 1;

/// Prefix of the `data_version` value, telling a Baton store from another sled database.
const FORMAT_MAGIC: &[u8] = b"baton-store";

/// Default sled page-cache size: 32 MiB.
pub const DEFAULT_CACHE_CAPACITY: u64 = 32 << 20;

/// Name of the sled tree holding the vote, committed and purged log ids, and pointers.
const RAFT_META: &str = "raft_meta";
/// Name of the sled tree holding the log entries.
const RAFT_LOG: &str = "raft_log";
/// Prefix of the state-machine trees: `sm.<gen>`.
const SM_PREFIX: &str = "sm.";

/// Keys of the `raft_meta` tree.
pub(crate) mod keys {
    /// The vote (`Vote`).
    pub const VOTE: &[u8] = b"vote";
    /// The last committed log id (`LogId`), saved without a flush.
    pub const COMMITTED: &[u8] = b"committed";
    /// The last purged log id (`LogId`).
    pub const LAST_PURGED: &[u8] = b"last_purged";
    /// The generation of the live state-machine tree (u64 BE).
    pub const SM_GEN: &[u8] = b"sm_gen";
    /// The on-disk format version.
    pub const DATA_VERSION: &[u8] = b"data_version";
}

/// Errors of the store layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (or another `Store` in this one) holds the directory.
    #[error("data directory {path} is locked: is another batond running on it? ({detail})")]
    Locked {
        /// The sled directory.
        path: PathBuf,
        /// sled's message.
        detail: String,
    },
    /// The directory holds something that is not a Baton store.
    #[error("{path} is not a Baton data directory: {reason}")]
    NotBaton {
        /// The sled directory.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },
    /// The directory was written by a Baton with another on-disk format.
    #[error(
        "data directory {path} has on-disk format version {found}; this build reads only \
         version {supported}"
    )]
    VersionMismatch {
        /// The sled directory.
        path: PathBuf,
        /// Version found on disk.
        found: u32,
        /// Version this build supports.
        supported: u32,
    },
    /// sled failed.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A stored record could not be decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// Stored data is inconsistent (decodes, but makes no sense).
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// A blocking storage task panicked or was cancelled.
    #[error("storage task failed: {0}")]
    Task(String),
}

impl StoreError {
    /// Whether trying again later may succeed: only a lock held by a process that may exit.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Locked { .. })
    }

    /// An I/O error on `path` while doing `op`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Converts into openraft's error, naming what was being accessed.
    pub fn into_storage(self, subject: ErrorSubject<u64>, verb: ErrorVerb) -> StorageError<u64> {
        StorageIOError::new(subject, verb, AnyError::new(&self)).into()
    }
}

impl From<tokio::task::JoinError> for StoreError {
    fn from(e: tokio::task::JoinError) -> Self {
        StoreError::Task(e.to_string())
    }
}

/// Handle on the process-wide store. Cheap to clone; every clone shares one sled `Db`.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    data_dir: PathBuf,
    raft_meta: sled::Tree,
    raft_log: sled::Tree,
    /// Held for the whole of a durable flush: serializes flushes and guards the blob set.
    sync: Mutex<SyncState>,
    /// Queue of the state-machine writer thread (see [`Store::write_behind`]).
    writer: mpsc::Sender<WriterMsg>,
    /// Changes queued to the writer and not yet written.
    queued: Arc<AtomicUsize>,
    /// Set once the state-machine writer failed (see [`Store::failure`]).
    failure: tokio::sync::watch::Sender<Option<String>>,
}

/// One change to a sled tree: a key and its new value (None: removed).
pub type Change = (Vec<u8>, Option<Vec<u8>>);

enum WriterMsg {
    Write(sled::Tree, Vec<Change>),
    /// Answered once everything queued before it is written.
    Barrier(mpsc::Sender<Result<(), StoreError>>),
}

/// How long the writer lets changes gather before writing a group.
const WRITER_GATHER: Duration = Duration::from_millis(2);
/// Queued writes the writer merges into one group at most.
const WRITER_MERGE: usize = 256;
/// Queued changes above which [`Store::write_behind_wait`] makes appliers wait.
const WRITER_HIGH_WATER: usize = 4096;

/// Key written first and removed last by each group of changes of [`Store::write_behind`]:
/// a tree that still holds it after a crash was cut off in the middle of a group (see
/// [`Store::write_behind`]).
pub const WRITING_KEY: &[u8] = b"mwriting";

/// The state-machine writer: applies queued changes to sled in order, consecutive writes to
/// the same tree as one group (see [`Store::write_behind`]). An error is kept and reported to
/// the next barrier (a durable flush), which then fails.
fn run_writer(
    rx: mpsc::Receiver<WriterMsg>,
    queued: Arc<AtomicUsize>,
    failure: tokio::sync::watch::Sender<Option<String>>,
) {
    let mut failed: Option<String> = None;
    while let Ok(first) = rx.recv() {
        // sled is written behind: let a few more applies queue up, so the group is larger
        // (fewer sled operations per change under load).
        std::thread::sleep(WRITER_GATHER);
        let mut msgs = vec![first];
        while msgs.len() < WRITER_MERGE {
            match rx.try_recv() {
                Ok(m) => msgs.push(m),
                Err(_) => break,
            }
        }
        let mut group: Option<(sled::Tree, Vec<Change>)> = None;
        let write = |g: Option<(sled::Tree, Vec<Change>)>, failed: &mut Option<String>| {
            if let Some((tree, changes)) = g {
                let n = changes.len();
                if let Err(e) = write_group(&tree, changes) {
                    if failed.is_none() {
                        tracing::error!(error = %e, "writing the state machine to sled failed");
                        *failed = Some(e.to_string());
                        failure.send_replace(Some(format!(
                            "writing the state machine to sled failed: {e}"
                        )));
                    }
                }
                queued.fetch_sub(n, Ordering::SeqCst);
            }
        };
        for m in msgs {
            match m {
                WriterMsg::Write(tree, mut changes) => match &mut group {
                    Some((t, g)) if t.name() == tree.name() => g.append(&mut changes),
                    _ => {
                        write(group.take(), &mut failed);
                        group = Some((tree, changes));
                    }
                },
                WriterMsg::Barrier(tx) => {
                    write(group.take(), &mut failed);
                    let _ = tx.send(match &failed {
                        None => Ok(()),
                        Some(e) => Err(StoreError::Corrupt(format!(
                            "an earlier write of the state machine failed: {e}"
                        ))),
                    });
                }
            }
        }
        write(group.take(), &mut failed);
    }
}

/// Writes one group: the marker, every change in order, then the marker's removal. Plain
/// inserts, not a sled batch: sled 0.34 makes every `apply_batch` seal and write its I/O
/// buffer with a synchronous `sync_file_range` (two device writes per batch), while plain
/// inserts go to disk with sled's buffer when it fills or is flushed. sled recovers a prefix
/// of its writes after a crash, so the marker tells a tree cut off mid-group.
fn write_group(tree: &sled::Tree, changes: Vec<Change>) -> Result<(), sled::Error> {
    // Only the last change of each key matters within a group (the meta record, for one,
    // is rewritten by every apply).
    let mut seen = HashSet::with_capacity(changes.len());
    let mut last: Vec<Change> = changes
        .into_iter()
        .rev()
        .filter(|(k, _)| seen.insert(k.clone()))
        .collect();
    last.reverse();
    tree.insert(WRITING_KEY, &[])?;
    for (k, v) in last {
        match v {
            Some(v) => tree.insert(k, v)?,
            None => tree.remove(k)?,
        };
    }
    tree.remove(WRITING_KEY)?;
    Ok(())
}

struct SyncState {
    /// Our own handle on sled's data file, for `fdatasync`.
    data_file: File,
    blobs_dir: PathBuf,
    /// Blob files already fsynced (blob files are written once and never modified).
    synced_blobs: HashSet<OsString>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("data_dir", &self.inner.data_dir)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the store under `data_dir`, with a sled page cache of
    /// `cache_capacity` bytes ([`DEFAULT_CACHE_CAPACITY`] is a good default). Blocking: call
    /// it before serving, or in `spawn_blocking`.
    ///
    /// # Errors
    /// [`StoreError::Locked`] if another process has the directory open (after waiting up to
    /// 2 s, in case it is this process's own store, still closing),
    /// [`StoreError::NotBaton`] / [`StoreError::VersionMismatch`] if it holds another format,
    /// [`StoreError::Io`] / [`StoreError::Sled`] if it cannot be read or created.
    pub fn open(data_dir: impl AsRef<Path>, cache_capacity: u64) -> Result<Store, StoreError> {
        let data_dir = data_dir.as_ref().to_path_buf();
        let db_dir = data_dir.join("db");
        fs::create_dir_all(&data_dir).map_err(|e| StoreError::io("create", &data_dir, e))?;
        check_not_foreign(&db_dir)?;

        let db = open_db(&db_dir, cache_capacity)?;

        // A database whose trees are all empty holds nothing to misread: it is fresh (or a
        // first open crashed before recording the version). Look before creating any tree,
        // so a foreign database is left as it was found.
        let names = db.tree_names();
        let mut fresh = true;
        for name in &names {
            fresh &= db.open_tree(name)?.is_empty();
        }
        if !fresh && !names.iter().any(|n| n == RAFT_META.as_bytes()) {
            return Err(StoreError::NotBaton {
                path: db_dir,
                reason: format!("a sled database without a {RAFT_META} tree"),
            });
        }
        let raft_meta = db.open_tree(RAFT_META)?;
        match raft_meta.get(keys::DATA_VERSION)? {
            Some(v) => check_version(&db_dir, &v)?,
            None if fresh => {
                let mut v = FORMAT_MAGIC.to_vec();
                v.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
                raft_meta.insert(keys::DATA_VERSION, v)?;
            }
            None => {
                return Err(StoreError::NotBaton {
                    path: db_dir,
                    reason: "a sled database without a Baton format version".into(),
                })
            }
        }
        let raft_log = db.open_tree(RAFT_LOG)?;

        let data_path = db_dir.join("db");
        let data_file =
            File::open(&data_path).map_err(|e| StoreError::io("open", &data_path, e))?;
        let (writer, rx) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let q = queued.clone();
        let (failure, _) = tokio::sync::watch::channel(None);
        let f = failure.clone();
        std::thread::Builder::new()
            .name("baton-sm-write".into())
            .spawn(move || run_writer(rx, q, f))
            .map_err(|e| StoreError::io("spawn the state-machine writer for", &db_dir, e))?;
        let store = Store {
            inner: Arc::new(Inner {
                db,
                data_dir: data_dir.clone(),
                raft_meta,
                raft_log,
                sync: Mutex::new(SyncState {
                    data_file,
                    blobs_dir: db_dir.join("blobs"),
                    synced_blobs: HashSet::new(),
                }),
                writer,
                queued,
                failure,
            }),
        };
        // Make the files sled may just have created reachable after a crash.
        sync_dir(&db_dir)?;
        sync_dir(&data_dir)?;
        store.durable_flush()?;
        Ok(store)
    }

    /// The data directory this store was opened on.
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// Records that the directory now has the current on-disk format. Not flushed.
    ///
    /// # Errors
    /// sled errors.
    pub fn set_current_format(&self) -> Result<(), StoreError> {
        let mut v = FORMAT_MAGIC.to_vec();
        v.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        self.inner.raft_meta.insert(keys::DATA_VERSION, v)?;
        Ok(())
    }

    /// Where Raft snapshot files live: `<data_dir>/snapshots`.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.inner.data_dir.join("snapshots")
    }

    /// The `raft_meta` tree.
    pub fn raft_meta(&self) -> &sled::Tree {
        &self.inner.raft_meta
    }

    /// The `raft_log` tree.
    pub fn raft_log(&self) -> &sled::Tree {
        &self.inner.raft_log
    }

    /// Generation of the live state-machine tree (0 if none was ever installed).
    ///
    /// # Errors
    /// sled errors; a malformed pointer is [`StoreError::Corrupt`].
    pub fn sm_gen(&self) -> Result<u64, StoreError> {
        match self.inner.raft_meta.get(keys::SM_GEN)? {
            None => Ok(0),
            Some(v) => {
                let b: [u8; 8] = v.as_ref().try_into().map_err(|_| {
                    StoreError::Corrupt(format!("sm_gen is {} bytes, not 8", v.len()))
                })?;
                Ok(u64::from_be_bytes(b))
            }
        }
    }

    /// Points `sm_gen` at `gen`. Not flushed: follow with [`Store::durable_flush`].
    ///
    /// # Errors
    /// sled errors.
    pub fn set_sm_gen(&self, gen: u64) -> Result<(), StoreError> {
        self.inner
            .raft_meta
            .insert(keys::SM_GEN, &gen.to_be_bytes())?;
        Ok(())
    }

    /// Opens (creating if needed) the state-machine tree `sm.<gen>`.
    ///
    /// # Errors
    /// sled errors.
    pub fn sm_tree(&self, gen: u64) -> Result<sled::Tree, StoreError> {
        Ok(self.inner.db.open_tree(sm_tree_name(gen))?)
    }

    /// Drops the state-machine tree `sm.<gen>` if it exists. No handle on it may be used
    /// afterwards (sled invalidates its root).
    ///
    /// # Errors
    /// sled errors.
    pub fn drop_sm_tree(&self, gen: u64) -> Result<bool, StoreError> {
        Ok(self.inner.db.drop_tree(sm_tree_name(gen))?)
    }

    /// Drops every `sm.*` tree except `sm.<keep>`: leftovers of an install interrupted by a
    /// crash (a half-loaded new tree, or an old one not yet dropped).
    ///
    /// # Errors
    /// sled errors.
    pub fn drop_stale_sm_trees(&self, keep: u64) -> Result<Vec<String>, StoreError> {
        let keep = sm_tree_name(keep);
        let mut dropped = Vec::new();
        for name in self.inner.db.tree_names() {
            let name = String::from_utf8_lossy(&name).into_owned();
            if name.starts_with(SM_PREFIX) && name != keep {
                self.inner.db.drop_tree(&name)?;
                dropped.push(name);
            }
        }
        Ok(dropped)
    }

    /// Makes every write made so far, to any tree, durable (see the module docs). Blocking:
    /// run it in `spawn_blocking`, or use [`Store::spawn_durable_flush`].
    ///
    /// # Errors
    /// sled or I/O errors; after one, nothing written since the last successful flush may be
    /// assumed durable.
    pub fn durable_flush(&self) -> Result<(), StoreError> {
        self.write_behind_barrier()?;
        let mut sync = self
            .inner
            .sync
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.inner.db.flush()?;
        sync.sync_new_blobs()?;
        sync.data_file
            .sync_data()
            .map_err(|e| StoreError::io("fdatasync", self.inner.data_dir.join("db/db"), e))?;
        Ok(())
    }

    /// Resolves with the reason once the state-machine writer has failed: the member cannot
    /// keep its state machine on disk any more and must stop (its log still holds every
    /// acknowledged write, so a restart rebuilds the state).
    pub async fn failure(&self) -> String {
        self.wait_failure().await
    }

    /// Why the state-machine writer failed, if it has.
    pub fn failed(&self) -> Option<String> {
        self.inner.failure.borrow().clone()
    }

    async fn wait_failure(&self) -> String {
        let mut rx = self.inner.failure.subscribe();
        let why = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone(),
            // The sender lives as long as the store: never reached while `self` exists.
            Err(_) => None,
        };
        match why {
            Some(why) => why,
            None => std::future::pending().await,
        }
    }

    /// Queues changes to `tree` for the writer thread, which applies them in the order queued;
    /// [`Store::durable_flush`] first waits for everything queued before it. Consecutive writes
    /// to one tree form a group, written between an insert and a removal of [`WRITING_KEY`]:
    /// after a crash, a tree holds the state after some whole group, or still holds
    /// [`WRITING_KEY`] (its owner must then rebuild it from elsewhere).
    pub fn write_behind(&self, tree: &sled::Tree, changes: Vec<Change>) {
        self.inner.queued.fetch_add(changes.len(), Ordering::SeqCst);
        if self
            .inner
            .writer
            .send(WriterMsg::Write(tree.clone(), changes))
            .is_err()
        {
            tracing::error!("the state-machine writer stopped; a change was not written");
        }
    }

    /// Waits (asynchronously) while more than a few thousand changes are queued, so a slow
    /// disk slows appliers down instead of growing the queue without bound.
    pub async fn write_behind_wait(&self) {
        for _ in 0..10_000 {
            if self.inner.queued.load(Ordering::SeqCst) <= WRITER_HIGH_WATER {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Changes queued to the writer and not yet written.
    pub fn write_behind_queued(&self) -> usize {
        self.inner.queued.load(Ordering::SeqCst)
    }

    /// Waits until everything queued so far is written (not flushed). Blocking.
    fn write_behind_barrier(&self) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::channel();
        self.inner
            .writer
            .send(WriterMsg::Barrier(tx))
            .map_err(|_| StoreError::Task("the state-machine writer stopped".into()))?;
        rx.recv()
            .map_err(|_| StoreError::Task("the state-machine writer stopped".into()))?
    }

    /// [`Store::durable_flush`] on a blocking thread, for async callers.
    ///
    /// # Errors
    /// As [`Store::durable_flush`], or [`StoreError::Task`] if the blocking task died.
    pub async fn spawn_durable_flush(&self) -> Result<(), StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.durable_flush()).await?
    }
}

impl SyncState {
    /// fsyncs blob files written since the last flush, then their directory. sled writes a
    /// blob (and the log record pointing to it) before `Db::flush` returns, so they are all
    /// visible here; blobs are written before the pointer, and synced before the data file.
    fn sync_new_blobs(&mut self) -> Result<(), StoreError> {
        let entries = match fs::read_dir(&self.blobs_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io("list", &self.blobs_dir, e)),
        };
        let mut present = HashSet::new();
        let mut synced_any = false;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("list", &self.blobs_dir, e))?;
            let name = entry.file_name();
            if !self.synced_blobs.contains(&name) {
                let path = entry.path();
                match File::open(&path) {
                    Ok(f) => f
                        .sync_all()
                        .map_err(|e| StoreError::io("fsync", &path, e))?,
                    // Garbage-collected by sled in the meantime.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(StoreError::io("open", &path, e)),
                }
                synced_any = true;
            }
            present.insert(name);
        }
        if synced_any {
            sync_dir(&self.blobs_dir)?;
        }
        self.synced_blobs = present;
        Ok(())
    }
}

/// Name of the state-machine tree of generation `gen`.
pub fn sm_tree_name(gen: u64) -> String {
    format!("{SM_PREFIX}{gen}")
}

/// fsyncs a directory, making the creation, renaming or removal of its entries durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("fsync directory", dir, e))
}

/// Refuses a `db` path that exists but is not a sled directory (sled would otherwise
/// happily create its files among someone else's).
fn check_not_foreign(db_dir: &Path) -> Result<(), StoreError> {
    let meta = match fs::metadata(db_dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io("stat", db_dir, e)),
    };
    if !meta.is_dir() {
        return Err(StoreError::NotBaton {
            path: db_dir.to_path_buf(),
            reason: "it is a file, not a directory".into(),
        });
    }
    let mut entries = fs::read_dir(db_dir).map_err(|e| StoreError::io("list", db_dir, e))?;
    let non_empty = entries.next().is_some();
    if non_empty && !db_dir.join("conf").exists() {
        return Err(StoreError::NotBaton {
            path: db_dir.to_path_buf(),
            reason: "it is not empty and holds no sled database".into(),
        });
    }
    Ok(())
}

/// How long `open` waits for a lock that may be on its way out (see [`open_db`]).
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Opens the sled database, waiting up to [`LOCK_WAIT`] for its lock. A `Db` dropped in
/// this process releases its file lock asynchronously (sled frees its I/O buffers, which
/// own the file, through epoch-based reclamation and its own thread pool), so a store
/// closed and reopened in one process (tests, in-process restarts) can briefly find its own
/// old lock. Another process holding the lock is reported after the wait.
fn open_db(db_dir: &Path, cache_capacity: u64) -> Result<sled::Db, StoreError> {
    let deadline = Instant::now() + LOCK_WAIT;
    let mut pause = Duration::from_millis(10);
    loop {
        let res = sled::Config::new()
            .path(db_dir)
            .cache_capacity(cache_capacity)
            .open()
            .map_err(|e| map_open_error(db_dir, e));
        match res {
            Err(StoreError::Locked { .. }) if Instant::now() + pause < deadline => {
                tracing::debug!(path = %db_dir.display(), "data directory locked; retrying");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            res => return res,
        }
    }
}

/// Turns sled's open errors into the ones an operator can act on.
fn map_open_error(db_dir: &Path, e: sled::Error) -> StoreError {
    match e {
        // sled 0.34.7 `Config::try_lock`: an `Other` I/O error with this text when `flock`
        // on the data file fails.
        sled::Error::Io(ref io) if io.to_string().contains("could not acquire lock") => {
            StoreError::Locked {
                path: db_dir.to_path_buf(),
                detail: io.to_string(),
            }
        }
        sled::Error::Unsupported(msg) => StoreError::NotBaton {
            path: db_dir.to_path_buf(),
            reason: format!("sled refused it: {msg}"),
        },
        sled::Error::Corruption { .. } => StoreError::NotBaton {
            path: db_dir.to_path_buf(),
            reason: format!("sled cannot read it: {e}"),
        },
        e => StoreError::Sled(e),
    }
}

/// Checks a stored `data_version` value.
fn check_version(db_dir: &Path, v: &[u8]) -> Result<(), StoreError> {
    let Some(rest) = v.strip_prefix(FORMAT_MAGIC) else {
        return Err(StoreError::NotBaton {
            path: db_dir.to_path_buf(),
            reason: "unrecognized data_version record".into(),
        });
    };
    let found = <[u8; 4]>::try_from(rest)
        .map(u32::from_be_bytes)
        .map_err(|_| StoreError::NotBaton {
            path: db_dir.to_path_buf(),
            reason: "malformed data_version record".into(),
        })?;
    if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&found) {
        return Err(StoreError::VersionMismatch {
            path: db_dir.to_path_buf(),
            found,
            supported: FORMAT_VERSION,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_dir_gets_current_version_and_reopens() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::io("tempdir", "/tmp", e))?;
        {
            let store = Store::open(dir.path(), DEFAULT_CACHE_CAPACITY)?;
            let v = store.raft_meta().get(keys::DATA_VERSION)?;
            let mut want = FORMAT_MAGIC.to_vec();
            want.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
            assert_eq!(v.as_deref(), Some(&want[..]));
            assert_eq!(store.sm_gen()?, 0);
        }
        let store = Store::open(dir.path(), DEFAULT_CACHE_CAPACITY)?;
        assert_eq!(store.sm_gen()?, 0);
        store.durable_flush()?;
        Ok(())
    }

    #[test]
    fn sled_files_are_where_the_docs_say() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::io("tempdir", "/tmp", e))?;
        let _store = Store::open(dir.path(), DEFAULT_CACHE_CAPACITY)?;
        for p in ["db/conf", "db/db", "db/blobs"] {
            assert!(dir.path().join(p).exists(), "{p} missing");
        }
        Ok(())
    }

    #[test]
    fn other_version_is_refused() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::io("tempdir", "/tmp", e))?;
        {
            let store = Store::open(dir.path(), DEFAULT_CACHE_CAPACITY)?;
            let mut v = FORMAT_MAGIC.to_vec();
            v.extend_from_slice(&(FORMAT_VERSION + 1).to_be_bytes());
            store.raft_meta().insert(keys::DATA_VERSION, v)?;
            store.durable_flush()?;
        }
        match Store::open(dir.path(), DEFAULT_CACHE_CAPACITY) {
            Err(StoreError::VersionMismatch {
                found, supported, ..
            }) => {
                assert_eq!((found, supported), (FORMAT_VERSION + 1, FORMAT_VERSION));
            }
            other => panic!("expected VersionMismatch, got {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn a_first_open_that_crashed_before_the_version_is_fresh() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::io("tempdir", "/tmp", e))?;
        {
            let db = sled::open(dir.path().join("db"))?;
            db.open_tree(RAFT_META)?;
            db.open_tree(RAFT_LOG)?;
            db.flush()?;
        }
        let store = Store::open(dir.path(), DEFAULT_CACHE_CAPACITY)?;
        assert!(store.raft_meta().get(keys::DATA_VERSION)?.is_some());
        Ok(())
    }

    #[test]
    fn foreign_sled_db_is_refused() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::io("tempdir", "/tmp", e))?;
        {
            let db = sled::open(dir.path().join("db"))?;
            db.insert(b"hello", b"world")?;
            db.flush()?;
        }
        assert!(matches!(
            Store::open(dir.path(), DEFAULT_CACHE_CAPACITY),
            Err(StoreError::NotBaton { .. })
        ));
        Ok(())
    }

    #[test]
    fn foreign_directory_is_refused() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::io("tempdir", "/tmp", e))?;
        let db = dir.path().join("db");
        fs::create_dir_all(&db).map_err(|e| StoreError::io("mkdir", &db, e))?;
        fs::write(db.join("notes.txt"), b"x").map_err(|e| StoreError::io("write", &db, e))?;
        assert!(matches!(
            Store::open(dir.path(), DEFAULT_CACHE_CAPACITY),
            Err(StoreError::NotBaton { .. })
        ));
        Ok(())
    }

    #[test]
    fn second_open_reports_lock() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::io("tempdir", "/tmp", e))?;
        let _first = Store::open(dir.path(), DEFAULT_CACHE_CAPACITY)?;
        match Store::open(dir.path(), DEFAULT_CACHE_CAPACITY) {
            Err(e @ StoreError::Locked { .. }) => {
                assert!(e.to_string().contains("locked"), "{e}");
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn large_values_go_to_synced_blobs() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::io("tempdir", "/tmp", e))?;
        let store = Store::open(dir.path(), DEFAULT_CACHE_CAPACITY)?;
        store.raft_log().insert(b"big", vec![7u8; 512 * 1024])?;
        store.durable_flush()?;
        let blobs = fs::read_dir(dir.path().join("db/blobs"))
            .map_err(|e| StoreError::io("list", dir.path(), e))?
            .count();
        assert!(blobs >= 1, "a 512 KiB value should be stored as a blob");
        let synced = store
            .inner
            .sync
            .lock()
            .map(|s| s.synced_blobs.len())
            .unwrap_or(0);
        assert_eq!(synced, blobs);
        Ok(())
    }
}
