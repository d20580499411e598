//! Who leads, and the way to it. Every request that only the leader may serve (forwarded
//! writes from [`super::proposer`], the read index of [`super::reads`], administration from
//! [`crate::api::cluster`], keepalives from [`super::housekeeping`], address records from
//! [`super::membership`]) finds the leader here, waits here (bounded) for one to be known,
//! and is sent to it here, over the member's peer connections ([`super::peers`]).
//!
//! Who leads is read from one look at openraft's server metrics (role, leader, vote,
//! membership), so "this member leads" and "member N leads" are never decided from two
//! different moments. That channel changes only when those do, so a batch waiting on it for
//! its leader to step down is not woken by every append, as it would be on the full metrics. A member that openraft names as the
//! leader while it is not in the leader state (taking over, or stepping down) serves nothing
//! and sends nothing to itself: the request is refused as UNAVAILABLE, safe to retry.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openraft::metrics::RaftServerMetrics;
use openraft::ServerState;

use super::peers::{status_error, PeerClient, Peers};
use super::{MemberNode, Raft};
use crate::error::BatonError;

/// How long a request waits for a leader to be known before it is refused as UNAVAILABLE.
pub const LEADER_WAIT: Duration = Duration::from_secs(3);

/// Where a request for the leader is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leader {
    /// This member leads.
    Here,
    /// Another member leads.
    There(Remote),
}

/// The leader when it is another member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    /// Its member id.
    pub id: u64,
    /// Its peer address, from the replicated membership.
    pub peer_addr: String,
}

/// One kind of request sent to the leader's peer port: what it is called in errors, how long
/// it may take, and what its failures mean.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    /// Names the call in error messages ("forwarding to the leader").
    pub what: &'static str,
    /// Deadline of the whole call.
    pub timeout: Duration,
    /// Whether the leader may act on the request (a write, a membership change): a call that
    /// may have reached the leader and then failed has an unknown outcome (`OUTCOME_UNKNOWN`)
    /// rather than none (`UNAVAILABLE`).
    pub may_apply: bool,
    /// Whether to give up as soon as this member knows another leader, so that a leader that
    /// stops answering (paused, cut off) does not hold the caller for the whole timeout.
    /// Not for a call that itself changes the leader (a leadership transfer).
    pub until_deposed: bool,
}

impl Call {
    /// The error of a call given up because `leader` stopped leading before it answered.
    fn deposed(&self, leader: u64) -> BatonError {
        let what = self.what;
        if self.may_apply {
            BatonError::OutcomeUnknown(format!(
                "{what}: member {leader} stopped leading before it answered; \
                 the request may or may not have been applied"
            ))
        } else {
            BatonError::Unavailable(format!(
                "{what}: member {leader} stopped leading before it answered; retry"
            ))
        }
    }
}

/// This member's way to the leader: its view of the leadership and its peer connections.
#[derive(Clone)]
pub struct Forwarder {
    raft: Raft,
    peers: Arc<Peers>,
}

impl Forwarder {
    /// The way to the leader for the member that `peers` belong to.
    pub fn new(raft: Raft, peers: Arc<Peers>) -> Self {
        Forwarder { raft, peers }
    }

    /// The Raft handle the leadership is read from.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// This member's id.
    pub fn my_id(&self) -> u64 {
        self.peers.my_id()
    }

    /// Where the leader is now.
    ///
    /// # Errors
    /// `UNAVAILABLE` if no leader is known, or this member is between roles.
    pub fn leader(&self) -> Result<Leader, BatonError> {
        locate(&self.raft.server_metrics().borrow(), self.peers.my_id())
    }

    /// Where the leader is, after waiting up to `wait` for one to be known if none is.
    ///
    /// # Errors
    /// As [`Forwarder::leader`].
    pub async fn find_leader(&self, wait: Duration) -> Result<Leader, BatonError> {
        if self.raft.server_metrics().borrow().current_leader.is_none() {
            let mut rx = self.raft.server_metrics();
            let _ = tokio::time::timeout(wait, rx.wait_for(|m| m.current_leader.is_some())).await;
        }
        self.leader()
    }

    /// After a call to the leader `old` failed without reaching it, waits up to `wait` for a
    /// leader other than `old`, and tells where it is.
    ///
    /// # Errors
    /// `UNAVAILABLE` if no other leader is known in time; as [`Forwarder::leader`].
    pub async fn next_leader(&self, old: u64, wait: Duration) -> Result<Leader, BatonError> {
        let mut rx = self.raft.server_metrics();
        // The guard `wait_for` returns is dropped here: `leader()` borrows the metrics again,
        // and a second read of the channel's lock while openraft waits to publish deadlocks.
        let found = matches!(
            tokio::time::timeout(wait, rx.wait_for(|m| other_leader(m, old))).await,
            Ok(Ok(_))
        );
        match found {
            true => self.leader(),
            false => Err(BatonError::Unavailable(format!(
                "no leader other than member {old} within {} ms",
                wait.as_millis()
            ))),
        }
    }

    /// Sends `msg` to the leader `to` with `rpc` (one method of the peer client), as `call`
    /// describes, and returns the leader's answer.
    ///
    /// # Errors
    /// `UNAVAILABLE` if the call did not reach the leader (or, unless `call.may_apply`, failed
    /// at all); `OUTCOME_UNKNOWN` if it may have reached the leader and failed after.
    pub async fn call<Req, Resp, Fut>(
        &self,
        to: &Remote,
        call: &Call,
        msg: Req,
        rpc: impl FnOnce(PeerClient, tonic::Request<Req>) -> Fut,
    ) -> Result<Resp, BatonError>
    where
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let client = self.peers.client(to.id, &to.peer_addr)?;
        let mut req = tonic::Request::new(msg);
        req.set_timeout(call.timeout);
        let reply = rpc(client, req);
        let reply = if call.until_deposed {
            tokio::select! {
                r = reply => r,
                () = until_leader_changes(&self.raft, to.id) => return Err(call.deposed(to.id)),
            }
        } else {
            reply.await
        };
        reply
            .map(tonic::Response::into_inner)
            .map_err(|s| status_error(call.what, &s, call.may_apply))
    }
}

/// Where the leader is in `m`, as member `my_id` sees it.
fn locate(m: &RaftServerMetrics<u64, MemberNode>, my_id: u64) -> Result<Leader, BatonError> {
    match m.current_leader {
        Some(id) if id == my_id && m.state == ServerState::Leader => Ok(Leader::Here),
        Some(id) if id == my_id => Err(BatonError::Unavailable(
            "this member is between roles; retry".into(),
        )),
        Some(id) => match m.membership_config.membership().get_node(&id) {
            Some(node) => Ok(Leader::There(Remote {
                id,
                peer_addr: node.peer_addr.clone(),
            })),
            None => Err(BatonError::Unavailable("no leader".into())),
        },
        None => Err(BatonError::Unavailable("no leader".into())),
    }
}

fn other_leader(m: &RaftServerMetrics<u64, MemberNode>, old: u64) -> bool {
    m.current_leader.is_some() && m.current_leader != Some(old)
}

/// Whether member `my_id` is the leader now.
pub fn is_leader(raft: &Raft, my_id: u64) -> bool {
    leading_term(raft, my_id).is_some()
}

/// The term in which member `my_id` leads now, if it does.
pub fn leading_term(raft: &Raft, my_id: u64) -> Option<u64> {
    let m = raft.server_metrics();
    let m = m.borrow();
    (m.state == ServerState::Leader && m.current_leader == Some(my_id))
        .then_some(m.vote.leader_id().term)
}

/// Resolves once member `my_id` no longer leads in `term` (it stepped down, or a later term
/// began).
pub async fn until_not_leading(raft: &Raft, my_id: u64, term: u64) {
    let mut rx = raft.server_metrics();
    let _ = rx
        .wait_for(|m| {
            !(m.state == ServerState::Leader
                && m.current_leader == Some(my_id)
                && m.vote.leader_id().term == term)
        })
        .await;
}

/// Resolves once this member knows a leader other than `leader`.
async fn until_leader_changes(raft: &Raft, leader: u64) {
    let mut rx = raft.server_metrics();
    let _ = rx.wait_for(|m| other_leader(m, leader)).await;
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{Membership, StoredMembership};

    use super::*;

    fn metrics(state: ServerState, leader: Option<u64>) -> RaftServerMetrics<u64, MemberNode> {
        let nodes = BTreeMap::from([1, 2].map(|id| {
            let node = MemberNode {
                peer_addr: format!("10.0.0.{id}:7421"),
                client_addr: String::new(),
            };
            (id, node)
        }));
        let membership = Membership::new(vec![BTreeSet::from([1, 2])], nodes);
        RaftServerMetrics {
            id: 1,
            vote: openraft::Vote::default(),
            state,
            current_leader: leader,
            membership_config: Arc::new(StoredMembership::new(None, membership)),
        }
    }

    #[test]
    fn the_leader_state_and_the_leader_id_together_make_this_member_the_leader() {
        let m = metrics(ServerState::Leader, Some(1));
        assert_eq!(locate(&m, 1), Ok(Leader::Here));
    }

    #[test]
    fn a_member_named_leader_out_of_the_leader_state_sends_nothing_to_itself() {
        for state in [ServerState::Follower, ServerState::Candidate] {
            let m = metrics(state, Some(1));
            assert!(
                matches!(locate(&m, 1), Err(BatonError::Unavailable(_))),
                "{state:?}"
            );
        }
    }

    #[test]
    fn another_leader_is_reached_at_its_recorded_peer_address() {
        let m = metrics(ServerState::Follower, Some(2));
        let want = Leader::There(Remote {
            id: 2,
            peer_addr: "10.0.0.2:7421".into(),
        });
        assert_eq!(locate(&m, 1), Ok(want));
    }

    #[test]
    fn no_leader_or_one_missing_from_the_membership_is_unavailable() {
        for leader in [None, Some(3)] {
            let m = metrics(ServerState::Follower, leader);
            assert!(
                matches!(locate(&m, 1), Err(BatonError::Unavailable(_))),
                "{leader:?}"
            );
        }
    }

    #[test]
    fn a_call_given_up_on_a_deposed_leader_is_unknown_only_if_it_could_apply() {
        let mut call = Call {
            what: "x",
            timeout: Duration::from_secs(1),
            may_apply: true,
            until_deposed: true,
        };
        assert!(matches!(call.deposed(2), BatonError::OutcomeUnknown(_)));
        call.may_apply = false;
        assert!(matches!(call.deposed(2), BatonError::Unavailable(_)));
    }
}
