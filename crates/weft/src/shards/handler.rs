//! The synchronous consumer of a node's shard events.

use bytes::Bytes;

/// Receives the events of the shards this node owns.
///
/// Contract: `on_event` runs on a runtime task and must not block for
/// long; the sender gets its acknowledgement when it returns (so delivery
/// is at least once: a retry after a lost acknowledgement delivers again).
/// `shard_acquired` is called before the first event of a shard,
/// `shard_released` after its last one. A shard is acquired only after
/// this node caught up with the committed map since its start and every
/// other member released it (or its lease there certainly ended); a shard
/// that leaves the node and comes back is released and acquired again (at
/// the newer epoch). Events arrive only while this node holds a lease
/// (see `weft_proto::lease`): a node cut off from the shard map leader
/// gets no event once its lease ran out, although the shard stays
/// acquired until it applies the map that moved it (then
/// `shard_released`). So at no instant do two nodes' handlers get events
/// of one shard; state a handler keeps per shard should be reloaded on
/// `shard_acquired`, since another node may have owned the shard since.
pub trait ShardHandler: Send + Sync + 'static {
    /// This node now owns `shard` (at `epoch`).
    fn shard_acquired(&self, _shard: u32, _epoch: u64) {}
    /// This node no longer owns `shard` (from `epoch` on).
    fn shard_released(&self, _shard: u32, _epoch: u64) {}
    /// An event routed to `shard`.
    fn on_event(&self, shard: u32, key: &[u8], event: Bytes);
}
