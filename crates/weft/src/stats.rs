//! Counters of everything a node does and everything it refuses.
//!
//! One [`Stats`] per node is the source of truth: tests assert on it, and
//! the admin endpoint renders it as Prometheus metrics. Counters are
//! monotonic; gauges are computed when a snapshot is taken.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Per-peer traffic counters, shared by the peer's connections.
#[derive(Debug, Default)]
pub struct PeerCounters {
    /// Frames written to the peer.
    pub frames_sent: AtomicU64,
    /// Bytes written to the peer (frame bytes on the wire).
    pub bytes_sent: AtomicU64,
    /// Frames read from the peer.
    pub frames_received: AtomicU64,
    /// Bytes read from the peer.
    pub bytes_received: AtomicU64,
    /// Pub/sub publish frames sent to the peer.
    pub publishes_sent: AtomicU64,
    /// Pub/sub publish frames received from the peer.
    pub publishes_received: AtomicU64,
    /// Stream frames sent to the peer (as an edge of ours).
    pub stream_frames_sent: AtomicU64,
    /// Stream frames received from the peer (our upstream origin).
    pub stream_frames_received: AtomicU64,
    /// Connections to the peer that completed a handshake (the first one
    /// and every reconnect, including those to a restarted peer).
    pub connections: AtomicU64,
}

/// Reasons counted on hot paths (per message) by pub/sub: each has its
/// own atomic in every [`Labelled`], so counting one takes no lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hot {
    /// A subscriber's queue or sink was full.
    SlowConsumer,
    /// A message did not fit in a frame.
    TooLarge,
    /// A queue group named in a publish had no local member left.
    QueueMemberGone,
    /// A reply came after its request gave up.
    LateReply,
    /// A peer's publish carried an invalid subject.
    InvalidSubject,
}

/// The labels counted in atomics: each [`Hot`] reason's, in its order,
/// then the [`crate::SendError`] labels (counted by name on every failed
/// send to a peer).
const HOT_LABELS: [&str; 9] = [
    "slow_consumer",
    "too_large",
    "queue_member_gone",
    "late_reply",
    "invalid_subject",
    "unknown_peer",
    "node_down",
    "queue_full",
    "shutting_down",
];

/// A labelled family of counters (label → count). The [`Hot`] reasons are
/// atomics; other labels share a mutex (they are rare).
#[derive(Debug, Default)]
pub struct Labelled {
    hot: [AtomicU64; HOT_LABELS.len()],
    cold: Mutex<BTreeMap<&'static str, u64>>,
}

impl Labelled {
    /// Adds one to `label`.
    pub fn inc(&self, label: &'static str) {
        self.add(label, 1);
    }
    /// Adds `n` to `label`.
    pub fn add(&self, label: &'static str, n: u64) {
        // Zero goes to the map, which lists a label once it is touched.
        if n > 0
            && let Some(i) = HOT_LABELS.iter().position(|h| *h == label)
        {
            self.hot[i].fetch_add(n, Ordering::Relaxed);
            return;
        }
        if let Ok(mut m) = self.cold.lock() {
            *m.entry(label).or_default() += n;
        }
    }
    /// Adds one to the hot reason `reason` (no lock).
    pub(crate) fn inc_hot(&self, reason: Hot) {
        self.add_hot(reason, 1);
    }
    /// Adds `n` to the hot reason `reason` (no lock).
    pub(crate) fn add_hot(&self, reason: Hot, n: u64) {
        if n == 0 {
            self.add(HOT_LABELS[reason as usize], 0);
        } else {
            self.hot[reason as usize].fetch_add(n, Ordering::Relaxed);
        }
    }
    /// The current counts of every label touched so far.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> = self
            .cold
            .lock()
            .map(|m| m.iter().map(|(k, v)| ((*k).to_string(), *v)).collect())
            .unwrap_or_default();
        for (label, n) in HOT_LABELS.iter().zip(&self.hot) {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                *out.entry((*label).to_string()).or_default() += n;
            }
        }
        out
    }
    /// The count for one label.
    pub fn get(&self, label: &str) -> u64 {
        let cold = self
            .cold
            .lock()
            .map(|m| m.get(label).copied().unwrap_or(0))
            .unwrap_or(0);
        let hot = HOT_LABELS
            .iter()
            .position(|h| *h == label)
            .map_or(0, |i| self.hot[i].load(Ordering::Relaxed));
        cold + hot
    }
}

/// All counters of one node.
#[derive(Debug, Default)]
pub struct Stats {
    /// Links that completed a handshake.
    pub links_up: AtomicU64,
    /// Links that closed (any reason).
    pub links_down: AtomicU64,
    /// Failed handshakes by reason (`auth_failed`, `bad_magic`, ...).
    pub handshake_failures: Labelled,
    /// Frames not delivered, by reason (`peer_down`, `inbox_full`, ...).
    pub frames_dropped: Labelled,
    /// Connections closed by a link error, by reason.
    pub link_errors: Labelled,
    /// Membership datagrams refused, by reason.
    pub datagrams_rejected: Labelled,
    /// Registry messages or entries refused, by reason (`foreign_origin`,
    /// `stale_incarnation`, `foreign_pid`, ...).
    pub registry_rejected: Labelled,
    /// Messages delivered into local mailboxes.
    pub messages_delivered: AtomicU64,
    /// Stream frames published by local publishers.
    pub stream_frames_published: AtomicU64,
    /// Stream frames dropped from replay buffers by their bounds.
    pub stream_gop_truncated: AtomicU64,
    /// Stream frames skipped by the lag policy (subscribers and edges).
    pub stream_frames_skipped: AtomicU64,
    /// Streams this node started pulling as an edge.
    pub stream_pulls: AtomicU64,
    /// Pulls stopped after the last subscriber left (and the linger).
    pub stream_teardowns: AtomicU64,
    /// Switches to another origin.
    pub stream_failovers: AtomicU64,
    /// Upstreams declared stalled.
    pub stream_stalls: AtomicU64,
    /// Shard map changes committed by this node's proposals.
    pub shard_proposals_committed: AtomicU64,
    /// Shard map proposals that failed, by reason (`not_leader`,
    /// `conflict`, `error`).
    pub shard_proposals_failed: Labelled,
    /// Routed events this node accepted as owner.
    pub routed_events_accepted: AtomicU64,
    /// Route attempts after the first (stale map, moved shard, owner down).
    pub route_retries: AtomicU64,
    /// Events this node refused as a shard's owner because it held no
    /// valid lease for the shard (fenced).
    pub route_fenced: AtomicU64,
    /// Lease renewals this node asked for, by result (`granted`,
    /// `refused`: the leader's map is at another epoch, `failed`: no
    /// leader, no answer or the leader could not confirm a quorum).
    pub lease_renewals: Labelled,
    /// Routed events an owner refused for its inbox, by reason (`full`:
    /// the shard's queue stayed full; `not_processed`: the consumer
    /// dropped the event without acknowledging it).
    pub routed_events_refused: Labelled,
    /// Membership datagrams sent and received.
    pub datagrams_sent: AtomicU64,
    /// Membership datagrams received and accepted.
    pub datagrams_received: AtomicU64,
    /// Frames of an unknown kind skipped (from newer nodes).
    pub unknown_frames: AtomicU64,
    /// Connection attempts that failed before a handshake.
    pub dial_failures: AtomicU64,
    /// Membership changes observed, by event (`up`, `suspect`, `alive`,
    /// `down`).
    pub membership_events: Labelled,
    /// Tells (sends to a mailbox) accepted for delivery, local or remote.
    pub tells_sent: AtomicU64,
    /// Calls (requests awaiting a reply) started.
    pub calls_sent: AtomicU64,
    /// Group publishes started.
    pub group_publishes: AtomicU64,
    /// Messages published on a subject by this node (local API calls).
    pub pubsub_published: AtomicU64,
    /// Messages put into local subscriptions' queues.
    pub pubsub_delivered: AtomicU64,
    /// Messages from other nodes dropped here and reported back to their
    /// sender's node in a `DEAD_LETTER` frame, by drop reason
    /// (`no_such_mailbox`, `mailbox_full`, `no_group_members`,
    /// `slow_consumer`, `queue_member_gone`).
    pub dead_letters_sent: Labelled,
    /// Messages this node sent that another node reported dropped, by the
    /// receiver's drop reason (same labels as `dead_letters_sent`).
    pub dead_letters_received: Labelled,
    /// Dead-letter reports that did not complete, in messages, by reason:
    /// `sender_down` and `not_queued` on the dropping node, `stream_full`
    /// and `summarized` (a tell reported as a count only) on the sender.
    pub dead_letters_lost: Labelled,
    peers: Mutex<BTreeMap<String, Arc<PeerCounters>>>,
}

/// Per-peer traffic, as numbers.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct PeerTraffic {
    /// Frames written to the peer.
    pub frames_sent: u64,
    /// Bytes written to the peer.
    pub bytes_sent: u64,
    /// Frames read from the peer.
    pub frames_received: u64,
    /// Bytes read from the peer.
    pub bytes_received: u64,
    /// Pub/sub publish frames sent to the peer.
    pub publishes_sent: u64,
    /// Pub/sub publish frames received from the peer.
    pub publishes_received: u64,
    /// Stream frames sent to the peer.
    pub stream_frames_sent: u64,
    /// Stream frames received from the peer.
    pub stream_frames_received: u64,
    /// Connections to the peer that completed a handshake.
    pub connections: u64,
}

impl PeerTraffic {
    /// Connections established to the peer after the first one.
    pub fn reconnects(&self) -> u64 {
        self.connections.saturating_sub(1)
    }
}

/// A point-in-time copy of [`Stats`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct StatsSnapshot {
    /// Links that completed a handshake.
    pub links_up: u64,
    /// Links that closed.
    pub links_down: u64,
    /// Failed handshakes by reason.
    pub handshake_failures: BTreeMap<String, u64>,
    /// Frames not delivered, by reason.
    pub frames_dropped: BTreeMap<String, u64>,
    /// Link errors by reason.
    pub link_errors: BTreeMap<String, u64>,
    /// Membership datagrams refused, by reason.
    pub datagrams_rejected: BTreeMap<String, u64>,
    /// Registry messages or entries refused, by reason.
    pub registry_rejected: BTreeMap<String, u64>,
    /// Messages delivered into local mailboxes.
    pub messages_delivered: u64,
    /// Stream frames published by local publishers.
    pub stream_frames_published: u64,
    /// Stream frames dropped from replay buffers by their bounds.
    pub stream_gop_truncated: u64,
    /// Stream frames skipped by the lag policy.
    pub stream_frames_skipped: u64,
    /// Streams pulled as an edge.
    pub stream_pulls: u64,
    /// Pulls stopped after the linger.
    pub stream_teardowns: u64,
    /// Switches to another origin.
    pub stream_failovers: u64,
    /// Upstreams declared stalled.
    pub stream_stalls: u64,
    /// Shard map changes committed by this node's proposals.
    pub shard_proposals_committed: u64,
    /// Shard map proposals that failed, by reason.
    pub shard_proposals_failed: BTreeMap<String, u64>,
    /// Routed events accepted as owner.
    pub routed_events_accepted: u64,
    /// Route retries.
    pub route_retries: u64,
    /// Events refused for want of a valid lease.
    pub route_fenced: u64,
    /// Lease renewals by result.
    pub lease_renewals: BTreeMap<String, u64>,
    /// See [`Stats::routed_events_refused`].
    pub routed_events_refused: BTreeMap<String, u64>,
    /// Membership datagrams sent.
    pub datagrams_sent: u64,
    /// Membership datagrams accepted.
    pub datagrams_received: u64,
    /// Frames of unknown kinds skipped.
    pub unknown_frames: u64,
    /// Failed connection attempts.
    pub dial_failures: u64,
    /// Membership changes observed, by event.
    pub membership_events: BTreeMap<String, u64>,
    /// Tells accepted for delivery.
    pub tells_sent: u64,
    /// Calls started.
    pub calls_sent: u64,
    /// Group publishes started.
    pub group_publishes: u64,
    /// Messages published on a subject by this node.
    pub pubsub_published: u64,
    /// Messages put into local subscriptions' queues.
    pub pubsub_delivered: u64,
    /// Messages dropped here and reported to their sender, by reason.
    pub dead_letters_sent: BTreeMap<String, u64>,
    /// Messages of ours other nodes reported dropped, by reason.
    pub dead_letters_received: BTreeMap<String, u64>,
    /// Dead-letter reports that did not complete, by reason.
    pub dead_letters_lost: BTreeMap<String, u64>,
    /// Traffic per peer name.
    pub peers: BTreeMap<String, PeerTraffic>,
}

impl Stats {
    /// The traffic counters for `peer`, created on first use.
    pub fn peer(&self, peer: &str) -> Arc<PeerCounters> {
        match self.peers.lock() {
            Ok(mut m) => m.entry(peer.to_string()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    /// Copies every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let peers = self
            .peers
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(k, c)| {
                        (
                            k.clone(),
                            PeerTraffic {
                                frames_sent: r(&c.frames_sent),
                                bytes_sent: r(&c.bytes_sent),
                                frames_received: r(&c.frames_received),
                                bytes_received: r(&c.bytes_received),
                                publishes_sent: r(&c.publishes_sent),
                                publishes_received: r(&c.publishes_received),
                                stream_frames_sent: r(&c.stream_frames_sent),
                                stream_frames_received: r(&c.stream_frames_received),
                                connections: r(&c.connections),
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        StatsSnapshot {
            links_up: r(&self.links_up),
            links_down: r(&self.links_down),
            handshake_failures: self.handshake_failures.snapshot(),
            frames_dropped: self.frames_dropped.snapshot(),
            link_errors: self.link_errors.snapshot(),
            datagrams_rejected: self.datagrams_rejected.snapshot(),
            registry_rejected: self.registry_rejected.snapshot(),
            messages_delivered: r(&self.messages_delivered),
            stream_frames_published: r(&self.stream_frames_published),
            stream_gop_truncated: r(&self.stream_gop_truncated),
            stream_frames_skipped: r(&self.stream_frames_skipped),
            stream_pulls: r(&self.stream_pulls),
            stream_teardowns: r(&self.stream_teardowns),
            stream_failovers: r(&self.stream_failovers),
            stream_stalls: r(&self.stream_stalls),
            shard_proposals_committed: r(&self.shard_proposals_committed),
            shard_proposals_failed: self.shard_proposals_failed.snapshot(),
            routed_events_accepted: r(&self.routed_events_accepted),
            route_retries: r(&self.route_retries),
            route_fenced: r(&self.route_fenced),
            lease_renewals: self.lease_renewals.snapshot(),
            routed_events_refused: self.routed_events_refused.snapshot(),
            datagrams_sent: r(&self.datagrams_sent),
            datagrams_received: r(&self.datagrams_received),
            unknown_frames: r(&self.unknown_frames),
            dial_failures: r(&self.dial_failures),
            membership_events: self.membership_events.snapshot(),
            tells_sent: r(&self.tells_sent),
            calls_sent: r(&self.calls_sent),
            group_publishes: r(&self.group_publishes),
            pubsub_published: r(&self.pubsub_published),
            pubsub_delivered: r(&self.pubsub_delivered),
            dead_letters_sent: self.dead_letters_sent.snapshot(),
            dead_letters_received: self.dead_letters_received.snapshot(),
            dead_letters_lost: self.dead_letters_lost.snapshot(),
            peers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_and_cold_labels_snapshot_alike() {
        let l = Labelled::default();
        assert!(l.snapshot().is_empty());
        l.inc("slow_consumer");
        l.inc_hot(Hot::SlowConsumer);
        l.add_hot(Hot::TooLarge, 3);
        l.inc("registry_encode");
        l.add("node_down", 0);
        let snap = l.snapshot();
        assert_eq!(snap.get("slow_consumer"), Some(&2));
        assert_eq!(snap.get("too_large"), Some(&3));
        assert_eq!(snap.get("registry_encode"), Some(&1));
        // Touched with zero: listed, as before.
        assert_eq!(snap.get("node_down"), Some(&0));
        assert_eq!(snap.len(), 4);
        assert_eq!(l.get("slow_consumer"), 2);
        assert_eq!(l.get("queue_full"), 0);
    }

    #[test]
    fn hot_labels_match_their_reasons() {
        let all = [
            (Hot::SlowConsumer, "slow_consumer"),
            (Hot::TooLarge, "too_large"),
            (Hot::QueueMemberGone, "queue_member_gone"),
            (Hot::LateReply, "late_reply"),
            (Hot::InvalidSubject, "invalid_subject"),
        ];
        for (reason, label) in all {
            let l = Labelled::default();
            l.inc_hot(reason);
            assert_eq!(
                l.snapshot().into_iter().collect::<Vec<_>>(),
                vec![(label.to_string(), 1)]
            );
        }
        for e in [
            crate::SendError::ShuttingDown,
            crate::SendError::UnknownPeer("x".into()),
            crate::SendError::NodeDown("x".into()),
            crate::SendError::Full("x".into()),
        ] {
            assert!(HOT_LABELS.contains(&e.label()));
        }
    }
}
