//! The Raft network for a single-member cluster: there are no peers to reach, so every RPC
//! reports the target unreachable (openraft then backs off instead of retrying hot).

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::{MemberNode, TypeConfig};

/// Network factory of a member with no peers.
#[derive(Clone, Default)]
pub struct NoPeers;

/// A connection to a peer that does not exist.
pub struct NoPeer {
    target: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("member {0} is not reachable: this member runs as a single-member cluster")]
struct NotReachable(u64);

impl NoPeer {
    fn err<E: std::error::Error>(&self) -> RPCError<u64, MemberNode, E> {
        RPCError::Unreachable(Unreachable::new(&NotReachable(self.target)))
    }
}

impl RaftNetworkFactory<TypeConfig> for NoPeers {
    type Network = NoPeer;

    async fn new_client(&mut self, target: u64, _node: &MemberNode) -> NoPeer {
        NoPeer { target }
    }
}

impl RaftNetwork<TypeConfig> for NoPeer {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, MemberNode, RaftError<u64>>> {
        Err(self.err())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, MemberNode, RaftError<u64, InstallSnapshotError>>,
    > {
        Err(self.err())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, MemberNode, RaftError<u64>>> {
        Err(self.err())
    }
}
