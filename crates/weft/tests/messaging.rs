//! Mailboxes, names, calls and groups across real loopback nodes.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{linked_cluster, stop, wait_for};
use weft::{
    CallError, DeadLetter, DeadLetterReceiver, DeadReason, GroupEvent, Message, MessageError, Node, Target,
};

const LIMIT: Duration = Duration::from_secs(30);

async fn cluster(n: usize) -> Vec<Node> {
    linked_cluster(n, |_| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_tell_is_fifo_over_10000_messages() {
    common::logs();
    let nodes = cluster(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let inbox = b.mailboxes().spawn_with_capacity(64 << 20);
    let pid = inbox.pid().clone();
    let sender = a.mailboxes().spawn();
    let reader = tokio::spawn(async move {
        let mut next = 0u32;
        while next < 10_000 {
            let env = inbox.recv().await.expect("open");
            let n: u32 = env.message.decode().expect("u32");
            assert_eq!(n, next, "FIFO per sender→receiver");
            next += 1;
        }
        (inbox, next)
    });
    for i in 0..10_000u32 {
        sender
            .send(&pid, Message::typed("seq", &i).expect("encode"))
            .await
            .expect("send");
    }
    let (_inbox, got) = reader.await.expect("reader");
    assert_eq!(got, 10_000);
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_calls_and_errors_across_nodes() {
    let nodes = cluster(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let echo = b.mailboxes().spawn();
    b.mailboxes().register("echo", &echo).expect("register");
    assert!(
        b.mailboxes().register("echo", &b.mailboxes().spawn()).is_err(),
        "name taken"
    );
    let server = tokio::spawn(async move {
        while let Some(env) = echo.recv().await {
            if env.message.manifest == "stop" {
                break;
            }
            let reply = Message::new("echo.reply", env.message.payload.clone());
            echo.reply(&env, reply).await.expect("reply");
        }
    });
    wait_for("name visible on n1", LIMIT, || {
        !a.mailboxes().whereis("echo").is_empty()
    })
    .await;
    let pid = a.mailboxes().whereis("echo")[0].clone();
    assert_eq!(pid.node, "n2");

    // By pid and by name.
    let r = a
        .mailboxes()
        .call(&pid, Message::new("q", Bytes::from_static(b"hi")))
        .timeout(LIMIT)
        .await
        .expect("reply");
    assert_eq!(r.payload.as_ref(), b"hi");
    let named = Target::Named {
        node: "n2".into(),
        name: "echo".into(),
    };
    let r = a
        .mailboxes()
        .call(named, Message::new("q", Bytes::from_static(b"yo")))
        .timeout(LIMIT)
        .await
        .expect("reply");
    assert_eq!(r.manifest, "echo.reply");

    // A pid that does not exist: a typed error, counted on the far side.
    let ghost = weft::Pid {
        id: 999_999,
        ..pid.clone()
    };
    let e = a
        .mailboxes()
        .call(&ghost, Message::new("q", Bytes::new()))
        .timeout(LIMIT)
        .await;
    assert_eq!(e, Err(CallError::NoSuchMailbox));
    a.mailboxes()
        .send(&ghost, Message::new("tell", Bytes::new()))
        .await
        .expect("queued");
    wait_for("counted", LIMIT, || {
        b.stats()
            .frames_dropped
            .get("no_such_mailbox")
            .copied()
            .unwrap_or(0)
            >= 2
    })
    .await;
    // A stale pid (older incarnation of n2) fails at once on the sender.
    let stale = weft::Pid {
        incarnation: pid.incarnation - 1,
        ..pid.clone()
    };
    assert!(matches!(
        a.mailboxes().send(&stale, Message::new("t", Bytes::new())).await,
        Err(MessageError::NoSuchMailbox(_))
    ));
    // Unknown node.
    let nowhere = weft::Pid {
        node: "nx".into(),
        ..pid.clone()
    };
    assert!(matches!(
        a.mailboxes()
            .send(&nowhere, Message::new("t", Bytes::new()))
            .await,
        Err(MessageError::UnknownNode(_))
    ));
    // Timeout: a mailbox that never answers.
    let silent = b.mailboxes().spawn();
    let e = a
        .mailboxes()
        .call(silent.pid(), Message::new("q", Bytes::new()))
        .timeout(Duration::from_millis(200))
        .await;
    assert_eq!(e, Err(CallError::Timeout));

    b.mailboxes()
        .send_named("n2", "echo", Message::new("stop", Bytes::new()))
        .await
        .expect("stop");
    server.await.expect("server");
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_to_a_crashed_node_fails_with_node_down() {
    let nodes = cluster(3).await;
    let target = nodes[2].mailboxes().spawn();
    let pid = target.pid().clone();
    // n3 crashes without a word; the call waits for failure detection.
    nodes[2].abort();
    let e = nodes[0]
        .mailboxes()
        .call(&pid, Message::new("q", Bytes::new()))
        .timeout(Duration::from_secs(60))
        .await;
    assert_eq!(e, Err(CallError::NodeDown("n3".into())));
    drop(target);
    let mut nodes = nodes;
    nodes.truncate(2);
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_publish_monitor_and_drop() {
    let nodes = cluster(3).await;
    let members: Vec<_> = nodes.iter().map(|n| n.mailboxes().spawn()).collect();
    let mut monitor = nodes[0].groups().monitor("chat");
    assert!(monitor.initial_members().is_empty());
    for (n, m) in nodes.iter().zip(&members) {
        n.groups().join("chat", m.pid()).expect("join");
    }
    for n in &nodes {
        wait_for("3 members everywhere", LIMIT, || {
            n.groups().members("chat").len() == 3
        })
        .await;
    }
    let mut joined = 0;
    while joined < 3 {
        if let Ok(GroupEvent::Joined { .. }) = monitor.next().await {
            joined += 1;
        }
    }
    assert_eq!(
        nodes[1].groups().local_members("chat"),
        vec![members[1].pid().clone()]
    );
    // Joining another node's pid is refused.
    assert!(nodes[0].groups().join("chat", members[1].pid()).is_err());

    // Publish on n2 reaches the members on n1 and n3 (one frame per node).
    let before = nodes[1]
        .stats()
        .peers
        .get("n1")
        .map(|p| p.frames_sent)
        .unwrap_or(0);
    let report = nodes[1]
        .groups()
        .publish("chat", Message::new("post", Bytes::from_static(b"hello")))
        .await
        .expect("publish");
    assert_eq!(report.local_delivered, 1);
    assert_eq!(report.remote_nodes, 2);
    for m in &members {
        let env = m.recv().await.expect("delivered");
        assert_eq!(env.message.payload.as_ref(), b"hello");
    }
    wait_for("frame counted", LIMIT, || {
        nodes[1]
            .stats()
            .peers
            .get("n1")
            .map(|p| p.frames_sent)
            .unwrap_or(0)
            > before
    })
    .await;

    // Dropping a mailbox leaves its groups everywhere.
    let mut members = members;
    let gone = members.remove(2);
    let gone_pid = gone.pid().clone();
    drop(gone);
    for n in &nodes {
        wait_for("member left", LIMIT, || {
            !n.groups().members("chat").contains(&gone_pid)
        })
        .await;
    }
    loop {
        if let Ok(GroupEvent::Left { pid, .. }) = monitor.next().await {
            assert_eq!(pid, gone_pid);
            break;
        }
    }
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_mailbox_does_not_affect_others() {
    let nodes = cluster(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let slow = b.mailboxes().spawn_with_capacity(16 * 1024);
    let fast = b.mailboxes().spawn();
    for i in 0..5_000u32 {
        a.mailboxes()
            .send(slow.pid(), Message::typed("flood", &i).expect("enc"))
            .await
            .expect("queued on link");
        if i % 50 == 0 {
            a.mailboxes()
                .send(fast.pid(), Message::typed("ok", &i).expect("enc"))
                .await
                .expect("queued");
        }
    }
    for i in (0..5_000u32).step_by(50) {
        let env = fast.recv().await.expect("fast delivery");
        assert_eq!(env.message.decode::<u32>().expect("u32"), i);
    }
    // Every flood message is either queued at the slow mailbox or counted
    // as dropped there; none vanished.
    let accounted =
        || b.stats().frames_dropped.get("mailbox_full").copied().unwrap_or(0) as usize + slow.len();
    wait_for("all flood messages accounted for", LIMIT, || accounted() == 5_000).await;
    assert!(slow.len() < 5_000, "the slow mailbox is bounded");
    stop(nodes).await;
}

fn count(map: &std::collections::BTreeMap<String, u64>, reason: &str) -> u64 {
    map.get(reason).copied().unwrap_or(0)
}

/// Dead letters reported back to `node`, by reason.
fn received(node: &Node, reason: &str) -> u64 {
    count(&node.stats().dead_letters_received, reason)
}

/// Drops `node` reported back to their senders, by reason.
fn reported(node: &Node, reason: &str) -> u64 {
    count(&node.stats().dead_letters_sent, reason)
}

async fn next_letter(rx: &mut DeadLetterReceiver) -> DeadLetter {
    tokio::time::timeout(LIMIT, rx.recv())
        .await
        .expect("a dead letter within the limit")
        .expect("node running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tell_to_a_missing_name_fails_at_once_locally_and_remotely() {
    let nodes = cluster(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut letters = a.mailboxes().dead_letters();
    // Local: the node's own name table.
    assert!(matches!(
        a.mailboxes()
            .send_named("n1", "nobody", Message::new("t", Bytes::new()))
            .await,
        Err(MessageError::NoSuchMailbox(_))
    ));
    // Remote: the replicated directory, no round trip (nothing is sent).
    let tells_before = a.stats().tells_sent;
    assert!(matches!(
        a.mailboxes()
            .send_named("n2", "nobody", Message::new("t", Bytes::new()))
            .await,
        Err(MessageError::NoSuchMailbox(_))
    ));
    let named = Target::Named {
        node: "n2".into(),
        name: "nobody".into(),
    };
    let sender = a.mailboxes().spawn();
    assert!(matches!(
        sender.send(named, Message::new("t", Bytes::new())).await,
        Err(MessageError::NoSuchMailbox(_))
    ));
    assert_eq!(a.stats().tells_sent, tells_before, "refused tells are not sent");

    // A name the directory holds is sent; once it is gone there too, the
    // tell is refused again.
    let echo = b.mailboxes().spawn();
    b.mailboxes().register("echo", &echo).expect("register");
    wait_for("name visible on n1", LIMIT, || {
        !a.mailboxes().whereis("echo").is_empty()
    })
    .await;
    a.mailboxes()
        .send_named("n2", "echo", Message::new("t", Bytes::from_static(b"x")))
        .await
        .expect("known name");
    let env = tokio::time::timeout(LIMIT, echo.recv())
        .await
        .expect("delivered")
        .expect("open");
    assert_eq!(env.message.payload.as_ref(), b"x");
    drop(echo);
    wait_for("name gone on n1", LIMIT, || {
        a.mailboxes().whereis("echo").is_empty()
    })
    .await;
    assert!(matches!(
        a.mailboxes()
            .send_named("n2", "echo", Message::new("t", Bytes::new()))
            .await,
        Err(MessageError::NoSuchMailbox(_))
    ));
    // Errors, not dead letters: nothing came back.
    assert!(letters.try_recv().is_none());
    assert_eq!(received(a, "no_such_mailbox"), 0);
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tell_to_a_dropped_mailbox_is_an_error_locally_and_a_dead_letter_remotely() {
    let nodes = cluster(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut letters = a.mailboxes().dead_letters();
    let sender = a.mailboxes().spawn();

    // Local: an error at once.
    let local_gone = a.mailboxes().spawn().pid().clone();
    assert!(matches!(
        sender.send(&local_gone, Message::new("t", Bytes::new())).await,
        Err(MessageError::NoSuchMailbox(_))
    ));

    // Remote: queued, dropped by n2, reported back to n1.
    let remote_gone = b.mailboxes().spawn().pid().clone();
    sender
        .send(
            &remote_gone,
            Message::new("chat.Post", Bytes::from_static(b"hello")),
        )
        .await
        .expect("queued on the link");
    let letter = next_letter(&mut letters).await;
    assert_eq!(letter.target, Target::Pid(remote_gone.clone()));
    assert_eq!(letter.reason, DeadReason::NoSuchMailbox);
    assert_eq!(letter.from.as_ref(), Some(sender.pid()));
    assert_eq!(letter.manifest, "chat.Post");
    assert_eq!(letter.size, 5);
    // Counted on both sides, by reason.
    assert_eq!(received(a, "no_such_mailbox"), 1);
    wait_for("n2 counted the report", LIMIT, || {
        reported(b, "no_such_mailbox") == 1
    })
    .await;
    assert_eq!(count(&b.stats().frames_dropped, "no_such_mailbox"), 1);
    // Only the sender's node learns it.
    assert_eq!(received(b, "no_such_mailbox"), 0);
    assert_eq!(reported(a, "no_such_mailbox"), 0);

    // A call to the same pid keeps its typed error, and no dead letter.
    let e = a
        .mailboxes()
        .call(&remote_gone, Message::new("q", Bytes::new()))
        .timeout(LIMIT)
        .await;
    assert_eq!(e, Err(CallError::NoSuchMailbox));
    assert_eq!(received(a, "no_such_mailbox"), 1);
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tells_to_a_full_remote_mailbox_come_back_as_dead_letters() {
    let nodes = cluster(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut letters = a.mailboxes().dead_letters();
    // Room for about two 100-byte messages.
    let slow = b.mailboxes().spawn_with_capacity(400);
    const SENT: u64 = 20;
    for i in 0..SENT {
        a.mailboxes()
            .send(slow.pid(), Message::new("bulk", vec![i as u8; 100]))
            .await
            .expect("queued on the link");
    }
    // Every tell is either in the mailbox or a dead letter on n1.
    wait_for("every tell accounted for", LIMIT, || {
        slow.len() as u64 + received(a, "mailbox_full") == SENT
    })
    .await;
    let full = received(a, "mailbox_full");
    assert!(
        full > 0 && !slow.is_empty(),
        "some kept ({}), some dropped ({full})",
        slow.len()
    );
    for _ in 0..full {
        let l = next_letter(&mut letters).await;
        assert_eq!(l.reason, DeadReason::MailboxFull);
        assert_eq!(l.target, Target::Pid(slow.pid().clone()));
        assert_eq!((l.manifest.as_str(), l.size), ("bulk", 100));
    }
    assert!(letters.try_recv().is_none(), "one letter per dropped tell");
    wait_for("n2 reported each drop", LIMIT, || {
        reported(b, "mailbox_full") == full
    })
    .await;
    assert_eq!(count(&b.stats().frames_dropped, "mailbox_full"), full);
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_receiver_overflow_is_counted() {
    let nodes = cluster(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut small = a.mailboxes().dead_letters_with_capacity(2);
    let mut big = a.mailboxes().dead_letters();
    let gone = b.mailboxes().spawn().pid().clone();
    for i in 0..10u32 {
        a.mailboxes()
            .send(&gone, Message::typed("n", &i).expect("encode"))
            .await
            .expect("queued");
    }
    wait_for("10 reported back", LIMIT, || received(a, "no_such_mailbox") == 10).await;
    // The big receiver has all ten; the small one two, the rest counted.
    for _ in 0..10 {
        next_letter(&mut big).await;
    }
    assert!(small.try_recv().is_some());
    assert!(small.try_recv().is_some());
    assert!(small.try_recv().is_none());
    assert_eq!(small.dropped(), 8);
    assert_eq!(big.dropped(), 0);
    assert_eq!(count(&a.stats().dead_letters_lost, "stream_full"), 8);
    // A dropped receiver no longer counts.
    drop(small);
    a.mailboxes()
        .send(&gone, Message::new("t", Bytes::new()))
        .await
        .expect("queued");
    next_letter(&mut big).await;
    assert_eq!(count(&a.stats().dead_letters_lost, "stream_full"), 8);
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tells_to_a_crashed_node_are_errors_or_dead_letters() {
    let nodes = cluster(3).await;
    let mut letters = nodes[0].mailboxes().dead_letters();
    let target = nodes[2].mailboxes().spawn();
    let pid = target.pid().clone();
    nodes[2].abort();
    // Once the connection is gone, tells queue for n3 until membership
    // declares it down: then the queued ones come back as `node_down`
    // letters and later ones fail with `NodeDown`.
    wait_for("link to n3 closed", LIMIT, || {
        !nodes[0].membership().is_linked("n3")
    })
    .await;
    let mut queued = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(tokio::time::Instant::now() < deadline, "n3 never declared down");
        match nodes[0]
            .mailboxes()
            .try_send(&pid, Message::new("t", Bytes::new()))
            .await
        {
            Ok(()) => queued += 1,
            Err(MessageError::NodeDown(n)) => {
                assert_eq!(n, "n3");
                break;
            }
            Err(e) => panic!("unexpected error {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        queued > 0,
        "some tells were queued before the node was declared down"
    );
    wait_for("every queued tell came back", LIMIT, || {
        received(&nodes[0], "node_down") == queued
    })
    .await;
    for _ in 0..queued {
        let l = next_letter(&mut letters).await;
        assert_eq!(l.reason, DeadReason::NodeDown);
        assert_eq!(l.target, Target::Pid(pid.clone()));
    }
    drop(target);
    let mut nodes = nodes;
    nodes.truncate(2);
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_and_pubsub_drops_are_counted_on_the_sender() {
    let nodes = cluster(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    // A group member on n2 with room for about one message.
    let member = b.mailboxes().spawn_with_capacity(200);
    b.groups().join("g", member.pid()).expect("join");
    wait_for("member visible on n1", LIMIT, || {
        a.groups().members("g").len() == 1
    })
    .await;
    for _ in 0..10 {
        let r = a
            .groups()
            .publish("g", Message::new("m", vec![0u8; 100]))
            .await
            .expect("publish");
        assert_eq!(r.remote_nodes, 1);
    }
    wait_for("every copy accounted for", LIMIT, || {
        member.len() as u64 + received(a, "mailbox_full") == 10
    })
    .await;
    let full = received(a, "mailbox_full");
    assert!(full > 0);
    wait_for("n2 reported them", LIMIT, || reported(b, "mailbox_full") == full).await;
    assert_eq!(count(&b.stats().frames_dropped, "mailbox_full"), full);

    // A slow subscriber on n2: its drops are counted on n1 too.
    let sub = b
        .pubsub()
        .subscribe_with_capacity("dl.>", None, 300)
        .expect("subscribe");
    wait_for("interest on n1", LIMIT, || a.pubsub().has_interest("dl.x")).await;
    for _ in 0..20 {
        a.pubsub()
            .publish("dl.x", Bytes::from(vec![0u8; 100]))
            .await
            .expect("publish");
    }
    wait_for("slow-consumer drops reported to n1", LIMIT, || {
        let dropped = count(&b.stats().frames_dropped, "slow_consumer");
        dropped > 0 && received(a, "slow_consumer") == dropped
    })
    .await;
    assert_eq!(
        reported(b, "slow_consumer"),
        count(&b.stats().frames_dropped, "slow_consumer")
    );
    assert_eq!(sub.dropped(), received(a, "slow_consumer"));
    // Counts, not letters: the dead-letter stream carries tells only.
    let mut letters = a.mailboxes().dead_letters();
    assert!(letters.try_recv().is_none());
    stop(nodes).await;
}
