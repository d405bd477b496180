//! Event streams: membership, link and shard map changes as `Stream`s.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::{BoxStream, Stream, StreamExt};
use tokio::sync::{broadcast, watch};
use weft_proto::shard::ShardMap;

/// A receiver of events fell behind its bounded buffer and missed this
/// many events; it continues with the oldest event still buffered.
/// Re-read the current state (e.g. [`crate::Membership::members`]) and go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event receiver lagged: {0} events missed")]
pub struct Lagged(pub u64);

/// A `Stream` of a node's events from the moment it was created
/// ([`crate::Membership::events`], [`crate::Membership::link_events`]).
///
/// Bounded (the capacity of the underlying channel, 4096 for membership
/// and links): a consumer that falls behind gets one `Err(Lagged(n))`
/// naming how many it missed, then the events that follow. Ends once the
/// node stopped.
pub struct Events<T> {
    inner: BoxStream<'static, Result<T, Lagged>>,
}

impl<T: Clone + Send + 'static> Events<T> {
    pub(crate) fn from_broadcast(rx: broadcast::Receiver<T>) -> Self {
        let inner = futures::stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                Ok(ev) => Some((Ok(ev), rx)),
                Err(broadcast::error::RecvError::Lagged(n)) => Some((Err(Lagged(n)), rx)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        Self { inner: inner.boxed() }
    }
}

impl<T> Events<T> {
    /// The next event (`Err(Lagged)` after falling behind); `None` once
    /// the node stopped. Same as `StreamExt::next`.
    pub async fn next(&mut self) -> Option<Result<T, Lagged>> {
        self.inner.next().await
    }
}

impl<T> Stream for Events<T> {
    type Item = Result<T, Lagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

impl<T> std::fmt::Debug for Events<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Events")
    }
}

/// A `Stream` of committed shard maps ([`crate::Shards::maps`]): the map
/// current when it was created first, then each newer map. Maps committed
/// while the consumer is busy are coalesced (it sees the latest, never an
/// older one after a newer). Ends once the node stopped.
pub struct ShardMaps {
    inner: BoxStream<'static, ShardMap>,
}

impl ShardMaps {
    pub(crate) fn from_watch(rx: watch::Receiver<ShardMap>) -> Self {
        let inner = futures::stream::unfold((rx, true), |(mut rx, first)| async move {
            if !first && rx.changed().await.is_err() {
                return None;
            }
            let map = rx.borrow_and_update().clone();
            Some((map, (rx, false)))
        });
        Self { inner: inner.boxed() }
    }

    /// The next map; `None` once the node stopped. Same as
    /// `StreamExt::next`.
    pub async fn next(&mut self) -> Option<ShardMap> {
        self.inner.next().await
    }
}

impl Stream for ShardMaps {
    type Item = ShardMap;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ShardMap>> {
        self.inner.poll_next_unpin(cx)
    }
}

impl std::fmt::Debug for ShardMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShardMaps")
    }
}
