//! Real NATS clients (nats-py, nats.js) against a 3-node weft cluster and,
//! when `nats-server` is on PATH, against a 3-node nats-server cluster:
//! every scenario's result must equal the expectation on both, so weft
//! behaves as nats-server for these clients.
//!
//! The scenario scripts are in `tests/clients/{py,js}/` (see their module
//! comments for the stdout/stdin protocol). A client library that is not
//! installed skips its test loudly, unless `WEFT_REQUIRE_NATS_PY` /
//! `WEFT_REQUIRE_NATS_JS` is set (`.ci/run` installs both and sets them);
//! nats-server likewise with `WEFT_REQUIRE_NATS_SERVER`.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{Proc, Trio, accepts, free_port, http_get, wait_for};

/// How long one script run may take in all (a hang guard, not a speed
/// assertion).
const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

/// Outbound bytes a server queues for one client before closing it as a
/// slow consumer, on weft and nats-server alike (the slow-consumer
/// scenario overruns it; the stopped-subscriber one stays well under it).
const MAX_PENDING: usize = 4 << 20;

/// The two tests start 6 servers and many clients each: one at a time on
/// a 2-core machine.
static SERIAL: Mutex<()> = Mutex::new(());

/// A cluster the scripts talk to, node by node.
trait Cluster {
    /// What the results are labelled with.
    fn name(&self) -> &'static str;
    /// `nats://127.0.0.1:PORT` of each node's client port.
    fn urls(&self) -> Vec<String>;
    /// SIGKILLs node `i` and reaps it.
    fn kill(&mut self, i: usize);
    /// Starts node `i` again and waits until it serves clients and is a
    /// full member again.
    fn start(&mut self, i: usize);
    /// Starts every node that is not running.
    fn ensure_all(&mut self) {
        for i in 0..3 {
            if !self.running(i) {
                self.start(i);
            }
        }
    }
    /// Whether node `i`'s process is alive.
    fn running(&mut self, i: usize) -> bool;
}

fn alive(p: &mut Option<Proc>) -> bool {
    p.as_mut().is_some_and(|p| matches!(p.child.try_wait(), Ok(None)))
}

/// Three `weft node --client` processes.
struct Weft {
    trio: Trio,
    config: PathBuf,
    clients: Vec<u16>,
    procs: Vec<Option<Proc>>,
}

impl Weft {
    fn start_all(dir: &Path) -> Weft {
        std::fs::create_dir_all(dir).expect("weft dir");
        let trio = Trio::new(dir);
        let config = dir.join("weft.toml");
        std::fs::write(&config, format!("[nats]\nmax_pending = {MAX_PENDING}\n")).expect("weft config");
        let clients: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut w = Weft {
            trio,
            config,
            clients,
            procs: vec![None, None, None],
        };
        for i in 0..3 {
            w.spawn(i);
        }
        let https = w.trio.https.clone();
        let names = w.trio.names;
        wait_for("all three weft nodes up in every view", || {
            common::all_see(&https, &names, "up")
        });
        for &c in &w.clients {
            wait_for("weft client port open", || accepts(c));
        }
        w
    }

    fn spawn(&mut self, i: usize) {
        let client = common::addr(self.clients[i]).to_string();
        let config = self.config.to_string_lossy().into_owned();
        self.procs[i] = Some(
            self.trio
                .spec(i)
                .start_with(&["--client", &client, "--config", &config]),
        );
    }
}

impl Cluster for Weft {
    fn name(&self) -> &'static str {
        "weft"
    }
    fn urls(&self) -> Vec<String> {
        self.clients
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect()
    }
    fn kill(&mut self, i: usize) {
        if let Some(p) = self.procs[i].as_mut() {
            p.kill();
        }
    }
    fn start(&mut self, i: usize) {
        self.spawn(i);
        let c = self.clients[i];
        wait_for("restarted weft node serves clients", || accepts(c));
        let https = self.trio.https.clone();
        let names = self.trio.names;
        wait_for("restarted weft node up in every view", || {
            common::all_see(&https, &names, "up")
        });
    }
    fn running(&mut self, i: usize) -> bool {
        alive(&mut self.procs[i])
    }
}

/// Three `nats-server`s routed to each other on loopback.
struct NatsServers {
    config: PathBuf,
    ports: Vec<u16>,
    routes: Vec<u16>,
    monitors: Vec<u16>,
    dir: PathBuf,
    procs: Vec<Option<Proc>>,
    starts: usize,
}

impl NatsServers {
    fn start_all(dir: &Path) -> NatsServers {
        std::fs::create_dir_all(dir).expect("nats-server dir");
        let config = dir.join("nats-server.conf");
        std::fs::write(&config, format!("max_pending: {MAX_PENDING}\n")).expect("nats-server config");
        let mut n = NatsServers {
            config,
            ports: (0..3).map(|_| free_port()).collect(),
            routes: (0..3).map(|_| free_port()).collect(),
            monitors: (0..3).map(|_| free_port()).collect(),
            dir: dir.to_path_buf(),
            procs: vec![None, None, None],
            starts: 0,
        };
        for i in 0..3 {
            n.spawn(i);
        }
        for i in 0..3 {
            n.wait_routed(i);
        }
        n
    }

    fn spawn(&mut self, i: usize) {
        let routes: Vec<String> = (0..3)
            .filter(|&j| j != i)
            .map(|j| format!("nats://127.0.0.1:{}", self.routes[j]))
            .collect();
        let mut cmd = Command::new("nats-server");
        cmd.arg("-c")
            .arg(&self.config)
            .args(["-a", "127.0.0.1", "-p", &self.ports[i].to_string()])
            .args(["-m", &self.monitors[i].to_string()])
            .args(["--cluster", &format!("nats://127.0.0.1:{}", self.routes[i])])
            .args(["--cluster_name", "weft-compare"])
            .args(["--routes", &routes.join(",")]);
        self.starts += 1;
        let log = self.dir.join(format!("nats-server-{i}.{}.log", self.starts));
        self.procs[i] = Some(Proc::spawn(&format!("nats-server {i}"), cmd, &log));
    }

    /// Waits until server `i` serves clients and routes to both others.
    fn wait_routed(&self, i: usize) {
        let (port, monitor) = (self.ports[i], self.monitors[i]);
        wait_for("nats-server serves clients", || accepts(port));
        wait_for("nats-server routed to both others", || {
            http_get(monitor, "/routez").is_some_and(|(status, body)| {
                status == 200
                    && serde_json::from_str::<Value>(&body).is_ok_and(|v| v["num_routes"].as_u64() == Some(2))
            })
        });
    }
}

impl Cluster for NatsServers {
    fn name(&self) -> &'static str {
        "nats-server"
    }
    fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect()
    }
    fn kill(&mut self, i: usize) {
        if let Some(p) = self.procs[i].as_mut() {
            p.kill();
        }
    }
    fn start(&mut self, i: usize) {
        self.spawn(i);
        self.wait_routed(i);
    }
    fn running(&mut self, i: usize) -> bool {
        alive(&mut self.procs[i])
    }
}

/// One scenario's outcome: its `result`, or the script's error text.
type Outcomes = BTreeMap<String, Result<Value, String>>;

/// Runs `cmd` (a scenario script given `--servers`) against `cluster`,
/// obeying its kill/start requests; returns every scenario's outcome and
/// the script's stderr.
fn run_script(mut cmd: Command, cluster: &mut dyn Cluster, log: &Path) -> (Outcomes, String) {
    cluster.ensure_all();
    cmd.arg("--servers")
        .arg(cluster.urls().join(","))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("script log"));
    let mut child = cmd.spawn().expect("spawn the scenario script");
    let mut stdin: ChildStdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let script = Proc::from_child(&format!("script on {}", cluster.name()), child, Some(log));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + SCRIPT_LIMIT;
    let mut out = Outcomes::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                out.insert("(script)".into(), Err(format!("no end within {SCRIPT_LIMIT:?}")));
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                out.insert("(script)".into(), Err("exited before its end line".into()));
                break;
            }
        };
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            eprintln!("[{}] {line}", cluster.name());
            continue;
        };
        eprintln!("[{}] {v}", cluster.name());
        if v["done"] == true {
            break;
        }
        if let Some(action) = v["ctl"].as_str() {
            let node = v["node"]
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n < 3);
            let Some(node) = node else {
                out.insert("(script)".into(), Err(format!("bad ctl line {line}")));
                break;
            };
            match action {
                "kill" => cluster.kill(node),
                "start" => cluster.start(node),
                other => panic!("unknown ctl action {other:?}"),
            }
            if writeln!(stdin, "done").and_then(|()| stdin.flush()).is_err() {
                out.insert("(script)".into(), Err("script stdin closed".into()));
                break;
            }
            continue;
        }
        let Some(name) = v["scenario"].as_str() else {
            continue;
        };
        let outcome = match v.get("result") {
            Some(r) => Ok(r.clone()),
            None => Err(v["error"].as_str().unwrap_or("no result").to_string()),
        };
        out.insert(name.to_string(), outcome);
    }
    let stderr = script.log();
    drop(script);
    (out, stderr)
}

/// Runs the scenario script on weft and (if present) nats-server and
/// checks every scenario against `expected`. `nats_server_may` lists, per
/// scenario, results nats-server gives that differ from what weft must
/// give (nats-server's own behaviour, recorded, not required of weft).
/// Any other difference fails.
fn compare(
    label: &str,
    script: impl Fn() -> Command,
    expected: &BTreeMap<&str, Value>,
    nats_server_may: &BTreeMap<&str, Value>,
) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let with_nats = Command::new("nats-server").arg("--version").output().is_ok();
    if !with_nats {
        assert!(
            std::env::var_os("WEFT_REQUIRE_NATS_SERVER").is_none(),
            "WEFT_REQUIRE_NATS_SERVER is set but nats-server is not on PATH"
        );
        eprintln!(
            "WARNING: nats-server not on PATH: {label} runs against weft alone (apt-get install nats-server)"
        );
    }
    let mut runs: Vec<(&'static str, Outcomes, String)> = Vec::new();
    {
        let mut weft = Weft::start_all(&dir.path().join("weft"));
        let (out, log) = run_script(script(), &mut weft, &dir.path().join("script-weft.log"));
        runs.push(("weft", out, log));
    }
    if with_nats {
        let mut nats = NatsServers::start_all(&dir.path().join("nats"));
        let (out, log) = run_script(script(), &mut nats, &dir.path().join("script-nats.log"));
        runs.push(("nats-server", out, log));
    }

    let mut failures = Vec::new();
    for (system, out, _) in &runs {
        if let Some(Err(e)) = out.get("(script)") {
            failures.push(format!("{system}: script: {e}"));
        }
        for (name, want) in expected {
            match out.get(*name) {
                None => failures.push(format!("{system} {name}: no result")),
                Some(Err(e)) => failures.push(format!("{system} {name}: error {e}")),
                Some(Ok(got)) if got == want => {}
                Some(Ok(got)) if *system == "nats-server" && nats_server_may.get(name) == Some(got) => {
                    eprintln!(
                        "note: nats-server {name}: {got} (known nats-server behaviour; weft must give {want})"
                    );
                }
                Some(Ok(got)) => failures.push(format!("{system} {name}:\n   got  {got}\n   want {want}")),
            }
        }
        for name in out.keys() {
            if name != "(script)" && !expected.contains_key(name.as_str()) {
                failures.push(format!("{system} {name}: a result no expectation covers"));
            }
        }
    }
    if !failures.is_empty() {
        for (system, _, log) in &runs {
            eprintln!("----- {label} script stderr on {system} -----\n{log}");
        }
        panic!(
            "{label}: {} scenario check(s) failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Whether a client library is usable; panics when it is required
/// (`require_var` set) but absent, warns loudly when merely absent.
fn available(what: &str, require_var: &str, probe: &mut Command, install: &str) -> bool {
    let ok = probe
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os(require_var).is_none(),
            "{require_var} is set but {what} is not usable"
        );
        eprintln!("WARNING: {what} not installed: skipping its real-client test ({install})");
    }
    ok
}

fn python() -> String {
    std::env::var("WEFT_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Tunables shared by both scripts' expectations.
const ORDER_N: u64 = 500;
const QUEUE_N: u64 = 300;
const STOPPED_N: u64 = 2000;
const SLOW_N: u64 = 32768;

#[test]
fn nats_py_sees_weft_as_nats_server() {
    if !available(
        "python nats-py",
        "WEFT_REQUIRE_NATS_PY",
        Command::new(python()).args(["-c", "import nats"]),
        "pip install nats-py",
    ) {
        return;
    }
    let expected: BTreeMap<&str, Value> = [
        ("barrier", json!({"rounds": 200, "no_miss": true})),
        ("order", json!({"received": 2 * ORDER_N, "in_order": [true, true]})),
        (
            "wildcards",
            json!({"star": ["wc.a", "wc.b", "wc.end"], "gt": ["wc.a", "wc.a.b", "wc.b", "wc.b.c.d", "wc.end"]}),
        ),
        ("queue", json!({"total": QUEUE_N, "distinct": QUEUE_N, "plain": QUEUE_N})),
        ("request", json!({"correct": 20, "no_responders": "NoRespondersError"})),
        (
            "headers",
            json!({
                "received": {
                    "empty": {},
                    "single": {"X-One": "1", "X-Two": "two words"},
                    // nats-py keeps one value per key (a dict): the last.
                    "multi": {"X-Multi": "b", "X-One": "1"},
                },
                "order": ["empty", "single", "multi"],
                "multi_raw": "NATS/1.0\r\nX-Multi: a\r\nX-Multi: b\r\nX-One: 1",
            }),
        ),
        ("drain", json!({"handled": 200, "in_order": true, "closed": true})),
        (
            "max_payload",
            json!({"max_payload": 1_048_576, "error": "MaxPayloadError", "usable_after": true}),
        ),
        ("stopped_subscriber", json!({"others": STOPPED_N, "stopped_after_cont": STOPPED_N})),
        ("slow_consumer", json!({"others": SLOW_N, "reconnected": true, "receives_again": true})),
        (
            "jetstream",
            json!({"publish": "NoStreamResponseError", "account_info": "ServiceUnavailableError"}),
        ),
        (
            "node_kill",
            json!({"reconnected": true, "moved": true, "received_after": 100, "in_order": true}),
        ),
        ("reconnect_50", json!({"clients": 50, "reconnected": 50, "received_all": 50})),
    ]
    .into_iter()
    .collect();
    // A routed nats-server 2.9 cluster without JetStream has interest in
    // `$JS.API.>` (its JetStream cluster plumbing) but nobody answers, so
    // `jsm` calls time out there instead of failing with no-responders.
    // nats-server has no interest barrier: a PONG may come before routes
    // know the subscription, so a round may miss there.
    let nats_may: BTreeMap<&str, Value> = [
        ("barrier", json!({"rounds": 200, "no_miss": false})),
        (
            "jetstream",
            json!({"publish": "NoStreamResponseError", "account_info": "TimeoutError"}),
        ),
    ]
    .into_iter()
    .collect();
    let script = clients_dir().join("py/scenarios.py");
    compare(
        "nats-py",
        || {
            let mut c = Command::new(python());
            c.arg(&script);
            c
        },
        &expected,
        &nats_may,
    );
}

#[test]
fn nats_js_sees_weft_as_nats_server() {
    let js_dir = clients_dir().join("js");
    if !available(
        "node with the npm package nats",
        "WEFT_REQUIRE_NATS_JS",
        Command::new("node")
            .args(["-e", "require('nats')"])
            .current_dir(&js_dir),
        "npm ci in crates/weft-cli/tests/clients/js",
    ) {
        return;
    }
    let expected: BTreeMap<&str, Value> = [
        ("barrier", json!({"rounds": 200, "no_miss": true})),
        ("order", json!({"received": 2 * ORDER_N, "in_order": [true, true]})),
        (
            "wildcards",
            json!({"star": ["wc.a", "wc.b", "wc.end"], "gt": ["wc.a", "wc.a.b", "wc.b", "wc.b.c.d", "wc.end"]}),
        ),
        ("queue", json!({"total": QUEUE_N, "distinct": QUEUE_N, "plain": QUEUE_N})),
        ("request", json!({"correct": 20, "no_responders": "503"})),
        (
            "headers",
            json!({
                "received": {
                    // nats.js sends `HPUB hdr.x 0 5`: no header block at all.
                    "empty": {"headers": null, "code": null, "description": null},
                    "multi": {"headers": {"X-Multi": ["a", "b"], "X-One": ["1"]}, "code": 0, "description": ""},
                    "single": {"headers": {"X-Two": ["two words"]}, "code": 0, "description": ""},
                    "end": {"headers": null, "code": null, "description": null},
                },
                "order": ["empty", "multi", "single", "end"],
            }),
        ),
        ("drain", json!({"handled": 200, "in_order": true, "closed": true})),
        (
            "max_payload",
            json!({"max_payload": 1_048_576, "error": "MAX_PAYLOAD_EXCEEDED", "usable_after": true}),
        ),
        ("stopped_subscriber", json!({"others": STOPPED_N, "stopped_after_cont": STOPPED_N})),
        ("slow_consumer", json!({"others": SLOW_N, "reconnected": true, "receives_again": true})),
        ("slow_consumer", json!({"others": SLOW_N, "reconnected": true, "receives_again": true})),
        ("jetstream", json!({"publish": "503", "manager": "503"})),
        (
            "node_kill",
            json!({"reconnected": true, "moved": true, "received_after": 100, "in_order": true}),
        ),
        ("reconnect_50", json!({"clients": 50, "reconnected": 50, "received_all": 50})),
    ]
    .into_iter()
    .collect();
    // See the nats-py test: a routed nats-server cluster without JetStream
    // lets `$JS.API` requests time out.
    let nats_may: BTreeMap<&str, Value> = [
        ("barrier", json!({"rounds": 200, "no_miss": false})),
        ("jetstream", json!({"publish": "503", "manager": "TIMEOUT"})),
    ]
    .into_iter()
    .collect();
    let script = js_dir.join("scenarios.js");
    compare(
        "nats.js",
        || {
            let mut c = Command::new("node");
            c.arg(&script).current_dir(&js_dir);
            c
        },
        &expected,
        &nats_may,
    );
}
