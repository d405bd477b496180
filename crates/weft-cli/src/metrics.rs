//! Prometheus metrics: a global recorder, filled from the node's
//! counters at every scrape.

use metrics::{counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use weft::{MemberState, Node};

/// Whether a family is a counter or a gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// Every metric family weft exports: name, kind, help text.
const FAMILIES: &[(&str, Kind, &str)] = &[
    (
        "weft_registry_rejected_total",
        Kind::Counter,
        "Registry messages or entries refused, by reason.",
    ),
    (
        "weft_messages_delivered_total",
        Kind::Counter,
        "Messages delivered into local mailboxes.",
    ),
    (
        "weft_publishes_sent_total",
        Kind::Counter,
        "Pub/sub publish frames sent to a peer.",
    ),
    (
        "weft_publishes_received_total",
        Kind::Counter,
        "Pub/sub publish frames received from a peer.",
    ),
    (
        "weft_stream_frames_sent_total",
        Kind::Counter,
        "Stream frames sent to an edge peer.",
    ),
    (
        "weft_stream_frames_received_total",
        Kind::Counter,
        "Stream frames received from the upstream origin.",
    ),
    (
        "weft_stream_frames_published_total",
        Kind::Counter,
        "Stream frames published by local publishers.",
    ),
    (
        "weft_stream_gop_truncated_total",
        Kind::Counter,
        "Stream frames dropped from replay buffers by their bounds.",
    ),
    (
        "weft_stream_frames_skipped_total",
        Kind::Counter,
        "Stream frames skipped by the lag policy.",
    ),
    (
        "weft_stream_pulls_total",
        Kind::Counter,
        "Streams this node started pulling as an edge.",
    ),
    (
        "weft_stream_teardowns_total",
        Kind::Counter,
        "Edge pulls stopped after the last subscriber left.",
    ),
    (
        "weft_stream_failovers_total",
        Kind::Counter,
        "Switches of an edge to another origin.",
    ),
    (
        "weft_stream_stalls_total",
        Kind::Counter,
        "Upstream origins declared stalled.",
    ),
    (
        "weft_shard_proposals_committed_total",
        Kind::Counter,
        "Shard map changes committed by this node's proposals.",
    ),
    (
        "weft_shard_proposals_failed_total",
        Kind::Counter,
        "Shard map proposals that failed, by reason.",
    ),
    (
        "weft_routed_events_accepted_total",
        Kind::Counter,
        "Routed events this node accepted as shard owner.",
    ),
    (
        "weft_route_retries_total",
        Kind::Counter,
        "Route attempts after the first.",
    ),
    (
        "weft_shard_epoch",
        Kind::Gauge,
        "Epoch of the committed shard map.",
    ),
    (
        "weft_shards_owned",
        Kind::Gauge,
        "Shards owned per node in the committed map.",
    ),
    ("weft_mailboxes", Kind::Gauge, "Local mailboxes."),
    (
        "weft_streams",
        Kind::Gauge,
        "Streams known to this node, by role.",
    ),
    (
        "weft_links_up_total",
        Kind::Counter,
        "Links that completed a handshake.",
    ),
    (
        "weft_links_down_total",
        Kind::Counter,
        "Links that closed, for any reason.",
    ),
    (
        "weft_link_frames_sent_total",
        Kind::Counter,
        "Frames written to a peer.",
    ),
    (
        "weft_link_bytes_sent_total",
        Kind::Counter,
        "Bytes written to a peer.",
    ),
    (
        "weft_link_frames_received_total",
        Kind::Counter,
        "Frames read from a peer.",
    ),
    (
        "weft_link_bytes_received_total",
        Kind::Counter,
        "Bytes read from a peer.",
    ),
    (
        "weft_handshake_failures_total",
        Kind::Counter,
        "Failed link handshakes, by reason.",
    ),
    (
        "weft_frames_dropped_total",
        Kind::Counter,
        "Frames not delivered, by reason.",
    ),
    (
        "weft_link_errors_total",
        Kind::Counter,
        "Connections closed by a link error, by reason.",
    ),
    (
        "weft_membership_datagrams_rejected_total",
        Kind::Counter,
        "Membership datagrams refused, by reason.",
    ),
    (
        "weft_membership_datagrams_sent_total",
        Kind::Counter,
        "Membership datagrams sent.",
    ),
    (
        "weft_membership_datagrams_received_total",
        Kind::Counter,
        "Membership datagrams received and accepted.",
    ),
    (
        "weft_unknown_frames_total",
        Kind::Counter,
        "Frames of unknown kinds skipped.",
    ),
    (
        "weft_dial_failures_total",
        Kind::Counter,
        "Connection attempts that failed before a handshake.",
    ),
    (
        "weft_members",
        Kind::Gauge,
        "Known members (this node included), by state.",
    ),
    (
        "weft_link_queue_bytes",
        Kind::Gauge,
        "Bytes waiting in a peer's send queue.",
    ),
    (
        "weft_link_connected",
        Kind::Gauge,
        "1 when the link to a peer is established.",
    ),
    (
        "weft_link_rtt_seconds",
        Kind::Gauge,
        "Last measured heartbeat round trip to a peer.",
    ),
];

/// Installs the process-wide Prometheus recorder (no listener of its own:
/// the admin server renders it) and describes weft's metrics.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| anyhow::anyhow!("cannot install the metrics recorder: {e}"))?;
    for &(name, kind, help) in FAMILIES {
        match kind {
            Kind::Counter => describe_counter!(name, help),
            Kind::Gauge => describe_gauge!(name, help),
        }
    }
    Ok(handle)
}

/// Copies the node's current counters and gauges into the recorder.
pub fn record(node: &Node) {
    let s = node.stats();
    counter!("weft_links_up_total").absolute(s.links_up);
    counter!("weft_links_down_total").absolute(s.links_down);
    counter!("weft_membership_datagrams_sent_total").absolute(s.datagrams_sent);
    counter!("weft_membership_datagrams_received_total").absolute(s.datagrams_received);
    counter!("weft_unknown_frames_total").absolute(s.unknown_frames);
    counter!("weft_dial_failures_total").absolute(s.dial_failures);
    for (peer, t) in &s.peers {
        counter!("weft_link_frames_sent_total", "peer" => peer.clone()).absolute(t.frames_sent);
        counter!("weft_link_bytes_sent_total", "peer" => peer.clone()).absolute(t.bytes_sent);
        counter!("weft_link_frames_received_total", "peer" => peer.clone()).absolute(t.frames_received);
        counter!("weft_link_bytes_received_total", "peer" => peer.clone()).absolute(t.bytes_received);
    }
    counter!("weft_messages_delivered_total").absolute(s.messages_delivered);
    counter!("weft_stream_frames_published_total").absolute(s.stream_frames_published);
    counter!("weft_stream_gop_truncated_total").absolute(s.stream_gop_truncated);
    counter!("weft_stream_frames_skipped_total").absolute(s.stream_frames_skipped);
    counter!("weft_stream_pulls_total").absolute(s.stream_pulls);
    counter!("weft_stream_teardowns_total").absolute(s.stream_teardowns);
    counter!("weft_stream_failovers_total").absolute(s.stream_failovers);
    counter!("weft_stream_stalls_total").absolute(s.stream_stalls);
    counter!("weft_shard_proposals_committed_total").absolute(s.shard_proposals_committed);
    counter!("weft_routed_events_accepted_total").absolute(s.routed_events_accepted);
    counter!("weft_route_retries_total").absolute(s.route_retries);
    for (peer, t) in &s.peers {
        counter!("weft_publishes_sent_total", "peer" => peer.clone()).absolute(t.publishes_sent);
        counter!("weft_publishes_received_total", "peer" => peer.clone()).absolute(t.publishes_received);
        counter!("weft_stream_frames_sent_total", "peer" => peer.clone()).absolute(t.stream_frames_sent);
        counter!("weft_stream_frames_received_total", "peer" => peer.clone())
            .absolute(t.stream_frames_received);
    }
    let map = node.shard_map();
    gauge!("weft_shard_epoch").set(map.epoch as f64);
    for (owner, n) in map.counts() {
        gauge!("weft_shards_owned", "node" => owner).set(n as f64);
    }
    gauge!("weft_mailboxes").set(node.mailbox_count() as f64);
    let mut roles: std::collections::BTreeMap<&'static str, f64> = std::collections::BTreeMap::new();
    for st in node.streams() {
        *roles.entry(st.role).or_default() += 1.0;
    }
    for (role, n) in roles {
        gauge!("weft_streams", "role" => role).set(n);
    }
    let by_reason = [
        ("weft_registry_rejected_total", &s.registry_rejected),
        ("weft_shard_proposals_failed_total", &s.shard_proposals_failed),
        ("weft_handshake_failures_total", &s.handshake_failures),
        ("weft_frames_dropped_total", &s.frames_dropped),
        ("weft_link_errors_total", &s.link_errors),
        ("weft_membership_datagrams_rejected_total", &s.datagrams_rejected),
    ];
    for (name, counts) in by_reason {
        for (reason, n) in counts {
            counter!(name, "reason" => reason.clone()).absolute(*n);
        }
    }
    let (mut up, mut suspect, mut down) = (0u32, 0u32, 0u32);
    for m in node.members() {
        match m.state {
            MemberState::Up => up += 1,
            MemberState::Suspect => suspect += 1,
            MemberState::Down => down += 1,
        }
    }
    gauge!("weft_members", "state" => "up").set(up);
    gauge!("weft_members", "state" => "suspect").set(suspect);
    gauge!("weft_members", "state" => "down").set(down);
    for l in node.links() {
        gauge!("weft_link_queue_bytes", "peer" => l.peer.clone()).set(l.queued_bytes as f64);
        gauge!("weft_link_connected", "peer" => l.peer.clone()).set(u8::from(l.connected));
        gauge!("weft_link_rtt_seconds", "peer" => l.peer.clone()).set(l.rtt_micros as f64 / 1e6);
    }
}

/// Records the node's counters and renders everything in the Prometheus
/// text format.
pub fn render(handle: &PrometheusHandle, node: &Node) -> String {
    record(node);
    handle.run_upkeep();
    let mut text = handle.render();
    append_empty_families(&mut text);
    text
}

/// Families without any series yet (no peer, no failure of any reason)
/// still get their HELP and TYPE lines, so every name is always listed.
fn append_empty_families(text: &mut String) {
    for &(name, kind, help) in FAMILIES {
        if !text.contains(&format!("# TYPE {name} ")) {
            let kind = match kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n\n"));
        }
    }
}
