//! The cluster view: the JSON of `GET /api/v1/cluster`, written by the
//! admin API (`admin::cluster_view`) and read by `weft status` and the
//! dashboard. One set of types for both sides, so the two cannot
//! disagree. The field names and shape are a stable interface.
//!
//! Reading is lenient so that `weft status` works across versions:
//! unknown fields are ignored, and fields a node may not send (older
//! versions) have defaults; only `node` (name and incarnation) and
//! `members` are required.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// `GET /api/v1/cluster`: the shape documented in DESIGN.md, plus the
/// node's address and cluster and its links.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClusterView {
    /// This node.
    pub node: NodeView,
    /// Every known member, this node first.
    pub members: Vec<MemberView>,
    /// The committed shard map (epoch 0 before the first commit); always
    /// written, `None` only when read from a node that does not send it.
    #[serde(default)]
    pub shards: Option<ShardsView>,
    /// Streams known to this node: origins, role, subscribers, edges.
    #[serde(default)]
    pub streams: Vec<StreamView>,
    /// Process groups and their member counts.
    #[serde(default)]
    pub groups: BTreeMap<String, usize>,
    /// Peer links.
    #[serde(default)]
    pub links: Vec<LinkView>,
    /// Pub/sub interest: this node's subscriptions and what it knows of
    /// the other nodes'; always written, `None` only when read from a
    /// node that does not send it.
    #[serde(default)]
    pub subscriptions: Option<SubscriptionsView>,
}

/// Pub/sub interest in [`ClusterView`].
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SubscriptionsView {
    /// This node's subscriptions, one entry per (pattern, queue group).
    pub local: Vec<InterestView>,
    /// Sum of `count` over `local`.
    pub local_total: u64,
    /// Other nodes' advertised interest: node name → number of patterns.
    pub remote: BTreeMap<String, usize>,
}

/// One subscribed pattern of this node in [`SubscriptionsView`].
#[derive(Debug, Serialize, Deserialize)]
pub struct InterestView {
    /// Subject pattern (may hold `*` and `>`).
    pub pattern: String,
    /// Queue group, if the subscriptions are queue subscriptions.
    #[serde(default)]
    pub queue: Option<String>,
    /// Local subscriptions on this pattern and queue group.
    pub count: u32,
}

/// This node in [`ClusterView`].
#[derive(Debug, Serialize, Deserialize)]
pub struct NodeView {
    /// Node name.
    pub name: String,
    /// Incarnation of this run.
    pub incarnation: u64,
    /// Cluster address peers use; always written.
    #[serde(default)]
    pub addr: Option<SocketAddr>,
    /// Cluster name; always written.
    #[serde(default)]
    pub cluster: Option<String>,
}

/// One member in [`ClusterView`].
#[derive(Debug, Serialize, Deserialize)]
pub struct MemberView {
    /// Node name.
    pub name: String,
    /// Incarnation.
    pub incarnation: u64,
    /// Cluster address.
    pub addr: SocketAddr,
    /// `up`, `suspect` or `down` ([`state_name`]).
    pub state: String,
}

/// Shard ownership in [`ClusterView`].
#[derive(Debug, Serialize, Deserialize)]
pub struct ShardsView {
    /// Assignment epoch (0: no map committed yet).
    pub epoch: u64,
    /// Number of shards.
    pub count: u32,
    /// Shards owned per node name.
    #[serde(default)]
    pub owners: BTreeMap<String, u32>,
    /// The node leading the shard map group, if known.
    #[serde(default)]
    pub leader: Option<String>,
    /// Voters of the shard map group.
    #[serde(default)]
    pub voters: Vec<String>,
}

/// One stream in [`ClusterView`].
#[derive(Debug, Serialize, Deserialize)]
pub struct StreamView {
    /// Stream key.
    pub key: String,
    /// The origin edges pull from (first of `origins`).
    #[serde(default)]
    pub origin: Option<String>,
    /// Every node announcing it, best first.
    #[serde(default)]
    pub origins: Vec<String>,
    /// This node's role: `origin`, `edge` or `none`; always written.
    #[serde(default)]
    pub role: Option<String>,
    /// Local subscribers.
    #[serde(default)]
    pub subscribers: usize,
    /// Edges pulling from this node.
    #[serde(default)]
    pub edges: Vec<String>,
}

/// One peer link in [`ClusterView`]. The traffic counters are always
/// written; `None` only when read from a node that does not send them.
#[derive(Debug, Serialize, Deserialize)]
pub struct LinkView {
    /// Peer name.
    pub peer: String,
    /// Peer incarnation, if known.
    #[serde(default)]
    pub incarnation: Option<u64>,
    /// Whether a connection is established.
    #[serde(default)]
    pub connected: bool,
    /// Bytes waiting in the send queue.
    #[serde(default)]
    pub queued_bytes: usize,
    /// Last heartbeat round trip, microseconds (0: not measured yet).
    #[serde(default)]
    pub rtt_micros: u64,
    /// Frames written to the peer since this node started (all
    /// connections); rates come from the difference of two views.
    #[serde(default)]
    pub frames_sent: Option<u64>,
    /// Bytes written to the peer (frame bytes on the wire).
    #[serde(default)]
    pub bytes_sent: Option<u64>,
    /// Frames read from the peer.
    #[serde(default)]
    pub frames_received: Option<u64>,
    /// Bytes read from the peer.
    #[serde(default)]
    pub bytes_received: Option<u64>,
}

/// The lowercase name of a member state, as [`MemberView::state`] holds it.
pub fn state_name(s: weft::MemberState) -> &'static str {
    match s {
        weft::MemberState::Up => "up",
        weft::MemberState::Suspect => "suspect",
        weft::MemberState::Down => "down",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field the admin API writes, in the documented shape; reading
    /// it back gives the same JSON.
    #[test]
    fn written_shape_round_trips() {
        let json = serde_json::json!({
            "node": {"name": "n1", "incarnation": 7, "addr": "127.0.0.1:1", "cluster": "weft"},
            "members": [{"name": "n1", "incarnation": 7, "addr": "[::1]:2", "state": "up"}],
            "shards": {"epoch": 3, "count": 64, "owners": {"n1": 64}, "leader": "n1", "voters": ["n1"]},
            "streams": [{"key": "k", "origin": "n1", "origins": ["n1"], "role": "origin",
                         "subscribers": 2, "edges": ["n2"]}],
            "groups": {"workers": 3},
            "links": [{"peer": "n2", "incarnation": null, "connected": true, "queued_bytes": 5,
                       "rtt_micros": 6, "frames_sent": 7, "bytes_sent": 8,
                       "frames_received": 9, "bytes_received": 10}],
            "subscriptions": {"local": [{"pattern": "a.>", "queue": null, "count": 2}],
                              "local_total": 2, "remote": {"n2": 1}}
        });
        let view: ClusterView = serde_json::from_value(json.clone()).expect("a view");
        assert_eq!(serde_json::to_value(&view).expect("encodes"), json);
    }
}
