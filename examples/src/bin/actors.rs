//! Actor-style messaging: mailboxes with cluster-wide pids, a named actor,
//! remote tells, a call with a reply, and typed errors (or, for a tell, a
//! dead letter) when the target is gone.
//!
//! An actor here is a task that owns a [`weft::Mailbox`] and its state;
//! other nodes reach it by pid or by the name it registered. Messages from
//! one sender to one mailbox arrive in order, which is what lets a caller
//! send a few tells and then a call and see their effect in the reply.
//!
//! `cargo run -p weft-examples --bin actors`

use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use weft::{CallError, DeadReason, Mailbox, Message, Target};
use weft_examples::{bounded, cluster, shutdown, wait_until};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bounded(run()).await
}

/// A counter actor: `add` (a tell with a `u64`) changes its state, `get`
/// (a call) answers with it. It stops when its mailbox closes.
async fn counter(mailbox: Mailbox) {
    let mut total = 0u64;
    while let Some(env) = mailbox.recv().await {
        match env.message.manifest.as_str() {
            // A message that does not decode is the sender's bug; an actor
            // drops it rather than crash on network data.
            "add" => total += env.message.decode::<u64>().unwrap_or(0),
            "get" if env.is_call() => {
                if let Ok(reply) = Message::typed("total", &total) {
                    // The caller may have given up (timeout): nothing to do.
                    let _ = mailbox.reply(&env, reply).await;
                }
            }
            other => println!("counter: ignoring {other:?}"),
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let nodes = cluster("actors-example", &["n1", "n2", "n3"], |_| {}).await?;
    let (n1, n2, n3) = (&nodes[0], &nodes[1], &nodes[2]);

    // The counter lives on n2 under a name: callers need not know its pid.
    let mailbox = n2.mailboxes().spawn();
    n2.mailboxes().register("counter", &mailbox)?;
    println!("n2 runs actor {} registered as \"counter\"", mailbox.pid());
    let actor = tokio::spawn(counter(mailbox));
    // Names are replicated to every node asynchronously.
    wait_until("n1 resolves the name", || {
        !n1.mailboxes().whereis("counter").is_empty()
    })
    .await?;
    println!(
        "n1 whereis(\"counter\") = {:?}",
        n1.mailboxes().whereis("counter")
    );

    // Tells are fire-and-forget; a call after them sees their effect
    // (FIFO per sender->receiver).
    let counter_on_n2 = Target::Named {
        node: "n2".into(),
        name: "counter".into(),
    };
    for n in [5u64, 10, 27] {
        n1.mailboxes()
            .send(counter_on_n2.clone(), Message::typed("add", &n)?)
            .await?;
        println!("n1 tells counter add {n}");
    }
    let reply = n1
        .mailboxes()
        .call(counter_on_n2, Message::new("get", ""))
        .timeout(Duration::from_secs(5))
        .await?;
    let total: u64 = reply.decode()?;
    println!("n1 calls counter get -> {total}");
    ensure!(total == 42, "the reply reflects every tell before it");

    // A mailbox that no longer exists: the target node answers, and the
    // caller gets a typed error at once instead of a timeout.
    let short_lived = n3.mailboxes().spawn();
    let gone = short_lived.pid().clone();
    drop(short_lived);
    match n1
        .mailboxes()
        .call(&gone, Message::new("get", ""))
        .timeout(Duration::from_secs(5))
        .await
    {
        Err(CallError::NoSuchMailbox) => println!("n1 calls dropped mailbox {gone} -> NoSuchMailbox"),
        other => bail!("expected NoSuchMailbox, got {other:?}"),
    }
    // A tell to it returns once queued on the link; n3 drops it and
    // reports it back, so n1 sees a dead letter instead of nothing.
    let mut dead_letters = n1.mailboxes().dead_letters();
    n1.mailboxes().send(&gone, Message::new("add", "")).await?;
    let letter = tokio::time::timeout(Duration::from_secs(5), dead_letters.recv()).await;
    match letter {
        Ok(Some(l)) if l.reason == DeadReason::NoSuchMailbox => {
            println!(
                "n1 tells dropped mailbox {gone} -> dead letter {:?} ({})",
                l.reason, l.manifest
            )
        }
        other => bail!("expected a NoSuchMailbox dead letter, got {other:?}"),
    }

    // A node that crashes: the call fails with NodeDown as soon as
    // membership declares n3 down (about 1-2 s with default settings),
    // not after the call's own timeout.
    let doomed = n3.mailboxes().spawn();
    let pid = doomed.pid().clone();
    n3.abort();
    println!("n3 crashes (abort, no goodbye)");
    let started = Instant::now();
    match n1
        .mailboxes()
        .call(&pid, Message::new("get", ""))
        .timeout(Duration::from_secs(30))
        .await
    {
        Err(CallError::NodeDown(node)) => {
            println!(
                "n1 calls {pid} -> NodeDown({node}) after {:.1?}",
                started.elapsed()
            );
        }
        other => bail!("expected NodeDown, got {other:?}"),
    }
    drop(doomed);

    actor.abort();
    let mut nodes = nodes;
    nodes.truncate(2);
    shutdown(nodes).await;
    println!("done");
    Ok(())
}
