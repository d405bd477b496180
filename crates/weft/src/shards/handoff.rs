//! Handoff: how a node's ownership follows the committed map. Releases
//! what a new map moved away, and takes over what it gained once every
//! other member released it or every older lease certainly ended; catches
//! up with the leader after start before taking anything.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use weft_proto::NodeId;

use super::network::method;
use super::service::Shards;
use super::store::Committed;
use crate::sync::lock;

#[derive(Serialize, Deserialize)]
pub(super) struct Released {
    pub(super) shard: u32,
    pub(super) epoch: u64,
}

/// A node's answer to `STATUS`: the epoch of the map its ownership
/// reflects and the shards it accepts events for.
#[derive(Serialize, Deserialize, Debug, Default)]
pub(super) struct Status {
    pub(super) epoch: u64,
    pub(super) active: Vec<u32>,
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
    pub(super) since: u64,
    /// When this node applied the map that gave it the shard (its own
    /// clock): every older owner's lease has certainly ended
    /// `successor_wait` after it.
    pub(super) pending_at: Instant,
}

#[derive(Default)]
pub(super) struct Ownership {
    /// Shards this node owns in the applied map, and whether active.
    pub(super) shards: BTreeMap<u32, Held>,
    /// The map the ownership reflects.
    pub(super) epoch: u64,
    /// Once caught up after start: the epoch of the committed map at the
    /// leader's read index. No shard is taken at an epoch below it.
    pub(super) caught_up: Option<u64>,
}

impl Shards {
    /// A new map was applied: release shards that left us (or left and
    /// came back), and queue the shards we gained for handoff.
    pub(super) fn on_committed(&self, c: &Committed) {
        let _gate = crate::sync::write(&self.gate);
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
                            pending_at: Instant::now(),
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
                // Two integers always serialise; never send an empty notice.
                let body = serde_json::to_vec(&Released {
                    shard: s,
                    epoch: new.epoch,
                })
                .expect("a release notice serialises");
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
        self.lease_wake.notify_one();
    }

    /// This node's answer to `STATUS`, consistent with its handoffs (taken
    /// under the gate, which every ownership change holds exclusively).
    pub(super) fn status(&self) -> Status {
        let _gate = crate::sync::read(&self.gate);
        let own = lock(&self.ownership);
        let mut active: Vec<u32> = own
            .shards
            .iter()
            .filter(|(_, h)| h.own == Own::Active)
            .map(|(s, _)| *s)
            .collect();
        // An inbox consumer still processing events of a released shard
        // keeps it "active" here, so that a clean handoff never lets two
        // consumers process one shard at once.
        if let Some(inbox) = self.pipeline.inbox() {
            active.extend(inbox.busy_shards());
            active.sort_unstable();
            active.dedup();
        }
        Status {
            epoch: own.epoch,
            active,
        }
    }

    /// Asks `name` for its status; `None` when it did not answer.
    pub(super) async fn status_of(&self, name: &str) -> Option<Status> {
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
    pub(super) async fn catch_up(&self) {
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
    pub(super) async fn handoff_round(&self) {
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
        // Every member that might still hold a lease, down ones included:
        // "down" is membership's opinion, and a node cut off by a partition
        // looks exactly like a dead one.
        let others: Vec<String> = crate::sync::read(&self.members)
            .list()
            .into_iter()
            .map(|m| m.name)
            .filter(|n| *n != self.local.name)
            .collect();
        let replies: Vec<(String, Option<Status>)> =
            futures::future::join_all(others.into_iter().map(|n| async move {
                let st = self.status_of(&n).await;
                (n, st)
            }))
            .await;
        let _gate = crate::sync::write(&self.gate);
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
            // true. A node that did not answer (down, cut off, old) may
            // still accept the shard on its lease at an older epoch, but
            // not beyond `successor_wait` after we applied the map that
            // gave us the shard (see `weft_proto::lease`).
            let now = Instant::now();
            let wait = self.config.lease_timing().successor_wait();
            for (s, h) in own.shards.iter_mut().filter(|(_, h)| h.own == Own::Pending) {
                let free = may_take(*s, epoch, &replies, h.pending_at, now, wait);
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

/// Whether the pending `shard` may be taken over now, by a node whose
/// map is at `epoch` and that applied the map giving it the shard at
/// `pending_at`: every other member answered `STATUS` with an epoch at
/// least ours and without the shard, or `wait` (the lease successor
/// wait) has passed since `pending_at`.
pub(super) fn may_take(
    shard: u32,
    epoch: u64,
    replies: &[(String, Option<Status>)],
    pending_at: Instant,
    now: Instant,
    wait: Duration,
) -> bool {
    let released = replies.iter().all(|(_, st)| match st {
        Some(st) => st.epoch >= epoch && !st.active.contains(&shard),
        None => false,
    });
    released || now >= pending_at + wait
}

pub(super) async fn handoff_loop(shards: Weak<Shards>, wake: Arc<Notify>, stop: CancellationToken) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn st(epoch: u64, active: &[u32]) -> Option<Status> {
        Some(Status {
            epoch,
            active: active.to_vec(),
        })
    }

    #[test]
    fn taken_when_everyone_released_it_at_our_epoch_or_later() {
        let t0 = Instant::now();
        let wait = Duration::from_secs(1);
        let replies = vec![("n2".to_string(), st(5, &[1])), ("n3".to_string(), st(6, &[]))];
        assert!(may_take(7, 5, &replies, t0, t0, wait));
        assert!(
            !may_take(1, 5, &replies, t0, t0, wait),
            "n2 still accepts shard 1"
        );
    }

    #[test]
    fn an_answer_at_an_older_epoch_or_no_answer_waits_for_the_leases() {
        let t0 = Instant::now();
        let wait = Duration::from_secs(1);
        let behind = vec![("n2".to_string(), st(4, &[]))];
        assert!(
            !may_take(3, 5, &behind, t0, t0, wait),
            "n2 has not applied epoch 5"
        );
        let silent = vec![("n2".to_string(), None)];
        assert!(!may_take(3, 5, &silent, t0, t0 + wait / 2, wait));
        assert!(
            may_take(3, 5, &silent, t0, t0 + wait, wait),
            "every older lease ended"
        );
        assert!(may_take(3, 5, &behind, t0, t0 + wait, wait));
    }
}
