//! Node-to-node link throughput on loopback, measured side by side with a
//! raw TCP baseline in the same run.
//!
//! Two weft nodes run in this process (one tokio runtime, two workers). For
//! each payload size the first node sends as many data-channel messages to
//! the second as fit a bounded count and a time budget; the second counts
//! them in a channel callback. The clock stops when the receiver has
//! counted every message sent. The baseline does the same over one plain
//! tokio `TcpStream` pair (`TCP_NODELAY`): length-prefixed messages written
//! through a 64 KiB `BufWriter`, read with a 64 KiB buffer and counted by a
//! minimal length-prefix parser.
//!
//! ```text
//! cargo bench -p weft --bench link_throughput               # table
//! cargo bench -p weft --bench link_throughput -- --json     # JSON
//! cargo bench -p weft --bench link_throughput -- --budget-ms 500 --reps 1 --sizes 16,1024
//! ```
//!
//! Profiling aids: `--only weft` or `--only raw` runs one side (the other
//! reads 0); `--raw-buffer-kib N` changes the baseline's 64 KiB buffers.
//!
//! Every measurement is repeated (3 times by default) and the median is
//! reported. MB/s counts payload bytes only (10^6 bytes), not framing. The
//! bench fails loudly if a message is lost or any frame was dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use weft::{Node, NodeConfig, Secret};

/// Payload sizes measured, in bytes.
const SIZES: [usize; 3] = [16, 1024, 64 * 1024];
/// The data channel used by the bench.
const CHANNEL: u32 = 7;
/// Longest wait for the receiver to catch up after the sender stopped.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// The clock is read once per this many sends.
const CLOCK_EVERY: u64 = 64;

/// Most messages sent in one measurement, by payload size.
fn max_messages(size: usize) -> u64 {
    match size {
        0..=64 => 150_000_000,
        65..=4096 => 8_000_000,
        _ => 250_000,
    }
}

struct Options {
    json: bool,
    budget: Duration,
    reps: usize,
    sizes: Vec<usize>,
    /// Profiling aid: run only `weft` or only `raw` (the other reads 0).
    only: Option<String>,
    /// Baseline write and read buffer size (64 KiB unless told).
    raw_buffer: usize,
}

fn options() -> Options {
    let mut o = Options {
        json: false,
        budget: Duration::from_millis(2000),
        reps: 3,
        sizes: SIZES.to_vec(),
        only: None,
        raw_buffer: 64 * 1024,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => o.json = true,
            "--budget-ms" => {
                let v = args.next().and_then(|v| v.parse().ok());
                o.budget = Duration::from_millis(v.expect("--budget-ms needs a number"));
            }
            "--reps" => {
                let v: usize = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--reps needs a number");
                o.reps = v.max(1);
            }
            "--sizes" => {
                let v = args.next().expect("--sizes needs a list, e.g. 16,1024");
                o.sizes = v
                    .split(',')
                    .map(|s| s.trim().parse().expect("--sizes: a payload size in bytes"))
                    .collect();
            }
            "--only" => {
                let v = args.next().expect("--only needs weft or raw");
                assert!(v == "weft" || v == "raw", "--only takes weft or raw");
                o.only = Some(v);
            }
            "--raw-buffer-kib" => {
                let v: usize = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--raw-buffer-kib needs a number");
                o.raw_buffer = v.max(1) * 1024;
            }
            // `cargo bench` passes `--bench`; ignore it and anything else.
            _ => {}
        }
    }
    o
}

/// Counts received messages and wakes the measuring task once the count
/// reaches `target`.
struct Counter {
    count: AtomicU64,
    target: AtomicU64,
    reached: Notify,
}

impl Counter {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            count: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            reached: Notify::new(),
        })
    }

    fn add(&self, n: u64) {
        let now = self.count.fetch_add(n, Ordering::SeqCst) + n;
        if now >= self.target.load(Ordering::SeqCst) {
            self.reached.notify_one();
        }
    }

    fn get(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// Waits until the count reaches `target`; returns false on timeout.
    async fn wait_for(&self, target: u64, limit: Duration) -> bool {
        self.target.store(target, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + limit;
        let ok = loop {
            if self.get() >= target {
                break true;
            }
            if tokio::time::timeout_at(deadline, self.reached.notified())
                .await
                .is_err()
            {
                break self.get() >= target;
            }
        };
        self.target.store(u64::MAX, Ordering::SeqCst);
        ok
    }
}

/// One timed run.
#[derive(Clone, Copy, Debug)]
struct Run {
    messages: u64,
    elapsed: Duration,
}

impl Run {
    fn rate(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }
}

fn median(runs: &mut [Run]) -> Run {
    runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    runs[runs.len() / 2]
}

/// Sends on the weft link until the count or the budget runs out, then
/// waits until the receiver has counted every message.
async fn weft_run(n1: &Node, counter: &Counter, payload: &Bytes, budget: Duration) -> Run {
    let max = max_messages(payload.len());
    let base = counter.get();
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < max {
        if let Err(e) = n1.channels().send("n2", CHANNEL, payload.clone()).await {
            panic!("send_data failed after {sent} messages: {e}");
        }
        sent += 1;
        if sent.is_multiple_of(CLOCK_EVERY) && start.elapsed() >= budget {
            break;
        }
    }
    if !counter.wait_for(base + sent, DRAIN_LIMIT).await {
        panic!(
            "weft: receiver counted {} of {sent} messages of {} B within {DRAIN_LIMIT:?}; \
             n1 frames_dropped {:?}, link_errors {:?}",
            counter.get() - base,
            payload.len(),
            n1.stats().frames_dropped,
            n1.stats().link_errors,
        );
    }
    let elapsed = start.elapsed();
    let got = counter.get() - base;
    assert_eq!(got, sent, "weft: receiver count differs from sent count");
    Run {
        messages: sent,
        elapsed,
    }
}

/// Counts length-prefixed messages across arbitrary read boundaries.
#[derive(Default)]
struct LengthParser {
    head: [u8; 4],
    head_len: usize,
    body_left: usize,
}

impl LengthParser {
    /// Consumes `buf`; returns how many messages it completed.
    fn feed(&mut self, mut buf: &[u8]) -> u64 {
        let mut done = 0;
        while !buf.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(buf.len());
                self.body_left -= n;
                buf = &buf[n..];
                if self.body_left == 0 {
                    done += 1;
                }
                continue;
            }
            let n = (4 - self.head_len).min(buf.len());
            self.head[self.head_len..self.head_len + n].copy_from_slice(&buf[..n]);
            self.head_len += n;
            buf = &buf[n..];
            if self.head_len == 4 {
                self.head_len = 0;
                self.body_left = u32::from_be_bytes(self.head) as usize;
                if self.body_left == 0 {
                    done += 1;
                }
            }
        }
        done
    }
}

/// The raw TCP baseline: a connected pair, the reader counting into
/// `counter` on its own task.
struct RawPair {
    writer: BufWriter<tokio::net::tcp::OwnedWriteHalf>,
    counter: Arc<Counter>,
    reader: tokio::task::JoinHandle<()>,
}

async fn raw_pair(buffer: usize) -> std::io::Result<RawPair> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (dialed, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (dialed, (accepted, _)) = (dialed?, accepted?);
    dialed.set_nodelay(true)?;
    accepted.set_nodelay(true)?;
    let counter = Counter::new();
    let reader = {
        let counter = counter.clone();
        let mut rd = accepted;
        tokio::spawn(async move {
            let mut buf = vec![0u8; buffer];
            let mut parser = LengthParser::default();
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let done = parser.feed(&buf[..n]);
                        if done > 0 {
                            counter.add(done);
                        }
                    }
                }
            }
        })
    };
    let (_rd, wr) = dialed.into_split();
    Ok(RawPair {
        writer: BufWriter::with_capacity(buffer, wr),
        counter,
        reader,
    })
}

async fn raw_run(pair: &mut RawPair, message: &[u8], budget: Duration) -> Run {
    let max = max_messages(message.len() - 4);
    let base = pair.counter.get();
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < max {
        if let Err(e) = pair.writer.write_all(message).await {
            panic!("raw write failed after {sent} messages: {e}");
        }
        sent += 1;
        if sent.is_multiple_of(CLOCK_EVERY) && start.elapsed() >= budget {
            break;
        }
    }
    if let Err(e) = pair.writer.flush().await {
        panic!("raw flush failed: {e}");
    }
    if !pair.counter.wait_for(base + sent, DRAIN_LIMIT).await {
        panic!(
            "raw: receiver counted {} of {sent} messages within {DRAIN_LIMIT:?}",
            pair.counter.get() - base
        );
    }
    let elapsed = start.elapsed();
    assert_eq!(pair.counter.get() - base, sent, "raw: count mismatch");
    Run {
        messages: sent,
        elapsed,
    }
}

struct Row {
    size: usize,
    weft: Run,
    raw: Run,
    weft_runs: Vec<Run>,
    raw_runs: Vec<Run>,
}

fn mb_per_s(run: &Run, size: usize) -> f64 {
    run.rate() * size as f64 / 1e6
}

fn size_label(size: usize) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

fn rates_json(runs: &[Run]) -> String {
    let items: Vec<String> = runs
        .iter()
        .map(|r| {
            format!(
                "{{\"messages\":{},\"seconds\":{:.6}}}",
                r.messages,
                r.elapsed.as_secs_f64()
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

fn drops_json(m: &std::collections::BTreeMap<String, u64>) -> String {
    let items: Vec<String> = m.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", items.join(","))
}

fn config(name: &str) -> NodeConfig {
    let mut c = NodeConfig::new(name, Secret::new(*b"bench-secret-0123456789"));
    c.listen = "127.0.0.1:0".parse().expect("addr");
    c.cluster = "bench".into();
    c
}

async fn bench(o: &Options) {
    let n1 = Node::start(config("n1")).await.expect("start n1");
    let mut c2 = config("n2");
    c2.join = vec![n1.addr()];
    let n2 = Node::start(c2).await.expect("start n2");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !n1.membership().is_linked("n2") {
        assert!(Instant::now() < deadline, "n1 never linked to n2");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let weft_counter = Counter::new();
    {
        let c = weft_counter.clone();
        n2.channels()
            .on(CHANNEL, Arc::new(move |_, _| c.add(1)))
            .expect("open channel");
    }
    let mut raw = raw_pair(o.raw_buffer).await.expect("raw TCP pair");

    let warmup = Duration::from_millis(200).min(o.budget);
    let mut rows = Vec::new();
    for &size in &o.sizes {
        let payload = Bytes::from(vec![0xA5u8; size]);
        let mut message = Vec::with_capacity(size + 4);
        message.extend_from_slice(&(size as u32).to_be_bytes());
        message.extend_from_slice(&payload);

        let skipped = Run {
            messages: 0,
            elapsed: Duration::from_secs(1),
        };
        let do_weft = o.only.as_deref() != Some("raw");
        let do_raw = o.only.as_deref() != Some("weft");
        if do_weft {
            weft_run(&n1, &weft_counter, &payload, warmup).await;
        }
        if do_raw {
            raw_run(&mut raw, &message, warmup).await;
        }
        let mut weft_runs = Vec::new();
        let mut raw_runs = Vec::new();
        // Interleave so that machine noise hits both sides alike.
        for rep in 0..o.reps {
            let w = if do_weft {
                weft_run(&n1, &weft_counter, &payload, o.budget).await
            } else {
                skipped
            };
            let r = if do_raw {
                raw_run(&mut raw, &message, o.budget).await
            } else {
                skipped
            };
            eprintln!(
                "{:>7} rep {}: weft {:>10.0} msg/s ({} msgs in {:.3}s)  raw {:>10.0} msg/s ({} msgs in {:.3}s)",
                size_label(size),
                rep + 1,
                w.rate(),
                w.messages,
                w.elapsed.as_secs_f64(),
                r.rate(),
                r.messages,
                r.elapsed.as_secs_f64(),
            );
            weft_runs.push(w);
            raw_runs.push(r);
        }
        let weft = median(&mut weft_runs.clone());
        let rawm = median(&mut raw_runs.clone());
        rows.push(Row {
            size,
            weft,
            raw: rawm,
            weft_runs,
            raw_runs,
        });
    }

    let s1 = n1.stats();
    let s2 = n2.stats();
    let lost: u64 = s1.frames_dropped.values().chain(s2.frames_dropped.values()).sum();
    let traffic = s1.peers.get("n2").cloned().unwrap_or_default();
    if o.json {
        let items: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{{\"size\":{},\"weft_msgs_per_s\":{:.1},\"weft_mb_per_s\":{:.2},\
                     \"raw_msgs_per_s\":{:.1},\"raw_mb_per_s\":{:.2},\"ratio\":{:.4},\
                     \"weft_runs\":{},\"raw_runs\":{}}}",
                    r.size,
                    r.weft.rate(),
                    mb_per_s(&r.weft, r.size),
                    r.raw.rate(),
                    mb_per_s(&r.raw, r.size),
                    r.weft.rate() / r.raw.rate(),
                    rates_json(&r.weft_runs),
                    rates_json(&r.raw_runs),
                )
            })
            .collect();
        println!(
            "{{\"bench\":\"link_throughput\",\"budget_ms\":{},\"reps\":{},\"raw_buffer_bytes\":{},\"statistic\":\"median\",\
             \"results\":[{}],\"frames_dropped\":{{\"n1\":{},\"n2\":{}}},\
             \"n1_to_n2\":{{\"frames_sent\":{},\"bytes_sent\":{}}}}}",
            o.budget.as_millis(),
            o.reps,
            o.raw_buffer,
            items.join(","),
            drops_json(&s1.frames_dropped),
            drops_json(&s2.frames_dropped),
            traffic.frames_sent,
            traffic.bytes_sent,
        );
    } else {
        println!();
        println!(
            "link throughput, loopback, median of {} runs, budget {} ms per run, \
             raw buffers {} KiB (MB = 10^6 payload bytes)",
            o.reps,
            o.budget.as_millis(),
            o.raw_buffer / 1024,
        );
        println!(
            "{:>8} | {:>13} | {:>10} | {:>13} | {:>10} | {:>9}",
            "size", "weft msgs/s", "weft MB/s", "raw msgs/s", "raw MB/s", "weft/raw"
        );
        println!("{}", "-".repeat(80));
        for r in &rows {
            println!(
                "{:>8} | {:>13.0} | {:>10.1} | {:>13.0} | {:>10.1} | {:>8.1}%",
                size_label(r.size),
                r.weft.rate(),
                mb_per_s(&r.weft, r.size),
                r.raw.rate(),
                mb_per_s(&r.raw, r.size),
                100.0 * r.weft.rate() / r.raw.rate(),
            );
        }
        println!(
            "frames_dropped: n1 {:?}, n2 {:?}; n1→n2 frames_sent {} (frames written, incl. pings), bytes_sent {}",
            s1.frames_dropped, s2.frames_dropped, traffic.frames_sent, traffic.bytes_sent
        );
    }
    assert_eq!(
        lost, 0,
        "frames were dropped: n1 {:?}, n2 {:?}",
        s1.frames_dropped, s2.frames_dropped
    );

    drop(raw.writer);
    raw.reader.abort();
    n2.shutdown(Duration::from_millis(500)).await;
    n1.shutdown(Duration::from_millis(500)).await;
}

fn main() {
    check_parser();
    let o = options();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(bench(&o));
    rt.shutdown_timeout(Duration::from_secs(1));
}

/// Checks the baseline's parser on messages split at every boundary
/// (no test harness here, so it runs at start-up; it takes microseconds).
fn check_parser() {
    let mut wire = Vec::new();
    for len in [0u32, 3, 70000, 1] {
        wire.extend_from_slice(&len.to_be_bytes());
        wire.extend(std::iter::repeat_n(1u8, len as usize));
    }
    for chunk in [1, 2, 3, 5, 4096, wire.len()] {
        let mut p = LengthParser::default();
        let n: u64 = wire.chunks(chunk).map(|c| p.feed(c)).sum();
        assert_eq!(n, 4, "length parser miscounts with {chunk}-byte reads");
    }
}
