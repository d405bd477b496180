//! Helpers for tests that run the real `weft` binary on loopback.
#![allow(dead_code)]

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngExt;

/// Safety bound for every wait (against hangs, not a speed assertion).
pub const LIMIT: Duration = Duration::from_secs(30);
/// The secret of the test clusters.
pub const SECRET: &str = "test-secret-0123456789abcdef";

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_weft"))
}

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port free for TCP and UDP on 127.0.0.1, chosen at random outside
/// the kernel's ephemeral range (so outgoing connections do not take it)
/// and never handed out twice by this test process.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// The first of `n` consecutive ports free for TCP and UDP on 127.0.0.1.
pub fn free_ports(n: u16) -> u16 {
    let mut rng = rand::rng();
    for _ in 0..10_000 {
        let base: u16 = rng.random_range(20_000..32_000);
        let mut guard = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
        let taken = guard.get_or_insert_with(HashSet::new);
        let ok = (base..base + n).all(|p| !taken.contains(&p) && port_is_free(p));
        if ok {
            taken.extend(base..base + n);
            return base;
        }
    }
    panic!("no free ports found");
}

/// Whether TCP and UDP `port` can both be bound on 127.0.0.1 now.
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
        && UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&addr(port), Duration::from_millis(500)).is_ok()
}

/// 127.0.0.1:`port`.
pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// A child process killed (SIGKILL) and reaped when dropped, even on
/// panic. Its stderr goes to a log file, printed if the test fails.
pub struct Proc {
    /// Label for messages.
    pub name: String,
    /// The process.
    pub child: Child,
    log: Option<PathBuf>,
    /// Stop politely (SIGTERM, then SIGKILL after 10 s) when dropped.
    pub polite: bool,
}

impl Proc {
    /// Spawns `cmd` with stdin/stdout null and stderr into `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Proc {
        let file = std::fs::File::create(log).expect("log file");
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(file);
        let child = cmd.spawn().expect("spawn weft");
        Proc {
            name: name.to_string(),
            child,
            log: Some(log.to_path_buf()),
            polite: false,
        }
    }

    /// Wraps an already spawned child whose stderr goes to `log`, if any.
    pub fn from_child(name: &str, child: Child, log: Option<&Path>) -> Proc {
        Proc {
            name: name.to_string(),
            child,
            log: log.map(Path::to_path_buf),
            polite: false,
        }
    }

    /// Sends a signal by name (`TERM`, `INT`) with the `kill` utility.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {} failed", self.name);
    }

    /// Waits for the process to exit; panics after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {limit:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The stderr log so far.
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if self.polite {
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(self.child.id().to_string())
                    .status();
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = self.child.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("----- stderr of {} -----\n{}", self.name, self.log());
        }
    }
}

/// A `weft node` to start.
pub struct NodeSpec<'a> {
    /// Node name.
    pub name: &'a str,
    /// Cluster port.
    pub port: u16,
    /// Admin HTTP port.
    pub http: u16,
    /// Seed cluster port, if any.
    pub join: Option<u16>,
    /// Secret file.
    pub secret_file: &'a Path,
    /// Data directory.
    pub data_dir: &'a Path,
}

impl NodeSpec<'_> {
    /// The command line of this node.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(bin());
        cmd.env("RUST_LOG", "info")
            .arg("node")
            .arg("--name")
            .arg(self.name)
            .arg("--listen")
            .arg(addr(self.port).to_string())
            .arg("--http")
            .arg(addr(self.http).to_string())
            .arg("--secret-file")
            .arg(self.secret_file)
            .arg("--data-dir")
            .arg(self.data_dir);
        if let Some(seed) = self.join {
            cmd.arg("--join").arg(addr(seed).to_string());
        }
        cmd
    }

    /// Starts the node; its log goes next to its data directory.
    pub fn start(&self) -> Proc {
        self.start_with(&[])
    }

    /// Starts the node with extra flags.
    pub fn start_with(&self, extra: &[&str]) -> Proc {
        let log = self.data_dir.with_extension("log");
        let log = unique(&log);
        let mut cmd = self.command();
        cmd.args(extra);
        Proc::spawn(self.name, cmd, &log)
    }
}

/// `path`, or `path.N` if it exists.
fn unique(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    let mut i = 1;
    while p.exists() {
        p = PathBuf::from(format!("{}.{i}", path.display()));
        i += 1;
    }
    p
}

/// Writes a secret file and returns its path.
pub fn secret_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{secret}\n")).expect("write secret");
    p
}

/// `GET path` over HTTP/1.0 on 127.0.0.1:`port`: status and body, or
/// None if the server cannot be reached.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_request(port, "GET", path)
}

/// `METHOD path` (no body) over HTTP/1.0 on 127.0.0.1:`port`.
pub fn http_request(port: u16, method: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr(port), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// The node's `/api/v1/cluster` view, if it answers.
pub fn cluster(http: u16) -> Option<serde_json::Value> {
    let (status, body) = http_get(http, "/api/v1/cluster")?;
    (status == 200).then(|| serde_json::from_str(&body).ok())?
}

/// `(state, incarnation)` of member `name` in the view of the node at
/// admin port `http`.
pub fn member(http: u16, name: &str) -> Option<(String, u64)> {
    let view = cluster(http)?;
    view["members"].as_array()?.iter().find_map(|m| {
        (m["name"] == name).then(|| Some((m["state"].as_str()?.to_string(), m["incarnation"].as_u64()?)))?
    })
}

/// The names of the members of the view at `http`.
pub fn member_names(http: u16) -> Vec<String> {
    cluster(http)
        .and_then(|v| {
            v["members"].as_array().map(|ms| {
                ms.iter()
                    .filter_map(|m| m["name"].as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// Polls `cond` every 100 ms; panics with `what` after [`LIMIT`].
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether every admin port in `https` sees every name in `names` in `state`.
pub fn all_see(https: &[u16], names: &[&str], state: &str) -> bool {
    https.iter().all(|&h| {
        names
            .iter()
            .all(|n| member(h, n).is_some_and(|(s, _)| s == state))
    })
}

/// The value of the sample `series` (name with labels, exactly as
/// rendered) in a Prometheus text body.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

/// Runs `weft ARGS` that is expected to fail at start-up: returns the exit
/// status and stderr (panics if it keeps running past [`LIMIT`]).
pub fn run_to_exit(args: &[&str], dir: &Path) -> (ExitStatus, String) {
    let log = unique(&dir.join("run.log"));
    let mut cmd = Command::new(bin());
    cmd.args(args).env("RUST_LOG", "warn");
    let mut p = Proc::spawn("weft", cmd, &log);
    let status = p.wait_exit(LIMIT);
    (status, p.log())
}

/// Three `weft node`s (`n1`, `n2`, `n3`) on free loopback ports, joining
/// through `n1`, sharing one secret, each with a data dir under `dir`.
pub struct Trio {
    /// Node names.
    pub names: [&'static str; 3],
    /// Cluster ports, by node.
    pub ports: Vec<u16>,
    /// Admin HTTP ports, by node.
    pub https: Vec<u16>,
    secret: PathBuf,
    data: Vec<PathBuf>,
}

impl Trio {
    /// Picks ports and writes the secret; starts nothing.
    pub fn new(dir: &Path) -> Trio {
        let names = ["n1", "n2", "n3"];
        Trio {
            names,
            ports: names.iter().map(|_| free_port()).collect(),
            https: names.iter().map(|_| free_port()).collect(),
            secret: secret_file(dir, "secret", SECRET),
            data: names.iter().map(|n| dir.join(n)).collect(),
        }
    }

    /// Node `i` (0-based).
    pub fn spec(&self, i: usize) -> NodeSpec<'_> {
        NodeSpec {
            name: self.names[i],
            port: self.ports[i],
            http: self.https[i],
            join: (i > 0).then_some(self.ports[0]),
            secret_file: &self.secret,
            data_dir: &self.data[i],
        }
    }

    /// Starts the three nodes and waits until every node sees every node
    /// up. The processes stop when the returned guards drop.
    pub fn start(&self) -> Vec<Proc> {
        let procs: Vec<Proc> = (0..3).map(|i| self.spec(i).start()).collect();
        wait_for("all three nodes up in every view", || {
            all_see(&self.https, &self.names, "up")
        });
        procs
    }
}
