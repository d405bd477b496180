//! Pub/sub across real loopback nodes: wildcards, queue groups, interest
//! propagation, request/reply, slow consumers, hostile input.

mod common;
#[path = "common/raw_peer.rs"]
mod raw_peer;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::{SECRET, linked_cluster, stop, wait_for};
use weft::weft_proto::frame::{Header, Publish};
use weft::weft_proto::registry::{EntryKey, Msg, table};
use weft::weft_proto::{Frame, NodeId};
use weft::{Node, PubMsg, PubSubError, SinkResult, Subscription};

const LIMIT: Duration = Duration::from_secs(30);

async fn cluster(n: usize) -> Vec<Node> {
    linked_cluster(n, |_| {}).await
}

fn text(m: &PubMsg) -> String {
    String::from_utf8_lossy(&m.payload).to_string()
}

/// Waits until `sub` has received `n` messages; returns them.
async fn take(sub: &Subscription, n: usize) -> Vec<PubMsg> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(LIMIT, sub.next()).await {
            Ok(Some(m)) => out.push(m),
            _ => panic!("got {} of {n} messages on {}", out.len(), sub.pattern()),
        }
    }
    out
}

/// Patterns `n` knows of `peer` (every node also advertises its request
/// inbox, one pattern).
fn interest_of(n: &Node, peer: &str) -> usize {
    n.pubsub().remote_interest().get(peer).copied().unwrap_or(0)
}

fn publishes_to(n: &Node, peer: &str) -> u64 {
    n.stats().peers.get(peer).map(|p| p.publishes_sent).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcards_locally_and_across_nodes() {
    let nodes = cluster(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let star_a = a.pubsub().subscribe("foo.*").expect("sub");
    let gt_a = a.pubsub().subscribe("foo.>").expect("sub");
    let star_b = b.pubsub().subscribe("foo.*").expect("sub");
    let gt_b = b.pubsub().subscribe("foo.>").expect("sub");
    wait_for("interest on a", LIMIT, || interest_of(a, "n2") == 3).await;
    for s in ["foo.a", "foo.a.b", "foo"] {
        a.pubsub()
            .publish(s, Bytes::from(s.to_string()))
            .await
            .expect("publish");
    }
    // A marker on a subject everyone matches closes each stream.
    a.pubsub()
        .publish("foo.end", Bytes::from_static(b"end"))
        .await
        .expect("publish");
    for (sub, want) in [
        (&star_a, vec!["foo.a", "end"]),
        (&gt_a, vec!["foo.a", "foo.a.b", "end"]),
        (&star_b, vec!["foo.a", "end"]),
        (&gt_b, vec!["foo.a", "foo.a.b", "end"]),
    ] {
        let got: Vec<String> = take(sub, want.len()).await.iter().map(text).collect();
        assert_eq!(got, want, "pattern {}", sub.pattern());
    }
    // Invalid subjects and patterns are refused with a clear error.
    assert!(matches!(
        a.pubsub().subscribe("foo..bar"),
        Err(PubSubError::Subject(_))
    ));
    assert!(matches!(
        a.pubsub().subscribe("foo.>.bar"),
        Err(PubSubError::Subject(_))
    ));
    assert!(matches!(
        a.pubsub().publish("foo.*", Bytes::new()).await,
        Err(PubSubError::Subject(_))
    ));
    assert!(matches!(
        a.pubsub().publish("a b", Bytes::new()).await,
        Err(PubSubError::Subject(_))
    ));
    drop((star_a, gt_a, star_b, gt_b));
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_group_on_three_nodes_delivers_each_message_once() {
    let nodes = cluster(3).await;
    let workers: Vec<Subscription> = nodes
        .iter()
        .flat_map(|n| (0..2).map(move |_| n.pubsub().queue_subscribe("jobs.*", "workers").expect("qsub")))
        .collect();
    let plain = nodes[1].pubsub().subscribe("jobs.>").expect("sub");
    wait_for("queue interest known", LIMIT, || {
        interest_of(&nodes[0], "n2") == 3 && interest_of(&nodes[0], "n3") == 2
    })
    .await;
    for i in 0..300u32 {
        nodes[0]
            .pubsub()
            .publish("jobs.x", Bytes::from(i.to_string()))
            .await
            .expect("publish");
    }
    let all = take(&plain, 300).await;
    assert_eq!(all.len(), 300, "the plain subscriber gets every message");
    // Every message reaches exactly one worker.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    wait_for("300 deliveries in the group", LIMIT, || {
        for w in &workers {
            let mut got = Vec::new();
            w.drain_into(&mut got);
            for m in got {
                *seen.entry(text(&m)).or_default() += 1;
            }
        }
        seen.values().sum::<usize>() >= 300
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for w in &workers {
        let mut got = Vec::new();
        w.drain_into(&mut got);
        for m in got {
            *seen.entry(text(&m)).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 300, "every message delivered");
    assert!(seen.values().all(|c| *c == 1), "exactly once across the group");
    stop(nodes).await;
}

/// One member of group `q` on each of the three nodes; 3,000 messages
/// published on n1. Returns how many each node's member got, after
/// checking that every message reached exactly one member.
async fn spread_of_3000(nodes: &[Node]) -> [usize; 3] {
    let members: Vec<Subscription> = nodes
        .iter()
        .map(|n| {
            n.pubsub()
                .subscribe_with_capacity("spread.job", Some("q"), 16 * 1024 * 1024)
                .expect("qsub")
        })
        .collect();
    wait_for("every node's member known on n1", LIMIT, || {
        interest_of(&nodes[0], "n2") == 2 && interest_of(&nodes[0], "n3") == 2
    })
    .await;
    for i in 0..3000u32 {
        nodes[0]
            .pubsub()
            .publish("spread.job", Bytes::from(i.to_string()))
            .await
            .expect("publish");
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_node = [0usize; 3];
    wait_for("3,000 deliveries in the group", LIMIT, || {
        for (i, m) in members.iter().enumerate() {
            let mut got = Vec::new();
            per_node[i] += m.drain_into(&mut got);
            for msg in got {
                *seen.entry(text(&msg)).or_default() += 1;
            }
        }
        seen.values().sum::<usize>() >= 3000
    })
    .await;
    // Anything delivered twice would arrive with the rest: one more look
    // after the links have carried everything sent.
    wait_for("links idle", LIMIT, || {
        nodes.iter().skip(1).all(|n| {
            n.stats()
                .peers
                .get("n1")
                .map(|p| p.publishes_received)
                .unwrap_or(0)
                == publishes_to(&nodes[0], &n.id().name)
        })
    })
    .await;
    for (i, m) in members.iter().enumerate() {
        let mut got = Vec::new();
        per_node[i] += m.drain_into(&mut got);
        for msg in got {
            *seen.entry(text(&msg)).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 3000, "every message delivered");
    assert!(seen.values().all(|c| *c == 1), "exactly once across the group");
    assert_eq!(per_node.iter().sum::<usize>(), 3000);
    per_node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_group_spreads_over_the_cluster_by_default() {
    let nodes = cluster(3).await;
    let per_node = spread_of_3000(&nodes).await;
    for (i, got) in per_node.iter().enumerate() {
        assert!(
            (800..=1200).contains(got),
            "n{} got {got} of 3,000 (share 1,000 +-20 %): {per_node:?}",
            i + 1
        );
    }
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_group_stays_on_the_publishers_node_with_local_locality() {
    let nodes = linked_cluster(3, |c| c.pubsub.queue_locality = weft::QueueLocality::Local).await;
    let per_node = spread_of_3000(&nodes).await;
    assert_eq!(per_node, [3000, 0, 0], "a local member takes every message");
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_groups_spread_over_remote_nodes_by_member_count() {
    let nodes = cluster(3).await;
    // No local member on n1: the group is served by n2 (1 member) and n3
    // (3 members), in proportion.
    let w2 = nodes[1].pubsub().queue_subscribe("work", "q").expect("qsub");
    let w3: Vec<Subscription> = (0..3)
        .map(|_| nodes[2].pubsub().queue_subscribe("work", "q").expect("qsub"))
        .collect();
    wait_for("counts known", LIMIT, || nodes[0].pubsub().has_interest("work")).await;
    wait_for("n2 and n3 interest", LIMIT, || {
        interest_of(&nodes[0], "n2") == 2 && interest_of(&nodes[0], "n3") == 2
    })
    .await;
    // Member counts are updated in place; give the last update a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..400u32 {
        nodes[0]
            .pubsub()
            .publish("work", Bytes::from(i.to_string()))
            .await
            .expect("publish");
    }
    let mut on2 = 0;
    let mut on3 = 0;
    wait_for("400 delivered", LIMIT, || {
        let mut got = Vec::new();
        on2 += w2.drain_into(&mut got);
        for w in &w3 {
            on3 += w.drain_into(&mut got);
        }
        on2 + on3 == 400
    })
    .await;
    assert!(on3 > on2, "n3 has three times the members: {on2} vs {on3}");
    assert!(on2 > 0, "n2 serves its share");
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interest_propagation_unsubscribe_late_subscriber_and_no_stray_frames() {
    let nodes = cluster(3).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let sub_b = b.pubsub().subscribe("news.>").expect("sub");
    wait_for("a knows b's interest", LIMIT, || {
        a.pubsub().has_interest("news.x")
    })
    .await;
    let before_c = publishes_to(a, "n3");
    a.pubsub()
        .publish("news.x", Bytes::from_static(b"1"))
        .await
        .expect("publish");
    assert_eq!(text(&take(&sub_b, 1).await[0]), "1");
    // A subject nobody on n3 wants never crosses to n3.
    for i in 0..50 {
        a.pubsub()
            .publish("news.x", Bytes::from(format!("x{i}")))
            .await
            .expect("publish");
        a.pubsub()
            .publish("other.y", Bytes::from_static(b"nobody"))
            .await
            .expect("publish");
    }
    take(&sub_b, 50).await;
    assert_eq!(
        publishes_to(a, "n3"),
        before_c,
        "no frame to a node without interest"
    );
    assert_eq!(publishes_to(a, "n2"), 51, "exactly one frame per message to n2");

    // A late subscriber on n3 gets later messages.
    let sub_c = c.pubsub().subscribe("news.*").expect("sub");
    wait_for("a knows c's interest", LIMIT, || interest_of(a, "n3") == 2).await;
    a.pubsub()
        .publish("news.late", Bytes::from_static(b"late"))
        .await
        .expect("publish");
    assert_eq!(text(&take(&sub_c, 1).await[0]), "late");

    // Unsubscribe on n2 stops delivery from n1 once propagated.
    drop(sub_b);
    wait_for("b's interest withdrawn", LIMIT, || interest_of(a, "n2") == 1).await;
    let sent_b = publishes_to(a, "n2");
    a.pubsub()
        .publish("news.after", Bytes::from_static(b"after"))
        .await
        .expect("publish");
    assert_eq!(text(&take(&sub_c, 1).await[0]), "after");
    assert_eq!(
        publishes_to(a, "n2"),
        sent_b,
        "nothing sent to n2 after it unsubscribed"
    );
    // Interest is announced on edges only: two plain subscriptions of one
    // pattern are one registry entry.
    let x1 = c.pubsub().subscribe("edge.x").expect("sub");
    let x2 = c.pubsub().subscribe("edge.x").expect("sub");
    assert_eq!(
        c.pubsub()
            .local_interest()
            .iter()
            .find(|(p, _, _)| p == "edge.x")
            .map(|(_, _, n)| *n),
        Some(2)
    );
    drop((x1, x2, sub_c));
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_reply_and_no_responders() {
    let nodes = cluster(2).await;
    let (a, b) = (nodes[0].clone(), nodes[1].clone());
    assert!(matches!(
        a.pubsub()
            .request("svc.echo", Bytes::from_static(b"x"))
            .timeout(LIMIT)
            .await,
        Err(PubSubError::NoResponders(_))
    ));
    let service = b.pubsub().subscribe("svc.echo").expect("sub");
    let responder = tokio::spawn(async move {
        while let Some(m) = service.next().await {
            let Some(reply) = m.reply.clone() else { continue };
            b.pubsub()
                .publish(&reply, m.payload.clone())
                .await
                .expect("reply");
        }
    });
    wait_for("interest", LIMIT, || a.pubsub().has_interest("svc.echo")).await;
    for i in 0..20 {
        let r = a
            .pubsub()
            .request("svc.echo", Bytes::from(format!("ping{i}")))
            .timeout(LIMIT)
            .await
            .expect("reply");
        assert_eq!(text(&r), format!("ping{i}"));
    }
    responder.abort();
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_drops_and_counts_without_stalling_others() {
    let nodes = cluster(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let slow = b
        .pubsub()
        .subscribe_with_capacity("flood", None, 4096)
        .expect("sub");
    let fast = b.pubsub().subscribe("flood").expect("sub");
    wait_for("interest", LIMIT, || a.pubsub().has_interest("flood")).await;
    for i in 0..2000u32 {
        a.pubsub()
            .publish("flood", Bytes::from(i.to_string()))
            .await
            .expect("publish");
    }
    let got = take(&fast, 2000).await;
    assert_eq!(
        text(&got[1999]),
        "1999",
        "the fast subscriber gets everything, in order"
    );
    assert!(slow.dropped() > 0, "the slow one drops");
    let queued = {
        let mut v = Vec::new();
        slow.drain_into(&mut v)
    };
    assert_eq!(
        queued as u64 + slow.dropped(),
        2000,
        "every message queued or counted"
    );
    assert_eq!(
        b.stats()
            .frames_dropped
            .get("slow_consumer")
            .copied()
            .unwrap_or(0),
        slow.dropped()
    );
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_subscriptions_call_their_sink_in_order_and_count_full_as_dropped() {
    use std::sync::{Arc, Mutex};
    let nodes = cluster(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    // A sink that takes 1000 messages, then answers Full.
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = got.clone();
    let direct = b
        .pubsub()
        .subscribe_direct(
            "direct.*",
            None,
            Arc::new(move |m: &PubMsg| {
                let mut v = seen.lock().unwrap();
                if v.len() >= 1000 {
                    return SinkResult::Full;
                }
                v.push(format!("{} {}", m.subject, text(m)));
                SinkResult::Delivered
            }),
        )
        .expect("subscribe_direct");
    assert_eq!(direct.pattern(), "direct.*");
    assert_eq!(direct.queue_group(), None);
    // A queued subscription on the same subject still gets everything.
    let queued = b.pubsub().subscribe("direct.x").expect("sub");
    wait_for("interest", LIMIT, || a.pubsub().has_interest("direct.x")).await;
    for i in 0..1500u32 {
        a.pubsub()
            .publish("direct.x", Bytes::from(i.to_string()))
            .await
            .expect("publish");
    }
    let all = take(&queued, 1500).await;
    assert_eq!(text(&all[1499]), "1499");
    wait_for("sink saw everything", LIMIT, || direct.dropped() == 500).await;
    let v = got.lock().unwrap().clone();
    let want: Vec<String> = (0..1000).map(|i| format!("direct.x {i}")).collect();
    assert_eq!(v, want, "in publish order, nothing lost before Full");
    assert_eq!(
        b.stats()
            .frames_dropped
            .get("slow_consumer")
            .copied()
            .unwrap_or(0),
        500,
        "Full counts as a slow-consumer drop"
    );
    // Local publishes reach the sink too; after unsubscribe nothing does.
    got.lock().unwrap().clear();
    b.pubsub()
        .publish("direct.local", Bytes::from_static(b"here"))
        .await
        .expect("publish");
    assert_eq!(*got.lock().unwrap(), vec!["direct.local here".to_string()]);
    direct.unsubscribe();
    wait_for("interest gone", LIMIT, || !a.pubsub().has_interest("direct.y")).await;
    b.pubsub()
        .publish("direct.y", Bytes::from_static(b"late"))
        .await
        .expect("publish");
    assert_eq!(got.lock().unwrap().len(), 1);
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_interest_and_subjects_from_the_wire_are_refused() {
    let nodes = cluster(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut x = raw_peer::dial(a.addr(), "test", NodeId::new("x", 1), SECRET)
        .await
        .expect("x authenticates");
    // Interest claimed for n2 by x: foreign origin.
    let claim = Msg::Delta {
        origin: b.id().clone(),
        from_version: 0,
        to_version: 1,
        ops: vec![weft::weft_proto::registry::Op::Put(
            EntryKey::new(table::INTEREST, "steal.>\0"),
            postcard::to_allocvec(&1u32).expect("enc"),
        )],
    };
    x.send(&Frame {
        header: Header::Registry,
        payload: Bytes::from(postcard::to_allocvec(&claim).expect("enc")),
    })
    .await;
    // A publish with an invalid subject from the wire.
    x.send(&Frame {
        header: Header::Publish(Publish {
            subject: "bad..subject".into(),
            reply: None,
            headers: vec![],
            queues: vec![],
        }),
        payload: Bytes::new(),
    })
    .await;
    wait_for("foreign interest refused", LIMIT, || {
        a.stats()
            .registry_rejected
            .get("foreign_origin")
            .copied()
            .unwrap_or(0)
            >= 1
    })
    .await;
    wait_for("invalid subject counted", LIMIT, || {
        a.stats()
            .frames_dropped
            .get("invalid_subject")
            .copied()
            .unwrap_or(0)
            >= 1
    })
    .await;
    assert!(!a.pubsub().has_interest("steal.it"));
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_subscriptions_on_one_node() {
    let nodes = cluster(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut subs = Vec::with_capacity(100_000);
    for i in 0..100_000u32 {
        subs.push(
            b.pubsub()
                .subscribe_with_capacity(&format!("many.{}.{i}", i % 100), None, 1024)
                .expect("sub"),
        );
    }
    assert_eq!(b.pubsub().local_interest().len(), 100_000);
    wait_for("all interest propagated", Duration::from_secs(120), || {
        interest_of(a, "n2") == 100_001
    })
    .await;
    a.pubsub()
        .publish("many.42.77742", Bytes::from_static(b"hit"))
        .await
        .expect("publish");
    assert_eq!(text(&take(&subs[77_742], 1).await[0]), "hit");
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_batch_keeps_order_routes_like_publish_and_reports_refusals() {
    let nodes = cluster(3).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let local = a.pubsub().subscribe("batch.*").expect("sub");
    let on_b = b.pubsub().subscribe("batch.>").expect("sub");
    let group_b = b.pubsub().queue_subscribe("batch.q", "workers").expect("sub");
    let group_c = c.pubsub().queue_subscribe("batch.q", "workers").expect("sub");
    wait_for("interest on a", LIMIT, || {
        interest_of(a, "n2") == 3 && interest_of(a, "n3") == 2
    })
    .await;
    let msg = |subject: &str, body: String| PubMsg {
        subject: subject.to_string(),
        reply: None,
        headers: vec![],
        payload: Bytes::from(body),
    };
    let mut batch: Vec<PubMsg> = (0..200).map(|i| msg("batch.x", i.to_string())).collect();
    batch.insert(3, msg("batch.*", "wildcard".into()));
    batch.insert(7, msg("bad subject", "space".into()));
    batch.extend((0..100).map(|i| msg("batch.q", format!("q{i}"))));
    let sent_before = publishes_to(a, "n2");
    let refused = a.pubsub().publish_batch(batch).await;
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(refused[0].0, 3);
    assert_eq!(refused[1].0, 7);
    assert!(refused.iter().all(|(_, e)| matches!(e, PubSubError::Subject(_))));
    // Per-publisher order, locally and on the other node.
    let want: Vec<String> = (0..200)
        .map(|i| i.to_string())
        .chain((0..100).map(|i| format!("q{i}")))
        .collect();
    for sub in [&local, &on_b] {
        let got: Vec<String> = take(sub, want.len()).await.iter().map(text).collect();
        assert_eq!(got, want, "pattern {}", sub.pattern());
    }
    // The queue group gets each of its messages exactly once across nodes.
    let mut got = Vec::new();
    while got.len() < 100 {
        tokio::select! {
            Some(m) = group_b.next() => got.push(text(&m)),
            Some(m) = group_c.next() => got.push(text(&m)),
            _ = tokio::time::sleep(LIMIT) => panic!("queue group got {} of 100", got.len()),
        }
    }
    got.sort();
    let mut want_q: Vec<String> = (0..100).map(|i| format!("q{i}")).collect();
    want_q.sort();
    assert_eq!(got, want_q);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        group_b.try_next().is_none() && group_c.try_next().is_none(),
        "a queue message was delivered twice"
    );
    // Counted per frame by the link: 300 plain frames to n2 at least.
    assert!(publishes_to(a, "n2") - sent_before >= 300);
    drop((local, on_b, group_b, group_c));
    stop(nodes).await;
}
