//! What every client task of a server shares (`Ctx`): the node, the
//! configuration, the counters, the server's identity. Its own module so
//! that `server` (accept loop) and `client` (one connection) both depend
//! on it and not on each other.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use weft::Node;

use crate::config::NatsConfig;
use crate::proto::json::ServerInfo;
use crate::refuse::RefuseLog;
use crate::stats::NatsStats;

/// Prefix of the process groups that advertise client addresses.
pub const URL_GROUP_PREFIX: &str = "weft-nats/url/";
/// The version reported in `INFO`: the nats-server protocol level weft
/// implements, tagged with weft's own version.
pub const VERSION: &str = concat!("2.10.0-weft.", env!("CARGO_PKG_VERSION"));

/// What every client task shares.
pub(crate) struct Ctx {
    pub node: Node,
    /// The node's pub/sub handle, kept to publish without a handle per message.
    pub pubsub: weft::PubSub,
    pub config: NatsConfig,
    pub stats: Arc<NatsStats>,
    /// Unique in the cluster: node name and incarnation.
    pub server_id: String,
    /// This server's advertised `host:port`.
    pub advertise: String,
    pub local: SocketAddr,
    /// Throttles the warn lines of refused publishes.
    pub refuse_log: RefuseLog,
}

impl Ctx {
    /// The other nodes' advertised client addresses, sorted.
    pub(crate) fn connect_urls(&self) -> Vec<String> {
        let mut urls: Vec<String> = self
            .node
            .groups()
            .list()
            .into_iter()
            .filter_map(|(name, n)| {
                let url = name.strip_prefix(URL_GROUP_PREFIX)?;
                (n > 0 && url != self.advertise).then(|| url.to_string())
            })
            .collect();
        urls.sort();
        urls
    }

    /// The `INFO` line for client `cid` at `peer`.
    pub(crate) fn info_line(&self, cid: u64, peer: SocketAddr) -> BytesMut {
        let mut out = BytesMut::with_capacity(512);
        ServerInfo {
            server_id: self.server_id.clone(),
            server_name: self.node.id().name.clone(),
            version: VERSION.to_string(),
            go: "weft".to_string(),
            host: self.local.ip().to_string(),
            port: self.local.port(),
            headers: true,
            max_payload: self.config.max_payload,
            proto: 1,
            client_id: cid,
            auth_required: self.config.auth.required(),
            client_ip: peer.ip().to_string(),
            connect_urls: self.connect_urls(),
        }
        .write(&mut out);
        out
    }
}
