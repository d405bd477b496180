//! The counters behind the metrics families count what they say
//! (`docs/metrics.md`; the names themselves are checked against a running
//! `weft node` by `crates/weft-cli/tests/metrics_doc.rs`).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{config, sees_up, wait_for};
use weft::{Message, Node};

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messaging_pubsub_membership_and_link_counters() {
    let a = Node::start(config("a", &[])).await.expect("a");
    let b = Node::start(config("b", &[a.addr()])).await.expect("b");
    for n in [&a, &b] {
        wait_for("both up", LIMIT, || sees_up(n, &["a", "b"])).await;
    }
    wait_for("linked", LIMIT, || {
        a.membership().is_linked("b") && b.membership().is_linked("a")
    })
    .await;

    let s = a.stats();
    assert!(s.membership_events.get("up").copied().unwrap_or(0) >= 1, "{s:?}");
    let to_b = &s.peers["b"];
    assert!(to_b.connections >= 1);
    assert_eq!(to_b.reconnects(), to_b.connections - 1);

    // Messaging: a tell, a call, a group publish, each counted once.
    let inbox = b.mailboxes().spawn();
    b.mailboxes().register("inbox", &inbox).expect("register");
    b.groups().join("g", inbox.pid()).expect("join");
    wait_for("name and group known on a", LIMIT, || {
        !a.mailboxes().whereis("inbox").is_empty() && a.groups().members("g").len() == 1
    })
    .await;
    assert!(b.registry_local_entries() >= 2, "a name and a group member");
    let pid = inbox.pid().clone();
    a.mailboxes()
        .send(&pid, Message::new("tell", "x"))
        .await
        .expect("tell");
    let caller = a.clone();
    let call = tokio::spawn(async move {
        caller
            .mailboxes()
            .call(&pid, Message::new("get", ""))
            .timeout(LIMIT)
            .await
    });
    a.groups()
        .publish("g", Message::new("all", "y"))
        .await
        .expect("group publish");
    for _ in 0..3 {
        let env = tokio::time::timeout(LIMIT, inbox.recv())
            .await
            .expect("in time")
            .expect("open");
        if env.is_call() {
            inbox.reply(&env, Message::new("ok", "")).await.expect("reply");
        }
    }
    call.await.expect("call task").expect("reply");
    let s = a.stats();
    assert_eq!((s.tells_sent, s.calls_sent, s.group_publishes), (1, 1, 1));
    assert_eq!(b.stats().messages_delivered, 3);

    // Pub/sub: one publish, two local deliveries on b.
    let subs = [
        b.pubsub().subscribe("t.*").expect("sub"),
        b.pubsub().subscribe("t.>").expect("sub"),
    ];
    wait_for("interest on a", LIMIT, || a.pubsub().has_interest("t.x")).await;
    a.pubsub()
        .publish("t.x", Bytes::from_static(b"m"))
        .await
        .expect("publish");
    for sub in &subs {
        tokio::time::timeout(LIMIT, sub.next())
            .await
            .expect("in time")
            .expect("open");
    }
    assert_eq!(a.stats().pubsub_published, 1);
    // The counter is bumped right after the hand-over, which a subscriber
    // may see first: wait (bounded) for it to settle, then check it exactly.
    wait_for("b counted both deliveries", LIMIT, || {
        b.stats().pubsub_delivered >= 2
    })
    .await;
    assert_eq!(b.stats().pubsub_delivered, 2);

    b.shutdown(Duration::from_millis(100)).await;
    wait_for("a counts b down", LIMIT, || {
        a.stats().membership_events.get("down").copied().unwrap_or(0) >= 1
    })
    .await;
    a.shutdown(Duration::from_millis(100)).await;
}
