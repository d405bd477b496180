//! weft's identity type for foca.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use weft_proto::NodeId;

/// What SWIM gossips about a member.
///
/// `incarnation` is the process run (a restart makes it larger, and peers
/// then forget everything about the old run). `bump` is foca's own renewal
/// counter: a node wrongly declared down rejoins with `bump + 1`, keeping
/// its incarnation, so its pids and state stay valid. foca identifies
/// "the same node" by address; on a conflict the larger
/// `(incarnation, bump)` wins.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SwimId {
    /// Node name.
    pub name: String,
    /// Process incarnation.
    pub incarnation: u64,
    /// Cluster address (TCP links and UDP membership).
    pub addr: SocketAddr,
    /// Rejoin counter within one incarnation.
    pub bump: u32,
}

impl SwimId {
    /// The node identity this SWIM identity belongs to.
    pub fn node(&self) -> NodeId {
        NodeId::new(self.name.clone(), self.incarnation)
    }

    /// A placeholder identity for announcing to a seed whose name is not
    /// known yet; foca accepts announces addressed to its address.
    pub fn seed(addr: SocketAddr) -> Self {
        Self {
            name: String::new(),
            incarnation: 0,
            addr,
            bump: 0,
        }
    }
}

impl foca::Identity for SwimId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            bump: self.bump.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.incarnation, self.bump) > (adversary.incarnation, adversary.bump)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    #[test]
    fn newer_incarnation_wins_then_bump() {
        let a = SwimId {
            name: "n".into(),
            incarnation: 1,
            addr: "127.0.0.1:1".parse().expect("addr"),
            bump: 5,
        };
        let restarted = SwimId {
            incarnation: 2,
            bump: 0,
            ..a.clone()
        };
        assert!(restarted.win_addr_conflict(&a));
        assert!(!a.win_addr_conflict(&restarted));
        let renewed = a.renew().expect("renews");
        assert!(renewed.win_addr_conflict(&a));
        assert_eq!(renewed.node(), a.node());
    }
}
