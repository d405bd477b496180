//! The shard service: owns the Raft node that commits the shard map and
//! the state every concern shares; starts the loops. The concerns live
//! beside it, one file each:
//! - `duties`: bootstrap, voter and learner upkeep, rebalance proposals;
//! - `handoff`: ownership following the committed map (release, take
//!   over, catch up after start);
//! - `lease`: the lease that fences acceptance (renewal, per-event check);
//! - `propose`: proposals and read-index through the leader;
//! - `route`: routing keyed events with typed outcomes;
//! - `serve`: RPC dispatch.
//!
//! Rules it keeps:
//! - No node's view changes before a commit: the map a node routes with is
//!   always the state machine's, published once `apply` committed it and
//!   this node's ownership reflects it.
//! - At no instant do two nodes accept events for one shard: acceptance
//!   needs a lease at the committed epoch; a new owner takes a shard once
//!   every other member released it or every older lease ended
//!   (`weft_proto::lease`).
//! - Handoff is driven by state, not by notices; a (re)started node takes
//!   nothing before it has caught up with the leader's read index.
//! - Every timeout and retry interval comes from `ShardConfig`.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock, Weak};

use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use openraft::{BasicNode, Raft, ServerState};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weft_proto::NodeId;
use weft_proto::lease::LeaseHolder;
use weft_proto::registry::{EntryKey, table};
use weft_proto::shard::ShardMap;

use super::duties::duty_loop;
pub use super::handler::ShardHandler;
use super::handoff::{Own, Ownership, handoff_loop};
use super::network::Network;
use super::serve::ShardsRpc;
use super::store::{Committed, LogStore, StateMachine, StoreError};
use super::types::{TypeConfig, raft_id};
use crate::config::ShardConfig;
use crate::membership::{MemberState, MemberTable};

use crate::registry::RegistryService;
use crate::rpc::Rpc;
use crate::stats::Stats;
use crate::sync::lock;

type ShardRaft = Raft<TypeConfig, StateMachine>;

/// The shard service of one node.
pub(crate) struct Shards {
    pub(super) local: NodeId,
    pub(super) raft: ShardRaft,
    pub(super) rpc: Arc<Rpc>,
    pub(super) stats: Arc<Stats>,
    pub(super) members: Arc<RwLock<MemberTable>>,
    pub(super) registry: Arc<RegistryService>,
    pub(super) config: ShardConfig,
    /// The public committed map, published after ownership reflects it.
    pub(super) map_tx: watch::Sender<ShardMap>,
    pub(super) map_rx: watch::Receiver<ShardMap>,
    /// What the state machine applied (map and `since` epochs).
    pub(super) committed_rx: watch::Receiver<Committed>,
    /// This node's lease (see `lease`).
    pub(super) lease: Mutex<LeaseHolder<Instant>>,
    /// Wakes the lease loop (a new map applied: renew at its epoch).
    pub(super) lease_wake: Arc<Notify>,
    /// Wakes the handoff loop (a release notice, a member down, a new
    /// map with shards to take over).
    pub(super) handoff: Arc<Notify>,
    pub(super) handler: RwLock<Option<Arc<dyn ShardHandler>>>,
    pub(super) ownership: Mutex<Ownership>,
    /// Readers: event deliveries (check ownership → `on_event`). Writer:
    /// ownership changes with their callbacks. So a handler never sees an
    /// event outside its `shard_acquired`/`shard_released` bracket.
    pub(super) gate: RwLock<()>,
    pub(super) voter_down_since: Mutex<HashMap<u64, Instant>>,
    pub(super) started: Instant,
    /// Whether this node announced (registry `RAFT/member`) that it holds
    /// the group's membership, so that nodes joining later never bootstrap
    /// a second group beside it.
    pub(super) announced_member: AtomicBool,
    /// Sender lanes, per-owner batches and the inbox (`outbox`, `inbox`).
    pub(super) pipeline: super::outbox::Pipeline,
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
            // A node back from a pause or a partition must not depose a
            // healthy leader: it asks before it bumps its term.
            enable_pre_vote: Some(true),
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
            config: p.config.clone(),
            map_tx,
            map_rx,
            committed_rx,
            lease: Mutex::new(LeaseHolder::new(p.config.lease_timing())),
            lease_wake: Arc::new(Notify::new()),
            handoff: Arc::new(Notify::new()),
            handler: RwLock::new(None),
            ownership: Mutex::new(Ownership::default()),
            gate: RwLock::new(()),
            voter_down_since: Mutex::new(HashMap::new()),
            started: Instant::now(),
            announced_member: AtomicBool::new(false),
            pipeline: Default::default(),
        });
        // A u64 always encodes; an empty id would read as garbage elsewhere.
        let id = postcard::to_allocvec(shards.raft.node_id()).expect("postcard encodes a u64");
        p.registry
            .put_many(vec![(EntryKey::new(table::RAFT, "id"), Bytes::from(id))]);
        p.rpc.set_handler(Arc::new(ShardsRpc {
            shards: Arc::downgrade(&shards),
        }));
        tokio::spawn(duty_loop(Arc::downgrade(&shards), p.stop.clone()));
        tokio::spawn(map_loop(Arc::downgrade(&shards), p.stop.clone()));
        tokio::spawn(super::lease::lease_loop(Arc::downgrade(&shards), p.stop.clone()));
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
        let _gate = crate::sync::write(&self.gate);
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
        *crate::sync::write(&self.handler) = Some(handler);
    }

    pub(super) fn ownership(&self) -> std::sync::MutexGuard<'_, Ownership> {
        lock(&self.ownership)
    }

    pub(super) fn lease(&self) -> std::sync::MutexGuard<'_, LeaseHolder<Instant>> {
        lock(&self.lease)
    }

    pub(super) fn handler(&self) -> Option<Arc<dyn ShardHandler>> {
        crate::sync::read(&self.handler).clone()
    }

    /// Up members by name (this node included).
    pub(super) fn live(&self) -> BTreeSet<String> {
        let table = crate::sync::read(&self.members);
        let mut live: BTreeSet<String> = table
            .list()
            .into_iter()
            .filter(|m| m.state != MemberState::Down)
            .map(|m| m.name)
            .collect();
        live.insert(self.local.name.clone());
        live
    }

    pub(super) fn name_up(&self, name: &str) -> bool {
        name == self.local.name
            || crate::sync::read(&self.members)
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
        self.raft_members(true)
    }

    /// Learner names of the current Raft membership.
    pub(crate) fn learners(&self) -> Vec<String> {
        self.raft_members(false)
    }

    /// Names of the voters (`true`) or learners, sorted.
    fn raft_members(&self, voters: bool) -> Vec<String> {
        let m = self.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        let ids: Vec<u64> = if voters {
            membership.voter_ids().collect()
        } else {
            membership.learner_ids().collect()
        };
        let mut v: Vec<String> = ids
            .iter()
            .filter_map(|id| membership.get_node(id).map(|n: &BasicNode| n.addr.clone()))
            .collect();
        v.sort();
        v
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
