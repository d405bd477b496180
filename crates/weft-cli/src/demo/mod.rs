//! `weft demo`: a guided tour of every capability on a local 3-node
//! cluster, with live numbers.
//!
//! The three nodes are `weft::Node`s in this process (full embedding API,
//! no child processes to clean up); the crash of step 5 is
//! [`weft::Node::abort`], which stops every task of the node without a
//! leave announcement or a goodbye, so the survivors must detect it.
//! Every step runs under a time limit, every wait inside it too; the first
//! failure stops the demo, which then exits non-zero naming the step.

mod cluster;
mod failover;
mod pubsub;
mod queue;
mod runner;
mod shards;
mod stream;
mod wait;

use std::time::{Duration, Instant};

use crate::cli::DemoArgs;
use crate::error::{Failure, Result};

use self::cluster::Cluster;
use self::runner::{Runner, StepFailure, secs};

/// The steps, numbered as printed (the integration test checks these).
pub const STEPS: [&str; 6] = [
    "start a 3-node cluster",
    "pub/sub across nodes",
    "queue group",
    "live stream with a late viewer",
    "sharded routing",
    "node failure",
];

/// Each step's time limit (a bound against hangs; the demo as a whole
/// takes seconds).
const STEP_LIMIT: Duration = Duration::from_secs(45);

/// Runs the demo; a failed step is a runtime failure naming it.
pub async fn run(args: DemoArgs) -> Result<()> {
    println!("weft demo: three nodes in this process on 127.0.0.1, every capability, live numbers.");
    let started = Instant::now();
    let mut runner = Runner::new(args.fail_step);
    let outcome = steps(&mut runner, &args).await;
    match outcome {
        Ok(()) => {
            println!();
            println!(
                "All {} steps passed in {}.",
                runner.passed().len(),
                secs(started.elapsed())
            );
            Ok(())
        }
        Err(failure) => {
            println!();
            println!("{failure}");
            Err(Failure::runtime(failure))
        }
    }
}

fn name(step: u8) -> &'static str {
    STEPS.get(usize::from(step)).copied().unwrap_or("?")
}

async fn steps(runner: &mut Runner, args: &DemoArgs) -> std::result::Result<(), StepFailure> {
    let mut cluster = runner
        .step(0, name(0), STEP_LIMIT, Cluster::start(args.base_port))
        .await?;
    let outcome = tour(runner, &mut cluster, args).await;
    // Quick on failure; on success the survivors leave politely.
    cluster.stop(outcome.is_ok()).await;
    outcome
}

async fn tour(
    runner: &mut Runner,
    cluster: &mut Cluster,
    args: &DemoArgs,
) -> std::result::Result<(), StepFailure> {
    runner
        .step(1, name(1), STEP_LIMIT, pubsub::run(cluster, args.messages))
        .await?;
    runner
        .step(2, name(2), STEP_LIMIT, queue::run(cluster, args.jobs))
        .await?;
    let live = runner.step(3, name(3), STEP_LIMIT, stream::run(cluster)).await?;
    runner
        .step(4, name(4), STEP_LIMIT, shards::run(cluster, args.events))
        .await?;
    runner
        .step(
            5,
            name(5),
            STEP_LIMIT,
            failover::run(cluster, &live, args.events / 5),
        )
        .await?;
    drop(live);
    Ok(())
}
