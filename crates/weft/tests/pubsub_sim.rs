//! Deterministic simulation of subject interest across crashes and
//! restarts. `WEFT_SIM_SEED=N` replays one seed.

mod common {
    pub mod sim;
    pub mod sim_net;
}

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use common::sim::{Nodes, Setup, add_node_with, incarnation, run_for, run_until, sim, state};
use weft::{MemberState, Node};

const LIMIT: Duration = Duration::from_secs(60);

fn seeds() -> Vec<u64> {
    match std::env::var("WEFT_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("WEFT_SIM_SEED is a number")],
        Err(_) => (1..=5).collect(),
    }
}

/// Subscribes to `old.>` on the first run and `new.>` on later runs.
fn subscriber() -> Setup {
    Rc::new(|node: Node, run: u64| {
        Box::pin(async move {
            let pattern = if run == 1 { "old.>" } else { "new.>" };
            let sub = node.pubsub().subscribe(pattern).expect("subscribe");
            node.stopped().await;
            drop(sub);
        })
    })
}

fn idle() -> Setup {
    Rc::new(|node: Node, _| Box::pin(async move { node.stopped().await }))
}

#[test]
fn crash_purges_interest_and_restart_brings_only_fresh_interest() {
    for seed in seeds() {
        let mut s = sim(seed, Duration::from_secs(180));
        let nodes = Nodes::default();
        add_node_with(&mut s, &nodes, "n1", &[], seed, Duration::ZERO, idle());
        add_node_with(&mut s, &nodes, "n2", &["n1"], seed, Duration::ZERO, idle());
        add_node_with(&mut s, &nodes, "n3", &["n1"], seed, Duration::ZERO, subscriber());
        run_until(&mut s, seed, "n3's interest known", LIMIT, || {
            ["n1", "n2"]
                .iter()
                .all(|n| nodes.get(n).is_some_and(|n| n.pubsub().has_interest("old.x")))
        });
        s.crash("n3");
        run_until(&mut s, seed, "interest purged", LIMIT, || {
            ["n1", "n2"].iter().all(|n| {
                nodes.get(n).is_some_and(|n| {
                    !n.pubsub().has_interest("old.x") && !n.pubsub().remote_interest().contains_key("n3")
                })
            })
        });
        assert_eq!(state(&nodes, "n1", "n3"), Some(MemberState::Down), "seed {seed}");
        // Publishing to the departed interest sends nothing anywhere.
        let n1 = nodes.get("n1").expect("n1");
        s.client("publisher", async move {
            n1.pubsub().publish("old.x", Bytes::from_static(b"gone")).await?;
            Ok(())
        });
        run_for(&mut s, seed, Duration::from_millis(500));
        let sent: u64 = nodes
            .get("n1")
            .expect("n1")
            .stats()
            .peers
            .values()
            .map(|p| p.publishes_sent)
            .sum();
        assert_eq!(sent, 0, "seed {seed}: nothing sent for purged interest");

        s.bounce("n3");
        run_until(&mut s, seed, "restarted n3 and fresh interest", LIMIT, || {
            ["n1", "n2"].iter().all(|n| {
                incarnation(&nodes, n, "n3") == Some(2)
                    && nodes.get(n).is_some_and(|n| n.pubsub().has_interest("new.x"))
            })
        });
        run_for(&mut s, seed, Duration::from_secs(3));
        for n in ["n1", "n2"] {
            let node = nodes.get(n).expect("running");
            assert!(
                !node.pubsub().has_interest("old.x"),
                "seed {seed}: {n} resurrected old interest"
            );
        }
    }
}
