//! The clusters a benchmark runs against: 3 `weft node` child processes,
//! or 3 `nats-server` child processes with routes between them, all on
//! 127.0.0.1.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use tokio::process::{Child, ChildStdin, Command};

use crate::{probe, secret};

/// How long a cluster may take to come up.
const READY_LIMIT: Duration = Duration::from_secs(30);
/// How long a child gets to stop before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// A running local cluster.
pub struct Cluster {
    /// Client addresses, node 1 first.
    pub clients: Vec<SocketAddr>,
    children: Vec<(Child, Option<ChildStdin>)>,
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn check_free(ports: &[(u16, bool)]) -> anyhow::Result<()> {
    for &(port, udp) in ports {
        probe::tcp_port_free(port)
            .map_err(|e| anyhow!("port 127.0.0.1:{port} is not free ({e}); use --base-port"))?;
        if udp {
            probe::udp_port_free(port)
                .map_err(|e| anyhow!("UDP port 127.0.0.1:{port} is not free ({e}); use --base-port"))?;
        }
    }
    Ok(())
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    std::fs::File::create(dir.join(format!("{name}.log"))).context("cannot create a log file")
}

/// Waits until every address accepts TCP connections.
async fn accepting(addrs: &[SocketAddr], deadline: Instant) -> anyhow::Result<()> {
    for a in addrs {
        while tokio::net::TcpStream::connect(a).await.is_err() {
            if Instant::now() > deadline {
                bail!("{a} does not accept connections");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

impl Cluster {
    /// Starts 3 weft nodes: cluster ports `base..base+3`, client ports
    /// `base+10..`, admin ports `base+20..`; waits until all see each
    /// other up.
    pub async fn weft(bin: &Path, base: u16, dir: &Path) -> anyhow::Result<Cluster> {
        let ports: Vec<(u16, bool)> = (0..3u16)
            .flat_map(|i| [(base + i, true), (base + 10 + i, false), (base + 20 + i, false)])
            .collect();
        check_free(&ports)?;
        let secret_file = dir.join("secret");
        secret::write_new(&secret_file, &secret::generate_hex())?;
        let mut cluster = Cluster {
            clients: (0..3).map(|i| local(base + 10 + i)).collect(),
            children: Vec::new(),
        };
        for i in 0..3u16 {
            let name = format!("b{}", i + 1);
            let mut cmd = Command::new(bin);
            cmd.arg("node")
                .args(["--name", &name])
                .args(["--listen", &local(base + i).to_string()])
                .args(["--client", &local(base + 10 + i).to_string()])
                .args(["--http", &local(base + 20 + i).to_string()])
                .arg("--secret-file")
                .arg(&secret_file)
                .arg("--exit-on-stdin-eof")
                .env("RUST_LOG", "warn")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(log_file(dir, &name)?)
                .kill_on_drop(true);
            if i > 0 {
                cmd.args(["--join", &local(base).to_string()]);
            }
            let mut child = cmd
                .spawn()
                .with_context(|| format!("cannot start {}", bin.display()))?;
            let stdin = child.stdin.take();
            cluster.children.push((child, stdin));
        }
        let deadline = Instant::now() + READY_LIMIT;
        for i in 0..3u16 {
            while probe::members_up(local(base + 20 + i)).await.ok() != Some(3) {
                if Instant::now() > deadline {
                    bail!(
                        "the weft cluster did not form within {READY_LIMIT:?} (logs in {})",
                        dir.display()
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        accepting(&cluster.clients, deadline).await?;
        Ok(cluster)
    }

    /// Starts 3 nats-server processes: client ports `base+30..`, route
    /// ports `base+40..`, each routed to the others.
    pub async fn nats_server(bin: &Path, base: u16, dir: &Path) -> anyhow::Result<Cluster> {
        let ports: Vec<(u16, bool)> = (0..3u16)
            .flat_map(|i| [(base + 30 + i, false), (base + 40 + i, false)])
            .collect();
        check_free(&ports)?;
        let routes: Vec<String> = (0..3u16)
            .map(|i| format!("nats-route://127.0.0.1:{}", base + 40 + i))
            .collect();
        let mut cluster = Cluster {
            clients: (0..3).map(|i| local(base + 30 + i)).collect(),
            children: Vec::new(),
        };
        for i in 0..3u16 {
            let name = format!("ns{}", i + 1);
            let conf = dir.join(format!("{name}.conf"));
            let text = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{}\ncluster {{\n  name: bench\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                base + 30 + i,
                base + 40 + i,
                routes.join(", ")
            );
            std::fs::write(&conf, text).context("cannot write a nats-server configuration")?;
            let child = Command::new(bin)
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file(dir, &name)?)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start {}", bin.display()))?;
            cluster.children.push((child, None));
        }
        accepting(&cluster.clients, Instant::now() + READY_LIMIT).await?;
        Ok(cluster)
    }

    /// Stops every process: weft nodes leave when their stdin closes;
    /// anything still running after a grace period is killed.
    pub async fn stop(mut self) {
        for (child, stdin) in self.children.iter_mut() {
            if stdin.take().is_none() {
                let _ = child.start_kill();
            }
        }
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        for (child, _) in self.children.iter_mut() {
            if tokio::time::timeout_at(deadline, child.wait()).await.is_err() {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }
}

impl Cluster {
    /// The process ids of the cluster's servers.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(|(c, _)| c.id()).collect()
    }
}

/// CPU time (user + system) used so far by `pids`, in seconds, from
/// `/proc/<pid>/stat` (Linux; `None` elsewhere or for a gone process).
pub fn cpu_seconds(pids: &[u32]) -> Option<f64> {
    // USER_HZ is 100 on every Linux ABI.
    const TICKS_PER_SEC: f64 = 100.0;
    let mut ticks = 0u64;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may hold spaces): state is
        // the first, utime the 12th, stime the 13th.
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        ticks += f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    }
    Some(ticks as f64 / TICKS_PER_SEC)
}

/// The first `name` on `PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}
