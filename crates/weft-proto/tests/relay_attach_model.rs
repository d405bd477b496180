//! Model check of the stream relay's attach protocol: one origin, one
//! edge, bounded links and viewer queues, random interleavings of
//! publishes, subscribes, deliveries, reads, leaves and ticks, built from
//! the same sans-IO pieces the node uses (`GopCache`, `Cursor`,
//! `EdgeFeed`, `Attachment`).
//!
//! The property: once a viewer's subscribe returned (on the origin at
//! once; on the edge when the origin's acknowledgement arrived), its
//! frames are strictly increasing and contiguous, except where `Skipped`
//! events name exactly the missing frames; its first frame is at or before
//! the one after the origin's last sequence at return (or a `Skipped` event
//! comes first); and a viewer still there at the end has every frame up to
//! the last one published.

use std::collections::VecDeque;

use bytes::Bytes;
use proptest::prelude::*;
use weft_proto::relay::{
    Admit, Attachment, Cursor, EdgeFeed, FeedOut, GopCache, Intake, Refused, StreamFrame,
};

#[derive(Debug, Clone)]
enum Op {
    Publish { keyframe: bool },
    SubscribeEdge,
    SubscribeOrigin,
    DeliverDown,
    DeliverUp,
    Read { viewer: usize, n: usize },
    Leave { viewer: usize },
    Tick,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => any::<u8>().prop_map(|k| Op::Publish { keyframe: k % 5 == 0 }),
        2 => Just(Op::SubscribeEdge),
        1 => Just(Op::SubscribeOrigin),
        6 => Just(Op::DeliverDown),
        2 => Just(Op::DeliverUp),
        4 => (0..8usize, 1..6usize).prop_map(|(viewer, n)| Op::Read { viewer, n }),
        1 => (0..8usize).prop_map(|viewer| Op::Leave { viewer }),
        1 => Just(Op::Tick),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Frame(u64),
    Skipped(u64),
}

/// Origin to edge, in link order.
#[derive(Debug)]
enum Down {
    Attached { attach: u64, last_seq: Option<u64> },
    Data { frame: StreamFrame, skipped: u64 },
}

/// Edge to origin, in link order.
#[derive(Debug)]
enum Up {
    Attach(u64),
    Unsubscribe,
}

#[derive(Debug)]
struct Viewer {
    on_edge: bool,
    alive: bool,
    cap: usize,
    queue: VecDeque<Ev>,
    cursor: Cursor,
    got: Vec<Ev>,
    /// `Some(r)` once subscribe returned; `r` is the origin's last
    /// sequence at that moment (0: none).
    returned_at: Option<u64>,
}

impl Viewer {
    /// The node's `offer`: admit, queue, or fall behind when full.
    fn offer(&mut self, frame: &StreamFrame) {
        let items = match self.cursor.admit(frame) {
            Admit::Duplicate | Admit::Skip => return,
            Admit::Deliver => vec![Ev::Frame(frame.seq)],
            Admit::ResumeAfterSkip { skipped } => vec![Ev::Skipped(skipped), Ev::Frame(frame.seq)],
        };
        for item in items {
            if self.queue.len() >= self.cap {
                let discarded = self.discard();
                self.cursor.fall_behind(frame, discarded);
                return;
            }
            self.queue.push_back(item);
        }
    }

    /// Empties the queue; the frames it held, counting the ones the
    /// skip markers in it named (the node's `discard`).
    fn discard(&mut self) -> u64 {
        self.queue
            .drain(..)
            .map(|e| match e {
                Ev::Frame(_) => 1,
                Ev::Skipped(n) => n,
            })
            .sum()
    }

    /// The node's gap marker: always queued, making room if needed.
    fn gap(&mut self, frames: u64) {
        let mut discarded = 0;
        if self.queue.len() >= self.cap {
            discarded = self.discard();
        }
        let n = self.cursor.interrupt(frames + discarded);
        self.queue.push_back(Ev::Skipped(n));
    }
}

struct Hub {
    attach: Attachment,
    cache: GopCache,
    last: Option<u64>,
}

struct World {
    cache: GopCache,
    last: Option<u64>,
    feed: Option<EdgeFeed>,
    down: VecDeque<Down>,
    down_cap: usize,
    up: VecDeque<Up>,
    hub: Option<Hub>,
    viewers: Vec<Viewer>,
    next_attach: u64,
    gop_frames: usize,
    viewer_caps: Vec<usize>,
}

fn send_down(down: &mut VecDeque<Down>, cap: usize, out: FeedOut<'_>) -> Result<(), Refused> {
    if down.len() >= cap {
        return Err(Refused::Full);
    }
    down.push_back(match out {
        FeedOut::Attached { attach, last_seq } => Down::Attached { attach, last_seq },
        FeedOut::Data { frame, skipped } => Down::Data {
            frame: frame.clone(),
            skipped,
        },
    });
    Ok(())
}

impl World {
    fn origin_last(&self) -> u64 {
        self.last.unwrap_or(0)
    }

    fn publish(&mut self, keyframe: bool) {
        let seq = self.origin_last() + 1;
        let frame = StreamFrame {
            seq,
            timestamp: seq,
            keyframe: keyframe || seq == 1,
            config: false,
            payload: Bytes::new(),
        };
        self.cache.push(frame.clone());
        self.last = Some(seq);
        for v in self.viewers.iter_mut().filter(|v| v.alive && !v.on_edge) {
            v.offer(&frame);
        }
        if let Some(feed) = &mut self.feed {
            let (down, cap) = (&mut self.down, self.down_cap);
            feed.offer(&frame, &self.cache, self.last, &mut |o| send_down(down, cap, o))
                .expect("never gone");
        }
    }

    fn subscribe(&mut self, on_edge: bool) {
        let cap = self.viewer_caps[self.viewers.len() % self.viewer_caps.len()];
        let mut v = Viewer {
            on_edge,
            alive: true,
            cap,
            queue: VecDeque::new(),
            cursor: Cursor::default(),
            got: Vec::new(),
            returned_at: None,
        };
        if !on_edge {
            for f in self.cache.snapshot() {
                v.offer(&f);
            }
            v.returned_at = Some(self.origin_last());
        } else {
            if self.hub.is_none() {
                self.next_attach += 1;
                self.hub = Some(Hub {
                    attach: Attachment::pending(self.next_attach),
                    cache: GopCache::new(self.gop_frames, 1 << 30),
                    last: None,
                });
                self.up.push_back(Up::Attach(self.next_attach));
            }
            let hub = self.hub.as_ref().expect("hub");
            for f in hub.cache.snapshot() {
                v.offer(&f);
            }
            if hub.attach.is_attached() {
                v.returned_at = Some(self.origin_last());
            }
        }
        self.viewers.push(v);
    }

    fn deliver_up(&mut self) {
        let Some(msg) = self.up.pop_front() else { return };
        match msg {
            Up::Attach(id) => {
                let mut feed = EdgeFeed::new(id);
                let (down, cap) = (&mut self.down, self.down_cap);
                feed.start(&self.cache, self.last, &mut |o| send_down(down, cap, o))
                    .expect("never gone");
                self.feed = Some(feed);
            }
            Up::Unsubscribe => self.feed = None,
        }
    }

    fn deliver_down(&mut self) {
        let Some(msg) = self.down.pop_front() else { return };
        let origin_last = self.origin_last();
        let Some(hub) = &mut self.hub else { return };
        match msg {
            Down::Attached { attach, last_seq } => {
                if hub.attach.on_attached(attach, last_seq) {
                    for v in self.viewers.iter_mut().filter(|v| v.alive && v.on_edge) {
                        v.returned_at.get_or_insert(origin_last);
                    }
                }
            }
            Down::Data { frame, skipped } => match hub.attach.intake(hub.last, frame.seq, skipped) {
                Intake::Stale | Intake::Duplicate => {}
                Intake::Accept { gap } => {
                    let viewers = self.viewers.iter_mut().filter(|v| v.alive && v.on_edge);
                    if gap > 0 {
                        hub.cache.clear();
                    }
                    hub.last = Some(frame.seq);
                    hub.cache.push(frame.clone());
                    for v in viewers {
                        if gap > 0 {
                            v.gap(gap);
                        }
                        v.offer(&frame);
                    }
                }
            },
        }
    }

    fn read(&mut self, viewer: usize, n: usize) {
        if let Some(v) = self.viewers.get_mut(viewer) {
            for _ in 0..n {
                match v.queue.pop_front() {
                    Some(e) => v.got.push(e),
                    None => break,
                }
            }
        }
    }

    fn leave(&mut self, viewer: usize) {
        let Some(v) = self.viewers.get_mut(viewer) else {
            return;
        };
        if !v.alive {
            return;
        }
        v.alive = false;
        let on_edge = v.on_edge;
        // The edge stops pulling once its last viewer left (linger 0: the
        // harshest case, a new viewer right after needs a new attach).
        if on_edge && !self.viewers.iter().any(|v| v.alive && v.on_edge) {
            self.hub = None;
            self.up.push_back(Up::Unsubscribe);
        }
    }

    fn tick(&mut self) {
        if let Some(feed) = &mut self.feed {
            let (down, cap) = (&mut self.down, self.down_cap);
            feed.retry(&self.cache, self.last, &mut |o| send_down(down, cap, o))
                .expect("never gone");
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Publish { keyframe } => self.publish(keyframe),
            Op::SubscribeEdge => self.subscribe(true),
            Op::SubscribeOrigin => self.subscribe(false),
            Op::DeliverDown => self.deliver_down(),
            Op::DeliverUp => self.deliver_up(),
            Op::Read { viewer, n } => self.read(viewer, n),
            Op::Leave { viewer } => self.leave(viewer),
            Op::Tick => self.tick(),
        }
    }

    /// Runs every link and queue dry (bounded).
    fn settle(&mut self) {
        for _ in 0..100_000 {
            let busy = !self.up.is_empty()
                || !self.down.is_empty()
                || self.feed.as_ref().is_some_and(|f| !f.is_attached())
                || self.viewers.iter().any(|v| !v.queue.is_empty());
            if !busy {
                return;
            }
            self.deliver_up();
            self.tick();
            self.deliver_down();
            for i in 0..self.viewers.len() {
                self.read(i, usize::MAX);
            }
        }
        panic!("the model did not settle");
    }
}

fn check(i: usize, v: &Viewer, final_seq: u64) -> Result<(), TestCaseError> {
    let Some(returned) = v.returned_at else {
        prop_assert!(!v.alive, "viewer {i} still waits for its attach at the end");
        return Ok(());
    };
    let mut prev: Option<u64> = None;
    let mut skipped_since = 0u64;
    let mut skipped_any = false;
    for ev in &v.got {
        match *ev {
            Ev::Skipped(n) => {
                prop_assert!(n > 0, "viewer {i}: empty skip marker in {:?}", v.got);
                skipped_since += n;
                skipped_any = true;
            }
            Ev::Frame(seq) => {
                match prev {
                    None => prop_assert!(
                        skipped_any || seq <= returned + 1,
                        "viewer {i} returned at {returned} but starts at {seq} with no skip: {:?}",
                        v.got
                    ),
                    Some(p) => {
                        prop_assert!(seq > p, "viewer {i}: {seq} after {p}: {:?}", v.got);
                        prop_assert_eq!(
                            seq - p - 1,
                            skipped_since,
                            "viewer {}: {} frames missing between {} and {}, skip markers say {}: {:?}",
                            i,
                            seq - p - 1,
                            p,
                            seq,
                            skipped_since,
                            &v.got
                        );
                    }
                }
                prev = Some(seq);
                skipped_since = 0;
            }
        }
    }
    if v.alive {
        prop_assert_eq!(prev, Some(final_seq), "viewer {} ends early: {:?}", i, &v.got);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn relay_attach_model_viewers_get_every_frame_or_a_skip(
        ops in proptest::collection::vec(op(), 1..200),
        down_cap in 1usize..8,
        gop_frames in 2usize..12,
        viewer_caps in proptest::collection::vec(2usize..10, 1..4),
    ) {
        let mut w = World {
            cache: GopCache::new(gop_frames, 1 << 30),
            last: None,
            feed: None,
            down: VecDeque::new(),
            down_cap,
            up: VecDeque::new(),
            hub: None,
            viewers: Vec::new(),
            next_attach: 0,
            gop_frames,
            viewer_caps,
        };
        for op in &ops {
            w.apply(op);
        }
        // Quiesce, then one last keyframe ends every skip.
        w.settle();
        w.publish(true);
        w.settle();
        let final_seq = w.origin_last();
        for (i, v) in w.viewers.iter().enumerate() {
            check(i, v, final_seq)?;
        }
    }
}
