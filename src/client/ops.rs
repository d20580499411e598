//! Per-call options and the builder for `Multi` operations.

use crate::proto::v1::{self as pb, Consistency, CreateMode};

/// How to create a node: mode, owning session (ephemeral modes) and TTL (TTL modes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// The creation mode (persistent by default).
    pub mode: CreateMode,
    /// Owning session for `EPHEMERAL` and `EPHEMERAL_SEQUENTIAL`; 0 otherwise.
    pub session_id: u64,
    /// Time to live in milliseconds for the TTL modes; 0 otherwise.
    pub ttl_ms: i64,
    /// The node's ACL; empty = open to all.
    pub acl: Vec<crate::tree::acl::Acl>,
}

impl CreateOptions {
    /// A plain persistent node.
    pub fn persistent() -> Self {
        Self::default()
    }

    /// Options with the given mode and nothing else.
    pub fn mode(mode: CreateMode) -> Self {
        CreateOptions {
            mode,
            ..Self::default()
        }
    }

    /// An ephemeral node owned by `session_id`.
    pub fn ephemeral(session_id: u64) -> Self {
        CreateOptions {
            mode: CreateMode::Ephemeral,
            session_id,
            ..Self::default()
        }
    }

    /// A container node (deleted once it has had a child and has none left).
    pub fn container() -> Self {
        Self::mode(CreateMode::Container)
    }

    /// A persistent node deleted once unmodified for `ttl_ms` and childless.
    pub fn ttl(ttl_ms: i64) -> Self {
        CreateOptions {
            mode: CreateMode::PersistentWithTtl,
            ttl_ms,
            ..Self::default()
        }
    }

    /// The same options with this ACL (see [`crate::tree::acl`]; empty = open to all).
    pub fn with_acl(mut self, acl: Vec<crate::tree::acl::Acl>) -> Self {
        self.acl = acl;
        self
    }

    /// The same options with a sequential suffix (`PERSISTENT` → `PERSISTENT_SEQUENTIAL`,
    /// `EPHEMERAL` → `EPHEMERAL_SEQUENTIAL`, `PERSISTENT_WITH_TTL` →
    /// `PERSISTENT_SEQUENTIAL_WITH_TTL`). Modes without a sequential form are kept.
    pub fn sequential(mut self) -> Self {
        self.mode = match self.mode {
            CreateMode::Persistent => CreateMode::PersistentSequential,
            CreateMode::Ephemeral => CreateMode::EphemeralSequential,
            CreateMode::PersistentWithTtl => CreateMode::PersistentSequentialWithTtl,
            other => other,
        };
        self
    }

    pub(crate) fn request(&self, path: &str, data: Vec<u8>) -> pb::CreateRequest {
        pb::CreateRequest {
            path: path.to_string(),
            data,
            mode: self.mode as i32,
            session_id: self.session_id,
            ttl_ms: self.ttl_ms,
            acl: crate::proto::acl_to_wire(&self.acl),
        }
    }
}

/// How to read: consistency and a minimum zxid the serving member must have applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Linearizable (default) or serializable.
    pub consistency: Consistency,
    /// If non-zero, the member waits until it has applied this zxid (read-your-writes).
    pub min_zxid: u64,
}

impl ReadOptions {
    /// A linearizable read (the default).
    pub fn linearizable() -> Self {
        Self::default()
    }

    /// A serializable read, served from the member's local state.
    pub fn serializable() -> Self {
        ReadOptions {
            consistency: Consistency::Serializable,
            min_zxid: 0,
        }
    }

    /// The same options, waiting for `zxid` to be applied first.
    pub fn at_least(mut self, zxid: u64) -> Self {
        self.min_zxid = zxid;
        self
    }
}

/// How to list children: one page (`start_after`, `limit`), stats or not, and consistency.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChildrenOptions {
    /// Only children whose names sort after this one; empty = from the first.
    pub start_after: String,
    /// Page size; 0 = the server's page limit.
    pub limit: u32,
    /// Also return each child's Stat.
    pub include_stats: bool,
    /// Linearizable (default) or serializable.
    pub consistency: Consistency,
    /// If non-zero, the member waits until it has applied this zxid.
    pub min_zxid: u64,
}

impl ChildrenOptions {
    /// Default options with child stats.
    pub fn with_stats() -> Self {
        ChildrenOptions {
            include_stats: true,
            ..Self::default()
        }
    }

    pub(crate) fn request(&self, path: &str) -> pb::GetChildrenRequest {
        pb::GetChildrenRequest {
            path: path.to_string(),
            start_after: self.start_after.clone(),
            limit: self.limit,
            include_stats: self.include_stats,
            consistency: self.consistency as i32,
            min_zxid: self.min_zxid,
        }
    }
}

/// One child of a full listing: its name (not the full path) and, if asked, its Stat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Child {
    /// The child's name.
    pub name: String,
    /// The child's Stat, when `include_stats` was set.
    pub stat: Option<pb::Stat>,
}

/// Builds the operations of a `Multi`, in order.
///
/// ```
/// use baton::client::{CreateOptions, MultiOps};
/// let ops = MultiOps::new()
///     .check("/config", 3)
///     .set_data("/config", b"v4".to_vec(), 3)
///     .create("/config/log-", b"".to_vec(), CreateOptions::persistent().sequential())
///     .delete("/config/old", -1);
/// assert_eq!(ops.len(), 4);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MultiOps {
    ops: Vec<pb::Op>,
}

impl MultiOps {
    /// No operations yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fails the Multi unless `path` exists with `version` (-1 = any).
    pub fn check(self, path: &str, version: i32) -> Self {
        self.push(pb::op::Op::Check(pb::CheckOp {
            path: path.to_string(),
            version,
        }))
    }

    /// Creates a node.
    pub fn create(self, path: &str, data: impl Into<Vec<u8>>, options: CreateOptions) -> Self {
        self.push(pb::op::Op::Create(options.request(path, data.into())))
    }

    /// Deletes a node if its version matches (-1 = any).
    pub fn delete(self, path: &str, version: i32) -> Self {
        self.push(pb::op::Op::Delete(pb::DeleteRequest {
            path: path.to_string(),
            version,
        }))
    }

    /// Sets a node's data if its version matches (-1 = any).
    pub fn set_data(self, path: &str, data: impl Into<Vec<u8>>, version: i32) -> Self {
        self.push(pb::op::Op::SetData(pb::SetDataRequest {
            path: path.to_string(),
            data: data.into(),
            version,
        }))
    }

    /// Appends an operation built elsewhere.
    pub fn op(mut self, op: pb::Op) -> Self {
        self.ops.push(op);
        self
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether there are no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The operations.
    pub fn into_ops(self) -> Vec<pb::Op> {
        self.ops
    }

    fn push(self, op: pb::op::Op) -> Self {
        self.op(pb::Op { op: Some(op) })
    }
}

impl IntoIterator for MultiOps {
    type Item = pb::Op;
    type IntoIter = std::vec::IntoIter<pb::Op>;

    fn into_iter(self) -> Self::IntoIter {
        self.ops.into_iter()
    }
}

impl From<MultiOps> for Vec<pb::Op> {
    fn from(ops: MultiOps) -> Self {
        ops.ops
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_modes() {
        assert_eq!(
            CreateOptions::persistent().sequential().mode,
            CreateMode::PersistentSequential
        );
        assert_eq!(
            CreateOptions::ephemeral(7).sequential(),
            CreateOptions {
                mode: CreateMode::EphemeralSequential,
                session_id: 7,
                ttl_ms: 0,
                acl: Vec::new(),
            }
        );
        assert_eq!(
            CreateOptions::ttl(5).sequential().mode,
            CreateMode::PersistentSequentialWithTtl
        );
        assert_eq!(
            CreateOptions::container().sequential().mode,
            CreateMode::Container
        );
    }

    #[test]
    fn multi_builder_keeps_order() {
        let ops = MultiOps::new()
            .check("/a", 1)
            .create("/a/b", "x", CreateOptions::ephemeral(9))
            .set_data("/a", vec![1u8], 1)
            .delete("/c", -1)
            .into_ops();
        assert!(
            matches!(&ops[0].op, Some(pb::op::Op::Check(c)) if c.path == "/a" && c.version == 1)
        );
        assert!(matches!(&ops[1].op, Some(pb::op::Op::Create(c))
            if c.path == "/a/b" && c.data == b"x" && c.session_id == 9 && c.mode == CreateMode::Ephemeral as i32));
        assert!(matches!(&ops[2].op, Some(pb::op::Op::SetData(s)) if s.data == [1u8]));
        assert!(matches!(&ops[3].op, Some(pb::op::Op::Delete(d)) if d.version == -1));
    }

    #[test]
    fn read_options() {
        let r = ReadOptions::serializable().at_least(12);
        assert_eq!(r.consistency, Consistency::Serializable);
        assert_eq!(r.min_zxid, 12);
        assert_eq!(
            ReadOptions::default().consistency,
            Consistency::Linearizable
        );
    }
}
