//! Snapshots of the state machine: built from a point-in-time view on a thread of their own,
//! received into an unnamed file, installed into a fresh generation of the sled tree; and the
//! backups and offline restores that use the same format (see [`super::super::snapshot`]).

use std::fs;
use std::io::{Seek, SeekFrom};
use std::sync::atomic::Ordering;
use std::sync::PoisonError;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::{ErrorSubject, ErrorVerb, RaftSnapshotBuilder, Snapshot, StorageError};

use super::records::{replace_generation, EventLog};
use super::{poisoned, snap_err, SmShared, SmSnapshotBuilder, StateMachineStore};
use crate::consensus::snapshot::{self, AppliedMeta, Meta};
use crate::stages::Stage;
use crate::store::{Store, StoreError};
use crate::tree::{History, State};
use crate::types::{LogId, StoredMembership, TypeConfig};

/// Snapshot files kept after a build: the new file is complete (fsynced and renamed) before
/// the old one goes, and a transfer that has the old one open reads on from its open file.
const SNAPSHOTS_KEPT: usize = 1;

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// A point-in-time view of the state machine: a clone of the state (constant time, see
/// [`State`]) and its applied meta, taken together under the read lock.
pub(super) fn view(shared: &SmShared) -> Result<(State, AppliedMeta), StoreError> {
    let state = shared.tree.read().map_err(|_| poisoned())?;
    Ok((state.clone(), shared.meta_read().clone()))
}

/// Writes a view as the newest snapshot file and opens it for reading. Blocking; holds no
/// state-machine lock.
pub(super) fn build_snapshot_blocking(
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
    // The hub may hold later events by now; they are left out.
    let history = shared.hub.history_upto(index);
    let _files = shared
        .snapshot_files
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let size = snapshot::write_file(&shared.snapshot_dir, &name, |f| {
        snapshot::write_snapshot(f, &state, &history, &applied, &meta.snapshot_id)
    })?;
    drop(history);
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
    // A backup starts a new history where it ends (see `crate::backup`).
    let history = History::empty_at(index);
    let size = snapshot::write_snapshot(w, &state, &history, &applied, &meta.snapshot_id)?;
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
    let history = History::empty_at(last.index);
    snapshot::write_file(&dir, &snapshot::file_name(&meta), |f| {
        snapshot::write_snapshot(f, &d.state, &history, &applied, &meta.snapshot_id)
    })?;
    replace_generation(store, store.sm_gen()?, &d.state, &history, &applied)?;
    Ok(SnapshotSummary::of(&meta, &d.state))
}

/// The disk half of an install: reads the received file (checksum, tree), saves it as the
/// only snapshot file, and loads it into the next generation. Returns the new tree, the
/// state and watch history to swap in and the file's size. Everything is read and checked
/// before anything on disk changes.
fn install_blocking(
    store: &Store,
    shared: &SmShared,
    old_gen: u64,
    meta: &Meta,
    mut received: fs::File,
) -> Result<(sled::Tree, State, History, u64), StoreError> {
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
            snapshot::write_snapshot(f, &d.state, &d.history, &applied, &meta.snapshot_id)
        })?;
        snapshot::prune(&shared.snapshot_dir, 1)?;
        size
    };
    // 2. Load it into a fresh tree of the next generation, and point at that.
    let tree = replace_generation(store, old_gen, &d.state, &d.history, &applied)?;
    Ok((tree, d.state, d.history, size))
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

impl StateMachineStore {
    /// Opens an unnamed file to receive a snapshot into.
    pub(super) async fn receive_into_file(
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

    /// Installs a received snapshot: see the module docs of [`super`].
    pub(super) async fn install(
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
        let (tree, new_state, history, size) = tokio::task::spawn_blocking(move || {
            install_blocking(&store, &shared, old_gen, &m, received)
        })
        .await
        .map_err(|e| install_err(e.into()))?
        .map_err(install_err)?;
        self.gen = old_gen + 1;
        self.sm = tree;
        self.events = EventLog::of(&history, self.shared.hub.history_capacity());

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
            self.shared.hub.restore_history(history);
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

    /// The newest snapshot file, opened for sending.
    pub(super) async fn current_snapshot(
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
