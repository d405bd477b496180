//! Counters of the NATS front end, and their Prometheus names.

use std::sync::atomic::{AtomicU64, Ordering};

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
    /// Messages not delivered: refused publishes (invalid subject or
    /// headers) and messages weft dropped for a full subscription queue.
    pub msgs_dropped: u64,
    /// Subscriptions held by clients now.
    pub subscriptions: u64,
    /// `PONG`s sent after a `SUB`/`UNSUB` although some node had not
    /// confirmed the interest change within `interest_barrier_timeout`.
    pub interest_barrier_timeouts: u64,
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
            interest_barrier_timeouts: l(&self.interest_barrier_timeouts),
        }
    }
}

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
        vec![
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
                "Messages refused or dropped (invalid subject or headers, full subscription queue).",
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
        ]
    }
}
