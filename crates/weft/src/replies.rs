//! One table of requests waiting for their reply, shared by every
//! request/reply path: mailbox calls (messaging), node RPC and pub/sub
//! requests.
//!
//! A request takes a fresh id and a [`Waiting`] handle; whoever gets the
//! reply hands it over with [`Replies::complete`]; membership declaring a
//! node down fails every request waiting on that node
//! ([`Replies::fail_node`]). The entry leaves the table when the reply
//! arrives, the node fails, or the [`Waiting`] handle is dropped (timeout,
//! error or a cancelled caller): the table never keeps a request nobody
//! waits for.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::hash::LocalIdHasher;
use crate::sync::lock;

struct Entry<T> {
    /// The node the reply must come from; `None`: any (not failed by
    /// [`Replies::fail_node`]).
    node: Option<String>,
    tx: oneshot::Sender<T>,
}

/// Requests waiting for a reply of type `T`, by id.
pub(crate) struct Replies<T> {
    /// Ids are this node's own counter, never chosen by a peer: a cheap
    /// integer hash serves.
    waiting: Mutex<HashMap<u64, Entry<T>, BuildHasherDefault<LocalIdHasher>>>,
    next: AtomicU64,
}

/// Why [`Waiting::wait`] returned no reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WaitError {
    /// No reply within the timeout.
    #[error("no reply in time")]
    Timeout,
    /// The entry was dropped without a reply (its table went away).
    #[error("the request table was dropped")]
    Closed,
}

impl<T> Default for Replies<T> {
    fn default() -> Self {
        Self {
            waiting: Mutex::new(HashMap::default()),
            next: AtomicU64::new(1),
        }
    }
}

impl<T> Replies<T> {
    /// Registers a request to `node` (`None`: a reply may come from any
    /// node) under a fresh id (never 0, never reused).
    pub(crate) fn register(&self, node: Option<&str>) -> Waiting<'_, T> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(
            id,
            Entry {
                node: node.map(str::to_string),
                tx,
            },
        );
        Waiting { table: self, id, rx }
    }

    /// Hands `reply` to request `id`. Returns it back when nobody waits
    /// for `id` any more (a late or unknown reply: the caller counts it).
    pub(crate) fn complete(&self, id: u64, reply: T) -> Result<(), T> {
        // Removed under the lock, handed over after it.
        let entry = lock(&self.waiting).remove(&id);
        match entry {
            Some(e) => {
                // The waiter may have just given up: then nobody wants it.
                let _ = e.tx.send(reply);
                Ok(())
            }
            None => Err(reply),
        }
    }

    /// Fails every request waiting on `node` with `error()`. Returns how
    /// many failed.
    pub(crate) fn fail_node(&self, node: &str, error: impl Fn() -> T) -> usize {
        let failed: Vec<Entry<T>> = {
            let mut waiting = lock(&self.waiting);
            let ids: Vec<u64> = waiting
                .iter()
                .filter(|(_, e)| e.node.as_deref() == Some(node))
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter().filter_map(|id| waiting.remove(&id)).collect()
        };
        let n = failed.len();
        for e in failed {
            let _ = e.tx.send(error());
        }
        n
    }

    /// Number of requests waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.waiting).len()
    }

    fn forget(&self, id: u64) {
        lock(&self.waiting).remove(&id);
    }
}

/// One request waiting for its reply; leaves the table when dropped.
pub(crate) struct Waiting<'a, T> {
    table: &'a Replies<T>,
    id: u64,
    rx: oneshot::Receiver<T>,
}

impl<T> Waiting<'_, T> {
    /// The request's id, carried by the request and echoed by its reply.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The reply (or the node failure), `None` if the entry was dropped
    /// without one. Unbounded: the caller bounds it (see [`Self::wait`]).
    pub(crate) async fn recv(&mut self) -> Option<T> {
        (&mut self.rx).await.ok()
    }

    /// The reply, waiting at most `timeout`.
    pub(crate) async fn wait(&mut self, timeout: Duration) -> Result<T, WaitError> {
        match tokio::time::timeout(timeout, self.recv()).await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(WaitError::Closed),
            Err(_) => Err(WaitError::Timeout),
        }
    }
}

impl<T> Drop for Waiting<'_, T> {
    fn drop(&mut self) {
        self.table.forget(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reply_reaches_its_request_once() {
        let t: Replies<&str> = Replies::default();
        let mut a = t.register(Some("n1"));
        let b = t.register(Some("n1"));
        assert_ne!(a.id(), b.id());
        assert_ne!(a.id(), 0);
        assert_eq!(t.complete(a.id(), "hi"), Ok(()));
        assert_eq!(a.wait(Duration::from_secs(5)).await, Ok("hi"));
        // Answered: a second reply is late.
        assert_eq!(t.complete(a.id(), "again"), Err("again"));
        assert_eq!(t.len(), 1);
        drop(b);
        assert_eq!(t.len(), 0);
    }

    #[tokio::test]
    async fn unknown_ids_are_refused() {
        let t: Replies<u8> = Replies::default();
        assert_eq!(t.complete(42, 7), Err(7));
    }

    #[tokio::test]
    async fn a_timeout_removes_the_request() {
        let t: Replies<u8> = Replies::default();
        let id;
        {
            let mut w = t.register(None);
            id = w.id();
            assert_eq!(w.wait(Duration::from_millis(10)).await, Err(WaitError::Timeout));
        }
        assert_eq!(t.len(), 0);
        assert_eq!(t.complete(id, 1), Err(1));
    }

    #[tokio::test]
    async fn node_down_fails_only_that_nodes_requests() {
        let t: Replies<Result<u8, String>> = Replies::default();
        let mut on_n1 = t.register(Some("n1"));
        let mut also_n1 = t.register(Some("n1"));
        let on_n2 = t.register(Some("n2"));
        let anywhere = t.register(None);
        assert_eq!(t.fail_node("n1", || Err("n1 down".to_string())), 2);
        assert_eq!(on_n1.recv().await, Some(Err("n1 down".to_string())));
        assert_eq!(also_n1.recv().await, Some(Err("n1 down".to_string())));
        // The others still wait and still take their reply.
        assert_eq!(t.len(), 2);
        assert_eq!(t.complete(on_n2.id(), Ok(2)), Ok(()));
        assert_eq!(t.complete(anywhere.id(), Ok(3)), Ok(()));
        assert_eq!(t.fail_node("n1", || Err(String::new())), 0);
    }

    #[tokio::test]
    async fn a_cancelled_caller_leaves_no_entry() {
        let t: Replies<u8> = Replies::default();
        let fut = async {
            let mut w = t.register(Some("n1"));
            w.recv().await
        };
        // Polled once (registers), then dropped mid-wait.
        let mut fut = Box::pin(fut);
        assert!(futures::poll!(fut.as_mut()).is_pending());
        assert_eq!(t.len(), 1);
        drop(fut);
        assert_eq!(t.len(), 0);
    }
}
