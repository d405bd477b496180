//! The shard service's RPC dispatch: decodes each method's request,
//! calls the service, encodes the reply. Method numbers and bodies are in
//! `network::method` and docs/wire.md.

use std::sync::Weak;

use bytes::Bytes;
use serde::Serialize;
use tracing::warn;
use weft_proto::NodeId;

use super::handoff::Released;
use super::network::{SnapshotRpc, method};
use super::service::Shards;
use super::types::ShardCommand;
use crate::rpc::{RpcFuture, RpcHandler};
use openraft::ReadPolicy;

pub(super) struct ShardsRpc {
    pub(super) shards: Weak<Shards>,
}

fn json<T: Serialize>(v: &T) -> Result<Bytes, String> {
    serde_json::to_vec(v).map(Bytes::from).map_err(|e| e.to_string())
}

impl RpcHandler for ShardsRpc {
    fn handle(&self, _from: NodeId, m: u8, payload: Bytes) -> RpcFuture {
        let shards = self.shards.clone();
        Box::pin(async move {
            let s = shards.upgrade().ok_or("shutting down")?;
            match m {
                method::APPEND => {
                    let req = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
                    json(&s.raft.append_entries(req).await.map_err(|e| e.to_string())?)
                }
                method::VOTE => {
                    let req = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
                    json(&s.raft.vote(req).await.map_err(|e| e.to_string())?)
                }
                method::SNAPSHOT => {
                    let req: SnapshotRpc = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
                    let snap = openraft::Snapshot {
                        meta: req.meta,
                        snapshot: req.data,
                    };
                    json(
                        &s.raft
                            .install_full_snapshot(req.vote, snap)
                            .await
                            .map_err(|e| e.to_string())?,
                    )
                }
                method::PROPOSE_TYPED => {
                    let cmd: ShardCommand = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
                    json(&s.serve_propose(cmd).await)
                }
                method::READ_INDEX_TYPED => json(&s.serve_read_index().await),
                method::ROUTE => s.serve_route(payload).await,
                method::ROUTE_BATCH => s.serve_route_batch(payload).await,
                method::RELEASED => {
                    // Only a wake-up: the handoff asks every node's status.
                    let _: Released = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
                    s.handoff.notify_one();
                    Ok(Bytes::new())
                }
                method::RENEW => {
                    let epoch: u64 = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
                    json(&s.serve_renew(epoch).await)
                }
                method::PRE_VOTE => {
                    let req = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
                    json(&s.raft.pre_vote(req).await.map_err(|e| e.to_string())?)
                }
                method::STATUS => postcard::to_allocvec(&s.status())
                    .map(Bytes::from)
                    .map_err(|e| e.to_string()),
                method::READ_INDEX => {
                    if !s.is_leader() {
                        return Err("not the leader".into());
                    }
                    let r = s
                        .raft
                        .ensure_linearizable(ReadPolicy::ReadIndex)
                        .await
                        .map_err(|e| e.to_string())?;
                    postcard::to_allocvec(&r.index())
                        .map(Bytes::from)
                        .map_err(|e| e.to_string())
                }
                method::PROPOSE => {
                    let cmd: ShardCommand = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
                    if !s.is_leader() {
                        return Err("not the leader".into());
                    }
                    let r = s.raft.client_write(cmd).await.map_err(|e| e.to_string())?;
                    json(&r.data)
                }
                other => {
                    warn!(method = other, "unknown rpc method");
                    Err(format!("unknown method {other}"))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_after_the_service_stopped_fails_cleanly() {
        let rpc = ShardsRpc { shards: Weak::new() };
        let r = rpc
            .handle(NodeId::new("n1", 1), method::STATUS, Bytes::new())
            .await;
        assert!(r.is_err(), "no service: an error reply, no panic");
    }
}
