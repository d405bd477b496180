//! Step 5: n1 crashes. The survivors detect it, purge its registry
//! entries, the viewer on n3 fails over to the standby origin, and the
//! shard map is rebalanced without n1.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use weft::{MemberState, Node};

use super::cluster::{Cluster, GROUP};
use super::runner::{rate, say, secs, thousands};
use super::shards::{check_delivery, delivered, handled, owners, route_all};
use super::stream::{KEY, Live};
use super::wait;

/// The node that crashes: stream origin, first voter, owner of shards.
const VICTIM: &str = "n1";
/// Bound of each wait of this step.
const LIMIT: Duration = Duration::from_secs(15);

/// What the survivors hold of `VICTIM`: group members, subscription
/// patterns, stream origin announcements.
fn victim_entries(node: &Node) -> (usize, usize, usize) {
    let members = node
        .groups()
        .members(GROUP)
        .iter()
        .filter(|p| p.node == VICTIM)
        .count();
    let patterns = node.pubsub().remote_interest().get(VICTIM).copied().unwrap_or(0);
    let origins = node
        .streams()
        .list()
        .iter()
        .filter(|s| s.key == KEY)
        .map(|s| s.origins.iter().filter(|o| *o == VICTIM).count())
        .sum();
    (members, patterns, origins)
}

/// Runs the step; `live` is what step 3 left running.
pub async fn run(cluster: &mut Cluster, live: &Live, events: u64) -> anyhow::Result<()> {
    let survivors = ["n2", "n3"];
    let before = cluster.node("n2")?.shards().map();
    let owned = before.counts().get(VICTIM).copied().unwrap_or(0);
    let held = victim_entries(cluster.node("n2")?);
    let leader = if cluster.node("n2")?.shards().leader().as_deref() == Some(VICTIM) {
        ", led the shard map's Raft group"
    } else {
        ""
    };
    say(format_args!(
        "{VICTIM} crashes: every task stops at once, no leave announcement, no goodbye. It was the origin \
         of {KEY}, owned {owned} shards{leader}; n2 held {} group member, {} subscription patterns and {} \
         stream origin of it.",
        held.0, held.1, held.2
    ));
    if held.0 == 0 || held.1 == 0 || held.2 == 0 {
        bail!("the victim's entries were not all known before the crash: {held:?}");
    }
    let killed_at = Instant::now();
    cluster.kill(VICTIM)?;
    live.primary.freeze();

    // Failure detection: both survivors watched at once.
    let mut down_at: [Option<Duration>; 2] = [None, None];
    {
        let nodes = [cluster.node(survivors[0])?, cluster.node(survivors[1])?];
        wait::until(&format!("n2 and n3 to declare {VICTIM} down"), LIMIT, || {
            for (at, node) in down_at.iter_mut().zip(nodes) {
                if at.is_none()
                    && node
                        .membership()
                        .member(VICTIM)
                        .is_some_and(|m| m.state == MemberState::Down)
                {
                    *at = Some(killed_at.elapsed());
                }
            }
            down_at.iter().all(Option::is_some)
        })
        .await
        .context("failure detection")?;
    }
    let down_after: Vec<String> = survivors
        .iter()
        .zip(down_at)
        .map(|(name, at)| format!("{name} after {}", secs(at.unwrap_or_default())))
        .collect();
    say(format_args!(
        "failure detection (SWIM): {VICTIM} declared down by {}",
        down_after.join(", ")
    ));

    // Registry purge.
    let n2 = cluster.node("n2")?;
    let n3 = cluster.node("n3")?;
    wait::until("n2 and n3 to purge every entry of n1", LIMIT, || {
        victim_entries(n2) == (0, 0, 0) && victim_entries(n3) == (0, 0, 0)
    })
    .await
    .context("registry purge")?;
    say(format_args!(
        "registry purge ({} after the crash): group {GROUP} has {} members left, no subscription and no \
         stream origin of {VICTIM} remain on n2 or n3",
        secs(killed_at.elapsed()),
        n2.groups().members(GROUP).len()
    ));

    // Stream failover.
    let viewer = &live.viewer;
    let standby_frames = 10;
    wait::until(
        "the viewer on n3 to continue from the standby origin",
        LIMIT,
        || {
            let s = viewer.state();
            s.ended.is_some() || s.segments.get(1).is_some_and(|seg| seg.frames >= standby_frames)
        },
    )
    .await
    .context("stream failover")?;
    let state = viewer.state();
    if let Some(reason) = state.ended {
        bail!("stream failover: the viewer's subscription ended: {reason}");
    }
    let (Some(old), Some(new)) = (state.segments.first(), state.segments.get(1)) else {
        bail!("stream failover: no discontinuity marker");
    };
    if state.segments.len() != 2 || new.origin != "n2" {
        let origins: Vec<&str> = state.segments.iter().map(|s| s.origin.as_str()).collect();
        bail!("stream failover: the viewer went through origins {origins:?}, expected [n1, n2]");
    }
    let (first_seq, first_key) = new.first.unwrap_or((0, false));
    say(format_args!(
        "stream failover: after {} frames from n1 the viewer got a discontinuity marker (new origin n2) \
         {} after the crash, then keyframe {first_seq} and {} frames from the standby",
        old.frames,
        secs(new.began.saturating_duration_since(killed_at)),
        new.frames
    ));
    if !first_key || new.gaps > 0 || old.gaps > 0 {
        bail!(
            "stream failover: standby frames start at {first_seq} (keyframe: {first_key}), gaps before/after: {}/{}",
            old.gaps,
            new.gaps
        );
    }
    if live.standby.last_seq() < first_seq {
        bail!("stream failover: frame {first_seq} was never published by the standby");
    }

    // Shard rebalance.
    wait::until("a map without n1 committed on n2 and n3", LIMIT, || {
        [n2, n3].iter().all(|n| {
            let m = n.shards().map();
            m.epoch > before.epoch && !m.counts().contains_key(VICTIM) && m.owners.iter().all(Option::is_some)
        })
    })
    .await
    .context("shard rebalance")?;
    let after = n2.shards().map();
    let moved = before.moves_to(&after);
    say(format_args!(
        "shard rebalance ({} after the crash): epoch {} → {}, owners {}, {} shards moved (only n1's), \
         Raft leader now {}",
        secs(killed_at.elapsed()),
        before.epoch,
        after.epoch,
        owners(&after),
        moved.len(),
        n2.shards().leader().unwrap_or_else(|| "?".into())
    ));
    if moved.iter().any(|s| before.owner(*s) != Some(VICTIM)) || moved.len() != owned {
        bail!("shard rebalance: moved {moved:?}, expected exactly n1's {owned} shards");
    }
    let before_events = handled(cluster)?;
    let from = [n2, n3];
    let (took, expected) = route_all(&from, &after, events)
        .await
        .context("routing after the rebalance")?;
    let got = check_delivery(cluster, &before_events, &expected)
        .await
        .context("routing after the rebalance")?;
    say(format_args!(
        "routing works again: {} events from n2 and n3 acknowledged in {} ({}); handlers got {}",
        thousands(events),
        secs(took),
        rate(events, took),
        delivered(&got, &expected)
    ));
    Ok(())
}
