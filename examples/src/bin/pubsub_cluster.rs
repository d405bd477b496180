//! A pub/sub server that clusters: three nodes in one process, subscribers
//! on two of them, the publisher on the third.
//!
//! What it shows:
//! - subscriptions anywhere see messages published anywhere, with NATS
//!   wildcards (`*` one token, `>` the rest);
//! - a queue group spread over two nodes gets each message exactly once;
//! - a message crosses to a node only if that node has matching interest,
//!   and then as one frame whatever the number of its subscribers.
//!
//! `cargo run -p weft-examples --bin pubsub_cluster`

use std::time::Duration;

use anyhow::ensure;
use bytes::Bytes;
use weft::{Node, PubMsg, Subscription};
use weft_examples::{bounded, cluster, shutdown, wait_until};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bounded(run()).await
}

/// Whether `publisher` has heard of every subscription `subscriber` holds.
/// Interest travels through the cluster registry asynchronously: publishing
/// before it arrives is not an error, the message just has nobody to go to
/// on that node (at most once, like NATS core).
fn interest_known(publisher: &Node, subscriber: &Node) -> bool {
    let known = publisher
        .pubsub()
        .remote_interest()
        .get(&subscriber.id().name)
        .copied()
        .unwrap_or(0);
    // +1: every node also advertises the inbox its requests' replies use.
    known > subscriber.pubsub().local_interest().len()
}

/// Takes what arrived on `sub` so far.
fn drain(sub: &Subscription) -> Vec<PubMsg> {
    let mut got = Vec::new();
    sub.drain_into(&mut got);
    got
}

async fn run() -> anyhow::Result<()> {
    let nodes = cluster("pubsub-example", &["n1", "n2", "n3"], |_| {}).await?;
    let (n1, n2, n3) = (&nodes[0], &nodes[1], &nodes[2]);
    println!("cluster up: n1, n2, n3");

    // n1 wants new orders only (`*` matches exactly one token); n2 wants
    // everything under `orders` (`>` matches one or more tokens).
    let new_orders = n1.pubsub().subscribe("orders.*")?;
    let all_orders = n2.pubsub().subscribe("orders.>")?;
    // Billing runs one worker on n1 and one on n2: a queue group, so each
    // order is billed once, not once per worker.
    let billing = [
        n1.pubsub().queue_subscribe("orders.>", "billing")?,
        n2.pubsub().queue_subscribe("orders.>", "billing")?,
    ];
    wait_until("n3 knows the interest of n1 and n2", || {
        interest_known(n3, n1) && interest_known(n3, n2)
    })
    .await?;
    println!("n1 subscribes orders.* ; n2 subscribes orders.> ; billing queue group on n1 and n2");

    let subjects = [
        "orders.new",
        "orders.new",
        "orders.eu.paid",
        "orders.new",
        "orders.us.paid",
    ];
    for (i, subject) in subjects.iter().enumerate() {
        n3.pubsub()
            .publish(subject, Bytes::from(format!("order-{i}")))
            .await?;
        println!("n3 publishes {subject} order-{i}");
    }
    // A plain `shipping` subject nobody subscribed to: no node gets it.
    n3.pubsub()
        .publish("shipping.new", Bytes::from_static(b"parcel"))
        .await?;

    let total = subjects.len();
    let want_new = subjects.iter().filter(|s| s.split('.').count() == 2).count();
    let (mut got_new, mut got_all, mut billed) = (Vec::new(), Vec::new(), [0usize; 2]);
    wait_until("every delivery", || {
        got_new.extend(drain(&new_orders));
        got_all.extend(drain(&all_orders));
        for (count, worker) in billed.iter_mut().zip(&billing) {
            *count += drain(worker).len();
        }
        got_new.len() >= want_new && got_all.len() >= total && billed.iter().sum::<usize>() >= total
    })
    .await?;
    // Let any duplicate that would break the queue-group promise show up.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (count, worker) in billed.iter_mut().zip(&billing) {
        *count += drain(worker).len();
    }

    let subjects_of = |msgs: &[PubMsg]| msgs.iter().map(|m| m.subject.clone()).collect::<Vec<_>>();
    println!("n1 orders.*      got {:?}", subjects_of(&got_new));
    println!("n2 orders.>      got {:?}", subjects_of(&got_all));
    println!(
        "billing worker on n1 billed {}, on n2 billed {}",
        billed[0], billed[1]
    );
    ensure!(
        got_new.len() == want_new,
        "orders.* must see only the {want_new} two-token subjects"
    );
    ensure!(got_all.len() == total, "orders.> must see all {total} orders");
    ensure!(
        billed.iter().sum::<usize>() == total,
        "each order billed exactly once"
    );

    // One frame per message per interested node, never per subscriber.
    for peer in ["n1", "n2"] {
        let frames = n3.stats().peers.get(peer).map_or(0, |p| p.publishes_sent);
        println!("publish frames n3 -> {peer}: {frames} (for {total} messages)");
        ensure!(
            frames as usize <= total,
            "at most one frame per message to {peer}"
        );
    }

    drop((new_orders, all_orders, billing));
    shutdown(nodes).await;
    println!("done");
    Ok(())
}
