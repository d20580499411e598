//! The state machine's sled tree `sm.<gen>`: its key layout, loading it into a [`State`],
//! the records an applied batch writes (the watch history among them, see [`EventLog`]), and
//! replacing it wholesale with a new generation.

use std::collections::{BTreeSet, VecDeque};

use prost::Message;

use crate::consensus::snapshot::AppliedMeta;
use crate::proto::raft as pb;
use crate::proto::{decode, stored, CodecError};
use crate::store::{Change, Store, StoreError};
use crate::tree::{ClientTable, Event, History, Loader, SessionId, State, Zxid};
use crate::types::StoredMembership;

/// Records per sled batch when loading a snapshot into a tree.
const LOAD_BATCH: usize = 1024;

/// Key prefix of znode records.
pub(super) const NODE_PREFIX: u8 = b'n';
/// Key prefix of session records.
const SESSION_PREFIX: u8 = b's';
/// Key prefix of request-id records (one per client, see [`crate::tree::clients`]).
const CLIENT_PREFIX: u8 = b'c';
/// Key prefix of watch-history records: `e` + a sequence number (u64 BE) → `StoredEvents`,
/// the events of one applied batch.
const EVENT_PREFIX: u8 = b'e';
/// Key of the watch history's floor (`m` + `events`, u64 BE) when the history was started
/// (events at or below it were never held). Absent in directories written before the
/// history was kept: the floor is then the applied index.
const EVENTS_FLOOR_KEY: &[u8] = b"mevents";
/// Key of the meta record (`m` + `state`): last applied log id, time and zxid.
pub(super) const META_KEY: &[u8] = b"mstate";
/// Key of the membership record (`m` + `membership`), written when the membership changes.
/// (Format-1 directories kept the membership inside the meta record; it is read from there
/// when this record is absent.)
const MEMBERSHIP_KEY: &[u8] = b"mmembership";

pub(super) fn node_key(path: &str) -> Vec<u8> {
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

fn event_key(seq: u64) -> [u8; 9] {
    let mut k = [EVENT_PREFIX; 9];
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn floor_record(floor: Zxid) -> Vec<u8> {
    floor.to_be_bytes().to_vec()
}

/// The watch history as kept in `sm.<gen>`: one record per applied batch that had events,
/// under consecutive sequence numbers, holding at least the newest `cap` events (the watch
/// hub's capacity) and at most one batch more. Written in the same sled batch as the state
/// the events led to, so after a crash the history on disk ends exactly where the state
/// does; re-applied entries add their events again. A restarted member therefore still
/// resumes watches from any zxid its hub held before.
///
/// Records are removed whole, oldest first, and every entry's events are in one record, so
/// the floor is the recorded floor or, once records were removed, the zxid just below the
/// oldest event held: no record has to be rewritten as the window moves.
pub(super) struct EventLog {
    /// Sequence number of the oldest record held.
    first: u64,
    /// Sequence number the next record gets.
    next: u64,
    /// Events in each record held, oldest first.
    counts: VecDeque<usize>,
    /// Their sum.
    held: usize,
    cap: usize,
}

impl EventLog {
    /// Reads the history held in `tree`; a tree without a floor record (written before the
    /// history was kept) gets one at `applied_index`.
    pub(super) fn load(
        tree: &sled::Tree,
        applied_index: Zxid,
        cap: usize,
    ) -> Result<(EventLog, History), StoreError> {
        let recorded = match tree.get(EVENTS_FLOOR_KEY)? {
            Some(v) => {
                let b: [u8; 8] = v.as_ref().try_into().map_err(|_| {
                    CodecError::new("events floor", format!("{} bytes, not 8", v.len()))
                })?;
                Zxid::from_be_bytes(b)
            }
            None => {
                tree.insert(EVENTS_FLOOR_KEY, floor_record(applied_index))?;
                applied_index
            }
        };
        let mut log = EventLog {
            first: 0,
            next: 0,
            counts: VecDeque::new(),
            held: 0,
            cap: cap.max(1),
        };
        let mut events = Vec::new();
        for kv in tree.scan_prefix([EVENT_PREFIX]) {
            let (k, v) = kv?;
            let seq = k
                .get(1..9)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| CodecError::new("StoredEvents", "bad key"))?;
            if log.counts.is_empty() {
                log.first = seq;
            }
            log.next = seq + 1;
            let rec: pb::StoredEvents = decode("StoredEvents", &v)?;
            log.counts.push_back(rec.events.len());
            log.held += rec.events.len();
            for e in rec.events {
                events.push(stored::event_from_pb(e)?);
            }
        }
        // Records are numbered from 0 in each generation: a first record above 0 means older
        // ones were removed, and the floor moved up to just below the oldest event held.
        let floor = match events.first() {
            Some(e) if log.first > 0 => recorded.max(e.zxid.saturating_sub(1)),
            _ => recorded,
        };
        events.retain(|e| e.zxid > floor);
        Ok((log, History { floor, events }))
    }

    /// A log for a fresh generation that [`EventLog::records`] filled with `history`.
    pub(super) fn of(history: &History, cap: usize) -> EventLog {
        let n = history.events.len();
        EventLog {
            first: 0,
            next: u64::from(n > 0),
            counts: if n > 0 {
                VecDeque::from([n])
            } else {
                VecDeque::new()
            },
            held: n,
            cap: cap.max(1),
        }
    }

    /// The records holding `history` in a fresh tree: the floor, and the events as one
    /// record.
    fn records(history: &History) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = vec![(EVENTS_FLOOR_KEY.to_vec(), floor_record(history.floor))];
        if !history.events.is_empty() {
            out.push((event_key(0).to_vec(), encode_events(&history.events)));
        }
        out
    }

    /// Appends to `changes` the record of a batch's events and the removal of the oldest
    /// records no longer needed to hold `cap` events.
    pub(super) fn record(&mut self, events: &[Event], changes: &mut Vec<Change>) {
        if events.is_empty() {
            return;
        }
        changes.push((event_key(self.next).to_vec(), Some(encode_events(events))));
        self.next += 1;
        self.counts.push_back(events.len());
        self.held += events.len();
        while let Some(&oldest) = self.counts.front() {
            if self.held - oldest < self.cap {
                break;
            }
            self.counts.pop_front();
            self.held -= oldest;
            changes.push((event_key(self.first).to_vec(), None));
            self.first += 1;
        }
    }
}

fn encode_events(events: &[Event]) -> Vec<u8> {
    pb::StoredEvents {
        events: events.iter().map(stored::event_to_pb).collect(),
    }
    .encode_to_vec()
}

fn session_key(id: SessionId) -> [u8; 9] {
    let mut k = [SESSION_PREFIX; 9];
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

/// Loads `sm.<gen>` into a [`State`] (one record at a time: nodes come in key order, so a
/// parent before its children) with the applied meta.
pub(super) fn load_tree(tree: &sled::Tree) -> Result<(State, AppliedMeta), StoreError> {
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

/// Writes `state` and the watch `history` that led to it into a fresh tree of the
/// generation after `old_gen` (in bounded batches), flips `sm_gen` to it between two durable
/// flushes, and drops the old tree. A crash at any point leaves either the old generation or
/// the new one (opening drops the other).
pub(super) fn replace_generation(
    store: &Store,
    old_gen: u64,
    state: &State,
    history: &History,
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
        }))
        .chain(EventLog::records(history));
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

/// What an applied batch changed, by key.
pub(super) struct Touched<'a> {
    /// Paths of znodes created, changed or deleted.
    pub nodes: &'a BTreeSet<String>,
    /// Sessions opened, changed or closed.
    pub sessions: &'a BTreeSet<SessionId>,
    /// Clients whose remembered results changed.
    pub clients: &'a BTreeSet<u64>,
    /// Whether the membership changed.
    pub membership: bool,
}

/// The records to write for a batch: each touched record read back from `state` (present →
/// put, gone → remove), the membership record if it changed, and the meta record last.
pub(super) fn changes(state: &State, meta: &AppliedMeta, touched: Touched<'_>) -> Vec<Change> {
    let mut changes: Vec<Change> =
        Vec::with_capacity(touched.nodes.len() + touched.sessions.len() + 2);
    for p in touched.nodes {
        changes.push((
            node_key(p),
            state.get(p).map(|n| stored::node_to_pb(n).encode_to_vec()),
        ));
    }
    for id in touched.sessions {
        changes.push((
            session_key(*id).to_vec(),
            state
                .session(*id)
                .map(|s| stored::session_to_pb(&s.session).encode_to_vec()),
        ));
    }
    for id in touched.clients {
        changes.push((
            client_key(*id).to_vec(),
            state
                .clients()
                .get(*id)
                .map(|c| stored::client_to_pb(*id, c).encode_to_vec()),
        ));
    }
    if touched.membership {
        changes.push((
            MEMBERSHIP_KEY.to_vec(),
            Some(stored::stored_membership_to_pb(&meta.membership).encode_to_vec()),
        ));
    }
    changes.push((
        META_KEY.to_vec(),
        Some(stored::meta_to_pb(meta, state.last_time_ms, state.last_zxid, false).encode_to_vec()),
    ));
    changes
}
