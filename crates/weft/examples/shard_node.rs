//! A sharded keyed processor you can drive from a terminal or a test.
//!
//! It starts a weft node with a data directory (the Raft log of the shard
//! map lives in `<data-dir>/raft`), registers a [`ShardHandler`] that
//! appends every event it accepts to `<data-dir>/events.log`, and reads
//! commands on stdin.
//!
//! # Durability of an acknowledgement
//!
//! The sender of a routed event is acknowledged when the owner's
//! `on_event` returns. This handler returns only after the event's line is
//! written to `events.log` and, by default (`--sync fsync`), the file's
//! data is flushed to disk with `fdatasync`; so an acknowledged event
//! survives a crash of the owner (`--sync write` only survives a crash of
//! the process, not of the machine). Concurrent events share one
//! `fdatasync` (group commit). If the log cannot be written the process
//! exits at once: `on_event` has no way to refuse an event, and exiting
//! before it returns is the only way not to acknowledge it.
//!
//! One line per event, JSON:
//!
//! ```text
//! {"shard":3,"key":"k17","payload":"a-217","epoch":4,"since":2,"time_ns":1718000000123456789}
//! ```
//!
//! `epoch` is the node's committed map epoch when its handler ran (the
//! epoch the acknowledgement carries, unless a newer map was published
//! between the admission check and the handler), `since` the epoch of the
//! `shard_acquired` that opened the node's current ownership of the shard
//! (`null` if the handler saw none: itself a bug), and `time_ns` the
//! acceptance time on `CLOCK_REALTIME` in nanoseconds (processes on one
//! machine share the kernel clock, so lines of different nodes compare).
//!
//! # Output
//!
//! After start: `{"ready":NAME,"incarnation":N,"addr":"127.0.0.1:PORT"}`.
//! Shard callbacks print `{"acquired":SHARD,"epoch":E}` and
//! `{"released":SHARD,"epoch":E}`. Commands, one per line on stdin, each
//! answered with one JSON line:
//!
//! ```text
//! map                     {"epoch":E,"shards":S,"owners":{"n1":3,...},
//!                          "assignment":["n1","n3",...]}   (owner per shard)
//! leader                  {"leader":"n2"} | {"leader":null}
//! voters                  {"voters":["n1","n2","n3"]}
//! owner KEY               {"key":KEY,"shard":S,"owner":"n1","epoch":E}
//! route KEY TEXT          {"ack":{"shard":S,"node":"n1","epoch":E,"attempts":A}} | {"error":"..."}
//! rebalance               {"rebalanced":true|false}
//! stats                   {"routed_events_accepted":..,"route_retries":..,
//!                          "shard_proposals_committed":..,"shard_proposals_failed":{..}}
//! load COUNT PREFIX [KEYS [KEY_PREFIX [PAUSE_MS]]]
//!                         {"load_started":COUNT,"load":PREFIX}
//! ```
//!
//! `load` routes COUNT events in the background, one after the other
//! (each waits for the previous acknowledgement), with keys
//! `{KEY_PREFIX}0`..`{KEY_PREFIX}{KEYS-1}` in turn (KEYS defaults to 200,
//! KEY_PREFIX to `k`), pausing PAUSE_MS (default 0) after each, and
//! payload `PREFIX-<i>`. It prints one
//! line per event as soon as its outcome is known, so a reader always
//! knows exactly which events were acknowledged, then a summary:
//!
//! ```text
//! {"acked":I,"load":PREFIX,"shard":S,"epoch":E}
//! {"load_error":I,"load":PREFIX,"error":"..."}
//! {"load_done":COUNT,"load":PREFIX,"acknowledged":A,"errors":M}
//! ```
//!
//! By hand, in three terminals:
//!
//! ```sh
//! echo -n 0123456789abcdef0123 > /tmp/secret
//! cargo run -p weft --example shard_node -- --name n1 --listen 127.0.0.1:7701 \
//!     --secret-file /tmp/secret --data-dir /tmp/n1 --shards 12
//! cargo run -p weft --example shard_node -- --name n2 --listen 127.0.0.1:7702 \
//!     --join 127.0.0.1:7701 --secret-file /tmp/secret --data-dir /tmp/n2 --shards 12
//! cargo run -p weft --example shard_node -- --name n3 --listen 127.0.0.1:7703 \
//!     --join 127.0.0.1:7701 --secret-file /tmp/secret --data-dir /tmp/n3 --shards 12
//! map
//! route user-42 hello
//! load 1000 a
//! ```

mod support;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use support::json_str;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, BufReader};
use weft::{Node, ShardHandler, ShardMap};

#[derive(Clone, Copy, PartialEq, Eq)]
enum SyncMode {
    /// `write(2)` then `fdatasync(2)` before acknowledging.
    Fsync,
    /// `write(2)` only: survives a process crash, not a machine crash.
    Write,
}

struct Args {
    name: String,
    listen: String,
    join: Vec<String>,
    secret_file: String,
    data_dir: PathBuf,
    shards: Option<u32>,
    cluster: Option<String>,
    sync: SyncMode,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        name: String::new(),
        listen: "127.0.0.1:0".into(),
        join: Vec::new(),
        secret_file: String::new(),
        data_dir: PathBuf::new(),
        shards: None,
        cluster: None,
        sync: SyncMode::Fsync,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--name" => a.name = value()?,
            "--listen" => a.listen = value()?,
            "--join" => a.join.push(value()?),
            "--secret-file" => a.secret_file = value()?,
            "--data-dir" => a.data_dir = PathBuf::from(value()?),
            "--shards" => {
                let n: u32 = value()?.parse().map_err(|e| format!("--shards: {e}"))?;
                if n == 0 {
                    return Err("--shards must be at least 1".into());
                }
                a.shards = Some(n);
            }
            "--cluster" => a.cluster = Some(value()?),
            "--sync" => {
                a.sync = match value()?.as_str() {
                    "fsync" => SyncMode::Fsync,
                    "write" => SyncMode::Write,
                    other => return Err(format!("--sync: {other:?} is not fsync or write")),
                }
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.name.is_empty() || a.secret_file.is_empty() || a.data_dir.as_os_str().is_empty() {
        return Err("--name, --secret-file and --data-dir are required".into());
    }
    Ok(a)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The append-only event log with group commit: every `append` returns
/// once its own line is written (and synced, with [`SyncMode::Fsync`]);
/// callers that arrive while a sync runs share the next one.
struct EventLog {
    path: PathBuf,
    mode: SyncMode,
    /// The file and the number of lines written to it.
    writer: Mutex<(File, u64)>,
    /// A handle for `fdatasync` and the number of lines known synced; the
    /// lock serialises syncs without blocking writers.
    synced: Mutex<(File, u64)>,
}

impl EventLog {
    fn open(path: &Path, mode: SyncMode) -> Result<EventLog, String> {
        let err = |e: std::io::Error| format!("{}: {e}", path.display());
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        let sync = file.try_clone().map_err(err)?;
        Ok(EventLog {
            path: path.to_path_buf(),
            mode,
            writer: Mutex::new((file, 0)),
            synced: Mutex::new((sync, 0)),
        })
    }

    fn append(&self, line: &[u8]) -> std::io::Result<()> {
        let seq = {
            let mut w = lock(&self.writer);
            // One write call per line: a crash never leaves half a line
            // behind an acknowledged one.
            w.0.write_all(line)?;
            w.1 += 1;
            w.1
        };
        if self.mode == SyncMode::Fsync {
            let mut s = lock(&self.synced);
            if s.1 < seq {
                // Everything written so far is covered by this sync.
                let upto = lock(&self.writer).1;
                s.0.sync_data()?;
                s.1 = upto;
            }
        }
        Ok(())
    }
}

/// Appends every event to the log before returning (which acknowledges
/// it) and prints the shard callbacks.
struct Processor {
    log: EventLog,
    /// The node's committed maps: read in `on_event`, the latest one is
    /// the map its admission check just read (the epoch the acknowledgement
    /// carries) unless a newer one was published in between.
    map: tokio::sync::watch::Receiver<ShardMap>,
    /// The `shard_acquired` epoch of every shard held now.
    since: Mutex<std::collections::HashMap<u32, u64>>,
}

/// Nanoseconds on `CLOCK_REALTIME` (0 if the clock is before 1970).
fn realtime_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

impl Processor {
    fn write_event(&self, shard: u32, key: &[u8], event: &[u8]) {
        let epoch = self.map.borrow().epoch;
        let since = lock(&self.since).get(&shard).copied();
        let mut line = serde_json::json!({
            "shard": shard,
            "key": String::from_utf8_lossy(key),
            "payload": String::from_utf8_lossy(event),
            "epoch": epoch,
            "since": since,
            "time_ns": realtime_ns(),
        })
        .to_string()
        .into_bytes();
        line.push(b'\n');
        if let Err(e) = self.log.append(&line) {
            // Not durable: never return, so the event is not acknowledged.
            eprintln!("shard_node: {}: {e}", self.log.path.display());
            std::process::exit(3);
        }
    }
}

impl ShardHandler for Processor {
    fn shard_acquired(&self, shard: u32, epoch: u64) {
        lock(&self.since).insert(shard, epoch);
        println!("{{\"acquired\":{shard},\"epoch\":{epoch}}}");
    }

    fn shard_released(&self, shard: u32, epoch: u64) {
        lock(&self.since).remove(&shard);
        println!("{{\"released\":{shard},\"epoch\":{epoch}}}");
    }

    fn on_event(&self, shard: u32, key: &[u8], event: Bytes) {
        // The write and sync block; on the multi-threaded runtime let the
        // runtime move this worker's other tasks elsewhere meanwhile.
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            tokio::task::block_in_place(|| self.write_event(shard, key, &event));
        } else {
            self.write_event(shard, key, &event);
        }
    }
}

fn map_json(node: &Node) -> String {
    let m = node.shards().map();
    serde_json::json!({
        "epoch": m.epoch,
        "shards": m.shard_count(),
        "owners": m.counts(),
        "assignment": m.owners,
    })
    .to_string()
}

fn stats_json(node: &Node) -> String {
    let s = node.stats();
    serde_json::json!({
        "routed_events_accepted": s.routed_events_accepted,
        "route_retries": s.route_retries,
        "shard_proposals_committed": s.shard_proposals_committed,
        "shard_proposals_failed": s.shard_proposals_failed,
    })
    .to_string()
}

/// What a `load` command asked for.
struct Load {
    count: u64,
    prefix: String,
    keys: u64,
    key_prefix: String,
    pause: Duration,
}

/// Parses `COUNT PREFIX [KEYS [KEY_PREFIX [PAUSE_MS]]]`.
fn parse_load(rest: &str) -> Option<Load> {
    let mut p = rest.split_whitespace();
    let count = p.next()?.parse::<u64>().ok()?;
    let prefix = p.next()?.to_string();
    let keys = match p.next() {
        Some(k) => k.parse::<u64>().ok().filter(|k| *k > 0)?,
        None => 200,
    };
    let key_prefix = p.next().unwrap_or("k").to_string();
    let pause = match p.next() {
        Some(ms) => Duration::from_millis(ms.parse::<u64>().ok()?),
        None => Duration::ZERO,
    };
    Some(Load {
        count,
        prefix,
        keys,
        key_prefix,
        pause,
    })
}

/// Routes `count` events one after the other, printing each outcome.
fn spawn_load(node: Node, load: Load) {
    let Load {
        count,
        prefix,
        keys,
        key_prefix,
        pause,
    } = load;
    tokio::spawn(async move {
        let tag = json_str(&prefix);
        let (mut acked, mut errors) = (0u64, 0u64);
        for i in 0..count {
            let key = format!("{key_prefix}{}", i % keys);
            let payload = Bytes::from(format!("{prefix}-{i}"));
            match node.shards().route(key.as_bytes(), payload).await {
                Ok(ack) => {
                    acked += 1;
                    println!(
                        "{{\"acked\":{i},\"load\":{tag},\"shard\":{},\"epoch\":{}}}",
                        ack.shard, ack.epoch
                    );
                }
                Err(e) => {
                    errors += 1;
                    println!(
                        "{{\"load_error\":{i},\"load\":{tag},\"error\":{}}}",
                        json_str(&e.to_string())
                    );
                }
            }
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        println!("{{\"load_done\":{count},\"load\":{tag},\"acknowledged\":{acked},\"errors\":{errors}}}");
    });
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("shard_node: {e}");
        std::process::exit(2);
    }
}

async fn run() -> Result<(), String> {
    let args = parse()?;
    // Logs on stderr only when asked for (`RUST_LOG=info`).
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
    let mut config = support::node_config(&args.name, &args.listen, &args.join, &args.secret_file)?;
    if let Some(cluster) = args.cluster {
        config.cluster = cluster;
    }
    if let Some(n) = args.shards {
        config.shards.count = n;
    }
    config.data_dir = Some(args.data_dir.clone());
    std::fs::create_dir_all(&args.data_dir).map_err(|e| format!("{}: {e}", args.data_dir.display()))?;
    let log = EventLog::open(&args.data_dir.join("events.log"), args.sync)?;

    // Refuses a data dir of another cluster or node, or a corrupt log,
    // with an error naming the file.
    let node = Node::start(config).await.map_err(|e| e.to_string())?;
    node.shards().set_handler(Arc::new(Processor {
        log,
        map: node.shards().watch_map(),
        since: Mutex::new(Default::default()),
    }));
    println!(
        "{{\"ready\":{},\"incarnation\":{},\"addr\":{}}}",
        json_str(&node.id().name),
        node.id().incarnation,
        json_str(&node.addr().to_string())
    );

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim();
        let (cmd, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim_start();
        match cmd {
            "map" => println!("{}", map_json(&node)),
            "leader" => match node.shards().leader() {
                Some(l) => println!("{{\"leader\":{}}}", json_str(&l)),
                None => println!("{{\"leader\":null}}"),
            },
            "voters" => println!("{}", serde_json::json!({ "voters": node.shards().voters() })),
            "owner" if !rest.is_empty() => {
                let m = node.shards().map();
                let (shard, owner) = m.owner_of_key(rest.as_bytes());
                println!(
                    "{}",
                    serde_json::json!({"key": rest, "shard": shard, "owner": owner, "epoch": m.epoch})
                );
            }
            "route" if !rest.is_empty() => {
                let (key, text) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                match node
                    .shards()
                    .route(key.as_bytes(), Bytes::from(text.trim_start().to_string()))
                    .await
                {
                    Ok(ack) => println!(
                        "{{\"ack\":{{\"shard\":{},\"node\":{},\"epoch\":{},\"attempts\":{}}}}}",
                        ack.shard,
                        json_str(&ack.node),
                        ack.epoch,
                        ack.attempts
                    ),
                    Err(e) => println!("{{\"error\":{}}}", json_str(&e.to_string())),
                }
            }
            "rebalance" => println!("{{\"rebalanced\":{}}}", node.shards().rebalance().await),
            "stats" => println!("{}", stats_json(&node)),
            "load" => match parse_load(rest) {
                Some(load) => {
                    // Answer before the first event line.
                    println!(
                        "{{\"load_started\":{},\"load\":{}}}",
                        load.count,
                        json_str(&load.prefix)
                    );
                    spawn_load(node.clone(), load);
                }
                None => println!("{{\"error\":\"usage: load COUNT PREFIX [KEYS [KEY_PREFIX [PAUSE_MS]]]\"}}"),
            },
            _ => println!("{{\"error\":\"unknown command\"}}"),
        }
    }
    node.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
