//! The admin HTTP server: the dashboard page, health, cluster view and
//! metrics.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
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

/// The dashboard: one static page (inline CSS and JS, no external
/// resources) that polls `/api/v1/cluster` every second.
pub const DASHBOARD_HTML: &str = include_str!("dashboard/index.html");

/// The admin routes. Unknown paths answer 404, wrong methods 405 and bad
/// query parameters 400, each with a JSON `{"error": ...}` body.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/", get(dashboard))
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

async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        DASHBOARD_HTML,
    )
        .into_response()
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
    /// Pub/sub interest: this node's subscriptions and what it knows of
    /// the other nodes'.
    pub subscriptions: SubscriptionsView,
}

/// Pub/sub interest in [`ClusterView`].
#[derive(Debug, Serialize)]
pub struct SubscriptionsView {
    /// This node's subscriptions, one entry per (pattern, queue group).
    pub local: Vec<InterestView>,
    /// Sum of `count` over `local`.
    pub local_total: u64,
    /// Other nodes' advertised interest: node name → number of patterns.
    pub remote: BTreeMap<String, usize>,
}

/// One subscribed pattern of this node in [`SubscriptionsView`].
#[derive(Debug, Serialize)]
pub struct InterestView {
    /// Subject pattern (may hold `*` and `>`).
    pub pattern: String,
    /// Queue group, if the subscriptions are queue subscriptions.
    pub queue: Option<String>,
    /// Local subscriptions on this pattern and queue group.
    pub count: u32,
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
    /// Frames written to the peer since this node started (all
    /// connections); rates come from the difference of two views.
    pub frames_sent: u64,
    /// Bytes written to the peer (frame bytes on the wire).
    pub bytes_sent: u64,
    /// Frames read from the peer.
    pub frames_received: u64,
    /// Bytes read from the peer.
    pub bytes_received: u64,
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
    let traffic = node.stats().peers;
    let local: Vec<InterestView> = node
        .pubsub()
        .local_interest()
        .into_iter()
        .map(|(pattern, queue, count)| InterestView {
            pattern,
            queue,
            count,
        })
        .collect();
    ClusterView {
        node: NodeView {
            name: id.name.clone(),
            incarnation: id.incarnation,
            addr: node.addr(),
            cluster: node.config().cluster.clone(),
        },
        members: node
            .membership()
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
            let map = node.shards().map();
            ShardsView {
                epoch: map.epoch,
                count: map.shard_count(),
                owners: map.counts().into_iter().map(|(k, v)| (k, v as u32)).collect(),
                leader: node.shards().leader(),
                voters: node.shards().voters(),
            }
        },
        streams: node
            .streams()
            .list()
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
            .membership()
            .links()
            .into_iter()
            .map(|l| {
                let t = traffic.get(&l.peer).cloned().unwrap_or_default();
                LinkView {
                    peer: l.peer,
                    incarnation: l.incarnation,
                    connected: l.connected,
                    queued_bytes: l.queued_bytes,
                    rtt_micros: l.rtt_micros,
                    frames_sent: t.frames_sent,
                    bytes_sent: t.bytes_sent,
                    frames_received: t.frames_received,
                    bytes_received: t.bytes_received,
                }
            })
            .collect(),
        subscriptions: SubscriptionsView {
            local_total: local.iter().map(|i| u64::from(i.count)).sum(),
            local,
            remote: node.pubsub().remote_interest(),
        },
    }
}

/// Whether `?pretty=` asks for indented JSON: `true`/`1`/empty or
/// `false`/`0`; anything else, or any other parameter, is refused.
fn pretty_param(params: &[(String, String)]) -> Result<bool, String> {
    let mut pretty = false;
    for (key, value) in params {
        match (key.as_str(), value.as_str()) {
            ("pretty", "" | "true" | "1") => pretty = true,
            ("pretty", "false" | "0") => pretty = false,
            ("pretty", other) => {
                return Err(format!(
                    "bad value for parameter pretty: {other:?} (expected true or false)"
                ));
            }
            (other, _) => return Err(format!("unknown parameter: {other:?} (known: pretty)")),
        }
    }
    Ok(pretty)
}

/// `GET /api/v1/cluster[?pretty=true|false]`.
async fn cluster(
    State(s): State<AdminState>,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let pretty = match params {
        Ok(Query(params)) => pretty_param(&params),
        Err(e) => Err(format!("bad query string: {}", e.body_text())),
    };
    let pretty = match pretty {
        Ok(p) => p,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, &message),
    };
    let view = cluster_view(&s.node);
    if !pretty {
        return Json(view).into_response();
    }
    match serde_json::to_string_pretty(&view) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode view: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::pretty_param;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pretty_parameter() {
        assert_eq!(pretty_param(&p(&[])), Ok(false));
        assert_eq!(pretty_param(&p(&[("pretty", "")])), Ok(true));
        assert_eq!(pretty_param(&p(&[("pretty", "true")])), Ok(true));
        assert_eq!(pretty_param(&p(&[("pretty", "0")])), Ok(false));
        assert!(pretty_param(&p(&[("pretty", "x")])).is_err());
        assert!(pretty_param(&p(&[("color", "1")])).is_err());
    }
}
