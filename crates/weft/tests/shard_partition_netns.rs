//! Split-brain hunt (issue 14, part 1) on real processes: three
//! `shard_node` processes, each in its own network namespace joined by a
//! bridge (in a namespace of its own, so nothing outside the test's
//! namespaces changes), route events to every shard from every node while
//! one node's bridge port is down for 20 s, then ~10 s after the heal. The
//! `events.log` of every node (acceptance time on `CLOCK_REALTIME`, map
//! epoch, the epoch of the acquisition it fell in) is then checked with
//! `tests/common/overlap.rs` (definitions there, shared with
//! `shards_partition_sim.rs`): overlapping acceptances and events accepted
//! after the heal at an epoch older than the one that had moved their
//! shard away must both be 0.
//!
//! Needs root and `ip` (iproute2); without them the test prints a loud
//! SKIP line on stderr and returns. Every namespace it created is deleted
//! on drop, also when the test fails. Every wait is bounded.

mod common {
    pub mod json_child;
    pub mod overlap;
    pub mod shard_proc;
}

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::overlap::{Accepted, Heal, overlaps, stale_after_heal};
use common::shard_proc::{Launch, MapView, Proc, SHARDS, Temp, converge};
use weft::weft_proto::shard::shard_of;

const NAMES: [&str; 3] = ["n1", "n2", "n3"];
/// The node cut off (not the seed every node joined through).
const VICTIM: usize = 2;
const PORT: u16 = 7701;
/// Pause between two routes of one load (one load per shard per node).
const PAUSE_MS: u64 = 20;
/// Routing before the cut, during it, and after the heal.
const WARM: Duration = Duration::from_secs(4);
const CUT: Duration = Duration::from_secs(20);
const AFTER: Duration = Duration::from_secs(10);

/// Runs `ip ARGS`; the error names the command.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Why this machine cannot run the test, if it cannot.
fn unsupported() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string));
    if euid.as_deref() != Some("0") {
        return Some(format!("not root (effective uid {euid:?})"));
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "`ip -V` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("no `ip` command: {e}")),
    }
}

/// The test's namespaces: a bridge namespace and one per node; deleted on
/// drop (deleting a namespace deletes the links in it).
struct Netns {
    bridge: String,
    nodes: Vec<String>,
    created: Vec<String>,
}

impl Netns {
    fn create() -> Result<Netns, String> {
        let pid = std::process::id();
        let mut n = Netns {
            bridge: format!("weftp{pid}-br"),
            nodes: (1..=NAMES.len()).map(|i| format!("weftp{pid}-n{i}")).collect(),
            created: Vec::new(),
        };
        let br = n.bridge.clone();
        ip(&["netns", "add", &br])?;
        n.created.push(br.clone());
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        for (i, ns) in n.nodes.clone().iter().enumerate() {
            ip(&["netns", "add", ns])?;
            n.created.push(ns.clone());
            let port = format!("p{}", i + 1);
            ip(&[
                "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "e0", "netns", ns,
            ])?;
            ip(&["-n", &br, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &br, "link", "set", &port, "up"])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", addr_ip(i)),
                "dev",
                "e0",
            ])?;
            ip(&["-n", ns, "link", "set", "e0", "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(n)
    }

    /// Takes node `i`'s bridge port down (`up = false`) or up again.
    fn port(&self, i: usize, up: bool) {
        let port = format!("p{}", i + 1);
        ip(&[
            "-n",
            &self.bridge,
            "link",
            "set",
            &port,
            if up { "up" } else { "down" },
        ])
        .expect("bridge port");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

fn addr_ip(i: usize) -> String {
    format!("10.213.77.{}", i + 1)
}

/// A key prefix `P` such that the key `P0` (a load with one key) falls in
/// `shard`.
fn key_prefix(node: &str, shard: u32) -> String {
    (0..100_000)
        .map(|j| format!("{node}s{shard}x{j}-"))
        .find(|p| shard_of(format!("{p}0").as_bytes(), SHARDS) == shard)
        .expect("a key for every shard")
}

/// Polls every listed process's map and records the owners per epoch.
fn sample(procs: &mut [&mut Proc], maps: &mut BTreeMap<u64, Vec<Option<String>>>) {
    for p in procs.iter_mut() {
        let m = p.map();
        if m.epoch > 0 {
            maps.entry(m.epoch).or_insert(m.assignment);
        }
    }
}

/// Keeps sampling the majority's maps (and filing every process's output)
/// for `d`.
fn run_for(
    d: Duration,
    procs: &mut [Proc],
    majority: &[usize],
    maps: &mut BTreeMap<u64, Vec<Option<String>>>,
) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        for (i, p) in procs.iter_mut().enumerate() {
            if majority.contains(&i) {
                sample(&mut [p], maps);
            }
            p.drain();
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Reads a node's `events.log` into accepted events (times relative to
/// `t0`). A torn last line (SIGKILL mid-write) is ignored.
fn read_log(path: &Path, node: &str, t0: Duration) -> Vec<Accepted> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let lines: Vec<&str> = text.split_terminator('\n').collect();
    let mut out = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) if n + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(e) => panic!("{} line {}: {e}: {line}", path.display(), n + 1),
        };
        let ns = v["time_ns"].as_u64().expect("time_ns");
        out.push(Accepted {
            node: node.to_string(),
            bracket: v["since"].as_u64().map(|since| (0, since)),
            shard: v["shard"].as_u64().expect("shard") as u32,
            epoch: v["epoch"].as_u64().expect("epoch"),
            at: Duration::from_nanos(ns).saturating_sub(t0),
        });
    }
    out
}

fn realtime() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
}

#[test]
fn a_cut_off_owner_and_the_majority_never_accept_one_shard_at_once() {
    if let Some(why) = unsupported() {
        eprintln!("\n!!!!! SKIP shard_partition_netns: {why}; this test needs root and iproute2 !!!!!\n");
        return;
    }
    let net = Netns::create().expect("network namespaces");
    let test = "netns";
    let secret = Temp::secret(test);
    let dirs: Vec<Temp> = NAMES.iter().map(|n| Temp::new(test, n)).collect();
    let seed = format!("{}:{PORT}", addr_ip(0));
    let mut procs: Vec<Proc> = Vec::new();
    for (i, name) in NAMES.iter().enumerate() {
        let how = Launch {
            wrapper: ["ip", "netns", "exec", &net.nodes[i]].map(String::from).to_vec(),
            listen: Some(format!("{}:{PORT}", addr_ip(i))),
            // The log is the record; fsync would only slow the test down.
            args: ["--sync", "write"].map(String::from).to_vec(),
        };
        let join = (i > 0).then_some(seed.as_str());
        procs.push(Proc::launch(name, dirs[i].path(), join, &secret, &how));
    }
    let t0 = realtime();
    {
        let [a, b, c] = &mut procs[..] else { unreachable!() };
        converge(&mut [a, b, c], 3, |_| true);
    }
    // Every node routes to every shard: one paced load per (node, shard).
    for (i, p) in procs.iter_mut().enumerate() {
        for shard in 0..SHARDS {
            let kp = key_prefix(NAMES[i], shard);
            p.command(
                &format!("load 1000000 {}s{shard} 1 {kp} {PAUSE_MS}", NAMES[i]),
                "load_started",
            );
        }
    }
    let mut maps = BTreeMap::new();
    let all = [0, 1, 2];
    let majority: Vec<usize> = all.iter().copied().filter(|i| *i != VICTIM).collect();
    run_for(WARM, &mut procs, &all, &mut maps);
    let before: MapView = procs[0].map();

    net.port(VICTIM, false);
    let cut_at = realtime().saturating_sub(t0);
    run_for(CUT, &mut procs, &majority, &mut maps);
    let victim_map = procs[VICTIM].map();
    maps.entry(victim_map.epoch)
        .or_insert(victim_map.assignment.clone());
    net.port(VICTIM, true);
    let heal_at = realtime().saturating_sub(t0);
    let majority_epoch = procs[0].map().epoch;
    run_for(AFTER, &mut procs, &all, &mut maps);
    let after = procs[0].map();

    // Stop: nothing is accepted after a SIGKILL.
    for p in procs.iter_mut() {
        p.drain();
        p.kill9();
    }
    let mut events = Vec::new();
    for (i, name) in NAMES.iter().enumerate() {
        events.extend(read_log(&dirs[i].path().join("events.log"), name, t0));
    }
    let per_node: Vec<(&str, usize)> = NAMES
        .iter()
        .map(|n| (*n, events.iter().filter(|e| e.node == *n).count()))
        .collect();
    let outside = events.iter().filter(|e| e.bracket.is_none()).count();
    let found = overlaps(&events);
    let heal = Heal {
        at: heal_at,
        victim: NAMES[VICTIM].to_string(),
        victim_epoch: victim_map.epoch,
    };
    let stale = stale_after_heal(&events, &[heal], &maps);
    eprintln!(
        "{} events accepted {per_node:?}; {} overlapping acceptances, {} accepted after the heal at an older epoch, \
         {outside} outside a bracket; cut {} at {cut_at:?}, healed at {heal_at:?}; epochs: before {}, \
         {} cut off at {}, majority {} at the heal, {} at the end",
        events.len(),
        found.len(),
        stale.len(),
        NAMES[VICTIM],
        before.epoch,
        NAMES[VICTIM],
        victim_map.epoch,
        majority_epoch,
        after.epoch
    );
    let mut report = String::new();
    let mut shown = std::collections::BTreeSet::new();
    for o in &found {
        if shown.insert((o.shard, o.node.clone(), o.other.clone())) && shown.len() <= 10 {
            report.push_str(&format!("\n  {o}"));
        }
    }
    for line in stale.iter().take(5) {
        report.push_str(&format!("\n  {line}"));
    }
    assert!(!events.is_empty(), "no event accepted at all");
    assert!(
        found.is_empty() && stale.is_empty() && outside == 0,
        "{} overlapping acceptances, {} accepted after the heal at an older epoch, {outside} outside a bracket \
         (times since the cluster started; cut at {cut_at:?}, healed at {heal_at:?}):{report}",
        found.len(),
        stale.len()
    );
}
