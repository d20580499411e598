//! Connections to the other members' peer ports, shared by the Raft network, the proposer
//! (forwarding writes), read barriers (read index) and housekeeping (liveness, membership).
//!
//! One lazily connected channel per member, wrapped in the fault-injection layer. Addresses
//! come from the replicated membership, so a member's address change reaches everyone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::ServerState;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Endpoint;

use super::faults::{FaultService, Faults, LinkCut};
use super::identity::{ClusterIdentity, ClusterStamp};
use super::{MemberNode, Raft};
use crate::error::BatonError;
use crate::proto::raft::raft_client::RaftClient;
use crate::tls::Tls;

/// Largest peer message (AppendEntries batches, snapshot chunks, forwarded writes).
pub const MAX_PEER_MESSAGE: usize = 64 * 1024 * 1024;

/// A peer RPC client: every request carries the member's cluster id.
pub type PeerClient = RaftClient<InterceptedService<FaultService, ClusterStamp>>;

/// The member's outgoing peer connections.
pub struct Peers {
    my_id: u64,
    identity: Arc<ClusterIdentity>,
    faults: Arc<Faults>,
    /// TLS for outgoing connections (`None`: plaintext).
    tls: Option<Arc<Tls>>,
    /// Cached clients by member: the address and TLS generation they were built for.
    clients: Mutex<HashMap<u64, (String, u64, PeerClient)>>,
}

impl Peers {
    /// Connections of member `my_id` of the cluster `identity`, subject to `faults`.
    pub fn new(my_id: u64, identity: Arc<ClusterIdentity>, faults: Arc<Faults>) -> Arc<Peers> {
        Self::with_tls(my_id, identity, faults, None)
    }

    /// As [`Peers::new`], over TLS when `tls` is given: connections present the member's
    /// certificate, and after a reload new connections use the new files.
    pub fn with_tls(
        my_id: u64,
        identity: Arc<ClusterIdentity>,
        faults: Arc<Faults>,
        tls: Option<Arc<Tls>>,
    ) -> Arc<Peers> {
        Arc::new(Peers {
            my_id,
            identity,
            faults,
            tls,
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// This member's id.
    pub fn my_id(&self) -> u64 {
        self.my_id
    }

    /// The fault controller of this member's outgoing links.
    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }

    /// A client for member `id` at `addr` (cached; rebuilt if the address changed).
    ///
    /// # Errors
    /// `UNAVAILABLE` for an unusable address.
    pub fn client(&self, id: u64, addr: &str) -> Result<PeerClient, BatonError> {
        let tls = self.tls.as_ref().map(|t| t.peer_client());
        let generation = tls.as_ref().map_or(0, |(g, _)| *g);
        let mut g = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((a, gen, c)) = g.get(&id) {
            if a == addr && *gen == generation {
                return Ok(c.clone());
            }
        }
        let bare = addr
            .strip_prefix("http://")
            .or_else(|| addr.strip_prefix("https://"))
            .unwrap_or(addr);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let bad = |e: &dyn std::fmt::Display| {
            BatonError::Unavailable(format!("bad peer address {addr:?}: {e}"))
        };
        let mut endpoint =
            Endpoint::from_shared(format!("{scheme}://{bare}")).map_err(|e| bad(&e))?;
        if let Some((_, config)) = tls {
            endpoint = endpoint.tls_config(config).map_err(|e| bad(&e))?;
        }
        let channel = endpoint
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .connect_lazy();
        let client = RaftClient::with_interceptor(
            FaultService::new(channel, self.my_id, id, self.faults.clone()),
            ClusterStamp::new(self.identity.clone(), self.my_id),
        )
        .max_decoding_message_size(MAX_PEER_MESSAGE)
        .max_encoding_message_size(MAX_PEER_MESSAGE);
        g.insert(id, (addr.to_string(), generation, client.clone()));
        Ok(client)
    }

    /// A client for the current leader, if it is another member.
    ///
    /// # Errors
    /// `UNAVAILABLE` if no leader is known.
    pub fn leader_client(&self, raft: &Raft) -> Result<(u64, PeerClient), BatonError> {
        let (id, node) = leader(raft).ok_or_else(|| BatonError::Unavailable("no leader".into()))?;
        Ok((id, self.client(id, &node.peer_addr)?))
    }
}

/// The current leader and its addresses, as this member knows them.
pub fn leader(raft: &Raft) -> Option<(u64, MemberNode)> {
    let m = raft.metrics();
    let m = m.borrow();
    let id = m.current_leader?;
    let node = m.membership_config.membership().get_node(&id)?.clone();
    Some((id, node))
}

/// Whether this member is the leader now.
pub fn is_leader(raft: &Raft, my_id: u64) -> bool {
    let m = raft.metrics();
    let m = m.borrow();
    m.state == ServerState::Leader && m.current_leader == Some(my_id)
}

/// The term in which this member leads now, if it does.
pub fn leading_term(raft: &Raft, my_id: u64) -> Option<u64> {
    let m = raft.metrics();
    let m = m.borrow();
    (m.state == ServerState::Leader && m.current_leader == Some(my_id)).then_some(m.current_term)
}

/// Resolves once this member no longer leads in `term` (it stepped down, or a later term
/// began).
pub async fn until_not_leading(raft: &Raft, my_id: u64, term: u64) {
    let mut rx = raft.metrics();
    let _ = rx
        .wait_for(|m| {
            !(m.state == ServerState::Leader
                && m.current_leader == Some(my_id)
                && m.current_term == term)
        })
        .await;
}

/// Resolves once this member knows a leader other than `leader`: used to give up on a call to
/// a leader that stopped answering (paused, cut off) instead of waiting out its timeout.
pub async fn until_leader_changes(raft: &Raft, leader: u64) {
    let mut rx = raft.metrics();
    let _ = rx
        .wait_for(|m| m.current_leader.is_some() && m.current_leader != Some(leader))
        .await;
}

/// Waits up to `timeout` for some leader to be known.
pub async fn wait_for_leader(raft: &Raft, timeout: Duration) -> Option<u64> {
    let mut rx = raft.metrics();
    let r = tokio::time::timeout(timeout, rx.wait_for(|m| m.current_leader.is_some())).await;
    match r {
        Ok(Ok(m)) => m.current_leader,
        _ => None,
    }
}

/// Maps a failed peer call to a domain error. A call that cannot have reached the other
/// member (the connection could not be made, or fault injection dropped it) was not delivered
/// (`UNAVAILABLE`); any other failure, a connection that broke after the request was written
/// included, may have been (`OUTCOME_UNKNOWN` if `may_have_applied`).
pub fn status_error(what: &str, s: &tonic::Status, may_have_applied: bool) -> BatonError {
    let msg = format!("{what}: {}", s.message());
    if !may_have_applied || not_delivered(s) {
        BatonError::Unavailable(msg)
    } else {
        BatonError::OutcomeUnknown(msg)
    }
}

/// Whether a failed peer call never left this member: judged by the error's type, never by its
/// text ("connection reset" also names a connection).
fn not_delivered(s: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(s);
    while let Some(err) = source {
        if err.is::<tonic::ConnectError>() || err.is::<LinkCut>() {
            return true;
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests;
