//! Hostile and broken input on a node's cluster port.
//!
//! Each test starts two good nodes, attacks n1's TCP port (or, for the
//! wrong-secret case, also its UDP membership port) with one kind of bad
//! input from a raw socket, and checks three things:
//! - n1 closes the offending connection (the attacker reads EOF or an error);
//! - n1 counts it under its specific reason (`handshake_failures` for the
//!   handshake, `link_errors` after it, `datagrams_rejected` for UDP);
//! - n1 keeps serving its real peer: a data message n2 → n1 still arrives.
//!
//! Waits are bounded (poll every 20 ms, give up after 30 s) and never
//! assert on speed.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use common::{config, sees_up, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft::LinkEvent;
use weft::weft_proto::codec::encode_preamble;
use weft::weft_proto::handshake::{Handshake, HandshakeConfig, HandshakeError, PeerInfo, Progress, Role};
use weft::weft_proto::{Frame, NodeId};
use weft::{ChannelReceiver, Node, NodeConfig, Secret};

/// Safety bound on every wait (a hang guard, not a speed assertion).
const LIMIT: Duration = Duration::from_secs(30);
/// The channel n2 uses to prove n1 still serves it.
const CH: u32 = 7;

/// Two linked nodes; n1 has channel [`CH`] open.
struct Pair {
    n1: Node,
    n2: Node,
    rx: ChannelReceiver,
    seq: u32,
}

impl Pair {
    /// Starts n1 (with `tweak` applied to its config) and n2 seeded with
    /// n1, and waits until they see each other up and are linked.
    async fn start(tweak: impl FnOnce(&mut NodeConfig)) -> Pair {
        common::logs();
        let mut c1 = config("n1", &[]);
        tweak(&mut c1);
        let n1 = Node::start(c1).await.expect("n1 starts");
        let n2 = Node::start(config("n2", &[n1.addr()])).await.expect("n2 starts");
        for n in [&n1, &n2] {
            wait_for("n1 and n2 up", LIMIT, || sees_up(n, &["n1", "n2"])).await;
        }
        wait_for("n1 and n2 linked", LIMIT, || {
            n1.membership().is_linked("n2") && n2.membership().is_linked("n1")
        })
        .await;
        let rx = n1.channels().open(CH, 1 << 20).expect("channel");
        let mut pair = Pair { n1, n2, rx, seq: 0 };
        pair.still_serving().await;
        pair
    }

    /// n2 sends a fresh message to n1 on [`CH`]; it must be the next one
    /// n1 delivers there (so nothing an attacker sent was delivered).
    async fn still_serving(&mut self) {
        self.seq += 1;
        let payload = Bytes::from(format!("from n2 #{}", self.seq));
        self.n2
            .channels()
            .send("n1", CH, payload.clone())
            .await
            .expect("n2 queues a message for n1");
        let got = tokio::time::timeout(LIMIT, self.rx.recv())
            .await
            .expect("n1 delivers n2's message in time")
            .expect("n1's channel is open");
        assert_eq!(got.from.name, "n2", "only n2's messages are delivered");
        assert_eq!(got.payload, payload);
    }

    async fn shutdown(self) {
        self.n2.shutdown(Duration::from_secs(1)).await;
        self.n1.shutdown(Duration::from_secs(1)).await;
    }
}

fn handshake_failures(n: &Node, label: &str) -> u64 {
    n.stats().handshake_failures.get(label).copied().unwrap_or(0)
}

fn link_errors(n: &Node, label: &str) -> u64 {
    n.stats().link_errors.get(label).copied().unwrap_or(0)
}

fn datagrams_rejected(n: &Node, label: &str) -> u64 {
    n.stats().datagrams_rejected.get(label).copied().unwrap_or(0)
}

/// Waits until `count()` exceeds `before`.
async fn wait_counted(what: &str, before: u64, count: impl Fn() -> u64) {
    wait_for(what, LIMIT, || count() > before).await;
}

async fn connect(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(LIMIT, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// Reads (and discards) until the peer closes the connection: EOF or a
/// reset both count as closed. Panics if it stays open for [`LIMIT`].
async fn expect_closed(stream: &mut TcpStream) {
    let closed = tokio::time::timeout(LIMIT, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "n1 did not close the offending connection");
}

/// Sends `bytes` on a fresh connection to `addr` and returns it.
async fn send_raw(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = connect(addr).await;
    s.write_all(bytes).await.expect("write attack bytes");
    s
}

fn handshake_config(cluster: &str, name: &str, secret: &[u8]) -> HandshakeConfig {
    HandshakeConfig {
        cluster: cluster.into(),
        local: NodeId::new(name, 1),
        addr: "127.0.0.1:9".into(),
        secret: secret.to_vec(),
        max_frame: weft::weft_proto::DEFAULT_MAX_FRAME,
    }
}

/// A dialer handshake with a fixed nonce (a test, not a node).
fn dialer(cluster: &str, name: &str, secret: &[u8]) -> Handshake {
    Handshake::new(
        Role::Dialer,
        handshake_config(cluster, name, secret),
        [0x5a; 32],
        Instant::now(),
        LIMIT,
    )
}

/// Runs a dialer handshake against `addr` from the test itself, driving
/// the sans-IO [`Handshake`] over a raw TCP stream. Returns the stream,
/// the bytes read past the handshake, and how it ended.
async fn raw_handshake(
    addr: SocketAddr,
    cluster: &str,
    name: &str,
    secret: &[u8],
) -> (TcpStream, BytesMut, Result<PeerInfo, HandshakeError>) {
    let mut stream = connect(addr).await;
    let mut hs = dialer(cluster, name, secret);
    let mut buf = BytesMut::with_capacity(4096);
    let result = tokio::time::timeout(LIMIT, async {
        loop {
            while let Some(out) = hs.poll_transmit() {
                if stream.write_all(&out).await.is_err() {
                    return Err(HandshakeError::Closed);
                }
            }
            match hs.handle_input(&mut buf) {
                Ok(Progress::Pending) => {}
                Ok(Progress::Established(info)) => return Ok(info),
                Ok(Progress::Authenticated(_)) => unreachable!("a dialer is never asked to decide"),
                Err(e) => {
                    // As the contract says: send what is queued (a Reject).
                    if let Some(out) = hs.poll_transmit() {
                        let _ = stream.write_all(&out).await;
                    }
                    return Err(e);
                }
            }
            while let Some(out) = hs.poll_transmit() {
                if stream.write_all(&out).await.is_err() {
                    return Err(HandshakeError::Closed);
                }
            }
            buf.reserve(4096);
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return Err(HandshakeError::Closed),
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("raw handshake finishes in time");
    (stream, buf, result)
}

/// Deterministic pseudo-random bytes (splitmix64), so the "noise" case is
/// the same on every run.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_is_refused_on_tcp_and_udp() {
    let mut p = Pair::start(|_| {}).await;
    let n1 = p.n1.clone();

    // UDP: a whole node with another secret, n1 as its seed. Its sealed
    // membership datagrams do not open under n1's key.
    let udp_before = datagrams_rejected(&n1, "unauthentic");
    let mut c3 = config("n3", &[n1.addr()]);
    c3.secret = Secret::new(b"another-secret-9876543210".to_vec());
    let n3 = Node::start(c3).await.expect("n3 starts");
    wait_counted("n1 refuses n3's datagrams", udp_before, || {
        datagrams_rejected(&n1, "unauthentic")
    })
    .await;

    // TCP: a handshake with the wrong secret, run by the test (the node
    // never gets that far: membership keeps it from dialling).
    let tcp_before = handshake_failures(&n1, "auth_failed");
    let (mut s, _, result) = raw_handshake(n1.addr(), "test", "intruder", b"another-secret-9876543210").await;
    let err = result.expect_err("a wrong secret never establishes");
    assert!(
        matches!(
            err,
            HandshakeError::AuthFailed { .. } | HandshakeError::Rejected { .. } | HandshakeError::Closed
        ),
        "{err:?}"
    );
    expect_closed(&mut s).await;
    wait_counted("n1 counts auth_failed", tcp_before, || {
        handshake_failures(&n1, "auth_failed")
    })
    .await;
    assert!(!n1.membership().is_linked("intruder"));

    // For a while (bounded), n3 never becomes a member of n1 or n2 and is
    // never linked; the datagrams keep being refused.
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < until {
        for n in [&p.n1, &p.n2] {
            assert!(n.membership().member("n3").is_none(), "n3 joined {}", n.id());
            assert!(!n.membership().is_linked("n3"));
        }
        assert_eq!(n3.membership().members().len(), 1, "n3 learnt nobody");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(datagrams_rejected(&n1, "unauthentic") > udp_before);

    p.still_serving().await;
    n3.shutdown(Duration::from_secs(1)).await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_cluster_name_is_refused() {
    let mut p = Pair::start(|_| {}).await;
    let before = handshake_failures(&p.n1, "cluster_mismatch");
    let (mut s, _, result) = raw_handshake(p.n1.addr(), "other", "stranger", common::SECRET).await;
    let err = result.expect_err("another cluster never establishes");
    assert!(
        matches!(
            err,
            HandshakeError::ClusterMismatch { .. } | HandshakeError::Rejected { .. } | HandshakeError::Closed
        ),
        "{err:?}"
    );
    expect_closed(&mut s).await;
    wait_counted("n1 counts cluster_mismatch", before, || {
        handshake_failures(&p.n1, "cluster_mismatch")
    })
    .await;
    assert!(!p.n1.membership().is_linked("stranger"));
    p.still_serving().await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_protocol_version_is_refused() {
    let mut p = Pair::start(|_| {}).await;
    let before = handshake_failures(&p.n1, "version_mismatch");
    let mut s = send_raw(p.n1.addr(), b"WEFT\x09").await;
    expect_closed(&mut s).await;
    wait_counted("n1 counts version_mismatch", before, || {
        handshake_failures(&p.n1, "version_mismatch")
    })
    .await;
    p.still_serving().await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_request_is_refused_as_bad_magic() {
    let mut p = Pair::start(|_| {}).await;
    let before = handshake_failures(&p.n1, "bad_magic");
    let mut s = send_raw(p.n1.addr(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    expect_closed(&mut s).await;
    wait_counted("n1 counts bad_magic", before, || {
        handshake_failures(&p.n1, "bad_magic")
    })
    .await;
    p.still_serving().await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_are_refused_as_bad_magic() {
    let mut p = Pair::start(|_| {}).await;
    let bytes = noise(0x00c0_ffee, 4096);
    assert_ne!(bytes[0], b'W', "the seed must not start with the magic");
    let before = handshake_failures(&p.n1, "bad_magic");
    let mut s = send_raw(p.n1.addr(), &bytes).await;
    expect_closed(&mut s).await;
    wait_counted("n1 counts bad_magic", before, || {
        handshake_failures(&p.n1, "bad_magic")
    })
    .await;
    p.still_serving().await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_before_auth_is_refused() {
    let mut p = Pair::start(|_| {}).await;
    let before = handshake_failures(&p.n1, "oversized");
    let mut attack = BytesMut::new();
    encode_preamble(&mut attack);
    attack.put_u32(1 << 30); // a 1 GiB hello
    attack.put_slice(&[1, 0, 0]);
    let mut s = send_raw(p.n1.addr(), &attack).await;
    expect_closed(&mut s).await;
    wait_counted("n1 counts oversized (handshake)", before, || {
        handshake_failures(&p.n1, "oversized")
    })
    .await;
    p.still_serving().await;
    p.shutdown().await;
}

/// After a handshake done by the test as a fake peer with the right
/// secret: a frame of exactly `max_frame` bytes is delivered, then a length
/// prefix one byte above it closes the link, counted as `oversized`.
async fn oversized_after_auth(max_frame: Option<usize>) {
    let mut p = Pair::start(|c| {
        if let Some(m) = max_frame {
            c.link.max_frame = m;
        }
    })
    .await;
    let n1 = p.n1.clone();
    let max = n1.config().link.max_frame;
    let big = n1.channels().open(CH + 1, max + 4096).expect("channel");
    let mut events = n1.membership().link_events();
    let (mut s, _, result) = raw_handshake(n1.addr(), "test", "fake", common::SECRET).await;
    let info = result.expect("the right secret establishes a link");
    assert_eq!(info.node.name, "n1");
    wait_for("n1 has a link to fake", LIMIT, || {
        n1.membership().is_linked("fake")
    })
    .await;

    // The largest frame allowed passes.
    let mut frame = BytesMut::new();
    Frame::data(CH + 1, Bytes::from(vec![0x5a; max - 4]))
        .encode_into(max, &mut frame)
        .expect("encode a frame of exactly max_frame bytes");
    assert_eq!(frame[..4], u32::try_from(max).expect("u32").to_be_bytes());
    s.write_all(&frame).await.expect("write the largest frame");
    let d = tokio::time::timeout(LIMIT, big.recv())
        .await
        .expect("the largest frame arrives in time")
        .expect("channel open");
    assert_eq!((d.from.name.as_str(), d.payload.len()), ("fake", max - 4));

    // One byte more is refused and the link closed.
    let before = link_errors(&n1, "oversized");
    let len = u32::try_from(max + 1).expect("max_frame fits a u32");
    s.write_all(&len.to_be_bytes()).await.expect("write prefix");
    expect_closed(&mut s).await;
    wait_counted("n1 counts oversized (link)", before, || {
        link_errors(&n1, "oversized")
    })
    .await;
    wait_for("fake's link is down", LIMIT, || {
        !n1.membership().is_linked("fake")
    })
    .await;
    let mut saw_up = false;
    let mut saw_down = false;
    wait_for("link events for fake", LIMIT, || {
        while let Some(Some(Ok(e))) = futures::FutureExt::now_or_never(events.next()) {
            match e {
                LinkEvent::Up(id) if id.name == "fake" => saw_up = true,
                LinkEvent::Down(id) if id.name == "fake" => saw_down = true,
                _ => {}
            }
        }
        saw_up && saw_down
    })
    .await;
    assert!(n1.membership().is_linked("n2"));
    p.still_serving().await;
    p.shutdown().await;
}

/// Before authentication only handshake-sized frames should be buffered:
/// a 1 MiB "hello" from an unauthenticated client is refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_hello_before_auth_is_refused() {
    let mut p = Pair::start(|_| {}).await;
    let before = handshake_failures(&p.n1, "oversized");
    let mut attack = BytesMut::new();
    encode_preamble(&mut attack);
    attack.put_u32(1 << 20);
    attack.put_slice(&[1, 0, 0]);
    let mut s = send_raw(p.n1.addr(), &attack).await;
    expect_closed(&mut s).await;
    wait_counted("n1 counts oversized (handshake)", before, || {
        handshake_failures(&p.n1, "oversized")
    })
    .await;
    p.still_serving().await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_after_auth_closes_the_link() {
    oversized_after_auth(None).await;
}

/// The same with the smallest `max_frame` a node accepts (below the
/// 64 KiB read reservation: this once panicked the link reader).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_after_auth_with_small_max_frame() {
    oversized_after_auth(Some(weft::weft_proto::codec::MIN_MAX_FRAME)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frame_is_counted_and_not_delivered() {
    let mut p = Pair::start(|_| {}).await;
    let n1 = p.n1.clone();
    let (mut s, _, result) = raw_handshake(n1.addr(), "test", "fake", common::SECRET).await;
    result.expect("the right secret establishes a link");
    wait_for("n1 has a link to fake", LIMIT, || {
        n1.membership().is_linked("fake")
    })
    .await;
    let before = link_errors(&n1, "truncated");

    // Half of a data frame for the channel n1 listens on, then close.
    let mut frame = BytesMut::new();
    Frame::data(CH, Bytes::from(vec![0xab; 200]))
        .encode_into(weft::weft_proto::DEFAULT_MAX_FRAME, &mut frame)
        .expect("encode");
    s.write_all(&frame[..frame.len() / 2])
        .await
        .expect("write half a frame");
    s.shutdown().await.expect("close our side");
    expect_closed(&mut s).await;
    wait_counted("n1 counts a truncated frame", before, || {
        link_errors(&n1, "truncated")
    })
    .await;
    wait_for("fake's link is down", LIMIT, || {
        !n1.membership().is_linked("fake")
    })
    .await;
    // Nothing of the half frame was delivered: n2's next message is the
    // next delivery on the channel.
    let mut pending = Vec::new();
    assert_eq!(p.rx.drain_into(&mut pending), 0, "{pending:?}");
    p.still_serving().await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_handshake_is_counted_as_closed() {
    let mut p = Pair::start(|_| {}).await;
    let before = handshake_failures(&p.n1, "closed");
    let mut hs = dialer("test", "half", common::SECRET);
    let hello = hs.poll_transmit().expect("preamble and hello");
    assert!(hello.len() / 2 > 5, "half the hello is past the preamble");
    let mut s = send_raw(p.n1.addr(), &hello[..hello.len() / 2]).await;
    s.shutdown().await.expect("close our side");
    expect_closed(&mut s).await;
    wait_counted("n1 counts closed", before, || handshake_failures(&p.n1, "closed")).await;
    p.still_serving().await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshake_times_out() {
    let mut p = Pair::start(|c| c.link.handshake_timeout = Duration::from_millis(500)).await;
    let before = handshake_failures(&p.n1, "timeout");
    let mut preamble = BytesMut::new();
    encode_preamble(&mut preamble);
    // The preamble, then nothing: the socket stays open on our side.
    let mut s = send_raw(p.n1.addr(), &preamble).await;
    expect_closed(&mut s).await;
    wait_counted("n1 counts timeout", before, || {
        handshake_failures(&p.n1, "timeout")
    })
    .await;
    p.still_serving().await;
    p.shutdown().await;
}
