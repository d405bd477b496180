//! Async shard consumers (`Node::shard_inbox`): acknowledged means
//! processed, bounded per-shard inboxes (`try_route` fails `Full`, `route`
//! waits), dropped acks, per-key order across senders and failover, and
//! acquire/release bracketing. Real loopback nodes.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{config, sees_up, wait_for};
use futures::StreamExt;
use tokio::task::JoinHandle;
use weft::{Node, NodeConfig, RouteError, ShardDelivery, ShardEvent, ShardMap};

const LIMIT: Duration = Duration::from_secs(60);

fn tune(c: &mut NodeConfig) {
    c.shards.count = 16;
    c.shards.bootstrap_delay = Duration::from_millis(500);
    c.shards.voter_replace_after = Duration::from_millis(500);
}

/// Aborts the consumer tasks when the test ends, passing or not.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// What a consumer saw, in its own order: `Acquired`/`Released` when
/// received, an event when its ack was sent (after the persist).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Acquired(u32),
    Acked(u32, Vec<u8>),
    Released(u32),
}

type Persisted = Arc<Mutex<Vec<(String, Bytes)>>>;

/// A consumer that "persists" each event (appends it to `store`, the
/// process-wide record in processing order, after a short async pause)
/// and only then acknowledges it. `concurrent`: one task per event (so
/// `Released` must wait for their acks); else one after the other, in
/// delivery order.
fn persisting_consumer(
    node: &Node,
    store: Persisted,
    seen: Arc<Mutex<Vec<Seen>>>,
    concurrent: bool,
) -> JoinHandle<()> {
    let mut inbox = node.shards().inbox();
    let name = node.id().name.clone();
    tokio::spawn(async move {
        while let Some(d) = inbox.next().await {
            match d {
                ShardDelivery::Acquired { shard, .. } => {
                    seen.lock().expect("lock").push(Seen::Acquired(shard))
                }
                ShardDelivery::Released { shard, .. } => {
                    seen.lock().expect("lock").push(Seen::Released(shard))
                }
                ShardDelivery::Event(e) => {
                    let (store, seen, name) = (store.clone(), seen.clone(), name.clone());
                    let persist = async move {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        store.lock().expect("lock").push((name, e.event().clone()));
                        seen.lock()
                            .expect("lock")
                            .push(Seen::Acked(e.shard(), e.event().to_vec()));
                        e.ack();
                    };
                    if concurrent {
                        tokio::spawn(persist);
                    } else {
                        persist.await;
                    }
                }
            }
        }
    })
}

async fn trio(tweak: impl Fn(&mut NodeConfig)) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for name in ["n1", "n2", "n3"] {
        let seeds: Vec<_> = nodes.first().map(|n| n.addr()).into_iter().collect();
        let mut c = config(name, &seeds);
        tune(&mut c);
        tweak(&mut c);
        nodes.push(Node::start(c).await.expect("start"));
    }
    for n in &nodes {
        wait_for("up", LIMIT, || sees_up(n, &["n1", "n2", "n3"])).await;
    }
    nodes
}

async fn balanced(nodes: &[Node]) -> ShardMap {
    let n = nodes.len();
    wait_for("one balanced map everywhere", LIMIT, || {
        let m = nodes[0].shards().map();
        m.counts().len() == n && nodes.iter().all(|x| x.shards().map() == m)
    })
    .await;
    nodes[0].shards().map()
}

/// A key of `shard` under `map`.
fn key_of(map: &ShardMap, shard: u32) -> Bytes {
    (0..100_000u32)
        .map(|i| format!("key-{i}"))
        .find(|k| map.owner_of_key(k.as_bytes()).0 == shard)
        .map(Bytes::from)
        .expect("some key hashes to the shard")
}

/// Every event of a shard lies between its `Acquired` and its `Released`.
fn assert_bracketed(node: &str, seen: &[Seen]) {
    let mut held = BTreeSet::new();
    for s in seen {
        match s {
            Seen::Acquired(x) => assert!(held.insert(*x), "{node}: acquired {x} twice: {seen:?}"),
            Seen::Released(x) => assert!(held.remove(x), "{node}: released {x} not held"),
            Seen::Acked(x, e) => assert!(
                held.contains(x),
                "{node}: event {:?} of shard {x} outside its acquire/release bracket",
                String::from_utf8_lossy(e)
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_means_persisted_and_events_stay_bracketed() {
    let nodes = trio(|_| {}).await;
    let store: Persisted = Arc::default();
    let seen: Vec<Arc<Mutex<Vec<Seen>>>> = (0..3).map(|_| Arc::default()).collect();
    let _tasks = Tasks(
        nodes
            .iter()
            .zip(&seen)
            .map(|(n, s)| persisting_consumer(n, store.clone(), s.clone(), true))
            .collect(),
    );
    balanced(&nodes).await;
    for k in 0..90u32 {
        let from = &nodes[(k % 3) as usize];
        let event = Bytes::from(format!("ev-{k}"));
        let ack = from
            .shards()
            .route(format!("user-{k}").as_bytes(), event.clone())
            .await
            .expect("acknowledged");
        // Acknowledged means processed: the owner persisted it first.
        assert!(
            store
                .lock()
                .expect("lock")
                .iter()
                .any(|(node, e)| *node == ack.node && *e == event),
            "event {k} acknowledged by {} before it was persisted there",
            ack.node
        );
    }
    // route_many: ordered results, every one persisted at its owner.
    let many: Vec<(Bytes, Bytes)> = (0..50u32)
        .map(|k| (Bytes::from(format!("user-{k}")), Bytes::from(format!("many-{k}"))))
        .collect();
    let results = nodes[1].shards().route_many(many.clone()).await;
    assert_eq!(results.len(), many.len());
    for ((key, ev), r) in many.iter().zip(&results) {
        let ack = r.as_ref().expect("acknowledged");
        assert_eq!(ack.shard, nodes[1].shards().map().owner_of_key(key).0);
        assert!(
            store
                .lock()
                .expect("lock")
                .iter()
                .any(|(n, e)| *n == ack.node && e == ev)
        );
    }
    // A fourth node joins: shards move, the old owners release them.
    let mut c = config("n4", &[nodes[0].addr()]);
    tune(&mut c);
    let n4 = Node::start(c).await.expect("start n4");
    let seen4: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let _t4 = Tasks(vec![persisting_consumer(&n4, store.clone(), seen4.clone(), true)]);
    let mut all = nodes.clone();
    all.push(n4.clone());
    balanced(&all).await;
    for k in 0..60u32 {
        all[(k % 4) as usize]
            .shards()
            .route(format!("user-{k}").as_bytes(), Bytes::from(format!("after-{k}")))
            .await
            .expect("acknowledged after the rebalance");
    }
    let mut released = 0;
    for (i, s) in seen.iter().chain(std::iter::once(&seen4)).enumerate() {
        let s = s.lock().expect("lock").clone();
        released += s.iter().filter(|x| matches!(x, Seen::Released(_))).count();
        assert_bracketed(&format!("node {i}"), &s);
    }
    assert!(released > 0, "the join moved shards away from some owner");
    for n in all {
        n.shutdown(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_inbox_fails_try_route_and_holds_route_until_the_consumer_drains() {
    let nodes = trio(|c| c.shards.inbox_capacity = 2).await;
    // Consumers hand their deliveries to the test, which acks by hand.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, ShardEvent)>();
    let tasks = Tasks(
        nodes
            .iter()
            .map(|n| {
                let mut inbox = n.shards().inbox();
                let (tx, name) = (tx.clone(), n.id().name.clone());
                tokio::spawn(async move {
                    while let Some(d) = inbox.next().await {
                        if let ShardDelivery::Event(e) = d {
                            let _ = tx.send((name.clone(), e));
                        }
                    }
                })
            })
            .collect(),
    );
    let map = balanced(&nodes).await;
    let owner = map.owner(0).expect("shard 0 owned").to_string();
    let others: Vec<&Node> = nodes.iter().filter(|n| n.id().name != owner).collect();
    let key = key_of(&map, 0);
    let sender_a = others[0].clone();
    let burst: Vec<(Bytes, Bytes)> = ["a1", "a2", "a3"]
        .iter()
        .map(|e| (key.clone(), Bytes::from_static(e.as_bytes())))
        .collect();
    let many = tokio::spawn(async move { sender_a.shards().route_many(burst).await });
    // The consumer holds two unacknowledged events: the inbox is full.
    let mut held = Vec::new();
    for _ in 0..2 {
        let (at, e) = tokio::time::timeout(LIMIT, rx.recv())
            .await
            .expect("delivered")
            .expect("open");
        assert_eq!(at, owner);
        held.push(e);
    }
    assert_eq!(&held[0].event()[..], b"a1");
    assert_eq!(&held[1].event()[..], b"a2");
    let b = others[1];
    let full = tokio::time::timeout(LIMIT, b.shards().try_route(&key, Bytes::from_static(b"b-try")))
        .await
        .expect("try_route returns at once");
    assert!(
        matches!(&full, Err(RouteError::Full { node, shard: 0, .. }) if *node == owner),
        "{full:?}"
    );
    // `route` waits for room instead.
    let b2 = b.clone();
    let key2 = key.clone();
    let waiting = tokio::spawn(async move { b2.shards().route(&key2, Bytes::from_static(b"b-wait")).await });
    assert!(!waiting.is_finished() && !many.is_finished());
    // Drain: ack everything as it comes until both senders are done.
    let mut order = Vec::new();
    for e in held.drain(..) {
        order.push(e.event().clone());
        e.ack();
    }
    while order.len() < 4 {
        let (_, e) = tokio::time::timeout(LIMIT, rx.recv())
            .await
            .expect("delivered")
            .expect("open");
        order.push(e.event().clone());
        e.ack();
    }
    let results = tokio::time::timeout(LIMIT, many)
        .await
        .expect("done")
        .expect("task");
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let w = tokio::time::timeout(LIMIT, waiting)
        .await
        .expect("done")
        .expect("task");
    assert_eq!(w.expect("acknowledged once drained").node, owner);
    // One sender's events stay in order; the refused try never arrived.
    let a: Vec<&Bytes> = order.iter().filter(|e| e.starts_with(b"a")).collect();
    assert_eq!(
        a,
        ["a1", "a2", "a3"]
            .map(|s| Bytes::from_static(s.as_bytes()))
            .iter()
            .collect::<Vec<_>>()
    );
    assert!(!order.iter().any(|e| &e[..] == b"b-try"));
    let owner_node = nodes.iter().find(|n| n.id().name == owner).expect("owner");
    assert!(
        owner_node
            .stats()
            .routed_events_refused
            .get("full")
            .copied()
            .unwrap_or(0)
            >= 1
    );
    drop(tasks);
    for n in nodes {
        n.shutdown(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_ack_fails_the_route_with_not_processed() {
    let nodes = trio(|_| {}).await;
    let _tasks = Tasks(
        nodes
            .iter()
            .map(|n| {
                let mut inbox = n.shards().inbox();
                tokio::spawn(async move {
                    while let Some(d) = inbox.next().await {
                        if let ShardDelivery::Event(e) = d {
                            // Only "keep" events are processed.
                            if &e.event()[..] == b"keep" {
                                e.ack();
                            } else {
                                drop(e);
                            }
                        }
                    }
                })
            })
            .collect(),
    );
    let map = balanced(&nodes).await;
    let key = key_of(&map, 3);
    let owner = map.owner(3).expect("owned").to_string();
    for from in &nodes {
        let r = from.shards().route(&key, Bytes::from_static(b"drop")).await;
        assert!(
            matches!(&r, Err(RouteError::NotProcessed { node, shard: 3, .. }) if *node == owner),
            "{r:?}"
        );
        from.shards()
            .route(&key, Bytes::from_static(b"keep"))
            .await
            .expect("acknowledged");
    }
    let owner_node = nodes.iter().find(|n| n.id().name == owner).expect("owner");
    assert_eq!(
        owner_node
            .stats()
            .routed_events_refused
            .get("not_processed")
            .copied(),
        Some(3)
    );
    for n in nodes {
        n.shutdown(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_holds_for_concurrent_senders_and_across_an_owner_stop() {
    let nodes = trio(|_| {}).await;
    let store: Persisted = Arc::default();
    let seen: Vec<Arc<Mutex<Vec<Seen>>>> = (0..3).map(|_| Arc::default()).collect();
    let _tasks = Tasks(
        nodes
            .iter()
            .zip(&seen)
            .map(|(n, s)| persisting_consumer(n, store.clone(), s.clone(), false))
            .collect(),
    );
    let map = balanced(&nodes).await;
    let leader = nodes[0].shards().leader().expect("a leader");
    let victim = nodes
        .iter()
        .position(|n| n.id().name != leader)
        .expect("a follower");
    let senders: Vec<Node> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, n)| n.clone())
        .collect();
    // Eight keys, among them keys of the victim's shards.
    let keys: Vec<Bytes> = (0..8u32).map(|s| key_of(&map, s * 2)).collect();
    assert!(
        keys.iter()
            .any(|k| map.owner_of_key(k).1 == Some(nodes[victim].id().name.as_str()))
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked: Arc<Mutex<BTreeSet<Vec<u8>>>> = Arc::default();
    let mut runs = Vec::new();
    for (j, s) in senders.iter().enumerate() {
        for lane in 0..2 {
            let (s, keys, stop, acked) = (s.clone(), keys.clone(), stop.clone(), acked.clone());
            // Pipelined: 24 `route` calls in flight, submitted in order
            // (keys in turn, so each key has several events in flight).
            runs.push(tokio::spawn(async move {
                let mut inflight = futures::stream::FuturesOrdered::new();
                let record = |ev: Bytes, r: Result<weft::RouteAck, RouteError>| {
                    if r.is_ok() {
                        acked.lock().expect("lock").insert(ev.to_vec());
                    }
                };
                for seq in 0..1_000_000u32 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let k = keys[seq as usize % keys.len()].clone();
                    let ev = Bytes::from(format!("s{j}.{lane}|{}|{seq:08}", String::from_utf8_lossy(&k)));
                    let s = s.clone();
                    inflight.push_back(async move {
                        let r = s.shards().route(&k, ev.clone()).await;
                        (ev, r)
                    });
                    if inflight.len() >= 24
                        && let Some((ev, r)) = inflight.next().await
                    {
                        record(ev, r);
                    }
                }
                while let Some((ev, r)) = inflight.next().await {
                    record(ev, r);
                }
            }));
        }
    }
    wait_for("events flowing", LIMIT, || {
        acked.lock().expect("lock").len() > 500
    })
    .await;
    nodes[victim].abort();
    let survivors: Vec<Node> = senders.clone();
    let gone = nodes[victim].id().name.clone();
    wait_for("the victim's shards moved", LIMIT, || {
        survivors.iter().all(|n| {
            let m = n.shards().map();
            m.epoch > map.epoch && !m.counts().contains_key(&gone)
        })
    })
    .await;
    let before = acked.lock().expect("lock").len();
    wait_for("events flowing after the failover", LIMIT, || {
        acked.lock().expect("lock").len() > before + 500
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in runs {
        tokio::time::timeout(LIMIT, r)
            .await
            .expect("sender done")
            .expect("task");
    }
    // Per (sender, key): no acknowledged event was processed before an
    // earlier acknowledged event of the same sender and key.
    let processed = store.lock().expect("lock").clone();
    let mut first: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for (i, (_, ev)) in processed.iter().enumerate() {
        first.entry(ev.to_vec()).or_insert(i);
    }
    let acked = acked.lock().expect("lock").clone();
    let mut streams: BTreeMap<String, Vec<(u32, usize)>> = BTreeMap::new();
    for ev in &acked {
        let s = String::from_utf8_lossy(ev).to_string();
        let (stream, seq) = s.rsplit_once('|').expect("event format");
        let at = *first
            .get(ev)
            .unwrap_or_else(|| panic!("acked {s} was never processed"));
        streams
            .entry(stream.to_string())
            .or_default()
            .push((seq.parse().expect("seq"), at));
    }
    let moved = keys
        .iter()
        .filter(|k| map.owner_of_key(k).1 == Some(gone.as_str()))
        .count();
    assert!(moved > 0);
    // The failover made senders retry (events of the moved shards).
    let retries: u64 = survivors.iter().map(|n| n.stats().route_retries).sum();
    assert!(retries > 0, "no route was retried across the owner stop");
    for (stream, mut evs) in streams {
        evs.sort();
        for w in evs.windows(2) {
            assert!(
                w[0].1 < w[1].1,
                "{stream}: event {} processed before event {}",
                w[1].0,
                w[0].0
            );
        }
    }
    for (i, s) in seen.iter().enumerate() {
        if i != victim {
            assert_bracketed(&format!("node {i}"), &s.lock().expect("lock"));
        }
    }
    for n in survivors {
        n.shutdown(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_route_leaves_its_shard_routable_in_order() {
    let nodes = trio(|_| {}).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<ShardEvent>();
    let _tasks = Tasks(
        nodes
            .iter()
            .map(|n| {
                let mut inbox = n.shards().inbox();
                let tx = tx.clone();
                tokio::spawn(async move {
                    while let Some(d) = inbox.next().await {
                        if let ShardDelivery::Event(e) = d {
                            let _ = tx.send(e);
                        }
                    }
                })
            })
            .collect(),
    );
    let map = balanced(&nodes).await;
    let key = key_of(&map, 5);
    let owner = map.owner(5).expect("owned").to_string();
    let sender = nodes
        .iter()
        .find(|n| n.id().name != owner)
        .expect("a remote sender")
        .clone();
    // The caller gives up while the owner's consumer holds the event: the
    // caller was driving the shard's lane itself.
    let (s1, k1) = (sender.clone(), key.clone());
    let c1 = tokio::spawn(async move { s1.shards().route(&k1, Bytes::from_static(b"c1")).await });
    let first = tokio::time::timeout(LIMIT, rx.recv())
        .await
        .expect("delivered")
        .expect("open");
    assert_eq!(&first.event()[..], b"c1");
    c1.abort();
    assert!(
        c1.await.is_err_and(|e| e.is_cancelled()),
        "the route was cancelled before its ack"
    );
    // The next event of the shard is still delivered, after c1.
    let s2 = sender.clone();
    let k2 = key.clone();
    let c2 = tokio::spawn(async move { s2.shards().route(&k2, Bytes::from_static(b"c2")).await });
    first.ack();
    let mut seen = vec![Bytes::from_static(b"c1")];
    while !seen.iter().any(|e| &e[..] == b"c2") {
        let e = tokio::time::timeout(LIMIT, rx.recv())
            .await
            .expect("delivered")
            .expect("open");
        seen.push(e.event().clone());
        e.ack();
    }
    let ack = tokio::time::timeout(LIMIT, c2)
        .await
        .expect("answered")
        .expect("task");
    assert_eq!(ack.expect("acknowledged").node, owner);
    let at = |x: &[u8]| seen.iter().position(|e| &e[..] == x);
    assert!(at(b"c1") < at(b"c2"), "{seen:?}");
    for n in nodes {
        n.shutdown(Duration::from_millis(100)).await;
    }
}
