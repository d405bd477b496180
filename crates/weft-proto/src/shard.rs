//! Sharded routing, sans-IO: the shard map, the key hash, and the
//! rebalance planner.
//!
//! A cluster has a fixed number of shards `S` chosen at creation. The
//! committed [`ShardMap`] names an owner per shard and carries an epoch
//! that grows with every committed change. A key's shard is
//! `fnv1a64(key) % S` ([`shard_of`]); FNV-1a is tiny, stable across
//! platforms and releases, and documented in `docs/wire.md`.
//!
//! [`plan`] computes a balanced assignment that moves as few shards as
//! possible: every live node ends with ⌊S/N⌋ or ⌈S/N⌉ shards; a shard
//! moves only if its owner is gone or holds more than its quota.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The FNV-1a 64-bit hash of `bytes` (offset basis 0xcbf29ce484222325,
/// prime 0x100000001b3).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = Fnv1a::default();
    std::hash::Hasher::write(&mut h, bytes);
    std::hash::Hasher::finish(&h)
}

/// FNV-1a as a [`std::hash::Hasher`], for maps keyed by short names that
/// only authenticated members choose (cheaper than SipHash, no defence
/// against chosen keys). [`fnv1a64`] is this hasher over one slice.
#[derive(Clone, Copy, Debug)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The shard of `key` among `shards` shards.
pub fn shard_of(key: &[u8], shards: u32) -> u32 {
    (fnv1a64(key) % u64::from(shards.max(1))) as u32
}

/// The committed assignment of shards to nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMap {
    /// Grows by one with every committed change; 0 before the first.
    pub epoch: u64,
    /// Owner node name of each shard (`None`: unassigned).
    pub owners: Vec<Option<String>>,
}

impl ShardMap {
    /// An unassigned map of `shards` shards at epoch 0.
    pub fn new(shards: u32) -> Self {
        Self {
            epoch: 0,
            owners: vec![None; shards as usize],
        }
    }

    /// Number of shards.
    pub fn shard_count(&self) -> u32 {
        self.owners.len() as u32
    }

    /// The owner of `shard`, if assigned.
    pub fn owner(&self, shard: u32) -> Option<&str> {
        self.owners.get(shard as usize).and_then(|o| o.as_deref())
    }

    /// The owner of `key`'s shard.
    pub fn owner_of_key(&self, key: &[u8]) -> (u32, Option<&str>) {
        let s = shard_of(key, self.shard_count());
        (s, self.owner(s))
    }

    /// Shards per owner.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut c = BTreeMap::new();
        for o in self.owners.iter().flatten() {
            *c.entry(o.clone()).or_default() += 1;
        }
        c
    }

    /// Shards whose owner differs between `self` and `other`.
    pub fn moves_to(&self, other: &ShardMap) -> Vec<u32> {
        (0..self.owners.len().max(other.owners.len()))
            .filter(|i| self.owners.get(*i) != other.owners.get(*i))
            .map(|i| i as u32)
            .collect()
    }
}

/// The balanced assignment for `live` nodes closest to `current`: the
/// owners of the returned map (the epoch is left unchanged; the state
/// machine bumps it when committing). With no live node every shard is
/// unassigned.
pub fn plan(current: &ShardMap, live: &BTreeSet<String>) -> ShardMap {
    let s = current.owners.len();
    let mut next = current.clone();
    if live.is_empty() {
        next.owners = vec![None; s];
        return next;
    }
    let n = live.len();
    let (base, extra) = (s / n, s % n);
    // Who keeps what: count current holdings of live nodes.
    let mut held: BTreeMap<&String, Vec<usize>> = live.iter().map(|l| (l, Vec::new())).collect();
    let mut pool: Vec<usize> = Vec::new();
    for (i, o) in current.owners.iter().enumerate() {
        match o.as_ref().and_then(|o| held.get_mut(o)) {
            Some(v) => v.push(i),
            None => pool.push(i),
        }
    }
    // The `extra` nodes holding the most get ⌈S/N⌉ (ties: smaller name),
    // so as few shards as possible have to move.
    let mut order: Vec<&String> = live.iter().collect();
    order.sort_by(|a, b| held[*b].len().cmp(&held[*a].len()).then(a.cmp(b)));
    let quota: BTreeMap<&String, usize> = order
        .iter()
        .enumerate()
        .map(|(rank, node)| (*node, base + usize::from(rank < extra)))
        .collect();
    // Over-quota nodes give up their highest shards.
    for (node, shards) in held.iter_mut() {
        let q = quota[node];
        while shards.len() > q {
            if let Some(i) = shards.pop() {
                pool.push(i);
            }
        }
    }
    pool.sort_unstable();
    // Under-quota nodes take from the pool, least loaded first.
    let mut pool = pool.into_iter();
    loop {
        let mut needy: Vec<(&String, usize)> = held
            .iter()
            .filter(|(n, v)| v.len() < quota[*n])
            .map(|(n, v)| (*n, v.len()))
            .collect();
        if needy.is_empty() {
            break;
        }
        needy.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(b.0)));
        let (node, _) = needy[0];
        let Some(i) = pool.next() else { break };
        if let Some(v) = held.get_mut(node) {
            v.push(i);
        }
    }
    for (node, shards) in held {
        for i in shards {
            next.owners[i] = Some(node.clone());
        }
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(n: usize) -> BTreeSet<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn hash_is_fnv1a() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(shard_of(b"user-42", 64), (fnv1a64(b"user-42") % 64) as u32);
    }

    #[test]
    fn three_nodes_nine_shards_then_a_fourth() {
        let m = plan(&ShardMap::new(9), &names(3));
        assert_eq!(m.counts().values().copied().collect::<Vec<_>>(), vec![3, 3, 3]);
        let m4 = plan(&m, &names(4));
        let moved = m.moves_to(&m4);
        assert_eq!(moved.len(), 2, "a joiner takes ⌊9/4⌋ = 2 shards");
        for s in &moved {
            assert_eq!(m4.owner(*s), Some("n4"), "only moves to the joiner");
        }
        let counts = m4.counts();
        assert_eq!(counts["n4"], 2);
        assert!(counts.values().all(|c| *c == 2 || *c == 3));
    }

    proptest! {
        #[test]
        fn a_join_moves_exactly_the_joiners_share(s in 1u32..200, n in 1usize..12) {
            let before = plan(&ShardMap::new(s), &names(n));
            let after = plan(&before, &names(n + 1));
            let joiner = format!("n{}", n + 1);
            let moved = before.moves_to(&after);
            let got = after.counts().get(&joiner).copied().unwrap_or(0);
            let (lo, hi) = (s as usize / (n + 1), (s as usize).div_ceil(n + 1));
            prop_assert!(got == lo || got == hi, "joiner got {got}, want {lo} or {hi}");
            prop_assert_eq!(moved.len(), got, "nothing but the joiner's share moves");
            for m in moved {
                prop_assert_eq!(after.owner(m), Some(joiner.as_str()));
            }
            for c in after.counts().values() {
                prop_assert!(*c == lo || *c == hi);
            }
        }

        #[test]
        fn a_leave_moves_only_the_leavers_shards_to_the_least_loaded(s in 1u32..200, n in 2usize..12, leaver in 1usize..12) {
            let leaver = format!("n{}", 1 + (leaver - 1) % n);
            let before = plan(&ShardMap::new(s), &names(n));
            let mut live = names(n);
            live.remove(&leaver);
            let after = plan(&before, &live);
            let moved = before.moves_to(&after);
            for m in &moved {
                prop_assert_eq!(before.owner(*m), Some(leaver.as_str()), "only the leaver's shards move");
            }
            prop_assert_eq!(moved.len(), before.counts().get(&leaver).copied().unwrap_or(0));
            let (lo, hi) = (s as usize / (n - 1), (s as usize).div_ceil(n - 1));
            for c in after.counts().values() {
                prop_assert!(*c == lo || *c == hi, "balanced after the leave");
            }
            prop_assert!(after.owners.iter().all(Option::is_some));
        }

        #[test]
        fn any_change_is_balanced_and_stable(s in 1u32..100, a in 1usize..8, b in 1usize..8) {
            let first = plan(&ShardMap::new(s), &names(a));
            let second = plan(&first, &names(b));
            let (lo, hi) = (s as usize / b, (s as usize).div_ceil(b));
            for c in second.counts().values() {
                prop_assert!(*c == lo || *c == hi);
            }
            prop_assert_eq!(plan(&second, &names(b)), second.clone(), "a balanced map is a fixed point");
        }
    }
}
