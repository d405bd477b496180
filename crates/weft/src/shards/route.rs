//! Routing keyed events to shard owners: the sender's retry loop, the
//! owner's acceptance check, and the typed outcomes both report.
//!
//! A route fails fast when nothing can accept it: with no committed map
//! (or no owner for the key's shard) it waits at most
//! `ShardConfig::first_map_wait` and returns [`RouteError::Unassigned`].
//! With an owner it retries across map changes until
//! `ShardConfig::route_timeout` and then names the last attempt's failure.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::warn;

use super::handoff::Own;
use super::network::method;
use super::service::Shards;
use crate::rpc::RpcError;

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
#[derive(Serialize, Deserialize, Debug)]
pub(super) enum RouteReply {
    /// Handled at this epoch.
    Accepted { epoch: u64 },
    /// This node's map at `epoch` does not give it the shard.
    Stale { epoch: u64 },
    /// The shard is this node's but not taken over yet.
    NotReady,
    /// The handler panicked on the event.
    HandlerFailed { epoch: u64 },
    /// The shard is this node's in its map at `epoch`, but it holds no
    /// valid lease for it.
    Fenced { epoch: u64 },
}

fn failure(node: &str, e: RpcError) -> RouteFailure {
    let node = node.to_string();
    match e {
        RpcError::Unreachable(reason) => RouteFailure::Unreachable { node, reason },
        RpcError::Timeout => RouteFailure::NoReply { node },
        RpcError::Remote(message) => RouteFailure::Remote { node, message },
    }
}

impl Shards {
    /// Owner side of a routed event.
    pub(super) async fn accept(&self, req: RouteRequest) -> RouteReply {
        // A sender ahead of us: give our map a moment to catch up.
        let deadline = Instant::now() + self.config.owner_catch_up_wait;
        let mut rx = self.watch();
        while rx.borrow().epoch < req.epoch && Instant::now() < deadline {
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_ok_and(|r| r.is_err())
            {
                break;
            }
        }
        let _gate = self.gate.read().unwrap_or_else(|p| p.into_inner());
        let epoch = match self.admission(req.shard) {
            Ok(epoch) => epoch,
            Err(refusal) => return refusal,
        };
        let Some(handler) = self.handler() else {
            return RouteReply::NotReady;
        };
        // A panicking handler must not leave the sender waiting for a
        // reply that never comes: it gets a typed failure instead.
        let event = Bytes::from(req.event);
        let ran = std::panic::catch_unwind(AssertUnwindSafe(|| handler.on_event(req.shard, &req.key, event)));
        if ran.is_err() {
            warn!(shard = req.shard, epoch, "shard handler panicked on an event");
            return RouteReply::HandlerFailed { epoch };
        }
        self.stats.routed_events_accepted.fetch_add(1, Ordering::Relaxed);
        RouteReply::Accepted { epoch }
    }

    /// Whether this node may accept an event for `shard` right now: the
    /// map epoch to acknowledge it at, or the refusal to send. The one
    /// place that decides acceptance; call it (under the gate's read
    /// side) immediately before the handler sees the event.
    pub(super) fn admission(&self, shard: u32) -> Result<u64, RouteReply> {
        let map = self.map();
        if map.owner(shard) != Some(self.local.name.as_str()) {
            return Err(RouteReply::Stale { epoch: map.epoch });
        }
        let since = match self.ownership().shards.get(&shard) {
            Some(h) if h.own == Own::Active => h.since,
            _ => return Err(RouteReply::NotReady),
        };
        // The lease check comes last and on every event: ownership in the
        // map is not enough once this node cannot confirm the map is
        // still the committed one.
        match self.lease_allows(since) {
            Ok(_) => Ok(map.epoch),
            Err(_) => Err(RouteReply::Fenced { epoch: map.epoch }),
        }
    }

    /// Routes `event` to the owner of `key`'s shard and waits for its
    /// acknowledgement, retrying across map changes until the timeout.
    pub(crate) async fn route(&self, key: &[u8], event: Bytes) -> Result<RouteAck, RouteError> {
        let c = &self.config;
        let deadline = Instant::now() + c.route_timeout;
        let mut rx = self.watch();
        let mut attempts = 0u32;
        // When the key's shard was first seen without an owner.
        let mut unassigned_since: Option<Instant> = None;
        loop {
            let map = rx.borrow_and_update().clone();
            let (shard, owner) = if map.epoch == 0 {
                (None, None)
            } else {
                let (s, o) = map.owner_of_key(key);
                (Some(s), o.map(str::to_string))
            };
            let (Some(shard), Some(owner)) = (shard, owner) else {
                let since = *unassigned_since.get_or_insert_with(Instant::now);
                let give_up = (since + c.first_map_wait).min(deadline);
                let unassigned = RouteError::Unassigned {
                    shard,
                    epoch: map.epoch,
                };
                if Instant::now() >= give_up {
                    return Err(unassigned);
                }
                match tokio::time::timeout_at(give_up, rx.changed()).await {
                    Ok(Ok(())) => continue,
                    // Timed out, or the service is gone.
                    _ => return Err(unassigned),
                }
            };
            unassigned_since = None;
            attempts += 1;
            if attempts > 1 {
                self.stats.route_retries.fetch_add(1, Ordering::Relaxed);
            }
            let req = RouteRequest {
                shard,
                epoch: map.epoch,
                key: key.to_vec(),
                event: event.to_vec(),
            };
            let reply = if owner == self.local.name {
                Ok(self.accept(req).await)
            } else {
                self.send_route(&owner, &req, deadline).await
            };
            let (last, wait_until) = match reply {
                Ok(RouteReply::Accepted { epoch }) => {
                    return Ok(RouteAck {
                        shard,
                        node: owner,
                        epoch,
                        attempts,
                    });
                }
                Ok(RouteReply::HandlerFailed { epoch }) => {
                    return Err(RouteError::HandlerFailed {
                        node: owner,
                        shard,
                        epoch,
                    });
                }
                Ok(RouteReply::Stale { epoch }) => {
                    // Refresh: wait until our map reaches the owner's epoch.
                    while rx.borrow().epoch < epoch && Instant::now() < deadline {
                        if tokio::time::timeout_at(deadline, rx.changed())
                            .await
                            .is_ok_and(|r| r.is_err())
                        {
                            break;
                        }
                    }
                    let pause = if rx.borrow().epoch == map.epoch {
                        Instant::now() + c.route_retry_pause
                    } else {
                        Instant::now()
                    };
                    (
                        RouteFailure::Stale {
                            node: owner,
                            shard,
                            epoch,
                        },
                        pause,
                    )
                }
                Ok(RouteReply::NotReady) => (
                    RouteFailure::NotAcquired { node: owner, shard },
                    Instant::now() + c.route_retry_pause,
                ),
                // Cut off or just started: a new map moves the shard (we
                // retry at once when it commits), or the owner renews.
                Ok(RouteReply::Fenced { epoch }) => (
                    RouteFailure::Fenced {
                        node: owner,
                        shard,
                        epoch,
                    },
                    Instant::now() + c.route_unreachable_wait,
                ),
                // Owner unreachable, down or failing: wait for a rebalance
                // (or the wait) before trying again.
                Err(f) => (f, Instant::now() + c.route_unreachable_wait),
            };
            let wait_until = wait_until.min(deadline);
            if matches!(
                last,
                RouteFailure::Stale { .. } | RouteFailure::NotAcquired { .. }
            ) {
                tokio::time::sleep_until(wait_until).await;
            } else {
                let _ = tokio::time::timeout_at(wait_until, rx.changed()).await;
            }
            if Instant::now() >= deadline {
                return Err(RouteError::Timeout { attempts, last });
            }
        }
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
