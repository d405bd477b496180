//! The sender side of routing: per-shard lanes and per-owner batches.
//!
//! - Every routed event joins its shard's lane (a FIFO). One driver per
//!   busy lane (the `route` caller that found the lane idle, until its own
//!   answer came; then a task) takes everything queued as one chunk, sends it to the
//!   owner in the committed map and waits for the answer before it sends
//!   the lane's next chunk: at most one chunk per shard is in flight, so a
//!   later event of a shard never overtakes an earlier one, retries
//!   included (the refused events go back to the front of the lane, and
//!   the owner refuses the rest of a chunk after its first refusal).
//! - Chunks for a remote owner go through that owner's sender task, which
//!   drains every pending chunk into one `ROUTE_BATCH` RPC and splits the
//!   reply. With nothing queued or in flight to the owner the lane sends
//!   its chunk itself; a further batch leaves only once the newest one in
//!   flight is `OWNER_HOLD` old (at most `OWNER_BATCHES` in flight), so
//!   batches grow with load. An owner
//!   that fails the batch method (an older node answers "unknown method")
//!   gets per-event `ROUTE` calls for `LEGACY_RECHECK`, then is asked
//!   with a batch again.
//! - Chunks for this node are accepted in place, without an RPC.
//!
//! Every event carries its own deadline (`route_timeout` from its submit);
//! the lane fails it with `RouteError::Timeout` (naming the last failure)
//! once it passes, or with `Unassigned` after `first_map_wait` without an
//! owner for the shard.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use super::batch::{self, Chunk, Item};
use super::inbox::{InboxHandler, InboxShared, ShardInbox};
use super::network::method;
use super::route::{RouteAck, RouteError, RouteFailure, RouteReply, RouteRequest};
use super::service::{ShardHandler, Shards};
use crate::rpc::RpcError;
use crate::sync::lock;

/// How long an owner that failed a `ROUTE_BATCH` gets per-event `ROUTE`
/// calls before the batch method is tried again (an upgrade in place).
const LEGACY_RECHECK: Duration = Duration::from_secs(30);

/// Most events one chunk takes from a lane (bounds one request's size).
const MAX_CHUNK: usize = 4096;

/// Batches in flight to one owner. A second one leaves only once the
/// newest in flight is `OWNER_HOLD` old: under load answers come sooner,
/// and the chunks queued meanwhile make one bigger batch (fewer requests,
/// fewer syscalls); a batch the owner holds (an inbox consumer still
/// processing, a full inbox) does not hold back the other shards' events
/// to that owner for longer than that. Order needs no limit here: each
/// lane has at most one chunk in flight.
const OWNER_BATCHES: usize = 4;

/// See `OWNER_BATCHES`.
const OWNER_HOLD: Duration = Duration::from_millis(1);

/// A routed event waiting in its lane.
pub(super) struct Outgoing {
    item: Item,
    deadline: Instant,
    attempts: u32,
    last: Option<RouteFailure>,
    tx: oneshot::Sender<Answer>,
}

/// What a routed event's caller gets.
type Answer = Result<RouteAck, RouteError>;

/// Keeps a lane driven when its driver is dropped mid-flight (a caller
/// driving its own lane was cancelled): the events it had sent go back to
/// the lane's front and a new driver task takes over.
struct LaneGuard {
    shards: Arc<Shards>,
    shard: u32,
    in_flight: Vec<Outgoing>,
    armed: bool,
}

impl Drop for LaneGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let live = std::mem::take(&mut self.in_flight);
        self.shards.put_back(self.shard, live);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(self.shards.clone().drive(self.shard, None));
        }
    }
}

/// A chunk waiting for its owner's next batch.
struct OwnerChunk {
    shard: u32,
    items: Vec<Item>,
    deadline: Instant,
    tx: oneshot::Sender<ChunkResult>,
}

/// Replies for a prefix of a chunk's events, and the failure of the rest
/// (when the request failed before the owner answered them).
type ChunkResult = (Vec<RouteReply>, Option<RouteFailure>);

/// What is queued and in flight to one remote owner.
struct OwnerQueue {
    /// Chunks for its next batch.
    pending: Vec<OwnerChunk>,
    /// Batches in flight (at most `OWNER_BATCHES`).
    in_flight: usize,
    /// Whether its sender task runs (it does whenever `pending` is not
    /// empty).
    sending: bool,
    /// Wakes the sender task (a chunk queued, a batch done).
    wake: Arc<Notify>,
}

#[derive(Default)]
struct OutState {
    /// Per shard: its queued events; present while a driver runs.
    lanes: HashMap<u32, VecDeque<Outgoing>>,
    /// Per remote owner: its queue; present while anything is queued or
    /// in flight to it.
    owners: HashMap<String, OwnerQueue>,
    /// Owners that failed the batch method, and when.
    legacy: HashMap<String, Instant>,
}

/// The routing pipeline of one node: sender lanes and the owner's inbox.
#[derive(Default)]
pub(crate) struct Pipeline {
    out: Mutex<OutState>,
    inbox: RwLock<Option<Arc<InboxShared>>>,
}

impl Drop for Pipeline {
    /// The shard service is gone: its inbox stream ends.
    fn drop(&mut self) {
        if let Some(inbox) = self.inbox() {
            inbox.wake();
        }
    }
}

impl Pipeline {
    /// The registered inbox, if the consumer is one.
    pub(super) fn inbox(&self) -> Option<Arc<InboxShared>> {
        crate::sync::read(&self.inbox).clone()
    }
}

fn failure(node: &str, e: RpcError) -> RouteFailure {
    let node = node.to_string();
    match e {
        RpcError::Unreachable(reason) => RouteFailure::Unreachable { node, reason },
        RpcError::Timeout => RouteFailure::NoReply { node },
        RpcError::Remote(message) => RouteFailure::Remote { node, message },
    }
}

/// What a lane waits for before it tries its front events again.
enum Backoff {
    /// The owner's map is at this epoch: wait for ours to reach it.
    Stale(u64),
    /// Not taken over yet, or full: a short pause.
    Pause,
    /// Unreachable, no reply, failed: a newer map or the longer wait.
    Map,
}

impl Shards {
    /// Registers a synchronous handler (it replaces an inbox).
    pub(crate) fn set_sync_handler(&self, handler: Arc<dyn ShardHandler>) {
        self.set_handler(handler);
        *crate::sync::write(&self.pipeline.inbox) = None;
    }

    /// Registers an inbox with room for `inbox_capacity` unsettled events
    /// per shard (it replaces a handler) and returns its stream.
    pub(crate) fn open_inbox(self: &Arc<Self>) -> ShardInbox {
        let inbox = InboxShared::new(self.config.inbox_capacity, self.stats.clone());
        *crate::sync::write(&self.pipeline.inbox) = Some(inbox.clone());
        // Queues `Acquired` for the shards already held.
        self.set_handler(Arc::new(InboxHandler(inbox.clone())));
        {
            let _gate = crate::sync::write(&self.gate);
            inbox.set_ready();
        }
        ShardInbox {
            inbox,
            shards: Arc::downgrade(self),
        }
    }

    /// The shard of `key`, after waiting up to `first_map_wait` for the
    /// first committed map.
    async fn shard_count(&self) -> Result<u32, RouteError> {
        {
            let m = self.map_rx.borrow();
            if m.epoch > 0 && m.shard_count() > 0 {
                return Ok(m.shard_count());
            }
        }
        let mut rx = self.watch();
        let give_up = Instant::now() + self.config.first_map_wait;
        loop {
            let (epoch, count) = {
                let m = rx.borrow_and_update();
                (m.epoch, m.shard_count())
            };
            if epoch > 0 && count > 0 {
                return Ok(count);
            }
            match tokio::time::timeout_at(give_up, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Err(RouteError::Unassigned { shard: None, epoch }),
            }
        }
    }

    /// Queues events in their lanes in order and returns their answers.    /// `inline`: a lane this creates is driven by the caller (who then
    /// calls `drive` itself) instead of a new task; returns its shard.
    fn submit(
        self: &Arc<Self>,
        count: u32,
        events: impl Iterator<Item = (Bytes, Bytes)>,
        no_wait: bool,
        inline: bool,
        timeout: Duration,
    ) -> (Vec<oneshot::Receiver<Answer>>, Option<u32>) {
        let mut driven_here = None;
        let deadline = Instant::now() + timeout;
        let mut out = lock(&self.pipeline.out);
        let mut rxs = Vec::with_capacity(events.size_hint().0);
        for (key, event) in events {
            let shard = weft_proto::shard::shard_of(&key, count);
            let (tx, rx) = oneshot::channel();
            rxs.push(rx);
            let o = Outgoing {
                item: Item { key, event, no_wait },
                deadline,
                attempts: 0,
                last: None,
                tx,
            };
            match out.lanes.get_mut(&shard) {
                Some(q) => q.push_back(o),
                None => {
                    out.lanes.insert(shard, VecDeque::from([o]));
                    if inline && driven_here.is_none() {
                        driven_here = Some(shard);
                    } else {
                        tokio::spawn(self.clone().drive(shard, None));
                    }
                }
            }
        }
        (rxs, driven_here)
    }

    /// Routes one event (see `Shards::route`), retrying for up to
    /// `timeout`; `no_wait`: `try_route`.
    pub(crate) async fn route_one(
        self: &Arc<Self>,
        key: Bytes,
        event: Bytes,
        no_wait: bool,
        timeout: Duration,
    ) -> Result<RouteAck, RouteError> {
        let count = self.shard_count().await?;
        let (mut rxs, driven_here) =
            self.submit(count, std::iter::once((key, event)), no_wait, true, timeout);
        let Some(rx) = rxs.pop() else {
            return Err(RouteError::Stopped);
        };
        // An idle lane is driven by this task until its event is answered
        // (no task hop for sequential routes), then handed to a task.
        match driven_here {
            Some(shard) => self
                .clone()
                .drive(shard, Some(rx))
                .await
                .unwrap_or(Err(RouteError::Stopped)),
            None => rx.await.unwrap_or(Err(RouteError::Stopped)),
        }
    }

    /// Routes many events; results in the order given.
    pub(crate) async fn route_many(
        self: &Arc<Self>,
        events: Vec<(Bytes, Bytes)>,
        timeout: Duration,
    ) -> Vec<Result<RouteAck, RouteError>> {
        let n = events.len();
        let count = match self.shard_count().await {
            Ok(c) => c,
            Err(e) => return vec![Err(e); n],
        };
        let (rxs, _) = self.submit(count, events.into_iter(), false, false, timeout);
        let mut out = Vec::with_capacity(n);
        for rx in rxs {
            out.push(rx.await.unwrap_or(Err(RouteError::Stopped)));
        }
        out
    }

    /// Takes the lane's next chunk, or ends the driver (removing the lane)
    /// when it is empty.
    fn take_chunk(&self, shard: u32) -> Option<Vec<Outgoing>> {
        let mut out = lock(&self.pipeline.out);
        let q = out.lanes.get_mut(&shard)?;
        if q.is_empty() {
            out.lanes.remove(&shard);
            return None;
        }
        let n = q.len().min(MAX_CHUNK);
        Some(q.drain(..n).collect())
    }
    /// A caller stops driving `shard`'s lane: it goes (when empty) or a
    /// driver task takes it over.
    fn hand_over(self: &Arc<Self>, shard: u32) {
        let mut out = lock(&self.pipeline.out);
        match out.lanes.get(&shard) {
            Some(q) if q.is_empty() => {
                out.lanes.remove(&shard);
            }
            Some(_) => {
                tokio::spawn(self.clone().drive(shard, None));
            }
            None => {}
        }
    }

    /// Puts refused events back at the front of their lane, in order.
    fn put_back(&self, shard: u32, kept: Vec<Outgoing>) {
        let mut out = lock(&self.pipeline.out);
        let q = out.lanes.entry(shard).or_default();
        for o in kept.into_iter().rev() {
            q.push_front(o);
        }
    }
    /// The driver of one shard's lane: until the lane is empty, or with
    /// `own` (a caller driving its own lane) until that answer came; the
    /// lane then goes to a driver task if it still holds events.
    fn drive(
        self: Arc<Self>,
        shard: u32,
        own: Option<oneshot::Receiver<Answer>>,
    ) -> futures::future::BoxFuture<'static, Option<Answer>> {
        Box::pin(self.drive_lane(shard, own))
    }

    async fn drive_lane(
        self: Arc<Self>,
        shard: u32,
        mut own: Option<oneshot::Receiver<Answer>>,
    ) -> Option<Answer> {
        let c = self.config.clone();
        let mut rx = self.watch();
        let mut unassigned_since: Option<Instant> = None;
        let mut lane_last: Option<RouteFailure> = None;
        let mut guard = LaneGuard {
            shards: self.clone(),
            shard,
            in_flight: Vec::new(),
            armed: true,
        };
        loop {
            if let Some(mine) = own.as_mut() {
                let answer = match mine.try_recv() {
                    Ok(a) => Some(a),
                    Err(oneshot::error::TryRecvError::Closed) => Some(Err(RouteError::Stopped)),
                    Err(oneshot::error::TryRecvError::Empty) => None,
                };
                if let Some(a) = answer {
                    guard.armed = false;
                    self.hand_over(shard);
                    return Some(a);
                }
            }
            let Some(items) = self.take_chunk(shard) else {
                guard.armed = false;
                return match own {
                    Some(mine) => Some(mine.await.unwrap_or(Err(RouteError::Stopped))),
                    None => None,
                };
            };
            let now = Instant::now();
            let mut live = Vec::with_capacity(items.len());
            for o in items {
                if now >= o.deadline {
                    let last = o.last.clone().or_else(|| lane_last.clone());
                    let _ = o.tx.send(Err(match last {
                        Some(last) => RouteError::Timeout {
                            attempts: o.attempts,
                            last,
                        },
                        None => RouteError::Unassigned {
                            shard: Some(shard),
                            epoch: rx.borrow().epoch,
                        },
                    }));
                } else {
                    live.push(o);
                }
            }
            let Some(earliest) = live.iter().map(|o| o.deadline).min() else {
                continue;
            };
            let (epoch, owner) = {
                let m = rx.borrow_and_update();
                (m.epoch, m.owner(shard).map(str::to_string))
            };
            let Some(owner) = owner else {
                let since = *unassigned_since.get_or_insert(now);
                let give_up = (since + c.first_map_wait).min(earliest);
                if now >= give_up {
                    for o in live {
                        let _ = o.tx.send(Err(RouteError::Unassigned {
                            shard: Some(shard),
                            epoch,
                        }));
                    }
                    // Events queued after these get their own wait.
                    unassigned_since = None;
                    continue;
                }
                self.put_back(shard, live);
                let _ = tokio::time::timeout_at(give_up, rx.changed()).await;
                continue;
            };
            unassigned_since = None;
            let mut retries = 0u64;
            for o in &mut live {
                o.attempts += 1;
                if o.attempts > 1 {
                    retries += 1;
                }
            }
            if retries > 0 {
                self.stats.route_retries.fetch_add(retries, Ordering::Relaxed);
            }
            let items: Vec<Item> = live.iter().map(|o| o.item.clone()).collect();
            guard.in_flight = live;
            let (replies, rest) = if owner == self.local.name {
                let chunk = Chunk { shard, items };
                (self.accept_batch(epoch, earliest, vec![chunk]).await, None)
            } else {
                self.send_chunk(&owner, shard, items, earliest).await
            };
            let live = std::mem::take(&mut guard.in_flight);
            let mut kept = Vec::new();
            let mut backoff = None;
            let mut replies = replies.into_iter();
            for mut o in live {
                let attempts = o.attempts;
                let done = match replies.next() {
                    Some(RouteReply::Accepted { epoch }) => Ok(RouteAck {
                        shard,
                        node: owner.clone(),
                        epoch,
                        attempts,
                    }),
                    Some(RouteReply::HandlerFailed { epoch }) => Err(RouteError::HandlerFailed {
                        node: owner.clone(),
                        shard,
                        epoch,
                    }),
                    Some(RouteReply::NotProcessed { epoch }) => Err(RouteError::NotProcessed {
                        node: owner.clone(),
                        shard,
                        epoch,
                    }),
                    Some(RouteReply::Full { epoch }) if o.item.no_wait => Err(RouteError::Full {
                        node: owner.clone(),
                        shard,
                        epoch,
                    }),
                    Some(RouteReply::Full { .. }) => {
                        backoff.get_or_insert(Backoff::Pause);
                        o.last = Some(RouteFailure::Full {
                            node: owner.clone(),
                            shard,
                        });
                        kept.push(o);
                        continue;
                    }
                    Some(RouteReply::Stale { epoch }) => {
                        backoff.get_or_insert(Backoff::Stale(epoch));
                        o.last = Some(RouteFailure::Stale {
                            node: owner.clone(),
                            shard,
                            epoch,
                        });
                        kept.push(o);
                        continue;
                    }
                    // Cut off or just started: a new map moves the shard
                    // (retried at once when it commits), or the owner renews.
                    Some(RouteReply::Fenced { epoch }) => {
                        backoff.get_or_insert(Backoff::Map);
                        o.last = Some(RouteFailure::Fenced {
                            node: owner.clone(),
                            shard,
                            epoch,
                        });
                        kept.push(o);
                        continue;
                    }
                    Some(RouteReply::NotReady) => {
                        backoff.get_or_insert(Backoff::Pause);
                        o.last = Some(RouteFailure::NotAcquired {
                            node: owner.clone(),
                            shard,
                        });
                        kept.push(o);
                        continue;
                    }
                    None => {
                        backoff.get_or_insert(Backoff::Map);
                        o.last = Some(rest.clone().unwrap_or_else(|| RouteFailure::Remote {
                            node: owner.clone(),
                            message: "fewer replies than events".into(),
                        }));
                        kept.push(o);
                        continue;
                    }
                };
                let _ = o.tx.send(done);
            }
            let Some(backoff) = backoff else { continue };
            lane_last = kept.first().and_then(|o| o.last.clone());
            let until = kept.iter().map(|o| o.deadline).min().unwrap_or(earliest);
            self.put_back(shard, kept);
            match backoff {
                Backoff::Stale(theirs) => {
                    while rx.borrow().epoch < theirs && Instant::now() < until {
                        if tokio::time::timeout_at(until, rx.changed())
                            .await
                            .is_ok_and(|r| r.is_err())
                        {
                            break;
                        }
                    }
                    if rx.borrow().epoch == epoch {
                        tokio::time::sleep_until((Instant::now() + c.route_retry_pause).min(until)).await;
                    }
                }
                Backoff::Pause => {
                    tokio::time::sleep_until((Instant::now() + c.route_retry_pause).min(until)).await;
                }
                Backoff::Map => {
                    let wait = (Instant::now() + c.route_unreachable_wait).min(until);
                    let _ = tokio::time::timeout_at(wait, rx.changed()).await;
                }
            }
        }
    }

    /// Hands a chunk to `owner`'s next batch and waits for its answer.
    /// With nothing queued or in flight to that owner the chunk is sent at
    /// once from this task (no sender task hop: sequential routes pay one
    /// RPC, nothing more); otherwise the owner's sender task batches it.
    async fn send_chunk(
        self: &Arc<Self>,
        owner: &str,
        shard: u32,
        items: Vec<Item>,
        deadline: Instant,
    ) -> ChunkResult {
        let (tx, rx) = oneshot::channel();
        let chunk = OwnerChunk {
            shard,
            items,
            deadline,
            tx,
        };
        let inline = {
            let mut out = lock(&self.pipeline.out);
            let legacy = self.is_legacy(&mut out, owner);
            let q = out.owners.entry(owner.to_string()).or_insert_with(|| OwnerQueue {
                pending: Vec::new(),
                in_flight: 0,
                sending: false,
                wake: Arc::new(Notify::new()),
            });
            if q.in_flight == 0 && q.pending.is_empty() && !q.sending {
                q.in_flight = 1;
                Some((chunk, legacy))
            } else {
                q.pending.push(chunk);
                if q.sending {
                    q.wake.notify_one();
                } else {
                    q.sending = true;
                    tokio::spawn(self.clone().send_loop(owner.to_string(), q.wake.clone()));
                }
                None
            }
        };
        if let Some((chunk, legacy)) = inline {
            self.send_batch(owner, vec![chunk], legacy).await;
            self.batch_done(owner);
        }
        rx.await.unwrap_or_else(|_| {
            (
                Vec::new(),
                Some(RouteFailure::Remote {
                    node: owner.to_string(),
                    message: "the sender task stopped".into(),
                }),
            )
        })
    }

    /// Whether `owner` gets per-event `ROUTE` calls (it failed a batch
    /// less than `LEGACY_RECHECK` ago).
    fn is_legacy(&self, out: &mut OutState, owner: &str) -> bool {
        match out.legacy.get(owner) {
            Some(since) if since.elapsed() < LEGACY_RECHECK => true,
            Some(_) => {
                out.legacy.remove(owner);
                false
            }
            None => false,
        }
    }

    /// A batch to `owner` was answered: one fewer in flight; the queue
    /// goes once nothing is queued or in flight.
    fn batch_done(&self, owner: &str) {
        let mut out = lock(&self.pipeline.out);
        if let Some(q) = out.owners.get_mut(owner) {
            q.in_flight = q.in_flight.saturating_sub(1);
            if q.sending {
                q.wake.notify_one();
            } else if q.in_flight == 0 && q.pending.is_empty() {
                out.owners.remove(owner);
            }
        }
    }

    /// `owner`'s sender task: up to `OWNER_BATCHES` batches in flight,
    /// each taking every chunk queued meanwhile; ends when nothing is
    /// queued.
    async fn send_loop(self: Arc<Self>, owner: String, wake: Arc<Notify>) {
        let mut last_sent = Instant::now();
        loop {
            // Lanes woken by the same reply queue their next chunks in the
            // same scheduler round: let them, so that one batch takes all.
            tokio::task::yield_now().await;
            let next = {
                let mut out = lock(&self.pipeline.out);
                let legacy = self.is_legacy(&mut out, &owner);
                let Some(q) = out.owners.get_mut(&owner) else {
                    return;
                };
                if q.pending.is_empty() {
                    q.sending = false;
                    if q.in_flight == 0 {
                        out.owners.remove(&owner);
                    }
                    return;
                }
                if q.in_flight >= OWNER_BATCHES {
                    None
                } else if q.in_flight > 0 && last_sent.elapsed() < OWNER_HOLD {
                    Some(None)
                } else {
                    q.in_flight += 1;
                    Some(Some((std::mem::take(&mut q.pending), legacy)))
                }
            };
            let (chunks, legacy) = match next {
                Some(Some(batch)) => batch,
                // Wait for an answer, or until the hold is over.
                Some(None) => {
                    let _ = tokio::time::timeout_at(last_sent + OWNER_HOLD, wake.notified()).await;
                    continue;
                }
                None => {
                    wake.notified().await;
                    continue;
                }
            };
            last_sent = Instant::now();
            let me = self.clone();
            let owner2 = owner.clone();
            tokio::spawn(async move {
                me.send_batch(&owner2, chunks, legacy).await;
                me.batch_done(&owner2);
            });
        }
    }

    /// One batch to `owner` (or per-event calls to a legacy owner); every
    /// chunk gets its answer.
    async fn send_batch(&self, owner: &str, chunks: Vec<OwnerChunk>, legacy: bool) {
        {
            if legacy {
                self.send_legacy(owner, chunks).await;
                return;
            }
            let deadline = chunks
                .iter()
                .map(|c| c.deadline)
                .min()
                .unwrap_or_else(Instant::now);
            let left = deadline.saturating_duration_since(Instant::now());
            // The owner answers `Full` a little before our own timeout.
            let wait_ms = (left.as_millis() * 9 / 10).min(u128::from(u32::MAX)) as u32;
            let epoch = self.map_rx.borrow().epoch;
            let size: usize = chunks
                .iter()
                .flat_map(|c| c.items.iter())
                .map(|i| 9 + i.key.len() + i.event.len())
                .sum::<usize>()
                + 16
                + chunks.len() * 8;
            let mut buf = Vec::with_capacity(size);
            batch::put_header(&mut buf, epoch, wait_ms, chunks.len() as u32);
            for c in &chunks {
                batch::put_chunk(&mut buf, c.shard, c.items.iter());
            }
            match self
                .rpc
                .call(owner, method::ROUTE_BATCH, Bytes::from(buf), left)
                .await
            {
                Ok(body) => {
                    let total: usize = chunks.iter().map(|c| c.items.len()).sum();
                    match postcard::from_bytes::<Vec<RouteReply>>(&body) {
                        Ok(replies) if replies.len() == total => {
                            let mut replies = replies.into_iter();
                            for c in chunks {
                                let mine: Vec<RouteReply> = replies.by_ref().take(c.items.len()).collect();
                                let _ = c.tx.send((mine, None));
                            }
                        }
                        other => {
                            let message = match other {
                                Ok(r) => format!("{} replies for {total} events", r.len()),
                                Err(e) => format!("undecodable reply: {e}"),
                            };
                            for c in chunks {
                                let f = RouteFailure::Remote {
                                    node: owner.to_string(),
                                    message: message.clone(),
                                };
                                let _ = c.tx.send((Vec::new(), Some(f)));
                            }
                        }
                    }
                }
                // Older nodes answer "unknown method" (the message is not
                // matched: any failure of the method itself falls back to
                // per-event `ROUTE`, which every version serves).
                Err(RpcError::Remote(_)) => {
                    lock(&self.pipeline.out)
                        .legacy
                        .insert(owner.to_string(), Instant::now());
                    self.send_legacy(owner, chunks).await;
                }
                Err(e) => {
                    for c in chunks {
                        let _ = c.tx.send((Vec::new(), Some(failure(owner, e.clone()))));
                    }
                }
            }
        }
    }

    /// Per-event `ROUTE` calls, in order per chunk; after a refusal the
    /// rest of the chunk gets the same refusal (as a batch owner does).
    async fn send_legacy(&self, owner: &str, chunks: Vec<OwnerChunk>) {
        let epoch = self.map_rx.borrow().epoch;
        let per_chunk = chunks.into_iter().map(|c| async move {
            let mut replies = Vec::with_capacity(c.items.len());
            let mut refused: Option<RouteReply> = None;
            for it in &c.items {
                if let Some(r) = &refused {
                    replies.push(r.clone());
                    continue;
                }
                let req = RouteRequest {
                    shard: c.shard,
                    epoch,
                    key: it.key.to_vec(),
                    event: it.event.to_vec(),
                };
                match self.send_route(owner, &req, c.deadline).await {
                    Ok(r) => {
                        if matches!(
                            r,
                            RouteReply::Stale { .. }
                                | RouteReply::NotReady
                                | RouteReply::Full { .. }
                                | RouteReply::Fenced { .. }
                        ) {
                            refused = Some(r.clone());
                        }
                        replies.push(r);
                    }
                    Err(f) => {
                        let _ = c.tx.send((replies, Some(f)));
                        return;
                    }
                }
            }
            let _ = c.tx.send((replies, None));
        });
        futures::future::join_all(per_chunk).await;
    }

    /// One `ROUTE` call to a remote owner, bounded by `deadline`.
    async fn send_route(
        &self,
        owner: &str,
        req: &RouteRequest,
        deadline: Instant,
    ) -> Result<RouteReply, RouteFailure> {
        let body = postcard::to_allocvec(req).map_err(|e| RouteFailure::Remote {
            node: owner.to_string(),
            message: format!("cannot encode the request: {e}"),
        })?;
        let left = deadline.saturating_duration_since(Instant::now());
        let b = self
            .rpc
            .call(owner, method::ROUTE, Bytes::from(body), left)
            .await
            .map_err(|e| failure(owner, e))?;
        postcard::from_bytes::<RouteReply>(&b).map_err(|e| RouteFailure::Remote {
            node: owner.to_string(),
            message: format!("undecodable reply: {e}"),
        })
    }
}
