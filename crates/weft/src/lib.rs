//! weft: a cluster fabric for real-time streams and messages.
//!
//! A [`Node`] joins a cluster from a seed list and gives the server that
//! embeds it one capability handle per family of verbs (see [`api`]):
//! cheap `Clone` values carrying the node, whose receivers are all
//! `futures::Stream`s and whose optional arguments (headers, timeouts) are
//! set on builders that are awaited directly:
//!
//! - **membership**: SWIM failure detection over sealed UDP, with
//!   incarnations that tell a restarted node from its previous run
//!   ([`Node::membership`]: [`Membership::members`], [`Membership::events`]);
//! - **authenticated links**: one ordered TCP connection per node pair
//!   (HMAC handshake, optional mutual TLS), bounded queues, reconnect
//!   ([`Node::channels`]: [`Channels::send`], [`Channels::open`]);
//! - **mailboxes and process groups**: cluster-wide pids, names, tells,
//!   calls with typed errors, Erlang-`pg` groups ([`Node::mailboxes`]:
//!   [`Mailboxes::spawn`], [`Mailboxes::call`]; [`Node::groups`]);
//! - **pub/sub** over NATS subjects with `*`/`>` wildcards, queue groups,
//!   request/reply, and interest propagated so a message crosses only to
//!   nodes that want it ([`Node::pubsub`]: [`PubSub::subscribe`],
//!   [`PubSub::publish`], [`PubSub::request`]);
//! - **live stream relay**: an origin publishes, any node plays, an edge
//!   pulls once and fans out, a replay buffer starts late viewers at the
//!   last keyframe ([`Node::streams`]: [`Streams::publish`],
//!   [`Streams::subscribe`]);
//! - **sharded keyed routing** over a Raft-committed shard map
//!   ([`Node::shards`]: [`Shards::set_handler`], [`Shards::route`]).
//!
//! The flat `Node` methods of earlier releases (`node.publish(..)`,
//! `node.route(..)`, ...) remain as deprecated delegations for one
//! release; `CHANGELOG.md` maps each to its new form.
//!
//! Each section below is a complete program (they run as doc tests on
//! loopback). The operator's guide is `docs/guide.md`, the wire protocol
//! `docs/wire.md`, the metrics `docs/metrics.md`.
//!
//! # Membership
//!
//! Nodes of one cluster share a cluster name and a secret; a new node
//! needs one reachable seed address. [`Node::start`] returns once the node
//! listens; peers appear as membership converges (well under a second on
//! a LAN).
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::Duration;
//! use futures::StreamExt;
//! use weft::{MemberState, MembershipEvent, Node, NodeConfig, Secret};
//!
//! fn config(name: &str, seeds: Vec<SocketAddr>) -> NodeConfig {
//!     // The secret authenticates links and seals membership datagrams;
//!     // in production read it from a file (at least 16 bytes).
//!     let mut c = NodeConfig::new(name, Secret::new(*b"doc-example-secret"));
//!     c.listen = SocketAddr::from(([127, 0, 0, 1], 0)); // any free port
//!     c.join = seeds;
//!     c
//! }
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let n1 = Node::start(config("n1", vec![])).await?;
//!     // Membership changes are a Stream (a lagging consumer gets Err(Lagged)).
//!     let mut events = n1.membership().events();
//!     let n2 = Node::start(config("n2", vec![n1.addr()])).await?;
//!
//!     // n1 learns of n2 through SWIM (bounded wait: a test must not hang).
//!     let joined = tokio::time::timeout(Duration::from_secs(10), async {
//!         while let Some(event) = events.next().await {
//!             if let Ok(MembershipEvent::MemberUp(m)) = event {
//!                 return Some(m);
//!             }
//!         }
//!         None
//!     });
//!     let up = joined.await?.ok_or("node stopped")?;
//!     println!("{} joined from {} (incarnation {})", up.name, up.addr, up.incarnation);
//!     assert_eq!(n1.membership().member("n2").map(|m| m.state), Some(MemberState::Up));
//!
//!     // A graceful shutdown announces the departure: no failure detection
//!     // delay. A crash is detected in about 1-2 s with default settings.
//!     n2.shutdown(Duration::from_millis(100)).await;
//!     let left = tokio::time::timeout(Duration::from_secs(10), async {
//!         while let Some(event) = events.next().await {
//!             if let Ok(MembershipEvent::MemberDown(m)) = event {
//!                 return Some(m);
//!             }
//!         }
//!         None
//!     });
//!     assert_eq!(left.await?.map(|m| m.name).as_deref(), Some("n2"));
//!     n1.shutdown(Duration::from_millis(100)).await;
//!     Ok(())
//! }
//! ```
//!
//! # Messaging: mailboxes, names, calls, groups
//!
//! A mailbox is a bounded queue with a [`Pid`] valid across the cluster;
//! an actor is a task that owns one. Sending works the same whether the
//! target is local or on another node; per sender→receiver order holds,
//! and a target that does not exist or whose node is down is a typed
//! error ([`CallError`], [`MessageError`]), never a hang.
//!
//! A remote tell returns once it is queued on the link. If the receiving
//! node then drops it (the mailbox is gone or full), the drop comes back to
//! the sending node as a [`DeadLetter`] (target, [`DeadReason`], sender,
//! manifest, size) on [`Mailboxes::dead_letters`], and is counted on both nodes
//! (`dead_letters_sent` / `dead_letters_received` in [`Node::stats`]); tells
//! still queued for a node declared down come back the same way with
//! [`DeadReason::NodeDown`]. A tell by name to a name this node's directory
//! does not hold fails at once with [`MessageError::NoSuchMailbox`]. Group
//! publishes and pub/sub stay at most once; their drops at a receiver are
//! counted back on the publishing node. See `docs/guide.md`, "When a
//! message cannot be delivered".
//!
//! ```
//! use std::time::Duration;
//! use weft::{Message, Node, NodeConfig, Secret, Target};
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let mut config = NodeConfig::new("n1", Secret::new(*b"doc-example-secret"));
//!     config.listen = ([127, 0, 0, 1], 0).into();
//!     let node = Node::start(config).await?;
//!
//!     // An echo actor, registered under a name other nodes can use.
//!     let mailboxes = node.mailboxes();
//!     let echo = mailboxes.spawn();
//!     mailboxes.register("echo", &echo)?;
//!     tokio::spawn(async move {
//!         while let Some(env) = echo.recv().await {
//!             if env.is_call() {
//!                 let answer = Message::new("echo", env.message.payload.clone());
//!                 let _ = echo.reply(&env, answer).await; // the caller may be gone
//!             }
//!         }
//!     });
//!     let target = Target::Named { node: "n1".into(), name: "echo".into() };
//!     // The timeout is optional (weft::DEFAULT_REQUEST_TIMEOUT otherwise).
//!     let reply = mailboxes
//!         .call(target, Message::new("ping", "hello"))
//!         .timeout(Duration::from_secs(5))
//!         .await?;
//!     assert_eq!(reply.payload.as_ref(), b"hello");
//!
//!     // A dropped mailbox: the call fails at once with a typed error.
//!     let gone = mailboxes.spawn().pid().clone();
//!     let err = mailboxes.call(&gone, Message::new("ping", "")).await;
//!     assert_eq!(err, Err(weft::CallError::NoSuchMailbox));
//!     // A name nobody registered: a tell fails at once too.
//!     let err = mailboxes.send_named("n1", "nobody", Message::new("ping", "")).await;
//!     assert!(matches!(err, Err(weft::MessageError::NoSuchMailbox(_))));
//!
//!     // Process groups: members anywhere; a publish sends one frame per
//!     // node that has members, which delivers to each of its members.
//!     let worker = mailboxes.spawn();
//!     node.groups().join("workers", worker.pid())?;
//!     let report = node.groups().publish("workers", Message::new("job", "42")).await?;
//!     assert_eq!(report.local_delivered, 1);
//!     let job = worker.recv().await.ok_or("mailbox closed")?;
//!     assert_eq!(job.message.manifest, "job");
//!     node.shutdown(Duration::from_millis(100)).await;
//!     Ok(())
//! }
//! ```
//!
//! # Pub/sub
//!
//! Subjects are dot-separated tokens; `*` matches one token, `>` the rest.
//! A queue group delivers each message to one member cluster-wide, chosen
//! across the nodes in proportion to their member counts (or on the
//! publisher's node first, [`QueueLocality::Local`]). Each
//! subscription has a bounded queue: a subscriber that falls behind loses
//! messages (counted, see [`Subscription::dropped`]), the publisher never
//! waits for it. [`PubSub::subscribe_direct`] hands each message to a
//! [`DeliverySink`] on the delivering task instead (no queue, no task).
//!
//! Interest reaches the other nodes asynchronously. The interest barrier
//! removes the usual sleep between subscribing on one node and publishing
//! on another: [`Subscription::ready`] resolves once every node that is up
//! has applied the subscription (or fails with [`BarrierError::Timeout`]
//! naming the nodes that did not confirm), and
//! [`Subscription::unsubscribe`] returns an [`InterestBarrier`] that
//! resolves once no node forwards the removed interest any more.
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use futures::StreamExt;
//! use weft::{Node, NodeConfig, Secret};
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let mut config = NodeConfig::new("n1", Secret::new(*b"doc-example-secret"));
//!     config.listen = ([127, 0, 0, 1], 0).into();
//!     let node = Node::start(config).await?;
//!
//!     let pubsub = node.pubsub();
//!     let mut everything = pubsub.subscribe("orders.>")?;
//!     let billing = pubsub.queue_subscribe("orders.*", "billing")?;
//!     // Every node that is up now forwards matching messages here.
//!     everything.ready().await?;
//!     billing.ready().await?;
//!     pubsub.publish("orders.new", "#1").await?;
//!     // Headers and a reply subject are options of `publish_with`.
//!     pubsub.publish_with("orders.new", "#2").header("Nats-Msg-Id", "2").await?;
//!     let m = everything.next().await.ok_or("closed")?;
//!     assert_eq!((m.subject.as_str(), m.payload.as_ref()), ("orders.new", &b"#1"[..]));
//!     // Every subscription is also a Stream.
//!     let m = StreamExt::next(&mut everything).await.ok_or("closed")?;
//!     assert_eq!(m.headers, [("Nats-Msg-Id".to_string(), "2".to_string())]);
//!     assert_eq!(billing.next().await.ok_or("closed")?.subject, "orders.new");
//!     assert_eq!(billing.next().await.ok_or("closed")?.payload.as_ref(), b"#2");
//!
//!     // Request/reply: the responder answers on the request's reply subject.
//!     let service = pubsub.subscribe("time.now")?;
//!     let responder = pubsub.clone();
//!     tokio::spawn(async move {
//!         while let Some(request) = service.next().await {
//!             if let Some(reply) = request.reply {
//!                 let _ = responder.publish(&reply, Bytes::from_static(b"noon")).await;
//!             }
//!         }
//!     });
//!     let answer = pubsub.request("time.now", Bytes::new()).timeout(Duration::from_secs(5)).await?;
//!     assert_eq!(answer.payload.as_ref(), b"noon");
//!     // Nobody listens: an error at once, not a timeout.
//!     let none = pubsub.request("nobody.home", Bytes::new()).await;
//!     assert!(matches!(none, Err(weft::PubSubError::NoResponders(_))));
//!     node.shutdown(Duration::from_millis(100)).await;
//!     Ok(())
//! }
//! ```
//!
//! # Stream relay
//!
//! An origin publishes frames with increasing sequence numbers; a viewer
//! gets the configuration frames and the frames since the last keyframe
//! (the replay buffer), then live frames, with no gap and no duplicate.
//! On another node the first viewer makes that node pull the stream from
//! the origin once, whatever its number of viewers; `subscribe_stream`
//! returns there once the origin confirmed the attach, and from then on
//! every frame the origin publishes reaches the viewer in order unless a
//! `Skipped` or `Discontinuity` event names the gap.
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use weft::{Node, NodeConfig, Secret, StreamEvent, StreamFrame, StreamPolicy};
//!
//! fn frame(seq: u64, keyframe: bool) -> StreamFrame {
//!     let payload = Bytes::from(format!("frame {seq}"));
//!     StreamFrame { seq, timestamp: seq * 40, keyframe, config: false, payload }
//! }
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let mut config = NodeConfig::new("n1", Secret::new(*b"doc-example-secret"));
//!     config.listen = ([127, 0, 0, 1], 0).into();
//!     let node = Node::start(config).await?;
//!
//!     let publisher = node.streams().publish("live/cam1", StreamPolicy::default())?;
//!     for seq in 1..=5 {
//!         publisher.send(frame(seq, seq == 1 || seq == 4))?;
//!     }
//!     // A late viewer starts at keyframe 4, then plays live frames.
//!     let viewer = node.streams().subscribe("live/cam1").await?;
//!     publisher.send(frame(6, false))?;
//!     let mut played = Vec::new();
//!     while played.len() < 3 {
//!         let event = tokio::time::timeout(Duration::from_secs(5), viewer.next()).await??;
//!         if let StreamEvent::Frame(f) = event {
//!             played.push(f.seq);
//!         }
//!     }
//!     assert_eq!(played, [4, 5, 6]);
//!     // Dropping the publisher ends the stream for its viewers.
//!     drop(publisher);
//!     node.shutdown(Duration::from_millis(100)).await;
//!     Ok(())
//! }
//! ```
//!
//! # Sharded keyed routing
//!
//! A fixed number of shards is assigned to nodes by a map committed through
//! Raft; [`Shards::route`] sends an event to the owner of its key's shard and
//! returns once the owner's [`ShardHandler`] took it; the [`RouteAck`]
//! names the accepting node and the map epoch it owned the shard at.
//! Keys hash to shards with FNV-1a, so every node agrees where a key goes.
//! A group needs `shards.voters` up members (3 by default) before its
//! first map; one node alone needs `voters = 1`. Before the first map
//! `route` fails after `shards.first_map_wait` with
//! [`RouteError::Unassigned`]; other failures are typed too
//! ([`RouteError::HandlerFailed`], [`RouteError::Timeout`] with the last
//! [`RouteFailure`]).
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::time::Duration;
//! use bytes::Bytes;
//! use weft::{Node, NodeConfig, Secret, ShardHandler};
//!
//! struct Clicks(AtomicU64);
//!
//! impl ShardHandler for Clicks {
//!     fn on_event(&self, _shard: u32, _key: &[u8], _event: Bytes) {
//!         // Runs on a runtime task: return quickly, the sender waits.
//!         self.0.fetch_add(1, Ordering::Relaxed);
//!     }
//! }
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let mut config = NodeConfig::new("n1", Secret::new(*b"doc-example-secret"));
//!     config.listen = ([127, 0, 0, 1], 0).into();
//!     config.shards.count = 8;
//!     config.shards.voters = 1;
//!     config.shards.bootstrap_delay = Duration::from_millis(100);
//!     let node = Node::start(config).await?;
//!     let clicks = Arc::new(Clicks(AtomicU64::new(0)));
//!     let shards = node.shards();
//!     shards.set_handler(clicks.clone());
//!
//!     // Events are routed only by a committed map: wait for the first.
//!     // Committed maps are a Stream: the current one, then each newer one.
//!     let mut maps = shards.maps();
//!     let first = async {
//!         while let Some(m) = maps.next().await {
//!             if m.epoch >= 1 {
//!                 return Some(m);
//!             }
//!         }
//!         None
//!     };
//!     tokio::time::timeout(Duration::from_secs(30), first).await?.ok_or("node stopped")?;
//!     let ack = shards.route(b"user-42", Bytes::from_static(b"click")).await?;
//!     println!("user-42 is shard {} (epoch {})", ack.shard, ack.epoch);
//!     assert_eq!(ack.node, "n1");
//!     assert_eq!(shards.map().owner(ack.shard), Some("n1"));
//!     // The retry budget is optional (`shards.route_timeout` otherwise).
//!     shards.route(b"user-7", "click").timeout(Duration::from_secs(10)).await?;
//!     assert_eq!(clicks.0.load(Ordering::Relaxed), 2);
//!     node.shutdown(Duration::from_millis(100)).await;
//!     Ok(())
//! }
//! ```
//!
//! A handler that must do real work before the sender is acknowledged
//! (persist, call out) consumes [`Shards::inbox`] instead: a `Stream`
//! of [`ShardDelivery`] (acquired, event, released) whose events are
//! acknowledged with [`ShardEvent::ack`] after processing; the inbox is
//! bounded per shard (`shards.inbox_capacity`: `route` waits,
//! [`Shards::try_route`] fails with [`RouteError::Full`]). Many events at
//! once: [`Shards::route_many`].
//!
//! ```no_run
//! use bytes::Bytes;
//! use futures::StreamExt;
//! use weft::{Node, ShardDelivery};
//!
//! async fn consume(node: Node) {
//!     let mut inbox = node.shards().inbox();
//!     while let Some(d) = inbox.next().await {
//!         if let ShardDelivery::Event(e) = d {
//!             // persist(e.key(), e.event()).await;
//!             e.ack(); // only now does the sender's `route` return
//!         }
//!     }
//! }
//!
//! async fn send(node: &Node) {
//!     let results = node
//!         .shards()
//!         .route_many(vec![(Bytes::from_static(b"k1"), Bytes::from_static(b"e1"))])
//!         .await;
//!     assert_eq!(results.len(), 1);
//! }
//! ```
//!
//! # Guarantees
//!
//! Per sender→receiver FIFO for messages and per-stream order for frames;
//! at most once for tells and publishes across a link failure; at least
//! once with acknowledgement for routed shard events; a stream viewer's
//! gap is always an event ([`StreamEvent::Skipped`] with the exact count,
//! or [`StreamEvent::Discontinuity`]); every frame not delivered is an
//! error to the caller or a counted reason in [`Node::stats`]; every queue
//! is bounded in bytes.

pub mod api;
pub mod channel;
pub mod config;
mod directory;
pub mod error;
mod hash;
pub(crate) mod link;
pub mod membership;
pub mod messaging;
pub mod net;
pub mod node;
pub mod pubsub;
pub(crate) mod queue;
mod registry;
pub mod relay;
mod replies;
mod router;
mod rpc;
pub mod shards;
pub mod stats;
mod sync;

pub use api::{
    Call, Channels, DEFAULT_REQUEST_TIMEOUT, Events, Groups, Lagged, Mailboxes, Membership, PubSub, Publish,
    Request, Route, ShardMaps, Shards, Streams,
};
pub use channel::{ChannelCallback, ChannelError, ChannelReceiver, Delivery};
pub use config::{
    LinkConfig, MembershipConfig, MessagingConfig, NodeConfig, PubSubConfig, QueueLocality, RelayConfig,
    Secret, ShardConfig, TlsConfig,
};
pub use directory::GroupEvent;
pub use error::{ConfigError, SendError, StartError};
pub use link::{LinkEvent, LinkInfo};
pub use membership::{MemberInfo, MemberState, MembershipEvent};
pub use messaging::GroupPublishReport;
pub use messaging::dead_letter::{DeadLetter, DeadLetterReceiver, DeadReason};
pub use messaging::mailbox::{GroupMonitor, Mailbox, MonitorError};
pub use messaging::message::{CallError, Envelope, Message, MessageError, NameError, Target};
pub use node::Node;
pub use pubsub::barrier::{BarrierError, InterestBarrier};
pub use pubsub::subscription::{
    DeliverySink, DirectSubscription, PubMsg, PubSubError, SinkResult, Subscription,
};
pub use relay::StreamInfo;
pub use relay::stream::{
    StreamClosed, StreamError, StreamEvent, StreamPolicy, StreamPublisher, StreamSubscription,
};
pub use shards::{RouteAck, RouteError, RouteFailure, ShardDelivery, ShardEvent, ShardHandler, ShardInbox};
pub use weft_proto;
pub use weft_proto::NodeId;
pub use weft_proto::Pid;
pub use weft_proto::relay::StreamFrame;
pub use weft_proto::shard::ShardMap;
