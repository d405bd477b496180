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

    /// How many messages the item stands for, in counts of what a queue
    /// discarded (1 unless an item batches several).
    fn messages(&self) -> usize {
        1
    }
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
    /// Consumers registered on `readable` (found the queue empty).
    pop_waiters: usize,
    /// Producers registered on `writable` (found their lane full).
    push_waiters: usize,
}

impl<T: ByteSized> Lanes<T> {
    /// Whether an item of `len` bytes fits its lane under `cap` (an empty
    /// lane takes any one item, so an oversized item is never stuck).
    fn has_room(&self, control: bool, len: usize, cap: usize) -> bool {
        let bytes = if control {
            self.control_bytes
        } else {
            self.data_bytes
        };
        bytes == 0 || bytes + len <= cap
    }

    /// Appends `item` (of `len` bytes) to its lane.
    fn append(&mut self, item: T, len: usize, control: bool) {
        if control {
            self.control_bytes += len;
            self.control.push_back(item);
        } else {
            self.data_bytes += len;
            self.data.push_back(item);
        }
    }

    fn is_empty(&self) -> bool {
        self.control.is_empty() && self.data.is_empty()
    }

    fn pop_one(&mut self) -> Option<T> {
        if let Some(item) = self.control.pop_front() {
            self.control_bytes -= item.byte_len();
            return Some(item);
        }
        let item = self.data.pop_front()?;
        self.data_bytes -= item.byte_len();
        Some(item)
    }
}

/// A two-lane queue bounded by bytes. Many producers, one consumer (more
/// consumers work, each item going to one of them).
///
/// Wake-ups are counted, not sent per item: a producer wakes a consumer
/// only when it fills an empty queue that a consumer waits on, and a
/// consumer wakes producers only when one waits for room. Both sides
/// register (enable their `Notified`, then count themselves under the
/// lock) before they look at the queue, so no wake-up is missed.
pub struct ByteQueue<T> {
    lanes: Mutex<Lanes<T>>,
    data_cap: usize,
    control_cap: usize,
    readable: Notify,
    writable: Notify,
}

/// Which waiter count a [`Waiting`] guard holds.
#[derive(Clone, Copy)]
enum Side {
    Pop,
    Push,
}

/// Keeps a waiter counted while its future lives (also when it is
/// dropped mid-wait, e.g. by a `select!`).
struct Waiting<'a, T: ByteSized> {
    queue: &'a ByteQueue<T>,
    side: Side,
    counted: bool,
}

impl<T: ByteSized> Waiting<'_, T> {
    fn count(&mut self, l: &mut Lanes<T>) {
        if !self.counted {
            self.counted = true;
            match self.side {
                Side::Pop => l.pop_waiters += 1,
                Side::Push => l.push_waiters += 1,
            }
        }
    }
}

impl<T: ByteSized> Drop for Waiting<'_, T> {
    fn drop(&mut self) {
        if self.counted {
            let mut l = self.queue.lock();
            match self.side {
                Side::Pop => l.pop_waiters -= 1,
                Side::Push => l.push_waiters -= 1,
            }
        }
    }
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
                pop_waiters: 0,
                push_waiters: 0,
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
        crate::sync::lock(&self.lanes)
    }

    /// Queues `item` if there is room, without waiting.
    pub fn try_push(&self, item: T, control: bool) -> Result<(), Pushed<T>> {
        self.try_push_counted(item, control, None)
    }

    /// [`Self::try_push`]; on `Full`, counts `waiting` as a producer
    /// waiting for room (under the same lock, so no wake-up is missed).
    fn try_push_counted(
        &self,
        item: T,
        control: bool,
        waiting: Option<&mut Waiting<'_, T>>,
    ) -> Result<(), Pushed<T>> {
        let len = item.byte_len();
        let wake = {
            let mut l = self.lock();
            if l.closed {
                return Err(Pushed::Closed(item));
            }
            // Wake a consumer only on the empty → non-empty edge, and only
            // if one waits: a consumer that finds items does not wait, and
            // one that took some but not all comes back without waiting.
            let wake = l.pop_waiters > 0 && l.is_empty();
            let cap = if control { self.control_cap } else { self.data_cap };
            if !l.has_room(control, len, cap) {
                if let Some(w) = waiting {
                    w.count(&mut l);
                }
                return Err(Pushed::Full(item));
            }
            l.append(item, len, control);
            wake
        };
        if wake {
            self.readable.notify_one();
        }
        Ok(())
    }

    /// Queues `item`, waiting for room. Fails only when the queue closes.
    pub async fn push(&self, mut item: T, control: bool) -> Result<(), T> {
        // Fast path: room now, so no waiter is registered at all.
        match self.try_push(item, control) {
            Ok(()) => return Ok(()),
            Err(Pushed::Closed(back)) => return Err(back),
            Err(Pushed::Full(back)) => item = back,
        }
        let mut waiting = Waiting {
            queue: self,
            side: Side::Push,
            counted: false,
        };
        loop {
            let room = self.writable.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.try_push_counted(item, control, Some(&mut waiting)) {
                Ok(()) => return Ok(()),
                Err(Pushed::Closed(back)) => return Err(back),
                Err(Pushed::Full(back)) => item = back,
            }
            room.await;
        }
    }

    /// Queues as many items of `items` as fit, in order, under one lock;
    /// returns whether all were taken. On `Full`, counts `waiting` as a
    /// producer waiting for room (under the same lock).
    fn try_push_many(
        &self,
        items: &mut std::iter::Peekable<std::vec::IntoIter<T>>,
        control: bool,
        waiting: Option<&mut Waiting<'_, T>>,
    ) -> Result<bool, ()> {
        let wake = {
            let mut l = self.lock();
            if l.closed {
                return Err(());
            }
            let wake = l.pop_waiters > 0 && l.is_empty();
            let cap = if control { self.control_cap } else { self.data_cap };
            let mut pushed = false;
            while let Some(item) = items.peek() {
                let len = item.byte_len();
                if !l.has_room(control, len, cap) {
                    break;
                }
                let Some(item) = items.next() else { break };
                pushed = true;
                l.append(item, len, control);
            }
            if items.peek().is_some()
                && let Some(w) = waiting
            {
                w.count(&mut l);
            }
            wake && pushed
        };
        if wake {
            self.readable.notify_one();
        }
        Ok(items.peek().is_none())
    }

    /// Queues every item of `items` in order, with one lock while there is
    /// room, waiting for room as needed. Fails only when the queue closes,
    /// handing back the items not queued.
    pub async fn push_many(&self, items: Vec<T>, control: bool) -> Result<(), Vec<T>> {
        let mut items = items.into_iter().peekable();
        // Fast path: everything fits now, so no waiter is registered.
        match self.try_push_many(&mut items, control, None) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(()) => return Err(items.collect()),
        }
        let mut waiting = Waiting {
            queue: self,
            side: Side::Push,
            counted: false,
        };
        loop {
            let room = self.writable.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.try_push_many(&mut items, control, Some(&mut waiting)) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(()) => return Err(items.collect()),
            }
            room.await;
        }
    }

    /// Wakes whoever an item removal concerns: producers waiting for room
    /// and, if items remain, another waiting consumer.
    fn after_take(&self, push_waiters: bool, more_for_others: bool) {
        if push_waiters {
            self.writable.notify_waiters();
        }
        if more_for_others {
            self.readable.notify_one();
        }
    }

    /// Moves up to `max_bytes` of items (at least one if any) into `out`,
    /// control items first. Returns the bytes taken.
    pub fn drain_into(&self, out: &mut Vec<T>, max_bytes: usize) -> usize {
        let mut taken = 0;
        let before = out.len();
        let (push_waiters, more_for_others) = {
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
            let took = out.len() > before;
            (
                took && l.push_waiters > 0,
                took && l.pop_waiters > 0 && !l.is_empty(),
            )
        };
        self.after_take(push_waiters, more_for_others);
        taken
    }

    /// Takes one item without waiting (control first).
    pub fn try_pop(&self) -> Option<T> {
        let (item, push_waiters, more_for_others) = {
            let mut l = self.lock();
            let item = l.pop_one();
            let took = item.is_some();
            let wake = (
                took && l.push_waiters > 0,
                took && l.pop_waiters > 0 && !l.is_empty(),
            );
            (item, wake.0, wake.1)
        };
        self.after_take(push_waiters, more_for_others);
        item
    }

    /// Waits until an item is queued or the queue is closed. Returns false
    /// once closed and empty.
    pub async fn wait_readable(&self) -> bool {
        let mut waiting = Waiting {
            queue: self,
            side: Side::Pop,
            counted: false,
        };
        loop {
            let ready = self.readable.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            let done = {
                let mut l = self.lock();
                if !l.is_empty() {
                    Some(true)
                } else if l.closed {
                    Some(false)
                } else {
                    waiting.count(&mut l);
                    None
                }
            };
            // The lock is released here, before `waiting` (which locks to
            // uncount itself) is dropped.
            if let Some(readable) = done {
                return readable;
            }
            ready.await;
        }
    }

    /// Takes one item, waiting for it; `None` once closed and empty.
    pub async fn pop(&self) -> Option<T> {
        loop {
            if let Some(item) = self.try_pop() {
                return Some(item);
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

    /// Removes and returns every queued item, control lane first.
    pub fn take_all(&self) -> Vec<T> {
        let (items, push_waiters) = {
            let mut l = self.lock();
            let mut items: Vec<T> = l.control.drain(..).collect();
            items.extend(l.data.drain(..));
            l.control_bytes = 0;
            l.data_bytes = 0;
            (items, l.push_waiters > 0)
        };
        if push_waiters {
            self.writable.notify_waiters();
        }
        items
    }

    /// Removes every queued item, returning how many messages they stood
    /// for ([`ByteSized::messages`]).
    pub fn clear(&self) -> usize {
        let (n, push_waiters) = {
            let mut l = self.lock();
            let n = l
                .control
                .iter()
                .chain(l.data.iter())
                .map(ByteSized::messages)
                .sum();
            l.control.clear();
            l.data.clear();
            l.control_bytes = 0;
            l.data_bytes = 0;
            (n, l.push_waiters > 0)
        };
        if push_waiters {
            self.writable.notify_waiters();
        }
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
    async fn a_second_consumer_is_woken_for_what_the_first_left() {
        let q: Arc<ByteQueue<Vec<u8>>> = Arc::new(ByteQueue::new(1024, 0));
        let first = {
            let q = q.clone();
            tokio::spawn(async move { q.pop().await })
        };
        let second = {
            let q = q.clone();
            tokio::spawn(async move { q.pop().await })
        };
        // Both wait on the empty queue.
        while q.lock().pop_waiters < 2 {
            tokio::task::yield_now().await;
        }
        q.try_push(vec![1], false).expect("room");
        q.try_push(vec![2], false).expect("room");
        let limit = std::time::Duration::from_secs(10);
        let mut got = vec![
            tokio::time::timeout(limit, first)
                .await
                .expect("first consumer woken")
                .expect("join")
                .expect("item"),
            tokio::time::timeout(limit, second)
                .await
                .expect("second consumer woken")
                .expect("join")
                .expect("item"),
        ];
        got.sort();
        assert_eq!(got, vec![vec![1], vec![2]]);
        assert_eq!(q.lock().pop_waiters, 0);
    }

    #[tokio::test]
    async fn cancelled_waiters_are_uncounted() {
        let q: Arc<ByteQueue<Vec<u8>>> = Arc::new(ByteQueue::new(4, 4));
        q.try_push(vec![0; 4], false).expect("room");
        let q2 = q.clone();
        let pusher = tokio::spawn(async move { q2.push(vec![1; 4], false).await });
        while q.lock().push_waiters < 1 {
            tokio::task::yield_now().await;
        }
        pusher.abort();
        let _ = pusher.await;
        assert_eq!(q.lock().push_waiters, 0);
        let empty: Arc<ByteQueue<Vec<u8>>> = Arc::new(ByteQueue::new(4, 4));
        let e2 = empty.clone();
        let popper = tokio::spawn(async move { e2.pop().await });
        while empty.lock().pop_waiters < 1 {
            tokio::task::yield_now().await;
        }
        popper.abort();
        let _ = popper.await;
        assert_eq!(empty.lock().pop_waiters, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_producers_and_consumers_lose_nothing() {
        const PRODUCERS: u8 = 4;
        const EACH: u32 = 5_000;
        let q: Arc<ByteQueue<Vec<u8>>> = Arc::new(ByteQueue::new(64, 0));
        let mut producers = Vec::new();
        for p in 0..PRODUCERS {
            let q = q.clone();
            producers.push(tokio::spawn(async move {
                for i in 0..EACH {
                    let mut item = vec![p];
                    item.extend_from_slice(&i.to_be_bytes());
                    q.push(item, false).await.expect("open");
                }
            }));
        }
        let mut consumers = Vec::new();
        for _ in 0..3 {
            let q = q.clone();
            consumers.push(tokio::spawn(async move {
                // Per producer, the items one consumer sees are in order.
                let mut last = [None::<u32>; PRODUCERS as usize];
                let mut n = 0u32;
                while let Some(item) = q.pop().await {
                    let seq = u32::from_be_bytes([item[1], item[2], item[3], item[4]]);
                    let slot = &mut last[usize::from(item[0])];
                    assert!(slot.is_none_or(|l| l < seq), "out of order");
                    *slot = Some(seq);
                    n += 1;
                }
                n
            }));
        }
        for p in producers {
            p.await.expect("producer");
        }
        while !q.is_empty() {
            tokio::task::yield_now().await;
        }
        q.close();
        let mut total = 0;
        for c in consumers {
            total += c.await.expect("consumer");
        }
        assert_eq!(total, u32::from(PRODUCERS) * EACH);
    }

    #[tokio::test]
    async fn push_many_keeps_order_and_waits_for_room() {
        let q: Arc<ByteQueue<Vec<u8>>> = Arc::new(ByteQueue::new(4, 4));
        q.push_many(vec![vec![1; 2], vec![2; 2]], false)
            .await
            .expect("room");
        let q2 = q.clone();
        let waiter = tokio::spawn(async move {
            q2.push_many(vec![vec![3; 2], vec![4; 3], vec![5; 1]], false)
                .await
        });
        let mut got = Vec::new();
        while got.len() < 5 {
            let Some(item) = q.pop().await else { break };
            got.push(item);
        }
        waiter.await.expect("join").expect("pushed");
        assert_eq!(
            got,
            vec![vec![1; 2], vec![2; 2], vec![3; 2], vec![4; 3], vec![5; 1]]
        );
        assert_eq!(q.lock().push_waiters, 0);
        q.try_push(vec![0; 4], false).expect("room");
        let q3 = q.clone();
        let blocked = tokio::spawn(async move { q3.push_many(vec![vec![6; 1], vec![7; 1]], false).await });
        while q.lock().push_waiters < 1 {
            tokio::task::yield_now().await;
        }
        q.close();
        assert_eq!(blocked.await.expect("join"), Err(vec![vec![6; 1], vec![7; 1]]));
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
