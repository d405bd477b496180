//! Deterministic simulations of the stream relay: a stalled origin and a
//! crashed origin with a standby. `WEFT_SIM_SEED=N` replays one seed.

mod common {
    pub mod sim;
    pub mod sim_net;
}

use std::rc::Rc;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use common::sim::{Nodes, Setup, add_node_with, run_until, sim};
use weft::{Node, StreamEvent, StreamFrame, StreamPolicy};

const LIMIT: Duration = Duration::from_secs(60);

fn seeds() -> Vec<u64> {
    match std::env::var("WEFT_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("WEFT_SIM_SEED is a number")],
        Err(_) => (1..=5).collect(),
    }
}

/// What the viewer saw: (test, event description).
static SEEN: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn seen(test: &str) -> Vec<String> {
    SEEN.lock()
        .expect("lock")
        .iter()
        .filter(|(t, _)| t == test)
        .map(|(_, e)| e.clone())
        .collect()
}

/// Publishes `key` with `priority`, one frame every 40 ms, sequence
/// numbers starting at `base`, a keyframe every 10.
fn origin(key: &'static str, priority: u32, base: u64) -> Setup {
    Rc::new(move |node: Node, _| {
        Box::pin(async move {
            let p = node
                .streams()
                .publish(
                    key,
                    StreamPolicy {
                        priority,
                        ..Default::default()
                    },
                )
                .expect("publish");
            let mut seq = base;
            loop {
                let f = StreamFrame {
                    seq,
                    timestamp: seq,
                    keyframe: seq.is_multiple_of(10),
                    config: false,
                    payload: Bytes::from_static(b"frame"),
                };
                if p.send(f).is_err() {
                    return;
                }
                seq += 1;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    })
}

/// Waits for `key` to have `origins` origins, subscribes, records events
/// under `test`.
fn viewer(test: &'static str, key: &'static str, origins: usize) -> Setup {
    Rc::new(move |node: Node, _| {
        Box::pin(async move {
            while !node
                .streams()
                .list()
                .iter()
                .any(|s| s.key == key && s.origins.len() >= origins)
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let sub = node
                .streams()
                .subscribe_wait(key, Duration::from_secs(30))
                .await
                .expect("stream appears");
            loop {
                let text = match sub.next().await {
                    Ok(StreamEvent::Frame(f)) => format!("frame {}", f.seq),
                    Ok(StreamEvent::Discontinuity { origin }) => format!("discontinuity {origin}"),
                    Ok(StreamEvent::Skipped { frames }) => format!("skipped {frames}"),
                    Err(e) => {
                        SEEN.lock().expect("lock").push((test.into(), format!("end {e}")));
                        return;
                    }
                };
                SEEN.lock().expect("lock").push((test.into(), text));
            }
        })
    })
}

fn tune_stall(c: &mut weft::NodeConfig) {
    c.relay.stall_timeout = Duration::from_millis(1000);
    c.relay.heartbeat_interval = Duration::from_millis(200);
}

#[test]
fn a_stalled_origin_is_detected_by_the_edge() {
    for seed in seeds() {
        let test = format!("stall-{seed}");
        let test: &'static str = Box::leak(test.into_boxed_str());
        let mut s = sim(seed, Duration::from_secs(120));
        let nodes = Nodes::default();
        common::sim::add_node_tuned(
            &mut s,
            &nodes,
            "n1",
            &[],
            seed,
            tune_stall,
            origin("live/s", 100, 0),
        );
        common::sim::add_node_tuned(
            &mut s,
            &nodes,
            "n2",
            &["n1"],
            seed,
            tune_stall,
            viewer(test, "live/s", 1),
        );
        run_until(&mut s, seed, "edge receiving", LIMIT, || seen(test).len() > 20);
        // Everything between origin and edge is held: no frame, no
        // heartbeat. The edge declares the upstream stalled (before
        // membership would call the node down) and, with no other origin,
        // ends the viewer.
        s.hold("n1", "n2");
        run_until(&mut s, seed, "viewer ended", LIMIT, || {
            seen(test).last().is_some_and(|e| e.starts_with("end"))
        });
        assert_eq!(
            seen(test).last().map(String::as_str),
            Some("end origin lost"),
            "seed {seed}"
        );
        let edge = nodes.get("n2").expect("n2");
        assert_eq!(
            edge.stats().stream_stalls,
            1,
            "seed {seed}: ended by stall detection"
        );
        let frames: Vec<u64> = seen(test)
            .iter()
            .filter_map(|e| e.strip_prefix("frame ").and_then(|n| n.parse().ok()))
            .collect();
        assert!(
            frames.windows(2).all(|w| w[1] == w[0] + 1),
            "seed {seed}: gapless until the stall"
        );
        s.release("n1", "n2");
    }
}

/// The sequence number of a `frame N` event.
fn frame_number(event: &str) -> Option<u64> {
    event.strip_prefix("frame ")?.parse().ok()
}

#[test]
fn a_crashed_origin_fails_over_to_the_standby() {
    for seed in seeds() {
        let test = format!("failover-{seed}");
        let test: &'static str = Box::leak(test.into_boxed_str());
        let mut s = sim(seed, Duration::from_secs(120));
        let nodes = Nodes::default();
        add_node_with(
            &mut s,
            &nodes,
            "n1",
            &[],
            seed,
            Duration::ZERO,
            origin("live/f", 200, 0),
        );
        add_node_with(
            &mut s,
            &nodes,
            "n2",
            &["n1"],
            seed,
            Duration::ZERO,
            origin("live/f", 100, 100_000),
        );
        add_node_with(
            &mut s,
            &nodes,
            "n3",
            &["n1"],
            seed,
            Duration::from_secs(2),
            viewer(test, "live/f", 2),
        );
        let attach = run_until(&mut s, seed, "viewer on the primary", LIMIT, || {
            seen(test).iter().filter(|e| e.starts_with("frame")).count() > 10
        });
        eprintln!("seed {seed}: viewer on the primary after {attach:?} (simulated)");
        assert!(
            seen(test)
                .iter()
                .all(|e| frame_number(e).is_none_or(|n| n < 100_000)),
            "seed {seed}: the primary (priority 200) serves first"
        );
        s.crash("n1");
        // The standby numbers its frames from 100,000 and has been
        // publishing all along, so any frame at or above that is its.
        let took = run_until(&mut s, seed, "frames from the standby", LIMIT, || {
            seen(test)
                .iter()
                .any(|e| frame_number(e).is_some_and(|n| n >= 100_000))
        });
        eprintln!("seed {seed}: frames from the standby {took:?} (simulated) after the crash");
        let events = seen(test);
        let marker = events
            .iter()
            .position(|e| e == "discontinuity n2")
            .unwrap_or_else(|| panic!("seed {seed}: no discontinuity marker in {events:?}"));
        assert!(
            events[marker + 1..].iter().all(|e| !e.starts_with("end")),
            "seed {seed}: the viewer stays attached"
        );
        let first_after = events[marker + 1..]
            .iter()
            .find_map(|e| frame_number(e))
            .expect("a frame after the marker");
        assert_eq!(
            first_after % 10,
            0,
            "seed {seed}: resumes at the standby's keyframe"
        );
    }
}
