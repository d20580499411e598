//! The client API (`baton.v1`) ↔ domain: ACL entries, stats, create modes, watch kinds and
//! events, op outcomes, the errors of Multi ops and watches, and lock contenders.

use super::v1;
use crate::error::BatonError;
use crate::tree::locks::{Contender, LockKind};
use crate::tree::{self, CreateMode, EventType, OpOutcome};

/// Wire ACL entries → ours (checked later by [`tree::acl::canonical`]).
pub fn acl_from_wire(list: Vec<v1::Acl>) -> Vec<tree::acl::Acl> {
    list.into_iter()
        .map(|a| tree::acl::Acl {
            perms: a.perms,
            id: tree::acl::Id {
                scheme: a.scheme,
                id: a.id,
            },
        })
        .collect()
}

/// Our ACL entries → wire.
pub fn acl_to_wire(list: &[tree::acl::Acl]) -> Vec<v1::Acl> {
    list.iter()
        .map(|a| v1::Acl {
            perms: a.perms,
            scheme: a.id.scheme.clone(),
            id: a.id.id.clone(),
        })
        .collect()
}

impl From<&tree::Stat> for v1::Stat {
    fn from(s: &tree::Stat) -> Self {
        v1::Stat {
            czxid: s.czxid,
            mzxid: s.mzxid,
            pzxid: s.pzxid,
            ctime: s.ctime,
            mtime: s.mtime,
            version: s.version,
            cversion: s.cversion,
            aversion: s.aversion,
            ephemeral_owner: s.ephemeral_owner,
            data_length: s.data_length,
            num_children: s.num_children,
            mode: s.mode.as_i32(),
            ttl_ms: s.ttl_ms,
        }
    }
}

impl From<EventType> for v1::EventType {
    fn from(k: EventType) -> Self {
        match k {
            EventType::Created => v1::EventType::Created,
            EventType::Deleted => v1::EventType::Deleted,
            EventType::DataChanged => v1::EventType::DataChanged,
            EventType::ChildrenChanged => v1::EventType::ChildrenChanged,
        }
    }
}

impl From<&tree::Event> for v1::WatchEvent {
    fn from(e: &tree::Event) -> Self {
        v1::WatchEvent {
            r#type: v1::EventType::from(e.kind) as i32,
            path: e.path.clone(),
            zxid: e.zxid,
        }
    }
}

impl From<v1::add_watch::Kind> for crate::watch::WatchKind {
    fn from(k: v1::add_watch::Kind) -> Self {
        use crate::watch::WatchKind;
        match k {
            v1::add_watch::Kind::Data => WatchKind::Data,
            v1::add_watch::Kind::Children => WatchKind::Children,
            v1::add_watch::Kind::Exists => WatchKind::Exists,
            v1::add_watch::Kind::Persistent => WatchKind::Persistent,
            v1::add_watch::Kind::PersistentRecursive => WatchKind::PersistentRecursive,
        }
    }
}

/// Decodes a wire create mode.
///
/// # Errors
/// `BAD_ARGUMENTS` for an unknown number.
pub fn create_mode(v: i32) -> Result<CreateMode, BatonError> {
    CreateMode::from_i32(v)
        .ok_or_else(|| BatonError::BadArguments(format!("unknown create mode {v}")))
}

/// The wire error of one Multi op.
pub fn op_error(e: &BatonError) -> v1::OpError {
    v1::OpError {
        reason: e.reason().to_string(),
        message: e.to_string(),
    }
}

/// The error of a refused watch request.
pub fn watch_error(request_id: u64, e: &BatonError) -> v1::WatchError {
    v1::WatchError {
        reason: e.reason().to_string(),
        message: e.to_string(),
        request_id,
    }
}

/// An op's outcome → its Multi result (`header` on the ops that carry one).
pub fn outcome_to_wire(o: &OpOutcome, header: Option<v1::ResponseHeader>) -> v1::OpResult {
    use v1::op_result::Result as R;
    let r = match o {
        OpOutcome::Create { path, stat } => R::Create(v1::CreateResponse {
            header,
            path: path.clone(),
            stat: Some(stat.into()),
        }),
        OpOutcome::Delete => R::Delete(v1::DeleteResponse { header }),
        OpOutcome::SetData { stat } => R::SetData(v1::SetDataResponse {
            header,
            stat: Some(stat.into()),
        }),
        OpOutcome::Check => R::Check(v1::CheckResult {}),
        // Not a Multi op; reported as a set for completeness.
        OpOutcome::SetAcl { stat } => R::SetData(v1::SetDataResponse {
            header,
            stat: Some(stat.into()),
        }),
    };
    v1::OpResult { result: Some(r) }
}

/// A contender on the wire.
pub fn contender_to_wire(c: &Contender) -> v1::Contender {
    let (mode, permits) = match c.kind {
        LockKind::Exclusive => (v1::LockMode::Exclusive, 0),
        LockKind::Shared => (v1::LockMode::Shared, 0),
        LockKind::Semaphore(n) => (v1::LockMode::Shared, n),
    };
    v1::Contender {
        lock_node: c.node.clone(),
        session_id: c.session,
        fencing_token: c.token,
        mode: mode as i32,
        permits,
        data: c.data.to_vec(),
    }
}
