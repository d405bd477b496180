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
    node.shards().set_handler(rec.clone());
    (node, rec)
}

/// Every node except the one at `idx`.
fn all_but(nodes: &[Node], idx: usize) -> Vec<&Node> {
    nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != idx)
        .map(|(_, n)| n)
        .collect()
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
        nodes.iter().all(|n| counts(&n.shards().map()) == vec![3, 3, 3])
    })
    .await;
    let before = n1.shards().map();
    assert!(before.epoch >= 1);
    // Every node maps every key to the same owner at the same epoch.
    wait_for("same epoch everywhere", LIMIT, || {
        nodes.iter().all(|n| n.shards().map() == before)
    })
    .await;
    for k in 0..200u32 {
        let key = format!("key-{k}");
        let owners: Vec<_> = nodes
            .iter()
            .map(|n| {
                n.shards()
                    .map()
                    .owner_of_key(key.as_bytes())
                    .1
                    .map(str::to_string)
            })
            .collect();
        assert!(owners.windows(2).all(|w| w[0] == w[1]), "{key}: {owners:?}");
    }
    // Routing from any node reaches the owner's handler, acknowledged.
    for k in 0..60u32 {
        let from = nodes[(k % 3) as usize];
        let ack = from
            .shards()
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
        n1.shards().map().counts().get("n4").copied() == Some(2)
    })
    .await;
    let after = n1.shards().map();
    let moved = before.moves_to(&after);
    assert_eq!(moved.len(), 2, "minimal moves: {before:?} -> {after:?}");
    assert!(moved.iter().all(|s| after.owner(*s) == Some("n4")));
    for n in [n1, n2, n3, n4] {
        n.shutdown(Duration::from_millis(200)).await;
    }
}

async fn trio(shards: u32) -> (Vec<Node>, Vec<Arc<Recorder>>) {
    let (n1, r1) = start("n1", &[], shards).await;
    let seed = [n1.addr()];
    let (n2, r2) = start("n2", &seed, shards).await;
    let (n3, r3) = start("n3", &seed, shards).await;
    let nodes = vec![n1, n2, n3];
    for n in &nodes {
        wait_for("up", LIMIT, || sees_up(n, &["n1", "n2", "n3"])).await;
    }
    wait_for("balanced map", LIMIT, || {
        nodes.iter().all(|n| n.shards().map().counts().len() == 3)
    })
    .await;
    (nodes, vec![r1, r2, r3])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_crash_elects_a_new_leader_and_rebalances_commit() {
    let (nodes, _recs) = trio(12).await;
    wait_for("a leader", LIMIT, || nodes[0].shards().leader().is_some()).await;
    let leader = nodes[0].shards().leader().expect("leader");
    let idx = nodes
        .iter()
        .position(|n| n.id().name == leader)
        .expect("leader is a node");
    let before = nodes[(idx + 1) % 3].shards().map();
    nodes[idx].abort();
    let survivors = all_but(&nodes, idx);
    wait_for("new leader", LIMIT, || {
        survivors[0].shards().leader().is_some_and(|l| l != leader)
    })
    .await;
    wait_for("rebalanced without the old leader", LIMIT, || {
        survivors.iter().all(|n| {
            let m = n.shards().map();
            m.epoch > before.epoch
                && !m.counts().contains_key(&leader)
                && m.counts().values().all(|c| *c == 6)
        })
    })
    .await;
    let after = survivors[0].shards().map();
    for s in before.moves_to(&after) {
        assert_eq!(
            before.owner(s),
            Some(leader.as_str()),
            "only the dead node's shards moved"
        );
    }
    for n in survivors {
        n.shutdown(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_event_is_lost_when_a_node_crashes_mid_run() {
    let (nodes, recs) = trio(16).await;
    let victim = nodes[2].clone();
    let senders = [nodes[0].clone(), nodes[1].clone()];
    let mut acked: Vec<(String, u32)> = Vec::new();
    for i in 0..10_000u32 {
        if i == 3_000 {
            victim.abort();
        }
        let key = format!("k{}", i % 500);
        let from = &senders[(i % 2) as usize];
        let ack = from
            .shards()
            .route(key.as_bytes(), Bytes::from(i.to_be_bytes().to_vec()))
            .await
            .unwrap_or_else(|e| panic!("event {i} not acknowledged: {e}"));
        assert!(ack.epoch >= 1);
        acked.push((key, i));
    }
    // Every acknowledged event reached some handler at least once.
    let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
    for r in &recs {
        for (_, _, e) in r.events.lock().expect("lock").iter() {
            let n = u32::from_be_bytes(e[..4].try_into().expect("4 bytes"));
            *seen.entry(n).or_default() += 1;
        }
    }
    let lost: Vec<u32> = acked
        .iter()
        .map(|(_, i)| *i)
        .filter(|i| !seen.contains_key(i))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    let duplicates: usize = seen.values().map(|c| c - 1).sum();
    eprintln!("10000 acknowledged, 0 lost, {duplicates} duplicates");
    // Per-key order for sequential calls: each key's events arrive in
    // increasing order at each handler.
    for r in &recs {
        let mut last: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
        for (_, k, e) in r.events.lock().expect("lock").iter() {
            let n = u32::from_be_bytes(e[..4].try_into().expect("4 bytes"));
            if let Some(prev) = last.insert(k.clone(), n) {
                assert!(n > prev, "per-key order");
            }
        }
    }
    for n in senders {
        n.shutdown(Duration::from_millis(200)).await;
    }
}

fn data_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("weft-shards-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_voter_recovers_its_log_from_disk_and_bad_dirs_are_refused() {
    let dir = data_dir("restart");
    let mut c = config("solo", &[]);
    tune(&mut c, 8);
    // A single node is a whole group only when it is told so.
    c.shards.voters = 1;
    c.data_dir = Some(dir.clone());
    let node = Node::start(c.clone()).await.expect("start");
    wait_for("committed", LIMIT, || node.shards().map().epoch >= 1).await;
    let committed = node.shards().map();
    node.shutdown(Duration::from_millis(100)).await;
    drop(node);
    // Same data dir: the map comes back from the log before any new write.
    let mut c2 = c.clone();
    c2.shards.bootstrap_delay = Duration::from_secs(3600);
    let again = Node::start(c2).await.expect("restart");
    wait_for("recovered", LIMIT, || {
        again.shards().map().epoch >= committed.epoch
    })
    .await;
    assert_eq!(again.shards().map().owners, committed.owners);
    again.shutdown(Duration::from_millis(100)).await;
    drop(again);

    // A data dir of another cluster is refused with a clear error.
    let mut other = c.clone();
    other.cluster = "another".into();
    let err = Node::start(other).await.err().expect("refused");
    assert!(err.to_string().contains("belongs to cluster"), "{err}");
    // A corrupt log is refused, naming the file.
    std::fs::write(dir.join("raft").join("log.jsonl"), b"{not json\n").expect("corrupt");
    let err = Node::start(c).await.err().expect("refused");
    assert!(err.to_string().contains("log.jsonl"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_rebalance_is_forwarded_to_the_leader() {
    let mut nodes = Vec::new();
    for (i, name) in ["n1", "n2", "n3", "n4"].iter().enumerate() {
        let seeds: Vec<_> = nodes.first().map(|n: &Node| n.addr()).into_iter().collect();
        let mut c = config(name, &seeds);
        tune(&mut c, 9);
        c.shards.auto_rebalance = false;
        let n = Node::start(c).await.expect("start");
        n.shards().set_handler(Arc::new(Recorder::default()));
        nodes.push(n);
        if i == 2 {
            for n in &nodes {
                wait_for("3 up", LIMIT, || sees_up(n, &["n1", "n2", "n3"])).await;
            }
            wait_for("first map", LIMIT, || {
                nodes.iter().all(|n| n.shards().map().counts().len() == 3)
            })
            .await;
        }
    }
    for n in &nodes {
        wait_for("4 up", LIMIT, || sees_up(n, &["n1", "n2", "n3", "n4"])).await;
    }
    let before = nodes[0].shards().map();
    assert!(!before.counts().contains_key("n4"), "no automatic rebalance");
    wait_for("a leader", LIMIT, || nodes[0].shards().leader().is_some()).await;
    let leader = nodes[0].shards().leader().expect("leader");
    let follower = nodes.iter().find(|n| n.id().name != leader).expect("follower");
    assert!(
        follower.shards().rebalance().await,
        "forwarded proposal committed"
    );
    wait_for("everyone sees it", LIMIT, || {
        nodes
            .iter()
            .all(|n| n.shards().map().counts().get("n4") == Some(&2))
    })
    .await;
    assert_eq!(before.moves_to(&nodes[0].shards().map()).len(), 2);
    for n in nodes {
        n.shutdown(Duration::from_millis(200)).await;
    }
}

/// n1..n4 (8 shards, members down for 1 s leave the voter set or the
/// group), each seeing all four up.
async fn four_with_fast_replacement() -> (Vec<Node>, [&'static str; 4]) {
    let mut nodes: Vec<Node> = Vec::new();
    let all = ["n1", "n2", "n3", "n4"];
    for name in all {
        let seeds: Vec<_> = nodes.first().map(|n| n.addr()).into_iter().collect();
        let mut c = config(name, &seeds);
        tune(&mut c, 8);
        c.shards.voter_replace_after = Duration::from_secs(1);
        nodes.push(Node::start(c).await.expect("start"));
    }
    for n in &nodes {
        wait_for("4 up", LIMIT, || sees_up(n, &all)).await;
    }
    (nodes, all)
}

/// A voter down longer than `voter_replace_after` is replaced by an up
/// learner, so the group keeps three voters and can lose another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_down_too_long_is_replaced_by_a_learner() {
    let (nodes, all) = four_with_fast_replacement().await;
    wait_for("2/2/2/2 everywhere", LIMIT, || {
        nodes
            .iter()
            .all(|n| counts(&n.shards().map()) == vec![2, 2, 2, 2])
    })
    .await;
    wait_for("voters n1..n3", LIMIT, || {
        nodes
            .iter()
            .all(|n| n.shards().voters() == vec!["n1", "n2", "n3"])
    })
    .await;
    // Crash a voter that is not the leader, so the group keeps its leader
    // and the replacement is the voter-upkeep path alone.
    let leader = nodes[0].shards().leader().expect("leader");
    let victim = ["n1", "n2", "n3"]
        .into_iter()
        .find(|v| *v != leader)
        .expect("a follower voter");
    let idx = all.iter().position(|n| *n == victim).expect("victim");
    nodes[idx].abort();
    let survivors = all_but(&nodes, idx);
    let mut expected: Vec<String> = all
        .iter()
        .filter(|n| **n != victim)
        .map(|n| n.to_string())
        .collect();
    expected.sort();
    wait_for("n4 replaced the dead voter", LIMIT, || {
        survivors.iter().all(|n| n.shards().voters() == expected)
    })
    .await;
    wait_for("rebalanced without the dead voter", LIMIT, || {
        survivors.iter().all(|n| {
            let m = n.shards().map();
            !m.counts().contains_key(victim) && m.counts().len() == 3
        })
    })
    .await;
    for n in survivors {
        n.shutdown(Duration::from_millis(200)).await;
    }
}

/// A learner (a node beyond the voters) that dies leaves the Raft group
/// once it has been down for `voter_replace_after`, so the leader stops
/// replicating to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_learner_leaves_the_raft_group() {
    let (nodes, _) = four_with_fast_replacement().await;
    wait_for("n4 is a learner everywhere", LIMIT, || {
        nodes
            .iter()
            .all(|n| n.shards().voters() == vec!["n1", "n2", "n3"] && n.shards().learners() == vec!["n4"])
    })
    .await;
    nodes[3].abort();
    let survivors = all_but(&nodes, 3);
    wait_for("the dead learner left the group", LIMIT, || {
        survivors
            .iter()
            .all(|n| n.shards().learners().is_empty() && n.shards().voters() == vec!["n1", "n2", "n3"])
    })
    .await;
    for n in survivors {
        n.shutdown(Duration::from_millis(200)).await;
    }
}

/// Starts n1..n3 with `tweak` applied and `handler` registered on each,
/// and waits for a map that gives every node shards, seen everywhere.
async fn trio_with(
    shards: u32,
    tweak: impl Fn(&mut NodeConfig),
    handler: impl Fn() -> Arc<dyn ShardHandler>,
) -> (Vec<Node>, ShardMap) {
    let mut nodes: Vec<Node> = Vec::new();
    for name in ["n1", "n2", "n3"] {
        let seeds: Vec<_> = nodes.first().map(|n| n.addr()).into_iter().collect();
        let mut c = config(name, &seeds);
        tune(&mut c, shards);
        tweak(&mut c);
        let node = Node::start(c).await.expect("start");
        node.shards().set_handler(handler());
        nodes.push(node);
    }
    for n in &nodes {
        wait_for("up", LIMIT, || sees_up(n, &["n1", "n2", "n3"])).await;
    }
    wait_for("one balanced map everywhere", LIMIT, || {
        let m = nodes[0].shards().map();
        m.counts().len() == 3 && nodes.iter().all(|n| n.shards().map() == m)
    })
    .await;
    let map = nodes[0].shards().map();
    (nodes, map)
}

/// A key of `shard` under `map`.
fn key_of(map: &ShardMap, shard: u32) -> String {
    (0..100_000u32)
        .map(|i| format!("key-{i}"))
        .find(|k| map.owner_of_key(k.as_bytes()).0 == shard)
        .expect("some key hashes to the shard")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_without_a_committed_map_fails_fast_with_unassigned() {
    // Three voters wanted and one node up: no map ever commits. The route
    // timeout is huge, so only the first-map wait can end the call; the
    // outer timeout fails the test instead of letting it hang.
    let mut c = config("solo", &[]);
    tune(&mut c, 8);
    c.shards.route_timeout = Duration::from_secs(600);
    c.shards.first_map_wait = Duration::from_millis(200);
    let node = Node::start(c).await.expect("start");
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        node.shards().route(b"user-1", Bytes::from_static(b"x")),
    )
    .await
    .expect("route returned (first_map_wait, not route_timeout)");
    assert_eq!(node.shards().map().epoch, 0);
    assert_eq!(
        result,
        Err(weft::RouteError::Unassigned {
            shard: None,
            epoch: 0
        })
    );
    node.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_ack_names_the_accepting_owner_at_the_committed_epoch() {
    let recs: Arc<Mutex<Vec<Arc<Recorder>>>> = Arc::default();
    let (nodes, map) = trio_with(
        9,
        |_| {},
        || {
            let r = Arc::new(Recorder::default());
            recs.lock().expect("lock").push(r.clone());
            r
        },
    )
    .await;
    let recs = recs.lock().expect("lock").clone();
    let names = ["n1", "n2", "n3"];
    for k in 0..60u32 {
        let from = &nodes[(k % 3) as usize];
        let key = format!("user-{k}");
        let ack = from
            .shards()
            .route(key.as_bytes(), Bytes::from(k.to_string()))
            .await
            .expect("acknowledged");
        let (shard, owner) = map.owner_of_key(key.as_bytes());
        assert_eq!(ack.shard, shard);
        assert_eq!(Some(ack.node.as_str()), owner, "{key}");
        assert_eq!(ack.epoch, map.epoch, "{key}");
        // The node the ack names is the one whose handler got the event.
        let at = names.iter().position(|n| *n == ack.node).expect("a node name");
        assert!(
            recs[at]
                .events
                .lock()
                .expect("lock")
                .iter()
                .any(|(s, _, e)| *s == shard && e == &Bytes::from(k.to_string())),
            "event {k} delivered to {}",
            ack.node
        );
    }
    for n in nodes {
        n.shutdown(Duration::from_millis(200)).await;
    }
}

/// Records events, but panics on the event `boom`.
#[derive(Default)]
struct Fragile(Recorder);

impl ShardHandler for Fragile {
    fn on_event(&self, shard: u32, key: &[u8], event: Bytes) {
        if event == Bytes::from_static(b"boom") {
            panic!("test handler: boom on shard {shard}");
        }
        self.0.on_event(shard, key, event);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_fails_the_route_at_once_with_handler_failed() {
    let (nodes, map) = trio_with(
        6,
        |c| c.shards.route_timeout = Duration::from_secs(600),
        || Arc::new(Fragile::default()),
    )
    .await;
    let shard = 0;
    let owner = map.owner(shard).expect("owned").to_string();
    let key = key_of(&map, shard);
    // From the owner itself and from another node: the same typed error,
    // long before the (huge) route timeout.
    for from in &nodes {
        let result = tokio::time::timeout(
            Duration::from_secs(60),
            from.shards().route(key.as_bytes(), Bytes::from_static(b"boom")),
        )
        .await
        .expect("route returned (not retried until route_timeout)");
        assert_eq!(
            result,
            Err(weft::RouteError::HandlerFailed {
                node: owner.clone(),
                shard,
                epoch: map.epoch
            }),
            "from {}",
            from.id().name
        );
    }
    // The owner keeps serving the shard.
    let ack = nodes[1]
        .shards()
        .route(key.as_bytes(), Bytes::from_static(b"fine"))
        .await
        .expect("acknowledged after a handler failure");
    assert_eq!(ack.node, owner);
    for n in nodes {
        n.shutdown(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_to_a_down_owner_time_out_naming_it_unreachable() {
    // No automatic rebalance: the map keeps the shard on the dead node.
    let (nodes, map) = trio_with(
        6,
        |c| {
            c.shards.auto_rebalance = false;
            c.shards.route_timeout = Duration::from_secs(2);
        },
        || Arc::new(Recorder::default()),
    )
    .await;
    let shard = (0..6)
        .find(|s| map.owner(*s) == Some("n3"))
        .expect("n3 owns a shard");
    let key = key_of(&map, shard);
    nodes[2].abort();
    wait_for("n1 sees n3 down", LIMIT, || !sees_up(&nodes[0], &["n3"])).await;
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        nodes[0].shards().route(key.as_bytes(), Bytes::from_static(b"x")),
    )
    .await
    .expect("route returned");
    match result {
        Err(weft::RouteError::Timeout {
            attempts,
            last: weft::RouteFailure::Unreachable { node, .. },
        }) => {
            assert_eq!(node, "n3");
            assert!(attempts >= 1);
        }
        other => panic!("expected a timeout naming n3 unreachable, got {other:?}"),
    }
    assert_eq!(nodes[0].shards().map().epoch, map.epoch, "no rebalance happened");
    for n in &nodes[..2] {
        n.shutdown(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_without_a_handler_times_out_naming_the_shard_not_acquired() {
    // n3 registers no handler: it owns shards in the map but takes none.
    let mut nodes: Vec<Node> = Vec::new();
    for name in ["n1", "n2", "n3"] {
        let seeds: Vec<_> = nodes.first().map(|n| n.addr()).into_iter().collect();
        let mut c = config(name, &seeds);
        tune(&mut c, 6);
        c.shards.route_timeout = Duration::from_secs(1);
        let node = Node::start(c).await.expect("start");
        if name != "n3" {
            node.shards().set_handler(Arc::new(Recorder::default()));
        }
        nodes.push(node);
    }
    wait_for("one map giving n3 shards, seen everywhere", LIMIT, || {
        let m = nodes[0].shards().map();
        m.counts().len() == 3 && nodes.iter().all(|n| n.shards().map() == m)
    })
    .await;
    // Holding a lease, n3 is refused for want of a handler, not fenced.
    wait_for("n3 holds a lease", LIMIT, || {
        nodes[2]
            .stats()
            .lease_renewals
            .get("granted")
            .copied()
            .unwrap_or(0)
            > 0
    })
    .await;
    let map = nodes[0].shards().map();
    let shard = (0..6)
        .find(|s| map.owner(*s) == Some("n3"))
        .expect("n3 owns a shard");
    let key = key_of(&map, shard);
    match nodes[0]
        .shards()
        .route(key.as_bytes(), Bytes::from_static(b"x"))
        .await
    {
        Err(weft::RouteError::Timeout {
            last: weft::RouteFailure::NotAcquired { node, shard: s },
            ..
        }) => {
            assert_eq!(node, "n3");
            assert_eq!(s, shard);
        }
        other => panic!("expected a timeout naming n3 not acquired, got {other:?}"),
    }
    for n in nodes {
        n.shutdown(Duration::from_millis(200)).await;
    }
}
