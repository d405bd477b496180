//! Sharded keyed routing over a Raft-committed shard map.
//!
//! - [`types`]: the Raft type configuration and the shard commands.
//! - [`store`]: the durable log and the state machine (the map).
//! - `network`: Raft RPCs over weft links.
//! - [`service`]: Raft lifecycle, voter upkeep, rebalance proposals,
//!   handoff.
//! - `outbox`: the sender side: per-shard lanes (order, retries) and
//!   per-owner `ROUTE_BATCH` requests.
//! - [`inbox`]: the owner side for an async consumer: a bounded queue
//!   consumed as a `Stream`, acknowledged after processing.
//! - `batch`: the `ROUTE_BATCH` body codec.
//! - [`route`]: routing keyed events to owners, with typed outcomes
//!   ([`RouteAck`] names the accepting node and epoch; [`RouteError`] and
//!   [`RouteFailure`] say what happened).

mod batch;
pub mod inbox;
pub(crate) mod network;
mod outbox;
mod propose;
pub mod route;
pub mod service;
pub mod store;
pub mod types;

pub use inbox::{ShardDelivery, ShardEvent, ShardInbox};
pub use route::{RouteAck, RouteError, RouteFailure};
pub use service::ShardHandler;
