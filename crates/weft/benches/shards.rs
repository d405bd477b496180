//! Sharded keyed routing: acknowledged routed events per second, routing
//! latency, and the time from a node's failure to the committed rebalance.
//!
//! Three weft nodes run in this process on 127.0.0.1 (one tokio runtime,
//! two worker threads), 64 shards, default link and membership settings.
//! Every node's shard handler counts events (no I/O), so the numbers are
//! the fabric's: hash, map lookup, one request/acknowledgement round trip
//! to the owner (none when the sender owns the shard itself: with uniform
//! keys about a third of the events are local, reported as `remote %`).
//!
//! - **Routing**: for each in-flight count C (1, 64, 256 by default), C tasks
//!   route 128-byte events with keys drawn uniformly from 10,000, each
//!   task waiting for its acknowledgement before the next event, until the
//!   time budget runs out. Task *t* routes from node *t mod 3* (C = 1: all
//!   from one node, so its latencies are the sequential routing latency).
//!   events/s counts acknowledged events over the wall time; CPU µs/event
//!   is the process's user + system time (getrusage's counters, from
//!   `/proc/self/stat`) over the row divided
//!   by its events (all three nodes and the load generator together).
//! - **route_many**: one task per node calls `route_many` with B events
//!   (256 by default, `--many 0` skips the row) and waits for all results
//!   before the next call; latencies are per call.
//! - **Failover**: a node is aborted (every task stopped at once, like a
//!   crash); the clock runs until every survivor has applied a committed
//!   map that no longer names it. The time until a survivor's membership
//!   declared it down is shown too, and the time until every shard the
//!   node owned acknowledged an event again (senders start at the abort;
//!   the new owners accept once the dead owner's lease certainly ended). Repetitions alternate between killing a
//!   follower and killing the Raft leader (which adds an election); a fresh
//!   node joins after each to restore three. `voter_replace_after` is
//!   shortened to 500 ms so the voter set is whole again between
//!   repetitions (the default 10 s would leave two live voters and the next
//!   kill without a quorum).
//!
//! ```text
//! cargo bench -p weft --bench shards               # table
//! cargo bench -p weft --bench shards -- --json     # JSON
//! cargo bench -p weft --bench shards -- --budget-ms 1000 --inflight 1,16 --reps 2
//! cargo bench -p weft --bench shards -- --inflight 1 --reps 6 --lease-ms 500   # failover trade-off
//! ```
//!
//! The bench fails loudly if a route is not acknowledged or a handler
//! counted fewer events than were acknowledged.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use weft::{MemberState, Node, NodeConfig, Secret, ShardHandler};

const SHARDS: u32 = 64;
const EVENT_BYTES: usize = 128;
const KEYS: u64 = 10_000;
/// Bound on every wait for the cluster (a safety net).
const LIMIT: Duration = Duration::from_secs(60);

struct Options {
    json: bool,
    budget: Duration,
    inflight: Vec<usize>,
    reps: usize,
    /// `shards.lease` (renewals every quarter of it); `None`: default.
    lease: Option<Duration>,
    many: usize,
}

fn options() -> Options {
    let mut o = Options {
        json: false,
        budget: Duration::from_millis(3000),
        inflight: vec![1, 64, 256],
        reps: 4,
        lease: None,
        many: 256,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => o.json = true,
            "--budget-ms" => {
                let v = args.next().and_then(|v| v.parse().ok());
                o.budget = Duration::from_millis(v.expect("--budget-ms needs a number"));
            }
            "--inflight" => {
                let v = args.next().expect("--inflight needs a list");
                o.inflight = v
                    .split(',')
                    .map(|n| n.parse().expect("--inflight: numbers"))
                    .filter(|n| *n > 0)
                    .collect();
            }
            "--lease-ms" => {
                let v = args.next().and_then(|v| v.parse().ok());
                o.lease = Some(Duration::from_millis(v.expect("--lease-ms needs a number")));
            }
            "--many" => {
                let v = args.next().and_then(|v| v.parse().ok());
                o.many = v.expect("--many needs a number");
            }
            "--reps" => {
                let v = args.next().and_then(|v| v.parse().ok());
                o.reps = v.expect("--reps needs a number");
            }
            // `cargo bench` passes `--bench`; ignore what we do not know.
            _ => {}
        }
    }
    o
}

/// Counts the events of this node's shards.
#[derive(Default)]
struct Counter(AtomicU64);

impl ShardHandler for Counter {
    fn on_event(&self, _shard: u32, _key: &[u8], _event: Bytes) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn config(name: &str, seeds: &[SocketAddr]) -> NodeConfig {
    let mut c = NodeConfig::new(name, Secret::new(b"bench-shards-secret-0123456789".to_vec()));
    c.listen = "127.0.0.1:0".parse().expect("addr");
    c.join = seeds.to_vec();
    c.cluster = "bench".into();
    c.shards.count = SHARDS;
    c.shards.bootstrap_delay = Duration::from_millis(300);
    c.shards.voter_replace_after = Duration::from_millis(500);
    if let Some(lease) = LEASE.get() {
        c.shards.lease = *lease;
        c.shards.lease_renew_every = *lease / 4;
    }
    c
}

/// `--lease-ms`, for every node this process starts.
static LEASE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();

async fn start(name: &str, seeds: &[SocketAddr]) -> (Node, Arc<Counter>) {
    let node = Node::start(config(name, seeds)).await.expect("start node");
    let counter = Arc::new(Counter::default());
    node.shards().set_handler(counter.clone());
    (node, counter)
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !cond() {
        assert!(Instant::now() < deadline, "bench: {what} not within {LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every node applied the same map, owned by exactly the live nodes with
/// ⌊S/N⌋ or ⌈S/N⌉ shards each, and the voter set is the live nodes.
fn settled(nodes: &[Node]) -> bool {
    let names: BTreeSet<String> = nodes.iter().map(|n| n.id().name.clone()).collect();
    let map = nodes[0].shards().map();
    let counts = map.counts();
    let n = nodes.len();
    let (lo, hi) = (SHARDS as usize / n, (SHARDS as usize).div_ceil(n));
    map.epoch > 0
        && counts.keys().cloned().collect::<BTreeSet<_>>() == names
        && counts.values().all(|c| *c == lo || *c == hi)
        && nodes.iter().all(|x| x.shards().map() == map)
        && nodes.iter().all(|x| {
            let voters: BTreeSet<String> = x.shards().voters().into_iter().collect();
            voters == names && x.shards().leader().is_some_and(|l| names.contains(&l))
        })
}

fn key(i: u64) -> Vec<u8> {
    format!("key-{i}").into_bytes()
}

/// xorshift64*: a cheap deterministic key sequence per task.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

struct Routing {
    /// Row label: the in-flight count, or `many×B`.
    label: String,
    inflight: usize,
    events: u64,
    secs: f64,
    cpu_secs: f64,
    remote: u64,
    hist: Histogram<u64>,
}

/// User + system CPU seconds of this whole process so far: the kernel's
/// per-process counters that getrusage(RUSAGE_SELF) reports, read from
/// `/proc/self/stat` (fields 14 and 15, in clock ticks of 1/100 s) because
/// the crate forbids the `unsafe` an FFI call would need.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("bench: /proc/self/stat");
    // The command name (field 2) may hold spaces: count from its `)`.
    let rest = &stat[stat.rfind(')').expect("bench: stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f[i].parse::<f64>().expect("bench: stat field");
    // `rest` starts at field 3: utime is field 14, stime field 15.
    (ticks(11) + ticks(12)) / 100.0
}

impl Routing {
    fn rate(&self) -> f64 {
        self.events as f64 / self.secs
    }
    fn cpu_us(&self) -> f64 {
        self.cpu_secs * 1e6 / self.events.max(1) as f64
    }
}

/// Two significant digits (1 % resolution): one histogram per task, and
/// with 256 tasks three digits (~200 KB each) cost cache misses that
/// showed up as several percent of the CPU per event.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 2).expect("histogram")
}

/// C tasks route until the budget is spent; latencies in microseconds.
async fn routing(nodes: &[Node], inflight: usize, budget: Duration) -> Routing {
    let map = nodes[0].shards().map();
    // Owner of every key, fixed during the measurement (nothing moves).
    let owners: Arc<Vec<String>> = Arc::new(
        (0..KEYS)
            .map(|i| map.owner_of_key(&key(i)).1.unwrap_or_default().to_string())
            .collect(),
    );
    let payload = Bytes::from(vec![0x5a; EVENT_BYTES]);
    let cpu0 = cpu_seconds();
    let began = Instant::now();
    let deadline = began + budget;
    let mut tasks = Vec::new();
    for t in 0..inflight {
        let node = nodes[t % nodes.len()].clone();
        let owners = owners.clone();
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            let (mut events, mut remote) = (0u64, 0u64);
            let mut rng = 0x9e37_79b9_7f4a_7c15 ^ ((t as u64 + 1) << 17);
            let me = node.id().name.clone();
            while Instant::now() < deadline {
                let k = next(&mut rng) % KEYS;
                let t0 = Instant::now();
                node.shards()
                    .route(&key(k), payload.clone())
                    .await
                    .unwrap_or_else(|e| panic!("bench: route not acknowledged: {e}"));
                hist.saturating_record(t0.elapsed().as_micros() as u64);
                events += 1;
                if owners[k as usize] != me {
                    remote += 1;
                }
            }
            (hist, events, remote)
        }));
    }
    let mut out = Routing {
        label: inflight.to_string(),
        inflight,
        events: 0,
        secs: 0.0,
        cpu_secs: 0.0,
        remote: 0,
        hist: histogram(),
    };
    for task in tasks {
        let (hist, events, remote) = task.await.expect("routing task");
        out.hist.add(hist).expect("merge histograms");
        out.events += events;
        out.remote += remote;
    }
    out.secs = began.elapsed().as_secs_f64();
    out.cpu_secs = cpu_seconds() - cpu0;
    out
}

/// One task per node calls `route_many` with `batch` events until the
/// budget is spent; latencies per call in microseconds.
async fn routing_many(nodes: &[Node], batch: usize, budget: Duration) -> Routing {
    let map = nodes[0].shards().map();
    let owners: Arc<Vec<String>> = Arc::new(
        (0..KEYS)
            .map(|i| map.owner_of_key(&key(i)).1.unwrap_or_default().to_string())
            .collect(),
    );
    let payload = Bytes::from(vec![0x5a; EVENT_BYTES]);
    let cpu0 = cpu_seconds();
    let began = Instant::now();
    let deadline = began + budget;
    let mut tasks = Vec::new();
    for (t, node) in nodes.iter().enumerate() {
        let node = node.clone();
        let owners = owners.clone();
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            let (mut events, mut remote) = (0u64, 0u64);
            let mut rng = 0x9e37_79b9_7f4a_7c15 ^ ((t as u64 + 1) << 23);
            let me = node.id().name.clone();
            while Instant::now() < deadline {
                let ks: Vec<u64> = (0..batch).map(|_| next(&mut rng) % KEYS).collect();
                let evs: Vec<(Bytes, Bytes)> = ks
                    .iter()
                    .map(|k| (Bytes::from(key(*k)), payload.clone()))
                    .collect();
                let t0 = Instant::now();
                for r in node.shards().route_many(evs).await {
                    r.unwrap_or_else(|e| panic!("bench: route_many not acknowledged: {e}"));
                }
                hist.saturating_record(t0.elapsed().as_micros() as u64);
                events += batch as u64;
                remote += ks.iter().filter(|k| owners[**k as usize] != me).count() as u64;
            }
            (hist, events, remote)
        }));
    }
    let mut out = Routing {
        label: format!("many×{batch}"),
        inflight: batch * nodes.len(),
        events: 0,
        secs: 0.0,
        cpu_secs: 0.0,
        remote: 0,
        hist: histogram(),
    };
    for task in tasks {
        let (hist, events, remote) = task.await.expect("route_many task");
        out.hist.add(hist).expect("merge histograms");
        out.events += events;
        out.remote += remote;
    }
    out.secs = began.elapsed().as_secs_f64();
    out.cpu_secs = cpu_seconds() - cpu0;
    out
}

struct Failover {
    victim: String,
    leader: bool,
    down_ms: Option<f64>,
    commit_ms: f64,
    /// Until every shard the victim owned acknowledged an event again
    /// (routes start at the abort and retry; the new owners accept only
    /// after the victim's lease certainly ended).
    routable_ms: f64,
}

/// A key of `shard` (the first `key(i)` that hashes to it).
fn key_of_shard(shard: u32) -> Vec<u8> {
    (0..)
        .map(key)
        .find(|k| weft::weft_proto::shard::shard_of(k, SHARDS) == shard)
        .expect("some key hashes to every shard")
}

/// Aborts one node (`leader`: the Raft leader, else a follower) and times
/// the committed rebalance on the survivors; returns the survivors.
async fn failover(mut nodes: Vec<Node>, leader: bool) -> (Vec<Node>, Failover) {
    let leader_name = nodes[0].shards().leader().expect("a leader");
    let idx = nodes
        .iter()
        .position(|n| (n.id().name == leader_name) == leader)
        .expect("victim");
    let victim = nodes.remove(idx);
    let name = victim.id().name.clone();
    let before = nodes[0].shards().map();
    let epoch = before.epoch;
    let orphaned: Vec<u32> = (0..before.shard_count())
        .filter(|s| before.owner(*s) == Some(name.as_str()))
        .collect();
    let t0 = Instant::now();
    victim.abort();
    // One sender per orphaned shard, from the survivors, from the abort on.
    let routes: Vec<_> = orphaned
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let node = nodes[i % nodes.len()].clone();
            let k = key_of_shard(*s);
            tokio::spawn(async move {
                let r = node.shards().route(&k, Bytes::from_static(b"failover")).await;
                (r, t0.elapsed().as_secs_f64() * 1e3)
            })
        })
        .collect();
    let mut down_ms = None;
    let deadline = t0 + LIMIT;
    let commit_ms = loop {
        if down_ms.is_none()
            && nodes.iter().any(|n| {
                n.membership()
                    .member(&name)
                    .is_some_and(|m| m.state == MemberState::Down)
            })
        {
            down_ms = Some(t0.elapsed().as_secs_f64() * 1e3);
        }
        if nodes.iter().all(|n| {
            let m = n.shards().map();
            m.epoch > epoch && !m.counts().contains_key(&name)
        }) {
            break t0.elapsed().as_secs_f64() * 1e3;
        }
        assert!(
            Instant::now() < deadline,
            "bench: no rebalance after killing {name}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let mut routable_ms: f64 = 0.0;
    for r in routes {
        let (ack, at) = r.await.expect("route task");
        ack.unwrap_or_else(|e| panic!("bench: an orphaned shard never accepted again: {e}"));
        routable_ms = routable_ms.max(at);
    }
    drop(victim);
    (
        nodes,
        Failover {
            victim: name,
            leader,
            down_ms,
            commit_ms,
            routable_ms,
        },
    )
}

fn percentile(h: &Histogram<u64>, q: f64) -> u64 {
    h.value_at_quantile(q)
}

fn summary(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let median = if s.is_empty() {
        0.0
    } else if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    (
        s.first().copied().unwrap_or(0.0),
        median,
        s.last().copied().unwrap_or(0.0),
    )
}

async fn run(o: Options) {
    if let Some(lease) = o.lease {
        let _ = LEASE.set(lease);
    }
    let (n1, c1) = start("n1", &[]).await;
    let seed = [n1.addr()];
    let (n2, c2) = start("n2", &seed).await;
    let (n3, c3) = start("n3", &seed).await;
    let mut nodes = vec![n1, n2, n3];
    let counters = [c1, c2, c3];
    wait_until("a balanced map on three nodes", || settled(&nodes)).await;

    // Warm-up: links, connections and the allocator.
    routing(&nodes, 8, Duration::from_millis(500)).await;
    let mut results = Vec::new();
    for &c in &o.inflight {
        results.push(routing(&nodes, c, o.budget).await);
    }
    if o.many > 0 {
        results.push(routing_many(&nodes, o.many, o.budget).await);
    }
    let counted: u64 = counters.iter().map(|c| c.0.load(Ordering::Relaxed)).sum();
    let acked: u64 = results.iter().map(|r| r.events).sum();
    assert!(
        counted >= acked,
        "bench: handlers counted {counted} events, {acked} were acknowledged"
    );

    let mut failovers = Vec::new();
    for rep in 0..o.reps {
        let (survivors, f) = failover(nodes, rep % 2 == 1).await;
        failovers.push(f);
        nodes = survivors;
        // A fresh node (n4, n5, ...) restores three.
        let seeds: Vec<SocketAddr> = nodes.iter().map(Node::addr).collect();
        let (n, _) = start(&format!("n{}", rep + 4), &seeds).await;
        nodes.push(n);
        wait_until("three nodes settled after a failover", || settled(&nodes)).await;
    }
    for n in &nodes {
        n.shutdown(Duration::from_millis(100)).await;
    }

    let commits: Vec<f64> = failovers.iter().map(|f| f.commit_ms).collect();
    let (min, median, max) = summary(&commits);
    let routable: Vec<f64> = failovers.iter().map(|f| f.routable_ms).collect();
    let (rmin, rmedian, rmax) = summary(&routable);
    if o.json {
        let routing: Vec<serde_json::Value> = results
            .iter()
            .map(|r| {
                serde_json::json!({
                    "row": r.label,
                    "inflight": r.inflight,
                    "cpu_us_per_event": r.cpu_us(),
                    "events": r.events,
                    "seconds": r.secs,
                    "events_per_sec": r.rate(),
                    "remote_fraction": r.remote as f64 / r.events.max(1) as f64,
                    "p50_us": percentile(&r.hist, 0.50),
                    "p99_us": percentile(&r.hist, 0.99),
                    "p999_us": percentile(&r.hist, 0.999),
                    "max_us": r.hist.max(),
                })
            })
            .collect();
        let fo: Vec<serde_json::Value> = failovers
            .iter()
            .map(|f| {
                serde_json::json!({
                    "victim": f.victim,
                    "leader": f.leader,
                    "down_detected_ms": f.down_ms,
                    "rebalance_committed_ms": f.commit_ms,
                    "routable_again_ms": f.routable_ms,
                })
            })
            .collect();
        let out = serde_json::json!({
            "nodes": 3,
            "shards": SHARDS,
            "event_bytes": EVENT_BYTES,
            "keys": KEYS,
            "budget_ms": o.budget.as_millis() as u64,
            "routing": routing,
            "failover": fo,
            "failover_commit_ms": {"min": min, "median": median, "max": max},
            "failover_routable_ms": {"min": rmin, "median": rmedian, "max": rmax},
            "lease_ms": o.lease.map(|l| l.as_millis() as u64),
        });
        println!("{out}");
        return;
    }
    println!(
        "weft shards: 3 nodes, {SHARDS} shards, {EVENT_BYTES} B events, keys uniform over {KEYS}, \
         loopback, one process (2 worker threads), {:.1} s per row",
        o.budget.as_secs_f64()
    );
    println!();
    println!("routing (acknowledged events; in-flight 1 = sequential; many×B: latency per call)");
    println!(
        "{:>9} {:>10} {:>11} {:>8} {:>8} {:>9} {:>9} {:>9} {:>10}",
        "in-flight", "events", "events/s", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "remote %", "CPU µs/ev"
    );
    for r in &results {
        println!(
            "{:>9} {:>10} {:>11.0} {:>8} {:>8} {:>9} {:>9} {:>9.1} {:>10.2}",
            r.label,
            r.events,
            r.rate(),
            percentile(&r.hist, 0.50),
            percentile(&r.hist, 0.99),
            percentile(&r.hist, 0.999),
            r.hist.max(),
            100.0 * r.remote as f64 / r.events.max(1) as f64,
            r.cpu_us()
        );
    }
    println!();
    println!(
        "failover (abort -> committed map without the node, applied on every survivor -> every \
         orphaned shard accepts again; lease {} ms)",
        o.lease
            .map_or("default".to_string(), |l| l.as_millis().to_string())
    );
    println!(
        "{:>4} {:>8} {:>9} {:>18} {:>22} {:>18}",
        "rep", "victim", "role", "down detected ms", "rebalance committed ms", "routable again ms"
    );
    for (i, f) in failovers.iter().enumerate() {
        println!(
            "{:>4} {:>8} {:>9} {:>18} {:>22.0} {:>18.0}",
            i + 1,
            f.victim,
            if f.leader { "leader" } else { "follower" },
            f.down_ms.map_or("-".to_string(), |d| format!("{d:.0}")),
            f.commit_ms,
            f.routable_ms
        );
    }
    println!("rebalance committed ms: min {min:.0} / median {median:.0} / max {max:.0}");
    println!("routable again ms: min {rmin:.0} / median {rmedian:.0} / max {rmax:.0}");
}

fn main() {
    let o = options();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(o));
}
