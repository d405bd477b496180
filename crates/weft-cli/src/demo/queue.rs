//! Step 2: a queue group. One member on n2, one on n3; n1 publishes and
//! each message reaches exactly one member of the group.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use weft::Subscription;

use super::cluster::Cluster;
use super::pubsub::{payload, seq_of};
use super::runner::{rate, say, secs, thousands};
use super::wait;

/// Moves the sequence numbers of what `sub` holds into `seen` (payloads
/// without one counted in `malformed`); returns how many messages.
fn drain(sub: &Subscription, seen: &mut Vec<u64>, malformed: &mut u64) -> u64 {
    let mut got = Vec::new();
    let n = sub.drain_into(&mut got) as u64;
    for m in got {
        match seq_of(&m.payload) {
            Some(seq) => seen.push(seq),
            None => *malformed += 1,
        }
    }
    n
}

/// Runs the step with `count` messages.
pub async fn run(cluster: &Cluster, count: u64) -> anyhow::Result<()> {
    let (n1, n2, n3) = (cluster.node("n1")?, cluster.node("n2")?, cluster.node("n3")?);
    say(format_args!(
        "n2 and n3 each put one member in queue group `workers` on `demo.jobs`; n1 publishes {}.",
        thousands(count)
    ));
    let before = n1.pubsub().remote_interest();
    let w2 = n2
        .pubsub()
        .queue_subscribe("demo.jobs", "workers")
        .context("queue member on n2")?;
    let w3 = n3
        .pubsub()
        .queue_subscribe("demo.jobs", "workers")
        .context("queue member on n3")?;
    wait::until("n1 to learn both queue members", Duration::from_secs(10), || {
        let now = n1.pubsub().remote_interest();
        ["n2", "n3"]
            .iter()
            .all(|n| now.get(*n).copied().unwrap_or(0) > before.get(*n).copied().unwrap_or(0))
    })
    .await?;
    let started = Instant::now();
    for seq in 0..count {
        n1.pubsub()
            .publish("demo.jobs", payload(seq))
            .await
            .with_context(|| format!("publishing job {seq}"))?;
    }
    let (mut on2, mut on3) = (Vec::new(), Vec::new());
    let mut malformed = 0;
    let mut total = 0;
    let limit = Duration::from_secs(15);
    wait::until("every job to reach a member", limit, || {
        total += drain(&w2, &mut on2, &mut malformed) + drain(&w3, &mut on3, &mut malformed);
        total >= count
    })
    .await?;
    let took = started.elapsed();
    // Anything arriving after the last expected message is a duplicate.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drain(&w2, &mut on2, &mut malformed);
    drain(&w3, &mut on3, &mut malformed);
    let share = |n: usize| 100.0 * n as f64 / count.max(1) as f64;
    say(format_args!(
        "delivered in {} ({}): n2 got {} ({:.1}%), n3 got {} ({:.1}%)",
        secs(took),
        rate(count, took),
        thousands(on2.len() as u64),
        share(on2.len()),
        thousands(on3.len() as u64),
        share(on3.len())
    ));
    if malformed > 0 {
        bail!("{malformed} deliveries had no sequence number");
    }
    let distinct: BTreeSet<u64> = on2.iter().chain(&on3).copied().collect();
    let delivered = (on2.len() + on3.len()) as u64;
    if delivered != count
        || distinct.len() as u64 != count
        || distinct.last() != count.checked_sub(1).as_ref()
    {
        bail!(
            "{delivered} deliveries of {} distinct messages for {count} published: not exactly once",
            distinct.len()
        );
    }
    if on2.is_empty() || on3.is_empty() {
        bail!("one member got nothing: the group did not share the load");
    }
    say(format_args!(
        "{} + {} = {}: every message delivered exactly once across the group",
        thousands(on2.len() as u64),
        thousands(on3.len() as u64),
        thousands(count)
    ));
    Ok(())
}
