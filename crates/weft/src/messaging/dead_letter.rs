//! Dead letters: messages a receiving node dropped, reported back to the
//! node that sent them.
//!
//! Receiver side: every drop of a message that came from another node (a
//! tell to a missing or full mailbox, a group publish copy for a full
//! member, a pub/sub message for a slow consumer or a vanished queue group
//! member) is added to that node's pending batch. A tell is kept as one
//! [`Undelivered`] letter (target, reason, sender, manifest, size); group
//! publishes, pub/sub and tells beyond [`MAX_LETTERS`] are summed per kind
//! and reason. The batch is bounded ([`MAX_LETTERS`] letters and
//! [`MAX_LETTER_BYTES`] of them per node; counts are a handful of numbers),
//! so a flood of drops costs bounded memory and one frame per node per
//! [`BATCH_DELAY`]. A flusher task sends each batch as one `DEAD_LETTER`
//! control frame, without waiting: a batch that cannot be queued, or whose
//! sending node is down or restarted, is counted
//! `dead_letters_lost{not_queued|sender_down}` with the number of messages
//! it reported.
//!
//! Sender side: a `DEAD_LETTER` frame is counted per reason in
//! `dead_letters_received` and each letter is offered to every
//! [`DeadLetterReceiver`] (bounded; a full one counts
//! `dead_letters_lost{stream_full}` and its own [`DeadLetterReceiver::dropped`]).
//! A dead letter is never answered, so reports cannot loop.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::debug;
use weft_proto::frame::{Addressee, DeadLetter as DeadLetterFrame, DropCount, Header, Undelivered, kind};
use weft_proto::{EncodedFrame, Frame, FrameDecoder, NodeId, Pid};

use super::message::Target;
use crate::link::Links;
use crate::stats::Stats;
use crate::sync::lock;

/// Most letters kept per sending node between two flushes; later tell
/// drops in the same window are reported as counts only.
pub const MAX_LETTERS: usize = 256;
/// Most bytes of letters (manifests, names, sender pids, as an upper bound
/// of their encoding) kept per sending node between two flushes: letters
/// travel in the frame header, which holds at most 64 KiB, and the counts
/// need a little room too.
pub const MAX_LETTER_BYTES: usize = 32 * 1024;
/// How long the flusher gathers drops after the first one before it sends:
/// the latency of a dead letter, and at most one frame per node per window.
pub const BATCH_DELAY: Duration = Duration::from_millis(20);
/// Default queue bound of a [`DeadLetterReceiver`], in letters.
pub const DEFAULT_RECEIVER_CAPACITY: usize = 1024;

/// Why a receiving node dropped a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DeadReason {
    /// No mailbox with that pid or name exists there (dropped, never
    /// existed, or the pid is from an older run of the node).
    NoSuchMailbox,
    /// The target mailbox's queue was full.
    MailboxFull,
    /// A group publish found no member of the group on that node.
    NoGroupMembers,
    /// A pub/sub subscription there was full (slow consumer).
    SlowConsumer,
    /// The queue group member chosen for a publish left before it arrived.
    QueueMemberGone,
    /// Reported by this node itself: the tell was still queued for the
    /// target node when membership declared it down (or it restarted), so
    /// it was never written. Tells already written when a node crashes
    /// are lost without a report (at most once).
    NodeDown,
    /// A reason this node does not know (from a newer node).
    Other,
}

impl DeadReason {
    /// The metric label (the receiver's `frames_dropped` reason).
    pub fn label(self) -> &'static str {
        match self {
            DeadReason::NoSuchMailbox => "no_such_mailbox",
            DeadReason::MailboxFull => "mailbox_full",
            DeadReason::NoGroupMembers => "no_group_members",
            DeadReason::SlowConsumer => "slow_consumer",
            DeadReason::QueueMemberGone => "queue_member_gone",
            DeadReason::NodeDown => "node_down",
            DeadReason::Other => "other",
        }
    }

    /// The reason of a wire label; unknown labels are [`DeadReason::Other`].
    pub fn from_label(label: &str) -> Self {
        match label {
            "no_such_mailbox" => DeadReason::NoSuchMailbox,
            "mailbox_full" => DeadReason::MailboxFull,
            "no_group_members" => DeadReason::NoGroupMembers,
            "slow_consumer" => DeadReason::SlowConsumer,
            "queue_member_gone" => DeadReason::QueueMemberGone,
            "node_down" => DeadReason::NodeDown,
            _ => DeadReason::Other,
        }
    }
}

/// What carried dropped messages that are reported as counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum DropKind {
    /// Tells beyond the batch's letter bounds.
    Tell,
    /// Copies of a group publish.
    GroupPublish,
    /// Pub/sub messages.
    Publish,
}

impl DropKind {
    fn label(self) -> &'static str {
        match self {
            DropKind::Tell => "tell",
            DropKind::GroupPublish => "group_publish",
            DropKind::Publish => "publish",
        }
    }
}

/// A tell from this node that another node dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The tell's target (for a name, `node` is the node that dropped it).
    pub target: Target,
    /// Why it was dropped.
    pub reason: DeadReason,
    /// The sending mailbox, when the tell was sent from one.
    pub from: Option<Pid>,
    /// The message's manifest (type tag).
    pub manifest: String,
    /// The message body's length in bytes.
    pub size: u64,
}

/// The dead letters of this node's tells, as reported by the nodes that
/// dropped them (see [`crate::Mailboxes::dead_letters`]).
///
/// The queue is bounded: when it is full, a new letter is dropped and
/// counted here ([`Self::dropped`]) and in the node's
/// `dead_letters_lost{reason="stream_full"}`. The reason counts in
/// `dead_letters_received` are complete either way. Dropping the receiver
/// stops the reports to it.
pub struct DeadLetterReceiver {
    rx: mpsc::Receiver<DeadLetter>,
    dropped: Arc<AtomicU64>,
}

impl DeadLetterReceiver {
    /// Waits for the next dead letter; `None` once the node is gone.
    pub async fn recv(&mut self) -> Option<DeadLetter> {
        self.rx.recv().await
    }

    /// The next dead letter if one is queued.
    pub fn try_recv(&mut self) -> Option<DeadLetter> {
        self.rx.try_recv().ok()
    }

    /// Letters lost because this receiver's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The same letters as [`DeadLetterReceiver::recv`]; ends once the node
/// is gone.
impl futures::Stream for DeadLetterReceiver {
    type Item = DeadLetter;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<DeadLetter>> {
        self.rx.poll_recv(cx)
    }
}

impl std::fmt::Debug for DeadLetterReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterReceiver")
            .field("dropped", &self.dropped())
            .finish()
    }
}

struct Listener {
    tx: mpsc::Sender<DeadLetter>,
    dropped: Arc<AtomicU64>,
}

/// Drops pending for one sending node.
#[derive(Default)]
struct Batch {
    node: Option<NodeId>,
    letters: Vec<Undelivered>,
    letter_bytes: usize,
    counts: BTreeMap<(DropKind, DeadReason), u64>,
}

impl Batch {
    /// Keeps `letter` if the batch has room (`budget` bytes of letters),
    /// else counts it.
    fn add_letter(&mut self, letter: Undelivered, reason: DeadReason, budget: usize) {
        let len = letter_bytes(&letter);
        if self.letters.len() < MAX_LETTERS && self.letter_bytes + len <= budget {
            self.letter_bytes += len;
            self.letters.push(letter);
        } else {
            *self.counts.entry((DropKind::Tell, reason)).or_default() += 1;
        }
    }

    /// Messages this batch reports, per reason.
    fn per_reason(&self) -> BTreeMap<DeadReason, u64> {
        let mut out = BTreeMap::new();
        for l in &self.letters {
            *out.entry(DeadReason::from_label(&l.reason)).or_default() += 1;
        }
        for ((_, reason), n) in &self.counts {
            *out.entry(*reason).or_default() += n;
        }
        out
    }
}

fn letter_bytes(l: &Undelivered) -> usize {
    let to = match &l.to {
        Addressee::Pid(p) => p.node.len() + 24,
        Addressee::Name(n) => n.len(),
    };
    let from = l.from.as_ref().map_or(0, |p| p.node.len() + 24);
    // Tags, length varints and the size varint: at most 32 bytes more.
    to + from + l.manifest.len() + l.reason.len() + 32
}

/// The dead-letter service of one node (both sides).
pub(crate) struct DeadLetters {
    links: Links,
    stats: Arc<Stats>,
    /// Bytes of letters per batch: [`MAX_LETTER_BYTES`], or half the
    /// link's frame limit when that is smaller.
    letter_budget: usize,
    pending: Mutex<HashMap<String, Batch>>,
    wake: Notify,
    listeners: Mutex<Vec<Listener>>,
}

impl DeadLetters {
    pub(crate) fn new(links: Links, stats: Arc<Stats>) -> Self {
        Self {
            letter_budget: MAX_LETTER_BYTES.min(links.max_frame() / 2),
            links,
            stats,
            pending: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            listeners: Mutex::new(Vec::new()),
        }
    }

    /// Sends pending batches, [`BATCH_DELAY`] after the first drop of a
    /// window, until `stop`; then tries once more, so that what could not
    /// leave is counted rather than forgotten.
    pub(crate) async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.wake.notified() => {}
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(BATCH_DELAY) => {}
            }
            self.flush();
        }
        self.flush();
    }

    fn batch<R>(&self, sender: &NodeId, f: impl FnOnce(&mut Batch) -> R) -> R {
        let r = {
            let mut pending = lock(&self.pending);
            let batch = pending.entry(sender.name.clone()).or_default();
            // A restarted sender must not learn about its old run's tells.
            if batch
                .node
                .as_ref()
                .is_some_and(|n| n.incarnation != sender.incarnation)
            {
                let stale = std::mem::take(batch);
                self.count_lost(&stale, "sender_down");
            }
            batch.node = Some(sender.clone());
            f(batch)
        };
        self.wake.notify_one();
        r
    }

    /// A tell from `sender` to `to` was dropped here for `reason`.
    pub(crate) fn tell_dropped(
        &self,
        sender: &NodeId,
        to: Addressee,
        reason: DeadReason,
        from: Option<Pid>,
        manifest: &str,
        size: usize,
    ) {
        let letter = Undelivered {
            to,
            reason: reason.label().to_string(),
            from,
            manifest: manifest.to_string(),
            size: size as u64,
        };
        let budget = self.letter_budget;
        self.batch(sender, |b| b.add_letter(letter, reason, budget));
    }

    /// `n` messages of `kind` from `sender` were dropped here for `reason`.
    pub(crate) fn count_dropped(&self, sender: &NodeId, kind: DropKind, reason: DeadReason, n: u64) {
        if n == 0 {
            return;
        }
        self.batch(sender, |b| *b.counts.entry((kind, reason)).or_default() += n);
    }

    fn count_lost(&self, batch: &Batch, label: &'static str) {
        let n: u64 = batch.per_reason().values().sum();
        if n > 0 {
            debug!(node = ?batch.node, messages = n, label, "dead-letter report lost");
            self.stats.dead_letters_lost.add(label, n);
        }
    }

    /// Sends every pending batch now.
    pub(crate) fn flush(&self) {
        let batches: Vec<Batch> = lock(&self.pending).drain().map(|(_, b)| b).collect();
        for batch in batches {
            let Some(node) = batch.node.clone() else { continue };
            if self.links.is_down(&node.name)
                || self.links.peer_incarnation(&node.name) != Some(node.incarnation)
            {
                self.count_lost(&batch, "sender_down");
                continue;
            }
            let per_reason = batch.per_reason();
            let frame = Frame::control(Header::DeadLetter(DeadLetterFrame {
                counts: batch
                    .counts
                    .iter()
                    .map(|((kind, reason), n)| DropCount {
                        kind: kind.label().to_string(),
                        reason: reason.label().to_string(),
                        count: *n,
                    })
                    .collect(),
                letters: batch.letters,
            }));
            match self.links.try_send(&node.name, &frame) {
                Ok(()) => {
                    for (reason, n) in per_reason {
                        self.stats.dead_letters_sent.add(reason.label(), n);
                    }
                }
                Err(e) => {
                    let n: u64 = per_reason.values().sum();
                    debug!(node = %node, messages = n, error = %e, "dead-letter report not queued");
                    let label = match e {
                        crate::error::SendError::NodeDown(_) | crate::error::SendError::UnknownPeer(_) => {
                            "sender_down"
                        }
                        _ => "not_queued",
                    };
                    self.stats.dead_letters_lost.add(label, n);
                }
            }
        }
    }

    /// Membership declared `node` down: its pending reports cannot be
    /// delivered.
    pub(crate) fn member_down(&self, node: &NodeId) {
        let batch = {
            let mut pending = lock(&self.pending);
            match pending.get(&node.name) {
                Some(b) if b.node.as_ref().is_some_and(|n| n.incarnation <= node.incarnation) => {
                    pending.remove(&node.name)
                }
                _ => None,
            }
        };
        if let Some(b) = batch {
            self.count_lost(&b, "sender_down");
        }
    }

    /// A new receiver of this node's dead letters, holding up to
    /// `capacity` letters.
    pub(crate) fn subscribe(&self, capacity: usize) -> DeadLetterReceiver {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        lock(&self.listeners).push(Listener {
            tx,
            dropped: dropped.clone(),
        });
        DeadLetterReceiver { rx, dropped }
    }

    fn offer(&self, letter: DeadLetter) {
        let mut listeners = lock(&self.listeners);
        listeners.retain(|l| !l.tx.is_closed());
        for l in listeners.iter() {
            match l.tx.try_send(letter.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    l.dropped.fetch_add(1, Ordering::Relaxed);
                    self.stats.dead_letters_lost.inc("stream_full");
                }
                // Dropped between the retain and now: nobody to tell.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }

    /// Frames queued for `peer` were dropped unsent (it went down or
    /// restarted): each tell among them is a dead letter of this node's
    /// own, reason [`DeadReason::NodeDown`]. Calls are not: they fail with
    /// `NodeDown` by themselves.
    pub(crate) fn unsent(&self, peer: &str, frames: &[EncodedFrame]) {
        let mut decoder = FrameDecoder::new(self.links.max_frame());
        for item in frames {
            let is_tell =
                item.frames == 1 && matches!(item.head.get(4), Some(&kind::TELL | &kind::TELL_NAMED));
            if !is_tell {
                continue;
            }
            let mut wire = BytesMut::with_capacity(item.wire_len());
            wire.extend_from_slice(&item.head);
            wire.extend_from_slice(&item.payload);
            // Our own encoding: a failure here is a bug, counted not hidden.
            let frame = match decoder.decode(&mut wire) {
                Ok(Some(f)) => f,
                _ => {
                    self.stats.dead_letters_lost.inc("undecodable");
                    continue;
                }
            };
            let (target, meta) = match frame.header {
                Header::Tell(t) => (
                    Target::Pid(Pid {
                        node: peer.to_string(),
                        incarnation: t.incarnation,
                        id: t.to,
                    }),
                    t.meta,
                ),
                Header::TellNamed(t) => (
                    Target::Named {
                        node: peer.to_string(),
                        name: t.name,
                    },
                    t.meta,
                ),
                _ => continue,
            };
            if meta.call.is_some() {
                continue;
            }
            self.stats.dead_letters_received.inc(DeadReason::NodeDown.label());
            self.offer(DeadLetter {
                target,
                reason: DeadReason::NodeDown,
                from: meta.from,
                manifest: meta.manifest,
                size: frame.payload.len() as u64,
            });
        }
    }

    /// Handles a `DEAD_LETTER` frame from `from`: drops of our messages.
    pub(crate) fn on_frame(&self, from: &NodeId, report: DeadLetterFrame) {
        for l in report.letters {
            let reason = DeadReason::from_label(&l.reason);
            self.stats.dead_letters_received.inc(reason.label());
            debug!(peer = %from, reason = reason.label(), manifest = %l.manifest, "dead letter");
            let target = match l.to {
                Addressee::Pid(pid) => Target::Pid(pid),
                Addressee::Name(name) => Target::Named {
                    node: from.name.clone(),
                    name,
                },
            };
            self.offer(DeadLetter {
                target,
                reason,
                from: l.from,
                manifest: l.manifest,
                size: l.size,
            });
        }
        for c in report.counts {
            let reason = DeadReason::from_label(&c.reason);
            self.stats.dead_letters_received.add(reason.label(), c.count);
            if c.kind == DropKind::Tell.label() {
                // Dropped tells the batch had no room to describe: counted,
                // but no letter reaches the receivers.
                self.stats.dead_letters_lost.add("summarized", c.count);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(manifest: &str) -> Undelivered {
        Undelivered {
            to: Addressee::Name("echo".into()),
            reason: DeadReason::MailboxFull.label().into(),
            from: None,
            manifest: manifest.into(),
            size: 1,
        }
    }

    #[test]
    fn reasons_round_trip_and_unknown_ones_are_other() {
        for r in [
            DeadReason::NoSuchMailbox,
            DeadReason::MailboxFull,
            DeadReason::NoGroupMembers,
            DeadReason::SlowConsumer,
            DeadReason::QueueMemberGone,
            DeadReason::NodeDown,
            DeadReason::Other,
        ] {
            assert_eq!(DeadReason::from_label(r.label()), r);
        }
        assert_eq!(DeadReason::from_label("from_the_future"), DeadReason::Other);
    }

    #[test]
    fn a_batch_keeps_at_most_max_letters_and_counts_the_rest() {
        let mut b = Batch::default();
        for _ in 0..MAX_LETTERS + 10 {
            b.add_letter(letter("m"), DeadReason::MailboxFull, MAX_LETTER_BYTES);
        }
        assert_eq!(b.letters.len(), MAX_LETTERS);
        assert_eq!(
            b.counts.get(&(DropKind::Tell, DeadReason::MailboxFull)),
            Some(&10)
        );
        let per_reason = b.per_reason();
        assert_eq!(
            per_reason.get(&DeadReason::MailboxFull),
            Some(&(MAX_LETTERS as u64 + 10))
        );
    }

    #[test]
    fn a_batch_is_bounded_in_bytes() {
        let mut b = Batch::default();
        let big = "x".repeat(MAX_LETTER_BYTES / 3);
        for _ in 0..5 {
            b.add_letter(letter(&big), DeadReason::MailboxFull, MAX_LETTER_BYTES);
        }
        assert_eq!(b.letters.len(), 2);
        assert!(b.letter_bytes <= MAX_LETTER_BYTES);
        assert_eq!(b.counts.get(&(DropKind::Tell, DeadReason::MailboxFull)), Some(&3));
    }

    #[test]
    fn a_full_batch_fits_in_a_frame_header_and_in_the_smallest_frame() {
        let smallest = weft_proto::codec::MIN_MAX_FRAME;
        for (manifest_len, max_frame) in [(1, 1 << 20), (200, 1 << 20), (5_000, 1 << 20), (200, smallest)] {
            let budget = MAX_LETTER_BYTES.min(max_frame / 2);
            let mut b = Batch::default();
            for i in 0..MAX_LETTERS * 2 {
                let m = format!("{i:0>width$}", width = manifest_len);
                b.add_letter(letter(&m), DeadReason::NoSuchMailbox, budget);
            }
            let counts = b.counts.len();
            let frame = Frame::control(Header::DeadLetter(DeadLetterFrame {
                letters: b.letters,
                counts: vec![
                    DropCount {
                        kind: "publish".into(),
                        reason: "queue_member_gone".into(),
                        count: u64::MAX,
                    };
                    counts + 20
                ],
            }));
            let enc = frame.encode(max_frame).expect("a full batch encodes");
            assert!(
                enc.head.len() <= MAX_LETTER_BYTES + 1024,
                "{manifest_len}: {}",
                enc.head.len()
            );
        }
    }
}
