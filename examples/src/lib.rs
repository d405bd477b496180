//! What every example needs: a cluster of nodes in one process on
//! loopback, waits that give up, and a bound on the whole run.
//!
//! The examples are the binaries in `src/bin/`; run one with
//! `cargo run -p weft-examples --bin pubsub_cluster`. Each starts its
//! nodes on `127.0.0.1` with ephemeral ports, prints what happens, and
//! exits 0 on its own (non-zero if something it shows did not happen).

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, bail};
use weft::{MemberState, Node, NodeConfig, Secret};

/// How long any single wait may take before the example gives up. Loopback
/// clusters converge in well under a second; the margin is for a loaded
/// machine, not a target.
pub const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// How long a whole example may run.
pub const RUN_LIMIT: Duration = Duration::from_secs(120);

/// Runs an example's body with a bound on its duration, so that a bug
/// makes it fail instead of hanging.
pub async fn bounded(body: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::time::timeout(RUN_LIMIT, body)
        .await
        .with_context(|| format!("the example did not finish within {RUN_LIMIT:?}"))?
}

/// Polls `cond` every 20 ms until it holds, or fails after [`WAIT_LIMIT`].
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            bail!("gave up waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Starts one node per name in the cluster `cluster`, all on 127.0.0.1
/// with an ephemeral port, the first one being every other node's seed.
/// `tune` adjusts each configuration. Returns once every node sees every
/// other one up and linked.
pub async fn cluster(
    cluster: &str,
    names: &[&str],
    tune: impl Fn(&mut NodeConfig),
) -> anyhow::Result<Vec<Node>> {
    let mut nodes: Vec<Node> = Vec::new();
    for name in names {
        // A real deployment reads the secret from a file shared by every
        // node (`weft node --secret-file`); a constant will do on loopback.
        let mut config = NodeConfig::new(*name, Secret::new(*b"example-secret-never-in-production"));
        config.cluster = cluster.to_string();
        config.listen = "127.0.0.1:0".parse()?;
        config.join = nodes.first().map(|seed| vec![seed.addr()]).unwrap_or_default();
        tune(&mut config);
        nodes.push(
            Node::start(config)
                .await
                .with_context(|| format!("starting {name}"))?,
        );
    }
    for node in &nodes {
        wait_until("every member up and linked", || {
            names.iter().all(|peer| {
                *peer == node.id().name
                    || (node.membership().is_linked(peer)
                        && node
                            .membership()
                            .member(peer)
                            .is_some_and(|m| m.state == MemberState::Up))
            })
        })
        .await?;
    }
    Ok(nodes)
}

/// Stops nodes gracefully: each tells the others it leaves, so nobody
/// waits for failure detection.
pub async fn shutdown(nodes: impl IntoIterator<Item = Node>) {
    for node in nodes {
        node.shutdown(Duration::from_millis(200)).await;
    }
}
