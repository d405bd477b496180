//! Copies the NATS front end's counters (`weft_nats_*`) into the
//! process-wide Prometheus recorder that `/metrics` renders.
//!
//! The admin handler renders at scrape time only what `metrics::record`
//! copies from the node; the NATS counters are copied by a small task
//! every [`EVERY`] instead (so a scrape may lag them by that much).

use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, gauge};
use tokio::task::JoinHandle;
use weft_nats::{MetricKind, NatsStats};

/// How often the counters are copied.
pub const EVERY: Duration = Duration::from_millis(500);

/// Describes the families and starts copying `stats` until aborted.
pub fn spawn(stats: Arc<NatsStats>) -> JoinHandle<()> {
    for m in stats.snapshot().metrics() {
        match m.kind {
            MetricKind::Counter => describe_counter!(m.name, m.help),
            MetricKind::Gauge => describe_gauge!(m.name, m.help),
        }
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            record(&stats);
        }
    })
}

/// Copies every value once.
pub fn record(stats: &NatsStats) {
    for m in stats.snapshot().metrics() {
        let labels: Vec<metrics::Label> = m
            .labels
            .iter()
            .map(|&(k, v)| metrics::Label::from_static_parts(k, v))
            .collect();
        match m.kind {
            MetricKind::Counter => counter!(m.name, labels).absolute(m.value),
            MetricKind::Gauge => gauge!(m.name, labels).set(m.value as f64),
        }
    }
}
