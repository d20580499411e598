//! Stored records and log entries ↔ their `baton.raft.v1` messages: openraft's log entries,
//! log ids, votes and memberships; the commands, requests and ops a log entry carries; request
//! results and errors (remembered per client, and answered to a forwarding follower); and the
//! state machine's records (nodes, sessions, clients, the applied meta) as sled, snapshots and
//! backups keep them.
//!
//! Our own protobuf, not openraft's serde layout, so the disk format survives openraft
//! upgrades; the peer RPCs ([`super::peer`]) carry the same messages, so the wire and disk
//! forms of an entry are the same bytes. Decoding never panics: malformed bytes, a missing
//! required field or an unknown enum number is a [`CodecError`].

use std::collections::{BTreeMap, BTreeSet};

use openraft::{CommittedLeaderId, EntryPayload, LeaderId};
use prost::Message;

use super::{decode, need, CodecError};
use crate::error::{BatonError, Reason};
use crate::proto::raft as pb;
use crate::tree::acl::{Acl, Caller, Id};
use crate::tree::{
    ClientRecord, Command, CreateMode, Event, EventType, MultiFailure, Node, NodeAcl, Op,
    OpOutcome, Request, RequestId, RequestResult, Session, Stat,
};
use crate::types::{
    AppliedMeta, Entry, LogCommand, LogId, MemberNode, Membership, StoredMembership, Vote,
};

type Res<T> = Result<T, CodecError>;

// ---- openraft types ----

/// LogId → proto.
pub fn log_id_to_pb(id: &LogId) -> pb::LogId {
    pb::LogId {
        leader_id: Some(pb::LeaderId {
            term: id.leader_id.term,
            node_id: id.leader_id.node_id,
        }),
        index: id.index,
    }
}

/// proto → LogId.
pub fn log_id_from_pb(id: pb::LogId) -> Result<LogId, CodecError> {
    let l = id
        .leader_id
        .ok_or_else(|| CodecError::missing_field("LogId", "leader_id"))?;
    Ok(LogId::new(
        CommittedLeaderId::new(l.term, l.node_id),
        id.index,
    ))
}

/// Encodes a LogId.
pub fn encode_log_id(id: &LogId) -> Vec<u8> {
    log_id_to_pb(id).encode_to_vec()
}

/// Decodes a LogId.
pub fn decode_log_id(bytes: &[u8]) -> Result<LogId, CodecError> {
    log_id_from_pb(decode("LogId", bytes)?)
}

/// Vote → proto.
pub fn vote_to_pb(v: &Vote) -> pb::Vote {
    pb::Vote {
        leader_id: Some(pb::LeaderId {
            term: v.leader_id.term,
            node_id: v.leader_id.node_id,
        }),
        committed: v.committed,
    }
}

/// proto → Vote.
pub fn vote_from_pb(v: pb::Vote) -> Result<Vote, CodecError> {
    let l = v
        .leader_id
        .ok_or_else(|| CodecError::missing_field("Vote", "leader_id"))?;
    Ok(Vote {
        leader_id: LeaderId::new(l.term, l.node_id),
        committed: v.committed,
    })
}

/// Encodes a Vote.
pub fn encode_vote(v: &Vote) -> Vec<u8> {
    vote_to_pb(v).encode_to_vec()
}

/// Decodes a Vote.
pub fn decode_vote(bytes: &[u8]) -> Result<Vote, CodecError> {
    vote_from_pb(decode("Vote", bytes)?)
}

/// Membership → proto (voter sets, then every node with its addresses).
pub fn membership_to_pb(m: &Membership) -> pb::Membership {
    pb::Membership {
        configs: m
            .get_joint_config()
            .iter()
            .map(|c| pb::VoterSet {
                ids: c.iter().copied().collect(),
            })
            .collect(),
        nodes: m
            .nodes()
            .map(|(id, n)| pb::MemberNode {
                id: *id,
                peer_addr: n.peer_addr.clone(),
                client_addr: n.client_addr.clone(),
            })
            .collect(),
    }
}

/// proto → Membership.
pub fn membership_from_pb(m: pb::Membership) -> Result<Membership, CodecError> {
    let configs: Vec<BTreeSet<u64>> = m
        .configs
        .into_iter()
        .map(|c| c.ids.into_iter().collect())
        .collect();
    let mut nodes = BTreeMap::new();
    for n in m.nodes {
        let node = MemberNode {
            peer_addr: n.peer_addr,
            client_addr: n.client_addr,
        };
        if nodes.insert(n.id, node).is_some() {
            return Err(CodecError::new(
                "Membership",
                format!("node {} listed twice", n.id),
            ));
        }
    }
    Ok(Membership::new(configs, nodes))
}

/// StoredMembership → proto.
pub fn stored_membership_to_pb(m: &StoredMembership) -> pb::StoredMembership {
    pb::StoredMembership {
        log_id: m.log_id().as_ref().map(log_id_to_pb),
        membership: Some(membership_to_pb(m.membership())),
    }
}

/// proto → StoredMembership (an absent membership is the empty one).
pub fn stored_membership_from_pb(m: pb::StoredMembership) -> Result<StoredMembership, CodecError> {
    let log_id = m.log_id.map(log_id_from_pb).transpose()?;
    let membership = match m.membership {
        Some(m) => membership_from_pb(m)?,
        None => Membership::default(),
    };
    Ok(StoredMembership::new(log_id, membership))
}

impl LogCommand {
    /// Encodes `command`.
    pub fn new(command: Command) -> Self {
        let bytes = command_to_pb(&command).encode_to_vec().into();
        LogCommand::from_parts(command, bytes)
    }

    /// Decodes an encoded command.
    ///
    /// # Errors
    /// Bytes that are not a valid command.
    pub fn decode(bytes: bytes::Bytes) -> Result<Self, CodecError> {
        let command = command_from_pb(decode("Command", &bytes)?)?;
        Ok(LogCommand::from_parts(command, bytes))
    }
}

impl From<Command> for LogCommand {
    fn from(c: Command) -> Self {
        LogCommand::new(c)
    }
}

/// Log entry → its log and wire form (no copy of the command).
pub fn entry_to_raw(e: &Entry) -> pb::EntryRaw {
    let payload = match &e.payload {
        EntryPayload::Blank => pb::entry_raw::Payload::Blank(pb::Blank {}),
        EntryPayload::Normal(cmd) => pb::entry_raw::Payload::Command(cmd.bytes().clone()),
        EntryPayload::Membership(m) => pb::entry_raw::Payload::Membership(membership_to_pb(m)),
    };
    pb::EntryRaw {
        log_id: Some(log_id_to_pb(&e.log_id)),
        payload: Some(payload),
    }
}

/// Log and wire form → log entry (the command decoded once).
pub fn entry_from_raw(e: pb::EntryRaw) -> Result<Entry, CodecError> {
    let log_id = log_id_from_pb(
        e.log_id
            .ok_or_else(|| CodecError::missing_field("Entry", "log_id"))?,
    )?;
    let payload = match e
        .payload
        .ok_or_else(|| CodecError::missing_field("Entry", "payload"))?
    {
        pb::entry_raw::Payload::Blank(_) => EntryPayload::Blank,
        pb::entry_raw::Payload::Command(c) => EntryPayload::Normal(LogCommand::decode(c)?),
        pb::entry_raw::Payload::Membership(m) => EntryPayload::Membership(membership_from_pb(m)?),
    };
    Ok(Entry { log_id, payload })
}

/// Decodes a log entry from its log form, without copying the command's bytes out of `bytes`.
pub fn decode_entry_raw(bytes: bytes::Bytes) -> Result<Entry, CodecError> {
    let raw = pb::EntryRaw::decode(bytes).map_err(|e| CodecError::new("Entry", e.to_string()))?;
    entry_from_raw(raw)
}

/// Log entry → proto.
pub fn entry_to_pb(e: &Entry) -> pb::Entry {
    let payload = match &e.payload {
        EntryPayload::Blank => pb::entry::Payload::Blank(pb::Blank {}),
        EntryPayload::Normal(cmd) => pb::entry::Payload::Command(command_to_pb(cmd.command())),
        EntryPayload::Membership(m) => pb::entry::Payload::Membership(membership_to_pb(m)),
    };
    pb::Entry {
        log_id: Some(log_id_to_pb(&e.log_id)),
        payload: Some(payload),
    }
}

/// proto → log entry.
pub fn entry_from_pb(e: pb::Entry) -> Result<Entry, CodecError> {
    let log_id = log_id_from_pb(
        e.log_id
            .ok_or_else(|| CodecError::missing_field("Entry", "log_id"))?,
    )?;
    let payload = match e
        .payload
        .ok_or_else(|| CodecError::missing_field("Entry", "payload"))?
    {
        pb::entry::Payload::Blank(_) => EntryPayload::Blank,
        pb::entry::Payload::Command(c) => EntryPayload::Normal(command_from_pb(c)?.into()),
        pb::entry::Payload::Membership(m) => EntryPayload::Membership(membership_from_pb(m)?),
    };
    Ok(Entry { log_id, payload })
}

/// Encodes a log entry.
pub fn encode_entry(e: &Entry) -> Vec<u8> {
    entry_to_pb(e).encode_to_vec()
}

/// Decodes a log entry.
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, CodecError> {
    entry_from_pb(decode("Entry", bytes)?)
}

// ---- commands ----

/// Command → proto.
pub fn command_to_pb(c: &Command) -> pb::Command {
    pb::Command {
        time_ms: c.time_ms,
        requests: c.requests.iter().map(request_to_pb).collect(),
    }
}

/// proto → Command.
pub fn command_from_pb(c: pb::Command) -> Result<Command, CodecError> {
    Ok(Command {
        time_ms: c.time_ms,
        requests: c
            .requests
            .into_iter()
            .map(request_from_pb)
            .collect::<Result<_, _>>()?,
    })
}

/// Request → proto (used on the wire too, for forwarded requests).
pub fn request_to_pb(r: &Request) -> pb::Request {
    use pb::request::Request as R;
    if let Request::Tagged { id, request } = r {
        let mut inner = request_to_pb(request);
        inner.id = Some(pb::RequestId {
            client_id: id.client_id,
            seq: id.seq,
            first_incomplete: id.first_incomplete,
        });
        return inner;
    }
    let r = match r {
        // Handled above; a nested id cannot be represented and is never built.
        Request::Tagged { .. } => R::Noop(pb::Noop {}),
        Request::ExpireClients {
            client_ids,
            before_ms,
        } => R::ExpireClients(pb::ExpireClients {
            client_ids: client_ids.clone(),
            before_ms: *before_ms,
        }),
        Request::Multi {
            ops,
            single,
            caller,
        } => R::Multi(pb::Multi {
            ops: ops.iter().map(op_to_pb).collect(),
            single: *single,
            caller: caller.as_ref().map(|c| pb::Caller {
                ids: c.ids.iter().map(acl_id_to_pb).collect(),
                superuser: c.superuser,
            }),
        }),
        Request::OpenSession {
            session_id,
            secret,
            timeout_ms,
        } => R::OpenSession(pb::OpenSession {
            session_id: *session_id,
            secret: secret.clone(),
            timeout_ms: *timeout_ms,
        }),
        Request::CloseSession { session_id, secret } => R::CloseSession(pb::CloseSession {
            session_id: *session_id,
            secret: secret.clone(),
        }),
        Request::ExpireSessions(ids) => R::ExpireSessions(pb::ExpireSessions {
            session_ids: ids.clone(),
        }),
        Request::ExpireTtl(paths) => R::ExpireTtl(pb::ExpireTtl {
            paths: paths.clone(),
        }),
        Request::Noop => R::Noop(pb::Noop {}),
    };
    pb::Request {
        request: Some(r),
        id: None,
    }
}

/// proto → Request.
pub fn request_from_pb(r: pb::Request) -> Result<Request, CodecError> {
    use pb::request::Request as R;
    let id = r.id;
    let request = match r
        .request
        .ok_or_else(|| CodecError::missing_field("Request", "request"))?
    {
        R::Multi(m) => Request::Multi {
            ops: m
                .ops
                .into_iter()
                .map(op_from_pb)
                .collect::<Result<_, _>>()?,
            single: m.single,
            caller: m.caller.map(|c| Caller {
                ids: c.ids.into_iter().map(acl_id_from_pb).collect(),
                superuser: c.superuser,
            }),
        },
        R::OpenSession(o) => Request::OpenSession {
            session_id: o.session_id,
            secret: o.secret,
            timeout_ms: o.timeout_ms,
        },
        R::CloseSession(c) => Request::CloseSession {
            session_id: c.session_id,
            secret: c.secret,
        },
        R::ExpireSessions(e) => Request::ExpireSessions(e.session_ids),
        R::ExpireTtl(e) => Request::ExpireTtl(e.paths),
        R::Noop(_) => Request::Noop,
        R::ExpireClients(e) => Request::ExpireClients {
            client_ids: e.client_ids,
            before_ms: e.before_ms,
        },
    };
    Ok(match id {
        None => request,
        Some(id) => Request::Tagged {
            id: RequestId {
                client_id: id.client_id,
                seq: id.seq,
                first_incomplete: id.first_incomplete,
            },
            request: Box::new(request),
        },
    })
}

fn op_to_pb(op: &Op) -> pb::Op {
    use pb::op::Op as P;
    let op = match op {
        Op::Create {
            path,
            data,
            mode,
            session_id,
            ttl_ms,
            acl,
        } => P::Create(pb::Create {
            path: path.clone(),
            data: data.clone(),
            mode: mode.as_i32(),
            session_id: *session_id,
            ttl_ms: *ttl_ms,
            acl: acl_to_pb(acl),
        }),
        Op::SetAcl { path, acl, version } => P::SetAcl(pb::SetAcl {
            path: path.clone(),
            acl: acl_to_pb(acl),
            version: *version,
        }),
        Op::Delete { path, version } => P::Delete(pb::Delete {
            path: path.clone(),
            version: *version,
        }),
        Op::SetData {
            path,
            data,
            version,
        } => P::SetData(pb::SetData {
            path: path.clone(),
            data: data.clone(),
            version: *version,
        }),
        Op::Check { path, version } => P::Check(pb::Check {
            path: path.clone(),
            version: *version,
        }),
        Op::CheckFence { lock_node, token } => P::CheckFence(pb::CheckFence {
            lock_node: lock_node.clone(),
            token: *token,
        }),
    };
    pb::Op { op: Some(op) }
}

fn op_from_pb(op: pb::Op) -> Result<Op, CodecError> {
    use pb::op::Op as P;
    Ok(
        match op.op.ok_or_else(|| CodecError::missing_field("Op", "op"))? {
            P::Create(c) => Op::Create {
                mode: create_mode("Create", c.mode)?,
                path: c.path,
                data: c.data,
                session_id: c.session_id,
                ttl_ms: c.ttl_ms,
                acl: acl_from_pb(c.acl)?,
            },
            P::SetAcl(a) => Op::SetAcl {
                path: a.path,
                acl: acl_from_pb(a.acl)?,
                version: a.version,
            },
            P::Delete(d) => Op::Delete {
                path: d.path,
                version: d.version,
            },
            P::SetData(s) => Op::SetData {
                path: s.path,
                data: s.data,
                version: s.version,
            },
            P::Check(c) => Op::Check {
                path: c.path,
                version: c.version,
            },
            P::CheckFence(c) => Op::CheckFence {
                lock_node: c.lock_node,
                token: c.token,
            },
        },
    )
}

fn acl_id_to_pb(id: &Id) -> pb::AclId {
    pb::AclId {
        scheme: id.scheme.clone(),
        id: id.id.clone(),
    }
}

fn acl_id_from_pb(id: pb::AclId) -> Id {
    Id {
        scheme: id.scheme,
        id: id.id,
    }
}

/// An ACL → its stored form.
pub fn acl_to_pb(acl: &[Acl]) -> Vec<pb::AclEntry> {
    acl.iter()
        .map(|a| pb::AclEntry {
            perms: a.perms,
            id: Some(acl_id_to_pb(&a.id)),
        })
        .collect()
}

/// Stored form → ACL.
///
/// # Errors
/// An entry without an id.
pub fn acl_from_pb(acl: Vec<pb::AclEntry>) -> Result<Vec<Acl>, CodecError> {
    acl.into_iter()
        .map(|a| {
            Ok(Acl {
                perms: a.perms,
                id: acl_id_from_pb(
                    a.id.ok_or_else(|| CodecError::missing_field("AclEntry", "id"))?,
                ),
            })
        })
        .collect()
}

fn create_mode(what: &'static str, v: i32) -> Result<CreateMode, CodecError> {
    CreateMode::from_i32(v).ok_or_else(|| CodecError::new(what, format!("unknown create mode {v}")))
}

// ---- results ----

/// A domain error to the wire.
pub fn error_to_pb(e: &BatonError) -> pb::ErrorDetail {
    let mut d = pb::ErrorDetail {
        reason: e.reason().to_string(),
        message: e.to_string(),
        ..Default::default()
    };
    match e {
        BatonError::NoNode(p)
        | BatonError::NodeExists(p)
        | BatonError::NotEmpty(p)
        | BatonError::NoChildrenForEphemerals(p)
        | BatonError::LockHeld(p) => d.path = p.clone(),
        BatonError::NoAuth { path, need } => {
            d.path = path.clone();
            d.what = (*need).to_string();
        }
        BatonError::BadFence { lock_node, token } => {
            d.path = lock_node.clone();
            d.size = *token;
        }
        BatonError::NotOwner {
            path,
            owner,
            session,
        } => {
            d.path = path.clone();
            d.size = *owner;
            d.session_id = *session;
        }
        BatonError::InvalidPath { path, why } => {
            d.path = path.clone();
            d.message = why.clone();
        }
        BatonError::BadVersion {
            path,
            expected,
            actual,
        } => {
            d.path = path.clone();
            d.expected = *expected;
            d.actual = *actual;
        }
        BatonError::SessionExpired(id) | BatonError::AuthFailed(id) => d.session_id = *id,
        BatonError::TooLarge { what, size, limit } => {
            d.what = (*what).to_string();
            d.size = *size;
            d.limit = *limit;
        }
        BatonError::TooMany { what, limit } => {
            d.what = (*what).to_string();
            d.limit = *limit;
        }
        BatonError::BadArguments(m)
        | BatonError::Overloaded(m)
        | BatonError::Unavailable(m)
        | BatonError::NoSpace(m)
        | BatonError::OutcomeUnknown(m)
        | BatonError::DeadlineExceeded(m)
        | BatonError::InvalidAcl(m)
        | BatonError::Unauthenticated(m)
        | BatonError::BadCredentials(m)
        | BatonError::Internal(m) => d.message = m.clone(),
        BatonError::RuntimeInconsistency => {}
        BatonError::StaleRequest {
            client_id,
            seq,
            oldest,
        } => {
            d.session_id = *client_id;
            d.size = *seq;
            d.limit = *oldest;
        }
        // Never forwarded; kept readable should one be.
        e @ (BatonError::BackupInProgress | BatonError::ClusterMismatch { .. }) => {
            d.message = e.to_string();
        }
    }
    d
}

/// A domain error from the wire.
pub fn error_from_pb(d: pb::ErrorDetail) -> BatonError {
    let Some(reason) = Reason::parse(&d.reason) else {
        return BatonError::Internal(d.message);
    };
    match reason {
        Reason::NoNode => BatonError::NoNode(d.path),
        Reason::NodeExists => BatonError::NodeExists(d.path),
        Reason::NotEmpty => BatonError::NotEmpty(d.path),
        Reason::NoChildrenForEphemerals => BatonError::NoChildrenForEphemerals(d.path),
        Reason::NoAuth => BatonError::NoAuth {
            path: d.path,
            need: match d.what.as_str() {
                "READ" => "READ",
                "WRITE" => "WRITE",
                "CREATE" => "CREATE",
                "DELETE" => "DELETE",
                "ADMIN" => "ADMIN",
                _ => "SYSTEM",
            },
        },
        Reason::InvalidAcl => BatonError::InvalidAcl(d.message),
        Reason::Unauthenticated => BatonError::Unauthenticated(d.message),
        Reason::BadCredentials => BatonError::BadCredentials(d.message),
        Reason::LockHeld => BatonError::LockHeld(d.path),
        Reason::BadFence => BatonError::BadFence {
            lock_node: d.path,
            token: d.size,
        },
        Reason::NotOwner => BatonError::NotOwner {
            path: d.path,
            owner: d.size,
            session: d.session_id,
        },
        Reason::InvalidPath => BatonError::InvalidPath {
            path: d.path,
            why: d.message,
        },
        Reason::BadVersion => BatonError::BadVersion {
            path: d.path,
            expected: d.expected,
            actual: d.actual,
        },
        Reason::SessionExpired => BatonError::SessionExpired(d.session_id),
        Reason::AuthFailed => BatonError::AuthFailed(d.session_id),
        Reason::TooLarge => BatonError::TooLarge {
            what: match d.what.as_str() {
                "data" => "data",
                "multi op count" => "multi op count",
                "multi payload" => "multi payload",
                _ => "request",
            },
            size: d.size,
            limit: d.limit,
        },
        Reason::TooMany => BatonError::TooMany {
            what: match d.what.as_str() {
                "watches per stream" => "watches per stream",
                "watches on this member" => "watches on this member",
                _ => "requests",
            },
            limit: d.limit,
        },
        Reason::Overloaded => BatonError::Overloaded(d.message),
        Reason::BadArguments => BatonError::BadArguments(d.message),
        Reason::RuntimeInconsistency => BatonError::RuntimeInconsistency,
        Reason::StaleRequest => BatonError::StaleRequest {
            client_id: d.session_id,
            seq: d.size,
            oldest: d.limit,
        },
        Reason::Unavailable => BatonError::Unavailable(d.message),
        Reason::NoSpace => BatonError::NoSpace(d.message),
        Reason::OutcomeUnknown => BatonError::OutcomeUnknown(d.message),
        Reason::DeadlineExceeded => BatonError::DeadlineExceeded(d.message),
        // Never forwarded; read back as what they say.
        Reason::Internal
        | Reason::BackupInProgress
        | Reason::ClusterMismatch
        | Reason::Compacted => BatonError::Internal(d.message),
    }
}

fn stat_to_pb(s: &Stat) -> pb::NodeStat {
    pb::NodeStat {
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

fn stat_from_pb(s: pb::NodeStat) -> Res<Stat> {
    Ok(Stat {
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
        mode: create_mode("NodeStat", s.mode)?,
        ttl_ms: s.ttl_ms,
    })
}

fn outcome_to_pb(o: &OpOutcome) -> pb::OpOutcome {
    use pb::op_outcome::Outcome;
    pb::OpOutcome {
        outcome: Some(match o {
            OpOutcome::Create { path, stat } => Outcome::Create(pb::Created {
                path: path.clone(),
                stat: Some(stat_to_pb(stat)),
            }),
            OpOutcome::Delete => Outcome::Delete(pb::Blank {}),
            OpOutcome::SetData { stat } => Outcome::SetData(stat_to_pb(stat)),
            OpOutcome::Check => Outcome::Check(pb::Blank {}),
            OpOutcome::SetAcl { stat } => Outcome::SetAcl(stat_to_pb(stat)),
        }),
    }
}

fn outcome_from_pb(o: pb::OpOutcome) -> Res<OpOutcome> {
    use pb::op_outcome::Outcome;
    Ok(match need("OpOutcome.outcome", o.outcome)? {
        Outcome::Create(c) => OpOutcome::Create {
            path: c.path,
            stat: stat_from_pb(need("Created.stat", c.stat)?)?,
        },
        Outcome::Delete(_) => OpOutcome::Delete,
        Outcome::SetData(s) => OpOutcome::SetData {
            stat: stat_from_pb(s)?,
        },
        Outcome::Check(_) => OpOutcome::Check,
        Outcome::SetAcl(s) => OpOutcome::SetAcl {
            stat: stat_from_pb(s)?,
        },
    })
}

/// A request's result (and the zxid of its entry) to the wire.
pub fn result_to_pb(r: &RequestResult, zxid: u64) -> pb::RequestResult {
    use pb::request_result::Result as R;
    let result = match r {
        RequestResult::Multi(Ok(outs)) => R::MultiOk(pb::OpOutcomes {
            outcomes: outs.iter().map(outcome_to_pb).collect(),
        }),
        RequestResult::Multi(Err(f)) => R::MultiFailed(pb::MultiFailure {
            index: f.index as u32,
            error: Some(error_to_pb(&f.error)),
            before: f.before.iter().map(outcome_to_pb).collect(),
        }),
        RequestResult::Done(Ok(())) => R::Done(pb::Blank {}),
        RequestResult::Done(Err(e)) => R::DoneError(error_to_pb(e)),
        RequestResult::Duplicate { zxid, result } => return result_to_pb(result, *zxid),
        RequestResult::Stale(e) => R::Failed(error_to_pb(e)),
    };
    pb::RequestResult {
        result: Some(result),
        zxid,
    }
}

/// A request's result and zxid from the wire.
pub fn result_from_pb(r: pb::RequestResult) -> Res<(RequestResult, u64)> {
    use pb::request_result::Result as R;
    let result = match need("RequestResult.result", r.result)? {
        R::Failed(_) => {
            return Err(CodecError::new(
                "RequestResult",
                "a failed forward carries no result",
            ))
        }
        R::MultiOk(o) => RequestResult::Multi(Ok(o
            .outcomes
            .into_iter()
            .map(outcome_from_pb)
            .collect::<Res<Vec<_>>>()?)),
        R::MultiFailed(f) => RequestResult::Multi(Err(MultiFailure {
            index: f.index as usize,
            error: error_from_pb(need("MultiFailure.error", f.error)?),
            before: f
                .before
                .into_iter()
                .map(outcome_from_pb)
                .collect::<Res<Vec<_>>>()?,
        })),
        R::Done(_) => RequestResult::Done(Ok(())),
        R::DoneError(e) => RequestResult::Done(Err(error_from_pb(e))),
    };
    Ok((result, r.zxid))
}

// ---- state-machine records ----

/// A znode → its stored form. The path is the record's key; the children and the derived
/// stat fields (`data_length`, `num_children`) are not stored.
pub fn node_to_pb(n: &Node) -> pb::StoredNode {
    let s = &n.stat;
    pb::StoredNode {
        data: n.data.clone(),
        czxid: s.czxid,
        mzxid: s.mzxid,
        pzxid: s.pzxid,
        ctime: s.ctime,
        mtime: s.mtime,
        version: s.version,
        cversion: s.cversion,
        aversion: s.aversion,
        ephemeral_owner: s.ephemeral_owner,
        mode: s.mode.as_i32(),
        ttl_ms: s.ttl_ms,
        seq: n.seq,
        acl: acl_to_pb(n.acl.as_slice()),
    }
}

/// Stored form → znode, without children: `num_children` is 0 until the caller counts them
/// (see `consensus::state_machine`); `data_length` is the data's length.
pub fn node_from_pb(n: pb::StoredNode) -> Result<Node, CodecError> {
    let data_length = i32::try_from(n.data.len())
        .map_err(|_| CodecError::new("StoredNode", "data longer than 2 GiB"))?;
    Ok(Node {
        stat: Stat {
            czxid: n.czxid,
            mzxid: n.mzxid,
            pzxid: n.pzxid,
            ctime: n.ctime,
            mtime: n.mtime,
            version: n.version,
            cversion: n.cversion,
            aversion: n.aversion,
            ephemeral_owner: n.ephemeral_owner,
            data_length,
            num_children: 0,
            mode: create_mode("StoredNode", n.mode)?,
            ttl_ms: n.ttl_ms,
        },
        data: n.data,
        seq: n.seq,
        children: Default::default(),
        acl: NodeAcl::new(acl_from_pb(n.acl)?),
    })
}

/// A change event → its stored form (watch history).
pub fn event_to_pb(e: &Event) -> pb::StoredEvent {
    pb::StoredEvent {
        zxid: e.zxid,
        kind: match e.kind {
            EventType::Created => 1,
            EventType::Deleted => 2,
            EventType::DataChanged => 3,
            EventType::ChildrenChanged => 4,
        },
        path: e.path.clone(),
        acl: acl_to_pb(e.acl.as_slice()),
    }
}

/// Stored form → change event.
pub fn event_from_pb(e: pb::StoredEvent) -> Result<Event, CodecError> {
    let kind = match e.kind {
        1 => EventType::Created,
        2 => EventType::Deleted,
        3 => EventType::DataChanged,
        4 => EventType::ChildrenChanged,
        k => return Err(CodecError::new("StoredEvent", format!("unknown kind {k}"))),
    };
    Ok(Event {
        zxid: e.zxid,
        kind,
        path: e.path,
        acl: NodeAcl::new(acl_from_pb(e.acl)?),
    })
}

/// Session → its stored form.
pub fn session_to_pb(s: &Session) -> pb::StoredSession {
    pb::StoredSession {
        session_id: s.id,
        secret: s.secret.clone(),
        timeout_ms: s.timeout_ms,
        created_zxid: s.created_zxid,
        created_ms: s.created_ms,
    }
}

/// Stored form → session.
pub fn session_from_pb(s: pb::StoredSession) -> Result<Session, CodecError> {
    if s.session_id == 0 {
        return Err(CodecError::new("StoredSession", "session id 0"));
    }
    Ok(Session {
        id: s.session_id,
        secret: s.secret,
        timeout_ms: s.timeout_ms,
        created_zxid: s.created_zxid,
        created_ms: s.created_ms,
    })
}

/// A client's request-id record → its stored form.
pub fn client_to_pb(client_id: u64, c: &ClientRecord) -> pb::StoredClient {
    pb::StoredClient {
        client_id,
        oldest: c.oldest,
        last_ms: c.last_ms,
        results: c
            .results
            .iter()
            .map(|(seq, (zxid, r))| pb::RememberedResult {
                seq: *seq,
                result: Some(result_to_pb(r, *zxid)),
            })
            .collect(),
    }
}

/// Stored form → a client's id and record.
pub fn client_from_pb(c: pb::StoredClient) -> Result<(u64, ClientRecord), CodecError> {
    let mut results = imbl::OrdMap::new();
    for r in c.results {
        let stored = r
            .result
            .ok_or_else(|| CodecError::new("RememberedResult", "missing result"))?;
        let (result, zxid) = result_from_pb(stored)?;
        results.insert(r.seq, (zxid, result));
    }
    Ok((
        c.client_id,
        ClientRecord {
            oldest: c.oldest,
            last_ms: c.last_ms,
            results,
        },
    ))
}

/// The applied meta, the last time and the last zxid → a `StateMeta`: with the membership in
/// a snapshot header, without it in the state machine's sled tree (where the membership has
/// its own record).
pub fn meta_to_pb(
    meta: &AppliedMeta,
    last_time_ms: i64,
    last_zxid: u64,
    with_membership: bool,
) -> pb::StateMeta {
    pb::StateMeta {
        last_applied: meta.last_applied.as_ref().map(log_id_to_pb),
        membership: with_membership.then(|| stored_membership_to_pb(&meta.membership)),
        last_time_ms,
        last_zxid,
    }
}

/// A `StateMeta` → applied meta (an absent membership is the empty one), last time, last zxid.
pub fn meta_from_pb(m: pb::StateMeta) -> Res<(AppliedMeta, i64, u64)> {
    let meta = AppliedMeta {
        last_applied: m.last_applied.map(log_id_from_pb).transpose()?,
        membership: match m.membership {
            Some(sm) => stored_membership_from_pb(sm)?,
            None => StoredMembership::default(),
        },
    };
    Ok((meta, m.last_time_ms, m.last_zxid))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn lid(term: u64, node: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, node), index)
    }

    fn every_request() -> Command {
        Command {
            time_ms: 1_700_000_000_123,
            requests: vec![
                Request::Multi {
                    ops: vec![
                        Op::Create {
                            path: "/a".into(),
                            data: Bytes::from_static(b"x"),
                            mode: CreateMode::PersistentSequentialWithTtl,
                            session_id: 0,
                            ttl_ms: 5000,
                            acl: Vec::new(),
                        },
                        Op::Create {
                            path: "/e".into(),
                            data: Bytes::new(),
                            mode: CreateMode::EphemeralSequential,
                            session_id: 42,
                            ttl_ms: 0,
                            acl: vec![Acl {
                                perms: crate::tree::acl::READ | crate::tree::acl::ADMIN,
                                id: Id::new("digest", "u:AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
                            }],
                        },
                        Op::SetData {
                            path: "/a".into(),
                            data: Bytes::from_static(b"\x00\xff"),
                            version: 3,
                        },
                        Op::SetAcl {
                            path: "/e".into(),
                            acl: vec![Acl {
                                perms: crate::tree::acl::ALL,
                                id: Id::new("x509", "CN=app"),
                            }],
                            version: 2,
                        },
                        Op::Check {
                            path: "/a".into(),
                            version: -1,
                        },
                        Op::Delete {
                            path: "/a".into(),
                            version: 7,
                        },
                    ],
                    single: false,
                    caller: Some(Caller {
                        ids: vec![Id::new("digest", "u:AAAAAAAAAAAAAAAAAAAAAAAAAAA=")],
                        superuser: true,
                    }),
                },
                Request::Multi {
                    ops: vec![Op::Delete {
                        path: "/z".into(),
                        version: -1,
                    }],
                    single: true,
                    caller: None,
                },
                Request::OpenSession {
                    session_id: 42,
                    secret: Bytes::from_static(b"s3cret"),
                    timeout_ms: 10_000,
                },
                Request::CloseSession {
                    session_id: 42,
                    secret: Bytes::from_static(b"s3cret"),
                },
                Request::ExpireSessions(vec![1, 2, u64::MAX]),
                Request::ExpireTtl(vec!["/t1".into(), "/t2".into()]),
                Request::Noop,
                Request::Tagged {
                    id: RequestId {
                        client_id: u64::MAX,
                        seq: 12,
                        first_incomplete: 9,
                    },
                    request: Box::new(Request::Multi {
                        ops: vec![Op::Delete {
                            path: "/d".into(),
                            version: -1,
                        }],
                        single: true,
                        caller: None,
                    }),
                },
                Request::ExpireClients {
                    client_ids: vec![1, u64::MAX],
                    before_ms: -5,
                },
            ],
        }
    }

    #[test]
    fn entries_round_trip() {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            1,
            MemberNode {
                peer_addr: "10.0.0.1:7421".into(),
                client_addr: "10.0.0.1:7420".into(),
            },
        );
        nodes.insert(4, MemberNode::default()); // a learner
        let joint = Membership::new(
            vec![BTreeSet::from([1, 2, 3]), BTreeSet::from([1, 2])],
            nodes,
        );
        let entries = [
            Entry {
                log_id: lid(3, 1, 17),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: lid(u64::MAX, 9, u64::MAX),
                payload: EntryPayload::Normal(every_request().into()),
            },
            Entry {
                log_id: lid(0, 0, 0),
                payload: EntryPayload::Normal(Command::default().into()),
            },
            Entry {
                log_id: lid(4, 2, 18),
                payload: EntryPayload::Membership(joint),
            },
            Entry {
                log_id: lid(4, 2, 19),
                payload: EntryPayload::Membership(Membership::new(vec![BTreeSet::from([7])], ())),
            },
        ];
        for e in entries {
            let got = decode_entry(&encode_entry(&e)).expect("decodes");
            // The log and wire form: the same bytes as the structured form.
            let raw = entry_to_raw(&e).encode_to_vec();
            assert_eq!(raw, encode_entry(&e));
            let again = decode_entry_raw(raw.into()).expect("decodes raw");
            assert_eq!(again, got);
            assert_eq!(got.log_id, e.log_id);
            match (&got.payload, &e.payload) {
                (EntryPayload::Blank, EntryPayload::Blank) => {}
                (EntryPayload::Normal(a), EntryPayload::Normal(b)) => assert_eq!(a, b),
                (EntryPayload::Membership(a), EntryPayload::Membership(b)) => assert_eq!(a, b),
                (a, b) => panic!("payload changed: {a:?} vs {b:?}"),
            }
        }
    }

    #[test]
    fn vote_log_id_and_membership_round_trip() {
        for v in [
            Vote::default(),
            Vote::new(5, 3),
            Vote::new_committed(u64::MAX, u64::MAX),
        ] {
            assert_eq!(decode_vote(&encode_vote(&v)), Ok(v));
        }
        let id = lid(7, 2, 99);
        assert_eq!(decode_log_id(&encode_log_id(&id)), Ok(id));
        for m in [
            StoredMembership::default(),
            StoredMembership::new(
                Some(lid(1, 1, 2)),
                Membership::new(vec![BTreeSet::from([1, 2, 3])], ()),
            ),
        ] {
            let got = stored_membership_from_pb(stored_membership_to_pb(&m));
            assert_eq!(got, Ok(m));
        }
    }

    #[test]
    fn nodes_and_sessions_round_trip() {
        let node = Node {
            data: Bytes::from_static(b"hello"),
            stat: Stat {
                czxid: 1,
                mzxid: 2,
                pzxid: 3,
                ctime: -4,
                mtime: 5,
                version: 6,
                cversion: 7,
                aversion: 8,
                ephemeral_owner: 9,
                data_length: 5,
                num_children: 0,
                mode: CreateMode::EphemeralSequential,
                ttl_ms: 0,
            },
            seq: 11,
            children: Default::default(),
            acl: Default::default(),
        };
        let bytes = node_to_pb(&node).encode_to_vec();
        assert_eq!(
            node_from_pb(decode("StoredNode", &bytes).expect("decodes")),
            Ok(node.clone())
        );
        // A restricted ACL survives the stored form (snapshots and backups use it too).
        let restricted = Node {
            acl: NodeAcl::new(vec![
                Acl {
                    perms: crate::tree::acl::READ,
                    id: Id::new("world", "anyone"),
                },
                Acl {
                    perms: crate::tree::acl::ALL,
                    id: Id::new("x509", "CN=app"),
                },
            ]),
            ..node
        };
        let bytes = node_to_pb(&restricted).encode_to_vec();
        assert_eq!(
            node_from_pb(decode("StoredNode", &bytes).expect("decodes")),
            Ok(restricted)
        );

        let s = Session {
            id: 0xdead_beef,
            secret: Bytes::from_static(b"k"),
            timeout_ms: 30_000,
            created_zxid: 12,
            created_ms: 1_000,
        };
        assert_eq!(session_from_pb(session_to_pb(&s)), Ok(s));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(decode_entry(b"\xff\xff\xff\xff").is_err());
        assert!(decode_vote(&[0x0a, 0x05, 0x08]).is_err()); // truncated
                                                            // An entry without a payload.
        let no_payload = pb::Entry {
            log_id: Some(log_id_to_pb(&lid(1, 1, 1))),
            payload: None,
        };
        assert!(decode_entry(&no_payload.encode_to_vec()).is_err());
        // A create with an unknown mode.
        let bad_mode = pb::Entry {
            log_id: Some(log_id_to_pb(&lid(1, 1, 1))),
            payload: Some(pb::entry::Payload::Command(pb::Command {
                time_ms: 0,
                requests: vec![pb::Request {
                    request: Some(pb::request::Request::Multi(pb::Multi {
                        ops: vec![pb::Op {
                            op: Some(pb::op::Op::Create(pb::Create {
                                path: "/a".into(),
                                mode: 99,
                                ..Default::default()
                            })),
                        }],
                        single: true,
                        caller: None,
                    })),
                    id: None,
                }],
            })),
        };
        let err = decode_entry(&bad_mode.encode_to_vec()).expect_err("unknown mode");
        assert!(err.reason.contains("99"), "{err}");
        // A log id without its leader.
        assert!(decode_log_id(
            &pb::LogId {
                leader_id: None,
                index: 3
            }
            .encode_to_vec()
        )
        .is_err());
        // A node listed twice in a membership.
        let twice = pb::Membership {
            configs: vec![],
            nodes: vec![
                pb::MemberNode {
                    id: 1,
                    ..Default::default()
                },
                pb::MemberNode {
                    id: 1,
                    ..Default::default()
                },
            ],
        };
        assert!(membership_from_pb(twice).is_err());
        let stored = pb::StoredNode {
            mode: -1,
            ..Default::default()
        };
        assert!(node_from_pb(stored).is_err());
    }

    #[test]
    fn errors_round_trip() {
        let errs = vec![
            BatonError::NoNode("/a".into()),
            BatonError::BadVersion {
                path: "/a".into(),
                expected: 3,
                actual: 4,
            },
            BatonError::SessionExpired(42),
            BatonError::TooLarge {
                what: "data",
                size: 10,
                limit: 5,
            },
            BatonError::InvalidPath {
                path: "x".into(),
                why: "relative".into(),
            },
            BatonError::RuntimeInconsistency,
            BatonError::Unavailable("no leader".into()),
            BatonError::NoSpace("member 2 is short of disk space".into()),
            BatonError::BadFence {
                lock_node: "/l/lock-0000000001".into(),
                token: 99,
            },
            BatonError::LockHeld("/l".into()),
            BatonError::NotOwner {
                path: "/l/lock-0000000001".into(),
                owner: 1,
                session: 2,
            },
            BatonError::StaleRequest {
                client_id: u64::MAX,
                seq: 7,
                oldest: 9,
            },
        ];
        for e in errs {
            assert_eq!(error_from_pb(error_to_pb(&e)), e);
        }
    }

    #[test]
    fn results_round_trip() {
        let stat = Stat {
            czxid: 5,
            data_length: 3,
            num_children: 2,
            mode: CreateMode::EphemeralSequential,
            ..Stat::default()
        };
        let results = vec![
            RequestResult::Multi(Ok(vec![
                OpOutcome::Create {
                    path: "/a0000000001".into(),
                    stat: stat.clone(),
                },
                OpOutcome::SetData { stat },
                OpOutcome::Delete,
                OpOutcome::Check,
            ])),
            RequestResult::Multi(Err(MultiFailure {
                index: 1,
                error: BatonError::NotEmpty("/x".into()),
                before: vec![OpOutcome::Check],
            })),
            RequestResult::Done(Ok(())),
            RequestResult::Done(Err(BatonError::AuthFailed(9))),
        ];
        for r in results {
            let (back, zxid) = result_from_pb(result_to_pb(&r, 77)).unwrap();
            assert_eq!(back, r);
            assert_eq!(zxid, 77);
        }
    }
}
