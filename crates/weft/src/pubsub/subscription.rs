//! The public subscription handle and published messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use weft_proto::subject::SubjectError;

use super::PubSub;
use super::barrier::{BarrierError, InterestBarrier};
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

/// What a [`DeliverySink`] did with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkResult {
    /// Taken (the sink may also have chosen to skip it, e.g. a filter):
    /// counted as delivered.
    Delivered,
    /// No room: the message is dropped for this subscription only and
    /// counted exactly like a full subscription queue (the subscription's
    /// `dropped` and the node's `frames_dropped{reason="slow_consumer"}`).
    Full,
    /// The sink no longer takes messages (it is being unsubscribed): not
    /// counted, like a message arriving while a queue is being closed.
    Closed,
}

/// The receiving end of a [`DirectSubscription`]: called synchronously, on
/// the task that delivers the message (a link reader for messages from
/// other nodes, the publisher's task for local publishes), instead of
/// queueing the message.
///
/// Contract: `deliver` must be short and must never block or wait (it may
/// be called while weft holds its subscription table lock: it must not
/// call back into this node's pub/sub — subscribe, unsubscribe, publish —
/// nor drop the last handle of a subscription). Messages from one
/// publisher arrive in publish order, one call at a time per delivering
/// task; deliveries from different tasks (different publishing nodes or
/// local publishers) may call it concurrently. A delivery that started
/// before the subscription was dropped may still reach the sink shortly
/// after; the sink must tolerate that (return [`SinkResult::Closed`]).
pub trait DeliverySink: Send + Sync + 'static {
    /// Takes `msg`, or says why not.
    fn deliver(&self, msg: &PubMsg) -> SinkResult;
}

impl<F> DeliverySink for F
where
    F: Fn(&PubMsg) -> SinkResult + Send + Sync + 'static,
{
    fn deliver(&self, msg: &PubMsg) -> SinkResult {
        self(msg)
    }
}

/// Where a subscription's messages go.
pub(crate) enum Target {
    /// Queued for [`Subscription::next`].
    Queue(ByteQueue<PubMsg>),
    /// Handed to a sink on the delivering task.
    Direct {
        sink: Arc<dyn DeliverySink>,
        closed: AtomicBool,
    },
}

/// A subscription's delivery target and its drop counter.
pub(crate) struct Sink {
    pub target: Target,
    pub dropped: AtomicU64,
}

impl Sink {
    /// Stops deliveries (unsubscribe).
    pub(crate) fn close(&self) {
        match &self.target {
            Target::Queue(q) => q.close(),
            Target::Direct { closed, .. } => closed.store(true, Ordering::Release),
        }
    }

    fn queue(&self) -> Option<&ByteQueue<PubMsg>> {
        match &self.target {
            Target::Queue(q) => Some(q),
            Target::Direct { .. } => None,
        }
    }
}

/// A subscription: a bounded stream of the messages whose subject matches
/// its pattern. Dropping it unsubscribes.
///
/// Slow-consumer policy: when the queue (bytes) is full, a new message is
/// dropped *for this subscription only*, counted in [`Self::dropped`] and
/// in the node's `frames_dropped{reason="slow_consumer"}`; publishers and
/// other subscribers never wait for it.
///
/// Also a `Stream` of [`PubMsg`]s (ending after unsubscribe or node
/// shutdown), the same messages [`Subscription::next`] returns; use one or
/// the other.
pub struct Subscription {
    pub(crate) id: u64,
    /// The registry version that carries this subscription's interest.
    pub(crate) version: u64,
    pub(crate) pattern: String,
    pub(crate) queue_group: Option<String>,
    pub(crate) sink: Arc<Sink>,
    pub(crate) pubsub: Arc<PubSub>,
    pub(crate) next: crate::api::poll::PendingNext<Option<PubMsg>>,
}

impl futures::Stream for Subscription {
    type Item = PubMsg;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<PubMsg>> {
        let this = self.get_mut();
        let sink = this.sink.clone();
        let ready_now = || match this.sink.queue() {
            Some(q) => q.try_pop().map(Some),
            None => Some(None),
        };
        this.next.poll(cx, ready_now, || async move {
            match sink.queue() {
                Some(q) => q.pop().await,
                None => None,
            }
        })
    }
}

impl Subscription {
    /// The next message; `None` after unsubscribe or node shutdown.
    pub async fn next(&self) -> Option<PubMsg> {
        self.sink.queue()?.pop().await
    }

    /// The next message if one is queued.
    pub fn try_next(&self) -> Option<PubMsg> {
        let mut one = Vec::with_capacity(1);
        self.sink.queue()?.drain_into(&mut one, 1);
        one.pop()
    }

    /// Moves every queued message into `out`; returns how many.
    pub fn drain_into(&self, out: &mut Vec<PubMsg>) -> usize {
        let before = out.len();
        if let Some(q) = self.sink.queue() {
            q.drain_into(out, usize::MAX);
        }
        out.len() - before
    }

    /// Resolves once every node that is up has applied this
    /// subscription's interest: from then on a message published on any
    /// live node and matching the pattern reaches this subscription (no
    /// sleep needed between subscribing here and publishing elsewhere).
    ///
    /// Nodes that go down while it waits stop counting; a node that is up
    /// but not linked yet is waited for. Fails with
    /// [`BarrierError::Timeout`], naming the nodes that did not confirm,
    /// after `pubsub.interest_barrier_timeout` (the subscription stays
    /// active: those nodes may still apply it later). Cheap when already
    /// confirmed; may be called any number of times.
    pub async fn ready(&self) -> Result<(), BarrierError> {
        self.pubsub.barrier_at(self.version).wait().await
    }

    /// Like [`Self::ready`], waiting at most `timeout`.
    pub async fn ready_within(&self, timeout: std::time::Duration) -> Result<(), BarrierError> {
        self.pubsub
            .barrier_at(self.version)
            .with_timeout(timeout)
            .wait()
            .await
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

    /// Stops the subscription (the same as dropping it) and returns a
    /// barrier for the removal: once [`InterestBarrier::wait`] resolves, no
    /// live node forwards this node messages for the removed interest
    /// (unless another local subscription still has the same pattern).
    /// Ignoring the barrier is fine: the removal happens either way.
    pub fn unsubscribe(self) -> InterestBarrier {
        self.pubsub.unsubscribe(self.id);
        self.pubsub.barrier()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.pubsub.unsubscribe(self.id);
    }
}

/// A subscription whose messages are handed to a [`DeliverySink`] on the
/// delivering task instead of being queued: no queue, no task, no wake-up
/// between the link reader and the consumer. Same matching, queue-group
/// and interest semantics as [`Subscription`]; the slow-consumer policy is
/// the sink's: a sink answering [`SinkResult::Full`] has that message
/// dropped and counted in [`Self::dropped`] and in the node's
/// `frames_dropped{reason="slow_consumer"}`. Dropping it unsubscribes.
pub struct DirectSubscription {
    pub(crate) id: u64,
    /// The registry version that carries this subscription's interest.
    pub(crate) version: u64,
    pub(crate) pattern: String,
    pub(crate) queue_group: Option<String>,
    pub(crate) sink: Arc<Sink>,
    pub(crate) pubsub: Arc<PubSub>,
}

impl DirectSubscription {
    /// Resolves once every node that is up has applied this
    /// subscription's interest: from then on a message published on any
    /// live node and matching the pattern reaches this subscription (no
    /// sleep needed between subscribing here and publishing elsewhere).
    ///
    /// Nodes that go down while it waits stop counting; a node that is up
    /// but not linked yet is waited for. Fails with
    /// [`BarrierError::Timeout`], naming the nodes that did not confirm,
    /// after `pubsub.interest_barrier_timeout` (the subscription stays
    /// active: those nodes may still apply it later). Cheap when already
    /// confirmed; may be called any number of times.
    pub async fn ready(&self) -> Result<(), BarrierError> {
        self.pubsub.barrier_at(self.version).wait().await
    }

    /// Like [`Self::ready`], waiting at most `timeout`.
    pub async fn ready_within(&self, timeout: std::time::Duration) -> Result<(), BarrierError> {
        self.pubsub
            .barrier_at(self.version)
            .with_timeout(timeout)
            .wait()
            .await
    }

    /// Messages dropped because the sink answered [`SinkResult::Full`].
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

    /// Stops the subscription (the same as dropping it) and returns a
    /// barrier for the removal: once [`InterestBarrier::wait`] resolves, no
    /// live node forwards this node messages for the removed interest
    /// (unless another local subscription still has the same pattern).
    /// Ignoring the barrier is fine: the removal happens either way.
    pub fn unsubscribe(self) -> InterestBarrier {
        self.pubsub.unsubscribe(self.id);
        self.pubsub.barrier()
    }
}

impl Drop for DirectSubscription {
    fn drop(&mut self) {
        self.pubsub.unsubscribe(self.id);
    }
}
