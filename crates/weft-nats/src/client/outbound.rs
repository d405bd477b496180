//! A client's outbound buffer and the one task that writes it.
//!
//! Everything sent to a client (INFO, PONG, +OK, -ERR, MSG, HMSG) is
//! appended to one buffer under a mutex, by the client's reader and by its
//! subscriptions' sinks (on the tasks delivering weft messages: link
//! readers and local publishers); the writer swaps the whole buffer out and
//! writes it with one `write_all`, so many messages share a syscall
//! (write batching: whatever was appended while the previous write was
//! in flight goes out together). The writer does not wait to fill a
//! batch: a lone reply is written as soon as it is appended, which keeps
//! request/reply latency low. Pending bytes (buffered plus being written) are
//! bounded by `max_pending`; a write stalled past `write_deadline` or a
//! buffer over the bound makes the client a slow consumer: what is
//! buffered is dropped, a write in progress is abandoned (the client may
//! get a truncated record) and the connection is closed without an
//! `-ERR`, byte for byte as nats-server does, so that clients see a
//! closed connection and reconnect (nats-py treats an unknown `-ERR` as
//! fatal). Other clients are not affected.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::proto::encode;
use crate::stats::{self, NatsStats};

/// Grace for the final `-ERR` and the rest of the buffer when closing.
const CLOSE_GRACE: Duration = Duration::from_millis(500);
/// A write buffer that grew beyond this is not kept for reuse.
const KEEP_CAPACITY: usize = 4 * 1024 * 1024;

/// Why a client is being closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Closing {
    /// Flush what is buffered (an `-ERR` perhaps), then close.
    Flush,
    /// A slow consumer: drop what is buffered, abandon the write in
    /// progress, close (no `-ERR`, as nats-server).
    SlowConsumer,
}

struct State {
    buf: BytesMut,
    in_flight: usize,
    closing: Option<Closing>,
}

/// The shared outbound side of one client.
pub(crate) struct Outbound {
    state: Mutex<State>,
    wake: Notify,
    max_pending: usize,
    /// Cancelled when the client must stop (any reason).
    pub(crate) token: CancellationToken,
    /// Cancelled when the client is a slow consumer: the writer abandons
    /// its write at once instead of waiting for `write_deadline`.
    abort: CancellationToken,
    stats: Arc<NatsStats>,
}

/// The buffer, locked, for appending protocol records.
pub(crate) struct Guard<'a> {
    outbound: &'a Outbound,
    state: MutexGuard<'a, State>,
}

impl Guard<'_> {
    /// The buffer to append to.
    pub(crate) fn buf(&mut self) -> &mut BytesMut {
        &mut self.state.buf
    }

    /// Whether pending bytes (buffered plus being written) are over
    /// `max_pending`: dropping the guard then closes the client as a slow
    /// consumer.
    pub(crate) fn over_limit(&self) -> bool {
        self.state.buf.len() + self.state.in_flight > self.outbound.max_pending
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let pending = self.state.buf.len() + self.state.in_flight;
        if pending > self.outbound.max_pending && self.state.closing.is_none() {
            warn!(
                pending,
                max = self.outbound.max_pending,
                "NATS slow consumer closed: pending bytes over max_pending"
            );
            self.state.buf.clear();
            self.state.closing = Some(Closing::SlowConsumer);
            stats::add(&self.outbound.stats.slow_consumers, 1);
            self.outbound.token.cancel();
            self.outbound.abort.cancel();
        }
        self.outbound.wake.notify_one();
    }
}

impl Outbound {
    pub(crate) fn new(max_pending: usize, token: CancellationToken, stats: Arc<NatsStats>) -> Self {
        Self {
            state: Mutex::new(State {
                buf: BytesMut::with_capacity(16 * 1024),
                in_flight: 0,
                closing: None,
            }),
            wake: Notify::new(),
            max_pending,
            token,
            abort: CancellationToken::new(),
            stats,
        }
    }

    fn locked(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Locks the buffer for appending; `None` once the client is closing.
    /// Dropping the guard wakes the writer and enforces `max_pending`.
    pub(crate) fn lock(&self) -> Option<Guard<'_>> {
        let state = self.locked();
        if state.closing.is_some() {
            return None;
        }
        Some(Guard {
            outbound: self,
            state,
        })
    }

    /// Appends `bytes` (unless closing).
    pub(crate) fn send(&self, bytes: &[u8]) {
        if let Some(mut g) = self.lock() {
            g.buf().extend_from_slice(bytes);
        }
    }

    /// Appends `-ERR '<text>'` (unless already closing) and closes after
    /// flushing.
    pub(crate) fn close_with_error(&self, text: &str) {
        {
            let mut s = self.locked();
            if s.closing.is_some() {
                return;
            }
            encode::err(&mut s.buf, text);
            s.closing = Some(Closing::Flush);
        }
        self.token.cancel();
        self.wake.notify_one();
    }

    /// Closes after flushing what is buffered.
    pub(crate) fn close(&self) {
        {
            let mut s = self.locked();
            if s.closing.is_none() {
                s.closing = Some(Closing::Flush);
            }
        }
        self.token.cancel();
        self.wake.notify_one();
    }

    /// Closes the client as a slow consumer (counted): what is buffered is
    /// dropped and the connection closed without an `-ERR`, as nats-server
    /// does (clients then reconnect).
    pub(crate) fn close_slow_consumer(&self) {
        {
            let mut s = self.locked();
            if s.closing.is_none() {
                s.buf.clear();
                s.closing = Some(Closing::SlowConsumer);
                stats::add(&self.stats.slow_consumers, 1);
            }
        }
        self.token.cancel();
        self.wake.notify_one();
    }

    fn mark_stalled(&self) {
        let mut s = self.locked();
        if s.closing.is_none() {
            s.closing = Some(Closing::SlowConsumer);
            stats::add(&self.stats.slow_consumers, 1);
        }
    }

    /// Starts the writer task for `wr`.
    pub(crate) fn spawn_writer(self: &Arc<Self>, wr: OwnedWriteHalf, deadline: Duration) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move { me.write_loop(wr, deadline).await })
    }

    async fn write_loop(&self, mut wr: OwnedWriteHalf, deadline: Duration) {
        let mut data = BytesMut::with_capacity(16 * 1024);
        loop {
            enum Next {
                Wait,
                Write(Option<Closing>),
            }
            let next = {
                let mut s = self.locked();
                if s.buf.is_empty() && s.closing.is_none() {
                    Next::Wait
                } else {
                    std::mem::swap(&mut s.buf, &mut data);
                    s.in_flight = data.len();
                    Next::Write(s.closing)
                }
            };
            let closing = match next {
                Next::Wait => {
                    self.wake.notified().await;
                    continue;
                }
                Next::Write(closing) => closing,
            };
            if !data.is_empty() {
                let limit = if closing.is_some() { CLOSE_GRACE } else { deadline };
                let written = tokio::select! {
                    r = tokio::time::timeout(limit, wr.write_all(&data)) => r,
                    // Over `max_pending` while this write waited.
                    _ = self.abort.cancelled() => break,
                };
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        debug!(error = %e, "client write failed");
                        break;
                    }
                    Err(_) if closing.is_some() => break,
                    Err(_) => {
                        warn!(
                            ?deadline,
                            "NATS slow consumer closed: write stalled past write_deadline"
                        );
                        self.mark_stalled();
                        break;
                    }
                }
            }
            data.clear();
            if data.capacity() > KEEP_CAPACITY {
                data = BytesMut::with_capacity(16 * 1024);
            }
            let after = {
                let mut s = self.locked();
                s.in_flight = 0;
                if s.closing == Some(Closing::SlowConsumer) {
                    s.buf.clear();
                }
                (s.closing, s.buf.is_empty())
            };
            match after {
                (Some(Closing::Flush), true) | (Some(Closing::SlowConsumer), _) => break,
                _ => {}
            }
        }
        self.token.cancel();
        let _ = tokio::time::timeout(CLOSE_GRACE, wr.shutdown()).await;
    }
}
