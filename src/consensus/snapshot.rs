//! Snapshot files: the state machine as a stream of records, written from a point-in-time
//! view and read back one record at a time, never held whole in memory.
//!
//! # Format
//!
//! Length-delimited prost records: a `SnapshotHeader` (format, meta, id, record counts), a
//! `SnapshotNode` per znode in path order (a parent before its children), a
//! `StoredSession` per session and a `StoredClient` per client with remembered request ids
//! (format 2 and later), then a `StoredEvent` per recent event, the builder's watch history
//! (format 4 and later). Format 3 and later end with a trailer: the CRC-32 of every byte
//! before it (little-endian) and the magic `BATONSNP`. A reader refuses a file whose trailer is missing
//! or does not match, or that has bytes after it; formats 1 and 2 (no trailer) and 3 (no
//! events: the history starts at the snapshot's index) are still read.
//!
//! # Files
//!
//! `<data_dir>/snapshots/<index>-<term>.snap`, written as `<name>.tmp`, fsynced, renamed and
//! the directory fsynced, so a file with the final name is always whole.

use std::fs;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use prost::Message;

use crate::proto::raft as pb;
use crate::proto::{stored, CodecError};
use crate::store::{sync_dir, StoreError};
use crate::tree::{ClientTable, History, Loader, State};

/// Format number written in snapshot headers (see the module docs); 1 to 3 are still read.
pub const SNAPSHOT_FORMAT: u32 = 4;
/// Last bytes of a format-3 snapshot, after its checksum.
const TRAILER_MAGIC: &[u8; 8] = b"BATONSNP";
/// Checksum + magic.
const TRAILER_LEN: usize = 4 + TRAILER_MAGIC.len();
/// Largest record a reader accepts: far above any znode (`--max-data-bytes` is at most
/// 64 MiB), so a damaged length prefix is refused instead of read as a huge record.
const MAX_RECORD: u64 = 256 << 20;
/// Buffer of snapshot file readers and writers.
const IO_BUFFER: usize = 1 << 20;

pub use crate::types::AppliedMeta;

/// Snapshot meta of Baton's type configuration.
pub type Meta = crate::types::SnapshotMeta;

/// Bytes passing through, counted and summed with CRC-32.
pub(crate) struct Summed<T> {
    inner: T,
    crc: crc32fast::Hasher,
    bytes: u64,
}

impl<T> Summed<T> {
    pub(crate) fn new(inner: T) -> Self {
        Summed {
            inner,
            crc: crc32fast::Hasher::new(),
            bytes: 0,
        }
    }

    pub(crate) fn crc(&self) -> u32 {
        self.crc.clone().finalize()
    }
}

impl<W: Write> Write for Summed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Summed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

fn write_err(e: io::Error) -> StoreError {
    StoreError::io("write", "snapshot stream", e)
}

fn read_err(e: io::Error) -> StoreError {
    StoreError::io("read", "snapshot stream", e)
}

/// Writes `state` and the watch `history` that led to it as a snapshot of the current
/// format; returns the bytes written. `state` is normally a clone taken under the state
/// machine's read lock: the clone costs nothing (persistent collections) and this runs
/// without any lock.
///
/// # Errors
/// Write errors of `w`.
pub fn write_snapshot(
    w: impl Write,
    state: &State,
    history: &History,
    applied: &AppliedMeta,
    snapshot_id: &str,
) -> Result<u64, StoreError> {
    let header = pb::SnapshotHeader {
        format: SNAPSHOT_FORMAT,
        meta: Some(stored::meta_to_pb(
            applied,
            state.last_time_ms,
            state.last_zxid,
            true,
        )),
        snapshot_id: snapshot_id.to_string(),
        nodes: state.node_count() as u64,
        sessions: state.session_count() as u64,
        clients: state.clients().len() as u64,
        events: history.events.len() as u64,
        events_floor: history.floor,
    };
    let mut out = Summed::new(BufWriter::with_capacity(IO_BUFFER, w));
    let mut scratch = Vec::new();
    let mut put = |out: &mut Summed<_>, m: &dyn EncodeDelimited| -> Result<(), StoreError> {
        scratch.clear();
        m.encode_into(&mut scratch);
        out.write_all(&scratch).map_err(write_err)
    };
    put(&mut out, &header)?;
    for (path, node) in state.nodes() {
        let rec = pb::SnapshotNode {
            path: path.clone(),
            node: Some(stored::node_to_pb(node)),
        };
        put(&mut out, &rec)?;
    }
    for s in state.sessions() {
        put(&mut out, &stored::session_to_pb(&s.session))?;
    }
    for (id, c) in state.clients().iter() {
        put(&mut out, &stored::client_to_pb(*id, c))?;
    }
    for e in &history.events {
        put(&mut out, &stored::event_to_pb(e))?;
    }
    let crc = out.crc();
    let mut trailer = [0u8; TRAILER_LEN];
    trailer[..4].copy_from_slice(&crc.to_le_bytes());
    trailer[4..].copy_from_slice(TRAILER_MAGIC);
    out.write_all(&trailer).map_err(write_err)?;
    out.flush().map_err(write_err)?;
    Ok(out.bytes)
}

/// A record that can be written length-delimited (object safe, for one writer closure).
trait EncodeDelimited {
    fn encode_into(&self, buf: &mut Vec<u8>);
}

impl<M: Message> EncodeDelimited for M {
    fn encode_into(&self, buf: &mut Vec<u8>) {
        buf.reserve(prost::length_delimiter_len(self.encoded_len()) + self.encoded_len());
        // Cannot fail: a Vec grows as needed.
        let _ = self.encode_length_delimited(buf);
    }
}

fn truncated(what: &'static str) -> CodecError {
    CodecError::new(what, "the snapshot ends in the middle of a record")
}

/// Reads one length-delimited record.
fn read_record<M: Message + Default>(
    r: &mut impl Read,
    scratch: &mut Vec<u8>,
    what: &'static str,
) -> Result<M, StoreError> {
    let mut len: u64 = 0;
    for i in 0..10 {
        let mut b = [0u8; 1];
        match r.read(&mut b) {
            Ok(0) => return Err(truncated(what).into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        }
        len |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            break;
        }
        if i == 9 {
            return Err(CodecError::new(what, "bad length prefix").into());
        }
    }
    if len > MAX_RECORD {
        return Err(CodecError::new(what, format!("a record of {len} bytes")).into());
    }
    scratch.clear();
    // `take` + `read_to_end` grows the buffer with what is really there, so a damaged length
    // cannot make it allocate more than the input holds.
    let got = r
        .by_ref()
        .take(len)
        .read_to_end(scratch)
        .map_err(read_err)?;
    if (got as u64) < len {
        return Err(truncated(what).into());
    }
    M::decode(scratch.as_slice()).map_err(|e| CodecError::new(what, e.to_string()).into())
}

fn check_format(h: &pb::SnapshotHeader) -> Result<(), CodecError> {
    if !(1..=SNAPSHOT_FORMAT).contains(&h.format) {
        return Err(CodecError::new(
            "SnapshotHeader",
            format!(
                "snapshot format {} (this build reads 1 to {SNAPSHOT_FORMAT})",
                h.format
            ),
        ));
    }
    Ok(())
}

/// The openraft meta a header describes, with the last time and zxid.
pub fn header_meta(h: &pb::SnapshotHeader) -> Result<(Meta, i64, u64), CodecError> {
    let m = h
        .meta
        .clone()
        .ok_or_else(|| CodecError::new("SnapshotHeader", "missing meta"))?;
    let (applied, last_time_ms, last_zxid) = stored::meta_from_pb(m)?;
    let meta = Meta {
        last_log_id: applied.last_applied,
        last_membership: applied.membership,
        snapshot_id: h.snapshot_id.clone(),
    };
    Ok((meta, last_time_ms, last_zxid))
}

/// Reads a snapshot's header only.
///
/// # Errors
/// I/O errors, a header that does not decode, an unknown format.
pub fn read_header(r: impl Read) -> Result<(pb::SnapshotHeader, Meta), StoreError> {
    let mut r = BufReader::with_capacity(64 << 10, r);
    let header: pb::SnapshotHeader = read_record(&mut r, &mut Vec::new(), "SnapshotHeader")?;
    check_format(&header)?;
    let (meta, _, _) = header_meta(&header)?;
    Ok((header, meta))
}

/// A snapshot read back.
pub struct Decoded {
    /// The openraft meta the header describes.
    pub meta: Meta,
    /// The state it holds, checked to form a tree.
    pub state: State,
    /// The events that led to it (format 4; before: none, the floor at its index).
    pub history: History,
}

/// Reads a whole snapshot, one record at a time, into a [`State`]; checks the checksum
/// (format 3), that nothing follows the last record, and that the records form a tree.
///
/// # Errors
/// [`StoreError::Codec`] for bytes that do not decode (truncated, damaged, another format,
/// trailing bytes, a checksum that does not match), [`StoreError::Corrupt`] for records
/// that do not form a tree, I/O errors of `r`.
pub fn read_snapshot(r: impl Read) -> Result<Decoded, StoreError> {
    let mut input = Summed::new(BufReader::with_capacity(IO_BUFFER, r));
    let mut scratch = Vec::new();
    let header: pb::SnapshotHeader = read_record(&mut input, &mut scratch, "SnapshotHeader")?;
    check_format(&header)?;
    let (meta, last_time_ms, last_zxid) = header_meta(&header)?;
    let mut loader = Loader::new(last_time_ms, last_zxid);
    for _ in 0..header.nodes {
        let rec: pb::SnapshotNode = read_record(&mut input, &mut scratch, "SnapshotNode")?;
        let node = rec
            .node
            .ok_or_else(|| CodecError::new("SnapshotNode", "missing node"))?;
        loader.add_node(rec.path, stored::node_from_pb(node)?);
    }
    for _ in 0..header.sessions {
        let rec = read_record(&mut input, &mut scratch, "StoredSession")?;
        loader.add_session(stored::session_from_pb(rec)?);
    }
    let mut clients = ClientTable::default();
    for _ in 0..header.clients {
        let rec = read_record(&mut input, &mut scratch, "StoredClient")?;
        let (id, record) = stored::client_from_pb(rec)?;
        clients.insert(id, record);
    }
    let index = meta.last_log_id.map_or(0, |l| l.index);
    let mut history = History::empty_at(index);
    if header.format >= 4 {
        history.floor = header.events_floor.min(index);
        for _ in 0..header.events {
            let rec = read_record(&mut input, &mut scratch, "StoredEvent")?;
            let e = stored::event_from_pb(rec)?;
            if e.zxid > history.floor && e.zxid <= index {
                history.events.push(e);
            }
        }
    }
    if header.format >= 3 {
        let crc = input.crc();
        let mut trailer = [0u8; TRAILER_LEN];
        input
            .inner
            .read_exact(&mut trailer)
            .map_err(|_| CodecError::new("snapshot", "the checksum trailer is missing"))?;
        if &trailer[4..] != TRAILER_MAGIC {
            return Err(CodecError::new("snapshot", "the checksum trailer is damaged").into());
        }
        let stored = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        if stored != crc {
            return Err(CodecError::new(
                "snapshot",
                format!("checksum mismatch (stored {stored:08x}, computed {crc:08x})"),
            )
            .into());
        }
    }
    let mut rest = Vec::new();
    input.inner.read_to_end(&mut rest).map_err(read_err)?;
    if !rest.is_empty() {
        return Err(CodecError::new(
            "snapshot",
            format!("{} bytes after the last record", rest.len()),
        )
        .into());
    }
    let (mut state, orphans) = loader.finish();
    if orphans > 0 {
        return Err(StoreError::Corrupt(format!(
            "{orphans} znodes in the snapshot have no parent"
        )));
    }
    state.set_clients(clients);
    state.applied_index = index;
    Ok(Decoded {
        meta,
        state,
        history,
    })
}

/// File name of the snapshot covering `meta`'s last log id.
pub fn file_name(meta: &Meta) -> String {
    let (index, term) = meta
        .last_log_id
        .map_or((0, 0), |l| (l.index, l.leader_id.term));
    format!("{index}-{term}.snap")
}

/// `(index, term, path)` of every `<index>-<term>.snap[.tmp]` in `dir`, oldest first.
pub fn list_dir(dir: &Path) -> Result<Vec<(u64, u64, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| StoreError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let stem = name
            .strip_suffix(".snap")
            .or_else(|| name.strip_suffix(".snap.tmp"));
        let Some((index, term)) = stem.and_then(|s| s.split_once('-')) else {
            continue;
        };
        if let (Ok(index), Ok(term)) = (index.parse(), term.parse()) {
            out.push((index, term, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Finished snapshot files, oldest first.
pub fn list(dir: &Path) -> Result<Vec<(u64, u64, PathBuf)>, StoreError> {
    let mut all = list_dir(dir)?;
    all.retain(|(_, _, p)| p.extension().is_some_and(|e| e == "snap"));
    Ok(all)
}

/// Bytes written to a snapshot file between two `fdatasync` calls: a large snapshot reaches
/// the disk in steps instead of one burst at the end, which would hold up the write-ahead
/// log's own `fdatasync` (and so every write) on the same disk.
const SYNC_STEP: u64 = 16 << 20;

/// A file written with an `fdatasync` every [`SYNC_STEP`] bytes.
struct SyncedSteps<'a> {
    file: &'a mut fs::File,
    unsynced: u64,
}

impl Write for SyncedSteps<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.unsynced += n as u64;
        if self.unsynced >= SYNC_STEP {
            self.file.sync_data()?;
            self.unsynced = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Writes a snapshot file atomically and durably through `write` (temp file, fsync, rename,
/// fsync the directory); returns its size.
///
/// # Errors
/// I/O errors; the temp file is removed.
pub fn write_file(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&mut dyn Write) -> Result<u64, StoreError>,
) -> Result<u64, StoreError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let res = (|| {
        let mut f = fs::File::create(&tmp).map_err(|e| StoreError::io("create", &tmp, e))?;
        let size = write(&mut SyncedSteps {
            file: &mut f,
            unsynced: 0,
        })?;
        f.sync_all().map_err(|e| StoreError::io("sync", &tmp, e))?;
        Ok(size)
    })();
    let size = match res {
        Ok(size) => size,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    fs::rename(&tmp, &path).map_err(|e| StoreError::io("rename", &tmp, e))?;
    sync_dir(dir)?;
    Ok(size)
}

/// A new file in `dir` that has no name (created as `<prefix>-<nanos>.part`, then unlinked at
/// once): it is gone when closed, so a crash leaves nothing behind but, rarely, a `.part`
/// that [`remove_incoming`] removes at the next start.
pub fn unnamed_file(dir: &Path, prefix: &str) -> Result<fs::File, StoreError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let path = dir.join(format!("{prefix}-{nanos:x}.part"));
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| StoreError::io("create", &path, e))?;
    fs::remove_file(&path).map_err(|e| StoreError::io("remove", &path, e))?;
    Ok(f)
}

/// Removes received snapshots and backups left by a crash between creating and unlinking
/// one (see `begin_receiving_snapshot` and `encode_backup_file`).
pub fn remove_incoming(dir: &Path) -> Result<(), StoreError> {
    let entries = fs::read_dir(dir).map_err(|e| StoreError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("list", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if (name.starts_with("incoming-") || name.starts_with("backup-")) && name.ends_with(".part")
        {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| StoreError::io("remove", &path, e))?;
        }
    }
    Ok(())
}

/// Deletes all but the newest `keep` snapshot files.
pub fn prune(dir: &Path, keep: usize) -> Result<(), StoreError> {
    let all = list(dir)?;
    let excess = all.len().saturating_sub(keep);
    for (_, _, path) in all.into_iter().take(excess) {
        fs::remove_file(&path).map_err(|e| StoreError::io("remove", &path, e))?;
    }
    Ok(())
}

/// The newest snapshot file: its path and meta (from its header; the rest is not read).
pub fn newest(dir: &Path) -> Result<Option<(PathBuf, Meta)>, StoreError> {
    let Some((_, _, path)) = list(dir)?.pop() else {
        return Ok(None);
    };
    let f = fs::File::open(&path).map_err(|e| StoreError::io("open", &path, e))?;
    let (_, meta) = read_header(f)?;
    Ok(Some((path, meta)))
}

/// Reads a snapshot file whole (see [`read_snapshot`]).
pub fn read_file(path: &Path) -> Result<Decoded, StoreError> {
    let f = fs::File::open(path).map_err(|e| StoreError::io("open", path, e))?;
    read_snapshot(f).map_err(|e| match e {
        StoreError::Codec(c) => StoreError::Corrupt(format!("{}: {c}", path.display())),
        StoreError::Io { op, source, .. } => StoreError::io(op, path, source),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use openraft::{CommittedLeaderId, Membership};

    use super::*;
    use crate::tree::{Command, CreateMode, Op, Request};
    use crate::types::{LogId, StoredMembership};

    fn applied() -> AppliedMeta {
        AppliedMeta {
            last_applied: Some(LogId::new(CommittedLeaderId::new(2, 1), 40)),
            membership: StoredMembership::new(
                Some(LogId::new(CommittedLeaderId::new(1, 1), 1)),
                Membership::new(vec![[1, 2, 3].into()], ()),
            ),
        }
    }

    /// A tree with nested nodes, a session and its ephemeral.
    fn state() -> State {
        let mut st = State::new();
        let create = |path: &str, data: &str, mode: CreateMode, session_id: u64| Request::Multi {
            ops: vec![Op::Create {
                path: path.into(),
                data: Bytes::from(data.to_string()),
                mode,
                session_id,
                ttl_ms: 0,
                acl: Vec::new(),
            }],
            single: true,
            caller: None,
        };
        let cmd = |requests| Command {
            time_ms: 1_000,
            requests,
        };
        st.apply(
            1,
            &cmd(vec![Request::OpenSession {
                session_id: 7,
                secret: Bytes::from_static(b"s"),
                timeout_ms: 5_000,
            }]),
        );
        st.apply(
            2,
            &cmd(vec![
                create("/app", "", CreateMode::Persistent, 0),
                create("/app/config", "hello snapshot", CreateMode::Persistent, 0),
                create("/app-x", "sibling", CreateMode::Persistent, 0),
                create("/app/members", "", CreateMode::Persistent, 0),
                create("/app/members/m", "me", CreateMode::Ephemeral, 7),
            ]),
        );
        st
    }

    /// Recent events as a builder's hub would hold them (index 40; nothing at or below 1).
    fn history() -> History {
        let ev = |zxid, kind, path: &str| crate::tree::Event {
            zxid,
            kind,
            path: path.into(),
            acl: Default::default(),
        };
        History {
            floor: 1,
            events: vec![
                ev(2, crate::tree::EventType::Created, "/app"),
                ev(2, crate::tree::EventType::ChildrenChanged, "/"),
                ev(40, crate::tree::EventType::DataChanged, "/app/config"),
            ],
        }
    }

    fn bytes_with(st: &State, history: &History) -> Vec<u8> {
        let mut out = Vec::new();
        let n = write_snapshot(&mut out, st, history, &applied(), "id-1").expect("write");
        assert_eq!(n, out.len() as u64);
        out
    }

    fn bytes_of(st: &State) -> Vec<u8> {
        bytes_with(st, &history())
    }

    #[test]
    fn a_snapshot_reads_back_as_the_same_state() {
        let st = state();
        assert!(st.get("/app/members/m").is_some(), "the history applied");
        let bytes = bytes_of(&st);
        let d = read_snapshot(bytes.as_slice()).expect("read");
        assert_eq!(d.meta.last_log_id, applied().last_applied);
        assert_eq!(d.meta.last_membership, applied().membership);
        assert_eq!(d.meta.snapshot_id, "id-1");
        let (header, _) = read_header(bytes.as_slice()).expect("header");
        assert_eq!(header.format, SNAPSHOT_FORMAT);
        assert_eq!(d.state.digest(), st.digest());
        assert_eq!(d.history, history(), "the recent events come back");
        let mut want = st.clone();
        want.applied_index = 40;
        assert_eq!(d.state, want);
        assert_eq!(
            d.state.session(7).map(|s| s.ephemerals.len()),
            Some(1),
            "the ephemeral is linked to its session"
        );
    }

    #[test]
    fn a_flipped_bit_anywhere_is_refused() {
        let good = bytes_of(&state());
        let at = good
            .windows(5)
            .position(|w| w == b"hello")
            .expect("the data is in the file");
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        let err = read_snapshot(bad.as_slice()).err().expect("refused");
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        // Every other byte: refused one way or another, never a panic or a silent load.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(read_snapshot(bad.as_slice()).is_err(), "byte {i}");
        }
    }

    #[test]
    fn a_cut_off_or_extended_snapshot_is_refused() {
        let good = bytes_of(&state());
        for len in 0..good.len() {
            assert!(read_snapshot(&good[..len]).is_err(), "cut at {len}");
        }
        let mut longer = good.clone();
        longer.push(0);
        let err = read_snapshot(longer.as_slice()).err().expect("refused");
        assert!(err.to_string().contains("after the last record"), "{err}");
    }

    #[test]
    fn a_format_3_snapshot_has_no_events_and_its_history_starts_at_its_index() {
        let st = state();
        let bytes = bytes_with(&st, &History::empty_at(0));
        let mut rest = &bytes[..bytes.len() - TRAILER_LEN];
        let mut header = pb::SnapshotHeader::decode_length_delimited(&mut rest).expect("header");
        header.format = 3;
        let mut old = header.encode_length_delimited_to_vec();
        old.extend_from_slice(rest);
        let crc = crc32fast::hash(&old);
        old.extend_from_slice(&crc.to_le_bytes());
        old.extend_from_slice(TRAILER_MAGIC);
        let d = read_snapshot(old.as_slice()).expect("read");
        assert_eq!(d.state.digest(), st.digest());
        assert_eq!(d.history, History::empty_at(40));
    }

    #[test]
    fn events_outside_the_snapshot_window_are_dropped_on_read() {
        let st = state();
        let mut h = history();
        // Not above the floor, and after the snapshot's index: neither belongs to it.
        h.events.insert(
            0,
            crate::tree::Event {
                zxid: 1,
                kind: crate::tree::EventType::Created,
                path: "/old".into(),
                acl: Default::default(),
            },
        );
        let mut later = h.events[1].clone();
        later.zxid = 41;
        h.events.push(later);
        let d = read_snapshot(bytes_with(&st, &h).as_slice()).expect("read");
        assert_eq!(d.history, history());
    }

    #[test]
    fn a_format_2_snapshot_without_a_trailer_is_read() {
        let st = state();
        let mut bytes = bytes_with(&st, &History::empty_at(0));
        bytes.truncate(bytes.len() - TRAILER_LEN);
        // Rewrite the header's format: the records are the same.
        let mut rest = bytes.as_slice();
        let mut header = pb::SnapshotHeader::decode_length_delimited(&mut rest).expect("header");
        header.format = 2;
        let mut old = header.encode_length_delimited_to_vec();
        old.extend_from_slice(rest);
        let d = read_snapshot(old.as_slice()).expect("read");
        assert_eq!(d.state.digest(), st.digest());
    }

    #[test]
    fn children_listed_before_their_parents_are_linked() {
        let st = state();
        let mut nodes: Vec<(String, crate::tree::Node)> =
            st.nodes().map(|(p, n)| (p.clone(), n.clone())).collect();
        nodes.reverse();
        let sessions: Vec<_> = st.sessions().map(|s| s.session.clone()).collect();
        let (loaded, orphans) = State::from_records(nodes, sessions, st.last_time_ms, st.last_zxid);
        assert_eq!(orphans, 0);
        assert_eq!(loaded.digest(), st.digest());
        assert_eq!(
            loaded.get("/app").map(|n| n.stat.num_children),
            Some(2),
            "child counts are derived"
        );
    }

    #[test]
    fn a_header_is_read_alone() {
        let (header, meta) = read_header(bytes_of(&state()).as_slice()).expect("header");
        assert_eq!(header.nodes, 6);
        assert_eq!(meta.snapshot_id, "id-1");
    }
}
