//! `weft bench nats`: the same load against a 3-node weft cluster and a
//! 3-node nats-server cluster, side by side.
//!
//! Clusters are child processes on 127.0.0.1 (weft: this executable's
//! `weft node`; nats-server: the `nats-server` binary). Throughput is
//! measured with one system alone on the machine: weft before nats-server
//! starts, nats-server after weft stopped. Request/reply latency is
//! measured while both are up (both idle but for the requests), in short
//! slices taken in turn, so that the machine's noise, which changes from
//! second to second on a shared host, falls on both alike. With `--urls`
//! an already running weft cluster is measured instead.
//!
//! Measurements (publisher on node 1):
//! - `pubsub_16b`, `pubsub_1kib`: one subscriber on node 2, raw protocol
//!   driver ([`driver`]);
//! - `fanout_16b`: subscribers on nodes 2 and 3;
//! - request/reply: async-nats requester on node 1, responder on node 2
//!   ([`rr`]).

mod driver;
mod procs;
mod report;
mod rr;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, anyhow};
use indicatif::{ProgressBar, ProgressStyle};

use crate::addr;
use crate::cli::BenchNatsArgs;
use crate::error::{Failure, OrFail, Result};
use procs::Cluster;
use report::{Report, SystemResult};

/// The throughput measurements: (key, payload bytes, subscriber nodes).
const THROUGHPUT: &[(&str, usize, &[usize])] = &[
    ("pubsub_16b", 16, &[1]),
    ("pubsub_1kib", 1024, &[1]),
    ("fanout_16b", 16, &[1, 2]),
];

/// Runs `weft bench nats`.
pub async fn run_nats(args: BenchNatsArgs) -> Result<()> {
    if !(0.2..=60.0).contains(&args.duration) {
        return Err(Failure::config(anyhow!("--duration must be 0.2 to 60 seconds")));
    }
    let nats_bin = if args.nats_server {
        let bin = args
            .nats_server_bin
            .clone()
            .or_else(|| procs::find_in_path("nats-server"))
            .ok_or_else(|| {
                anyhow!("--nats-server: no nats-server on PATH (apt-get install nats-server, or --nats-server-bin)")
            })
            .or_config()?;
        Some(bin)
    } else {
        None
    };
    let external = if args.urls.is_empty() {
        None
    } else {
        if args.urls.len() != 3 {
            return Err(Failure::config(anyhow!("--urls takes exactly 3 client URLs")));
        }
        Some(
            args.urls
                .iter()
                .map(|u| addr::resolve("client URL", u.trim_start_matches("nats://")))
                .collect::<anyhow::Result<Vec<SocketAddr>>>()
                .or_config()?,
        )
    };
    let dir = tempfile::Builder::new()
        .prefix("weft-bench-")
        .tempdir()
        .context("cannot create a temporary directory")
        .or_runtime()?;
    let systems = 1 + usize::from(nats_bin.is_some());
    let bar = ProgressBar::new((systems * (THROUGHPUT.len() + 1)) as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );

    let mut report = Report::new(&args);
    // Throughput: each system alone on the machine (weft before
    // nats-server starts, nats-server after weft stopped). Request/reply:
    // both up, measured in alternating slices (see `rr`).
    let weft = match external {
        Some(addrs) => System {
            name: "weft",
            clients: addrs,
            cluster: None,
        },
        None => {
            let bin = match &args.bin {
                Some(b) => b.clone(),
                None => std::env::current_exe()
                    .context("cannot find the weft executable; pass --bin")
                    .or_config()?,
            };
            bar.set_message("starting 3 weft nodes");
            let cluster = Cluster::weft(&bin, args.base_port, dir.path())
                .await
                .or_runtime()?;
            System {
                name: "weft",
                clients: cluster.clients.clone(),
                cluster: Some(cluster),
            }
        }
    };
    let weft_throughput = measure_throughput(&weft, &args, &bar).await.or_runtime()?;
    let nats = match nats_bin {
        Some(bin) => {
            bar.set_message("starting 3 nats-server nodes");
            let cluster = Cluster::nats_server(&bin, args.base_port, dir.path())
                .await
                .or_runtime()?;
            Some(System {
                name: "nats-server",
                clients: cluster.clients.clone(),
                cluster: Some(cluster),
            })
        }
        None => None,
    };
    let systems: Vec<&System> = std::iter::once(&weft).chain(nats.as_ref()).collect();
    let mut latencies = measure_request_reply(&systems, &args, &bar)
        .await
        .or_runtime()?
        .into_iter();
    let weft_clients = weft.clients.clone();
    weft.stop().await;
    report.systems.push(SystemResult {
        name: "weft".into(),
        clients: urls(&weft_clients),
        throughput: weft_throughput,
        request_reply: latencies
            .next()
            .ok_or_else(|| anyhow!("no weft latency"))
            .or_runtime()?,
    });
    if let Some(nats) = nats {
        let throughput = measure_throughput(&nats, &args, &bar).await.or_runtime()?;
        let clients = nats.clients.clone();
        nats.stop().await;
        report.systems.push(SystemResult {
            name: "nats-server".into(),
            clients: urls(&clients),
            throughput,
            request_reply: latencies
                .next()
                .ok_or_else(|| anyhow!("no nats-server latency"))
                .or_runtime()?,
        });
    }
    bar.finish_and_clear();
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// A cluster under measurement (`cluster` is `None` for `--urls`).
struct System {
    name: &'static str,
    clients: Vec<SocketAddr>,
    cluster: Option<Cluster>,
}

impl System {
    fn pids(&self) -> Vec<u32> {
        self.cluster.as_ref().map(Cluster::pids).unwrap_or_default()
    }

    async fn stop(self) {
        if let Some(c) = self.cluster {
            c.stop().await;
        }
    }
}

fn urls(clients: &[SocketAddr]) -> Vec<String> {
    clients.iter().map(|a| format!("nats://{a}")).collect()
}

/// Slices each system's request/reply measurement is cut into; the
/// systems take turns slice by slice.
const RR_SLICES: u32 = 10;

async fn measure_throughput(
    sys: &System,
    args: &BenchNatsArgs,
    bar: &ProgressBar,
) -> anyhow::Result<BTreeMap<String, driver::Outcome>> {
    let name = sys.name;
    let clients = &sys.clients;
    let pids = sys.pids();
    let run_id = std::process::id();
    let mut throughput = BTreeMap::new();
    for (key, size, subs) in THROUGHPUT {
        bar.set_message(format!("{name}: {key}"));
        // Bound the bytes in flight as well as the messages.
        let record = *size as u64 + 48;
        let plan = driver::Plan {
            publisher: clients[0],
            subscribers: subs.iter().map(|&i| clients[i]).collect(),
            size: *size,
            duration: Duration::from_secs_f64(args.duration),
            window: args.window.min((args.window_bytes / record).max(1)),
            subject: format!("bench.{run_id}.{key}"),
        };
        let cpu_before = procs::cpu_seconds(&pids);
        let mut outcome = driver::run(&plan, |n| bar.set_message(format!("{name}: {key}: {n} received")))
            .await
            .with_context(|| format!("{name}: {key}"))?;
        if let (Some(a), Some(b)) = (cpu_before, procs::cpu_seconds(&pids))
            && !pids.is_empty()
        {
            // Includes the warm-up and the drain: a slight overestimate,
            // alike for both systems.
            outcome.server_cpu_us_per_msg = Some((b - a) * 1e6 / outcome.sent.max(1) as f64);
        }
        throughput.insert(key.to_string(), outcome);
        bar.inc(1);
    }
    Ok(throughput)
}

/// Request/reply latency of every system in `systems` (in that order),
/// measured in [`RR_SLICES`] alternating slices of `--duration /
/// RR_SLICES` each.
async fn measure_request_reply(
    systems: &[&System],
    args: &BenchNatsArgs,
    bar: &ProgressBar,
) -> anyhow::Result<Vec<rr::Latency>> {
    let run_id = std::process::id();
    let mut sessions = Vec::new();
    for sys in systems {
        bar.set_message(format!("{}: request/reply: connecting", sys.name));
        let session = rr::Session::open(
            &sys.clients[0].to_string(),
            &sys.clients[1].to_string(),
            &format!("bench.{run_id}.rr"),
        )
        .await
        .with_context(|| format!("{}: request/reply", sys.name))?;
        sessions.push(session);
    }
    let slice = Duration::from_secs_f64(args.duration) / RR_SLICES;
    for _ in 0..RR_SLICES {
        for (sys, session) in systems.iter().zip(sessions.iter_mut()) {
            let name = sys.name;
            session
                .measure(slice, |n| bar.set_message(format!("{name}: request/reply: {n}")))
                .await
                .with_context(|| format!("{name}: request/reply"))?;
        }
    }
    bar.inc(systems.len() as u64);
    Ok(sessions.iter().map(rr::Session::latency).collect())
}
