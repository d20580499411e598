//! Watches: the registry of watches per client stream, the bounded event history used to
//! resume from a zxid, and fan-out of applied events.
//!
//! The state machine calls [`WatchHub::publish`] while it still holds the tree's write lock,
//! and watch registration runs under the tree's read lock. So a watch registered "at zxid Z"
//! sees exactly the events after Z: none is lost or delivered twice.
//!
//! Each client stream has a bounded channel. A stream whose client does not keep up is cut
//! off (its watches removed, the stream ended with `RESOURCE_EXHAUSTED`) rather than letting
//! it hold up the write path or grow without bound.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use crate::tree::acl::{self, Caller};
use crate::tree::path;
use crate::tree::{Event, EventType, History, Zxid};

/// Kind of watch (ZooKeeper's one-shot kinds plus persistent ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WatchKind {
    /// One-shot: DATA_CHANGED or DELETED of the node.
    Data,
    /// One-shot: CHILDREN_CHANGED or DELETED of the node.
    Children,
    /// One-shot: CREATED, DELETED or DATA_CHANGED of the node.
    Exists,
    /// Every event on the node itself, until removed.
    Persistent,
    /// CREATED, DELETED, DATA_CHANGED on the node and its descendants, until removed.
    PersistentRecursive,
}

impl WatchKind {
    /// Its name in metrics and listings.
    pub fn name(self) -> &'static str {
        match self {
            WatchKind::Data => "data",
            WatchKind::Children => "children",
            WatchKind::Exists => "exists",
            WatchKind::Persistent => "persistent",
            WatchKind::PersistentRecursive => "recursive",
        }
    }

    /// Whether the watch is removed after its first event.
    pub fn one_shot(self) -> bool {
        matches!(
            self,
            WatchKind::Data | WatchKind::Children | WatchKind::Exists
        )
    }

    /// Whether an event concerns a watch of this kind on `watch_path`.
    pub fn matches(self, watch_path: &str, ev: &Event) -> bool {
        use EventType::*;
        match self {
            WatchKind::Data => ev.path == watch_path && matches!(ev.kind, DataChanged | Deleted),
            WatchKind::Children => {
                ev.path == watch_path && matches!(ev.kind, ChildrenChanged | Deleted)
            }
            WatchKind::Exists => {
                ev.path == watch_path && matches!(ev.kind, Created | Deleted | DataChanged)
            }
            WatchKind::Persistent => ev.path == watch_path,
            WatchKind::PersistentRecursive => {
                ev.kind != ChildrenChanged && path::is_under(&ev.path, watch_path)
            }
        }
    }
}

/// What a client stream receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The watch.
    pub watch_id: u64,
    /// Its events, in zxid order.
    pub events: Vec<Event>,
    /// True if this delivery fired a one-shot watch, which is now removed.
    pub fired: bool,
}

/// Outcome of adding a watch.
#[derive(Debug, PartialEq, Eq)]
pub enum AddOutcome {
    /// Registered (or, for a one-shot watch, fired at once from history: see `replayed`).
    Added {
        /// The new watch's id.
        watch_id: u64,
    },
    /// `start_zxid` is older than the history; nothing was registered.
    Compacted {
        /// Oldest zxid whose events are all still held.
        oldest_zxid: Zxid,
    },
    /// A limit on watches is reached; nothing was registered.
    Limit {
        /// Which limit.
        what: &'static str,
        /// Its value.
        limit: usize,
    },
}

/// Bounds on registered watches.
#[derive(Clone, Copy, Debug)]
pub struct WatchLimits {
    /// Watches one client stream may hold.
    pub per_stream: usize,
    /// Watches the member holds in all.
    pub total: usize,
}

impl Default for WatchLimits {
    fn default() -> Self {
        WatchLimits {
            per_stream: 10_000,
            total: 1_000_000,
        }
    }
}

/// What the hub has done since it was made (for metrics).
#[derive(Debug, Default)]
pub struct HubCounters {
    /// Events delivered to client streams.
    pub events_sent: AtomicU64,
    /// Client streams cut off because they did not read their events fast enough.
    pub slow_streams_cut: AtomicU64,
    /// Watches refused by a limit.
    pub watches_refused: AtomicU64,
}

/// The receiving end of a client stream.
pub struct StreamHandle {
    /// Stream id, for `add`/`remove`/`close_stream`.
    pub id: u64,
    /// Deliveries for this stream's watches.
    pub rx: mpsc::Receiver<Delivery>,
    /// Set when the stream was cut off because its buffer filled up.
    pub overflowed: Arc<AtomicBool>,
}

struct WatchReg {
    stream: u64,
    path: String,
    kind: WatchKind,
}

struct StreamReg {
    tx: mpsc::Sender<Delivery>,
    watches: HashSet<u64>,
    overflowed: Arc<AtomicBool>,
    /// Who holds the stream: a client's address, or the member's own use.
    owner: String,
    /// Whose reads the stream serves; `None` for the member's own streams.
    caller: Option<Caller>,
}

impl StreamReg {
    /// Whether the stream may see `ev` (READ on its node when it happened).
    fn may_see(&self, ev: &Event) -> bool {
        self.caller
            .as_ref()
            .is_none_or(|c| acl::allowed(ev.acl.as_slice(), c, acl::READ))
    }
}

/// One registered watch, as listed for operators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchRow {
    /// The watch.
    pub watch_id: u64,
    /// Its stream.
    pub stream_id: u64,
    /// The stream's holder (client address, or `member` for the member's own streams).
    pub owner: String,
    /// The watched path.
    pub path: String,
    /// Its kind.
    pub kind: WatchKind,
}

struct Inner {
    next_id: u64,
    watches: HashMap<u64, WatchReg>,
    exact: HashMap<String, Vec<u64>>,
    recursive: HashMap<String, Vec<u64>>,
    streams: HashMap<u64, StreamReg>,
    history: VecDeque<Event>,
    /// Every event with zxid > floor is in `history`.
    floor: Zxid,
    counters: Arc<HubCounters>,
}

/// The member's watch registry and event history.
pub struct WatchHub {
    inner: Mutex<Inner>,
    history_capacity: usize,
    stream_buffer: usize,
    limits: WatchLimits,
    /// Counted events.
    pub counters: Arc<HubCounters>,
}

impl WatchHub {
    /// A hub keeping at most `history_capacity` events for resume, with `stream_buffer`
    /// pending deliveries per client stream. `floor` is the applied zxid at start-up: the
    /// history covers only what is applied from then on.
    pub fn new(history_capacity: usize, stream_buffer: usize, floor: Zxid) -> Self {
        let counters = Arc::new(HubCounters::default());
        WatchHub {
            inner: Mutex::new(Inner {
                next_id: 1,
                watches: HashMap::new(),
                exact: HashMap::new(),
                recursive: HashMap::new(),
                streams: HashMap::new(),
                history: VecDeque::new(),
                floor,
                counters: counters.clone(),
            }),
            history_capacity: history_capacity.max(1),
            stream_buffer: stream_buffer.max(1),
            limits: WatchLimits::default(),
            counters,
        }
    }

    /// The same hub with other watch limits.
    pub fn with_limits(mut self, limits: WatchLimits) -> Self {
        self.limits = limits;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data that is still consistent enough
        // to serve; never propagate poisoning to every client.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a stream for the member's own use (lock and election waiters).
    pub fn open_stream(&self) -> StreamHandle {
        self.open_stream_for("member")
    }

    /// Opens a stream held by `owner` (a client's address, for listings) that receives
    /// every event its watches match.
    pub fn open_stream_for(&self, owner: &str) -> StreamHandle {
        self.open_stream_as(owner, None)
    }

    /// Opens a stream held by `owner` for `caller`: it receives only the events of nodes
    /// `caller` may read (checked against each node's ACL when the event happened).
    pub fn open_stream_as(&self, owner: &str, caller: Option<Caller>) -> StreamHandle {
        let (tx, rx) = mpsc::channel(self.stream_buffer);
        let overflowed = Arc::new(AtomicBool::new(false));
        let mut g = self.lock();
        let id = g.next_id;
        g.next_id += 1;
        g.streams.insert(
            id,
            StreamReg {
                tx,
                watches: HashSet::new(),
                overflowed: overflowed.clone(),
                owner: owner.to_string(),
                caller,
            },
        );
        StreamHandle { id, rx, overflowed }
    }

    /// Closes a client stream and removes its watches.
    pub fn close_stream(&self, stream: u64) {
        let mut g = self.lock();
        g.drop_stream(stream);
    }

    /// Adds a watch. Must be called under the tree's read lock, with `applied` the tree's
    /// applied zxid, so registration is atomic with respect to `publish`. With `start_zxid`,
    /// matching events after it are delivered first (a one-shot watch may fire at once).
    pub fn add(
        &self,
        stream: u64,
        watch_path: &str,
        kind: WatchKind,
        start_zxid: Option<Zxid>,
    ) -> AddOutcome {
        let mut g = self.lock();
        let Some(held) = g.streams.get(&stream).map(|s| s.watches.len()) else {
            // The stream was cut off; registering would leak the watch.
            return AddOutcome::Added { watch_id: 0 };
        };
        let refused = if held >= self.limits.per_stream {
            Some(("watches per stream", self.limits.per_stream))
        } else if g.watches.len() >= self.limits.total {
            Some(("watches on this member", self.limits.total))
        } else {
            None
        };
        if let Some((what, limit)) = refused {
            self.counters
                .watches_refused
                .fetch_add(1, Ordering::Relaxed);
            return AddOutcome::Limit { what, limit };
        }
        let id = g.next_id;
        g.next_id += 1;
        let mut replay = Vec::new();
        let stream_reg = g.streams.get(&stream);
        if let Some(start) = start_zxid {
            if start < g.floor {
                return AddOutcome::Compacted {
                    oldest_zxid: g.floor + 1,
                };
            }
            for ev in g.history.iter().filter(|e| e.zxid > start) {
                if kind.matches(watch_path, ev) && stream_reg.is_some_and(|s| s.may_see(ev)) {
                    replay.push(ev.clone());
                    if kind.one_shot() {
                        break;
                    }
                }
            }
        }
        let fired = kind.one_shot() && !replay.is_empty();
        if !fired {
            g.watches.insert(
                id,
                WatchReg {
                    stream,
                    path: watch_path.to_string(),
                    kind,
                },
            );
            let map = if kind == WatchKind::PersistentRecursive {
                &mut g.recursive
            } else {
                &mut g.exact
            };
            map.entry(watch_path.to_string()).or_default().push(id);
            if let Some(s) = g.streams.get_mut(&stream) {
                s.watches.insert(id);
            }
        }
        if !replay.is_empty() {
            g.deliver(
                stream,
                Delivery {
                    watch_id: id,
                    events: replay,
                    fired,
                },
            );
        }
        AddOutcome::Added { watch_id: id }
    }

    /// Removes a watch of `stream`. Returns false if it was not registered (or had fired).
    pub fn remove(&self, stream: u64, watch_id: u64) -> bool {
        let mut g = self.lock();
        match g.watches.get(&watch_id) {
            Some(w) if w.stream == stream => {
                g.unregister(watch_id);
                true
            }
            _ => false,
        }
    }

    /// Records events applied at one or more zxids and delivers them to matching watches.
    /// Called by the state machine with the tree's write lock held.
    pub fn publish(&self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        let mut g = self.lock();
        for ev in events {
            g.history.push_back(ev.clone());
        }
        g.trim_history(self.history_capacity);
        if g.watches.is_empty() {
            return;
        }
        // Collect per-watch events in order, then deliver one message per watch.
        let mut per_watch: Vec<(u64, Vec<Event>)> = Vec::new();
        let mut index: HashMap<u64, usize> = HashMap::new();
        let mut fired: HashSet<u64> = HashSet::new();
        for ev in events {
            let mut candidates: Vec<u64> = Vec::new();
            if let Some(ids) = g.exact.get(&ev.path) {
                candidates.extend(ids.iter().copied());
            }
            if !g.recursive.is_empty() {
                let mut p: &str = &ev.path;
                loop {
                    if let Some(ids) = g.recursive.get(p) {
                        candidates.extend(ids.iter().copied());
                    }
                    match path::parent(p) {
                        Some(parent) => p = parent,
                        None => break,
                    }
                }
            }
            for id in candidates {
                if fired.contains(&id) {
                    continue;
                }
                let Some(w) = g.watches.get(&id) else {
                    continue;
                };
                if !w.kind.matches(&w.path, ev) {
                    continue;
                }
                if !g.streams.get(&w.stream).is_some_and(|s| s.may_see(ev)) {
                    continue;
                }
                if w.kind.one_shot() {
                    fired.insert(id);
                }
                let slot = *index.entry(id).or_insert_with(|| {
                    per_watch.push((id, Vec::new()));
                    per_watch.len() - 1
                });
                per_watch[slot].1.push(ev.clone());
            }
        }
        for (id, evs) in per_watch {
            let Some(stream) = g.watches.get(&id).map(|w| w.stream) else {
                continue;
            };
            let was_fired = fired.contains(&id);
            if was_fired {
                g.unregister(id);
            }
            g.deliver(
                stream,
                Delivery {
                    watch_id: id,
                    events: evs,
                    fired: was_fired,
                },
            );
        }
    }

    /// Replaces the history with `history` (loaded at start-up, or carried by an installed
    /// snapshot), keeping its newest `history_capacity` events. Delivers nothing.
    pub fn restore_history(&self, history: History) {
        let mut g = self.lock();
        g.floor = history.floor;
        g.history = history
            .events
            .into_iter()
            .filter(|e| e.zxid > history.floor)
            .collect();
        g.trim_history(self.history_capacity);
    }

    /// The history as of applied index `upto`: every held event with a zxid at most `upto`,
    /// and the floor below them. Taken for a snapshot of the state at `upto`, possibly after
    /// later events were published (they are left out).
    pub fn history_upto(&self, upto: Zxid) -> History {
        let g = self.lock();
        let floor = g.floor.min(upto);
        History {
            floor,
            events: g
                .history
                .iter()
                .filter(|e| e.zxid > floor && e.zxid <= upto)
                .cloned()
                .collect(),
        }
    }

    /// Most events kept for resume.
    pub fn history_capacity(&self) -> usize {
        self.history_capacity
    }

    /// Number of registered watches.
    pub fn watch_count(&self) -> usize {
        self.lock().watches.len()
    }

    /// A page of the registered watches whose path starts with `prefix`, in watch-id order
    /// after `after_id`, at most `limit`; and whether more follow. One pass over the
    /// watches under the hub's lock: callers bound how often they ask.
    pub fn list(&self, prefix: &str, after_id: u64, limit: usize) -> (Vec<WatchRow>, bool) {
        let g = self.lock();
        let mut ids: Vec<u64> = g
            .watches
            .iter()
            .filter(|(id, w)| **id > after_id && w.path.starts_with(prefix))
            .map(|(id, _)| *id)
            .collect();
        let more = ids.len() > limit;
        if more {
            ids.select_nth_unstable(limit);
            ids.truncate(limit);
        }
        ids.sort_unstable();
        let rows = ids
            .into_iter()
            .filter_map(|id| {
                let w = g.watches.get(&id)?;
                Some(WatchRow {
                    watch_id: id,
                    stream_id: w.stream,
                    owner: g
                        .streams
                        .get(&w.stream)
                        .map(|s| s.owner.clone())
                        .unwrap_or_default(),
                    path: w.path.clone(),
                    kind: w.kind,
                })
            })
            .collect();
        (rows, more)
    }

    /// Registered watches by kind, and open client streams.
    pub fn census(&self) -> (BTreeMap<&'static str, usize>, usize) {
        let g = self.lock();
        let mut kinds = BTreeMap::new();
        for w in g.watches.values() {
            *kinds.entry(w.kind.name()).or_insert(0) += 1;
        }
        (kinds, g.streams.len())
    }

    /// Oldest zxid for which every later event is held.
    pub fn oldest_zxid(&self) -> Zxid {
        self.lock().floor + 1
    }
}

impl Inner {
    /// Drops the oldest events beyond `cap`, raising the floor past them.
    fn trim_history(&mut self, cap: usize) {
        while self.history.len() > cap {
            if let Some(old) = self.history.pop_front() {
                self.floor = self.floor.max(old.zxid);
            }
        }
    }

    fn deliver(&mut self, stream: u64, d: Delivery) {
        let n = d.events.len() as u64;
        let Some(s) = self.streams.get(&stream) else {
            return;
        };
        match s.tx.try_send(d) {
            Ok(()) => {
                self.counters.events_sent.fetch_add(n, Ordering::Relaxed);
                return;
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                s.overflowed.store(true, Ordering::SeqCst);
                self.counters
                    .slow_streams_cut
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
        self.drop_stream(stream);
    }

    fn drop_stream(&mut self, stream: u64) {
        if let Some(s) = self.streams.remove(&stream) {
            for id in s.watches {
                self.unregister_inner(id);
            }
        }
    }

    fn unregister(&mut self, id: u64) {
        if let Some(stream) = self.unregister_inner(id) {
            if let Some(s) = self.streams.get_mut(&stream) {
                s.watches.remove(&id);
            }
        }
    }

    fn unregister_inner(&mut self, id: u64) -> Option<u64> {
        let w = self.watches.remove(&id)?;
        let map = if w.kind == WatchKind::PersistentRecursive {
            &mut self.recursive
        } else {
            &mut self.exact
        };
        if let Some(ids) = map.get_mut(&w.path) {
            ids.retain(|x| *x != id);
            if ids.is_empty() {
                map.remove(&w.path);
            }
        }
        Some(w.stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(zxid: Zxid, kind: EventType, p: &str) -> Event {
        Event {
            zxid,
            kind,
            path: p.into(),
            acl: Default::default(),
        }
    }

    fn added(o: AddOutcome) -> u64 {
        match o {
            AddOutcome::Added { watch_id } => watch_id,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn one_shot_data_watch_fires_once() {
        let hub = WatchHub::new(100, 10, 0);
        let mut s = hub.open_stream();
        let w = added(hub.add(s.id, "/a", WatchKind::Data, None));
        hub.publish(&[ev(1, EventType::DataChanged, "/a")]);
        hub.publish(&[ev(2, EventType::DataChanged, "/a")]);
        let d = s.rx.try_recv().unwrap();
        assert_eq!(d.watch_id, w);
        assert!(d.fired);
        assert_eq!(d.events, vec![ev(1, EventType::DataChanged, "/a")]);
        assert!(s.rx.try_recv().is_err());
        assert_eq!(hub.watch_count(), 0);
    }

    #[test]
    fn trigger_rules() {
        use EventType::*;
        let e = |k, p: &str| ev(1, k, p);
        assert!(WatchKind::Data.matches("/a", &e(DataChanged, "/a")));
        assert!(WatchKind::Data.matches("/a", &e(Deleted, "/a")));
        assert!(!WatchKind::Data.matches("/a", &e(ChildrenChanged, "/a")));
        assert!(!WatchKind::Data.matches("/a", &e(DataChanged, "/a/b")));
        assert!(WatchKind::Children.matches("/a", &e(ChildrenChanged, "/a")));
        assert!(WatchKind::Children.matches("/a", &e(Deleted, "/a")));
        assert!(!WatchKind::Children.matches("/a", &e(DataChanged, "/a")));
        assert!(WatchKind::Exists.matches("/a", &e(Created, "/a")));
        assert!(!WatchKind::Exists.matches("/a", &e(ChildrenChanged, "/a")));
        assert!(WatchKind::Persistent.matches("/a", &e(ChildrenChanged, "/a")));
        assert!(!WatchKind::Persistent.matches("/a", &e(Created, "/a/b")));
        assert!(WatchKind::PersistentRecursive.matches("/a", &e(Created, "/a/b/c")));
        assert!(WatchKind::PersistentRecursive.matches("/", &e(Created, "/x")));
        assert!(!WatchKind::PersistentRecursive.matches("/a", &e(ChildrenChanged, "/a")));
        assert!(!WatchKind::PersistentRecursive.matches("/a", &e(Created, "/ab")));
    }

    #[test]
    fn recursive_watch_gets_subtree_events_in_order() {
        let hub = WatchHub::new(100, 10, 0);
        let mut s = hub.open_stream();
        added(hub.add(s.id, "/a", WatchKind::PersistentRecursive, None));
        hub.publish(&[
            ev(3, EventType::Created, "/a/b"),
            ev(3, EventType::ChildrenChanged, "/a"),
            ev(3, EventType::Created, "/x"),
            ev(3, EventType::DataChanged, "/a/b"),
        ]);
        let d = s.rx.try_recv().unwrap();
        assert_eq!(
            d.events,
            vec![
                ev(3, EventType::Created, "/a/b"),
                ev(3, EventType::DataChanged, "/a/b")
            ]
        );
    }

    #[test]
    fn resume_replays_history_or_reports_compaction() {
        let hub = WatchHub::new(3, 10, 0);
        for z in 1..=5 {
            hub.publish(&[ev(z, EventType::DataChanged, "/a")]);
        }
        // History holds zxids 3..=5; every event after 2 is held.
        assert_eq!(hub.oldest_zxid(), 3);
        let mut s = hub.open_stream();
        assert_eq!(
            hub.add(s.id, "/a", WatchKind::Persistent, Some(1)),
            AddOutcome::Compacted { oldest_zxid: 3 }
        );
        let w = added(hub.add(s.id, "/a", WatchKind::Persistent, Some(3)));
        let d = s.rx.try_recv().unwrap();
        assert_eq!(d.watch_id, w);
        assert_eq!(
            d.events.iter().map(|e| e.zxid).collect::<Vec<_>>(),
            vec![4, 5]
        );
        hub.publish(&[ev(6, EventType::DataChanged, "/a")]);
        assert_eq!(s.rx.try_recv().unwrap().events[0].zxid, 6);
    }

    #[test]
    fn slow_stream_is_cut_off_without_blocking() {
        let hub = WatchHub::new(100, 2, 0);
        let s = hub.open_stream();
        added(hub.add(s.id, "/a", WatchKind::Persistent, None));
        for z in 1..=5 {
            hub.publish(&[ev(z, EventType::DataChanged, "/a")]);
        }
        assert!(s.overflowed.load(Ordering::SeqCst));
        assert_eq!(hub.watch_count(), 0);
    }

    #[test]
    fn remove_and_close() {
        let hub = WatchHub::new(100, 10, 0);
        let s = hub.open_stream();
        let w = added(hub.add(s.id, "/a", WatchKind::Persistent, None));
        added(hub.add(s.id, "/b", WatchKind::PersistentRecursive, None));
        assert!(hub.remove(s.id, w));
        assert!(!hub.remove(s.id, w));
        assert_eq!(hub.watch_count(), 1);
        hub.close_stream(s.id);
        assert_eq!(hub.watch_count(), 0);
    }
}
