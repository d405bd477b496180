#![allow(dead_code)]
//! The split-brain checker shared by the partition tests (the turmoil
//! simulation and the network-namespace process test): over every
//! accepted event, do two nodes ever accept events for one shard at the
//! same moment, and does a healed node accept at an epoch older than the
//! one that had moved a shard away from it.
//!
//! Definitions:
//!
//! - A **stint** is what one node accepted for one shard inside one
//!   acquire → release bracket of its handler (a crash ends the bracket),
//!   reduced to the time interval from its first to its last accepted
//!   event. Stints of *different* nodes on one shard must not intersect.
//!   An **overlapping acceptance** is an event accepted inside the interval
//!   of another node's stint on the same shard: for a while two nodes
//!   accepted events for that shard, so both wrote its per-key state. (A
//!   clean handoff, where the new owner's first event comes after the old
//!   owner's last, counts nothing, however long the gap.)
//! - **Stale after heal**: when a partition heals, each shard that the
//!   committed maps had moved away from the cut-off node has a *moving
//!   epoch*: the first committed epoch newer than the cut-off node's map
//!   that does not give it the shard. An event for that shard accepted by
//!   the cut-off node after the heal (and before the next heal) at an epoch
//!   older than the moving epoch is counted.

use std::collections::BTreeMap;
use std::time::Duration;

/// One accepted event.
#[derive(Clone, Debug)]
pub struct Accepted {
    /// The node that accepted it.
    pub node: String,
    /// Which acquire → release bracket of that node it fell in (any value
    /// unique per node and shard); `None`: outside any bracket.
    pub bracket: Option<(u64, u64)>,
    pub shard: u32,
    /// The accepting node's committed map epoch (what its ack carries).
    pub epoch: u64,
    /// When it was accepted, on the clock every node shares.
    pub at: Duration,
}

/// `node` accepted `shard` at `at` inside `other`'s stint.
#[derive(Clone, Debug)]
pub struct Overlap {
    pub shard: u32,
    pub node: String,
    pub at: Duration,
    pub epoch: u64,
    pub other: String,
    pub other_from: Duration,
    pub other_to: Duration,
    pub other_epoch: u64,
}

impl std::fmt::Display for Overlap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "shard {}: {} accepted at {:?} (epoch {}) while {} accepted it from {:?} to {:?} (last at epoch {})",
            self.shard,
            self.node,
            self.at,
            self.epoch,
            self.other,
            self.other_from,
            self.other_to,
            self.other_epoch
        )
    }
}

/// A stint's identity: (shard, node, bracket).
type StintKey<'a> = (u32, &'a str, Option<(u64, u64)>);
/// A stint's first and last acceptance, and the epoch of the last.
type Stint = (Duration, Duration, u64);

/// Every overlapping acceptance in `events` (each event counted once).
pub fn overlaps(events: &[Accepted]) -> Vec<Overlap> {
    let mut stints: BTreeMap<StintKey<'_>, Stint> = BTreeMap::new();
    for e in events {
        let s = stints
            .entry((e.shard, e.node.as_str(), e.bracket))
            .or_insert((e.at, e.at, e.epoch));
        s.0 = s.0.min(e.at);
        if e.at >= s.1 {
            s.1 = e.at;
            s.2 = e.epoch;
        }
    }
    let mut out = Vec::new();
    for e in events {
        let hit = stints
            .range((e.shard, "", None)..)
            .take_while(|((shard, _, _), _)| *shard == e.shard)
            .find(|((_, node, _), (from, to, _))| *node != e.node && *from <= e.at && e.at <= *to);
        if let Some(((_, node, _), (from, to, epoch))) = hit {
            out.push(Overlap {
                shard: e.shard,
                node: e.node.clone(),
                at: e.at,
                epoch: e.epoch,
                other: node.to_string(),
                other_from: *from,
                other_to: *to,
                other_epoch: *epoch,
            });
        }
    }
    out
}

/// A healed partition.
#[derive(Clone, Debug)]
pub struct Heal {
    /// When the network was repaired.
    pub at: Duration,
    /// The node that had been cut off.
    pub victim: String,
    /// The victim's committed map epoch just before the heal.
    pub victim_epoch: u64,
}

/// Events accepted by a healed victim after the heal at an epoch older than
/// the one that had moved their shard away from it. `maps` holds the owner
/// of every shard per committed epoch (as many epochs as were observed);
/// a heal whose victim epoch is not in it is skipped.
pub fn stale_after_heal(
    events: &[Accepted],
    heals: &[Heal],
    maps: &BTreeMap<u64, Vec<Option<String>>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (h, heal) in heals.iter().enumerate() {
        let Some(old) = maps.get(&heal.victim_epoch) else {
            continue;
        };
        let until = heals.get(h + 1).map_or(Duration::MAX, |n| n.at);
        let victim = Some(heal.victim.as_str());
        for (shard, owner) in old.iter().enumerate() {
            if owner.as_deref() != victim {
                continue;
            }
            let moving = maps
                .range(heal.victim_epoch + 1..)
                .find(|(_, m)| m.get(shard).and_then(|o| o.as_deref()) != victim)
                .map(|(e, _)| *e);
            let Some(moving) = moving else { continue };
            for e in events {
                if e.node == heal.victim
                    && e.shard as usize == shard
                    && e.at > heal.at
                    && e.at < until
                    && e.epoch < moving
                {
                    out.push(format!(
                        "{} accepted shard {shard} at {:?} (epoch {}) after the heal at {:?}; epoch {moving} had moved it away",
                        e.node, e.at, e.epoch, heal.at
                    ));
                }
            }
        }
    }
    out
}
