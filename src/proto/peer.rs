//! Peer RPCs ↔ openraft: votes, log appends and snapshot chunks as the peer protocol's
//! `baton.raft.v1` messages, and a forwarded request's answer. Entries, votes, log ids,
//! memberships, results and errors are the stored messages of [`super::stored`], so an entry
//! is the same bytes on the wire and on disk.

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{SnapshotMeta, SnapshotSegmentId};

use super::stored::{self, error_from_pb, result_from_pb};
use super::{need, CodecError};
use crate::error::BatonError;
use crate::proto::raft as pb;
use crate::tree::RequestResult;
use crate::types::{LogId, TypeConfig};

type Res<T> = Result<T, CodecError>;

fn opt_log_id(id: Option<pb::LogId>) -> Res<Option<LogId>> {
    id.map(stored::log_id_from_pb).transpose()
}

/// VoteRequest to the wire.
pub fn vote_req_to_pb(r: &VoteRequest<u64>) -> pb::VoteRequest {
    pb::VoteRequest {
        vote: Some(stored::vote_to_pb(&r.vote)),
        last_log_id: r.last_log_id.as_ref().map(stored::log_id_to_pb),
    }
}

/// VoteRequest from the wire.
pub fn vote_req_from_pb(r: pb::VoteRequest) -> Res<VoteRequest<u64>> {
    Ok(VoteRequest {
        vote: stored::vote_from_pb(need("VoteRequest.vote", r.vote)?)?,
        last_log_id: opt_log_id(r.last_log_id)?,
    })
}

/// VoteResponse to the wire.
pub fn vote_resp_to_pb(r: &VoteResponse<u64>) -> pb::VoteResponse {
    pb::VoteResponse {
        vote: Some(stored::vote_to_pb(&r.vote)),
        vote_granted: r.vote_granted,
        last_log_id: r.last_log_id.as_ref().map(stored::log_id_to_pb),
    }
}

/// VoteResponse from the wire.
pub fn vote_resp_from_pb(r: pb::VoteResponse) -> Res<VoteResponse<u64>> {
    Ok(VoteResponse {
        vote: stored::vote_from_pb(need("VoteResponse.vote", r.vote)?)?,
        vote_granted: r.vote_granted,
        last_log_id: opt_log_id(r.last_log_id)?,
    })
}

/// AppendEntriesRequest to the wire.
pub fn append_req_to_pb(r: &AppendEntriesRequest<TypeConfig>) -> pb::AppendEntriesRequest {
    pb::AppendEntriesRequest {
        vote: Some(stored::vote_to_pb(&r.vote)),
        prev_log_id: r.prev_log_id.as_ref().map(stored::log_id_to_pb),
        entries: r.entries.iter().map(stored::entry_to_raw).collect(),
        leader_commit: r.leader_commit.as_ref().map(stored::log_id_to_pb),
    }
}

/// AppendEntriesRequest from the wire.
pub fn append_req_from_pb(r: pb::AppendEntriesRequest) -> Res<AppendEntriesRequest<TypeConfig>> {
    Ok(AppendEntriesRequest {
        vote: stored::vote_from_pb(need("AppendEntriesRequest.vote", r.vote)?)?,
        prev_log_id: opt_log_id(r.prev_log_id)?,
        entries: r
            .entries
            .into_iter()
            .map(stored::entry_from_raw)
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
            (R::PartialSuccess(stored::log_id_to_pb(id)), false)
        }
        AppendEntriesResponse::PartialSuccess(None) => (R::Success(pb::Blank {}), true),
        AppendEntriesResponse::Conflict => (R::Conflict(pb::Blank {}), false),
        AppendEntriesResponse::HigherVote(v) => (R::HigherVote(stored::vote_to_pb(v)), false),
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
            AppendEntriesResponse::PartialSuccess(Some(stored::log_id_from_pb(id)?))
        }
        R::Conflict(_) => AppendEntriesResponse::Conflict,
        R::HigherVote(v) => AppendEntriesResponse::HigherVote(stored::vote_from_pb(v)?),
    })
}

/// InstallSnapshotRequest to the wire.
pub fn snapshot_req_to_pb(r: &InstallSnapshotRequest<TypeConfig>) -> pb::InstallSnapshotRequest {
    pb::InstallSnapshotRequest {
        vote: Some(stored::vote_to_pb(&r.vote)),
        meta: Some(pb::SnapshotMeta {
            last_log_id: r.meta.last_log_id.as_ref().map(stored::log_id_to_pb),
            last_membership: Some(stored::stored_membership_to_pb(&r.meta.last_membership)),
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
        vote: stored::vote_from_pb(need("InstallSnapshotRequest.vote", r.vote)?)?,
        meta: SnapshotMeta {
            last_log_id: opt_log_id(meta.last_log_id)?,
            last_membership: stored::stored_membership_from_pb(need(
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
        vote: Some(stored::vote_to_pb(&r.vote)),
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
        vote: stored::vote_from_pb(need("InstallSnapshotResponse.vote", r.vote)?)?,
    })
}

/// A forwarded request's outcome from the wire: its result and zxid, or why the leader could
/// not propose it.
pub fn forwarded_from_pb(r: pb::RequestResult) -> Res<Result<(RequestResult, u64), BatonError>> {
    if let Some(pb::request_result::Result::Failed(e)) = r.result {
        return Ok(Err(error_from_pb(e)));
    }
    result_from_pb(r).map(Ok)
}
