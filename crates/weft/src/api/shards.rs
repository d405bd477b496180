//! The sharded keyed routing handle.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use weft_proto::shard::ShardMap;

use crate::api::ShardMaps;
use crate::node::Node;
use crate::shards::{RouteAck, RouteError, ShardHandler, ShardInbox};

/// Sharded keyed routing of a node (`node.shards()`): consume this node's
/// shards, route events to the owner of a key's shard, read the Raft
/// committed shard map.
#[derive(Clone)]
pub struct Shards {
    pub(crate) node: Node,
}

impl Shards {
    /// Registers the handler of this node's shards (see [`ShardHandler`]).
    /// Until one is registered, events for this node's shards are refused
    /// as not ready and their senders retry. Replaces an inbox opened by
    /// [`Shards::inbox`]; register one consumer, before routing starts.
    pub fn set_handler(&self, handler: Arc<dyn ShardHandler>) {
        self.node.inner.shards.set_sync_handler(handler);
    }

    /// Consumes this node's shards asynchronously: returns a `Stream` of
    /// [`crate::ShardDelivery`] (acquired, event, released, in the order
    /// this node saw them), replacing a handler set by
    /// [`Shards::set_handler`]. Each event's sender is acknowledged
    /// only when the consumer calls [`crate::ShardEvent::ack`] (after
    /// processing it, e.g. persisting); dropping the event unacknowledged
    /// fails the sender's route with [`RouteError::NotProcessed`].
    /// At most `shards.inbox_capacity` events per shard are queued or
    /// handed out unacknowledged; beyond that `route` waits for room
    /// (within its timeout) and [`Shards::try_route`] fails with
    /// [`RouteError::Full`]. `Released` comes after the shard's last
    /// handed-out event was settled. Dropping the stream refuses the
    /// queued events (their senders retry elsewhere or time out).
    pub fn inbox(&self) -> ShardInbox {
        self.node.inner.shards.open_inbox()
    }

    /// The committed shard map (epoch 0 before the first commit).
    pub fn map(&self) -> ShardMap {
        self.node.inner.shards.map()
    }

    /// The committed shard maps as a `Stream`: the current one first, then
    /// each newer one (see [`ShardMaps`]).
    pub fn maps(&self) -> ShardMaps {
        ShardMaps::from_watch(self.node.inner.shards.watch())
    }

    /// Watches committed shard maps (a `watch` receiver, for
    /// `wait_for(|m| ..)`).
    pub fn watch_map(&self) -> watch::Receiver<ShardMap> {
        self.node.inner.shards.watch()
    }

    /// Plans a rebalance to the live members and proposes it at once
    /// (forwarded to the leader from a follower). `true` when a new map
    /// committed; a failed proposal changes no node's map and is counted
    /// in `shard_proposals_failed`.
    pub async fn rebalance(&self) -> bool {
        self.node.inner.shards.rebalance_now().await
    }

    /// The node currently leading the shard map group, if known.
    pub fn leader(&self) -> Option<String> {
        self.node.inner.shards.leader()
    }

    /// The voters of the shard map group.
    pub fn voters(&self) -> Vec<String> {
        self.node.inner.shards.voters()
    }

    /// The non-voting members (learners) of the shard map group: up nodes
    /// beyond the voters. A learner down longer than
    /// `shards.voter_replace_after` is removed from the group.
    pub fn learners(&self) -> Vec<String> {
        self.node.inner.shards.learners()
    }

    /// Routes `event` to the owner of `key`'s shard (FNV-1a of the key,
    /// modulo the shard count): await the returned [`Route`] (after
    /// `.timeout(..)` to retry for other than `shards.route_timeout`). It
    /// resolves once the owner acknowledged the event; the [`RouteAck`]
    /// names the accepting node and its map epoch. Retries across map
    /// changes within the timeout, then fails with [`RouteError::Timeout`]
    /// naming the last attempt's [`crate::RouteFailure`]. With no
    /// committed map (or no owner for the shard) it waits at most
    /// `shards.first_map_wait` and fails with [`RouteError::Unassigned`];
    /// a handler that panics on the event fails it at once with
    /// [`RouteError::HandlerFailed`]. Events of one shard from this node
    /// are delivered in the order they were submitted (sequential routes,
    /// routes polled in order, and [`Shards::route_many`]), retries after
    /// a failover included. With an inbox ([`Shards::inbox`]) the
    /// acknowledgement means processed, and a full inbox makes the route
    /// wait for room.
    pub fn route(&self, key: &[u8], event: impl Into<Bytes>) -> Route {
        Route {
            node: self.node.clone(),
            key: Bytes::copy_from_slice(key),
            event: event.into(),
            no_wait: false,
            timeout: self.node.inner.config.shards.route_timeout,
        }
    }

    /// Like [`Shards::route`], but when the owner's inbox for the shard is
    /// full it fails at once with [`RouteError::Full`] (nothing delivered,
    /// not retried) instead of waiting. Other failures retry as `route`.
    pub fn try_route(&self, key: &[u8], event: impl Into<Bytes>) -> Route {
        Route {
            no_wait: true,
            ..self.route(key, event)
        }
    }

    /// Routes many `(key, event)` pairs at once and returns their results
    /// in the same order. Events travel in per-owner batches; events of one
    /// shard are delivered in the order given. Each result is what
    /// [`Shards::route`] would have returned for that event.
    pub async fn route_many(&self, events: Vec<(Bytes, Bytes)>) -> Vec<Result<RouteAck, RouteError>> {
        let timeout = self.node.inner.config.shards.route_timeout;
        self.node.inner.shards.route_many(events, timeout).await
    }
}

/// A routed event being prepared ([`Shards::route`],
/// [`Shards::try_route`]); await it to send it.
#[must_use = "a route does nothing until awaited"]
pub struct Route {
    node: Node,
    key: Bytes,
    event: Bytes,
    no_wait: bool,
    timeout: Duration,
}

impl Route {
    /// Retries (across map changes, owner failover) for up to `timeout`
    /// instead of `shards.route_timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl IntoFuture for Route {
    type Output = Result<RouteAck, RouteError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let shards = &self.node.inner.shards;
            shards
                .route_one(self.key, self.event, self.no_wait, self.timeout)
                .await
        })
    }
}
