//! Request/reply latency with a real client (async-nats): a responder on
//! one server, a requester on another, one request at a time.

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use futures::StreamExt;
use hdrhistogram::Histogram;

/// How long the responder's interest may take to reach the requester.
const READY_LIMIT: Duration = Duration::from_secs(15);
/// Requests before measuring.
const WARMUP: usize = 200;

/// Latency figures in microseconds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Latency {
    /// Requests measured.
    pub count: u64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
}

/// Measures request/reply for `duration`: requester on `requester`,
/// responder on `responder` (both `host:port`).
pub async fn run(
    requester: &str,
    responder: &str,
    subject: &str,
    duration: Duration,
    progress: impl Fn(u64),
) -> anyhow::Result<Latency> {
    let server = async_nats::connect(responder)
        .await
        .with_context(|| format!("responder cannot connect to {responder}"))?;
    let mut sub = server.subscribe(subject.to_string()).await?;
    let answer = server.clone();
    let responder_task = tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(reply) = m.reply {
                let _ = answer.publish(reply, m.payload).await;
            }
        }
    });
    let client = async_nats::connect(requester)
        .await
        .with_context(|| format!("requester cannot connect to {requester}"))?;
    let result = measure(&client, subject, duration, progress).await;
    responder_task.abort();
    result
}

async fn measure(
    client: &async_nats::Client,
    subject: &str,
    duration: Duration,
    progress: impl Fn(u64),
) -> anyhow::Result<Latency> {
    let body = Bytes::from_static(b"0123456789abcdef");
    let deadline = Instant::now() + READY_LIMIT;
    loop {
        match client.request(subject.to_string(), body.clone()).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => bail!("no reply within {READY_LIMIT:?}: {e}"),
        }
    }
    for _ in 0..WARMUP {
        client.request(subject.to_string(), body.clone()).await?;
    }
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| anyhow!("histogram: {e}"))?;
    let start = Instant::now();
    while start.elapsed() < duration {
        let t = Instant::now();
        client.request(subject.to_string(), body.clone()).await?;
        let us = t.elapsed().as_micros().max(1) as u64;
        h.record(us.min(60_000_000))
            .map_err(|e| anyhow!("histogram: {e}"))?;
        if h.len() % 256 == 0 {
            progress(h.len());
        }
    }
    let q = |p: f64| h.value_at_quantile(p) as f64;
    Ok(Latency {
        count: h.len(),
        p50_us: q(0.50),
        p99_us: q(0.99),
        p999_us: q(0.999),
        max_us: h.max() as f64,
    })
}
