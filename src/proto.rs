//! Generated protobuf modules (public API `baton.v1`, internal `baton.raft.v1`) and the
//! descriptor set served by gRPC reflection.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// The public client API.
pub mod v1 {
    tonic::include_proto!("baton.v1");
}

/// Internal formats: log entries, stored state, peer RPCs.
pub mod raft {
    tonic::include_proto!("baton.raft.v1");
}

/// Encoded `FileDescriptorSet` of every Baton proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("baton_descriptor");

use crate::tree::{self, CreateMode, EventType};

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
pub fn create_mode(v: i32) -> Result<CreateMode, crate::error::BatonError> {
    CreateMode::from_i32(v)
        .ok_or_else(|| crate::error::BatonError::BadArguments(format!("unknown create mode {v}")))
}

/// The wire error of one Multi op.
pub fn op_error(e: &crate::error::BatonError) -> v1::OpError {
    v1::OpError {
        reason: e.reason().to_string(),
        message: e.to_string(),
    }
}
