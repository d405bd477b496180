//! Routing keyed events to shard owners: the sender's retry loop, the
//! owner's acceptance check, and the typed outcomes both report.
//!
//! A route fails fast when nothing can accept it: with no committed map
//! (or no owner for the key's shard) it waits at most
//! `ShardConfig::first_map_wait` and returns [`RouteError::Unassigned`].
//! With an owner it retries across map changes until
//! `ShardConfig::route_timeout` and then names the last attempt's failure.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::warn;

use super::batch::{self, Chunk, Item};
use super::handoff::Own;
use super::inbox::{ChunkState, Enqueue, InboxShared, Replies};
use super::service::Shards;

/// Outcome of a successful route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteAck {
    /// The key's shard.
    pub shard: u32,
    /// The node that accepted the event: the shard's owner at `epoch`.
    pub node: String,
    /// The map epoch the owner accepted it at (its committed map, which
    /// gives it the shard).
    pub epoch: u64,
    /// Attempts it took (1 when nothing moved).
    pub attempts: u32,
}

/// Why one delivery attempt failed. Each is retried (against a newer map
/// when one commits) until the route timeout; the last one is reported in
/// [`RouteError::Timeout`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteFailure {
    /// The node the sender's map names does not own the shard in its own
    /// map, at `epoch` (the sender was behind, or the owner is).
    #[error("{node} does not own shard {shard} in its map at epoch {epoch}")]
    Stale {
        /// The node asked.
        node: String,
        /// The shard.
        shard: u32,
        /// The epoch of that node's map.
        epoch: u64,
    },
    /// The owner has not taken the shard over yet (the old owner has not
    /// released it, the owner is catching up after start, or no handler
    /// is registered there).
    #[error("{node} has not acquired shard {shard} yet")]
    NotAcquired {
        /// The owner.
        node: String,
        /// The shard.
        shard: u32,
    },
    /// The owner holds no valid lease for the shard: it could not confirm
    /// its map with the shard map leader lately (it is cut off from the
    /// majority, just started, or its map is behind). It accepts nothing
    /// for the shard until it renews; the map may move the shard away.
    #[error("{node} is fenced from shard {shard} (no valid lease at its map epoch {epoch})")]
    Fenced {
        /// The owner.
        node: String,
        /// The shard.
        shard: u32,
        /// The owner's map epoch.
        epoch: u64,
    },
    /// The request could not be sent: no link to the owner, the owner was
    /// declared down, or its queue was full.
    #[error("{node} is unreachable: {reason}")]
    Unreachable {
        /// The owner.
        node: String,
        /// What the link layer reported (for people, not for matching).
        reason: String,
    },
    /// The owner did not answer within the time left.
    #[error("{node} did not answer in time")]
    NoReply {
        /// The owner.
        node: String,
    },
    /// The owner's inbox for the shard stayed full for as long as the
    /// route could wait.
    #[error("the inbox of shard {shard} on {node} is full")]
    Full {
        /// The owner.
        node: String,
        /// The shard.
        shard: u32,
    },
    /// The owner's RPC layer failed the request (it is starting or
    /// stopping, or runs a version that cannot read it).
    #[error("{node} failed the request: {message}")]
    Remote {
        /// The owner.
        node: String,
        /// The owner's message (for people, not for matching).
        message: String,
    },
}

/// Why a routed event was not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No committed map assigned the key's shard within
    /// `ShardConfig::first_map_wait`. `shard` is `None` when no map has
    /// committed yet (the shard count is fixed by the first map); `epoch`
    /// is the sender's map epoch (0: none).
    #[error("no committed shard map assigns {} (map epoch {epoch})", match shard { Some(s) => format!("shard {s}"), None => "the key's shard".to_string() })]
    Unassigned {
        /// The key's shard, when a map gives the shard count.
        shard: Option<u32>,
        /// The sender's map epoch.
        epoch: u64,
    },
    /// The owner's handler panicked on this event. Not retried: the same
    /// event would reach the same handler again. The event may or may not
    /// have had effects there.
    #[error("the handler of shard {shard} on {node} failed on this event (epoch {epoch})")]
    HandlerFailed {
        /// The owner.
        node: String,
        /// The shard.
        shard: u32,
        /// The owner's map epoch.
        epoch: u64,
    },
    /// The owner's inbox consumer dropped the event without acknowledging
    /// it: not processed; retry. Not retried by weft (the consumer chose
    /// to drop it).
    #[error("the consumer of shard {shard} on {node} dropped this event unprocessed (epoch {epoch}); retry")]
    NotProcessed {
        /// The owner.
        node: String,
        /// The shard.
        shard: u32,
        /// The owner's map epoch.
        epoch: u64,
    },
    /// `try_route` only: the owner's inbox for the shard is full (nothing
    /// was delivered; not retried).
    #[error("the inbox of shard {shard} on {node} is full (epoch {epoch})")]
    Full {
        /// The owner.
        node: String,
        /// The shard.
        shard: u32,
        /// The owner's map epoch.
        epoch: u64,
    },
    /// The shard service of this node stopped before the event was
    /// acknowledged.
    #[error("the shard service stopped")]
    Stopped,
    /// No owner acknowledged within `ShardConfig::route_timeout`, retries
    /// included; `last` is the last attempt's failure.
    #[error("not acknowledged within the route timeout after {attempts} attempt(s): {last}")]
    Timeout {
        /// Attempts made.
        attempts: u32,
        /// Why the last attempt failed.
        last: RouteFailure,
    },
}

/// A routed event on the wire (method `ROUTE`).
#[derive(Serialize, Deserialize)]
pub(super) struct RouteRequest {
    pub shard: u32,
    pub epoch: u64,
    pub key: Vec<u8>,
    pub event: Vec<u8>,
}

/// The owner's answer to a routed event. Variants are only ever appended
/// (postcard encodes the variant index).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(super) enum RouteReply {
    /// Handled at this epoch.
    Accepted { epoch: u64 },
    /// This node's map at `epoch` does not give it the shard.
    Stale { epoch: u64 },
    /// The shard is this node's but not taken over yet.
    NotReady,
    /// The handler panicked on the event.
    HandlerFailed { epoch: u64 },
    /// The shard's inbox stayed full: at once for a `try_route` event,
    /// after the sender's allowed wait otherwise.
    Full { epoch: u64 },
    /// The inbox consumer dropped the event without acknowledging it.
    NotProcessed { epoch: u64 },
    /// The shard is this node's in its map at `epoch`, but it holds no
    /// valid lease for it.
    Fenced { epoch: u64 },
}

impl Shards {
    /// Serves `ROUTE` (one event, older senders).
    pub(super) async fn serve_route(&self, payload: Bytes) -> Result<Bytes, String> {
        let req: RouteRequest = postcard::from_bytes(&payload).map_err(|e| e.to_string())?;
        let chunk = Chunk {
            shard: req.shard,
            items: vec![Item {
                key: Bytes::from(req.key),
                event: Bytes::from(req.event),
                no_wait: false,
            }],
        };
        let wait_until = Instant::now() + self.config.route_timeout;
        let replies = self.accept_batch(req.epoch, wait_until, vec![chunk]).await;
        let reply = replies.into_iter().next().unwrap_or(RouteReply::NotReady);
        postcard::to_allocvec(&reply)
            .map(Bytes::from)
            .map_err(|e| e.to_string())
    }

    /// Serves `ROUTE_BATCH`: one reply per event, in request order.
    pub(super) async fn serve_route_batch(&self, payload: Bytes) -> Result<Bytes, String> {
        let b = batch::decode(&payload).map_err(|e| e.to_string())?;
        let wait = std::time::Duration::from_millis(u64::from(b.wait_ms)).min(self.config.route_timeout);
        let replies = self.accept_batch(b.epoch, Instant::now() + wait, b.chunks).await;
        postcard::to_allocvec(&replies)
            .map(Bytes::from)
            .map_err(|e| e.to_string())
    }

    /// Owner side of routed events: one reply per event, in order. Within
    /// a chunk, the first refusal (not owner, not ready, full after the
    /// wait) refuses every later event of it, so the sender's retry keeps
    /// the chunk's order. With an inbox the replies come once the consumer
    /// settled every event; with a handler, once it returned.
    pub(super) async fn accept_batch(
        &self,
        epoch: u64,
        wait_until: Instant,
        chunks: Vec<Chunk>,
    ) -> Vec<RouteReply> {
        self.catch_up_to(epoch).await;
        match self.pipeline.inbox() {
            Some(inbox) => self.accept_inbox(&inbox, chunks, wait_until).await,
            None => self.accept_handler(&chunks),
        }
    }

    /// A sender ahead of us: give our map a moment to catch up.
    async fn catch_up_to(&self, epoch: u64) {
        if self.map_rx.borrow().epoch >= epoch {
            return;
        }
        let deadline = Instant::now() + self.config.owner_catch_up_wait;
        let mut rx = self.watch();
        while rx.borrow().epoch < epoch && Instant::now() < deadline {
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_ok_and(|r| r.is_err())
            {
                break;
            }
        }
    }

    /// Runs the synchronous handler on each event, under one hold of the
    /// gate for the whole request.
    fn accept_handler(&self, chunks: &[Chunk]) -> Vec<RouteReply> {
        let n = chunks.iter().map(|c| c.items.len()).sum();
        let mut out = Vec::with_capacity(n);
        let mut accepted = 0u64;
        let _gate = crate::sync::read(&self.gate);
        // Read under the gate: an inbox opened meanwhile registered its
        // (event-less) handler only after publishing itself, so a handler
        // seen here with an inbox present is that one: refuse, to retry.
        let handler = match self.pipeline.inbox() {
            Some(_) => None,
            None => self.handler(),
        };
        for c in chunks {
            let mut refused: Option<RouteReply> = None;
            for it in &c.items {
                if let Some(r) = &refused {
                    out.push(r.clone());
                    continue;
                }
                let admitted = self.admission(c.shard).and_then(|epoch| match &handler {
                    Some(h) => Ok((epoch, h)),
                    None => Err(RouteReply::NotReady),
                });
                let (epoch, h) = match admitted {
                    Ok(a) => a,
                    Err(r) => {
                        refused = Some(r.clone());
                        out.push(r);
                        continue;
                    }
                };
                // A panicking handler must not leave the sender waiting
                // for a reply that never comes: it gets a typed failure.
                let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    h.on_event(c.shard, &it.key, it.event.clone())
                }));
                if ran.is_err() {
                    warn!(shard = c.shard, epoch, "shard handler panicked on an event");
                    out.push(RouteReply::HandlerFailed { epoch });
                    continue;
                }
                accepted += 1;
                out.push(RouteReply::Accepted { epoch });
            }
        }
        self.stats
            .routed_events_accepted
            .fetch_add(accepted, Ordering::Relaxed);
        out
    }

    /// Queues each event in the inbox (admitted under the gate), waiting
    /// for room until `wait_until` unless the event says not to, then
    /// waits until the consumer settled them all.
    async fn accept_inbox(
        &self,
        inbox: &Arc<InboxShared>,
        chunks: Vec<Chunk>,
        wait_until: Instant,
    ) -> Vec<RouteReply> {
        let n: usize = chunks.iter().map(|c| c.items.len()).sum();
        let (replies, done) = Replies::new(n);
        let mut index = 0usize;
        for c in chunks {
            let chunk = Arc::new(ChunkState::default());
            for it in c.items {
                let i = index;
                index += 1;
                loop {
                    let room = inbox.room.notified();
                    tokio::pin!(room);
                    room.as_mut().enable();
                    let full_at = {
                        let _gate = crate::sync::read(&self.gate);
                        let admitted = match chunk.refused() {
                            Some(r) => Err(r),
                            None if !inbox.ready() => Err(RouteReply::NotReady),
                            None => self.admission(c.shard),
                        };
                        let epoch = match admitted {
                            Ok(epoch) => epoch,
                            Err(r) => {
                                chunk.refuse(&r);
                                replies.set(i, r);
                                break;
                            }
                        };
                        match inbox.enqueue(
                            c.shard,
                            it.key.clone(),
                            it.event.clone(),
                            epoch,
                            &replies,
                            i,
                            &chunk,
                        ) {
                            Enqueue::Queued => break,
                            Enqueue::Closed => {
                                chunk.refuse(&RouteReply::NotReady);
                                replies.set(i, RouteReply::NotReady);
                                break;
                            }
                            Enqueue::Full => epoch,
                        }
                    };
                    if it.no_wait || Instant::now() >= wait_until {
                        self.stats.routed_events_refused.inc("full");
                        let r = RouteReply::Full { epoch: full_at };
                        if !it.no_wait {
                            chunk.refuse(&r);
                        }
                        replies.set(i, r);
                        break;
                    }
                    let _ = tokio::time::timeout_at(wait_until, room).await;
                }
            }
        }
        done.await.unwrap_or_else(|_| vec![RouteReply::NotReady; n])
    }

    /// Whether this node may accept an event for `shard` right now: the
    /// map epoch to acknowledge it at, or the refusal to send. The one
    /// place that decides acceptance; call it (under the gate's read
    /// side) immediately before the handler sees the event.
    pub(super) fn admission(&self, shard: u32) -> Result<u64, RouteReply> {
        let (mine, epoch) = {
            let map = self.map_rx.borrow();
            (map.owner(shard) == Some(self.local.name.as_str()), map.epoch)
        };
        if !mine {
            return Err(RouteReply::Stale { epoch });
        }
        let since = match self.ownership().shards.get(&shard) {
            Some(h) if h.own == Own::Active => h.since,
            _ => return Err(RouteReply::NotReady),
        };
        // The lease check comes last and on every event: ownership in the
        // map is not enough once this node cannot confirm the map is
        // still the committed one.
        match self.lease_allows(since) {
            Ok(_) => Ok(epoch),
            Err(_) => Err(RouteReply::Fenced { epoch }),
        }
    }
}
