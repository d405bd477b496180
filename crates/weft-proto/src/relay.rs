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

    /// Frames skipped over the cursor's life.
    pub fn total_skipped(&self) -> u64 {
        self.total_skipped
    }

    /// Whether the cursor is skipping to the next keyframe.
    pub fn is_skipping(&self) -> bool {
        self.skipping
    }
}

/// An origin's announcement in the registry (table `ORIGINS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginAnnounce {
    /// Higher is preferred; a standby origin announces a lower priority.
    pub priority: u32,
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
    fn origin_choice_is_deterministic_and_never_local() {
        assert_eq!(choose_origin("a", [("a", 9), ("c", 1), ("b", 1)]), Some("b"));
        assert_eq!(choose_origin("x", [("c", 1), ("b", 1), ("d", 5)]), Some("d"));
        assert_eq!(choose_origin("a", [("a", 1)]), None);
        assert!(validate_key("live/cam1").is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key("a\nb").is_err());
    }
}
