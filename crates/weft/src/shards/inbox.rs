//! The owner side of routed events for an asynchronous consumer: one
//! bounded queue per node, counted per shard, consumed as a `Stream` of
//! [`ShardDelivery`]s whose events carry an acknowledgement handle.
//!
//! Rules it keeps:
//! - Acknowledged means processed: the sender's reply waits until the
//!   consumer calls [`ShardEvent::ack`]. A handle dropped without `ack`
//!   answers the sender [`crate::RouteError::NotProcessed`] and is counted
//!   (`routed_events_refused{reason="not_processed"}`).
//! - Admission is checked again when the consumer takes an event (at
//!   dequeue), under the gate, and must give the same epoch as at enqueue;
//!   otherwise the event is refused (the sender retries it).
//! - Within one chunk (the events of one shard in one request, in the
//!   sender's order) a refused event refuses every later one, so a retry
//!   never lets event n+1 overtake event n.
//! - `Released` is delivered only after every event of that shard handed
//!   out before it was acknowledged or dropped.
//! - At most `ShardConfig::inbox_capacity` events per shard are queued or
//!   handed out and not settled; when full the owner holds the sender's
//!   reply until there is room (bounded by the sender's time), or answers
//!   `Full` at once for `try_route`.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures::Stream;
use tokio::sync::{Notify, oneshot};
use tracing::debug;

use super::route::RouteReply;
use super::service::{ShardHandler, Shards};
use crate::stats::Stats;
use crate::sync::lock;

/// One item of a [`ShardInbox`], in the order the owner saw them.
#[derive(Debug)]
pub enum ShardDelivery {
    /// This node now owns `shard` (at `epoch`); its events follow.
    Acquired {
        /// The shard.
        shard: u32,
        /// The map epoch of the takeover.
        epoch: u64,
    },
    /// An event for a shard this node owns; complete it with
    /// [`ShardEvent::ack`] once processed.
    Event(ShardEvent),
    /// This node no longer owns `shard` (from `epoch` on). Delivered after
    /// every event of the shard handed out before it was settled.
    Released {
        /// The shard.
        shard: u32,
        /// The map epoch that moved it away.
        epoch: u64,
    },
}

/// The replies of one request (a batch), filled as its events settle; the
/// request's answer is sent once every slot is filled.
pub(super) struct Replies {
    state: Mutex<RepliesState>,
}

struct RepliesState {
    slots: Vec<Option<RouteReply>>,
    left: usize,
    done: Option<oneshot::Sender<Vec<RouteReply>>>,
}

impl Replies {
    /// Replies for `n` events; the receiver gets them once all are set.
    pub(super) fn new(n: usize) -> (Arc<Self>, oneshot::Receiver<Vec<RouteReply>>) {
        let (tx, rx) = oneshot::channel();
        let r = Arc::new(Self {
            state: Mutex::new(RepliesState {
                slots: vec![None; n],
                left: n,
                done: Some(tx),
            }),
        });
        if n == 0 {
            r.finish(&mut lock(&r.state));
        }
        (r, rx)
    }

    /// Sets slot `i` (the first answer wins).
    pub(super) fn set(&self, i: usize, reply: RouteReply) {
        let mut st = lock(&self.state);
        let Some(slot) = st.slots.get_mut(i) else {
            return;
        };
        if slot.is_some() {
            return;
        }
        *slot = Some(reply);
        st.left -= 1;
        if st.left == 0 {
            self.finish(&mut st);
        }
    }

    fn finish(&self, st: &mut RepliesState) {
        if let Some(tx) = st.done.take() {
            let replies = st
                .slots
                .iter_mut()
                .map(|s| s.take().unwrap_or(RouteReply::NotReady))
                .collect();
            let _ = tx.send(replies);
        }
    }
}

/// Shared by the events of one chunk: the refusal that stops the rest.
#[derive(Default)]
pub(super) struct ChunkState {
    refused: Mutex<Option<RouteReply>>,
}

impl ChunkState {
    /// The refusal every later event of the chunk gets, if any.
    pub(super) fn refused(&self) -> Option<RouteReply> {
        lock(&self.refused).clone()
    }

    /// Records the first refusal of the chunk.
    pub(super) fn refuse(&self, reply: &RouteReply) {
        let mut r = lock(&self.refused);
        if r.is_none() {
            *r = Some(reply.clone());
        }
    }
}

/// Where an event's reply goes.
struct Slot {
    replies: Arc<Replies>,
    index: usize,
}

enum Queued {
    Acquired { shard: u32, epoch: u64 },
    Released { shard: u32, epoch: u64 },
    Event(QueuedEvent),
}

struct QueuedEvent {
    shard: u32,
    key: Bytes,
    event: Bytes,
    epoch: u64,
    slot: Slot,
    chunk: Arc<ChunkState>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Queued>,
    /// Events per shard queued or handed out and not settled (the bound).
    load: HashMap<u32, usize>,
    /// Events per shard handed out and not settled (held back `Released`).
    out: HashMap<u32, usize>,
    waker: Option<Waker>,
    /// The consumer dropped its stream.
    closed: bool,
}

/// What an owner's enqueue attempt came to.
pub(super) enum Enqueue {
    /// Queued; the reply comes when the consumer settles it.
    Queued,
    /// The shard's queue is full.
    Full,
    /// The consumer is gone.
    Closed,
}

/// The per-node inbox shared by the owner's request handling and the
/// consumer's stream.
pub(crate) struct InboxShared {
    capacity: usize,
    state: Mutex<State>,
    /// Notified whenever an event settles (room in some shard's queue).
    pub(super) room: Notify,
    /// Set once the consumer's handler is registered (its `Acquired`
    /// items queued); until then events are refused as not ready.
    ready: AtomicBool,
    stats: Arc<Stats>,
}

impl InboxShared {
    pub(super) fn new(capacity: usize, stats: Arc<Stats>) -> Arc<Self> {
        Arc::new(Self {
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
            room: Notify::new(),
            ready: AtomicBool::new(false),
            stats,
        })
    }

    /// Wakes the consumer (to see that the service is gone).
    pub(super) fn wake(&self) {
        if let Some(w) = lock(&self.state).waker.take() {
            w.wake();
        }
    }

    /// Whether events may be queued (the handler is registered).
    pub(super) fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Marks the inbox ready; call under the gate's write side.
    pub(super) fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Queues an event admitted at `epoch` (call under the gate, after
    /// `admission`), unless the shard's queue is full.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn enqueue(
        &self,
        shard: u32,
        key: Bytes,
        event: Bytes,
        epoch: u64,
        replies: &Arc<Replies>,
        index: usize,
        chunk: &Arc<ChunkState>,
    ) -> Enqueue {
        let mut st = lock(&self.state);
        if st.closed {
            return Enqueue::Closed;
        }
        let load = st.load.entry(shard).or_default();
        if *load >= self.capacity {
            return Enqueue::Full;
        }
        *load += 1;
        st.queue.push_back(Queued::Event(QueuedEvent {
            shard,
            key,
            event,
            epoch,
            slot: Slot {
                replies: replies.clone(),
                index,
            },
            chunk: chunk.clone(),
        }));
        if let Some(w) = st.waker.take() {
            w.wake();
        }
        Enqueue::Queued
    }

    fn push(&self, item: Queued) {
        let mut st = lock(&self.state);
        if st.closed {
            return;
        }
        st.queue.push_back(item);
        if let Some(w) = st.waker.take() {
            w.wake();
        }
    }

    /// Shards with events handed to the consumer and not settled yet: it
    /// is still processing them, so this node still counts as accepting
    /// those shards (a new owner waits for them, see `handoff`).
    pub(super) fn busy_shards(&self) -> Vec<u32> {
        lock(&self.state)
            .out
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(s, _)| *s)
            .collect()
    }

    /// An event left the queue or the consumer: room for one more.
    fn settled(&self, shard: u32, handed_out: bool) {
        {
            let mut st = lock(&self.state);
            if let Some(l) = st.load.get_mut(&shard) {
                *l = l.saturating_sub(1);
            }
            if handed_out && let Some(o) = st.out.get_mut(&shard) {
                *o = o.saturating_sub(1);
            }
            if let Some(w) = st.waker.take() {
                w.wake();
            }
        }
        self.room.notify_waiters();
    }

    /// The consumer is gone: queued events are refused as not ready (the
    /// consumer never saw them; senders retry).
    fn close(&self) {
        let queued: Vec<Queued> = {
            let mut st = lock(&self.state);
            st.closed = true;
            st.queue.drain(..).collect()
        };
        for q in queued {
            if let Queued::Event(e) = q {
                e.slot.replies.set(e.slot.index, RouteReply::NotReady);
            }
        }
        self.room.notify_waiters();
    }
}

/// Feeds the inbox the acquire/release callbacks of the shard service.
pub(super) struct InboxHandler(pub(super) Arc<InboxShared>);

impl ShardHandler for InboxHandler {
    fn shard_acquired(&self, shard: u32, epoch: u64) {
        self.0.push(Queued::Acquired { shard, epoch });
    }

    fn shard_released(&self, shard: u32, epoch: u64) {
        self.0.push(Queued::Released { shard, epoch });
    }

    fn on_event(&self, _shard: u32, _key: &[u8], _event: Bytes) {
        // Events reach the inbox through `enqueue`, never through here.
    }
}

/// An event handed to an inbox consumer. Call [`ShardEvent::ack`] once it
/// is processed (for example persisted): only then does the sender's
/// `route` return. Dropping it without `ack` fails the sender's route with
/// [`crate::RouteError::NotProcessed`].
#[derive(Debug)]
pub struct ShardEvent {
    shard: u32,
    key: Bytes,
    event: Bytes,
    epoch: u64,
    settle: Option<Settle>,
}

struct Settle {
    slot: Slot,
    inbox: Arc<InboxShared>,
}

impl std::fmt::Debug for Settle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Settle")
    }
}

impl ShardEvent {
    /// The event's shard.
    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// The routing key.
    pub fn key(&self) -> &Bytes {
        &self.key
    }

    /// The event bytes.
    pub fn event(&self) -> &Bytes {
        &self.event
    }

    /// The map epoch this node accepted the event at.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Acknowledges the event as processed: the sender's `route` returns
    /// its [`crate::RouteAck`].
    pub fn ack(mut self) {
        if let Some(s) = self.settle.take() {
            s.inbox
                .stats
                .routed_events_accepted
                .fetch_add(1, Ordering::Relaxed);
            s.slot
                .replies
                .set(s.slot.index, RouteReply::Accepted { epoch: self.epoch });
            s.inbox.settled(self.shard, true);
        }
    }
}

impl Drop for ShardEvent {
    fn drop(&mut self) {
        if let Some(s) = self.settle.take() {
            debug!(
                shard = self.shard,
                epoch = self.epoch,
                "shard event dropped without ack"
            );
            s.inbox.stats.routed_events_refused.inc("not_processed");
            s.slot
                .replies
                .set(s.slot.index, RouteReply::NotProcessed { epoch: self.epoch });
            s.inbox.settled(self.shard, true);
        }
    }
}

/// The events of this node's shards, as a `Stream` of [`ShardDelivery`]
/// (from [`crate::Shards::inbox`]). Ends once the node's shard
/// service is gone (the node stopped and its last handle was dropped).
/// Dropping it refuses the queued events (their senders retry) and leaves
/// this node's shards without a consumer (refused as not ready) until a
/// handler or a new inbox is registered.
pub struct ShardInbox {
    pub(super) inbox: Arc<InboxShared>,
    pub(super) shards: Weak<Shards>,
}

impl Drop for ShardInbox {
    fn drop(&mut self) {
        self.inbox.close();
    }
}

impl Stream for ShardInbox {
    type Item = ShardDelivery;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ShardDelivery>> {
        let this = self.get_mut();
        loop {
            let item = {
                let mut st = lock(&this.inbox.state);
                let release_blocked = match st.queue.front() {
                    None => None,
                    Some(Queued::Released { shard, .. }) => Some(st.out.get(shard).copied().unwrap_or(0) > 0),
                    Some(_) => Some(false),
                };
                match release_blocked {
                    None | Some(true) => {
                        if this.shards.strong_count() == 0 {
                            return Poll::Ready(None);
                        }
                        st.waker = Some(cx.waker().clone());
                        return Poll::Pending;
                    }
                    Some(false) => {}
                }
                match st.queue.pop_front() {
                    Some(q) => q,
                    None => continue,
                }
            };
            let e = match item {
                Queued::Acquired { shard, epoch } => {
                    return Poll::Ready(Some(ShardDelivery::Acquired { shard, epoch }));
                }
                Queued::Released { shard, epoch } => {
                    return Poll::Ready(Some(ShardDelivery::Released { shard, epoch }));
                }
                Queued::Event(e) => e,
            };
            let Some(shards) = this.shards.upgrade() else {
                e.slot.replies.set(e.slot.index, RouteReply::NotReady);
                this.inbox.settled(e.shard, false);
                return Poll::Ready(None);
            };
            let refusal = match e.chunk.refused() {
                Some(r) => Some(r),
                None => {
                    // The same check as at enqueue, immediately before the
                    // consumer sees the event, and at the same epoch.
                    let _gate = crate::sync::read(&shards.gate);
                    match shards.admission(e.shard) {
                        Ok(epoch) if epoch == e.epoch => {
                            let mut st = lock(&this.inbox.state);
                            *st.out.entry(e.shard).or_default() += 1;
                            None
                        }
                        Ok(epoch) => Some(RouteReply::Stale { epoch }),
                        Err(r) => Some(r),
                    }
                }
            };
            match refusal {
                Some(r) => {
                    e.chunk.refuse(&r);
                    e.slot.replies.set(e.slot.index, r);
                    this.inbox.settled(e.shard, false);
                }
                None => {
                    return Poll::Ready(Some(ShardDelivery::Event(ShardEvent {
                        shard: e.shard,
                        key: e.key,
                        event: e.event,
                        epoch: e.epoch,
                        settle: Some(Settle {
                            slot: e.slot,
                            inbox: this.inbox.clone(),
                        }),
                    })));
                }
            }
        }
    }
}
