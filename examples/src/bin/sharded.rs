//! A sharded keyed processor: every node handles the shards it owns in
//! the Raft-committed shard map, and any node routes a keyed event to the
//! owner of its key's shard.
//!
//! Keys map to shards by hash (`fnv1a64(key) mod shard count`), shards to
//! nodes by the committed map, so every node agrees where a key goes and
//! all events of one key meet on one node, in order. `route` returns once
//! the owner's handler has taken the event (at least once).
//!
//! `cargo run -p weft-examples --bin sharded`

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::ensure;
use bytes::Bytes;
use weft::ShardHandler;
use weft_examples::{bounded, cluster, shutdown, wait_until};

const SHARDS: u32 = 12;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bounded(run()).await
}

/// Counts events per shard. A real processor would keep per-key state
/// here, loaded on `shard_acquired` and flushed on `shard_released`.
struct Processor {
    node: String,
    per_shard: Mutex<BTreeMap<u32, u64>>,
}

impl Processor {
    fn counts(&self) -> BTreeMap<u32, u64> {
        self.per_shard.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

impl ShardHandler for Processor {
    fn shard_acquired(&self, shard: u32, epoch: u64) {
        println!("  {} acquires shard {shard} at epoch {epoch}", self.node);
    }
    fn on_event(&self, shard: u32, _key: &[u8], _event: Bytes) {
        // Return quickly: the sender is waiting for this acknowledgement.
        if let Ok(mut m) = self.per_shard.lock() {
            *m.entry(shard).or_default() += 1;
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let names = ["n1", "n2", "n3"];
    let nodes = cluster("sharded-example", &names, |c| {
        c.shards.count = SHARDS;
        // The first map is proposed once the members had a moment to
        // find each other (default 1 s).
        c.shards.bootstrap_delay = Duration::from_millis(300);
    })
    .await?;
    let processors: Vec<Arc<Processor>> = nodes
        .iter()
        .map(|n| {
            let p = Arc::new(Processor {
                node: n.id().name.clone(),
                per_shard: Mutex::new(BTreeMap::new()),
            });
            n.shards().set_handler(p.clone());
            p
        })
        .collect();

    // Until a map commits nobody owns anything and `route` fails with
    // `Unassigned` (after `first_map_wait`).
    wait_until("a committed map with every node owning shards", || {
        nodes.iter().all(|n| {
            let map = n.shards().map();
            map.epoch >= 1 && map.counts().len() == names.len()
        })
    })
    .await?;
    let map = nodes[0].shards().map();
    let owners: Vec<&str> = map.owners.iter().map(|o| o.as_deref().unwrap_or("-")).collect();
    println!(
        "committed map, epoch {}: shards per node {:?}",
        map.epoch,
        map.counts()
    );
    println!("owner of each shard: {owners:?}");

    // Route 60 events over 20 keys, from whichever node: the owner is the
    // same for a key whatever the sender.
    for i in 0..60u32 {
        let key = format!("user-{}", i % 20);
        let sender = &nodes[(i % 3) as usize];
        let ack = sender
            .shards()
            .route(key.as_bytes(), Bytes::from(format!("click {i}")))
            .await?;
        if i < 4 {
            println!(
                "{} routes {key} -> shard {} accepted by {} (epoch {}, {} attempt(s))",
                sender.id().name,
                ack.shard,
                ack.node,
                ack.epoch,
                ack.attempts
            );
        }
    }

    let mut total = 0;
    for p in &processors {
        let counts = p.counts();
        println!("{} handled per shard {:?}", p.node, counts);
        for shard in counts.keys() {
            ensure!(
                map.owner(*shard) == Some(p.node.as_str()),
                "only owners handle a shard"
            );
        }
        total += counts.values().sum::<u64>();
    }
    // At least once: a retry after a lost acknowledgement would deliver
    // again, which a stable loopback cluster never needs.
    ensure!(total >= 60, "every acknowledged event was handled: {total}");

    shutdown(nodes).await;
    println!("done");
    Ok(())
}
