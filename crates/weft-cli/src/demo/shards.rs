//! Step 4: sharded routing. Keyed events are routed from every node to
//! the owner of their key's shard in the Raft-committed map and
//! acknowledged by it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::StreamExt;
use weft::{Node, ShardMap};

use super::cluster::Cluster;
use super::runner::{rate, say, secs, thousands};

/// Events in flight at once.
const CONCURRENCY: usize = 32;
/// Distinct keys the events are spread over.
const KEYS: u64 = 500;

/// `owner: count` pairs, in name order.
pub fn owners(map: &ShardMap) -> String {
    map.counts()
        .iter()
        .map(|(n, c)| format!("{n} {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Routes `count` events (keys `user-<i mod 500>`) from `from` in turn,
/// `CONCURRENCY` at a time; returns how long it took and the expected
/// number of events per owner in `map`.
pub async fn route_all(
    from: &[&Node],
    map: &ShardMap,
    count: u64,
) -> anyhow::Result<(Duration, BTreeMap<String, u64>)> {
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..count {
        let key = format!("user-{}", i % KEYS);
        if let (_, Some(owner)) = map.owner_of_key(key.as_bytes()) {
            *expected.entry(owner.to_string()).or_default() += 1;
        }
    }
    let started = Instant::now();
    let mut acks = futures::stream::iter(0..count)
        .map(|i| {
            let node = from[(i % from.len() as u64) as usize];
            async move {
                let key = format!("user-{}", i % KEYS);
                node.shards()
                    .route(key.as_bytes(), Bytes::from(i.to_be_bytes().to_vec()))
                    .await
                    .with_context(|| format!("event {i} (key {key}) from {}", node.id().name))
            }
        })
        .buffer_unordered(CONCURRENCY);
    let mut acked = 0u64;
    while let Some(ack) = acks.next().await {
        let ack = ack?;
        if ack.epoch < map.epoch {
            bail!("shard {} acknowledged at stale epoch {}", ack.shard, ack.epoch);
        }
        acked += 1;
    }
    if acked != count {
        bail!("{acked} of {count} events acknowledged");
    }
    Ok((started.elapsed(), expected))
}

/// Waits until each owner's handler got at least its `expected` share
/// on top of `before` (events counted per node name); returns what each
/// got. Routing is at-least-once: a retried event may arrive twice.
pub async fn check_delivery(
    cluster: &Cluster,
    before: &BTreeMap<String, u64>,
    expected: &BTreeMap<String, u64>,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let got = || -> anyhow::Result<BTreeMap<String, u64>> {
        expected
            .keys()
            .map(|n| {
                let now = cluster.counter(n)?.events();
                Ok((n.clone(), now.saturating_sub(before.get(n).copied().unwrap_or(0))))
            })
            .collect()
    };
    // Acknowledged means handled: the counts are final already, but give
    // a slow machine a moment before calling a difference a failure.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let now = got()?;
        if expected
            .iter()
            .all(|(n, want)| now.get(n).is_some_and(|c| c >= want))
        {
            return Ok(now);
        }
        if Instant::now() >= deadline {
            bail!("handlers received {now:?}, the map says {expected:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `n1 1,234, n2 ...`, and the redeliveries if any.
pub fn delivered(got: &BTreeMap<String, u64>, expected: &BTreeMap<String, u64>) -> String {
    let list = got
        .iter()
        .map(|(n, c)| format!("{n} {}", thousands(*c)))
        .collect::<Vec<_>>()
        .join(", ");
    let extra: u64 = got.values().sum::<u64>().saturating_sub(expected.values().sum());
    if extra == 0 {
        format!("{list}: each event reached the owner of its key's shard, once")
    } else {
        format!("{list}: each event reached the owner of its key's shard ({extra} redelivered after a retry)")
    }
}

/// Handler event counts of every node now.
pub fn handled(cluster: &Cluster) -> anyhow::Result<BTreeMap<String, u64>> {
    cluster
        .nodes
        .iter()
        .map(|n| {
            let name = n.id().name.clone();
            let events = cluster.counter(&name)?.events();
            Ok((name, events))
        })
        .collect()
}

/// Runs the step with `count` events.
pub async fn run(cluster: &Cluster, count: u64) -> anyhow::Result<()> {
    let n1 = cluster.node("n1")?;
    let map = n1.shards().map();
    for n in cluster.live() {
        if n.shards().map() != map {
            bail!(
                "{} has epoch {}, n1 has {}",
                n.id().name,
                n.shards().map().epoch,
                map.epoch
            );
        }
    }
    say(format_args!(
        "shard map epoch {}: {} shards, owners {} (Raft leader {}, same map on every node)",
        map.epoch,
        map.shard_count(),
        owners(&map),
        n1.shards().leader().unwrap_or_else(|| "?".into())
    ));
    say(format_args!(
        "routing {} events with {KEYS} keys from n1, n2 and n3 in turn ({CONCURRENCY} in flight)",
        thousands(count)
    ));
    let before = handled(cluster)?;
    let from = cluster.live();
    let (took, expected) = route_all(&from, &map, count).await?;
    say(format_args!(
        "{} acknowledged in {} ({})",
        thousands(count),
        secs(took),
        rate(count, took)
    ));
    let got = check_delivery(cluster, &before, &expected).await?;
    say(format_args!("handlers got {}", delivered(&got, &expected)));
    Ok(())
}
