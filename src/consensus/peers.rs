//! Connections to the other members' peer ports, shared by the Raft network, the failover
//! fast path and every request sent to the leader ([`super::forward`]); and what a failed peer
//! call means.
//!
//! One lazily connected channel per member, wrapped in the fault-injection layer. Addresses
//! come from the replicated membership, so a member's address change reaches everyone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::Endpoint;

use super::faults::{FaultService, Faults, LinkCut};
use super::identity::{ClusterIdentity, ClusterStamp};
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
