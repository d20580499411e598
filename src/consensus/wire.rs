//! Conversions between openraft's RPC types and domain results on one side, and the peer
//! protocol's protobuf messages (`baton.raft.v1`) on the other. Log entries, votes and
//! memberships reuse the storage codec, so the wire and disk formats are the same.

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{SnapshotMeta, SnapshotSegmentId};

use super::TypeConfig;
use crate::error::BatonError;
use crate::proto::raft as pb;
use crate::store::codec::{self, CodecError};
use crate::tree::{ClientRecord, CreateMode, MultiFailure, OpOutcome, RequestResult, Stat};

type Res<T> = Result<T, CodecError>;

fn opt_log_id(id: Option<pb::LogId>) -> Res<Option<crate::consensus::LogId>> {
    id.map(codec::log_id_from_pb).transpose()
}

fn need<T>(what: &'static str, v: Option<T>) -> Res<T> {
    v.ok_or_else(|| CodecError::new(what, "missing field"))
}

/// VoteRequest to the wire.
pub fn vote_req_to_pb(r: &VoteRequest<u64>) -> pb::VoteRequest {
    pb::VoteRequest {
        vote: Some(codec::vote_to_pb(&r.vote)),
        last_log_id: r.last_log_id.as_ref().map(codec::log_id_to_pb),
    }
}

/// VoteRequest from the wire.
pub fn vote_req_from_pb(r: pb::VoteRequest) -> Res<VoteRequest<u64>> {
    Ok(VoteRequest {
        vote: codec::vote_from_pb(need("VoteRequest.vote", r.vote)?)?,
        last_log_id: opt_log_id(r.last_log_id)?,
    })
}

/// VoteResponse to the wire.
pub fn vote_resp_to_pb(r: &VoteResponse<u64>) -> pb::VoteResponse {
    pb::VoteResponse {
        vote: Some(codec::vote_to_pb(&r.vote)),
        vote_granted: r.vote_granted,
        last_log_id: r.last_log_id.as_ref().map(codec::log_id_to_pb),
    }
}

/// VoteResponse from the wire.
pub fn vote_resp_from_pb(r: pb::VoteResponse) -> Res<VoteResponse<u64>> {
    Ok(VoteResponse {
        vote: codec::vote_from_pb(need("VoteResponse.vote", r.vote)?)?,
        vote_granted: r.vote_granted,
        last_log_id: opt_log_id(r.last_log_id)?,
    })
}

/// AppendEntriesRequest to the wire.
pub fn append_req_to_pb(r: &AppendEntriesRequest<TypeConfig>) -> pb::AppendEntriesRequest {
    pb::AppendEntriesRequest {
        vote: Some(codec::vote_to_pb(&r.vote)),
        prev_log_id: r.prev_log_id.as_ref().map(codec::log_id_to_pb),
        entries: r.entries.iter().map(codec::entry_to_raw).collect(),
        leader_commit: r.leader_commit.as_ref().map(codec::log_id_to_pb),
    }
}

/// AppendEntriesRequest from the wire.
pub fn append_req_from_pb(r: pb::AppendEntriesRequest) -> Res<AppendEntriesRequest<TypeConfig>> {
    Ok(AppendEntriesRequest {
        vote: codec::vote_from_pb(need("AppendEntriesRequest.vote", r.vote)?)?,
        prev_log_id: opt_log_id(r.prev_log_id)?,
        entries: r
            .entries
            .into_iter()
            .map(codec::entry_from_raw)
            .collect::<Res<Vec<_>>>()?,
        leader_commit: opt_log_id(r.leader_commit)?,
    })
}

/// AppendEntriesResponse to the wire.
pub fn append_resp_to_pb(r: &AppendEntriesResponse<u64>) -> pb::AppendEntriesResponse {
    use pb::append_entries_response::Result as R;
    let (result, partial_none) = match r {
        AppendEntriesResponse::Success => (R::Success(pb::Blank {}), false),
        AppendEntriesResponse::PartialSuccess(Some(id)) => {
            (R::PartialSuccess(codec::log_id_to_pb(id)), false)
        }
        AppendEntriesResponse::PartialSuccess(None) => (R::Success(pb::Blank {}), true),
        AppendEntriesResponse::Conflict => (R::Conflict(pb::Blank {}), false),
        AppendEntriesResponse::HigherVote(v) => (R::HigherVote(codec::vote_to_pb(v)), false),
    };
    pb::AppendEntriesResponse {
        result: Some(result),
        partial_none,
    }
}

/// AppendEntriesResponse from the wire.
pub fn append_resp_from_pb(r: pb::AppendEntriesResponse) -> Res<AppendEntriesResponse<u64>> {
    use pb::append_entries_response::Result as R;
    if r.partial_none {
        return Ok(AppendEntriesResponse::PartialSuccess(None));
    }
    Ok(match need("AppendEntriesResponse.result", r.result)? {
        R::Success(_) => AppendEntriesResponse::Success,
        R::PartialSuccess(id) => {
            AppendEntriesResponse::PartialSuccess(Some(codec::log_id_from_pb(id)?))
        }
        R::Conflict(_) => AppendEntriesResponse::Conflict,
        R::HigherVote(v) => AppendEntriesResponse::HigherVote(codec::vote_from_pb(v)?),
    })
}

/// InstallSnapshotRequest to the wire.
pub fn snapshot_req_to_pb(r: &InstallSnapshotRequest<TypeConfig>) -> pb::InstallSnapshotRequest {
    pb::InstallSnapshotRequest {
        vote: Some(codec::vote_to_pb(&r.vote)),
        meta: Some(pb::SnapshotMeta {
            last_log_id: r.meta.last_log_id.as_ref().map(codec::log_id_to_pb),
            last_membership: Some(codec::stored_membership_to_pb(&r.meta.last_membership)),
            snapshot_id: r.meta.snapshot_id.clone(),
        }),
        offset: r.offset,
        data: r.data.clone().into(),
        done: r.done,
    }
}

/// InstallSnapshotRequest from the wire.
pub fn snapshot_req_from_pb(
    r: pb::InstallSnapshotRequest,
) -> Res<InstallSnapshotRequest<TypeConfig>> {
    let meta = need("InstallSnapshotRequest.meta", r.meta)?;
    Ok(InstallSnapshotRequest {
        vote: codec::vote_from_pb(need("InstallSnapshotRequest.vote", r.vote)?)?,
        meta: SnapshotMeta {
            last_log_id: opt_log_id(meta.last_log_id)?,
            last_membership: codec::stored_membership_from_pb(need(
                "SnapshotMeta.last_membership",
                meta.last_membership,
            )?)?,
            snapshot_id: meta.snapshot_id,
        },
        offset: r.offset,
        data: r.data.to_vec(),
        done: r.done,
    })
}

/// InstallSnapshotResponse to the wire.
pub fn snapshot_resp_to_pb(r: &InstallSnapshotResponse<u64>) -> pb::InstallSnapshotResponse {
    pb::InstallSnapshotResponse {
        vote: Some(codec::vote_to_pb(&r.vote)),
        mismatch: None,
    }
}

/// A snapshot chunk mismatch to the wire.
pub fn mismatch_to_pb(expect: &SnapshotSegmentId, got: &SnapshotSegmentId) -> pb::SnapshotMismatch {
    pb::SnapshotMismatch {
        expect_id: expect.id.clone(),
        expect_offset: expect.offset,
        got_id: got.id.clone(),
        got_offset: got.offset,
    }
}

/// A snapshot chunk mismatch from the wire.
pub fn mismatch_from_pb(m: pb::SnapshotMismatch) -> openraft::error::SnapshotMismatch {
    openraft::error::SnapshotMismatch {
        expect: SnapshotSegmentId {
            id: m.expect_id,
            offset: m.expect_offset,
        },
        got: SnapshotSegmentId {
            id: m.got_id,
            offset: m.got_offset,
        },
    }
}

/// InstallSnapshotResponse from the wire.
pub fn snapshot_resp_from_pb(r: pb::InstallSnapshotResponse) -> Res<InstallSnapshotResponse<u64>> {
    Ok(InstallSnapshotResponse {
        vote: codec::vote_from_pb(need("InstallSnapshotResponse.vote", r.vote)?)?,
    })
}

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
    match d.reason.as_str() {
        "NO_NODE" => BatonError::NoNode(d.path),
        "NODE_EXISTS" => BatonError::NodeExists(d.path),
        "NOT_EMPTY" => BatonError::NotEmpty(d.path),
        "NO_CHILDREN_FOR_EPHEMERALS" => BatonError::NoChildrenForEphemerals(d.path),
        "NO_AUTH" => BatonError::NoAuth {
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
        "INVALID_ACL" => BatonError::InvalidAcl(d.message),
        "UNAUTHENTICATED" => BatonError::Unauthenticated(d.message),
        "BAD_CREDENTIALS" => BatonError::BadCredentials(d.message),
        "LOCK_HELD" => BatonError::LockHeld(d.path),
        "BAD_FENCE" => BatonError::BadFence {
            lock_node: d.path,
            token: d.size,
        },
        "NOT_OWNER" => BatonError::NotOwner {
            path: d.path,
            owner: d.size,
            session: d.session_id,
        },
        "INVALID_PATH" => BatonError::InvalidPath {
            path: d.path,
            why: d.message,
        },
        "BAD_VERSION" => BatonError::BadVersion {
            path: d.path,
            expected: d.expected,
            actual: d.actual,
        },
        "SESSION_EXPIRED" => BatonError::SessionExpired(d.session_id),
        "AUTH_FAILED" => BatonError::AuthFailed(d.session_id),
        "TOO_LARGE" => BatonError::TooLarge {
            what: match d.what.as_str() {
                "data" => "data",
                "multi op count" => "multi op count",
                "multi payload" => "multi payload",
                _ => "request",
            },
            size: d.size,
            limit: d.limit,
        },
        "TOO_MANY" => BatonError::TooMany {
            what: match d.what.as_str() {
                "watches per stream" => "watches per stream",
                "watches on this member" => "watches on this member",
                _ => "requests",
            },
            limit: d.limit,
        },
        "OVERLOADED" => BatonError::Overloaded(d.message),
        "BAD_ARGUMENTS" => BatonError::BadArguments(d.message),
        "RUNTIME_INCONSISTENCY" => BatonError::RuntimeInconsistency,
        "STALE_REQUEST" => BatonError::StaleRequest {
            client_id: d.session_id,
            seq: d.size,
            oldest: d.limit,
        },
        "UNAVAILABLE" => BatonError::Unavailable(d.message),
        "NOSPACE" => BatonError::NoSpace(d.message),
        "OUTCOME_UNKNOWN" => BatonError::OutcomeUnknown(d.message),
        "DEADLINE_EXCEEDED" => BatonError::DeadlineExceeded(d.message),
        _ => BatonError::Internal(d.message),
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
        mode: CreateMode::from_i32(s.mode)
            .ok_or_else(|| CodecError::new("NodeStat.mode", format!("unknown mode {}", s.mode)))?,
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

/// A forwarded request's outcome from the wire: its result and zxid, or why the leader could
/// not propose it.
pub fn forwarded_from_pb(r: pb::RequestResult) -> Res<Result<(RequestResult, u64), BatonError>> {
    if let Some(pb::request_result::Result::Failed(e)) = r.result {
        return Ok(Err(error_from_pb(e)));
    }
    result_from_pb(r).map(Ok)
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

#[cfg(test)]
mod tests {
    use super::*;

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
