//! Leader duties of the shard service: bootstrap of the group, voter and
//! learner upkeep, and rebalance proposals. Runs every `duty_interval`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use openraft::{BasicNode, ChangeMembers, ServerState};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};
use weft_proto::registry::{EntryKey, table};
use weft_proto::shard::{ShardMap, plan};

use super::service::Shards;
use super::types::ShardCommand;
use crate::sync::lock;

/// Registry key (table `RAFT`) a node puts once it holds the shard map
/// group's membership.
pub(super) const MEMBER_KEY: &str = "member";

impl Shards {
    /// One round of leader duties (or bootstrap).
    pub(super) async fn duties(&self) {
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
        let learners: Vec<(u64, String)> = membership
            .learner_ids()
            .filter_map(|id| membership.get_node(&id).map(|n| (id, n.addr.clone())))
            .collect();
        let (dead, dead_learners) = {
            let mut since = lock(&self.voter_down_since);
            long_down(
                &voters,
                &learners,
                |name| self.name_up(name),
                &mut since,
                now,
                self.config.voter_replace_after,
            )
        };
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
        if !add.is_empty() || !dead.is_empty() || !dead_learners.is_empty() {
            let mut batch = Vec::new();
            if !add.is_empty() {
                batch.push(ChangeMembers::AddVoterIds(add.clone()));
            }
            if !dead.is_empty() {
                batch.push(ChangeMembers::RemoveVoters(dead.clone()));
            }
            if !dead_learners.is_empty() {
                batch.push(ChangeMembers::RemoveNodes(dead_learners.clone()));
            }
            info!(add = ?add, remove = ?dead, remove_learners = ?dead_learners, "changing the raft membership");
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
    pub(super) fn may_bootstrap(&self, live: &BTreeSet<String>, current_term: u64) -> bool {
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
    pub(super) fn raft_id_of(&self, name: &str) -> Option<u64> {
        if name == self.local.name {
            return Some(*self.raft.node_id());
        }
        let v = self
            .registry
            .remote_value(name, &EntryKey::new(table::RAFT, "id"))?;
        postcard::from_bytes(&v).ok()
    }
}

/// The members of the Raft group down for at least `replace_after`:
/// `(voters, learners)`. `since` remembers when each was first seen down
/// (forgotten once up again or out of the group).
pub(super) fn long_down(
    voters: &[(u64, String)],
    learners: &[(u64, String)],
    up: impl Fn(&str) -> bool,
    since: &mut HashMap<u64, Instant>,
    now: Instant,
    replace_after: Duration,
) -> (BTreeSet<u64>, BTreeSet<u64>) {
    // Learners down as long leave the group too: the leader would otherwise
    // replicate to them (and log about it) for ever. A node that comes back
    // is added again as a learner.
    let known: BTreeSet<u64> = voters.iter().chain(learners).map(|(id, _)| *id).collect();
    since.retain(|id, _| known.contains(id));
    let mut down = |members: &[(u64, String)]| {
        let mut out = BTreeSet::new();
        for (id, name) in members {
            if up(name) {
                since.remove(id);
            } else if now.duration_since(*since.entry(*id).or_insert(now)) >= replace_after {
                out.insert(*id);
            }
        }
        out
    };
    let dead_voters = down(voters);
    let dead_learners = down(learners);
    (dead_voters, dead_learners)
}

pub(super) async fn duty_loop(shards: Weak<Shards>, stop: CancellationToken) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn members(names: &[(u64, &str)]) -> Vec<(u64, String)> {
        names.iter().map(|(id, n)| (*id, n.to_string())).collect()
    }

    #[test]
    fn members_down_long_enough_leave_voters_and_learners_alike() {
        let voters = members(&[(1, "n1"), (2, "n2"), (3, "n3")]);
        let learners = members(&[(4, "n4"), (5, "n5")]);
        let down = |n: &str| n == "n2" || n == "n4";
        let mut since = HashMap::new();
        let t0 = Instant::now();
        let wait = Duration::from_secs(10);
        let (v, l) = long_down(&voters, &learners, |n| !down(n), &mut since, t0, wait);
        assert!(v.is_empty() && l.is_empty(), "not down long enough yet");
        let (v, l) = long_down(&voters, &learners, |n| !down(n), &mut since, t0 + wait, wait);
        assert_eq!(v, BTreeSet::from([2]));
        assert_eq!(l, BTreeSet::from([4]));
    }

    #[test]
    fn coming_back_resets_the_clock_and_leaving_the_group_forgets() {
        let voters = members(&[(1, "n1")]);
        let learners = members(&[(4, "n4")]);
        let mut since = HashMap::new();
        let t0 = Instant::now();
        let wait = Duration::from_secs(10);
        long_down(&voters, &learners, |n| n != "n4", &mut since, t0, wait);
        // Up again in between: the clock starts over.
        long_down(&voters, &learners, |_| true, &mut since, t0 + wait / 2, wait);
        let (_, l) = long_down(&voters, &learners, |n| n != "n4", &mut since, t0 + wait, wait);
        assert!(l.is_empty(), "down since t0 + wait only");
        // Removed from the group: no longer tracked.
        long_down(&voters, &[], |n| n != "n4", &mut since, t0 + wait, wait);
        assert!(!since.contains_key(&4));
    }
}
