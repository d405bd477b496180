//! Deterministic cluster simulations (turmoil): discovery, partitions,
//! crashes and restarts. Each scenario runs over several seeds; a failure
//! names its seed, and `WEFT_SIM_SEED=N` replays one seed.

mod common {
    pub mod sim;
    pub mod sim_net;
}

use std::time::Duration;

use common::sim::{Nodes, add_node, incarnation, run_for, run_until, sim, state};
use weft::MemberState::{Down, Up};
use weft::NodeConfig;

const NAMES: [&str; 3] = ["n1", "n2", "n3"];
const LIMIT: Duration = Duration::from_secs(60);

fn seeds() -> Vec<u64> {
    match std::env::var("WEFT_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("WEFT_SIM_SEED is a number")],
        Err(_) => (1..=5).collect(),
    }
}

fn defaults(_: &mut NodeConfig) {}

/// The detection bound the configuration promises: a member is probed at
/// least once every `probe_period × (members − 1)`, a failed probe turns
/// into suspicion after `probe_period`, and suspicion into down after
/// `suspect_to_down_after`.
fn detection_bound(c: &NodeConfig, members: u32) -> Duration {
    let m = &c.membership;
    m.probe_period * members + m.probe_period + m.suspect_to_down_after
}

fn all_up(nodes: &Nodes) -> bool {
    NAMES
        .iter()
        .all(|o| NAMES.iter().all(|n| state(nodes, o, n) == Some(Up)))
}

/// 3 nodes; n2 and n3 know only n1 as seed.
fn cluster(seed: u64, duration: Duration) -> (turmoil::Sim<'static>, Nodes) {
    let mut s = sim(seed, duration);
    let nodes = Nodes::default();
    add_node(&mut s, &nodes, "n1", &[], seed, defaults);
    add_node(&mut s, &nodes, "n2", &["n1"], seed, defaults);
    add_node(&mut s, &nodes, "n3", &["n1"], seed, defaults);
    (s, nodes)
}

#[test]
fn three_nodes_discover_each_other_from_one_seed() {
    for seed in seeds() {
        let (mut s, nodes) = cluster(seed, Duration::from_secs(120));
        let took = run_until(&mut s, seed, "all members up everywhere", LIMIT, || {
            all_up(&nodes)
        });
        eprintln!("seed {seed}: all up after {took:?}");
        // n2 and n3 never had each other's address: they learned it.
        run_until(&mut s, seed, "n2-n3 link", LIMIT, || {
            nodes.get("n2").is_some_and(|n| n.membership().is_linked("n3"))
        });
        // Stable: nobody is suspected or dropped in a quiet cluster.
        run_for(&mut s, seed, Duration::from_secs(10));
        assert!(
            all_up(&nodes),
            "seed {seed}: a member left the up state while quiet"
        );
        for n in NAMES {
            let node = nodes.get(n).expect("running");
            let connected = node.membership().links().iter().filter(|l| l.connected).count();
            assert_eq!(
                connected, 2,
                "seed {seed}: {n} should hold exactly one link per peer"
            );
        }
    }
}

#[test]
fn partition_marks_down_within_detection_time_and_heals() {
    for seed in seeds() {
        let (mut s, nodes) = cluster(seed, Duration::from_secs(180));
        run_until(&mut s, seed, "all up", LIMIT, || all_up(&nodes));
        let bound = detection_bound(&nodes.get("n1").expect("n1").config().clone(), 3);

        s.partition("n3", "n1");
        s.partition("n3", "n2");
        let took = run_until(
            &mut s,
            seed,
            "n1, n2 see n3 down; n3 sees both down",
            LIMIT,
            || {
                state(&nodes, "n1", "n3") == Some(Down)
                    && state(&nodes, "n2", "n3") == Some(Down)
                    && state(&nodes, "n3", "n1") == Some(Down)
                    && state(&nodes, "n3", "n2") == Some(Down)
            },
        );
        eprintln!("seed {seed}: partition detected after {took:?} (bound {bound:?})");
        assert!(
            took <= bound,
            "seed {seed}: detection took {took:?}, configured bound {bound:?}"
        );
        // The majority side is unaffected.
        assert_eq!(state(&nodes, "n1", "n2"), Some(Up), "seed {seed}");

        s.repair("n3", "n1");
        s.repair("n3", "n2");
        run_until(&mut s, seed, "all up after heal", LIMIT, || all_up(&nodes));
        run_until(&mut s, seed, "links back after heal", LIMIT, || {
            NAMES.iter().all(|o| {
                let node = nodes.get(o).expect("running");
                NAMES
                    .iter()
                    .filter(|n| *n != o)
                    .all(|n| node.membership().is_linked(n))
            })
        });
        // Healing keeps incarnations: a partitioned node is the same run.
        assert_eq!(incarnation(&nodes, "n1", "n3"), Some(1), "seed {seed}");
    }
}

#[test]
fn crash_and_restart_is_a_new_incarnation_with_no_old_state() {
    for seed in seeds() {
        let (mut s, nodes) = cluster(seed, Duration::from_secs(180));
        run_until(&mut s, seed, "all up", LIMIT, || all_up(&nodes));
        assert_eq!(incarnation(&nodes, "n1", "n3"), Some(1));

        s.crash("n3");
        run_until(&mut s, seed, "crash detected", LIMIT, || {
            state(&nodes, "n1", "n3") == Some(Down) && state(&nodes, "n2", "n3") == Some(Down)
        });
        // The survivors dropped the link to the old run.
        for o in ["n1", "n2"] {
            let node = nodes.get(o).expect("running");
            assert!(
                !node.membership().is_linked("n3"),
                "seed {seed}: {o} still linked to a crashed node"
            );
        }

        s.bounce("n3");
        run_until(&mut s, seed, "restarted n3 up with incarnation 2", LIMIT, || {
            ["n1", "n2"]
                .iter()
                .all(|o| state(&nodes, o, "n3") == Some(Up) && incarnation(&nodes, o, "n3") == Some(2))
        });
        run_until(&mut s, seed, "restarted n3 sees both", LIMIT, || {
            state(&nodes, "n3", "n1") == Some(Up) && state(&nodes, "n3", "n2") == Some(Up)
        });
        run_until(&mut s, seed, "links to the new run", LIMIT, || {
            ["n1", "n2"]
                .iter()
                .all(|o| nodes.get(o).is_some_and(|n| n.membership().is_linked("n3")))
        });
        // No trace of the old run: every link and member entry names run 2.
        for o in ["n1", "n2"] {
            let node = nodes.get(o).expect("running");
            let link = node
                .membership()
                .links()
                .into_iter()
                .find(|l| l.peer == "n3")
                .expect("link");
            assert_eq!(link.incarnation, Some(2), "seed {seed}: {o}");
            let count = node
                .membership()
                .members()
                .iter()
                .filter(|m| m.name == "n3")
                .count();
            assert_eq!(count, 1, "seed {seed}: {o} lists n3 once");
        }
    }
}

#[test]
fn simultaneous_dials_leave_exactly_one_agreed_connection() {
    // Two nodes that name each other as seeds see each other up at almost
    // the same moment and both dial. The tie-break must leave one
    // connection that both sides agree on (same dialer), whatever the
    // interleaving; across seeds the duplicate path must actually run.
    let mut duplicates_resolved = 0;
    for seed in seeds() {
        let mut s = sim(seed, Duration::from_secs(60));
        let nodes = Nodes::default();
        add_node(&mut s, &nodes, "a", &["b"], seed, defaults);
        add_node(&mut s, &nodes, "b", &["a"], seed, defaults);
        run_until(&mut s, seed, "a-b linked both ways", LIMIT, || {
            nodes.get("a").is_some_and(|n| n.membership().is_linked("b"))
                && nodes.get("b").is_some_and(|n| n.membership().is_linked("a"))
        });
        run_for(&mut s, seed, Duration::from_secs(3));
        let a = nodes.get("a").expect("a");
        let b = nodes.get("b").expect("b");
        let la = a
            .membership()
            .links()
            .into_iter()
            .find(|l| l.peer == "b")
            .expect("a's link");
        let lb = b
            .membership()
            .links()
            .into_iter()
            .find(|l| l.peer == "a")
            .expect("b's link");
        assert!(la.connected && lb.connected, "seed {seed}");
        assert_ne!(
            la.dialed_by_us, lb.dialed_by_us,
            "seed {seed}: both sides must hold the same connection"
        );
        for n in [&a, &b] {
            let st = n.stats();
            duplicates_resolved += st.handshake_failures.get("duplicate").copied().unwrap_or(0);
            assert_eq!(st.links_up - st.links_down, 1, "seed {seed}: one live link");
        }
        // Data flows on the surviving connection, both ways.
        let rx = b.channels().open(1, 1 << 16).expect("channel");
        a.channels()
            .try_send("b", 1, bytes::Bytes::from_static(b"ping"))
            .expect("queued");
        run_until(&mut s, seed, "delivery", LIMIT, || {
            let mut got = Vec::new();
            rx.drain_into(&mut got);
            !got.is_empty()
        });
    }
    if std::env::var("WEFT_SIM_SEED").is_err() {
        assert!(
            duplicates_resolved > 0,
            "no seed exercised the duplicate-connection tie-break"
        );
    }
}
