//! Changes to the replicated membership: the administration requests (add a learner, promote
//! it, remove a member) executed on the leader, and every member's record of its own
//! addresses, which it makes sure the membership carries so that members and clients can
//! find each other's ports.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::ChangeMembers;
use tracing::{debug, info};

use super::forward::{Call, Forwarder, Leader};
use super::{MemberNode, Raft};
use crate::error::BatonError;
use crate::proto::raft as pb;

/// How long an administration request waits for a membership change already in progress
/// (another request, or a member recording its addresses) before giving up with UNAVAILABLE.
const CHANGE_IN_PROGRESS_WAIT: Duration = Duration::from_secs(5);

type ChangeResult = Result<u64, RaftError<u64, ClientWriteError<u64, MemberNode>>>;

/// Runs a membership change, retrying while another change is in progress: openraft refuses
/// it then without proposing anything, so retrying is safe.
async fn when_no_change_in_progress<F, Fut>(mut change: F) -> ChangeResult
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ChangeResult>,
{
    let deadline = tokio::time::Instant::now() + CHANGE_IN_PROGRESS_WAIT;
    loop {
        match change().await {
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(_),
            ))) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            r => return r,
        }
    }
}

/// Executes a membership change (add a learner, promote it, remove a member) on the leader
/// and returns the index of its log entry.
///
/// # Errors
/// `BAD_ARGUMENTS` for a change that cannot be made (and for a leadership transfer, which is
/// no membership change); `NO_NODE` for an unknown member; `UNAVAILABLE` if this member does
/// not lead or another change is still in progress after a while.
pub async fn change(raft: &Raft, req: pb::admin_request::Request) -> Result<u64, BatonError> {
    use pb::admin_request::Request as A;
    let r = match req {
        A::AddLearner(n) => {
            if n.id == 0 || n.peer_addr.is_empty() {
                return Err(BatonError::BadArguments(
                    "a new member needs an id > 0 and a peer address".into(),
                ));
            }
            let members = raft.metrics().borrow().membership_config.clone();
            if members.membership().get_node(&n.id).is_some() {
                return Err(BatonError::BadArguments(format!(
                    "member {} already exists",
                    n.id
                )));
            }
            info!(id = n.id, peer = %n.peer_addr, "adding learner");
            let node = MemberNode {
                peer_addr: n.peer_addr,
                client_addr: n.client_addr,
            };
            when_no_change_in_progress(|| async {
                raft.add_learner(n.id, node.clone(), false)
                    .await
                    .map(|r| r.log_id.index)
            })
            .await
        }
        A::TransferLeader(_) => {
            return Err(BatonError::BadArguments(
                "a leadership transfer is not a membership change".into(),
            ))
        }
        A::Promote(id) => {
            let m = raft.metrics().borrow().clone();
            let membership = m.membership_config.membership();
            if membership.get_node(&id).is_none() {
                return Err(BatonError::NoNode(format!("member {id}")));
            }
            if membership.voter_ids().any(|v| v == id) {
                return Err(BatonError::BadArguments(format!(
                    "member {id} is already a voter"
                )));
            }
            let last = m.last_log_index.unwrap_or(0);
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .map(|l| l.index)
                .unwrap_or(0);
            if last.saturating_sub(matched) > 1000 {
                return Err(BatonError::BadArguments(format!(
                    "learner {id} has not caught up ({matched} of {last}); retry later"
                )));
            }
            info!(id, "promoting learner to voter");
            when_no_change_in_progress(|| async {
                raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                    .await
                    .map(|r| r.log_id.index)
            })
            .await
        }
        A::Remove(id) => {
            let membership = raft.metrics().borrow().membership_config.clone();
            let membership = membership.membership();
            if membership.get_node(&id).is_none() {
                return Err(BatonError::NoNode(format!("member {id}")));
            }
            let voter = membership.voter_ids().any(|v| v == id);
            info!(id, voter, "removing member");
            let change = if voter {
                ChangeMembers::RemoveVoters(BTreeSet::from([id]))
            } else {
                ChangeMembers::RemoveNodes(BTreeSet::from([id]))
            };
            when_no_change_in_progress(|| async {
                raft.change_membership(change.clone(), false)
                    .await
                    .map(|r| r.log_id.index)
            })
            .await
        }
    };
    r.map_err(|e| match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
            BatonError::Unavailable("not the leader".into())
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(
            e @ ChangeMembershipError::InProgress(_),
        )) => BatonError::Unavailable(format!("{e}; retry later")),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            BatonError::BadArguments(e.to_string())
        }
        RaftError::Fatal(f) => BatonError::Unavailable(f.to_string()),
    })
}

/// Records a member's addresses in the membership (on the leader).
///
/// # Errors
/// `UNAVAILABLE` if not leading or a membership change is in progress.
pub async fn update_member(raft: &Raft, m: pb::MemberNode) -> Result<(), BatonError> {
    let node = MemberNode {
        peer_addr: m.peer_addr,
        client_addr: m.client_addr,
    };
    let current = raft.metrics().borrow().membership_config.clone();
    match current.membership().get_node(&m.id) {
        None => return Err(BatonError::NoNode(format!("member {}", m.id))),
        Some(n) if *n == node => return Ok(()),
        Some(_) => {}
    }
    raft.change_membership(
        ChangeMembers::SetNodes(BTreeMap::from([(m.id, node)])),
        false,
    )
    .await
    .map(|_| ())
    .map_err(|e| BatonError::Unavailable(format!("cannot update member {}: {e}", m.id)))
}

/// A member's report of its own addresses to the leader.
const RECORD_ADDRESSES: Call = Call {
    what: "recording this member's addresses on the leader",
    timeout: Duration::from_secs(2),
    may_apply: true,
    until_deposed: false,
};

/// Makes sure the membership records this member's current addresses `me`: here if this
/// member leads, otherwise by asking the leader. Failures are logged; the caller asks again
/// later.
pub async fn ensure_recorded(to_leader: &Forwarder, me: &MemberNode) {
    let raft = to_leader.raft();
    let my_id = to_leader.my_id();
    let recorded = {
        let m = raft.metrics();
        let m = m.borrow();
        m.membership_config.membership().get_node(&my_id).cloned()
    };
    match recorded {
        Some(n) if n == *me => return,
        None => return,
        Some(_) => {}
    }
    let member = pb::MemberNode {
        id: my_id,
        peer_addr: me.peer_addr.clone(),
        client_addr: me.client_addr.clone(),
    };
    match to_leader.leader() {
        Ok(Leader::Here) => {
            if let Err(e) = update_member(raft, member).await {
                debug!(error = %e, "could not record this member's addresses");
            }
        }
        Ok(Leader::There(to)) => {
            let req = pb::UpdateMemberRequest {
                member: Some(member),
            };
            let sent = to_leader
                .call(&to, &RECORD_ADDRESSES, req, |mut c, r| async move {
                    c.update_member(r).await
                })
                .await;
            if let Err(e) = sent {
                debug!(error = %e, "leader could not record this member's addresses");
            }
        }
        Err(_) => {}
    }
}
