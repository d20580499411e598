//! Backups of a running cluster and their offline restore into the data directories of a new
//! cluster (`baton snapshot save | status | restore`).
//!
//! # The backup file
//!
//! The body is a snapshot exactly as members keep them in `<data_dir>/snapshots` (see
//! [`crate::consensus::state_machine`]): a header with the last applied log id, membership,
//! last zxid and time, then one record per znode and per session. A fixed
//! [`FOOTER_LEN`]-byte footer follows: the magic `BATONBK1`, the body's length (u64, little
//! endian), its CRC-32 (u32) and the file format (u32). A file whose footer, length or
//! checksum does not match is refused before anything is decoded.
//!
//! # Saving
//!
//! [`save`] streams `Maintenance.Backup` from one member into `FILE.part`, checks the size and
//! checksum the stream's trailer announces, appends the footer, fsyncs, renames to `FILE` and
//! fsyncs the directory: `FILE` exists only complete and verified.
//!
//! # Restoring
//!
//! [`restore`] writes a new data directory for one member of a new cluster, offline: the
//! backup's state as the state machine and as the newest snapshot file, with the given
//! members as the membership; a log that starts after the backup's index (its last entry is
//! recorded as purged, and the member's vote is in the backup's term), so the new cluster's
//! first entry, and every zxid after it, is greater than every zxid in the backup; and a new
//! cluster id, derived from the backup and the member list (every member restored from the
//! same file with the same list derives the same id), so no member of the old cluster is ever
//! admitted (see [`crate::consensus::identity`]). Sessions are kept: a new leader gives each
//! a full timeout, then expires those whose clients did not come back (with their ephemeral
//! nodes and locks). Watch history starts at the backup's index: a watch resumed from an
//! older zxid is answered `COMPACTED`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use openraft::storage::RaftLogStorage;

use crate::client::{Client, ClientError};
use crate::consensus::identity;
use crate::consensus::state_machine::{self, SnapshotSummary};
use crate::consensus::{MemberNode, StoredMembership};
use crate::proto::v1::backup_chunk::Part;
use crate::store::log::{self, LogStore};
use crate::store::{Store, StoreError};

/// Magic number at the start of a backup file's footer.
pub const FOOTER_MAGIC: [u8; 8] = *b"BATONBK1";
/// Length of a backup file's footer.
pub const FOOTER_LEN: usize = 24;
/// Format number of backup files written by this build.
pub const BACKUP_FORMAT: u32 = 1;
/// Longest wait for the next message of a backup stream.
const STREAM_IDLE: Duration = Duration::from_secs(60);
/// Shortest deadline for opening a backup stream (the member encodes the state first).
const OPEN_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a backup could not be saved, read or restored. Displays as one line that starts with an
/// upper-snake reason, as the CLI prints errors.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file operation failed.
    #[error("IO: {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a complete, intact backup (footer, length, checksum, or contents).
    #[error("CORRUPT: {path}: {why}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What does not match.
        why: String,
    },
    /// The backup stream broke off or does not match its own trailer.
    #[error("BAD_STREAM: {0}")]
    Stream(String),
    /// The member could not be reached, or refused the backup.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// The data directory to restore into is not empty.
    #[error("NOT_EMPTY: {0} is not empty: a restore writes a new data directory only")]
    NotEmpty(PathBuf),
    /// The restore's arguments do not describe a member of a cluster.
    #[error("BAD_ARGUMENTS: {0}")]
    BadArguments(String),
    /// The new data directory could not be written.
    #[error("STORAGE: {0}")]
    Store(String),
}

impl From<StoreError> for BackupError {
    fn from(e: StoreError) -> Self {
        BackupError::Store(e.to_string())
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BackupError + 'a {
    move |source| BackupError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The footer of a backup whose body is `len` bytes with CRC-32 `crc32`.
pub fn footer(len: u64, crc32: u32) -> [u8; FOOTER_LEN] {
    let mut f = [0u8; FOOTER_LEN];
    f[..8].copy_from_slice(&FOOTER_MAGIC);
    f[8..16].copy_from_slice(&len.to_le_bytes());
    f[16..20].copy_from_slice(&crc32.to_le_bytes());
    f[20..24].copy_from_slice(&BACKUP_FORMAT.to_le_bytes());
    f
}

/// A saved backup, as the stream described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedBackup {
    /// The file written.
    pub path: PathBuf,
    /// The member that served it.
    pub member_id: u64,
    /// Log index the backup covers.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    /// Read index of the barrier it was taken after (every write acknowledged before the
    /// backup started is at or below it).
    pub read_index: u64,
    /// zxid of the last change in the backup.
    pub last_zxid: u64,
    /// Znodes.
    pub znodes: u64,
    /// Sessions.
    pub sessions: u64,
    /// Bytes of the snapshot (the file has [`FOOTER_LEN`] more).
    pub size: u64,
    /// CRC-32 of the snapshot.
    pub crc32: u32,
}

/// Removes a partial file when dropped, unless disarmed.
struct PartFile<'a> {
    path: &'a Path,
    armed: bool,
}

impl Drop for PartFile<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(self.path);
        }
    }
}

/// Streams a backup from the member `client` is connected to into `path` (see the module
/// documentation). `path` is replaced only once the new backup is complete and verified.
///
/// # Errors
/// [`BackupError::Client`] if the member cannot be reached or refuses (e.g.
/// `BACKUP_IN_PROGRESS`, `UNAVAILABLE` without quorum); [`BackupError::Stream`] if the stream
/// breaks off, stalls for a minute, or does not match its trailer; [`BackupError::Io`] if the
/// file cannot be written.
pub async fn save(client: &Client, path: &Path) -> Result<SavedBackup, BackupError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".part");
    let part = PathBuf::from(name);
    let client = client.with_timeout(client.timeout().max(OPEN_TIMEOUT));
    let mut stream = client.backup().await?;
    let next = |m: Result<Result<Option<_>, tonic::Status>, _>| match m {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(status)) => Err(BackupError::Client(ClientError::Status(status))),
        Err(_) => Err(BackupError::Stream(format!(
            "no message from the member for {} s",
            STREAM_IDLE.as_secs()
        ))),
    };
    let info = match next(tokio::time::timeout(STREAM_IDLE, stream.message()).await)? {
        Some(crate::proto::v1::BackupChunk {
            part: Some(Part::Info(info)),
        }) => info,
        _ => {
            return Err(BackupError::Stream(
                "the stream did not start with its info".into(),
            ))
        }
    };

    let mut guard = PartFile {
        path: &part,
        armed: true,
    };
    let file = File::create(&part).map_err(io("create", &part))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut hasher = crc32fast::Hasher::new();
    let mut len: u64 = 0;
    let trailer = loop {
        match next(tokio::time::timeout(STREAM_IDLE, stream.message()).await)? {
            Some(chunk) => match chunk.part {
                Some(Part::Data(d)) => {
                    hasher.update(&d);
                    len += d.len() as u64;
                    out.write_all(&d).map_err(io("write", &part))?;
                }
                Some(Part::Trailer(t)) => break t,
                Some(Part::Info(_)) | None => {
                    return Err(BackupError::Stream(
                        "an unexpected message in the middle of the stream".into(),
                    ))
                }
            },
            None => {
                return Err(BackupError::Stream(format!(
                    "the stream ended after {len} of {} bytes, without its trailer",
                    info.size
                )))
            }
        }
    };
    let crc = hasher.finalize();
    if trailer.size != len || info.size != len {
        return Err(BackupError::Stream(format!(
            "received {len} bytes; the member announced {} and its trailer {}",
            info.size, trailer.size
        )));
    }
    if trailer.crc32 != crc {
        return Err(BackupError::Stream(format!(
            "checksum mismatch: the member sent crc32 {:08x}, the bytes received have {crc:08x}",
            trailer.crc32
        )));
    }
    out.write_all(&footer(len, crc))
        .map_err(io("write", &part))?;
    let file = out.into_inner().map_err(|e| BackupError::Io {
        op: "write",
        path: part.clone(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io("fsync", &part))?;
    drop(file);
    fs::rename(&part, path).map_err(io("rename", &part))?;
    guard.armed = false;
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync directory", dir))?;
    }
    Ok(SavedBackup {
        path: path.to_path_buf(),
        member_id: info.header.map_or(0, |h| h.member_id),
        index: info.index,
        term: info.term,
        read_index: info.read_index,
        last_zxid: info.last_zxid,
        znodes: info.znodes,
        sessions: info.sessions,
        size: len,
        crc32: crc,
    })
}

/// Reads a backup file and checks its footer, length and checksum; returns the snapshot
/// bytes and their CRC-32.
///
/// # Errors
/// [`BackupError::Io`] if it cannot be read; [`BackupError::Corrupt`] if it is not a complete,
/// intact backup file.
pub fn read_verified(path: &Path) -> Result<(Vec<u8>, u32), BackupError> {
    let corrupt = |why: String| BackupError::Corrupt {
        path: path.to_path_buf(),
        why,
    };
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io("read", path))?;
    if bytes.len() < FOOTER_LEN {
        return Err(corrupt(format!(
            "{} bytes: too short to be a backup file",
            bytes.len()
        )));
    }
    let body_len = bytes.len() - FOOTER_LEN;
    let f = &bytes[body_len..];
    if f[..8] != FOOTER_MAGIC {
        return Err(corrupt(
            "no backup footer: not a Baton backup file, or cut short".into(),
        ));
    }
    let word = |r: std::ops::Range<usize>| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&f[r]);
        u32::from_le_bytes(b)
    };
    let mut len = [0u8; 8];
    len.copy_from_slice(&f[8..16]);
    let len = u64::from_le_bytes(len);
    let (crc, format) = (word(16..20), word(20..24));
    if format != BACKUP_FORMAT {
        return Err(corrupt(format!(
            "backup file format {format}; this build reads {BACKUP_FORMAT}"
        )));
    }
    if len != body_len as u64 {
        return Err(corrupt(format!(
            "the footer announces {len} bytes of snapshot, the file holds {body_len}"
        )));
    }
    bytes.truncate(body_len);
    let actual = crc32fast::hash(&bytes);
    if actual != crc {
        return Err(corrupt(format!(
            "checksum mismatch: the footer says crc32 {crc:08x}, the contents have {actual:08x}"
        )));
    }
    Ok((bytes, crc))
}

/// What a backup file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupFileInfo {
    /// The snapshot's header and counts.
    pub summary: SnapshotSummary,
    /// The digest of its state: the `state_hash` a member reports once it holds exactly this
    /// state (e.g. a restored member before any new write).
    pub state_hash: u64,
    /// Bytes of the snapshot.
    pub size: u64,
    /// Its CRC-32 (checked).
    pub crc32: u32,
}

impl BackupFileInfo {
    /// Log index the backup covers.
    pub fn index(&self) -> u64 {
        self.summary.last_log_id.map_or(0, |l| l.index)
    }

    /// Term of that entry.
    pub fn term(&self) -> u64 {
        self.summary.last_log_id.map_or(0, |l| l.leader_id.term)
    }

    /// Voter ids of the membership the backup was taken with.
    pub fn voters(&self) -> Vec<u64> {
        self.summary.membership.membership().voter_ids().collect()
    }
}

fn inspect_bytes(path: &Path, body: &[u8], crc32: u32) -> Result<BackupFileInfo, BackupError> {
    let (summary, state_hash) =
        state_machine::inspect_snapshot(body).map_err(|e| BackupError::Corrupt {
            path: path.to_path_buf(),
            why: format!("the checksum matches but the snapshot does not decode: {e}"),
        })?;
    Ok(BackupFileInfo {
        summary,
        state_hash,
        size: body.len() as u64,
        crc32,
    })
}

/// Reads, verifies and decodes a backup file (every record, and that they form a tree).
/// Blocking.
///
/// # Errors
/// As [`read_verified`]; [`BackupError::Corrupt`] if the snapshot does not decode.
pub fn inspect(path: &Path) -> Result<BackupFileInfo, BackupError> {
    let (body, crc) = read_verified(path)?;
    inspect_bytes(path, &body, crc)
}

/// What to restore, and as which member of which new cluster.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// The backup file.
    pub file: PathBuf,
    /// The data directory to create (absent or empty).
    pub data_dir: PathBuf,
    /// This member's id in the new cluster.
    pub id: u64,
    /// Every member of the new cluster: id → peer address, as `batond --initial-members`.
    pub initial_members: BTreeMap<u64, String>,
    /// Mixed into the new cluster id: restore the same backup into two clusters with the
    /// same member list under different tokens to keep them apart.
    pub cluster_token: String,
}

/// A restored data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// What the backup held.
    pub backup: BackupFileInfo,
    /// The new cluster's id.
    pub cluster_id: u64,
    /// The member list, as `--initial-members` must give it.
    pub members: String,
}

fn check_options(o: &RestoreOptions) -> Result<(), BackupError> {
    if o.id == 0 {
        return Err(BackupError::BadArguments("--id must be > 0".into()));
    }
    if o.initial_members.is_empty() {
        return Err(BackupError::BadArguments(
            "--initial-members must list every member of the new cluster (id=host:peerport,...)"
                .into(),
        ));
    }
    if !o.initial_members.contains_key(&o.id) {
        return Err(BackupError::BadArguments(format!(
            "--initial-members does not list this member's id {}",
            o.id
        )));
    }
    if let Some((id, _)) = o
        .initial_members
        .iter()
        .find(|(id, a)| **id == 0 || a.is_empty())
    {
        return Err(BackupError::BadArguments(format!(
            "--initial-members: member {id} needs an id > 0 and a peer address"
        )));
    }
    Ok(())
}

/// Creates `dir` if it is absent; refuses a directory that holds anything. Returns whether it
/// was created.
fn claim_dir(dir: &Path) -> Result<bool, BackupError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::NotEmpty(dir.to_path_buf()));
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(io("create", dir))?;
            Ok(true)
        }
        Err(e) => Err(io("read", dir)(e)),
    }
}

/// Undoes a restore that failed part way: the directory is left as it was found.
fn release_dir(dir: &Path, created: bool) {
    if created {
        let _ = fs::remove_dir_all(dir);
    } else if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            let _ = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
        }
    }
}

/// Writes the data directory of one member of a new cluster from a backup file (see the
/// module documentation). Offline: no member may run on `data_dir`. Start the member with
/// the same `--id`, `--data-dir` and `--initial-members`.
///
/// # Errors
/// [`BackupError::BadArguments`] for an id or member list that do not describe a member;
/// [`BackupError::NotEmpty`] for a data directory that holds anything;
/// [`BackupError::Corrupt`] / [`BackupError::Io`] for a backup file that is not intact;
/// [`BackupError::Store`] if the directory cannot be written (it is then removed again).
pub async fn restore(opts: RestoreOptions) -> Result<Restored, BackupError> {
    check_options(&opts)?;
    let file = opts.file.clone();
    let (body, crc) = tokio::task::spawn_blocking(move || read_verified(&file))
        .await
        .map_err(|e| BackupError::Store(format!("restore task failed: {e}")))??;
    let created = claim_dir(&opts.data_dir)?;
    let r = restore_into(&opts, body, crc).await;
    if r.is_err() {
        release_dir(&opts.data_dir, created);
    }
    r
}

async fn restore_into(
    opts: &RestoreOptions,
    body: Vec<u8>,
    crc: u32,
) -> Result<Restored, BackupError> {
    let members = identity::member_list(opts.id, &opts.initial_members);
    let voters: BTreeSet<u64> = opts.initial_members.keys().copied().collect();
    let nodes: BTreeMap<u64, MemberNode> = opts
        .initial_members
        .iter()
        .map(|(id, addr)| {
            (
                *id,
                MemberNode {
                    peer_addr: addr.clone(),
                    client_addr: String::new(),
                },
            )
        })
        .collect();
    let (o, m) = (opts.clone(), members.clone());
    let (store, backup, cluster_id) = tokio::task::spawn_blocking(move || {
        let backup = inspect_bytes(&o.file, &body, crc)?;
        let last = backup
            .summary
            .last_log_id
            .ok_or_else(|| BackupError::Corrupt {
                path: o.file.clone(),
                why: "the backup covers no log entry".into(),
            })?;
        let cluster_id = identity::derived_id(&[
            b"baton-restore",
            &crc.to_le_bytes(),
            &(body.len() as u64).to_le_bytes(),
            backup.summary.snapshot_id.as_bytes(),
            m.as_bytes(),
            o.cluster_token.as_bytes(),
        ]);
        let store = Store::open(&o.data_dir, crate::config::Config::default().cache_bytes)?;
        store
            .raft_meta()
            .insert(
                identity::MEMBER_RECORD_KEY,
                identity::member_record(o.id, &m).as_bytes(),
            )
            .map_err(StoreError::from)?;
        identity::write_id(&store, cluster_id)?;
        let membership =
            StoredMembership::new(Some(last), openraft::Membership::new(vec![voters], nodes));
        state_machine::restore_snapshot(&store, &body, membership)?;
        Ok::<_, BackupError>((store, backup, cluster_id))
    })
    .await
    .map_err(|e| BackupError::Store(format!("restore task failed: {e}")))??;

    // The log: empty, purged up to the backup's last entry, with a vote in its term, so the
    // first election is for a later term and the first new entry follows the backup's index.
    let Some(last) = backup.summary.last_log_id else {
        return Err(BackupError::Store("the backup covers no log entry".into()));
    };
    let storage = |e: openraft::StorageError<u64>| BackupError::Store(e.to_string());
    let wal_opts = log::wal_options(crate::config::Config::default().wal_segment_bytes);
    let s = store.clone();
    let mut log = tokio::task::spawn_blocking(move || LogStore::open(&s, wal_opts))
        .await
        .map_err(|e| BackupError::Store(format!("restore task failed: {e}")))??;
    log.save_committed(Some(last)).await.map_err(storage)?;
    log.save_vote(&openraft::Vote::new(last.leader_id.term, opts.id))
        .await
        .map_err(storage)?;
    log.purge(last).await.map_err(storage)?;
    log.wait_purge_recorded(last.index).await;
    log.close();
    drop(log);
    tokio::task::spawn_blocking(move || store.durable_flush())
        .await
        .map_err(|e| BackupError::Store(format!("restore task failed: {e}")))??;
    Ok(Restored {
        backup,
        cluster_id,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, bytes).expect("write");
        p
    }

    #[test]
    fn a_file_is_refused_unless_footer_length_and_checksum_match() {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = b"some snapshot bytes".to_vec();
        let mut good = body.clone();
        good.extend_from_slice(&footer(body.len() as u64, crc32fast::hash(&body)));
        let p = write(dir.path(), "good", &good);
        assert_eq!(
            read_verified(&p).expect("intact"),
            (body.clone(), crc32fast::hash(&body))
        );

        let mut flipped = good.clone();
        flipped[3] ^= 0x01;
        let p = write(dir.path(), "flipped", &flipped);
        let e = read_verified(&p).expect_err("flipped byte");
        assert!(e.to_string().contains("checksum mismatch"), "{e}");

        let p = write(dir.path(), "cut", &good[..good.len() - 1]);
        assert!(matches!(
            read_verified(&p),
            Err(BackupError::Corrupt { .. })
        ));
        let p = write(dir.path(), "tiny", b"abc");
        assert!(matches!(
            read_verified(&p),
            Err(BackupError::Corrupt { .. })
        ));
        let mut longer = body.clone();
        longer.push(0);
        longer.extend_from_slice(&footer(body.len() as u64, crc32fast::hash(&body)));
        let p = write(dir.path(), "longer", &longer);
        let e = read_verified(&p).expect_err("length");
        assert!(e.to_string().contains("announces"), "{e}");
        assert!(matches!(
            read_verified(&dir.path().join("missing")),
            Err(BackupError::Io { .. })
        ));
    }

    #[test]
    fn an_intact_file_that_is_not_a_snapshot_is_refused_by_inspect() {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = b"not a snapshot".to_vec();
        let mut f = body.clone();
        f.extend_from_slice(&footer(body.len() as u64, crc32fast::hash(&body)));
        let p = write(dir.path(), "b", &f);
        let e = inspect(&p).expect_err("not a snapshot");
        assert!(e.to_string().starts_with("CORRUPT:"), "{e}");
    }

    #[tokio::test]
    async fn restore_refuses_bad_members_and_non_empty_dirs_and_leaves_them_as_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = b"x".to_vec();
        let mut f = body.clone();
        f.extend_from_slice(&footer(1, crc32fast::hash(&body)));
        let file = write(dir.path(), "b", &f);
        let members: BTreeMap<u64, String> = [(1, "h:1".to_string()), (2, "h:2".to_string())]
            .into_iter()
            .collect();
        let opts = |data_dir: PathBuf, id: u64| RestoreOptions {
            file: file.clone(),
            data_dir,
            id,
            initial_members: members.clone(),
            cluster_token: String::new(),
        };
        let e = restore(opts(dir.path().join("d3"), 3))
            .await
            .expect_err("id");
        assert!(matches!(e, BackupError::BadArguments(_)), "{e}");
        let busy = dir.path().join("busy");
        fs::create_dir_all(&busy).expect("mkdir");
        fs::write(busy.join("keep"), b"k").expect("write");
        let e = restore(opts(busy.clone(), 1)).await.expect_err("busy");
        assert!(matches!(e, BackupError::NotEmpty(_)), "{e}");
        assert_eq!(fs::read(busy.join("keep")).expect("kept"), b"k");
        // Intact file, undecodable snapshot: the directory it created is removed again.
        let fresh = dir.path().join("fresh");
        let e = restore(opts(fresh.clone(), 1))
            .await
            .expect_err("undecodable");
        assert!(matches!(e, BackupError::Corrupt { .. }), "{e}");
        assert!(!fresh.exists());
    }
}
