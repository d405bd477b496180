//! Codec micro-benchmarks: data-frame encode and decode at 16 B, 1 KiB and
//! 64 KiB payloads, and a full link handshake (both sides to
//! `Established`) per iteration.
//!
//! ```text
//! cargo bench -p weft-proto --bench codec
//! ```
//!
//! `encode` is the send path ([`Frame::encode`]: a small head, the payload
//! shared, not copied); `encode_into` copies the payload into one buffer;
//! `decode/single` takes one frame off a fresh receive buffer, and
//! `decode/stream64` 64 frames off one buffer, as a link reader does (the
//! payload is a view either way).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use weft_proto::handshake::{Handshake, HandshakeConfig, Progress, Role};
use weft_proto::{DEFAULT_MAX_FRAME, Frame, FrameDecoder, NodeId};

const SIZES: [usize; 3] = [16, 1024, 64 * 1024];

fn label(size: usize) -> String {
    if size >= 1024 {
        format!("{}KiB", size / 1024)
    } else {
        format!("{size}B")
    }
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for size in SIZES {
        let frame = Frame::data(7, Bytes::from(vec![0xA5u8; size]));
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("encode", label(size)), &frame, |b, f| {
            b.iter(|| black_box(f).encode(DEFAULT_MAX_FRAME).expect("encode"))
        });
        let mut buf = BytesMut::with_capacity(size + 64);
        g.bench_with_input(BenchmarkId::new("encode_into", label(size)), &frame, |b, f| {
            b.iter(|| {
                buf.clear();
                black_box(f)
                    .encode_into(DEFAULT_MAX_FRAME, &mut buf)
                    .expect("encode");
                black_box(buf.len())
            })
        });
    }
    g.finish();
}

/// Frames per receive buffer in the `stream` decode benchmark.
const STREAM_FRAMES: usize = 64;

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for size in SIZES {
        let mut wire = BytesMut::new();
        Frame::data(7, Bytes::from(vec![0xA5u8; size]))
            .encode_into(DEFAULT_MAX_FRAME, &mut wire)
            .expect("encode");
        let one = wire.clone().freeze();
        let mut stream = BytesMut::with_capacity(wire.len() * STREAM_FRAMES);
        for _ in 0..STREAM_FRAMES {
            stream.extend_from_slice(&wire);
        }
        let stream = stream.freeze();
        // Each iteration needs its own receive buffer (decoding consumes
        // it); filling it is setup, not measured. Small batches keep
        // memory bounded at 64 KiB frames.
        let batch = if size > 4096 { 2 } else { 16 };

        // One frame in a fresh buffer: includes the one-time cost of
        // turning the buffer into a shared one on the first split.
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("single", label(size)), &one, |b, w| {
            let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
            b.iter_batched_ref(
                || BytesMut::from(&w[..]),
                |buf| dec.decode(buf).expect("decode").expect("whole frame"),
                BatchSize::NumIterations(64),
            )
        });
        // 64 frames back to back, as a link reader sees them: the
        // steady-state per-frame cost is the time shown divided by 64.
        g.throughput(Throughput::Bytes((size * STREAM_FRAMES) as u64));
        g.bench_with_input(BenchmarkId::new("stream64", label(size)), &stream, |b, w| {
            let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
            b.iter_batched_ref(
                || BytesMut::from(&w[..]),
                |buf| {
                    let mut n = 0usize;
                    while let Some(f) = dec.decode(buf).expect("decode") {
                        n += f.payload.len();
                    }
                    assert!(buf.is_empty());
                    n
                },
                BatchSize::NumIterations(batch),
            )
        });
    }
    g.finish();
}

fn config(name: &str) -> HandshakeConfig {
    HandshakeConfig {
        cluster: "bench".into(),
        local: NodeId::new(name, 1),
        addr: format!("{name}:7420"),
        secret: b"bench-secret-0123456789".to_vec(),
        max_frame: DEFAULT_MAX_FRAME,
    }
}

/// Runs a dialer and an acceptor against each other in memory until both
/// are established.
fn handshake_pair(dc: &HandshakeConfig, ac: &HandshakeConfig) {
    let now = Instant::now();
    let timeout = Duration::from_secs(5);
    let mut d = Handshake::new(Role::Dialer, dc.clone(), [1; 32], now, timeout);
    let mut a = Handshake::new(Role::Acceptor, ac.clone(), [2; 32], now, timeout);
    let mut to_a = BytesMut::new();
    let mut to_d = BytesMut::new();
    let (mut d_done, mut a_done) = (false, false);
    for _ in 0..8 {
        while let Some(b) = d.poll_transmit() {
            to_a.extend_from_slice(&b);
        }
        if !a_done {
            match a.handle_input(&mut to_a).expect("acceptor") {
                Progress::Authenticated(_) => {
                    a.accept().expect("accept");
                    a_done = true;
                }
                Progress::Established(_) => a_done = true,
                Progress::Pending => {}
            }
        }
        while let Some(b) = a.poll_transmit() {
            to_d.extend_from_slice(&b);
        }
        if !d_done {
            d_done = matches!(
                d.handle_input(&mut to_d).expect("dialer"),
                Progress::Established(_)
            );
        }
        if d_done && a_done {
            return;
        }
    }
    panic!("handshake did not complete");
}

fn handshake(c: &mut Criterion) {
    let dc = config("n1");
    let ac = config("n2");
    c.bench_function("handshake/both_established", |b| {
        b.iter(|| handshake_pair(black_box(&dc), black_box(&ac)))
    });
}

criterion_group! {
    name = benches;
    // Short runs: the machine this runs on is shared and small.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = encode, decode, handshake
}
criterion_main!(benches);
