//! Cluster-wide mailbox identifiers.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::node_id::NodeId;

/// A mailbox address valid across the cluster: the node, the node's
/// incarnation, and the mailbox's local id on that run.
///
/// A pid names one mailbox of one process run: after a restart (new
/// incarnation) every old pid is stale and sends to it fail with "no such
/// mailbox". Local ids are never reused within a run.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pid {
    /// Node name.
    pub node: String,
    /// Node incarnation.
    pub incarnation: u64,
    /// Mailbox id, unique within the run.
    pub id: u64,
}

impl Pid {
    /// The node identity this pid lives on.
    pub fn node_id(&self) -> NodeId {
        NodeId::new(self.node.clone(), self.incarnation)
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}#{}.{}>", self.node, self.incarnation, self.id)
    }
}
