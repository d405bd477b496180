//! Sharded keyed routing over a Raft-committed shard map.
//!
//! - [`types`]: the Raft type configuration and the shard commands.
//! - [`store`]: the durable log and the state machine (the map).
//! - `network`: Raft RPCs over weft links.
//! - [`service`]: the Raft node and the shared state; starts the loops.
//! - `duties`: bootstrap, voter and learner upkeep, rebalance proposals.
//! - `handoff`: ownership following the committed map.
//! - `lease`: the lease that fences acceptance.
//! - `serve`: RPC dispatch.
//! - [`route`]: routing keyed events to owners, with typed outcomes
//!   ([`RouteAck`] names the accepting node and epoch; [`RouteError`] and
//!   [`RouteFailure`] say what happened).

mod duties;
mod handler;
mod handoff;
mod lease;
pub(crate) mod network;
mod propose;
pub mod route;
mod serve;
pub mod service;
pub mod store;
pub mod types;

pub use handler::ShardHandler;
pub use route::{RouteAck, RouteError, RouteFailure};
