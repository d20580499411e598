//! `baton.v1.Cluster`: this member's view of the cluster.

use std::sync::Arc;

use openraft::ServerState;
use tonic::{Request, Response, Status};
use tracing::debug;

use std::time::Duration;

use super::Ctx;
use crate::consensus::forward::{Call, Forwarder, Leader, LEADER_WAIT};
use crate::consensus::space;
use crate::error::BatonError;
use crate::proto::raft as pb;
use crate::proto::stored;
use crate::proto::v1::{self, cluster_server::Cluster};
use crate::telemetry;

/// The Cluster service.
pub struct ClusterService {
    ctx: Arc<Ctx>,
    to_leader: Forwarder,
    listings: RateLimit,
}

/// An administration request forwarded to the leader. It is not given up when another
/// member starts leading: a leadership transfer makes that happen before it is answered.
const ADMIN: Call = Call {
    what: "cluster admin on the leader",
    timeout: Duration::from_secs(30),
    may_apply: true,
    until_deposed: false,
};

impl ClusterService {
    /// A service over the member's core.
    pub fn new(ctx: Arc<Ctx>) -> Self {
        ClusterService {
            to_leader: ctx.member().to_leader(),
            ctx,
            listings: RateLimit::new(LISTINGS_PER_SECOND),
        }
    }

    /// Runs an administration request on the leader: here, or forwarded to it. Returns what
    /// the leader answered (a log index; a term for a leadership transfer).
    async fn on_leader(&self, req: pb::admin_request::Request) -> Result<u64, Status> {
        match self.to_leader.find_leader(LEADER_WAIT).await? {
            Leader::Here => Ok(self.ctx.member().admin_here(req).await?),
            Leader::There(to) => {
                let req = pb::AdminRequest { request: Some(req) };
                let resp = self
                    .to_leader
                    .call(&to, &ADMIN, req, |mut c, r| async move { c.admin(r).await })
                    .await?;
                match resp.error {
                    Some(e) => Err(stored::error_from_pb(e).to_status()),
                    None => Ok(resp.index),
                }
            }
        }
    }

    /// Runs a membership change on the leader, then waits until this member has applied it.
    async fn admin(&self, req: pb::admin_request::Request) -> Result<u64, Status> {
        let index = self.on_leader(req).await?;
        self.ctx
            .member()
            .wait_applied(index, Duration::from_secs(10))
            .await?;
        Ok(index)
    }

    fn members(&self) -> Vec<v1::Member> {
        let m = self.ctx.member().watch_raft();
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
        // A point-in-time view (constant time); the digest walks every znode, so it is
        // computed off the lock and off the runtime's threads.
        let view = self.ctx.member().view();
        let (sessions, znodes, last_zxid, applied, alarms) = (
            view.session_count() as u64,
            view.node_count() as u64,
            view.last_zxid,
            view.applied_index,
            space::raised(&view),
        );
        let state_hash = tokio::task::spawn_blocking(move || view.digest())
            .await
            .map_err(|e| Status::internal(format!("computing the state hash: {e}")))?;
        let dir = self.ctx.config().data_dir.clone();
        let db_size_bytes = tokio::task::spawn_blocking(move || space::dir_usage(&dir))
            .await
            .unwrap_or(0);
        let members = self.members();
        let m = self.ctx.member().raft_metrics();
        let counters = self.ctx.member().leadership_counters();
        Ok(Response::new(v1::StatusResponse {
            header: self.ctx.header_at(applied),
            member_id: self.ctx.config().id,
            leader_id: m.current_leader.unwrap_or(0),
            term: m.current_term,
            role: role(m.state) as i32,
            commit_index: applied,
            applied_index: applied,
            last_zxid,
            snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
            sessions,
            watches: self.ctx.member().watches().watch_count() as u64,
            db_size_bytes,
            members,
            znodes,
            last_log_index: m.last_log_index.unwrap_or(0),
            version: env!("CARGO_PKG_VERSION").to_string(),
            state_hash,
            state_hash_index: applied,
            term_changes: counters.term_changes,
            fast_elections: counters.fast_elections,
            leaders_found_gone: counters.leaders_found_gone,
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
        let applied = self.ctx.member().applied();
        self.ctx.member().trigger_snapshot().await?;
        let mut rx = self.ctx.member().watch_raft();
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
        let applied = self.ctx.member().applied();
        Ok(Response::new(v1::MembersResponse {
            header: self.ctx.header_at(applied),
            members: self.members(),
        }))
    }

    async fn stages(
        &self,
        req: Request<v1::StagesRequest>,
    ) -> Result<Response<v1::StagesResponse>, Status> {
        let st = self.ctx.member().stages();
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
            header: self.ctx.header_at(self.ctx.member().applied()),
            stages,
            window_ms,
        }))
    }

    async fn watches(
        &self,
        req: Request<v1::WatchesRequest>,
    ) -> Result<Response<v1::WatchesResponse>, Status> {
        let r = req.into_inner();
        self.listings.take().map_err(Status::from)?;
        let limit = match r.page_size {
            0 => MAX_WATCH_PAGE,
            n => (n as usize).min(MAX_WATCH_PAGE),
        };
        let hub = self.ctx.member().watches().clone();
        let (rows, more, kinds, streams) = tokio::task::spawn_blocking(move || {
            let (rows, more) = hub.list(&r.prefix, r.after_watch_id, limit);
            let (kinds, streams) = hub.census();
            (rows, more, kinds, streams)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(v1::WatchesResponse {
            header: self.ctx.header_at(self.ctx.member().applied()),
            watches: rows
                .into_iter()
                .map(|w| v1::WatchInfo {
                    watch_id: w.watch_id,
                    stream_id: w.stream_id,
                    client: w.owner,
                    path: w.path,
                    kind: w.kind.name().to_string(),
                })
                .collect(),
            more,
            total: kinds.values().sum::<usize>() as u64,
            streams: streams as u64,
            by_kind: kinds
                .into_iter()
                .map(|(k, n)| (k.to_string(), n as u64))
                .collect(),
        }))
    }

    async fn transfer_leader(
        &self,
        req: Request<v1::TransferLeaderRequest>,
    ) -> Result<Response<v1::TransferLeaderResponse>, Status> {
        let to = req.into_inner().to;
        let ctx = &self.ctx;
        // A handover asks for an end state (`to` leads), so it is safe to ask again when the
        // leader changed under the request or another member won the election.
        for attempt in 1..=TRANSFER_ATTEMPTS {
            if ctx.member().raft_metrics().current_leader == Some(to) {
                break;
            }
            match self
                .on_leader(pb::admin_request::Request::TransferLeader(to))
                .await
            {
                Ok(_) => break,
                Err(s) if s.code() == tonic::Code::Unavailable && attempt < TRANSFER_ATTEMPTS => {
                    debug!(to, attempt, error = %s.message(), "asking for the handover again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(s) => return Err(s),
            }
        }
        // Answer once this member knows the new leader.
        let mut rx = ctx.member().watch_raft();
        let _ = tokio::time::timeout(
            Duration::from_secs(3),
            rx.wait_for(|m| m.current_leader == Some(to)),
        )
        .await;
        let m = ctx.member().raft_metrics();
        Ok(Response::new(v1::TransferLeaderResponse {
            header: ctx.header_at(ctx.member().applied()),
            leader_id: m.current_leader.unwrap_or(0),
            term: m.current_term,
        }))
    }

    async fn set_log_level(
        &self,
        req: Request<v1::SetLogLevelRequest>,
    ) -> Result<Response<v1::SetLogLevelResponse>, Status> {
        let filter = req.into_inner().filter;
        let previous = telemetry::set_filter(&filter).map_err(|e| match e {
            telemetry::FilterError::Invalid(..) => BatonError::BadArguments(e.to_string()),
            telemetry::FilterError::NotInstalled => BatonError::Unavailable(e.to_string()),
        })?;
        tracing::warn!(member = self.ctx.config().id, %previous, filter = %filter, "log filter changed");
        Ok(Response::new(v1::SetLogLevelResponse {
            header: self.ctx.header_at(self.ctx.member().applied()),
            previous,
        }))
    }
}

/// Most watches in one page of `Cluster.Watches`.
const MAX_WATCH_PAGE: usize = 1000;
/// How many times a leadership handover is asked for before its error is returned.
const TRANSFER_ATTEMPTS: u32 = 3;
/// Watch listings allowed per second on one member (each walks every watch under the hub's
/// lock, which the apply also takes).
const LISTINGS_PER_SECOND: u32 = 5;

/// A token bucket bounding expensive listings.
pub struct RateLimit {
    per_second: u32,
    state: std::sync::Mutex<(f64, std::time::Instant)>,
}

impl RateLimit {
    /// At most `per_second` takes a second (a burst of `per_second`).
    pub fn new(per_second: u32) -> Self {
        RateLimit {
            per_second,
            state: std::sync::Mutex::new((f64::from(per_second), std::time::Instant::now())),
        }
    }

    /// Takes a token.
    ///
    /// # Errors
    /// `OVERLOADED` if none is left.
    pub fn take(&self) -> Result<(), BatonError> {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        let rate = f64::from(self.per_second);
        g.0 = (g.0 + now.duration_since(g.1).as_secs_f64() * rate).min(rate);
        g.1 = now;
        if g.0 >= 1.0 {
            g.0 -= 1.0;
            Ok(())
        } else {
            Err(BatonError::Overloaded(format!(
                "at most {} watch listings a second on one member",
                self.per_second
            )))
        }
    }
}
