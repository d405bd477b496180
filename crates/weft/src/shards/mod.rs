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
//! - `outbox`: the sender side: per-shard lanes (order, retries) and
//!   per-owner `ROUTE_BATCH` requests.
//! - [`inbox`]: the owner side for an async consumer: a bounded queue
//!   consumed as a `Stream`, acknowledged after processing.
//! - `batch`: the `ROUTE_BATCH` body codec.
//! - [`route`]: routing keyed events to owners, with typed outcomes
//!   ([`RouteAck`] names the accepting node and epoch; [`RouteError`] and
//!   [`RouteFailure`] say what happened).

mod batch;
mod duties;
mod handler;
mod handoff;
pub mod inbox;
mod lease;
pub(crate) mod network;
mod outbox;
mod propose;
pub mod route;
mod serve;
pub mod service;
pub mod store;
pub mod types;

pub use handler::ShardHandler;
pub use inbox::{ShardDelivery, ShardEvent, ShardInbox};
pub use route::{RouteAck, RouteError, RouteFailure};
