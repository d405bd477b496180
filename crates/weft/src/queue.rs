//! A queue bounded by bytes, with a control lane served first.
//!
//! Used for every per-peer send queue and every local inbox. Policy when
//! full: [`ByteQueue::try_push`] hands the item back ([`Pushed::Full`]);
//! [`ByteQueue::push`] waits for room. The control lane has its own,
//! separate bound, so data can never starve heartbeats or registry
//! traffic, and control items are always taken before data items.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

/// Something with a size in bytes.
pub trait ByteSized {
    /// Bytes this item counts against the queue's bound.
    fn byte_len(&self) -> usize;
}

/// Outcome of a push that did not take the item.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed<T> {
    /// No room; the item is handed back.
    Full(T),
    /// The queue is closed; the item is handed back.
    Closed(T),
}

struct Lanes<T> {
    control: VecDeque<T>,
    data: VecDeque<T>,
    control_bytes: usize,
    data_bytes: usize,
    closed: bool,
}

/// A two-lane queue bounded by bytes. Many producers, one consumer.
pub struct ByteQueue<T> {
    lanes: Mutex<Lanes<T>>,
    data_cap: usize,
    control_cap: usize,
    readable: Notify,
    writable: Notify,
}

impl<T: ByteSized> ByteQueue<T> {
    /// A queue holding up to `data_cap` bytes of data items and
    /// `control_cap` bytes of control items. An item larger than the cap
    /// is accepted into an empty lane, so any single item can pass.
    pub fn new(data_cap: usize, control_cap: usize) -> Self {
        Self {
            lanes: Mutex::new(Lanes {
                control: VecDeque::new(),
                data: VecDeque::new(),
                control_bytes: 0,
                data_bytes: 0,
                closed: false,
            }),
            data_cap,
            control_cap,
            readable: Notify::new(),
            writable: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lanes<T>> {
        // A poisoned lock means a panic while pushing or popping, which
        // leaves the deques consistent: keep going.
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item` if there is room, without waiting.
    pub fn try_push(&self, item: T, control: bool) -> Result<(), Pushed<T>> {
        let len = item.byte_len();
        {
            let mut l = self.lock();
            if l.closed {
                return Err(Pushed::Closed(item));
            }
            if control {
                if l.control_bytes > 0 && l.control_bytes + len > self.control_cap {
                    return Err(Pushed::Full(item));
                }
                l.control_bytes += len;
                l.control.push_back(item);
            } else {
                if l.data_bytes > 0 && l.data_bytes + len > self.data_cap {
                    return Err(Pushed::Full(item));
                }
                l.data_bytes += len;
                l.data.push_back(item);
            }
        }
        self.readable.notify_one();
        Ok(())
    }

    /// Queues `item`, waiting for room. Fails only when the queue closes.
    pub async fn push(&self, mut item: T, control: bool) -> Result<(), T> {
        loop {
            let room = self.writable.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.try_push(item, control) {
                Ok(()) => return Ok(()),
                Err(Pushed::Closed(back)) => return Err(back),
                Err(Pushed::Full(back)) => item = back,
            }
            room.await;
        }
    }

    /// Moves up to `max_bytes` of items (at least one if any) into `out`,
    /// control items first. Returns the bytes taken.
    pub fn drain_into(&self, out: &mut Vec<T>, max_bytes: usize) -> usize {
        let mut taken = 0;
        {
            let mut l = self.lock();
            while taken < max_bytes {
                let Some(item) = l.control.pop_front() else {
                    break;
                };
                let n = item.byte_len();
                l.control_bytes -= n;
                taken += n;
                out.push(item);
            }
            while taken < max_bytes {
                let Some(item) = l.data.pop_front() else {
                    break;
                };
                let n = item.byte_len();
                l.data_bytes -= n;
                taken += n;
                out.push(item);
            }
        }
        if taken > 0 {
            self.writable.notify_waiters();
        }
        taken
    }

    /// Waits until an item is queued or the queue is closed. Returns false
    /// once closed and empty.
    pub async fn wait_readable(&self) -> bool {
        loop {
            let ready = self.readable.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            {
                let l = self.lock();
                if !l.control.is_empty() || !l.data.is_empty() {
                    return true;
                }
                if l.closed {
                    return false;
                }
            }
            ready.await;
        }
    }

    /// Takes one item, waiting for it; `None` once closed and empty.
    pub async fn pop(&self) -> Option<T> {
        loop {
            let mut one = Vec::with_capacity(1);
            if self.drain_into(&mut one, 1) > 0 || !one.is_empty() {
                return one.pop();
            }
            if !self.wait_readable().await {
                return None;
            }
        }
    }

    /// Closes the queue: pushes fail, waiting pushers and the consumer
    /// wake. Items already queued stay for [`Self::drain_into`].
    pub fn close(&self) {
        self.lock().closed = true;
        self.readable.notify_waiters();
        self.readable.notify_one();
        self.writable.notify_waiters();
    }

    /// Whether [`Self::close`] was called (and not undone by reopen).
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Reopens a closed queue.
    pub fn reopen(&self) {
        self.lock().closed = false;
    }

    /// Removes every queued item, returning how many there were.
    pub fn clear(&self) -> usize {
        let n = {
            let mut l = self.lock();
            let n = l.control.len() + l.data.len();
            l.control.clear();
            l.data.clear();
            l.control_bytes = 0;
            l.data_bytes = 0;
            n
        };
        self.writable.notify_waiters();
        n
    }

    /// Bytes queued (both lanes).
    pub fn queued_bytes(&self) -> usize {
        let l = self.lock();
        l.control_bytes + l.data_bytes
    }

    /// Items queued (both lanes).
    pub fn len(&self) -> usize {
        let l = self.lock();
        l.control.len() + l.data.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    impl ByteSized for Vec<u8> {
        fn byte_len(&self) -> usize {
            self.len()
        }
    }

    #[test]
    fn bounds_and_lanes() {
        let q: ByteQueue<Vec<u8>> = ByteQueue::new(10, 4);
        assert!(q.try_push(vec![0; 8], false).is_ok());
        assert_eq!(q.try_push(vec![1; 3], false), Err(Pushed::Full(vec![1; 3])));
        assert!(q.try_push(vec![2; 4], true).is_ok());
        assert!(q.try_push(vec![3; 1], true).is_err());
        let mut out = Vec::new();
        q.drain_into(&mut out, usize::MAX);
        assert_eq!(out, vec![vec![2; 4], vec![0; 8]], "control first");
        // An item larger than the cap passes into an empty lane.
        assert!(q.try_push(vec![0; 100], false).is_ok());
        q.close();
        assert!(matches!(q.try_push(vec![0], false), Err(Pushed::Closed(_))));
    }

    #[tokio::test]
    async fn push_waits_for_room() {
        let q: Arc<ByteQueue<Vec<u8>>> = Arc::new(ByteQueue::new(4, 4));
        q.try_push(vec![0; 4], false).expect("room");
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.push(vec![1; 4], false).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        let mut out = Vec::new();
        q.drain_into(&mut out, 4);
        waiter.await.expect("join").expect("pushed");
        assert_eq!(q.pop().await, Some(vec![1; 4]));
        q.close();
        assert_eq!(q.pop().await, None);
    }
}
