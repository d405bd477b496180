//! The capability handles and the `Stream` side of every receiver.

mod common;

use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use weft::{
    CallError, GroupEvent, MembershipEvent, Message, Node, PubSubError, ShardHandler, StreamClosed,
    StreamEvent, StreamFrame, StreamPolicy,
};

use common::{config, linked_cluster, stop};

/// Bound on every wait below (against hangs, not a speed assertion).
const LIMIT: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, fut: impl IntoFuture<Output = T>) -> T {
    match tokio::time::timeout(LIMIT, fut.into_future()).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for: {what}"),
    }
}

async fn one_node(name: &str) -> Node {
    Node::start(config(name, &[])).await.expect("node starts")
}

#[tokio::test]
async fn pubsub_round_trip_through_the_handle_as_a_stream() {
    let node = one_node("n1").await;
    let pubsub = node.pubsub();
    let mut sub = pubsub.subscribe("orders.>").expect("subscribe");
    within("ready", sub.ready()).await.expect("ready");

    pubsub.publish("orders.new", "#1").await.expect("publish");
    pubsub
        .publish_with("orders.old", Bytes::from_static(b"#0"))
        .header("k", "v")
        .reply("answers.here")
        .await
        .expect("publish_with");

    let first = within("first", sub.next()).await.expect("a message");
    assert_eq!(
        (first.subject.as_str(), first.payload.as_ref()),
        ("orders.new", &b"#1"[..])
    );
    assert!(first.headers.is_empty());
    assert_eq!(first.reply, None);
    // The same subscription consumed through `Stream`.
    let second = within("second", StreamExt::next(&mut sub))
        .await
        .expect("a message");
    assert_eq!(second.subject, "orders.old");
    assert_eq!(second.headers, vec![("k".to_string(), "v".to_string())]);
    assert_eq!(second.reply.as_deref(), Some("answers.here"));

    // A handle is a clone of the node: it may outlive the one it came from.
    let mut sub2 = pubsub.subscribe("x.y").expect("subscribe");
    let later = node.pubsub();
    drop(pubsub);
    later.publish("x.y", "last").await.expect("publish");
    assert_eq!(
        within("x.y", StreamExt::next(&mut sub2)).await.map(|m| m.payload),
        Some(Bytes::from_static(b"last"))
    );
    // Unsubscribing waits until no node forwards the interest any more.
    within("barrier", sub2.unsubscribe().wait())
        .await
        .expect("barrier");
    assert!(!later.has_interest("x.y"));
    node.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn request_takes_an_optional_timeout_and_headers() {
    let node = one_node("n1").await;
    let pubsub = node.pubsub();
    let service = pubsub.subscribe("time.now").expect("subscribe");
    let responder = pubsub.clone();
    let task = tokio::spawn(async move {
        while let Some(req) = service.next().await {
            let Some(reply) = req.reply else { continue };
            let answer = format!("noon {}", req.headers.len());
            let _ = responder.publish(&reply, answer).await;
        }
    });
    let answer = within("request", pubsub.request("time.now", Bytes::new())).await;
    assert_eq!(answer.expect("reply").payload.as_ref(), b"noon 0");
    let answer = within(
        "request with options",
        pubsub
            .request("time.now", "q")
            .header("a", "1")
            .timeout(Duration::from_secs(10)),
    )
    .await;
    assert_eq!(answer.expect("reply").payload.as_ref(), b"noon 1");
    let none = pubsub
        .request("nobody.home", "")
        .timeout(Duration::from_secs(10))
        .await;
    assert!(matches!(none, Err(PubSubError::NoResponders(_))), "{none:?}");
    task.abort();
    node.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_mailbox_is_a_stream_and_calls_take_an_optional_timeout() {
    let node = one_node("n1").await;
    let mailboxes = node.mailboxes();
    let mut inbox = mailboxes.spawn();
    mailboxes.register("inbox", &inbox).expect("register");
    assert_eq!(mailboxes.whereis("inbox"), vec![inbox.pid().clone()]);
    mailboxes
        .send(inbox.pid(), Message::new("m", "1"))
        .await
        .expect("send");
    mailboxes
        .send_named("n1", "inbox", Message::new("m", "2"))
        .await
        .expect("send_named");
    let got: Vec<_> = within("two envelopes", (&mut inbox).take(2).collect::<Vec<_>>()).await;
    let payloads: Vec<_> = got.iter().map(|e| e.message.payload.clone()).collect();
    assert_eq!(payloads, vec![Bytes::from_static(b"1"), Bytes::from_static(b"2")]);

    // An echo actor consuming its mailbox as a Stream.
    let mut echo = mailboxes.spawn();
    let echo_pid = echo.pid().clone();
    let task = tokio::spawn(async move {
        while let Some(env) = StreamExt::next(&mut echo).await {
            let answer = Message::new("echo", env.message.payload.clone());
            let _ = echo.reply(&env, answer).await;
        }
    });
    let reply = within("call", mailboxes.call(&echo_pid, Message::new("ping", "hi"))).await;
    assert_eq!(reply.expect("reply").payload.as_ref(), b"hi");
    let gone = mailboxes.spawn().pid().clone();
    let err = mailboxes
        .call(&gone, Message::new("ping", ""))
        .timeout(Duration::from_secs(10))
        .await;
    assert_eq!(err, Err(CallError::NoSuchMailbox));
    task.abort();
    node.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_group_monitor_is_a_stream() {
    let node = one_node("n1").await;
    let groups = node.groups();
    let mut monitor = groups.monitor("workers");
    assert!(monitor.initial_members().is_empty());
    let worker = node.mailboxes().spawn();
    groups.join("workers", worker.pid()).expect("join");
    let ev = within("join event", StreamExt::next(&mut monitor)).await;
    assert!(
        matches!(ev, Some(Ok(GroupEvent::Joined { ref pid, .. })) if pid == worker.pid()),
        "{ev:?}"
    );
    node.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn channels_membership_and_link_events_through_handles() {
    let n1 = one_node("n1").await;
    let mut members = n1.membership().events();
    let mut links = n1.membership().link_events();
    let n2 = Node::start(config("n2", &[n1.addr()])).await.expect("n2 starts");
    let up = within("n2 up", async {
        while let Some(ev) = members.next().await {
            if let Ok(MembershipEvent::MemberUp(m)) = ev {
                return m.name;
            }
        }
        String::new()
    })
    .await;
    assert_eq!(up, "n2");
    let linked = within("n2 linked", async {
        while let Some(ev) = StreamExt::next(&mut links).await {
            if let Ok(weft::LinkEvent::Up(id)) = ev {
                return id.name;
            }
        }
        String::new()
    })
    .await;
    assert_eq!(linked, "n2");
    common::wait_for("n2 sees n1 linked", LIMIT, || n2.membership().is_linked("n1")).await;

    let mut rx = n2.channels().open(7, 1 << 16).expect("open");
    assert!(matches!(
        n2.channels().open(7, 1 << 16),
        Err(weft::ChannelError::InUse(7))
    ));
    n1.channels().send("n2", 7, "a").await.expect("send");
    n1.channels()
        .try_send("n2", 7, Bytes::from_static(b"b"))
        .expect("try_send");
    let got: Vec<_> = within("two deliveries", (&mut rx).take(2).collect::<Vec<_>>()).await;
    assert_eq!(
        got.iter().map(|d| d.payload.clone()).collect::<Vec<_>>(),
        vec!["a", "b"]
    );
    assert!(got.iter().all(|d| d.from.name == "n1"));
    stop(vec![n2, n1]).await;
}

fn frame(seq: u64, keyframe: bool) -> StreamFrame {
    StreamFrame {
        seq,
        timestamp: seq * 40,
        keyframe,
        config: false,
        payload: Bytes::from(format!("frame {seq}")),
    }
}

#[tokio::test]
async fn a_stream_subscription_is_a_stream_ending_with_its_reason() {
    let node = one_node("n1").await;
    let streams = node.streams();
    let publisher = streams
        .publish("live/cam1", StreamPolicy::default())
        .expect("publish");
    publisher.send(frame(1, true)).expect("send");
    let mut viewer = within("subscribe", streams.subscribe("live/cam1"))
        .await
        .expect("subscribe");
    assert_eq!(streams.list().len(), 1);
    publisher.send(frame(2, false)).expect("send");
    let mut seqs = Vec::new();
    while seqs.len() < 2 {
        match within("frame", StreamExt::next(&mut viewer)).await {
            Some(Ok(StreamEvent::Frame(f))) => seqs.push(f.seq),
            Some(Ok(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seqs, [1, 2]);
    drop(publisher);
    // One error naming why the stream ended, then the end of the Stream.
    let end = within("end", async {
        loop {
            match StreamExt::next(&mut viewer).await {
                Some(Ok(_)) => continue,
                other => return other,
            }
        }
    })
    .await;
    assert!(matches!(end, Some(Err(StreamClosed::Finished))), "{end:?}");
    assert!(within("none", StreamExt::next(&mut viewer)).await.is_none());
    node.shutdown(Duration::from_millis(100)).await;
}

struct Count(AtomicU64);

impl ShardHandler for Count {
    fn on_event(&self, _shard: u32, _key: &[u8], _event: Bytes) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::test]
async fn routes_through_the_shards_handle_and_maps_are_a_stream() {
    let nodes = linked_cluster(1, |c| {
        c.shards.count = 8;
        c.shards.voters = 1;
        c.shards.bootstrap_delay = Duration::from_millis(100);
    })
    .await;
    let shards = nodes[0].shards();
    let count = Arc::new(Count(AtomicU64::new(0)));
    shards.set_handler(count.clone());
    let mut maps = shards.maps();
    let map = within("first map", async {
        while let Some(m) = maps.next().await {
            if m.epoch >= 1 {
                return Some(m);
            }
        }
        None
    })
    .await
    .expect("a committed map");
    assert_eq!(map.shard_count(), 8);
    let ack = within("route", shards.route(b"user-42", "click"))
        .await
        .expect("route");
    assert_eq!(ack.node, "n1");
    assert_eq!(shards.map().owner(ack.shard), Some("n1"));
    let ack = within(
        "route with timeout",
        shards.route(b"user-7", "click").timeout(LIMIT),
    )
    .await;
    assert_eq!(ack.expect("route").node, "n1");
    let acks = within(
        "route_many",
        shards.route_many(vec![(Bytes::from_static(b"k"), Bytes::new())]),
    )
    .await;
    assert!(acks[0].is_ok(), "{acks:?}");
    assert_eq!(count.0.load(Ordering::Relaxed), 3);
    assert_eq!(shards.voters(), vec!["n1".to_string()]);
    stop(nodes).await;
}
