//! `baton.v1.Cluster`: this member's view of the cluster.

use std::path::Path;

use std::sync::Arc;

use openraft::ServerState;
use tonic::{Request, Response, Status};

use super::Ctx;
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

/// Bytes used by the files under `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
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
        let (sessions, znodes, last_zxid, applied) = self.ctx.read_tree(|s| {
            (
                s.session_count() as u64,
                s.node_count() as u64,
                s.last_zxid,
                s.applied_index,
            )
        });
        let dir = self.ctx.cfg.data_dir.clone();
        let db_size_bytes = tokio::task::spawn_blocking(move || dir_size(&dir))
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
}
