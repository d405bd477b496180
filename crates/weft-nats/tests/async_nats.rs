//! A real NATS client (async-nats) against a 3-node weft cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_nats::{HeaderMap, Subscriber};
use bytes::Bytes;
use common::{Cluster, LIMIT, wait_for};
use futures::StreamExt;

async fn next(s: &mut Subscriber) -> async_nats::Message {
    tokio::time::timeout(LIMIT, s.next())
        .await
        .expect("a message in time")
        .expect("subscription open")
}

async fn next_text(s: &mut Subscriber) -> String {
    String::from_utf8(next(s).await.payload.to_vec()).unwrap()
}

/// Subscribes `client` to a fresh marker subject and waits until every
/// node knows it: one connection's operations are handled in order and
/// registry deltas of one node travel in order, so every subscription
/// `client` made before is then known everywhere too. (async-nats' `flush`
/// only writes the client's buffer; it is no barrier.)
async fn settle(c: &Cluster, client: &async_nats::Client, marker: &str) -> Subscriber {
    let s = client.subscribe(marker.to_string()).await.unwrap();
    client.flush().await.unwrap();
    c.interest_everywhere(marker).await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_wildcards_headers_echo_and_connect_urls_across_nodes() {
    let c = Cluster::start(3, |_| {}).await;
    wait_for("every client address advertised", || {
        c.nodes[0]
            .groups()
            .list()
            .iter()
            .filter(|(g, _)| g.starts_with(weft_nats::server::URL_GROUP_PREFIX))
            .count()
            == 3
    })
    .await;
    let c1 = c.client(0).await;
    let c2 = c.client(1).await;
    let c3 = c.client(2).await;

    // INFO names the other nodes' client addresses.
    let urls: BTreeSet<String> = c1.server_info().connect_urls.into_iter().collect();
    let others: BTreeSet<String> = [1, 2]
        .iter()
        .map(|&i| c.servers[i].advertised().to_string())
        .collect();
    assert_eq!(urls, others);
    assert!(c1.server_info().headers);
    assert_eq!(c1.server_info().max_payload, 1024 * 1024);

    let mut exact = c1.subscribe("orders.eu.1").await.unwrap();
    let mut star = c1.subscribe("orders.*.1").await.unwrap();
    let mut tail = c1.subscribe("orders.>").await.unwrap();
    settle(&c, &c1, "marker.1").await;

    for (subject, body) in [("orders.eu.1", "a"), ("orders.us.1", "b"), ("orders.eu.2.x", "c")] {
        c2.publish(subject, Bytes::from(body)).await.unwrap();
    }
    c2.publish("orders.eu.1", Bytes::from("end")).await.unwrap();
    c2.flush().await.unwrap();
    assert_eq!(next_text(&mut exact).await, "a");
    assert_eq!(next_text(&mut exact).await, "end");
    for want in ["a", "b", "end"] {
        assert_eq!(next_text(&mut star).await, want);
    }
    for want in ["a", "b", "c", "end"] {
        assert_eq!(next_text(&mut tail).await, want);
    }

    // Headers round trip from a third node, order and repeats kept.
    let mut h = HeaderMap::new();
    h.insert("X-Trace", "abc");
    h.append("X-Multi", "1");
    h.append("X-Multi", "2");
    c3.publish_with_headers("orders.eu.1", h, Bytes::from("h"))
        .await
        .unwrap();
    c3.flush().await.unwrap();
    let m = next(&mut exact).await;
    assert_eq!(&m.payload[..], b"h");
    let got = m.headers.expect("headers");
    assert_eq!(got.get("X-Trace").map(|v| v.as_str()), Some("abc"));
    let multi: Vec<&str> = got.get_all("X-Multi").map(|v| v.as_str()).collect();
    assert_eq!(multi, vec!["1", "2"]);

    // echo: false — a client does not get its own publishes.
    let quiet = async_nats::ConnectOptions::new()
        .no_echo()
        .connect(c.url(0))
        .await
        .unwrap();
    let mut quiet_sub = quiet.subscribe("echo.test").await.unwrap();
    let mut loud_sub = c1.subscribe("echo.test").await.unwrap();
    settle(&c, &c1, "marker.2").await;
    quiet.publish("echo.test", Bytes::from("mine")).await.unwrap();
    assert_eq!(next_text(&mut loud_sub).await, "mine");
    c1.publish("echo.test", Bytes::from("theirs")).await.unwrap();
    assert_eq!(next_text(&mut loud_sub).await, "theirs");
    let m = next(&mut quiet_sub).await;
    assert_eq!(&m.payload[..], b"theirs", "own publish skipped");
    assert!(m.headers.is_none(), "the origin tag is stripped");

    let stats = c.servers[0].stats();
    assert!(stats.msgs_out >= 10 && stats.clients_connected == 2, "{stats:?}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_groups_deliver_exactly_once_across_nodes() {
    let c = Cluster::start(3, |_| {}).await;
    let c1 = c.client(0).await;
    let c2 = c.client(1).await;
    let c3 = c.client(2).await;
    let mut members = Vec::new();
    for client in [&c2, &c2, &c3, &c3] {
        members.push(client.queue_subscribe("work", "workers".into()).await.unwrap());
    }
    let mut plain = c2.subscribe("work").await.unwrap();
    c2.flush().await.unwrap();
    c3.flush().await.unwrap();
    // n1 has no member: it must spread over n2 and n3 (inbox + group (+ plain)).
    c.knows_patterns(0, &[("n2", 3), ("n3", 2)]).await;

    const N: usize = 1000;
    for i in 0..N {
        c1.publish("work", Bytes::from(i.to_string())).await.unwrap();
    }
    c1.flush().await.unwrap();

    let node_of = [1, 1, 2, 2];
    let mut merged = futures::stream::select_all(
        members
            .into_iter()
            .enumerate()
            .map(|(i, s)| s.map(move |m| (i, m)).boxed()),
    );
    let mut seen = BTreeSet::new();
    let mut per_node: BTreeMap<usize, usize> = BTreeMap::new();
    while seen.len() < N {
        let (i, m) = tokio::time::timeout(LIMIT, merged.next())
            .await
            .expect("queue message in time")
            .expect("open");
        let v: usize = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
        assert!(seen.insert(v), "message {v} delivered twice");
        *per_node.entry(node_of[i]).or_default() += 1;
    }
    // Nothing more: no duplicate arrives late (bounded look).
    let late = tokio::time::timeout(Duration::from_millis(300), merged.next()).await;
    assert!(late.is_err(), "a duplicate arrived");
    assert!(per_node.get(&1).is_some_and(|&n| n > 0), "{per_node:?}");
    assert!(per_node.get(&2).is_some_and(|&n| n > 0), "{per_node:?}");
    // The plain subscriber beside the group gets every message.
    for i in 0..N {
        assert_eq!(next_text(&mut plain).await, i.to_string());
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_auto_unsubscribe_and_request_reply() {
    let c = Cluster::start(3, |_| {}).await;
    let c1 = c.client(0).await;
    let c2 = c.client(1).await;
    let c3 = c.client(2).await;

    // UNSUB: the node drops the weft subscription and its interest.
    let mut s = c1.subscribe("u.a").await.unwrap();
    settle(&c, &c1, "marker.u1").await;
    c2.publish("u.a", Bytes::from("1")).await.unwrap();
    c2.flush().await.unwrap();
    assert_eq!(next_text(&mut s).await, "1");
    s.unsubscribe().await.unwrap();
    c1.flush().await.unwrap();
    wait_for("u.a interest gone", || {
        c.nodes.iter().all(|n| !n.pubsub().has_interest("u.a"))
    })
    .await;

    // UNSUB with max: exactly N, then the server retires it.
    let mut s = c1.subscribe("u.b").await.unwrap();
    s.unsubscribe_after(3).await.unwrap();
    settle(&c, &c1, "marker.u2").await;
    for i in 0..5 {
        c2.publish("u.b", Bytes::from(i.to_string())).await.unwrap();
    }
    c2.flush().await.unwrap();
    for i in 0..3 {
        assert_eq!(next_text(&mut s).await, i.to_string());
    }
    assert!(
        tokio::time::timeout(LIMIT, s.next())
            .await
            .expect("ends")
            .is_none()
    );
    wait_for("u.b retired by the server", || {
        c.nodes[0]
            .pubsub()
            .local_interest()
            .iter()
            .all(|(p, _, _)| p != "u.b")
    })
    .await;

    // Request/reply across nodes.
    let mut svc = c2.subscribe("svc.echo").await.unwrap();
    let responder = c2.clone();
    let task = tokio::spawn(async move {
        while let Some(m) = svc.next().await {
            if let Some(reply) = m.reply {
                let mut body = b"re:".to_vec();
                body.extend_from_slice(&m.payload);
                responder.publish(reply, body.into()).await.unwrap();
            }
        }
    });
    c2.flush().await.unwrap();
    c.interest_everywhere("svc.echo").await;
    for (i, client) in [&c1, &c3, &c1].into_iter().enumerate() {
        let r = tokio::time::timeout(LIMIT, client.request("svc.echo", Bytes::from(format!("q{i}"))))
            .await
            .expect("in time")
            .expect("a reply");
        assert_eq!(&r.payload[..], format!("re:q{i}").as_bytes());
    }

    // Nobody listens: async-nats gets the 503 status at once.
    let err = tokio::time::timeout(LIMIT, c3.request("svc.nobody", Bytes::from("x")))
        .await
        .expect("in time")
        .expect_err("no responders");
    assert_eq!(err.kind(), async_nats::client::RequestErrorKind::NoResponders);
    assert_eq!(c.servers[2].stats().no_responders, 1);
    task.abort();
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_publisher_order_over_ten_thousand_messages() {
    let c = Cluster::start(3, |_| {}).await;
    let c1 = c.client(0).await;
    let c2 = c.client(1).await;
    let mut s = c1.subscribe("seq").await.unwrap();
    settle(&c, &c1, "marker.seq").await;
    const N: u64 = 10_000;
    let publisher = tokio::spawn(async move {
        for i in 0..N {
            c2.publish("seq", Bytes::from(i.to_string())).await.unwrap();
        }
        c2.flush().await.unwrap();
        c2
    });
    for i in 0..N {
        assert_eq!(next_text(&mut s).await, i.to_string(), "order from one publisher");
    }
    publisher.await.unwrap();
    assert!(c.servers[0].stats().msgs_out >= N);
    assert_eq!(c.servers[1].stats().msgs_in, N);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_payload_and_a_thousand_subjects() {
    let c = Cluster::start(3, |cfg| cfg.max_payload = 1024).await;
    let c1 = c.client(0).await;
    let c2 = c.client(1).await;
    assert_eq!(c1.server_info().max_payload, 1024);

    // Too large: refused by the client before sending; the connection
    // stays usable.
    let mut small = c2.subscribe("payload.small").await.unwrap();
    settle(&c, &c2, "marker.p").await;
    let err = c1
        .publish("payload.small", Bytes::from(vec![7u8; 2048]))
        .await
        .expect_err("over max_payload");
    assert_eq!(
        err.kind(),
        async_nats::client::PublishErrorKind::MaxPayloadExceeded
    );
    c1.publish("payload.small", Bytes::from(vec![1u8; 1024]))
        .await
        .unwrap();
    c1.flush().await.unwrap();
    assert_eq!(next(&mut small).await.payload.len(), 1024);

    // A thousand subjects at once.
    const N: usize = 1000;
    let mut subs = Vec::with_capacity(N);
    for i in 0..N {
        subs.push(c2.subscribe(format!("many.{i}")).await.unwrap());
    }
    settle(&c, &c2, "marker.many").await;
    for i in 0..N {
        c1.publish(format!("many.{i}"), Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    c1.flush().await.unwrap();
    for (i, s) in subs.iter_mut().enumerate() {
        assert_eq!(next_text(s).await, i.to_string());
    }
    assert!(c.servers[1].stats().subscriptions >= N as u64);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_and_user_password_authentication() {
    let c = Cluster::start(1, |cfg| cfg.auth = weft_nats::Auth::Token("s3cret".into())).await;
    let bad = tokio::time::timeout(Duration::from_secs(5), async_nats::connect(c.url(0))).await;
    assert!(!matches!(bad, Ok(Ok(_))), "no token: refused");
    let good = async_nats::ConnectOptions::with_token("s3cret".into())
        .connect(c.url(0))
        .await
        .expect("token accepted");
    good.flush().await.unwrap();
    assert!(c.servers[0].stats().auth_failures >= 1);

    let mut cfg = weft_nats::NatsConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.auth = weft_nats::Auth::UserPassword {
        user: "ann".into(),
        password: "pw".into(),
    };
    let up = weft_nats::NatsServer::start(c.nodes[0].clone(), cfg)
        .await
        .unwrap();
    let url = format!("nats://{}", up.local_addr());
    let wrong = async_nats::ConnectOptions::new()
        .user_and_password("ann".into(), "nope".into())
        .connect(url.clone())
        .await;
    assert!(wrong.is_err());
    let right = async_nats::ConnectOptions::new()
        .user_and_password("ann".into(), "pw".into())
        .connect(url)
        .await
        .expect("user and password accepted");
    // Both servers share the node's pub/sub.
    let mut s = right.subscribe("auth.x").await.unwrap();
    // async-nats' flush only writes its buffer: wait for the node instead.
    wait_for("auth.x subscribed", || c.nodes[0].pubsub().has_interest("auth.x")).await;
    good.publish("auth.x", Bytes::from("ok")).await.unwrap();
    good.flush().await.unwrap();
    assert_eq!(next_text(&mut s).await, "ok");
    up.shutdown(Duration::from_millis(500)).await;
    c.stop().await;
}
