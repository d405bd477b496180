//! The process group handle.

use weft_proto::Pid;

use crate::messaging::GroupPublishReport;
use crate::messaging::mailbox::GroupMonitor;
use crate::messaging::message::{Message, MessageError};
use crate::node::Node;

/// Process groups of a node (Erlang `pg` semantics, `node.groups()`):
/// join and leave local mailboxes, read the cluster-wide membership,
/// monitor it, publish to it.
#[derive(Clone)]
pub struct Groups {
    pub(crate) node: Node,
}

impl Groups {
    /// Adds the local mailbox `pid` to `group` (idempotent).
    pub fn join(&self, group: &str, pid: &Pid) -> Result<(), MessageError> {
        self.node.inner.messaging.join(group, pid)
    }

    /// Removes the local mailbox `pid` from `group` (idempotent).
    pub fn leave(&self, group: &str, pid: &Pid) -> Result<(), MessageError> {
        self.node.inner.messaging.leave(group, pid)
    }

    /// Every member of `group` on every live node, sorted.
    pub fn members(&self, group: &str) -> Vec<Pid> {
        self.node.inner.directory.members(group)
    }

    /// The members of `group` on this node.
    pub fn local_members(&self, group: &str) -> Vec<Pid> {
        self.node.inner.messaging.local_members(group)
    }

    /// Every group with its member count.
    pub fn list(&self) -> Vec<(String, usize)> {
        self.node.inner.directory.group_names()
    }

    /// The current members of `group` and a stream of its later joins and
    /// leaves (no change is missed between the two).
    pub fn monitor(&self, group: &str) -> GroupMonitor {
        let (initial, rx) = self.node.inner.directory.monitor(group);
        GroupMonitor::new(group.to_string(), initial, rx)
    }

    /// Delivers `msg` to every member of `group`: local members directly,
    /// and one frame to each other node that has members, which fans out
    /// locally.
    pub async fn publish(&self, group: &str, msg: Message) -> Result<GroupPublishReport, MessageError> {
        self.node.inner.messaging.publish_group(None, group, msg).await
    }
}
