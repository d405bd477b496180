//! `weft bench nats`: a short run against the 3-node weft cluster it
//! starts (and a nats-server cluster when `nats-server` is on PATH)
//! reports every figure, with exact counts.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Proc, free_ports};

const KEYS: [&str; 3] = ["pubsub_16b", "pubsub_1kib", "fanout_16b"];

#[test]
fn a_short_bench_counts_every_message_and_reports_latency() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("bench.log");
    // weft uses BASE..BASE+23, nats-server BASE+30..BASE+43.
    let base = free_ports(44);
    let with_nats = Command::new("nats-server").arg("--version").output().is_ok();
    if !with_nats {
        assert!(
            std::env::var_os("WEFT_REQUIRE_NATS_SERVER").is_none(),
            "WEFT_REQUIRE_NATS_SERVER is set but nats-server is not on PATH"
        );
        eprintln!("WARNING: nats-server not on PATH: measuring weft alone (apt-get install nats-server)");
    }
    let mut cmd = Command::new(common::bin());
    cmd.args(["bench", "nats", "--duration", "0.3", "--json"])
        .args(["--base-port", &base.to_string()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    if with_nats {
        cmd.arg("--nats-server");
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // The JSON comes at the end; read it on a thread so that a hung bench
    // still meets the exit deadline below.
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let mut bench = Proc::from_child("weft bench nats", child, Some(&log));
    bench.polite = true;
    let status = bench.wait_exit(Duration::from_secs(240));
    assert!(status.success(), "bench failed: {status}\n{}", bench.log());
    let out = reader.join().unwrap();
    let report: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));

    let systems = report["systems"].as_array().expect("systems");
    let names: Vec<&str> = systems.iter().filter_map(|s| s["name"].as_str()).collect();
    let want: &[&str] = if with_nats {
        &["weft", "nats-server"]
    } else {
        &["weft"]
    };
    assert_eq!(names, want);
    for s in systems {
        let name = s["name"].as_str().unwrap();
        for key in KEYS {
            let t = &s["throughput"][key];
            let sent = t["sent"].as_u64().unwrap_or_else(|| panic!("{name} {key}: {t}"));
            assert!(sent > 0, "{name} {key}: nothing sent");
            let received: Vec<u64> = t["received"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_u64().unwrap())
                .collect();
            let subscribers = if key == "fanout_16b" { 2 } else { 1 };
            assert_eq!(received, vec![sent; subscribers], "{name} {key}");
            assert!(t["msgs_per_sec"].as_f64().unwrap() > 0.0, "{name} {key}");
            assert!(t["server_cpu_us_per_msg"].as_f64().unwrap() > 0.0, "{name} {key}");
        }
        let rr = &s["request_reply"];
        assert!(rr["count"].as_u64().unwrap() > 0, "{name}: no request measured");
        let (p50, p99, max) = (
            rr["p50_us"].as_f64().unwrap(),
            rr["p99_us"].as_f64().unwrap(),
            rr["max_us"].as_f64().unwrap(),
        );
        assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{name}: {rr}");
    }
}
