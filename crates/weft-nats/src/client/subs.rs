//! A client's subscriptions: one direct weft subscription per `SUB`
//! whose sink ([`SubSink`]) encodes each message as a `MSG`/`HMSG` record
//! straight into the client's outbound buffer, on the task that delivers
//! it (the link reader for messages from other nodes, the publishing
//! client's reader for local ones), and wakes the client's writer. No
//! queue and no task sit between weft and the outbound buffer.
//!
//! `UNSUB` and the auto-unsubscribe limit are checked per message under
//! the outbound buffer's lock, so a subscription never delivers more than
//! its `max`; reaching it retires the subscription from a spawned task
//! (a sink must not unsubscribe from inside weft's delivery).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use weft::{DeliverySink, DirectSubscription, PubMsg, SinkResult};

use super::outbound::Outbound;
use crate::echo::{self, Origin};
use crate::proto::{encode, headers};
use crate::stats::{self, NatsStats};

/// What the sink and the reader share about one subscription.
pub(crate) struct SubState {
    /// The client's id for it.
    pub sid: Bytes,
    /// Cleared by `UNSUB` or when `max` is reached.
    pub active: AtomicBool,
    /// Messages delivered so far.
    pub delivered: AtomicU64,
    /// Auto-unsubscribe after this many (`u64::MAX`: never).
    pub max: AtomicU64,
}

/// A subscription held by a client.
pub(crate) struct SubHandle {
    pub sub: DirectSubscription,
    pub state: Arc<SubState>,
}

/// How the client wants its messages.
pub(crate) struct ClientView {
    /// The client understands `HMSG`.
    pub headers: AtomicBool,
    /// This client's echo-suppression tag (`None` while echo is on).
    pub own_tag: Mutex<Option<String>>,
}

/// The subscriptions of one client, by sid.
pub(crate) struct Subs {
    pub map: Mutex<HashMap<Bytes, SubHandle>>,
    pub stats: Arc<NatsStats>,
}

impl Subs {
    pub(crate) fn new(stats: Arc<NatsStats>) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            stats,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Bytes, SubHandle>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of subscriptions.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether `sid` is taken.
    pub(crate) fn contains(&self, sid: &[u8]) -> bool {
        self.lock().contains_key(sid)
    }

    /// Adds a subscription.
    pub(crate) fn insert(&self, handle: SubHandle) {
        stats::add(&self.stats.subscriptions, 1);
        if let Some(old) = self.lock().insert(handle.state.sid.clone(), handle) {
            self.retire(old);
        }
    }

    /// Removes `sid` now; returns whether it existed.
    pub(crate) fn remove(&self, sid: &[u8]) -> bool {
        let removed = self.lock().remove(sid);
        match removed {
            Some(h) => {
                self.retire(h);
                true
            }
            None => false,
        }
    }

    /// Removes `sid` if it is still the subscription `state` (a sink
    /// retiring its subscription after its max).
    fn remove_if(&self, state: &Arc<SubState>) {
        let mut map = self.lock();
        if map.get(&state.sid).is_some_and(|h| Arc::ptr_eq(&h.state, state)) {
            let h = map.remove(&state.sid);
            drop(map);
            if let Some(h) = h {
                self.retire(h);
            }
        }
    }

    /// `UNSUB sid max`: stop now if `max` is already reached, else later.
    /// `max` is set under the outbound lock, where the sink counts.
    pub(crate) fn set_max(&self, sid: &[u8], max: u64, out: &Outbound) {
        let reached = {
            let map = self.lock();
            let Some(h) = map.get(sid) else { return };
            let guard = out.lock();
            h.state.max.store(max, Ordering::Release);
            let reached = h.state.delivered.load(Ordering::Acquire) >= max;
            drop(guard);
            reached
        };
        if reached {
            self.remove(sid);
        }
    }

    /// The first subscription whose pattern matches `subject` (where
    /// nats-server sends a no-responders status).
    pub(crate) fn first_matching(&self, subject: &str) -> Option<Arc<SubState>> {
        self.lock()
            .values()
            .find(|h| {
                h.state.active.load(Ordering::Acquire)
                    && weft::weft_proto::subject::matches(h.sub.pattern(), subject)
            })
            .map(|h| h.state.clone())
    }

    /// Removes everything (the client is gone).
    pub(crate) fn clear(&self) {
        let all: Vec<SubHandle> = self.lock().drain().map(|(_, h)| h).collect();
        for h in all {
            self.retire(h);
        }
    }

    fn retire(&self, h: SubHandle) {
        h.state.active.store(false, Ordering::Release);
        stats::add(&self.stats.msgs_dropped, h.sub.dropped());
        self.stats.subscriptions.fetch_sub(1, Ordering::Relaxed);
        // Dropping `h.sub` unsubscribes from weft.
    }
}

/// The weft sink of one `SUB`: encodes each message into the client's
/// outbound buffer.
pub(crate) struct SubSink {
    pub state: Arc<SubState>,
    pub out: Arc<Outbound>,
    pub view: Arc<ClientView>,
    pub stats: Arc<NatsStats>,
    /// To retire the subscription at its `max` (weak: the table holds
    /// the subscription, which holds this sink).
    pub subs: Weak<Subs>,
}

impl SubSink {
    /// Whether `m` was published by this very client with echo off.
    fn own_echo(&self, origin: &Option<Origin<'_>>) -> bool {
        let Some(o) = origin else { return false };
        let own = self.view.own_tag.lock().unwrap_or_else(|p| p.into_inner());
        own.as_deref() == Some(o.tag)
    }

    /// Retires the subscription after its last message, from a task of
    /// its own (never from inside weft's delivery).
    fn retire_later(&self) {
        let (Some(subs), Ok(rt)) = (self.subs.upgrade(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let state = self.state.clone();
        rt.spawn(async move { subs.remove_if(&state) });
    }
}

impl DeliverySink for SubSink {
    fn deliver(&self, m: &PubMsg) -> SinkResult {
        let state = &*self.state;
        let origin = echo::origin(&m.headers);
        let own = self.own_echo(&origin);
        let headers_ok = self.view.headers.load(Ordering::Relaxed);
        let Some(mut g) = self.out.lock() else {
            return SinkResult::Closed;
        };
        let max = state.max.load(Ordering::Acquire);
        let delivered = state.delivered.load(Ordering::Acquire);
        if !state.active.load(Ordering::Acquire) || delivered >= max {
            return SinkResult::Closed;
        }
        if own {
            return SinkResult::Delivered;
        }
        let had_block = origin.as_ref().is_none_or(|o| o.had_header_block);
        let reply = m.reply.as_deref().map(str::as_bytes);
        let visible = m
            .headers
            .iter()
            .filter(|(k, _)| k != echo::KEY && k != headers::EMPTY_BLOCK_KEY);
        let has_headers = visible.clone().next().is_some()
            || m.headers.iter().any(|(k, _)| k == headers::EMPTY_BLOCK_KEY)
            || (origin.is_some() && had_block);
        if headers_ok && has_headers {
            encode::hmsg(
                g.buf(),
                m.subject.as_bytes(),
                &state.sid,
                reply,
                visible,
                &m.payload,
            );
        } else {
            encode::msg(g.buf(), m.subject.as_bytes(), &state.sid, reply, &m.payload);
        }
        if g.over_limit() {
            // Dropping the guard closes the client as a slow consumer
            // (its buffer, this record included, is discarded).
            return SinkResult::Full;
        }
        let delivered = delivered + 1;
        state.delivered.store(delivered, Ordering::Release);
        let finished = delivered >= max;
        if finished {
            state.active.store(false, Ordering::Release);
        }
        drop(g);
        stats::add(&self.stats.msgs_out, 1);
        stats::add(&self.stats.bytes_out, m.payload.len() as u64);
        if finished {
            self.retire_later();
        }
        SinkResult::Delivered
    }
}

/// Sends the no-responders status to `state`'s subscription (counted as
/// one delivery, like nats-server).
pub(crate) fn deliver_no_responders(reply: &[u8], state: &SubState, out: &Outbound, stats: &NatsStats) {
    let Some(mut g) = out.lock() else { return };
    let max = state.max.load(Ordering::Acquire);
    let delivered = state.delivered.load(Ordering::Acquire);
    if !state.active.load(Ordering::Acquire) || delivered >= max {
        return;
    }
    encode::no_responders(g.buf(), reply, &state.sid);
    state.delivered.store(delivered + 1, Ordering::Release);
    drop(g);
    stats::add(&stats.no_responders, 1);
}
