//! Request/reply latency with a real client (async-nats): a responder on
//! one server, a requester on another, one request at a time.
//!
//! A [`Session`] keeps its two connections open and measures in slices,
//! so that two systems can be measured alternately: on a shared machine
//! the noise changes from second to second, and alternating short slices
//! gives both systems the same share of it.

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use futures::StreamExt;
use hdrhistogram::Histogram;

/// How long the responder's interest may take to reach the requester's
/// server.
const READY_LIMIT: Duration = Duration::from_secs(15);
/// Requests sent before measuring.
const WARMUP: usize = 200;

/// Request/reply latency figures, microseconds.
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
    /// Slowest.
    pub max_us: f64,
}

/// A requester and a responder connected, warmed up, with the latencies
/// measured so far.
pub struct Session {
    client: async_nats::Client,
    responder: tokio::task::JoinHandle<()>,
    subject: String,
    hist: Histogram<u64>,
}

impl Session {
    /// Connects the responder to `responder` and the requester to
    /// `requester`, waits until a request is answered, and warms up.
    pub async fn open(requester: &str, responder: &str, subject: &str) -> anyhow::Result<Self> {
        let server = async_nats::connect(responder)
            .await
            .with_context(|| format!("responder cannot connect to {responder}"))?;
        let mut sub = server.subscribe(subject.to_string()).await?;
        let answer = server.clone();
        let responder = tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                if let Some(reply) = m.reply {
                    let _ = answer.publish(reply, m.payload).await;
                }
            }
        });
        let session = async {
            let client = async_nats::connect(requester)
                .await
                .with_context(|| format!("requester cannot connect to {requester}"))?;
            let deadline = Instant::now() + READY_LIMIT;
            loop {
                match client.request(subject.to_string(), body()).await {
                    Ok(_) => break,
                    Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(20)).await
                    }
                    Err(e) => bail!("no reply within {READY_LIMIT:?}: {e}"),
                }
            }
            for _ in 0..WARMUP {
                client.request(subject.to_string(), body()).await?;
            }
            let hist =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| anyhow!("histogram: {e}"))?;
            anyhow::Ok((client, hist))
        }
        .await;
        match session {
            Ok((client, hist)) => Ok(Self {
                client,
                responder,
                subject: subject.to_string(),
                hist,
            }),
            Err(e) => {
                responder.abort();
                Err(e)
            }
        }
    }

    /// Sends requests one at a time for `duration`, recording each
    /// round trip; `progress` gets the number measured so far.
    pub async fn measure(&mut self, duration: Duration, progress: impl Fn(u64)) -> anyhow::Result<()> {
        let start = Instant::now();
        while start.elapsed() < duration {
            let t = Instant::now();
            self.client.request(self.subject.clone(), body()).await?;
            let us = t.elapsed().as_micros().max(1) as u64;
            self.hist
                .record(us.min(60_000_000))
                .map_err(|e| anyhow!("histogram: {e}"))?;
            if self.hist.len().is_multiple_of(256) {
                progress(self.hist.len());
            }
        }
        Ok(())
    }

    /// The figures of every request measured.
    pub fn latency(&self) -> Latency {
        let q = |p: f64| self.hist.value_at_quantile(p) as f64;
        Latency {
            count: self.hist.len(),
            p50_us: q(0.50),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: self.hist.max() as f64,
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.responder.abort();
    }
}

fn body() -> Bytes {
    Bytes::from_static(b"0123456789abcdef")
}
