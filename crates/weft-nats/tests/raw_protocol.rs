//! The protocol byte by byte over a plain TCP socket: exact server
//! records, bad input, authentication, keepalive and slow consumers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::raw::Raw;
use common::{Cluster, LIMIT, wait_for};
use futures::StreamExt;
use tokio::net::{TcpSocket, TcpStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_nats_error_and_is_closed() {
    let c = Cluster::start(1, |cfg| cfg.max_payload = 64 * 1024).await;
    let long_line = format!("SUB {} 1", "a".repeat(5000));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"HELLO world\r\n".to_vec(),
            "-ERR 'Unknown Protocol Operation'\r\n",
        ),
        (
            vec![0xff, 0x00, 0x13, 0x37, b'\r', b'\n'],
            "-ERR 'Unknown Protocol Operation'\r\n",
        ),
        (
            b"MSG a 1 2\r\nhi\r\n".to_vec(),
            "-ERR 'Unknown Protocol Operation'\r\n",
        ),
        (
            b"PUB a notanumber\r\n".to_vec(),
            "-ERR 'Unknown Protocol Operation'\r\n",
        ),
        (
            b"PUB a 2\r\nhiXX".to_vec(),
            "-ERR 'Unknown Protocol Operation'\r\n",
        ),
        (long_line.into_bytes(), "-ERR 'maximum control line exceeded'\r\n"),
        (
            b"PUB a 70000\r\n".to_vec(),
            "-ERR 'Maximum Payload Violation'\r\n",
        ),
        (
            b"HPUB a 10 70000\r\n".to_vec(),
            "-ERR 'Maximum Payload Violation'\r\n",
        ),
    ];
    for (i, (input, want)) in cases.iter().enumerate() {
        let mut r = Raw::connect(&c).await;
        r.send(b"CONNECT {}\r\nPING\r\n").await;
        r.until("PONG\r\n").await;
        r.send(input).await;
        let rest = r.read_to_close().await;
        assert_eq!(rest, *want, "case {i}");
    }
    let stats = c.servers[0].stats();
    assert_eq!(stats.protocol_errors, cases.len() as u64);
    // The server is fine afterwards.
    let mut r = Raw::connect(&c).await;
    r.send(b"PING\r\n").await;
    r.until("PONG\r\n").await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_records_verbose_case_auto_unsub_and_no_responders() {
    let c = Cluster::start(1, |_| {}).await;
    let mut r = Raw::connect(&c).await;
    r.send(b"cOnNeCt {\"verbose\":true,\"headers\":true,\"no_responders\":true}\r\n")
        .await;
    assert_eq!(r.until("\r\n").await, "+OK\r\n");
    r.send(b"ping\r\n").await;
    assert_eq!(r.until("\r\n").await, "PONG\r\n");
    r.send(b"sub foo 1\r\n").await;
    assert_eq!(r.until("\r\n").await, "+OK\r\n");
    r.send(b"pub foo 5\r\nhello\r\n").await;
    // +OK for the PUB and the MSG race: read both.
    let both = format!("{}{}", r.until("\r\n").await, r.until("\r\n").await);
    let both = if both.starts_with("+OK") {
        format!("{both}{}", r.until("hello\r\n").await)
    } else {
        format!("{both}{}", r.until("+OK\r\n").await)
    };
    assert!(both.contains("MSG foo 1 5\r\nhello\r\n"), "{both:?}");
    assert!(both.contains("+OK\r\n"), "{both:?}");

    // Quiet from here on.
    r.send(b"CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true}\r\n")
        .await;
    r.send(b"HPUB foo r.1 18 20\r\nNATS/1.0\r\nK: v\r\n\r\nhi\r\n")
        .await;
    assert_eq!(
        r.until("hi\r\n").await,
        "HMSG foo 1 r.1 18 20\r\nNATS/1.0\r\nK: v\r\n\r\nhi\r\n"
    );

    // UNSUB with a max: exactly that many, counted from the start.
    r.send(b"UNSUB 1 3\r\n").await;
    r.send(b"PUB foo 1\r\na\r\nPUB foo 1\r\nb\r\nPUB foo 1\r\nc\r\n")
        .await;
    // Deliveries are asynchronous to the reader: wait for the retirement
    // (after the last delivery), then a PONG follows everything.
    wait_for("foo retired", || {
        c.nodes[0]
            .pubsub()
            .local_interest()
            .iter()
            .all(|(p, _, _)| p != "foo")
    })
    .await;
    r.send(b"PING\r\n").await;
    let text = r.until("PONG\r\n").await;
    assert_eq!(text, "MSG foo 1 1\r\na\r\nPONG\r\n", "two before, one now");

    // No responders: the 503 status on the first subscription matching
    // the reply subject, exactly as nats-server sends it.
    r.send(b"SUB _INBOX.t.* 7\r\nPUB nobody.home _INBOX.t.1 0\r\n\r\nPING\r\n")
        .await;
    assert_eq!(
        r.until("PONG\r\n").await,
        "HMSG _INBOX.t.1 7 16 16\r\nNATS/1.0 503\r\n\r\n\r\nPONG\r\n"
    );
    // Pedantic: an invalid publish subject is an error, not a close.
    r.send(b"CONNECT {\"pedantic\":true}\r\nPUB a.*.b 0\r\n\r\nSUB a..b 9\r\nPING\r\n")
        .await;
    assert_eq!(
        r.until("PONG\r\n").await,
        "-ERR 'Invalid Publish Subject'\r\n-ERR 'Invalid Subject'\r\nPONG\r\n"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_failures_and_stale_connections_are_closed() {
    let c = Cluster::start(1, |cfg| {
        cfg.auth = weft_nats::Auth::Token("t0k".into());
        cfg.auth_timeout = Duration::from_millis(300);
        cfg.ping_interval = Duration::from_millis(100);
    })
    .await;
    let mut r = Raw::connect(&c).await;
    r.send(b"CONNECT {\"auth_token\":\"wrong\"}\r\n").await;
    assert_eq!(r.read_to_close().await, "-ERR 'Authorization Violation'\r\n");

    let mut r = Raw::connect(&c).await;
    r.send(b"PING\r\n").await;
    assert_eq!(r.read_to_close().await, "-ERR 'Authorization Violation'\r\n");

    let mut r = Raw::connect(&c).await;
    assert_eq!(r.read_to_close().await, "-ERR 'Authentication Timeout'\r\n");
    assert_eq!(c.servers[0].stats().auth_failures, 3);

    // Authenticated, but it never answers the server's pings.
    let mut r = Raw::connect(&c).await;
    r.send(b"CONNECT {\"auth_token\":\"t0k\"}\r\n").await;
    assert_eq!(
        r.read_to_close().await,
        "PING\r\nPING\r\n-ERR 'Stale Connection'\r\n"
    );
    assert_eq!(c.servers[0].stats().stale_connections, 1);

    // A client that answers stays.
    let mut r = Raw::connect(&c).await;
    r.send(b"CONNECT {\"auth_token\":\"t0k\"}\r\n").await;
    for _ in 0..4 {
        r.until("PING\r\n").await;
        r.send(b"PONG\r\n").await;
    }
    r.send(b"PING\r\n").await;
    r.until("PONG\r\n").await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_closed_and_others_are_not() {
    let c = Cluster::start(1, |cfg| cfg.max_pending = 1024 * 1024).await;
    // The slow one: a tiny receive window, and it reads nothing.
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut slow = Raw::on(sock.connect(c.servers[0].local_addr()).await.unwrap()).await;
    slow.send(b"CONNECT {}\r\nSUB fire 1\r\nPING\r\n").await;
    slow.until("PONG\r\n").await;

    let healthy = c.client(0).await;
    let mut sub = healthy.subscribe("fire").await.unwrap();
    wait_for("both subscribed", || {
        c.nodes[0]
            .pubsub()
            .local_interest()
            .iter()
            .any(|(p, _, n)| p == "fire" && *n == 2)
    })
    .await;
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    const N: usize = 1000;
    let reader = tokio::spawn(async move {
        while counter.load(Ordering::Relaxed) < N {
            match tokio::time::timeout(LIMIT, sub.next()).await {
                Ok(Some(_)) => counter.fetch_add(1, Ordering::Relaxed),
                _ => break,
            };
        }
    });
    let publisher = c.client(0).await;
    let body = Bytes::from(vec![b'x'; 16 * 1024]);
    for i in 0..N {
        // Keep at most 32 messages ahead of the healthy subscriber.
        wait_for("healthy subscriber keeps up", || {
            received.load(Ordering::Relaxed) + 32 > i
        })
        .await;
        publisher.publish("fire", body.clone()).await.unwrap();
    }
    publisher.flush().await.unwrap();
    reader.await.unwrap();
    assert_eq!(
        received.load(Ordering::Relaxed),
        N,
        "the healthy subscriber got everything"
    );
    wait_for("slow consumer detected", || {
        c.servers[0].stats().slow_consumers == 1
    })
    .await;

    // Closed without an -ERR, as nats-server does (see nats_server_compat).
    let tail = slow.read_to_close().await;
    assert!(
        !tail.contains("-ERR"),
        "{:?}",
        &tail[tail.len().saturating_sub(64)..]
    );
    // The others are still connected and served.
    let mut check = healthy.subscribe("after").await.unwrap();
    wait_for("after subscribed", || c.nodes[0].pubsub().has_interest("after")).await;
    publisher.publish("after", Bytes::from("ok")).await.unwrap();
    publisher.flush().await.unwrap();
    let m = tokio::time::timeout(LIMIT, check.next()).await.unwrap().unwrap();
    assert_eq!(&m.payload[..], b"ok");
    let stats = c.servers[0].stats();
    assert_eq!(stats.slow_consumers, 1);
    assert_eq!(stats.clients_connected, 2);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpub_zero_and_an_empty_block_keep_their_form_across_nodes() {
    let c = Cluster::start(2, |_| {}).await;
    let quiet = b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n";
    let mut sub = Raw::on(TcpStream::connect(c.servers[1].local_addr()).await.unwrap()).await;
    sub.send(quiet).await;
    sub.send(b"SUB foo 1\r\nPING\r\n").await;
    sub.until("PONG\r\n").await;
    c.interest_everywhere("foo").await;
    // One publisher with echo on, one with echo off (tagged publishes).
    for echo in ["true", "false"] {
        let mut publisher = Raw::connect(&c).await;
        publisher
            .send(format!("CONNECT {{\"verbose\":false,\"headers\":true,\"echo\":{echo}}}\r\n").as_bytes())
            .await;
        publisher
            .send(b"HPUB foo 0 2\r\nhi\r\nHPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\nHPUB foo 18 20\r\nNATS/1.0\r\nK: v\r\n\r\nhi\r\n")
            .await;
        assert_eq!(
            sub.until("K: v\r\n\r\nhi\r\n").await,
            "MSG foo 1 2\r\nhi\r\nHMSG foo 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\nHMSG foo 1 18 20\r\nNATS/1.0\r\nK: v\r\n\r\nhi\r\n",
            "echo {echo}"
        );
    }
    assert_eq!(c.servers[0].stats().refused_total(), 0);
    c.stop().await;
}
