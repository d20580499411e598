//! `baton.v1.Cluster`: this member's view of the cluster.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use openraft::ServerState;
use tonic::{Request, Response, Status};

use std::time::Duration;

use super::Ctx;
use crate::consensus::peer_service::PeerService;
use crate::consensus::peers::{is_leader, status_error};
use crate::consensus::space;
use crate::consensus::wire;
use crate::error::BatonError;
use crate::proto::raft as pb;
use crate::proto::v1::{self, cluster_server::Cluster};

/// The Cluster service.
pub struct ClusterService {
    ctx: Arc<Ctx>,
}

impl ClusterService {
    /// A service over the member's core.
    pub fn new(ctx: Arc<Ctx>) -> Self {
        ClusterService { ctx }
    }

    /// Runs an administration request on the leader (here, or forwarded to it), then waits
    /// until this member has applied the membership change.
    async fn admin(&self, req: pb::admin_request::Request) -> Result<u64, Status> {
        let raft = &self.ctx.raft;
        let index = if is_leader(raft, self.ctx.cfg.id) {
            PeerService::admin(raft, req).await?
        } else {
            let (_, mut client) = self.ctx.peers.leader_client(raft)?;
            let mut r = tonic::Request::new(pb::AdminRequest { request: Some(req) });
            r.set_timeout(Duration::from_secs(30));
            let resp = client
                .admin(r)
                .await
                .map_err(|s| status_error("cluster admin on the leader", &s, true))?
                .into_inner();
            if let Some(e) = resp.error {
                return Err(wire::error_from_pb(e).to_status());
            }
            resp.index
        };
        self.ctx
            .reads
            .wait_applied(index, Duration::from_secs(10))
            .await?;
        Ok(index)
    }

    fn members(&self) -> Vec<v1::Member> {
        let m = self.ctx.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, n)| v1::Member {
                id: *id,
                peer_addr: n.peer_addr.clone(),
                client_addr: n.client_addr.clone(),
                voter: voters.contains(id),
            })
            .collect()
    }
}

fn role(s: ServerState) -> v1::Role {
    match s {
        ServerState::Leader => v1::Role::Leader,
        ServerState::Follower => v1::Role::Follower,
        ServerState::Candidate => v1::Role::Candidate,
        ServerState::Learner => v1::Role::Learner,
        ServerState::Shutdown => v1::Role::Shutdown,
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn status(
        &self,
        _req: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::StatusResponse>, Status> {
        let (sessions, znodes, last_zxid, applied, state_hash, alarms) = self.ctx.read_tree(|s| {
            (
                s.session_count() as u64,
                s.node_count() as u64,
                s.last_zxid,
                s.applied_index,
                s.digest(),
                space::raised(s),
            )
        });
        let dir = self.ctx.cfg.data_dir.clone();
        let db_size_bytes = tokio::task::spawn_blocking(move || space::dir_usage(&dir))
            .await
            .unwrap_or(0);
        let members = self.members();
        let m = self.ctx.raft.metrics().borrow().clone();
        Ok(Response::new(v1::StatusResponse {
            header: self.ctx.header_at(applied),
            member_id: self.ctx.cfg.id,
            leader_id: m.current_leader.unwrap_or(0),
            term: m.current_term,
            role: role(m.state) as i32,
            commit_index: applied,
            applied_index: applied,
            last_zxid,
            snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
            sessions,
            watches: self.ctx.shared.hub.watch_count() as u64,
            db_size_bytes,
            members,
            znodes,
            last_log_index: m.last_log_index.unwrap_or(0),
            version: env!("CARGO_PKG_VERSION").to_string(),
            state_hash,
            state_hash_index: applied,
            term_changes: self.ctx.failover.stats.term_changes.load(Relaxed),
            fast_elections: self.ctx.failover.stats.fast_elections.load(Relaxed),
            leaders_found_gone: self.ctx.failover.stats.leaders_found_gone.load(Relaxed),
            alarms: alarms
                .into_iter()
                .map(|(member, why)| v1::Alarm {
                    kind: "NOSPACE".into(),
                    member_id: member,
                    reason: why,
                })
                .collect(),
        }))
    }

    async fn add_member(
        &self,
        req: Request<v1::AddMemberRequest>,
    ) -> Result<Response<v1::AddMemberResponse>, Status> {
        let r = req.into_inner();
        let index = self
            .admin(pb::admin_request::Request::AddLearner(pb::MemberNode {
                id: r.id,
                peer_addr: r.peer_addr,
                client_addr: r.client_addr,
            }))
            .await?;
        Ok(Response::new(v1::AddMemberResponse {
            header: self.ctx.header_at(index),
            members: self.members(),
        }))
    }

    async fn promote_member(
        &self,
        req: Request<v1::PromoteMemberRequest>,
    ) -> Result<Response<v1::PromoteMemberResponse>, Status> {
        let index = self
            .admin(pb::admin_request::Request::Promote(req.into_inner().id))
            .await?;
        Ok(Response::new(v1::PromoteMemberResponse {
            header: self.ctx.header_at(index),
            members: self.members(),
        }))
    }

    async fn remove_member(
        &self,
        req: Request<v1::RemoveMemberRequest>,
    ) -> Result<Response<v1::RemoveMemberResponse>, Status> {
        let index = self
            .admin(pb::admin_request::Request::Remove(req.into_inner().id))
            .await?;
        Ok(Response::new(v1::RemoveMemberResponse {
            header: self.ctx.header_at(index),
            members: self.members(),
        }))
    }

    async fn snapshot(
        &self,
        _req: Request<v1::SnapshotRequest>,
    ) -> Result<Response<v1::SnapshotResponse>, Status> {
        let applied = self.ctx.reads.applied();
        self.ctx
            .raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| BatonError::Unavailable(e.to_string()).to_status())?;
        let mut rx = self.ctx.raft.metrics();
        let waited = tokio::time::timeout(
            Duration::from_secs(30),
            rx.wait_for(|m| m.snapshot.map(|s| s.index).unwrap_or(0) >= applied),
        )
        .await;
        let snapshot_index = match waited {
            Ok(Ok(m)) => m.snapshot.map(|s| s.index).unwrap_or(0),
            _ => {
                return Err(BatonError::DeadlineExceeded(format!(
                    "snapshot covering zxid {applied} not finished in 30 s"
                ))
                .to_status())
            }
        };
        Ok(Response::new(v1::SnapshotResponse {
            header: self.ctx.header_at(applied),
            snapshot_index,
        }))
    }

    async fn members(
        &self,
        _req: Request<v1::MembersRequest>,
    ) -> Result<Response<v1::MembersResponse>, Status> {
        let applied = self.ctx.reads.applied();
        Ok(Response::new(v1::MembersResponse {
            header: self.ctx.header_at(applied),
            members: self.members(),
        }))
    }

    async fn stages(
        &self,
        req: Request<v1::StagesRequest>,
    ) -> Result<Response<v1::StagesResponse>, Status> {
        let st = &self.ctx.shared.stages;
        let window_ms = st.window().as_millis() as u64;
        let stages = st
            .summary()
            .into_iter()
            .map(|s| v1::StageStats {
                name: s.stage.name().to_string(),
                unit: if s.stage.is_count() { "count" } else { "us" }.to_string(),
                count: s.count,
                mean: s.mean,
                p50: s.p50,
                p99: s.p99,
                max: s.max,
            })
            .collect();
        if req.into_inner().reset {
            st.reset();
        }
        Ok(Response::new(v1::StagesResponse {
            header: self.ctx.header_at(self.ctx.reads.applied()),
            stages,
            window_ms,
        }))
    }
}
