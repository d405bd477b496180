//! Proposals and read-index queries through the leader, with openraft's
//! typed errors kept end to end: a non-leader answers with its
//! `ForwardToLeader` (which the proposer follows once), the leader's
//! Raft errors travel as values, and RPC failures stay timeout,
//! unreachable or remote. Nothing here looks into an error's text.

use std::sync::atomic::Ordering;

use openraft::ReadPolicy;
use openraft::error::{ClientWriteError, ForwardToLeader, LinearizableReadError, RaftError};
use tracing::{debug, info};

use super::network::{CallError, call_json, method};
use super::service::Shards;
use super::types::{ShardCommand, ShardResponse, TypeConfig};
use crate::rpc::RpcError;

type C = TypeConfig;

/// The leader's reply to `PROPOSE_TYPED`.
pub(super) type ProposeReply = Result<ShardResponse, RaftError<C, ClientWriteError<C>>>;
/// The leader's reply to `READ_INDEX_TYPED`.
pub(super) type ReadIndexReply = Result<u64, RaftError<C, LinearizableReadError<C>>>;

/// Why a proposal did not reach a verdict.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProposeError {
    /// This node knows no leader.
    #[error("no shard map leader known")]
    NoLeader,
    /// The node asked is not the leader, also after following its hint
    /// once.
    #[error(transparent)]
    ForwardToLeader(ForwardToLeader<C>),
    /// The leader's Raft refused or failed the write (it is stopping, or
    /// the entry was discarded by a leader change).
    #[error(transparent)]
    Raft(RaftError<C, ClientWriteError<C>>),
    /// The leader could not be asked.
    #[error("asking {leader}: {source}")]
    Call {
        /// The node asked.
        leader: String,
        /// What failed.
        source: CallError,
    },
}

impl ProposeError {
    /// The `reason` label of `weft_shard_proposals_failed_total`.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            ProposeError::NoLeader | ProposeError::ForwardToLeader(_) => "not_leader",
            ProposeError::Raft(_) => "error",
            ProposeError::Call { source, .. } => match source {
                CallError::Rpc(RpcError::Timeout) => "timeout",
                CallError::Rpc(RpcError::Unreachable(_)) => "unreachable",
                CallError::Rpc(RpcError::Remote(_)) | CallError::Codec(_) => "error",
            },
        }
    }
}

fn typed(e: RaftError<C, ClientWriteError<C>>) -> ProposeError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ProposeError::ForwardToLeader(f),
        other => ProposeError::Raft(other),
    }
}

impl Shards {
    /// Writes `cmd` through this node's Raft (`None`) or asks `leader`.
    async fn propose_at(
        &self,
        leader: Option<&str>,
        cmd: &ShardCommand,
    ) -> Result<ShardResponse, ProposeError> {
        match leader {
            None => self
                .raft
                .client_write(cmd.clone())
                .await
                .map(|r| r.data)
                .map_err(typed),
            Some(leader) => {
                let reply: ProposeReply = call_json(
                    &self.rpc,
                    leader,
                    method::PROPOSE_TYPED,
                    cmd,
                    self.config.propose_timeout,
                )
                .await
                .map_err(|source| ProposeError::Call {
                    leader: leader.to_string(),
                    source,
                })?;
                reply.map_err(typed)
            }
        }
    }

    /// Proposes `cmd` through the leader, following one forward-to-leader
    /// hint (the leader changed since this node last heard).
    pub(crate) async fn try_propose(&self, cmd: &ShardCommand) -> Result<ShardResponse, ProposeError> {
        let mut target = if self.is_leader() {
            None
        } else {
            Some(self.leader().ok_or(ProposeError::NoLeader)?)
        };
        let mut hinted = false;
        loop {
            match self.propose_at(target.as_deref(), cmd).await {
                Err(ProposeError::ForwardToLeader(f)) if !hinted => {
                    hinted = true;
                    let Some(next) = f.leader_node.as_ref().map(|n| n.addr.clone()) else {
                        return Err(ProposeError::ForwardToLeader(f));
                    };
                    let next = (next != self.local.name).then_some(next);
                    if next == target {
                        return Err(ProposeError::ForwardToLeader(f));
                    }
                    target = next;
                }
                other => return other,
            }
        }
    }

    /// Proposes `cmd`, forwarding to the leader when needed. Failures are
    /// counted by typed reason; nothing changes anywhere unless it
    /// commits. Returns whether it committed.
    pub(crate) async fn propose(&self, cmd: ShardCommand) -> bool {
        match self.try_propose(&cmd).await {
            Ok(ShardResponse::Applied { epoch }) => {
                info!(epoch, "shard map committed");
                self.stats
                    .shard_proposals_committed
                    .fetch_add(1, Ordering::Relaxed);
                true
            }
            Ok(other) => {
                debug!(response = ?other, "proposal not applied");
                self.stats.shard_proposals_failed.inc("conflict");
                false
            }
            Err(e) => {
                debug!(error = %e, "proposal failed");
                self.stats.shard_proposals_failed.inc(e.label());
                false
            }
        }
    }

    /// The leader's read index: this node's own when it leads, else asked
    /// from the leader it knows. `None` (logged) when there is none yet.
    pub(super) async fn leader_read_index(&self) -> Option<u64> {
        if self.is_leader() {
            return match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
                Ok(r) => Some(r.index()),
                Err(e) => {
                    debug!(error = %e, "read index as leader");
                    None
                }
            };
        }
        let leader = self.leader().filter(|l| *l != self.local.name)?;
        let reply: Result<ReadIndexReply, CallError> = call_json(
            &self.rpc,
            &leader,
            method::READ_INDEX_TYPED,
            &(),
            self.config.query_timeout,
        )
        .await;
        match reply {
            Ok(Ok(index)) => Some(index),
            Ok(Err(e)) => {
                debug!(leader = %leader, error = %e, "read index refused");
                None
            }
            Err(e) => {
                debug!(leader = %leader, error = %e, "read index");
                None
            }
        }
    }

    /// Serves `PROPOSE_TYPED`: the write's typed result, as a value.
    pub(super) async fn serve_propose(&self, cmd: ShardCommand) -> ProposeReply {
        self.raft.client_write(cmd).await.map(|r| r.data)
    }

    /// Serves `READ_INDEX_TYPED`: openraft answers `ForwardToLeader` when
    /// this node does not lead.
    pub(super) async fn serve_read_index(&self) -> ReadIndexReply {
        self.raft
            .ensure_linearizable(ReadPolicy::ReadIndex)
            .await
            .map(|r| r.index())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_labels_come_from_the_error_types() {
        let call = |e: RpcError| ProposeError::Call {
            leader: "n1".into(),
            source: CallError::Rpc(e),
        };
        assert_eq!(ProposeError::NoLeader.label(), "not_leader");
        assert_eq!(
            ProposeError::ForwardToLeader(ForwardToLeader::empty()).label(),
            "not_leader"
        );
        // A non-leader's typed answer becomes ForwardToLeader, whatever
        // its message says.
        let remote = RaftError::APIError(ClientWriteError::ForwardToLeader(ForwardToLeader::empty()));
        assert_eq!(typed(remote).label(), "not_leader");
        assert_eq!(call(RpcError::Timeout).label(), "timeout");
        assert_eq!(
            call(RpcError::Unreachable("leader".into())).label(),
            "unreachable"
        );
        // Text mentioning a leader is not a leader error.
        assert_eq!(call(RpcError::Remote("not the leader".into())).label(), "error");
    }

    #[test]
    fn typed_replies_survive_the_wire_format() {
        let reply: ProposeReply = Err(RaftError::APIError(ClientWriteError::ForwardToLeader(
            ForwardToLeader::new(7, openraft::BasicNode { addr: "n2".into() }),
        )));
        let back: ProposeReply =
            serde_json::from_slice(&serde_json::to_vec(&reply).expect("encode")).expect("decode");
        match typed(back.expect_err("an error")) {
            ProposeError::ForwardToLeader(f) => {
                assert_eq!(f.leader_id, Some(7));
                assert_eq!(f.leader_node.map(|n| n.addr), Some("n2".to_string()));
            }
            other => panic!("expected ForwardToLeader, got {other:?}"),
        }
        let ok: ReadIndexReply = Ok(42);
        let back: ReadIndexReply =
            serde_json::from_slice(&serde_json::to_vec(&ok).expect("encode")).expect("decode");
        assert_eq!(back.ok(), Some(42));
    }
}
