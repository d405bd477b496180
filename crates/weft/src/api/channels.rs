//! The raw data channel handle.

use bytes::Bytes;
use weft_proto::Frame;

use crate::channel::{ChannelCallback, ChannelError, ChannelReceiver};
use crate::error::SendError;
use crate::node::Node;

/// Raw numbered data channels between nodes (`node.channels()`): the
/// lowest messaging layer, see [`crate::channel`].
#[derive(Clone)]
pub struct Channels {
    pub(crate) node: Node,
}

impl Channels {
    /// Sends `payload` on `channel` to the member named `peer`, waiting
    /// for room in that peer's send queue. Returns once queued: delivery
    /// is at most once across a link failure, FIFO per peer.
    pub async fn send(&self, peer: &str, channel: u32, payload: impl Into<Bytes>) -> Result<(), SendError> {
        let frame = Frame::data(channel, payload.into());
        self.node.inner.links.send(peer, &frame).await
    }

    /// Like [`Channels::send`] but fails with [`SendError::Full`] instead
    /// of waiting.
    pub fn try_send(&self, peer: &str, channel: u32, payload: impl Into<Bytes>) -> Result<(), SendError> {
        self.node
            .inner
            .links
            .try_send(peer, &Frame::data(channel, payload.into()))
    }

    /// Opens `channel` for receiving into a queue of `capacity_bytes`;
    /// [`ChannelError::InUse`] if a receiver or callback owns it.
    pub fn open(&self, channel: u32, capacity_bytes: usize) -> Result<ChannelReceiver, ChannelError> {
        self.node.inner.dispatcher.open(channel, capacity_bytes)
    }

    /// Delivers `channel` to a callback instead of a queue. The callback
    /// runs on the link reader and must not block.
    pub fn on(&self, channel: u32, callback: ChannelCallback) -> Result<(), ChannelError> {
        self.node.inner.dispatcher.on(channel, callback)
    }

    /// Closes a channel opened with [`Channels::open`] or [`Channels::on`].
    pub fn close(&self, channel: u32) {
        self.node.inner.dispatcher.close(channel);
    }
}
