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
use weft_proto::{Frame, NodeId, Pid};

use crate::channel::{ChannelCallback, ChannelError, ChannelReceiver, Dispatcher};
use crate::config::NodeConfig;
use crate::directory::Directory;
use crate::error::{SendError, StartError};
use crate::link::manager::LinksParams;
use crate::link::{LinkEvent, LinkInfo, Links, TlsContext};
use crate::membership::{self, Command, MemberInfo, MemberState, Membership, MembershipEvent, SwimId};
use crate::messaging::dead_letter::{DEFAULT_RECEIVER_CAPACITY, DeadLetterReceiver, DeadLetters};
use crate::messaging::mailbox::{GroupMonitor, Mailbox};
use crate::messaging::message::{CallError, Message, MessageError, NameError, Target};
use crate::messaging::{GroupPublishReport, Messaging};
use crate::net::{Net, TokioNet};
use crate::pubsub::PubSub;
use crate::pubsub::subscription::{DeliverySink, DirectSubscription, PubMsg, PubSubError, Subscription};
use crate::registry::RegistryService;
use crate::relay::stream::{StreamError, StreamPolicy, StreamPublisher, StreamSubscription};
use crate::relay::{Relay, StreamInfo};
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
    inner: Arc<NodeInner>,
}

struct NodeInner {
    id: NodeId,
    addr: SocketAddr,
    config: Arc<NodeConfig>,
    links: Links,
    membership: Membership,
    stats: Arc<Stats>,
    dispatcher: Arc<Dispatcher>,
    messaging: Arc<Messaging>,
    dead_letters: Arc<DeadLetters>,
    directory: Arc<Directory>,
    registry: Arc<RegistryService>,
    pubsub: Arc<PubSub>,
    relay: Arc<Relay>,
    shards: Arc<Shards>,
    shutdown: CancellationToken,
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

/// Process groups of a node: join and leave local mailboxes, read the
/// cluster-wide membership, monitor it, publish to it.
pub struct Groups<'a> {
    node: &'a Node,
}

impl Groups<'_> {
    /// Adds the local mailbox `pid` to `group` (idempotent).
    pub fn join(&self, group: &str, pid: &Pid) -> Result<(), MessageError> {
        self.node.inner.messaging.join(group, pid)
    }

    /// Removes the local mailbox `pid` from `group` (idempotent).
    pub fn leave(&self, group: &str, pid: &Pid) -> Result<(), MessageError> {
        self.node.inner.messaging.leave(group, pid)
    }

    /// Every member of `group` on every live node, sorted.
    pub fn members(&self, group: &str) -> Vec<Pid> {
        self.node.inner.directory.members(group)
    }

    /// The members of `group` on this node.
    pub fn local_members(&self, group: &str) -> Vec<Pid> {
        self.node.inner.messaging.local_members(group)
    }

    /// Every group with its member count.
    pub fn list(&self) -> Vec<(String, usize)> {
        self.node.inner.directory.group_names()
    }

    /// The current members of `group` and a stream of its later joins and
    /// leaves (no change is missed between the two).
    pub fn monitor(&self, group: &str) -> GroupMonitor {
        let (initial, rx) = self.node.inner.directory.monitor(group);
        GroupMonitor {
            group: group.to_string(),
            initial,
            rx,
        }
    }

    /// Delivers `msg` to every member of `group`: local members directly,
    /// and one frame to each other node that has members, which fans out
    /// locally.
    pub async fn publish(&self, group: &str, msg: Message) -> Result<GroupPublishReport, MessageError> {
        self.node.inner.messaging.publish_group(None, group, msg).await
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

    /// Every known member, this node first (always `up`), then the others
    /// sorted by name. Down members stay listed until foca forgets them
    /// (`remove_down_after`).
    pub fn members(&self) -> Vec<MemberInfo> {
        let mut out = vec![MemberInfo {
            name: self.inner.id.name.clone(),
            incarnation: self.inner.id.incarnation,
            addr: self.inner.addr,
            state: MemberState::Up,
        }];
        let table = crate::sync::read(&self.inner.membership.table);
        out.extend(table.list());
        out
    }

    /// One member by name (this node included).
    pub fn member(&self, name: &str) -> Option<MemberInfo> {
        self.members().into_iter().find(|m| m.name == name)
    }

    /// Subscribes to membership changes from now on. The channel is
    /// bounded (4096); a receiver that falls behind gets `Lagged` and
    /// should re-read [`Node::members`].
    pub fn membership_events(&self) -> broadcast::Receiver<MembershipEvent> {
        self.inner.membership.events.subscribe()
    }

    /// Subscribes to link up/down events (bounded like membership events).
    pub fn link_events(&self) -> broadcast::Receiver<LinkEvent> {
        self.inner.links.events()
    }

    /// The state of every peer link.
    pub fn links(&self) -> Vec<LinkInfo> {
        self.inner.links.infos()
    }

    /// A copy of every counter.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// Sends `payload` on `channel` to the member named `peer`, waiting
    /// for room in that peer's send queue. Returns once queued: delivery
    /// is at most once across a link failure, FIFO per peer.
    pub async fn send_data(&self, peer: &str, channel: u32, payload: Bytes) -> Result<(), SendError> {
        self.inner.links.send(peer, &Frame::data(channel, payload)).await
    }

    /// Like [`Node::send_data`] but returns [`SendError::Full`] instead of
    /// waiting.
    pub fn try_send_data(&self, peer: &str, channel: u32, payload: Bytes) -> Result<(), SendError> {
        self.inner.links.try_send(peer, &Frame::data(channel, payload))
    }

    /// Opens `channel` for receiving into a queue of `capacity_bytes`.
    pub fn open_channel(&self, channel: u32, capacity_bytes: usize) -> Result<ChannelReceiver, ChannelError> {
        self.inner.dispatcher.open(channel, capacity_bytes)
    }

    /// Delivers `channel` to a callback instead of a queue. The callback
    /// runs on the link reader and must not block.
    pub fn on_channel(&self, channel: u32, callback: ChannelCallback) -> Result<(), ChannelError> {
        self.inner.dispatcher.on(channel, callback)
    }

    /// Closes a channel opened with [`Node::open_channel`] or
    /// [`Node::on_channel`].
    pub fn close_channel(&self, channel: u32) {
        self.inner.dispatcher.close(channel);
    }

    /// Whether a link to `peer` is established.
    pub fn is_linked(&self, peer: &str) -> bool {
        self.inner.links.is_connected(peer)
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

    /// Creates a local mailbox with the configured queue size.
    pub fn spawn_mailbox(&self) -> Mailbox {
        self.spawn_mailbox_with_capacity(self.inner.config.messaging.mailbox_bytes)
    }

    /// Creates a local mailbox whose queue holds `capacity_bytes`.
    pub fn spawn_mailbox_with_capacity(&self, capacity_bytes: usize) -> Mailbox {
        Mailbox {
            slot: self.inner.messaging.spawn(capacity_bytes.max(1)),
            messaging: self.inner.messaging.clone(),
        }
    }

    /// Sends `msg` to a mailbox (by pid, or by name on a node), waiting
    /// for room in the target's queue (local) or the link's (remote).
    /// FIFO per sender→receiver; at most once across a link failure. A
    /// remote tell that the receiving node drops (mailbox gone or full)
    /// comes back as a dead letter ([`Node::dead_letters`]).
    pub async fn send(&self, to: impl Into<Target>, msg: Message) -> Result<(), MessageError> {
        self.inner.messaging.send(None, &to.into(), msg, true).await
    }

    /// Like [`Node::send`] but returns [`MessageError::Full`] instead of
    /// waiting.
    pub async fn try_send(&self, to: impl Into<Target>, msg: Message) -> Result<(), MessageError> {
        self.inner.messaging.send(None, &to.into(), msg, false).await
    }

    /// The dead letters of this node's tells: each tell another node
    /// received but dropped (mailbox gone or full) comes back as a
    /// [`DeadLetter`](crate::DeadLetter), within about
    /// [`BATCH_DELAY`](crate::messaging::dead_letter::BATCH_DELAY) of the
    /// drop. Every call returns a new receiver that sees the letters
    /// arriving from then on; it holds up to 1024 letters, later ones are
    /// dropped and counted (see [`DeadLetterReceiver`]).
    pub fn dead_letters(&self) -> DeadLetterReceiver {
        self.dead_letters_with_capacity(DEFAULT_RECEIVER_CAPACITY)
    }

    /// Like [`Node::dead_letters`], holding up to `capacity` letters (at
    /// least 1).
    pub fn dead_letters_with_capacity(&self, capacity: usize) -> DeadLetterReceiver {
        self.inner.dead_letters.subscribe(capacity)
    }

    /// Sends to the mailbox registered as `name` on `node` (the remote
    /// tell to an actor path). Fails at once with
    /// [`MessageError::NoSuchMailbox`] when this node's replicated
    /// directory holds no such name on `node` (a name registered there
    /// moments ago may not have arrived yet: see [`Node::whereis`]).
    pub async fn send_named(&self, node: &str, name: &str, msg: Message) -> Result<(), MessageError> {
        let target = Target::Named {
            node: node.to_string(),
            name: name.to_string(),
        };
        self.inner.messaging.send(None, &target, msg, true).await
    }

    /// Sends a request and waits up to `timeout` for the reply. Fails with
    /// [`CallError::NodeDown`] as soon as membership declares the target
    /// node down, [`CallError::NoSuchMailbox`] if the target does not
    /// exist, [`CallError::Timeout`] otherwise.
    pub async fn call(
        &self,
        to: impl Into<Target>,
        msg: Message,
        timeout: Duration,
    ) -> Result<Message, CallError> {
        self.inner.messaging.call(None, &to.into(), msg, timeout).await
    }

    /// Registers `mailbox` under `name` on this node (cluster-visible).
    pub fn register(&self, name: &str, mailbox: &Mailbox) -> Result<(), NameError> {
        self.inner.messaging.register(name, &mailbox.slot)
    }

    /// Removes a local name; returns whether it existed.
    pub fn unregister(&self, name: &str) -> bool {
        self.inner.messaging.unregister(name)
    }

    /// Every mailbox registered as `name`, on any node.
    pub fn whereis(&self, name: &str) -> Vec<Pid> {
        self.inner.messaging.whereis(name)
    }

    /// Process groups (Erlang `pg` semantics).
    pub fn groups(&self) -> Groups<'_> {
        Groups { node: self }
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

    /// Number of local mailboxes.
    pub fn mailbox_count(&self) -> usize {
        self.inner.messaging.mailbox_count()
    }

    /// Subscribes to `pattern` (NATS grammar: `*` one token, `>` one or
    /// more trailing tokens). See [`Subscription`] for the slow-consumer
    /// policy.
    pub fn subscribe(&self, pattern: &str) -> Result<Subscription, PubSubError> {
        self.inner.pubsub.subscribe(pattern, None, None)
    }

    /// Subscribes to `pattern` in queue group `queue`: each message goes
    /// to exactly one member of the group cluster-wide while the cluster
    /// is stable. Which one follows the publisher's node's
    /// [`crate::PubSubConfig::queue_locality`]: by default a member
    /// anywhere, each node weighted by its member count; with
    /// [`crate::QueueLocality::Local`] a member on the publisher's node
    /// when it has one.
    pub fn queue_subscribe(&self, pattern: &str, queue: &str) -> Result<Subscription, PubSubError> {
        self.inner.pubsub.subscribe(pattern, Some(queue), None)
    }

    /// Subscribes with an explicit queue size in bytes.
    pub fn subscribe_with_capacity(
        &self,
        pattern: &str,
        queue: Option<&str>,
        capacity_bytes: usize,
    ) -> Result<Subscription, PubSubError> {
        self.inner.pubsub.subscribe(pattern, queue, Some(capacity_bytes))
    }

    /// Subscribes `sink` to `pattern`, optionally in queue group `queue`:
    /// each matching message is handed to [`DeliverySink::deliver`] on the
    /// task delivering it (a link reader, or a local publisher) instead of
    /// being queued for a consumer task. The sink must be short and never
    /// block; a sink answering [`crate::SinkResult::Full`] has the message
    /// dropped and counted as a slow-consumer drop, like a full
    /// [`Subscription`] queue. See [`DeliverySink`] for the full contract.
    pub fn subscribe_direct(
        &self,
        pattern: &str,
        queue: Option<&str>,
        sink: Arc<dyn DeliverySink>,
    ) -> Result<DirectSubscription, PubSubError> {
        self.inner.pubsub.subscribe_direct(pattern, queue, sink)
    }

    /// Publishes `payload` on `subject`. Local subscribers get it at once;
    /// each other node with matching interest gets one frame (waiting for
    /// room in that link's queue). At most once across a link failure.
    pub async fn publish(
        &self,
        subject: &str,
        headers: Vec<(String, String)>,
        payload: Bytes,
    ) -> Result<(), PubSubError> {
        self.publish_msg(PubMsg {
            subject: subject.to_string(),
            reply: None,
            headers,
            payload,
        })
        .await
    }

    /// Publishes a fully formed message (with a reply subject, say).
    pub async fn publish_msg(&self, msg: PubMsg) -> Result<(), PubSubError> {
        self.inner.pubsub.publish(msg).await
    }

    /// Publishes `msgs` in order, each exactly as [`Self::publish_msg`]
    /// would (same validation, local delivery, interest routing and
    /// per-publisher order), but with one lock of the subscription tables
    /// for the whole batch and one queue push per node: the way to publish
    /// everything a front end parsed out of one socket read. Waits for room
    /// in a link's queue as `publish_msg` does.
    ///
    /// Returns the messages refused, as (index in `msgs`, error); every
    /// other message was published. Nothing is allocated for the answer
    /// when all were published.
    pub async fn publish_batch(&self, msgs: impl IntoIterator<Item = PubMsg>) -> Vec<(usize, PubSubError)> {
        self.inner.pubsub.publish_batch(msgs).await
    }

    /// Publishes a request on `subject` and waits up to `timeout` for the
    /// first reply. Fails at once with [`PubSubError::NoResponders`] when
    /// no subscription anywhere in the cluster matches.
    pub async fn request(
        &self,
        subject: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<PubMsg, PubSubError> {
        self.inner
            .pubsub
            .request(subject, Vec::new(), payload, timeout)
            .await
    }

    /// A barrier covering every interest change (subscribe, unsubscribe,
    /// queue group membership) made on this node so far: once
    /// [`crate::InterestBarrier::wait`] resolves, every node that is up has
    /// applied them. The NATS front end answers a client's `PING` that
    /// follows `SUB`/`UNSUB` this way.
    pub fn interest_barrier(&self) -> crate::InterestBarrier {
        self.inner.pubsub.barrier()
    }

    /// Whether any subscription anywhere in the cluster matches `subject`.
    pub fn has_interest(&self, subject: &str) -> bool {
        self.inner.pubsub.has_interest(subject)
    }

    /// This node's interest: (pattern, queue group, local subscriptions).
    pub fn local_interest(&self) -> Vec<(String, Option<String>, u32)> {
        self.inner.pubsub.local_interest()
    }

    /// Other nodes' advertised interest: node → number of patterns.
    pub fn remote_interest(&self) -> std::collections::BTreeMap<String, usize> {
        self.inner.pubsub.remote_interest()
    }

    /// Publishes a live stream from this node (its origin). The key is
    /// announced cluster-wide; dropping the publisher withdraws it.
    pub fn publish_stream(&self, key: &str, policy: StreamPolicy) -> Result<StreamPublisher, StreamError> {
        self.inner.relay.publish_stream(key, policy)
    }

    /// Plays a stream: the replay buffer, then live frames. On a node that
    /// is not the origin the first subscriber makes the node pull the
    /// stream once.
    ///
    /// Returns once the origin confirmed the attach (at once on the origin
    /// itself and on an edge already pulling): from then on every frame the
    /// origin publishes reaches the subscription in order, unless a
    /// [`StreamEvent::Skipped`](crate::StreamEvent::Skipped) (the viewer or
    /// the edge fell behind) or
    /// [`StreamEvent::Discontinuity`](crate::StreamEvent::Discontinuity)
    /// (failover) event comes first and names the gap.
    ///
    /// Fails at once with [`StreamError::NotFound`] if no node publishes
    /// `key` (see [`Node::subscribe_stream_wait`]); with
    /// [`StreamError::AttachTimeout`] if the origin does not confirm within
    /// `relay.attach_timeout`; with [`StreamError::Closed`] if the stream
    /// ends meanwhile.
    pub async fn subscribe_stream(&self, key: &str) -> Result<StreamSubscription, StreamError> {
        let timeout = self.inner.config.relay.attach_timeout;
        self.inner.relay.subscribe(key, timeout).await
    }

    /// Like [`Node::subscribe_stream`], but waits up to `timeout` (in all:
    /// for an origin of `key` to appear and for its confirmation).
    pub async fn subscribe_stream_wait(
        &self,
        key: &str,
        timeout: Duration,
    ) -> Result<StreamSubscription, StreamError> {
        self.inner.relay.subscribe_wait(key, timeout).await
    }

    /// The origin this node would pull `key` from: never this node,
    /// highest priority, then smallest name.
    pub fn locate_stream(&self, key: &str) -> Option<String> {
        self.inner.relay.locate(key)
    }

    /// Every stream known here, with origins and this node's role.
    pub fn streams(&self) -> Vec<StreamInfo> {
        self.inner.relay.streams()
    }

    /// Registers the handler of this node's shards (see [`ShardHandler`]).
    /// Until one is registered, events for this node's shards are refused
    /// as not ready and their senders retry. Replaces an inbox opened by
    /// [`Node::shard_inbox`]; register one consumer, before routing starts.
    pub fn set_shard_handler(&self, handler: Arc<dyn ShardHandler>) {
        self.inner.shards.set_sync_handler(handler);
    }

    /// Consumes this node's shards asynchronously: returns a `Stream` of
    /// [`crate::ShardDelivery`] (acquired, event, released, in the order
    /// this node saw them), replacing a handler set by
    /// [`Node::set_shard_handler`]. Each event's sender is acknowledged
    /// only when the consumer calls [`crate::ShardEvent::ack`] (after
    /// processing it, e.g. persisting); dropping the event unacknowledged
    /// fails the sender's route with [`RouteError::NotProcessed`].
    /// At most `shards.inbox_capacity` events per shard are queued or
    /// handed out unacknowledged; beyond that `route` waits for room
    /// (within its timeout) and [`Node::try_route`] fails with
    /// [`RouteError::Full`]. `Released` comes after the shard's last
    /// handed-out event was settled. Dropping the stream refuses the
    /// queued events (their senders retry elsewhere or time out).
    pub fn shard_inbox(&self) -> ShardInbox {
        self.inner.shards.open_inbox()
    }

    /// The committed shard map (epoch 0 before the first commit).
    pub fn shard_map(&self) -> ShardMap {
        self.inner.shards.map()
    }

    /// Watches committed shard maps.
    pub fn watch_shard_map(&self) -> tokio::sync::watch::Receiver<ShardMap> {
        self.inner.shards.watch()
    }

    /// Plans a rebalance to the live members and proposes it at once
    /// (forwarded to the leader from a follower). `true` when a new map
    /// committed; a failed proposal changes no node's map and is counted
    /// in `shard_proposals_failed`.
    pub async fn rebalance_shards(&self) -> bool {
        self.inner.shards.rebalance_now().await
    }

    /// The node currently leading the shard map group, if known.
    pub fn shard_leader(&self) -> Option<String> {
        self.inner.shards.leader()
    }

    /// The voters of the shard map group.
    pub fn shard_voters(&self) -> Vec<String> {
        self.inner.shards.voters()
    }

    /// The non-voting members (learners) of the shard map group: up nodes
    /// beyond the voters. A learner down longer than
    /// `shards.voter_replace_after` is removed from the group.
    pub fn shard_learners(&self) -> Vec<String> {
        self.inner.shards.learners()
    }

    /// Routes `event` to the owner of `key`'s shard (FNV-1a of the key,
    /// modulo the shard count) and returns once the owner acknowledged it;
    /// the [`RouteAck`] names the accepting node and its map epoch.
    /// Retries across map changes within `shards.route_timeout`, then
    /// fails with [`RouteError::Timeout`] naming the last attempt's
    /// [`crate::RouteFailure`]. With no committed map (or no owner for the
    /// shard) it waits at most `shards.first_map_wait` and fails with
    /// [`RouteError::Unassigned`]; a handler that panics on the event
    /// fails it at once with [`RouteError::HandlerFailed`].
    /// Events of one shard from this node are delivered in the order they
    /// were submitted (sequential calls, calls polled in order, and
    /// [`Node::route_many`]), retries after a failover included. With an
    /// inbox ([`Node::shard_inbox`]) the acknowledgement means processed,
    /// and a full inbox makes the route wait for room.
    pub async fn route(&self, key: &[u8], event: Bytes) -> Result<RouteAck, RouteError> {
        self.inner.shards.route_one(key, event, false).await
    }

    /// Like [`Node::route`], but when the owner's inbox for the shard is
    /// full it fails at once with [`RouteError::Full`] (nothing delivered,
    /// not retried) instead of waiting. Other failures retry as `route`.
    pub async fn try_route(&self, key: &[u8], event: Bytes) -> Result<RouteAck, RouteError> {
        self.inner.shards.route_one(key, event, true).await
    }

    /// Routes many `(key, event)` pairs at once and returns their results
    /// in the same order. Events travel in per-owner batches; events of one
    /// shard are delivered in the order given. Each result is what
    /// [`Node::route`] would have returned for that event.
    pub async fn route_many(&self, events: Vec<(Bytes, Bytes)>) -> Vec<Result<RouteAck, RouteError>> {
        self.inner.shards.route_many(events).await
    }

    /// Resolves when the node has stopped.
    pub async fn stopped(&self) {
        self.inner.shutdown.cancelled().await;
    }
}
