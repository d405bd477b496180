//! Turning an `async fn next` into `Stream::poll_next`.
//!
//! A receiver's queue is shared (`Arc`), so its wait can be an owned
//! future kept between polls. The future is only created when nothing is
//! queued; a ready item costs no allocation.

use std::future::Future;
use std::sync::Mutex;
use std::task::{Context, Poll};

use futures::future::BoxFuture;

/// The wait of a receiver's `poll_next` that is in flight, if any.
///
/// Behind a `Mutex` only so that the receiver stays `Sync` (it is shared
/// by reference across tasks); `poll` takes `&mut self` and never locks.
pub(crate) struct PendingNext<T> {
    wait: Mutex<Option<BoxFuture<'static, T>>>,
}

impl<T> Default for PendingNext<T> {
    fn default() -> Self {
        Self {
            wait: Mutex::new(None),
        }
    }
}

impl<T> PendingNext<T> {
    /// Polls the wait in flight, or `ready_now()` when none is, or a new
    /// wait made by `make` when `ready_now()` has nothing.
    pub(crate) fn poll<F>(
        &mut self,
        cx: &mut Context<'_>,
        ready_now: impl FnOnce() -> Option<T>,
        make: impl FnOnce() -> F,
    ) -> Poll<T>
    where
        F: Future<Output = T> + Send + 'static,
    {
        let slot = self.wait.get_mut().unwrap_or_else(|e| e.into_inner());
        if slot.is_none()
            && let Some(v) = ready_now()
        {
            return Poll::Ready(v);
        }
        let fut = slot.get_or_insert_with(|| Box::pin(make()));
        match fut.as_mut().poll(cx) {
            Poll::Ready(v) => {
                *slot = None;
                Poll::Ready(v)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
