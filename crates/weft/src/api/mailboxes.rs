//! The mailbox handle: spawn, name, tell, call.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use weft_proto::Pid;

use crate::api::poll::PendingNext;
use crate::messaging::dead_letter::{DEFAULT_RECEIVER_CAPACITY, DeadLetterReceiver};
use crate::messaging::mailbox::Mailbox;
use crate::messaging::message::{CallError, Message, MessageError, NameError, Target};
use crate::node::Node;

/// Mailboxes of a node (`node.mailboxes()`): cluster-wide pids and names,
/// tells and calls with typed errors, dead letters.
#[derive(Clone)]
pub struct Mailboxes {
    pub(crate) node: Node,
}

impl Mailboxes {
    /// Creates a local mailbox with the configured queue size
    /// (`messaging.mailbox_bytes`).
    pub fn spawn(&self) -> Mailbox {
        self.spawn_with_capacity(self.node.inner.config.messaging.mailbox_bytes)
    }

    /// Creates a local mailbox whose queue holds `capacity_bytes`.
    pub fn spawn_with_capacity(&self, capacity_bytes: usize) -> Mailbox {
        let messaging = &self.node.inner.messaging;
        Mailbox {
            slot: messaging.spawn(capacity_bytes.max(1)),
            messaging: messaging.clone(),
            next: PendingNext::default(),
        }
    }

    /// Sends `msg` to a mailbox (by pid, or by name on a node), waiting
    /// for room in the target's queue (local) or the link's (remote).
    /// FIFO per sender→receiver; at most once across a link failure. A
    /// remote tell that the receiving node drops (mailbox gone or full)
    /// comes back as a dead letter ([`Mailboxes::dead_letters`]).
    pub async fn send(&self, to: impl Into<Target>, msg: Message) -> Result<(), MessageError> {
        self.node.inner.messaging.send(None, &to.into(), msg, true).await
    }

    /// Like [`Mailboxes::send`] but fails with [`MessageError::Full`]
    /// instead of waiting for room.
    pub async fn try_send(&self, to: impl Into<Target>, msg: Message) -> Result<(), MessageError> {
        self.node.inner.messaging.send(None, &to.into(), msg, false).await
    }

    /// Sends to the mailbox registered as `name` on `node`. Fails at once
    /// with [`MessageError::NoSuchMailbox`] when this node's replicated
    /// directory holds no such name on `node` (a name registered there
    /// moments ago may not have arrived yet: see [`Mailboxes::whereis`]).
    pub async fn send_named(&self, node: &str, name: &str, msg: Message) -> Result<(), MessageError> {
        let target = Target::Named {
            node: node.to_string(),
            name: name.to_string(),
        };
        self.node.inner.messaging.send(None, &target, msg, true).await
    }

    /// Sends a request and waits for the reply: await the returned
    /// [`Call`] (after `.timeout(..)` to wait other than
    /// `messaging.call_timeout`, 5 s by default). Fails with
    /// [`CallError::NodeDown`] as soon as membership declares the target
    /// node down, [`CallError::NoSuchMailbox`] if the target does not
    /// exist, [`CallError::Timeout`] otherwise.
    pub fn call(&self, to: impl Into<Target>, msg: Message) -> Call {
        Call {
            node: self.node.clone(),
            to: to.into(),
            msg,
            timeout: self.node.config().messaging.call_timeout,
        }
    }

    /// Registers `mailbox` under `name` on this node (cluster-visible).
    pub fn register(&self, name: &str, mailbox: &Mailbox) -> Result<(), NameError> {
        self.node.inner.messaging.register(name, &mailbox.slot)
    }

    /// Removes a local name; returns whether it existed.
    pub fn unregister(&self, name: &str) -> bool {
        self.node.inner.messaging.unregister(name)
    }

    /// Every mailbox registered as `name`, on any node.
    pub fn whereis(&self, name: &str) -> Vec<Pid> {
        self.node.inner.messaging.whereis(name)
    }

    /// Number of local mailboxes.
    pub fn count(&self) -> usize {
        self.node.inner.messaging.mailbox_count()
    }

    /// The dead letters of this node's tells: each tell another node
    /// received but dropped (mailbox gone or full) comes back as a
    /// [`crate::DeadLetter`], within about
    /// [`BATCH_DELAY`](crate::messaging::dead_letter::BATCH_DELAY) of the
    /// drop. Every call returns a new receiver (also a `Stream`) that sees
    /// the letters arriving from then on; it holds up to 1024 letters,
    /// later ones are dropped and counted (see [`DeadLetterReceiver`]).
    pub fn dead_letters(&self) -> DeadLetterReceiver {
        self.dead_letters_with_capacity(DEFAULT_RECEIVER_CAPACITY)
    }

    /// Like [`Mailboxes::dead_letters`], holding up to `capacity` letters
    /// (at least 1).
    pub fn dead_letters_with_capacity(&self, capacity: usize) -> DeadLetterReceiver {
        self.node.inner.dead_letters.subscribe(capacity)
    }
}

/// A call being prepared ([`Mailboxes::call`]); await it to send it.
#[must_use = "a call does nothing until awaited"]
pub struct Call {
    node: Node,
    to: Target,
    msg: Message,
    timeout: Duration,
}

impl Call {
    /// Waits up to `timeout` for the answer instead of
    /// [`crate::DEFAULT_REQUEST_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl IntoFuture for Call {
    type Output = Result<Message, CallError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let messaging = &self.node.inner.messaging;
            messaging.call(None, &self.to, self.msg, self.timeout).await
        })
    }
}
