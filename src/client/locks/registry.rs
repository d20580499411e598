//! Which contenders this process holds, and which it may have left behind, per session and
//! lock path: the bookkeeping that lets a failed acquire, release or resignation remove its
//! stray contender without touching one that a live [`LockGuard`] or [`Leadership`] owns.
//!
//! The registry is process-wide (one static), not owned by a [`Client`], because the
//! contenders it must know about are those of a *session*, and the API does not tie a
//! session's locks to one client: a [`Session`] opened through one client may lock through
//! another, separately connected one; [`Client::resume_session`] makes a second `Session`
//! value for the same id; and [`Client::release`] and [`Client::resign`] name only a
//! session id. With a registry per client, the stray cleanup of one client would delete a
//! contender that a live guard acquired through another client of this process still
//! holds. Neither can it live in the [`Session`], for the same reasons. Contenders of other
//! processes sharing the session are not known to it (see the module documentation of
//! `locks`).
//!
//! [`LockGuard`]: super::LockGuard
//! [`Leadership`]: super::Leadership
//! [`Client`]: crate::client::Client
//! [`Session`]: crate::client::Session
//! [`Client::resume_session`]: crate::client::Client::resume_session
//! [`Client::release`]: crate::client::Client::release
//! [`Client::resign`]: crate::client::Client::resign

use std::collections::{HashMap, HashSet};
use std::sync::{LazyLock, Mutex, MutexGuard};

/// A session id and a lock path.
type Key = (u64, String);

/// What this process knows about one (session, lock path).
#[derive(Debug, Default)]
struct Entry {
    /// Acquires under way.
    inflight: usize,
    /// Incremented by each acquire that begins.
    generation: u64,
    /// Nodes granted to live guards and leaderships.
    held: HashSet<String>,
    /// A stray contender may exist: clean up when no acquire is under way.
    dirty: bool,
}

/// The contenders of this process, by (session, lock path). An entry is dropped once it has
/// nothing to remember.
#[derive(Debug, Default)]
pub(super) struct Registry {
    entries: Mutex<HashMap<Key, Entry>>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::default);

/// The lock path of a contender node: its parent (`/` for a node under the root), if it has
/// one.
pub(super) fn lock_path_of(node: &str) -> Option<&str> {
    let (path, _) = node.rsplit_once('/')?;
    Some(if path.is_empty() { "/" } else { path })
}

impl Registry {
    /// The registry of this process.
    pub(super) fn global() -> &'static Registry {
        &REGISTRY
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// No longer counts `node` as held (released, resigned, or its guard dropped).
    pub(super) fn forget(&self, session_id: u64, path: &str, node: &str) {
        let mut map = self.entries();
        let key = (session_id, path.to_string());
        if let Some(e) = map.get_mut(&key) {
            e.held.remove(node);
        }
        drop_if_idle(&mut map, &key);
    }

    /// Notes that a stray contender may exist, for the next acquire to remove.
    pub(super) fn mark_dirty(&self, session_id: u64, path: &str) {
        self.entries()
            .entry((session_id, path.to_string()))
            .or_default()
            .dirty = true;
    }

    /// The held nodes, if no acquire began since `generation` and at most `inflight` are
    /// under way (the caller's own); otherwise marks the key dirty for a later cleanup.
    pub(super) fn held_if_quiet(
        &self,
        session_id: u64,
        path: &str,
        generation: u64,
        inflight: usize,
    ) -> Option<HashSet<String>> {
        let mut map = self.entries();
        let key = (session_id, path.to_string());
        let e = map.entry(key.clone()).or_default();
        if e.generation != generation || e.inflight > inflight {
            e.dirty = true;
            return None;
        }
        // The caller cleans up now; a failure marks the key dirty again.
        e.dirty = false;
        let held = e.held.clone();
        drop_if_idle(&mut map, &key);
        Some(held)
    }

    /// Counts an acquire; also says whether a stray contender may exist from earlier calls.
    pub(super) fn begin(&self, session_id: u64, path: &str) -> (Inflight<'_>, bool) {
        let key = (session_id, path.to_string());
        let mut map = self.entries();
        let e = map.entry(key.clone()).or_default();
        e.inflight += 1;
        e.generation += 1;
        let generation = e.generation;
        let dirty = e.dirty;
        (
            Inflight {
                registry: self,
                key,
                generation,
                finished: false,
            },
            dirty,
        )
    }
}

fn drop_if_idle(map: &mut HashMap<Key, Entry>, key: &Key) {
    if map
        .get(key)
        .is_some_and(|e| e.inflight == 0 && e.held.is_empty() && !e.dirty)
    {
        map.remove(key);
    }
}

/// One acquire under way; counted until finished or dropped.
pub(super) struct Inflight<'r> {
    registry: &'r Registry,
    key: Key,
    /// The generation this acquire began at.
    generation: u64,
    finished: bool,
}

impl Inflight<'_> {
    /// The held nodes, if this is the only acquire of its key under way and none began
    /// after it.
    pub(super) fn held_if_alone(&self) -> Option<HashSet<String>> {
        self.registry
            .held_if_quiet(self.key.0, &self.key.1, self.generation, 1)
    }

    /// Ends the acquire; returns the generation to clean up at if a stray contender may
    /// exist and this was the last acquire under way.
    pub(super) fn finish(&mut self, granted: Option<&str>, maybe_stray: bool) -> Option<u64> {
        self.finished = true;
        let mut map = self.registry.entries();
        let e = map.entry(self.key.clone()).or_default();
        e.inflight = e.inflight.saturating_sub(1);
        if let Some(node) = granted {
            e.held.insert(node.to_string());
        }
        e.dirty |= maybe_stray;
        if e.inflight == 0 && e.dirty {
            // The entry stays until the cleanup has read `held` (Registry::held_if_quiet).
            e.dirty = false;
            return Some(e.generation);
        }
        drop_if_idle(&mut map, &self.key);
        None
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Cancelled mid-call: the server normally withdraws the contender, but the reply
        // may have been a grant; let the next acquire on this key check.
        let mut map = self.registry.entries();
        let e = map.entry(self.key.clone()).or_default();
        e.inflight = e.inflight.saturating_sub(1);
        e.dirty = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_cleans_up_only_when_quiet() {
        let registry = Registry::default();
        let (s, p) = (0xfeed_0001, "/registry-test");
        let (mut a, _) = registry.begin(s, p);
        let (mut b, _) = registry.begin(s, p);
        assert_eq!(a.finish(None, true), None, "b is still under way");
        let g = b.finish(Some("/registry-test/lock-0000000002"), false);
        let g = g.expect("last one cleans up");
        let held = registry.held_if_quiet(s, p, g, 0).expect("quiet");
        assert!(held.contains("/registry-test/lock-0000000002"));
        // A new acquire makes an older cleanup step aside.
        let (c, _) = registry.begin(s, p);
        assert_eq!(registry.held_if_quiet(s, p, g, 0), None);
        assert!(c.held_if_alone().is_some(), "c is alone");
        drop(c);
        registry.forget(s, p, "/registry-test/lock-0000000002");
        let (mut d, dirty) = registry.begin(s, p);
        assert!(dirty, "dropped c left it dirty");
        let g = d.finish(None, false).expect("dropped c left it dirty");
        assert!(registry
            .held_if_quiet(s, p, g, 0)
            .is_some_and(|h| h.is_empty()));
        assert!(!registry.entries().contains_key(&(s, p.to_string())));
    }
}
