//! weft: a cluster fabric for real-time streams and messages.
//!
//! A [`Node`] joins a cluster from a seed list, detects failures (SWIM),
//! and keeps one authenticated, ordered link per peer with bounded queues,
//! batching and reconnect. Higher layers (process groups, pub/sub, stream
//! relay, sharded routing) build on these links.
//!
//! ```no_run
//! use weft::{Node, NodeConfig, Secret};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = NodeConfig::new("n1", Secret::new(*b"0123456789abcdef"));
//! config.listen = "127.0.0.1:7420".parse()?;
//! let node = Node::start(config).await?;
//! for m in node.members() {
//!     println!("{} {:?}", m.name, m.state);
//! }
//! node.shutdown(std::time::Duration::from_secs(1)).await;
//! # Ok(()) }
//! ```
//!
//! Guarantees: per-peer FIFO; at-most-once across a link failure; every
//! frame not delivered is an error to the caller or a counted reason in
//! [`Node::stats`].

pub mod channel;
pub mod config;
mod directory;
pub mod error;
pub mod link;
pub mod membership;
pub mod messaging;
pub mod net;
pub mod node;
pub mod pubsub;
pub mod queue;
mod registry;
pub mod relay;
mod router;
mod rpc;
pub mod shards;
pub mod stats;

pub use channel::{ChannelReceiver, Delivery};
pub use config::{
    LinkConfig, MembershipConfig, MessagingConfig, NodeConfig, RelayConfig, Secret, ShardConfig, TlsConfig,
};
pub use directory::GroupEvent;
pub use error::{ConfigError, SendError, StartError};
pub use membership::{MemberInfo, MemberState, MembershipEvent};
pub use messaging::GroupPublishReport;
pub use messaging::mailbox::{GroupMonitor, Mailbox, MonitorError};
pub use messaging::message::{CallError, Envelope, Message, MessageError, NameError, Target};
pub use node::Groups;
pub use node::Node;
pub use pubsub::subscription::{PubMsg, PubSubError, Subscription};
pub use relay::StreamInfo;
pub use relay::stream::{
    StreamClosed, StreamError, StreamEvent, StreamPolicy, StreamPublisher, StreamSubscription,
};
pub use shards::{RouteAck, RouteError, ShardHandler};
pub use weft_proto;
pub use weft_proto::NodeId;
pub use weft_proto::Pid;
pub use weft_proto::relay::StreamFrame;
pub use weft_proto::shard::ShardMap;
