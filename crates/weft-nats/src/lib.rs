//! weft-nats: the NATS client protocol on top of a weft node, so that
//! existing NATS clients in any language get cluster-wide pub/sub.
//!
//! ```no_run
//! use weft::{Node, NodeConfig, Secret};
//! use weft_nats::{NatsConfig, NatsServer};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::start(NodeConfig::new("n1", Secret::new(*b"0123456789abcdef"))).await?;
//! let nats = NatsServer::start(node.clone(), NatsConfig::new("127.0.0.1:4222".parse()?)).await?;
//! // ... nats://127.0.0.1:4222 now serves NATS clients ...
//! nats.shutdown(std::time::Duration::from_secs(1)).await;
//! node.shutdown(std::time::Duration::from_secs(1)).await;
//! # Ok(()) }
//! ```
//!
//! Layout: [`proto`] is the protocol without I/O (incremental zero-copy
//! parser, encoders, header blocks, INFO/CONNECT JSON); [`NatsServer`]
//! accepts clients and runs one reader task and one writer task for each.
//! Each NATS `SUB` is one direct weft subscription
//! ([`weft::PubSub::subscribe_direct`]) whose sink encodes its messages into
//! the client's outbound buffer on the delivering task; each `PUB`/`HPUB`
//! is one weft publish. See `docs/nats.md`
//! for what is supported, the limits and the decisions.

mod client;
pub mod config;
mod ctx;
pub mod echo;
pub mod error;
pub mod proto;
mod refuse;
pub mod server;
pub mod stats;

pub use config::{Auth, NatsConfig};
pub use error::NatsError;
pub use server::NatsServer;
pub use stats::{Metric, MetricKind, NatsStats, NatsStatsSnapshot, RefuseReason};
