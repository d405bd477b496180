//! Sharded keyed routing over a Raft-committed shard map.
//!
//! - [`types`]: the Raft type configuration and the shard commands.
//! - [`store`]: the durable log and the state machine (the map).
//! - `network`: Raft RPCs over weft links.
//! - [`service`]: Raft lifecycle, voter upkeep, rebalance proposals,
//!   handoff.
//! - [`route`]: routing keyed events to owners, with typed outcomes
//!   ([`RouteAck`] names the accepting node and epoch; [`RouteError`] and
//!   [`RouteFailure`] say what happened).

mod lease;
pub(crate) mod network;
mod propose;
pub mod route;
pub mod service;
pub mod store;
pub mod types;

pub use route::{RouteAck, RouteError, RouteFailure};
pub use service::ShardHandler;
