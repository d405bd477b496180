//! Raw data channels: numbered streams of application bytes between nodes.
//!
//! The lowest public messaging layer (mailboxes, groups and pub/sub build
//! their own frame kinds). Inbound frames are delivered to a bounded
//! [`ChannelReceiver`] or to a non-blocking callback; a frame that finds no
//! channel, a full inbox or a closed receiver is dropped and counted under
//! `frames_dropped` with reason `no_channel`, `inbox_full` or
//! `channel_closed`.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use futures::Stream;

use bytes::Bytes;
use weft_proto::frame::Header;
use weft_proto::{Frame, NodeId};

use crate::api::poll::PendingNext;
use crate::link::FrameHandler;
use crate::queue::{ByteQueue, ByteSized, Pushed};
use crate::stats::Stats;

/// One message received on a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The sending node.
    pub from: NodeId,
    /// The message bytes.
    pub payload: Bytes,
}

impl ByteSized for Delivery {
    fn byte_len(&self) -> usize {
        self.payload.len() + 64
    }
}

/// A callback receiving channel messages. It runs on the link's reader:
/// it must not block.
pub type ChannelCallback = Arc<dyn Fn(&NodeId, Bytes) + Send + Sync>;

enum Sink {
    Queue(Arc<ByteQueue<Delivery>>),
    Callback(ChannelCallback),
}

type ChannelMap = HashMap<u32, Sink, BuildHasherDefault<crate::hash::LocalIdHasher>>;

/// Routes inbound data frames to channels.
pub(crate) struct Dispatcher {
    channels: RwLock<ChannelMap>,
    stats: Arc<Stats>,
}

/// Why a channel could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// Another receiver or callback already owns this channel.
    #[error("channel {0} is already open")]
    InUse(u32),
}

impl Dispatcher {
    pub(crate) fn new(stats: Arc<Stats>) -> Self {
        Self {
            channels: RwLock::new(ChannelMap::default()),
            stats,
        }
    }

    fn insert(&self, channel: u32, sink: Sink) -> Result<(), ChannelError> {
        let mut map = crate::sync::write(&self.channels);
        match map.get(&channel) {
            // A dropped receiver leaves a closed queue behind: reuse the slot.
            Some(Sink::Queue(q)) if q.is_closed() => {}
            Some(_) => return Err(ChannelError::InUse(channel)),
            None => {}
        }
        map.insert(channel, sink);
        Ok(())
    }

    pub(crate) fn open(&self, channel: u32, capacity_bytes: usize) -> Result<ChannelReceiver, ChannelError> {
        let queue = Arc::new(ByteQueue::new(capacity_bytes, 0));
        self.insert(channel, Sink::Queue(queue.clone()))?;
        Ok(ChannelReceiver {
            channel,
            queue,
            next: PendingNext::default(),
        })
    }

    pub(crate) fn on(&self, channel: u32, callback: ChannelCallback) -> Result<(), ChannelError> {
        self.insert(channel, Sink::Callback(callback))
    }

    pub(crate) fn close(&self, channel: u32) {
        let mut map = crate::sync::write(&self.channels);
        if let Some(Sink::Queue(q)) = map.remove(&channel) {
            q.close();
        }
    }
}

impl FrameHandler for Dispatcher {
    fn on_frame(&self, from: &NodeId, frame: Frame) {
        let Header::Data(data) = frame.header else {
            self.stats.frames_dropped.inc("unhandled_kind");
            return;
        };
        let map = crate::sync::read(&self.channels);
        match map.get(&data.channel) {
            None => self.stats.frames_dropped.inc("no_channel"),
            Some(Sink::Callback(cb)) => {
                let cb = cb.clone();
                drop(map);
                let call = std::panic::AssertUnwindSafe(|| cb(from, frame.payload));
                if std::panic::catch_unwind(call).is_err() {
                    self.stats.frames_dropped.inc("callback_panic");
                }
            }
            Some(Sink::Queue(q)) => {
                let d = Delivery {
                    from: from.clone(),
                    payload: frame.payload,
                };
                match q.try_push(d, false) {
                    Ok(()) => {}
                    Err(Pushed::Full(_)) => self.stats.frames_dropped.inc("inbox_full"),
                    Err(Pushed::Closed(_)) => self.stats.frames_dropped.inc("channel_closed"),
                }
            }
        }
    }
}

/// The receiving end of a channel, bounded by bytes. Dropping it closes
/// the channel; later frames for it are counted as `channel_closed`.
///
/// Also a `Stream` of [`Delivery`]s (ending once the node shut down or the
/// channel was closed), the same messages [`ChannelReceiver::recv`]
/// returns; use one or the other.
pub struct ChannelReceiver {
    channel: u32,
    queue: Arc<ByteQueue<Delivery>>,
    next: PendingNext<Option<Delivery>>,
}

impl ChannelReceiver {
    /// The channel number.
    pub fn channel(&self) -> u32 {
        self.channel
    }

    /// Waits for the next message; `None` once the node shut down.
    pub async fn recv(&self) -> Option<Delivery> {
        self.queue.pop().await
    }

    /// Moves every queued message into `out`; returns how many.
    pub fn drain_into(&self, out: &mut Vec<Delivery>) -> usize {
        let before = out.len();
        self.queue.drain_into(out, usize::MAX);
        out.len() - before
    }
}

impl Stream for ChannelReceiver {
    type Item = Delivery;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        let this = self.get_mut();
        let queue = this.queue.clone();
        this.next.poll(
            cx,
            || this.queue.try_pop().map(Some),
            || async move { queue.pop().await },
        )
    }
}

impl Drop for ChannelReceiver {
    fn drop(&mut self) {
        self.queue.close();
    }
}
