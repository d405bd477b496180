//! Live stream relay logic, sans-IO: the replay buffer (GOP cache), the
//! per-subscriber cursor (de-duplication and the skip-to-keyframe lag
//! policy), and origin selection.

use std::collections::VecDeque;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// One frame of a live stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamFrame {
    /// Sequence number, strictly increasing per origin.
    pub seq: u64,
    /// Presentation timestamp (units chosen by the application).
    pub timestamp: u64,
    /// Whether a decoder can start here.
    pub keyframe: bool,
    /// Configuration (e.g. codec headers) every new viewer needs first.
    pub config: bool,
    /// The frame's bytes.
    pub payload: Bytes,
}

impl StreamFrame {
    /// Bytes this frame counts against buffer bounds.
    pub fn size(&self) -> usize {
        self.payload.len() + 32
    }
}

/// Longest stream key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 255;

/// Why a stream key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Empty, longer than [`MAX_KEY_LEN`], or holding a control character.
    #[error("invalid stream key {0:?} (1 to 255 bytes, no control characters)")]
    Invalid(String),
}

/// Checks a stream key such as `live/cam1`.
pub fn validate_key(key: &str) -> Result<(), KeyError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || key.chars().any(char::is_control) {
        return Err(KeyError::Invalid(key.to_string()));
    }
    Ok(())
}

/// The replay buffer: the configuration frames plus every frame since the
/// last keyframe, bounded by frame count and bytes. When a bound is hit
/// the oldest frames go (counted as truncations); a viewer then starts
/// mid-GOP only if the GOP itself is larger than the bounds.
#[derive(Debug)]
pub struct GopCache {
    configs: Vec<StreamFrame>,
    frames: VecDeque<StreamFrame>,
    bytes: usize,
    max_frames: usize,
    max_bytes: usize,
    config_run_open: bool,
    truncated: u64,
}

impl GopCache {
    /// A cache holding at most `max_frames` frames and `max_bytes` bytes
    /// (configuration frames not counted).
    pub fn new(max_frames: usize, max_bytes: usize) -> Self {
        Self {
            configs: Vec::new(),
            frames: VecDeque::new(),
            bytes: 0,
            max_frames: max_frames.max(1),
            max_bytes: max_bytes.max(1),
            config_run_open: false,
            truncated: 0,
        }
    }

    /// Adds a frame. A keyframe starts a new GOP (the previous one is
    /// dropped); a run of configuration frames replaces the previous run.
    pub fn push(&mut self, frame: StreamFrame) {
        if frame.config {
            if !self.config_run_open {
                self.configs.clear();
                self.config_run_open = true;
            }
            self.configs.push(frame);
            return;
        }
        self.config_run_open = false;
        if frame.keyframe {
            self.frames.clear();
            self.bytes = 0;
        }
        self.bytes += frame.size();
        self.frames.push_back(frame);
        while self.frames.len() > self.max_frames || (self.bytes > self.max_bytes && self.frames.len() > 1) {
            if let Some(old) = self.frames.pop_front() {
                self.bytes -= old.size();
                self.truncated += 1;
            }
        }
    }

    /// What a new viewer gets first: configuration, then the current GOP.
    pub fn snapshot(&self) -> Vec<StreamFrame> {
        self.configs.iter().chain(self.frames.iter()).cloned().collect()
    }

    /// Frames dropped because a bound was hit.
    pub fn truncated(&self) -> u64 {
        self.truncated
    }

    /// Frames (not counting configuration) held.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether no frame is held.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty() && self.configs.is_empty()
    }

    /// Forgets everything (after a switch to another origin).
    pub fn clear(&mut self) {
        self.configs.clear();
        self.frames.clear();
        self.bytes = 0;
        self.config_run_open = false;
    }
}

/// What to do with one frame for one subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Deliver it.
    Deliver,
    /// Deliver it, but first tell the subscriber `skipped` frames were
    /// skipped (the frame is the keyframe it resumes at).
    ResumeAfterSkip {
        /// Frames skipped since the subscriber fell behind.
        skipped: u64,
    },
    /// Already delivered (sequence not after the last one): drop silently,
    /// it is a duplicate, not a loss.
    Duplicate,
    /// The subscriber is skipping to the next keyframe: drop, counted.
    Skip,
}

/// One subscriber's position in a stream: the last sequence delivered and
/// whether it is skipping to the next keyframe after falling behind.
///
/// Contract: call [`Cursor::admit`] for every frame in order; when the
/// subscriber's queue is full call [`Cursor::fall_behind`] (and discard
/// what it had queued), after a switch of origin call
/// [`Cursor::discontinuity`].
#[derive(Debug, Clone, Default)]
pub struct Cursor {
    last_seq: Option<u64>,
    skipping: bool,
    skipped: u64,
    total_skipped: u64,
}

impl Cursor {
    /// Decides the fate of `frame`.
    pub fn admit(&mut self, frame: &StreamFrame) -> Admit {
        if self.last_seq.is_some_and(|last| frame.seq <= last) {
            return Admit::Duplicate;
        }
        if self.skipping {
            if frame.keyframe || frame.config {
                self.skipping = false;
                self.last_seq = Some(frame.seq);
                let skipped = std::mem::take(&mut self.skipped);
                return Admit::ResumeAfterSkip { skipped };
            }
            self.skipped += 1;
            self.total_skipped += 1;
            return Admit::Skip;
        }
        self.last_seq = Some(frame.seq);
        Admit::Deliver
    }

    /// The subscriber could not take `frame` and `discarded` frames it had
    /// queued were thrown away: skip until the next keyframe.
    pub fn fall_behind(&mut self, frame: &StreamFrame, discarded: u64) {
        self.skipping = true;
        self.skipped += 1 + discarded;
        self.total_skipped += 1 + discarded;
        self.last_seq = Some(frame.seq);
    }

    /// The stream now comes from another origin, whose sequence numbers
    /// are unrelated: accept whatever comes next.
    pub fn discontinuity(&mut self) {
        self.last_seq = None;
        self.skipping = false;
        self.skipped = 0;
    }

    /// Upstream lost `gap` frames just before the next one (the origin
    /// skipped them for this edge): the subscriber is told at once. Returns
    /// the count to report, `gap` plus the frames this cursor had skipped
    /// and not reported yet, and accepts whatever comes next.
    pub fn interrupt(&mut self, gap: u64) -> u64 {
        let pending = std::mem::take(&mut self.skipped);
        self.discontinuity();
        gap + pending
    }

    /// Frames skipped over the cursor's life.
    pub fn total_skipped(&self) -> u64 {
        self.total_skipped
    }

    /// Whether the cursor is skipping to the next keyframe.
    pub fn is_skipping(&self) -> bool {
        self.skipping
    }
}

/// What an origin's feed to one edge sends (the shell turns it into a
/// frame on the link to that edge, in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedOut<'a> {
    /// The attach acknowledgement (`StreamAttached`): every frame after it
    /// is the replay buffer, then live frames after `last_seq`.
    Attached {
        /// The edge's attach id.
        attach: u64,
        /// The origin's last published sequence number.
        last_seq: Option<u64>,
    },
    /// A frame (`StreamData`), after `skipped` frames this edge missed.
    Data {
        /// The frame.
        frame: &'a StreamFrame,
        /// Frames skipped for this edge just before this one.
        skipped: u64,
    },
}

/// Why the shell could not send a [`FeedOut`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The link's queue is full: the feed skips (data) or retries later
    /// (acknowledgement).
    #[error("link queue full")]
    Full,
    /// The edge is gone (link down or closed): forget the feed.
    #[error("edge gone")]
    Gone,
}

/// An origin's feed to one edge: the attach handshake, then every frame
/// through a [`Cursor`] (skip to the next keyframe when the link is full).
///
/// Contract: the caller pushes each new frame into the [`GopCache`] first,
/// then calls [`EdgeFeed::offer`]; it calls [`EdgeFeed::retry`] now and
/// then (a tick) so that an acknowledgement refused by a full link is sent
/// once there is room. The acknowledgement always goes out before the
/// replay and the live frames that follow it, so an edge that counts from
/// the acknowledgement sees every frame published after `last_seq`, or a
/// `skipped` count naming exactly the ones it missed.
#[derive(Debug, Clone)]
pub struct EdgeFeed {
    /// `None`: a legacy `StreamSubscribe` edge, which gets no
    /// acknowledgement.
    attach: Option<u64>,
    acked: bool,
    cursor: Cursor,
}

impl EdgeFeed {
    /// A feed for an edge that asked with attach id `attach`; nothing is
    /// sent until [`EdgeFeed::start`].
    pub fn new(attach: u64) -> Self {
        Self {
            attach: Some(attach),
            acked: false,
            cursor: Cursor::default(),
        }
    }

    /// A feed for an edge that sent the older `StreamSubscribe` (no
    /// acknowledgement: replay then live frames).
    pub fn legacy() -> Self {
        Self {
            attach: None,
            acked: false,
            cursor: Cursor::default(),
        }
    }

    /// The edge's attach id (`None` for a legacy edge).
    pub fn attach_id(&self) -> Option<u64> {
        self.attach
    }

    /// Whether the acknowledgement (if any) and the replay went out.
    pub fn is_attached(&self) -> bool {
        self.acked
    }

    /// Sends the acknowledgement then the replay buffer; does nothing once
    /// that is done. If the link refuses the acknowledgement as full,
    /// nothing is sent and a later call tries again. Returns the frames
    /// skipped for this edge (link full), or [`Refused::Gone`].
    pub fn start(
        &mut self,
        cache: &GopCache,
        last_seq: Option<u64>,
        send: &mut dyn FnMut(FeedOut<'_>) -> Result<(), Refused>,
    ) -> Result<u64, Refused> {
        if self.acked {
            return Ok(0);
        }
        if let Some(attach) = self.attach {
            match send(FeedOut::Attached { attach, last_seq }) {
                Ok(()) => {}
                // Retried by the next offer or tick, with the replay as it
                // is then: nothing after the acknowledgement is lost.
                Err(Refused::Full) => return Ok(0),
                Err(Refused::Gone) => return Err(Refused::Gone),
            }
        }
        self.acked = true;
        let mut skipped = 0;
        for frame in cache.snapshot() {
            skipped += self.deliver(&frame, send)?;
        }
        Ok(skipped)
    }

    /// Retries a pending acknowledgement (same as [`EdgeFeed::start`]).
    pub fn retry(
        &mut self,
        cache: &GopCache,
        last_seq: Option<u64>,
        send: &mut dyn FnMut(FeedOut<'_>) -> Result<(), Refused>,
    ) -> Result<u64, Refused> {
        self.start(cache, last_seq, send)
    }

    /// Offers a frame just pushed into `cache` (whose last sequence is now
    /// `last_seq`). Returns the frames skipped for this edge.
    pub fn offer(
        &mut self,
        frame: &StreamFrame,
        cache: &GopCache,
        last_seq: Option<u64>,
        send: &mut dyn FnMut(FeedOut<'_>) -> Result<(), Refused>,
    ) -> Result<u64, Refused> {
        if !self.acked {
            // The replay sent with the acknowledgement holds `frame`.
            return self.start(cache, last_seq, send);
        }
        self.deliver(frame, send)
    }

    fn deliver(
        &mut self,
        frame: &StreamFrame,
        send: &mut dyn FnMut(FeedOut<'_>) -> Result<(), Refused>,
    ) -> Result<u64, Refused> {
        let skipped = match self.cursor.admit(frame) {
            Admit::Duplicate => return Ok(0),
            Admit::Skip => return Ok(1),
            Admit::Deliver => 0,
            Admit::ResumeAfterSkip { skipped } => skipped,
        };
        match send(FeedOut::Data { frame, skipped }) {
            Ok(()) => Ok(0),
            Err(Refused::Full) => {
                // `skipped` carries over: the frame it resumes at counts
                // those and this one.
                self.cursor.fall_behind(frame, skipped);
                Ok(1)
            }
            Err(Refused::Gone) => Err(Refused::Gone),
        }
    }
}

/// What an edge does with a `StreamData` frame from its upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intake {
    /// Not attached (yet): a frame of an earlier, abandoned attach still in
    /// flight. Dropped, counted.
    Stale,
    /// Sequence not after the last one taken: dropped silently.
    Duplicate,
    /// Take it. `gap` frames were skipped by the origin just before it:
    /// the edge clears its replay buffer and tells every viewer.
    Accept {
        /// Frames the origin skipped for this edge (0: none).
        gap: u64,
    },
}

/// An edge's attach handshake with its upstream origin: pending until the
/// origin's `StreamAttached` with the current attach id arrives, attached
/// after. Frames are taken only once attached, so what viewers get after
/// the acknowledgement is the origin's replay then its live frames, with no
/// frame of an earlier attach mixed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    id: u64,
    attached: bool,
    origin_seq: Option<u64>,
}

impl Attachment {
    /// A new attach with id `id` (fresh per attach on this node), pending.
    pub fn pending(id: u64) -> Self {
        Self {
            id,
            attached: false,
            origin_seq: None,
        }
    }

    /// An attachment that needs no handshake: the stream is published on
    /// this node, or its origin predates the handshake (frames are taken
    /// at once, as they come).
    pub fn local() -> Self {
        Self {
            id: 0,
            attached: true,
            origin_seq: None,
        }
    }

    /// The id to send in `StreamAttach`.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the origin confirmed this attach.
    pub fn is_attached(&self) -> bool {
        self.attached
    }

    /// The origin's last sequence number when it attached this edge.
    pub fn origin_seq(&self) -> Option<u64> {
        self.origin_seq
    }

    /// An acknowledgement arrived: true if it completes this attach (the
    /// id matches and it was pending); an old id is ignored.
    pub fn on_attached(&mut self, id: u64, last_seq: Option<u64>) -> bool {
        if id != self.id || self.attached {
            return false;
        }
        self.attached = true;
        self.origin_seq = last_seq;
        true
    }

    /// Decides the fate of a data frame `seq` (with the origin's `skipped`
    /// count) given the edge's last taken sequence `last_seq`.
    pub fn intake(&self, last_seq: Option<u64>, seq: u64, skipped: u64) -> Intake {
        if !self.attached {
            return Intake::Stale;
        }
        if last_seq.is_some_and(|l| seq <= l) {
            return Intake::Duplicate;
        }
        Intake::Accept { gap: skipped }
    }
}

/// An origin's announcement in the registry (table `ORIGINS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginAnnounce {
    /// Higher is preferred; a standby origin announces a lower priority.
    pub priority: u32,
    /// The origin answers `StreamAttach` with `StreamAttached`. Announced
    /// so that edges use the handshake only towards origins that know it;
    /// absent (false) in announcements of older nodes.
    pub attach_ack: bool,
}

impl OriginAnnounce {
    /// Decodes an announcement, including one from an older node that
    /// ends before `attach_ack`.
    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        #[derive(Deserialize)]
        struct Before {
            priority: u32,
        }
        postcard::from_bytes::<Self>(bytes).or_else(|_| {
            postcard::from_bytes::<Before>(bytes).map(|b| Self {
                priority: b.priority,
                attach_ack: false,
            })
        })
    }
}

/// Picks the origin to pull from among `(node, priority)` candidates:
/// never `local`, highest priority first, then the smallest node name, so
/// every node picks the same one.
pub fn choose_origin<'a>(
    local: &str,
    candidates: impl IntoIterator<Item = (&'a str, u32)>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .filter(|(n, _)| *n != local)
        .min_by(|(a, pa), (b, pb)| pb.cmp(pa).then(a.cmp(b)))
        .map(|(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(seq: u64, keyframe: bool) -> StreamFrame {
        StreamFrame {
            seq,
            timestamp: seq * 40,
            keyframe,
            config: false,
            payload: Bytes::from(vec![0u8; 100]),
        }
    }

    fn cfg(seq: u64) -> StreamFrame {
        StreamFrame {
            config: true,
            ..f(seq, false)
        }
    }

    #[test]
    fn cache_keeps_config_and_the_current_gop() {
        let mut c = GopCache::new(100, 1 << 20);
        c.push(cfg(0));
        c.push(cfg(1));
        for s in 2..10 {
            c.push(f(s, s == 2 || s == 6));
        }
        let seqs: Vec<u64> = c.snapshot().iter().map(|f| f.seq).collect();
        assert_eq!(
            seqs,
            vec![0, 1, 6, 7, 8, 9],
            "configs then the GOP from the last keyframe"
        );
        c.push(cfg(10));
        c.push(f(11, true));
        let seqs: Vec<u64> = c.snapshot().iter().map(|f| f.seq).collect();
        assert_eq!(seqs, vec![10, 11], "a new config run replaces the old one");
    }

    #[test]
    fn cache_bounds_truncate_and_count() {
        let mut c = GopCache::new(3, 1 << 20);
        c.push(f(0, true));
        for s in 1..6 {
            c.push(f(s, false));
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.truncated(), 3);
        let mut b = GopCache::new(100, 300);
        b.push(f(0, true));
        for s in 1..5 {
            b.push(f(s, false));
        }
        assert_eq!(b.len(), 2, "132 bytes a frame, 300 bytes at most");
        assert_eq!(b.truncated(), 3);
    }

    #[test]
    fn cursor_dedupes_and_skips_to_keyframe() {
        let mut cur = Cursor::default();
        assert_eq!(cur.admit(&f(1, true)), Admit::Deliver);
        assert_eq!(cur.admit(&f(2, false)), Admit::Deliver);
        assert_eq!(cur.admit(&f(2, false)), Admit::Duplicate);
        assert_eq!(cur.admit(&f(1, true)), Admit::Duplicate);
        cur.fall_behind(&f(3, false), 2);
        assert!(cur.is_skipping());
        assert_eq!(cur.admit(&f(4, false)), Admit::Skip);
        assert_eq!(cur.admit(&f(5, true)), Admit::ResumeAfterSkip { skipped: 4 });
        assert_eq!(cur.admit(&f(6, false)), Admit::Deliver);
        assert_eq!(cur.total_skipped(), 4);
        cur.discontinuity();
        assert_eq!(
            cur.admit(&f(1, true)),
            Admit::Deliver,
            "new origin, new numbering"
        );
    }

    #[test]
    fn relay_origin_announce_decodes_old_and_new() {
        let new = OriginAnnounce {
            priority: 7,
            attach_ack: true,
        };
        let bytes = postcard::to_allocvec(&new).expect("encode");
        assert_eq!(OriginAnnounce::decode(&bytes), Ok(new));
        let old = postcard::to_allocvec(&7u32).expect("encode");
        assert_eq!(
            OriginAnnounce::decode(&old),
            Ok(OriginAnnounce {
                priority: 7,
                attach_ack: false
            })
        );
        assert!(OriginAnnounce::decode(&[]).is_err());
    }

    #[test]
    fn relay_attachment_takes_frames_only_once_its_own_ack_came() {
        let mut a = Attachment::pending(2);
        assert_eq!(a.intake(None, 1, 0), Intake::Stale);
        assert!(!a.on_attached(1, Some(4)), "an older attach's ack");
        assert_eq!(a.intake(None, 1, 0), Intake::Stale);
        assert!(a.on_attached(2, Some(4)));
        assert!(!a.on_attached(2, Some(5)), "only once");
        assert_eq!(a.origin_seq(), Some(4));
        assert_eq!(a.intake(None, 3, 0), Intake::Accept { gap: 0 });
        assert_eq!(a.intake(Some(3), 3, 0), Intake::Duplicate);
        assert_eq!(a.intake(Some(3), 9, 5), Intake::Accept { gap: 5 });
    }

    #[test]
    fn relay_feed_acks_before_the_replay_and_retries_a_refused_ack() {
        let mut cache = GopCache::new(100, 1 << 20);
        for s in 1..=3 {
            cache.push(f(s, s == 2));
        }
        let room = std::cell::Cell::new(0usize);
        let sent = std::cell::RefCell::new(Vec::<String>::new());
        let mut feed = EdgeFeed::new(9);
        let mut send = |o: FeedOut<'_>| {
            if room.get() == 0 {
                return Err(Refused::Full);
            }
            room.set(room.get() - 1);
            sent.borrow_mut().push(match o {
                FeedOut::Attached { attach, last_seq } => format!("ack{attach}@{last_seq:?}"),
                FeedOut::Data { frame, skipped } => format!("{}+{skipped}", frame.seq),
            });
            Ok(())
        };
        assert_eq!(feed.start(&cache, Some(3), &mut send), Ok(0));
        assert!(!feed.is_attached(), "ack refused: nothing sent, retried later");
        room.set(10);
        cache.push(f(4, false));
        assert_eq!(feed.offer(&f(4, false), &cache, Some(4), &mut send), Ok(0));
        assert!(feed.is_attached());
        // The link fills again: frame 5 is skipped, keyframe 6 says so.
        room.set(0);
        cache.push(f(5, false));
        assert_eq!(feed.offer(&f(5, false), &cache, Some(5), &mut send), Ok(1));
        room.set(10);
        cache.push(f(6, true));
        assert_eq!(feed.offer(&f(6, true), &cache, Some(6), &mut send), Ok(0));
        assert_eq!(*sent.borrow(), ["ack9@Some(4)", "2+0", "3+0", "4+0", "6+1"]);
    }

    #[test]
    fn origin_choice_is_deterministic_and_never_local() {
        assert_eq!(choose_origin("a", [("a", 9), ("c", 1), ("b", 1)]), Some("b"));
        assert_eq!(choose_origin("x", [("c", 1), ("b", 1), ("d", 5)]), Some("d"));
        assert_eq!(choose_origin("a", [("a", 1)]), None);
        assert!(validate_key("live/cam1").is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key("a\nb").is_err());
    }
}
