//! Pub/sub over subjects with interest propagated through the registry.
//!
//! Each node advertises the patterns it has local subscribers for (table
//! `INTEREST`): a plain pattern on its 0→1 and 1→0 edges only, a queue
//! group pattern with its local member count. A publish is delivered to
//! the local matching subscriptions and sent as one frame to each other
//! node with matching interest, which fans out locally. Queue groups get
//! each message exactly once cluster-wide: by default one node is picked
//! in proportion to its member count, the publisher's own node included
//! ([`QueueLocality::Cluster`]); with [`QueueLocality::Local`] a local
//! member is preferred when there is one. A remote pick is named in the
//! frame's `queues`, and that node hands it to one of its members.

pub mod barrier;
mod outgoing;
pub mod subscription;

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::debug;
use weft_proto::NodeId;
use weft_proto::codec::encode_publish;
use weft_proto::frame::{Publish, PublishRef};
use weft_proto::registry::{EntryKey, Event, table};
use weft_proto::subject::{validate_pattern, validate_queue, validate_subject};
use weft_proto::trie::SubjectTrie;

use crate::config::{PubSubConfig, QueueLocality};
use crate::link::Links;
use crate::messaging::dead_letter::{DeadLetters, DeadReason, DropKind};
use crate::queue::{ByteQueue, Pushed};
use crate::registry::RegistryService;
use crate::stats::Stats;

use crate::sync::lock;
use barrier::InterestBarrier;
use outgoing::Outgoing;
use subscription::{
    DeliverySink, DirectSubscription, PubMsg, PubSubError, Sink, SinkResult, Subscription, Target,
};

struct SubEntry {
    pattern: String,
    queue: Option<String>,
    sink: Arc<Sink>,
}

#[derive(Default)]
struct LocalSubs {
    trie: SubjectTrie<u64>,
    /// By id: ids are this node's own counter, never chosen by a peer or
    /// a client, so a cheap integer hash serves (looked up per delivery).
    subs: HashMap<u64, SubEntry, BuildHasherDefault<crate::hash::LocalIdHasher>>,
    interest: HashMap<(String, Option<String>), u32>,
    next_id: u64,
}

/// A remote node's interest: (node name, queue group).
type RemoteKey = (String, Option<String>);

#[derive(Default)]
struct RemoteInterest {
    trie: SubjectTrie<RemoteKey>,
    /// Per (node, queue): pattern → advertised member count.
    counts: HashMap<RemoteKey, HashMap<String, u32>>,
}

fn interest_key(pattern: &str, queue: Option<&str>) -> EntryKey {
    EntryKey::new(table::INTEREST, format!("{pattern}\0{}", queue.unwrap_or("")))
}

fn parse_interest_key(key: &str) -> Option<(String, Option<String>)> {
    let (pattern, queue) = key.split_once('\0')?;
    validate_pattern(pattern).ok()?;
    let queue = if queue.is_empty() {
        None
    } else {
        validate_queue(queue).ok()?;
        Some(queue.to_string())
    };
    Some((pattern.to_string(), queue))
}

/// The pub/sub service of one node.
pub(crate) struct PubSub {
    local: NodeId,
    links: Links,
    stats: Arc<Stats>,
    registry: Arc<RegistryService>,
    dead_letters: Arc<DeadLetters>,
    subs: Mutex<LocalSubs>,
    remote: Mutex<RemoteInterest>,
    inbox_prefix: String,
    requests: Mutex<HashMap<String, oneshot::Sender<PubMsg>>>,
    next_token: AtomicU64,
    rr: AtomicU64,
    sub_capacity: usize,
    queue_locality: QueueLocality,
    barrier_timeout: Duration,
}

/// The local members of one queue group that a publish matched, before
/// the cluster-wide choice of [`PubSub::route`] decides whether one of
/// them gets the message.
struct LocalGroup {
    queue: String,
    members: Vec<Arc<Sink>>,
}

impl PubSub {
    pub(crate) fn new(
        local: NodeId,
        links: Links,
        stats: Arc<Stats>,
        registry: Arc<RegistryService>,
        dead_letters: Arc<DeadLetters>,
        sub_capacity: usize,
        config: &PubSubConfig,
    ) -> Self {
        let inbox_prefix = format!("_INBOX.{}.{}.", local.name, local.incarnation);
        let me = Self {
            local,
            links,
            stats,
            registry,
            dead_letters,
            subs: Mutex::new(LocalSubs::default()),
            remote: Mutex::new(RemoteInterest::default()),
            inbox_prefix,
            requests: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            rr: AtomicU64::new(0),
            sub_capacity,
            queue_locality: config.queue_locality,
            barrier_timeout: config.interest_barrier_timeout,
        };
        // One wildcard inbox per node serves every request's replies.
        let inbox = format!("{}>", me.inbox_prefix);
        me.registry
            .put_many(vec![(interest_key(&inbox, None), Self::count_value(1))]);
        me
    }

    fn count_value(n: u32) -> Bytes {
        // A u32 always encodes: a failure here is a bug, never an empty value.
        Bytes::from(postcard::to_allocvec(&n).expect("postcard encodes a u32"))
    }

    /// Subscribes to `pattern`, optionally in queue group `queue`.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        pattern: &str,
        queue: Option<&str>,
        capacity: Option<usize>,
    ) -> Result<Subscription, PubSubError> {
        let target = Target::Queue(ByteQueue::new(capacity.unwrap_or(self.sub_capacity).max(1), 0));
        let (id, sink, version) = self.add(pattern, queue, target)?;
        Ok(Subscription {
            id,
            version,
            pattern: pattern.to_string(),
            queue_group: queue.map(str::to_string),
            sink,
            pubsub: self.clone(),
            next: Default::default(),
        })
    }

    /// Subscribes `sink` to `pattern`, optionally in queue group `queue`.
    pub(crate) fn subscribe_direct(
        self: &Arc<Self>,
        pattern: &str,
        queue: Option<&str>,
        sink: Arc<dyn DeliverySink>,
    ) -> Result<DirectSubscription, PubSubError> {
        let target = Target::Direct {
            sink,
            closed: AtomicBool::new(false),
        };
        let (id, sink, version) = self.add(pattern, queue, target)?;
        Ok(DirectSubscription {
            id,
            version,
            pattern: pattern.to_string(),
            queue_group: queue.map(str::to_string),
            sink,
            pubsub: self.clone(),
        })
    }

    /// Registers a subscription and announces its interest. Returns its
    /// id, sink and the registry version that carries its interest (for
    /// [`InterestBarrier`]s).
    fn add(
        &self,
        pattern: &str,
        queue: Option<&str>,
        target: Target,
    ) -> Result<(u64, Arc<Sink>, u64), PubSubError> {
        validate_pattern(pattern)?;
        if let Some(q) = queue {
            validate_queue(q)?;
        }
        let sink = Arc::new(Sink {
            target,
            dropped: AtomicU64::new(0),
        });
        let mut subs = lock(&self.subs);
        subs.next_id += 1;
        let id = subs.next_id;
        subs.trie.insert(pattern, id);
        subs.subs.insert(
            id,
            SubEntry {
                pattern: pattern.to_string(),
                queue: queue.map(str::to_string),
                sink: sink.clone(),
            },
        );
        let count = {
            let c = subs
                .interest
                .entry((pattern.to_string(), queue.map(str::to_string)))
                .or_insert(0);
            *c += 1;
            *c
        };
        // Plain interest is announced on its 0→1 edge only; queue groups
        // carry their member count.
        if queue.is_some() || count == 1 {
            let value = Self::count_value(if queue.is_some() { count } else { 1 });
            self.registry
                .put_many(vec![(interest_key(pattern, queue), value)]);
        }
        // Read under the lock: an earlier subscription's announcement of
        // the same interest is at this version or before.
        let version = self.registry.version();
        drop(subs);
        Ok((id, sink, version))
    }

    /// A barrier for this node's interest changes up to registry version
    /// `version`.
    pub(crate) fn barrier_at(&self, version: u64) -> InterestBarrier {
        InterestBarrier {
            registry: self.registry.clone(),
            target: version,
            timeout: self.barrier_timeout,
        }
    }

    /// A barrier for every interest change made so far on this node.
    pub(crate) fn barrier(&self) -> InterestBarrier {
        self.barrier_at(self.registry.version())
    }

    pub(crate) fn unsubscribe(&self, id: u64) {
        let mut subs = lock(&self.subs);
        let Some(entry) = subs.subs.remove(&id) else {
            return;
        };
        entry.sink.close();
        subs.trie.remove(&entry.pattern, &id);
        let key = (entry.pattern.clone(), entry.queue.clone());
        let left = match subs.interest.get_mut(&key) {
            Some(c) => {
                *c -= 1;
                *c
            }
            None => 0,
        };
        if left == 0 {
            subs.interest.remove(&key);
            self.registry
                .remove_many(&[interest_key(&entry.pattern, entry.queue.as_deref())]);
        } else if entry.queue.is_some() {
            self.registry.put_many(vec![(
                interest_key(&entry.pattern, entry.queue.as_deref()),
                Self::count_value(left),
            )]);
        }
    }

    /// Applies a registry event of the interest table from `origin`.
    pub(crate) fn apply(&self, event: &Event) -> Result<(), &'static str> {
        let (origin, key, value, added) = match event {
            Event::Put { origin, key, value } => (origin, key, value, true),
            Event::Removed { origin, key, value } => (origin, key, value, false),
        };
        if key.table != table::INTEREST || origin.name == self.local.name {
            return Ok(());
        }
        let (pattern, queue) = parse_interest_key(&key.key).ok_or("invalid_interest")?;
        let count: u32 = postcard::from_bytes(value).map_err(|_| "invalid_interest")?;
        let mut remote = lock(&self.remote);
        let rkey: RemoteKey = (origin.name.clone(), queue);
        if added {
            remote
                .counts
                .entry(rkey.clone())
                .or_default()
                .insert(pattern.clone(), count.max(1));
            remote.trie.insert(&pattern, rkey);
        } else {
            if let Some(patterns) = remote.counts.get_mut(&rkey) {
                patterns.remove(&pattern);
                if patterns.is_empty() {
                    remote.counts.remove(&rkey);
                }
            }
            remote.trie.remove(&pattern, &rkey);
        }
        Ok(())
    }

    /// Delivers `msg` to `sink`; a queue gets a clone, a direct sink
    /// borrows it. Returns whether it was dropped as a slow consumer.
    fn deliver(&self, sink: &Sink, msg: &PubMsg) -> bool {
        let result = match &sink.target {
            Target::Direct { sink: f, closed } => {
                if closed.load(Ordering::Acquire) {
                    return false;
                }
                f.deliver(msg)
            }
            Target::Queue(q) => Self::push(q, msg.clone()),
        };
        self.count(sink, result)
    }

    /// Delivers `msg` to `sink`, moved into it when it is a queue.
    fn deliver_owned(&self, sink: &Sink, msg: PubMsg) -> bool {
        match &sink.target {
            Target::Queue(q) => self.count(sink, Self::push(q, msg)),
            Target::Direct { .. } => self.deliver(sink, &msg),
        }
    }

    fn push(q: &ByteQueue<PubMsg>, msg: PubMsg) -> SinkResult {
        match q.try_push(msg, false) {
            Ok(()) => SinkResult::Delivered,
            Err(Pushed::Full(_)) => SinkResult::Full,
            Err(Pushed::Closed(_)) => SinkResult::Closed,
        }
    }

    /// Counts a delivery's outcome: a full queue or sink is a
    /// slow-consumer drop (returns true).
    fn count(&self, sink: &Sink, result: SinkResult) -> bool {
        match result {
            SinkResult::Delivered => {
                self.stats.pubsub_delivered.fetch_add(1, Ordering::Relaxed);
                false
            }
            SinkResult::Full => {
                sink.dropped.fetch_add(1, Ordering::Relaxed);
                self.stats.frames_dropped.inc("slow_consumer");
                true
            }
            // Unsubscribing right now: nobody is waiting for it.
            SinkResult::Closed => false,
        }
    }

    fn pick(&self, n: usize) -> usize {
        (self.rr.fetch_add(1, Ordering::Relaxed) as usize) % n.max(1)
    }

    /// Chooses, under the subscription lock, the local subscriptions
    /// `msg` goes to: every plain match and, for each queue group in
    /// `queues` (`None`: every group with a local member), one member.
    /// Their sinks go to `sinks`, the groups served to `served`. A reply to
    /// one of this node's requests is handed to its waiter here. Returns
    /// the number of queue groups in `queues` with no member left (each
    /// counted `queue_member_gone`).
    ///
    /// With `pending` (a local publish under [`QueueLocality::Cluster`])
    /// the queue groups are not served here: their local members go to
    /// `pending`, and [`Self::route`] weighs them against the remote ones.
    ///
    /// Nothing is allocated when nothing local matches (the common case
    /// on a publisher's node).
    fn pick_local(
        &self,
        subs: &mut LocalSubs,
        msg: &PubMsg,
        queues: Option<&[String]>,
        sinks: &mut Vec<Arc<Sink>>,
        served: &mut Vec<String>,
        mut pending: Option<&mut Vec<LocalGroup>>,
    ) -> u64 {
        if msg.subject.starts_with(&self.inbox_prefix) {
            let token = &msg.subject[self.inbox_prefix.len()..];
            match lock(&self.requests).remove(token) {
                Some(tx) => {
                    let _ = tx.send(msg.clone());
                }
                None => self.stats.frames_dropped.inc("late_reply"),
            }
            return 0;
        }
        let ids = subs.trie.matches(&msg.subject);
        if !ids.is_empty() {
            let mut groups: Option<BTreeMap<&str, Vec<&Arc<Sink>>>> = None;
            for id in ids.iter() {
                let Some(e) = subs.subs.get(id) else { continue };
                match &e.queue {
                    None => sinks.push(e.sink.clone()),
                    Some(q) => groups
                        .get_or_insert_default()
                        .entry(q.as_str())
                        .or_default()
                        .push(&e.sink),
                }
            }
            for (q, members) in groups.into_iter().flatten() {
                if let Some(pending) = pending.as_deref_mut() {
                    pending.push(LocalGroup {
                        queue: q.to_string(),
                        members: members.into_iter().cloned().collect(),
                    });
                } else if queues.is_none_or(|only| only.iter().any(|w| w == q)) {
                    sinks.push(members[self.pick(members.len())].clone());
                    served.push(q.to_string());
                }
            }
        }
        let mut gone = 0;
        for q in queues.unwrap_or_default() {
            if !served.contains(q) {
                debug!(queue = %q, subject = %msg.subject, "queue group member gone before delivery");
                self.stats.frames_dropped.inc("queue_member_gone");
                gone += 1;
            }
        }
        gone
    }

    /// Delivers `msg` to every sink of `sinks` (moved into the last one
    /// when it is a queue; direct sinks only borrow it). Returns the
    /// number of slow-consumer drops.
    fn deliver_all(&self, sinks: &[Arc<Sink>], msg: PubMsg) -> u64 {
        let mut dropped = 0;
        if let Some((last, rest)) = sinks.split_last() {
            for sink in rest {
                dropped += u64::from(self.deliver(sink, &msg));
            }
            dropped += u64::from(self.deliver_owned(last, msg));
        }
        dropped
    }

    /// Plans, under the remote interest lock, the frames `msg` needs: one
    /// to each node with matching interest, naming the queue groups that
    /// node serves (groups in `served` were served locally). The frames are
    /// appended per node to `out`. Without queue groups every node gets
    /// the same frame, whose head is encoded once.
    ///
    /// Each queue group in `pending` (local members not yet chosen) and
    /// each group only remote nodes have gets exactly one pick, across
    /// this node and the others, weighted by member counts; a local pick
    /// adds one member's sink to `sinks`.
    #[allow(clippy::too_many_arguments)]
    fn route(
        &self,
        remote: &mut RemoteInterest,
        msg: &PubMsg,
        served: &[String],
        pending: &[LocalGroup],
        sinks: &mut Vec<Arc<Sink>>,
        max_frame: usize,
        out: &mut Outgoing,
    ) {
        let matched = remote.trie.matches(&msg.subject);
        if matched.iter().all(|(_, q)| q.is_none()) {
            // No remote member of any group: the local ones serve them.
            for group in pending {
                sinks.push(group.members[self.pick(group.members.len())].clone());
            }
        }
        if matched.is_empty() {
            return;
        }
        let encode = |queues: &[String]| {
            let head = PublishRef {
                subject: &msg.subject,
                reply: msg.reply.as_deref(),
                headers: &msg.headers,
                queues,
            };
            encode_publish(&head, &msg.payload, max_frame)
        };
        if matched.iter().all(|(_, q)| q.is_none()) {
            match encode(&[]) {
                Ok(frame) => {
                    for (node, _) in matched.iter() {
                        out.push(node, &frame);
                    }
                }
                Err(e) => {
                    debug!(subject = %msg.subject, error = %e, "publish not encoded");
                    self.stats.frames_dropped.add("too_large", matched.len() as u64);
                }
            }
            return;
        }
        // Which nodes get the frame, and which queue groups each serves.
        let mut targets: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut queue_nodes: BTreeMap<&str, BTreeMap<&str, u32>> = BTreeMap::new();
        for group in pending {
            queue_nodes.entry(group.queue.as_str()).or_default();
        }
        for (node, queue) in matched.iter() {
            match queue {
                None => {
                    targets.entry(node).or_default();
                }
                Some(q) if !served.contains(q) => {
                    let weight = remote
                        .counts
                        .get(&(node.clone(), Some(q.clone())))
                        .map(|patterns| {
                            patterns
                                .iter()
                                .filter(|(p, _)| weft_proto::subject::matches(p, &msg.subject))
                                .map(|(_, c)| *c)
                                .sum::<u32>()
                        })
                        .unwrap_or(0)
                        .max(1);
                    *queue_nodes.entry(q).or_default().entry(node).or_default() += weight;
                }
                Some(_) => {}
            }
        }
        for (q, nodes) in queue_nodes {
            let local = pending.iter().find(|g| g.queue == q).map(|g| &g.members);
            let local_weight = local.map_or(0, |m| m.len() as u32);
            let total: u32 = local_weight + nodes.values().sum::<u32>();
            let mut ticket = (self.rr.fetch_add(1, Ordering::Relaxed) % u64::from(total.max(1))) as u32;
            if let Some(members) = local
                && ticket < local_weight
            {
                sinks.push(members[ticket as usize].clone());
                continue;
            }
            ticket -= local_weight;
            for (node, weight) in nodes {
                if ticket < weight {
                    targets.entry(node).or_default().push(q.to_string());
                    break;
                }
                ticket -= weight;
            }
        }
        for (node, queues) in targets {
            match encode(&queues) {
                Ok(frame) => out.push(node, &frame),
                Err(e) => {
                    debug!(subject = %msg.subject, error = %e, "publish not encoded");
                    self.stats.frames_dropped.inc("too_large");
                }
            }
        }
    }

    /// Publishes `msg`: local delivery, then one frame per interested node.
    pub(crate) async fn publish(&self, msg: PubMsg) -> Result<(), PubSubError> {
        match self.publish_batch(std::iter::once(msg)).await.pop() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// Publishes `msgs` in order, each as [`Self::publish`] would, with
    /// one lock of the subscription tables for the whole batch and one
    /// queue push per node. Returns the messages refused (index, error);
    /// the others are published.
    pub(crate) async fn publish_batch(
        &self,
        msgs: impl IntoIterator<Item = PubMsg>,
    ) -> Vec<(usize, PubSubError)> {
        let mut refused = Vec::new();
        let mut out = Outgoing::default();
        let max_frame = self.links.max_frame();
        {
            // Lock order: subscriptions, then remote interest (as
            // `has_interest`); no await while they are held.
            let mut subs = lock(&self.subs);
            let mut remote = lock(&self.remote);
            let mut sinks: Vec<Arc<Sink>> = Vec::new();
            let mut served: Vec<String> = Vec::new();
            let mut pending: Vec<LocalGroup> = Vec::new();
            let cluster_wide = self.queue_locality == QueueLocality::Cluster;
            for (i, msg) in msgs.into_iter().enumerate() {
                let valid = validate_subject(&msg.subject)
                    .and_then(|()| msg.reply.as_deref().map_or(Ok(()), validate_subject));
                if let Err(e) = valid {
                    refused.push((i, e.into()));
                    continue;
                }
                self.stats.pubsub_published.fetch_add(1, Ordering::Relaxed);
                sinks.clear();
                served.clear();
                pending.clear();
                let defer = cluster_wide.then_some(&mut pending);
                self.pick_local(&mut subs, &msg, None, &mut sinks, &mut served, defer);
                self.route(
                    &mut remote,
                    &msg,
                    &served,
                    &pending,
                    &mut sinks,
                    max_frame,
                    &mut out,
                );
                self.deliver_all(&sinks, msg);
            }
        }
        for (node, frames) in out.into_nodes() {
            if let Err((e, lost)) = self.links.send_many(&node, frames, |c| &c.publishes_sent).await {
                // The node went down after its interest was read: at
                // most once, counted.
                debug!(peer = %node, error = %e, frames = lost, "publish not queued");
                self.stats.frames_dropped.add(e.label(), lost as u64);
            }
        }
        refused
    }

    /// Handles a publish frame from `from`.
    pub(crate) fn on_publish(&self, from: &NodeId, p: Publish, payload: Bytes) {
        // A peer is authenticated and validates what it sends; the check
        // stays (one pass over the bytes) so that a faulty peer can never
        // put a malformed subject in front of a NATS client.
        if validate_subject(&p.subject).is_err()
            || p.reply.as_deref().is_some_and(|r| validate_subject(r).is_err())
        {
            debug!(peer = %from, subject = %p.subject, "publish with an invalid subject refused");
            self.stats.frames_dropped.inc("invalid_subject");
            return;
        }
        let msg = PubMsg {
            subject: p.subject,
            reply: p.reply,
            headers: p.headers,
            payload,
        };
        let mut sinks = Vec::new();
        let mut served = Vec::new();
        let gone = self.pick_local(
            &mut lock(&self.subs),
            &msg,
            Some(&p.queues),
            &mut sinks,
            &mut served,
            None,
        );
        let slow = self.deliver_all(&sinks, msg);
        // Reported back to the publishing node's metrics (dead-letter
        // counts): pub/sub stays at most once, nothing is retried.
        let d = &self.dead_letters;
        d.count_dropped(from, DropKind::Publish, DeadReason::QueueMemberGone, gone);
        d.count_dropped(from, DropKind::Publish, DeadReason::SlowConsumer, slow);
    }

    /// Whether any subscription anywhere matches `subject`.
    pub(crate) fn has_interest(&self, subject: &str) -> bool {
        lock(&self.subs).trie.has_match(subject) || lock(&self.remote).trie.has_match(subject)
    }

    /// Publishes a request and waits for the first reply.
    pub(crate) async fn request(
        &self,
        subject: &str,
        headers: Vec<(String, String)>,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<PubMsg, PubSubError> {
        validate_subject(subject)?;
        if !self.has_interest(subject) {
            return Err(PubSubError::NoResponders(subject.to_string()));
        }
        let token = self.next_token.fetch_add(1, Ordering::Relaxed).to_string();
        let (tx, rx) = oneshot::channel();
        lock(&self.requests).insert(token.clone(), tx);
        let reply = format!("{}{token}", self.inbox_prefix);
        let sent = self
            .publish(PubMsg {
                subject: subject.to_string(),
                reply: Some(reply),
                headers,
                payload,
            })
            .await;
        let result = match sent {
            Err(e) => Err(e),
            Ok(()) => match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(m)) => Ok(m),
                Ok(Err(_)) => Err(PubSubError::Closed),
                Err(_) => Err(PubSubError::Timeout),
            },
        };
        lock(&self.requests).remove(&token);
        result
    }

    /// (pattern, queue, local count) of every local interest.
    pub(crate) fn local_interest(&self) -> Vec<(String, Option<String>, u32)> {
        let subs = lock(&self.subs);
        let mut v: Vec<_> = subs
            .interest
            .iter()
            .map(|((p, q), c)| (p.clone(), q.clone(), *c))
            .collect();
        v.sort();
        v
    }

    /// Nodes this node knows interest of, with their number of patterns.
    pub(crate) fn remote_interest(&self) -> BTreeMap<String, usize> {
        let remote = lock(&self.remote);
        let mut out = BTreeMap::new();
        for ((node, _), patterns) in &remote.counts {
            *out.entry(node.clone()).or_default() += patterns.len();
        }
        out
    }
}
