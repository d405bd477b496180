//! The admin HTTP server: the dashboard page, health, cluster view and
//! metrics.

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
use weft::Node;

use crate::view::{
    ClusterView, InterestView, LinkView, MemberView, NodeView, ShardsView, StreamView, SubscriptionsView,
    state_name,
};

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
            addr: Some(node.addr()),
            cluster: Some(node.config().cluster.clone()),
        },
        members: node
            .membership()
            .members()
            .into_iter()
            .map(|m| MemberView {
                name: m.name,
                incarnation: m.incarnation,
                addr: m.addr,
                state: state_name(m.state).to_string(),
            })
            .collect(),
        shards: Some({
            let map = node.shards().map();
            ShardsView {
                epoch: map.epoch,
                count: map.shard_count(),
                owners: map.counts().into_iter().map(|(k, v)| (k, v as u32)).collect(),
                leader: node.shards().leader(),
                voters: node.shards().voters(),
            }
        }),
        streams: node
            .streams()
            .list()
            .into_iter()
            .map(|s| StreamView {
                origin: s.origins.first().cloned(),
                key: s.key,
                origins: s.origins,
                role: Some(s.role.to_string()),
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
                    frames_sent: Some(t.frames_sent),
                    bytes_sent: Some(t.bytes_sent),
                    frames_received: Some(t.frames_received),
                    bytes_received: Some(t.bytes_received),
                }
            })
            .collect(),
        subscriptions: Some(SubscriptionsView {
            local_total: local.iter().map(|i| u64::from(i.count)).sum(),
            local,
            remote: node.pubsub().remote_interest(),
        }),
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
