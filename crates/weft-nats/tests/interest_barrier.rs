//! The interest barrier of the NATS front end: a `PING` after `SUB`/`UNSUB`
//! is answered once every live node applied the change, so "subscribe,
//! flush, publish from another node" never misses, and after "unsubscribe,
//! flush" no node forwards the subject.
//!
//! The subscriber speaks the protocol over a plain socket (`SUB`, `PING`,
//! wait for `PONG`): that is what a client library's flush does (nats.go
//! `Flush`, nats.js `flush()`; nats-py 2.16 needs two, see docs/nats.md).
//! async-nats 0.51's `flush()` only writes its
//! buffer without a `PING` round trip, so it cannot be the barrier here;
//! it publishes from the other nodes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::Cluster;
use common::raw::Raw;

/// A raw protocol client on node `i` that sent `CONNECT {connect}`.
async fn raw(c: &Cluster, i: usize, connect: &str) -> Raw {
    let mut r = Raw::connect_to(c.servers[i].local_addr()).await;
    r.send(format!("CONNECT {connect}\r\n").as_bytes()).await;
    r
}

fn interest_of(c: &Cluster, i: usize, peer: &str) -> usize {
    c.nodes[i]
        .pubsub()
        .remote_interest()
        .get(peer)
        .copied()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_flush_then_publish_elsewhere_never_misses_and_unsub_flush_stops_forwarding() {
    let c = Cluster::start(3, |_| {}).await;
    let mut sub = raw(&c, 1, "{}").await;
    let publishers = [c.client(0).await, c.client(2).await];
    // Each node advertises its request inbox (the NATS URL group lives in
    // another table): the baseline of n2's patterns elsewhere, once known.
    c.knows_patterns(0, &[("n2", 1)]).await;
    c.knows_patterns(2, &[("n2", 1)]).await;
    let base = [interest_of(&c, 0, "n2"), interest_of(&c, 2, "n2")];
    for i in 0..200 {
        let subject = format!("bar.{i}");
        sub.send(format!("SUB {subject} {i}\r\nPING\r\n").as_bytes())
            .await;
        sub.until("PONG\r\n").await;
        let publisher = &publishers[i % 2];
        publisher
            .publish(subject.clone(), Bytes::from(format!("m{i}")))
            .await
            .unwrap();
        publisher.flush().await.unwrap();
        let got = sub.until(&format!("m{i}\r\n")).await;
        assert!(
            got.starts_with(&format!("MSG {subject} {i} ")),
            "iteration {i}: {got:?}"
        );
        sub.send(format!("UNSUB {i}\r\nPING\r\n").as_bytes()).await;
        sub.until("PONG\r\n").await;
        // No waiting: the PONG says every node dropped the interest.
        assert_eq!(
            [interest_of(&c, 0, "n2"), interest_of(&c, 2, "n2")],
            base,
            "iteration {i}: interest left after UNSUB + PONG"
        );
        assert!(!c.nodes[0].pubsub().has_interest(&subject), "iteration {i}");
        assert!(!c.nodes[2].pubsub().has_interest(&subject), "iteration {i}");
    }
    assert_eq!(c.servers[1].stats().interest_barrier_timeouts, 0);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_keep_command_order_behind_a_held_pong() {
    let c = Cluster::start(3, |_| {}).await;
    let mut r = raw(&c, 0, r#"{"verbose":true}"#).await;
    assert_eq!(r.until("\r\n").await, "+OK\r\n");
    // Nothing pending: answered at once.
    r.send(b"PING\r\n").await;
    assert_eq!(r.until("\r\n").await, "PONG\r\n");
    // The PONG after SUB waits for the barrier; the +OK of the publish
    // and the PONG after it stay behind it.
    r.send(b"SUB order.a 1\r\nPING\r\nPUB other 2\r\nhi\r\nPING\r\nSUB order.b 2\r\nPING\r\nPING\r\n")
        .await;
    let want = "+OK\r\nPONG\r\n+OK\r\nPONG\r\n+OK\r\nPONG\r\nPONG\r\n";
    let mut got = String::new();
    while got.len() < want.len() {
        got.push_str(&r.until("\r\n").await);
    }
    assert_eq!(got, want);
    assert!(c.nodes[1].pubsub().has_interest("order.b") && c.nodes[2].pubsub().has_interest("order.b"));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pong_held_past_the_timeout_is_sent_anyway_and_counted() {
    let c = Cluster::start_tuned(
        3,
        // n3 crashes below and must stay "up" (suspect) while the PING
        // waits: it can then never confirm.
        |n| n.membership.suspect_to_down_after = Duration::from_secs(60),
        |cfg| cfg.interest_barrier_timeout = Duration::from_millis(300),
    )
    .await;
    c.nodes[2].abort();
    let mut r = raw(&c, 0, "{}").await;
    r.send(b"SUB late.x 1\r\nPING\r\n").await;
    assert_eq!(r.until("\r\n").await, "PONG\r\n");
    assert_eq!(c.servers[0].stats().interest_barrier_timeouts, 1);
    assert!(
        c.nodes[1].pubsub().has_interest("late.x"),
        "the live node confirmed"
    );
    // The client still works, and a PING with nothing pending is answered.
    r.send(b"PING\r\n").await;
    assert_eq!(r.until("\r\n").await, "PONG\r\n");
    assert_eq!(c.servers[0].stats().interest_barrier_timeouts, 1);
    c.stop().await;
}
