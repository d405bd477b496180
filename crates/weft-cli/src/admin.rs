//! The admin HTTP server: health, cluster view and metrics.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use weft::{MemberState, Node};

/// What the handlers share.
#[derive(Clone)]
pub struct AdminState {
    /// The node being served.
    pub node: Node,
    /// Renders the metrics recorder.
    pub metrics: PrometheusHandle,
    /// True while the node serves; false once shutdown has begun.
    pub serving: Arc<AtomicBool>,
}

/// The admin routes. Unknown paths answer 404 and wrong methods 405, both
/// with a JSON `{"error": ...}` body.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/cluster", get(cluster))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "not found")
}

async fn method_not_allowed() -> Response {
    json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

async fn healthz(State(s): State<AdminState>) -> Response {
    if s.serving.load(Ordering::Acquire) {
        Json(serde_json::json!({ "status": "ok" })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "stopping" })),
        )
            .into_response()
    }
}

async fn metrics(State(s): State<AdminState>) -> Response {
    let body = crate::metrics::render(&s.metrics, &s.node);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `GET /api/v1/cluster`: the shape documented in DESIGN.md, plus the
/// node's address and cluster and its links.
#[derive(Debug, Serialize)]
pub struct ClusterView {
    /// This node.
    pub node: NodeView,
    /// Every known member, this node first.
    pub members: Vec<MemberView>,
    /// The committed shard map (epoch 0 before the first commit).
    pub shards: ShardsView,
    /// Streams known to this node: origins, role, subscribers, edges.
    pub streams: Vec<StreamView>,
    /// Process groups and their member counts.
    pub groups: BTreeMap<String, usize>,
    /// Peer links.
    pub links: Vec<LinkView>,
}

/// This node in [`ClusterView`].
#[derive(Debug, Serialize)]
pub struct NodeView {
    /// Node name.
    pub name: String,
    /// Incarnation of this run.
    pub incarnation: u64,
    /// Cluster address peers use.
    pub addr: SocketAddr,
    /// Cluster name.
    pub cluster: String,
}

/// One member in [`ClusterView`].
#[derive(Debug, Serialize)]
pub struct MemberView {
    /// Node name.
    pub name: String,
    /// Incarnation.
    pub incarnation: u64,
    /// Cluster address.
    pub addr: SocketAddr,
    /// `up`, `suspect` or `down`.
    pub state: &'static str,
}

/// Shard ownership in [`ClusterView`].
#[derive(Debug, Serialize)]
pub struct ShardsView {
    /// Assignment epoch.
    pub epoch: u64,
    /// Number of shards.
    pub count: u32,
    /// Shards owned per node name.
    pub owners: BTreeMap<String, u32>,
    /// The node leading the shard map group, if known.
    pub leader: Option<String>,
    /// Voters of the shard map group.
    pub voters: Vec<String>,
}

/// One stream in [`ClusterView`].
#[derive(Debug, Serialize)]
pub struct StreamView {
    /// Stream key.
    pub key: String,
    /// The origin edges pull from (first of `origins`).
    pub origin: Option<String>,
    /// Every node announcing it, best first.
    pub origins: Vec<String>,
    /// This node's role: `origin`, `edge` or `none`.
    pub role: &'static str,
    /// Local subscribers.
    pub subscribers: usize,
    /// Edges pulling from this node.
    pub edges: Vec<String>,
}

/// One peer link in [`ClusterView`].
#[derive(Debug, Serialize)]
pub struct LinkView {
    /// Peer name.
    pub peer: String,
    /// Peer incarnation, if known.
    pub incarnation: Option<u64>,
    /// Whether a connection is established.
    pub connected: bool,
    /// Bytes waiting in the send queue.
    pub queued_bytes: usize,
    /// Last heartbeat round trip, microseconds.
    pub rtt_micros: u64,
}

/// The lowercase name of a member state.
pub fn state_name(s: MemberState) -> &'static str {
    match s {
        MemberState::Up => "up",
        MemberState::Suspect => "suspect",
        MemberState::Down => "down",
    }
}

/// Builds the cluster view of `node`.
pub fn cluster_view(node: &Node) -> ClusterView {
    let id = node.id();
    ClusterView {
        node: NodeView {
            name: id.name.clone(),
            incarnation: id.incarnation,
            addr: node.addr(),
            cluster: node.config().cluster.clone(),
        },
        members: node
            .members()
            .into_iter()
            .map(|m| MemberView {
                name: m.name,
                incarnation: m.incarnation,
                addr: m.addr,
                state: state_name(m.state),
            })
            .collect(),
        shards: {
            let map = node.shard_map();
            ShardsView {
                epoch: map.epoch,
                count: map.shard_count(),
                owners: map.counts().into_iter().map(|(k, v)| (k, v as u32)).collect(),
                leader: node.shard_leader(),
                voters: node.shard_voters(),
            }
        },
        streams: node
            .streams()
            .into_iter()
            .map(|s| StreamView {
                origin: s.origins.first().cloned(),
                key: s.key,
                origins: s.origins,
                role: s.role,
                subscribers: s.subscribers,
                edges: s.edges,
            })
            .collect(),
        groups: node.groups().list().into_iter().collect(),
        links: node
            .links()
            .into_iter()
            .map(|l| LinkView {
                peer: l.peer,
                incarnation: l.incarnation,
                connected: l.connected,
                queued_bytes: l.queued_bytes,
                rtt_micros: l.rtt_micros,
            })
            .collect(),
    }
}

async fn cluster(State(s): State<AdminState>) -> Json<ClusterView> {
    Json(cluster_view(&s.node))
}
