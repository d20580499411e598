//! The apply side of Raft: openraft's `RaftStateMachine` over the in-memory [`State`], made
//! durable in the sled tree `sm.<gen>`, plus snapshots as files. `apply` applies committed
//! entries, `records` is the sled tree (key layout, load, write, replace), `snapshots` builds,
//! receives and installs snapshots and encodes backups; this file holds the shared state,
//! opening, and openraft's trait.
//!
//! # Apply
//!
//! The authoritative copy of the state machine is in memory ([`SmShared::tree`]), so reads
//! never touch sled. `apply(entries)` takes the tree's write lock, applies every entry
//! (`State::apply` for commands; blank and membership entries only advance the applied
//! index), then writes everything the batch touched as ONE sled `apply_batch` on `sm.<gen>`:
//! each touched node, session and client record read back from the state (present → put,
//! gone → remove), the batch's events (the watch history, see [`records::EventLog`]) and
//! the meta record (last applied log id, membership, last time, last zxid). Because the
//! meta record is in the same atomic batch, the tree on disk is always the state after some
//! whole batch, and the history on disk ends where that state does. There is no flush:
//! after a crash the log is intact, and openraft re-applies `(last_applied, committed]` (see the crash-ordering rules in [`crate::store::log`]).
//! Still under the write lock, the batch's events go to [`WatchHub::publish`], so a watch
//! registered under the read lock sees each change exactly once; then the lock is released
//! and [`SmShared::applied`] is bumped.
//!
//! Key layout of `sm.<gen>` (one-byte prefixes): `n` + path → `StoredNode`, `s` + session id
//! (u64 BE) → `StoredSession`, `c` + client id (u64 BE) → `StoredClient` (the request ids of
//! [`crate::tree::clients`]), `e` + sequence number (u64 BE) → `StoredEvents` (one applied
//! batch's events: the watch history), `m` + name → meta (`mstate` → `StateMeta`,
//! `mevents` → the history's floor).
//!
//! # Snapshots
//!
//! Files in `<data_dir>/snapshots/` (format: [`super::snapshot`]).
//! - Build: clone the in-memory state under the READ lock (constant time: its collections
//!   are persistent, see [`State`]), release it, and write the clone to `<name>.tmp` on a
//!   blocking thread, then fsync, rename, fsync the directory, keep only it. Applies,
//!   reads and heartbeats go on while the file is written; the clone keeps the point in time.
//! - Current snapshot: the newest file, opened and sent from disk in chunks.
//! - Receive: chunks go to an unnamed file in the snapshot directory (created, then unlinked
//!   at once, so an interrupted transfer leaves nothing behind).
//! - Install: read the received file record by record, checking its checksum and that it
//!   forms a tree, write it as the newest snapshot file (the only one kept), load it into a
//!   fresh `sm.<gen+1>` in batches, durable flush, point `sm_gen` at it, durable flush, drop
//!   `sm.<gen>`; then swap the in-memory state under the write lock and replace the watch
//!   history with the one the snapshot carries (the builder's recent events, see
//!   [`super::snapshot`]). A crash at any point leaves either the old generation or the new
//!   one; opening drops the other.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{ErrorSubject, ErrorVerb, Snapshot, StorageError};
use tokio::sync::watch;

use super::snapshot::{self, AppliedMeta, Meta};
use super::{CommandResult, LogId, StoredMembership, TypeConfig};
use crate::stages::Stages;
use crate::store::{sync_dir, Store, StoreError, WRITING_KEY};
use crate::tree::{History, State};
use crate::types::Entry;
use crate::watch::WatchHub;
use records::{load_tree, replace_generation, EventLog};

mod apply;
mod records;
mod snapshots;

pub use snapshots::{
    encode_backup, encode_backup_file, inspect_snapshot, restore_snapshot, BackupFile,
    SnapshotSummary,
};

/// The state machine as shared with the rest of the member (API, reads, housekeeping).
pub struct SmShared {
    /// The znode tree, sessions and request ids. Writers: `apply` and snapshot install only.
    pub tree: RwLock<State>,
    /// Watch registry; `apply` publishes to it under the tree's write lock.
    pub hub: Arc<WatchHub>,
    /// Log index of the last applied entry, bumped after each applied batch is visible in
    /// `tree`.
    pub applied: watch::Sender<u64>,
    /// Log index covered by the newest snapshot file (0 if none).
    pub snapshot_index: AtomicU64,
    /// Size in bytes of the newest snapshot built or installed since the member started.
    pub snapshot_bytes: AtomicU64,
    /// Snapshots installed since the member started. Bumped under `tree`'s write lock, before
    /// any later entry is applied: an install skips the events of every entry it covers, so
    /// watch streams open on this member must end (their clients resume elsewhere).
    pub installs: watch::Sender<u64>,
    /// Last applied log id and membership; only written with `tree`'s write lock held, so
    /// reading both under `tree`'s read lock gives a consistent pair.
    meta: RwLock<AppliedMeta>,
    /// Write-path stage timings of this member.
    pub stages: Arc<Stages>,
    /// Serializes writing and pruning snapshot files (a build may overlap an install).
    snapshot_files: Mutex<()>,
    /// `<data_dir>/snapshots`.
    snapshot_dir: PathBuf,
}

impl SmShared {
    /// The last applied log id.
    pub fn last_applied(&self) -> Option<LogId> {
        self.meta_read().last_applied
    }

    /// The membership of the last applied membership entry.
    pub fn membership(&self) -> StoredMembership {
        self.meta_read().membership.clone()
    }

    fn meta_read(&self) -> std::sync::RwLockReadGuard<'_, AppliedMeta> {
        // The meta is replaced wholesale, never left half-written: poisoning is harmless.
        self.meta.read().unwrap_or_else(PoisonError::into_inner)
    }
}

fn poisoned() -> StoreError {
    StoreError::Corrupt("the state-machine lock is poisoned: an apply panicked".into())
}

fn sm_err(verb: ErrorVerb) -> impl Fn(StoreError) -> StorageError<u64> {
    move |e| e.into_storage(ErrorSubject::StateMachine, verb)
}

fn snap_err(verb: ErrorVerb) -> impl Fn(StoreError) -> StorageError<u64> {
    move |e| e.into_storage(ErrorSubject::Snapshot(None), verb)
}

/// The state machine store handed to openraft.
pub struct StateMachineStore {
    store: Store,
    shared: Arc<SmShared>,
    /// Generation of the live tree.
    gen: u64,
    /// `sm.<gen>`.
    sm: sled::Tree,
    /// The watch history as kept in `sm`.
    events: EventLog,
}

/// Builds snapshots from the in-memory state; runs concurrently with `apply`. A separate
/// handle rather than a clone of [`StateMachineStore`]: it must never hold a handle on an
/// `sm.<gen>` tree, which an install may drop under it.
pub struct SmSnapshotBuilder {
    shared: Arc<SmShared>,
}

impl StateMachineStore {
    /// Opens the state machine on `store`: drops `sm.*` trees left by an interrupted install,
    /// loads `sm.<gen>` into memory, and gives `hub` the watch history kept with it.
    ///
    /// # Errors
    /// sled or I/O errors, undecodable records, or records that do not form a tree.
    pub fn open(store: &Store, hub: Arc<WatchHub>) -> Result<(Self, Arc<SmShared>), StoreError> {
        let gen = store.sm_gen()?;
        for name in store.drop_stale_sm_trees(gen)? {
            tracing::warn!(tree = %name, "dropped a state-machine tree left by an interrupted snapshot install");
        }
        let snapshot_dir = store.snapshot_dir();
        fs::create_dir_all(&snapshot_dir)
            .map_err(|e| StoreError::io("create", &snapshot_dir, e))?;
        let mut gen = gen;
        let mut sm = store.sm_tree(gen)?;
        if sm.get(WRITING_KEY)?.is_some() {
            // Cut off in the middle of a group of writes (see `Store::write_behind`): rebuild
            // from the newest snapshot file; openraft then re-applies the log after it.
            tracing::warn!(
                tree = %crate::store::sm_tree_name(gen),
                "the state machine on disk was being written when the member stopped; \
                 rebuilding it from the newest snapshot and the log"
            );
            let (state, history, applied) = match snapshot::newest(&snapshot_dir)? {
                Some((path, _)) => {
                    let d = snapshot::read_file(&path)?;
                    let applied = AppliedMeta {
                        last_applied: d.meta.last_log_id,
                        membership: d.meta.last_membership,
                    };
                    (d.state, d.history, applied)
                }
                None => (State::default(), History::default(), AppliedMeta::default()),
            };
            sm = replace_generation(store, gen, &state, &history, &applied)?;
            gen += 1;
        }
        let (state, loaded_meta) = load_tree(&sm)?;
        let applied_index = state.applied_index;

        sync_dir(store.data_dir())?;
        snapshot::remove_incoming(&snapshot_dir)?;
        let mut snapshot_index = 0;
        for (index, _, path) in snapshot::list_dir(&snapshot_dir)? {
            if path.extension().is_some_and(|e| e == "tmp") {
                fs::remove_file(&path).map_err(|e| StoreError::io("remove", &path, e))?;
            } else {
                snapshot_index = snapshot_index.max(index);
            }
        }

        let (events, history) = EventLog::load(&sm, applied_index, hub.history_capacity())?;
        hub.restore_history(history);
        let (applied, _) = watch::channel(applied_index);
        let shared = Arc::new(SmShared {
            tree: RwLock::new(state),
            hub,
            applied,
            snapshot_index: AtomicU64::new(snapshot_index),
            snapshot_bytes: AtomicU64::new(0),
            installs: watch::channel(0).0,
            meta: RwLock::new(loaded_meta),
            stages: Arc::default(),
            snapshot_files: Mutex::new(()),
            snapshot_dir,
        });
        let sms = StateMachineStore {
            store: store.clone(),
            shared: shared.clone(),
            gen,
            sm,
            events,
        };
        Ok((sms, shared))
    }

    /// The shared half.
    pub fn shared(&self) -> &Arc<SmShared> {
        &self.shared
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SmSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership), StorageError<u64>> {
        let m = self.shared.meta_read();
        Ok((m.last_applied, m.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        self.apply_entries(entries).await
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SmSnapshotBuilder {
            shared: self.shared.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<tokio::fs::File>, StorageError<u64>> {
        self.receive_into_file().await
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<u64>> {
        self.install(meta, snapshot).await
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        self.current_snapshot().await
    }
}

#[cfg(test)]
mod tests;
