//! Figures for messaging and pub/sub, measured on
//! loopback with in-process nodes in one run:
//!
//! - remote tell msgs/s (16 B, 1 KiB) and call latency p50/p99;
//! - group publish to 3 nodes × 100 members; bytes per membership entry;
//! - cross-node pub→sub msgs/s (16 B, 1 KiB), fan-out to two nodes; bytes
//!   per subscription.
//!
//! The stream relay has its own bench (`--bench relay`).
//!
//! `cargo bench -p weft --bench capabilities [-- --json]`. Every loop is
//! bounded in count and time; every figure is checked for exact delivery.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use weft::{Message, Node, NodeConfig, Secret};

const BUDGET: Duration = Duration::from_millis(1500);

fn config(name: &str, seeds: &[std::net::SocketAddr]) -> NodeConfig {
    let mut c = NodeConfig::new(name, Secret::new(b"bench-secret-0123456789".to_vec()));
    c.listen = "127.0.0.1:0".parse().expect("addr");
    c.join = seeds.to_vec();
    c.cluster = "bench".into();
    c.messaging.mailbox_bytes = 256 << 20;
    c.messaging.subscription_bytes = 256 << 20;
    c
}

async fn cluster(n: usize) -> Vec<Node> {
    let first = Node::start(config("n1", &[])).await.expect("n1");
    let seed = [first.addr()];
    let mut nodes = vec![first];
    for i in 2..=n {
        nodes.push(Node::start(config(&format!("n{i}"), &seed)).await.expect("node"));
    }
    let names: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = nodes.iter().all(|a| {
            names
                .iter()
                .all(|b| *b == a.id().name || a.membership().is_linked(b))
        });
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "cluster did not form");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nodes
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

struct Row {
    name: String,
    value: f64,
    unit: &'static str,
}

/// Adds a figure and prints it at once (a later failure keeps it).
fn push(rows: &mut Vec<Row>, name: String, value: f64, unit: &'static str) {
    eprintln!("{name:<55} {value:>14.1} {unit}");
    rows.push(Row { name, value, unit });
}

async fn remote_tell(rows: &mut Vec<Row>, nodes: &[Node], size: usize) {
    let (a, b) = (&nodes[0], &nodes[1]);
    let inbox = b.mailboxes().spawn_with_capacity(1 << 30);
    let pid = inbox.pid().clone();
    let payload = Bytes::from(vec![7u8; size]);
    // The receiver counts while the sender runs, and the sender stays
    // within a window of it: a sustainable rate, nothing dropped (an
    // unbounded burst of 1 KiB messages can outgrow even this mailbox).
    let got = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader = {
        let got = got.clone();
        tokio::spawn(async move {
            while let Ok(Some(env)) = tokio::time::timeout(Duration::from_secs(5), inbox.recv()).await {
                assert_eq!(env.message.payload.len(), size);
                got.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    let received = || got.load(std::sync::atomic::Ordering::Relaxed);
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < BUDGET && sent < 5_000_000 {
        for _ in 0..256 {
            a.mailboxes()
                .send(&pid, Message::new("b", payload.clone()))
                .await
                .expect("send");
        }
        sent += 256;
        while received() + 20_000 < sent {
            tokio::task::yield_now().await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while received() < sent {
        assert!(
            Instant::now() < deadline,
            "not every message arrived: {} of {sent}, dropped {:?}",
            received(),
            nodes.iter().map(|n| n.stats().frames_dropped).collect::<Vec<_>>()
        );
        tokio::task::yield_now().await;
    }
    let secs = start.elapsed().as_secs_f64();
    reader.abort();
    assert_eq!(received(), sent, "exact count");
    push(
        rows,
        format!("remote tell {size} B"),
        sent as f64 / secs,
        "msgs/s",
    );
}

async fn call_latency(rows: &mut Vec<Row>, nodes: &[Node]) {
    let (a, b) = (nodes[0].clone(), &nodes[1]);
    let echo = b.mailboxes().spawn();
    let pid = echo.pid().clone();
    let server = tokio::spawn(async move {
        while let Some(env) = echo.recv().await {
            let m = env.message.clone();
            let _ = echo.reply(&env, m).await;
        }
    });
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < BUDGET && n < 20_000 {
        let t = Instant::now();
        a.mailboxes()
            .call(&pid, Message::new("q", Bytes::from_static(b"ping")))
            .timeout(Duration::from_secs(5))
            .await
            .expect("reply");
        h.record(t.elapsed().as_micros() as u64).expect("record");
        n += 1;
    }
    server.abort();
    push(
        rows,
        "call p50".to_string(),
        h.value_at_quantile(0.5) as f64,
        "µs",
    );
    push(
        rows,
        "call p99".to_string(),
        h.value_at_quantile(0.99) as f64,
        "µs",
    );
}

async fn group_publish(rows: &mut Vec<Row>, nodes: &[Node]) {
    let mut boxes = Vec::new();
    for n in nodes {
        for _ in 0..100 {
            let m = n.mailboxes().spawn_with_capacity(64 << 20);
            n.groups().join("bench", m.pid()).expect("join");
            boxes.push(m);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while nodes[0].groups().members("bench").len() < 300 {
        assert!(Instant::now() < deadline, "group did not converge");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let start = Instant::now();
    let mut published = 0u64;
    while start.elapsed() < BUDGET && published < 20_000 {
        nodes[0]
            .groups()
            .publish(
                "bench",
                Message::new("g", Bytes::from_static(b"0123456789abcdef")),
            )
            .await
            .expect("publish");
        published += 1;
    }
    let want = published as usize;
    for m in &boxes {
        for _ in 0..want {
            tokio::time::timeout(Duration::from_secs(30), m.recv())
                .await
                .expect("delivered")
                .expect("open");
        }
    }
    let secs = start.elapsed().as_secs_f64();
    push(
        rows,
        "group publish 3×100 members".to_string(),
        (published * 300) as f64 / secs,
        "deliveries/s",
    );
    // Memory per membership entry: 20,000 memberships on n2, seen on n1.
    let before = rss_bytes();
    let extra: Vec<_> = (0..20_000)
        .map(|_| nodes[1].mailboxes().spawn_with_capacity(1024))
        .collect();
    for (i, m) in extra.iter().enumerate() {
        nodes[1]
            .groups()
            .join(&format!("mem{}", i % 100), m.pid())
            .expect("join");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while nodes[0].registry_remote_entries() < 20_000 {
        assert!(Instant::now() < deadline, "memberships did not propagate");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let grown = rss_bytes().saturating_sub(before);
    push(
        rows,
        "memory per membership (owner mailbox + both views)".to_string(),
        grown as f64 / 20_000.0,
        "bytes",
    );
}

async fn pubsub_throughput(rows: &mut Vec<Row>, nodes: &[Node], size: usize, fanout: bool) {
    let a = &nodes[0];
    let subj = format!("bench.{size}.{fanout}");
    let mut subs = vec![nodes[1].pubsub().subscribe(&subj).expect("sub")];
    if fanout {
        subs.push(nodes[2].pubsub().subscribe(&subj).expect("sub"));
    }
    let payload = Bytes::from(vec![1u8; size]);
    let window = ((2u64 << 20) / (size as u64 + 64)).min(20_000);
    // Subscribers consume while the publisher runs: a sustainable rate.
    let counters: Vec<std::sync::Arc<std::sync::atomic::AtomicU64>> = subs
        .iter()
        .map(|_| std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)))
        .collect();
    // Warm-up messages (empty payloads) are counted apart.
    let warm: Vec<std::sync::Arc<std::sync::atomic::AtomicU64>> = subs
        .iter()
        .map(|_| std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)))
        .collect();
    let mut readers = Vec::new();
    for ((s, c), w) in subs
        .into_iter()
        .zip(counters.iter().cloned())
        .zip(warm.iter().cloned())
    {
        readers.push(tokio::spawn(async move {
            let mut batch = Vec::with_capacity(4096);
            loop {
                match tokio::time::timeout(Duration::from_secs(5), s.next()).await {
                    Ok(Some(m)) => {
                        batch.push(m);
                        s.drain_into(&mut batch);
                        let (mut data, mut warmup) = (0, 0);
                        for m in batch.drain(..) {
                            if m.payload.is_empty() {
                                warmup += 1;
                            } else {
                                assert_eq!(m.payload.len(), size);
                                data += 1;
                            }
                        }
                        c.fetch_add(data, std::sync::atomic::Ordering::Relaxed);
                        w.fetch_add(warmup, std::sync::atomic::Ordering::Relaxed);
                    }
                    _ => return s.dropped(),
                }
            }
        }));
    }
    // Until every subscriber got a warm-up message, its node's interest
    // may not have reached the publisher's node, and a publish would
    // (rightly) go nowhere. Interest counts per node cannot tell: the
    // previous measurement's subscriptions may still be counted.
    let deadline = Instant::now() + Duration::from_secs(30);
    while warm
        .iter()
        .any(|w| w.load(std::sync::atomic::Ordering::Relaxed) == 0)
    {
        assert!(Instant::now() < deadline, "interest did not propagate");
        a.pubsub().publish(&subj, Bytes::new()).await.expect("publish");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < BUDGET && sent < 3_000_000 {
        for _ in 0..256 {
            a.pubsub().publish(&subj, payload.clone()).await.expect("publish");
        }
        sent += 256;
        // Stay within a window of the slowest subscriber: nothing dropped.
        // The window is bounded in bytes too, well inside a subscription's
        // queue (4 MiB by default), or a burst of 1 KiB messages fills it.
        while counters
            .iter()
            .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
            .min()
            .unwrap_or(0)
            + window
            < sent
        {
            tokio::task::yield_now().await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while counters
        .iter()
        .any(|c| c.load(std::sync::atomic::Ordering::Relaxed) < sent)
    {
        assert!(
            Instant::now() < deadline,
            "not every message arrived: {:?} of {sent}, stats {:#?}",
            counters
                .iter()
                .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
                .collect::<Vec<_>>(),
            nodes.iter().map(|n| n.stats()).collect::<Vec<_>>()
        );
        tokio::task::yield_now().await;
    }
    for c in &counters {
        assert_eq!(c.load(std::sync::atomic::Ordering::Relaxed), sent, "exact count");
    }
    let secs = start.elapsed().as_secs_f64();
    for r in readers {
        r.abort();
    }
    eprintln!("pub→sub {size} B fanout={fanout}: {sent} msgs in {secs:.2} s");
    push(
        rows,
        format!("pub→sub {size} B{}", if fanout { " fan-out B+C" } else { " A→B" }),
        sent as f64 / secs,
        "msgs/s",
    );
}

async fn subscription_memory(rows: &mut Vec<Row>, nodes: &[Node]) {
    let before = rss_bytes();
    let subs: Vec<_> = (0..100_000)
        .map(|i| {
            nodes[1]
                .pubsub()
                .subscribe_with_capacity(&format!("m.{}.{i}", i % 100), None, 1024)
                .expect("sub")
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while nodes[0]
        .pubsub()
        .remote_interest()
        .get("n2")
        .copied()
        .unwrap_or(0)
        < 100_000
    {
        assert!(Instant::now() < deadline, "interest did not propagate");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let grown = rss_bytes().saturating_sub(before);
    push(
        rows,
        "memory per subscription (local + remote interest)".to_string(),
        grown as f64 / 100_000.0,
        "bytes",
    );
    drop(subs);
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let rows = rt.block_on(async {
        let mut rows = Vec::new();
        let nodes = cluster(3).await;
        remote_tell(&mut rows, &nodes, 16).await;
        remote_tell(&mut rows, &nodes, 1024).await;
        call_latency(&mut rows, &nodes).await;
        group_publish(&mut rows, &nodes).await;
        pubsub_throughput(&mut rows, &nodes, 16, false).await;
        pubsub_throughput(&mut rows, &nodes, 1024, false).await;
        pubsub_throughput(&mut rows, &nodes, 16, true).await;
        pubsub_throughput(&mut rows, &nodes, 1024, true).await;
        subscription_memory(&mut rows, &nodes).await;
        for n in nodes {
            n.shutdown(Duration::from_millis(100)).await;
        }
        rows
    });
    if json {
        let items: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{{\"name\":{:?},\"value\":{:.1},\"unit\":{:?}}}",
                    r.name, r.value, r.unit
                )
            })
            .collect();
        println!("[{}]", items.join(","));
    } else {
        for r in &rows {
            println!("{:<55} {:>14.1} {}", r.name, r.value, r.unit);
        }
    }
}
