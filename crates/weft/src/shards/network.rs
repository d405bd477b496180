//! Raft's network over weft links (the RPC layer, control lane).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::alias::{SnapshotOf, VoteOf};
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetworkFactory, RaftNetworkV2};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::store::SnapshotData;
use super::types::TypeConfig;
use crate::rpc::{Rpc, RpcError};

type C = TypeConfig;

/// Method numbers of the shard service.
pub(crate) mod method {
    /// Raft append-entries.
    pub const APPEND: u8 = 1;
    /// Raft vote.
    pub const VOTE: u8 = 2;
    /// Raft full snapshot.
    pub const SNAPSHOT: u8 = 3;
    /// Deliver a routed event to the shard owner.
    pub const ROUTE: u8 = 4;
    /// The old owner released a shard: a wake-up for the new owner's
    /// handoff check (the handoff itself is decided from `STATUS`
    /// replies, so a lost notice only costs one retry interval).
    pub const RELEASED: u8 = 5;
    /// A follower forwards a proposal to the leader.
    pub const PROPOSE: u8 = 6;
    /// Which shards a node accepts events for, at which map epoch
    /// (asked by a node waiting to take shards over).
    pub const STATUS: u8 = 7;
    /// The leader's read index (a commit index confirmed by a quorum),
    /// asked by a node catching up after start.
    pub const READ_INDEX: u8 = 8;
}

/// A full snapshot on the wire.
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotRpc {
    pub vote: VoteOf<C>,
    pub meta: openraft::alias::SnapshotMetaOf<C>,
    pub data: SnapshotData,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct NetErr(String);

fn unreachable(e: impl ToString) -> Unreachable<C> {
    Unreachable::new(&NetErr(e.to_string()))
}

/// Creates clients to other nodes.
pub(crate) struct Network {
    pub rpc: Arc<Rpc>,
    pub timeout: Duration,
}

/// A client to one node (by name).
pub(crate) struct Client {
    rpc: Arc<Rpc>,
    node: String,
    timeout: Duration,
}

impl Client {
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: u8,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, String> {
        let body = serde_json::to_vec(req).map_err(|e| e.to_string())?;
        let reply = self
            .rpc
            .call(&self.node, method, Bytes::from(body), timeout)
            .await
            .map_err(|e: RpcError| e.to_string())?;
        serde_json::from_slice(&reply).map_err(|e| e.to_string())
    }
}

impl RaftNetworkFactory<C> for Network {
    type Network = Client;

    async fn new_client(&mut self, _target: u64, node: &BasicNode) -> Self::Network {
        Client {
            rpc: self.rpc.clone(),
            node: node.addr.clone(),
            timeout: self.timeout,
        }
    }
}

impl RaftNetworkV2<C> for Client {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        let t = option.hard_ttl().min(self.timeout);
        self.call(method::APPEND, &rpc, t)
            .await
            .map_err(|e| RPCError::Unreachable(unreachable(e)))
    }

    async fn vote(&mut self, rpc: VoteRequest<C>, option: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        let t = option.hard_ttl().min(self.timeout);
        self.call(method::VOTE, &rpc, t)
            .await
            .map_err(|e| RPCError::Unreachable(unreachable(e)))
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, SnapshotData>,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let req = SnapshotRpc {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot,
        };
        let t = option.hard_ttl().max(self.timeout);
        self.call(method::SNAPSHOT, &req, t)
            .await
            .map_err(|e| StreamingError::Unreachable(unreachable(e)))
    }
}
