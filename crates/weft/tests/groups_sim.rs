//! Deterministic simulations of process groups over the registry:
//! backfill, purge on crash, no resurrection after restart, convergence
//! after a partition heals. `WEFT_SIM_SEED=N` replays one seed.

mod common {
    pub mod sim;
    pub mod sim_net;
}

use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use common::sim::{Nodes, Setup, add_node_with, incarnation, run_for, run_until, sim, state};
use weft::{MemberState, Message, Node, Pid};

const LIMIT: Duration = Duration::from_secs(60);

fn seeds() -> Vec<u64> {
    match std::env::var("WEFT_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("WEFT_SIM_SEED is a number")],
        Err(_) => (1..=5).collect(),
    }
}

/// Deliveries recorded by simulated members: (group, node, payload).
static DELIVERED: Mutex<Vec<(String, String, String)>> = Mutex::new(Vec::new());

fn delivered(group: &str, node: &str, payload: &str) -> bool {
    DELIVERED
        .lock()
        .expect("lock")
        .iter()
        .any(|(g, n, p)| g == group && n == node && p == payload)
}

/// Each run joins `count` mailboxes to `group` (only on runs listed in
/// `join_on_runs`) and records what they receive.
fn members(group: &'static str, count: usize, join_on_runs: &'static [u64]) -> Setup {
    Rc::new(move |node: Node, run: u64| {
        Box::pin(async move {
            let mut boxes = Vec::new();
            if join_on_runs.contains(&run) {
                for _ in 0..count {
                    let m = node.mailboxes().spawn();
                    node.groups().join(group, m.pid()).expect("join");
                    boxes.push(m);
                }
            }
            let name = node.id().name.clone();
            let mut tasks = Vec::new();
            for m in boxes {
                let name = name.clone();
                tasks.push(tokio::task::spawn_local(async move {
                    while let Some(env) = m.recv().await {
                        let text = String::from_utf8_lossy(&env.message.payload).to_string();
                        DELIVERED
                            .lock()
                            .expect("lock")
                            .push((group.to_string(), name.clone(), text));
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

fn view(nodes: &Nodes, observer: &str, group: &str) -> Option<BTreeSet<Pid>> {
    Some(nodes.get(observer)?.groups().members(group).into_iter().collect())
}

fn local_union(nodes: &Nodes, names: &[&str], group: &str) -> BTreeSet<Pid> {
    names
        .iter()
        .filter_map(|n| nodes.get(n))
        .flat_map(|n| n.groups().local_members(group))
        .collect()
}

fn local_set() -> tokio::task::LocalSet {
    tokio::task::LocalSet::new()
}

#[test]
fn late_joiner_is_backfilled_and_publish_reaches_every_node() {
    for seed in seeds() {
        let group = "late";
        let mut s = sim(seed, Duration::from_secs(120));
        let nodes = Nodes::default();
        add_node_with(
            &mut s,
            &nodes,
            "n1",
            &[],
            seed,
            Duration::ZERO,
            members(group, 2, &[1]),
        );
        add_node_with(
            &mut s,
            &nodes,
            "n2",
            &["n1"],
            seed,
            Duration::ZERO,
            members(group, 2, &[1]),
        );
        add_node_with(
            &mut s,
            &nodes,
            "n3",
            &["n1"],
            seed,
            Duration::from_secs(8),
            members(group, 1, &[1]),
        );
        run_until(&mut s, seed, "n1/n2 groups", LIMIT, || {
            view(&nodes, "n2", group).is_some_and(|v| v.len() == 4)
        });
        assert!(nodes.get("n3").is_none(), "n3 starts late");
        run_until(&mut s, seed, "n3 backfilled", LIMIT, || {
            ["n1", "n2", "n3"]
                .iter()
                .all(|o| view(&nodes, o, group).is_some_and(|v| v.len() == 5))
        });
        let n2 = nodes.get("n2").expect("n2");
        let payload = format!("hello-{seed}");
        s.client("publisher", {
            let payload = payload.clone();
            async move {
                let r = n2
                    .groups()
                    .publish(group, Message::new("p", Bytes::from(payload)))
                    .await?;
                assert_eq!(r.remote_nodes, 2);
                Ok(())
            }
        });
        run_until(&mut s, seed, "delivered on n1, n2, n3", LIMIT, || {
            ["n1", "n2", "n3"].iter().all(|n| delivered(group, n, &payload))
        });
    }
}

#[test]
fn crash_purges_members_and_survivors_still_deliver() {
    for seed in seeds() {
        let group = "crash";
        let mut s = sim(seed, Duration::from_secs(180));
        let nodes = Nodes::default();
        add_node_with(
            &mut s,
            &nodes,
            "n1",
            &[],
            seed,
            Duration::ZERO,
            members(group, 1, &[1, 2]),
        );
        add_node_with(
            &mut s,
            &nodes,
            "n2",
            &["n1"],
            seed,
            Duration::ZERO,
            members(group, 1, &[1, 2]),
        );
        // n3's members exist only in its first run.
        add_node_with(
            &mut s,
            &nodes,
            "n3",
            &["n1"],
            seed,
            Duration::ZERO,
            members(group, 3, &[1]),
        );
        run_until(&mut s, seed, "5 members everywhere", LIMIT, || {
            ["n1", "n2", "n3"]
                .iter()
                .all(|o| view(&nodes, o, group).is_some_and(|v| v.len() == 5))
        });
        s.crash("n3");
        run_until(&mut s, seed, "n3 purged on survivors", LIMIT, || {
            ["n1", "n2"].iter().all(|o| {
                view(&nodes, o, group).is_some_and(|v| v.len() == 2 && v.iter().all(|p| p.node != "n3"))
            })
        });
        assert_eq!(state(&nodes, "n1", "n3"), Some(MemberState::Down));
        let n1 = nodes.get("n1").expect("n1");
        let payload = format!("after-crash-{seed}");
        s.client("publisher", {
            let payload = payload.clone();
            async move {
                let r = n1
                    .groups()
                    .publish(group, Message::new("p", Bytes::from(payload)))
                    .await?;
                assert_eq!(r.remote_nodes, 1, "only n2 has remote members now");
                Ok(())
            }
        });
        run_until(&mut s, seed, "survivors delivered", LIMIT, || {
            delivered(group, "n1", &payload) && delivered(group, "n2", &payload)
        });

        // Restart: a new incarnation that joins nothing. Its old members
        // must not come back anywhere.
        s.bounce("n3");
        run_until(&mut s, seed, "n3 back with incarnation 2", LIMIT, || {
            ["n1", "n2"].iter().all(|o| {
                state(&nodes, o, "n3") == Some(MemberState::Up) && incarnation(&nodes, o, "n3") == Some(2)
            })
        });
        run_until(&mut s, seed, "restarted n3 linked", LIMIT, || {
            nodes.get("n1").is_some_and(|n| n.membership().is_linked("n3"))
        });
        run_for(&mut s, seed, Duration::from_secs(5));
        for o in ["n1", "n2", "n3"] {
            let v = view(&nodes, o, group).expect("running");
            assert_eq!(v.len(), 2, "seed {seed}: {o} sees {v:?}");
            assert!(
                v.iter().all(|p| p.node != "n3"),
                "seed {seed}: resurrected on {o}"
            );
        }
    }
}

#[test]
fn partition_heal_converges_to_the_union_of_live_entries() {
    for seed in seeds() {
        let group = "heal";
        let mut s = sim(seed, Duration::from_secs(180));
        let nodes = Nodes::default();
        let names = ["n1", "n2", "n3"];
        for (n, seeds_of) in [("n1", &[][..]), ("n2", &["n1"][..]), ("n3", &["n1"][..])] {
            let seeds_of: &'static [&'static str] = seeds_of;
            add_node_with(
                &mut s,
                &nodes,
                n,
                seeds_of,
                seed,
                Duration::ZERO,
                members(group, 2, &[1]),
            );
        }
        run_until(&mut s, seed, "6 members and all up everywhere", LIMIT, || {
            names.iter().all(|o| {
                view(&nodes, o, group).is_some_and(|v| v.len() == 6)
                    && names.iter().all(|n| state(&nodes, o, n) == Some(MemberState::Up))
            })
        });
        s.partition("n3", "n1");
        s.partition("n3", "n2");
        run_until(&mut s, seed, "split views", LIMIT, || {
            view(&nodes, "n1", group).is_some_and(|v| v.len() == 4)
                && view(&nodes, "n3", group).is_some_and(|v| v.len() == 2)
        });
        // Changes on both sides while split.
        let n1 = nodes.get("n1").expect("n1");
        let n3 = nodes.get("n3").expect("n3");
        let keep: Rc<Mutex<Vec<weft::Mailbox>>> = Rc::new(Mutex::new(Vec::new()));
        let n1_member = n1.groups().local_members(group)[0].clone();
        n1.groups().leave(group, &n1_member).expect("leave");
        let extra = n3.mailboxes().spawn();
        n3.groups().join(group, extra.pid()).expect("join");
        keep.lock().expect("lock").push(extra);
        run_for(&mut s, seed, Duration::from_secs(2));
        s.repair("n3", "n1");
        s.repair("n3", "n2");
        run_until(&mut s, seed, "converged to the union", LIMIT, || {
            let union = local_union(&nodes, &names, group);
            union.len() == 6
                && names
                    .iter()
                    .all(|o| view(&nodes, o, group).as_ref() == Some(&union))
        });
        drop(keep);
        let _ = local_set;
    }
}
