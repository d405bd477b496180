//! The node: the public embedding API that ties links, membership and
//! channels together.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rand::RngExt;
use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::info;
use weft_proto::{NodeId, Pid};

use crate::api;
use crate::channel::{ChannelCallback, ChannelError, ChannelReceiver, Dispatcher};
use crate::config::NodeConfig;
use crate::directory::Directory;
use crate::error::{SendError, StartError};
use crate::link::manager::LinksParams;
use crate::link::{LinkEvent, LinkInfo, Links, TlsContext};
use crate::membership::{self, Command, MemberInfo, Membership, MembershipEvent, SwimId};
use crate::messaging::Messaging;
use crate::messaging::dead_letter::{DeadLetterReceiver, DeadLetters};
use crate::messaging::mailbox::Mailbox;
use crate::messaging::message::{CallError, Message, MessageError, NameError, Target};
use crate::net::{Net, TokioNet};
use crate::pubsub::PubSub;
use crate::pubsub::subscription::{DeliverySink, DirectSubscription, PubMsg, PubSubError, Subscription};
use crate::registry::RegistryService;
use crate::relay::Relay;
use crate::relay::stream::{StreamError, StreamPolicy, StreamPublisher, StreamSubscription};
use crate::router::{Router, Services};
use crate::rpc::Rpc;
use crate::shards::service::{Shards, ShardsParams};
use crate::shards::{RouteAck, RouteError, ShardHandler, ShardInbox};
use crate::stats::{Stats, StatsSnapshot};
use weft_proto::shard::ShardMap;

/// A running weft node. Cheap to clone; the node stops when
/// [`Node::shutdown`] is called or the last handle is dropped.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<NodeInner>,
}

pub(crate) struct NodeInner {
    pub(crate) id: NodeId,
    pub(crate) addr: SocketAddr,
    pub(crate) config: Arc<NodeConfig>,
    pub(crate) links: Links,
    pub(crate) membership: Membership,
    pub(crate) stats: Arc<Stats>,
    pub(crate) dispatcher: Arc<Dispatcher>,
    pub(crate) messaging: Arc<Messaging>,
    pub(crate) dead_letters: Arc<DeadLetters>,
    pub(crate) directory: Arc<Directory>,
    pub(crate) registry: Arc<RegistryService>,
    pub(crate) pubsub: Arc<PubSub>,
    pub(crate) relay: Arc<Relay>,
    pub(crate) shards: Arc<Shards>,
    pub(crate) shutdown: CancellationToken,
}

impl Drop for NodeInner {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn anti_entropy(registry: std::sync::Weak<RegistryService>, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => match registry.upgrade() {
                Some(r) => r.tick(),
                None => return,
            },
        }
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(1)
}

/// Picks this run's incarnation: the clock in microseconds, and with a
/// data directory strictly greater than the previous run's.
fn incarnation(config: &NodeConfig) -> Result<u64, StartError> {
    if let Some(fixed) = config.incarnation {
        return Ok(fixed);
    }
    let now = now_micros();
    let Some(dir) = &config.data_dir else {
        return Ok(now);
    };
    let err = |source| StartError::DataDir {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let file = dir.join("incarnation");
    let previous = match std::fs::read_to_string(&file) {
        Ok(s) => s.trim().parse::<u64>().ok(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(err(e)),
    };
    let next = previous.map_or(now, |p| now.max(p + 1));
    write_atomically(&file, next.to_string().as_bytes()).map_err(err)?;
    Ok(next)
}

fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(tmp, path)
}

impl Node {
    /// Starts a node on real sockets.
    pub async fn start(config: NodeConfig) -> Result<Node, StartError> {
        Self::start_with_net(config, Arc::new(TokioNet)).await
    }

    /// Starts a node on the given network (simulations pass turmoil's).
    pub async fn start_with_net(config: NodeConfig, net: Arc<dyn Net>) -> Result<Node, StartError> {
        config.validate()?;
        let tls = config.tls.as_ref().map(TlsContext::load).transpose()?;
        let incarnation = incarnation(&config)?;
        let id = NodeId::new(config.name.clone(), incarnation);
        let listener = net
            .bind_tcp(config.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let udp = net
            .bind_udp(bound)
            .await
            .map_err(|source| StartError::Bind { addr: bound, source })?;
        let addr = config.advertise.unwrap_or_else(|| {
            if bound.ip().is_unspecified() {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bound.port())
            } else {
                bound
            }
        });
        let seed = config.rng_seed.unwrap_or_else(|| rand::rng().random());
        let stats = Arc::new(Stats::default());
        let dispatcher = Arc::new(Dispatcher::new(stats.clone()));
        let router = Arc::new(Router {
            channels: dispatcher.clone(),
            services: std::sync::OnceLock::new(),
            stats: stats.clone(),
        });
        let shutdown = CancellationToken::new();
        let config = Arc::new(config);
        let links = Links::new(LinksParams {
            local: id.clone(),
            advertise: addr,
            cfg: config.clone(),
            net: net.clone(),
            tls,
            stats: stats.clone(),
            handler: router.clone(),
            rng_seed: seed ^ 0x6c69_6e6b,
            shutdown: shutdown.clone(),
        });
        let member_table = Arc::new(std::sync::RwLock::new(crate::membership::MemberTable::default()));
        // The registry's observers exist before it, so it is built with
        // them: every view it feeds, then the services that write to it.
        let directory = Arc::new(Directory::new());
        let interest = Arc::new(crate::pubsub::InterestTable::new(&id.name));
        let origins = Arc::new(crate::relay::OriginTable::default());
        let registry = Arc::new(RegistryService::new(
            id.clone(),
            links.clone(),
            stats.clone(),
            member_table.clone(),
            vec![directory.clone(), interest.clone(), origins.clone()],
        ));
        let dead_letters = Arc::new(DeadLetters::new(links.clone(), stats.clone()));
        tokio::spawn(dead_letters.clone().run(shutdown.clone()));
        let messaging = Arc::new(Messaging::new(
            id.clone(),
            links.clone(),
            stats.clone(),
            registry.clone(),
            directory.clone(),
            dead_letters.clone(),
        ));
        let pubsub = Arc::new(PubSub::new(
            id.clone(),
            links.clone(),
            stats.clone(),
            registry.clone(),
            interest,
            dead_letters.clone(),
            config.messaging.subscription_bytes,
            &config.pubsub,
        ));
        let relay = Relay::new(
            id.clone(),
            links.clone(),
            stats.clone(),
            registry.clone(),
            origins,
            config.relay.clone(),
            shutdown.clone(),
        );
        let rpc = Arc::new(Rpc::new(links.clone(), stats.clone()));
        // Services exist before any connection can deliver a frame.
        let _ = router.services.set(Services {
            registry: registry.clone(),
            messaging: messaging.clone(),
            dead_letters: dead_letters.clone(),
            pubsub: pubsub.clone(),
            relay: relay.clone(),
            rpc: rpc.clone(),
            shards: std::sync::OnceLock::new(),
        });
        tokio::spawn(links.clone().accept_loop(listener));
        tokio::spawn(anti_entropy(
            Arc::downgrade(&registry),
            config.messaging.anti_entropy_interval,
            shutdown.clone(),
        ));
        let shards = Shards::start(ShardsParams {
            local: id.clone(),
            cluster: config.cluster.clone(),
            data_dir: config.data_dir.clone(),
            rpc,
            stats: stats.clone(),
            members: member_table.clone(),
            registry: registry.clone(),
            config: config.shards.clone(),
            stop: shutdown.clone(),
        })
        .await;
        let shards = match shards {
            Ok(s) => s,
            Err(e) => {
                shutdown.cancel();
                return Err(e.into());
            }
        };
        if let Some(services) = router.services.get() {
            let _ = services.shards.set(shards.clone());
        }
        let membership = membership::start(membership::MembershipParams {
            table: member_table,
            local: SwimId {
                name: id.name.clone(),
                incarnation,
                addr,
                bump: 0,
            },
            cluster: config.cluster.clone(),
            secret: config.secret.expose().to_vec(),
            config: config.membership.clone(),
            seeds: config.join.clone(),
            udp,
            links: links.clone(),
            stats: stats.clone(),
            rng_seed: seed,
            shutdown: shutdown.clone(),
        });
        info!(node = %id, %addr, cluster = %config.cluster, "node started");
        Ok(Node {
            inner: Arc::new(NodeInner {
                id,
                addr,
                config,
                links,
                membership,
                stats,
                dispatcher,
                messaging,
                dead_letters,
                directory,
                registry,
                pubsub,
                relay,
                shards,
                shutdown,
            }),
        })
    }

    /// This node's identity.
    pub fn id(&self) -> &NodeId {
        &self.inner.id
    }

    /// The cluster address peers use to reach this node.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The configuration the node runs with.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// A copy of every counter.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// Membership and links: members, their changes, link states.
    pub fn membership(&self) -> api::Membership {
        api::Membership { node: self.clone() }
    }

    /// Raw numbered data channels between nodes.
    pub fn channels(&self) -> api::Channels {
        api::Channels { node: self.clone() }
    }

    /// Mailboxes: spawn, name, tell, call, dead letters.
    pub fn mailboxes(&self) -> api::Mailboxes {
        api::Mailboxes { node: self.clone() }
    }

    /// Process groups (Erlang `pg` semantics).
    pub fn groups(&self) -> api::Groups {
        api::Groups { node: self.clone() }
    }

    /// NATS-style pub/sub: subscribe, publish, request.
    pub fn pubsub(&self) -> api::PubSub {
        api::PubSub { node: self.clone() }
    }

    /// Live stream relay: publish a stream, play one.
    pub fn streams(&self) -> api::Streams {
        api::Streams { node: self.clone() }
    }

    /// Sharded keyed routing over the Raft-committed shard map.
    pub fn shards(&self) -> api::Shards {
        api::Shards { node: self.clone() }
    }

    /// Number of remote registry entries this node holds (sizing reports).
    pub fn registry_remote_entries(&self) -> usize {
        self.inner.registry.remote_len()
    }

    /// Number of this node's own registry entries (names, group members,
    /// interest, stream origins, ...), which every peer replicates.
    pub fn registry_local_entries(&self) -> usize {
        self.inner.registry.local_len()
    }

    /// Graceful shutdown: announces the departure (peers mark this node
    /// down at once instead of waiting for failure detection), says
    /// goodbye on every link, drains send queues for up to `drain`, then
    /// closes everything.
    pub async fn shutdown(&self, drain: Duration) {
        let (tx, rx) = oneshot::channel();
        if self
            .inner
            .membership
            .commands
            .send(Command::Leave(tx))
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout(membership::LEAVE_TIMEOUT, rx).await;
        }
        self.inner.links.shutdown(drain).await;
        self.inner.shutdown.cancel();
        info!(node = %self.inner.id, "node stopped");
    }

    /// Stops every task at once, without telling anyone (a crash, for
    /// tests).
    pub fn abort(&self) {
        self.inner.shutdown.cancel();
    }

    /// Resolves when the node has stopped.
    pub async fn stopped(&self) {
        self.inner.shutdown.cancelled().await;
    }
}

/// The flat API of weft 0.x, kept as one-line delegations to the
/// capability handles for one release (see CHANGELOG.md).
impl Node {
    /// Every known member (see [`api::Membership::members`]).
    #[deprecated(note = "use node.membership().members()")]
    pub fn members(&self) -> Vec<MemberInfo> {
        self.membership().members()
    }

    /// One member by name (see [`api::Membership::member`]).
    #[deprecated(note = "use node.membership().member(name)")]
    pub fn member(&self, name: &str) -> Option<MemberInfo> {
        self.membership().member(name)
    }

    /// Membership changes as a raw broadcast receiver (bounded, 4096).
    #[deprecated(note = "use node.membership().events() (a Stream)")]
    pub fn membership_events(&self) -> broadcast::Receiver<MembershipEvent> {
        self.inner.membership.events.subscribe()
    }

    /// Link up/down events as a raw broadcast receiver.
    #[deprecated(note = "use node.membership().link_events() (a Stream)")]
    pub fn link_events(&self) -> broadcast::Receiver<LinkEvent> {
        self.inner.links.events()
    }

    /// The state of every peer link.
    #[deprecated(note = "use node.membership().links()")]
    pub fn links(&self) -> Vec<LinkInfo> {
        self.membership().links()
    }

    /// Whether a link to `peer` is established.
    #[deprecated(note = "use node.membership().is_linked(peer)")]
    pub fn is_linked(&self, peer: &str) -> bool {
        self.membership().is_linked(peer)
    }

    /// Sends on a raw channel (see [`api::Channels::send`]).
    #[deprecated(note = "use node.channels().send(peer, channel, payload)")]
    pub async fn send_data(&self, peer: &str, channel: u32, payload: Bytes) -> Result<(), SendError> {
        self.channels().send(peer, channel, payload).await
    }

    /// Sends on a raw channel without waiting (see [`api::Channels::try_send`]).
    #[deprecated(note = "use node.channels().try_send(peer, channel, payload)")]
    pub fn try_send_data(&self, peer: &str, channel: u32, payload: Bytes) -> Result<(), SendError> {
        self.channels().try_send(peer, channel, payload)
    }

    /// Opens a raw channel (see [`api::Channels::open`]).
    #[deprecated(note = "use node.channels().open(channel, capacity_bytes)")]
    pub fn open_channel(&self, channel: u32, capacity_bytes: usize) -> Result<ChannelReceiver, ChannelError> {
        self.channels().open(channel, capacity_bytes)
    }

    /// Delivers a raw channel to a callback (see [`api::Channels::on`]).
    #[deprecated(note = "use node.channels().on(channel, callback)")]
    pub fn on_channel(&self, channel: u32, callback: ChannelCallback) -> Result<(), ChannelError> {
        self.channels().on(channel, callback)
    }

    /// Closes a raw channel (see [`api::Channels::close`]).
    #[deprecated(note = "use node.channels().close(channel)")]
    pub fn close_channel(&self, channel: u32) {
        self.channels().close(channel);
    }

    /// Creates a local mailbox (see [`api::Mailboxes::spawn`]).
    #[deprecated(note = "use node.mailboxes().spawn()")]
    pub fn spawn_mailbox(&self) -> Mailbox {
        self.mailboxes().spawn()
    }

    /// Creates a local mailbox (see [`api::Mailboxes::spawn_with_capacity`]).
    #[deprecated(note = "use node.mailboxes().spawn_with_capacity(bytes)")]
    pub fn spawn_mailbox_with_capacity(&self, capacity_bytes: usize) -> Mailbox {
        self.mailboxes().spawn_with_capacity(capacity_bytes)
    }

    /// Sends to a mailbox (see [`api::Mailboxes::send`]).
    #[deprecated(note = "use node.mailboxes().send(to, msg)")]
    pub async fn send(&self, to: impl Into<Target>, msg: Message) -> Result<(), MessageError> {
        self.mailboxes().send(to, msg).await
    }

    /// Sends to a mailbox without waiting (see [`api::Mailboxes::try_send`]).
    #[deprecated(note = "use node.mailboxes().try_send(to, msg)")]
    pub async fn try_send(&self, to: impl Into<Target>, msg: Message) -> Result<(), MessageError> {
        self.mailboxes().try_send(to, msg).await
    }

    /// The dead letters of this node's tells (see [`api::Mailboxes::dead_letters`]).
    #[deprecated(note = "use node.mailboxes().dead_letters()")]
    pub fn dead_letters(&self) -> DeadLetterReceiver {
        self.mailboxes().dead_letters()
    }

    /// Dead letters with a given capacity.
    #[deprecated(note = "use node.mailboxes().dead_letters_with_capacity(capacity)")]
    pub fn dead_letters_with_capacity(&self, capacity: usize) -> DeadLetterReceiver {
        self.mailboxes().dead_letters_with_capacity(capacity)
    }

    /// Sends to a named mailbox (see [`api::Mailboxes::send_named`]).
    #[deprecated(note = "use node.mailboxes().send_named(node, name, msg)")]
    pub async fn send_named(&self, node: &str, name: &str, msg: Message) -> Result<(), MessageError> {
        self.mailboxes().send_named(node, name, msg).await
    }

    /// Calls a mailbox (see [`api::Mailboxes::call`]).
    #[deprecated(note = "use node.mailboxes().call(to, msg).timeout(timeout)")]
    pub async fn call(
        &self,
        to: impl Into<Target>,
        msg: Message,
        timeout: Duration,
    ) -> Result<Message, CallError> {
        self.mailboxes().call(to, msg).timeout(timeout).await
    }

    /// Registers a name (see [`api::Mailboxes::register`]).
    #[deprecated(note = "use node.mailboxes().register(name, &mailbox)")]
    pub fn register(&self, name: &str, mailbox: &Mailbox) -> Result<(), NameError> {
        self.mailboxes().register(name, mailbox)
    }

    /// Removes a name (see [`api::Mailboxes::unregister`]).
    #[deprecated(note = "use node.mailboxes().unregister(name)")]
    pub fn unregister(&self, name: &str) -> bool {
        self.mailboxes().unregister(name)
    }

    /// Looks a name up (see [`api::Mailboxes::whereis`]).
    #[deprecated(note = "use node.mailboxes().whereis(name)")]
    pub fn whereis(&self, name: &str) -> Vec<Pid> {
        self.mailboxes().whereis(name)
    }

    /// Number of local mailboxes.
    #[deprecated(note = "use node.mailboxes().count()")]
    pub fn mailbox_count(&self) -> usize {
        self.mailboxes().count()
    }

    /// Subscribes (see [`api::PubSub::subscribe`]).
    #[deprecated(note = "use node.pubsub().subscribe(pattern)")]
    pub fn subscribe(&self, pattern: &str) -> Result<Subscription, PubSubError> {
        self.pubsub().subscribe(pattern)
    }

    /// Subscribes in a queue group (see [`api::PubSub::queue_subscribe`]).
    #[deprecated(note = "use node.pubsub().queue_subscribe(pattern, queue)")]
    pub fn queue_subscribe(&self, pattern: &str, queue: &str) -> Result<Subscription, PubSubError> {
        self.pubsub().queue_subscribe(pattern, queue)
    }

    /// Subscribes with a queue size (see [`api::PubSub::subscribe_with_capacity`]).
    #[deprecated(note = "use node.pubsub().subscribe_with_capacity(pattern, queue, bytes)")]
    pub fn subscribe_with_capacity(
        &self,
        pattern: &str,
        queue: Option<&str>,
        capacity_bytes: usize,
    ) -> Result<Subscription, PubSubError> {
        self.pubsub()
            .subscribe_with_capacity(pattern, queue, capacity_bytes)
    }

    /// Subscribes a sink (see [`api::PubSub::subscribe_direct`]).
    #[deprecated(note = "use node.pubsub().subscribe_direct(pattern, queue, sink)")]
    pub fn subscribe_direct(
        &self,
        pattern: &str,
        queue: Option<&str>,
        sink: Arc<dyn DeliverySink>,
    ) -> Result<DirectSubscription, PubSubError> {
        self.pubsub().subscribe_direct(pattern, queue, sink)
    }

    /// Publishes with headers (see [`api::PubSub::publish`] and
    /// [`api::PubSub::publish_with`]).
    #[deprecated(
        note = "use node.pubsub().publish(subject, payload), or publish_with(..).header(..) for headers"
    )]
    pub async fn publish(
        &self,
        subject: &str,
        headers: Vec<(String, String)>,
        payload: Bytes,
    ) -> Result<(), PubSubError> {
        let msg = PubMsg {
            subject: subject.to_string(),
            reply: None,
            headers,
            payload,
        };
        self.pubsub().publish_msg(msg).await
    }

    /// Publishes a fully formed message (see [`api::PubSub::publish_msg`]).
    #[deprecated(note = "use node.pubsub().publish_msg(msg)")]
    pub async fn publish_msg(&self, msg: PubMsg) -> Result<(), PubSubError> {
        self.pubsub().publish_msg(msg).await
    }

    /// Publishes a batch (see [`api::PubSub::publish_batch`]).
    #[deprecated(note = "use node.pubsub().publish_batch(msgs)")]
    pub async fn publish_batch(&self, msgs: impl IntoIterator<Item = PubMsg>) -> Vec<(usize, PubSubError)> {
        self.pubsub().publish_batch(msgs).await
    }

    /// Requests (see [`api::PubSub::request`]).
    #[deprecated(note = "use node.pubsub().request(subject, payload).timeout(timeout)")]
    pub async fn request(
        &self,
        subject: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<PubMsg, PubSubError> {
        self.pubsub().request(subject, payload).timeout(timeout).await
    }

    /// An interest barrier (see [`api::PubSub::interest_barrier`]).
    #[deprecated(note = "use node.pubsub().interest_barrier()")]
    pub fn interest_barrier(&self) -> crate::InterestBarrier {
        self.pubsub().interest_barrier()
    }

    /// Whether any subscription matches (see [`api::PubSub::has_interest`]).
    #[deprecated(note = "use node.pubsub().has_interest(subject)")]
    pub fn has_interest(&self, subject: &str) -> bool {
        self.pubsub().has_interest(subject)
    }

    /// This node's interest (see [`api::PubSub::local_interest`]).
    #[deprecated(note = "use node.pubsub().local_interest()")]
    pub fn local_interest(&self) -> Vec<(String, Option<String>, u32)> {
        self.pubsub().local_interest()
    }

    /// Other nodes' interest (see [`api::PubSub::remote_interest`]).
    #[deprecated(note = "use node.pubsub().remote_interest()")]
    pub fn remote_interest(&self) -> std::collections::BTreeMap<String, usize> {
        self.pubsub().remote_interest()
    }

    /// Publishes a stream (see [`api::Streams::publish`]).
    #[deprecated(note = "use node.streams().publish(key, policy)")]
    pub fn publish_stream(&self, key: &str, policy: StreamPolicy) -> Result<StreamPublisher, StreamError> {
        self.streams().publish(key, policy)
    }

    /// Plays a stream (see [`api::Streams::subscribe`]).
    #[deprecated(note = "use node.streams().subscribe(key)")]
    pub async fn subscribe_stream(&self, key: &str) -> Result<StreamSubscription, StreamError> {
        self.streams().subscribe(key).await
    }

    /// Plays a stream, waiting for it (see [`api::Streams::subscribe_wait`]).
    #[deprecated(note = "use node.streams().subscribe_wait(key, timeout)")]
    pub async fn subscribe_stream_wait(
        &self,
        key: &str,
        timeout: Duration,
    ) -> Result<StreamSubscription, StreamError> {
        self.streams().subscribe_wait(key, timeout).await
    }

    /// Where a stream would be pulled from (see [`api::Streams::locate`]).
    #[deprecated(note = "use node.streams().locate(key)")]
    pub fn locate_stream(&self, key: &str) -> Option<String> {
        self.streams().locate(key)
    }

    /// Registers the shard handler (see [`api::Shards::set_handler`]).
    #[deprecated(note = "use node.shards().set_handler(handler)")]
    pub fn set_shard_handler(&self, handler: Arc<dyn ShardHandler>) {
        self.shards().set_handler(handler);
    }

    /// Opens the shard inbox (see [`api::Shards::inbox`]).
    #[deprecated(note = "use node.shards().inbox()")]
    pub fn shard_inbox(&self) -> ShardInbox {
        self.shards().inbox()
    }

    /// The committed shard map (see [`api::Shards::map`]).
    #[deprecated(note = "use node.shards().map()")]
    pub fn shard_map(&self) -> ShardMap {
        self.shards().map()
    }

    /// Watches shard maps (see [`api::Shards::watch_map`]).
    #[deprecated(note = "use node.shards().watch_map(), or node.shards().maps() for a Stream")]
    pub fn watch_shard_map(&self) -> tokio::sync::watch::Receiver<ShardMap> {
        self.shards().watch_map()
    }

    /// Rebalances shards (see [`api::Shards::rebalance`]).
    #[deprecated(note = "use node.shards().rebalance()")]
    pub async fn rebalance_shards(&self) -> bool {
        self.shards().rebalance().await
    }

    /// The shard group's leader (see [`api::Shards::leader`]).
    #[deprecated(note = "use node.shards().leader()")]
    pub fn shard_leader(&self) -> Option<String> {
        self.shards().leader()
    }

    /// The shard group's voters (see [`api::Shards::voters`]).
    #[deprecated(note = "use node.shards().voters()")]
    pub fn shard_voters(&self) -> Vec<String> {
        self.shards().voters()
    }

    /// The shard group's learners (see [`api::Shards::learners`]).
    #[deprecated(note = "use node.shards().learners()")]
    pub fn shard_learners(&self) -> Vec<String> {
        self.shards().learners()
    }

    /// Routes an event (see [`api::Shards::route`]).
    #[deprecated(note = "use node.shards().route(key, event)")]
    pub async fn route(&self, key: &[u8], event: Bytes) -> Result<RouteAck, RouteError> {
        self.shards().route(key, event).await
    }

    /// Routes an event without waiting for inbox room (see [`api::Shards::try_route`]).
    #[deprecated(note = "use node.shards().try_route(key, event)")]
    pub async fn try_route(&self, key: &[u8], event: Bytes) -> Result<RouteAck, RouteError> {
        self.shards().try_route(key, event).await
    }

    /// Routes many events (see [`api::Shards::route_many`]).
    #[deprecated(note = "use node.shards().route_many(events)")]
    pub async fn route_many(&self, events: Vec<(Bytes, Bytes)>) -> Vec<Result<RouteAck, RouteError>> {
        self.shards().route_many(events).await
    }
}
