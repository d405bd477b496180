//! Live stream relay: origins, edges, replay buffers, failover.
//!
//! A node that publishes a stream is its *origin*: it announces the key in
//! the registry (table `ORIGINS`) and keeps a replay buffer (GOP cache).
//! Any other node that gets a subscriber becomes an *edge*: it pulls the
//! stream once from the origin chosen by [`choose_origin`] (highest
//! priority, then smallest name; never itself, never another edge), keeps
//! its own replay buffer and fans out locally. Each stream on each node is
//! one [`Hub`]; every change of a hub happens under its lock, so a new
//! subscriber gets the replay buffer and then every later frame with no gap
//! and no duplicate (and cursors de-duplicate by sequence on top, for
//! re-pulls).
//!
//! Attach: an edge asks its origin with `StreamAttach` and a fresh attach
//! id; the origin answers under its hub's lock with `StreamAttached`, the
//! replay buffer, then live frames ([`EdgeFeed`]). The edge takes frames
//! only once the acknowledgement of its current attach id arrived
//! ([`Attachment`]), and `subscribe_stream` returns only then (bounded by
//! `attach_timeout`): from the return on, every frame the origin publishes
//! reaches the viewer unless a `Skipped` (exact count) or `Discontinuity`
//! event names the gap. Origins announce `attach_ack`; towards an older
//! origin an edge uses `StreamSubscribe` and takes frames at once.
//!
//! Failure handling: if the upstream origin goes down, ends the stream, or
//! stays silent (no frame and no heartbeat) for `stall_timeout`, the edge
//! switches to another origin of the same key (subscribers see a
//! `Discontinuity`) or ends its subscribers with `OriginLost`/`Finished`.

mod origins;
pub mod stream;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};
use weft_proto::frame::{
    Header, StreamAttach, StreamAttached, StreamData, StreamEnd, StreamEndReason, StreamHeartbeat, StreamKey,
};
use weft_proto::registry::{EntryKey, table};
use weft_proto::relay::{
    Admit, Attachment, Cursor, EdgeFeed, FeedOut, GopCache, Intake, OriginAnnounce, Refused, StreamFrame,
    choose_origin, validate_key,
};
use weft_proto::{Frame, NodeId};

use crate::config::RelayConfig;
use crate::link::Links;
use crate::queue::{ByteQueue, Pushed};
use crate::registry::RegistryService;
use crate::stats::Stats;
use crate::sync::lock;
pub(crate) use origins::OriginTable;

use stream::{
    Item, StreamClosed, StreamError, StreamEvent, StreamPolicy, StreamPublisher, StreamSubscription, SubQueue,
};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    /// A publisher on this node.
    Local,
    /// Pulled from this origin node.
    Upstream(String),
}

struct LocalSub {
    id: u64,
    cursor: Cursor,
    queue: Arc<SubQueue>,
}

struct HubState {
    source: Source,
    /// Edge: the attach handshake with the upstream (frames are taken only
    /// once it is confirmed). Origin: always attached.
    attach: Attachment,
    /// Edge: the `StreamAttach` request for the current attach was queued
    /// (a full link defers it to the next tick).
    attach_sent: bool,
    cache: GopCache,
    subs: Vec<LocalSub>,
    remotes: BTreeMap<String, EdgeFeed>,
    last_seq: Option<u64>,
    /// Edge: last frame or heartbeat from upstream. Origin: last send.
    last_activity: Instant,
    /// Ended (no source left): being removed; never attach to it.
    dead: bool,
    /// Bumped each time the last local subscriber leaves, so only the
    /// latest linger timer may tear the pull down.
    idle_gen: u64,
}

struct Hub {
    st: Mutex<HubState>,
    /// Woken when the hub gets attached or its subscribers are ended, for
    /// subscribers waiting for the attach.
    changed: Notify,
}

impl Hub {
    fn new(st: HubState) -> Arc<Self> {
        Arc::new(Self {
            st: Mutex::new(st),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        crate::sync::lock(&self.st)
    }
}

/// A stream as shown by the admin API.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StreamInfo {
    /// The stream key.
    pub key: String,
    /// Nodes announcing it, best first.
    pub origins: Vec<String>,
    /// This node's role: `origin`, `edge` or `none`.
    pub role: &'static str,
    /// Upstream origin when an edge.
    pub upstream: Option<String>,
    /// Local subscribers.
    pub subscribers: usize,
    /// Edges pulling from this node.
    pub edges: Vec<String>,
}

/// The relay service of one node.
pub(crate) struct Relay {
    me: Weak<Relay>,
    local: NodeId,
    links: Links,
    stats: Arc<Stats>,
    registry: Arc<RegistryService>,
    config: RelayConfig,
    hubs: Mutex<HashMap<String, Arc<Hub>>>,
    origins: Arc<OriginTable>,
    next_sub: AtomicU64,
    /// Attach ids, fresh for every attach this node starts.
    next_attach: AtomicU64,
    /// The node's runtime: subscriptions may be dropped outside it.
    runtime: tokio::runtime::Handle,
}

fn data_frame(key: &str, f: &StreamFrame, skipped: u64) -> Frame {
    Frame {
        header: Header::StreamData(StreamData {
            key: key.to_string(),
            seq: f.seq,
            timestamp: f.timestamp,
            keyframe: f.keyframe,
            config: f.config,
            skipped,
        }),
        payload: f.payload.clone(),
    }
}

impl Relay {
    pub(crate) fn new(
        local: NodeId,
        links: Links,
        stats: Arc<Stats>,
        registry: Arc<RegistryService>,
        origins: Arc<OriginTable>,
        config: RelayConfig,
        stop: CancellationToken,
    ) -> Arc<Self> {
        let relay = Arc::new_cyclic(|me| Self {
            me: me.clone(),
            local,
            links,
            stats,
            registry,
            config,
            hubs: Mutex::new(HashMap::new()),
            origins,
            next_sub: AtomicU64::new(1),
            next_attach: AtomicU64::new(1),
            runtime: tokio::runtime::Handle::current(),
        });
        tokio::spawn(ticker(Arc::downgrade(&relay), stop));
        relay
    }

    fn hub(&self, key: &str) -> Option<Arc<Hub>> {
        lock(&self.hubs).get(key).cloned()
    }

    /// Origins of `key` other than this node, best first.
    fn candidates(&self, key: &str, exclude: Option<&str>) -> Option<String> {
        let origins = self.origins.nodes();
        let nodes = origins.get(key)?;
        choose_origin(
            &self.local.name,
            nodes
                .iter()
                .filter(|(n, _)| Some(n.as_str()) != exclude && !self.links.is_down(n))
                .map(|(n, p)| (n.as_str(), *p)),
        )
        .map(str::to_string)
    }

    /// The origin an edge would pull `key` from (never this node).
    pub(crate) fn locate(&self, key: &str) -> Option<String> {
        self.candidates(key, None)
    }

    // ----- origin side -----

    pub(crate) fn publish_stream(
        &self,
        key: &str,
        policy: StreamPolicy,
    ) -> Result<StreamPublisher, StreamError> {
        validate_key(key)?;
        let me = self
            .me
            .upgrade()
            .ok_or_else(|| StreamError::NotFound(key.to_string()))?;
        let mut hubs = lock(&self.hubs);
        if let Some(hub) = hubs.get(key) {
            let mut st = hub.lock();
            if st.source == Source::Local {
                return Err(StreamError::AlreadyPublished(key.to_string()));
            }
            // This node was an edge of the key: it becomes its origin.
            if let Source::Upstream(up) = &st.source {
                self.send(up, Header::StreamUnsubscribe(StreamKey { key: key.to_string() }));
            }
            st.source = Source::Local;
            st.attach = Attachment::local();
            st.cache = GopCache::new(policy.gop_max_frames, policy.gop_max_bytes);
            st.last_seq = None;
            let origin = self.local.name.clone();
            for sub in &mut st.subs {
                sub.cursor.discontinuity();
                let discarded = push_item(
                    &sub.queue,
                    Item::Event(StreamEvent::Discontinuity {
                        origin: origin.clone(),
                    }),
                );
                self.count_discarded(discarded);
            }
            drop(st);
            // Subscribers waiting for an upstream attach are attached now.
            hub.changed.notify_waiters();
        } else {
            hubs.insert(
                key.to_string(),
                Hub::new(HubState {
                    source: Source::Local,
                    attach: Attachment::local(),
                    attach_sent: true,
                    cache: GopCache::new(policy.gop_max_frames, policy.gop_max_bytes),
                    subs: Vec::new(),
                    remotes: BTreeMap::new(),
                    last_seq: None,
                    last_activity: Instant::now(),
                    dead: false,
                    idle_gen: 0,
                }),
            );
        }
        drop(hubs);
        // Two plain fields always encode; never announce an empty value.
        let value = postcard::to_allocvec(&OriginAnnounce {
            priority: policy.priority,
            attach_ack: true,
        })
        .expect("an origin announcement encodes");
        self.registry
            .put_many(vec![(EntryKey::new(table::ORIGINS, key), value.into())]);
        info!(key, priority = policy.priority, "publishing stream");
        Ok(StreamPublisher {
            key: key.to_string(),
            relay: me,
        })
    }

    pub(crate) fn publish_frame(&self, key: &str, frame: StreamFrame) -> Result<(), StreamError> {
        let hub = self
            .hub(key)
            .ok_or_else(|| StreamError::NotFound(key.to_string()))?;
        let mut st = hub.lock();
        if let Some(last) = st.last_seq
            && frame.seq <= last
        {
            return Err(StreamError::OutOfOrder { seq: frame.seq, last });
        }
        self.stats.stream_frames_published.fetch_add(1, Ordering::Relaxed);
        self.ingest(key, &mut st, frame);
        Ok(())
    }

    /// Adds a frame to a hub: replay buffer, local subscribers, edges.
    fn ingest(&self, key: &str, st: &mut HubState, frame: StreamFrame) {
        st.last_seq = Some(frame.seq);
        let truncated = st.cache.truncated();
        st.cache.push(frame.clone());
        let more = st.cache.truncated() - truncated;
        if more > 0 {
            self.stats.stream_gop_truncated.fetch_add(more, Ordering::Relaxed);
        }
        for sub in &mut st.subs {
            self.offer(sub, &frame);
        }
        if !st.remotes.is_empty() {
            st.last_activity = Instant::now();
        }
        let HubState {
            cache,
            remotes,
            last_seq,
            ..
        } = st;
        let mut gone = Vec::new();
        for (node, feed) in remotes.iter_mut() {
            let sent = feed.offer(&frame, cache, *last_seq, &mut |out| {
                self.feed_send(key, node, out)
            });
            self.count_feed(node, sent, &mut gone);
        }
        for node in gone {
            remotes.remove(&node);
        }
    }

    /// Accounts for one [`EdgeFeed`] call: skipped frames, or a gone edge.
    fn count_feed(&self, node: &str, sent: Result<u64, Refused>, gone: &mut Vec<String>) {
        match sent {
            Ok(0) => {}
            Ok(skipped) => {
                self.stats
                    .stream_frames_skipped
                    .fetch_add(skipped, Ordering::Relaxed);
            }
            Err(_) => gone.push(node.to_string()),
        }
    }

    /// Puts one output of an edge's feed on the link to it.
    fn feed_send(&self, key: &str, node: &str, out: FeedOut<'_>) -> Result<(), Refused> {
        let (frame, data) = match out {
            FeedOut::Attached { attach, last_seq } => (
                Frame {
                    header: Header::StreamAttached(StreamAttached {
                        key: key.to_string(),
                        attach,
                        last_seq,
                    }),
                    payload: bytes::Bytes::new(),
                },
                false,
            ),
            FeedOut::Data { frame, skipped } => (data_frame(key, frame, skipped), true),
        };
        match self.links.try_send(node, &frame) {
            Ok(()) => {
                if data {
                    self.stats
                        .peer(node)
                        .stream_frames_sent
                        .fetch_add(1, Ordering::Relaxed);
                } else {
                    debug!(key, edge = node, "edge attached");
                }
                Ok(())
            }
            Err(crate::error::SendError::Full(_)) => {
                if data {
                    debug!(edge = node, key, "edge link full; skipping to the next keyframe");
                } else {
                    debug!(
                        edge = node,
                        key, "edge link full; attach acknowledgement deferred"
                    );
                }
                Err(Refused::Full)
            }
            Err(e) => {
                self.stats.frames_dropped.inc(e.label());
                Err(Refused::Gone)
            }
        }
    }

    fn count_discarded(&self, discarded: u64) {
        if discarded > 0 {
            self.stats
                .stream_frames_skipped
                .fetch_add(discarded, Ordering::Relaxed);
        }
    }

    /// Delivers a frame to a local subscriber under the lag policy.
    fn offer(&self, sub: &mut LocalSub, frame: &StreamFrame) {
        let items = match sub.cursor.admit(frame) {
            Admit::Duplicate => return,
            Admit::Skip => {
                self.stats.stream_frames_skipped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Admit::Deliver => vec![Item::Event(StreamEvent::Frame(frame.clone()))],
            Admit::ResumeAfterSkip { skipped } => vec![
                Item::Event(StreamEvent::Skipped { frames: skipped }),
                Item::Event(StreamEvent::Frame(frame.clone())),
            ],
        };
        for item in items {
            let full = sub.queue.queue.len() >= sub.queue.max_frames;
            let pushed = if full {
                Err(Pushed::Full(item))
            } else {
                sub.queue.queue.try_push(item, false)
            };
            if let Err(Pushed::Full(_)) = pushed {
                // Fell behind: drop what it had queued (so it never gets
                // the rest of a partial GOP) and skip to the next keyframe.
                let discarded = discard(&sub.queue);
                sub.cursor.fall_behind(frame, discarded.frames + discarded.named);
                self.stats
                    .stream_frames_skipped
                    .fetch_add(1 + discarded.frames, Ordering::Relaxed);
                return;
            }
        }
    }

    pub(crate) fn end_publisher(&self, key: &str) {
        self.registry.remove_many(&[EntryKey::new(table::ORIGINS, key)]);
        let Some(hub) = self.hub(key) else { return };
        let mut st = hub.lock();
        if st.source != Source::Local {
            return;
        }
        for node in std::mem::take(&mut st.remotes).into_keys() {
            self.send(
                &node,
                Header::StreamEnd(StreamEnd {
                    key: key.to_string(),
                    reason: StreamEndReason::Finished,
                }),
            );
        }
        info!(key, "stream publisher finished");
        if !st.subs.is_empty() {
            // Local viewers move to a standby origin if there is one.
            self.failover(key, &mut st, None, StreamClosed::Finished);
        }
        let empty = st.subs.is_empty();
        if empty {
            st.dead = true;
        }
        drop(st);
        if empty {
            self.remove_hub_if(key, &hub);
        }
    }

    // ----- subscriber / edge side -----

    /// Adds a subscriber to the stream's hub (creating it, and starting an
    /// attach to the origin, on an edge). The subscriber is in the hub at
    /// once, so it gets every frame the hub takes from now on; the caller
    /// waits for the attach with [`Relay::wait_attached`].
    fn add_subscriber(&self, key: &str) -> Result<(StreamSubscription, Arc<Hub>), StreamError> {
        validate_key(key)?;
        let me = self
            .me
            .upgrade()
            .ok_or_else(|| StreamError::NotFound(key.to_string()))?;
        let queue = Arc::new(SubQueue {
            queue: ByteQueue::new(self.config.subscriber_bytes, 0),
            max_frames: self.config.subscriber_frames,
            closed: Mutex::new(None),
        });
        let id = self.next_sub.fetch_add(1, Ordering::Relaxed);
        let mut hubs = lock(&self.hubs);
        if hubs.get(key).is_some_and(|h| h.lock().dead) {
            hubs.remove(key);
        }
        let hub = match hubs.get(key) {
            Some(h) => h.clone(),
            None => {
                let origin = self
                    .locate(key)
                    .ok_or_else(|| StreamError::NotFound(key.to_string()))?;
                let (attach, attach_sent) = self.start_attach(key, &origin);
                let hub = Hub::new(HubState {
                    source: Source::Upstream(origin.clone()),
                    attach,
                    attach_sent,
                    cache: GopCache::new(self.config.gop_max_frames, self.config.gop_max_bytes),
                    subs: Vec::new(),
                    remotes: BTreeMap::new(),
                    last_seq: None,
                    last_activity: Instant::now(),
                    dead: false,
                    idle_gen: 0,
                });
                hubs.insert(key.to_string(), hub.clone());
                info!(key, %origin, "pulling stream from its origin");
                self.stats.stream_pulls.fetch_add(1, Ordering::Relaxed);
                hub
            }
        };
        // Attach while still holding the map: a hub cannot die between
        // the lookup and the attach.
        let mut st = hub.lock();
        drop(hubs);
        let mut sub = LocalSub {
            id,
            cursor: Cursor::default(),
            queue: queue.clone(),
        };
        // Replay buffer first, then (under the same lock) every live frame.
        for frame in st.cache.snapshot() {
            self.offer(&mut sub, &frame);
        }
        st.subs.push(sub);
        drop(st);
        let sub = StreamSubscription {
            key: key.to_string(),
            id,
            queue,
            relay: me,
            next: Default::default(),
            ended: false,
        };
        Ok((sub, hub))
    }

    /// Waits until `hub` is attached to its origin (at once on the origin
    /// itself or on an edge already pulling), until `sub` is ended, or
    /// until `deadline`.
    async fn wait_attached(
        &self,
        sub: &StreamSubscription,
        hub: &Hub,
        deadline: Instant,
    ) -> Result<(), StreamError> {
        loop {
            let changed = hub.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let origin = {
                let st = hub.lock();
                if let Some(reason) = *lock(&sub.queue.closed) {
                    return Err(StreamError::Closed {
                        key: sub.key.clone(),
                        reason,
                    });
                }
                if st.attach.is_attached() {
                    return Ok(());
                }
                match &st.source {
                    Source::Upstream(origin) => origin.clone(),
                    Source::Local => String::new(),
                }
            };
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                info!(key = %sub.key, %origin, "the origin did not confirm the attach in time");
                return Err(StreamError::AttachTimeout {
                    key: sub.key.clone(),
                    origin,
                });
            }
        }
    }

    /// Subscribes, waiting up to `timeout` for the attach to the origin.
    pub(crate) async fn subscribe(
        &self,
        key: &str,
        timeout: Duration,
    ) -> Result<StreamSubscription, StreamError> {
        let deadline = Instant::now() + timeout;
        let (sub, hub) = self.add_subscriber(key)?;
        self.wait_attached(&sub, &hub, deadline).await?;
        Ok(sub)
    }

    /// Subscribes, waiting up to `timeout` for an origin to appear and
    /// for the attach to it.
    pub(crate) async fn subscribe_wait(
        &self,
        key: &str,
        timeout: Duration,
    ) -> Result<StreamSubscription, StreamError> {
        let deadline = Instant::now() + timeout;
        loop {
            let changed = self.origins.changed().notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.add_subscriber(key) {
                Err(StreamError::NotFound(_)) if Instant::now() < deadline => {
                    if tokio::time::timeout_at(deadline, changed).await.is_err() {
                        return Err(StreamError::NotFound(key.to_string()));
                    }
                }
                Err(e) => return Err(e),
                Ok((sub, hub)) => {
                    self.wait_attached(&sub, &hub, deadline).await?;
                    return Ok(sub);
                }
            }
        }
    }

    pub(crate) fn unsubscribe(&self, key: &str, id: u64) {
        let Some(hub) = self.hub(key) else { return };
        let edge_idle = {
            let mut st = hub.lock();
            st.subs.retain(|s| s.id != id);
            if st.subs.is_empty() && matches!(st.source, Source::Upstream(_)) {
                st.idle_gen += 1;
                Some(st.idle_gen)
            } else {
                None
            }
        };
        if let Some(generation) = edge_idle {
            // Keep pulling for a while: a viewer coming back starts at once.
            let me = self.me.clone();
            let key = key.to_string();
            let linger = self.config.linger;
            self.runtime.spawn(async move {
                tokio::time::sleep(linger).await;
                if let Some(relay) = me.upgrade() {
                    relay.teardown_if_idle(&key, generation);
                }
            });
        }
    }

    fn teardown_if_idle(&self, key: &str, generation: u64) {
        let mut hubs = lock(&self.hubs);
        let Some(hub) = hubs.get(key).cloned() else { return };
        let st = hub.lock();
        if st.idle_gen != generation {
            return; // a viewer came and went since: a later timer decides
        }
        if let (true, Source::Upstream(up)) = (st.subs.is_empty(), &st.source) {
            info!(key, upstream = %up, "no subscriber left; stopping the pull");
            self.send(up, Header::StreamUnsubscribe(StreamKey { key: key.to_string() }));
            self.stats.stream_teardowns.fetch_add(1, Ordering::Relaxed);
            drop(st);
            hubs.remove(key);
        }
    }

    fn remove_hub_if(&self, key: &str, hub: &Arc<Hub>) {
        let mut hubs = lock(&self.hubs);
        if hubs.get(key).is_some_and(|h| Arc::ptr_eq(h, hub)) {
            hubs.remove(key);
        }
    }

    /// Asks `origin` for `key`: with the handshake if the origin announced
    /// it (pending until acknowledged), else the older way (attached at
    /// once). Returns the attachment and whether the request was queued.
    fn start_attach(&self, key: &str, origin: &str) -> (Attachment, bool) {
        let legacy = self.origins.is_legacy(key, origin);
        if legacy {
            let sent = self.send(
                origin,
                Header::StreamSubscribe(StreamKey { key: key.to_string() }),
            );
            return (Attachment::local(), sent);
        }
        let attach = Attachment::pending(self.next_attach.fetch_add(1, Ordering::Relaxed));
        let sent = self.send(
            origin,
            Header::StreamAttach(StreamAttach {
                key: key.to_string(),
                attach: attach.id(),
            }),
        );
        (attach, sent)
    }

    /// Switches a hub to another origin, or ends its subscribers.
    fn failover(&self, key: &str, st: &mut HubState, failed: Option<&str>, why: StreamClosed) {
        match self.candidates(key, failed) {
            Some(next) => {
                info!(key, from = ?failed, to = %next, "stream failover");
                self.stats.stream_failovers.fetch_add(1, Ordering::Relaxed);
                st.source = Source::Upstream(next.clone());
                st.cache.clear();
                st.last_seq = None;
                st.last_activity = Instant::now();
                for sub in &mut st.subs {
                    sub.cursor.discontinuity();
                    let discarded = push_item(
                        &sub.queue,
                        Item::Event(StreamEvent::Discontinuity { origin: next.clone() }),
                    );
                    self.count_discarded(discarded);
                }
                (st.attach, st.attach_sent) = self.start_attach(key, &next);
            }
            None => {
                for sub in st.subs.drain(..) {
                    end_sub(&sub.queue, why);
                }
                // Leaves a dead hub; the caller removes it, and nobody
                // attaches to it meanwhile.
                st.source = Source::Upstream(String::new());
                st.dead = true;
            }
        }
    }

    fn fail_upstream(&self, key: &str, failed: &str, why: StreamClosed) {
        let Some(hub) = self.hub(key) else { return };
        let mut st = hub.lock();
        if st.source != Source::Upstream(failed.to_string()) {
            return;
        }
        self.failover(key, &mut st, Some(failed), why);
        let dead = st.subs.is_empty();
        st.dead |= dead;
        drop(st);
        hub.changed.notify_waiters();
        if dead {
            self.remove_hub_if(key, &hub);
        }
    }

    /// Queues a relay control frame; false (counted, logged) if refused.
    fn send(&self, node: &str, header: Header) -> bool {
        let frame = Frame {
            header,
            payload: bytes::Bytes::new(),
        };
        match self.links.try_send(node, &frame) {
            Ok(()) => true,
            Err(e) => {
                debug!(peer = node, error = %e, "relay control frame not queued");
                self.stats.frames_dropped.inc(e.label());
                false
            }
        }
    }

    /// Handles a relay frame from `from`.
    pub(crate) fn on_frame(&self, from: &NodeId, frame: Frame) {
        match frame.header {
            Header::StreamSubscribe(k) => self.on_subscribe(&from.name, &k.key, None),
            Header::StreamAttach(a) => self.on_subscribe(&from.name, &a.key, Some(a.attach)),
            Header::StreamAttached(a) => {
                let Some(hub) = self.hub(&a.key) else {
                    self.stats.frames_dropped.inc("stream_unwanted");
                    return;
                };
                let mut st = hub.lock();
                if st.source != Source::Upstream(from.name.clone()) {
                    self.stats.frames_dropped.inc("stream_unwanted");
                    return;
                }
                st.last_activity = Instant::now();
                if st.attach.on_attached(a.attach, a.last_seq) {
                    debug!(key = %a.key, origin = %from.name, last_seq = ?a.last_seq, "attached to the origin");
                    drop(st);
                    hub.changed.notify_waiters();
                } else {
                    // The acknowledgement of an abandoned attach.
                    self.stats.frames_dropped.inc("stream_stale");
                }
            }
            Header::StreamUnsubscribe(k) => {
                if let Some(hub) = self.hub(&k.key) {
                    hub.lock().remotes.remove(&from.name);
                }
            }
            Header::StreamData(d) => {
                let Some(hub) = self.hub(&d.key) else {
                    self.stats.frames_dropped.inc("stream_unwanted");
                    self.send(&from.name, Header::StreamUnsubscribe(StreamKey { key: d.key }));
                    return;
                };
                let mut st = hub.lock();
                if st.source != Source::Upstream(from.name.clone()) {
                    self.stats.frames_dropped.inc("stream_unwanted");
                    return;
                }
                self.stats
                    .peer(&from.name)
                    .stream_frames_received
                    .fetch_add(1, Ordering::Relaxed);
                st.last_activity = Instant::now();
                let gap = match st.attach.intake(st.last_seq, d.seq, d.skipped) {
                    Intake::Stale => {
                        // In flight from an attach given up before the
                        // current one was acknowledged.
                        self.stats.frames_dropped.inc("stream_stale");
                        return;
                    }
                    Intake::Duplicate => return,
                    Intake::Accept { gap } => gap,
                };
                let f = StreamFrame {
                    seq: d.seq,
                    timestamp: d.timestamp,
                    keyframe: d.keyframe,
                    config: d.config,
                    payload: frame.payload,
                };
                if gap > 0 {
                    // The origin skipped frames for this edge: every viewer
                    // here missed them too, and is told so at once.
                    for sub in &mut st.subs {
                        let discarded = if sub.queue.queue.len() >= sub.queue.max_frames {
                            discard(&sub.queue)
                        } else {
                            Discarded::default()
                        };
                        self.count_discarded(discarded.frames);
                        let frames = sub.cursor.interrupt(gap + discarded.frames + discarded.named);
                        let more = push_item(&sub.queue, Item::Event(StreamEvent::Skipped { frames }));
                        self.count_discarded(more);
                    }
                    st.cache.clear();
                }
                self.ingest(&d.key, &mut st, f);
            }
            Header::StreamHeartbeat(h) => {
                if let Some(hub) = self.hub(&h.key) {
                    let mut st = hub.lock();
                    if st.source == Source::Upstream(from.name.clone()) {
                        st.last_activity = Instant::now();
                    }
                }
            }
            Header::StreamEnd(e) => {
                let why = match e.reason {
                    StreamEndReason::Finished => StreamClosed::Finished,
                    StreamEndReason::NotHere => StreamClosed::OriginLost,
                };
                self.fail_upstream(&e.key, &from.name, why);
            }
            _ => self.stats.frames_dropped.inc("unhandled_kind"),
        }
    }

    /// An edge asks for a stream: `attach` is its attach id, `None` for
    /// the older `StreamSubscribe` (no acknowledgement).
    fn on_subscribe(&self, edge: &str, key: &str, attach: Option<u64>) {
        let not_here = || {
            self.send(
                edge,
                Header::StreamEnd(StreamEnd {
                    key: key.to_string(),
                    reason: StreamEndReason::NotHere,
                }),
            );
        };
        let Some(hub) = self.hub(key) else {
            not_here();
            return;
        };
        let mut st = hub.lock();
        if st.source != Source::Local {
            // Edges never serve other edges: no relay chains.
            not_here();
            return;
        }
        if attach.is_some() && st.remotes.get(edge).and_then(EdgeFeed::attach_id) == attach {
            return; // a repeated request: its feed is already running
        }
        debug!(key, edge, ?attach, "edge attaching");
        let mut feed = match attach {
            Some(id) => EdgeFeed::new(id),
            None => EdgeFeed::legacy(),
        };
        let sent = feed.start(&st.cache, st.last_seq, &mut |out| self.feed_send(key, edge, out));
        let mut gone = Vec::new();
        self.count_feed(edge, sent, &mut gone);
        if !gone.is_empty() {
            st.remotes.remove(edge);
            return;
        }
        st.last_activity = Instant::now();
        st.remotes.insert(edge.to_string(), feed);
    }

    /// Membership declared `node` down.
    pub(crate) fn member_down(&self, node: &NodeId) {
        let hubs: Vec<(String, Arc<Hub>)> = lock(&self.hubs)
            .iter()
            .map(|(k, h)| (k.clone(), h.clone()))
            .collect();
        for (key, hub) in hubs {
            let upstream_failed = {
                let mut st = hub.lock();
                st.remotes.remove(&node.name);
                st.source == Source::Upstream(node.name.clone())
            };
            if upstream_failed {
                self.fail_upstream(&key, &node.name, StreamClosed::OriginLost);
            }
        }
    }

    /// Heartbeats to edges; stall detection of upstreams.
    fn tick(&self) {
        let now = Instant::now();
        let hubs: Vec<(String, Arc<Hub>)> = lock(&self.hubs)
            .iter()
            .map(|(k, h)| (k.clone(), h.clone()))
            .collect();
        for (key, hub) in hubs {
            let stalled = {
                let mut st = hub.lock();
                match &st.source {
                    Source::Local => {
                        self.retry_feeds(&key, &mut st);
                        if now.duration_since(st.last_activity) >= self.config.heartbeat_interval
                            && !st.remotes.is_empty()
                        {
                            st.last_activity = now;
                            let hb = StreamHeartbeat {
                                key: key.clone(),
                                last_seq: st.last_seq,
                            };
                            for node in st.remotes.keys() {
                                self.send(node, Header::StreamHeartbeat(hb.clone()));
                            }
                        }
                        None
                    }
                    Source::Upstream(up)
                        if now.duration_since(st.last_activity) >= self.config.stall_timeout =>
                    {
                        Some(up.clone())
                    }
                    Source::Upstream(up) => {
                        if !st.attach_sent && !st.attach.is_attached() {
                            let up = up.clone();
                            st.attach_sent = self.send(
                                &up,
                                Header::StreamAttach(StreamAttach {
                                    key: key.clone(),
                                    attach: st.attach.id(),
                                }),
                            );
                        }
                        None
                    }
                }
            };
            if let Some(up) = stalled {
                info!(key, origin = %up, "upstream stalled");
                self.stats.stream_stalls.fetch_add(1, Ordering::Relaxed);
                self.fail_upstream(&key, &up, StreamClosed::OriginLost);
            }
        }
    }

    /// Sends acknowledgements a full link refused earlier.
    fn retry_feeds(&self, key: &str, st: &mut HubState) {
        let HubState {
            cache,
            remotes,
            last_seq,
            ..
        } = st;
        let mut gone = Vec::new();
        for (node, feed) in remotes.iter_mut().filter(|(_, f)| !f.is_attached()) {
            let sent = feed.retry(cache, *last_seq, &mut |out| self.feed_send(key, node, out));
            self.count_feed(node, sent, &mut gone);
        }
        for node in gone {
            remotes.remove(&node);
        }
    }

    /// Every stream known here (published, pulled or announced).
    pub(crate) fn streams(&self) -> Vec<StreamInfo> {
        let origins = self.origins.nodes().clone();
        let hubs: Vec<(String, Arc<Hub>)> = lock(&self.hubs)
            .iter()
            .map(|(k, h)| (k.clone(), h.clone()))
            .collect();
        let mut out: BTreeMap<String, StreamInfo> = BTreeMap::new();
        for (key, nodes) in &origins {
            let mut list: Vec<(&String, &u32)> = nodes.iter().collect();
            list.sort_by(|(a, pa), (b, pb)| pb.cmp(pa).then(a.cmp(b)));
            out.insert(
                key.clone(),
                StreamInfo {
                    key: key.clone(),
                    origins: list.into_iter().map(|(n, _)| n.clone()).collect(),
                    role: "none",
                    upstream: None,
                    subscribers: 0,
                    edges: Vec::new(),
                },
            );
        }
        for (key, hub) in hubs {
            let st = hub.lock();
            let info = out.entry(key.clone()).or_insert_with(|| StreamInfo {
                key: key.clone(),
                origins: Vec::new(),
                role: "none",
                upstream: None,
                subscribers: 0,
                edges: Vec::new(),
            });
            match &st.source {
                Source::Local => {
                    info.role = "origin";
                    if !info.origins.contains(&self.local.name) {
                        info.origins.insert(0, self.local.name.clone());
                    }
                }
                Source::Upstream(up) => {
                    info.role = "edge";
                    info.upstream = Some(up.clone());
                }
            }
            info.subscribers = st.subs.len();
            info.edges = st.remotes.keys().cloned().collect();
        }
        out.into_values().collect()
    }
}

/// What [`discard`] threw away.
#[derive(Default)]
struct Discarded {
    /// Frames that were queued.
    frames: u64,
    /// Frames named by the skip markers that were queued.
    named: u64,
}

/// Empties a full subscriber queue. A discontinuity marker in it is put
/// back, so the subscriber still learns the numbering changed.
fn discard(queue: &SubQueue) -> Discarded {
    let mut items = Vec::new();
    queue.queue.drain_into(&mut items, usize::MAX);
    let mut out = Discarded::default();
    let mut keep = None;
    for item in items {
        match item {
            Item::Event(StreamEvent::Frame(_)) => out.frames += 1,
            Item::Event(StreamEvent::Skipped { frames }) => out.named += frames,
            Item::Event(marker @ StreamEvent::Discontinuity { .. }) => keep = Some(marker),
            Item::End(_) => {}
        }
    }
    if let Some(marker) = keep {
        let _ = queue.queue.try_push(Item::Event(marker), false);
    }
    out
}

/// Queues a marker even when the queue is full, making room by dropping
/// what it held. Returns the frames dropped (the caller counts them).
fn push_item(queue: &SubQueue, item: Item) -> u64 {
    match queue.queue.try_push(item, false) {
        Ok(()) => 0,
        Err(Pushed::Full(item)) => {
            let dropped = discard(queue).frames;
            let _ = queue.queue.try_push(item, false);
            dropped
        }
        Err(_) => 0,
    }
}

fn end_sub(queue: &SubQueue, why: StreamClosed) {
    if let Ok(mut c) = queue.closed.lock() {
        *c = Some(why);
    }
    let _ = push_item(queue, Item::End(why));
    queue.queue.close();
}

async fn ticker(relay: Weak<Relay>, stop: CancellationToken) {
    let period = match relay.upgrade() {
        Some(r) => (r.config.stall_timeout / 4).min(r.config.heartbeat_interval / 2),
        None => return,
    }
    .max(Duration::from_millis(10));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                if let Some(r) = relay.upgrade() {
                    let hubs: Vec<Arc<Hub>> = lock(&r.hubs).values().cloned().collect();
                    for hub in hubs {
                        for sub in hub.lock().subs.drain(..) {
                            end_sub(&sub.queue, StreamClosed::Stopped);
                        }
                        hub.changed.notify_waiters();
                    }
                }
                return;
            }
            _ = tick.tick() => match relay.upgrade() {
                Some(r) => r.tick(),
                None => return,
            },
        }
    }
}
