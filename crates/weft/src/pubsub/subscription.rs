//! The public subscription handle and published messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use weft_proto::subject::SubjectError;

use super::PubSub;
use crate::messaging::message::MessageError;
use crate::queue::{ByteQueue, ByteSized};

/// A message published on a subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PubMsg {
    /// The subject it was published on.
    pub subject: String,
    /// Where replies go, if the publisher expects one.
    pub reply: Option<String>,
    /// Optional headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub payload: Bytes,
}

impl ByteSized for PubMsg {
    fn byte_len(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.payload.len() + self.subject.len() + self.reply.as_ref().map_or(0, String::len) + headers + 48
    }
}

/// Why a publish, subscribe or request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PubSubError {
    /// The subject, pattern or queue name is not valid.
    #[error(transparent)]
    Subject(#[from] SubjectError),
    /// `request`: no subscription matches the subject anywhere in the
    /// cluster, so nobody can answer.
    #[error("no responders for {0:?}")]
    NoResponders(String),
    /// `request`: no reply within the timeout.
    #[error("request timed out")]
    Timeout,
    /// A frame could not be queued to a node.
    #[error("send failed: {0}")]
    Send(#[from] MessageError),
    /// The subscription was closed.
    #[error("subscription closed")]
    Closed,
}

/// Where a subscription's messages wait.
pub(crate) struct Sink {
    pub queue: ByteQueue<PubMsg>,
    pub dropped: AtomicU64,
}

/// A subscription: a bounded stream of the messages whose subject matches
/// its pattern. Dropping it unsubscribes.
///
/// Slow-consumer policy: when the queue (bytes) is full, a new message is
/// dropped *for this subscription only*, counted in [`Self::dropped`] and
/// in the node's `frames_dropped{reason="slow_consumer"}`; publishers and
/// other subscribers never wait for it.
pub struct Subscription {
    pub(crate) id: u64,
    pub(crate) pattern: String,
    pub(crate) queue_group: Option<String>,
    pub(crate) sink: Arc<Sink>,
    pub(crate) pubsub: Arc<PubSub>,
}

impl Subscription {
    /// The next message; `None` after unsubscribe or node shutdown.
    pub async fn next(&self) -> Option<PubMsg> {
        self.sink.queue.pop().await
    }

    /// The next message if one is queued.
    pub fn try_next(&self) -> Option<PubMsg> {
        let mut one = Vec::with_capacity(1);
        self.sink.queue.drain_into(&mut one, 1);
        one.pop()
    }

    /// Moves every queued message into `out`; returns how many.
    pub fn drain_into(&self, out: &mut Vec<PubMsg>) -> usize {
        let before = out.len();
        self.sink.queue.drain_into(out, usize::MAX);
        out.len() - before
    }

    /// Messages dropped because this subscription's queue was full.
    pub fn dropped(&self) -> u64 {
        self.sink.dropped.load(Ordering::Relaxed)
    }

    /// The pattern subscribed to.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The queue group, if any.
    pub fn queue_group(&self) -> Option<&str> {
        self.queue_group.as_deref()
    }

    /// Stops the subscription (the same as dropping it).
    pub fn unsubscribe(self) {}
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.pubsub.unsubscribe(self.id);
    }
}
