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
    let members = node.members();
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
