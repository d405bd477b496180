//! Interest barriers: how far each peer has applied this node's registry
//! entries, from the [`RegistryAck`]s it sends back.
//!
//! A node that applied a delta or snapshot of origin X (or found X's
//! digest in sync with its view) acknowledges X's version to X. X keeps,
//! per peer incarnation, the highest version acknowledged; a change X made
//! at version `v` is applied on a peer once the peer acknowledged `v` or
//! more. [`AckTracker::unconfirmed`] names the peers of a given set (the
//! driver passes the members that are up) that have not yet.
//!
//! An acknowledgement is forgotten when the peer's link goes down or the
//! peer is declared down: a new link starts with a snapshot, which the
//! peer acknowledges again, and a view purged by the peer must not count.

use std::collections::HashMap;

use crate::frame::RegistryAck;
use crate::node_id::NodeId;

/// Why an acknowledgement was refused. The driver counts each reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AckReject {
    /// The acknowledgement is for another incarnation of this node (a
    /// previous run): it says nothing about the current entries.
    #[error("{peer} acknowledged incarnation {got}, ours is {ours}")]
    OtherIncarnation {
        /// The sender.
        peer: NodeId,
        /// The incarnation acknowledged.
        got: u64,
        /// Ours.
        ours: u64,
    },
    /// The acknowledged version is beyond any version this node sent: a
    /// faulty peer. Counting it could release a barrier early.
    #[error("{peer} acknowledged version {got}, ours is only {current}")]
    AheadOfUs {
        /// The sender.
        peer: NodeId,
        /// The version acknowledged.
        got: u64,
        /// Our version.
        current: u64,
    },
}

impl AckReject {
    /// A short static label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            AckReject::OtherIncarnation { .. } => "ack_other_incarnation",
            AckReject::AheadOfUs { .. } => "ack_ahead",
        }
    }
}

/// Per-peer acknowledged versions of this node's registry. See the module
/// documentation.
#[derive(Debug)]
pub struct AckTracker {
    incarnation: u64,
    /// By peer name: (peer incarnation, highest version acknowledged).
    acked: HashMap<String, (u64, u64)>,
}

impl AckTracker {
    /// A tracker for the local node of incarnation `incarnation`.
    pub fn new(incarnation: u64) -> Self {
        Self {
            incarnation,
            acked: HashMap::new(),
        }
    }

    /// Takes `ack` from the authenticated peer `from`; `current` is our
    /// registry version. Returns whether the peer's acknowledged version
    /// went up (waiters should look again). An acknowledgement from an
    /// older incarnation of a peer than the one recorded is ignored; one
    /// from a newer incarnation replaces the record.
    pub fn on_ack(&mut self, from: &NodeId, ack: RegistryAck, current: u64) -> Result<bool, AckReject> {
        if ack.incarnation != self.incarnation {
            return Err(AckReject::OtherIncarnation {
                peer: from.clone(),
                got: ack.incarnation,
                ours: self.incarnation,
            });
        }
        if ack.version > current {
            return Err(AckReject::AheadOfUs {
                peer: from.clone(),
                got: ack.version,
                current,
            });
        }
        match self.acked.get_mut(&from.name) {
            Some(slot) if slot.0 > from.incarnation => Ok(false),
            Some(slot) if slot.0 == from.incarnation => {
                let advanced = ack.version > slot.1;
                slot.1 = slot.1.max(ack.version);
                Ok(advanced)
            }
            // First record of this incarnation (version 0 included: an
            // empty registry is a real acknowledgement).
            _ => {
                self.acked
                    .insert(from.name.clone(), (from.incarnation, ack.version));
                Ok(true)
            }
        }
    }

    /// Forgets what `peer` (this incarnation or an older one) acknowledged.
    pub fn forget(&mut self, peer: &NodeId) {
        if self
            .acked
            .get(&peer.name)
            .is_some_and(|(inc, _)| *inc <= peer.incarnation)
        {
            self.acked.remove(&peer.name);
        }
    }

    /// The highest version `peer` (exactly this incarnation) acknowledged.
    pub fn acked(&self, peer: &NodeId) -> Option<u64> {
        match self.acked.get(&peer.name) {
            Some((inc, v)) if *inc == peer.incarnation => Some(*v),
            _ => None,
        }
    }

    /// The names of the peers in `peers` that have not acknowledged
    /// `target` (or later), in the order given.
    pub fn unconfirmed<'a>(&self, target: u64, peers: impl IntoIterator<Item = &'a NodeId>) -> Vec<String> {
        peers
            .into_iter()
            .filter(|p| self.acked(p).is_none_or(|v| v < target))
            .map(|p| p.name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(incarnation: u64, version: u64) -> RegistryAck {
        RegistryAck { incarnation, version }
    }

    #[test]
    fn confirms_per_peer_incarnation() {
        let mut t = AckTracker::new(5);
        let b1 = NodeId::new("b", 1);
        let b2 = NodeId::new("b", 2);
        let c = NodeId::new("c", 1);
        assert_eq!(t.unconfirmed(0, [&b1, &c]), vec!["b", "c"], "no ack yet");
        assert_eq!(t.on_ack(&b1, ack(5, 3), 4), Ok(true));
        assert_eq!(
            t.on_ack(&b1, ack(5, 2), 4),
            Ok(false),
            "an older ack changes nothing"
        );
        assert_eq!(t.acked(&b1), Some(3));
        assert_eq!(t.unconfirmed(3, [&b1, &c]), vec!["c"]);
        assert_eq!(t.unconfirmed(4, [&b1, &c]), vec!["b", "c"]);
        // The restarted b has acknowledged nothing yet.
        assert_eq!(t.unconfirmed(1, [&b2]), vec!["b"]);
        assert_eq!(t.on_ack(&b2, ack(5, 1), 4), Ok(true));
        assert_eq!(t.acked(&b1), None);
        assert_eq!(t.on_ack(&b1, ack(5, 4), 4), Ok(false), "the old run is ignored");
        assert_eq!(t.acked(&b2), Some(1));
    }

    #[test]
    fn zero_is_an_acknowledgement() {
        let mut t = AckTracker::new(1);
        let b = NodeId::new("b", 1);
        assert_eq!(t.on_ack(&b, ack(1, 0), 0), Ok(true));
        assert!(t.unconfirmed(0, [&b]).is_empty());
    }

    #[test]
    fn refuses_other_incarnations_and_versions_never_sent() {
        let mut t = AckTracker::new(7);
        let b = NodeId::new("b", 1);
        assert_eq!(
            t.on_ack(&b, ack(6, 1), 9).map_err(|e| e.label()),
            Err("ack_other_incarnation")
        );
        assert_eq!(
            t.on_ack(&b, ack(7, 10), 9).map_err(|e| e.label()),
            Err("ack_ahead")
        );
        assert_eq!(t.acked(&b), None);
    }

    #[test]
    fn forget_drops_this_and_older_incarnations_only() {
        let mut t = AckTracker::new(1);
        let b1 = NodeId::new("b", 1);
        let b2 = NodeId::new("b", 2);
        t.on_ack(&b2, ack(1, 2), 2).expect("ack");
        t.forget(&b1);
        assert_eq!(t.acked(&b2), Some(2), "an older incarnation's link going down");
        t.forget(&b2);
        assert_eq!(t.acked(&b2), None);
    }
}
