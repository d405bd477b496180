//! The demo's cluster: three `weft::Node`s in this process on 127.0.0.1,
//! each with a little presence (a process-group member and a
//! subscription) so a crash has registry entries to purge.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow};
use bytes::Bytes;
use weft::{Mailbox, MemberState, Node, NodeConfig, Secret, ShardHandler, Subscription};

use super::runner::{say, secs};
use super::wait;

/// The node names, in start order (n1 is the seed).
pub const NAMES: [&str; 3] = ["n1", "n2", "n3"];
/// The process group every node joins one mailbox to.
pub const GROUP: &str = "demo.nodes";
/// Shards of the demo's map.
pub const SHARDS: u32 = 64;
/// Bound of each wait while the cluster forms.
const FORM_LIMIT: Duration = Duration::from_secs(20);

/// Counts the events a node's shard handler received.
#[derive(Default)]
pub struct ShardCounter {
    /// Events received.
    pub events: AtomicU64,
    /// Shards owned now, with the epoch they were acquired at.
    pub owned: Mutex<BTreeMap<u32, u64>>,
}

impl ShardCounter {
    /// Events received so far.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }
}

impl ShardHandler for ShardCounter {
    fn shard_acquired(&self, shard: u32, epoch: u64) {
        self.owned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(shard, epoch);
    }
    fn shard_released(&self, shard: u32, _epoch: u64) {
        self.owned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&shard);
    }
    fn on_event(&self, _shard: u32, _key: &[u8], _event: Bytes) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }
}

/// What each node holds so that it has registry entries of its own.
struct Presence {
    _mailbox: Mailbox,
    _subscription: Subscription,
}

/// Three in-process nodes; `n1`, `n2`, `n3` at indexes 0, 1, 2.
pub struct Cluster {
    /// The nodes (a killed node stays here, aborted).
    pub nodes: Vec<Node>,
    /// Each node's shard handler.
    pub counters: Vec<Arc<ShardCounter>>,
    /// Which nodes were killed.
    killed: Vec<bool>,
    _presence: Vec<Presence>,
}

/// The configuration of demo node `name`: loopback, a fresh secret, the
/// default failure detection (about 1.5-2 s), a quick shard bootstrap.
fn config(name: &str, port: u16, seeds: &[SocketAddr], secret: &Secret) -> NodeConfig {
    let mut c = NodeConfig::new(name, secret.clone());
    c.cluster = "weft-demo".into();
    c.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    c.join = seeds.to_vec();
    c.shards.count = SHARDS;
    c.shards.bootstrap_delay = Duration::from_millis(800);
    c.relay.linger = Duration::from_millis(500);
    c
}

impl Cluster {
    /// Starts n1, n2, n3 (n2 and n3 join through n1) on `base_port`,
    /// `base_port + 1`, `base_port + 2`, or on free ports when `None`;
    /// waits until every node sees every other up and linked, every
    /// presence is known everywhere and the first shard map committed.
    pub async fn start(base_port: Option<u16>) -> anyhow::Result<Cluster> {
        let secret = Secret::new(crate::secret::generate_hex().into_bytes());
        let mut nodes: Vec<Node> = Vec::new();
        for (i, name) in NAMES.iter().enumerate() {
            let port = match base_port {
                Some(base) => base
                    .checked_add(i as u16)
                    .ok_or_else(|| anyhow!("--base-port {base} leaves no room for 3 nodes"))?,
                None => 0,
            };
            let seeds: Vec<SocketAddr> = nodes.first().map(Node::addr).into_iter().collect();
            let node = Node::start(config(name, port, &seeds, &secret))
                .await
                .with_context(|| format!("starting {name}"))?;
            nodes.push(node);
        }
        let mut cluster = Cluster {
            counters: Vec::new(),
            killed: vec![false; nodes.len()],
            _presence: Vec::new(),
            nodes,
        };
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("{} {}", n.id().name, n.addr()))
            .collect();
        say(format_args!("started {} in this process", addrs.join(", ")));
        for node in &cluster.nodes {
            let counter = Arc::new(ShardCounter::default());
            node.shards().set_handler(counter.clone());
            cluster.counters.push(counter);
            let mailbox = node.mailboxes().spawn();
            node.groups()
                .join(GROUP, mailbox.pid())
                .context("joining the demo process group")?;
            let subscription = node
                .pubsub()
                .subscribe(&format!("demo.node.{}", node.id().name))
                .context("subscribing")?;
            cluster._presence.push(Presence {
                _mailbox: mailbox,
                _subscription: subscription,
            });
        }
        let nodes = &cluster.nodes;
        let meshed = wait::until("every node to see the others up and linked", FORM_LIMIT, || {
            nodes.iter().all(|n| {
                NAMES.iter().all(|peer| {
                    *peer == n.id().name
                        || (n
                            .membership()
                            .member(peer)
                            .is_some_and(|m| m.state == MemberState::Up)
                            && n.membership().is_linked(peer))
                })
            })
        })
        .await?;
        say(format_args!(
            "membership: every node sees the other two up, one authenticated link per pair ({})",
            secs(meshed)
        ));
        wait::until(
            "the process group and subscriptions to reach every node",
            FORM_LIMIT,
            || {
                nodes.iter().all(|n| {
                    n.groups().members(GROUP).len() == NAMES.len()
                        && NAMES.iter().all(|peer| {
                            *peer == n.id().name || n.pubsub().remote_interest().contains_key(*peer)
                        })
                })
            },
        )
        .await?;
        let committed = wait::until("the first shard map to commit on every node", FORM_LIMIT, || {
            nodes
                .iter()
                .all(|n| n.shards().map().epoch >= 1 && n.shards().map().counts().len() == NAMES.len())
        })
        .await?;
        let map = nodes[0].shards().map();
        say(format_args!(
            "shard map: epoch {}, {} shards over {} nodes, committed through Raft (leader {}) ({})",
            map.epoch,
            map.shard_count(),
            map.counts().len(),
            nodes[0].shards().leader().unwrap_or_else(|| "?".into()),
            secs(meshed + committed)
        ));
        Ok(cluster)
    }

    /// Node `name` (`n1`..`n3`).
    pub fn node(&self, name: &str) -> anyhow::Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.id().name == name)
            .ok_or_else(|| anyhow!("no node {name}"))
    }

    /// The shard counter of node `name`.
    pub fn counter(&self, name: &str) -> anyhow::Result<&ShardCounter> {
        let i = NAMES
            .iter()
            .position(|n| *n == name)
            .ok_or_else(|| anyhow!("no node {name}"))?;
        self.counters
            .get(i)
            .map(Arc::as_ref)
            .ok_or_else(|| anyhow!("no shard counter for {name}"))
    }

    /// The nodes still running.
    pub fn live(&self) -> Vec<&Node> {
        self.nodes
            .iter()
            .zip(&self.killed)
            .filter(|(_, killed)| !**killed)
            .map(|(n, _)| n)
            .collect()
    }

    /// Crashes node `name`: every task stops at once, nobody is told (no
    /// leave announcement, no goodbye on links), so the others must
    /// detect the failure.
    pub fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let i = NAMES
            .iter()
            .position(|n| *n == name)
            .ok_or_else(|| anyhow!("no node {name}"))?;
        self.nodes[i].abort();
        self.killed[i] = true;
        Ok(())
    }

    /// Stops the nodes still running: gracefully (leave, goodbye, drain)
    /// when `graceful`, else at once.
    pub async fn stop(self, graceful: bool) {
        let live = self.live();
        if graceful {
            let stops = live.iter().map(|n| n.shutdown(Duration::from_millis(200)));
            let _ = tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(stops)).await;
        } else {
            for n in live {
                n.abort();
            }
        }
    }
}
