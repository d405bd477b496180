//! Side by side with nats-server: the same bytes are sent to a weft node's
//! NATS server and to a `nats-server` child process, and what each writes
//! back (after INFO) is compared. Every case also checks weft's answer
//! against the expected bytes, so it asserts something when nats-server is
//! not installed (then its half is skipped with a warning, or fails with
//! `WEFT_REQUIRE_NATS_SERVER=1`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::nats_server::NatsServerProcess;
use common::raw::Raw;
use common::{Cluster, wait_for};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;
use weft_nats::RefuseReason;

/// What a quiet client sends first (every field explicit: nats-server's
/// defaults for a bare `CONNECT {}` are verbose and pedantic).
const QUIET: &str = r#"CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true}"#;

/// Sends `input` on a fresh connection to `addr`; returns what came back
/// after INFO, up to a final `PONG` or the close (`<closed>`).
async fn exchange(addr: SocketAddr, input: &[u8]) -> String {
    let mut r = Raw::connect_to(addr).await;
    r.send(input).await;
    r.until_end_or_close("PONG\r\n").await
}

struct Case {
    name: &'static str,
    input: Vec<u8>,
    /// What weft (and nats-server) answer.
    want: &'static str,
}

fn case(name: &'static str, connect: &str, ops: &str, want: &'static str) -> Case {
    Case {
        name,
        input: format!("{connect}\r\n{ops}").into_bytes(),
        want,
    }
}

/// Runs every case against weft, then against nats-server when present.
async fn side_by_side(weft: SocketAddr, nats: Option<&NatsServerProcess>, cases: &[Case]) {
    for c in cases {
        let got = exchange(weft, &c.input).await;
        assert_eq!(got, c.want, "weft, case {}", c.name);
        if let Some(n) = nats {
            let theirs = exchange(n.addr, &c.input).await;
            assert_eq!(theirs, got, "nats-server differs from weft, case {}", c.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpub_with_header_size_zero_or_an_empty_block_as_nats_server() {
    let c = Cluster::start(1, |_| {}).await;
    let nats = NatsServerProcess::start("");
    let verbose = r#"CONNECT {"verbose":true,"pedantic":false,"headers":true,"no_responders":true}"#;
    let cases = [
        case(
            "HPUB 0 is a plain message",
            QUIET,
            "SUB foo 1\r\nHPUB foo 0 5\r\nhello\r\nPING\r\n",
            "MSG foo 1 5\r\nhello\r\nPONG\r\n",
        ),
        case(
            "HPUB 0 with a reply subject",
            QUIET,
            "SUB foo 1\r\nHPUB foo r.1 0 5\r\nhello\r\nPING\r\n",
            "MSG foo 1 r.1 5\r\nhello\r\nPONG\r\n",
        ),
        case(
            "HPUB 0 with no payload",
            QUIET,
            "SUB foo 1\r\nHPUB foo r 0 0\r\n\r\nPING\r\n",
            "MSG foo 1 r 0\r\n\r\nPONG\r\n",
        ),
        case(
            "HPUB 0 from a verbose client",
            verbose,
            "SUB foo 1\r\nHPUB foo 0 5\r\nhello\r\nPING\r\n",
            "+OK\r\n+OK\r\n+OK\r\nMSG foo 1 5\r\nhello\r\nPONG\r\n",
        ),
        case(
            "an empty header block arrives as that block",
            QUIET,
            "SUB foo 1\r\nHPUB foo 12 17\r\nNATS/1.0\r\n\r\nhello\r\nPING\r\n",
            "HMSG foo 1 12 17\r\nNATS/1.0\r\n\r\nhello\r\nPONG\r\n",
        ),
        case(
            "an empty header block and no payload",
            QUIET,
            "SUB foo 1\r\nHPUB foo 12 12\r\nNATS/1.0\r\n\r\n\r\nPING\r\n",
            "HMSG foo 1 12 12\r\nNATS/1.0\r\n\r\n\r\nPONG\r\n",
        ),
        case(
            "a request with HPUB 0 and no responders gets the 503 at once",
            QUIET,
            "SUB _INBOX.x.* 7\r\nHPUB nobody _INBOX.x.1 0 0\r\n\r\nPING\r\n",
            "HMSG _INBOX.x.1 7 16 16\r\nNATS/1.0 503\r\n\r\n\r\nPONG\r\n",
        ),
        case(
            "HPUB 0 with a payload and no responders",
            QUIET,
            "SUB _INBOX.x.* 7\r\nHPUB nobody _INBOX.x.1 0 2\r\nhi\r\nPING\r\n",
            "HMSG _INBOX.x.1 7 16 16\r\nNATS/1.0 503\r\n\r\n\r\nPONG\r\n",
        ),
        case(
            "an empty header block and no responders",
            QUIET,
            "SUB _INBOX.x.* 7\r\nHPUB nobody _INBOX.x.1 12 12\r\nNATS/1.0\r\n\r\n\r\nPING\r\n",
            "HMSG _INBOX.x.1 7 16 16\r\nNATS/1.0 503\r\n\r\n\r\nPONG\r\n",
        ),
        case(
            "verbose: +OK before the 503",
            verbose,
            "SUB _INBOX.x.* 7\r\nHPUB nobody _INBOX.x.1 0 0\r\n\r\nPING\r\n",
            "+OK\r\n+OK\r\n+OK\r\nHMSG _INBOX.x.1 7 16 16\r\nNATS/1.0 503\r\n\r\n\r\nPONG\r\n",
        ),
    ];
    side_by_side(c.servers[0].local_addr(), nats.as_ref(), &cases).await;
    assert_eq!(c.servers[0].stats().refused_total(), 0);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_publishes_are_answered_or_counted() {
    let c = Cluster::start(1, |cfg| cfg.max_payload = 64 * 1024).await;
    let nats = NatsServerProcess::start("max_payload: 65536");
    let pedantic = r#"CONNECT {"verbose":false,"pedantic":true,"headers":true}"#;
    let both = r#"CONNECT {"verbose":true,"pedantic":true,"headers":true}"#;
    // Where nats-server answers, weft answers the same. (Subjects nobody
    // subscribes to: nats-server still publishes after the pedantic
    // -ERR, weft cannot carry such a subject.)
    let answered = [
        case(
            "pedantic: empty token and wildcards",
            pedantic,
            "PUB a..b 2\r\nhi\r\nPUB foo.* 1\r\nx\r\nHPUB foo.> 0 0\r\n\r\nPUB .a 0\r\n\r\nPING\r\n",
            "-ERR 'Invalid Publish Subject'\r\n-ERR 'Invalid Publish Subject'\r\n\
             -ERR 'Invalid Publish Subject'\r\n-ERR 'Invalid Publish Subject'\r\nPONG\r\n",
        ),
        case(
            "verbose and pedantic: the -ERR, then +OK",
            both,
            "PUB a..b 2\r\nhi\r\nPING\r\n",
            "+OK\r\n-ERR 'Invalid Publish Subject'\r\n+OK\r\nPONG\r\n",
        ),
        case(
            "not pedantic: no answer",
            QUIET,
            "PUB a..b 2\r\nhi\r\nPUB b.* 1\r\nx\r\nPING\r\n",
            "PONG\r\n",
        ),
        case(
            "pedantic: an invalid reply subject is no error",
            pedantic,
            "PUB foo r.* 2\r\nhi\r\nPING\r\n",
            "PONG\r\n",
        ),
        case(
            "PUB over max_payload",
            QUIET,
            "PUB foo 70000\r\n",
            "-ERR 'Maximum Payload Violation'\r\n<closed>",
        ),
        case(
            "HPUB over max_payload",
            QUIET,
            "HPUB foo 12 70000\r\n",
            "-ERR 'Maximum Payload Violation'\r\n<closed>",
        ),
    ];
    side_by_side(c.servers[0].local_addr(), nats.as_ref(), &answered).await;
    let stats = c.servers[0].stats();
    // 4 + 1 + 2 subjects weft cannot carry; the reply `r.*` is one more.
    assert_eq!(stats.refused(RefuseReason::InvalidSubject), 8, "{stats:?}");
    assert_eq!(stats.protocol_errors, 2);

    // What weft cannot carry although nats-server passes it on: no -ERR
    // (nats-server sends none, and an unknown -ERR is fatal to nats-py),
    // counted by reason instead.
    let weft_only = [
        Case {
            name: "a subject that is not UTF-8",
            input: [QUIET.as_bytes(), b"\r\nSUB > 1\r\nPUB \xff\xfe 0\r\n\r\nPING\r\n"].concat(),
            want: "PONG\r\n",
        },
        case(
            "a header block that is not NATS/1.0",
            QUIET,
            "SUB foo 1\r\nHPUB foo 7 9\r\nXYZ\r\n\r\nhi\r\nPING\r\n",
            "PONG\r\n",
        ),
        case(
            "a header line without a colon",
            pedantic,
            "SUB foo 1\r\nHPUB foo 16 18\r\nNATS/1.0\r\nab\r\n\r\nhi\r\nPING\r\n",
            "PONG\r\n",
        ),
    ];
    for c2 in &weft_only {
        let got = exchange(c.servers[0].local_addr(), &c2.input).await;
        assert_eq!(got, c2.want, "weft, case {}", c2.name);
        if let Some(n) = &nats {
            let theirs = exchange(n.addr, &c2.input).await;
            assert!(
                theirs.starts_with("MSG") || theirs.starts_with("HMSG"),
                "nats-server delivers {}: {theirs:?}",
                c2.name
            );
        }
    }
    let stats = c.servers[0].stats();
    assert_eq!(stats.refused(RefuseReason::NotUtf8), 1, "{stats:?}");
    assert_eq!(stats.refused(RefuseReason::BadHeaders), 2, "{stats:?}");
    assert_eq!(stats.refused(RefuseReason::SendFailed), 0, "{stats:?}");
    let refused: Vec<_> = stats
        .metrics()
        .into_iter()
        .filter(|m| m.name == "weft_nats_publish_refused_total")
        .map(|m| (m.labels[0].1, m.value))
        .collect();
    assert_eq!(
        refused,
        [
            ("invalid_subject", 8),
            ("not_utf8", 1),
            ("bad_headers", 2),
            ("send_failed", 0)
        ]
    );
    c.stop().await;
}

/// A subscriber with a tiny receive window that reads nothing while a raw
/// publisher floods its subject with 16 KiB messages (in bursts, for at
/// most [`FLOOD_FOR`]). Once `detected` (the server says it closed a
/// slow consumer), returns everything the subscriber reads, until the
/// server closes it.
async fn slow_consumer_bytes(addr: SocketAddr, detected: impl Future<Output = ()>) -> String {
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut slow = Raw::on(sock.connect(addr).await.unwrap()).await;
    slow.send(format!("{QUIET}\r\nSUB fire 1\r\nPING\r\n").as_bytes())
        .await;
    slow.until("PONG\r\n").await;
    let mut publisher = Raw::connect_to(addr).await;
    publisher.send(format!("{QUIET}\r\n").as_bytes()).await;
    let mut burst = Vec::new();
    for _ in 0..16 {
        burst.extend_from_slice(format!("PUB fire {BODY}\r\n").as_bytes());
        burst.extend_from_slice(&[b'x'; BODY]);
        burst.extend_from_slice(b"\r\n");
    }
    let mut bursts = 0;
    let flood = async {
        for _ in 0..BURSTS {
            if publisher.stream.write_all(&burst).await.is_err() {
                break;
            }
            bursts += 1;
        }
    };
    let _ = tokio::time::timeout(FLOOD_FOR, flood).await;
    eprintln!("{bursts} bursts of 16 messages published");
    detected.await;
    slow.read_to_close().await
}

const BODY: usize = 16 * 1024;
/// The flood stops after this long (nats-server slows a publisher down
/// while one of its subscribers is slow).
const FLOOD_FOR: Duration = Duration::from_secs(8);
/// At most 64 bursts of 16 messages (16 MiB).
const BURSTS: usize = 64;

/// Checks that `tail` is whole `MSG fire 1 16384` records and at most one
/// truncated record, nothing else (no `-ERR`); returns the whole records.
fn only_messages(who: &str, tail: &str) -> usize {
    let record = format!("MSG fire 1 {BODY}\r\n{}\r\n", "x".repeat(BODY));
    let whole = tail.len() / record.len();
    let (complete, rest) = tail.split_at(whole * record.len());
    assert!(
        complete
            .as_bytes()
            .chunks(record.len())
            .all(|r| r == record.as_bytes()),
        "{who}: not only MSG records"
    );
    assert!(
        record.starts_with(rest),
        "{who}: ends with something else than a truncated record: {:?}",
        &rest[..rest.len().min(80)]
    );
    whole
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_closed_without_an_error_as_nats_server() {
    // Over max_pending, then a write stalled past write_deadline.
    let variants = [
        (64 * 1024, Duration::from_secs(30)),
        (64 * 1024 * 1024, Duration::from_millis(500)),
    ];
    for (i, (max_pending, write_deadline)) in variants.into_iter().enumerate() {
        let c = Cluster::start(1, |cfg| {
            cfg.max_payload = 64 * 1024;
            cfg.max_pending = max_pending;
            cfg.write_deadline = write_deadline;
        })
        .await;
        let detected = wait_for("slow consumer counted", || {
            c.servers[0].stats().slow_consumers == 1
        });
        let tail = slow_consumer_bytes(c.servers[0].local_addr(), detected).await;
        let n = only_messages("weft", &tail);
        eprintln!("variant {i}: weft delivered {n} whole messages, then closed");
        if let Some(nats) = NatsServerProcess::start(&format!(
            "max_payload: 65536\nmax_pending: {max_pending}\nwrite_deadline: \"{}ms\"",
            write_deadline.as_millis()
        )) {
            let detected = async {
                nats.wait_log("Slow Consumer Detected").await;
            };
            let tail = slow_consumer_bytes(nats.addr, detected).await;
            let n = only_messages("nats-server", &tail);
            eprintln!("variant {i}: nats-server delivered {n} whole messages, then closed");
        }
        c.stop().await;
    }
}
