//! The side-by-side table and the JSON of `weft bench nats`.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::driver::Outcome;
use super::rr::Latency;
use crate::cli::BenchNatsArgs;

/// The figures of one system.
#[derive(Clone, Debug, Serialize)]
pub struct SystemResult {
    /// `weft` or `nats-server`.
    pub name: String,
    /// Client URLs, node 1 first.
    pub clients: Vec<String>,
    /// Throughput measurements by key.
    pub throughput: BTreeMap<String, Outcome>,
    /// Request/reply latency.
    pub request_reply: Latency,
}

/// Everything measured, and how.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Seconds per measurement.
    pub duration_secs: f64,
    /// Most messages in flight.
    pub window: u64,
    /// Most bytes in flight.
    pub window_bytes: u64,
    /// Results, weft first.
    pub systems: Vec<SystemResult>,
}

/// The targets: (row, key, weft ÷ nats-server at least / at most, CPU row).
const TARGETS: &[(&str, &str, &str, &str)] = &[
    (
        "pub→sub 16 B, msgs/s",
        "pubsub_16b",
        "≥ 1.5",
        "  CPU µs/msg, pub→sub 16 B",
    ),
    (
        "pub→sub 1 KiB, msgs/s",
        "pubsub_1kib",
        "≥ 1.2",
        "  CPU µs/msg, pub→sub 1 KiB",
    ),
    (
        "fan-out to 2 nodes 16 B, msgs/s",
        "fanout_16b",
        "",
        "  CPU µs/msg, fan-out 16 B",
    ),
];

fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else {
        format!("{:.1} k", v / 1e3)
    }
}

impl Report {
    /// An empty report for `args`.
    pub fn new(args: &BenchNatsArgs) -> Self {
        Self {
            duration_secs: args.duration,
            window: args.window,
            window_bytes: args.window_bytes,
            systems: Vec::new(),
        }
    }

    fn ratios(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        let [weft, nats] = match self.systems.as_slice() {
            [a, b] => [a, b],
            _ => return out,
        };
        for (key, w) in &weft.throughput {
            if let Some(n) = nats.throughput.get(key) {
                out.insert(key.clone(), w.msgs_per_sec / n.msgs_per_sec);
            }
        }
        out.insert(
            "rr_p50".into(),
            weft.request_reply.p50_us / nats.request_reply.p50_us,
        );
        out.insert(
            "rr_p99".into(),
            weft.request_reply.p99_us / nats.request_reply.p99_us,
        );
        out
    }

    /// The JSON document (`--json`).
    pub fn json(&self) -> String {
        let doc = serde_json::json!({
            "config": {
                "duration_secs": self.duration_secs,
                "window": self.window,
                "window_bytes": self.window_bytes,
            },
            "systems": self.systems,
            "ratios_weft_over_nats_server": self.ratios(),
        });
        // A serde_json::Value always serialises.
        serde_json::to_string_pretty(&doc).expect("a JSON value serialises")
    }

    /// The side-by-side table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let names: Vec<&str> = self.systems.iter().map(|s| s.name.as_str()).collect();
        let ratios = self.ratios();
        let _ = writeln!(
            t,
            "{:<34} {:>12} {:>12} {:>8}  target",
            "measurement",
            names.first().copied().unwrap_or("weft"),
            names.get(1).copied().unwrap_or("-"),
            "ratio",
        );
        for (label, key, target, _) in TARGETS {
            let cell = |i: usize| {
                self.systems
                    .get(i)
                    .and_then(|s| s.throughput.get(*key))
                    .map_or("-".to_string(), |o| rate(o.msgs_per_sec))
            };
            let ratio = ratios.get(*key).map_or("-".into(), |r| format!("{r:.2}×"));
            let _ = writeln!(
                t,
                "{label:<34} {:>12} {:>12} {ratio:>8}  {target}",
                cell(0),
                cell(1)
            );
        }
        for (label, key, pick, target) in [
            ("request/reply p50, µs", "rr_p50", 0usize, ""),
            ("request/reply p99, µs", "rr_p99", 1, "≤ 1.0"),
        ] {
            let cell = |i: usize| {
                self.systems.get(i).map_or("-".to_string(), |s| {
                    let l = &s.request_reply;
                    format!("{:.0}", if pick == 0 { l.p50_us } else { l.p99_us })
                })
            };
            let ratio = ratios.get(key).map_or("-".into(), |r| format!("{r:.2}×"));
            let _ = writeln!(
                t,
                "{label:<34} {:>12} {:>12} {ratio:>8}  {target}",
                cell(0),
                cell(1)
            );
        }
        for (_, key, _, label) in TARGETS {
            let cell = |i: usize| {
                self.systems
                    .get(i)
                    .and_then(|s| s.throughput.get(*key))
                    .and_then(|o| o.server_cpu_us_per_msg)
                    .map_or("-".to_string(), |v| format!("{v:.2}"))
            };
            let ratio = match (self.systems.first(), self.systems.get(1)) {
                (Some(a), Some(b)) => {
                    let get = |s: &SystemResult| s.throughput.get(*key).and_then(|o| o.server_cpu_us_per_msg);
                    match (get(a), get(b)) {
                        (Some(x), Some(y)) if y > 0.0 => format!("{:.2}×", x / y),
                        _ => "-".into(),
                    }
                }
                _ => "-".into(),
            };
            let _ = writeln!(t, "{label:<34} {:>12} {:>12} {ratio:>8}", cell(0), cell(1));
        }
        let _ = writeln!(
            t,
            "\nratio = weft ÷ nats-server (throughput: higher is better; latency and CPU: lower is better).\n\
             CPU µs/msg: user+system time of the 3 server processes per published message (load-independent)."
        );
        for s in &self.systems {
            let counts: Vec<String> = s
                .throughput
                .iter()
                .map(|(k, o)| format!("{k} {} sent, {:?} received", o.sent, o.received))
                .collect();
            let _ = writeln!(
                t,
                "{}: {}; request/reply {} requests, p99.9 {:.0} µs, max {:.0} µs",
                s.name,
                counts.join("; "),
                s.request_reply.count,
                s.request_reply.p999_us,
                s.request_reply.max_us
            );
        }
        t
    }
}
