//! The membership handle: who is in the cluster, links to them, events.

use crate::api::Events;
use crate::link::{LinkEvent, LinkInfo};
use crate::membership::{MemberInfo, MemberState, MembershipEvent};
use crate::node::Node;

/// Membership and links of a node (`node.membership()`): the members,
/// their changes as a `Stream`, the state of each peer link.
#[derive(Clone)]
pub struct Membership {
    pub(crate) node: Node,
}

impl Membership {
    /// Every known member, this node first (always `up`), then the others
    /// sorted by name. Down members stay listed until foca forgets them
    /// (`remove_down_after`).
    pub fn members(&self) -> Vec<MemberInfo> {
        let inner = &self.node.inner;
        let mut out = vec![MemberInfo {
            name: inner.id.name.clone(),
            incarnation: inner.id.incarnation,
            addr: inner.addr,
            state: MemberState::Up,
        }];
        let table = crate::sync::read(&inner.membership.table);
        out.extend(table.list());
        out
    }

    /// One member by name (this node included).
    pub fn member(&self, name: &str) -> Option<MemberInfo> {
        self.members().into_iter().find(|m| m.name == name)
    }

    /// Membership changes from now on, as a `Stream`. Bounded (4096): a
    /// consumer that falls behind gets [`crate::Lagged`] and should
    /// re-read [`Membership::members`].
    pub fn events(&self) -> Events<MembershipEvent> {
        Events::from_broadcast(self.node.inner.membership.events.subscribe())
    }

    /// Link up/down events from now on, as a `Stream` (bounded like
    /// [`Membership::events`]).
    pub fn link_events(&self) -> Events<LinkEvent> {
        Events::from_broadcast(self.node.inner.links.events())
    }

    /// The state of every peer link.
    pub fn links(&self) -> Vec<LinkInfo> {
        self.node.inner.links.infos()
    }

    /// Whether a link to `peer` is established.
    pub fn is_linked(&self, peer: &str) -> bool {
        self.node.inner.links.is_connected(peer)
    }
}
