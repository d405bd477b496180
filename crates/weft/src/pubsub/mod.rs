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
mod interest;
mod outgoing;
pub mod subscription;

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tracing::debug;
use weft_proto::NodeId;
use weft_proto::codec::encode_publish;
use weft_proto::frame::{Publish, PublishRef};
use weft_proto::subject::{validate_pattern, validate_queue, validate_subject};
use weft_proto::trie::SubjectTrie;

use crate::config::{PubSubConfig, QueueLocality};
use crate::link::Links;
use crate::messaging::dead_letter::{DeadLetters, DeadReason, DropKind};
use crate::queue::{ByteQueue, Pushed};
use crate::registry::RegistryService;
use crate::replies::{Replies, WaitError};
use crate::stats::{Hot, Stats};

use crate::sync::lock;
use barrier::InterestBarrier;
pub(crate) use interest::InterestTable;
use interest::{RemoteInterest, interest_key};
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

/// The pub/sub service of one node.
pub(crate) struct PubSub {
    links: Links,
    stats: Arc<Stats>,
    registry: Arc<RegistryService>,
    dead_letters: Arc<DeadLetters>,
    subs: Mutex<LocalSubs>,
    remote: Arc<InterestTable>,
    inbox_prefix: String,
    /// This node's requests waiting for a reply: a reply to request `id`
    /// is published to the inbox subject ending in `id`.
    requests: Replies<PubMsg>,
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
    /// The pub/sub service of `local`, reading other nodes' interest from
    /// `remote` (which `registry` feeds) and announcing its own through
    /// `registry`.
    #[allow(clippy::too_many_arguments)] // construction wiring, called once
    pub(crate) fn new(
        local: NodeId,
        links: Links,
        stats: Arc<Stats>,
        registry: Arc<RegistryService>,
        remote: Arc<InterestTable>,
        dead_letters: Arc<DeadLetters>,
        sub_capacity: usize,
        config: &PubSubConfig,
    ) -> Self {
        let inbox_prefix = format!("_INBOX.{}.{}.", local.name, local.incarnation);
        let me = Self {
            links,
            stats,
            registry,
            dead_letters,
            subs: Mutex::new(LocalSubs::default()),
            remote,
            inbox_prefix,
            requests: Replies::default(),
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
                self.stats.frames_dropped.inc_hot(Hot::SlowConsumer);
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
    /// Their sinks go to `sinks`, the groups served to `served` (replies to
    /// this node's requests never come here: see [`Self::is_reply`]). Returns
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
                self.stats.frames_dropped.inc_hot(Hot::QueueMemberGone);
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
                    self.stats
                        .frames_dropped
                        .add_hot(Hot::TooLarge, matched.len() as u64);
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
                    self.stats.frames_dropped.inc_hot(Hot::TooLarge);
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
        // Picked under the locks, delivered after them: a sink (a NATS
        // client's outbound buffer, say) is never entered with a node-wide
        // lock held. `sinks` holds every message's sinks in turn; each
        // delivery names the end of its message's run.
        let mut sinks: Vec<Arc<Sink>> = Vec::new();
        let mut deliveries: Vec<(usize, PubMsg)> = Vec::new();
        let mut replies: Vec<PubMsg> = Vec::new();
        {
            // Lock order: subscriptions, then remote interest (as
            // `has_interest`); no await while they are held.
            let mut subs = lock(&self.subs);
            let mut remote = self.remote.lock();
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
                let start = sinks.len();
                served.clear();
                pending.clear();
                if self.is_reply(&msg.subject) {
                    replies.push(msg.clone());
                } else {
                    let defer = cluster_wide.then_some(&mut pending);
                    self.pick_local(&mut subs, &msg, None, &mut sinks, &mut served, defer);
                }
                self.route(
                    &mut remote,
                    &msg,
                    &served,
                    &pending,
                    &mut sinks,
                    max_frame,
                    &mut out,
                );
                if sinks.len() > start {
                    deliveries.push((sinks.len(), msg));
                }
            }
        }
        let mut start = 0;
        for (end, msg) in deliveries {
            self.deliver_all(&sinks[start..end], msg);
            start = end;
        }
        for reply in replies {
            self.complete_reply(reply);
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
            self.stats.frames_dropped.inc_hot(Hot::InvalidSubject);
            return;
        }
        let msg = PubMsg {
            subject: p.subject,
            reply: p.reply,
            headers: p.headers,
            payload,
        };
        if self.is_reply(&msg.subject) {
            self.complete_reply(msg);
            return;
        }
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

    /// Whether `subject` is a reply to one of this node's requests (its
    /// wildcard inbox): handed to the waiting request, not to subscribers.
    fn is_reply(&self, subject: &str) -> bool {
        subject.starts_with(&self.inbox_prefix)
    }

    /// Hands the reply `msg` to its waiting request; one nobody waits for
    /// any more is counted `late_reply`.
    fn complete_reply(&self, msg: PubMsg) {
        let token = &msg.subject[self.inbox_prefix.len()..];
        // Only the form this node writes (decimal, no sign, no leading
        // zero) names a request.
        let id = match token.as_bytes() {
            [b'1'..=b'9', rest @ ..] if rest.iter().all(u8::is_ascii_digit) => token.parse::<u64>().ok(),
            _ => None,
        };
        let late = match id {
            Some(id) => self.requests.complete(id, msg).is_err(),
            None => true,
        };
        if late {
            self.stats.frames_dropped.inc_hot(Hot::LateReply);
        }
    }

    /// Whether any subscription anywhere matches `subject`.
    pub(crate) fn has_interest(&self, subject: &str) -> bool {
        lock(&self.subs).trie.has_match(subject) || self.remote.lock().trie.has_match(subject)
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
        let mut waiting = self.requests.register(None);
        let reply = format!("{}{}", self.inbox_prefix, waiting.id());
        let sent = self
            .publish(PubMsg {
                subject: subject.to_string(),
                reply: Some(reply),
                headers,
                payload,
            })
            .await;
        match sent {
            Err(e) => Err(e),
            Ok(()) => match waiting.wait(timeout).await {
                Ok(m) => Ok(m),
                Err(WaitError::Closed) => Err(PubSubError::Closed),
                Err(WaitError::Timeout) => Err(PubSubError::Timeout),
            },
        }
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
        let remote = self.remote.lock();
        let mut out = BTreeMap::new();
        for ((node, _), patterns) in &remote.counts {
            *out.entry(node.clone()).or_default() += patterns.len();
        }
        out
    }
}
