//! The peer port's gRPC service (`baton.raft.v1.Raft`): Raft RPCs handed to openraft, and the
//! requests followers pass to the leader (forwarded writes, read index, session liveness,
//! membership updates and administration, the last two carried out by [`super::membership`]).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use openraft::error::{InstallSnapshotError, RaftError};
use tonic::{Request, Response, Status};

use super::failover::Failover;
use super::forward::is_leader;
use super::housekeeping::Liveness;
use super::membership;
use super::proposer::Proposer;
use super::rejoin::VoteHold;
use super::state_machine::SmShared;
use super::Raft;
use crate::error::BatonError;
use crate::proto::raft::{self as pb, raft_server};
use crate::proto::{peer, stored};
use crate::stages::Stage;
use crate::tls::PeerMember;

/// The peer service of one member.
pub struct PeerService {
    /// This member's id.
    pub my_id: u64,
    /// Raft handle.
    pub raft: Raft,
    /// Proposer (forwarded writes are proposed here when leading).
    pub proposer: Proposer,
    /// State machine (session lookups for liveness).
    pub shared: Arc<SmShared>,
    /// Session deadlines.
    pub liveness: Arc<Liveness>,
    /// The failover fast path (reports from other members).
    pub failover: Arc<Failover>,
    /// Votes held back until a member that started without data has caught up.
    pub vote_hold: Arc<VoteHold>,
    /// Ends Follow streams when the member shuts down.
    pub shutdown: crate::shutdown::Shutdown,
}

fn bad_request(e: crate::proto::CodecError) -> Status {
    Status::invalid_argument(format!("malformed peer request: {e}"))
}

/// On a TLS peer port, checks that the member whose id the request's body names as its sender
/// (`claimed`) is the one its certificate proves ([`PeerMember`], set by the peer port's
/// check); on a plaintext port there is nothing to check against.
fn sent_by<T>(req: &Request<T>, claimed: u64, what: &str) -> Result<(), Status> {
    match req.extensions().get::<PeerMember>() {
        Some(PeerMember(proven)) if *proven != claimed => Err(Status::permission_denied(format!(
            "member {proven} sent a {what} in the name of member {claimed}"
        ))),
        _ => Ok(()),
    }
}

/// The member a Vote, AppendEntries or InstallSnapshot comes from: its vote's leader id (the
/// candidate, or the leader).
fn vote_sender(vote: Option<&crate::proto::raft::Vote>) -> u64 {
    vote.and_then(|v| v.leader_id.as_ref())
        .map_or(0, |l| l.node_id)
}

fn raft_stopped<E: std::fmt::Display>(e: E) -> Status {
    Status::unavailable(format!("raft is not running: {e}"))
}

impl PeerService {
    fn require_leader(&self) -> Result<(), BatonError> {
        if is_leader(&self.raft, self.my_id) {
            Ok(())
        } else {
            Err(BatonError::Unavailable(format!(
                "member {} is not the leader",
                self.my_id
            )))
        }
    }
}

#[tonic::async_trait]
impl raft_server::Raft for PeerService {
    type FollowStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<pb::FollowEvent, Status>> + Send + 'static>,
    >;

    async fn follow(
        &self,
        req: Request<pb::FollowRequest>,
    ) -> Result<Response<Self::FollowStream>, Status> {
        sent_by(&req, req.get_ref().follower, "Follow")?;
        // Nothing is ever sent: the stream ends when this member shuts down, and breaks with
        // its connection when the process dies.
        let mut shutdown = self.shutdown.clone();
        let stream = futures::stream::once(async move { shutdown.wait().await })
            .filter_map(|()| async { None });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn transfer_step(
        &self,
        req: Request<pb::TransferStepRequest>,
    ) -> Result<Response<pb::TransferStepResponse>, Status> {
        sent_by(&req, req.get_ref().leader, "TransferStep")?;
        let done = self.failover.on_transfer_step(req.into_inner()).await;
        Ok(Response::new(pb::TransferStepResponse { done }))
    }

    async fn leader_gone(
        &self,
        req: Request<pb::LeaderGoneRequest>,
    ) -> Result<Response<pb::LeaderGoneResponse>, Status> {
        sent_by(&req, req.get_ref().reporter, "LeaderGone")?;
        let failover = self.failover.clone();
        tokio::spawn(failover.on_report(req.into_inner()));
        Ok(Response::new(pb::LeaderGoneResponse {}))
    }

    async fn vote(
        &self,
        req: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        sent_by(&req, vote_sender(req.get_ref().vote.as_ref()), "Vote")?;
        let rpc = peer::vote_req_from_pb(req.into_inner()).map_err(bad_request)?;
        if !self
            .vote_hold
            .may_vote(rpc.last_log_id.map(|l| (l.leader_id.term, l.index)))
        {
            // Refused without looking further: this member may have lost a vote or entries
            // it had before (see `consensus::rejoin`).
            let vote = self.raft.metrics().borrow().vote;
            let resp = openraft::raft::VoteResponse {
                vote,
                vote_granted: false,
                last_log_id: None,
            };
            return Ok(Response::new(peer::vote_resp_to_pb(&resp)));
        }
        let resp = self.raft.vote(rpc).await.map_err(raft_stopped)?;
        Ok(Response::new(peer::vote_resp_to_pb(&resp)))
    }

    async fn append_entries(
        &self,
        req: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesResponse>, Status> {
        sent_by(
            &req,
            vote_sender(req.get_ref().vote.as_ref()),
            "AppendEntries",
        )?;
        let started = std::time::Instant::now();
        let rpc = peer::append_req_from_pb(req.into_inner()).map_err(bad_request)?;
        let has_entries = !rpc.entries.is_empty();
        if self.vote_hold.holding() {
            self.vote_hold
                .contact(rpc.leader_commit.map(|l| (l.leader_id.term, l.index)));
            if self.vote_hold.applied(*self.shared.applied.borrow()) {
                self.raft.runtime_config().elect(true);
            }
        }
        let resp = self.raft.append_entries(rpc).await.map_err(raft_stopped)?;
        if has_entries {
            self.shared.stages.since(Stage::PeerAppendEntries, started);
        }
        Ok(Response::new(peer::append_resp_to_pb(&resp)))
    }

    async fn install_snapshot(
        &self,
        req: Request<pb::InstallSnapshotRequest>,
    ) -> Result<Response<pb::InstallSnapshotResponse>, Status> {
        sent_by(
            &req,
            vote_sender(req.get_ref().vote.as_ref()),
            "InstallSnapshot",
        )?;
        let rpc = peer::snapshot_req_from_pb(req.into_inner()).map_err(bad_request)?;
        match self.raft.install_snapshot(rpc).await {
            Ok(resp) => Ok(Response::new(peer::snapshot_resp_to_pb(&resp))),
            Err(RaftError::APIError(InstallSnapshotError::SnapshotMismatch(m))) => {
                let vote = self.raft.metrics().borrow().vote;
                Ok(Response::new(pb::InstallSnapshotResponse {
                    vote: Some(stored::vote_to_pb(&vote)),
                    mismatch: Some(peer::mismatch_to_pb(&m.expect, &m.got)),
                }))
            }
            Err(RaftError::Fatal(f)) => Err(raft_stopped(f)),
        }
    }

    async fn forward(
        &self,
        req: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardResponse>, Status> {
        let started = std::time::Instant::now();
        let r = req.into_inner();
        if let Err(e) = self.require_leader() {
            return Ok(Response::new(pb::ForwardResponse {
                results: Vec::new(),
                error: Some(stored::error_to_pb(&e)),
            }));
        }
        let requests = r
            .requests
            .into_iter()
            .map(stored::request_from_pb)
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad_request)?;
        // Submitted together, so the proposer packs them into as few entries as it can.
        let futures = requests
            .into_iter()
            .map(|req| self.proposer.propose_here(req));
        let outcomes = futures::future::join_all(futures).await;
        let results = outcomes
            .into_iter()
            .map(|o| match o {
                Ok((result, zxid)) => stored::result_to_pb(&result, zxid),
                Err(e) => pb::RequestResult {
                    result: Some(pb::request_result::Result::Failed(stored::error_to_pb(&e))),
                    zxid: 0,
                },
            })
            .collect();
        self.shared.stages.since(Stage::PeerForward, started);
        Ok(Response::new(pb::ForwardResponse {
            results,
            error: None,
        }))
    }

    async fn read_index(
        &self,
        _req: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexResponse>, Status> {
        self.require_leader().map_err(|e| e.to_status())?;
        let (read_log_id, _applied) = self.raft.get_read_log_id().await.map_err(|e| {
            BatonError::Unavailable(format!("cannot confirm leadership: {e}")).to_status()
        })?;
        Ok(Response::new(pb::ReadIndexResponse {
            index: read_log_id.map(|l| l.index).unwrap_or(0),
        }))
    }

    async fn liveness(
        &self,
        req: Request<pb::LivenessRequest>,
    ) -> Result<Response<pb::LivenessResponse>, Status> {
        self.require_leader().map_err(|e| e.to_status())?;
        let ids = req.into_inner().session_ids;
        let mut unknown = Vec::new();
        let tree = self.shared.tree.read().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            match tree.session(id) {
                Some(s) => self.liveness.touch(
                    id,
                    Duration::from_millis(s.session.timeout_ms.max(0) as u64),
                ),
                None => unknown.push(id),
            }
        }
        Ok(Response::new(pb::LivenessResponse { unknown }))
    }

    async fn update_member(
        &self,
        req: Request<pb::UpdateMemberRequest>,
    ) -> Result<Response<pb::UpdateMemberResponse>, Status> {
        let claimed = req.get_ref().member.as_ref().map_or(0, |m| m.id);
        sent_by(&req, claimed, "UpdateMember")?;
        self.require_leader().map_err(|e| e.to_status())?;
        let m = req
            .into_inner()
            .member
            .ok_or_else(|| Status::invalid_argument("member missing"))?;
        membership::update_member(&self.raft, m)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(pb::UpdateMemberResponse {}))
    }

    async fn admin(
        &self,
        req: Request<pb::AdminRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        self.require_leader().map_err(|e| e.to_status())?;
        let r = req
            .into_inner()
            .request
            .ok_or_else(|| Status::invalid_argument("empty admin request"))?;
        let outcome = match r {
            pb::admin_request::Request::TransferLeader(to) => self
                .failover
                .transfer(to, &self.proposer)
                .await
                .map(|(_, term)| term),
            r => membership::change(&self.raft, r).await,
        };
        Ok(Response::new(match outcome {
            Ok(index) => pb::AdminResponse { error: None, index },
            Err(e) => pb::AdminResponse {
                error: Some(stored::error_to_pb(&e)),
                index: 0,
            },
        }))
    }
}
