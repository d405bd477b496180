//! Process groups and calls across real OS processes on loopback: the
//! `pg_node` example runs as separate processes, is killed with SIGKILL and
//! restarted. (`cargo test` builds examples before running tests.)

mod common {
    pub mod json_child;
}

use std::io::Write;
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);

fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join("examples").join("pg_node");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p weft --examples` (cargo test builds it)",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    loop {
        let t = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = t.local_addr().expect("addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// One `pg_node` process; killed and reaped on drop.
struct Proc {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<serde_json::Value>,
    got: Vec<String>,
    port: u16,
}

impl Proc {
    fn start(name: &str, port: u16, join: Option<u16>, secret: &std::path::Path, members: usize) -> Proc {
        let mut cmd = Command::new(example());
        cmd.args(["--name", name, "--listen", &format!("127.0.0.1:{port}")])
            .args(["--secret-file", &secret.display().to_string()])
            .args(["--members", &members.to_string()])
            .stderr(Stdio::null());
        if let Some(j) = join {
            cmd.args(["--join", &format!("127.0.0.1:{j}")]);
        }
        let (child, stdin, rx) = common::json_child::spawn(cmd, "pg_node");
        let mut p = Proc {
            child,
            stdin,
            lines: rx,
            got: Vec::new(),
            port,
        };
        p.expect("ready");
        p
    }

    /// The next line holding `key`; "got" lines are kept aside.
    fn expect(&mut self, key: &str) -> serde_json::Value {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {key:?} line within {LIMIT:?}"));
            if let Some(text) = v.get("got").and_then(|t| t.as_str()) {
                self.got.push(text.to_string());
            }
            if v.get(key).is_some() {
                return v;
            }
        }
    }

    fn command(&mut self, line: &str, key: &str) -> serde_json::Value {
        writeln!(self.stdin, "{line}").expect("write command");
        self.stdin.flush().expect("flush");
        self.expect(key)
    }

    /// The next line holding `a` or `b`.
    fn expect_either(&mut self, a: &str, b: &str) -> serde_json::Value {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {a:?} or {b:?} line within {LIMIT:?}"));
            if let Some(text) = v.get("got").and_then(|t| t.as_str()) {
                self.got.push(text.to_string());
            }
            if v.get(a).is_some() || v.get(b).is_some() {
                return v;
            }
        }
    }

    /// Calls `target`'s echo until it answers (a node that just started
    /// may not know the target yet).
    fn call_until_reply(&mut self, target: &str, text: &str) -> serde_json::Value {
        let deadline = Instant::now() + LIMIT;
        loop {
            writeln!(self.stdin, "call {target} {text}").expect("write command");
            self.stdin.flush().expect("flush");
            let v = self.expect_either("reply", "error");
            if v.get("reply").is_some() {
                return v;
            }
            assert!(Instant::now() < deadline, "no reply from {target}: last {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn members(&mut self) -> Vec<String> {
        let v = self.command("members", "members");
        v["members"]
            .as_array()
            .expect("array")
            .iter()
            .map(|p| p.as_str().unwrap_or_default().to_string())
            .collect()
    }

    fn wait_members(&mut self, what: &str, cond: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + LIMIT;
        loop {
            let m = self.members();
            if cond(&m) {
                return m;
            }
            assert!(Instant::now() < deadline, "{what}: last view {m:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_got(&mut self, text: &str, copies: usize) {
        let deadline = Instant::now() + LIMIT;
        while self.got.iter().filter(|g| *g == text).count() < copies {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("{copies} copies of {text:?} not received"));
            if let Some(t) = v.get("got").and_then(|t| t.as_str()) {
                self.got.push(t.to_string());
            }
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn secret_file() -> PathBuf {
    let path = std::env::temp_dir().join(format!("weft-processes-{}.secret", std::process::id()));
    std::fs::write(&path, b"process-test-secret-0123456789").expect("secret");
    path
}

#[test]
fn groups_and_calls_across_processes_with_kill_and_restart() {
    let secret = secret_file();
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let mut n1 = Proc::start("n1", p1, None, &secret, 2);
    let mut n2 = Proc::start("n2", p2, Some(p1), &secret, 2);
    let mut n3 = Proc::start("n3", p3, Some(p1), &secret, 2);
    for n in [&mut n1, &mut n2, &mut n3] {
        n.wait_members("six members", |m| m.len() == 6);
    }

    // Publish on n2 reaches every member on every node.
    let v = n2.command("publish hello", "published");
    assert_eq!(v["published"]["remote"], 2);
    for n in [&mut n1, &mut n2, &mut n3] {
        n.wait_got("hello", 2);
    }

    // A late joiner is backfilled.
    let p4 = free_port();
    let mut n4 = Proc::start("n4", p4, Some(p2), &secret, 1);
    n4.wait_members("backfill", |m| m.len() == 7);

    // Request/reply across processes.
    let v = n1.call_until_reply("n3", "ping");
    assert_eq!(v["reply"], "ping");

    // kill -9 n3: its members disappear everywhere, survivors still get
    // publishes, and a call to it fails with node_down.
    n3.kill9();
    for n in [&mut n1, &mut n2, &mut n4] {
        n.wait_members("n3 purged", |m| {
            m.len() == 5 && m.iter().all(|p| !p.starts_with("<n3#"))
        });
    }
    let v = n1.command("call n3 anyone", "error");
    assert_eq!(v["error"], "node_down");
    n4.command("publish after", "published");
    n1.wait_got("after", 2);
    n2.wait_got("after", 2);
    n4.wait_got("after", 1);

    // Restart n3 (new incarnation) with no members: nothing comes back.
    let mut n3 = Proc::start("n3", p3, Some(p1), &secret, 0);
    let v = n3.call_until_reply("n1", "back");
    assert_eq!(v["reply"], "back");
    for n in [&mut n1, &mut n2, &mut n4, &mut n3] {
        let m = n.wait_members("no resurrection", |m| m.len() == 5);
        assert!(m.iter().all(|p| !p.starts_with("<n3#")), "{m:?}");
    }
    let _ = std::fs::remove_file(&secret);
    let _ = n3.port;
}
