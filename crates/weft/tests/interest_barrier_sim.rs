//! Interest barrier against a node that is up but slow (turmoil): the link
//! to it is held, so it cannot apply or acknowledge the subscription, while
//! membership still reports it up (indirect probes through the third node
//! succeed). `ready()` times out naming exactly that node, and succeeds
//! once the link is released. `WEFT_SIM_SEED=N` replays one seed.

mod common {
    pub mod sim;
    pub mod sim_net;
}

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::sim::{Nodes, add_node, run_until, sim};
use weft::{BarrierError, MemberState, NodeConfig, Subscription};

const LIMIT: Duration = Duration::from_secs(60);

fn seeds() -> Vec<u64> {
    match std::env::var("WEFT_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("WEFT_SIM_SEED is a number")],
        Err(_) => (1..=5).collect(),
    }
}

fn tune(c: &mut NodeConfig) {
    // The held node must stay up for the whole test: it is slow, not dead.
    c.membership.suspect_to_down_after = Duration::from_secs(60);
    c.pubsub.interest_barrier_timeout = Duration::from_secs(1);
}

type Shared<T> = Arc<Mutex<Option<T>>>;

#[test]
fn a_slow_node_makes_ready_time_out_with_its_name() {
    for seed in seeds() {
        let mut s = sim(seed, Duration::from_secs(120));
        let nodes = Nodes::default();
        add_node(&mut s, &nodes, "n1", &[], seed, tune);
        add_node(&mut s, &nodes, "n2", &["n1"], seed, tune);
        add_node(&mut s, &nodes, "n3", &["n1"], seed, tune);
        run_until(&mut s, seed, "all linked", LIMIT, || {
            ["n1", "n2", "n3"].iter().all(|a| {
                nodes.get(a).is_some_and(|n| {
                    ["n1", "n2", "n3"]
                        .iter()
                        .all(|b| a == b || n.membership().is_linked(b))
                })
            })
        });
        s.hold("n1", "n3");
        let sub: Shared<Subscription> = Arc::default();
        let first: Shared<Result<(), BarrierError>> = Arc::default();
        let n1 = nodes.get("n1").expect("n1");
        let (sub2, first2) = (sub.clone(), first.clone());
        s.client("subscriber", async move {
            let subscription = n1.pubsub().subscribe("slow.>").expect("subscribe");
            let r = subscription.ready().await;
            *first2.lock().expect("lock") = Some(r);
            *sub2.lock().expect("lock") = Some(subscription);
            Ok(())
        });
        run_until(&mut s, seed, "first ready returned", LIMIT, || {
            first.lock().expect("lock").is_some()
        });
        let got = first.lock().expect("lock").take().expect("result");
        assert_eq!(
            got,
            Err(BarrierError::Timeout {
                timeout: Duration::from_secs(1),
                nodes: vec!["n3".to_string()],
            }),
            "seed {seed}"
        );
        let n1 = nodes.get("n1").expect("n1");
        assert_ne!(
            n1.membership().member("n3").map(|m| m.state),
            Some(MemberState::Down),
            "seed {seed}: n3 is up"
        );
        assert!(
            nodes.get("n2").expect("n2").pubsub().has_interest("slow.x"),
            "seed {seed}: n2 confirmed, so it has the interest"
        );
        s.release("n1", "n3");
        let second: Shared<Result<(), BarrierError>> = Arc::default();
        let second2 = second.clone();
        let sub3 = sub.clone();
        s.client("again", async move {
            let subscription = sub3.lock().expect("lock").take().expect("subscription");
            let r = subscription.ready_within(Duration::from_secs(30)).await;
            *second2.lock().expect("lock") = Some(r);
            *sub3.lock().expect("lock") = Some(subscription);
            Ok(())
        });
        run_until(&mut s, seed, "second ready returned", LIMIT, || {
            second.lock().expect("lock").is_some()
        });
        assert_eq!(second.lock().expect("lock").take(), Some(Ok(())), "seed {seed}");
        assert!(
            nodes.get("n3").expect("n3").pubsub().has_interest("slow.x"),
            "seed {seed}: n3 has the interest once it confirmed"
        );
    }
}
