//! A live-stream relay node you can drive from a terminal or a test.
//!
//! It starts a weft node and, with `--publish KEY[:PRIORITY]`, publishes a
//! synthetic stream from it (this node is then an *origin* of `KEY`): one
//! frame every `--interval-ms` (20), a keyframe every `--gop` frames (10),
//! sequence numbers counting up from `--base` (0). Any node can then play
//! the stream; a node that is not an origin becomes an *edge* and pulls it
//! once, however many local viewers it has.
//!
//! Commands are read on stdin, one per line; each is answered with one JSON
//! line on stdout:
//!
//! ```text
//! subscribe KEY       {"subscribed":KEY,"viewer":N} | {"error":"..."}
//! unsubscribe KEY     {"unsubscribed":KEY,"viewers":N}   (all viewers of KEY)
//! locate KEY          {"locate":"n1"} | {"locate":null}  (never this node)
//! streams             {"streams":[{"key":..,"origins":[..],"role":..,...}]}
//! stats               {"stream_pulls":..,"stream_teardowns":..,
//!                      "stream_failovers":..,"stream_stalls":..,
//!                      "stream_frames_skipped":..,"published":..,
//!                      "sent":{"peer":n,..},"received":{"peer":n,..}}
//! stop-publishing     {"stopped":KEY} | {"error":"not publishing"}
//! ```
//!
//! A viewer prints one line per event, tagged with its key and number:
//!
//! ```text
//! {"frame":SEQ,"key":KEY,"keyframe":true,"viewer":N}
//! {"skipped":FRAMES,"key":KEY,"viewer":N}
//! {"discontinuity":"n3","key":KEY,"viewer":N}      (failover to n3)
//! {"end":"origin lost","key":KEY,"viewer":N}       (or "the stream finished", "node stopped")
//! ```
//!
//! By hand, in three terminals: an origin, a lower-priority standby origin
//! of the same key, and an edge with a viewer. Kill the origin (Ctrl-C)
//! and the viewer continues from the standby after a `discontinuity` line.
//!
//! ```sh
//! echo -n 0123456789abcdef0123 > /tmp/secret
//! cargo run -p weft --example relay_node -- --name n1 --listen 127.0.0.1:7601 \
//!     --secret-file /tmp/secret --publish cam:200
//! cargo run -p weft --example relay_node -- --name n3 --listen 127.0.0.1:7603 \
//!     --join 127.0.0.1:7601 --secret-file /tmp/secret --publish cam:100 --base 1000000
//! cargo run -p weft --example relay_node -- --name n2 --listen 127.0.0.1:7602 \
//!     --join 127.0.0.1:7601 --secret-file /tmp/secret
//! locate cam
//! subscribe cam
//! ```

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::json_str;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use weft::{Node, StreamEvent, StreamFrame, StreamPolicy, StreamPublisher, StreamSubscription};

struct Args {
    name: String,
    listen: String,
    join: Vec<String>,
    secret_file: String,
    /// `(key, priority)` to publish.
    publish: Option<(String, u32)>,
    base: u64,
    interval: Duration,
    gop: u64,
    linger: Option<Duration>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        name: String::new(),
        listen: "127.0.0.1:0".into(),
        join: Vec::new(),
        secret_file: String::new(),
        publish: None,
        base: 0,
        interval: Duration::from_millis(20),
        gop: 10,
        linger: None,
    };
    let number = |flag: &str, v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--name" => a.name = value()?,
            "--listen" => a.listen = value()?,
            "--join" => a.join.push(value()?),
            "--secret-file" => a.secret_file = value()?,
            "--publish" => {
                let v = value()?;
                a.publish = Some(match v.rsplit_once(':') {
                    Some((key, prio)) => (
                        key.to_string(),
                        prio.parse().map_err(|e| format!("--publish priority: {e}"))?,
                    ),
                    None => (v, StreamPolicy::default().priority),
                });
            }
            "--base" => a.base = number(&flag, value()?)?,
            "--interval-ms" => a.interval = Duration::from_millis(number(&flag, value()?)?.max(1)),
            "--gop" => a.gop = number(&flag, value()?)?.max(1),
            "--linger-ms" => a.linger = Some(Duration::from_millis(number(&flag, value()?)?)),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.name.is_empty() || a.secret_file.is_empty() {
        return Err("--name and --secret-file are required".into());
    }
    Ok(a)
}

/// Publishes frames at a steady rate while the publisher is in the slot;
/// `stop-publishing` empties the slot, which drops (ends) the publisher.
fn spawn_generator(slot: Arc<Mutex<Option<StreamPublisher>>>, base: u64, interval: Duration, gop: u64) {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for i in 0u64.. {
            tick.tick().await;
            let guard = slot.lock().unwrap_or_else(|p| p.into_inner());
            let Some(publisher) = guard.as_ref() else { return };
            let seq = base + i;
            let frame = StreamFrame {
                seq,
                timestamp: start.elapsed().as_millis() as u64,
                keyframe: i.is_multiple_of(gop),
                config: false,
                payload: Bytes::from(seq.to_be_bytes().to_vec()),
            };
            if let Err(e) = publisher.send(frame) {
                eprintln!("relay_node: publish: {e}");
            }
        }
    });
}

/// Prints a viewer's events until it ends or `stop` fires (then the
/// subscription is dropped, which unsubscribes).
fn spawn_viewer(sub: StreamSubscription, viewer: u64, mut stop: oneshot::Receiver<()>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let tag = format!("\"key\":{},\"viewer\":{viewer}", json_str(sub.key()));
        loop {
            let event = tokio::select! {
                _ = &mut stop => return,
                e = sub.next() => e,
            };
            match event {
                Ok(StreamEvent::Frame(f)) => {
                    println!("{{\"frame\":{},\"keyframe\":{},{tag}}}", f.seq, f.keyframe)
                }
                Ok(StreamEvent::Skipped { frames }) => println!("{{\"skipped\":{frames},{tag}}}"),
                Ok(StreamEvent::Discontinuity { origin }) => {
                    println!("{{\"discontinuity\":{},{tag}}}", json_str(&origin))
                }
                Err(reason) => {
                    println!("{{\"end\":{},{tag}}}", json_str(&reason.to_string()));
                    return;
                }
            }
        }
    })
}

/// A running viewer: firing `stop` ends it; the handle tells when it did.
struct Viewer {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

fn stats_json(node: &Node) -> String {
    let s = node.stats();
    let per_peer = |f: fn(&weft::stats::PeerTraffic) -> u64| {
        let m: serde_json::Map<String, serde_json::Value> =
            s.peers.iter().map(|(p, t)| (p.clone(), f(t).into())).collect();
        serde_json::Value::Object(m)
    };
    serde_json::json!({
        "stream_pulls": s.stream_pulls,
        "stream_teardowns": s.stream_teardowns,
        "stream_failovers": s.stream_failovers,
        "stream_stalls": s.stream_stalls,
        "stream_frames_skipped": s.stream_frames_skipped,
        "published": s.stream_frames_published,
        "sent": per_peer(|t| t.stream_frames_sent),
        "received": per_peer(|t| t.stream_frames_received),
    })
    .to_string()
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("relay_node: {e}");
        std::process::exit(2);
    }
}

async fn run() -> Result<(), String> {
    let args = parse()?;
    let mut config = support::node_config(&args.name, &args.listen, &args.join, &args.secret_file)?;
    if let Some(linger) = args.linger {
        config.relay.linger = linger;
    }
    let node = Node::start(config).await.map_err(|e| e.to_string())?;

    let publishing: Arc<Mutex<Option<StreamPublisher>>> = Arc::new(Mutex::new(None));
    if let Some((key, priority)) = &args.publish {
        let policy = StreamPolicy {
            priority: *priority,
            ..StreamPolicy::default()
        };
        let publisher = node.streams().publish(key, policy).map_err(|e| e.to_string())?;
        *publishing.lock().unwrap_or_else(|p| p.into_inner()) = Some(publisher);
        spawn_generator(publishing.clone(), args.base, args.interval, args.gop);
    }
    println!(
        "{{\"ready\":{},\"incarnation\":{},\"addr\":{}}}",
        json_str(&node.id().name),
        node.id().incarnation,
        json_str(&node.addr().to_string())
    );

    let mut viewers: HashMap<String, Vec<Viewer>> = HashMap::new();
    let mut next_viewer = 1u64;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next()) {
            (Some("subscribe"), Some(key)) => match node.streams().subscribe(key).await {
                Ok(sub) => {
                    let viewer = next_viewer;
                    next_viewer += 1;
                    let (stop, stopped) = oneshot::channel();
                    // Reply before the viewer task can print its first event.
                    println!("{{\"subscribed\":{},\"viewer\":{viewer}}}", json_str(key));
                    let task = spawn_viewer(sub, viewer, stopped);
                    viewers
                        .entry(key.to_string())
                        .or_default()
                        .push(Viewer { stop, task });
                }
                Err(e) => println!("{{\"error\":{}}}", json_str(&e.to_string())),
            },
            (Some("unsubscribe"), Some(key)) => {
                let gone = viewers.remove(key).unwrap_or_default();
                let count = gone.len();
                for v in gone {
                    let _ = v.stop.send(());
                    let _ = v.task.await;
                }
                println!("{{\"unsubscribed\":{},\"viewers\":{count}}}", json_str(key));
            }
            (Some("locate"), Some(key)) => match node.streams().locate(key) {
                Some(origin) => println!("{{\"locate\":{}}}", json_str(&origin)),
                None => println!("{{\"locate\":null}}"),
            },
            (Some("streams"), None) => {
                let streams = serde_json::to_string(&node.streams().list()).unwrap_or_else(|_| "[]".into());
                println!("{{\"streams\":{streams}}}");
            }
            (Some("stats"), None) => println!("{}", stats_json(&node)),
            (Some("stop-publishing"), None) => {
                let publisher = publishing.lock().unwrap_or_else(|p| p.into_inner()).take();
                match publisher {
                    Some(p) => {
                        let key = p.key().to_string();
                        drop(p); // withdraws the announcement; edges are told
                        println!("{{\"stopped\":{}}}", json_str(&key));
                    }
                    None => println!("{{\"error\":\"not publishing\"}}"),
                }
            }
            _ => println!("{{\"error\":\"unknown command\"}}"),
        }
    }
    drop(viewers);
    drop(publishing.lock().unwrap_or_else(|p| p.into_inner()).take());
    node.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
