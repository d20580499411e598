//! openraft's network over the peer gRPC service: Vote, AppendEntries and InstallSnapshot
//! (chunked by openraft, at most `snapshot_max_chunk_size` per call) to the other members.
//!
//! Connection failures are reported as `Unreachable`, so openraft backs off instead of
//! retrying in a hot loop; an AppendEntries batch over the message limit is split with a
//! `PayloadTooLarge` hint.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use prost::Message;

use super::peers::{Peers, MAX_PEER_MESSAGE};

/// Most bytes of entries one AppendEntries carries (a single larger entry goes alone, up to
/// the message limit). openraft bounds an AppendEntries by the heartbeat interval (50 ms by
/// default), the follower's `fdatasync` included: a member catching up on large batches (a
/// bulk load of Multi requests) must get them in pieces that fit, or every call times out
/// and the follower, hearing nothing, starts an election.
const APPEND_BYTES_BUDGET: usize = 1 << 20;
const _: () = assert!(APPEND_BYTES_BUDGET < MAX_PEER_MESSAGE / 2);
use super::{MemberNode, TypeConfig};
use crate::proto::peer;

/// Creates connections to peers for openraft.
#[derive(Clone)]
pub struct PeerNetwork {
    peers: Arc<Peers>,
}

impl PeerNetwork {
    /// A network over the member's peer connections.
    pub fn new(peers: Arc<Peers>) -> Self {
        PeerNetwork { peers }
    }
}

/// openraft's handle on one peer.
pub struct PeerConn {
    peers: Arc<Peers>,
    target: u64,
    /// Calls in a row that ran out of time (see [`to_rpc_error`]).
    timeouts: u32,
    addr: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct RpcFailure(String);

/// Consecutive calls to one member that ran out of time before it counts as unreachable.
const TIMEOUTS_BEFORE_UNREACHABLE: u32 = 3;

/// A failed peer call as openraft sees it. A member that cannot be reached (`UNAVAILABLE`,
/// `UNKNOWN`: no connection, a connection torn down) is `Unreachable`, which makes openraft
/// back off for 100 ms without sending anything, heartbeats included. A call that ran out
/// of time (`CANCELLED` by its deadline, `DEADLINE_EXCEEDED`) reached a member that may only
/// be slow to answer (a follower writing large batches): backing off at once would starve it
/// of heartbeats until it starts an election, so the first ones in a row are plain network
/// errors, retried at the next heartbeat. From the [`TIMEOUTS_BEFORE_UNREACHABLE`]th on, the
/// member is treated as unreachable (a partition looks like this): a call always in flight
/// to it would keep the leader from ever purging its log.
fn to_rpc_error<E: std::error::Error>(
    s: tonic::Status,
    timeouts: &mut u32,
) -> RPCError<u64, MemberNode, E> {
    let msg = format!("{:?}: {}", s.code(), s.message());
    let timed_out = matches!(
        s.code(),
        tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
    );
    if timed_out {
        *timeouts += 1;
    }
    let unreachable = matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown)
        || (timed_out && *timeouts >= TIMEOUTS_BEFORE_UNREACHABLE);
    if unreachable {
        RPCError::Unreachable(Unreachable::new(&RpcFailure(msg)))
    } else {
        RPCError::Network(NetworkError::new(&RpcFailure(msg)))
    }
}

fn decode_error<E: std::error::Error>(e: crate::proto::CodecError) -> RPCError<u64, MemberNode, E> {
    RPCError::Network(NetworkError::new(&e))
}

impl PeerConn {
    // openraft's RPC error type is large by design; it is returned, not stored.
    #[allow(clippy::result_large_err)]
    fn client<E: std::error::Error>(
        &self,
    ) -> Result<super::peers::PeerClient, RPCError<u64, MemberNode, E>> {
        self.peers
            .client(self.target, &self.addr)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }
}

fn request<T>(msg: T, option: &RPCOption) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(option.hard_ttl());
    r
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConn;

    async fn new_client(&mut self, target: u64, node: &MemberNode) -> PeerConn {
        PeerConn {
            peers: self.peers.clone(),
            target,
            timeouts: 0,
            addr: node.peer_addr.clone(),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerConn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, MemberNode, RaftError<u64>>> {
        let msg = peer::append_req_to_pb(&rpc);
        if msg.encoded_len() > APPEND_BYTES_BUDGET && rpc.entries.len() > 1 {
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint((rpc.entries.len() / 2) as u64),
            ));
        }
        let mut client = self.client()?;
        let resp = client
            .append_entries(request(msg, &option))
            .await
            .map_err(|e| to_rpc_error(e, &mut self.timeouts))?;
        self.timeouts = 0;
        peer::append_resp_from_pb(resp.into_inner()).map_err(decode_error)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, MemberNode, RaftError<u64, InstallSnapshotError>>,
    > {
        let mut client = self.client()?;
        let resp = client
            .install_snapshot(request(peer::snapshot_req_to_pb(&rpc), &option))
            .await
            .map_err(|e| to_rpc_error(e, &mut self.timeouts))?
            .into_inner();
        self.timeouts = 0;
        if let Some(m) = resp.mismatch {
            let err = RaftError::APIError(InstallSnapshotError::SnapshotMismatch(
                peer::mismatch_from_pb(m),
            ));
            return Err(RPCError::RemoteError(RemoteError::new(self.target, err)));
        }
        peer::snapshot_resp_from_pb(resp).map_err(decode_error)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, MemberNode, RaftError<u64>>> {
        let mut client = self.client()?;
        let resp = client
            .vote(request(peer::vote_req_to_pb(&rpc), &option))
            .await
            .map_err(|e| to_rpc_error(e, &mut self.timeouts))?;
        self.timeouts = 0;
        peer::vote_resp_from_pb(resp.into_inner()).map_err(decode_error)
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(Duration::from_millis(100)))
    }
}
