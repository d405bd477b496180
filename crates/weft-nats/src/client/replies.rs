//! A client's answers to its own commands (`PONG`, `+OK`), in command
//! order, with a `PONG` held behind an interest barrier.
//!
//! A `PING` that follows `SUB`/`UNSUB` is answered once every live node has
//! applied those interest changes ([`weft::PubSub::interest_barrier`]), so
//! `sub; flush(); publish elsewhere` never misses. The reader does not
//! wait: it queues the `PONG` and goes on reading; a small task waits for
//! the barrier (bounded by `interest_barrier_timeout`: on timeout the
//! `PONG` goes out anyway, counted and logged) and then writes every answer
//! that is ready, in order. Answers queued behind a held `PONG` (later
//! `PONG`s, `+OK`s) wait for it; messages (`MSG`/`HMSG`) do not.
//!
//! Bound: at most [`MAX_HELD`] answers wait; a client that queues more is
//! closed as a slow consumer (counted), like one whose outbound buffer is
//! full.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tracing::{debug, warn};
use weft::Node;

use super::outbound::Outbound;
use crate::proto::encode;
use crate::stats::{self, NatsStats};

/// Most answers held behind interest barriers for one client.
pub(crate) const MAX_HELD: usize = 65_536;

enum Held {
    /// A `PONG` whose barrier has not completed.
    Pong { id: u64, done: bool },
    /// A fixed answer (`PONG`, `+OK`) queued behind a held `PONG`.
    Bytes(&'static [u8]),
}

#[derive(Default)]
struct Queue {
    held: VecDeque<Held>,
    next_id: u64,
}

/// The ordered answers of one client. See the module documentation.
pub(crate) struct Replies {
    queue: Arc<Mutex<Queue>>,
    out: Arc<Outbound>,
    /// An interest change since the last barrier was taken.
    dirty: bool,
    cid: u64,
}

fn locked(q: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    q.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes the answers at the front of `q` that are ready.
fn flush_ready(q: &mut Queue, out: &Outbound) {
    while let Some(front) = q.held.front() {
        match front {
            Held::Pong { done: false, .. } => return,
            Held::Pong { done: true, .. } => out.send(encode::PONG),
            Held::Bytes(b) => out.send(b),
        }
        q.held.pop_front();
    }
}

impl Replies {
    pub(crate) fn new(out: Arc<Outbound>, cid: u64) -> Self {
        Self {
            queue: Arc::default(),
            out,
            dirty: false,
            cid,
        }
    }

    /// The client changed its interest (`SUB`, `UNSUB`): its next `PING`
    /// waits for a barrier.
    pub(crate) fn interest_changed(&mut self) {
        self.dirty = true;
    }

    /// Sends `bytes` after every answer queued before it.
    pub(crate) fn send(&self, bytes: &'static [u8]) {
        let mut q = locked(&self.queue);
        if q.held.is_empty() {
            // Under the queue lock, so a flush cannot slip in between.
            self.out.send(bytes);
        } else {
            self.hold(&mut q, Held::Bytes(bytes));
        }
    }

    fn hold(&self, q: &mut Queue, entry: Held) -> bool {
        if q.held.len() >= MAX_HELD {
            debug!(
                cid = self.cid,
                held = q.held.len(),
                "slow consumer: too many answers held"
            );
            q.held.clear();
            self.out.close_slow_consumer();
            return false;
        }
        q.held.push_back(entry);
        true
    }

    /// Answers a `PING`: at once when no interest change is pending,
    /// otherwise once every live node applied the changes (at most
    /// `timeout`; then anyway, counted in `stats` and logged).
    pub(crate) fn ping(&mut self, node: &Node, timeout: Duration, stats: &Arc<NatsStats>) {
        if !std::mem::take(&mut self.dirty) {
            return self.send(encode::PONG);
        }
        let barrier = node.pubsub().interest_barrier().with_timeout(timeout);
        let id = {
            let mut q = locked(&self.queue);
            let id = q.next_id;
            q.next_id += 1;
            if !self.hold(&mut q, Held::Pong { id, done: false }) {
                return;
            }
            id
        };
        let (queue, out, stats, cid) = (self.queue.clone(), self.out.clone(), stats.clone(), self.cid);
        tokio::spawn(async move {
            tokio::select! {
                // The client is gone: nobody reads the answer.
                _ = out.token.cancelled() => return,
                r = barrier.wait() => if let Err(e) = r {
                    stats::add(&stats.interest_barrier_timeouts, 1);
                    warn!(cid, error = %e, "PONG sent before every node confirmed the client's interest");
                },
            }
            let mut q = locked(&queue);
            for h in q.held.iter_mut() {
                if let Held::Pong { id: i, done } = h
                    && *i == id
                {
                    *done = true;
                }
            }
            flush_ready(&mut q, &out);
        });
    }
}
