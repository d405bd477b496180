//! Public types of the stream relay: publisher, subscription, events.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::task::{Context, Poll};

use futures::Stream;

use weft_proto::relay::{KeyError, StreamFrame};

use super::Relay;
use crate::api::poll::PendingNext;
use crate::queue::{ByteQueue, ByteSized};

/// How an origin publishes a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamPolicy {
    /// Replay buffer bound in frames (configuration frames not counted).
    pub gop_max_frames: usize,
    /// Replay buffer bound in bytes.
    pub gop_max_bytes: usize,
    /// Origin priority: edges pull from the highest; a standby origin
    /// announces a lower one.
    pub priority: u32,
}

impl Default for StreamPolicy {
    fn default() -> Self {
        Self {
            gop_max_frames: 2048,
            gop_max_bytes: 32 * 1024 * 1024,
            priority: 100,
        }
    }
}

/// Something a stream subscriber receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// The next frame.
    Frame(StreamFrame),
    /// The subscriber fell behind its queue: `frames` were skipped and the
    /// next frame is a keyframe (or configuration).
    Skipped {
        /// Frames not delivered.
        frames: u64,
    },
    /// The stream now comes from another origin (failover); sequence
    /// numbers restart with its numbering.
    Discontinuity {
        /// The new origin node.
        origin: String,
    },
}

/// Why a stream subscription ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamClosed {
    /// The publisher finished and no other origin has the stream.
    #[error("the stream finished")]
    Finished,
    /// The origin went down or stalled and no other origin has the stream.
    #[error("origin lost")]
    OriginLost,
    /// The node shut down.
    #[error("node stopped")]
    Stopped,
}

/// Why a stream operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The key is not valid.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Nobody publishes this key (now / within the wait).
    #[error("no origin publishes {0:?}")]
    NotFound(String),
    /// This node already publishes this key.
    #[error("{0:?} is already published on this node")]
    AlreadyPublished(String),
    /// The origin did not confirm the attach of this node within the
    /// timeout (the subscription was dropped; retrying is safe).
    #[error("origin {origin:?} did not confirm the attach of {key:?} in time")]
    AttachTimeout {
        /// The stream key.
        key: String,
        /// The origin asked.
        origin: String,
    },
    /// The stream ended while this node was attaching to it.
    #[error("stream {key:?} ended while attaching: {reason}")]
    Closed {
        /// The stream key.
        key: String,
        /// Why it ended.
        reason: StreamClosed,
    },
    /// Sequence numbers must increase.
    #[error("frame {seq} is not after {last}")]
    OutOfOrder {
        /// The refused sequence number.
        seq: u64,
        /// The last one published.
        last: u64,
    },
}

/// An item in a subscriber's queue.
#[derive(Clone, Debug)]
pub(crate) enum Item {
    Event(StreamEvent),
    End(StreamClosed),
}

impl ByteSized for Item {
    fn byte_len(&self) -> usize {
        match self {
            Item::Event(StreamEvent::Frame(f)) => f.size(),
            _ => 32,
        }
    }
}

/// A subscriber's queue.
pub(crate) struct SubQueue {
    pub queue: ByteQueue<Item>,
    pub max_frames: usize,
    pub closed: Mutex<Option<StreamClosed>>,
}

/// Publishes one stream from this node (the origin). Dropping it ends the
/// stream: the origin announcement is withdrawn and edges are told.
pub struct StreamPublisher {
    pub(crate) key: String,
    pub(crate) relay: Arc<Relay>,
}

impl StreamPublisher {
    /// The stream key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Publishes a frame: into the replay buffer, to local subscribers and
    /// to every edge pulling the stream. Never waits: a subscriber or edge
    /// that cannot keep up skips to the next keyframe (counted).
    pub fn send(&self, frame: StreamFrame) -> Result<(), StreamError> {
        self.relay.publish_frame(&self.key, frame)
    }
}

impl Drop for StreamPublisher {
    fn drop(&mut self) {
        self.relay.end_publisher(&self.key);
    }
}

/// Receives one stream: the replay buffer first, then live frames, with no
/// gap and no duplicate. Dropping it unsubscribes (an edge stops pulling
/// after the configured linger once its last subscriber left).
///
/// Also a `Stream` of `Result<StreamEvent, StreamClosed>`: the events
/// [`StreamSubscription::next`] returns, then one `Err` saying why the
/// stream ended, then the end of the `Stream`.
pub struct StreamSubscription {
    pub(crate) key: String,
    pub(crate) id: u64,
    pub(crate) queue: Arc<SubQueue>,
    pub(crate) relay: Arc<Relay>,
    pub(crate) next: PendingNext<Result<StreamEvent, StreamClosed>>,
    pub(crate) ended: bool,
}

/// Turns what a subscriber's queue gave into the subscription's answer.
fn event_of(queue: &SubQueue, item: Option<Item>) -> Result<StreamEvent, StreamClosed> {
    match item {
        Some(Item::Event(e)) => Ok(e),
        Some(Item::End(reason)) => Err(reason),
        None => Err(queue
            .closed
            .lock()
            .map(|c| c.unwrap_or(StreamClosed::Stopped))
            .unwrap_or(StreamClosed::Stopped)),
    }
}

impl Stream for StreamSubscription {
    type Item = Result<StreamEvent, StreamClosed>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let queue = this.queue.clone();
        let ready_now = || this.queue.queue.try_pop().map(|i| event_of(&this.queue, Some(i)));
        let polled = this.next.poll(cx, ready_now, || async move {
            let item = queue.queue.pop().await;
            event_of(&queue, item)
        });
        if let Poll::Ready(Err(_)) = &polled {
            this.ended = true;
        }
        polled.map(Some)
    }
}

impl StreamSubscription {
    /// The stream key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The next event, or why the stream ended.
    pub async fn next(&self) -> Result<StreamEvent, StreamClosed> {
        let item = self.queue.queue.pop().await;
        event_of(&self.queue, item)
    }
}

impl Drop for StreamSubscription {
    fn drop(&mut self) {
        self.relay.unsubscribe(&self.key, self.id);
    }
}
