//! One client connection: the reader (parse, authenticate, publish,
//! subscribe, keepalive), the writer ([`outbound`]) and one direct weft
//! subscription per `SUB` whose sink writes into the outbound buffer
//! ([`subs`]).
//!
//! Ownership: the reader task owns the parser, the CONNECT options and
//! the ping state; the subscription table is shared with the sinks
//! (which retire their subscription at its `max`); the outbound buffer is shared
//! by everyone and written by the writer task only.

mod outbound;
mod replies;
mod subs;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::debug;
use weft::{PubMsg, PubSubError};

use crate::ctx::Ctx;
use crate::echo;
use crate::proto::json::ConnectOptions;
use crate::proto::{ClientOp, Parser, encode, headers};
use crate::stats::{self, RefuseReason};
use outbound::Outbound;
use replies::Replies;
use subs::{ClientView, SubHandle, SubSink, SubState, Subs};

/// Read buffer: at least this much room before each read.
const READ_ROOM: usize = 32 * 1024;
/// After a read at least this large is handled, the reader yields before
/// reading again. Handling it woke other tasks (the link writers its
/// publishes were queued for); tokio keeps the last task woken in the
/// worker's LIFO slot, which other workers cannot steal, so without the
/// yield a client streaming faster than one task handles would have its
/// reader ingest the whole socket backlog before the writers ran: the
/// stages of the path would take turns instead of running together
/// (measured: 16 B pub→sub went from 1.4 M to 1.9 M msgs/s).
const YIELD_AFTER_READ: usize = 16 * 1024;
/// After an error, unread input is drained this long (so that closing
/// does not reset the connection before the client read the `-ERR`).
const DRAIN_AFTER_ERROR: Duration = Duration::from_millis(200);

/// Whether the reader goes on.
enum Flow {
    Continue,
    Stop,
}

struct Client {
    ctx: Arc<Ctx>,
    cid: u64,
    out: Arc<Outbound>,
    /// `PONG`/`+OK` in command order (a `PONG` may wait for an interest
    /// barrier).
    replies: Replies,
    parser: Parser,
    opts: ConnectOptions,
    authenticated: bool,
    subs: Arc<Subs>,
    view: Arc<ClientView>,
    pings_out: u32,
    /// The reader's copy of the echo-suppression tag (hot path: no lock).
    own_tag: Option<String>,
    /// Set when the reader stopped on an error it answered.
    errored: bool,
    /// Publishes parsed from one read, published together (kept for its
    /// capacity).
    batch: Vec<PubMsg>,
}

/// Serves one accepted connection until it closes or `token` is
/// cancelled.
pub(crate) async fn run(
    ctx: Arc<Ctx>,
    stream: TcpStream,
    peer: SocketAddr,
    cid: u64,
    token: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let out = Arc::new(Outbound::new(ctx.config.max_pending, token, ctx.stats.clone()));
    out.send(&ctx.info_line(cid, peer));
    let writer = out.spawn_writer(wr, ctx.config.write_deadline);
    let mut client = Client {
        parser: Parser::new(ctx.config.limits()),
        authenticated: !ctx.config.auth.required(),
        subs: Arc::new(Subs::new(ctx.stats.clone())),
        view: Arc::new(ClientView {
            headers: AtomicBool::new(false),
            own_tag: std::sync::Mutex::new(None),
        }),
        replies: Replies::new(out.clone(), cid),
        ctx,
        cid,
        out,
        opts: ConnectOptions::default(),
        pings_out: 0,
        own_tag: None,
        errored: false,
        batch: Vec::new(),
    };
    client.read_loop(&mut rd).await;
    client.subs.clear();
    client.out.close();
    let _ = writer.await;
    if client.errored {
        drain(&mut rd).await;
    }
    debug!(cid, %peer, "client closed");
}

async fn drain(rd: &mut OwnedReadHalf) {
    let mut scratch = vec![0u8; 16 * 1024];
    let deadline = Instant::now() + DRAIN_AFTER_ERROR;
    let mut total = 0usize;
    while total < 1024 * 1024 {
        match tokio::time::timeout_at(deadline, rd.read(&mut scratch)).await {
            Ok(Ok(n)) if n > 0 => total += n,
            _ => return,
        }
    }
}

impl Client {
    async fn read_loop(&mut self, rd: &mut OwnedReadHalf) {
        let token = self.out.token.clone();
        let every = self.ctx.config.ping_interval;
        let mut ping = tokio::time::interval_at(Instant::now() + every, every);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let auth_deadline = tokio::time::sleep(self.ctx.config.auth_timeout);
        tokio::pin!(auth_deadline);
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut large = false;
        loop {
            tokio::select! {
                biased;
                _ = token.cancelled() => return,
                _ = &mut auth_deadline, if !self.authenticated => {
                    stats::add(&self.ctx.stats.auth_failures, 1);
                    self.fail("Authentication Timeout");
                    return;
                }
                // Until it authenticates, the auth timeout watches a client.
                _ = ping.tick(), if self.authenticated => {
                    if self.pings_out + 1 > self.ctx.config.max_pings_out {
                        stats::add(&self.ctx.stats.stale_connections, 1);
                        self.fail("Stale Connection");
                        return;
                    }
                    self.pings_out += 1;
                    self.out.send(encode::PING);
                }
                r = rd.read_buf(&mut buf) => match r {
                    Ok(0) => return,
                    Ok(n) => large = n >= YIELD_AFTER_READ,
                    Err(e) => {
                        debug!(cid = self.cid, error = %e, "client read failed");
                        return;
                    }
                },
            }
            if let Flow::Stop = self.parse_all(&mut buf).await {
                return;
            }
            if buf.capacity() - buf.len() < READ_ROOM {
                buf.reserve(2 * READ_ROOM);
            }
            if std::mem::take(&mut large) {
                tokio::task::yield_now().await;
            }
        }
    }

    /// Handles every complete operation in `buf`. The `PUB`s and `HPUB`s
    /// among them are published together ([`weft::PubSub::publish_batch`]:
    /// one lock of the subscription tables and one link queue push per
    /// node for all of them); any other operation first publishes those
    /// before it, so the client's order is kept. A client in `verbose` or
    /// `pedantic` mode, which gets an answer per publish, publishes one at
    /// a time.
    async fn parse_all(&mut self, buf: &mut BytesMut) -> Flow {
        let (mut msgs, mut bytes) = (0u64, 0u64);
        let mut batch = std::mem::take(&mut self.batch);
        let flow = loop {
            match self.parser.parse(buf) {
                Ok(Some(op)) => {
                    if let ClientOp::Pub { payload, .. } = &op {
                        msgs += 1;
                        bytes += payload.len() as u64;
                    } else if let ClientOp::HPub { payload, headers, .. } = &op {
                        msgs += 1;
                        bytes += (payload.len() + headers.len()) as u64;
                    }
                    let one_by_one = self.opts.verbose || self.opts.pedantic || !self.authenticated;
                    match op {
                        ClientOp::Pub {
                            subject,
                            reply,
                            payload,
                        } if !one_by_one => {
                            if let Some(m) = self.prepare_publish(subject, reply, None, payload) {
                                batch.push(m);
                            }
                        }
                        ClientOp::HPub {
                            subject,
                            reply,
                            headers,
                            payload,
                        } if !one_by_one => {
                            if let Some(m) = self.prepare_publish(subject, reply, Some(headers), payload) {
                                batch.push(m);
                            }
                        }
                        op => {
                            self.publish_batch(&mut batch).await;
                            if let Flow::Stop = self.handle(op).await {
                                break Flow::Stop;
                            }
                        }
                    }
                }
                Ok(None) => break Flow::Continue,
                Err(e) => {
                    self.publish_batch(&mut batch).await;
                    debug!(cid = self.cid, error = %e, "protocol error");
                    stats::add(&self.ctx.stats.protocol_errors, 1);
                    self.fail(e.nats_message());
                    break Flow::Stop;
                }
            }
        };
        self.publish_batch(&mut batch).await;
        self.batch = batch;
        stats::add(&self.ctx.stats.msgs_in, msgs);
        stats::add(&self.ctx.stats.bytes_in, bytes);
        flow
    }

    /// Publishes and empties `batch`; refused messages are counted and
    /// logged (pedantic clients never batch, so no `-ERR` is owed).
    async fn publish_batch(&mut self, batch: &mut Vec<PubMsg>) {
        if batch.is_empty() {
            return;
        }
        let refused = self.ctx.pubsub.publish_batch(batch.drain(..)).await;
        for (_, e) in refused {
            self.publish_failed(&e);
        }
    }

    /// Counts and logs a publish weft refused.
    fn publish_failed(&self, e: &PubSubError) {
        let reason = match e {
            PubSubError::Subject(_) => RefuseReason::InvalidSubject,
            _ => RefuseReason::SendFailed,
        };
        self.refuse(reason, e);
    }

    /// Counts and logs (rate-limited) a publish that is not published.
    fn refuse(&self, reason: RefuseReason, detail: &dyn std::fmt::Display) {
        self.ctx
            .refuse_log
            .refused(&self.ctx.stats, reason, self.cid, detail);
    }

    /// Sends `-ERR '<text>'` and closes.
    fn fail(&mut self, text: &str) {
        self.errored = true;
        self.out.close_with_error(text);
    }

    fn ok(&self) {
        if self.opts.verbose {
            self.replies.send(encode::OK);
        }
    }

    async fn handle(&mut self, op: ClientOp) -> Flow {
        if !self.authenticated && !matches!(op, ClientOp::Connect(_)) {
            stats::add(&self.ctx.stats.auth_failures, 1);
            self.fail("Authorization Violation");
            return Flow::Stop;
        }
        match op {
            ClientOp::Connect(json) => return self.connect(&json),
            ClientOp::Pub {
                subject,
                reply,
                payload,
            } => self.publish(subject, reply, None, payload).await,
            ClientOp::HPub {
                subject,
                reply,
                headers,
                payload,
            } => self.publish(subject, reply, Some(headers), payload).await,
            ClientOp::Sub { subject, queue, sid } => {
                self.replies.interest_changed();
                self.subscribe(&subject, queue.as_deref(), sid)
            }
            ClientOp::Unsub { sid, max } => {
                self.replies.interest_changed();
                match max {
                    None => {
                        self.subs.remove(&sid);
                    }
                    Some(max) => self.subs.set_max(&sid, max, &self.out),
                }
                self.ok();
            }
            ClientOp::Ping => {
                let timeout = self.ctx.config.interest_barrier_timeout;
                self.replies.ping(&self.ctx.node, timeout, &self.ctx.stats);
            }
            ClientOp::Pong => self.pings_out = 0,
        }
        Flow::Continue
    }

    fn connect(&mut self, json: &[u8]) -> Flow {
        let opts = match ConnectOptions::parse(json) {
            Ok(o) => o,
            Err(e) => {
                debug!(cid = self.cid, error = %e, "bad CONNECT");
                stats::add(&self.ctx.stats.protocol_errors, 1);
                self.fail("Unknown Protocol Operation");
                return Flow::Stop;
            }
        };
        if !self.ctx.config.auth.accepts(&opts) {
            debug!(cid = self.cid, user = ?opts.user, "authorization violation");
            stats::add(&self.ctx.stats.auth_failures, 1);
            self.fail("Authorization Violation");
            return Flow::Stop;
        }
        if opts.no_responders && !opts.headers {
            stats::add(&self.ctx.stats.protocol_errors, 1);
            self.fail("No Responders Requires Headers Support");
            return Flow::Stop;
        }
        self.authenticated = true;
        self.view.headers.store(opts.headers, Ordering::Relaxed);
        self.own_tag = (!opts.echo).then(|| echo::tag(&self.ctx.server_id, self.cid));
        *self.view.own_tag.lock().unwrap_or_else(|p| p.into_inner()) = self.own_tag.clone();
        debug!(cid = self.cid, name = ?opts.name, lang = ?opts.lang, version = ?opts.version, "client connected");
        self.opts = opts;
        self.ok();
        Flow::Continue
    }

    /// Turns a `PUB`/`HPUB` into a weft message, or handles it here and
    /// returns `None`: a publish weft cannot carry is refused (counted by
    /// reason and logged), a request nobody can answer gets the
    /// no-responders status. What the client is sent comes in nats-server's
    /// order: the pedantic `-ERR` first, then the verbose `+OK`, then any
    /// delivery or status.
    fn prepare_publish(
        &mut self,
        subject: Bytes,
        reply: Option<Bytes>,
        hdr: Option<Bytes>,
        payload: Bytes,
    ) -> Option<PubMsg> {
        // `HPUB` with a header size of 0 is a plain message, delivered as
        // `MSG` (as nats-server): nats.js sends it for a publish with an
        // empty `headers()` and for every JetStream publish.
        let hdr = hdr.filter(|h| !h.is_empty());
        if self.opts.pedantic && !nats_literal_subject(&subject) {
            // nats-server's pedantic check; it still publishes, weft
            // refuses below (an empty token or a wildcard is not a weft
            // subject).
            self.out.send(b"-ERR 'Invalid Publish Subject'\r\n");
        }
        self.ok();
        let (Ok(subject_str), Ok(reply)) = (
            std::str::from_utf8(&subject),
            reply.as_deref().map(std::str::from_utf8).transpose(),
        ) else {
            self.refuse(
                RefuseReason::NotUtf8,
                &format_args!(
                    "subject {:?} or reply {:?} is not UTF-8",
                    String::from_utf8_lossy(&subject),
                    reply.as_deref().map(String::from_utf8_lossy)
                ),
            );
            return None;
        };
        let mut headers = match hdr.as_deref().map(headers::parse) {
            None => Vec::new(),
            Some(Ok(h)) if h.is_empty() => {
                // `NATS/1.0\r\n\r\n`: delivered as `HMSG` with that block
                // (as nats-server), which weft's empty headers cannot say.
                vec![(headers::EMPTY_BLOCK_KEY.to_string(), String::new())]
            }
            Some(Ok(h)) => h,
            Some(Err(e)) => {
                self.refuse(
                    RefuseReason::BadHeaders,
                    &format_args!("subject {subject_str:?}: {e}"),
                );
                return None;
            }
        };
        if let Some(tag) = &self.own_tag {
            headers.push((echo::KEY.to_string(), echo::value(tag, hdr.is_some())));
        }
        if let Some(r) = reply
            && self.opts.no_responders
            && self.opts.headers
            && weft::weft_proto::subject::validate_subject(subject_str).is_ok()
            && !self.ctx.pubsub.has_interest(subject_str)
        {
            if let Some(state) = self.subs.first_matching(r) {
                subs::deliver_no_responders(r.as_bytes(), &state, &self.out, &self.ctx.stats);
            }
            return None;
        }
        Some(PubMsg {
            subject: subject_str.to_string(),
            reply: reply.map(str::to_string),
            headers,
            payload,
        })
    }

    async fn publish(&mut self, subject: Bytes, reply: Option<Bytes>, hdr: Option<Bytes>, payload: Bytes) {
        let Some(msg) = self.prepare_publish(subject, reply, hdr, payload) else {
            return;
        };
        if let Err(e) = self.ctx.pubsub.publish_msg(msg).await {
            self.publish_failed(&e);
        }
    }

    fn subscribe(&mut self, subject: &[u8], queue: Option<&[u8]>, sid: Bytes) {
        if self.subs.contains(&sid) {
            // nats-server ignores a SUB that reuses a live sid.
            return self.ok();
        }
        if self.subs.len() >= self.ctx.config.max_subscriptions {
            self.out.send(b"-ERR 'Maximum Subscriptions Exceeded'\r\n");
            return;
        }
        let pattern = std::str::from_utf8(subject).ok();
        let queue = match queue.map(std::str::from_utf8) {
            None => Ok(None),
            Some(Ok(q)) => Ok(Some(q)),
            Some(Err(_)) => Err(()),
        };
        let state = Arc::new(SubState {
            sid,
            active: AtomicBool::new(true),
            delivered: Default::default(),
            max: u64::MAX.into(),
        });
        let sink = Arc::new(SubSink {
            state: state.clone(),
            out: self.out.clone(),
            view: self.view.clone(),
            stats: self.ctx.stats.clone(),
            subs: Arc::downgrade(&self.subs),
        });
        let sub = match (pattern, queue) {
            (Some(p), Ok(q)) => self.ctx.pubsub.subscribe_direct(p, q, sink).ok(),
            _ => None,
        };
        let Some(sub) = sub else {
            self.out.send(b"-ERR 'Invalid Subject'\r\n");
            return;
        };
        self.subs.insert(SubHandle { sub, state });
        self.ok();
    }
}

/// nats-server's pedantic test of a publish subject
/// (`IsValidLiteralSubject`): no empty token and no `*` or `>` token.
fn nats_literal_subject(subject: &[u8]) -> bool {
    subject
        .split(|&b| b == b'.')
        .all(|t| !t.is_empty() && t != b"*" && t != b">")
}

#[cfg(test)]
mod tests {
    use super::nats_literal_subject;

    #[test]
    fn literal_subjects_as_nats_server() {
        for ok in [&b"a"[..], b"a.b", b"a*.b>", b"\xff\xfe", b"$GNR.x"] {
            assert!(nats_literal_subject(ok), "{ok:?}");
        }
        for bad in [&b""[..], b"a..b", b".a", b"a.", b"a.*", b"a.>", b"*", b">.a"] {
            assert!(!nats_literal_subject(bad), "{bad:?}");
        }
    }
}
