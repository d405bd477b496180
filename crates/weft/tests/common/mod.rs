//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use weft::{Node, NodeConfig, Secret};

/// The secret every test cluster uses.
pub const SECRET: &[u8] = b"test-secret-0123456789";

/// A loopback node configuration on an ephemeral port.
pub fn config(name: &str, seeds: &[SocketAddr]) -> NodeConfig {
    let mut c = NodeConfig::new(name, Secret::new(SECRET));
    c.listen = "127.0.0.1:0".parse().expect("addr");
    c.join = seeds.to_vec();
    c.cluster = "test".into();
    c
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after
/// `limit` (a safety bound against hangs, not a speed assertion).
pub async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `node` sees every name in `names` as up.
pub fn sees_up(node: &Node, names: &[&str]) -> bool {
    let members = node.membership().members();
    names.iter().all(|n| {
        members
            .iter()
            .any(|m| m.name == *n && m.state == weft::MemberState::Up)
    })
}

/// Installs a log subscriber for the test (RUST_LOG, default `warn`).
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Starts `n` loopback nodes named `n1`..`nN` (each joining through n1),
/// each configured by `tune` after [`config`], and waits until every node
/// sees every other up and linked (bounded by 30 s each).
pub async fn linked_cluster(n: usize, tune: impl Fn(&mut NodeConfig)) -> Vec<Node> {
    const LIMIT: Duration = Duration::from_secs(30);
    let start = |name: String, seeds: &[SocketAddr]| {
        let mut c = config(&name, seeds);
        tune(&mut c);
        Node::start(c)
    };
    let first = start("n1".into(), &[]).await.expect("n1 starts");
    let seed = [first.addr()];
    let mut nodes = vec![first];
    for i in 2..=n {
        nodes.push(start(format!("n{i}"), &seed).await.expect("node starts"));
    }
    let names: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    for node in &nodes {
        wait_for("all up", LIMIT, || sees_up(node, &names)).await;
        for b in &names {
            if *b != node.id().name {
                wait_for("linked", LIMIT, || node.membership().is_linked(b)).await;
            }
        }
    }
    nodes
}

/// Shuts every node down gracefully (200 ms drain each).
pub async fn stop(nodes: Vec<Node>) {
    for n in nodes {
        n.shutdown(Duration::from_millis(200)).await;
    }
}
