//! The raw-protocol throughput driver: one publisher writing pre-built
//! `PUB` records in large batches over a plain socket, subscribers
//! counting `MSG` records with a minimal incremental parser, and a window
//! that keeps the publisher at most N messages ahead of the slowest
//! subscriber, so that nothing is dropped and the rate is sustainable.
//! Counts are checked exactly at the end: every subscriber must receive
//! every message once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::Notify;

/// Bytes per publisher write (many records each).
const WRITE_BYTES: usize = 64 * 1024;
/// How long the last messages may take to arrive after publishing stops.
const DRAIN_LIMIT: Duration = Duration::from_secs(15);
/// How long interest may take to reach the publisher's node.
const WARMUP_LIMIT: Duration = Duration::from_secs(15);

/// One throughput measurement.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Publisher's server.
    pub publisher: SocketAddr,
    /// Subscribers' servers (one subscriber each).
    pub subscribers: Vec<SocketAddr>,
    /// Payload bytes per message.
    pub size: usize,
    /// How long to publish.
    pub duration: Duration,
    /// Most messages in flight (published, not yet received by the
    /// slowest subscriber).
    pub window: u64,
    /// Subject prefix, unique per measurement.
    pub subject: String,
}

/// What a measurement gave.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Outcome {
    /// Messages published.
    pub sent: u64,
    /// Messages each subscriber received (all equal to `sent`).
    pub received: Vec<u64>,
    /// From the first publish to the last message received, seconds.
    pub seconds: f64,
    /// Published messages per second (each delivered to every subscriber).
    pub msgs_per_sec: f64,
    /// Payload megabytes per second per subscriber.
    pub mb_per_sec: f64,
    /// CPU time the three servers spent per published message,
    /// microseconds (local clusters only; load-independent).
    pub server_cpu_us_per_msg: Option<f64>,
}

struct Shared {
    counts: Vec<AtomicU64>,
    warm: Vec<AtomicU64>,
    progress: Notify,
    failed: std::sync::Mutex<Option<String>>,
    stop: AtomicBool,
}

impl Shared {
    fn fail(&self, why: String) {
        let mut f = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(why);
        }
        self.progress.notify_one();
    }

    fn failure(&self) -> Option<String> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn min_count(&self) -> u64 {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Acquire))
            .min()
            .unwrap_or(0)
    }
}

/// Connects and reads the server's `INFO` line.
async fn open(addr: SocketAddr) -> anyhow::Result<(OwnedReadHalf, tokio::net::tcp::OwnedWriteHalf)> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (mut rd, wr) = stream.into_split();
    let mut info = Vec::new();
    let mut byte = [0u8; 1];
    while !info.ends_with(b"\r\n") {
        if info.len() > 64 * 1024 || rd.read(&mut byte).await? == 0 {
            bail!("{addr}: no INFO line");
        }
        info.push(byte[0]);
    }
    if !info.starts_with(b"INFO ") {
        bail!("{addr}: expected INFO, got {:?}", String::from_utf8_lossy(&info));
    }
    Ok((rd, wr))
}

/// Counts `MSG` records of sid `1` (data) and `2` (warm-up) and answers
/// server pings. Any `-ERR` fails the run.
async fn subscriber(
    i: usize,
    mut rd: OwnedReadHalf,
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    shared: Arc<Shared>,
) {
    let mut buf = vec![0u8; 1024 * 1024];
    let mut filled = 0usize;
    let mut skip = 0usize;
    let (mut data, mut warm) = (0u64, 0u64);
    loop {
        let n = match rd.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => {
                if !shared.stop.load(Ordering::Acquire) {
                    shared.fail(format!("subscriber {i}: the server closed the connection"));
                }
                return;
            }
            Ok(n) => n,
        };
        filled += n;
        let mut pos = 0usize;
        let mut pong = false;
        while pos < filled {
            if skip > 0 {
                let k = skip.min(filled - pos);
                pos += k;
                skip -= k;
                continue;
            }
            let Some(nl) = memchr::memchr(b'\n', &buf[pos..filled]) else {
                break;
            };
            let line = &buf[pos..pos + nl];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(args) = line.strip_prefix(b"MSG ") {
                let Some((sid, size)) = msg_sid_and_size(args) else {
                    shared.fail(format!("subscriber {i}: bad MSG line"));
                    return;
                };
                match sid {
                    b"1" => data += 1,
                    b"2" => warm += 1,
                    _ => {}
                }
                skip = size + 2;
            } else if line == b"PING" {
                pong = true;
            } else if line.starts_with(b"-ERR") {
                shared.fail(format!("subscriber {i}: {}", String::from_utf8_lossy(line)));
                return;
            }
            pos += nl + 1;
        }
        buf.copy_within(pos..filled, 0);
        filled -= pos;
        if filled == buf.len() {
            shared.fail(format!("subscriber {i}: a control line longer than the buffer"));
            return;
        }
        shared.counts[i].store(data, Ordering::Release);
        shared.warm[i].store(warm, Ordering::Release);
        shared.progress.notify_one();
        if pong && wr.write_all(b"PONG\r\n").await.is_err() {
            return;
        }
    }
}

/// The sid and payload size of the arguments of a `MSG` line
/// (`<subject> <sid> [reply] <size>`, single spaces as servers send them).
fn msg_sid_and_size(args: &[u8]) -> Option<(&[u8], usize)> {
    let subject_end = memchr::memchr(b' ', args)?;
    let rest = &args[subject_end + 1..];
    let sid = &rest[..memchr::memchr(b' ', rest)?];
    let size_start = memchr::memrchr(b' ', rest)? + 1;
    Some((sid, parse_usize(&rest[size_start..])?))
}

fn parse_usize(b: &[u8]) -> Option<usize> {
    if b.is_empty() || b.len() > 18 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, &d| n * 10 + usize::from(d - b'0')))
}

/// Reads a connection's input until `PONG`.
async fn until_pong(rd: &mut OwnedReadHalf) -> anyhow::Result<()> {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while !seen.windows(6).any(|w| w == b"PONG\r\n") {
        let n = tokio::time::timeout(WARMUP_LIMIT, rd.read(&mut chunk))
            .await
            .map_err(|_| anyhow!("no PONG"))??;
        if n == 0 {
            bail!("closed before PONG");
        }
        seen.extend_from_slice(&chunk[..n]);
        if let Some(i) = seen.windows(4).position(|w| w == b"-ERR") {
            bail!("server error: {}", String::from_utf8_lossy(&seen[i..]));
        }
    }
    Ok(())
}

/// Runs one measurement; `progress` gets the messages received so far.
pub async fn run(plan: &Plan, progress: impl Fn(u64)) -> anyhow::Result<Outcome> {
    let n = plan.subscribers.len();
    let shared = Arc::new(Shared {
        counts: (0..n).map(|_| AtomicU64::new(0)).collect(),
        warm: (0..n).map(|_| AtomicU64::new(0)).collect(),
        progress: Notify::new(),
        failed: std::sync::Mutex::new(None),
        stop: AtomicBool::new(false),
    });
    let data = format!("{}.data", plan.subject);
    let warm = format!("{}.warm", plan.subject);
    let mut tasks = Vec::new();
    for (i, addr) in plan.subscribers.iter().enumerate() {
        let (mut rd, mut wr) = open(*addr).await?;
        // Data first, warm-up second: once the warm-up subject's interest
        // reached the publisher's node, the data subject's has too.
        let hello = format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":false,\"protocol\":1}}\r\nSUB {data} 1\r\nSUB {warm} 2\r\nPING\r\n"
        );
        wr.write_all(hello.as_bytes()).await?;
        until_pong(&mut rd)
            .await
            .with_context(|| format!("subscriber on {addr}"))?;
        tasks.push(tokio::spawn(subscriber(i, rd, wr, shared.clone())));
    }
    let (pub_rd, mut pub_wr) = open(plan.publisher).await?;
    pub_wr
        .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":false,\"protocol\":1}\r\n")
        .await?;
    let pong_needed = Arc::new(AtomicBool::new(false));
    let pub_reader = tokio::spawn(publisher_reader(pub_rd, pong_needed.clone(), shared.clone()));

    let result = measure(plan, &shared, &mut pub_wr, &warm, &data, &pong_needed, &progress).await;
    shared.stop.store(true, Ordering::Release);
    pub_reader.abort();
    for t in tasks {
        t.abort();
    }
    let _ = pub_wr.shutdown().await;
    result
}

/// Discards what the server sends the publisher, noting pings and errors.
async fn publisher_reader(mut rd: OwnedReadHalf, pong: Arc<AtomicBool>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => {
                if !shared.stop.load(Ordering::Acquire) {
                    shared.fail("publisher: the server closed the connection".into());
                }
                return;
            }
            Ok(n) => {
                let got = &buf[..n];
                if got.windows(4).any(|w| w == b"PING") {
                    pong.store(true, Ordering::Release);
                }
                if let Some(i) = got.windows(4).position(|w| w == b"-ERR") {
                    shared.fail(format!("publisher: {}", String::from_utf8_lossy(&got[i..])));
                    return;
                }
            }
        }
    }
}

async fn measure(
    plan: &Plan,
    shared: &Shared,
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    warm: &str,
    data: &str,
    pong: &AtomicBool,
    progress: &impl Fn(u64),
) -> anyhow::Result<Outcome> {
    // Warm-up: until every subscriber sees the warm-up subject.
    let deadline = Instant::now() + WARMUP_LIMIT;
    let warm_rec = format!("PUB {warm} 0\r\n\r\n");
    while shared.warm.iter().any(|w| w.load(Ordering::Acquire) == 0) {
        if let Some(f) = shared.failure() {
            bail!(f);
        }
        if Instant::now() > deadline {
            bail!("interest did not reach the publisher's server within {WARMUP_LIMIT:?}");
        }
        wr.write_all(warm_rec.as_bytes()).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut record = format!("PUB {data} {}\r\n", plan.size).into_bytes();
    record.extend(std::iter::repeat_n(b'x', plan.size));
    record.extend_from_slice(b"\r\n");
    let per_batch = (WRITE_BYTES / record.len()).max(1) as u64;
    let window = plan.window.max(per_batch);
    let batch: Vec<u8> = record.repeat(per_batch as usize);

    let start = Instant::now();
    let mut sent: u64 = 0;
    while start.elapsed() < plan.duration {
        loop {
            if let Some(f) = shared.failure() {
                bail!(f);
            }
            if sent - shared.min_count() + per_batch <= window {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(5), shared.progress.notified()).await;
        }
        if pong.swap(false, Ordering::AcqRel) {
            wr.write_all(b"PONG\r\n").await?;
        }
        wr.write_all(&batch).await?;
        sent += per_batch;
        progress(shared.min_count());
    }
    // Everything out: wait for the last message at every subscriber.
    let drain = Instant::now() + DRAIN_LIMIT;
    while shared.min_count() < sent {
        if let Some(f) = shared.failure() {
            bail!(f);
        }
        if Instant::now() > drain {
            let got: Vec<u64> = shared.counts.iter().map(|c| c.load(Ordering::Acquire)).collect();
            bail!("lost messages: sent {sent}, received {got:?} after {DRAIN_LIMIT:?}");
        }
        let _ = tokio::time::timeout(Duration::from_millis(5), shared.progress.notified()).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    // A short look for duplicates (a bounded wait, not a timing check).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let received: Vec<u64> = shared.counts.iter().map(|c| c.load(Ordering::Acquire)).collect();
    if received.iter().any(|&r| r != sent) {
        bail!("counts differ: sent {sent}, received {received:?}");
    }
    progress(sent);
    let msgs_per_sec = sent as f64 / seconds;
    Ok(Outcome {
        sent,
        received,
        seconds,
        msgs_per_sec,
        mb_per_sec: msgs_per_sec * plan.size as f64 / 1e6,
        server_cpu_us_per_msg: None,
    })
}

#[cfg(test)]
mod tests {
    use super::msg_sid_and_size;

    #[test]
    fn msg_lines_give_their_sid_and_size() {
        assert_eq!(msg_sid_and_size(b"a.b 1 16"), Some((&b"1"[..], 16)));
        assert_eq!(msg_sid_and_size(b"a.b 22 _INBOX.x 0"), Some((&b"22"[..], 0)));
        assert_eq!(msg_sid_and_size(b"a.b 1"), None);
        assert_eq!(msg_sid_and_size(b"a.b 1 x"), None);
        assert_eq!(msg_sid_and_size(b"a.b 1 "), None);
    }
}
