#![allow(dead_code)]
//! A small harness for seeded cluster simulations on turmoil.
//!
//! Each node runs as a turmoil host; the test steps the simulation from
//! outside and inspects nodes through a shared registry of `Node` handles.
//! A restart (`bounce`) starts the node again with a larger incarnation.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weft::{Node, NodeConfig, Secret};

use super::sim_net::SimNet;

/// The cluster port every simulated node binds.
pub const PORT: u16 = 7420;

/// Shared handles to the running nodes, by name.
#[derive(Clone, Default)]
pub struct Nodes(Arc<Mutex<HashMap<String, Node>>>);

impl Nodes {
    /// The current handle of `name`, if it runs.
    pub fn get(&self, name: &str) -> Option<Node> {
        self.0.lock().expect("lock").get(name).cloned()
    }
    fn put(&self, name: &str, node: Node) {
        self.0.lock().expect("lock").insert(name.to_string(), node);
    }
}

/// Builds a seeded simulation.
pub fn sim<'a>(seed: u64, duration: Duration) -> turmoil::Sim<'a> {
    turmoil::Builder::new()
        .simulation_duration(duration)
        .rng_seed(seed)
        .build()
}

/// The simulated cluster address of `name`.
pub fn addr_of(name: &str) -> SocketAddr {
    let ip: IpAddr = turmoil::lookup(name);
    SocketAddr::new(ip, PORT)
}

/// A config for simulated node `name` joining `seeds` (names).
pub fn sim_config(name: &str, seeds: &[&str], seed: u64, incarnation: u64) -> NodeConfig {
    let mut c = NodeConfig::new(name, Secret::new(b"simulation-secret-0123".to_vec()));
    c.cluster = "sim".into();
    c.listen = SocketAddr::from(([0, 0, 0, 0], PORT));
    c.advertise = Some(addr_of(name));
    c.join = seeds.iter().map(|s| addr_of(s)).collect();
    c.incarnation = Some(incarnation);
    // The shard map's consensus group runs beside every other layer, so
    // their simulations also exercise it under crashes and partitions
    // (openraft's own timers are not seeded: a replay may differ in Raft
    // timing, not in what each simulation checks).
    c.rng_seed = Some(seed ^ incarnation.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    c
}

/// Adds host `name` running a node; every (re)start gets a larger
/// incarnation. `tune` adjusts the config.
pub fn add_node(
    sim: &mut turmoil::Sim<'_>,
    nodes: &Nodes,
    name: &'static str,
    seeds: &'static [&'static str],
    seed: u64,
    tune: fn(&mut NodeConfig),
) {
    let nodes = nodes.clone();
    let runs = Arc::new(AtomicU64::new(0));
    sim.host(name, move || {
        let nodes = nodes.clone();
        let run = runs.fetch_add(1, Ordering::Relaxed) + 1;
        async move {
            let mut config = sim_config(name, seeds, seed, run);
            tune(&mut config);
            let node = Node::start_with_net(config, Arc::new(SimNet)).await?;
            nodes.put(name, node.clone());
            node.stopped().await;
            Ok(())
        }
    });
}

/// Steps `sim` until `cond` holds; panics (naming `what` and the seed)
/// when simulated time passes `limit`. Returns the simulated time elapsed.
pub fn run_until(
    sim: &mut turmoil::Sim<'_>,
    seed: u64,
    what: &str,
    limit: Duration,
    mut cond: impl FnMut() -> bool,
) -> Duration {
    let start = sim.elapsed();
    loop {
        if cond() {
            return sim.elapsed() - start;
        }
        if sim.elapsed() - start > limit {
            panic!("seed {seed}: {what}: not reached within {limit:?} of simulated time");
        }
        if let Err(e) = sim.step() {
            panic!("seed {seed}: simulation failed while waiting for {what}: {e}");
        }
    }
}

/// Runs `sim` for `d` of simulated time.
pub fn run_for(sim: &mut turmoil::Sim<'_>, seed: u64, d: Duration) {
    let end = sim.elapsed() + d;
    while sim.elapsed() < end {
        if let Err(e) = sim.step() {
            panic!("seed {seed}: simulation failed: {e}");
        }
    }
}

/// The state `observer` reports for `name` (`None` if unknown or not
/// running).
pub fn state(nodes: &Nodes, observer: &str, name: &str) -> Option<weft::MemberState> {
    nodes.get(observer)?.membership().member(name).map(|m| m.state)
}

/// The incarnation `observer` knows for `name`.
pub fn incarnation(nodes: &Nodes, observer: &str, name: &str) -> Option<u64> {
    nodes
        .get(observer)?
        .membership()
        .member(name)
        .map(|m| m.incarnation)
}

/// What a host does with its node after starting it (runs until the host
/// stops). Gets the node and the run number (1 for the first start).
pub type Setup = std::rc::Rc<dyn Fn(Node, u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>>;

/// Like [`add_node`], but waits `delay` before starting and then runs
/// `setup` (which should keep its mailboxes alive as long as it runs).
#[allow(clippy::too_many_arguments)]
pub fn add_node_with(
    sim: &mut turmoil::Sim<'_>,
    nodes: &Nodes,
    name: &'static str,
    seeds: &'static [&'static str],
    seed: u64,
    delay: Duration,
    setup: Setup,
) {
    let nodes = nodes.clone();
    let runs = Arc::new(AtomicU64::new(0));
    sim.host(name, move || {
        let nodes = nodes.clone();
        let setup = setup.clone();
        let run = runs.fetch_add(1, Ordering::Relaxed) + 1;
        async move {
            if run == 1 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let config = sim_config(name, seeds, seed, run);
            let node = Node::start_with_net(config, Arc::new(SimNet)).await?;
            nodes.put(name, node.clone());
            let stopped = node.clone();
            tokio::select! {
                _ = setup(node, run) => {}
                _ = stopped.stopped() => {}
            }
            stopped.stopped().await;
            Ok(())
        }
    });
}

/// Like [`add_node_with`] without delay, with a config tweak.
pub fn add_node_tuned(
    sim: &mut turmoil::Sim<'_>,
    nodes: &Nodes,
    name: &'static str,
    seeds: &'static [&'static str],
    seed: u64,
    tune: fn(&mut NodeConfig),
    setup: Setup,
) {
    let nodes = nodes.clone();
    let runs = Arc::new(AtomicU64::new(0));
    sim.host(name, move || {
        let nodes = nodes.clone();
        let setup = setup.clone();
        let run = runs.fetch_add(1, Ordering::Relaxed) + 1;
        async move {
            let mut config = sim_config(name, seeds, seed, run);
            tune(&mut config);
            let node = Node::start_with_net(config, Arc::new(SimNet)).await?;
            nodes.put(name, node.clone());
            let stopped = node.clone();
            tokio::select! {
                _ = setup(node, run) => {}
                _ = stopped.stopped() => {}
            }
            stopped.stopped().await;
            Ok(())
        }
    });
}
