//! Real sockets on loopback, several nodes in one process.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{config, sees_up, wait_for};
use weft::{MemberState, Node};

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_a_cluster_and_exchange_data() {
    common::logs();
    let n1 = Node::start(config("n1", &[])).await.expect("n1");
    let seed = [n1.addr()];
    let n2 = Node::start(config("n2", &seed)).await.expect("n2");
    let n3 = Node::start(config("n3", &seed)).await.expect("n3");
    for n in [&n1, &n2, &n3] {
        wait_for("all up", LIMIT, || sees_up(n, &["n1", "n2", "n3"])).await;
    }
    wait_for("links", LIMIT, || {
        n2.membership().is_linked("n3") && n3.membership().is_linked("n2")
    })
    .await;

    let rx = n3.channels().open(7, 1 << 20).expect("channel");
    for i in 0..1000u32 {
        n2.channels()
            .send("n3", 7, Bytes::from(i.to_be_bytes().to_vec()))
            .await
            .expect("send");
    }
    for i in 0..1000u32 {
        let d = rx.recv().await.expect("delivery");
        assert_eq!(d.from.name, "n2");
        assert_eq!(d.payload.as_ref(), &i.to_be_bytes(), "FIFO order");
    }
    // Exactly one link per pair, whatever the dial race did.
    for n in [&n1, &n2, &n3] {
        let links = n.membership().links();
        assert_eq!(links.iter().filter(|l| l.connected).count(), 2, "{:?}", links);
    }

    n3.shutdown(Duration::from_secs(1)).await;
    wait_for("n3 down after leave", LIMIT, || {
        n1.membership()
            .member("n3")
            .is_none_or(|m| m.state == MemberState::Down)
    })
    .await;
    assert_eq!(
        n2.channels().try_send("n3", 7, Bytes::from_static(b"x")),
        Err(weft::SendError::NodeDown("n3".into()))
    );
    n1.shutdown(Duration::from_secs(1)).await;
    n2.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_channel_callback_is_contained() {
    let n1 = Node::start(config("n1", &[])).await.expect("n1");
    let n2 = Node::start(config("n2", &[n1.addr()])).await.expect("n2");
    wait_for("linked", LIMIT, || {
        n1.membership().is_linked("n2") && n2.membership().is_linked("n1")
    })
    .await;
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = seen.clone();
    n1.channels()
        .on(
            3,
            std::sync::Arc::new(move |_, payload: Bytes| {
                assert_ne!(payload.as_ref(), b"boom", "handler bug");
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }),
        )
        .expect("channel");
    n2.channels()
        .send("n1", 3, Bytes::from_static(b"boom"))
        .await
        .expect("send");
    n2.channels()
        .send("n1", 3, Bytes::from_static(b"fine"))
        .await
        .expect("send");
    wait_for("later message delivered", LIMIT, || {
        seen.load(std::sync::atomic::Ordering::Relaxed) == 1
    })
    .await;
    assert_eq!(n1.stats().frames_dropped.get("callback_panic").copied(), Some(1));
    assert!(
        n1.membership().is_linked("n2"),
        "the link survives a handler panic"
    );
    n1.shutdown(Duration::from_millis(200)).await;
    n2.shutdown(Duration::from_millis(200)).await;
}
