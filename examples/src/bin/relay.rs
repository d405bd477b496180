//! Origin/edge stream relay: a live stream published on one node and
//! played on another, with a late viewer starting from the replay buffer.
//!
//! The origin (n1) announces the stream; the edge (n2) pulls it once, on
//! its first viewer, and fans it out locally to every viewer. A viewer
//! that arrives late starts at the last keyframe (with the configuration
//! frames first), so a decoder can start at once instead of waiting for
//! the next keyframe.
//!
//! `cargo run -p weft-examples --bin relay`

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use weft::{StreamClosed, StreamEvent, StreamFrame, StreamPolicy, StreamPublisher, StreamSubscription};
use weft_examples::{bounded, cluster, shutdown, wait_until};

/// A keyframe every `GOP` frames, like a video encoder's group of pictures.
const GOP: u64 = 10;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bounded(run()).await
}

fn send(publisher: &StreamPublisher, seqs: std::ops::RangeInclusive<u64>) -> anyhow::Result<()> {
    for seq in seqs {
        publisher.send(StreamFrame {
            seq,
            timestamp: seq * 40,
            keyframe: seq.is_multiple_of(GOP),
            config: false,
            payload: Bytes::from(format!("frame {seq}")),
        })?;
    }
    Ok(())
}

/// The next `n` frames a viewer plays, as (seq, keyframe?, config?).
async fn play(viewer: &StreamSubscription, n: usize) -> anyhow::Result<Vec<(u64, bool, bool)>> {
    let mut out = Vec::new();
    while out.len() < n {
        let event = tokio::time::timeout(Duration::from_secs(10), viewer.next())
            .await
            .context("no frame within 10 s")?;
        match event {
            Ok(StreamEvent::Frame(f)) => out.push((f.seq, f.keyframe, f.config)),
            // Skips and discontinuities tell a player to resynchronise;
            // nothing here is slow enough to cause one.
            Ok(other) => println!("  event {other:?}"),
            Err(closed) => bail!("stream closed early: {closed:?}"),
        }
    }
    Ok(out)
}

fn seqs(frames: &[(u64, bool, bool)]) -> Vec<u64> {
    frames.iter().map(|f| f.0).collect()
}

async fn run() -> anyhow::Result<()> {
    let nodes = cluster("relay-example", &["n1", "n2"], |c| {
        // Stop pulling soon after the last viewer leaves (default 5 s).
        c.relay.linger = Duration::from_millis(300);
    })
    .await?;
    let (origin, edge) = (&nodes[0], &nodes[1]);

    let publisher = origin.streams().publish("live/cam1", StreamPolicy::default())?;
    // Codec headers: every viewer needs them before any frame.
    publisher.send(StreamFrame {
        seq: 0,
        timestamp: 0,
        keyframe: false,
        config: true,
        payload: Bytes::from_static(b"codec headers"),
    })?;
    send(&publisher, 1..=12)?;
    println!("n1 publishes live/cam1: config frame, frames 1..=12 (keyframe every {GOP})");

    wait_until("n2 locates the origin", || {
        edge.streams().locate("live/cam1").is_some()
    })
    .await?;
    println!("n2 locates live/cam1 at {:?}", edge.streams().locate("live/cam1"));

    // The first viewer makes n2 pull the stream from n1: it gets the
    // config frame, then the GOP since keyframe 10, then live frames.
    let first = edge.streams().subscribe("live/cam1").await?;
    let start = play(&first, 4).await?;
    println!("viewer A on n2 starts with {:?}", seqs(&start));
    ensure!(
        start[0].2 && start[1] == (10, true, false),
        "config first, then keyframe 10"
    );

    send(&publisher, 13..=25)?;
    let live = play(&first, 13).await?;
    println!("viewer A plays live {:?}", seqs(&live));

    // A late viewer: same edge, no new pull; it starts at keyframe 20.
    let late = edge.streams().subscribe("live/cam1").await?;
    let late_start = play(&late, 7).await?;
    println!("late viewer B on n2 starts with {:?}", seqs(&late_start));
    ensure!(
        late_start[0].2 && late_start[1] == (20, true, false),
        "config, then keyframe 20"
    );

    send(&publisher, 26..=30)?;
    let (a, b) = (play(&first, 5).await?, play(&late, 5).await?);
    println!("both play {:?} and {:?}", seqs(&a), seqs(&b));
    ensure!(seqs(&a) == seqs(&b), "both viewers see the same live frames");

    // One upstream whatever the number of viewers: n1 sent each frame to
    // n2 once (the replayed GOP from keyframe 10, then live frames).
    let sent = origin.stats().peers.get("n2").map_or(0, |p| p.stream_frames_sent);
    println!(
        "n1 sent {sent} frames to n2 for 2 viewers; n2 pulled {} time(s)",
        edge.stats().stream_pulls
    );
    ensure!(edge.stats().stream_pulls == 1, "one pull for two viewers");

    // The publisher ends the stream: viewers learn it ended, not that
    // the origin was lost.
    drop(publisher);
    for viewer in [&first, &late] {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), viewer.next()).await {
                Ok(Err(StreamClosed::Finished)) => break,
                Ok(Ok(_)) => continue,
                other => bail!("expected the stream to finish, got {other:?}"),
            }
        }
    }
    println!("n1 ends the stream; both viewers see Finished");

    shutdown(nodes).await;
    println!("done");
    Ok(())
}
