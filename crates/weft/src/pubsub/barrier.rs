//! Interest barriers: wait until every node that is up has applied this
//! node's interest changes up to a point.
//!
//! Each interest change is a registry change at some version of this
//! node's registry; peers acknowledge the versions they applied (frame
//! `REGISTRY_ACK`), after feeding the change to their pub/sub. A barrier
//! for version `v` resolves once every peer that is up has acknowledged
//! `v` or later: every member membership reports up or suspect, and every
//! peer with an established link that membership has not declared down
//! (membership may learn of a new node after its link came up). A peer
//! that goes down meanwhile stops counting; one that is up but not linked
//! yet is waited for. All of it is bounded by a timeout.

use std::sync::Arc;
use std::time::Duration;

use crate::registry::RegistryService;

/// Why an interest barrier did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BarrierError {
    /// Some nodes that are up did not confirm within the timeout (slow,
    /// partitioned but not yet declared down, or too old to know
    /// `REGISTRY_ACK`). They may still apply the change later.
    #[error("interest not confirmed within {timeout:?} by {}", nodes.join(", "))]
    Timeout {
        /// The timeout that passed.
        timeout: Duration,
        /// The names of the nodes that had not confirmed, sorted.
        nodes: Vec<String>,
    },
}

/// A pending interest barrier: resolves (see [`InterestBarrier::wait`])
/// once every node that is up has applied this node's interest changes
/// made before the barrier was taken. Cheap; holds no lock.
///
/// Obtained from [`crate::Subscription::unsubscribe`] (the removal),
/// [`crate::PubSub::interest_barrier`] (every change so far), or implicitly
/// through [`crate::Subscription::ready`].
pub struct InterestBarrier {
    pub(crate) registry: Arc<RegistryService>,
    pub(crate) target: u64,
    pub(crate) timeout: Duration,
}

impl InterestBarrier {
    /// Waits at most `timeout` instead of the configured
    /// `pubsub.interest_barrier_timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Resolves when every node that is up (membership up or suspect) has
    /// applied the interest changes this barrier covers: from then on each
    /// of them forwards matching publishes to this node (a subscription),
    /// or no longer does (an unsubscription). Nodes that go down while it
    /// waits stop counting. Fails with [`BarrierError::Timeout`] naming the
    /// nodes that did not confirm in time.
    pub async fn wait(self) -> Result<(), BarrierError> {
        let timeout = self.timeout;
        self.registry
            .barrier(self.target, timeout)
            .await
            .map_err(|nodes| BarrierError::Timeout { timeout, nodes })
    }
}

impl std::fmt::Debug for InterestBarrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterestBarrier")
            .field("target", &self.target)
            .field("timeout", &self.timeout)
            .finish()
    }
}
