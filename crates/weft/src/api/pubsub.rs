//! The pub/sub handle: subscribe, publish, request.

use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::node::Node;
use crate::pubsub::barrier::InterestBarrier;
use crate::pubsub::subscription::{DeliverySink, DirectSubscription, PubMsg, PubSubError, Subscription};

/// NATS-style pub/sub of a node (`node.pubsub()`): subjects with `*`/`>`
/// wildcards, queue groups, request/reply, interest propagated across
/// the cluster.
#[derive(Clone)]
pub struct PubSub {
    pub(crate) node: Node,
}

impl PubSub {
    /// Subscribes to `pattern` (NATS grammar: `*` one token, `>` one or
    /// more trailing tokens). See [`Subscription`] for the slow-consumer
    /// policy.
    pub fn subscribe(&self, pattern: &str) -> Result<Subscription, PubSubError> {
        self.node.inner.pubsub.subscribe(pattern, None, None)
    }

    /// Subscribes to `pattern` in queue group `queue`: each message goes
    /// to exactly one member of the group cluster-wide while the cluster
    /// is stable. Which one follows the publisher's node's
    /// [`crate::PubSubConfig::queue_locality`]: by default a member
    /// anywhere, each node weighted by its member count; with
    /// [`crate::QueueLocality::Local`] a member on the publisher's node
    /// when it has one.
    pub fn queue_subscribe(&self, pattern: &str, queue: &str) -> Result<Subscription, PubSubError> {
        self.node.inner.pubsub.subscribe(pattern, Some(queue), None)
    }

    /// Subscribes (optionally in queue group `queue`) with a queue of
    /// `capacity_bytes` instead of `messaging.subscription_bytes`.
    pub fn subscribe_with_capacity(
        &self,
        pattern: &str,
        queue: Option<&str>,
        capacity_bytes: usize,
    ) -> Result<Subscription, PubSubError> {
        self.node
            .inner
            .pubsub
            .subscribe(pattern, queue, Some(capacity_bytes))
    }

    /// Subscribes `sink` to `pattern`, optionally in queue group `queue`:
    /// each matching message is handed to [`DeliverySink::deliver`] on the
    /// task delivering it (a link reader, or a local publisher) instead of
    /// being queued for a consumer task. The sink must be short and never
    /// block; a sink answering [`crate::SinkResult::Full`] has the message
    /// dropped and counted as a slow-consumer drop, like a full
    /// [`Subscription`] queue. See [`DeliverySink`] for the full contract.
    pub fn subscribe_direct(
        &self,
        pattern: &str,
        queue: Option<&str>,
        sink: Arc<dyn DeliverySink>,
    ) -> Result<DirectSubscription, PubSubError> {
        self.node.inner.pubsub.subscribe_direct(pattern, queue, sink)
    }

    /// Publishes `payload` on `subject`, without headers or reply subject
    /// (see [`PubSub::publish_with`]). Local subscribers get it at once;
    /// each other node with matching interest gets one frame (waiting for
    /// room in that link's queue). At most once across a link failure.
    pub async fn publish(&self, subject: &str, payload: impl Into<Bytes>) -> Result<(), PubSubError> {
        self.publish_msg(PubMsg {
            subject: subject.to_string(),
            reply: None,
            headers: Vec::new(),
            payload: payload.into(),
        })
        .await
    }

    /// A publish with options: add headers or a reply subject to the
    /// returned [`Publish`], then await it. Behaves as
    /// [`PubSub::publish`].
    pub fn publish_with(&self, subject: &str, payload: impl Into<Bytes>) -> Publish {
        Publish {
            pubsub: self.clone(),
            msg: PubMsg {
                subject: subject.to_string(),
                reply: None,
                headers: Vec::new(),
                payload: payload.into(),
            },
        }
    }

    /// Publishes a fully formed message.
    pub async fn publish_msg(&self, msg: PubMsg) -> Result<(), PubSubError> {
        self.node.inner.pubsub.publish(msg).await
    }

    /// Publishes `msgs` in order, each exactly as [`Self::publish_msg`]
    /// would (same validation, local delivery, interest routing and
    /// per-publisher order), but with one lock of the subscription tables
    /// for the whole batch and one queue push per node: the way to publish
    /// everything a front end parsed out of one socket read. Waits for room
    /// in a link's queue as `publish_msg` does.
    ///
    /// Returns the messages refused, as (index in `msgs`, error); every
    /// other message was published. Nothing is allocated for the answer
    /// when all were published.
    pub async fn publish_batch(&self, msgs: impl IntoIterator<Item = PubMsg>) -> Vec<(usize, PubSubError)> {
        self.node.inner.pubsub.publish_batch(msgs).await
    }

    /// A request on `subject`: await the returned [`Request`] for the
    /// first reply (after `.timeout(..)` or `.header(..)` if wanted; it
    /// waits `pubsub.request_timeout`, 5 s by default, otherwise). Fails at once
    /// with [`PubSubError::NoResponders`] when no subscription anywhere in
    /// the cluster matches, with [`PubSubError::Timeout`] when no reply
    /// came in time.
    pub fn request(&self, subject: &str, payload: impl Into<Bytes>) -> Request {
        Request {
            pubsub: self.clone(),
            subject: subject.to_string(),
            headers: Vec::new(),
            payload: payload.into(),
            timeout: self.node.config().pubsub.request_timeout,
        }
    }

    /// A barrier covering every interest change (subscribe, unsubscribe,
    /// queue group membership) made on this node so far: once
    /// [`InterestBarrier::wait`] resolves, every node that is up has
    /// applied them.
    pub fn interest_barrier(&self) -> InterestBarrier {
        self.node.inner.pubsub.barrier()
    }

    /// Whether any subscription anywhere in the cluster matches `subject`.
    pub fn has_interest(&self, subject: &str) -> bool {
        self.node.inner.pubsub.has_interest(subject)
    }

    /// This node's interest: (pattern, queue group, local subscriptions).
    pub fn local_interest(&self) -> Vec<(String, Option<String>, u32)> {
        self.node.inner.pubsub.local_interest()
    }

    /// Other nodes' advertised interest: node → number of patterns.
    pub fn remote_interest(&self) -> BTreeMap<String, usize> {
        self.node.inner.pubsub.remote_interest()
    }
}

/// A publish being prepared ([`PubSub::publish_with`]); await it to
/// publish.
#[must_use = "a publish does nothing until awaited"]
pub struct Publish {
    pubsub: PubSub,
    msg: PubMsg,
}

impl Publish {
    /// Adds a header (NATS `HPUB`); headers keep the order they were added.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.msg.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the reply subject a responder should answer on.
    pub fn reply(mut self, subject: impl Into<String>) -> Self {
        self.msg.reply = Some(subject.into());
        self
    }
}

impl IntoFuture for Publish {
    type Output = Result<(), PubSubError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.pubsub.publish_msg(self.msg).await })
    }
}

/// A request being prepared ([`PubSub::request`]); await it for the
/// reply.
#[must_use = "a request does nothing until awaited"]
pub struct Request {
    pubsub: PubSub,
    subject: String,
    headers: Vec<(String, String)>,
    payload: Bytes,
    timeout: Duration,
}

impl Request {
    /// Waits up to `timeout` for the reply instead of
    /// [`crate::DEFAULT_REQUEST_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Adds a header to the request message.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

impl IntoFuture for Request {
    type Output = Result<PubMsg, PubSubError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let pubsub = &self.pubsub.node.inner.pubsub;
            pubsub
                .request(&self.subject, self.headers, self.payload, self.timeout)
                .await
        })
    }
}
