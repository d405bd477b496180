//! The live stream relay handle.

use std::time::Duration;

use crate::node::Node;
use crate::relay::StreamInfo;
use crate::relay::stream::{StreamError, StreamPolicy, StreamPublisher, StreamSubscription};

/// Live stream relay of a node (`node.streams()`): publish a stream from
/// this node (its origin), play one from anywhere.
#[derive(Clone)]
pub struct Streams {
    pub(crate) node: Node,
}

impl Streams {
    /// Publishes a live stream from this node (its origin). The key is
    /// announced cluster-wide; dropping the publisher withdraws it.
    pub fn publish(&self, key: &str, policy: StreamPolicy) -> Result<StreamPublisher, StreamError> {
        self.node.inner.relay.publish_stream(key, policy)
    }

    /// Plays a stream: the replay buffer, then live frames. On a node that
    /// is not the origin the first subscriber makes the node pull the
    /// stream once.
    ///
    /// Returns once the origin confirmed the attach (at once on the origin
    /// itself and on an edge already pulling): from then on every frame the
    /// origin publishes reaches the subscription in order, unless a
    /// [`StreamEvent::Skipped`](crate::StreamEvent::Skipped) (the viewer or
    /// the edge fell behind) or
    /// [`StreamEvent::Discontinuity`](crate::StreamEvent::Discontinuity)
    /// (failover) event comes first and names the gap.
    ///
    /// Fails at once with [`StreamError::NotFound`] if no node publishes
    /// `key` (see [`Streams::subscribe_wait`]); with
    /// [`StreamError::AttachTimeout`] if the origin does not confirm within
    /// `relay.attach_timeout`; with [`StreamError::Closed`] if the stream
    /// ends meanwhile.
    pub async fn subscribe(&self, key: &str) -> Result<StreamSubscription, StreamError> {
        let timeout = self.node.inner.config.relay.attach_timeout;
        self.node.inner.relay.subscribe(key, timeout).await
    }

    /// Like [`Streams::subscribe`], but waits up to `timeout` (in all:
    /// for an origin of `key` to appear and for its confirmation).
    pub async fn subscribe_wait(
        &self,
        key: &str,
        timeout: Duration,
    ) -> Result<StreamSubscription, StreamError> {
        self.node.inner.relay.subscribe_wait(key, timeout).await
    }

    /// The origin this node would pull `key` from: never this node,
    /// highest priority, then smallest name.
    pub fn locate(&self, key: &str) -> Option<String> {
        self.node.inner.relay.locate(key)
    }

    /// Every stream known here, with origins and this node's role.
    pub fn list(&self) -> Vec<StreamInfo> {
        self.node.inner.relay.streams()
    }
}
