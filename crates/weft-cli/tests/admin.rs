//! The admin HTTP API of a running `weft node`.

mod common;

use common::{NodeSpec, SECRET, free_port, http_get, wait_for};

const METRICS: &[&str] = &[
    "weft_link_established_total",
    "weft_link_closed_total",
    "weft_link_frames_sent_total",
    "weft_link_bytes_sent_total",
    "weft_link_frames_received_total",
    "weft_link_bytes_received_total",
    "weft_link_handshake_failures_total",
    "weft_frames_dropped_total",
    "weft_link_errors_total",
    "weft_membership_datagrams_rejected_total",
    "weft_membership_datagrams_sent_total",
    "weft_membership_datagrams_received_total",
    "weft_members",
    "weft_link_queue_bytes",
];

#[test]
fn health_cluster_metrics_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let secret = common::secret_file(dir.path(), "secret", SECRET);
    let (p1, p2, h1, h2) = (free_port(), free_port(), free_port(), free_port());
    let (d1, d2) = (dir.path().join("a"), dir.path().join("b"));
    let _a = NodeSpec {
        name: "a",
        port: p1,
        http: h1,
        join: None,
        secret_file: &secret,
        data_dir: &d1,
    }
    // Two nodes: a shard map group of two voters.
    .start_with(&["--shard-voters", "2"]);
    let _b = NodeSpec {
        name: "b",
        port: p2,
        http: h2,
        join: Some(p1),
        secret_file: &secret,
        data_dir: &d2,
    }
    .start_with(&["--shard-voters", "2"]);
    wait_for("both up", || common::all_see(&[h1, h2], &["a", "b"], "up"));

    let (status, body) = http_get(h1, "/healthz").unwrap();
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health, serde_json::json!({"status": "ok"}));

    let view = common::cluster(h1).unwrap();
    assert_eq!(view["node"]["name"], "a");
    assert!(view["node"]["incarnation"].as_u64().is_some());
    let members = view["members"].as_array().unwrap();
    assert_eq!(members[0]["name"], "a", "the node itself comes first");
    for m in members {
        for key in ["name", "incarnation", "addr", "state"] {
            assert!(!m[key].is_null(), "member without {key}: {m}");
        }
    }
    assert_eq!(members[1]["addr"], format!("127.0.0.1:{p2}"));
    for key in ["epoch", "count", "owners"] {
        assert!(
            !view["shards"][key].is_null(),
            "shards without {key}: {}",
            view["shards"]
        );
    }
    assert_eq!(view["streams"], serde_json::json!([]));
    // The shard map commits: 64 shards over the two nodes.
    wait_for("a committed shard map", || {
        common::cluster(h1).is_some_and(|v| {
            let s = &v["shards"];
            s["epoch"].as_u64().unwrap_or(0) >= 1
                && s["count"] == 64
                && s["owners"]["a"].as_u64().unwrap_or(0) + s["owners"]["b"].as_u64().unwrap_or(0) == 64
        })
    });

    // Per-peer series exist once traffic has flowed.
    wait_for("per-peer metrics for b", || {
        http_get(h1, "/metrics").is_some_and(|(_, m)| m.contains("weft_link_frames_sent_total{peer=\"b\"}"))
    });
    let (status, metrics) = http_get(h1, "/metrics").unwrap();
    assert_eq!(status, 200);
    for name in METRICS {
        assert!(
            metrics.contains(&format!("# TYPE {name} ")),
            "{name} missing:\n{metrics}"
        );
    }
    assert_eq!(common::sample(&metrics, "weft_members{state=\"up\"}"), Some(2.0));

    // `/` is the dashboard page (tests/dashboard.rs).
    for path in ["/nope", "/api/v1/nope", "/index.html"] {
        let (status, body) = http_get(h1, path).unwrap();
        assert_eq!(status, 404, "{path}");
        let err: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(err["error"].is_string(), "{path}: {body}");
    }

    let (status, body) = common::http_request(h1, "POST", "/healthz").unwrap();
    assert_eq!(status, 405);
    let err: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(err["error"].is_string(), "{body}");
}
