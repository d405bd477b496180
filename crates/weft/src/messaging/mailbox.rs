//! The public mailbox handle and the group monitor.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::stream::{BoxStream, Stream, StreamExt};

use tokio::sync::broadcast;
use weft_proto::Pid;

use super::message::{CallError, Envelope, Message, MessageError, Target};
use super::{Messaging, Slot};
use crate::api::poll::PendingNext;
use crate::directory::GroupEvent;

/// A local mailbox with a cluster-wide [`Pid`] and a bounded receive queue
/// (bytes). Dropping it removes it: it leaves every group, loses its
/// names, and later messages to its pid fail with "no such mailbox".
///
/// Also a `Stream` of [`Envelope`]s (ending once the node shut down), the
/// same messages [`Mailbox::recv`] returns; use one or the other.
pub struct Mailbox {
    pub(crate) slot: Arc<Slot>,
    pub(crate) messaging: Arc<Messaging>,
    pub(crate) next: PendingNext<Option<Envelope>>,
}

impl Mailbox {
    /// This mailbox's cluster-wide address.
    pub fn pid(&self) -> &Pid {
        &self.slot.pid
    }

    /// Waits for the next message, in arrival order; `None` once the node
    /// shut down.
    pub async fn recv(&self) -> Option<Envelope> {
        self.slot.queue.pop().await
    }

    /// The next message if one is queued.
    pub fn try_recv(&self) -> Option<Envelope> {
        let mut one = Vec::with_capacity(1);
        self.slot.queue.drain_into(&mut one, 1);
        one.pop()
    }

    /// Messages waiting in the queue.
    pub fn len(&self) -> usize {
        self.slot.queue.len()
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.slot.queue.is_empty()
    }

    /// Sends `msg` to `to` with this mailbox as sender, waiting for room.
    pub async fn send(&self, to: impl Into<Target>, msg: Message) -> Result<(), MessageError> {
        self.messaging
            .send(Some(self.slot.pid.clone()), &to.into(), msg, true)
            .await
    }

    /// Calls `to` with this mailbox as sender.
    pub async fn call(
        &self,
        to: impl Into<Target>,
        msg: Message,
        timeout: Duration,
    ) -> Result<Message, CallError> {
        self.messaging
            .call(Some(self.slot.pid.clone()), &to.into(), msg, timeout)
            .await
    }

    /// Answers the call carried by `env` ([`MessageError::NotACall`] if it
    /// is not one).
    pub async fn reply(&self, env: &Envelope, msg: Message) -> Result<(), MessageError> {
        self.messaging.reply(&self.slot.pid, env, msg).await
    }
}

impl Stream for Mailbox {
    type Item = Envelope;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Envelope>> {
        let this = self.get_mut();
        let slot = this.slot.clone();
        this.next.poll(
            cx,
            || this.slot.queue.try_pop().map(Some),
            || async move { slot.queue.pop().await },
        )
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        self.messaging.remove(&self.slot);
    }
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mailbox({})", self.slot.pid)
    }
}

/// Why a monitor returned no event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MonitorError {
    /// The monitor fell behind by this many events (bounded buffer of
    /// 4096); re-read the members and continue.
    #[error("monitor lagged by {0} events")]
    Lagged(u64),
    /// The node shut down.
    #[error("node stopped")]
    Closed,
}

/// Join/leave events of one group, after the members it started with.
///
/// Also a `Stream` of `Result<GroupEvent, MonitorError>`: an
/// `Err(MonitorError::Lagged)` after falling behind, and the end of the
/// stream (instead of `MonitorError::Closed`) once the node shut down.
pub struct GroupMonitor {
    initial: Vec<Pid>,
    events: BoxStream<'static, Result<GroupEvent, MonitorError>>,
}

impl GroupMonitor {
    /// The members when the monitor started.
    pub fn initial_members(&self) -> &[Pid] {
        &self.initial
    }

    /// The next join or leave of this group.
    pub async fn next(&mut self) -> Result<GroupEvent, MonitorError> {
        self.events.next().await.unwrap_or(Err(MonitorError::Closed))
    }

    pub(crate) fn new(group: String, initial: Vec<Pid>, rx: broadcast::Receiver<GroupEvent>) -> Self {
        let events = futures::stream::unfold(rx, move |mut rx| {
            let group = group.clone();
            async move {
                loop {
                    match rx.recv().await {
                        Ok(ev) if ev.group() == group => return Some((Ok(ev), rx)),
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            return Some((Err(MonitorError::Lagged(n)), rx));
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        Self {
            initial,
            events: events.boxed(),
        }
    }
}

impl Stream for GroupMonitor {
    type Item = Result<GroupEvent, MonitorError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_next_unpin(cx)
    }
}
