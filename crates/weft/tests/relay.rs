//! Live stream relay across real loopback nodes.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{config, linked_cluster, sees_up, stop, wait_for};
use weft::{
    Node, NodeConfig, StreamClosed, StreamError, StreamEvent, StreamFrame, StreamPolicy, StreamSubscription,
};

const LIMIT: Duration = Duration::from_secs(30);

fn tune(c: &mut NodeConfig) {
    c.relay.linger = Duration::from_millis(300);
}

async fn cluster(n: usize) -> Vec<Node> {
    linked_cluster(n, tune).await
}

/// Frame `seq`; a keyframe every `gop` frames.
fn frame(seq: u64, gop: u64) -> StreamFrame {
    StreamFrame {
        seq,
        timestamp: seq * 40,
        keyframe: seq.is_multiple_of(gop),
        config: false,
        payload: Bytes::from(seq.to_be_bytes().to_vec()),
    }
}

async fn next_frame(sub: &StreamSubscription) -> StreamFrame {
    loop {
        match tokio::time::timeout(LIMIT, sub.next()).await {
            Ok(Ok(StreamEvent::Frame(f))) => return f,
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => panic!("stream ended: {e}"),
            Err(_) => panic!("no frame within {LIMIT:?}"),
        }
    }
}

fn sent_to(n: &Node, peer: &str) -> u64 {
    n.stats()
        .peers
        .get(peer)
        .map(|p| p.stream_frames_sent)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_mirrors_origin_with_replay_then_live_and_one_upstream() {
    let nodes = cluster(3).await;
    let (origin, edge) = (&nodes[0], &nodes[1]);
    assert!(matches!(
        edge.streams().subscribe("live/none").await,
        Err(StreamError::NotFound(_))
    ));
    let publisher = origin
        .streams()
        .publish("live/cam1", StreamPolicy::default())
        .expect("publish");
    publisher
        .send(StreamFrame {
            seq: 0,
            timestamp: 0,
            keyframe: false,
            config: true,
            payload: Bytes::from_static(b"codec-header"),
        })
        .expect("config");
    for seq in 1..=25 {
        publisher.send(frame(seq, 10)).expect("send");
    }
    wait_for("edge locates the origin", LIMIT, || {
        edge.streams().locate("live/cam1").is_some()
    })
    .await;
    assert_eq!(edge.streams().locate("live/cam1").as_deref(), Some("n1"));
    assert_eq!(
        origin.streams().locate("live/cam1"),
        None,
        "locate never returns the local node"
    );

    // 50 viewers on the edge: replay buffer (config + GOP from keyframe 20)
    // then live frames.
    let mut subs: Vec<StreamSubscription> = Vec::new();
    for _ in 0..50 {
        subs.push(edge.streams().subscribe("live/cam1").await.expect("subscribe"));
    }
    for s in &subs {
        let cfg = next_frame(s).await;
        assert!(cfg.config, "configuration first");
        let first = next_frame(s).await;
        assert_eq!(first.seq, 20, "a late viewer starts at the last keyframe");
        assert!(first.keyframe);
        for want in 21..=25 {
            assert_eq!(next_frame(s).await.seq, want);
        }
    }
    for seq in 26..=60 {
        publisher.send(frame(seq, 10)).expect("send");
    }
    for s in &subs {
        for want in 26..=60 {
            assert_eq!(next_frame(s).await.seq, want);
        }
    }
    // One upstream: the origin sent each frame to the edge once (26
    // replayed + 35 live), whatever the number of viewers.
    assert_eq!(sent_to(origin, "n2"), 1 + 6 + 35);
    assert_eq!(edge.stats().stream_pulls, 1);
    assert_eq!(sent_to(origin, "n3"), 0, "no viewer on n3, nothing sent there");
    let info = edge.streams().list();
    assert_eq!(info[0].role, "edge");
    assert_eq!(info[0].subscribers, 50);

    // Idle teardown after the last viewer leaves (linger 300 ms).
    drop(subs);
    wait_for("edge stops pulling", LIMIT, || edge.stats().stream_teardowns == 1).await;
    wait_for("origin forgets the edge", LIMIT, || {
        origin.streams().list()[0].edges.is_empty()
    })
    .await;
    let before = sent_to(origin, "n2");
    publisher.send(frame(61, 10)).expect("send");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sent_to(origin, "n2"), before, "nothing sent after teardown");

    // Withdraw clears the entry everywhere.
    drop(publisher);
    wait_for("withdrawn", LIMIT, || {
        edge.streams().locate("live/cam1").is_none()
    })
    .await;
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gapless_attach_over_10000_frames() {
    let mut nodes = Vec::new();
    for (name, seed) in [("n1", None), ("n2", Some(0))] {
        let seeds: Vec<_> = seed
            .map(|i: usize| nodes.iter().map(|n: &Node| n.addr()).nth(i))
            .into_iter()
            .flatten()
            .collect();
        let mut c = config(name, &seeds);
        // Viewers read after the whole run: room for every frame, so any
        // gap would be a relay bug, not the lag policy.
        c.relay.subscriber_frames = 20_000;
        nodes.push(Node::start(c).await.expect("node"));
    }
    for n in &nodes {
        wait_for("up", LIMIT, || sees_up(n, &["n1", "n2"])).await;
    }
    wait_for("linked", LIMIT, || {
        nodes[0].membership().is_linked("n2") && nodes[1].membership().is_linked("n1")
    })
    .await;
    let (origin, edge) = (nodes[0].clone(), nodes[1].clone());
    let publisher = origin
        .streams()
        .publish("live/gapless", StreamPolicy::default())
        .expect("publish");
    publisher.send(frame(0, 50)).expect("send");
    wait_for("located", LIMIT, || {
        edge.streams().locate("live/gapless").is_some()
    })
    .await;
    let feeder = tokio::spawn(async move {
        for seq in 1..10_000u64 {
            publisher.send(frame(seq, 50)).expect("send");
            if seq % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
        publisher
    });
    // Viewers attach while frames flow, on the origin and on the edge.
    let mut subs = Vec::new();
    for i in 0..6 {
        let node = if i % 2 == 0 { &origin } else { &edge };
        subs.push(node.streams().subscribe("live/gapless").await.expect("subscribe"));
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let publisher = feeder.await.expect("feeder");
    for s in &subs {
        let first = next_frame(s).await;
        assert!(first.keyframe, "starts at a keyframe");
        let mut last = first.seq;
        while last < 9_999 {
            let f = next_frame(s).await;
            assert_eq!(f.seq, last + 1, "no gap, no duplicate");
            last = f.seq;
        }
    }
    assert_eq!(origin.stats().stream_frames_skipped, 0);
    assert_eq!(edge.stats().stream_frames_skipped, 0);
    drop(publisher);
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_a_standby_origin_then_origin_lost() {
    let nodes = cluster(3).await;
    let (primary, standby, edge) = (nodes[0].clone(), nodes[1].clone(), nodes[2].clone());
    let p1 = primary
        .streams()
        .publish(
            "live/ha",
            StreamPolicy {
                priority: 200,
                ..Default::default()
            },
        )
        .expect("primary");
    let p2 = standby
        .streams()
        .publish(
            "live/ha",
            StreamPolicy {
                priority: 100,
                ..Default::default()
            },
        )
        .expect("standby");
    wait_for("both recorded", LIMIT, || {
        edge.streams()
            .list()
            .first()
            .is_some_and(|s| s.origins.len() == 2)
    })
    .await;
    assert_eq!(
        edge.streams().locate("live/ha").as_deref(),
        Some("n1"),
        "highest priority wins"
    );
    for seq in 0..5 {
        p1.send(frame(seq, 5)).expect("send");
        p2.send(frame(1000 + seq, 5)).expect("send");
    }
    let sub = edge.streams().subscribe("live/ha").await.expect("subscribe");
    assert_eq!(next_frame(&sub).await.seq, 0);

    // The primary crashes: the edge re-pulls from the standby and the
    // subscriber continues after a discontinuity marker.
    primary.abort();
    p2.send(frame(1005, 5)).expect("send");
    let mut saw_marker = false;
    loop {
        match tokio::time::timeout(LIMIT, sub.next()).await.expect("event") {
            Ok(StreamEvent::Discontinuity { origin }) => {
                assert_eq!(origin, "n2");
                saw_marker = true;
            }
            Ok(StreamEvent::Frame(f)) if saw_marker => {
                assert!(f.seq >= 1000, "frames now come from the standby");
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("subscription ended: {e}"),
        }
    }
    assert_eq!(edge.stats().stream_failovers, 1);

    // The standby finishes too: no origin left, the subscription ends.
    drop(p2);
    loop {
        match tokio::time::timeout(LIMIT, sub.next()).await.expect("event") {
            Ok(_) => continue,
            Err(reason) => {
                assert!(matches!(
                    reason,
                    StreamClosed::Finished | StreamClosed::OriginLost
                ));
                break;
            }
        }
    }
    drop(p1);
    stop(vec![standby, edge]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_origin_ends_viewers_with_origin_lost() {
    let nodes = cluster(2).await;
    let (origin, edge) = (nodes[0].clone(), nodes[1].clone());
    let p = origin
        .streams()
        .publish("live/solo", StreamPolicy::default())
        .expect("publish");
    p.send(frame(0, 5)).expect("send");
    wait_for("located", LIMIT, || edge.streams().locate("live/solo").is_some()).await;
    let sub = edge.streams().subscribe("live/solo").await.expect("subscribe");
    assert_eq!(next_frame(&sub).await.seq, 0);
    origin.abort();
    let end = loop {
        match tokio::time::timeout(LIMIT, sub.next()).await.expect("event") {
            Ok(_) => continue,
            Err(reason) => break reason,
        }
    };
    assert_eq!(end, StreamClosed::OriginLost);
    wait_for("entry purged", LIMIT, || {
        edge.streams().locate("live/solo").is_none()
    })
    .await;
    // Waiting for a stream that never comes times out with NotFound.
    let e = edge
        .streams()
        .subscribe_wait("live/solo", Duration::from_millis(200))
        .await;
    assert!(
        matches!(e, Err(StreamError::NotFound(_))),
        "{:?}",
        e.as_ref().map(|s| s.key().to_string())
    );
    drop(p);
    stop(vec![edge]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_wait_sees_a_later_origin() {
    let nodes = cluster(2).await;
    let (origin, edge) = (nodes[0].clone(), nodes[1].clone());
    let waiter = tokio::spawn(async move { edge.streams().subscribe_wait("live/later", LIMIT).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let p = origin
        .streams()
        .publish("live/later", StreamPolicy::default())
        .expect("publish");
    p.send(frame(0, 5)).expect("send");
    let sub = waiter.await.expect("join").expect("found");
    assert_eq!(next_frame(&sub).await.seq, 0);
    drop(sub);
    drop(p);
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_viewer_skips_to_the_next_keyframe_others_unaffected() {
    let mut c = config("n1", &[]);
    c.relay.subscriber_frames = 16;
    let node = Node::start(c).await.expect("n1");
    let p = node
        .streams()
        .publish("live/lag", StreamPolicy::default())
        .expect("publish");
    let slow = node.streams().subscribe("live/lag").await.expect("slow");
    let fast = node.streams().subscribe("live/lag").await.expect("fast");
    let mut fast_seen = Vec::new();
    for seq in 0..200u64 {
        p.send(frame(seq, 20)).expect("send");
        // The fast viewer keeps up; the slow one reads nothing.
        while let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_millis(1), fast.next()).await {
            if let StreamEvent::Frame(f) = ev {
                fast_seen.push(f.seq);
            }
        }
    }
    while fast_seen.last() != Some(&199) {
        if let StreamEvent::Frame(f) = tokio::time::timeout(LIMIT, fast.next())
            .await
            .expect("t")
            .expect("ev")
        {
            fast_seen.push(f.seq);
        }
    }
    assert_eq!(
        fast_seen,
        (0..200).collect::<Vec<_>>(),
        "the fast viewer got everything"
    );
    // One more GOP starts: the slow viewer resumes there.
    p.send(frame(200, 20)).expect("send");
    // The slow one: whatever it kept, then a skip marker, then a keyframe.
    let mut prev: Option<u64> = None;
    let mut skips = 0;
    let mut after_skip = false;
    while let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_millis(100), slow.next()).await {
        match ev {
            StreamEvent::Skipped { frames } => {
                assert!(frames > 0);
                skips += 1;
                after_skip = true;
            }
            StreamEvent::Frame(f) => {
                if after_skip {
                    assert!(f.keyframe, "resumes at a keyframe, seq {}", f.seq);
                    after_skip = false;
                } else if let Some(p) = prev {
                    assert_eq!(f.seq, p + 1, "no gap inside a run");
                }
                prev = Some(f.seq);
            }
            StreamEvent::Discontinuity { .. } => panic!("no failover here"),
        }
    }
    assert!(skips >= 1, "the slow viewer was told it skipped");
    assert!(node.stats().stream_frames_skipped > 0);
    drop((slow, fast, p));
    node.shutdown(Duration::from_millis(100)).await;
}

/// What a viewer must see once `subscribe_stream` returned while the
/// origin's last published sequence was `returned_at`: strictly increasing
/// frames, contiguous except right after a `Skipped`/`Discontinuity`
/// event, the first at or before `returned_at + 1`, up to `last`.
async fn check_contiguous(name: &str, sub: &StreamSubscription, returned_at: u64, last: u64) {
    let mut prev: Option<u64> = None;
    let mut seen = Vec::new();
    let mut marked = false;
    while prev != Some(last) {
        let ev = match tokio::time::timeout(LIMIT, sub.next()).await {
            Ok(Ok(ev)) => ev,
            Ok(Err(e)) => panic!("{name}: stream ended: {e}; saw {seen:?}"),
            Err(_) => panic!("{name}: nothing within {LIMIT:?} after {prev:?}"),
        };
        match ev {
            StreamEvent::Frame(f) => {
                match prev {
                    None => assert!(
                        marked || f.seq <= returned_at + 1,
                        "{name}: subscribe returned at {returned_at} but the first frame is {}",
                        f.seq
                    ),
                    Some(p) => assert!(
                        f.seq == p + 1 || (marked && f.seq > p),
                        "{name}: {} after {p} with no event naming the gap (returned at {returned_at})",
                        f.seq
                    ),
                }
                seen.push(f.seq);
                prev = Some(f.seq);
                marked = false;
            }
            StreamEvent::Skipped { frames } => {
                assert!(frames > 0, "{name}: empty skip");
                marked = true;
            }
            StreamEvent::Discontinuity { origin } => panic!("{name}: unexpected failover to {origin}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_published_right_after_an_edge_subscribe_returns_all_arrive() {
    // Issue 13: the edge's subscribe returned before the origin attached
    // it; a viewer got [5, 6, 7] of 1..=7 (keyframes 1 and 5) and no event.
    let nodes = cluster(2).await;
    let (origin, edge) = (nodes[0].clone(), nodes[1].clone());
    for round in 0..10 {
        let key = format!("live/attach{round}");
        let publisher = origin
            .streams()
            .publish(&key, StreamPolicy::default())
            .expect("publish");
        wait_for("located", LIMIT, || edge.streams().locate(&key).is_some()).await;
        let viewer = edge.streams().subscribe(&key).await.expect("subscribe");
        for seq in 1..=7u64 {
            publisher
                .send(frame(seq, 4).with_keyframe(seq == 1 || seq == 5))
                .expect("send");
        }
        let got: Vec<u64> = {
            let mut got = Vec::new();
            while got.len() < 7 {
                match tokio::time::timeout(LIMIT, viewer.next()).await.expect("event") {
                    Ok(StreamEvent::Frame(f)) => got.push(f.seq),
                    other => panic!("round {round}: unexpected {other:?} after {got:?}"),
                }
            }
            got
        };
        assert_eq!(got, (1..=7).collect::<Vec<_>>(), "round {round}");
        // A late viewer on the edge, already pulling: returns at once,
        // starts at keyframe 5, then every later frame.
        let late = edge.streams().subscribe(&key).await.expect("late");
        for seq in 8..=12u64 {
            publisher.send(frame(seq, 1000)).expect("send");
        }
        check_contiguous("late", &late, 7, 12).await;
        check_contiguous("first", &viewer, 7, 12).await;
    }
    assert_eq!(edge.stats().stream_pulls, 10, "one pull per stream");
    stop(nodes).await;
}

trait WithKeyframe {
    fn with_keyframe(self, keyframe: bool) -> Self;
}

impl WithKeyframe for StreamFrame {
    fn with_keyframe(mut self, keyframe: bool) -> Self {
        self.keyframe = keyframe;
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_subscribing_at_random_points_see_every_later_frame_or_an_event() {
    use rand::{RngExt, SeedableRng};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let seed: u64 = std::env::var("WEFT_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("seed {seed} (rerun with WEFT_TEST_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut nodes = Vec::new();
    for i in 1..=3 {
        let seeds: Vec<_> = nodes.first().map(|n: &Node| n.addr()).into_iter().collect();
        let mut c = config(&format!("n{i}"), &seeds);
        // Short linger: viewers leaving make edges tear down and attach
        // again while frames flow.
        c.relay.linger = Duration::from_millis(rng.random_range(0..30));
        c.relay.subscriber_frames = 20_000;
        nodes.push(Node::start(c).await.expect("node"));
    }
    for n in &nodes {
        wait_for("up", LIMIT, || sees_up(n, &["n1", "n2", "n3"])).await;
    }
    let origin = nodes[0].clone();
    let key = "live/random";
    let publisher = origin
        .streams()
        .publish(
            key,
            StreamPolicy {
                gop_max_frames: rng.random_range(4..64),
                ..Default::default()
            },
        )
        .expect("publish");
    for n in &nodes[1..] {
        wait_for("located", LIMIT, || n.streams().locate(key).is_some()).await;
    }
    const FRAMES: u64 = 3_000;
    let published = Arc::new(AtomicU64::new(0));
    let gop = rng.random_range(5..40u64);
    // Frames flow over a few hundred ms while viewers come and go.
    let pace = rng.random_range(5..30u64);
    let feeder = {
        let published = published.clone();
        tokio::spawn(async move {
            for seq in 1..=FRAMES {
                publisher.send(frame(seq, gop)).expect("send");
                published.store(seq, Ordering::SeqCst);
                if seq % pace == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            publisher
        })
    };
    // On n3, viewers each watch a few frames then leave, so n3 tears its
    // pull down and attaches again while frames (and frames of its
    // previous attach) are in flight.
    let churn = {
        let (edge, published) = (nodes[2].clone(), published.clone());
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
        tokio::spawn(async move {
            let mut rounds = 0;
            while rounds < 200 && published.load(Ordering::SeqCst) + 50 < FRAMES {
                let sub = edge.streams().subscribe(key).await.expect("subscribe");
                let at = published.load(Ordering::SeqCst);
                let name = format!("churn viewer {rounds} on n3 (seed {seed})");
                check_contiguous(&name, &sub, at, (at + 20).min(FRAMES)).await;
                drop(sub);
                rounds += 1;
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..40))).await;
            }
            rounds
        })
    };
    // Viewers come (and some go) at random points on n1 and n2.
    let mut viewers: Vec<(String, StreamSubscription, u64)> = Vec::new();
    for i in 0..24 {
        let node = &nodes[rng.random_range(0..2)];
        let sub = node.streams().subscribe(key).await.expect("subscribe");
        let at = published.load(Ordering::SeqCst);
        let name = format!("viewer {i} on {} (seed {seed})", node.id().name);
        if rng.random_bool(0.3) {
            drop(sub); // leaves: a later viewer may need a new attach
        } else {
            viewers.push((name, sub, at));
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..15))).await;
    }
    let publisher = feeder.await.expect("feeder");
    let rounds = churn.await.expect("churn");
    let mid = viewers
        .iter()
        .filter(|(_, _, at)| *at > 0 && *at < FRAMES)
        .count();
    eprintln!(
        "{} viewers checked, {mid} of them joined while frames flowed; {rounds} churn viewers",
        viewers.len()
    );
    for (name, sub, at) in &viewers {
        check_contiguous(name, sub, *at, FRAMES).await;
    }
    for n in &nodes[1..] {
        let st = n.stats();
        eprintln!(
            "{}: {} pulls, {} stale frames",
            n.id().name,
            st.stream_pulls,
            st.frames_dropped.get("stream_stale").copied().unwrap_or(0)
        );
    }
    drop(publisher);
    stop(nodes).await;
}
