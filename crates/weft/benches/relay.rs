//! Stream relay figures of issue 5, on loopback with in-process nodes:
//!
//! - local fan-out of one stream to 1 / 16 / 256 / 4096 subscribers on the
//!   origin node, frames delivered per second (1 KiB frames unless
//!   `--fanout-bytes`);
//! - origin→edge relay throughput, frames/s and MB/s at 1 KiB and 64 KiB
//!   frames: a publisher on `n1`, one subscriber on `n2`, which pulls the
//!   stream from `n1` over their link.
//!
//! ```text
//! cargo bench -p weft --bench relay               # table
//! cargo bench -p weft --bench relay -- --json     # JSON
//! cargo bench -p weft --bench relay -- --budget-ms 500 --reps 1
//! ```
//!
//! A publisher never waits (`StreamPublisher::send`; a subscriber or edge
//! that falls behind skips to the next keyframe). Here the publisher runs
//! at most a bounded window of frames ahead of its slowest subscriber, and
//! subscriber and link queues hold several windows, so the lag policy
//! never skips. Every run is checked: each subscriber gets every frame, in
//! order, with its size, and no `Skipped` or `Discontinuity` event;
//! `stream_frames_skipped` is 0 and no frame was dropped on any node; for
//! the relay, the origin sent the edge exactly one copy of each frame.
//! Figures are the median of `--reps` runs (3 by default), each timed from
//! the first frame until every subscriber received the last one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;
use weft::{
    Node, NodeConfig, Secret, StreamEvent, StreamFrame, StreamPolicy, StreamPublisher, StreamSubscription,
};

/// Subscriber counts of the local fan-out.
const FANOUT: [usize; 4] = [1, 16, 256, 4096];
/// Frame sizes of the origin→edge relay.
const RELAY_SIZES: [usize; 2] = [1024, 64 * 1024];
/// A keyframe every this many frames (a group of pictures).
const GOP: u64 = 30;
/// Fan-out: frames the publisher may run ahead of its slowest subscriber.
const FANOUT_WINDOW: u64 = 256;
/// Relay: bytes in flight between origin and edge subscriber.
const RELAY_WINDOW_BYTES: usize = 16 << 20;
/// Link send queue (default 8 MiB), above the relay window.
const LINK_QUEUE_BYTES: usize = 64 << 20;
/// Most deliveries (frames × subscribers) in one fan-out run.
const MAX_DELIVERIES: u64 = 50_000_000;
/// Most frames in one relay run.
const MAX_RELAY_FRAMES: u64 = 10_000_000;
/// Longest wait for anything to arrive.
const LIMIT: Duration = Duration::from_secs(60);

struct Options {
    json: bool,
    budget: Duration,
    reps: usize,
    fanout_bytes: usize,
}

fn options() -> Options {
    let mut o = Options {
        json: false,
        budget: Duration::from_millis(1500),
        reps: 3,
        fanout_bytes: 1024,
    };
    let mut args = std::env::args().skip(1);
    let number = |v: Option<String>, flag: &str| -> u64 {
        v.and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{flag} needs a number"))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => o.json = true,
            "--budget-ms" => o.budget = Duration::from_millis(number(args.next(), "--budget-ms")),
            "--reps" => o.reps = (number(args.next(), "--reps") as usize).max(1),
            "--fanout-bytes" => o.fanout_bytes = (number(args.next(), "--fanout-bytes") as usize).max(8),
            // `cargo bench` passes `--bench`; ignore it and anything else.
            _ => {}
        }
    }
    o
}

/// Frames a relay run keeps in flight at `size` bytes each.
fn relay_window(size: usize) -> u64 {
    (RELAY_WINDOW_BYTES / (size + 64)).clamp(16, 16_384) as u64
}

fn config(name: &str, seeds: &[std::net::SocketAddr], o: &Options) -> NodeConfig {
    let mut c = NodeConfig::new(name, Secret::new(*b"bench-secret-0123456789"));
    c.listen = "127.0.0.1:0".parse().expect("addr");
    c.cluster = "bench-relay".into();
    c.join = seeds.to_vec();
    c.link.send_queue_bytes = LINK_QUEUE_BYTES;
    // Subscriber queues hold four windows of the largest frames used.
    let biggest = RELAY_SIZES.iter().copied().max().unwrap_or(0).max(o.fanout_bytes);
    let frames = 4 * relay_window(1024).max(FANOUT_WINDOW) as usize;
    c.relay.subscriber_frames = frames;
    c.relay.subscriber_bytes = (4 * RELAY_WINDOW_BYTES).max(4 * FANOUT_WINDOW as usize * (biggest + 64));
    c
}

/// Starts `names` (the first is everyone's seed) and waits until every
/// pair is linked.
async fn cluster(names: &[&str], o: &Options) -> Vec<Node> {
    let first = Node::start(config(names[0], &[], o))
        .await
        .expect("start first node");
    let seed = [first.addr()];
    let mut nodes = vec![first];
    for name in &names[1..] {
        nodes.push(Node::start(config(name, &seed, o)).await.expect("start node"));
    }
    wait_until("every pair of nodes linked", || {
        nodes.iter().all(|a| {
            names
                .iter()
                .all(|b| *b == a.id().name || a.membership().is_linked(b))
        })
    })
    .await;
    nodes
}

/// Polls `cond` every 5 ms; panics with `what` after [`LIMIT`].
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {LIMIT:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Drop reasons of background traffic that is not measured here: the
/// shard service's consensus RPCs time out when the bench saturates the
/// machine, and their late replies are counted as dropped. The stream's
/// own frames are checked by exact counts instead.
const BACKGROUND_DROPS: [&str; 1] = ["late_rpc_reply"];

/// Asserts that no node skipped a stream frame or dropped a frame (other
/// than background ones, which are reported on stderr).
fn assert_clean(nodes: &[Node], phase: &str) {
    for n in nodes {
        let mut s = n.stats();
        assert_eq!(
            s.stream_frames_skipped,
            0,
            "{phase}: {} skipped stream frames",
            n.id().name
        );
        for label in BACKGROUND_DROPS {
            if let Some(count) = s.frames_dropped.remove(label) {
                eprintln!(
                    "{phase}: {}: {count} background frames dropped ({label})",
                    n.id().name
                );
            }
        }
        assert!(
            s.frames_dropped.is_empty(),
            "{phase}: {} dropped frames: {:?}",
            n.id().name,
            s.frames_dropped
        );
    }
}

/// Frames received by all subscribers of a run; publishers pace on it.
struct Progress {
    /// Per subscriber: frames received.
    counts: Vec<AtomicU64>,
    bad: AtomicBool,
    /// Set while the publisher waits: only then do subscribers notify.
    waiting: AtomicBool,
    moved: Notify,
}

impl Progress {
    fn new(subscribers: usize) -> Arc<Self> {
        Arc::new(Self {
            counts: (0..subscribers).map(|_| AtomicU64::new(0)).collect(),
            bad: AtomicBool::new(false),
            waiting: AtomicBool::new(false),
            moved: Notify::new(),
        })
    }

    fn slowest(&self) -> u64 {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Waits until `ok()` holds, waking on progress (and every 2 ms).
    async fn wait(&self, what: &str, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + LIMIT;
        loop {
            let moved = self.moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            self.waiting.store(true, Ordering::SeqCst);
            if ok() {
                self.waiting.store(false, Ordering::SeqCst);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {LIMIT:?} waiting for {what} (slowest {}, total {})",
                self.slowest(),
                self.total()
            );
            let _ = tokio::time::timeout(Duration::from_millis(2), moved).await;
        }
    }
}

/// Receives `sub` into slot `i` of `progress`: frames must come in order
/// from `first_seq`, each of `size` bytes, with no other event.
fn spawn_viewer(
    sub: StreamSubscription,
    i: usize,
    first_seq: u64,
    size: usize,
    progress: Arc<Progress>,
    notify_every: u64,
) -> tokio::task::JoinHandle<StreamSubscription> {
    tokio::spawn(async move {
        let mut next = first_seq;
        loop {
            match sub.next().await {
                Ok(StreamEvent::Frame(f)) => {
                    if f.seq != next || f.payload.len() != size {
                        progress.bad.store(true, Ordering::Relaxed);
                    }
                    next = f.seq + 1;
                    let n = progress.counts[i].fetch_add(1, Ordering::Relaxed) + 1;
                    if n.is_multiple_of(notify_every) && progress.waiting.load(Ordering::Relaxed) {
                        progress.moved.notify_waiters();
                    }
                }
                Ok(other) => {
                    eprintln!("viewer {i}: unexpected {other:?}");
                    progress.bad.store(true, Ordering::Relaxed);
                }
                Err(closed) => {
                    eprintln!("viewer {i}: stream closed: {closed}");
                    progress.bad.store(true, Ordering::Relaxed);
                    return sub;
                }
            }
        }
    })
}

fn frame(seq: u64, payload: &Bytes) -> StreamFrame {
    StreamFrame {
        seq,
        timestamp: seq * 33,
        keyframe: seq.is_multiple_of(GOP),
        config: false,
        payload: payload.clone(),
    }
}

#[derive(Clone, Copy, Debug)]
struct Run {
    frames: u64,
    deliveries: u64,
    elapsed: Duration,
}

impl Run {
    fn frame_rate(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64()
    }

    fn delivery_rate(&self) -> f64 {
        self.deliveries as f64 / self.elapsed.as_secs_f64()
    }
}

fn median(runs: &[Run]) -> Run {
    let mut v = runs.to_vec();
    v.sort_by(|a, b| a.delivery_rate().total_cmp(&b.delivery_rate()));
    v[v.len() / 2]
}

fn runs_json(runs: &[Run]) -> String {
    let items: Vec<String> = runs
        .iter()
        .map(|r| {
            format!(
                "{{\"frames\":{},\"deliveries\":{},\"seconds\":{:.6}}}",
                r.frames,
                r.deliveries,
                r.elapsed.as_secs_f64()
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// Publishes from `*next_seq` until the frame or time budget runs out,
/// never more than `window` frames ahead of the slowest subscriber, then
/// waits until every subscriber has every frame.
async fn publish_run(
    publisher: &StreamPublisher,
    next_seq: &mut u64,
    progress: &Progress,
    payload: &Bytes,
    window: u64,
    max_frames: u64,
    budget: Duration,
) -> Run {
    let base = progress.slowest();
    let subscribers = progress.counts.len() as u64;
    let start = Instant::now();
    let mut sent = 0u64;
    let step = window.div_ceil(4).clamp(1, 64);
    while sent < max_frames {
        publisher
            .send(frame(*next_seq, payload))
            .unwrap_or_else(|e| panic!("publish failed after {sent} frames: {e}"));
        *next_seq += 1;
        sent += 1;
        if sent.is_multiple_of(step) {
            if start.elapsed() >= budget {
                break;
            }
            if base + sent - progress.slowest() > window {
                progress
                    .wait("the slowest subscriber to catch up", || {
                        base + sent - progress.slowest() <= window / 2
                    })
                    .await;
            }
        }
    }
    progress
        .wait("every subscriber to get every frame", || {
            progress.slowest() >= base + sent
        })
        .await;
    let elapsed = start.elapsed();
    assert_eq!(
        progress.total(),
        (base + sent) * subscribers,
        "frames lost or duplicated"
    );
    assert!(
        !progress.bad.load(Ordering::Relaxed),
        "a subscriber got a wrong frame or event"
    );
    Run {
        frames: sent,
        deliveries: sent * subscribers,
        elapsed,
    }
}

struct FanoutRow {
    subscribers: usize,
    median: Run,
    runs: Vec<Run>,
}

async fn local_fanout(o: &Options, node: &Node, subscribers: usize) -> FanoutRow {
    let key = format!("bench/fanout/{subscribers}");
    let publisher = node
        .streams()
        .publish(&key, StreamPolicy::default())
        .expect("publish stream");
    let progress = Progress::new(subscribers);
    let mut viewers = Vec::with_capacity(subscribers);
    for i in 0..subscribers {
        let sub = node.streams().subscribe(&key).await.expect("subscribe");
        viewers.push(spawn_viewer(sub, i, 0, o.fanout_bytes, progress.clone(), 64));
    }
    let payload = Bytes::from(vec![0xC3u8; o.fanout_bytes]);
    let max_frames = (MAX_DELIVERIES / subscribers as u64).max(1);
    let mut seq = 0u64;
    publish_run(
        &publisher,
        &mut seq,
        &progress,
        &payload,
        FANOUT_WINDOW,
        max_frames,
        Duration::from_millis(200),
    )
    .await;
    let mut runs = Vec::new();
    for rep in 0..o.reps {
        let r = publish_run(
            &publisher,
            &mut seq,
            &progress,
            &payload,
            FANOUT_WINDOW,
            max_frames,
            o.budget,
        )
        .await;
        eprintln!(
            "fan-out to {subscribers:>4} rep {}: {:>10.0} frames delivered/s ({} frames in {:.3}s)",
            rep + 1,
            r.delivery_rate(),
            r.frames,
            r.elapsed.as_secs_f64()
        );
        runs.push(r);
    }
    for v in viewers {
        v.abort();
        let _ = v.await;
    }
    drop(publisher);
    FanoutRow {
        subscribers,
        median: median(&runs),
        runs,
    }
}

struct RelayRow {
    size: usize,
    window: u64,
    median: Run,
    runs: Vec<Run>,
}

async fn origin_to_edge(o: &Options, origin: &Node, edge: &Node, size: usize) -> RelayRow {
    let key = format!("bench/relay/{size}");
    let publisher = origin
        .streams()
        .publish(&key, StreamPolicy::default())
        .expect("publish stream");
    wait_until("the edge to locate the origin", || {
        edge.streams().locate(&key).as_deref() == Some(origin.id().name.as_str())
    })
    .await;
    let edge_name = edge.id().name.clone();
    let sent_to_edge = || {
        origin
            .stats()
            .peers
            .get(&edge_name)
            .map_or(0, |p| p.stream_frames_sent)
    };
    let copies_before = sent_to_edge();
    let sub = edge
        .streams()
        .subscribe(&key)
        .await
        .expect("subscribe on the edge");
    // A first keyframe, published until the edge's pull is live (the first
    // one the subscriber gets, directly or from the edge's replay buffer,
    // sets where its count starts).
    let payload = Bytes::from(vec![0x3Cu8; size]);
    let mut seq = 0u64;
    let deadline = Instant::now() + LIMIT;
    let first = loop {
        publisher.send(frame(seq, &payload)).expect("publish");
        seq += GOP;
        match tokio::time::timeout(Duration::from_millis(20), sub.next()).await {
            Ok(Ok(StreamEvent::Frame(f))) => break f.seq,
            Ok(other) => panic!("edge subscriber: unexpected {other:?}"),
            Err(_) => assert!(Instant::now() < deadline, "the edge never received the stream"),
        }
    };
    // Drain any other probe keyframes still on their way.
    let mut probes_seen = 1;
    while first + probes_seen * GOP < seq {
        match tokio::time::timeout(LIMIT, sub.next())
            .await
            .expect("probe frame")
        {
            Ok(StreamEvent::Frame(f)) if f.seq == first + probes_seen * GOP => probes_seen += 1,
            other => panic!("edge subscriber: unexpected {other:?} while draining probes"),
        }
    }
    let progress = Progress::new(1);
    let window = relay_window(size);
    let viewer = spawn_viewer(sub, 0, seq, size, progress.clone(), (window / 8).max(1));
    publish_run(
        &publisher,
        &mut seq,
        &progress,
        &payload,
        window,
        MAX_RELAY_FRAMES,
        Duration::from_millis(200),
    )
    .await;
    let mut runs = Vec::new();
    for rep in 0..o.reps {
        let r = publish_run(
            &publisher,
            &mut seq,
            &progress,
            &payload,
            window,
            MAX_RELAY_FRAMES,
            o.budget,
        )
        .await;
        eprintln!(
            "relay {size:>6} B rep {}: {:>9.0} frames/s, {:>8.1} MB/s ({} frames in {:.3}s)",
            rep + 1,
            r.frame_rate(),
            r.frame_rate() * size as f64 / 1e6,
            r.frames,
            r.elapsed.as_secs_f64()
        );
        runs.push(r);
    }
    // One copy of each frame crossed the link: the probes the edge took
    // after its pull started, plus every timed frame.
    let copies = sent_to_edge() - copies_before;
    let timed = progress.total();
    assert_eq!(
        copies,
        timed + probes_seen,
        "origin→edge stream frames vs frames delivered ({timed} timed, {probes_seen} probes)"
    );
    viewer.abort();
    let _ = viewer.await;
    drop(publisher);
    RelayRow {
        size,
        window,
        median: median(&runs),
        runs,
    }
}

fn size_label(size: usize) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

async fn bench(o: &Options) {
    let nodes = cluster(&["n1", "n2"], o).await;
    let mut fanout = Vec::new();
    for n in FANOUT {
        fanout.push(local_fanout(o, &nodes[0], n).await);
    }
    assert_clean(&nodes, "fan-out");
    let mut relay = Vec::new();
    for size in RELAY_SIZES {
        relay.push(origin_to_edge(o, &nodes[0], &nodes[1], size).await);
    }
    assert_clean(&nodes, "relay");
    for n in nodes {
        n.shutdown(Duration::from_millis(200)).await;
    }

    if o.json {
        let f: Vec<String> = fanout
            .iter()
            .map(|r| {
                format!(
                    "{{\"subscribers\":{},\"frame_bytes\":{},\"frames_delivered_per_s\":{:.1},\
                     \"frames_published_per_s\":{:.1},\"runs\":{}}}",
                    r.subscribers,
                    o.fanout_bytes,
                    r.median.delivery_rate(),
                    r.median.frame_rate(),
                    runs_json(&r.runs)
                )
            })
            .collect();
        let e: Vec<String> = relay
            .iter()
            .map(|r| {
                format!(
                    "{{\"frame_bytes\":{},\"window_frames\":{},\"frames_per_s\":{:.1},\"mb_per_s\":{:.2},\"runs\":{}}}",
                    r.size,
                    r.window,
                    r.median.frame_rate(),
                    r.median.frame_rate() * r.size as f64 / 1e6,
                    runs_json(&r.runs)
                )
            })
            .collect();
        println!(
            "{{\"bench\":\"relay\",\"budget_ms\":{},\"reps\":{},\"statistic\":\"median\",\"gop_frames\":{GOP},\
             \"local_fanout\":[{}],\"origin_to_edge\":[{}],\"stream_frames_skipped\":0}}",
            o.budget.as_millis(),
            o.reps,
            f.join(","),
            e.join(",")
        );
    } else {
        println!();
        println!(
            "stream relay, loopback, 2 tokio workers, keyframe every {GOP} frames, median of {} runs, budget {} ms per run",
            o.reps,
            o.budget.as_millis()
        );
        println!(
            "local fan-out, {} frames, one origin node:",
            size_label(o.fanout_bytes)
        );
        println!(
            "{:>12} | {:>18} | {:>18}",
            "subscribers", "frames delivered/s", "frames published/s"
        );
        println!("{}", "-".repeat(54));
        for r in &fanout {
            println!(
                "{:>12} | {:>18.0} | {:>18.0}",
                r.subscribers,
                r.median.delivery_rate(),
                r.median.frame_rate()
            );
        }
        println!("origin n1 → edge n2 (one subscriber on the edge):");
        println!(
            "{:>12} | {:>12} | {:>10} | {:>14}",
            "frame", "frames/s", "MB/s", "window frames"
        );
        println!("{}", "-".repeat(58));
        for r in &relay {
            println!(
                "{:>12} | {:>12.0} | {:>10.1} | {:>14}",
                size_label(r.size),
                r.median.frame_rate(),
                r.median.frame_rate() * r.size as f64 / 1e6,
                r.window
            );
        }
        println!(
            "stream_frames_skipped: 0, frames_dropped: none on any node (checked; background consensus RPC drops, if any, on stderr)"
        );
    }
}

fn main() {
    let o = options();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(bench(&o));
    rt.shutdown_timeout(Duration::from_secs(1));
}
