//! Mailboxes, names, calls and groups across real loopback nodes.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{config, sees_up, wait_for};
use weft::{CallError, GroupEvent, Message, MessageError, Node, Target};

const LIMIT: Duration = Duration::from_secs(30);

async fn cluster(n: usize) -> Vec<Node> {
    let first = Node::start(config("n1", &[])).await.expect("n1");
    let seed = [first.addr()];
    let mut nodes = vec![first];
    for i in 2..=n {
        nodes.push(Node::start(config(&format!("n{i}"), &seed)).await.expect("node"));
    }
    let names: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    for node in &nodes {
        wait_for("all up", LIMIT, || sees_up(node, &names)).await;
    }
    for a in &nodes {
        for b in &names {
            if *b != a.id().name {
                wait_for("linked", LIMIT, || a.is_linked(b)).await;
            }
        }
    }
    nodes
}

async fn stop(nodes: Vec<Node>) {
    for n in nodes {
        n.shutdown(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_tell_is_fifo_over_10000_messages() {
    common::logs();
    let nodes = cluster(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let inbox = b.spawn_mailbox_with_capacity(64 << 20);
    let pid = inbox.pid().clone();
    let sender = a.spawn_mailbox();
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
    let echo = b.spawn_mailbox();
    b.register("echo", &echo).expect("register");
    assert!(b.register("echo", &b.spawn_mailbox()).is_err(), "name taken");
    let server = tokio::spawn(async move {
        while let Some(env) = echo.recv().await {
            if env.message.manifest == "stop" {
                break;
            }
            let reply = Message::new("echo.reply", env.message.payload.clone());
            echo.reply(&env, reply).await.expect("reply");
        }
    });
    wait_for("name visible on n1", LIMIT, || !a.whereis("echo").is_empty()).await;
    let pid = a.whereis("echo")[0].clone();
    assert_eq!(pid.node, "n2");

    // By pid and by name.
    let r = a
        .call(&pid, Message::new("q", Bytes::from_static(b"hi")), LIMIT)
        .await
        .expect("reply");
    assert_eq!(r.payload.as_ref(), b"hi");
    let named = Target::Named {
        node: "n2".into(),
        name: "echo".into(),
    };
    let r = a
        .call(named, Message::new("q", Bytes::from_static(b"yo")), LIMIT)
        .await
        .expect("reply");
    assert_eq!(r.manifest, "echo.reply");

    // A pid that does not exist: a typed error, counted on the far side.
    let ghost = weft::Pid {
        id: 999_999,
        ..pid.clone()
    };
    let e = a.call(&ghost, Message::new("q", Bytes::new()), LIMIT).await;
    assert_eq!(e, Err(CallError::NoSuchMailbox));
    a.send(&ghost, Message::new("tell", Bytes::new()))
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
        a.send(&stale, Message::new("t", Bytes::new())).await,
        Err(MessageError::NoSuchMailbox(_))
    ));
    // Unknown node.
    let nowhere = weft::Pid {
        node: "nx".into(),
        ..pid.clone()
    };
    assert!(matches!(
        a.send(&nowhere, Message::new("t", Bytes::new())).await,
        Err(MessageError::UnknownNode(_))
    ));
    // Timeout: a mailbox that never answers.
    let silent = b.spawn_mailbox();
    let e = a
        .call(
            silent.pid(),
            Message::new("q", Bytes::new()),
            Duration::from_millis(200),
        )
        .await;
    assert_eq!(e, Err(CallError::Timeout));

    b.send_named("n2", "echo", Message::new("stop", Bytes::new()))
        .await
        .expect("stop");
    server.await.expect("server");
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_to_a_crashed_node_fails_with_node_down() {
    let nodes = cluster(3).await;
    let target = nodes[2].spawn_mailbox();
    let pid = target.pid().clone();
    // n3 crashes without a word; the call waits for failure detection.
    nodes[2].abort();
    let e = nodes[0]
        .call(&pid, Message::new("q", Bytes::new()), Duration::from_secs(60))
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
    let members: Vec<_> = nodes.iter().map(|n| n.spawn_mailbox()).collect();
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
    let slow = b.spawn_mailbox_with_capacity(16 * 1024);
    let fast = b.spawn_mailbox();
    for i in 0..5_000u32 {
        a.send(slow.pid(), Message::typed("flood", &i).expect("enc"))
            .await
            .expect("queued on link");
        if i % 50 == 0 {
            a.send(fast.pid(), Message::typed("ok", &i).expect("enc"))
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
