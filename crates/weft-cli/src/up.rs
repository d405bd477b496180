//! `weft up`: a local cluster of N `weft node` child processes on
//! 127.0.0.1, stopped together on SIGINT or SIGTERM.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::process::{Child, ChildStdin, Command};
use tokio::task::JoinHandle;

use crate::cli::UpArgs;
use crate::error::{Failure, OrFail, Result};
use crate::probe;
use crate::secret;
use crate::signals::StopSignals;

/// How long children get to stop after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long `weft up` waits for the cluster to converge before saying so.
const READY_LIMIT: Duration = Duration::from_secs(30);

/// The ports of one node.
#[derive(Debug, Clone)]
struct Plan {
    name: String,
    cluster: u16,
    http: u16,
    client: u16,
    /// Shard map voters: 3, or every node of a smaller cluster.
    voters: u16,
}

impl Plan {
    fn cluster_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.cluster))
    }
    fn http_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.http))
    }
    fn client_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.client))
    }
}

/// Node `i` (0-based) uses `base + i` of each range.
fn plan(args: &UpArgs) -> anyhow::Result<Vec<Plan>> {
    let n = args.nodes;
    let range = |what: &str, base: u32| -> anyhow::Result<u16> {
        let last = base + u32::from(n) - 1;
        if base == 0 || last > u32::from(u16::MAX) {
            bail!("{what} ports {base}..={last} are out of range (1..=65535)");
        }
        Ok(base as u16)
    };
    let cluster = range("cluster", u32::from(args.base_port))?;
    let http = range(
        "admin HTTP",
        args.http_base_port.map_or(u32::from(cluster) + 1000, u32::from),
    )?;
    let client = range(
        "client",
        args.client_base_port.map_or(u32::from(cluster) + 2000, u32::from),
    )?;
    let plans: Vec<Plan> = (0..n)
        .map(|i| Plan {
            name: format!("n{}", i + 1),
            cluster: cluster + i,
            http: http + i,
            client: client + i,
            voters: n.min(3),
        })
        .collect();
    let mut seen = BTreeSet::new();
    for p in &plans {
        for port in [p.cluster, p.http, p.client] {
            if !seen.insert(port) {
                bail!("port {port} is used twice: the cluster, admin and client port ranges overlap");
            }
        }
    }
    Ok(plans)
}

/// Fails with the first port that cannot be bound on 127.0.0.1.
fn check_ports(plans: &[Plan]) -> anyhow::Result<()> {
    for p in plans {
        let checks = [
            ("cluster TCP", p.cluster, probe::tcp_port_free(p.cluster)),
            ("cluster UDP", p.cluster, probe::udp_port_free(p.cluster)),
            ("admin HTTP", p.http, probe::tcp_port_free(p.http)),
            ("client", p.client, probe::tcp_port_free(p.client)),
        ];
        for (what, port, res) in checks {
            res.map_err(|e| {
                anyhow!(
                    "{what} port 127.0.0.1:{port} of {} is not free ({e}); choose other ports with --base-port",
                    p.name
                )
            })?;
        }
    }
    Ok(())
}

/// A running child node.
struct Running {
    name: String,
    child: Child,
    /// Held open while the child runs (taken out of `child`, whose
    /// `wait` would close it).
    _stdin: Option<ChildStdin>,
}

fn spawn(
    bin: &Path,
    dir: &Path,
    secret_file: &Path,
    p: &Plan,
    seed: Option<SocketAddr>,
) -> anyhow::Result<Running> {
    let mut cmd = Command::new(bin);
    cmd.arg("node")
        .arg("--name")
        .arg(&p.name)
        .arg("--listen")
        .arg(p.cluster_addr().to_string())
        .arg("--secret-file")
        .arg(secret_file)
        .arg("--http")
        .arg(p.http_addr().to_string())
        .arg("--client")
        .arg(p.client_addr().to_string())
        .arg("--data-dir")
        .arg(dir.join(&p.name))
        .arg("--exit-on-stdin-eof")
        // Smaller clusters than the default 3 voters still get a shard map.
        .arg("--shard-voters")
        .arg(p.voters.to_string());
    if let Some(seed) = seed {
        cmd.arg("--join").arg(seed.to_string());
    }
    // We keep the write end of the child's stdin open: if `weft up` dies
    // without stopping it, stdin closes and the node leaves.
    cmd.stdin(Stdio::piped()).kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {} for node {}", bin.display(), p.name))?;
    let stdin = child.stdin.take();
    Ok(Running {
        name: p.name.clone(),
        child,
        _stdin: stdin,
    })
}

/// Sends SIGTERM to a process (with the `kill` utility: no unsafe code,
/// no extra dependency).
async fn sigterm(pid: u32) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .context("cannot run kill")?;
    if !status.success() {
        bail!("kill -TERM {pid} failed: {status}");
    }
    Ok(())
}

/// Stops every child: SIGTERM, then SIGKILL after [`STOP_GRACE`]. Returns
/// each child's exit status (None if it could not be collected).
async fn stop_all(children: &mut [Running]) -> Vec<(String, Option<ExitStatus>)> {
    for r in children.iter_mut() {
        if let Ok(None) = r.child.try_wait()
            && let Some(pid) = r.child.id()
            && let Err(e) = sigterm(pid).await
        {
            eprintln!("weft up: {}: {e:#}; killing it", r.name);
            let _ = r.child.start_kill();
        }
    }
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    let mut out = Vec::new();
    for r in children.iter_mut() {
        let status = match tokio::time::timeout_at(deadline, r.child.wait()).await {
            Ok(res) => res.ok(),
            Err(_) => {
                eprintln!(
                    "weft up: {} did not stop within {STOP_GRACE:?}; killing it",
                    r.name
                );
                let _ = r.child.start_kill();
                r.child.wait().await.ok()
            }
        };
        out.push((r.name.clone(), status));
    }
    out
}

/// Polls every node's cluster view until each reports all nodes up, then
/// prints that the cluster is ready.
fn watch_ready(plans: Vec<Plan>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let want = plans.len();
        let deadline = tokio::time::Instant::now() + READY_LIMIT;
        loop {
            let mut all = true;
            for p in &plans {
                if probe::members_up(p.http_addr()).await.ok() != Some(want) {
                    all = false;
                    break;
                }
            }
            if all {
                println!("cluster ready: {want} of {want} nodes up. Press Ctrl-C to stop.");
                return;
            }
            if tokio::time::Instant::now() > deadline {
                eprintln!(
                    "weft up: the cluster has not converged after {READY_LIMIT:?}; still running (see the admin URLs)"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Runs `weft up` to completion.
pub async fn run(args: UpArgs) -> Result<()> {
    let mut signals = StopSignals::install(false).or_runtime()?;
    let plans = plan(&args).or_config()?;
    check_ports(&plans).or_config()?;
    let bin = match &args.bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()
            .context("cannot find the weft executable; pass --bin")
            .or_config()?,
    };
    if !bin.is_file() {
        return Err(Failure::config(anyhow!("--bin {}: no such file", bin.display())));
    }
    let dir = tempfile::Builder::new()
        .prefix("weft-up-")
        .tempdir()
        .context("cannot create a temporary directory")
        .or_runtime()?;
    let secret_file: PathBuf = dir.path().join("secret");
    secret::write_new(&secret_file, &secret::generate_hex()).or_runtime()?;

    println!(
        "weft up: {} nodes on 127.0.0.1 (secret {}, data under {})",
        plans.len(),
        secret_file.display(),
        dir.path().display()
    );
    for p in &plans {
        println!(
            "  {:<4} cluster {}  client nats://{}  admin http://{}",
            p.name,
            p.cluster_addr(),
            p.client_addr(),
            p.http_addr()
        );
    }

    let seed = plans.first().map(Plan::cluster_addr);
    let mut children: Vec<Running> = Vec::with_capacity(plans.len());
    for (i, p) in plans.iter().enumerate() {
        match spawn(
            &bin,
            dir.path(),
            &secret_file,
            p,
            if i == 0 { None } else { seed },
        ) {
            Ok(r) => children.push(r),
            Err(e) => {
                stop_all(&mut children).await;
                return Err(Failure::runtime(e));
            }
        }
    }
    let ready = watch_ready(plans.clone());

    let unexpected = {
        let mut waits: FuturesUnordered<_> = children
            .iter_mut()
            .map(|r| async { (r.name.clone(), r.child.wait().await) })
            .collect();
        tokio::select! {
            reason = signals.wait() => {
                println!("weft up: {reason}: stopping {} nodes", plans.len());
                None
            }
            Some((name, status)) = waits.next() => Some((name, status)),
        }
    };
    ready.abort();

    let statuses = stop_all(&mut children).await;
    match unexpected {
        Some((name, status)) => {
            let how = match status {
                Ok(s) => s.to_string(),
                Err(e) => format!("(status unknown: {e})"),
            };
            println!("weft up: stopped the other nodes");
            Err(Failure::runtime(anyhow!(
                "node {name} exited unexpectedly ({how})"
            )))
        }
        None => {
            let failed: Vec<String> = statuses
                .iter()
                .filter(|(_, s)| !s.is_some_and(|s| s.success()))
                .map(|(n, s)| match s {
                    Some(s) => format!("{n} ({s})"),
                    None => format!("{n} (status unknown)"),
                })
                .collect();
            if failed.is_empty() {
                println!("weft up: all nodes stopped");
                Ok(())
            } else {
                Err(Failure::runtime(anyhow!(
                    "nodes did not stop cleanly: {}",
                    failed.join(", ")
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(nodes: u16, base: u16) -> UpArgs {
        UpArgs {
            nodes,
            base_port: base,
            http_base_port: None,
            client_base_port: None,
            bin: None,
        }
    }

    #[test]
    fn ports_follow_the_bases() {
        let p = plan(&args(3, 7420)).unwrap();
        assert_eq!(p[2].name, "n3");
        assert_eq!((p[2].cluster, p[2].http, p[2].client), (7422, 8422, 9422));
    }

    #[test]
    fn bad_ranges_are_refused() {
        assert!(plan(&args(3, 65000)).is_err());
        let mut a = args(3, 7420);
        a.http_base_port = Some(7421);
        assert!(plan(&args(3, 0)).is_err());
        assert!(plan(&a).unwrap_err().to_string().contains("overlap"));
    }
}
