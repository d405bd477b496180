//! The registry driver: runs the sans-IO [`weft_proto::registry::Registry`]
//! behind a mutex, sends its messages over the links (control lane), feeds
//! its events to the [`RegistryObserver`]s registered at construction (the
//! directory, pub/sub's remote interest, the relay's origins), and answers
//! interest barriers from the peers' acknowledgements.
//!
//! Lock discipline: the registry's outputs are picked under its mutex and
//! acted on after it is released, so observers and link queues are never
//! entered with it held. A second mutex, `delivery`, is held from the pick
//! to the end of the acting, so that outputs reach observers and peers in
//! the order the registry produced them (an acknowledgement is sent only
//! after the events before it were applied). Queries (`version`,
//! `remote_value`, ...) take only the registry mutex.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tracing::debug;
use weft_proto::frame::{Header, RegistryAck};
use weft_proto::registry::{EntryKey, Event, Msg, Output, Registry};
use weft_proto::{Frame, NodeId};

use crate::link::Links;
use crate::membership::{MemberState, MemberTable};
use crate::stats::Stats;

/// Why an observer refused a registry entry: the entry is kept by the
/// registry (its owner may fix it) but not indexed, and counted in
/// `registry_rejected` under [`Rejection::label`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Rejection {
    /// A name or group entry whose value does not decode as a pid.
    #[error("entry value does not decode")]
    UndecodableEntry,
    /// A name or group entry whose pid belongs to a node other than the
    /// entry's owner (a node may only list its own mailboxes).
    #[error("pid of another node")]
    ForeignPid,
    /// An interest entry whose key or member count is malformed.
    #[error("invalid interest entry")]
    InvalidInterest,
    /// An origin entry whose key is not a valid stream key.
    #[error("invalid stream key")]
    InvalidStreamKey,
    /// An origin entry whose announcement does not decode.
    #[error("invalid origin announcement")]
    InvalidOrigin,
}

impl Rejection {
    /// The `reason` label of `registry_rejected`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Rejection::UndecodableEntry => "undecodable_entry",
            Rejection::ForeignPid => "foreign_pid",
            Rejection::InvalidInterest => "invalid_interest",
            Rejection::InvalidStreamKey => "invalid_stream_key",
            Rejection::InvalidOrigin => "invalid_origin",
        }
    }
}

/// A view built from some registry tables.
///
/// Called with no registry lock held, in the order the registry produced
/// the changes, one at a time (never concurrently). An observer must not
/// call back into [`RegistryService`]'s mutating methods from
/// `on_change` (they wait for the delivery in progress).
pub(crate) trait RegistryObserver: Send + Sync {
    /// The tables this observer indexes; it sees changes of these only.
    fn tables(&self) -> &'static [u16];

    /// Applies one change (local or remote entry) of one of
    /// [`Self::tables`]. An entry that makes no sense is refused with its
    /// [`Rejection`] and left out of the view.
    fn on_change(&self, change: &Event) -> Result<(), Rejection>;
}

/// Owns this node's registry state.
pub(crate) struct RegistryService {
    reg: Mutex<Registry>,
    /// Held while picked outputs are acted on: keeps them in order across
    /// callers. Taken before `reg`, never while holding it.
    delivery: Mutex<()>,
    links: Links,
    stats: Arc<Stats>,
    observers: Vec<Arc<dyn RegistryObserver>>,
    members: Arc<RwLock<MemberTable>>,
    /// Bumped whenever a barrier may have completed: a peer acknowledged
    /// more, or a peer's link or membership went down.
    barriers: watch::Sender<u64>,
}

impl RegistryService {
    /// A registry for node `local` whose changes go to `observers`.
    pub(crate) fn new(
        local: NodeId,
        links: Links,
        stats: Arc<Stats>,
        members: Arc<RwLock<MemberTable>>,
        observers: Vec<Arc<dyn RegistryObserver>>,
    ) -> Self {
        let mut reg = Registry::new(local);
        reg.announce_acks();
        reg.flush();
        // Nothing observes the announcement's event: nobody subscribed yet,
        // and no peer is live.
        while reg.poll_output().is_some() {}
        Self {
            reg: Mutex::new(reg),
            delivery: Mutex::new(()),
            links,
            stats,
            observers,
            members,
            barriers: watch::Sender::new(0),
        }
    }

    fn wake_barriers(&self) {
        self.barriers.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Runs `f` on the registry and acts on its outputs, picked under the
    /// registry mutex and acted on after it is released.
    fn with<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        let _order = crate::sync::lock(&self.delivery);
        let (r, outputs) = {
            let mut reg = crate::sync::lock(&self.reg);
            let r = f(&mut reg);
            let outputs: Vec<Output> = std::iter::from_fn(|| reg.poll_output()).collect();
            (r, outputs)
        };
        for out in outputs {
            self.output(out);
        }
        r
    }

    fn output(&self, out: Output) {
        match out {
            Output::Send { to, msg } => {
                let payload = match postcard::to_allocvec(&msg) {
                    Ok(p) => Bytes::from(p),
                    Err(_) => {
                        self.stats.frames_dropped.inc("registry_encode");
                        return;
                    }
                };
                let frame = Frame {
                    header: Header::Registry,
                    payload,
                };
                if let Err(e) = self.links.try_send(&to, &frame) {
                    // Anti-entropy repairs a lost registry message.
                    debug!(peer = %to, error = %e, "registry message not queued");
                    self.stats.frames_dropped.inc("registry_not_queued");
                }
            }
            Output::Ack { to, ack } => {
                // Sent after the events before it were applied (outputs are
                // handled in order, pub/sub synchronously).
                let frame = Frame::control(Header::RegistryAck(ack));
                if let Err(e) = self.links.try_send(&to, &frame) {
                    // The next in-sync digest acknowledges again.
                    debug!(peer = %to, error = %e, "registry ack not queued");
                    self.stats.frames_dropped.inc("registry_not_queued");
                }
            }
            Output::Event(ev) => {
                let table = match &ev {
                    Event::Put { key, .. } | Event::Removed { key, .. } => key.table,
                };
                for observer in &self.observers {
                    if !observer.tables().contains(&table) {
                        continue;
                    }
                    if let Err(rejection) = observer.on_change(&ev) {
                        debug!(?ev, error = %rejection, "registry entry refused");
                        self.stats.registry_rejected.inc(rejection.label());
                    }
                }
            }
        }
    }

    /// Sets local entries and sends one delta.
    pub(crate) fn put_many(&self, entries: Vec<(EntryKey, Bytes)>) {
        self.with(|r| {
            for (k, v) in entries {
                r.put(k, v);
            }
            r.flush();
        });
    }

    /// Removes local entries and sends one delta.
    pub(crate) fn remove_many(&self, keys: &[EntryKey]) {
        self.with(|r| {
            for k in keys {
                r.remove(k);
            }
            r.flush();
        });
    }

    pub(crate) fn link_up(&self, peer: &NodeId) {
        self.with(|r| r.handle_peer_up(peer));
    }

    pub(crate) fn link_down(&self, peer: &NodeId) {
        self.with(|r| r.handle_link_down(peer));
        self.wake_barriers();
    }

    pub(crate) fn member_down(&self, peer: &NodeId) {
        self.with(|r| r.handle_peer_down(peer));
        // A barrier no longer waits for it.
        self.wake_barriers();
    }

    /// Handles a `REGISTRY_ACK` from `from`.
    pub(crate) fn on_ack(&self, from: &NodeId, ack: RegistryAck) {
        match self.with(|r| r.handle_ack(from, ack)) {
            Ok(true) => self.wake_barriers(),
            Ok(false) => {}
            Err(e) => {
                debug!(peer = %from, error = %e, "registry ack refused");
                self.stats.registry_rejected.inc(e.label());
            }
        }
    }

    /// This node's registry version: every local change made so far is at
    /// this version or earlier.
    pub(crate) fn version(&self) -> u64 {
        crate::sync::lock(&self.reg).version()
    }

    /// The peers a barrier waits for: every member that membership
    /// reports up (or suspect), and every peer linked to us that
    /// membership has not declared down (a link proves it alive; it becomes
    /// registry-live once membership learns it, and may publish to us).
    fn barrier_peers(&self) -> Vec<NodeId> {
        let mut peers: std::collections::BTreeMap<String, u64> = crate::sync::read(&self.members)
            .list()
            .into_iter()
            .filter(|m| m.state != MemberState::Down)
            .map(|m| (m.name, m.incarnation))
            .collect();
        for link in self.links.infos() {
            if let (true, false, Some(inc)) = (link.connected, link.down, link.incarnation) {
                peers.entry(link.peer).or_insert(inc);
            }
        }
        peers
            .into_iter()
            .map(|(name, inc)| NodeId::new(name, inc))
            .collect()
    }

    /// The barrier peers that have not acknowledged `target`, sorted.
    fn unconfirmed(&self, target: u64) -> Vec<String> {
        let peers = self.barrier_peers();
        crate::sync::lock(&self.reg).unconfirmed(target, &peers)
    }

    /// Waits until every barrier peer acknowledged `target`, at most
    /// `timeout`. Membership declaring a peer down (or its link dropping)
    /// wakes the wait: a peer down no longer counts. Fails with the names
    /// of the peers that had not acknowledged, sorted.
    pub(crate) async fn barrier(&self, target: u64, timeout: Duration) -> Result<(), Vec<String>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.barriers.subscribe();
        loop {
            // Marked seen before looking, so a change made while looking
            // wakes the wait below.
            changed.borrow_and_update();
            let missing = self.unconfirmed(target);
            if missing.is_empty() {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => continue,
                // The sender lives as long as `self`: unreachable, but a
                // timeout is the honest answer if it ever happens.
                Ok(Err(_)) | Err(_) => {
                    let missing = self.unconfirmed(target);
                    if missing.is_empty() {
                        return Ok(());
                    }
                    return Err(missing);
                }
            }
        }
    }

    pub(crate) fn tick(&self) {
        self.with(|r| r.handle_tick());
    }

    pub(crate) fn on_frame(&self, from: &NodeId, payload: &[u8]) {
        let msg: Msg = match postcard::from_bytes(payload) {
            Ok(m) => m,
            Err(e) => {
                debug!(peer = %from, error = %e, "undecodable registry message");
                self.stats.registry_rejected.inc("undecodable");
                return;
            }
        };
        let result = self.with(|r| r.handle_msg(from, msg));
        if let Err(e) = result {
            debug!(peer = %from, error = %e, "registry message refused");
            self.stats.registry_rejected.inc(e.label());
        }
    }

    /// The value of `key` owned by node `name`, if held here.
    pub(crate) fn remote_value(&self, name: &str, key: &EntryKey) -> Option<Bytes> {
        crate::sync::lock(&self.reg).remote_value(name, key).cloned()
    }

    /// Number of remote entries held (for sizing reports).
    pub(crate) fn remote_len(&self) -> usize {
        crate::sync::lock(&self.reg).remote_len()
    }

    /// Number of this node's own entries.
    pub(crate) fn local_len(&self) -> usize {
        crate::sync::lock(&self.reg).own_entries().count()
    }
}
