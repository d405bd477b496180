//! Split-brain hunt (issue 14, part 1) on turmoil: three nodes route events
//! to every shard from both sides of partitions that move between nodes,
//! with a crash and restart in between, and a checker over every accepted
//! event fails on any moment where two nodes accept events for one shard.
//!
//! The checker and its definitions (stints, overlapping acceptances,
//! stale acceptances after a heal, in simulated time here) are in
//! `tests/common/overlap.rs`, shared with `shard_partition_netns.rs`.
//!
//! Both counts must be 0. The schedule (victims, partition and downtime
//! lengths) is derived from the seed. `WEFT_SIM_SEEDS=N` runs seeds 1..=N
//! (20 by default), `WEFT_SIM_SEED=N` replays one (openraft's own timers
//! are not seeded, so a replay may differ in election timing, not in what
//! is checked).

mod common {
    pub mod overlap;
    pub mod sim;
    pub mod sim_net;
}

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::overlap::{Accepted, Heal, Overlap, overlaps, stale_after_heal};
use common::sim::{Nodes, Setup, add_node_tuned, run_until};
use weft::weft_proto::shard::shard_of;
use weft::{Node, NodeConfig, ShardMap};

const NAMES: [&str; 3] = ["n1", "n2", "n3"];
const SHARDS: u32 = 12;
/// Pause between two routes of one sender task (one task per shard per
/// node, so every node keeps routing to every shard).
const SEND_PAUSE: Duration = Duration::from_millis(250);
/// Bound on the initial convergence.
const LIMIT: Duration = Duration::from_secs(90);

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("WEFT_SIM_SEED") {
        return vec![s.parse().expect("WEFT_SIM_SEED is a number")];
    }
    let n: u64 = std::env::var("WEFT_SIM_SEEDS")
        .map(|s| s.parse().expect("WEFT_SIM_SEEDS is a number"))
        .unwrap_or(20);
    (1..=n).collect()
}

thread_local! {
    /// The data directory root of the seed running on this thread (`tune`
    /// is a plain `fn`, so it reads it from here; seeds run on several
    /// threads): a restarted node keeps its Raft log.
    static ROOT: std::cell::RefCell<Option<std::path::PathBuf>> = const { std::cell::RefCell::new(None) };
}

fn tune(c: &mut NodeConfig) {
    c.shards.count = SHARDS;
    c.shards.bootstrap_delay = Duration::from_millis(500);
    let root = ROOT.with(|r| r.borrow().clone()).expect("root set");
    c.data_dir = Some(root.join(&c.name));
}

/// Removes the data directory root on drop (also when a seed fails).
struct RootGuard(std::path::PathBuf);

impl Drop for RootGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A small deterministic generator for the schedule (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

/// An open acquire → release bracket: (run, bracket number).
type Bracket = (u64, u64);

/// Everything the handlers saw, shared with the test.
#[derive(Default)]
struct Book {
    events: Mutex<Vec<Accepted>>,
    /// Open brackets per (node, shard): (run, bracket number).
    open: Mutex<BTreeMap<(&'static str, u32), Bracket>>,
    brackets: AtomicU64,
    errors: Mutex<Vec<String>>,
}

/// Simulated time now (inside a host: its clock; the test's fallback is
/// never used by the handlers, which run inside their host).
fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

struct Recorder {
    name: &'static str,
    run: u64,
    map: tokio::sync::watch::Receiver<ShardMap>,
    book: Arc<Book>,
}

impl weft::ShardHandler for Recorder {
    fn shard_acquired(&self, shard: u32, _epoch: u64) {
        let n = self.book.brackets.fetch_add(1, Ordering::Relaxed);
        let mut open = self.book.open.lock().expect("lock");
        if let Some(prev) = open.insert((self.name, shard), (self.run, n))
            && prev.0 == self.run
        {
            self.book
                .errors
                .lock()
                .expect("lock")
                .push(format!("{} acquired shard {shard} twice", self.name));
        }
    }

    fn shard_released(&self, shard: u32, _epoch: u64) {
        let mut open = self.book.open.lock().expect("lock");
        if open.remove(&(self.name, shard)).is_none() {
            self.book
                .errors
                .lock()
                .expect("lock")
                .push(format!("{} released shard {shard} it did not hold", self.name));
        }
    }

    fn on_event(&self, shard: u32, _key: &[u8], _event: bytes::Bytes) {
        // The map the admission check just read, unless a newer one was
        // published in between (then this errs towards the newer epoch,
        // which only makes the stale check more lenient).
        let epoch = self.map.borrow().epoch;
        let bracket = self
            .book
            .open
            .lock()
            .expect("lock")
            .get(&(self.name, shard))
            .copied()
            .filter(|(run, _)| *run == self.run);
        self.book.events.lock().expect("lock").push(Accepted {
            node: self.name.to_string(),
            bracket,
            shard,
            epoch,
            at: now(),
        });
    }
}

/// A key of each shard.
fn keys() -> Vec<String> {
    let mut keys = vec![String::new(); SHARDS as usize];
    let mut found = 0;
    for j in 0..10_000 {
        let k = format!("key-{j}");
        let s = shard_of(k.as_bytes(), SHARDS) as usize;
        if keys[s].is_empty() {
            keys[s] = k;
            found += 1;
            if found == SHARDS {
                return keys;
            }
        }
    }
    panic!("no key for some shard: {keys:?}");
}

/// Registers a recorder for each run of `name` and starts its senders:
/// one task per shard routing that shard's key every [`SEND_PAUSE`] until
/// `stop` (bounded by the simulation's own duration).
fn sending(name: &'static str, book: &Arc<Book>, stop: &Arc<AtomicBool>) -> Setup {
    let book = book.clone();
    let stop = stop.clone();
    Rc::new(move |node: Node, run| {
        // A new run holds nothing until its handler hears otherwise.
        book.open.lock().expect("lock").retain(|(n, _), _| *n != name);
        node.shards().set_handler(Arc::new(Recorder {
            name,
            run,
            map: node.shards().watch_map(),
            book: book.clone(),
        }));
        let stop = stop.clone();
        Box::pin(async move {
            let mut tasks = Vec::new();
            for (shard, key) in keys().into_iter().enumerate() {
                let node = node.clone();
                let stop = stop.clone();
                tasks.push(tokio::spawn(async move {
                    let mut i = 0u64;
                    // Bounded: the simulation ends long before this.
                    while !stop.load(Ordering::Relaxed) && i < 100_000 {
                        let payload = bytes::Bytes::from(format!("{name}-{shard}-{i}"));
                        let _ = node.shards().route(key.as_bytes(), payload).await;
                        tokio::time::sleep(SEND_PAUSE).await;
                        i += 1;
                    }
                }));
            }
            node.stopped().await;
            for t in tasks {
                t.abort();
            }
        })
    })
}

/// Every committed map seen, by epoch (sampled after every step from every
/// running node).
#[derive(Default)]
struct Maps(BTreeMap<u64, Vec<Option<String>>>);

impl Maps {
    fn sample(&mut self, nodes: &Nodes, running: &[bool; 3]) {
        for (i, n) in NAMES.iter().enumerate() {
            if running[i]
                && let Some(node) = nodes.get(n)
            {
                let m = node.shards().map();
                if m.epoch > 0 {
                    self.0.entry(m.epoch).or_insert(m.owners);
                }
            }
        }
    }
}

/// Steps the simulation for `d`, sampling every running node's committed
/// map after each step.
fn run_sampling(
    s: &mut turmoil::Sim<'_>,
    seed: u64,
    d: Duration,
    nodes: &Nodes,
    running: &[bool; 3],
    maps: &mut Maps,
) {
    let end = s.elapsed() + d;
    while s.elapsed() < end {
        if let Err(e) = s.step() {
            panic!("seed {seed}: simulation failed: {e}");
        }
        maps.sample(nodes, running);
    }
}

fn cut(s: &turmoil::Sim<'_>, victim: &str, on: bool) {
    for other in NAMES.iter().filter(|n| **n != victim) {
        if on {
            s.partition(victim, *other);
        } else {
            s.repair(victim, *other);
        }
    }
}

/// What one seed found.
struct Found {
    seed: u64,
    events: usize,
    overlaps: Vec<Overlap>,
    stale: Vec<String>,
    errors: Vec<String>,
    schedule: String,
}

fn run_seed(seed: u64) -> Found {
    let root = std::env::temp_dir().join(format!("weft-sim-partition-{}-{seed}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let _guard = RootGuard(root.clone());
    ROOT.with(|r| *r.borrow_mut() = Some(root));
    let mut rng = Rng(seed);
    let mut s = common::sim::sim(seed, Duration::from_secs(400));
    let nodes = Nodes::default();
    let book = Arc::new(Book::default());
    let stop = Arc::new(AtomicBool::new(false));
    for (i, n) in NAMES.iter().enumerate() {
        let seeds: &'static [&'static str] = if i == 0 { &[] } else { &["n1"] };
        add_node_tuned(&mut s, &nodes, n, seeds, seed, tune, sending(n, &book, &stop));
    }
    let mut running = [true; 3];
    let mut maps = Maps::default();
    run_until(&mut s, seed, "a balanced map everywhere", LIMIT, || {
        NAMES.iter().all(|n| {
            nodes.get(n).is_some_and(|x| {
                x.shards().map().counts().values().copied().collect::<Vec<_>>() == vec![4, 4, 4]
            })
        })
    });
    let mut schedule = Vec::new();
    let mut heals = Vec::new();
    run_sampling(
        &mut s,
        seed,
        rng.millis(1_000, 3_000),
        &nodes,
        &running,
        &mut maps,
    );

    // Two partitions that move between nodes, a crash and restart between.
    let first = NAMES[rng.below(3) as usize];
    let second = NAMES
        .iter()
        .copied()
        .filter(|n| *n != first)
        .nth(rng.below(2) as usize)
        .expect("victim");
    let crashed = NAMES[rng.below(3) as usize];
    for (step, victim) in [first, second].into_iter().enumerate() {
        let cut_for = rng.millis(15_000, 25_000);
        schedule.push(format!("cut {victim} at {:?} for {cut_for:?}", s.elapsed()));
        cut(&s, victim, true);
        run_sampling(&mut s, seed, cut_for, &nodes, &running, &mut maps);
        let victim_epoch = nodes.get(victim).map_or(0, |n| n.shards().map().epoch);
        cut(&s, victim, false);
        heals.push(Heal {
            at: s.elapsed(),
            victim: victim.to_string(),
            victim_epoch,
        });
        run_sampling(
            &mut s,
            seed,
            rng.millis(6_000, 9_000),
            &nodes,
            &running,
            &mut maps,
        );
        if step == 0 {
            let down = rng.millis(1_000, 6_000);
            schedule.push(format!("crash {crashed} at {:?} for {down:?}", s.elapsed()));
            let i = NAMES.iter().position(|n| *n == crashed).expect("crashed");
            s.crash(crashed);
            running[i] = false;
            book.open.lock().expect("lock").retain(|(n, _), _| *n != crashed);
            run_sampling(&mut s, seed, down, &nodes, &running, &mut maps);
            s.bounce(crashed);
            running[i] = true;
            run_sampling(
                &mut s,
                seed,
                rng.millis(6_000, 9_000),
                &nodes,
                &running,
                &mut maps,
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    run_sampling(&mut s, seed, Duration::from_secs(1), &nodes, &running, &mut maps);

    let events = book.events.lock().expect("lock").clone();
    let mut errors = book.errors.lock().expect("lock").clone();
    let outside = events.iter().filter(|e| e.bracket.is_none()).count();
    if outside > 0 {
        errors.push(format!(
            "{outside} events accepted outside an acquire/release bracket"
        ));
    }
    Found {
        seed,
        events: events.len(),
        overlaps: overlaps(&events),
        stale: stale_after_heal(&events, &heals, &maps.0),
        errors,
        schedule: schedule.join(", "),
    }
}

#[test]
fn no_two_nodes_accept_one_shard_at_once_across_moving_partitions() {
    // Seeds are independent simulations (each on its own thread, turmoil
    // state is per thread): run them on every core.
    let seeds = seeds();
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, seeds.len().max(1));
    let mut found: Vec<Found> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let mine: Vec<u64> = seeds.iter().copied().skip(t).step_by(threads).collect();
                scope.spawn(move || mine.into_iter().map(run_seed).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    found.sort_by_key(|f| f.seed);
    for f in &found {
        let seed = f.seed;
        eprintln!(
            "seed {seed}: {} events accepted, {} overlapping acceptances, {} stale after heal, {} bracket errors ({})",
            f.events,
            f.overlaps.len(),
            f.stale.len(),
            f.errors.len(),
            f.schedule
        );
    }
    let mut report = String::new();
    for f in &found {
        if f.overlaps.is_empty() && f.stale.is_empty() && f.errors.is_empty() {
            continue;
        }
        report.push_str(&format!(
            "\nseed {} ({}): {} overlapping acceptances, {} stale after heal",
            f.seed,
            f.schedule,
            f.overlaps.len(),
            f.stale.len()
        ));
        // The first overlap of each (shard, node, other) is enough to read.
        let mut shown = std::collections::BTreeSet::new();
        for o in &f.overlaps {
            if shown.insert((o.shard, &o.node, &o.other)) && shown.len() <= 8 {
                report.push_str(&format!("\n  {o}"));
            }
        }
        for line in f.stale.iter().take(3) {
            report.push_str(&format!("\n  {line}"));
        }
        for line in f.errors.iter().take(3) {
            report.push_str(&format!("\n  {line}"));
        }
    }
    let overlapping: usize = found.iter().map(|f| f.overlaps.len()).sum();
    let stale: usize = found.iter().map(|f| f.stale.len()).sum();
    let errors: usize = found.iter().map(|f| f.errors.len()).sum();
    let failing = found
        .iter()
        .filter(|f| !f.overlaps.is_empty() || !f.stale.is_empty() || !f.errors.is_empty())
        .count();
    assert!(
        overlapping == 0 && stale == 0 && errors == 0,
        "{failing} of {} seeds failed: {overlapping} overlapping acceptances, {stale} stale after heal, \
         {errors} bracket errors (replay one with WEFT_SIM_SEED=N):{report}",
        found.len()
    );
}
