//! Sharded routing over the Raft-committed map, real loopback nodes.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{config, sees_up, wait_for};
use weft::{Node, NodeConfig, ShardHandler, ShardMap};

const LIMIT: Duration = Duration::from_secs(60);

fn tune(c: &mut NodeConfig, shards: u32) {
    c.shards.count = shards;
    c.shards.bootstrap_delay = Duration::from_millis(500);
}

/// Records every event and shard callback.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<(u32, Vec<u8>, Bytes)>>,
    owned: Mutex<BTreeMap<u32, u64>>,
}

impl ShardHandler for Recorder {
    fn shard_acquired(&self, shard: u32, epoch: u64) {
        self.owned.lock().expect("lock").insert(shard, epoch);
    }
    fn shard_released(&self, shard: u32, _epoch: u64) {
        self.owned.lock().expect("lock").remove(&shard);
    }
    fn on_event(&self, shard: u32, key: &[u8], event: Bytes) {
        self.events
            .lock()
            .expect("lock")
            .push((shard, key.to_vec(), event));
    }
}

async fn start(name: &str, seeds: &[std::net::SocketAddr], shards: u32) -> (Node, Arc<Recorder>) {
    let mut c = config(name, seeds);
    tune(&mut c, shards);
    let node = Node::start(c).await.expect("start");
    let rec = Arc::new(Recorder::default());
    node.set_shard_handler(rec.clone());
    (node, rec)
}

fn counts(m: &ShardMap) -> Vec<usize> {
    m.counts().values().copied().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_nine_shards_then_a_fourth_joins_with_minimal_moves() {
    common::logs();
    let (n1, r1) = start("n1", &[], 9).await;
    let seed = [n1.addr()];
    let (n2, r2) = start("n2", &seed, 9).await;
    let (n3, r3) = start("n3", &seed, 9).await;
    let nodes = [&n1, &n2, &n3];
    for n in nodes {
        wait_for("up", LIMIT, || sees_up(n, &["n1", "n2", "n3"])).await;
    }
    wait_for("3/3/3 committed everywhere", LIMIT, || {
        nodes.iter().all(|n| counts(&n.shard_map()) == vec![3, 3, 3])
    })
    .await;
    let before = n1.shard_map();
    assert!(before.epoch >= 1);
    // Every node maps every key to the same owner at the same epoch.
    wait_for("same epoch everywhere", LIMIT, || {
        nodes.iter().all(|n| n.shard_map() == before)
    })
    .await;
    for k in 0..200u32 {
        let key = format!("key-{k}");
        let owners: Vec<_> = nodes
            .iter()
            .map(|n| n.shard_map().owner_of_key(key.as_bytes()).1.map(str::to_string))
            .collect();
        assert!(owners.windows(2).all(|w| w[0] == w[1]), "{key}: {owners:?}");
    }
    // Routing from any node reaches the owner's handler, acknowledged.
    for k in 0..60u32 {
        let from = nodes[(k % 3) as usize];
        let ack = from
            .route(format!("user-{k}").as_bytes(), Bytes::from(k.to_string()))
            .await
            .expect("acknowledged");
        let owner = before.owner(ack.shard).expect("owned");
        let rec = match owner {
            "n1" => &r1,
            "n2" => &r2,
            _ => &r3,
        };
        assert!(
            rec.events
                .lock()
                .expect("lock")
                .iter()
                .any(|(s, _, e)| *s == ack.shard && e == &Bytes::from(k.to_string())),
            "event {k} delivered to {owner}"
        );
    }
    // A fourth node joins: exactly ⌊9/4⌋ = 2 shards move, all to it.
    let (n4, _r4) = start("n4", &seed, 9).await;
    wait_for("n4 gets its share", LIMIT, || {
        n1.shard_map().counts().get("n4").copied() == Some(2)
    })
    .await;
    let after = n1.shard_map();
    let moved = before.moves_to(&after);
    assert_eq!(moved.len(), 2, "minimal moves: {before:?} -> {after:?}");
    assert!(moved.iter().all(|s| after.owner(*s) == Some("n4")));
    for n in [n1, n2, n3, n4] {
        n.shutdown(Duration::from_millis(200)).await;
    }
}
