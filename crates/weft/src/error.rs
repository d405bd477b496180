//! Errors of the node runtime, one enum per layer.

use std::path::PathBuf;

use weft_proto::node_id::InvalidName;

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The node name is not usable.
    #[error("node name {0:?}: {1}")]
    Name(String, InvalidName),
    /// The cluster name is not usable.
    #[error("cluster name {0:?}: {1}")]
    Cluster(String, InvalidName),
    /// The secret is shorter than [`crate::config::MIN_SECRET_LEN`].
    #[error("the cluster secret has {0} bytes; at least 16 are required")]
    SecretTooShort(usize),
    /// `max_frame` is out of range.
    #[error("max_frame {0} is out of range (4096 ..= 4294967295)")]
    MaxFrame(usize),
    /// Inconsistent membership timing.
    #[error("membership: {0}")]
    Membership(&'static str),
    /// Inconsistent messaging settings.
    #[error("messaging: {0}")]
    Messaging(&'static str),
    /// Inconsistent shard settings.
    #[error("shards: {0}")]
    Shards(&'static str),
    /// Inconsistent relay settings.
    #[error("relay: {0}")]
    Relay(&'static str),
    /// Inconsistent link timing.
    #[error("link: {0}")]
    Link(&'static str),
    /// A TLS file is missing.
    #[error("TLS file {0} does not exist")]
    TlsFile(PathBuf),
    /// A TLS file could not be read or used.
    #[error("TLS: {0}")]
    Tls(String),
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The cluster address could not be bound (in use, not local, ...).
    #[error("cannot bind cluster address {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The consensus state under the data directory cannot be used
    /// (corrupt, or from another cluster or node).
    #[error("shard consensus state: {0}")]
    Raft(#[from] crate::shards::store::StoreError),
    /// The data directory could not be used.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Why a frame was not queued for a peer. Nothing is dropped silently:
/// every refusal reaches the caller as one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No member by that name is known.
    #[error("no known member named {0:?}")]
    UnknownPeer(String),
    /// The member is down (or left); its link is gone.
    #[error("member {0:?} is down")]
    NodeDown(String),
    /// `try_send` only: the peer's send queue is full.
    #[error("send queue to {0:?} is full")]
    Full(String),
    /// The frame exceeds the maximum frame size.
    #[error("frame of {len} bytes exceeds max_frame {max}")]
    TooLarge {
        /// Frame length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The local node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
}

impl SendError {
    /// A short static label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            SendError::UnknownPeer(_) => "unknown_peer",
            SendError::NodeDown(_) => "node_down",
            SendError::Full(_) => "queue_full",
            SendError::TooLarge { .. } => "too_large",
            SendError::ShuttingDown => "shutting_down",
        }
    }
}
