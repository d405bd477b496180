//! `weft demo`: the real binary runs the guided tour to the end, and a
//! failing step makes it exit non-zero naming the step.

mod common;

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use common::{Proc, bin};

/// Safety bound for a whole demo run (against hangs, not a speed
/// assertion: the demo itself reports its duration).
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// The step headings, as the demo prints them.
const HEADINGS: [&str; 6] = [
    "Step 0: start a 3-node cluster",
    "Step 1: pub/sub across nodes",
    "Step 2: queue group",
    "Step 3: live stream with a late viewer",
    "Step 4: sharded routing",
    "Step 5: node failure",
];

/// Runs `weft demo ARGS` to its end (killed if the test fails first):
/// exit status, stdout, stderr.
fn demo(args: &[&str], dir: &Path) -> (ExitStatus, String, String) {
    let out = dir.join("stdout.log");
    let err = dir.join("stderr.log");
    let child = Command::new(bin())
        .arg("demo")
        .args(args)
        .env("RUST_LOG", "warn,openraft=error")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("spawn weft demo");
    let mut proc = Proc::from_child("weft demo", child, Some(&err));
    let status = proc.wait_exit(RUN_LIMIT);
    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    (status, stdout, proc.log())
}

#[test]
fn the_demo_walks_through_every_step_and_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (status, stdout, stderr) = demo(&[], dir.path());
    assert!(
        status.success(),
        "demo failed ({status}):\n{stdout}\n----- stderr -----\n{stderr}"
    );
    for heading in HEADINGS {
        assert!(stdout.contains(heading), "missing {heading:?} in:\n{stdout}");
    }
    assert!(stdout.contains("All 6 steps passed"), "{stdout}");
}

#[test]
fn a_failing_step_exits_non_zero_and_names_the_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (status, stdout, stderr) = demo(&["--fail-step", "2", "--messages", "500"], dir.path());
    assert_eq!(status.code(), Some(1), "{stdout}\n----- stderr -----\n{stderr}");
    assert!(
        stderr.contains("step 2 (queue group) failed: injected failure"),
        "stderr names the step:\n{stderr}"
    );
    assert!(stdout.contains(HEADINGS[2]), "{stdout}");
    assert!(
        !stdout.contains(HEADINGS[3]),
        "nothing runs after a failed step:\n{stdout}"
    );
}
