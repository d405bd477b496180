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
    nodes.get(n).map(|n| n.shards().map())
}

/// n1..n3 with `tune`, no handler, n2 and n3 joining through n1.
fn idle_trio(s: &mut turmoil::Sim<'_>, nodes: &Nodes, seed: u64) {
    add_node_tuned(s, nodes, "n1", &[], seed, tune, idle());
    add_node_tuned(s, nodes, "n2", &["n1"], seed, tune, idle());
    add_node_tuned(s, nodes, "n3", &["n1"], seed, tune, idle());
}

#[test]
fn a_minority_cannot_commit_and_heals_to_one_map() {
    for seed in seeds() {
        let mut s = sim(seed, Duration::from_secs(240));
        let nodes = Nodes::default();
        idle_trio(&mut s, &nodes, seed);
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
            seen.set(Some(n3.shards().rebalance().await));
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

/// Accepts every event (counts nothing): fencing, not handling, is under
/// test.
struct Sink;

impl weft::ShardHandler for Sink {
    fn on_event(&self, _shard: u32, _key: &[u8], _event: bytes::Bytes) {}
}

/// Routes asked by the test, run on the node's own host (each turmoil
/// host has its own clock: a route must run where its node runs).
type Asks = Rc<std::cell::RefCell<Vec<(String, Rc<std::cell::RefCell<Option<RouteResult>>>)>>>;
type RouteResult = Result<weft::RouteAck, weft::RouteError>;

fn sink(asks: Asks) -> Setup {
    Rc::new(move |node: Node, _| {
        let asks = asks.clone();
        Box::pin(async move {
            node.shards().set_handler(std::sync::Arc::new(Sink));
            // Bounded by the simulation's duration.
            let work = async {
                loop {
                    let next = asks.borrow_mut().pop();
                    match next {
                        Some((key, out)) => {
                            let r = node
                                .shards()
                                .route(key.as_bytes(), bytes::Bytes::from_static(b"x"))
                                .await;
                            *out.borrow_mut() = Some(r);
                        }
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            };
            tokio::select! {
                _ = node.stopped() => {}
                _ = work => {}
            }
        })
    })
}

/// Asks `asks`' node to route `key`; the answer appears in the cell.
fn ask(asks: &Asks, key: &str) -> Rc<std::cell::RefCell<Option<RouteResult>>> {
    let out = Rc::new(std::cell::RefCell::new(None));
    asks.borrow_mut().push((key.to_string(), out.clone()));
    out
}

fn tune_short_routes(c: &mut NodeConfig) {
    tune(c);
    c.shards.route_timeout = Duration::from_secs(4);
}

/// A node cut off from the leader's majority stops accepting events for
/// the shards its (stale) map still gives it once its lease runs out, and
/// tells senders so: a route from its own side times out naming
/// `RouteFailure::Fenced`, and the refusals are counted.
#[test]
fn a_cut_off_owner_is_fenced_and_says_so() {
    for seed in seeds() {
        let mut s = sim(seed, Duration::from_secs(240));
        let nodes = Nodes::default();
        let asks: Asks = Rc::default();
        for (name, seeds) in [("n1", &[][..]), ("n2", &["n1"][..]), ("n3", &["n1"][..])] {
            let mine = if name == "n3" { asks.clone() } else { Rc::default() };
            add_node_tuned(&mut s, &nodes, name, seeds, seed, tune_short_routes, sink(mine));
        }
        run_until(&mut s, seed, "balanced 4/4/4 everywhere", LIMIT, || {
            ["n1", "n2", "n3"].iter().all(|n| {
                map_of(&nodes, n)
                    .is_some_and(|m| m.counts().values().copied().collect::<Vec<_>>() == vec![4, 4, 4])
            })
        });
        // Settle: the handoffs of the first maps are done, leases held.
        run_for(&mut s, seed, Duration::from_secs(3));
        let map = map_of(&nodes, "n3").expect("n3");
        let shard = (0..map.shard_count())
            .find(|sh| map.owner(*sh) == Some("n3"))
            .expect("n3 owns a shard");
        let key = (0u64..)
            .map(|i| format!("k{i}"))
            .find(|k| weft::weft_proto::shard::shard_of(k.as_bytes(), map.shard_count()) == shard)
            .expect("a key of the shard");
        let n3 = nodes.get("n3").expect("n3");
        // Before the cut the route is accepted by n3 itself.
        let before = ask(&asks, &key);
        run_until(&mut s, seed, "route before the cut answered", LIMIT, || {
            before.borrow().is_some()
        });
        let ack = before
            .borrow_mut()
            .take()
            .expect("answered")
            .expect("accepted before the cut");
        assert_eq!(ack.node, "n3", "seed {seed}");

        s.partition("n3", "n1");
        s.partition("n3", "n2");
        // Longer than the lease: n3 cannot renew.
        run_for(&mut s, seed, Duration::from_secs(2));
        let after = ask(&asks, &key);
        run_until(&mut s, seed, "route after the cut answered", LIMIT, || {
            after.borrow().is_some()
        });
        match after.borrow_mut().take().expect("answered") {
            Err(weft::RouteError::Timeout {
                last: weft::RouteFailure::Fenced { node, shard: sh, .. },
                ..
            }) => {
                assert_eq!((node.as_str(), sh), ("n3", shard), "seed {seed}");
            }
            other => panic!("seed {seed}: a cut-off owner must refuse as fenced, got {other:?}"),
        }
        assert!(
            n3.stats().route_fenced > 0,
            "seed {seed}: fenced refusals are counted"
        );
        s.repair("n3", "n1");
        s.repair("n3", "n2");
    }
}

/// Pre-vote: a follower cut off for longer than an election timeout
/// cannot win an election, so it must not raise its term and depose the
/// healthy leader when it comes back. The leader is checked at every
/// simulation step during the partition and for 5 s after it heals.
#[test]
fn a_node_back_from_a_partition_does_not_depose_the_leader() {
    for seed in seeds() {
        let mut s = sim(seed, Duration::from_secs(240));
        let nodes = Nodes::default();
        idle_trio(&mut s, &nodes, seed);
        run_until(&mut s, seed, "one map and one leader everywhere", LIMIT, || {
            let leaders: Vec<_> = ["n1", "n2", "n3"]
                .iter()
                .map(|n| nodes.get(n).and_then(|n| n.shards().leader()))
                .collect();
            leaders[0].is_some()
                && leaders.windows(2).all(|w| w[0] == w[1])
                && map_of(&nodes, "n1").is_some_and(|m| m.epoch > 0)
        });
        // Let the group settle (voter set, first rebalances).
        run_for(&mut s, seed, Duration::from_secs(3));
        let leader = nodes.get("n1").and_then(|n| n.shards().leader()).expect("leader");
        let follower = ["n1", "n2", "n3"]
            .into_iter()
            .find(|n| *n != leader)
            .expect("a follower");
        let others: Vec<&str> = ["n1", "n2", "n3"]
            .into_iter()
            .filter(|n| *n != follower)
            .collect();
        let leads = |nodes: &Nodes| {
            nodes
                .get(&leader)
                .and_then(|n| n.shards().leader())
                .is_some_and(|l| l == leader)
        };
        for o in &others {
            s.partition(follower, *o);
        }
        let cut = Duration::from_secs(10);
        let end = s.elapsed() + cut;
        while s.elapsed() < end {
            s.step().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert!(
                leads(&nodes),
                "seed {seed}: {leader} lost the lead while {follower} was cut off"
            );
        }
        for o in &others {
            s.repair(follower, *o);
        }
        let end = s.elapsed() + Duration::from_secs(5);
        while s.elapsed() < end {
            s.step().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert!(
                leads(&nodes),
                "seed {seed}: {follower} came back and deposed {leader}"
            );
        }
        let back = nodes
            .get(follower)
            .and_then(|n| n.shards().leader())
            .expect("the follower knows a leader");
        assert_eq!(
            back, leader,
            "seed {seed}: the returning follower follows {leader}"
        );
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
                nodes.get(n).expect("node").shards().voters().is_empty(),
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
        let voters = nodes.get("n0").expect("n0").shards().voters();
        assert_eq!(
            voters,
            vec!["n1", "n2", "n3"],
            "seed {seed}: one group, same voters"
        );
    }
}

/// What every node's shard handler saw, shared with the test: the shards
/// each running node holds (between `shard_acquired` and
/// `shard_released`), every acquisition with its run, and bracket errors.
#[derive(Default)]
struct Book {
    held: std::sync::Mutex<std::collections::BTreeMap<String, std::collections::BTreeMap<u32, u64>>>,
    /// (node, run, shard, epoch) of every acquisition.
    acquired: std::sync::Mutex<Vec<(String, u64, u32, u64)>>,
    errors: std::sync::Mutex<Vec<String>>,
}

struct Recorder {
    name: &'static str,
    run: u64,
    book: std::sync::Arc<Book>,
}

impl weft::ShardHandler for Recorder {
    fn shard_acquired(&self, shard: u32, epoch: u64) {
        let mut held = self.book.held.lock().expect("lock");
        if held
            .entry(self.name.to_string())
            .or_default()
            .insert(shard, epoch)
            .is_some()
        {
            self.book
                .errors
                .lock()
                .expect("lock")
                .push(format!("{} acquired shard {shard} twice", self.name));
        }
        self.book
            .acquired
            .lock()
            .expect("lock")
            .push((self.name.to_string(), self.run, shard, epoch));
    }

    fn shard_released(&self, shard: u32, _epoch: u64) {
        let mut held = self.book.held.lock().expect("lock");
        if held
            .entry(self.name.to_string())
            .or_default()
            .remove(&shard)
            .is_none()
        {
            self.book
                .errors
                .lock()
                .expect("lock")
                .push(format!("{} released shard {shard} it did not hold", self.name));
        }
    }

    fn on_event(&self, _shard: u32, _key: &[u8], _event: bytes::Bytes) {}
}

/// The data directory root of the durable simulation (one test uses it;
/// `tune` is a plain `fn`, so it reads it from here).
static DURABLE_ROOT: std::sync::Mutex<Option<std::path::PathBuf>> = std::sync::Mutex::new(None);

fn tune_durable(c: &mut NodeConfig) {
    tune(c);
    let root = DURABLE_ROOT.lock().expect("lock").clone().expect("root set");
    c.data_dir = Some(root.join(&c.name));
}

/// A setup that registers a recording handler for each run of `name`.
fn recording(name: &'static str, book: &std::sync::Arc<Book>) -> Setup {
    let book = book.clone();
    Rc::new(move |node: Node, run| {
        // A new run holds nothing until its handler hears otherwise.
        book.held
            .lock()
            .expect("lock")
            .insert(name.to_string(), Default::default());
        node.shards().set_handler(std::sync::Arc::new(Recorder {
            name,
            run,
            book: book.clone(),
        }));
        Box::pin(async move { node.stopped().await })
    })
}

/// Removes the durable root on drop (also when a seed fails).
struct RootGuard(std::path::PathBuf);

impl Drop for RootGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// At most one node holds each shard at any instant (checked after every
/// simulation step); panics naming the seed.
fn no_overlap(book: &Book, seed: u64) {
    let held = book.held.lock().expect("lock");
    let mut holders: std::collections::BTreeMap<u32, Vec<&String>> = Default::default();
    for (node, shards) in held.iter() {
        for s in shards.keys() {
            holders.entry(*s).or_default().push(node);
        }
    }
    for (s, nodes) in holders {
        assert!(
            nodes.len() <= 1,
            "seed {seed}: shard {s} held by {nodes:?} at once"
        );
    }
    let errors = book.errors.lock().expect("lock");
    assert!(errors.is_empty(), "seed {seed}: {errors:?}");
}

/// The invariant: every running node has the same committed map, it
/// gives `owners` nodes shards, and each of them holds exactly the
/// shards the map gives it.
fn all_acquired(nodes: &Nodes, book: &Book, running: &[&str], owners: usize) -> bool {
    let maps: Vec<_> = running.iter().filter_map(|n| map_of(nodes, n)).collect();
    if maps.len() != running.len() || maps.windows(2).any(|w| w[0] != w[1]) {
        return false;
    }
    let map = &maps[0];
    if map.epoch == 0 || map.counts().len() != owners {
        return false;
    }
    let held = book.held.lock().expect("lock");
    running.iter().all(|n| {
        let want: Vec<u32> = (0..map.shard_count())
            .filter(|s| map.owner(*s) == Some(n))
            .collect();
        let have: Vec<u32> = held
            .get(*n)
            .map(|h| h.keys().copied().collect())
            .unwrap_or_default();
        want == have
    })
}

/// Restarts owners on their data directories while their shards move
/// away and come back (and, in the quick round, possibly without moving):
/// after every round each shard the committed map gives a running node is
/// held by it within a bounded (simulated) time, no shard is ever held by
/// two nodes at once, and a restarted node never takes a shard at an
/// epoch older than the map committed when it restarted (log replay of a
/// stale map takes nothing).
#[test]
fn restarted_owners_take_their_shards_back() {
    const ALL: [&str; 3] = ["n1", "n2", "n3"];
    for seed in seeds() {
        let root = std::env::temp_dir().join(format!("weft-sim-shards-{}-{seed}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let _guard = RootGuard(root.clone());
        *DURABLE_ROOT.lock().expect("lock") = Some(root);
        let book = std::sync::Arc::new(Book::default());
        let mut s = sim(seed, Duration::from_secs(600));
        let nodes = Nodes::default();
        add_node_tuned(
            &mut s,
            &nodes,
            "n1",
            &[],
            seed,
            tune_durable,
            recording("n1", &book),
        );
        add_node_tuned(
            &mut s,
            &nodes,
            "n2",
            &["n1"],
            seed,
            tune_durable,
            recording("n2", &book),
        );
        add_node_tuned(
            &mut s,
            &nodes,
            "n3",
            &["n1"],
            seed,
            tune_durable,
            recording("n3", &book),
        );
        run_until(&mut s, seed, "every shard acquired by its owner", LIMIT, || {
            no_overlap(&book, seed);
            all_acquired(&nodes, &book, &ALL, 3)
        });

        // (victim, wait for its shards to move away before the restart)
        let rounds = [("n3", true), ("n3", false), ("n1", true), ("n2", false)];
        for (round, (victim, moved)) in rounds.into_iter().enumerate() {
            let others: Vec<&str> = ALL.iter().copied().filter(|n| *n != victim).collect();
            let before = map_of(&nodes, others[0]).expect("map");
            s.crash(victim);
            // A crashed process accepts nothing.
            book.held
                .lock()
                .expect("lock")
                .insert(victim.to_string(), Default::default());
            if moved {
                run_until(
                    &mut s,
                    seed,
                    &format!("round {round}: {victim}'s shards moved away"),
                    LIMIT,
                    || {
                        no_overlap(&book, seed);
                        all_acquired(&nodes, &book, &others, 2)
                            && map_of(&nodes, others[0]).is_some_and(|m| m.epoch > before.epoch)
                    },
                );
            } else {
                run_for(&mut s, seed, Duration::from_millis(300));
                no_overlap(&book, seed);
            }
            let at_restart = others
                .iter()
                .filter_map(|n| map_of(&nodes, n))
                .map(|m| m.epoch)
                .max()
                .expect("epoch");
            let mark = book.acquired.lock().expect("lock").len();
            s.bounce(victim);
            let took = run_until(
                &mut s,
                seed,
                &format!("round {round}: {victim} restarted and every shard is acquired by its owner"),
                LIMIT,
                || {
                    no_overlap(&book, seed);
                    all_acquired(&nodes, &book, &ALL, 3)
                },
            );
            let acquired = book.acquired.lock().expect("lock");
            let stale: Vec<_> = acquired[mark..]
                .iter()
                .filter(|(n, _, _, e)| *n == victim && *e < at_restart)
                .collect();
            assert!(
                stale.is_empty(),
                "seed {seed} round {round}: {victim} took shards at an epoch older than {at_restart} \
                 (committed when it restarted): {stale:?}"
            );
            let map = map_of(&nodes, victim).expect("map");
            eprintln!(
                "seed {seed} round {round}: {victim} restarted (moved away first: {moved}), epoch {} -> {}, \
                 all acquired after {took:?} simulated",
                before.epoch, map.epoch
            );
        }

        // Last round: n3 restarts after its shards moved away, and while
        // it catches up (and takes shards back) n2 crashes, so shards move
        // again, some of them to n3 in maps it may apply in one batch.
        let before = map_of(&nodes, "n1").expect("map");
        s.crash("n3");
        book.held
            .lock()
            .expect("lock")
            .insert("n3".into(), Default::default());
        run_until(&mut s, seed, "last round: n3's shards moved away", LIMIT, || {
            no_overlap(&book, seed);
            all_acquired(&nodes, &book, &["n1", "n2"], 2)
                && map_of(&nodes, "n1").is_some_and(|m| m.epoch > before.epoch)
        });
        let at_restart = map_of(&nodes, "n1").expect("map").epoch;
        let mark = book.acquired.lock().expect("lock").len();
        s.bounce("n3");
        run_for(&mut s, seed, Duration::from_millis(200));
        no_overlap(&book, seed);
        let mid = map_of(&nodes, "n1").expect("map").epoch;
        s.crash("n2");
        book.held
            .lock()
            .expect("lock")
            .insert("n2".into(), Default::default());
        run_until(
            &mut s,
            seed,
            "last round: n2's shards moved to n1 and n3",
            LIMIT,
            || {
                no_overlap(&book, seed);
                all_acquired(&nodes, &book, &["n1", "n3"], 2)
                    && map_of(&nodes, "n1").is_some_and(|m| m.epoch > mid)
            },
        );
        s.bounce("n2");
        run_until(
            &mut s,
            seed,
            "last round: every shard acquired by its owner",
            LIMIT,
            || {
                no_overlap(&book, seed);
                all_acquired(&nodes, &book, &ALL, 3)
            },
        );
        let acquired = book.acquired.lock().expect("lock");
        let stale: Vec<_> = acquired[mark..]
            .iter()
            .filter(|(n, _, _, e)| n == "n3" && *e < at_restart)
            .collect();
        assert!(
            stale.is_empty(),
            "seed {seed} last round: n3 took shards at an epoch older than {at_restart}: {stale:?}"
        );
    }
}
