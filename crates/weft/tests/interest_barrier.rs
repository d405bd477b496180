//! Interest barriers across real loopback nodes: `Subscription::ready`
//! before a publish on another node never misses, an unsubscribe barrier
//! stops forwarding at once, and a node that is down does not block.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::linked_cluster;
use weft::{MemberState, Node, SinkResult};

const LIMIT: Duration = Duration::from_secs(30);
/// How long a published message may take to arrive before it counts as
/// missed (a bound, not a speed expectation: a miss never arrives).
const ARRIVAL: Duration = Duration::from_secs(10);

async fn cluster(n: usize) -> Vec<Node> {
    linked_cluster(n, |_| {}).await
}

/// Shuts the nodes down even when the test fails.
struct Stop(Vec<Node>);

impl Drop for Stop {
    fn drop(&mut self) {
        for n in &self.0 {
            n.abort();
        }
    }
}

fn interest_of(n: &Node, peer: &str) -> usize {
    n.pubsub().remote_interest().get(peer).copied().unwrap_or(0)
}

fn publishes_to(n: &Node, peer: &str) -> u64 {
    n.stats().peers.get(peer).map(|p| p.publishes_sent).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_ready_then_publish_elsewhere_never_misses() {
    let nodes = cluster(3).await;
    let _stop = Stop(nodes.clone());
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut misses = Vec::new();
    for i in 0..1000 {
        let subject = format!("bar.{i}");
        let sub = b.pubsub().subscribe(&subject).expect("subscribe");
        sub.ready().await.expect("ready");
        a.pubsub()
            .publish(&subject, Bytes::from(format!("m{i}")))
            .await
            .expect("publish");
        match tokio::time::timeout(ARRIVAL, sub.next()).await {
            Ok(Some(m)) => assert_eq!(m.payload, Bytes::from(format!("m{i}"))),
            _ => {
                misses.push(i);
                if misses.len() >= 3 {
                    break;
                }
            }
        }
    }
    assert!(misses.is_empty(), "missed iterations {misses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_and_queue_subscriptions_are_ready_too() {
    let nodes = cluster(3).await;
    let _stop = Stop(nodes.clone());
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    for i in 0..100 {
        let subject = format!("direct.{i}");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let sink = move |m: &weft::PubMsg| {
            let _ = tx.send(m.payload.clone());
            SinkResult::Delivered
        };
        let sub = b
            .pubsub()
            .subscribe_direct(&subject, None, std::sync::Arc::new(sink))
            .expect("subscribe");
        sub.ready().await.expect("ready");
        // The queue group member count changes through the registry too.
        let q = c
            .pubsub()
            .queue_subscribe(&subject, "q")
            .expect("queue subscribe");
        q.ready().await.expect("queue ready");
        a.pubsub()
            .publish(&subject, Bytes::from_static(b"x"))
            .await
            .expect("publish");
        let got = tokio::time::timeout(ARRIVAL, rx.recv()).await;
        assert!(matches!(got, Ok(Some(_))), "direct iteration {i} missed");
        let got = tokio::time::timeout(ARRIVAL, q.next()).await;
        assert!(matches!(got, Ok(Some(_))), "queue iteration {i} missed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_barrier_stops_forwarding_at_once() {
    let nodes = cluster(3).await;
    let _stop = Stop(nodes.clone());
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    // Every node advertises its request inbox: one pattern each.
    let base_a = interest_of(a, "n2");
    let base_c = interest_of(c, "n2");
    for i in 0..200 {
        let subject = format!("gone.{i}");
        let sub = b.pubsub().subscribe(&subject).expect("subscribe");
        sub.ready().await.expect("ready");
        assert_eq!(interest_of(a, "n2"), base_a + 1, "iteration {i}");
        assert_eq!(interest_of(c, "n2"), base_c + 1, "iteration {i}");
        sub.unsubscribe().wait().await.expect("unsubscribe barrier");
        // No waiting: the barrier says both already dropped the interest.
        assert_eq!(
            interest_of(a, "n2"),
            base_a,
            "iteration {i}: a still has interest"
        );
        assert_eq!(
            interest_of(c, "n2"),
            base_c,
            "iteration {i}: c still has interest"
        );
        let (sent_a, sent_c) = (publishes_to(a, "n2"), publishes_to(c, "n2"));
        a.pubsub()
            .publish(&subject, Bytes::from_static(b"late"))
            .await
            .expect("publish");
        c.pubsub()
            .publish(&subject, Bytes::from_static(b"late"))
            .await
            .expect("publish");
        assert_eq!(publishes_to(a, "n2"), sent_a, "iteration {i}: a forwarded");
        assert_eq!(publishes_to(c, "n2"), sent_c, "iteration {i}: c forwarded");
    }
    // A barrier over every change so far is already satisfied.
    b.pubsub().interest_barrier().wait().await.expect("node barrier");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_is_down_does_not_block_ready() {
    let nodes = cluster(3).await;
    let _stop = Stop(nodes.clone());
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    // c crashes: it is still up in membership until failure detection
    // declares it down, and the barrier stops waiting for it then.
    c.abort();
    let sub = b.pubsub().subscribe("after.crash").expect("subscribe");
    sub.ready_within(LIMIT)
        .await
        .expect("ready once n3 is declared down");
    assert_eq!(
        b.membership().member("n3").map(|m| m.state),
        Some(MemberState::Down)
    );
    a.pubsub()
        .publish("after.crash", Bytes::from_static(b"x"))
        .await
        .expect("publish");
    let got = tokio::time::timeout(ARRIVAL, sub.next()).await;
    assert!(matches!(got, Ok(Some(_))), "message after ready");
    // Already down: the next subscription is ready without waiting for it.
    let again = b.pubsub().subscribe("after.down").expect("subscribe");
    again.ready().await.expect("ready without the down node");
}
