//! Raft's network over weft links (the RPC layer, control lane).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::alias::{SnapshotOf, VoteOf};
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable};
use openraft::network::{RPCOption, RPCTypes};
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
    /// asked by a node catching up after start. Kept for older nodes;
    /// this version asks `READ_INDEX_TYPED`.
    pub const READ_INDEX: u8 = 8;
    /// `PROPOSE` with openraft's typed result (forward-to-leader, fatal)
    /// in the reply body instead of an error string.
    pub const PROPOSE_TYPED: u8 = 9;
    /// `READ_INDEX` with openraft's typed result in the reply body.
    pub const READ_INDEX_TYPED: u8 = 10;
    /// An owner asks the leader to confirm its map epoch (lease renewal);
    /// the leader answers after a quorum-confirmed read index.
    pub const RENEW: u8 = 11;
    /// Raft pre-vote: would the peer vote for this candidate at the next
    /// term (nothing persisted)?
    pub const PRE_VOTE: u8 = 12;
    /// Many routed events to one owner in one request (chunks per shard,
    /// in order); one reply per event. Older nodes answer "unknown
    /// method" and get `ROUTE` per event instead.
    pub const ROUTE_BATCH: u8 = 13;
}

/// A full snapshot on the wire.
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotRpc {
    pub vote: VoteOf<C>,
    pub meta: openraft::alias::SnapshotMetaOf<C>,
    pub data: SnapshotData,
}

/// Why a shard service call failed, before any typed answer of the
/// remote service could be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// The RPC layer failed (unreachable, no reply in time, remote method
    /// failed).
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The request or the reply could not be (de)serialised.
    #[error("codec: {0}")]
    Codec(#[from] serde_json::Error),
}

/// Calls `method` on `node` with a JSON body and decodes a JSON reply.
pub(crate) async fn call_json<Req: Serialize, Resp: DeserializeOwned>(
    rpc: &Rpc,
    node: &str,
    method: u8,
    req: &Req,
    timeout: Duration,
) -> Result<Resp, CallError> {
    let body = serde_json::to_vec(req)?;
    let reply = rpc.call(node, method, Bytes::from(body), timeout).await?;
    Ok(serde_json::from_slice(&reply)?)
}

/// Creates clients to other nodes.
pub(crate) struct Network {
    pub rpc: Arc<Rpc>,
    /// This node's Raft id (named in timeout errors).
    pub local: u64,
    pub timeout: Duration,
}

/// A client to one node (by name).
pub(crate) struct Client {
    rpc: Arc<Rpc>,
    local: u64,
    target: u64,
    node: String,
    timeout: Duration,
}

impl Client {
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: u8,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        call_json(&self.rpc, &self.node, method, req, timeout).await
    }

    /// Openraft's view of a failed call: a timeout stays a timeout (retry
    /// soon); anything else is unreachable (back off): the remote Raft
    /// only fails when it is stopping, and an undecodable message will
    /// not decode on a retry either.
    fn rpc_error(&self, action: RPCTypes, e: CallError, timeout: Duration) -> RPCError<C> {
        match e {
            CallError::Rpc(RpcError::Timeout) => RPCError::Timeout(Timeout {
                action,
                id: self.local,
                target: self.target,
                timeout,
            }),
            other => RPCError::Unreachable(Unreachable::new(&other)),
        }
    }
}

impl RaftNetworkFactory<C> for Network {
    type Network = Client;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        Client {
            rpc: self.rpc.clone(),
            local: self.local,
            target,
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
            .map_err(|e| self.rpc_error(RPCTypes::AppendEntries, e, t))
    }

    async fn vote(&mut self, rpc: VoteRequest<C>, option: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        let t = option.hard_ttl().min(self.timeout);
        self.call(method::VOTE, &rpc, t)
            .await
            .map_err(|e| self.rpc_error(RPCTypes::Vote, e, t))
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        let t = option.hard_ttl().min(self.timeout);
        let vote = rpc.vote;
        match self.call(method::PRE_VOTE, &rpc, t).await {
            Ok(r) => Ok(r),
            // A node of an older version fails the unknown method: count
            // it as granting, as openraft does for a network without
            // pre-vote, so a cluster mid-upgrade still elects.
            Err(CallError::Rpc(RpcError::Remote(_))) => Ok(VoteResponse::new(vote, None, true)),
            Err(e) => Err(self.rpc_error(RPCTypes::Vote, e, t)),
        }
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
        self.call(method::SNAPSHOT, &req, t).await.map_err(|e| {
            match self.rpc_error(RPCTypes::InstallSnapshot, e, t) {
                RPCError::Timeout(t) => StreamingError::Timeout(t),
                RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                RPCError::Network(n) => StreamingError::Network(n),
                RPCError::RemoteError(r) => match r.source {},
            }
        })
    }
}
