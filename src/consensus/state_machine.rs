//! The apply side of Raft: openraft's `RaftStateMachine` over the in-memory [`State`], made
//! durable in the sled tree `sm.<gen>`, plus snapshots as files.
//!
//! # Apply
//!
//! The authoritative copy of the state machine is in memory ([`SmShared::tree`]), so reads
//! never touch sled. `apply(entries)` takes the tree's write lock, applies every entry
//! (`State::apply` for commands; blank and membership entries only advance the applied
//! index), then writes everything the batch touched as ONE sled `apply_batch` on `sm.<gen>`:
//! each touched node, session and client record read back from the state (present → put,
//! gone → remove)
//! and the meta record (last applied log id, membership, last time, last zxid). Because the
//! meta record is in the same atomic batch, the tree on disk is always the state after some
//! whole batch. There is no flush: after a crash the log is intact, and openraft re-applies
//! `(last_applied, committed]` (see the crash-ordering rules in [`crate::store::log`]).
//! Still under the write lock, the batch's events go to [`WatchHub::publish`], so a watch
//! registered under the read lock sees each change exactly once; then the lock is released
//! and [`SmShared::applied`] is bumped.
//!
//! Key layout of `sm.<gen>` (one-byte prefixes): `n` + path → `StoredNode`, `s` + session id
//! (u64 BE) → `StoredSession`, `c` + client id (u64 BE) → `StoredClient` (the request ids of
//! [`crate::tree::clients`]), `m` + name → meta (`mstate` → `StateMeta`).
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
//!   `sm.<gen>`; then swap the in-memory state under the write lock and reset the watch
//!   history (the events between the old and new state are unknown). A crash at any point
//!   leaves either the old generation or the new one; opening drops the other.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, Snapshot, StorageError,
};
use prost::Message;
use tokio::sync::watch;

use super::snapshot::{self, AppliedMeta, Meta};
use super::{CommandResult, LogId, StoredMembership, TypeConfig};
use crate::proto::{decode, stored, CodecError};
use crate::stages::{Stage, Stages};
use crate::store::{sync_dir, Change, Store, StoreError, WRITING_KEY};
use crate::tree::{ClientTable, Loader, SessionId, State};
use crate::types::Entry;
use crate::watch::WatchHub;

/// Snapshot files kept after a build: the new file is complete (fsynced and renamed) before
/// the old one goes, and a transfer that has the old one open reads on from its open file.
const SNAPSHOTS_KEPT: usize = 1;
/// Records per sled batch when loading a snapshot into a tree.
const LOAD_BATCH: usize = 1024;

/// Key prefix of znode records.
const NODE_PREFIX: u8 = b'n';
/// Key prefix of session records.
const SESSION_PREFIX: u8 = b's';
/// Key prefix of request-id records (one per client, see [`crate::tree::clients`]).
const CLIENT_PREFIX: u8 = b'c';
/// Key of the meta record (`m` + `state`): last applied log id, time and zxid.
const META_KEY: &[u8] = b"mstate";
/// Key of the membership record (`m` + `membership`), written when the membership changes.
/// (Format-1 directories kept the membership inside the meta record; it is read from there
/// when this record is absent.)
const MEMBERSHIP_KEY: &[u8] = b"mmembership";

fn node_key(path: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + path.len());
    k.push(NODE_PREFIX);
    k.extend_from_slice(path.as_bytes());
    k
}

fn client_key(id: u64) -> [u8; 9] {
    let mut k = [CLIENT_PREFIX; 9];
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

fn session_key(id: SessionId) -> [u8; 9] {
    let mut k = [SESSION_PREFIX; 9];
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

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
}

/// Builds snapshots from the in-memory state; runs concurrently with `apply`. A separate
/// handle rather than a clone of [`StateMachineStore`]: it must never hold a handle on an
/// `sm.<gen>` tree, which an install may drop under it.
pub struct SmSnapshotBuilder {
    shared: Arc<SmShared>,
}

impl StateMachineStore {
    /// Opens the state machine on `store`: drops `sm.*` trees left by an interrupted install,
    /// loads `sm.<gen>` into memory, and resets `hub`'s history to the loaded applied index.
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
            let (state, applied) = match snapshot::newest(&snapshot_dir)? {
                Some((path, _)) => {
                    let d = snapshot::read_file(&path)?;
                    let applied = AppliedMeta {
                        last_applied: d.meta.last_log_id,
                        membership: d.meta.last_membership,
                    };
                    (d.state, applied)
                }
                None => (State::default(), AppliedMeta::default()),
            };
            sm = replace_generation(store, gen, &state, &applied)?;
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

        hub.reset_history(applied_index);
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
        };
        Ok((sms, shared))
    }

    /// The shared half.
    pub fn shared(&self) -> &Arc<SmShared> {
        &self.shared
    }
}

/// Loads `sm.<gen>` into a [`State`] (one record at a time: nodes come in key order, so a
/// parent before its children) with the applied meta.
fn load_tree(tree: &sled::Tree) -> Result<(State, AppliedMeta), StoreError> {
    let (mut meta, last_time_ms, last_zxid) = match tree.get(META_KEY)? {
        Some(v) => stored::meta_from_pb(decode("StateMeta", &v)?)?,
        None => (AppliedMeta::default(), 0, 0),
    };
    match tree.get(MEMBERSHIP_KEY)? {
        Some(v) => {
            meta.membership = stored::stored_membership_from_pb(decode("StoredMembership", &v)?)?;
        }
        // Format 1 kept it in the meta record only: give it its own record before the next
        // apply writes a meta record without it.
        None if meta.membership != StoredMembership::default() => {
            tree.insert(
                MEMBERSHIP_KEY,
                stored::stored_membership_to_pb(&meta.membership).encode_to_vec(),
            )?;
        }
        None => {}
    }
    let mut loader = Loader::new(last_time_ms, last_zxid);
    for kv in tree.scan_prefix([SESSION_PREFIX]) {
        let (_, v) = kv?;
        loader.add_session(stored::session_from_pb(decode("StoredSession", &v)?)?);
    }
    for kv in tree.scan_prefix([NODE_PREFIX]) {
        let (k, v) = kv?;
        let path = std::str::from_utf8(&k[1..])
            .map_err(|_| CodecError::new("StoredNode", "path is not UTF-8"))?
            .to_string();
        loader.add_node(path, stored::node_from_pb(decode("StoredNode", &v)?)?);
    }
    let mut clients = ClientTable::default();
    for kv in tree.scan_prefix([CLIENT_PREFIX]) {
        let (_, v) = kv?;
        let (id, record) = stored::client_from_pb(decode("StoredClient", &v)?)?;
        clients.insert(id, record);
    }
    let (mut state, orphans) = loader.finish();
    if orphans > 0 {
        return Err(StoreError::Corrupt(format!(
            "{orphans} stored znodes have no parent"
        )));
    }
    state.set_clients(clients);
    state.applied_index = meta.last_applied.map_or(0, |l| l.index);
    Ok((state, meta))
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// A point-in-time view of the state machine: a clone of the state (constant time, see
/// [`State`]) and its applied meta, taken together under the read lock.
fn view(shared: &SmShared) -> Result<(State, AppliedMeta), StoreError> {
    let state = shared.tree.read().map_err(|_| poisoned())?;
    Ok((state.clone(), shared.meta_read().clone()))
}

/// Writes a view as the newest snapshot file and opens it for reading. Blocking; holds no
/// state-machine lock.
fn build_snapshot_blocking(
    shared: &SmShared,
    state: State,
    applied: AppliedMeta,
) -> Result<(Meta, fs::File, u64), StoreError> {
    let (index, term) = applied
        .last_applied
        .map_or((0, 0), |l| (l.index, l.leader_id.term));
    let snapshot_id = format!("{index}-{term}-{:x}", now_nanos());
    let meta = Meta {
        last_log_id: applied.last_applied,
        last_membership: applied.membership.clone(),
        snapshot_id,
    };
    let name = snapshot::file_name(&meta);
    let _files = shared
        .snapshot_files
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let size = snapshot::write_file(&shared.snapshot_dir, &name, |f| {
        snapshot::write_snapshot(f, &state, &applied, &meta.snapshot_id)
    })?;
    drop(state);
    snapshot::prune(&shared.snapshot_dir, SNAPSHOTS_KEPT)?;
    let path = shared.snapshot_dir.join(&name);
    let file = fs::File::open(&path).map_err(|e| StoreError::io("open", &path, e))?;
    shared.snapshot_index.fetch_max(index, Ordering::SeqCst);
    Ok((meta, file, size))
}

/// What a snapshot holds, without its records: shown for backups (`baton snapshot status`)
/// and checked by a restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotSummary {
    /// Last log entry the snapshot covers (its index is the backup's index).
    pub last_log_id: Option<LogId>,
    /// Membership as of that entry.
    pub membership: StoredMembership,
    /// zxid of the last change to the tree or sessions (at most the index).
    pub last_zxid: u64,
    /// Largest proposer time applied (Unix ms): when the state was last written.
    pub last_time_ms: i64,
    /// Znode records.
    pub znodes: u64,
    /// Session records.
    pub sessions: u64,
    /// Snapshot id.
    pub snapshot_id: String,
}

impl SnapshotSummary {
    fn of(meta: &Meta, state: &State) -> Self {
        SnapshotSummary {
            last_log_id: meta.last_log_id,
            membership: meta.last_membership.clone(),
            last_zxid: state.last_zxid,
            last_time_ms: state.last_time_ms,
            znodes: state.node_count() as u64,
            sessions: state.session_count() as u64,
            snapshot_id: meta.snapshot_id.clone(),
        }
    }
}

/// Encodes the current state in the snapshot format into `w`, for a backup, without writing
/// a snapshot file or touching the member's own snapshots; returns what it holds and the
/// bytes written. The state is a point-in-time view taken in constant time: applies go on
/// while it is encoded. Blocking.
///
/// # Errors
/// A poisoned state-machine lock, write errors of `w`.
pub fn encode_backup(
    shared: &SmShared,
    w: impl std::io::Write,
) -> Result<(SnapshotSummary, u64), StoreError> {
    let (state, applied) = view(shared)?;
    let (index, term) = applied
        .last_applied
        .map_or((0, 0), |l| (l.index, l.leader_id.term));
    let meta = Meta {
        last_log_id: applied.last_applied,
        last_membership: applied.membership.clone(),
        snapshot_id: format!("{index}-{term}-backup-{:x}", now_nanos()),
    };
    let size = snapshot::write_snapshot(w, &state, &applied, &meta.snapshot_id)?;
    Ok((SnapshotSummary::of(&meta, &state), size))
}

/// A backup written to an unnamed file in the snapshot directory (it is gone once closed).
pub struct BackupFile {
    /// What it holds.
    pub summary: SnapshotSummary,
    /// The file, at its start.
    pub file: fs::File,
    /// Its size in bytes.
    pub size: u64,
    /// CRC-32 of its bytes.
    pub crc32: u32,
}

/// [`encode_backup`] into an unnamed file, so that a backup of a large tree is streamed from
/// disk instead of held in memory. Blocking.
///
/// # Errors
/// As [`encode_backup`]; I/O errors of the file.
pub fn encode_backup_file(shared: &SmShared) -> Result<BackupFile, StoreError> {
    use std::io::Write as _;
    let mut file = snapshot::unnamed_file(&shared.snapshot_dir, "backup")?;
    let mut w = snapshot::Summed::new(&mut file);
    let (summary, size) = encode_backup(shared, &mut w)?;
    let err = |op| move |e| StoreError::io(op, "backup file", e);
    w.flush().map_err(err("write"))?;
    let crc32 = w.crc();
    file.seek(SeekFrom::Start(0)).map_err(err("seek"))?;
    Ok(BackupFile {
        summary,
        file,
        size,
        crc32,
    })
}

/// Decodes a whole snapshot, checks that its records form a tree, and returns what it holds
/// with the digest of its state (the `state_hash` a member reports once it has applied
/// exactly this state; see [`State::digest`]).
///
/// # Errors
/// [`StoreError::Codec`] for bytes that do not decode (truncated, another format, trailing
/// bytes, a checksum that does not match), [`StoreError::Corrupt`] for records that do not
/// form a tree.
pub fn inspect_snapshot(bytes: &[u8]) -> Result<(SnapshotSummary, u64), StoreError> {
    let d = snapshot::read_snapshot(bytes)?;
    Ok((SnapshotSummary::of(&d.meta, &d.state), d.state.digest()))
}

/// Makes a snapshot the whole state machine of a new, empty data directory: the state is
/// loaded into the store's state-machine tree and saved as its newest snapshot file (members
/// that join later are sent it), both with `membership` in place of the membership the
/// snapshot was taken with. Offline and blocking: the store must not be in use by a member.
///
/// # Errors
/// As [`inspect_snapshot`]; [`StoreError::Corrupt`] for a snapshot that covers no log entry;
/// storage errors.
pub fn restore_snapshot(
    store: &Store,
    bytes: &[u8],
    membership: StoredMembership,
) -> Result<SnapshotSummary, StoreError> {
    let d = snapshot::read_snapshot(bytes)?;
    let Some(last) = d.meta.last_log_id else {
        return Err(StoreError::Corrupt(
            "the snapshot covers no log entry: there is nothing to restore".into(),
        ));
    };
    let meta = Meta {
        last_log_id: Some(last),
        last_membership: membership,
        snapshot_id: format!(
            "{}-{}-restored-{:x}",
            last.index,
            last.leader_id.term,
            now_nanos()
        ),
    };
    let applied = AppliedMeta {
        last_applied: meta.last_log_id,
        membership: meta.last_membership.clone(),
    };
    let dir = store.snapshot_dir();
    fs::create_dir_all(&dir).map_err(|e| StoreError::io("create", &dir, e))?;
    snapshot::write_file(&dir, &snapshot::file_name(&meta), |f| {
        snapshot::write_snapshot(f, &d.state, &applied, &meta.snapshot_id)
    })?;
    replace_generation(store, store.sm_gen()?, &d.state, &applied)?;
    Ok(SnapshotSummary::of(&meta, &d.state))
}

/// The disk half of an install: reads the received file (checksum, tree), saves it as the
/// only snapshot file, and loads it into the next generation. Returns the new tree, the
/// state to swap in and the file's size. Everything is read and checked before anything on
/// disk changes.
fn install_blocking(
    store: &Store,
    shared: &SmShared,
    old_gen: u64,
    meta: &Meta,
    mut received: fs::File,
) -> Result<(sled::Tree, State, u64), StoreError> {
    received
        .seek(SeekFrom::Start(0))
        .map_err(|e| StoreError::io("seek", "received snapshot", e))?;
    let d = snapshot::read_snapshot(&mut received)?;
    drop(received);
    if d.meta.last_log_id != meta.last_log_id || d.meta.last_membership != meta.last_membership {
        return Err(StoreError::Corrupt(format!(
            "snapshot {} claims {:?} but its header holds {:?}",
            meta.snapshot_id, meta.last_log_id, d.meta.last_log_id
        )));
    }
    let applied = AppliedMeta {
        last_applied: meta.last_log_id,
        membership: meta.last_membership.clone(),
    };
    // 1. The snapshot becomes the current (and only) snapshot file, under the id openraft
    //    knows it by.
    let size = {
        let _files = shared
            .snapshot_files
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let size = snapshot::write_file(&shared.snapshot_dir, &snapshot::file_name(meta), |f| {
            snapshot::write_snapshot(f, &d.state, &applied, &meta.snapshot_id)
        })?;
        snapshot::prune(&shared.snapshot_dir, 1)?;
        size
    };
    // 2. Load it into a fresh tree of the next generation, and point at that.
    let tree = replace_generation(store, old_gen, &d.state, &applied)?;
    Ok((tree, d.state, size))
}

/// Writes `state` into a fresh tree of the generation after `old_gen` (in bounded batches),
/// flips `sm_gen` to it between two durable flushes, and drops the old tree. A crash at any
/// point leaves either the old generation or the new one (opening drops the other).
fn replace_generation(
    store: &Store,
    old_gen: u64,
    state: &State,
    applied: &AppliedMeta,
) -> Result<sled::Tree, StoreError> {
    let new_gen = old_gen + 1;
    store.drop_sm_tree(new_gen)?;
    let tree = store.sm_tree(new_gen)?;
    let mut batch = sled::Batch::default();
    let mut n = 0;
    let records = state
        .nodes()
        .map(|(p, node)| (node_key(p), stored::node_to_pb(node).encode_to_vec()))
        .chain(state.sessions().map(|s| {
            let k = session_key(s.session.id).to_vec();
            (k, stored::session_to_pb(&s.session).encode_to_vec())
        }))
        .chain(state.clients().iter().map(|(id, c)| {
            (
                client_key(*id).to_vec(),
                stored::client_to_pb(*id, c).encode_to_vec(),
            )
        }));
    for (k, v) in records {
        batch.insert(k, v);
        n += 1;
        if n % LOAD_BATCH == 0 {
            tree.apply_batch(std::mem::take(&mut batch))?;
        }
    }
    batch.insert(
        MEMBERSHIP_KEY,
        stored::stored_membership_to_pb(&applied.membership).encode_to_vec(),
    );
    batch.insert(
        META_KEY,
        stored::meta_to_pb(applied, state.last_time_ms, state.last_zxid, false).encode_to_vec(),
    );
    tree.apply_batch(batch)?;
    store.durable_flush()?;
    store.set_sm_gen(new_gen)?;
    store.durable_flush()?;
    store.drop_sm_tree(old_gen)?;
    Ok(tree)
}

impl RaftSnapshotBuilder<TypeConfig> for SmSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let started = std::time::Instant::now();
        let (state, applied) = view(&self.shared).map_err(snap_err(ErrorVerb::Write))?;
        let shared = self.shared.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        // A thread of its own at a lower CPU priority: on a busy machine, writing a large
        // snapshot yields to applying, replicating and answering.
        std::thread::Builder::new()
            .name("snapshot-build".into())
            .spawn(move || {
                let me = rustix::thread::gettid();
                if let Err(e) = rustix::process::setpriority_process(Some(me), 10) {
                    tracing::debug!(error = %e, "could not lower the snapshot thread's priority");
                }
                let _ = tx.send(build_snapshot_blocking(&shared, state, applied));
            })
            .map_err(|e| {
                snap_err(ErrorVerb::Write)(StoreError::io("spawn", "snapshot-build", e))
            })?;
        let ended = || StoreError::Task("the snapshot thread ended".into());
        let (meta, file, size) = rx
            .await
            .map_err(|_| snap_err(ErrorVerb::Write)(ended()))?
            .map_err(snap_err(ErrorVerb::Write))?;
        self.shared.stages.since(Stage::SnapshotBuild, started);
        self.shared.snapshot_bytes.store(size, Ordering::Relaxed);
        Ok(Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        })
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
        self.store.write_behind_wait().await;
        let shared = &self.shared;
        let started = std::time::Instant::now();
        let mut first_index = None;
        let mut results = Vec::new();
        let last_index = {
            let mut state = shared
                .tree
                .write()
                .map_err(|_| sm_err(ErrorVerb::Write)(poisoned()))?;
            let mut meta = shared.meta_read().clone();
            let mut events = Vec::new();
            let mut touched_nodes = BTreeSet::new();
            let mut touched_sessions = BTreeSet::new();
            let mut touched_clients = BTreeSet::new();
            for entry in entries {
                let log_id = entry.log_id;
                if first_index.is_none() {
                    first_index = Some(log_id.index);
                    shared.stages.applying(log_id.index);
                }
                match entry.payload {
                    EntryPayload::Normal(cmd) => {
                        let mut a = state.apply(log_id.index, &cmd);
                        results.push(a.results);
                        events.append(&mut a.events);
                        touched_nodes.append(&mut a.touched_nodes);
                        touched_sessions.append(&mut a.touched_sessions);
                        touched_clients.append(&mut a.touched_clients);
                    }
                    EntryPayload::Blank => {
                        state.applied_index = log_id.index;
                        results.push(Vec::new());
                    }
                    EntryPayload::Membership(m) => {
                        state.applied_index = log_id.index;
                        meta.membership = StoredMembership::new(Some(log_id), m);
                        results.push(Vec::new());
                    }
                }
                meta.last_applied = Some(log_id);
            }
            let Some(last) = meta.last_applied.filter(|_| !results.is_empty()) else {
                return Ok(results);
            };

            let mut changes: Vec<Change> =
                Vec::with_capacity(touched_nodes.len() + touched_sessions.len() + 2);
            for p in &touched_nodes {
                changes.push((
                    node_key(p),
                    state.get(p).map(|n| stored::node_to_pb(n).encode_to_vec()),
                ));
            }
            for id in &touched_sessions {
                changes.push((
                    session_key(*id).to_vec(),
                    state
                        .session(*id)
                        .map(|s| stored::session_to_pb(&s.session).encode_to_vec()),
                ));
            }
            for id in &touched_clients {
                changes.push((
                    client_key(*id).to_vec(),
                    state
                        .clients()
                        .get(*id)
                        .map(|c| stored::client_to_pb(*id, c).encode_to_vec()),
                ));
            }
            let membership_changed = meta.membership != shared.meta_read().membership;
            if membership_changed {
                changes.push((
                    MEMBERSHIP_KEY.to_vec(),
                    Some(stored::stored_membership_to_pb(&meta.membership).encode_to_vec()),
                ));
            }
            changes.push((
                META_KEY.to_vec(),
                Some(
                    stored::meta_to_pb(&meta, state.last_time_ms, state.last_zxid, false)
                        .encode_to_vec(),
                ),
            ));
            // Written behind: the in-memory tree is what reads use; sled catches up on the
            // writer thread, each batch with its applied index (so sled always holds the state
            // after some whole batch), and before any purge or snapshot install it has caught
            // up and been flushed (see `Store::durable_flush`).
            self.store.write_behind(&self.sm, changes);
            *shared.meta.write().unwrap_or_else(PoisonError::into_inner) = meta;
            shared.hub.publish(&events);
            last.index
        };
        shared.applied.send_replace(last_index);
        shared.stages.since(Stage::Apply, started);
        shared
            .stages
            .count(Stage::ApplyEntries, results.len() as u64);
        shared.stages.applied(last_index);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SmSnapshotBuilder {
            shared: self.shared.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<tokio::fs::File>, StorageError<u64>> {
        let dir = self.shared.snapshot_dir.clone();
        // Unnamed once opened: a transfer cut off by a crash leaves nothing to clean up.
        let file = tokio::task::spawn_blocking(move || snapshot::unnamed_file(&dir, "incoming"))
            .await
            .map_err(|e| snap_err(ErrorVerb::Write)(e.into()))?
            .map_err(snap_err(ErrorVerb::Write))?;
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<u64>> {
        let install_err = |e: StoreError| {
            e.into_storage(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
            )
        };
        let received = snapshot.into_std().await;
        let started = std::time::Instant::now();
        let (store, shared, old_gen, m) = (
            self.store.clone(),
            self.shared.clone(),
            self.gen,
            meta.clone(),
        );
        let (tree, new_state, size) = tokio::task::spawn_blocking(move || {
            install_blocking(&store, &shared, old_gen, &m, received)
        })
        .await
        .map_err(|e| install_err(e.into()))?
        .map_err(install_err)?;
        self.gen = old_gen + 1;
        self.sm = tree;

        let index = meta.last_log_id.map_or(0, |l| l.index);
        {
            let mut state = self
                .shared
                .tree
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            *state = new_state;
            *self
                .shared
                .meta
                .write()
                .unwrap_or_else(PoisonError::into_inner) = AppliedMeta {
                last_applied: meta.last_log_id,
                membership: meta.last_membership.clone(),
            };
            self.shared.hub.reset_history(index);
            self.shared.installs.send_modify(|n| *n += 1);
        }
        self.shared
            .snapshot_index
            .fetch_max(index, Ordering::SeqCst);
        self.shared.snapshot_bytes.store(size, Ordering::Relaxed);
        self.shared.applied.send_replace(index);
        self.shared.stages.since(Stage::SnapshotInstall, started);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let shared = self.shared.clone();
        let newest =
            tokio::task::spawn_blocking(move || -> Result<Option<(Meta, fs::File)>, StoreError> {
                // Under the files lock, so that a prune cannot remove it between the two.
                let _files = shared
                    .snapshot_files
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let Some((path, meta)) = snapshot::newest(&shared.snapshot_dir)? else {
                    return Ok(None);
                };
                let f = fs::File::open(&path).map_err(|e| StoreError::io("open", &path, e))?;
                Ok(Some((meta, f)))
            })
            .await
            .map_err(|e| snap_err(ErrorVerb::Read)(e.into()))?
            .map_err(snap_err(ErrorVerb::Read))?;
        Ok(newest.map(|(meta, f)| Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(f)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use openraft::{CommittedLeaderId, Membership};

    use std::path::Path;

    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    use super::*;
    use crate::proto::raft as pb;
    use crate::tree::{Command, CreateMode, Event, EventType, Op, Request};
    use crate::watch::WatchKind;

    async fn read_all(mut f: Box<tokio::fs::File>) -> Vec<u8> {
        f.seek(SeekFrom::Start(0)).await.expect("seek");
        let mut v = Vec::new();
        f.read_to_end(&mut v).await.expect("read");
        v
    }

    async fn file_with(bytes: Vec<u8>) -> Box<tokio::fs::File> {
        let mut f = tokio::fs::File::from_std(tempfile::tempfile().expect("tempfile"));
        f.write_all(&bytes).await.expect("write");
        f.flush().await.expect("flush");
        Box::new(f)
    }

    fn lid(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn open(dir: &Path) -> (Store, StateMachineStore, Arc<SmShared>) {
        let store = Store::open(dir, crate::store::DEFAULT_CACHE_CAPACITY).expect("store");
        let hub = Arc::new(WatchHub::new(1000, 64, 0));
        let (sm, shared) = StateMachineStore::open(&store, hub).expect("sm");
        (store, sm, shared)
    }

    fn create(path: &str, mode: CreateMode, session_id: u64, ttl_ms: i64) -> Request {
        Request::Multi {
            ops: vec![Op::Create {
                path: path.into(),
                data: Bytes::from(format!("data of {path}")),
                mode,
                session_id,
                ttl_ms,
                acl: Vec::new(),
            }],
            single: true,
            caller: None,
        }
    }

    fn tagged(client_id: u64, seq: u64, first_incomplete: u64, request: Request) -> Request {
        Request::Tagged {
            id: crate::tree::RequestId {
                client_id,
                seq,
                first_incomplete,
            },
            request: Box::new(request),
        }
    }

    fn cmd(time_ms: i64, requests: Vec<Request>) -> EntryPayload<TypeConfig> {
        EntryPayload::Normal(Command { time_ms, requests }.into())
    }

    fn entry(term: u64, index: u64, payload: EntryPayload<TypeConfig>) -> Entry {
        Entry {
            log_id: lid(term, index),
            payload,
        }
    }

    /// A history exercising every kind of record: sessions, ephemerals, sequentials, TTL
    /// nodes, containers (one reaped), data changes, deletes, blank and membership entries.
    fn history() -> Vec<Entry> {
        vec![
            entry(1, 1, EntryPayload::Blank),
            entry(
                1,
                2,
                EntryPayload::Membership(Membership::new(vec![[1, 2, 3].into()], ())),
            ),
            entry(
                1,
                3,
                cmd(
                    1_000,
                    vec![
                        Request::OpenSession {
                            session_id: 7,
                            secret: Bytes::from_static(b"seven"),
                            timeout_ms: 10_000,
                        },
                        Request::OpenSession {
                            session_id: 8,
                            secret: Bytes::from_static(b"eight"),
                            timeout_ms: 10_000,
                        },
                        create("/app", CreateMode::Persistent, 0, 0),
                        create("/app/locks", CreateMode::Container, 0, 0),
                        create("/app/locks/", CreateMode::EphemeralSequential, 7, 0),
                        create("/app/locks/", CreateMode::EphemeralSequential, 8, 0),
                        create("/ttl", CreateMode::PersistentWithTtl, 0, 60_000),
                        create("/gone", CreateMode::Container, 0, 0),
                        create("/gone/x", CreateMode::Persistent, 0, 0),
                    ],
                ),
            ),
            entry(
                2,
                4,
                cmd(
                    2_000,
                    vec![
                        Request::Multi {
                            ops: vec![
                                Op::SetData {
                                    path: "/app".into(),
                                    data: Bytes::from_static(b"v2"),
                                    version: 0,
                                },
                                Op::Delete {
                                    path: "/gone/x".into(),
                                    version: -1,
                                },
                            ],
                            single: false,
                            caller: None,
                        },
                        Request::CloseSession {
                            session_id: 8,
                            secret: Bytes::from_static(b"eight"),
                        },
                        // Fails: results recorded, nothing changes.
                        create("/missing/child", CreateMode::Persistent, 0, 0),
                        // Writes with request ids: one applied, a copy of it, one that fails
                        // (its error is remembered too), one of another client.
                        tagged(0xc1, 1, 1, create("/once", CreateMode::Persistent, 0, 0)),
                        tagged(0xc1, 1, 1, create("/once", CreateMode::Persistent, 0, 0)),
                        tagged(0xc1, 2, 1, create("/app", CreateMode::Persistent, 0, 0)),
                        tagged(
                            0xc2,
                            9,
                            9,
                            create("/app/", CreateMode::PersistentSequential, 0, 0),
                        ),
                    ],
                ),
            ),
            entry(2, 5, EntryPayload::Blank),
        ]
    }

    #[tokio::test]
    async fn apply_persists_and_reopen_restores_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (want_state, want_applied) = {
            let (store, mut sm, shared) = open(dir.path());
            let stream = shared.hub.open_stream();
            let mut rx = stream.rx;
            {
                let _read = shared.tree.read().expect("lock");
                shared.hub.add(stream.id, "/app", WatchKind::Data, None);
            }
            let results = sm.apply(history()).await.expect("apply");
            assert_eq!(results.len(), 5);
            assert!(results[0].is_empty() && results[1].is_empty() && results[4].is_empty());
            assert_eq!(results[2].len(), 9);
            assert_eq!(results[3].len(), 7);
            assert!(
                matches!(&results[3][4], crate::tree::RequestResult::Duplicate { zxid: 4, result }
                    if **result == results[3][3]),
                "{:?}",
                results[3][4]
            );
            assert_eq!(*shared.applied.borrow(), 5);
            let delivery = rx.try_recv().expect("watch fired");
            assert_eq!(
                delivery.events,
                vec![Event {
                    zxid: 4,
                    kind: EventType::DataChanged,
                    path: "/app".into(),
                    acl: Default::default(),
                }]
            );
            {
                let st = shared.tree.read().expect("lock");
                assert!(st.get("/gone").is_none(), "emptied container is reaped");
                assert_eq!(st.get("/app/locks").map(|n| n.children.len()), Some(1));
                assert_eq!(st.applied_index, 5);
            }
            let applied = sm.applied_state().await.expect("applied");
            assert_eq!(applied.0, Some(lid(2, 5)));
            assert_eq!(applied.1.log_id(), &Some(lid(1, 2)));
            // apply does not flush; a clean shutdown does.
            store.durable_flush().expect("flush");
            let st = shared.tree.read().expect("lock").clone();
            let c1 = st.clients().get(0xc1).expect("client 0xc1 remembered");
            assert_eq!(c1.results.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
            assert_eq!(st.clients().len(), 2);
            (st, applied)
        };
        let (_store, mut sm, shared) = open(dir.path());
        assert_eq!(*shared.tree.read().expect("lock"), want_state);
        assert_eq!(sm.applied_state().await.expect("applied"), want_applied);
        assert_eq!(*shared.applied.borrow(), 5);
        assert_eq!(
            shared.hub.oldest_zxid(),
            6,
            "history restarts after the loaded state"
        );
    }

    #[tokio::test]
    async fn snapshot_installs_into_a_fresh_store_as_an_equal_state() {
        let leader_dir = tempfile::tempdir().expect("tempdir");
        let follower_dir = tempfile::tempdir().expect("tempdir");
        let (_ls, mut leader, leader_shared) = open(leader_dir.path());
        leader.apply(history()).await.expect("apply");
        let built = leader
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build");
        assert_eq!(built.meta.last_log_id, Some(lid(2, 5)));
        assert_eq!(leader_shared.snapshot_index.load(Ordering::SeqCst), 5);
        let current = leader
            .get_current_snapshot()
            .await
            .expect("current")
            .expect("some");
        assert_eq!(current.meta, built.meta);

        let (fstore, mut follower, fshared) = open(follower_dir.path());
        // Some state of its own, which the snapshot must replace entirely.
        follower
            .apply(vec![entry(
                1,
                1,
                cmd(5, vec![create("/stale", CreateMode::Persistent, 0, 0)]),
            )])
            .await
            .expect("apply");
        let mut rx = fshared.applied.subscribe();
        let mut data = follower.begin_receiving_snapshot().await.expect("begin");
        data.write_all(&read_all(current.snapshot).await)
            .await
            .expect("write");
        data.shutdown().await.expect("flush");
        follower
            .install_snapshot(&current.meta, data)
            .await
            .expect("install");

        let want = leader_shared.tree.read().expect("lock").clone();
        assert_eq!(want.clients().len(), 2, "the snapshot carries request ids");
        assert_eq!(*fshared.tree.read().expect("lock"), want);
        assert_eq!(fshared.tree.read().expect("lock").digest(), want.digest());
        assert_eq!(
            follower.applied_state().await.expect("applied"),
            leader.applied_state().await.expect("applied")
        );
        assert!(rx.has_changed().expect("sender alive"));
        assert_eq!(*rx.borrow_and_update(), 5);
        assert_eq!(fstore.sm_gen().expect("gen"), 1);
        let after = follower
            .get_current_snapshot()
            .await
            .expect("current")
            .expect("some");
        assert_eq!(after.meta, current.meta);
        assert_eq!(fshared.hub.oldest_zxid(), 6);

        // The installed state is what a restart loads, from the new generation only.
        drop((follower, fshared, fstore));
        let (fstore, _follower, fshared) = open(follower_dir.path());
        assert_eq!(*fshared.tree.read().expect("lock"), want);
        let names: Vec<String> = fstore
            .raft_meta()
            .iter()
            .keys()
            .filter_map(|k| k.ok().map(|k| String::from_utf8_lossy(&k).into_owned()))
            .collect();
        assert!(names.contains(&"sm_gen".to_string()));
        assert!(fstore.drop_stale_sm_trees(1).expect("trees").is_empty());
    }

    #[tokio::test]
    async fn a_backup_restores_as_an_equal_state_with_the_new_membership() {
        let src_dir = tempfile::tempdir().expect("tempdir");
        let dst_dir = tempfile::tempdir().expect("tempdir");
        let (_s, mut sm, shared) = open(src_dir.path());
        sm.apply(history()).await.expect("apply");
        let mut bytes = Vec::new();
        let (summary, size) = encode_backup(&shared, &mut bytes).expect("backup");
        assert_eq!(size, bytes.len() as u64);
        assert_eq!(summary.last_log_id, Some(lid(2, 5)));
        let want = shared.tree.read().expect("lock").clone();
        assert_eq!(
            (summary.znodes, summary.sessions),
            (want.node_count() as u64, 1)
        );
        assert_eq!(
            shared.snapshot_index.load(Ordering::SeqCst),
            0,
            "no snapshot file"
        );
        let (inspected, hash) = inspect_snapshot(&bytes).expect("inspect");
        assert_eq!(inspected, summary);
        assert_eq!(hash, want.digest());

        let membership =
            StoredMembership::new(Some(lid(2, 5)), Membership::new(vec![[7, 8].into()], ()));
        {
            let store =
                Store::open(dst_dir.path(), crate::store::DEFAULT_CACHE_CAPACITY).expect("store");
            let restored = restore_snapshot(&store, &bytes, membership.clone()).expect("restore");
            assert_eq!(restored.membership, membership);
            assert_eq!(restored.last_zxid, summary.last_zxid);
            store.durable_flush().expect("flush");
        }
        let (_d, mut dst, dshared) = open(dst_dir.path());
        assert_eq!(*dshared.tree.read().expect("lock"), want);
        assert_eq!(
            dst.applied_state().await.expect("applied"),
            (Some(lid(2, 5)), membership.clone())
        );
        let cur = dst
            .get_current_snapshot()
            .await
            .expect("cur")
            .expect("some");
        assert_eq!(cur.meta.last_log_id, Some(lid(2, 5)));
        assert_eq!(cur.meta.last_membership, membership);
        assert_eq!(dshared.hub.oldest_zxid(), 6);

        let mut cut = bytes.clone();
        cut.truncate(bytes.len() / 2);
        assert!(inspect_snapshot(&cut).is_err());
    }

    #[tokio::test]
    async fn a_build_keeps_one_file_and_a_transfer_of_the_old_one_reads_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, mut sm, _shared) = open(dir.path());
        let mut sending = None;
        for i in 1..=3 {
            sm.apply(vec![entry(1, i, EntryPayload::Blank)])
                .await
                .expect("apply");
            sm.get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .expect("build");
            if i == 2 {
                // Being sent to a member when the next build replaces it.
                sending = sm.get_current_snapshot().await.expect("current");
            }
        }
        let files = snapshot::list(&store.snapshot_dir()).expect("list");
        let indexes: Vec<u64> = files.iter().map(|(i, _, _)| *i).collect();
        assert_eq!(indexes, vec![3]);
        let sending = sending.expect("a snapshot at index 2");
        let d = snapshot::read_snapshot(read_all(sending.snapshot).await.as_slice())
            .expect("the replaced file reads on");
        assert_eq!(d.meta.last_log_id, Some(lid(1, 2)));
        drop(sm);
        drop(_shared);
        drop(store);
        let (_store, mut sm, shared) = open(dir.path());
        assert_eq!(shared.snapshot_index.load(Ordering::SeqCst), 3);
        let cur = sm.get_current_snapshot().await.expect("cur").expect("some");
        assert_eq!(cur.meta.last_log_id, Some(lid(1, 3)));
    }

    #[tokio::test]
    async fn a_snapshot_holds_the_state_of_the_moment_it_was_taken() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_store, mut sm, shared) = open(dir.path());
        sm.apply(history()).await.expect("apply");
        let want = shared.tree.read().expect("lock").clone();
        let (state, applied) = view(&shared).expect("view");
        // Applies go on after the view is taken (while its file would be written) ...
        sm.apply(vec![entry(
            2,
            6,
            cmd(3_000, vec![create("/later", CreateMode::Persistent, 0, 0)]),
        )])
        .await
        .expect("apply");
        assert!(shared.tree.read().expect("lock").get("/later").is_some());
        // ... and the snapshot is still the state of that moment.
        let (meta, file, size) = build_snapshot_blocking(&shared, state, applied).expect("build");
        assert_eq!(meta.last_log_id, Some(lid(2, 5)));
        assert_eq!(file.metadata().expect("stat").len(), size);
        let d = snapshot::read_snapshot(file).expect("read");
        assert!(d.state.get("/later").is_none());
        assert_eq!(d.state.digest(), want.digest());
        assert_eq!(d.state, want);
    }

    #[tokio::test]
    async fn a_corrupt_snapshot_is_rejected_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, mut sm, shared) = open(dir.path());
        sm.apply(history()).await.expect("apply");
        let before = shared.tree.read().expect("lock").clone();
        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build");
        let snap_bytes = read_all(snap.snapshot).await;
        let mut bytes = snap_bytes.clone();
        bytes.truncate(bytes.len() - 3);
        let res = sm
            .install_snapshot(&snap.meta, file_with(bytes).await)
            .await;
        assert!(res.is_err());
        let res = sm
            .install_snapshot(&snap.meta, file_with(b"garbage".to_vec()).await)
            .await;
        assert!(res.is_err());
        // A flipped bit: refused by the checksum.
        let mut flipped = snap_bytes.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x10;
        let res = sm
            .install_snapshot(&snap.meta, file_with(flipped).await)
            .await;
        assert!(res.is_err());
        // Decodes, but is not a tree: refused before any file or tree changes (format 2
        // has no checksum, so the tree check is what refuses it).
        let mut orphan = Vec::new();
        let header = pb::SnapshotHeader {
            format: 2,
            meta: Some(stored::meta_to_pb(
                &AppliedMeta {
                    last_applied: snap.meta.last_log_id,
                    membership: snap.meta.last_membership.clone(),
                },
                0,
                0,
                true,
            )),
            snapshot_id: snap.meta.snapshot_id.clone(),
            nodes: 1,
            sessions: 0,
            clients: 0,
        };
        header.encode_length_delimited(&mut orphan).expect("encode");
        let rec = pb::SnapshotNode {
            path: "/no/parent".into(),
            node: Some(pb::StoredNode::default()),
        };
        rec.encode_length_delimited(&mut orphan).expect("encode");
        let res = sm
            .install_snapshot(&snap.meta, file_with(orphan).await)
            .await;
        assert!(res.is_err());
        assert_eq!(*shared.tree.read().expect("lock"), before);
        assert_eq!(store.sm_gen().expect("gen"), 0);
        let cur = sm.get_current_snapshot().await.expect("cur").expect("some");
        assert_eq!(read_all(cur.snapshot).await, snap_bytes);
    }

    #[tokio::test]
    async fn a_tree_cut_off_mid_write_is_rebuilt_from_the_newest_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let want = {
            let (store, mut sm, shared) = open(dir.path());
            sm.apply(history()).await.expect("apply");
            sm.get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .expect("build");
            let want = shared.tree.read().expect("lock").clone();
            sm.apply(vec![entry(
                2,
                6,
                cmd(3_000, vec![create("/later", CreateMode::Persistent, 0, 0)]),
            )])
            .await
            .expect("apply");
            store.durable_flush().expect("flush");
            // What a crash in the middle of a group of writes leaves: the marker, and some
            // but not all of the group's changes.
            let tree = store.sm_tree(store.sm_gen().expect("gen")).expect("tree");
            tree.insert(WRITING_KEY, &[]).expect("insert");
            tree.insert(node_key("/half"), b"x".to_vec())
                .expect("insert");
            store.durable_flush().expect("flush");
            want
        };
        let (store, mut sm, shared) = open(dir.path());
        // The snapshot's state: openraft re-applies the log after it (entry 6 here).
        assert_eq!(*shared.tree.read().expect("lock"), want);
        assert_eq!(
            sm.applied_state().await.expect("applied").0,
            Some(lid(2, 5))
        );
        assert_eq!(store.sm_gen().expect("gen"), 1);
        assert!(store
            .sm_tree(1)
            .expect("tree")
            .get(WRITING_KEY)
            .expect("get")
            .is_none());
        drop((store, sm, shared));
        // And it stays rebuilt.
        let (_store, _sm, shared) = open(dir.path());
        assert_eq!(*shared.tree.read().expect("lock"), want);
    }

    #[tokio::test]
    async fn a_membership_kept_in_the_meta_record_by_format_1_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let membership = StoredMembership::new(
            Some(lid(1, 2)),
            openraft::Membership::new(vec![[1, 2, 3].into()], ()),
        );
        {
            let store =
                Store::open(dir.path(), crate::store::DEFAULT_CACHE_CAPACITY).expect("store");
            let old = AppliedMeta {
                last_applied: Some(lid(1, 2)),
                membership: membership.clone(),
            };
            store
                .sm_tree(0)
                .expect("tree")
                .insert(
                    META_KEY,
                    stored::meta_to_pb(&old, 0, 0, true).encode_to_vec(),
                )
                .expect("insert");
            store.durable_flush().expect("flush");
        }
        {
            let (store, mut sm, _shared) = open(dir.path());
            assert_eq!(sm.applied_state().await.expect("applied").1, membership);
            sm.apply(vec![entry(1, 3, EntryPayload::Blank)])
                .await
                .expect("apply");
            store.durable_flush().expect("flush");
        }
        let (_store, mut sm, _shared) = open(dir.path());
        let (applied, m) = sm.applied_state().await.expect("applied");
        assert_eq!((applied, m), (Some(lid(1, 3)), membership));
    }

    #[tokio::test]
    async fn leftovers_of_an_interrupted_install_are_dropped_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (store, mut sm, _shared) = open(dir.path());
            sm.apply(history()).await.expect("apply");
            // A crash after loading sm.1 but before flipping sm_gen.
            store
                .sm_tree(1)
                .expect("tree")
                .insert(node_key("/half"), b"x".to_vec())
                .expect("insert");
            fs::write(store.snapshot_dir().join("9-9.snap.tmp"), b"partial").expect("write");
            store.durable_flush().expect("flush");
        }
        let (store, _sm, shared) = open(dir.path());
        assert!(shared.tree.read().expect("lock").get("/half").is_none());
        assert!(shared.tree.read().expect("lock").get("/app").is_some());
        assert!(store.drop_stale_sm_trees(0).expect("trees").is_empty());
        assert!(snapshot::list_dir(&store.snapshot_dir())
            .expect("list")
            .is_empty());
    }
}
