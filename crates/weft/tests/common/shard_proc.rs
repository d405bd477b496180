#![allow(dead_code)]
//! Drives `shard_node` example processes over stdin/stdout JSON (the
//! shard process tests share it).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How to start a process beyond the defaults (loopback, ephemeral port).
#[derive(Default)]
pub struct Launch {
    /// Program and arguments the example runs under (e.g. `ip netns exec
    /// NS`); empty: run it directly.
    pub wrapper: Vec<String>,
    /// `--listen` address; `None`: `127.0.0.1:0`.
    pub listen: Option<String>,
    /// More flags for the example.
    pub args: Vec<String>,
}

/// Bound on every command reply and convergence wait.
pub const LIMIT: Duration = Duration::from_secs(60);
/// Bound on a whole load (10,000 sequential fsynced events).
pub const LOAD_LIMIT: Duration = Duration::from_secs(300);
pub const SHARDS: u32 = 12;

pub fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join("examples").join("shard_node");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p weft --examples` (cargo test builds it)",
        path.display()
    );
    path
}

/// A directory (or file) for one test, removed on drop.
pub struct Temp(PathBuf);

impl Temp {
    pub fn new(test: &str, what: &str) -> Temp {
        let path = std::env::temp_dir().join(format!("weft-shardproc-{}-{test}-{what}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        let _ = std::fs::remove_file(&path);
        Temp(path)
    }

    pub fn secret(test: &str) -> Temp {
        let t = Temp::new(test, "secret");
        std::fs::write(&t.0, b"shard-process-test-secret-0123").expect("secret");
        t
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// A committed map as one node reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapView {
    pub epoch: u64,
    pub owners: BTreeMap<String, u64>,
    pub assignment: Vec<Option<String>>,
}

/// One `shard_node` process; killed and reaped on drop (also on panic).
pub struct Proc {
    pub name: String,
    pub addr: String,
    pub stderr_path: PathBuf,
    pub child: Child,
    pub stdin: ChildStdin,
    pub lines: Receiver<Value>,
    pub replies: VecDeque<Value>,
    /// Acknowledged event indices per load prefix.
    pub acked: BTreeMap<String, BTreeSet<u64>>,
    pub load_errors: Vec<Value>,
    pub load_done: HashMap<String, Value>,
    /// `(shard, epoch)` of every `acquired` line.
    pub acquired: Vec<(u32, u64)>,
    /// Shards held now (acquired and not released since), with the epoch
    /// they were acquired at.
    pub held: BTreeMap<u32, u64>,
}

impl Proc {
    pub fn start(name: &str, data_dir: &Path, join: Option<&str>, secret: &Temp) -> Proc {
        Proc::launch(name, data_dir, join, secret, &Launch::default())
    }

    /// Like [`Proc::start`], with a command prefix, listen address and
    /// extra flags.
    pub fn launch(name: &str, data_dir: &Path, join: Option<&str>, secret: &Temp, how: &Launch) -> Proc {
        // The process's stderr (panics; logs with RUST_LOG) goes to a file
        // in its data dir, shown when a wait on it fails.
        std::fs::create_dir_all(data_dir).expect("data dir");
        let stderr_path = data_dir.join("stderr.log");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_path)
            .expect("stderr file");
        let mut cmd = match how.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(example());
                c
            }
            None => Command::new(example()),
        };
        let listen = how.listen.as_deref().unwrap_or("127.0.0.1:0");
        cmd.args(["--name", name, "--listen", listen])
            .args(&how.args)
            .args(["--secret-file", &secret.path().display().to_string()])
            .args(["--data-dir", &data_dir.display().to_string()])
            .args(["--shards", &SHARDS.to_string()])
            .stderr(stderr);
        if let Some(seed) = join {
            cmd.args(["--join", seed]);
        }
        let (child, stdin, rx) = super::json_child::spawn(cmd, "shard_node");
        let mut p = Proc {
            name: name.to_string(),
            addr: String::new(),
            stderr_path,
            child,
            stdin,
            lines: rx,
            replies: VecDeque::new(),
            acked: BTreeMap::new(),
            load_errors: Vec::new(),
            load_done: HashMap::new(),
            acquired: Vec::new(),
            held: BTreeMap::new(),
        };
        let ready = p.reply("ready", LIMIT);
        p.addr = ready["addr"].as_str().expect("addr").to_string();
        p
    }

    /// Files one output line: events apart, command replies in order.
    pub fn file(&mut self, v: Value) {
        let load = || v["load"].as_str().unwrap_or_default().to_string();
        if v.get("load_done").is_some() {
            self.load_done.insert(load(), v);
        } else if let Some(i) = v["acked"].as_u64() {
            self.acked.entry(load()).or_default().insert(i);
        } else if v.get("load_error").is_some() {
            self.load_errors.push(v);
        } else if let Some(s) = v["acquired"].as_u64() {
            let epoch = v["epoch"].as_u64().unwrap_or(0);
            self.acquired.push((s as u32, epoch));
            self.held.insert(s as u32, epoch);
        } else if let Some(s) = v["released"].as_u64() {
            self.held.remove(&(s as u32));
        } else {
            self.replies.push_back(v);
        }
    }

    /// Reads one line from the process (waiting until `deadline`).
    pub fn pump(&mut self, deadline: Instant, what: &str) {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(v) => self.file(v),
            Err(e) => {
                let log = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                let acked: BTreeMap<&String, usize> = self.acked.iter().map(|(l, s)| (l, s.len())).collect();
                panic!(
                    "{}: no {what} ({e:?}); acked {acked:?}, load errors {:?}; stderr tail:\n{}",
                    self.name,
                    &self.load_errors[..self.load_errors.len().min(5)],
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            }
        }
    }

    /// Files every line already printed, without waiting.
    pub fn drain(&mut self) {
        loop {
            match self.lines.try_recv() {
                Ok(v) => self.file(v),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            }
        }
    }

    /// The next command reply, which must hold `key`.
    pub fn reply(&mut self, key: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = self.replies.pop_front() {
                assert!(
                    v.get(key).is_some(),
                    "{}: expected a {key:?} reply, got {v}",
                    self.name
                );
                return v;
            }
            self.pump(deadline, key);
        }
    }

    pub fn command(&mut self, line: &str, key: &str) -> Value {
        writeln!(self.stdin, "{line}").expect("write command");
        self.stdin.flush().expect("flush");
        self.reply(key, LIMIT)
    }

    pub fn map(&mut self) -> MapView {
        let v = self.command("map", "epoch");
        MapView {
            epoch: v["epoch"].as_u64().expect("epoch"),
            owners: serde_json::from_value(v["owners"].clone()).expect("owners"),
            assignment: serde_json::from_value(v["assignment"].clone()).expect("assignment"),
        }
    }

    pub fn acked_count(&self, load: &str) -> usize {
        self.acked.get(load).map_or(0, BTreeSet::len)
    }

    /// Waits for the summary line of load `prefix`.
    pub fn wait_load(&mut self, prefix: &str) -> Value {
        let deadline = Instant::now() + LOAD_LIMIT;
        loop {
            if let Some(v) = self.load_done.get(prefix) {
                return v.clone();
            }
            self.pump(deadline, &format!("end of load {prefix}"));
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls every node's map until all report the same epoch with exactly
/// `owners` owning nodes and `accept` holds; returns that map.
pub fn converge(procs: &mut [&mut Proc], owners: usize, accept: impl Fn(&MapView) -> bool) -> MapView {
    let deadline = Instant::now() + LIMIT;
    loop {
        let maps: Vec<MapView> = procs.iter_mut().map(|p| p.map()).collect();
        let first = &maps[0];
        if first.epoch > 0 && first.owners.len() == owners && maps.iter().all(|m| m == first) && accept(first)
        {
            return first.clone();
        }
        assert!(
            Instant::now() < deadline,
            "maps did not converge to {owners} owners within {LIMIT:?}: {maps:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
