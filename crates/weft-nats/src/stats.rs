//! Counters of the NATS front end, and their Prometheus names.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a client's `PUB`/`HPUB` was not published. Every refused publish
/// is counted under its reason (`weft_nats_publish_refused_total{reason}`)
/// and logged at warn (rate-limited); a pedantic client also gets
/// `-ERR 'Invalid Publish Subject'` where nats-server sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefuseReason {
    /// The subject or reply subject breaks weft's subject grammar (an
    /// empty token, a wildcard, a control character, over 1024 bytes).
    InvalidSubject,
    /// The subject or reply subject is not UTF-8 (weft subjects are
    /// strings; nats-server accepts any bytes).
    NotUtf8,
    /// The header block is not a `NATS/1.0` block of `key: value` lines
    /// (weft headers are key/value pairs; nats-server passes any block
    /// through).
    BadHeaders,
    /// weft could not publish it (a node's link refused the frame).
    SendFailed,
}

impl RefuseReason {
    /// Number of reasons.
    pub const COUNT: usize = 4;

    /// Every reason, in the order of [`NatsStatsSnapshot::publish_refused`].
    pub const ALL: [RefuseReason; Self::COUNT] = [
        RefuseReason::InvalidSubject,
        RefuseReason::NotUtf8,
        RefuseReason::BadHeaders,
        RefuseReason::SendFailed,
    ];

    /// The `reason` label value.
    pub fn label(self) -> &'static str {
        match self {
            RefuseReason::InvalidSubject => "invalid_subject",
            RefuseReason::NotUtf8 => "not_utf8",
            RefuseReason::BadHeaders => "bad_headers",
            RefuseReason::SendFailed => "send_failed",
        }
    }

    fn labels(self) -> &'static [(&'static str, &'static str)] {
        match self {
            RefuseReason::InvalidSubject => &[("reason", "invalid_subject")],
            RefuseReason::NotUtf8 => &[("reason", "not_utf8")],
            RefuseReason::BadHeaders => &[("reason", "bad_headers")],
            RefuseReason::SendFailed => &[("reason", "send_failed")],
        }
    }

    /// Index in [`Self::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Live counters, shared by every client task. Hot-path counts (messages,
/// bytes) are added once per read or per delivered batch, not per message.
#[derive(Debug, Default)]
pub struct NatsStats {
    pub(crate) clients_connected: AtomicU64,
    pub(crate) clients_total: AtomicU64,
    pub(crate) clients_refused: AtomicU64,
    pub(crate) msgs_in: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) msgs_out: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) slow_consumers: AtomicU64,
    pub(crate) stale_connections: AtomicU64,
    pub(crate) auth_failures: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
    pub(crate) no_responders: AtomicU64,
    pub(crate) msgs_dropped: AtomicU64,
    pub(crate) subscriptions: AtomicU64,
    /// By [`RefuseReason::index`].
    pub(crate) publish_refused: [AtomicU64; RefuseReason::COUNT],
    pub(crate) interest_barrier_timeouts: AtomicU64,
}

/// Adds `n` to a counter.
pub(crate) fn add(c: &AtomicU64, n: u64) {
    if n > 0 {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// A copy of every counter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatsStatsSnapshot {
    /// Clients connected now.
    pub clients_connected: u64,
    /// Clients accepted since start.
    pub clients_total: u64,
    /// Connections refused at accept (`max_connections`).
    pub clients_refused: u64,
    /// Messages published by clients (`PUB`/`HPUB`).
    pub msgs_in: u64,
    /// Payload bytes (headers included) published by clients.
    pub bytes_in: u64,
    /// Messages delivered to clients (`MSG`/`HMSG`).
    pub msgs_out: u64,
    /// Payload bytes delivered to clients.
    pub bytes_out: u64,
    /// Clients closed as slow consumers.
    pub slow_consumers: u64,
    /// Clients closed for not answering pings.
    pub stale_connections: u64,
    /// Failed authentications (wrong or missing credentials, timeout).
    pub auth_failures: u64,
    /// Clients closed for a protocol error.
    pub protocol_errors: u64,
    /// No-responders status messages sent.
    pub no_responders: u64,
    /// Messages not delivered to a subscription: dropped for a slow
    /// consumer (the record that crossed `max_pending`) or for a full
    /// subscription. Refused publishes are counted in
    /// [`Self::publish_refused`] instead.
    pub msgs_dropped: u64,
    /// Subscriptions held by clients now.
    pub subscriptions: u64,
    /// Publishes refused, by reason (in the order of
    /// [`RefuseReason::ALL`]; see [`Self::refused`]).
    pub publish_refused: [u64; RefuseReason::COUNT],
    /// `PONG`s sent after a `SUB`/`UNSUB` although some node had not
    /// confirmed the interest change within `interest_barrier_timeout`.
    pub interest_barrier_timeouts: u64,
}

impl NatsStatsSnapshot {
    /// Publishes refused for `reason`.
    pub fn refused(&self, reason: RefuseReason) -> u64 {
        self.publish_refused[reason.index()]
    }

    /// Publishes refused for any reason.
    pub fn refused_total(&self) -> u64 {
        self.publish_refused.iter().sum()
    }
}

/// Whether a family is a counter or a gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Only increases.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One exported series: Prometheus name, labels, kind, help text, value.
/// Several series share a name when they differ by labels (errors by
/// `kind`); the names and labels are documented in `docs/metrics.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metric {
    /// Prometheus name (`weft_nats_*`).
    pub name: &'static str,
    /// Label pairs of this series (empty for most).
    pub labels: &'static [(&'static str, &'static str)],
    /// Counter or gauge.
    pub kind: MetricKind,
    /// HELP text (the same for every series of a name).
    pub help: &'static str,
    /// Current value.
    pub value: u64,
}

impl NatsStats {
    /// A copy of every counter.
    pub fn snapshot(&self) -> NatsStatsSnapshot {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        NatsStatsSnapshot {
            clients_connected: l(&self.clients_connected),
            clients_total: l(&self.clients_total),
            clients_refused: l(&self.clients_refused),
            msgs_in: l(&self.msgs_in),
            bytes_in: l(&self.bytes_in),
            msgs_out: l(&self.msgs_out),
            bytes_out: l(&self.bytes_out),
            slow_consumers: l(&self.slow_consumers),
            stale_connections: l(&self.stale_connections),
            auth_failures: l(&self.auth_failures),
            protocol_errors: l(&self.protocol_errors),
            no_responders: l(&self.no_responders),
            msgs_dropped: l(&self.msgs_dropped),
            subscriptions: l(&self.subscriptions),
            publish_refused: std::array::from_fn(|i| l(&self.publish_refused[i])),
            interest_barrier_timeouts: l(&self.interest_barrier_timeouts),
        }
    }
}

/// HELP of `weft_nats_publish_refused_total`.
const REFUSED_HELP: &str = "PUB/HPUB not published, by reason: invalid_subject (subject or reply \
breaks weft's grammar), not_utf8, bad_headers (not a NATS/1.0 key: value block), send_failed.";

/// HELP of `weft_nats_errors_total`.
const ERRORS_HELP: &str = "NATS client errors, by kind: connections refused at the limit, \
failed authentications, protocol errors, slow consumers and stale connections closed.";

impl NatsStatsSnapshot {
    /// Every series with its Prometheus name, labels, kind and help.
    pub fn metrics(&self) -> Vec<Metric> {
        use MetricKind::{Counter, Gauge};
        let m = |name, kind, help, value| Metric {
            name,
            labels: &[],
            kind,
            help,
            value,
        };
        let error = |kind: &'static [(&'static str, &'static str)], value| Metric {
            name: "weft_nats_errors_total",
            labels: kind,
            kind: Counter,
            help: ERRORS_HELP,
            value,
        };
        let refused = RefuseReason::ALL.map(|r| Metric {
            name: "weft_nats_publish_refused_total",
            labels: r.labels(),
            kind: Counter,
            help: REFUSED_HELP,
            value: self.refused(r),
        });
        let mut all = vec![
            m(
                "weft_nats_connections",
                Gauge,
                "NATS client connections open.",
                self.clients_connected,
            ),
            m(
                "weft_nats_connections_accepted_total",
                Counter,
                "NATS client connections accepted.",
                self.clients_total,
            ),
            m(
                "weft_nats_msgs_in_total",
                Counter,
                "Messages published by NATS clients.",
                self.msgs_in,
            ),
            m(
                "weft_nats_bytes_in_total",
                Counter,
                "Payload bytes (headers included) published by NATS clients.",
                self.bytes_in,
            ),
            m(
                "weft_nats_msgs_out_total",
                Counter,
                "Messages delivered to NATS clients.",
                self.msgs_out,
            ),
            m(
                "weft_nats_bytes_out_total",
                Counter,
                "Payload bytes (headers included) delivered to NATS clients.",
                self.bytes_out,
            ),
            error(&[("kind", "max_connections")], self.clients_refused),
            error(&[("kind", "auth")], self.auth_failures),
            error(&[("kind", "protocol")], self.protocol_errors),
            error(&[("kind", "slow_consumer")], self.slow_consumers),
            error(&[("kind", "stale_connection")], self.stale_connections),
            m(
                "weft_nats_no_responders_total",
                Counter,
                "No-responders status messages sent.",
                self.no_responders,
            ),
            m(
                "weft_nats_msgs_dropped_total",
                Counter,
                "Messages not delivered to a NATS subscription (slow consumer, full subscription).",
                self.msgs_dropped,
            ),
            m(
                "weft_nats_subscriptions",
                Gauge,
                "Subscriptions held by NATS clients.",
                self.subscriptions,
            ),
            m(
                "weft_nats_interest_barrier_timeouts_total",
                Counter,
                "PONGs sent after SUB/UNSUB before every live node confirmed the interest change.",
                self.interest_barrier_timeouts,
            ),
        ];
        all.extend(refused);
        all
    }
}
