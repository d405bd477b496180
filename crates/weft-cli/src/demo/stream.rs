//! Step 3: a live stream. n1 publishes `live/cam1` (25 frames/s, a
//! keyframe every second), n2 runs a standby origin of the same stream at
//! a lower priority, and a viewer joins late on n3: it starts at a
//! keyframe from the replay buffer (GOP cache), then gets live frames with
//! no gap. The feeders and the viewer keep running for step 5's failover.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use tokio::task::JoinHandle;
use weft::{Node, StreamClosed, StreamEvent, StreamFrame, StreamPolicy, StreamSubscription};

use super::cluster::Cluster;
use super::runner::{say, secs};
use super::wait;

/// The demo stream.
pub const KEY: &str = "live/cam1";
/// One frame every 40 ms: 25 frames per second.
const FRAME_INTERVAL: Duration = Duration::from_millis(40);
/// A keyframe every 25 frames (one second).
const GOP: u64 = 25;
/// First sequence number of the standby origin's own numbering.
pub const STANDBY_BASE: u64 = 1_000_000;
/// Live frames the late viewer must get gapless before the step passes.
const LIVE_FRAMES: u64 = 25;

/// Publishes a synthetic live stream from one node: a configuration frame,
/// then media frames with a keyframe every [`GOP`].
pub struct Feeder {
    task: JoinHandle<()>,
    published: Arc<AtomicU64>,
    last_seq: Arc<AtomicU64>,
    frozen: Arc<AtomicBool>,
}

impl Feeder {
    /// Starts publishing [`KEY`] on `node` at `priority`, numbering frames
    /// from `base`.
    pub fn start(node: &Node, priority: u32, base: u64) -> anyhow::Result<Feeder> {
        let publisher = node
            .streams()
            .publish(
                KEY,
                StreamPolicy {
                    priority,
                    ..StreamPolicy::default()
                },
            )
            .with_context(|| format!("publishing {KEY} on {}", node.id().name))?;
        let published = Arc::new(AtomicU64::new(0));
        let last_seq = Arc::new(AtomicU64::new(base));
        let frozen = Arc::new(AtomicBool::new(false));
        let (p, l, f) = (published.clone(), last_seq.clone(), frozen.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(FRAME_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut i = 0u64;
            loop {
                tick.tick().await;
                if f.load(Ordering::Relaxed) {
                    continue;
                }
                let frame = StreamFrame {
                    seq: base + i,
                    timestamp: i * FRAME_INTERVAL.as_millis() as u64,
                    keyframe: i >= 1 && (i - 1).is_multiple_of(GOP),
                    config: i == 0,
                    payload: Bytes::from(vec![0x5a; if i == 0 { 32 } else { 1200 }]),
                };
                if publisher.send(frame).is_ok() {
                    l.store(base + i, Ordering::Relaxed);
                    p.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        });
        Ok(Feeder {
            task,
            published,
            last_seq,
            frozen,
        })
    }

    /// Frames published so far (the configuration frame included).
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Sequence number of the last frame published.
    pub fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Relaxed)
    }

    /// Stops publishing but keeps the publisher (its node crashed: nothing
    /// may withdraw the stream politely).
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::Relaxed);
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The frames a viewer got from one origin (between discontinuities).
#[derive(Clone, Debug)]
pub struct Segment {
    /// The origin the frames came from.
    pub origin: String,
    /// When the segment began (subscription, or discontinuity marker).
    pub began: Instant,
    /// Configuration frames received.
    pub configs: u64,
    /// Whether a configuration frame came before any media frame.
    pub config_first: bool,
    /// First media frame: sequence number and whether it was a keyframe.
    pub first: Option<(u64, bool)>,
    /// When the first media frame arrived.
    pub first_at: Option<Instant>,
    /// Media frames received.
    pub frames: u64,
    /// Media frames at or before `replay_until` (served from the replay
    /// buffer).
    pub replayed: u64,
    /// Last media sequence number.
    pub last: Option<u64>,
    /// Frames not following their predecessor by exactly one.
    pub gaps: u64,
    /// Sequence numbers at or before this one were published before the
    /// viewer joined.
    pub replay_until: u64,
}

impl Segment {
    fn new(origin: &str, replay_until: u64) -> Self {
        Segment {
            origin: origin.to_string(),
            began: Instant::now(),
            configs: 0,
            config_first: false,
            first: None,
            first_at: None,
            frames: 0,
            replayed: 0,
            last: None,
            gaps: 0,
            replay_until,
        }
    }

    /// Media frames published after the viewer joined.
    pub fn live(&self) -> u64 {
        self.frames - self.replayed
    }
}

/// What a viewer has seen.
#[derive(Clone, Debug, Default)]
pub struct ViewerState {
    /// One segment per origin, in order.
    pub segments: Vec<Segment>,
    /// Frames the relay skipped because the viewer fell behind.
    pub skipped: u64,
    /// Why the subscription ended, if it did.
    pub ended: Option<StreamClosed>,
}

/// A viewer consuming a stream subscription in the background.
pub struct Viewer {
    state: Arc<Mutex<ViewerState>>,
    task: JoinHandle<()>,
}

impl Viewer {
    /// Consumes `sub`, whose frames first come from `origin`; frames up to
    /// `replay_until` count as replayed.
    pub fn start(sub: StreamSubscription, origin: &str, replay_until: u64) -> Viewer {
        let state = Arc::new(Mutex::new(ViewerState {
            segments: vec![Segment::new(origin, replay_until)],
            ..ViewerState::default()
        }));
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let event = sub.next().await;
                let mut s = st.lock().unwrap_or_else(|p| p.into_inner());
                match event {
                    Ok(StreamEvent::Frame(f)) => {
                        let Some(seg) = s.segments.last_mut() else {
                            continue;
                        };
                        if f.config {
                            seg.configs += 1;
                            seg.config_first |= seg.frames == 0;
                            continue;
                        }
                        if seg.first.is_none() {
                            seg.first = Some((f.seq, f.keyframe));
                            seg.first_at = Some(Instant::now());
                        }
                        if seg.last.is_some_and(|last| f.seq != last + 1) {
                            seg.gaps += 1;
                        }
                        seg.last = Some(f.seq);
                        seg.frames += 1;
                        if f.seq <= seg.replay_until {
                            seg.replayed += 1;
                        }
                    }
                    Ok(StreamEvent::Skipped { frames }) => s.skipped += frames,
                    Ok(StreamEvent::Discontinuity { origin }) => s.segments.push(Segment::new(&origin, 0)),
                    Err(reason) => {
                        s.ended = Some(reason);
                        return;
                    }
                }
            }
        });
        Viewer { state, task }
    }

    /// A copy of what the viewer has seen.
    pub fn state(&self) -> ViewerState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What step 3 leaves running for step 5.
pub struct Live {
    /// The primary origin's feeder (n1).
    pub primary: Feeder,
    /// The standby origin's feeder (n2).
    pub standby: Feeder,
    /// The late viewer on n3.
    pub viewer: Viewer,
}

/// Runs the step.
pub async fn run(cluster: &Cluster) -> anyhow::Result<Live> {
    let (n1, n2, n3) = (cluster.node("n1")?, cluster.node("n2")?, cluster.node("n3")?);
    say(format_args!(
        "n1 publishes {KEY} (25 frames/s, a keyframe every second, priority 200); \
         n2 runs a standby origin of it (priority 100)."
    ));
    let primary = Feeder::start(n1, 200, 0)?;
    let standby = Feeder::start(n2, 100, STANDBY_BASE)?;
    let limit = Duration::from_secs(10);
    wait::until("n3 to learn both origins", limit, || {
        n3.streams()
            .list()
            .iter()
            .any(|s| s.key == KEY && s.origins.len() == 2)
    })
    .await?;
    if n3.streams().locate(KEY).as_deref() != Some("n1") {
        bail!(
            "n3 would pull {KEY} from {:?}, not from n1",
            n3.streams().locate(KEY)
        );
    }
    // Join late: after more than one GOP, so the viewer must start at the
    // latest keyframe, not at the first frame.
    wait::until("n1 to publish its first 1.2 s of video", limit, || {
        primary.published() > 1 + GOP + 5
    })
    .await?;
    let joined_at = primary.last_seq();
    let sub = n3.streams().subscribe(KEY).await.context("subscribing on n3")?;
    let viewer = Viewer::start(sub, "n1", joined_at);
    say(format_args!(
        "a viewer joins late on n3 (n1 is at frame {joined_at}); n3 becomes an edge and pulls from n1 once"
    ));
    wait::until("the late viewer to get 25 live frames", limit, || {
        viewer
            .state()
            .segments
            .first()
            .is_some_and(|s| s.live() >= LIVE_FRAMES)
    })
    .await?;
    let state = viewer.state();
    let Some(seg) = state.segments.first() else {
        bail!("the viewer has no segment");
    };
    let (first_seq, first_key) = seg.first.unwrap_or((0, false));
    say(format_args!(
        "first picture after {}: configuration frame, then keyframe {first_seq} and {} more frames \
         from the GOP cache, then {} live frames",
        secs(
            seg.first_at
                .map_or(Duration::ZERO, |t| t.duration_since(seg.began))
        ),
        seg.replayed.saturating_sub(1),
        seg.live()
    ));
    if state.segments.len() != 1 || seg.origin != "n1" {
        bail!("unexpected origin switch: {:?}", state.segments);
    }
    if !seg.config_first {
        bail!("the configuration frame did not come first");
    }
    if !first_key {
        bail!("the viewer started at frame {first_seq}, which is not a keyframe");
    }
    if seg.replayed == 0 {
        bail!("nothing came from the replay buffer");
    }
    if seg.gaps > 0 || state.skipped > 0 {
        bail!("{} gaps and {} skipped frames", seg.gaps, state.skipped);
    }
    if let Some(reason) = state.ended {
        bail!("the subscription ended: {reason}");
    }
    say(format_args!(
        "frames {first_seq}..={} arrived in order: no gap and no duplicate between replay and live",
        seg.last.unwrap_or(first_seq)
    ));
    Ok(Live {
        primary,
        standby,
        viewer,
    })
}
