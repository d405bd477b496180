//! The member table: weft's view of membership, and the events that
//! describe its changes. Pure logic, fed with foca's member states.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Serialize;
use weft_proto::NodeId;

use super::identity::SwimId;

/// A member's state as weft reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Alive and answering probes.
    Up,
    /// Some member failed to reach it; it is still treated as up until
    /// declared down or cleared.
    Suspect,
    /// Declared down (failed, or left). Its state is purged cluster-wide.
    Down,
}

/// One member as seen by this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberInfo {
    /// Node name.
    pub name: String,
    /// Process incarnation.
    pub incarnation: u64,
    /// Cluster address.
    pub addr: SocketAddr,
    /// Current state.
    pub state: MemberState,
}

impl MemberInfo {
    /// The member's node identity.
    pub fn node(&self) -> NodeId {
        NodeId::new(self.name.clone(), self.incarnation)
    }
}

/// A change in membership. A restart shows as `MemberDown` of the old
/// incarnation followed by `MemberUp` of the new one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipEvent {
    /// A member (or a new incarnation of one) is up.
    MemberUp(MemberInfo),
    /// A member is suspected of having failed.
    MemberSuspect(MemberInfo),
    /// A suspected member refuted the suspicion.
    MemberAlive(MemberInfo),
    /// A member is down; everything it owned must be purged.
    MemberDown(MemberInfo),
}

/// weft's member table (other nodes only), keyed by name.
#[derive(Debug, Default)]
pub struct MemberTable {
    members: BTreeMap<String, MemberInfo>,
}

fn state_of(s: foca::State) -> MemberState {
    match s {
        foca::State::Alive => MemberState::Up,
        foca::State::Suspect => MemberState::Suspect,
        foca::State::Down => MemberState::Down,
    }
}

impl MemberTable {
    /// Every member, sorted by name.
    pub fn list(&self) -> Vec<MemberInfo> {
        self.members.values().cloned().collect()
    }

    /// One member by name.
    pub fn get(&self, name: &str) -> Option<&MemberInfo> {
        self.members.get(name)
    }

    /// Brings the table in line with foca's member states and returns the
    /// events that describe the change, in order. Entries named `local`
    /// are ignored (our own previous runs). `forget_down` removes down
    /// members that foca no longer lists.
    pub fn sync<'a>(
        &mut self,
        local: &str,
        swim: impl Iterator<Item = (&'a SwimId, foca::State)>,
    ) -> Vec<MembershipEvent> {
        // For each name keep the newest identity foca knows.
        let mut newest: BTreeMap<&str, (&SwimId, foca::State)> = BTreeMap::new();
        for (id, st) in swim {
            if id.name == local || id.name.is_empty() {
                continue;
            }
            let keep = match newest.get(id.name.as_str()) {
                Some((cur, _)) => (id.incarnation, id.bump) > (cur.incarnation, cur.bump),
                None => true,
            };
            if keep {
                newest.insert(id.name.as_str(), (id, st));
            }
        }
        let mut events = Vec::new();
        for (name, (id, st)) in &newest {
            let info = MemberInfo {
                name: (*name).to_string(),
                incarnation: id.incarnation,
                addr: id.addr,
                state: state_of(*st),
            };
            match self.members.get(*name) {
                None => {
                    if info.state != MemberState::Down {
                        events.push(MembershipEvent::MemberUp(MemberInfo {
                            state: MemberState::Up,
                            ..info.clone()
                        }));
                        if info.state == MemberState::Suspect {
                            events.push(MembershipEvent::MemberSuspect(info.clone()));
                        }
                        self.members.insert(info.name.clone(), info);
                    }
                }
                Some(old) if old.incarnation > info.incarnation => {}
                Some(old) if old.incarnation < info.incarnation => {
                    if old.state != MemberState::Down {
                        events.push(MembershipEvent::MemberDown(MemberInfo {
                            state: MemberState::Down,
                            ..old.clone()
                        }));
                    }
                    if info.state != MemberState::Down {
                        events.push(MembershipEvent::MemberUp(MemberInfo {
                            state: MemberState::Up,
                            ..info.clone()
                        }));
                    }
                    self.members.insert(info.name.clone(), info);
                }
                Some(old) => {
                    let ev = match (old.state, info.state) {
                        (a, b) if a == b => None,
                        (MemberState::Up, MemberState::Suspect) => {
                            Some(MembershipEvent::MemberSuspect(info.clone()))
                        }
                        (MemberState::Suspect, MemberState::Up) => {
                            Some(MembershipEvent::MemberAlive(info.clone()))
                        }
                        (MemberState::Down, _) => Some(MembershipEvent::MemberUp(MemberInfo {
                            state: MemberState::Up,
                            ..info.clone()
                        })),
                        (_, MemberState::Down) => Some(MembershipEvent::MemberDown(info.clone())),
                        _ => None,
                    };
                    events.extend(ev);
                    self.members.insert(info.name.clone(), info);
                }
            }
        }
        // Members foca forgot: down if they were not already, then gone.
        let gone: Vec<String> = self
            .members
            .keys()
            .filter(|n| !newest.contains_key(n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            if let Some(old) = self.members.remove(&name)
                && old.state != MemberState::Down
            {
                events.push(MembershipEvent::MemberDown(MemberInfo {
                    state: MemberState::Down,
                    ..old
                }));
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str, inc: u64, bump: u32) -> SwimId {
        SwimId {
            name: name.into(),
            incarnation: inc,
            addr: "127.0.0.1:1".parse().expect("addr"),
            bump,
        }
    }

    fn kinds(ev: &[MembershipEvent]) -> Vec<(&'static str, String, u64)> {
        ev.iter()
            .map(|e| match e {
                MembershipEvent::MemberUp(m) => ("up", m.name.clone(), m.incarnation),
                MembershipEvent::MemberSuspect(m) => ("suspect", m.name.clone(), m.incarnation),
                MembershipEvent::MemberAlive(m) => ("alive", m.name.clone(), m.incarnation),
                MembershipEvent::MemberDown(m) => ("down", m.name.clone(), m.incarnation),
            })
            .collect()
    }

    #[test]
    fn lifecycle() {
        use foca::State::*;
        let mut t = MemberTable::default();
        let a1 = id("a", 1, 0);
        let ev = t.sync("me", [(&a1, Alive), (&id("me", 9, 0), Alive)].into_iter());
        assert_eq!(kinds(&ev), vec![("up", "a".into(), 1)]);
        let ev = t.sync("me", [(&a1, Suspect)].into_iter());
        assert_eq!(kinds(&ev), vec![("suspect", "a".into(), 1)]);
        let ev = t.sync("me", [(&a1, Alive)].into_iter());
        assert_eq!(kinds(&ev), vec![("alive", "a".into(), 1)]);
        let ev = t.sync("me", [(&a1, Down)].into_iter());
        assert_eq!(kinds(&ev), vec![("down", "a".into(), 1)]);
        assert_eq!(t.get("a").map(|m| m.state), Some(MemberState::Down));
        // Wrongly declared down, rejoins with a bump: same incarnation, up.
        let a1b = id("a", 1, 1);
        let ev = t.sync("me", [(&a1, Down), (&a1b, Alive)].into_iter());
        assert_eq!(kinds(&ev), vec![("up", "a".into(), 1)]);
        // Restart: old incarnation down, new one up.
        let a2 = id("a", 2, 0);
        let ev = t.sync("me", [(&a1b, Alive), (&a2, Alive)].into_iter());
        assert_eq!(kinds(&ev), vec![("down", "a".into(), 1), ("up", "a".into(), 2)]);
        // A stale report of the old incarnation changes nothing.
        let ev = t.sync("me", [(&a1b, Alive), (&a2, Alive)].into_iter());
        assert!(ev.is_empty());
        // foca forgets it: reported down once.
        let ev = t.sync("me", std::iter::empty());
        assert_eq!(kinds(&ev), vec![("down", "a".into(), 2)]);
        assert!(t.list().is_empty());
    }
}
