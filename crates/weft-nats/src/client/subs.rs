//! A client's subscriptions: one weft subscription per `SUB`, and one
//! forwarder task per subscription that moves its messages into the
//! client's outbound buffer as `MSG`/`HMSG` records.
//!
//! Each forwarder drains every queued message at once and encodes the
//! whole batch under one lock of the outbound buffer. `UNSUB` and the
//! auto-unsubscribe limit are checked per message under that lock, so a
//! subscription never delivers more than its `max`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::task::JoinHandle;
use weft::{PubMsg, Subscription};

use super::outbound::Outbound;
use crate::echo::{self, Origin};
use crate::proto::encode;
use crate::stats::{self, NatsStats};

/// What the forwarder and the reader share about one subscription.
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
    pub sub: Arc<Subscription>,
    pub state: Arc<SubState>,
    pub task: JoinHandle<()>,
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

    /// Removes `sid` if it is still the subscription `state` (a forwarder
    /// retiring itself after its max).
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
    pub(crate) fn set_max(&self, sid: &[u8], max: u64) {
        let reached = {
            let map = self.lock();
            let Some(h) = map.get(sid) else { return };
            h.state.max.store(max, Ordering::Release);
            h.state.delivered.load(Ordering::Acquire) >= max
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
        h.task.abort();
        stats::add(&self.stats.msgs_dropped, h.sub.dropped());
        self.stats.subscriptions.fetch_sub(1, Ordering::Relaxed);
        // The weft subscription is unsubscribed when its last Arc (the
        // aborted forwarder's) is dropped.
    }
}

/// Moves messages of `sub` to the client until unsubscribed.
pub(crate) async fn forward(
    sub: Arc<Subscription>,
    state: Arc<SubState>,
    out: Arc<Outbound>,
    view: Arc<ClientView>,
    subs: Arc<Subs>,
) {
    let mut batch: Vec<PubMsg> = Vec::with_capacity(64);
    loop {
        let Some(first) = sub.next().await else { return };
        batch.push(first);
        sub.drain_into(&mut batch);
        let finished = deliver(&batch, &state, &out, &view, &subs.stats);
        batch.clear();
        if finished {
            subs.remove_if(&state);
            return;
        }
    }
}

/// Encodes `batch` for the client; returns whether the subscription is
/// finished (max reached, unsubscribed, or the client is closing).
fn deliver(batch: &[PubMsg], state: &SubState, out: &Outbound, view: &ClientView, stats: &NatsStats) -> bool {
    let headers_ok = view.headers.load(Ordering::Relaxed);
    let own = view.own_tag.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let Some(mut g) = out.lock() else { return true };
    let (mut n, mut bytes) = (0u64, 0u64);
    let max = state.max.load(Ordering::Acquire);
    let mut delivered = state.delivered.load(Ordering::Acquire);
    let mut finished = false;
    // Room for the whole batch at once, and the `MSG <subject> <sid> `
    // prefix built once per run of one subject.
    let room: usize = batch
        .iter()
        .map(|m| m.subject.len() + m.reply.as_ref().map_or(0, String::len) + m.payload.len())
        .sum::<usize>()
        + batch.len() * (state.sid.len() + 32);
    g.buf().reserve(room);
    let mut prefix = Vec::new();
    let mut prefix_subject: Option<&str> = None;
    for m in batch {
        if !state.active.load(Ordering::Acquire) || delivered >= max {
            finished = true;
            break;
        }
        let origin = echo::origin(&m.headers);
        if let (Some(own), Some(o)) = (&own, &origin)
            && o.tag == own.as_str()
        {
            continue;
        }
        let had_block = origin.as_ref().is_none_or(|o: &Origin<'_>| o.had_header_block);
        let reply = m.reply.as_deref().map(str::as_bytes);
        let visible = m.headers.iter().filter(|(k, _)| k != echo::KEY);
        let has_headers = visible.clone().next().is_some() || (origin.is_some() && had_block);
        if headers_ok && has_headers {
            encode::hmsg(
                g.buf(),
                m.subject.as_bytes(),
                &state.sid,
                reply,
                visible,
                &m.payload,
            );
        } else if reply.is_none() {
            if prefix_subject != Some(m.subject.as_str()) {
                encode::msg_prefix(&mut prefix, m.subject.as_bytes(), &state.sid);
                prefix_subject = Some(&m.subject);
            }
            encode::msg_after_prefix(g.buf(), &prefix, &m.payload);
        } else {
            encode::msg(g.buf(), m.subject.as_bytes(), &state.sid, reply, &m.payload);
        }
        delivered += 1;
        n += 1;
        bytes += m.payload.len() as u64;
    }
    state.delivered.store(delivered, Ordering::Release);
    if delivered >= max {
        state.active.store(false, Ordering::Release);
        finished = true;
    }
    drop(g);
    stats::add(&stats.msgs_out, n);
    stats::add(&stats.bytes_out, bytes);
    finished
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
