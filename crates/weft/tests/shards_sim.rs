//! Shard map consensus under a network partition (turmoil). The minority
//! cannot commit; the majority moves the minority's shards after
//! detection; after healing there is one map. `WEFT_SIM_SEED=N` replays a
//! seed (openraft's own timers are not seeded, so a replay may differ in
//! election timing, not in the properties checked).

mod common {
    pub mod sim;
    pub mod sim_net;
}

use std::rc::Rc;
use std::time::Duration;

use common::sim::{Nodes, Setup, add_node_tuned, run_for, run_until, sim, state};
use weft::{Node, NodeConfig};

const LIMIT: Duration = Duration::from_secs(90);

fn seeds() -> Vec<u64> {
    match std::env::var("WEFT_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("WEFT_SIM_SEED is a number")],
        Err(_) => (1..=3).collect(),
    }
}

fn tune(c: &mut NodeConfig) {
    c.shards.count = 12;
    c.shards.bootstrap_delay = Duration::from_millis(500);
}

fn idle() -> Setup {
    Rc::new(|node: Node, _| Box::pin(async move { node.stopped().await }))
}

fn map_of(nodes: &Nodes, n: &str) -> Option<weft::ShardMap> {
    nodes.get(n).map(|n| n.shard_map())
}

#[test]
fn a_minority_cannot_commit_and_heals_to_one_map() {
    for seed in seeds() {
        let mut s = sim(seed, Duration::from_secs(240));
        let nodes = Nodes::default();
        add_node_tuned(&mut s, &nodes, "n1", &[], seed, tune, idle());
        add_node_tuned(&mut s, &nodes, "n2", &["n1"], seed, tune, idle());
        add_node_tuned(&mut s, &nodes, "n3", &["n1"], seed, tune, idle());
        run_until(&mut s, seed, "balanced 4/4/4 everywhere", LIMIT, || {
            ["n1", "n2", "n3"].iter().all(|n| {
                map_of(&nodes, n)
                    .is_some_and(|m| m.counts().values().copied().collect::<Vec<_>>() == vec![4, 4, 4])
            })
        });
        let before = map_of(&nodes, "n1").expect("n1");
        run_until(&mut s, seed, "same map everywhere", LIMIT, || {
            ["n2", "n3"]
                .iter()
                .all(|n| map_of(&nodes, n).as_ref() == Some(&before))
        });

        // n3 is cut off: a minority of one.
        s.partition("n3", "n1");
        s.partition("n3", "n2");
        run_until(&mut s, seed, "majority moved n3's shards", LIMIT, || {
            ["n1", "n2"].iter().all(|n| {
                map_of(&nodes, n).is_some_and(|m| m.epoch > before.epoch && !m.counts().contains_key("n3"))
            })
        });
        let majority = map_of(&nodes, "n1").expect("n1");
        for s_id in before.moves_to(&majority) {
            assert_eq!(
                before.owner(s_id),
                Some("n3"),
                "seed {seed}: only n3's shards moved"
            );
        }
        // The minority never committed anything new.
        run_for(&mut s, seed, Duration::from_secs(3));
        let minority = map_of(&nodes, "n3").expect("n3");
        assert_eq!(minority, before, "seed {seed}: the minority's map did not change");
        // A proposal from the minority fails, is counted, and changes
        // no map anywhere.
        let n3 = nodes.get("n3").expect("n3");
        let outcome = std::rc::Rc::new(std::cell::Cell::new(None));
        let seen = outcome.clone();
        s.client("n3-proposer", async move {
            seen.set(Some(n3.rebalance_shards().await));
            Ok(())
        });
        run_until(&mut s, seed, "minority proposal answered", LIMIT, || {
            outcome.get().is_some()
        });
        assert_eq!(outcome.get(), Some(false), "seed {seed}: the minority committed");
        let failures: u64 = nodes
            .get("n3")
            .expect("n3")
            .stats()
            .shard_proposals_failed
            .values()
            .sum();
        assert!(failures >= 1, "seed {seed}: failed proposal not counted");
        assert_eq!(map_of(&nodes, "n3").expect("n3"), before, "seed {seed}");
        assert_eq!(map_of(&nodes, "n1").expect("n1"), majority, "seed {seed}");

        s.repair("n3", "n1");
        s.repair("n3", "n2");
        run_until(&mut s, seed, "one map after healing", LIMIT, || {
            let maps: Vec<_> = ["n1", "n2", "n3"]
                .iter()
                .filter_map(|n| map_of(&nodes, n))
                .collect();
            maps.len() == 3
                && maps.windows(2).all(|w| w[0] == w[1])
                && maps[0].counts().values().copied().collect::<Vec<_>>() == vec![4, 4, 4]
        });
    }
}

/// Two groups bootstrapped apart can never merge, so a partition before
/// the first bootstrap must not start one on either side: with 3 voters
/// wanted, neither the pair nor the single node may bootstrap. After
/// healing exactly one group forms; a node joining later with a name that
/// sorts first is added to that group instead of starting its own.
#[test]
fn a_partition_before_bootstrap_starts_no_second_group() {
    fn slow_bootstrap(c: &mut NodeConfig) {
        tune(c);
        c.shards.bootstrap_delay = Duration::from_secs(4);
    }
    for seed in seeds() {
        let mut s = sim(seed, Duration::from_secs(240));
        let nodes = Nodes::default();
        let names = ["n1", "n2", "n3"];
        add_node_tuned(&mut s, &nodes, "n1", &[], seed, slow_bootstrap, idle());
        add_node_tuned(&mut s, &nodes, "n2", &["n1"], seed, slow_bootstrap, idle());
        add_node_tuned(&mut s, &nodes, "n3", &["n1"], seed, slow_bootstrap, idle());
        run_until(&mut s, seed, "all up everywhere", LIMIT, || {
            names.iter().all(|o| {
                names
                    .iter()
                    .all(|n| state(&nodes, o, n) == Some(weft::MemberState::Up))
            })
        });
        assert!(
            names
                .iter()
                .all(|n| map_of(&nodes, n).is_some_and(|m| m.epoch == 0)),
            "seed {seed}: bootstrapped before the delay"
        );
        s.partition("n3", "n1");
        s.partition("n3", "n2");
        run_until(&mut s, seed, "n3 down on both sides", LIMIT, || {
            state(&nodes, "n1", "n3") == Some(weft::MemberState::Down)
                && state(&nodes, "n3", "n1") == Some(weft::MemberState::Down)
        });
        // Well past the bootstrap delay on both sides of the partition.
        run_for(&mut s, seed, Duration::from_secs(8));
        for n in names {
            let map = map_of(&nodes, n).expect("node");
            assert_eq!(map.epoch, 0, "seed {seed}: {n} committed a map while split");
            assert!(
                nodes.get(n).expect("node").shard_voters().is_empty(),
                "seed {seed}: {n} bootstrapped a group while split"
            );
        }
        s.repair("n3", "n1");
        s.repair("n3", "n2");
        run_until(&mut s, seed, "one 4/4/4 map after healing", LIMIT, || {
            let maps: Vec<_> = names.iter().filter_map(|n| map_of(&nodes, n)).collect();
            maps.len() == 3
                && maps.windows(2).all(|w| w[0] == w[1])
                && maps[0].counts().values().copied().collect::<Vec<_>>() == vec![4, 4, 4]
        });
        // A late node whose name sorts first joins the existing group.
        add_node_tuned(&mut s, &nodes, "n0", &["n1"], seed, tune, idle());
        run_until(&mut s, seed, "n0 takes its share", LIMIT, || {
            ["n0", "n1", "n2", "n3"].iter().all(|n| {
                map_of(&nodes, n)
                    .is_some_and(|m| m.counts().values().copied().collect::<Vec<_>>() == vec![3, 3, 3, 3])
            })
        });
        let voters = nodes.get("n0").expect("n0").shard_voters();
        assert_eq!(
            voters,
            vec!["n1", "n2", "n3"],
            "seed {seed}: one group, same voters"
        );
    }
}
