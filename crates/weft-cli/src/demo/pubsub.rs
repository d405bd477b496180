//! Step 1: pub/sub across nodes. n2 subscribes, n1 publishes; interest
//! propagation means only n2 gets the messages, in order, none lost.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;

use super::cluster::Cluster;
use super::runner::{rate, say, secs, thousands};
use super::wait;

/// Subscription queue of the demo subscriber: room for every message, so
/// any loss would be a fabric bug and not the slow-consumer policy.
const QUEUE_BYTES: usize = 256 * 1024 * 1024;

/// The sequence number carried in the first 8 bytes of a payload.
pub fn seq_of(payload: &[u8]) -> Option<u64> {
    let head: [u8; 8] = payload.get(..8)?.try_into().ok()?;
    Some(u64::from_be_bytes(head))
}

/// A 16-byte payload carrying `seq`.
pub fn payload(seq: u64) -> Bytes {
    let mut p = Vec::with_capacity(16);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"weft-dem");
    Bytes::from(p)
}

fn publishes_sent(cluster: &Cluster, from: &str, to: &str) -> anyhow::Result<u64> {
    Ok(cluster
        .node(from)?
        .stats()
        .peers
        .get(to)
        .map_or(0, |p| p.publishes_sent))
}

/// Runs the step with `count` messages.
pub async fn run(cluster: &Cluster, count: u64) -> anyhow::Result<()> {
    let (n1, n2) = (cluster.node("n1")?, cluster.node("n2")?);
    say(format_args!(
        "n2 subscribes to `demo.events.>`; n1 publishes {} messages of 16 bytes on demo.events.<0-7>.",
        thousands(count)
    ));
    let sub = n2
        .pubsub()
        .subscribe_with_capacity("demo.events.>", None, QUEUE_BYTES)
        .context("subscribing on n2")?;
    let propagated = wait::until("n1 to learn n2's interest", Duration::from_secs(10), || {
        n1.pubsub().has_interest("demo.events.0")
    })
    .await?;
    say(format_args!("n1 learnt n2's interest in {}", secs(propagated)));
    let to_n3_before = publishes_sent(cluster, "n1", "n3")?;
    let to_n2_before = publishes_sent(cluster, "n1", "n2")?;

    let receiver = async {
        let mut received = 0u64;
        let mut out_of_order = 0u64;
        let mut next = 0u64;
        while received < count {
            let Some(msg) = sub.next().await else {
                bail!("the subscription closed after {received} messages");
            };
            match seq_of(&msg.payload) {
                Some(seq) if seq == next => {}
                _ => out_of_order += 1,
            }
            next = seq_of(&msg.payload).map_or(next + 1, |s| s + 1);
            received += 1;
        }
        Ok((Instant::now(), out_of_order))
    };
    let publisher = async {
        let started = Instant::now();
        for seq in 0..count {
            n1.pubsub()
                .publish(&format!("demo.events.{}", seq % 8), payload(seq))
                .await
                .with_context(|| format!("publishing message {seq}"))?;
        }
        Ok::<_, anyhow::Error>((started, started.elapsed()))
    };
    let limit = Duration::from_secs(30);
    let both = async { tokio::try_join!(publisher, receiver) };
    let ((started, published_in), (last_at, out_of_order)) = tokio::time::timeout(limit, both)
        .await
        .with_context(|| format!("messages did not all arrive within {limit:?}"))??;
    let took = last_at.duration_since(started);
    say(format_args!(
        "published {} in {} ({}); n2 received {}/{} in {} ({})",
        thousands(count),
        secs(published_in),
        rate(count, published_in),
        thousands(count),
        thousands(count),
        secs(took),
        rate(count, took)
    ));
    if out_of_order > 0 {
        bail!("{out_of_order} messages arrived out of order");
    }
    if sub.dropped() > 0 {
        bail!("{} messages dropped by the subscriber queue", sub.dropped());
    }
    let to_n2 = publishes_sent(cluster, "n1", "n2")?.saturating_sub(to_n2_before);
    let to_n3 = publishes_sent(cluster, "n1", "n3")?.saturating_sub(to_n3_before);
    say(format_args!(
        "in publish order, none lost; publishes sent n1→n2: {}, n1→n3: {} (n3 has no interest)",
        thousands(to_n2),
        thousands(to_n3)
    ));
    if to_n3 != 0 {
        bail!("{to_n3} publishes crossed to n3, which has no interest");
    }
    drop(sub);
    let forgotten = wait::until("n1 to forget n2's interest", Duration::from_secs(10), || {
        !n1.pubsub().has_interest("demo.events.0")
    })
    .await?;
    say(format_args!(
        "n2 unsubscribes; n1 forgets the interest in {}",
        secs(forgotten)
    ));
    Ok(())
}
