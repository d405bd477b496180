//! The Raft type configuration of the shard map.

use serde::{Deserialize, Serialize};

/// A change to the replicated shard map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardCommand {
    /// Replace the owners if the map is still at `expected_epoch`
    /// (compare-and-set); the epoch then grows by one. The first command
    /// fixes the shard count.
    SetOwners {
        /// The epoch the proposer planned against.
        expected_epoch: u64,
        /// The owner of each shard.
        owners: Vec<Option<String>>,
    },
}

/// The state machine's answer to a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardResponse {
    /// Applied; the map is now at this epoch.
    Applied {
        /// The new epoch.
        epoch: u64,
    },
    /// Not applied: the map had moved on to this epoch.
    Conflict {
        /// The current epoch.
        epoch: u64,
    },
    /// A blank or membership entry.
    Nothing,
}

openraft::declare_raft_types!(
    /// weft's Raft types: commands are shard map changes, node ids are the
    /// FNV-1a hash of the node name, a node's address is its name.
    pub TypeConfig:
        D = ShardCommand,
        R = ShardResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
);

/// The Raft node id of a weft node name.
pub fn raft_id(name: &str) -> u64 {
    weft_proto::shard::fnv1a64(name.as_bytes())
}

impl std::fmt::Display for ShardCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShardCommand::SetOwners {
                expected_epoch,
                owners,
            } => write!(
                f,
                "set-owners(after epoch {expected_epoch}, {} shards)",
                owners.len()
            ),
        }
    }
}

impl std::fmt::Display for ShardResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}
