//! The cluster registry: node-owned replicated entries, as a sans-IO state
//! machine.
//!
//! Every node is the sole authority for its own entries (names, group
//! members, subject interest, stream origins: each layer picks a `table`
//! number and encodes its keys and values). A node
//!
//! - sends a **delta** to every live peer when its entries change
//!   (`from_version → to_version`, a batch of puts and removes);
//! - sends a full **snapshot** to a peer whose link comes up (backfill);
//! - sends a **digest** (its version) to every live peer on each tick; a
//!   peer whose view is behind or from another incarnation asks for a
//!   snapshot (anti-entropy repairs a lost delta);
//! - **purges** a peer's entries when membership declares it down;
//! - **acknowledges** to the origin the version its view of the origin is
//!   at, after applying a delta or snapshot and on an in-sync digest
//!   ([`Output::Ack`]); the origin records the acknowledgements it gets
//!   ([`Registry::handle_ack`], [`crate::barrier::AckTracker`]). The ack
//!   is queued after the events of the change it confirms, so a driver
//!   that applies events in output order has applied them when it sends it.
//!
//! Entries for node X are accepted only when X itself sent them: the caller
//! passes the authenticated link peer, and a message whose `origin` differs
//! is refused ([`Reject::ForeignOrigin`]). A view never goes back to an
//! older incarnation ([`Reject::StaleIncarnation`]), so a restarted node's
//! previous entries never come back.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::barrier::{AckReject, AckTracker};
use crate::frame::RegistryAck;
use crate::node_id::NodeId;

/// Registry table numbers used by weft's layers. A node keeps and
/// replicates entries of tables it does not know (forward compatible).
pub mod table {
    /// Registered mailbox names: key = name, value = pid.
    pub const NAMES: u16 = 1;
    /// Process group members: key = group `\0` local id, value = pid.
    pub const GROUPS: u16 = 2;
    /// Subject interest: key = pattern `\0` queue group (empty for plain
    /// subscriptions), value = postcard `u32` local member count (1 for
    /// plain interest, which changes only on its 0→1 and 1→0 edges).
    pub const INTEREST: u16 = 3;
    /// Stream origins: key = stream key, value = postcard
    /// [`crate::relay::OriginAnnounce`].
    pub const ORIGINS: u16 = 4;
    /// Consensus identity: key `id`, value = postcard `u64` Raft node id.
    pub const RAFT: u16 = 5;
    /// Protocol features the node implements: key = feature name (see
    /// [`super::feature`]), value empty. Lets a node tell a peer too old
    /// for a feature from one that has not answered yet.
    pub const FEATURES: u16 = 6;
}

/// Feature names announced in table [`table::FEATURES`].
pub mod feature {
    /// The node acknowledges registry versions with `REGISTRY_ACK`
    /// frames (interest barriers).
    pub const REGISTRY_ACK: &str = "registry_ack";
}

/// Identifies one entry of one node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EntryKey {
    /// Which layer the entry belongs to (see [`table`]).
    pub table: u16,
    /// The layer's key.
    pub key: String,
}

impl EntryKey {
    /// A key in `table`.
    pub fn new(table: u16, key: impl Into<String>) -> Self {
        Self {
            table,
            key: key.into(),
        }
    }
}

/// One change in a delta.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Insert or replace an entry.
    Put(EntryKey, Vec<u8>),
    /// Remove an entry.
    Remove(EntryKey),
}

/// A registry message between two nodes. The origin is always the sending
/// node: nobody relays another node's entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// Changes from `from_version` to `to_version`.
    Delta {
        /// The node whose entries these are (must be the sender).
        origin: NodeId,
        /// The version the receiver must hold to apply the ops.
        from_version: u64,
        /// The version after the ops.
        to_version: u64,
        /// The changes, in order.
        ops: Vec<Op>,
    },
    /// All entries of `origin` at `version`.
    Snapshot {
        /// The node whose entries these are (must be the sender).
        origin: NodeId,
        /// The version of this state.
        version: u64,
        /// Every entry.
        entries: Vec<(EntryKey, Vec<u8>)>,
    },
    /// `origin` is at `version`; ask for a snapshot if you are not.
    Digest {
        /// The sender.
        origin: NodeId,
        /// Its current version.
        version: u64,
    },
    /// Please send me a snapshot of your entries.
    SnapshotRequest,
}

/// A change to the entries visible on this node (local or remote).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// An entry appeared or changed value.
    Put {
        /// The owning node.
        origin: NodeId,
        /// The entry.
        key: EntryKey,
        /// Its value.
        value: Bytes,
    },
    /// An entry disappeared (removed by its owner, or purged).
    Removed {
        /// The owning node.
        origin: NodeId,
        /// The entry.
        key: EntryKey,
        /// Its last value.
        value: Bytes,
    },
}

/// What the registry asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send `msg` to the peer named `to`.
    Send {
        /// Peer name.
        to: String,
        /// The message.
        msg: Msg,
    },
    /// Tell local observers.
    Event(Event),
    /// Send a `REGISTRY_ACK` frame to the peer named `to`: our view of its
    /// entries is at `ack.version`. Queued after the events of the change.
    Ack {
        /// Peer name (the origin of the acknowledged entries).
        to: String,
        /// What to acknowledge.
        ack: RegistryAck,
    },
}

/// Why an inbound message was refused. The driver counts each reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// The message carries entries of a node other than the sender.
    #[error("{sender} sent entries of {origin}")]
    ForeignOrigin {
        /// The authenticated sender.
        sender: NodeId,
        /// The origin it claimed.
        origin: NodeId,
    },
    /// The message comes from an incarnation older than the one known.
    #[error("stale incarnation {got} of {name} (known {known})")]
    StaleIncarnation {
        /// Node name.
        name: String,
        /// Incarnation in the message.
        got: u64,
        /// Incarnation already known.
        known: u64,
    },
    /// The sender is not a live peer (down, or link not up).
    #[error("{0} is not a live peer")]
    NotLive(NodeId),
}

impl Reject {
    /// A short static label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Reject::ForeignOrigin { .. } => "foreign_origin",
            Reject::StaleIncarnation { .. } => "stale_incarnation",
            Reject::NotLive(_) => "not_live",
        }
    }
}

#[derive(Debug, Default)]
struct View {
    incarnation: u64,
    version: u64,
    entries: BTreeMap<EntryKey, Bytes>,
}

/// The registry of one node. See the module documentation.
#[derive(Debug)]
pub struct Registry {
    local: NodeId,
    version: u64,
    mine: BTreeMap<EntryKey, Bytes>,
    pending: Vec<Op>,
    views: HashMap<String, View>,
    live: HashMap<String, u64>,
    acks: AckTracker,
    out: VecDeque<Output>,
}

impl Registry {
    /// An empty registry for the node `local`.
    pub fn new(local: NodeId) -> Self {
        Self {
            version: 0,
            mine: BTreeMap::new(),
            pending: Vec::new(),
            views: HashMap::new(),
            live: HashMap::new(),
            acks: AckTracker::new(local.incarnation),
            local,
            out: VecDeque::new(),
        }
    }

    /// This node's identity.
    pub fn local(&self) -> &NodeId {
        &self.local
    }

    /// The next output, if any. Drain after every input.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Our version (number of local change batches sent).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Sets one of our entries. The delta is sent on [`Self::flush`].
    pub fn put(&mut self, key: EntryKey, value: Bytes) {
        if self.mine.get(&key) == Some(&value) {
            return;
        }
        self.mine.insert(key.clone(), value.clone());
        self.pending.push(Op::Put(key.clone(), value.to_vec()));
        self.out.push_back(Output::Event(Event::Put {
            origin: self.local.clone(),
            key,
            value,
        }));
    }

    /// Removes one of our entries (no-op if absent).
    pub fn remove(&mut self, key: &EntryKey) {
        if let Some(value) = self.mine.remove(key) {
            self.pending.push(Op::Remove(key.clone()));
            self.out.push_back(Output::Event(Event::Removed {
                origin: self.local.clone(),
                key: key.clone(),
                value,
            }));
        }
    }

    /// Sends the changes made since the last flush as one delta to every
    /// live peer.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let ops = std::mem::take(&mut self.pending);
        let from_version = self.version;
        self.version += 1;
        let mut peers: Vec<&String> = self.live.keys().collect();
        peers.sort();
        for to in peers {
            self.out.push_back(Output::Send {
                to: to.clone(),
                msg: Msg::Delta {
                    origin: self.local.clone(),
                    from_version,
                    to_version: self.version,
                    ops: ops.clone(),
                },
            });
        }
    }

    fn snapshot_msg(&self) -> Msg {
        Msg::Snapshot {
            origin: self.local.clone(),
            version: self.version,
            entries: self.mine.iter().map(|(k, v)| (k.clone(), v.to_vec())).collect(),
        }
    }

    /// `peer` is live (its link is up and membership reports it up): it
    /// gets our snapshot and is asked for its own. A view of an older
    /// incarnation of the same name is purged first.
    pub fn handle_peer_up(&mut self, peer: &NodeId) {
        self.flush();
        if self
            .live
            .get(&peer.name)
            .is_some_and(|known| *known > peer.incarnation)
        {
            return;
        }
        if self
            .views
            .get(&peer.name)
            .is_some_and(|v| v.incarnation < peer.incarnation)
        {
            self.purge(&peer.name);
        }
        self.live.insert(peer.name.clone(), peer.incarnation);
        // A new link starts over: the snapshot below is acknowledged anew.
        self.acks.forget(peer);
        let msg = self.snapshot_msg();
        self.out.push_back(Output::Send {
            to: peer.name.clone(),
            msg,
        });
        // The peer may have sent its snapshot before it was live here
        // (refused as not live): ask again.
        self.request_snapshot(peer);
    }

    /// The link to `peer` went down: stop sending to it, keep its entries
    /// (membership decides whether it is gone).
    pub fn handle_link_down(&mut self, peer: &NodeId) {
        if self.live.get(&peer.name) == Some(&peer.incarnation) {
            self.live.remove(&peer.name);
        }
        self.acks.forget(peer);
    }

    /// Membership declared `peer` down: purge every entry it owns.
    pub fn handle_peer_down(&mut self, peer: &NodeId) {
        if self.live.get(&peer.name).is_some_and(|i| *i <= peer.incarnation) {
            self.live.remove(&peer.name);
        }
        self.acks.forget(peer);
        if self
            .views
            .get(&peer.name)
            .is_some_and(|v| v.incarnation <= peer.incarnation)
        {
            self.purge(&peer.name);
        }
    }

    fn purge(&mut self, name: &str) {
        if let Some(view) = self.views.remove(name) {
            let origin = NodeId::new(name, view.incarnation);
            for (key, value) in view.entries {
                self.out.push_back(Output::Event(Event::Removed {
                    origin: origin.clone(),
                    key,
                    value,
                }));
            }
        }
    }

    /// Anti-entropy tick: sends our digest to every live peer.
    pub fn handle_tick(&mut self) {
        self.flush();
        let mut peers: Vec<&String> = self.live.keys().collect();
        peers.sort();
        for to in peers {
            self.out.push_back(Output::Send {
                to: to.clone(),
                msg: Msg::Digest {
                    origin: self.local.clone(),
                    version: self.version,
                },
            });
        }
    }

    fn check_origin(&self, sender: &NodeId, origin: &NodeId) -> Result<(), Reject> {
        if sender != origin {
            return Err(Reject::ForeignOrigin {
                sender: sender.clone(),
                origin: origin.clone(),
            });
        }
        if let Some(v) = self.views.get(&origin.name)
            && v.incarnation > origin.incarnation
        {
            return Err(Reject::StaleIncarnation {
                name: origin.name.clone(),
                got: origin.incarnation,
                known: v.incarnation,
            });
        }
        match self.live.get(&origin.name) {
            Some(i) if *i == origin.incarnation => Ok(()),
            Some(i) if *i > origin.incarnation => Err(Reject::StaleIncarnation {
                name: origin.name.clone(),
                got: origin.incarnation,
                known: *i,
            }),
            _ => Err(Reject::NotLive(sender.clone())),
        }
    }

    fn request_snapshot(&mut self, from: &NodeId) {
        self.out.push_back(Output::Send {
            to: from.name.clone(),
            msg: Msg::SnapshotRequest,
        });
    }

    /// Handles `msg` from the authenticated peer `sender`.
    pub fn handle_msg(&mut self, sender: &NodeId, msg: Msg) -> Result<(), Reject> {
        match msg {
            Msg::SnapshotRequest => {
                if !self.live.contains_key(&sender.name) {
                    return Err(Reject::NotLive(sender.clone()));
                }
                self.flush();
                let snap = self.snapshot_msg();
                self.out.push_back(Output::Send {
                    to: sender.name.clone(),
                    msg: snap,
                });
                Ok(())
            }
            Msg::Digest { origin, version } => {
                self.check_origin(sender, &origin)?;
                let in_sync = self
                    .views
                    .get(&origin.name)
                    .is_some_and(|v| v.incarnation == origin.incarnation && v.version == version);
                if in_sync {
                    // Repairs a lost acknowledgement.
                    self.ack(&origin, version);
                } else {
                    self.request_snapshot(sender);
                }
                Ok(())
            }
            Msg::Snapshot {
                origin,
                version,
                entries,
            } => {
                self.check_origin(sender, &origin)?;
                self.install_snapshot(origin.clone(), version, entries);
                self.ack(&origin, version);
                Ok(())
            }
            Msg::Delta {
                origin,
                from_version,
                to_version,
                ops,
            } => {
                self.check_origin(sender, &origin)?;
                let view = self.views.get(&origin.name);
                match view {
                    Some(v) if v.incarnation == origin.incarnation && v.version == from_version => {
                        self.apply_delta(&origin, to_version, ops);
                        self.ack(&origin, to_version);
                    }
                    Some(v) if v.incarnation == origin.incarnation && to_version <= v.version => {
                        // Already have it (a snapshot overtook the delta).
                        let at = v.version;
                        self.ack(&origin, at);
                    }
                    _ => self.request_snapshot(sender),
                }
                Ok(())
            }
        }
    }

    fn ack(&mut self, origin: &NodeId, version: u64) {
        self.out.push_back(Output::Ack {
            to: origin.name.clone(),
            ack: RegistryAck {
                incarnation: origin.incarnation,
                version,
            },
        });
    }

    /// Handles a `REGISTRY_ACK` from the authenticated peer `sender`.
    /// Returns whether the peer's acknowledged version went up.
    pub fn handle_ack(&mut self, sender: &NodeId, ack: RegistryAck) -> Result<bool, AckReject> {
        self.acks.on_ack(sender, ack, self.version)
    }

    /// The names of the peers in `peers` that have not acknowledged our
    /// version `target` or a later one (see [`AckTracker::unconfirmed`]).
    /// A peer whose entries we hold (this incarnation) without the
    /// [`feature::REGISTRY_ACK`] announcement is too old to acknowledge
    /// and is not waited for; a peer whose entries we do not hold yet is.
    pub fn unconfirmed<'a>(&self, target: u64, peers: impl IntoIterator<Item = &'a NodeId>) -> Vec<String> {
        let acks = EntryKey::new(table::FEATURES, feature::REGISTRY_ACK);
        let can_ack = |p: &&NodeId| match self.views.get(&p.name) {
            Some(v) if v.incarnation == p.incarnation => v.entries.contains_key(&acks),
            _ => true,
        };
        self.acks.unconfirmed(target, peers.into_iter().filter(can_ack))
    }

    /// Announces that this node acknowledges registry versions (call once
    /// at start; sent with the next flush).
    pub fn announce_acks(&mut self) {
        self.put(
            EntryKey::new(table::FEATURES, feature::REGISTRY_ACK),
            Bytes::new(),
        );
    }

    fn apply_delta(&mut self, origin: &NodeId, to_version: u64, ops: Vec<Op>) {
        let Some(view) = self.views.get_mut(&origin.name) else {
            return;
        };
        view.version = to_version;
        for op in ops {
            match op {
                Op::Put(key, value) => {
                    let value = Bytes::from(value);
                    if view.entries.get(&key) != Some(&value) {
                        view.entries.insert(key.clone(), value.clone());
                        self.out.push_back(Output::Event(Event::Put {
                            origin: origin.clone(),
                            key,
                            value,
                        }));
                    }
                }
                Op::Remove(key) => {
                    if let Some(value) = view.entries.remove(&key) {
                        self.out.push_back(Output::Event(Event::Removed {
                            origin: origin.clone(),
                            key,
                            value,
                        }));
                    }
                }
            }
        }
    }

    fn install_snapshot(&mut self, origin: NodeId, version: u64, entries: Vec<(EntryKey, Vec<u8>)>) {
        let new: BTreeMap<EntryKey, Bytes> = entries.into_iter().map(|(k, v)| (k, Bytes::from(v))).collect();
        let old = match self.views.remove(&origin.name) {
            Some(v) if v.incarnation == origin.incarnation => v.entries,
            Some(v) => {
                // An older incarnation: everything it had goes.
                let stale = NodeId::new(origin.name.clone(), v.incarnation);
                for (key, value) in v.entries {
                    self.out.push_back(Output::Event(Event::Removed {
                        origin: stale.clone(),
                        key,
                        value,
                    }));
                }
                BTreeMap::new()
            }
            None => BTreeMap::new(),
        };
        for (key, value) in &old {
            if !new.contains_key(key) {
                self.out.push_back(Output::Event(Event::Removed {
                    origin: origin.clone(),
                    key: key.clone(),
                    value: value.clone(),
                }));
            }
        }
        for (key, value) in &new {
            if old.get(key) != Some(value) {
                self.out.push_back(Output::Event(Event::Put {
                    origin: origin.clone(),
                    key: key.clone(),
                    value: value.clone(),
                }));
            }
        }
        self.views.insert(
            origin.name.clone(),
            View {
                incarnation: origin.incarnation,
                version,
                entries: new,
            },
        );
    }

    /// Our own entries.
    pub fn own_entries(&self) -> impl Iterator<Item = (&EntryKey, &Bytes)> {
        self.mine.iter()
    }

    /// Every remote entry, with its owner.
    pub fn remote_entries(&self) -> impl Iterator<Item = (NodeId, &EntryKey, &Bytes)> {
        self.views.iter().flat_map(|(name, v)| {
            v.entries
                .iter()
                .map(move |(k, val)| (NodeId::new(name.clone(), v.incarnation), k, val))
        })
    }

    /// The value of `key` owned by the node named `name`, if held.
    pub fn remote_value(&self, name: &str, key: &EntryKey) -> Option<&Bytes> {
        self.views.get(name)?.entries.get(key)
    }

    /// Number of remote entries held.
    pub fn remote_len(&self) -> usize {
        self.views.values().map(|v| v.entries.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn key(k: &str) -> EntryKey {
        EntryKey::new(table::GROUPS, k)
    }

    /// What travels between two registries.
    enum Wire {
        Reg(Msg),
        Ack(RegistryAck),
    }

    /// A tiny in-memory network of registries with controllable delivery.
    struct Net {
        regs: Vec<Registry>,
        inflight: VecDeque<(usize, usize, Wire)>,
        up: Vec<Vec<bool>>,
        rejects: Vec<Reject>,
        ack_rejects: Vec<AckReject>,
        /// Per node: its own entries at each version it reached.
        history: Vec<BTreeMap<u64, BTreeMap<EntryKey, Bytes>>>,
    }

    impl Net {
        fn new(n: usize) -> Self {
            let regs = (0..n)
                .map(|i| {
                    let mut r = Registry::new(NodeId::new(format!("n{i}"), 1));
                    r.announce_acks();
                    r.flush();
                    while r.poll_output().is_some() {}
                    r
                })
                .collect();
            Net {
                regs,
                inflight: VecDeque::new(),
                up: vec![vec![false; n]; n],
                rejects: Vec::new(),
                ack_rejects: Vec::new(),
                history: vec![BTreeMap::new(); n],
            }
        }
        fn idx(&self, name: &str) -> usize {
            self.regs
                .iter()
                .position(|r| r.local.name == name)
                .expect("known")
        }
        /// Records each node's entries at its current version (called
        /// whenever no unflushed change can be pending for that version).
        fn record(&mut self) {
            for (i, r) in self.regs.iter().enumerate() {
                self.history[i].entry(r.version).or_insert_with(|| r.mine.clone());
            }
        }
        fn collect(&mut self, i: usize) {
            while let Some(o) = self.regs[i].poll_output() {
                let (to, wire) = match o {
                    Output::Send { to, msg } => (to, Wire::Reg(msg)),
                    Output::Ack { to, ack } => (to, Wire::Ack(ack)),
                    Output::Event(_) => continue,
                };
                let j = self.idx(&to);
                if self.up[i][j] {
                    self.inflight.push_back((i, j, wire));
                }
            }
        }
        fn connect(&mut self, a: usize, b: usize) {
            self.up[a][b] = true;
            self.up[b][a] = true;
            let (ia, ib) = (self.regs[a].local.clone(), self.regs[b].local.clone());
            self.regs[a].handle_peer_up(&ib);
            self.regs[b].handle_peer_up(&ia);
            self.collect(a);
            self.collect(b);
        }
        fn deliver_all(&mut self, drop_every: Option<usize>) {
            let mut n = 0;
            while let Some((from, to, wire)) = self.inflight.pop_front() {
                n += 1;
                let lost = drop_every.is_some_and(|d| n % d == 0);
                let sender = self.regs[from].local.clone();
                match wire {
                    Wire::Reg(Msg::Delta { .. }) | Wire::Ack(_) if lost => continue,
                    Wire::Reg(msg) => {
                        if let Err(e) = self.regs[to].handle_msg(&sender, msg) {
                            self.rejects.push(e);
                        }
                    }
                    Wire::Ack(ack) => {
                        if let Err(e) = self.regs[to].handle_ack(&sender, ack) {
                            self.ack_rejects.push(e);
                        }
                    }
                }
                self.collect(to);
            }
            self.record();
        }
        /// Every acknowledgement held is true: the peer's view of the
        /// origin is at that version or later and equals the origin's
        /// entries at the view's version.
        fn acks_are_true(&self) -> Result<(), String> {
            for (o, origin) in self.regs.iter().enumerate() {
                for (p, peer) in self.regs.iter().enumerate() {
                    let Some(acked) = origin.acks.acked(&peer.local) else {
                        continue;
                    };
                    let Some(view) = peer.views.get(&origin.local.name) else {
                        return Err(format!("n{p} acked {acked} of n{o} without a view"));
                    };
                    if view.version < acked {
                        return Err(format!(
                            "n{p} acked {acked} of n{o}, its view is at {}",
                            view.version
                        ));
                    }
                    if self.history[o].get(&view.version) != Some(&view.entries) {
                        return Err(format!(
                            "n{p}'s view of n{o} at {} is not n{o}'s state then",
                            view.version
                        ));
                    }
                }
            }
            Ok(())
        }
        fn view(&self, i: usize) -> BTreeSet<(String, String)> {
            let r = &self.regs[i];
            r.remote_entries()
                .map(|(o, k, _)| (o.name, k.key.clone()))
                .chain(
                    r.own_entries()
                        .map(|(k, _)| (r.local.name.clone(), k.key.clone())),
                )
                .collect()
        }
    }

    #[test]
    fn acks_confirm_a_change_once_applied() {
        let mut net = Net::new(3);
        for a in 0..3 {
            for b in (a + 1)..3 {
                net.connect(a, b);
            }
        }
        net.deliver_all(None);
        net.regs[1].put(key("sub"), Bytes::from_static(b"1"));
        net.regs[1].flush();
        let target = net.regs[1].version();
        let peers = [net.regs[0].local.clone(), net.regs[2].local.clone()];
        assert_eq!(net.regs[1].unconfirmed(target, &peers), vec!["n0", "n2"]);
        // The ack follows the applied event in the receiver's output.
        let n1 = net.regs[1].local.clone();
        let delta = std::iter::from_fn(|| net.regs[1].poll_output())
            .find_map(|o| match o {
                Output::Send { to, msg } if to == "n0" => Some(msg),
                _ => None,
            })
            .expect("delta to n0");
        net.regs[0].handle_msg(&n1, delta).expect("applied");
        let outs: Vec<Output> = std::iter::from_fn(|| net.regs[0].poll_output()).collect();
        let put = outs
            .iter()
            .position(|o| matches!(o, Output::Event(Event::Put { .. })));
        let ack = outs.iter().position(|o| matches!(o, Output::Ack { .. }));
        assert!(put.is_some() && ack > put, "{outs:?}");
        let Some(Output::Ack { to, ack }) = ack.map(|i| outs[i].clone()) else {
            unreachable!()
        };
        assert_eq!(to, "n1");
        let n0 = net.regs[0].local.clone();
        assert_eq!(net.regs[1].handle_ack(&n0, ack), Ok(true));
        assert_eq!(net.regs[1].unconfirmed(target, &peers), vec!["n2"]);
        // n2's link drops: what it acknowledged is forgotten until the
        // next link's snapshot is acknowledged.
        let n2 = net.regs[2].local.clone();
        net.regs[1].handle_link_down(&n2);
        assert_eq!(net.regs[1].unconfirmed(0, &peers), vec!["n2"]);
    }

    #[test]
    fn peers_too_old_to_acknowledge_are_not_waited_for() {
        let mut r = Registry::new(NodeId::new("a", 1));
        let old = NodeId::new("old", 1);
        let new = NodeId::new("new", 1);
        let unknown = NodeId::new("unknown", 1);
        for p in [&old, &new, &unknown] {
            r.handle_peer_up(p);
        }
        r.handle_msg(
            &old,
            Msg::Snapshot {
                origin: old.clone(),
                version: 1,
                entries: vec![(key("g"), vec![1])],
            },
        )
        .expect("old snapshot");
        r.handle_msg(
            &new,
            Msg::Snapshot {
                origin: new.clone(),
                version: 1,
                entries: vec![(EntryKey::new(table::FEATURES, feature::REGISTRY_ACK), vec![])],
            },
        )
        .expect("new snapshot");
        assert_eq!(r.unconfirmed(0, [&old, &new, &unknown]), vec!["new", "unknown"]);
    }

    #[test]
    fn backfill_delta_and_purge() {
        let mut net = Net::new(3);
        net.regs[0].put(key("g/1"), Bytes::from_static(b"p1"));
        net.regs[0].flush();
        net.collect(0);
        net.connect(0, 1);
        net.connect(0, 2);
        net.connect(1, 2);
        net.deliver_all(None);
        assert!(net.view(1).contains(&("n0".into(), "g/1".into())), "backfilled");
        net.regs[2].put(key("g/2"), Bytes::from_static(b"p2"));
        net.regs[2].flush();
        net.collect(2);
        net.deliver_all(None);
        assert_eq!(net.view(0), net.view(1));
        assert_eq!(net.view(1), net.view(2));
        let n2 = net.regs[2].local.clone();
        net.regs[0].handle_peer_down(&n2);
        let removed: Vec<_> = std::iter::from_fn(|| net.regs[0].poll_output())
            .filter(|o| matches!(o, Output::Event(Event::Removed { key, .. }) if key.table == table::GROUPS))
            .collect();
        assert_eq!(removed.len(), 1);
        assert!(!net.view(0).contains(&("n2".into(), "g/2".into())));
    }

    #[test]
    fn foreign_and_stale_messages_are_refused() {
        let mut r = Registry::new(NodeId::new("a", 1));
        let b1 = NodeId::new("b", 1);
        let b2 = NodeId::new("b", 2);
        let c = NodeId::new("c", 1);
        r.handle_peer_up(&b2);
        let claim = Msg::Snapshot {
            origin: c.clone(),
            version: 1,
            entries: vec![(key("x"), vec![1])],
        };
        assert!(matches!(
            r.handle_msg(&b2, claim),
            Err(Reject::ForeignOrigin { .. })
        ));
        let stale = Msg::Snapshot {
            origin: b1.clone(),
            version: 9,
            entries: vec![(key("old"), vec![1])],
        };
        assert!(matches!(
            r.handle_msg(&b1, stale),
            Err(Reject::StaleIncarnation { .. })
        ));
        assert_eq!(r.remote_len(), 0);
        // A fresh snapshot of the live incarnation is taken.
        let fresh = Msg::Snapshot {
            origin: b2.clone(),
            version: 1,
            entries: vec![(key("new"), vec![2])],
        };
        assert_eq!(r.handle_msg(&b2, fresh), Ok(()));
        assert_eq!(r.remote_len(), 1);
        // Once b2 is known, b1's snapshot stays refused even if live flips.
        let again = Msg::Snapshot {
            origin: b1.clone(),
            version: 10,
            entries: vec![],
        };
        assert!(r.handle_msg(&b1, again).is_err());
    }

    #[test]
    fn restart_replaces_the_old_incarnation() {
        let mut r = Registry::new(NodeId::new("a", 1));
        let b1 = NodeId::new("b", 1);
        r.handle_peer_up(&b1);
        r.handle_msg(
            &b1,
            Msg::Snapshot {
                origin: b1.clone(),
                version: 1,
                entries: vec![(key("old"), vec![1])],
            },
        )
        .expect("ok");
        let b2 = NodeId::new("b", 2);
        r.handle_peer_up(&b2);
        assert_eq!(r.remote_len(), 0, "old incarnation purged on newer link");
        r.handle_msg(
            &b2,
            Msg::Snapshot {
                origin: b2.clone(),
                version: 0,
                entries: vec![],
            },
        )
        .expect("ok");
        assert!(
            r.handle_msg(
                &b1,
                Msg::Digest {
                    origin: b1.clone(),
                    version: 1
                }
            )
            .is_err()
        );
    }

    #[test]
    fn digest_repairs_a_lost_delta() {
        let mut net = Net::new(2);
        net.connect(0, 1);
        net.deliver_all(None);
        for i in 0..10 {
            net.regs[0].put(key(&format!("k{i}")), Bytes::from_static(b"v"));
            net.regs[0].flush();
            net.collect(0);
        }
        // Drop every 3rd delta.
        net.deliver_all(Some(3));
        net.regs[0].handle_tick();
        net.collect(0);
        net.deliver_all(None);
        assert_eq!(net.view(0), net.view(1));
    }

    proptest! {
        /// Whatever the interleaving of local changes, link flaps, lost
        /// deltas and ticks, after a final heal every node's view equals the
        /// union of every node's own entries; every acknowledgement held
        /// along the way is true, and after the heal every change is
        /// acknowledged by every peer.
        #[test]
        fn converges_to_the_union(steps in proptest::collection::vec((0usize..3, 0u8..6, 0u8..8), 1..60)) {
            let mut net = Net::new(3);
            for a in 0..3 { for b in (a + 1)..3 { net.connect(a, b); } }
            for (node, action, k) in steps {
                match action {
                    0 | 1 => net.regs[node].put(key(&format!("k{k}")), Bytes::from(vec![k])),
                    2 => net.regs[node].remove(&key(&format!("k{k}"))),
                    3 => net.regs[node].flush(),
                    4 => {
                        let other = (node + 1) % 3;
                        net.up[node][other] = false;
                        net.up[other][node] = false;
                        let (i, o) = (net.regs[node].local.clone(), net.regs[other].local.clone());
                        net.regs[node].handle_link_down(&o);
                        net.regs[other].handle_link_down(&i);
                        // A closed connection delivers nothing more.
                        net.inflight.retain(|(f, t, _)| !((*f == node && *t == other) || (*f == other && *t == node)));
                    }
                    _ => net.regs[node].handle_tick(),
                }
                net.collect(node);
                net.record();
                net.deliver_all(Some(4));
                prop_assert_eq!(net.acks_are_true(), Ok(()));
            }
            for i in 0..3 { net.regs[i].flush(); net.collect(i); }
            for a in 0..3 { for b in (a + 1)..3 { net.connect(a, b); } }
            net.deliver_all(None);
            for i in 0..3 { net.regs[i].handle_tick(); net.collect(i); }
            net.deliver_all(None);
            let expected: BTreeSet<(String, String)> = net
                .regs
                .iter()
                .flat_map(|r| r.own_entries().map(|(k, _)| (r.local.name.clone(), k.key.clone())).collect::<Vec<_>>())
                .collect();
            for i in 0..3 {
                prop_assert_eq!(net.view(i), expected.clone());
            }
            prop_assert!(net.rejects.is_empty(), "{:?}", net.rejects);
            prop_assert!(net.ack_rejects.is_empty(), "{:?}", net.ack_rejects);
            prop_assert_eq!(net.acks_are_true(), Ok(()));
            // Once healed, every peer has confirmed every node's version.
            for r in &net.regs {
                let peers: Vec<NodeId> = net.regs.iter().map(|p| p.local.clone()).filter(|p| *p != r.local).collect();
                prop_assert!(r.unconfirmed(r.version(), &peers).is_empty(), "{} unconfirmed", r.local);
            }
        }
    }
}
