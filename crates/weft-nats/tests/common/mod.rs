//! A weft cluster with a NATS server on every node, on 127.0.0.1.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

pub mod nats_server;
pub mod raw;

use weft::{Node, NodeConfig, Secret};
use weft_nats::{NatsConfig, NatsServer};

/// Safety bound of every wait (against hangs, not a speed assertion).
pub const LIMIT: Duration = Duration::from_secs(20);

/// Nodes and their NATS servers.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub servers: Vec<NatsServer>,
}

fn node_config(name: &str, seeds: &[SocketAddr]) -> NodeConfig {
    let mut c = NodeConfig::new(name, Secret::new(*b"nats-test-secret-0123456789"));
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.join = seeds.to_vec();
    c.cluster = "nats-test".into();
    c
}

/// Installs a log subscriber (RUST_LOG, default `warn`).
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Polls `cond` every 10 ms until it holds; panics with `what` after
/// [`LIMIT`].
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Cluster {
    /// Starts `n` linked nodes, then a NATS server on each, configured by
    /// `tweak`.
    pub async fn start(n: usize, tweak: impl Fn(&mut NatsConfig)) -> Cluster {
        Self::start_tuned(n, |_| {}, tweak).await
    }

    /// Like [`Self::start`], with the node configurations adjusted by
    /// `tune_node`.
    pub async fn start_tuned(
        n: usize,
        tune_node: impl Fn(&mut NodeConfig),
        tweak: impl Fn(&mut NatsConfig),
    ) -> Cluster {
        logs();
        let mut nodes: Vec<Node> = Vec::new();
        for i in 0..n {
            let seeds: Vec<SocketAddr> = nodes.first().map(|s| vec![s.addr()]).unwrap_or_default();
            let mut config = node_config(&format!("n{}", i + 1), &seeds);
            tune_node(&mut config);
            let node = Node::start(config).await.expect("node starts");
            nodes.push(node);
        }
        let names: Vec<String> = nodes.iter().map(|n| n.id().name.clone()).collect();
        wait_for("every link up", || {
            nodes.iter().all(|a| {
                names
                    .iter()
                    .filter(|b| **b != a.id().name)
                    .all(|b| a.membership().is_linked(b))
            })
        })
        .await;
        let mut servers = Vec::new();
        for node in &nodes {
            let mut cfg = NatsConfig::new("127.0.0.1:0".parse().unwrap());
            tweak(&mut cfg);
            servers.push(NatsServer::start(node.clone(), cfg).await.expect("nats starts"));
        }
        Cluster { nodes, servers }
    }

    /// `nats://` URL of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://{}", self.servers[i].local_addr())
    }

    /// Connects an async-nats client to node `i`.
    pub async fn client(&self, i: usize) -> async_nats::Client {
        async_nats::connect(self.url(i)).await.expect("client connects")
    }

    /// Waits until every node knows some interest in `subject`.
    pub async fn interest_everywhere(&self, subject: &str) {
        wait_for(&format!("interest in {subject} everywhere"), || {
            self.nodes.iter().all(|n| n.pubsub().has_interest(subject))
        })
        .await;
    }

    /// Waits until node `i` knows at least `count` patterns of each named
    /// node (every node has one of its own: its request inbox).
    pub async fn knows_patterns(&self, i: usize, want: &[(&str, usize)]) {
        wait_for("remote interest known", || {
            let known = self.nodes[i].pubsub().remote_interest();
            want.iter().all(|(n, c)| known.get(*n).is_some_and(|k| k >= c))
        })
        .await;
    }

    /// Stops every server and node.
    pub async fn stop(self) {
        for s in self.servers {
            s.shutdown(Duration::from_millis(500)).await;
        }
        for n in &self.nodes {
            n.shutdown(Duration::from_millis(200)).await;
        }
    }
}
