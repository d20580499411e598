//! The deterministic state machine: the znode tree and the sessions, and `apply(entry)`.
//!
//! `apply` reads nothing but the command it is given (time comes from the proposer, carried
//! in the command), so every member that applies the same log reaches the same state.
//! A `Multi` is all-or-nothing: its ops are applied one by one (later ops see earlier ones)
//! with an undo log, and rolled back if one fails.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use imbl::{OrdMap, OrdSet};

use super::acl::{self, Acl, Caller};
use super::clients::ClientTable;
use super::lock_queue::{self, Contender};
use super::path::{self, PathLimits};
use super::types::*;
use crate::error::BatonError;

/// Largest TTL accepted (exclusive), as in ZooKeeper: 2^40 ms.
pub const MAX_TTL_MS: i64 = 1 << 40;

/// One znode.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Node {
    /// Data.
    pub data: Bytes,
    /// Metadata; `data_length` and `num_children` are kept current.
    pub stat: Stat,
    /// Child creations so far: the next sequential suffix.
    pub seq: i32,
    /// Names of the direct children, sorted. A persistent set: cloning a node (or the whole
    /// state, for a snapshot) shares it instead of copying it.
    pub children: OrdSet<String>,
    /// Who may do what to the node (and create or delete its children).
    pub acl: NodeAcl,
}

/// A session and the ephemeral nodes it owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionEntry {
    /// The session.
    pub session: Session,
    /// Paths of its ephemeral nodes.
    pub ephemerals: OrdSet<String>,
}

/// What one `apply` changed, for persistence and watch delivery.
#[derive(Debug, Default)]
pub struct Applied {
    /// One result per request of the command.
    pub results: Vec<RequestResult>,
    /// Events in the order they happened.
    pub events: Vec<Event>,
    /// Paths whose node was created, changed or deleted (read them back to persist).
    pub touched_nodes: BTreeSet<String>,
    /// Sessions opened or removed.
    pub touched_sessions: BTreeSet<SessionId>,
    /// Clients whose request-id record changed or was removed.
    pub touched_clients: BTreeSet<u64>,
}

/// Undo record for rolling back a failed Multi.
enum Undo {
    Inserted(String),
    Removed(String, Node),
    Meta(String, Bytes, Stat, i32, NodeAcl),
    ChildAdded(String, String),
    ChildRemoved(String, String),
    EphemeralAdded(SessionId, String),
    EphemeralRemoved(SessionId, String),
}

/// The znode tree and the sessions.
///
/// Every collection is persistent (`imbl`): a clone shares the data and costs a few pointer
/// copies, and a later change copies only the path to what it changes. A snapshot is built
/// from such a clone, taken under the read lock in constant time, so building it never holds
/// apply back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    /// Nodes by path. Each behind its own `Arc`: a map leaf then holds a path and a pointer,
    /// not a whole node, which halves the tree's memory and makes the copy a change makes
    /// during a snapshot small.
    nodes: OrdMap<String, Arc<Node>>,
    sessions: OrdMap<SessionId, SessionEntry>,
    ttl_nodes: OrdSet<String>,
    /// Results of client writes that carried a request id (see [`super::clients`]).
    clients: ClientTable,
    /// Largest proposer time applied (keeps times monotonic in log order).
    pub last_time_ms: i64,
    /// zxid of the last change to the tree or sessions.
    pub last_zxid: Zxid,
    /// Log index of the last entry applied (changes or not); set by the caller for entries
    /// that carry no command.
    pub applied_index: u64,
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

/// Per-apply scratch: the undo log of the current request and the events it produced.
struct Txn {
    zxid: Zxid,
    time: i64,
    undo: Vec<Undo>,
    events: Vec<Event>,
    touched_nodes: BTreeSet<String>,
    touched_sessions: BTreeSet<SessionId>,
    touched_clients: BTreeSet<u64>,
    containers: Vec<String>,
}

impl Txn {
    fn event(&mut self, kind: EventType, path: &str, acl: &NodeAcl) {
        self.events.push(Event {
            zxid: self.zxid,
            kind,
            path: path.to_string(),
            acl: acl.clone(),
        });
    }
}

impl State {
    /// An empty tree: just `/`.
    pub fn new() -> Self {
        let mut nodes = OrdMap::new();
        nodes.insert("/".to_string(), Arc::new(Node::default()));
        State {
            nodes,
            sessions: OrdMap::new(),
            ttl_nodes: OrdSet::new(),
            clients: ClientTable::default(),
            last_time_ms: 0,
            last_zxid: 0,
            applied_index: 0,
        }
    }

    /// Rebuilds a state from stored records (children sets, child counts, ephemeral and TTL
    /// indexes are derived). Records whose parent is missing are dropped with an error count
    /// returned.
    pub fn from_records(
        nodes: impl IntoIterator<Item = (String, Node)>,
        sessions: impl IntoIterator<Item = Session>,
        last_time_ms: i64,
        last_zxid: Zxid,
    ) -> (Self, usize) {
        let mut loader = Loader::new(last_time_ms, last_zxid);
        for s in sessions {
            loader.add_session(s);
        }
        for (p, n) in nodes {
            loader.add_node(p, n);
        }
        loader.finish()
    }

    /// Links a node whose parent exists; gives it back otherwise.
    fn link_loaded(&mut self, p: String, mut n: Node) -> Option<(String, Node)> {
        n.children = OrdSet::new();
        n.stat.num_children = 0;
        if p == "/" {
            if let Some(root) = self.nodes.get_mut("/").map(Arc::make_mut) {
                n.children = std::mem::take(&mut root.children);
                n.stat.num_children = root.stat.num_children;
                *root = n;
            }
            return None;
        }
        let Some(parent) = path::parent(&p) else {
            return Some((p, n));
        };
        let Some(pn) = self.nodes.get_mut(parent).map(Arc::make_mut) else {
            return Some((p, n));
        };
        pn.children.insert(path::name(&p).to_string());
        pn.stat.num_children += 1;
        if n.stat.mode.is_ttl() {
            self.ttl_nodes.insert(p.clone());
        }
        self.nodes.insert(p, Arc::new(n));
        None
    }

    /// The node at `path`.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path).map(|n| &**n)
    }

    /// The contenders of the lock at `lock_path`, in queue order, with who holds it (see
    /// [`lock_queue`]).
    pub fn lock_contenders(&self, lock_path: &str) -> Vec<Contender> {
        let Some(parent) = self.get(lock_path) else {
            return Vec::new();
        };
        let children = parent.children.iter().filter_map(|name| {
            let node = self.get(&path::join(lock_path, name))?;
            Some((name.as_str(), &node.data, &node.stat))
        });
        lock_queue::contenders(lock_path, children)
    }

    /// Whether `lock_node` holds its lock now with fencing token `token` (`CheckFence`).
    pub fn holds_lock(&self, lock_node: &str, token: u64) -> bool {
        let Some(parent) = path::parent(lock_node) else {
            return false;
        };
        lock_queue::holds(&self.lock_contenders(parent), lock_node, token)
    }

    /// Number of znodes, `/` included.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Every node, in path order (a parent before its children).
    pub fn nodes(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.nodes.iter().map(|(p, n)| (p, &**n))
    }

    /// A session.
    pub fn session(&self, id: SessionId) -> Option<&SessionEntry> {
        self.sessions.get(&id)
    }

    /// Every session, by id.
    pub fn sessions(&self) -> impl Iterator<Item = &SessionEntry> {
        self.sessions.values()
    }

    /// The request-id table.
    pub fn clients(&self) -> &ClientTable {
        &self.clients
    }

    /// Replaces the request-id table (loading stored state).
    pub fn set_clients(&mut self, clients: ClientTable) {
        self.clients = clients;
    }

    /// Number of sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Number of ephemeral nodes.
    pub fn ephemeral_count(&self) -> usize {
        self.sessions.values().map(|s| s.ephemerals.len()).sum()
    }

    /// Children of `path` after `start_after` (exclusive), at most `limit`, and whether more
    /// remain.
    pub fn children_page(
        &self,
        path: &str,
        start_after: &str,
        limit: usize,
    ) -> Option<(Vec<&String>, bool)> {
        let node = self.nodes.get(path)?;
        let mut it: Box<dyn Iterator<Item = &String>> = if start_after.is_empty() {
            Box::new(node.children.iter())
        } else {
            Box::new(node.children.range::<_, str>((
                std::ops::Bound::Excluded(start_after),
                std::ops::Bound::Unbounded,
            )))
        };
        let page: Vec<&String> = it.by_ref().take(limit).collect();
        let more = it.next().is_some();
        Some((page, more))
    }

    /// A hash of every node (path, data, Stat, sequence counter, ACL), session and remembered
    /// request result (see [`super::clients`]), independent of
    /// insertion order: members that applied the same log have the same digest.
    pub fn digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        // In path order (the map's own order), so equal states hash alike.
        for (p, n) in self.nodes.iter() {
            p.hash(&mut h);
            n.data.hash(&mut h);
            n.seq.hash(&mut h);
            let s = &n.stat;
            (s.czxid, s.mzxid, s.pzxid, s.ctime, s.mtime).hash(&mut h);
            (s.version, s.cversion, s.aversion, s.ephemeral_owner).hash(&mut h);
            (s.data_length, s.num_children, s.mode.as_i32(), s.ttl_ms).hash(&mut h);
            n.acl.hash(&mut h);
        }
        for e in self.sessions.values() {
            let s = &e.session;
            (s.id, &s.secret, s.timeout_ms, s.created_zxid, s.created_ms).hash(&mut h);
        }
        self.clients.hash_into(&mut h);
        h.finish()
    }

    /// TTL nodes that have expired at `now_ms` and have no children, at most `max`.
    pub fn expired_ttl_nodes(&self, now_ms: i64, max: usize) -> Vec<String> {
        self.ttl_nodes
            .iter()
            .filter(|p| self.nodes.get(*p).is_some_and(|n| ttl_expired(n, now_ms)))
            .take(max)
            .cloned()
            .collect()
    }

    /// Applies one command at log index `zxid`.
    pub fn apply(&mut self, zxid: Zxid, cmd: &Command) -> Applied {
        let time = cmd.time_ms.max(self.last_time_ms);
        self.last_time_ms = time;
        self.applied_index = zxid;
        let mut out = Applied::default();
        for req in &cmd.requests {
            let (id, req) = match req {
                Request::Tagged { id, request } => (Some(id), request.as_ref()),
                other => (None, other),
            };
            if let Some(id) = id {
                out.touched_clients.insert(id.client_id);
                if let Some(answer) = self.clients.admit(id, time) {
                    out.results.push(answer);
                    continue;
                }
            }
            let mut txn = Txn {
                zxid,
                time,
                undo: Vec::new(),
                events: Vec::new(),
                touched_nodes: BTreeSet::new(),
                touched_sessions: BTreeSet::new(),
                touched_clients: BTreeSet::new(),
                containers: Vec::new(),
            };
            let result = self.apply_request(&mut txn, req);
            if result.is_ok() {
                self.reap_containers(&mut txn);
                if !txn.events.is_empty() || !txn.touched_sessions.is_empty() {
                    self.last_zxid = zxid;
                }
                out.events.append(&mut txn.events);
                out.touched_nodes.append(&mut txn.touched_nodes);
                out.touched_sessions.append(&mut txn.touched_sessions);
                out.touched_clients.append(&mut txn.touched_clients);
            } else {
                self.rollback(txn.undo);
            }
            if let Some(id) = id {
                self.clients.record(id, zxid, &result);
            }
            out.results.push(result);
        }
        out
    }

    fn apply_request(&mut self, txn: &mut Txn, req: &Request) -> RequestResult {
        match req {
            Request::Multi { ops, caller, .. } => {
                RequestResult::Multi(self.apply_multi(txn, ops, caller.as_ref()))
            }
            Request::OpenSession {
                session_id,
                secret,
                timeout_ms,
            } => RequestResult::Done(self.open_session(txn, *session_id, secret, *timeout_ms)),
            Request::CloseSession { session_id, secret } => {
                RequestResult::Done(match self.sessions.get(session_id) {
                    None => Err(BatonError::SessionExpired(*session_id)),
                    Some(s) if s.session.secret != *secret => {
                        Err(BatonError::AuthFailed(*session_id))
                    }
                    Some(_) => {
                        self.end_session(txn, *session_id);
                        Ok(())
                    }
                })
            }
            Request::ExpireSessions(ids) => {
                for id in ids {
                    if self.sessions.contains_key(id) {
                        self.end_session(txn, *id);
                    }
                }
                RequestResult::Done(Ok(()))
            }
            Request::ExpireTtl(paths) => {
                for p in paths {
                    let expired = self
                        .nodes
                        .get(p)
                        .is_some_and(|n| n.stat.mode.is_ttl() && ttl_expired(n, txn.time));
                    if expired {
                        self.remove(txn, p);
                    }
                }
                RequestResult::Done(Ok(()))
            }
            Request::Noop => RequestResult::Done(Ok(())),
            Request::ExpireClients {
                client_ids,
                before_ms,
            } => {
                let removed = self.clients.expire(client_ids, *before_ms);
                txn.touched_clients.extend(removed);
                RequestResult::Done(Ok(()))
            }
            // Only a client write carries an id, once: `apply` takes it off before this.
            Request::Tagged { .. } => RequestResult::Done(Err(BatonError::BadArguments(
                "a request id on a request that already carries one".into(),
            ))),
        }
    }

    fn apply_multi(
        &mut self,
        txn: &mut Txn,
        ops: &[Op],
        caller: Option<&Caller>,
    ) -> Result<Vec<OpOutcome>, MultiFailure> {
        let mut outcomes = Vec::with_capacity(ops.len());
        for (index, op) in ops.iter().enumerate() {
            match self.apply_op(txn, op, caller) {
                Ok(o) => outcomes.push(o),
                Err(error) => {
                    return Err(MultiFailure {
                        index,
                        error,
                        before: outcomes,
                    })
                }
            }
        }
        Ok(outcomes)
    }

    /// Checks `perm` on the node at `path` (which exists) for `caller`; `None` is the
    /// member itself and passes.
    fn authorize(&self, caller: Option<&Caller>, path: &str, perm: u32) -> Result<(), BatonError> {
        match (caller, self.nodes.get(path)) {
            (Some(c), Some(n)) => acl::require(n.acl.as_slice(), c, perm, path),
            _ => Ok(()),
        }
    }

    fn apply_op(
        &mut self,
        txn: &mut Txn,
        op: &Op,
        caller: Option<&Caller>,
    ) -> Result<OpOutcome, BatonError> {
        match op {
            Op::Create {
                path,
                data,
                mode,
                session_id,
                ttl_ms,
                acl,
            } => self.create(txn, path, data, (*mode, *session_id, *ttl_ms), acl, caller),
            Op::Delete { path, version } => {
                if path == "/" {
                    return Err(BatonError::BadArguments(
                        "the root cannot be deleted".into(),
                    ));
                }
                // As ZooKeeper: DELETE on the parent is checked before the node is looked up.
                if let Some(parent) = path::parent(path) {
                    self.authorize(caller, parent, acl::DELETE)?;
                }
                let node = self
                    .nodes
                    .get(path)
                    .ok_or_else(|| BatonError::NoNode(path.clone()))?;
                check_version(path, *version, node.stat.version)?;
                if !node.children.is_empty() {
                    return Err(BatonError::NotEmpty(path.clone()));
                }
                self.remove(txn, path);
                Ok(OpOutcome::Delete)
            }
            Op::SetData {
                path,
                data,
                version,
            } => {
                let node = self
                    .nodes
                    .get(path)
                    .ok_or_else(|| BatonError::NoNode(path.clone()))?;
                let version_now = node.stat.version;
                self.authorize(caller, path, acl::WRITE)?;
                check_version(path, *version, version_now)?;
                self.save_meta(txn, path);
                let node = self.node_mut(path);
                node.data = own(data);
                node.stat.version = node.stat.version.wrapping_add(1);
                node.stat.mzxid = txn.zxid;
                node.stat.mtime = txn.time;
                node.stat.data_length = data.len() as i32;
                let stat = node.stat.clone();
                let node_acl = node.acl.clone();
                txn.touched_nodes.insert(path.clone());
                txn.event(EventType::DataChanged, path, &node_acl);
                Ok(OpOutcome::SetData { stat })
            }
            Op::SetAcl { path, acl, version } => {
                let node = self
                    .nodes
                    .get(path)
                    .ok_or_else(|| BatonError::NoNode(path.clone()))?;
                let aversion = node.stat.aversion;
                self.authorize(caller, path, acl::ADMIN)?;
                check_version(path, *version, aversion)?;
                self.save_meta(txn, path);
                let node = self.node_mut(path);
                node.acl = NodeAcl::new(acl.clone());
                node.stat.aversion = node.stat.aversion.wrapping_add(1);
                let stat = node.stat.clone();
                txn.touched_nodes.insert(path.clone());
                Ok(OpOutcome::SetAcl { stat })
            }
            Op::Check { path, version } => {
                let node = self
                    .nodes
                    .get(path)
                    .ok_or_else(|| BatonError::NoNode(path.clone()))?;
                let version_now = node.stat.version;
                self.authorize(caller, path, acl::READ)?;
                check_version(path, *version, version_now)?;
                Ok(OpOutcome::Check)
            }
            Op::CheckFence { lock_node, token } => {
                if self.nodes.contains_key(lock_node) {
                    self.authorize(caller, lock_node, acl::READ)?;
                }
                if self.holds_lock(lock_node, *token) {
                    Ok(OpOutcome::Check)
                } else {
                    Err(BatonError::BadFence {
                        lock_node: lock_node.clone(),
                        token: *token,
                    })
                }
            }
        }
    }

    fn create(
        &mut self,
        txn: &mut Txn,
        path: &str,
        data: &Bytes,
        (mode, session_id, ttl_ms): (CreateMode, SessionId, i64),
        node_acl: &[Acl],
        caller: Option<&Caller>,
    ) -> Result<OpOutcome, BatonError> {
        path::validate(
            path,
            mode.is_sequential(),
            &PathLimits {
                max_len: usize::MAX,
                max_depth: usize::MAX,
            },
        )?;
        if mode.is_ttl() {
            if !(1..MAX_TTL_MS).contains(&ttl_ms) {
                return Err(BatonError::BadArguments(format!(
                    "ttl_ms must be in [1, 2^40), got {ttl_ms}"
                )));
            }
        } else if ttl_ms != 0 {
            return Err(BatonError::BadArguments(
                "ttl_ms is only valid with a TTL create mode".into(),
            ));
        }
        // For a sequential create "/a/" or "/a/x-", the parent is "/a".
        let parent_path = if mode.is_sequential() && path.ends_with('/') {
            if path == "/" {
                "/"
            } else {
                &path[..path.len() - 1]
            }
        } else {
            path::parent(path).ok_or_else(|| BatonError::NodeExists(path.to_string()))?
        };
        let parent = self
            .nodes
            .get(parent_path)
            .ok_or_else(|| BatonError::NoNode(parent_path.to_string()))?;
        if let Some(c) = caller {
            acl::require(parent.acl.as_slice(), c, acl::CREATE, parent_path)?;
        }
        if parent.stat.ephemeral_owner != 0 {
            return Err(BatonError::NoChildrenForEphemerals(path.to_string()));
        }
        if mode.is_ephemeral() && !self.sessions.contains_key(&session_id) {
            return Err(BatonError::SessionExpired(session_id));
        }
        let final_path = if mode.is_sequential() {
            format!("{path}{:010}", parent.seq)
        } else {
            path.to_string()
        };
        if self.nodes.contains_key(&final_path) {
            return Err(BatonError::NodeExists(final_path));
        }
        let parent_path = parent_path.to_string();
        let node_acl = NodeAcl::new(node_acl.to_vec());
        let stat = Stat {
            czxid: txn.zxid,
            mzxid: txn.zxid,
            pzxid: txn.zxid,
            ctime: txn.time,
            mtime: txn.time,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: if mode.is_ephemeral() { session_id } else { 0 },
            data_length: data.len() as i32,
            num_children: 0,
            mode,
            ttl_ms: if mode.is_ttl() { ttl_ms } else { 0 },
        };
        self.nodes.insert(
            final_path.clone(),
            Arc::new(Node {
                data: own(data),
                stat: stat.clone(),
                seq: 0,
                children: OrdSet::new(),
                acl: node_acl.clone(),
            }),
        );
        txn.undo.push(Undo::Inserted(final_path.clone()));
        self.save_meta(txn, &parent_path);
        let name = path::name(&final_path).to_string();
        let parent = self.node_mut(&parent_path);
        parent.seq = parent.seq.wrapping_add(1);
        parent.stat.cversion = parent.stat.cversion.wrapping_add(1);
        parent.stat.pzxid = txn.zxid;
        parent.stat.num_children += 1;
        parent.children.insert(name.clone());
        let parent_acl = parent.acl.clone();
        txn.undo.push(Undo::ChildAdded(parent_path.clone(), name));
        if mode.is_ephemeral() {
            if let Some(s) = self.sessions.get_mut(&session_id) {
                s.ephemerals.insert(final_path.clone());
                txn.undo
                    .push(Undo::EphemeralAdded(session_id, final_path.clone()));
            }
        }
        if mode.is_ttl() {
            self.ttl_nodes.insert(final_path.clone());
        }
        txn.touched_nodes.insert(final_path.clone());
        txn.touched_nodes.insert(parent_path.clone());
        txn.event(EventType::Created, &final_path, &node_acl);
        txn.event(EventType::ChildrenChanged, &parent_path, &parent_acl);
        Ok(OpOutcome::Create {
            path: final_path,
            stat,
        })
    }

    /// Removes a node that exists and has no children, updating its parent.
    fn remove(&mut self, txn: &mut Txn, path: &str) {
        let Some(node) = self.nodes.remove(path).map(Arc::unwrap_or_clone) else {
            return;
        };
        let owner = node.stat.ephemeral_owner;
        let node_acl = node.acl.clone();
        if node.stat.mode.is_ttl() {
            self.ttl_nodes.remove(path);
        }
        txn.undo.push(Undo::Removed(path.to_string(), node));
        if owner != 0 {
            if let Some(s) = self.sessions.get_mut(&owner) {
                if s.ephemerals.remove(path).is_some() {
                    txn.undo
                        .push(Undo::EphemeralRemoved(owner, path.to_string()));
                }
            }
        }
        if let Some(parent_path) = path::parent(path) {
            let parent_path = parent_path.to_string();
            self.save_meta(txn, &parent_path);
            let name = path::name(path).to_string();
            let parent = self.node_mut(&parent_path);
            parent.stat.cversion = parent.stat.cversion.wrapping_add(1);
            parent.stat.pzxid = txn.zxid;
            parent.stat.num_children -= 1;
            parent.children.remove(&name);
            let reap = parent.stat.mode.is_container() && parent.children.is_empty();
            let parent_acl = parent.acl.clone();
            txn.undo.push(Undo::ChildRemoved(parent_path.clone(), name));
            if reap {
                txn.containers.push(parent_path.clone());
            }
            txn.touched_nodes.insert(parent_path.clone());
            txn.event(EventType::Deleted, path, &node_acl);
            txn.event(EventType::ChildrenChanged, &parent_path, &parent_acl);
        }
        txn.touched_nodes.insert(path.to_string());
    }

    /// Deletes containers emptied by the request, cascading upwards. Runs only after the
    /// request succeeded, so ops later in a Multi may still use the container.
    fn reap_containers(&mut self, txn: &mut Txn) {
        while let Some(p) = txn.containers.pop() {
            let empty_container = self.nodes.get(&p).is_some_and(|n| {
                n.stat.mode.is_container() && n.children.is_empty() && n.stat.cversion > 0
            });
            if empty_container && p != "/" {
                self.remove(txn, &p);
            }
        }
    }

    fn open_session(
        &mut self,
        txn: &mut Txn,
        id: SessionId,
        secret: &Bytes,
        timeout_ms: i64,
    ) -> Result<(), BatonError> {
        if id == 0 || self.sessions.contains_key(&id) {
            return Err(BatonError::BadArguments(format!(
                "session id {id:#x} is taken"
            )));
        }
        self.sessions.insert(
            id,
            SessionEntry {
                session: Session {
                    id,
                    secret: secret.clone(),
                    timeout_ms,
                    created_zxid: txn.zxid,
                    created_ms: txn.time,
                },
                ephemerals: OrdSet::new(),
            },
        );
        txn.touched_sessions.insert(id);
        Ok(())
    }

    /// Removes a session and its ephemeral nodes.
    fn end_session(&mut self, txn: &mut Txn, id: SessionId) {
        let Some(entry) = self.sessions.remove(&id) else {
            return;
        };
        for p in entry.ephemerals.iter().rev() {
            self.remove(txn, p);
        }
        txn.touched_sessions.insert(id);
    }

    fn node_mut(&mut self, path: &str) -> &mut Node {
        Arc::make_mut(self.nodes.entry(path.to_string()).or_default())
    }

    fn save_meta(&mut self, txn: &mut Txn, path: &str) {
        if let Some(n) = self.nodes.get(path) {
            txn.undo.push(Undo::Meta(
                path.to_string(),
                n.data.clone(),
                n.stat.clone(),
                n.seq,
                n.acl.clone(),
            ));
        }
    }

    fn rollback(&mut self, undo: Vec<Undo>) {
        for u in undo.into_iter().rev() {
            match u {
                Undo::Inserted(p) => {
                    if let Some(n) = self.nodes.remove(&p) {
                        if n.stat.mode.is_ttl() {
                            self.ttl_nodes.remove(&p);
                        }
                    }
                }
                Undo::Removed(p, n) => {
                    if n.stat.mode.is_ttl() {
                        self.ttl_nodes.insert(p.clone());
                    }
                    self.nodes.insert(p, Arc::new(n));
                }
                Undo::Meta(p, data, stat, seq, node_acl) => {
                    if let Some(n) = self.nodes.get_mut(&p).map(Arc::make_mut) {
                        n.data = data;
                        n.stat = stat;
                        n.seq = seq;
                        n.acl = node_acl;
                    }
                }
                Undo::ChildAdded(p, name) => {
                    if let Some(n) = self.nodes.get_mut(&p).map(Arc::make_mut) {
                        n.children.remove(&name);
                    }
                }
                Undo::ChildRemoved(p, name) => {
                    if let Some(n) = self.nodes.get_mut(&p).map(Arc::make_mut) {
                        n.children.insert(name);
                    }
                }
                Undo::EphemeralAdded(id, p) => {
                    if let Some(s) = self.sessions.get_mut(&id) {
                        s.ephemerals.remove(&p);
                    }
                }
                Undo::EphemeralRemoved(id, p) => {
                    if let Some(s) = self.sessions.get_mut(&id) {
                        s.ephemerals.insert(p);
                    }
                }
            }
        }
    }
}

/// Builds a [`State`] from stored records one at a time (a snapshot is read as a stream, never
/// held whole): a node is linked as soon as its parent is there (snapshots list parents
/// first), and any other is kept aside and linked at the end, parents first.
pub struct Loader {
    state: State,
    deferred: Vec<(String, Node)>,
    ephemerals: Vec<(SessionId, String)>,
}

impl Loader {
    /// An empty tree (only `/`) with the given clock and zxid.
    pub fn new(last_time_ms: i64, last_zxid: Zxid) -> Self {
        let mut state = State::new();
        state.last_time_ms = last_time_ms;
        state.last_zxid = last_zxid;
        Loader {
            state,
            deferred: Vec::new(),
            ephemerals: Vec::new(),
        }
    }

    /// Adds a node record.
    pub fn add_node(&mut self, path: String, node: Node) {
        let owner = node.stat.ephemeral_owner;
        let ephemeral = (owner != 0).then(|| path.clone());
        match self.state.link_loaded(path, node) {
            None => {
                if let Some(p) = ephemeral {
                    self.ephemerals.push((owner, p));
                }
            }
            Some(rec) => self.deferred.push(rec),
        }
    }

    /// Adds a session record.
    pub fn add_session(&mut self, s: Session) {
        self.state.sessions.insert(
            s.id,
            SessionEntry {
                session: s,
                ephemerals: OrdSet::new(),
            },
        );
    }

    /// The state, and how many node records had no parent (dropped).
    pub fn finish(mut self) -> (State, usize) {
        let mut deferred = std::mem::take(&mut self.deferred);
        // Parents before their children: by depth.
        deferred.sort_by_key(|(p, _)| p.matches('/').count());
        let mut orphans = 0;
        for (p, n) in deferred {
            let owner = n.stat.ephemeral_owner;
            let ephemeral = (owner != 0).then(|| p.clone());
            match self.state.link_loaded(p, n) {
                None => {
                    if let Some(p) = ephemeral {
                        self.ephemerals.push((owner, p));
                    }
                }
                Some(_) => orphans += 1,
            }
        }
        for (owner, p) in std::mem::take(&mut self.ephemerals) {
            if let Some(s) = self.state.sessions.get_mut(&owner) {
                s.ephemerals.insert(p);
            }
        }
        (self.state, orphans)
    }
}

/// A node's own copy of data from a command. A command's byte fields are slices of its whole
/// log entry; a node keeping such a slice would keep the entry's other requests in memory for
/// as long as it is not overwritten.
fn own(data: &Bytes) -> Bytes {
    Bytes::copy_from_slice(data)
}

fn ttl_expired(n: &Node, now_ms: i64) -> bool {
    n.stat.mode.is_ttl()
        && n.children.is_empty()
        && now_ms.saturating_sub(n.stat.mtime) > n.stat.ttl_ms
}

fn check_version(path: &str, expected: i32, actual: i32) -> Result<(), BatonError> {
    if expected != -1 && expected != actual {
        return Err(BatonError::BadVersion {
            path: path.to_string(),
            expected,
            actual,
        });
    }
    Ok(())
}
