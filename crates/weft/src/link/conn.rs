//! One established connection: a reader task and a writer task.
//!
//! The writer drains the peer's [`ByteQueue`] (control lane first) in
//! batches of up to [`BATCH_BYTES`] and writes each batch with one
//! vectored write where the OS allows it: many small frames per syscall,
//! large payloads passed by reference (never copied). It also queues a ping
//! every heartbeat interval. The reader decodes frames out of one growing
//! buffer (payloads are views, not copies), answers pings, and hands every
//! other frame to the node's [`FrameHandler`] without blocking; a link that
//! delivers nothing for `idle_timeout` is closed.

use std::io::IoSlice;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;
use weft_proto::frame::{Header, Ping};
use weft_proto::{EncodedFrame, Frame, FrameDecoder, NodeId};

use crate::net::BoxStream;
use crate::queue::{ByteQueue, ByteSized};
use crate::stats::{PeerCounters, Stats};

/// Most bytes taken off the queue for one write.
pub const BATCH_BYTES: usize = 256 * 1024;
/// Payloads at most this long are copied into the batch buffer; longer
/// ones are written by reference.
const COPY_LIMIT: usize = 8 * 1024;
/// After a read at least this large is decoded and handled, the reader
/// yields before reading again, so that the tasks its frames woke (a
/// client writer, say) run first. Tokio keeps the last task woken in the
/// worker's LIFO slot, which other workers cannot steal: without the
/// yield a fast link would have its reader take in the whole socket
/// backlog while the tasks downstream wait, and the stages of a message's
/// path would take turns instead of running together.
const YIELD_AFTER_READ: usize = 16 * 1024;
/// Most slices handed to one vectored write.
const MAX_IOVECS: usize = 64;

impl ByteSized for EncodedFrame {
    fn byte_len(&self) -> usize {
        self.wire_len()
    }

    fn messages(&self) -> usize {
        self.frames as usize
    }
}

/// Receives every frame a link does not handle itself.
///
/// Contract: `on_frame` must not block; it runs on the link's reader, so a
/// slow handler stalls that link only. Queue or drop (and count) instead.
pub trait FrameHandler: Send + Sync + 'static {
    /// A frame arrived from `from`.
    fn on_frame(&self, from: &NodeId, frame: Frame);

    /// The peer is ready: a link to it is established **and** membership
    /// reports it up. Called once per connection, before the connection
    /// reads anything when membership already knew the peer, otherwise
    /// as soon as membership learns of it.
    fn on_link_up(&self, _peer: &NodeId) {}

    /// A ready link to `peer` closed (the peer may still be a member).
    fn on_link_down(&self, _peer: &NodeId) {}

    /// Membership declared `peer` down: purge what it owned.
    fn on_member_down(&self, _peer: &NodeId) {}

    /// Frames queued for `peer` were never written: the run of the peer
    /// they were for ended (down, or restarted). Called with the peer's
    /// state locked: must not call back into the links.
    fn on_unsent(&self, _peer: &str, _frames: &[EncodedFrame]) {}
}

/// Why a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed the TCP stream.
    Eof,
    /// A read or write failed.
    Io(String),
    /// Nothing was received for the idle timeout.
    Idle,
    /// The peer sent an undecodable or oversized frame.
    Frame(&'static str),
    /// The peer sent a frame that has no place on an open link.
    Protocol(&'static str),
    /// The peer said goodbye.
    PeerLeft,
    /// Closed locally (replaced, peer down, shutdown).
    Local,
    /// The peer closed the stream in the middle of a frame.
    Truncated,
    /// A frame handler panicked on the reader.
    HandlerPanic,
}

impl CloseReason {
    /// A short static label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            CloseReason::Eof => "eof",
            CloseReason::Io(_) => "io",
            CloseReason::Idle => "idle_timeout",
            CloseReason::Frame(l) => l,
            CloseReason::Protocol(_) => "protocol",
            CloseReason::PeerLeft => "peer_left",
            CloseReason::Local => "local",
            CloseReason::Truncated => "truncated",
            CloseReason::HandlerPanic => "handler_panic",
        }
    }
}

/// What a connection needs to run.
pub(crate) struct ConnParams {
    pub peer: NodeId,
    pub queue: Arc<ByteQueue<EncodedFrame>>,
    pub counters: Arc<PeerCounters>,
    pub stats: Arc<Stats>,
    pub handler: Arc<dyn FrameHandler>,
    pub max_frame: usize,
    pub heartbeat: Duration,
    pub idle_timeout: Duration,
    pub cancel: CancellationToken,
    pub rtt_micros: Arc<AtomicU64>,
    pub epoch: Instant,
}

/// Runs the connection until it ends; returns why.
pub(crate) async fn run(stream: BoxStream, leftover: BytesMut, p: ConnParams) -> CloseReason {
    let (rd, wr) = tokio::io::split(stream);
    let p = Arc::new(p);
    let writer = {
        let p = p.clone();
        tokio::spawn(async move { write_loop(wr, &p).await })
    };
    // A panic in a frame handler must not leave a link that looks alive
    // but reads nothing: it ends the connection, which is then redialled.
    let reason = match std::panic::AssertUnwindSafe(read_loop(rd, leftover, &p))
        .catch_unwind()
        .await
    {
        Ok(reason) => reason,
        Err(_) => {
            tracing::error!(peer = %p.peer, "frame handler panicked; closing the link");
            CloseReason::HandlerPanic
        }
    };
    p.cancel.cancel();
    let write_reason = writer.await.unwrap_or(CloseReason::Local);
    // The reader's reason is the more telling one unless it only saw the
    // local cancellation caused by a write failure.
    if reason == CloseReason::Local {
        write_reason
    } else {
        reason
    }
}

async fn read_loop(mut rd: tokio::io::ReadHalf<BoxStream>, mut buf: BytesMut, p: &ConnParams) -> CloseReason {
    let mut decoder = FrameDecoder::new(p.max_frame);
    let idle = tokio::time::sleep(p.idle_timeout);
    tokio::pin!(idle);
    let mut large = false;
    loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    p.counters.frames_received.fetch_add(1, Ordering::Relaxed);
                    if let Some(reason) = on_frame(frame, p) {
                        return reason;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    debug!(peer = %p.peer, error = %e, "closing link: bad frame");
                    return CloseReason::Frame(e.label());
                }
            }
        }
        if std::mem::take(&mut large) {
            tokio::task::yield_now().await;
        }
        let want = decoder
            .bytes_wanted(&buf)
            .clamp(64 * 1024, (p.max_frame + 8).max(64 * 1024));
        buf.reserve(want);
        tokio::select! {
            _ = p.cancel.cancelled() => return CloseReason::Local,
            _ = &mut idle => return CloseReason::Idle,
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) if buf.is_empty() => return CloseReason::Eof,
                Ok(0) => return CloseReason::Truncated,
                Ok(n) => {
                    large = n >= YIELD_AFTER_READ;
                    p.counters.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
                    idle.as_mut().reset(Instant::now() + p.idle_timeout);
                }
                Err(e) => return CloseReason::Io(e.to_string()),
            },
        }
    }
}

#[inline(always)]
fn on_frame(frame: Frame, p: &ConnParams) -> Option<CloseReason> {
    match frame.header {
        Header::Ping(ping) => {
            match Frame::control(Header::Pong(ping)).encode(p.max_frame) {
                Ok(pong) => {
                    if p.queue.try_push(pong, true).is_err() {
                        p.stats.frames_dropped.inc("control_queue_full");
                    }
                }
                Err(_) => p.stats.frames_dropped.inc("encode"),
            }
            None
        }
        Header::Pong(ping) => {
            let now = Instant::now().duration_since(p.epoch).as_micros() as u64;
            p.rtt_micros
                .store(now.saturating_sub(ping.sent_micros), Ordering::Relaxed);
            None
        }
        Header::Goodbye(g) => {
            debug!(peer = %p.peer, reason = %g.reason, "peer said goodbye");
            Some(CloseReason::PeerLeft)
        }
        Header::Hello(_) | Header::Auth(_) | Header::Welcome | Header::Reject(_) => {
            Some(CloseReason::Protocol(frame.header.name()))
        }
        Header::Unknown { kind } => {
            debug!(peer = %p.peer, kind, "skipping frame of unknown kind");
            p.stats.unknown_frames.fetch_add(1, Ordering::Relaxed);
            None
        }
        Header::Publish(_) => {
            // Counted here, where the peer's counters are at hand, rather
            // than looked up by name for every publish.
            p.counters.publishes_received.fetch_add(1, Ordering::Relaxed);
            p.handler.on_frame(&p.peer, frame);
            None
        }
        Header::Data(_)
        | Header::Registry
        | Header::RegistryAck(_)
        | Header::Tell(_)
        | Header::TellNamed(_)
        | Header::Reply(_)
        | Header::GroupPublish(_)
        | Header::StreamSubscribe(_)
        | Header::StreamData(_)
        | Header::StreamUnsubscribe(_)
        | Header::StreamEnd(_)
        | Header::StreamHeartbeat(_)
        | Header::StreamAttached(_)
        | Header::StreamAttach(_)
        | Header::RpcRequest(_)
        | Header::RpcReply(_)
        | Header::DeadLetter(_) => {
            p.handler.on_frame(&p.peer, frame);
            None
        }
    }
}

async fn write_loop(mut wr: tokio::io::WriteHalf<BoxStream>, p: &ConnParams) -> CloseReason {
    let mut batch: Vec<EncodedFrame> = Vec::with_capacity(1024);
    let mut segments: Vec<Bytes> = Vec::with_capacity(MAX_IOVECS * 2);
    let mut staging = BytesMut::with_capacity(BATCH_BYTES);
    let mut heartbeat = tokio::time::interval(p.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    loop {
        tokio::select! {
            biased;
            _ = p.cancel.cancelled() => {
                // Flush what is already queued (e.g. a goodbye), briefly.
                let flush = async {
                    p.queue.drain_into(&mut batch, BATCH_BYTES);
                    write_batch(&mut wr, &batch, &mut staging, &mut segments).await
                };
                let _ = tokio::time::timeout(Duration::from_millis(200), flush).await;
                let _ = wr.shutdown().await;
                return CloseReason::Local;
            }
            _ = heartbeat.tick() => {
                seq += 1;
                let sent_micros = Instant::now().duration_since(p.epoch).as_micros() as u64;
                if let Ok(ping) = Frame::control(Header::Ping(Ping { seq, sent_micros })).encode(p.max_frame)
                    && p.queue.try_push(ping, true).is_err() {
                        p.stats.frames_dropped.inc("control_queue_full");
                    }
                continue;
            }
            ready = p.queue.wait_readable() => {
                if !ready {
                    return CloseReason::Local;
                }
            }
        }
        p.queue.drain_into(&mut batch, BATCH_BYTES);
        if batch.is_empty() {
            continue;
        }
        // An item may be a run of many frames (see `FrameRun`).
        let frames = batch.iter().map(ByteSized::messages).sum::<usize>() as u64;
        match write_batch(&mut wr, &batch, &mut staging, &mut segments).await {
            Ok(bytes) => {
                p.counters.frames_sent.fetch_add(frames, Ordering::Relaxed);
                p.counters.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
                batch.clear();
            }
            Err(e) => {
                // Frames taken for this batch may be partly written: at most
                // once, counted as lost with the link.
                p.stats.frames_dropped.add("link_lost", frames);
                return CloseReason::Io(e.to_string());
            }
        }
    }
}

/// Writes `batch`, coalescing small frames; returns the bytes written.
async fn write_batch<W: AsyncWrite + Unpin>(
    wr: &mut W,
    batch: &[EncodedFrame],
    staging: &mut BytesMut,
    segments: &mut Vec<Bytes>,
) -> std::io::Result<usize> {
    segments.clear();
    let mut total = 0;
    for f in batch {
        total += f.wire_len();
        staging.extend_from_slice(&f.head);
        if f.payload.len() <= COPY_LIMIT {
            staging.extend_from_slice(&f.payload);
        } else {
            segments.push(staging.split().freeze());
            segments.push(f.payload.clone());
        }
    }
    if !staging.is_empty() {
        segments.push(staging.split().freeze());
    }
    let mut idx = 0;
    while idx < segments.len() {
        let n = {
            let slices: Vec<IoSlice<'_>> = segments[idx..]
                .iter()
                .take(MAX_IOVECS)
                .map(|b| IoSlice::new(b))
                .collect();
            wr.write_vectored(&slices).await?
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let mut left = n;
        while left > 0 && idx < segments.len() {
            let len = segments[idx].len();
            if left >= len {
                left -= len;
                idx += 1;
            } else {
                segments[idx].advance(left);
                left = 0;
            }
        }
        while idx < segments.len() && segments[idx].is_empty() {
            idx += 1;
        }
    }
    segments.clear();
    wr.flush().await?;
    Ok(total)
}
