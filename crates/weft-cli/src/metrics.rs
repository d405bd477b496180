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

/// Every metric family of the node (the NATS front end's are in
/// `nats_metrics.rs`): name, kind, help text. `docs/metrics.md` documents
/// each with its labels; `tests/metrics_doc.rs` keeps the two in step.
const FAMILIES: &[(&str, Kind, &str)] = &[
    // Links.
    (
        "weft_link_established_total",
        Kind::Counter,
        "Link connections that completed a handshake (reconnects included).",
    ),
    (
        "weft_link_closed_total",
        Kind::Counter,
        "Link connections closed, for any reason.",
    ),
    (
        "weft_link_reconnects_total",
        Kind::Counter,
        "Link connections established to a peer after its first one.",
    ),
    (
        "weft_link_errors_total",
        Kind::Counter,
        "Connections closed by a link error, by reason.",
    ),
    (
        "weft_link_dial_failures_total",
        Kind::Counter,
        "Connection attempts that failed before a handshake.",
    ),
    (
        "weft_link_handshake_failures_total",
        Kind::Counter,
        "Failed or refused link handshakes, by reason.",
    ),
    (
        "weft_link_unknown_frames_total",
        Kind::Counter,
        "Frames of unknown kinds skipped.",
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
    (
        "weft_frames_dropped_total",
        Kind::Counter,
        "Frames or messages not delivered, by reason.",
    ),
    // Membership.
    (
        "weft_members",
        Kind::Gauge,
        "Known members (this node included), by state.",
    ),
    (
        "weft_membership_events_total",
        Kind::Counter,
        "Membership changes observed, by event.",
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
        "weft_membership_datagrams_rejected_total",
        Kind::Counter,
        "Membership datagrams refused, by reason.",
    ),
    // Registry.
    (
        "weft_registry_entries",
        Kind::Gauge,
        "Registry entries held, by owner (local or remote).",
    ),
    (
        "weft_registry_rejected_total",
        Kind::Counter,
        "Registry messages or entries refused, by reason.",
    ),
    // Messaging.
    ("weft_mailboxes", Kind::Gauge, "Local mailboxes."),
    (
        "weft_groups",
        Kind::Gauge,
        "Process groups with at least one member in the cluster.",
    ),
    (
        "weft_messages_sent_total",
        Kind::Counter,
        "Messages sent by this node, by kind (tell, call, group).",
    ),
    (
        "weft_messages_delivered_total",
        Kind::Counter,
        "Messages delivered into local mailboxes.",
    ),
    (
        "weft_dead_letters_sent_total",
        Kind::Counter,
        "Messages from other nodes dropped here and reported back to their sender's node, by reason.",
    ),
    (
        "weft_dead_letters_received_total",
        Kind::Counter,
        "Messages sent by this node that another node reported dropped, by reason.",
    ),
    (
        "weft_dead_letters_lost_total",
        Kind::Counter,
        "Dead-letter reports that did not complete, in messages, by reason.",
    ),
    // Pub/sub.
    (
        "weft_pubsub_subscriptions",
        Kind::Gauge,
        "Local subscriptions (queue group members included).",
    ),
    (
        "weft_pubsub_remote_patterns",
        Kind::Gauge,
        "Subject patterns of interest advertised by other nodes.",
    ),
    (
        "weft_pubsub_published_total",
        Kind::Counter,
        "Messages published on a subject through this node.",
    ),
    (
        "weft_pubsub_delivered_total",
        Kind::Counter,
        "Messages put into local subscriptions' queues.",
    ),
    (
        "weft_pubsub_frames_sent_total",
        Kind::Counter,
        "Publish frames sent to a peer.",
    ),
    (
        "weft_pubsub_frames_received_total",
        Kind::Counter,
        "Publish frames received from a peer.",
    ),
    // Relay.
    (
        "weft_streams",
        Kind::Gauge,
        "Streams known to this node, by role.",
    ),
    (
        "weft_stream_subscribers",
        Kind::Gauge,
        "Local stream subscribers (viewers).",
    ),
    (
        "weft_stream_edges",
        Kind::Gauge,
        "Edges pulling a stream from this node (one per stream and edge).",
    ),
    (
        "weft_stream_frames_published_total",
        Kind::Counter,
        "Stream frames published by local publishers.",
    ),
    (
        "weft_stream_frames_sent_total",
        Kind::Counter,
        "Stream frames sent to an edge peer.",
    ),
    (
        "weft_stream_frames_received_total",
        Kind::Counter,
        "Stream frames received from an upstream origin.",
    ),
    (
        "weft_stream_frames_skipped_total",
        Kind::Counter,
        "Stream frames skipped by the lag policy.",
    ),
    (
        "weft_stream_replay_frames_evicted_total",
        Kind::Counter,
        "Stream frames evicted from replay buffers by their bounds.",
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
    // Shards.
    (
        "weft_shard_epoch",
        Kind::Gauge,
        "Epoch of the committed shard map.",
    ),
    (
        "weft_shard_count",
        Kind::Gauge,
        "Shards in the committed map (0 before the first commit).",
    ),
    (
        "weft_shards_owned",
        Kind::Gauge,
        "Shards owned per node in the committed map.",
    ),
    (
        "weft_shard_leader",
        Kind::Gauge,
        "1 when this node leads the shard map group.",
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
        "weft_shard_events_accepted_total",
        Kind::Counter,
        "Routed events this node accepted as shard owner.",
    ),
    (
        "weft_shard_route_retries_total",
        Kind::Counter,
        "Route attempts after the first (stale map, moved shard, owner not ready or down).",
    ),
    (
        "weft_shard_events_fenced_total",
        Kind::Counter,
        "Routed events this node refused as owner because it held no valid lease.",
    ),
    (
        "weft_shard_lease_renewals_total",
        Kind::Counter,
        "Shard lease renewals this node asked for, by result.",
    ),
    (
        "weft_shard_events_refused_total",
        Kind::Counter,
        "Routed events an owner's inbox refused, by reason (full, not_processed).",
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
    let by_reason = |name: &'static str, counts: &std::collections::BTreeMap<String, u64>| {
        for (reason, n) in counts {
            counter!(name, "reason" => reason.clone()).absolute(*n);
        }
    };

    // Links.
    counter!("weft_link_established_total").absolute(s.links_up);
    counter!("weft_link_closed_total").absolute(s.links_down);
    counter!("weft_link_dial_failures_total").absolute(s.dial_failures);
    counter!("weft_link_unknown_frames_total").absolute(s.unknown_frames);
    by_reason("weft_link_errors_total", &s.link_errors);
    by_reason("weft_link_handshake_failures_total", &s.handshake_failures);
    by_reason("weft_frames_dropped_total", &s.frames_dropped);
    for (peer, t) in &s.peers {
        let p = || peer.clone();
        counter!("weft_link_reconnects_total", "peer" => p()).absolute(t.reconnects());
        counter!("weft_link_frames_sent_total", "peer" => p()).absolute(t.frames_sent);
        counter!("weft_link_bytes_sent_total", "peer" => p()).absolute(t.bytes_sent);
        counter!("weft_link_frames_received_total", "peer" => p()).absolute(t.frames_received);
        counter!("weft_link_bytes_received_total", "peer" => p()).absolute(t.bytes_received);
        counter!("weft_pubsub_frames_sent_total", "peer" => p()).absolute(t.publishes_sent);
        counter!("weft_pubsub_frames_received_total", "peer" => p()).absolute(t.publishes_received);
        counter!("weft_stream_frames_sent_total", "peer" => p()).absolute(t.stream_frames_sent);
        counter!("weft_stream_frames_received_total", "peer" => p()).absolute(t.stream_frames_received);
    }
    for l in node.membership().links() {
        gauge!("weft_link_queue_bytes", "peer" => l.peer.clone()).set(l.queued_bytes as f64);
        gauge!("weft_link_connected", "peer" => l.peer.clone()).set(u8::from(l.connected));
        gauge!("weft_link_rtt_seconds", "peer" => l.peer.clone()).set(l.rtt_micros as f64 / 1e6);
    }

    // Membership.
    let (mut up, mut suspect, mut down) = (0u32, 0u32, 0u32);
    for m in node.membership().members() {
        match m.state {
            MemberState::Up => up += 1,
            MemberState::Suspect => suspect += 1,
            MemberState::Down => down += 1,
        }
    }
    gauge!("weft_members", "state" => "up").set(up);
    gauge!("weft_members", "state" => "suspect").set(suspect);
    gauge!("weft_members", "state" => "down").set(down);
    for (event, n) in &s.membership_events {
        counter!("weft_membership_events_total", "event" => event.clone()).absolute(*n);
    }
    counter!("weft_membership_datagrams_sent_total").absolute(s.datagrams_sent);
    counter!("weft_membership_datagrams_received_total").absolute(s.datagrams_received);
    by_reason("weft_membership_datagrams_rejected_total", &s.datagrams_rejected);

    // Registry.
    gauge!("weft_registry_entries", "owner" => "local").set(node.registry_local_entries() as f64);
    gauge!("weft_registry_entries", "owner" => "remote").set(node.registry_remote_entries() as f64);
    by_reason("weft_registry_rejected_total", &s.registry_rejected);

    // Messaging.
    gauge!("weft_mailboxes").set(node.mailboxes().count() as f64);
    gauge!("weft_groups").set(node.groups().list().len() as f64);
    counter!("weft_messages_sent_total", "kind" => "tell").absolute(s.tells_sent);
    counter!("weft_messages_sent_total", "kind" => "call").absolute(s.calls_sent);
    counter!("weft_messages_sent_total", "kind" => "group").absolute(s.group_publishes);
    counter!("weft_messages_delivered_total").absolute(s.messages_delivered);
    by_reason("weft_dead_letters_sent_total", &s.dead_letters_sent);
    by_reason("weft_dead_letters_received_total", &s.dead_letters_received);
    by_reason("weft_dead_letters_lost_total", &s.dead_letters_lost);

    // Pub/sub.
    let subscriptions: u64 = node
        .pubsub()
        .local_interest()
        .iter()
        .map(|(_, _, n)| u64::from(*n))
        .sum();
    gauge!("weft_pubsub_subscriptions").set(subscriptions as f64);
    let remote: usize = node.pubsub().remote_interest().values().sum();
    gauge!("weft_pubsub_remote_patterns").set(remote as f64);
    counter!("weft_pubsub_published_total").absolute(s.pubsub_published);
    counter!("weft_pubsub_delivered_total").absolute(s.pubsub_delivered);

    // Relay.
    let mut roles: std::collections::BTreeMap<&'static str, f64> =
        ["origin", "edge", "none"].into_iter().map(|r| (r, 0.0)).collect();
    let (mut viewers, mut edges) = (0usize, 0usize);
    for st in node.streams().list() {
        *roles.entry(st.role).or_default() += 1.0;
        viewers += st.subscribers;
        edges += st.edges.len();
    }
    for (role, n) in roles {
        gauge!("weft_streams", "role" => role).set(n);
    }
    gauge!("weft_stream_subscribers").set(viewers as f64);
    gauge!("weft_stream_edges").set(edges as f64);
    counter!("weft_stream_frames_published_total").absolute(s.stream_frames_published);
    counter!("weft_stream_frames_skipped_total").absolute(s.stream_frames_skipped);
    counter!("weft_stream_replay_frames_evicted_total").absolute(s.stream_gop_truncated);
    counter!("weft_stream_pulls_total").absolute(s.stream_pulls);
    counter!("weft_stream_teardowns_total").absolute(s.stream_teardowns);
    counter!("weft_stream_failovers_total").absolute(s.stream_failovers);
    counter!("weft_stream_stalls_total").absolute(s.stream_stalls);

    // Shards.
    let map = node.shards().map();
    gauge!("weft_shard_epoch").set(map.epoch as f64);
    gauge!("weft_shard_count").set(f64::from(map.shard_count()));
    for (owner, n) in map.counts() {
        gauge!("weft_shards_owned", "node" => owner).set(n as f64);
    }
    let leads = node.shards().leader().is_some_and(|l| l == node.id().name);
    gauge!("weft_shard_leader").set(u8::from(leads));
    counter!("weft_shard_proposals_committed_total").absolute(s.shard_proposals_committed);
    by_reason("weft_shard_proposals_failed_total", &s.shard_proposals_failed);
    counter!("weft_shard_events_accepted_total").absolute(s.routed_events_accepted);
    counter!("weft_shard_route_retries_total").absolute(s.route_retries);
    counter!("weft_shard_events_fenced_total").absolute(s.route_fenced);
    for (result, n) in &s.lease_renewals {
        counter!("weft_shard_lease_renewals_total", "result" => result.clone()).absolute(*n);
    }
    by_reason("weft_shard_events_refused_total", &s.routed_events_refused);
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
