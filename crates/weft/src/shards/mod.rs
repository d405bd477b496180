//! Sharded keyed routing over a Raft-committed shard map.
//!
//! - [`types`]: the Raft type configuration and the shard commands.
//! - [`store`]: the durable log and the state machine (the map).
//! - `network`: Raft RPCs over weft links.
//! - [`service`]: Raft lifecycle, voter upkeep, rebalance proposals,
//!   handoff, routing.

pub(crate) mod network;
pub mod service;
pub mod store;
pub mod types;

pub use service::{RouteAck, RouteError, ShardHandler};
