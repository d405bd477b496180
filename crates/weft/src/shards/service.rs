//! The shard service: runs the Raft group that commits the shard map,
//! keeps the voter set healthy, proposes rebalances and hands shards over.
//! Routing is in `route`, proposals through the leader in `propose`.
//!
//! Rules it keeps:
//! - No node's view changes before a commit: the map a node routes with is
//!   always the state machine's, published once `apply` committed it and
//!   this node's ownership reflects it.
//! - At most one node accepts events for a shard at an epoch: an old owner
//!   stops accepting when it applies a map that moves the shard away. The
//!   new owner takes the shard over once every other up node has answered
//!   a `STATUS` query with an epoch at least its own and without that
//!   shard among the ones it accepts; a node membership declared down
//!   needs no answer.
//! - Handoff is driven by state, not by notices: a waiting owner asks again
//!   every `handoff_retry` (and at once on a release notice or a member
//!   going down) until it holds the shard, so a lost notice, a release
//!   sent while the new owner was restarting, or maps skipped in one
//!   apply cannot leave a shard unacquired. A shard that left a node and
//!   came back (its `since` epoch changed) is released and handed over
//!   again, even when the node never saw the map in between.
//! - A (re)started node takes no shard before it has caught up: it reads
//!   a commit index from the leader (confirmed by a quorum) after start,
//!   applies up to it, and acquires nothing at an epoch below that map's.
//!   So log replay after a crash never revives stale ownership.
//! - Routing retries against a newer map (stale sender, moved shard, owner
//!   down) until the total timeout, then returns a typed error; with no
//!   map or no owner it fails after the short `first_map_wait`.
//! - Every timeout and retry interval comes from `ShardConfig`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use openraft::{BasicNode, ChangeMembers, Raft, ReadPolicy, ServerState};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use weft_proto::NodeId;
use weft_proto::registry::{EntryKey, table};
use weft_proto::shard::{ShardMap, plan};

use super::network::{Network, SnapshotRpc, method};
use super::store::{Committed, LogStore, StateMachine, StoreError};
use super::types::{ShardCommand, TypeConfig, raft_id};
use crate::config::ShardConfig;
use crate::membership::{MemberState, MemberTable};

/// Registry key (table `RAFT`) a node puts once it holds the shard map
/// group's membership.
const MEMBER_KEY: &str = "member";
use crate::registry::RegistryService;
use crate::rpc::{Rpc, RpcFuture, RpcHandler};
use crate::stats::Stats;

type ShardRaft = Raft<TypeConfig, StateMachine>;

/// Receives the events of the shards this node owns.
///
/// Contract: `on_event` runs on a runtime task and must not block for
/// long; the sender gets its acknowledgement when it returns (so delivery
/// is at least once: a retry after a lost acknowledgement delivers again).
/// `shard_acquired` is called before the first event of a shard,
/// `shard_released` after its last one. A shard is acquired only after
/// this node caught up with the committed map since its start and no
/// other up node accepts the shard any more; a shard that leaves the node
/// and comes back is released and acquired again (at the newer epoch).
pub trait ShardHandler: Send + Sync + 'static {
    /// This node now owns `shard` (at `epoch`).
    fn shard_acquired(&self, _shard: u32, _epoch: u64) {}
    /// This node no longer owns `shard` (from `epoch` on).
    fn shard_released(&self, _shard: u32, _epoch: u64) {}
    /// An event routed to `shard`.
    fn on_event(&self, shard: u32, key: &[u8], event: Bytes);
}

#[derive(Serialize, Deserialize)]
struct Released {
    shard: u32,
    epoch: u64,
}

/// A node's answer to `STATUS`: the epoch of the map its ownership
/// reflects and the shards it accepts events for.
#[derive(Serialize, Deserialize, Debug, Default)]
struct Status {
    epoch: u64,
    active: Vec<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Own {
    /// Accepting events.
    Active,
    /// Waiting until no other node accepts events for it.
    Pending,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Held {
    pub(super) own: Own,
    /// The committed `since` epoch of our ownership: when it changes, the
    /// shard left us and came back, and must be handed over again.
    since: u64,
}

#[derive(Default)]
pub(super) struct Ownership {
    /// Shards this node owns in the applied map, and whether active.
    pub(super) shards: BTreeMap<u32, Held>,
    /// The map the ownership reflects.
    epoch: u64,
    /// Once caught up after start: the epoch of the committed map at the
    /// leader's read index. No shard is taken at an epoch below it.
    caught_up: Option<u64>,
}

/// The shard service of one node.
pub(crate) struct Shards {
    pub(super) local: NodeId,
    pub(super) raft: ShardRaft,
    pub(super) rpc: Arc<Rpc>,
    pub(super) stats: Arc<Stats>,
    members: Arc<RwLock<MemberTable>>,
    registry: Arc<RegistryService>,
    pub(super) config: ShardConfig,
    /// The public committed map, published after ownership reflects it.
    map_tx: watch::Sender<ShardMap>,
    pub(super) map_rx: watch::Receiver<ShardMap>,
    /// What the state machine applied (map and `since` epochs).
    committed_rx: watch::Receiver<Committed>,
    /// Wakes the handoff loop (a release notice, a member down, a new
    /// map with shards to take over).
    handoff: Arc<Notify>,
    handler: RwLock<Option<Arc<dyn ShardHandler>>>,
    ownership: Mutex<Ownership>,
    /// Readers: event deliveries (check ownership → `on_event`). Writer:
    /// ownership changes with their callbacks. So a handler never sees an
    /// event outside its `shard_acquired`/`shard_released` bracket.
    pub(super) gate: RwLock<()>,
    voter_down_since: Mutex<HashMap<u64, Instant>>,
    started: Instant,
    /// Whether this node announced (registry `RAFT/member`) that it holds
    /// the group's membership, so that nodes joining later never bootstrap
    /// a second group beside it.
    announced_member: AtomicBool,
    /// Sender lanes, per-owner batches and the inbox (`outbox`, `inbox`).
    pub(super) pipeline: super::outbox::Pipeline,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Inputs to [`Shards::start`].
pub(crate) struct ShardsParams {
    pub local: NodeId,
    pub cluster: String,
    pub data_dir: Option<std::path::PathBuf>,
    pub rpc: Arc<Rpc>,
    pub stats: Arc<Stats>,
    pub members: Arc<RwLock<MemberTable>>,
    pub registry: Arc<RegistryService>,
    pub config: ShardConfig,
    pub stop: CancellationToken,
}

impl Shards {
    /// Opens storage and starts the Raft node and the duty loop.
    pub(crate) async fn start(p: ShardsParams) -> Result<Arc<Self>, StoreError> {
        let (map_tx, map_rx) = watch::channel(ShardMap::default());
        let (committed_tx, committed_rx) = watch::channel(Committed::default());
        let committed_tx = Arc::new(committed_tx);
        // With a data dir the Raft identity is the name (the log survives
        // restarts); without one every run is a new Raft member.
        let (raft_node, log, sm) = match &p.data_dir {
            Some(dir) => {
                let dir = dir.join("raft");
                let (log, snapshot) = LogStore::open(&dir, &p.cluster, &p.local.name)?;
                (
                    raft_id(&p.local.name),
                    log,
                    StateMachine::new(Some(dir), snapshot, committed_tx),
                )
            }
            None => (
                raft_id(&format!("{}#{}", p.local.name, p.local.incarnation)),
                LogStore::in_memory(),
                StateMachine::new(None, None, committed_tx),
            ),
        };
        let c = &p.config;
        let config = openraft::Config {
            cluster_name: p.cluster.clone(),
            heartbeat_interval: c.raft_heartbeat.as_millis() as u64,
            election_timeout_min: c.raft_election_min.as_millis() as u64,
            election_timeout_max: c.raft_election_max.as_millis() as u64,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StoreError::Corrupt {
            path: "raft config".into(),
            detail: e.to_string(),
        })?;
        let network = Network {
            rpc: p.rpc.clone(),
            local: raft_node,
            timeout: c.raft_rpc_timeout,
        };
        let raft = Raft::new(raft_node, Arc::new(config), network, log, sm)
            .await
            .map_err(|e| StoreError::Corrupt {
                path: "raft".into(),
                detail: e.to_string(),
            })?;
        let shards = Arc::new(Shards {
            local: p.local,
            raft,
            rpc: p.rpc.clone(),
            stats: p.stats,
            members: p.members,
            registry: p.registry.clone(),
            config: p.config,
            map_tx,
            map_rx,
            committed_rx,
            handoff: Arc::new(Notify::new()),
            handler: RwLock::new(None),
            ownership: Mutex::new(Ownership::default()),
            gate: RwLock::new(()),
            voter_down_since: Mutex::new(HashMap::new()),
            started: Instant::now(),
            announced_member: AtomicBool::new(false),
            pipeline: Default::default(),
        });
        let id = postcard::to_allocvec(shards.raft.node_id()).unwrap_or_default();
        p.registry
            .put_many(vec![(EntryKey::new(table::RAFT, "id"), Bytes::from(id))]);
        p.rpc.set_handler(Arc::new(ShardsRpc {
            shards: Arc::downgrade(&shards),
        }));
        tokio::spawn(duty_loop(Arc::downgrade(&shards), p.stop.clone()));
        tokio::spawn(map_loop(Arc::downgrade(&shards), p.stop.clone()));
        tokio::spawn(handoff_loop(
            Arc::downgrade(&shards),
            shards.handoff.clone(),
            p.stop.clone(),
        ));
        let raft = shards.raft.clone();
        tokio::spawn(async move {
            p.stop.cancelled().await;
            let _ = raft.shutdown().await;
        });
        Ok(shards)
    }

    /// The committed map (epoch 0: none yet).
    pub(crate) fn map(&self) -> ShardMap {
        self.map_rx.borrow().clone()
    }

    /// Watches committed maps.
    pub(crate) fn watch(&self) -> watch::Receiver<ShardMap> {
        self.map_rx.clone()
    }

    pub(crate) fn set_handler(&self, handler: Arc<dyn ShardHandler>) {
        let _gate = self.gate.write().unwrap_or_else(|p| p.into_inner());
        let acquired: Vec<(u32, u64)> = {
            let own = lock(&self.ownership);
            own.shards
                .iter()
                .filter(|(_, h)| h.own == Own::Active)
                .map(|(s, _)| (*s, own.epoch))
                .collect()
        };
        for (s, e) in acquired {
            handler.shard_acquired(s, e);
        }
        *self.handler.write().unwrap_or_else(|p| p.into_inner()) = Some(handler);
    }

    pub(super) fn ownership(&self) -> std::sync::MutexGuard<'_, Ownership> {
        lock(&self.ownership)
    }

    pub(super) fn handler(&self) -> Option<Arc<dyn ShardHandler>> {
        self.handler.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Up members by name (this node included).
    fn live(&self) -> BTreeSet<String> {
        let table = self.members.read().unwrap_or_else(|p| p.into_inner());
        let mut live: BTreeSet<String> = table
            .list()
            .into_iter()
            .filter(|m| m.state != MemberState::Down)
            .map(|m| m.name)
            .collect();
        live.insert(self.local.name.clone());
        live
    }

    fn name_up(&self, name: &str) -> bool {
        name == self.local.name
            || self
                .members
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(name)
                .is_some_and(|m| m.state != MemberState::Down)
    }

    /// Whether this node is the Raft leader.
    pub(crate) fn is_leader(&self) -> bool {
        self.raft.metrics().borrow_watched().state == ServerState::Leader
    }

    /// The current leader's node name, if known.
    pub(crate) fn leader(&self) -> Option<String> {
        let m = self.raft.metrics().borrow_watched().clone();
        let leader = m.current_leader?;
        m.membership_config
            .membership()
            .get_node(&leader)
            .map(|n: &BasicNode| n.addr.clone())
    }

    /// Voter names of the current Raft membership.
    pub(crate) fn voters(&self) -> Vec<String> {
        let m = self.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        let mut v: Vec<String> = membership
            .voter_ids()
            .filter_map(|id| membership.get_node(&id).map(|n: &BasicNode| n.addr.clone()))
            .collect();
        v.sort();
        v
    }

    /// One round of leader duties (or bootstrap).
    async fn duties(&self) {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership().clone();
        let initialized = membership.voter_ids().next().is_some();
        let live = self.live();
        if !initialized {
            if self.may_bootstrap(&live, metrics.current_term) {
                let chosen: Vec<&String> = live.iter().take(self.config.voters.max(1)).collect();
                let nodes: BTreeMap<u64, BasicNode> = chosen
                    .iter()
                    .filter_map(|n| {
                        self.raft_id_of(n)
                            .map(|id| (id, BasicNode { addr: (*n).clone() }))
                    })
                    .collect();
                if nodes.len() < chosen.len() {
                    return; // an id is not known yet
                }
                info!(voters = ?nodes.values().map(|n| n.addr.clone()).collect::<Vec<_>>(), "bootstrapping the shard map group");
                if let Err(e) = self.raft.initialize(nodes).await {
                    debug!(error = %e, "raft initialize");
                }
            }
            return;
        }
        if !self.announced_member.swap(true, Ordering::Relaxed) {
            self.registry.put_many(vec![(
                EntryKey::new(table::RAFT, MEMBER_KEY),
                Bytes::from_static(b"1"),
            )]);
        }
        if metrics.state != ServerState::Leader {
            return;
        }
        // Every up member learns the log.
        let known: BTreeSet<String> = membership.nodes().map(|(_, n)| n.addr.clone()).collect();
        for name in &live {
            if !known.contains(name) {
                let Some(id) = self.raft_id_of(name) else { continue };
                info!(node = %name, "adding learner");
                if let Err(e) = self
                    .raft
                    .add_learner(id, BasicNode { addr: name.clone() }, false)
                    .await
                {
                    debug!(error = %e, "add learner");
                }
            }
        }
        // Replace voters down for too long; top the voter set up.
        let now = Instant::now();
        let voters: Vec<(u64, String)> = membership
            .voter_ids()
            .filter_map(|id| membership.get_node(&id).map(|n| (id, n.addr.clone())))
            .collect();
        let mut dead = BTreeSet::new();
        {
            let mut since = lock(&self.voter_down_since);
            for (id, name) in &voters {
                if self.name_up(name) {
                    since.remove(id);
                } else if now.duration_since(*since.entry(*id).or_insert(now))
                    >= self.config.voter_replace_after
                {
                    dead.insert(*id);
                }
            }
        }
        let alive_voters = voters.len() - dead.len();
        let want = self.config.voters.max(1).min(live.len());
        let mut add = BTreeSet::new();
        if alive_voters < want {
            let mut learners: Vec<(String, u64)> = membership
                .learner_ids()
                .filter_map(|id| membership.get_node(&id).map(|n| (n.addr.clone(), id)))
                .filter(|(n, _)| self.name_up(n))
                .collect();
            learners.sort();
            add = learners
                .into_iter()
                .take(want - alive_voters)
                .map(|(_, id)| id)
                .collect();
        }
        if !add.is_empty() || !dead.is_empty() {
            let mut batch = Vec::new();
            if !add.is_empty() {
                batch.push(ChangeMembers::AddVoterIds(add.clone()));
            }
            if !dead.is_empty() {
                batch.push(ChangeMembers::RemoveVoters(dead.clone()));
            }
            info!(add = ?add, remove = ?dead, "changing the voter set");
            if let Err(e) = self
                .raft
                .change_membership(ChangeMembers::Batch(batch), false)
                .await
            {
                debug!(error = %e, "change membership");
            }
        }
        // Rebalance to the live set.
        let current = self.map();
        let base = if current.epoch == 0 {
            ShardMap::new(self.config.count)
        } else {
            current.clone()
        };
        let next = plan(&base, &live);
        let wanted = current.epoch == 0 || (self.config.auto_rebalance && next.owners != current.owners);
        if wanted {
            let moves = base.moves_to(&next).len();
            info!(epoch = current.epoch, moves, "proposing a rebalance");
            self.propose(ShardCommand::SetOwners {
                expected_epoch: current.epoch,
                owners: next.owners,
            })
            .await;
        }
    }

    /// Plans a rebalance to the live members and proposes it now (through
    /// the leader if this node is a follower). Returns whether a new map
    /// committed (`false` also when the map was already balanced).
    pub(crate) async fn rebalance_now(&self) -> bool {
        let current = self.map();
        let base = if current.epoch == 0 {
            ShardMap::new(self.config.count)
        } else {
            current.clone()
        };
        let next = plan(&base, &self.live());
        if current.epoch != 0 && next.owners == current.owners {
            return false;
        }
        self.propose(ShardCommand::SetOwners {
            expected_epoch: current.epoch,
            owners: next.owners,
        })
        .await
    }

    /// Whether this node, not yet in any group, should bootstrap one now.
    ///
    /// Two groups that bootstrapped apart can never merge (their logs
    /// conflict at the same indexes), so every condition here guards
    /// against a second group: the node waits `bootstrap_delay` for
    /// membership to converge, it must be the smallest up member by name,
    /// at least `voters` members must be up (like Consul's
    /// `bootstrap_expect`: a minority side of a partition, or a node alone,
    /// never bootstraps), and no up member may already announce that it
    /// holds a group (a node joining an existing cluster waits to be added
    /// as a learner instead).
    fn may_bootstrap(&self, live: &BTreeSet<String>, current_term: u64) -> bool {
        current_term == 0
            && self.started.elapsed() >= self.config.bootstrap_delay
            && live.len() >= self.config.voters.max(1)
            && live.iter().next().is_some_and(|n| *n == self.local.name)
            && !live.iter().any(|n| {
                *n != self.local.name
                    && self
                        .registry
                        .remote_value(n, &EntryKey::new(table::RAFT, MEMBER_KEY))
                        .is_some()
            })
    }

    /// The Raft id `name` advertises in the registry (ours directly).
    fn raft_id_of(&self, name: &str) -> Option<u64> {
        if name == self.local.name {
            return Some(*self.raft.node_id());
        }
        let v = self
            .registry
            .remote_value(name, &EntryKey::new(table::RAFT, "id"))?;
        postcard::from_bytes(&v).ok()
    }

    /// A new map was applied: release shards that left us (or left and
    /// came back), and queue the shards we gained for handoff.
    fn on_committed(&self, c: &Committed) {
        let _gate = self.gate.write().unwrap_or_else(|p| p.into_inner());
        let new = &c.map;
        let me = self.local.name.as_str();
        let handler = self.handler();
        let mut released = Vec::new();
        let pending = {
            let mut own = lock(&self.ownership);
            own.epoch = new.epoch;
            let since = |s: u32| c.since.get(s as usize).copied().unwrap_or(new.epoch);
            let gone: Vec<u32> = own
                .shards
                .iter()
                .filter(|(s, h)| new.owner(**s) != Some(me) || since(**s) != h.since)
                .map(|(s, _)| *s)
                .collect();
            for s in gone {
                if own.shards.remove(&s).is_some_and(|h| h.own == Own::Active) {
                    released.push((s, new.owner(s).map(str::to_string)));
                }
            }
            for s in 0..new.shard_count() {
                if new.owner(s) == Some(me) && !own.shards.contains_key(&s) {
                    own.shards.insert(
                        s,
                        Held {
                            own: Own::Pending,
                            since: since(s),
                        },
                    );
                }
            }
            own.shards.values().any(|h| h.own == Own::Pending)
        };
        for (s, to) in released {
            if let Some(h) = &handler {
                h.shard_released(s, new.epoch);
            }
            // A wake-up for the new owner; it would ask again on its own
            // within `handoff_retry` if this is lost.
            if let Some(to) = to.filter(|t| t != me) {
                let body = serde_json::to_vec(&Released {
                    shard: s,
                    epoch: new.epoch,
                })
                .unwrap_or_default();
                let rpc = self.rpc.clone();
                let notice_timeout = self.config.propose_timeout;
                tokio::spawn(async move {
                    let _ = rpc
                        .call(&to, method::RELEASED, Bytes::from(body), notice_timeout)
                        .await;
                });
            }
        }
        if pending {
            self.handoff.notify_one();
        }
    }

    /// This node's answer to `STATUS`, consistent with its handoffs (taken
    /// under the gate, which every ownership change holds exclusively).
    fn status(&self) -> Status {
        let _gate = self.gate.read().unwrap_or_else(|p| p.into_inner());
        let own = lock(&self.ownership);
        Status {
            epoch: own.epoch,
            active: own
                .shards
                .iter()
                .filter(|(_, h)| h.own == Own::Active)
                .map(|(s, _)| *s)
                .collect(),
        }
    }

    /// Asks `name` for its status; `None` when it did not answer.
    async fn status_of(&self, name: &str) -> Option<Status> {
        match self
            .rpc
            .call(name, method::STATUS, Bytes::new(), self.config.query_timeout)
            .await
        {
            Ok(b) => match postcard::from_bytes::<Status>(&b) {
                Ok(st) => Some(st),
                Err(e) => {
                    warn!(node = %name, error = %e, "undecodable shard status");
                    None
                }
            },
            Err(e) => {
                debug!(node = %name, error = %e, "shard status");
                None
            }
        }
    }

    /// Catches up after start: reads a quorum-confirmed commit index from
    /// the leader (or, as leader, from itself), waits until it is
    /// applied, and records the epoch of the map at that point. Leaves
    /// `caught_up` unset (to be tried again) on any failure.
    async fn catch_up(&self) {
        let metrics = self.raft.metrics().borrow_watched().clone();
        if metrics
            .membership_config
            .membership()
            .voter_ids()
            .next()
            .is_none()
        {
            return; // no group yet, nothing committed to catch up to
        }
        let index = self.leader_read_index().await;
        let Some(index) = index else { return };
        if let Err(e) = self
            .raft
            .wait(Some(self.config.catch_up_wait))
            .applied_index_at_least(Some(index), "catch up with the shard map")
            .await
        {
            debug!(index, error = %e, "catching up");
            return;
        }
        // The state machine publishes before it reports the entries
        // applied, so this map is at least the one at `index`.
        let epoch = self.committed_rx.borrow().map.epoch;
        lock(&self.ownership).caught_up = Some(epoch);
        info!(index, epoch, "caught up with the committed shard map");
    }

    /// One handoff round: catch up if not yet, then take over every
    /// pending shard that no other up node accepts at an older epoch.
    async fn handoff_round(&self) {
        let (caught_up, pending) = {
            let own = lock(&self.ownership);
            (
                own.caught_up.is_some(),
                own.shards.values().any(|h| h.own == Own::Pending),
            )
        };
        if !caught_up {
            self.catch_up().await;
        }
        if !pending {
            return;
        }
        let others: Vec<String> = self
            .live()
            .into_iter()
            .filter(|n| *n != self.local.name)
            .collect();
        let replies: Vec<(String, Option<Status>)> =
            futures::future::join_all(others.into_iter().map(|n| async move {
                let st = self.status_of(&n).await;
                (n, st)
            }))
            .await;
        let _gate = self.gate.write().unwrap_or_else(|p| p.into_inner());
        let mut acquired = Vec::new();
        let epoch = {
            let mut own = lock(&self.ownership);
            let epoch = own.epoch;
            if own.caught_up.is_none_or(|target| epoch < target) {
                return;
            }
            // Why this is safe: a node that answered epoch >= ours without
            // the shard accepts it later only at a newer epoch, after the
            // same check against us, and we answer "active" from now on.
            // A restarted node re-reaches such an epoch before taking
            // anything (catch-up), so its answers before the crash stay
            // true.
            for (s, h) in own.shards.iter_mut().filter(|(_, h)| h.own == Own::Pending) {
                let free = replies.iter().all(|(name, st)| match st {
                    Some(st) => st.epoch >= epoch && !st.active.contains(s),
                    None => !self.name_up(name),
                });
                if free {
                    h.own = Own::Active;
                    acquired.push(*s);
                }
            }
            epoch
        };
        if !acquired.is_empty() {
            debug!(epoch, shards = ?acquired, "shards taken over");
            if let Some(h) = self.handler() {
                for s in acquired {
                    h.shard_acquired(s, epoch);
                }
            }
        }
    }

    /// Membership declared `node` down: it needs no longer answer for the
    /// shards we wait for.
    pub(crate) fn member_down(&self, _node: &NodeId) {
        self.handoff.notify_one();
    }
}

async fn duty_loop(shards: Weak<Shards>, stop: CancellationToken) {
    let every = match shards.upgrade() {
        Some(s) => s.config.duty_interval,
        None => return,
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => match shards.upgrade() {
                Some(s) => s.duties().await,
                None => return,
            },
        }
    }
}

async fn map_loop(shards: Weak<Shards>, stop: CancellationToken) {
    let mut rx = match shards.upgrade() {
        Some(s) => s.committed_rx.clone(),
        None => return,
    };
    let mut old = Committed::default();
    loop {
        let new = rx.borrow_and_update().clone();
        if new != old {
            match shards.upgrade() {
                Some(s) => {
                    s.on_committed(&new);
                    // Routers see the map only once ownership reflects it.
                    s.map_tx.send_replace(new.map.clone());
                }
                None => return,
            }
            old = new;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            r = rx.changed() => if r.is_err() { return },
        }
    }
}

async fn handoff_loop(shards: Weak<Shards>, wake: Arc<Notify>, stop: CancellationToken) {
    loop {
        let retry = match shards.upgrade() {
            Some(s) => {
                s.handoff_round().await;
                s.config.handoff_retry
            }
            None => return,
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(retry) => {}
        }
    }
}

struct ShardsRpc {
    shards: Weak<Shards>,
}

fn json<T: Serialize>(v: &T) -> Result<Bytes, String> {
    serde_json::to_vec(v).map(Bytes::from).map_err(|e| e.to_string())
}

impl RpcHandler for ShardsRpc {
    fn handle(&self, _from: NodeId, m: u8, payload: Bytes) -> RpcFuture {
        let shards = self.shards.clone();
        Box::pin(async move {
            let s = shards.upgrade().ok_or("shutting down")?;
            match m {
                method::APPEND => {
                    let req = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
                    json(&s.raft.append_entries(req).await.map_err(|e| e.to_string())?)
                }
                method::VOTE => {
                    let req = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
                    json(&s.raft.vote(req).await.map_err(|e| e.to_string())?)
                }
                method::SNAPSHOT => {
                    let req: SnapshotRpc = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
                    let snap = openraft::Snapshot {
                        meta: req.meta,
                        snapshot: req.data,
                    };
                    json(
                        &s.raft
                            .install_full_snapshot(req.vote, snap)
                            .await
                            .map_err(|e| e.to_string())?,
                    )
                }
                method::PROPOSE_TYPED => {
                    let cmd: ShardCommand = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
                    json(&s.serve_propose(cmd).await)
                }
                method::READ_INDEX_TYPED => json(&s.serve_read_index().await),
                method::ROUTE => s.serve_route(payload).await,
                method::ROUTE_BATCH => s.serve_route_batch(payload).await,
                method::RELEASED => {
                    // Only a wake-up: the handoff asks every node's status.
                    let _: Released = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
                    s.handoff.notify_one();
                    Ok(Bytes::new())
                }
                method::STATUS => postcard::to_allocvec(&s.status())
                    .map(Bytes::from)
                    .map_err(|e| e.to_string()),
                method::READ_INDEX => {
                    if !s.is_leader() {
                        return Err("not the leader".into());
                    }
                    let r = s
                        .raft
                        .ensure_linearizable(ReadPolicy::ReadIndex)
                        .await
                        .map_err(|e| e.to_string())?;
                    postcard::to_allocvec(&r.index())
                        .map(Bytes::from)
                        .map_err(|e| e.to_string())
                }
                method::PROPOSE => {
                    let cmd: ShardCommand = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
                    if !s.is_leader() {
                        return Err("not the leader".into());
                    }
                    let r = s.raft.client_write(cmd).await.map_err(|e| e.to_string())?;
                    json(&r.data)
                }
                other => {
                    warn!(method = other, "unknown rpc method");
                    Err(format!("unknown method {other}"))
                }
            }
        })
    }
}
