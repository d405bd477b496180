//! The live stream relay across real OS processes on loopback: the
//! `relay_node` example runs as separate processes (origin, standby origin,
//! edge), is killed with SIGKILL, and its viewers' events are checked.
//! (`cargo test` builds examples before running tests.)
//!
//! Every wait is bounded by [`LIMIT`] (a safety net, not a timing
//! assertion); frame counts are only assumed where the relay guarantees
//! them.

mod common {
    pub mod json_child;
}

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(30);
/// The standby origin numbers its frames from here, so a viewer can tell
/// which origin a frame came from.
const STANDBY_BASE: u64 = 1_000_000;
/// The example's keyframe interval (its default `--gop`).
const GOP: u64 = 10;

fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join("examples").join("relay_node");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p weft --examples` (cargo test builds it)",
        path.display()
    );
    path
}

/// A secret file for one test, removed on drop.
struct SecretFile(PathBuf);

impl SecretFile {
    fn new(test: &str) -> SecretFile {
        let path = std::env::temp_dir().join(format!("weft-relay-{}-{test}.secret", std::process::id()));
        std::fs::write(&path, b"relay-process-test-secret-0123").expect("secret");
        SecretFile(path)
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An event printed by a viewer.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ev {
    Frame { seq: u64, keyframe: bool },
    Skipped(u64),
    Discontinuity(String),
    End(String),
}

fn parse_event(v: &Value) -> Ev {
    if let Some(seq) = v["frame"].as_u64() {
        Ev::Frame {
            seq,
            keyframe: v["keyframe"].as_bool().expect("keyframe flag"),
        }
    } else if let Some(n) = v["skipped"].as_u64() {
        Ev::Skipped(n)
    } else if let Some(o) = v["discontinuity"].as_str() {
        Ev::Discontinuity(o.to_string())
    } else if let Some(r) = v["end"].as_str() {
        Ev::End(r.to_string())
    } else {
        panic!("unknown viewer line {v}")
    }
}

/// What the relay promises a viewer about the frames it sees.
#[derive(Default)]
struct ViewerCheck {
    /// Last sequence number since the start or the last discontinuity.
    last: Option<u64>,
    /// A `skipped` line came: the next frame must be a keyframe.
    skipping: bool,
    ended: bool,
}

impl ViewerCheck {
    fn check(&mut self, viewer: u64, ev: &Ev) {
        assert!(!self.ended, "viewer {viewer}: {ev:?} after its end");
        match ev {
            Ev::Frame { seq, keyframe } => {
                match self.last {
                    // The first frame (from an origin) starts a group of
                    // pictures.
                    None => assert!(*keyframe, "viewer {viewer} starts at {seq}, not a keyframe"),
                    Some(last) => {
                        assert!(
                            *seq > last,
                            "viewer {viewer}: {seq} after {last} (duplicate or reorder)"
                        );
                        // A gap only ever skips to a keyframe: never a
                        // partial group of pictures.
                        assert!(
                            *seq == last + 1 || *keyframe,
                            "viewer {viewer}: gap {last} -> {seq} into a partial GOP"
                        );
                    }
                }
                if self.skipping {
                    assert!(
                        *keyframe,
                        "viewer {viewer}: resumed after a skip at {seq}, not a keyframe"
                    );
                    self.skipping = false;
                }
                self.last = Some(*seq);
            }
            Ev::Skipped(_) => self.skipping = true,
            Ev::Discontinuity(_) => {
                self.last = None;
                self.skipping = false;
            }
            Ev::End(_) => self.ended = true,
        }
    }
}

/// One `relay_node` process; killed and reaped on drop.
struct Proc {
    name: String,
    addr: String,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<Value>,
    /// Command replies not yet taken.
    replies: VecDeque<Value>,
    /// Viewer events not yet taken, by viewer.
    events: HashMap<u64, VecDeque<Value>>,
    checks: HashMap<u64, ViewerCheck>,
}

impl Proc {
    fn start(name: &str, join: Option<&Proc>, secret: &SecretFile, extra: &[&str]) -> Proc {
        let mut cmd = Command::new(example());
        cmd.args(["--name", name, "--listen", "127.0.0.1:0"])
            .args(["--secret-file", &secret.0.display().to_string()])
            .args(extra)
            .stderr(Stdio::null());
        if let Some(seed) = join {
            cmd.args(["--join", &seed.addr]);
        }
        let (child, stdin, rx) = common::json_child::spawn(cmd, "relay_node");
        let mut p = Proc {
            name: name.to_string(),
            addr: String::new(),
            child,
            stdin,
            lines: rx,
            replies: VecDeque::new(),
            events: HashMap::new(),
            checks: HashMap::new(),
        };
        let ready = p.reply("ready");
        p.addr = ready["addr"].as_str().expect("addr").to_string();
        p
    }

    /// Reads one line from the process and files it.
    fn pump(&mut self, deadline: Instant, what: &str) {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = self
            .lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("{}: no {what} within {LIMIT:?}", self.name));
        let is_event = ["frame", "skipped", "discontinuity", "end"]
            .iter()
            .any(|k| v.get(k).is_some());
        match v["viewer"].as_u64() {
            Some(viewer) if is_event => self.events.entry(viewer).or_default().push_back(v),
            _ => self.replies.push_back(v),
        }
    }

    /// The next command reply, which must hold `key`.
    fn reply(&mut self, key: &str) -> Value {
        let deadline = Instant::now() + LIMIT;
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

    fn command(&mut self, line: &str, key: &str) -> Value {
        writeln!(self.stdin, "{line}").expect("write command");
        self.stdin.flush().expect("flush");
        self.reply(key)
    }

    fn subscribe(&mut self, key: &str) -> u64 {
        let v = self.command(&format!("subscribe {key}"), "subscribed");
        let viewer = v["viewer"].as_u64().expect("viewer number");
        self.checks.insert(viewer, ViewerCheck::default());
        viewer
    }

    fn locate(&mut self, key: &str) -> Option<String> {
        let v = self.command(&format!("locate {key}"), "locate");
        v["locate"].as_str().map(str::to_string)
    }

    fn stats(&mut self) -> Value {
        self.command("stats", "stream_pulls")
    }

    /// This node's view of stream `key` (`None` if it knows nothing of it).
    fn stream(&mut self, key: &str) -> Option<Value> {
        let v = self.command("streams", "streams");
        v["streams"]
            .as_array()
            .expect("streams array")
            .iter()
            .find(|s| s["key"] == key)
            .cloned()
    }

    fn origins(&mut self, key: &str) -> Vec<String> {
        self.stream(key)
            .map(|s| {
                s["origins"]
                    .as_array()
                    .expect("origins")
                    .iter()
                    .map(|o| o.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Polls `probe` until it gives a value (bounded by [`LIMIT`]).
    fn wait<T>(&mut self, what: &str, mut probe: impl FnMut(&mut Proc) -> Option<T>) -> T {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(v) = probe(self) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {what} not within {LIMIT:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The next event of `viewer`, checked against the relay's promises.
    fn next_event(&mut self, viewer: u64) -> Ev {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(v) = self.events.get_mut(&viewer).and_then(VecDeque::pop_front) {
                let ev = parse_event(&v);
                self.checks.entry(viewer).or_default().check(viewer, &ev);
                return ev;
            }
            self.pump(deadline, &format!("event for viewer {viewer}"));
        }
    }

    /// Reads `viewer`'s frames until one numbered at least `seq`; any
    /// discontinuity or end is a failure. Returns that frame's number.
    fn frames_until(&mut self, viewer: u64, seq: u64) -> u64 {
        loop {
            match self.next_event(viewer) {
                Ev::Frame { seq: s, .. } if s >= seq => return s,
                Ev::Frame { .. } | Ev::Skipped(_) => {}
                other => panic!(
                    "{}: viewer {viewer} got {other:?} waiting for frame {seq}",
                    self.name
                ),
            }
        }
    }

    /// The first frame of `viewer`: must be a keyframe.
    fn first_frame(&mut self, viewer: u64) -> u64 {
        match self.next_event(viewer) {
            Ev::Frame { seq, keyframe } => {
                assert!(keyframe, "first frame {seq} is not a keyframe");
                seq
            }
            other => panic!("{}: viewer {viewer} began with {other:?}", self.name),
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

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

#[test]
fn edge_mirrors_origin_with_one_pull_for_many_viewers_then_tears_down() {
    let secret = SecretFile::new("mirror");
    let mut n1 = Proc::start("n1", None, &secret, &["--publish", "cam"]);
    let mut n2 = Proc::start("n2", Some(&n1), &secret, &["--linger-ms", "500"]);

    // The edge locates the origin; the origin never locates itself.
    let origin = n2.wait("cam located", |n| n.locate("cam"));
    assert_eq!(origin, "n1");
    assert_eq!(n1.locate("cam"), None, "locate returned the local node");
    assert_eq!(n2.locate("nobody-publishes-this"), None);
    let v = n2.command("subscribe nobody-publishes-this", "error");
    assert!(
        v["error"].as_str().unwrap_or_default().contains("no origin"),
        "{v}"
    );

    // A viewer on the edge starts at a keyframe (the replay buffer) and
    // then follows live, gapless.
    let first = n2.subscribe("cam");
    let s = n2.first_frame(first);
    n2.frames_until(first, s + 2 * GOP);
    let stats = n2.stats();
    assert_eq!(u(&stats["stream_pulls"]), 1, "{stats}");
    let edge = n2.stream("cam").expect("cam on the edge");
    assert_eq!(edge["role"], "edge", "{edge}");
    assert_eq!(edge["upstream"], "n1", "{edge}");

    // Three more viewers on the same edge: each starts at a keyframe, and
    // the edge still has one pull.
    let mut viewers = vec![first];
    for _ in 0..3 {
        let v = n2.subscribe("cam");
        n2.first_frame(v);
        viewers.push(v);
    }
    let stats = n2.stats();
    assert_eq!(u(&stats["stream_pulls"]), 1, "one pull per edge: {stats}");
    let origin_view = n1.wait("n2 attached as an edge", |n| {
        let s = n.stream("cam")?;
        (s["edges"] == serde_json::json!(["n2"])).then_some(s)
    });
    assert_eq!(origin_view["role"], "origin", "{origin_view}");

    // While all four viewers receive 50 more frames, the origin sends the
    // edge each frame once: its count grows like the frames published, not
    // frames x viewers (four pulls would make it about 4x).
    let before = n1.stats();
    let (sent0, published0) = (u(&before["sent"]["n2"]), u(&before["published"]));
    for &v in &viewers {
        n2.frames_until(v, published0 + 50);
    }
    let after = n1.stats();
    let (sent1, published1) = (u(&after["sent"]["n2"]), u(&after["published"]));
    let (sent, published) = (sent1 - sent0, published1 - published0);
    assert!(published >= 50, "{before} {after}");
    assert!(sent > 0, "the origin sent nothing to the edge: {before} {after}");
    assert!(
        sent <= published + GOP,
        "origin sent {sent} frames to the edge for {published} published with {} viewers",
        viewers.len()
    );
    assert_eq!(u(&n2.stats()["stream_pulls"]), 1);

    // Every viewer leaves: after the linger the edge tears the pull down,
    // and the origin stops sending to it.
    let v = n2.command("unsubscribe cam", "unsubscribed");
    assert_eq!(v["viewers"], 4, "{v}");
    let stats = n2.wait("teardown counted", |n| {
        let s = n.stats();
        (u(&s["stream_teardowns"]) >= 1).then_some(s)
    });
    assert_eq!(u(&stats["stream_teardowns"]), 1, "{stats}");
    assert_eq!(u(&stats["stream_pulls"]), 1, "{stats}");
    let edge = n2.stream("cam").expect("cam still announced");
    assert_eq!(edge["role"], "none", "the edge still holds the stream: {edge}");
    n1.wait("edge detached at the origin", |n| {
        let s = n.stream("cam")?;
        s["edges"].as_array().is_some_and(Vec::is_empty).then_some(())
    });
    let idle = u(&n1.stats()["sent"]["n2"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        u(&n1.stats()["sent"]["n2"]),
        idle,
        "origin still sends after teardown"
    );

    // A viewer coming back makes a new pull, starting at a keyframe.
    let again = n2.subscribe("cam");
    let s = n2.first_frame(again);
    n2.frames_until(again, s + GOP);
    assert_eq!(u(&n2.stats()["stream_pulls"]), 2);
}

#[test]
fn failover_to_a_standby_origin_then_origin_lost() {
    let secret = SecretFile::new("failover");
    let mut n1 = Proc::start("n1", None, &secret, &["--publish", "cam:200"]);
    let base = STANDBY_BASE.to_string();
    let mut n3 = Proc::start(
        "n3",
        Some(&n1),
        &secret,
        &["--publish", "cam:100", "--base", &base],
    );
    let mut n2 = Proc::start("n2", Some(&n1), &secret, &[]);

    // Both origins are known everywhere; locate prefers the higher priority
    // and never returns the local node.
    n2.wait("both origins known on the edge", |n| {
        (n.origins("cam") == ["n1", "n3"]).then_some(())
    });
    assert_eq!(n2.locate("cam").as_deref(), Some("n1"));
    n1.wait("n1 sees the standby", |n| {
        (n.locate("cam").as_deref() == Some("n3")).then_some(())
    });
    n3.wait("n3 sees the primary", |n| {
        (n.locate("cam").as_deref() == Some("n1")).then_some(())
    });

    // A viewer on the edge plays the primary.
    let viewer = n2.subscribe("cam");
    let s = n2.first_frame(viewer);
    assert!(s < STANDBY_BASE, "first frame {s} is not from the primary");
    n2.frames_until(viewer, s + GOP);

    // kill -9 the primary: the viewer continues from the standby after a
    // discontinuity, at a keyframe, with the standby's numbering.
    n1.kill9();
    loop {
        match n2.next_event(viewer) {
            Ev::Frame { seq, .. } => {
                assert!(seq < STANDBY_BASE, "standby frame {seq} before the discontinuity")
            }
            Ev::Skipped(_) => {}
            Ev::Discontinuity(origin) => {
                assert_eq!(origin, "n3");
                break;
            }
            Ev::End(reason) => panic!("the viewer ended ({reason}) instead of failing over"),
        }
    }
    let s = n2.first_frame(viewer);
    assert!(
        s >= STANDBY_BASE,
        "frame {s} after the discontinuity is not from the standby"
    );
    n2.frames_until(viewer, s + GOP);
    let stats = n2.stats();
    assert_eq!(u(&stats["stream_failovers"]), 1, "{stats}");
    let edge = n2.stream("cam").expect("cam on the edge");
    assert_eq!(edge["upstream"], "n3", "{edge}");

    // The crashed primary's announcement is purged.
    n2.wait("n1's origin entry purged", |n| {
        (n.origins("cam") == ["n3"]).then_some(())
    });

    // kill -9 the standby too: no origin is left, the viewer ends with
    // "origin lost".
    n3.kill9();
    loop {
        match n2.next_event(viewer) {
            Ev::Frame { seq, .. } => assert!(seq >= STANDBY_BASE, "primary frame {seq} after the failover"),
            Ev::Skipped(_) => {}
            Ev::Discontinuity(origin) => panic!("failover to {origin} with no origin left"),
            Ev::End(reason) => {
                assert_eq!(reason, "origin lost");
                break;
            }
        }
    }
    n2.wait("no origin left", |n| n.locate("cam").is_none().then_some(()));
    let v = n2.command("subscribe cam", "error");
    assert!(
        v["error"].as_str().unwrap_or_default().contains("no origin"),
        "{v}"
    );
}

#[test]
fn a_finished_publisher_ends_viewers_on_origin_and_edge() {
    let secret = SecretFile::new("finished");
    let mut n1 = Proc::start("n1", None, &secret, &["--publish", "cam"]);
    let mut n2 = Proc::start("n2", Some(&n1), &secret, &[]);
    n2.wait("cam located", |n| n.locate("cam"));

    // One viewer on the origin itself, one on the edge.
    let local = n1.subscribe("cam");
    let s = n1.first_frame(local);
    n1.frames_until(local, s + GOP);
    let remote = n2.subscribe("cam");
    let s = n2.first_frame(remote);
    n2.frames_until(remote, s + GOP);

    // Dropping the publisher withdraws the stream: both viewers end with
    // "the stream finished" (there is no standby), nobody locates it.
    n1.command("stop-publishing", "stopped");
    for (node, viewer) in [(&mut n1, local), (&mut n2, remote)] {
        loop {
            match node.next_event(viewer) {
                Ev::Frame { .. } | Ev::Skipped(_) => {}
                Ev::Discontinuity(origin) => panic!("failover to {origin} with no standby"),
                Ev::End(reason) => {
                    assert_eq!(reason, "the stream finished", "{}", node.name);
                    break;
                }
            }
        }
    }
    n2.wait("withdrawn", |n| n.locate("cam").is_none().then_some(()));
    n2.wait("withdrawn from the edge's view", |n| {
        n.stream("cam").is_none().then_some(())
    });
    let v = n1.command("stop-publishing", "error");
    assert_eq!(v["error"], "not publishing");
}
