//! The directory: the cluster-wide view of names and group members, built
//! from registry events, with group monitors.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::RwLock;

use bytes::Bytes;
use tokio::sync::broadcast;
use weft_proto::registry::{EntryKey, Event, table};
use weft_proto::{NodeId, Pid};

use crate::registry::{RegistryObserver, Rejection};

/// A change in a process group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupEvent {
    /// `pid` joined `group`.
    Joined {
        /// The group.
        group: String,
        /// The member.
        pid: Pid,
    },
    /// `pid` left `group` (left, its mailbox was dropped, or its node went
    /// down).
    Left {
        /// The group.
        group: String,
        /// The member.
        pid: Pid,
    },
}

impl GroupEvent {
    /// The group this event is about.
    pub fn group(&self) -> &str {
        match self {
            GroupEvent::Joined { group, .. } | GroupEvent::Left { group, .. } => group,
        }
    }
}

#[derive(Default)]
struct State {
    groups: BTreeMap<String, BTreeSet<Pid>>,
    names: BTreeMap<String, BTreeSet<Pid>>,
}

/// Names and groups of the whole cluster, as this node sees them.
pub(crate) struct Directory {
    state: RwLock<State>,
    events: broadcast::Sender<GroupEvent>,
}

/// The registry key of a group membership.
pub(crate) fn group_key(group: &str, id: u64) -> EntryKey {
    EntryKey::new(table::GROUPS, format!("{group}\0{id}"))
}

fn decode_pid(origin: &NodeId, value: &Bytes) -> Result<Pid, Rejection> {
    let pid: Pid = postcard::from_bytes(value).map_err(|_| Rejection::UndecodableEntry)?;
    if pid.node != origin.name || pid.incarnation != origin.incarnation {
        return Err(Rejection::ForeignPid);
    }
    Ok(pid)
}

impl RegistryObserver for Directory {
    fn tables(&self) -> &'static [u16] {
        &[table::GROUPS, table::NAMES]
    }

    fn on_change(&self, change: &Event) -> Result<(), Rejection> {
        self.apply(change)
    }
}

impl Directory {
    pub(crate) fn new() -> Self {
        let (events, _) = broadcast::channel(4096);
        Self {
            state: RwLock::new(State::default()),
            events,
        }
    }

    /// Applies one registry event. Entries whose pid is not the owner's
    /// are refused (a node may only list its own mailboxes).
    fn apply(&self, event: &Event) -> Result<(), Rejection> {
        let (origin, key, value, added) = match event {
            Event::Put { origin, key, value } => (origin, key, value, true),
            Event::Removed { origin, key, value } => (origin, key, value, false),
        };
        match key.table {
            table::GROUPS => {
                let pid = decode_pid(origin, value)?;
                let group = key.key.split('\0').next().unwrap_or_default().to_string();
                let mut st = crate::sync::write(&self.state);
                let members = st.groups.entry(group.clone()).or_default();
                let changed = if added {
                    members.insert(pid.clone())
                } else {
                    members.remove(&pid)
                };
                if members.is_empty() {
                    st.groups.remove(&group);
                }
                if changed {
                    let ev = if added {
                        GroupEvent::Joined { group, pid }
                    } else {
                        GroupEvent::Left { group, pid }
                    };
                    // Sent under the lock: a monitor that subscribes and
                    // then reads the members sees each change exactly once.
                    let _ = self.events.send(ev);
                }
                Ok(())
            }
            table::NAMES => {
                let pid = decode_pid(origin, value)?;
                let mut st = crate::sync::write(&self.state);
                let pids = st.names.entry(key.key.clone()).or_default();
                if added {
                    pids.insert(pid);
                } else {
                    pids.remove(&pid);
                }
                if pids.is_empty() {
                    st.names.remove(&key.key);
                }
                Ok(())
            }
            // Tables of later layers or newer nodes: kept by the registry,
            // not indexed here.
            _ => Ok(()),
        }
    }

    pub(crate) fn members(&self, group: &str) -> Vec<Pid> {
        let st = crate::sync::read(&self.state);
        st.groups
            .get(group)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn group_names(&self) -> Vec<(String, usize)> {
        let st = crate::sync::read(&self.state);
        st.groups.iter().map(|(g, m)| (g.clone(), m.len())).collect()
    }

    pub(crate) fn whereis(&self, name: &str) -> Vec<Pid> {
        let st = crate::sync::read(&self.state);
        st.names
            .get(name)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether a mailbox registered as `name` on `node` is known.
    pub(crate) fn has_name_on(&self, name: &str, node: &str) -> bool {
        let st = crate::sync::read(&self.state);
        st.names
            .get(name)
            .is_some_and(|s| s.iter().any(|p| p.node == node))
    }

    /// Subscribes to group events, then reads the current members, so no
    /// change falls between the two.
    pub(crate) fn monitor(&self, group: &str) -> (Vec<Pid>, broadcast::Receiver<GroupEvent>) {
        let st = crate::sync::read(&self.state);
        let rx = self.events.subscribe();
        let members = st
            .groups
            .get(group)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        (members, rx)
    }
}
